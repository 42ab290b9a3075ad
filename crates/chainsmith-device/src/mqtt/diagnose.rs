//! Diagnosis: every failure becomes one plain sentence of cause and one of fix.
//!
//! [`classify_io`] turns what the network stack returned (io errors wrapping rustls errors,
//! TLS alerts, refused connections) into a [`FailureKind`]; [`diagnose`] adds what we know
//! about the device, its chain and the peer to say which certificate and what to do.
//!
//! The sentences speak domain words only (the device, the CA, the thumbprint, the hub), never a
//! flag or a command: the fix also comes typed, as a [`ConnectRemedy`] carrying the names a
//! face needs, and each face turns it into its own hint (the CLI prints the command with the
//! real names, the TUI the key).

use super::identity::{Identity, cn_of};
use super::remedy::preflight_remedy;
pub use super::remedy::{ConnectRemedy, FindingRemedy, Thumbprint, preflight_remedies};
use super::{CertSummary, Endpoint, PeerKind, Step};
use crate::pki::lint::Finding;
use rustls::{AlertDescription, CertificateError};
use serde::Serialize;
use std::io;
use std::time::Duration;

/// What went wrong, classified.
#[derive(Clone, Debug, PartialEq)]
pub enum FailureKind {
    /// The identity or the TLS configuration could not be built.
    Setup(String),
    /// The test was asked to stop on pre-flight errors, and the lint found this many.
    LintErrors(usize),
    /// The host name did not resolve (the resolver's words).
    Dns(String),
    /// Nothing listens on the port (TCP reset).
    Refused,
    /// A step did not finish within the test's limit.
    Timeout(Duration),
    /// Our verification of the server's certificate failed.
    ServerCert(CertificateError),
    /// The peer sent a TLS alert (during the handshake, or, with TLS 1.3, while we waited for CONNACK).
    Alert(AlertDescription),
    /// Another TLS failure on our side.
    Tls(String),
    /// The peer closed the connection without a word.
    Closed,
    /// CONNACK with a refusal code; the local hub's exact reason when it runs in-process.
    Connack {
        /// The MQTT 3.1.1 return code (1 to 5).
        code: u8,
        /// Why the local hub refused, when it was asked (in-process or over its control socket).
        hub_reason: Option<super::HubRefusal>,
    },
    /// The peer refused a subscription to this topic.
    SubscribeRefused(String),
    /// The peer spoke something that is not MQTT 3.1.1.
    Protocol(String),
    /// Any other I/O failure (its text).
    Io(String),
}

/// A failure at a step.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// The step that failed.
    pub step: Step,
    /// What went wrong there.
    pub kind: FailureKind,
}

impl Failure {
    /// A failure of `kind` at `step`.
    pub fn new(step: Step, kind: FailureKind) -> Failure {
        Failure { step, kind }
    }
    /// A failure at `step` from what the network stack returned, classified by [`classify_io`].
    pub fn io(step: Step, e: &io::Error) -> Failure {
        Failure {
            step,
            kind: classify_io(step, e),
        }
    }
}

/// The error of a step, as a person reads it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Diagnosis {
    /// A stable identifier scripts can match on (`unknown-ca`, `connack-5`, ...).
    pub code: String,
    /// What went wrong, naming the certificate, device or peer.
    pub cause: String,
    /// What would fix it, in domain words (a face adds its hint from [`Diagnosis::remedy`]).
    pub fix: String,
    /// The raw error, for the curious.
    pub detail: String,
    /// The fix as a face can act on it, when there is one to act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<ConnectRemedy>,
}

impl Diagnosis {
    /// A diagnosis with no remedy a face can act on.
    pub(crate) fn new(code: &str, cause: String, fix: String, detail: String) -> Diagnosis {
        Diagnosis {
            code: code.into(),
            cause,
            fix,
            detail,
            remedy: None,
        }
    }

    fn with(mut self, remedy: Option<ConnectRemedy>) -> Diagnosis {
        self.remedy = remedy;
        self
    }
}

/// Classify what the network stack returned at `step`.
pub(crate) fn classify_io(step: Step, e: &io::Error) -> FailureKind {
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return classify_tls(tls);
    }
    match e.kind() {
        _ if step == Step::Resolve => FailureKind::Dns(e.to_string()),
        io::ErrorKind::ConnectionRefused => FailureKind::Refused,
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => FailureKind::Closed,
        io::ErrorKind::TimedOut => FailureKind::Timeout(Duration::ZERO),
        _ => FailureKind::Io(e.to_string()),
    }
}

/// Classify a rustls error: an alert from the peer, our verdict on its certificate, or other.
pub(crate) fn classify_tls(e: &rustls::Error) -> FailureKind {
    match e {
        rustls::Error::AlertReceived(a) => FailureKind::Alert(*a),
        rustls::Error::InvalidCertificate(c) => FailureKind::ServerCert(c.clone()),
        other => FailureKind::Tls(other.to_string()),
    }
}

/// What the diagnosis knows besides the failure.
pub struct Context<'a> {
    /// The device that connected: its id, chain and where it came from.
    pub identity: &'a Identity,
    /// Where it connected, and what kind of peer that is.
    pub endpoint: &'a Endpoint,
    /// The server's leaf certificate (DER), when the handshake got that far.
    pub server_cert: Option<&'a [u8]>,
    /// The CA names the server said it accepts client certificates from.
    pub acceptable_cas: &'a [String],
    /// The pre-flight findings: against a running hub, its registry's view explains a refusal.
    pub preflight: &'a [Finding],
    /// The limit of each step.
    pub timeout: Duration,
}

fn alert_name(a: AlertDescription) -> String {
    // rustls prints CamelCase (UnknownCA); the RFC names are snake_case (unknown_ca).
    match a {
        AlertDescription::UnknownCA => "unknown_ca".into(),
        AlertDescription::CertificateExpired => "certificate_expired".into(),
        AlertDescription::BadCertificate => "bad_certificate".into(),
        AlertDescription::CertificateUnknown => "certificate_unknown".into(),
        AlertDescription::CertificateRequired => "certificate_required".into(),
        AlertDescription::HandshakeFailure => "handshake_failure".into(),
        AlertDescription::AccessDenied => "access_denied".into(),
        AlertDescription::DecryptError => "decrypt_error".into(),
        AlertDescription::UnsupportedCertificate => "unsupported_certificate".into(),
        AlertDescription::CertificateRevoked => "certificate_revoked".into(),
        AlertDescription::ProtocolVersion => "protocol_version".into(),
        other => format!("{other:?}"),
    }
}

fn connack_meaning(code: u8) -> &'static str {
    match code {
        0 => "accepted",
        1 => "unacceptable protocol version",
        2 => "identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "unknown code",
    }
}

/// A CONNACK return code with its meaning: `5 (not authorized)`.
pub(crate) fn connack_text(code: u8) -> String {
    format!("{code} ({})", connack_meaning(code))
}

/// The server certificate's names as a person writes them: `DNS:broker.example, IP:127.0.0.1`.
fn sans_of(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                format!("IP:{}", std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            }
            GeneralName::IPAddress(b) if b.len() == 16 => {
                let a: [u8; 16] = (*b).try_into().unwrap_or([0; 16]);
                format!("IP:{}", std::net::Ipv6Addr::from(a))
            }
            other => other.to_string(),
        })
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// The likely causes when Azure IoT Hub refuses a device, most likely first.
fn azure_checklist(id: &Identity, ep: &Endpoint) -> String {
    let issuer = id
        .root()
        .map(|r| r.name.clone())
        .unwrap_or_else(|| id.leaf_issuer_name());
    let (sha1, sha256) = crate::pki::thumbprints(&id.leaf().der);
    let self_signed = id.leaf().view.self_signed;
    let auth = if self_signed {
        format!(
            "its authentication type is \"X.509 self-signed\" with primary or secondary thumbprint {sha1} (SHA-1) or {sha256} (SHA-256)"
        )
    } else {
        format!(
            "its authentication type is \"X.509 CA signed\" and the CA \"{issuer}\" (or an intermediate above \"{}\") is uploaded and verified",
            id.leaf().name
        )
    };
    format!(
        "check in this order: (1) device \"{dev}\" exists in hub {host} and is enabled; (2) {auth}; (3) the certificate's CN \"{cn}\" equals the device id exactly (case-sensitive); (4) the chain sent reaches the verified CA (send the intermediates); (5) the device certificate and its CAs are within their validity",
        dev = id.device_id,
        host = ep.host,
        cn = id.leaf().view.cn.clone().unwrap_or_default(),
    )
}

/// Cause and fix for a failure.
pub fn diagnose(f: &Failure, cx: &Context<'_>) -> Diagnosis {
    let id = cx.identity;
    let ep = cx.endpoint;
    let dev = &id.leaf().name;
    let at = ep.display();
    let d = Diagnosis::new;
    let more_time = Some(ConnectRemedy::MoreTime {
        timeout_ms: u64::try_from(cx.timeout.as_millis()).unwrap_or(u64::MAX),
    });
    match &f.kind {
        FailureKind::Setup(msg) => d("setup", format!("the test could not start: {msg}"), "fix the identity or the server's trust anchor named above and run again".into(), msg.clone()),
        FailureKind::LintErrors(n) => d(
            "lint",
            format!("the pre-flight lint found {n} error(s) in the identity of \"{dev}\", and the test stops on pre-flight errors"),
            "fix the findings listed above, or let the test try the connection anyway".into(),
            String::new(),
        )
        .with(Some(ConnectRemedy::NotStrict)),
        FailureKind::Dns(detail) => d(
            "dns",
            format!("the name \"{}\" does not resolve to an address", ep.host),
            if ep.peer == PeerKind::AzureHub {
                "check the hub name (an IoT Hub is NAME.azure-devices.net) and this machine's DNS".into()
            } else {
                "check the host name for typos and this machine's DNS settings".into()
            },
            detail.clone(),
        ),
        FailureKind::Refused => d(
            "connection-refused",
            format!("nothing listens on {at} (connection refused)"),
            match ep.peer {
                PeerKind::LocalHub => "start the local hub, or test with no hub running: the test then starts one in-process".into(),
                PeerKind::AzureHub => "IoT Hub takes MQTT over TLS on port 8883; check the host and port".into(),
                PeerKind::Broker => format!("start the broker or check the port (MQTT over TLS is usually 8883, not {})", ep.port),
                PeerKind::AwsLocal => "start the local AWS IoT Core of this workspace again (it records where it listens when it starts)".into(),
                PeerKind::AwsIot => "AWS IoT Core takes MQTT over TLS on port 8883; check the endpoint with `aws iot describe-endpoint --endpoint-type iot:Data-ATS`".into(),
            },
            String::new(),
        )
        .with(match ep.peer {
            PeerKind::LocalHub => Some(ConnectRemedy::StartHub),
            PeerKind::AwsLocal => Some(ConnectRemedy::Aws { fix: super::AwsFix::StartService }),
            _ => None,
        }),
        FailureKind::Timeout(_) => {
            let t = humantime_ms(cx.timeout);
            match f.step {
                Step::Resolve => d("timeout", format!("resolving \"{}\" took longer than {t}", ep.host), "check this machine's DNS server, or use an IP address".into(), String::new()),
                Step::TcpConnect => d(
                    "timeout",
                    format!("{at} did not answer within {t}: port {} is blocked by a firewall or the host is wrong", ep.port),
                    format!("check the host name, and that outbound TCP port {} is open on this network (corporate networks often block 8883)", ep.port),
                    String::new(),
                ),
                Step::TlsHandshake => d("timeout", format!("the TLS handshake with {at} did not finish within {t}"), "check that the port speaks TLS (MQTT over TLS, 8883) rather than plain MQTT (1883)".into(), String::new()),
                Step::MqttConnect => d(
                    "timeout",
                    format!("{at} accepted TLS but sent no CONNACK within {t}"),
                    "check that the port is an MQTT port and the broker is not overloaded; allow the test more time on slow links".into(),
                    String::new(),
                )
                .with(more_time),
                s => d("timeout", format!("{} did not complete within {t}", s.label()), "allow the test more time, or check the broker's load and the network".into(), String::new()).with(more_time),
            }
        }
        FailureKind::ServerCert(ce) => server_cert(ce, cx),
        FailureKind::Alert(a) => client_refused(*a, f.step, cx),
        FailureKind::Tls(detail) => d("tls", format!("the TLS handshake with {at} failed: {detail}"), "check that the port speaks TLS 1.2 or 1.3 and that the device's key type is supported by the peer".into(), detail.clone()),
        FailureKind::Closed => {
            let when = if f.step <= Step::MqttConnect { "before CONNACK" } else { "during the session" };
            let fix = match ep.peer {
                PeerKind::AzureHub => azure_checklist(id, ep),
                PeerKind::LocalHub => "look at the local hub's log: it records each refusal with its reason".into(),
                PeerKind::Broker if f.step <= Step::MqttConnect => format!(
                    "look at the broker's log: it most often means the client certificate of \"{dev}\" was refused (its CA is not in the broker's cafile, or the intermediate was not sent) or the client id is not allowed"
                ),
                PeerKind::Broker => "look at the broker's log: brokers close the connection on an ACL violation or a second connection with the same client id".into(),
                PeerKind::AwsLocal => "look at the local AWS IoT Core's log: it names the rule that refused each connection".into(),
                PeerKind::AwsIot => "AWS IoT Core closes a connection it refuses without a reason: check the certificate's and its CA's registration and status, and the policies attached to the certificate".into(),
            };
            d("closed", format!("{at} closed the connection {when} without giving a reason"), fix, String::new())
                .with(match ep.peer {
                    PeerKind::LocalHub => Some(ConnectRemedy::HubLog),
                    PeerKind::AwsLocal => Some(ConnectRemedy::Aws { fix: super::AwsFix::ServiceLog }),
                    _ => None,
                })
        }
        FailureKind::Connack { code, hub_reason } => connack(*code, hub_reason.as_ref(), cx),
        FailureKind::SubscribeRefused(topic) => d(
            "subscribe-refused",
            format!("{at} refused the subscription to \"{topic}\""),
            match ep.peer {
                PeerKind::Broker => format!("allow client \"{}\" to subscribe to its own topics in the broker's ACL", id.device_id),
                _ => "Azure allows only its documented device topics and at most 5 subscriptions; check the topic".into(),
            },
            String::new(),
        ),
        FailureKind::Protocol(detail)
            if matches!(
                f.step,
                Step::WebSocketUpgrade | Step::AmqpOpen | Step::LinkAttach
            ) =>
        {
            d(
                "protocol",
                format!("{at} did not complete the {}: {detail}", f.step.label()),
                "check that the port serves this transport (IoT Hub: MQTT on 8883, AMQP on 5671, MQTT and AMQP over WebSockets on 443 at /$iothub/websocket; the local hub prints its ports when it starts)".into(),
                detail.clone(),
            )
        }
        FailureKind::Protocol(detail) => d(
            "protocol",
            format!("{at} answered with something that is not MQTT 3.1.1: {detail}"),
            "check that the port is MQTT over TLS (8883), not HTTPS, AMQP or WebSockets".into(),
            detail.clone(),
        ),
        FailureKind::Io(detail) => d("io", format!("the connection to {at} failed at {}: {detail}", f.step.label()), "check the network path to the peer and run again".into(), detail.clone()),
    }
}

fn humantime_ms(t: Duration) -> String {
    if t.as_millis() % 1000 == 0 {
        format!("{} s", t.as_secs())
    } else {
        format!("{} ms", t.as_millis())
    }
}

/// The root IoT Hub's server certificates chain to.
const AZURE_ROOT: &str = "DigiCert Global Root G2";
/// The root AWS IoT Core's ATS endpoints' RSA certificates chain to ("Server authentication"
/// in the developer guide, <https://docs.aws.amazon.com/iot/latest/developerguide/server-authentication.html>).
const AWS_ROOT: &str = "Amazon Root CA 1";

fn server_cert(ce: &CertificateError, cx: &Context<'_>) -> Diagnosis {
    let ep = cx.endpoint;
    let server = cx.server_cert.and_then(CertSummary::from_der);
    let subject = server
        .as_ref()
        .map(|s| cn_of(&s.subject))
        .unwrap_or_else(|| "(unknown)".into());
    let issuer = server
        .as_ref()
        .map(|s| cn_of(&s.issuer))
        .unwrap_or_else(|| "(unknown)".into());
    let detail = format!("{ce:?}");
    let d = |code: &str, cause, fix| Diagnosis::new(code, cause, fix, detail.clone());
    match ce {
        CertificateError::UnknownIssuer => d(
            "server-untrusted",
            format!("the server's certificate \"{subject}\" is issued by \"{issuer}\", which this device does not trust"),
            match ep.peer {
                PeerKind::LocalHub => "the test trusts the local hub's CA of this workspace by itself, so the hub running now uses a certificate from another (stale) hub directory: restart the hub".into(),
                PeerKind::AzureHub => "update the system trust store: IoT Hub's certificates chain to DigiCert Global Root G2 (or give that root as the server's trust anchor if the store lacks it)".into(),
                PeerKind::Broker => format!("give the CA \"{issuer}\" that issued the broker's certificate as the server's trust anchor"),
                PeerKind::AwsLocal => "the test trusts the local AWS IoT Core's TLS CA of this workspace, so the one running now uses another: stop it and start it again in this workspace".into(),
                PeerKind::AwsIot => format!("give {AWS_ROOT} (https://www.amazontrust.com/repository/AmazonRootCA1.pem) as the server's trust anchor, or update the system trust store"),
            },
        )
        .with(Some(match ep.peer {
            PeerKind::LocalHub => ConnectRemedy::RestartHub,
            PeerKind::AzureHub => ConnectRemedy::ServerCa { issuer: AZURE_ROOT.into() },
            PeerKind::Broker | PeerKind::AwsLocal => ConnectRemedy::ServerCa { issuer: issuer.clone() },
            PeerKind::AwsIot => ConnectRemedy::ServerCa { issuer: AWS_ROOT.into() },
        })),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let names = cx.server_cert.and_then(sans_of).unwrap_or_else(|| "no subject alternative names".into());
            let is_ip = ep.host.parse::<std::net::IpAddr>().is_ok();
            d(
                "server-name-mismatch",
                format!("the server's certificate \"{subject}\" is for {names}, not \"{}\" (the TLS server name is the host you connect to)", ep.host),
                if is_ip {
                    format!("connect with a name the certificate lists, or re-issue the server certificate with SAN IP:{} (an IP address needs an IP SAN)", ep.host)
                } else {
                    format!("connect with a name the certificate lists, or re-issue the server certificate with SAN DNS:{}", ep.host)
                },
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => d(
            "server-expired",
            format!(
                "the server's certificate \"{subject}\" expired{}",
                server.as_ref().map(|s| format!(" on {}", s.not_after)).unwrap_or_default()
            ),
            "renew the broker's certificate (or check this machine's clock)".into(),
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            d("server-not-yet-valid", format!("the server's certificate \"{subject}\" is not valid yet"), "check this machine's clock, or re-issue the broker's certificate with an earlier start".into())
        }
        other if format!("{other:?}").contains("CaUsedAsEndEntity") => d(
            "server-cert-is-ca",
            format!("the server's certificate \"{subject}\" is a CA certificate (CA:TRUE) used as a TLS server certificate, which TLS clients refuse"),
            "re-issue the broker's certificate as a leaf (basicConstraints CA:FALSE, EKU serverAuth) under that CA".into(),
        ),
        other => d("server-cert", format!("the server's certificate \"{subject}\" did not verify: {other:?}"), "look closely at the broker's certificate and re-issue it".into()).with(Some(ConnectRemedy::InspectServerCert)),
    }
}

/// The peer refused our client certificate (a TLS alert).
fn client_refused(a: AlertDescription, step: Step, cx: &Context<'_>) -> Diagnosis {
    let id = cx.identity;
    let ep = cx.endpoint;
    let dev = &id.leaf().name;
    let who = match ep.peer {
        PeerKind::LocalHub => "the local hub",
        PeerKind::AzureHub => "the hub",
        PeerKind::Broker => "the broker",
        PeerKind::AwsLocal => "the local AWS IoT Core",
        PeerKind::AwsIot => "AWS IoT Core",
    };
    let when = if step == Step::TlsHandshake {
        "during the TLS handshake"
    } else {
        "after the handshake (TLS 1.3 sends it while the client waits for CONNACK)"
    };
    let detail = format!("TLS alert {} received {when}", alert_name(a));
    let d = |code: &str, cause, fix| Diagnosis::new(code, cause, fix, detail.clone());
    let client_side = matches!(
        a,
        AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateRequired
            | AlertDescription::CertificateRevoked
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied
            | AlertDescription::DecryptError
            | AlertDescription::HandshakeFailure
    );
    if !client_side {
        return d(
            "tls-alert",
            format!("{who} ended the TLS connection with alert {}", alert_name(a)),
            "check that the peer supports TLS 1.2 or 1.3 and the device's key type (ec-p256 works everywhere)".into(),
        );
    }
    // Which certificate is out of date, if any: ours first, then each CA we sent.
    if let Some((cause, fix, remedy)) = expired_in_chain(id, who) {
        return d("expired", cause, fix).with(remedy);
    }
    if a == AlertDescription::CertificateExpired {
        return d(
            "expired",
            format!(
                "{who} says a certificate in the chain of \"{dev}\" is expired, though none is by this machine's clock"
            ),
            "compare the clocks of this machine and the peer; renew certificates close to expiry"
                .into(),
        );
    }
    let missing = id.missing_intermediates();
    let root = id.root().map(|r| r.name.clone()).unwrap_or_else(|| {
        cn_of(
            &id.sent
                .last()
                .map(|c| c.view.issuer.clone())
                .unwrap_or_default(),
        )
    });
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|c| format!("\"{}\"", c.name)).collect();
        return d(
            "chain-incomplete",
            format!(
                "{who} cannot build a chain to a CA it trusts: \"{dev}\" was sent without its intermediate {}",
                names.join(", ")
            ),
            format!(
                "send the full chain, leaf then {} (put them after the leaf in the device's certificate file, or test the workspace device, which sends them)",
                names.join(", ")
            ),
        )
        .with(Some(ConnectRemedy::SendChain {
            intermediates: missing.iter().map(|c| c.name.clone()).collect(),
        }));
    }
    if id.leaf().view.self_signed {
        let (sha1, sha256) = crate::pki::thumbprints(&id.leaf().der);
        return d(
            "unknown-self-signed",
            format!(
                "{who} does not trust the self-signed certificate of \"{dev}\" (alert {})",
                alert_name(a)
            ),
            match ep.peer {
                PeerKind::Broker => format!(
                    "add \"{dev}\"'s certificate to the broker's cafile, or issue the device under a CA the broker trusts"
                ),
                _ => format!(
                    "register \"{}\" as an X.509 self-signed device with thumbprint {sha1} (SHA-1) or {sha256} (SHA-256)",
                    id.device_id
                ),
            },
        )
        .with((ep.peer == PeerKind::LocalHub).then(|| ConnectRemedy::RegisterDevice {
            device: id.device_id.clone(),
            self_signed: Some(Thumbprint::of(id)),
        }));
    }
    let (code, cause, fix, remedy) = untrusted_ca(a, who, &root, cx);
    d(code, cause, fix).with(remedy)
}

/// The first certificate sent that is out of date by this machine's clock, as a refusal's cause,
/// fix and remedy.
fn expired_in_chain(id: &Identity, who: &str) -> Option<(String, String, Option<ConnectRemedy>)> {
    let c = id
        .sent
        .iter()
        .find(|c| c.view.status != crate::pki::inspect::ValidityStatus::Valid)?;
    let is_leaf = std::ptr::eq(c, id.leaf());
    let what = if is_leaf {
        format!("device certificate \"{}\"", c.name)
    } else {
        format!("CA certificate \"{}\" in the chain sent", c.name)
    };
    let (state, date) = match c.view.status {
        crate::pki::inspect::ValidityStatus::NotYetValid => {
            ("is not valid until", &c.view.not_before)
        }
        _ => ("expired on", &c.view.not_after),
    };
    let (fix, remedy) = if is_leaf {
        renew_fix(id)
    } else {
        // A workspace device's CAs are workspace entities of the same name.
        let remedy = id.workspace_name().map(|_| ConnectRemedy::Renew {
            name: c.name.clone(),
            then_update_hub: None,
        });
        (
            format!(
                "renew \"{}\" and re-issue the certificates under it",
                c.name
            ),
            remedy,
        )
    };
    Some((
        format!("{who} refused {what}: it {state} {date}"),
        fix,
        remedy,
    ))
}

/// The peer does not trust the CA that issued the device: the code, cause, fix and remedy,
/// naming what the peer accepts when it said.
fn untrusted_ca(
    a: AlertDescription,
    who: &str,
    root: &str,
    cx: &Context<'_>,
) -> (&'static str, String, String, Option<ConnectRemedy>) {
    let id = cx.identity;
    let dev = &id.leaf().name;
    let issuer = id.leaf_issuer_name();
    let hint = if cx.acceptable_cas.is_empty() {
        String::new()
    } else {
        format!(
            " (it accepts certificates from: {})",
            cx.acceptable_cas
                .iter()
                .map(|c| cn_of(c))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let code = if a == AlertDescription::UnknownCA {
        "unknown-ca"
    } else {
        "client-cert-refused"
    };
    let cause = format!(
        "{who} does not trust the CA that issued \"{dev}\"{hint} (alert {})",
        alert_name(a)
    );
    let fix = match cx.endpoint.peer {
        PeerKind::Broker => format!(
            "add \"{root}\" to the broker's cafile, or issue \"{dev}\" under a CA the broker trusts"
        ),
        _ if issuer != root => format!(
            "register and verify \"{root}\" on the hub, or send the intermediate \"{issuer}\" if the hub trusts that"
        ),
        _ => format!(
            "register \"{root}\" with the hub and prove possession of it with a verification certificate, then connect again"
        ),
    };
    let remedy = match cx.endpoint.peer {
        PeerKind::Broker => None,
        _ => Some(ConnectRemedy::ProveCa { ca: root.into() }),
    };
    (code, cause, fix, remedy)
}

fn connack(code: u8, hub_reason: Option<&super::HubRefusal>, cx: &Context<'_>) -> Diagnosis {
    let id = cx.identity;
    let ep = cx.endpoint;
    let detail = format!("CONNACK return code {}", connack_text(code));
    let d = |c: String, cause: String, fix: String| Diagnosis {
        code: c,
        cause,
        fix,
        detail: detail.clone(),
        remedy: None,
    };
    let c = format!("connack-{code}");
    if let Some(r) = hub_reason {
        // The local hub knows exactly why; say it, and the fix for that reason.
        let (fix, remedy) = hub_fix(&r.kind, id);
        return d(
            format!("hub-{}", r.kind),
            format!(
                "the local hub refused \"{}\" ({}): {}",
                id.device_id,
                connack_text(code),
                r.reason
            ),
            fix,
        )
        .with(remedy);
    }
    match (ep.peer, code) {
        (PeerKind::AzureHub, 4 | 5) => d(c, format!("IoT Hub {} refused device \"{}\" ({}) and gives no reason", ep.host, id.device_id, connack_text(code)), azure_checklist(id, ep)),
        (PeerKind::LocalHub, _) => {
            // A hub in another process did not say why; its registry on disk does.
            let likely = cx.preflight.iter().find(|f| f.severity == crate::pki::lint::Severity::Error);
            match likely {
                Some(f) => d(
                    c,
                    format!("the local hub refused \"{}\" ({}); its registry shows why: {}", id.device_id, connack_text(code), f.message),
                    "fix that (the hub re-reads its registry on every CONNECT) and connect again; the running hub's log has the hub's own sentence".into(),
                )
                .with(preflight_remedy(f.code, id).or(Some(ConnectRemedy::HubLog))),
                None => d(
                    c,
                    format!("the local hub refused \"{}\" ({})", id.device_id, connack_text(code)),
                    "read the running hub's log for the exact reason, or stop it and test with no hub running: the test then starts the hub in-process and reports the reason".into(),
                )
                .with(Some(ConnectRemedy::HubLog)),
            }
        }
        (_, 2) => d(c, format!("{} rejected the client id \"{}\"", ep.display(), id.device_id), "use a client id the broker allows (MQTT 3.1.1 brokers may limit length and characters)".into()),
        (_, 3) => d(c, format!("{} is up but the MQTT service is unavailable", ep.display()), "try again later; check the broker's log".into()),
        (_, 1) => d(c, format!("{} does not speak MQTT 3.1.1", ep.display()), "use a broker that accepts MQTT 3.1.1 (protocol level 4)".into()),
        (_, _) => d(
            c,
            format!("{} refused client \"{}\" ({})", ep.display(), id.device_id, connack_text(code)),
            format!(
                "allow identity \"{}\" in the broker's configuration (Mosquitto: use_identity_as_username maps the CN to the user name; check acl_file and allow_anonymous)",
                id.leaf().view.cn.clone().unwrap_or_default()
            ),
        ),
    }
}

/// How to renew an expired (or not yet valid) device certificate: a workspace device renews in
/// place (same key and profile, issuer and thumbprint slots kept).
fn renew_fix(id: &Identity) -> (String, Option<ConnectRemedy>) {
    let self_signed = id.leaf().view.self_signed;
    match id.workspace_name() {
        Some(name) => (
            if self_signed {
                format!(
                    "renew \"{name}\" in the workspace (same key and profile), then register its new thumbprint for device \"{}\" with the hub",
                    id.device_id
                )
            } else {
                format!(
                    "renew \"{name}\" in the workspace (same key and profile); the hub needs no change for CA-signed devices"
                )
            },
            Some(ConnectRemedy::Renew {
                name: name.to_string(),
                then_update_hub: self_signed.then(|| id.device_id.clone()),
            }),
        ),
        None => (
            format!(
                "renew the certificate in {} (a workspace device renews in place); the hub needs no change for CA-signed devices",
                id.source
            ),
            None,
        ),
    }
}

/// The fix and remedy for each of the local hub's refusal kinds (`crate::hub::Refusal::kind`).
fn hub_fix(kind: &str, id: &Identity) -> (String, Option<ConnectRemedy>) {
    use ConnectRemedy as R;
    let dev = &id.device_id;
    let root = id
        .root()
        .map(|r| r.name.clone())
        .unwrap_or_else(|| id.leaf_issuer_name());
    let (sha1, _) = crate::pki::thumbprints(&id.leaf().der);
    let reissue = |replace: bool| {
        Some(R::IssueDevice {
            device: dev.clone(),
            replace,
        })
    };
    match kind {
        "no-certificate" => (
            "connect with a client certificate: a workspace device, or a device's certificate and key files".into(),
            Some(R::ClientCertificate),
        ),
        "bad-certificate" => (
            "send a DER X.509 certificate (look closely at the device's certificate file)".into(),
            Some(R::InspectDeviceCert),
        ),
        "username" | "username-mismatch" => (
            format!(
                "use client id \"{dev}\" and username {{host}}/{dev}/?api-version={} (the test's Azure flavor sends these)",
                crate::azure::API_VERSION
            ),
            Some(R::AzureFlavor),
        ),
        "unknown-device" => {
            let self_signed = id.leaf().view.self_signed;
            (
                if self_signed {
                    format!(
                        "register the device \"{dev}\" with the hub as self-signed, by its certificate's thumbprint {sha1}"
                    )
                } else {
                    format!("register the device \"{dev}\" with the hub, authenticated by its CA")
                },
                Some(R::RegisterDevice {
                    device: dev.clone(),
                    self_signed: self_signed.then(|| Thumbprint::of(id)),
                }),
            )
        }
        "disabled" => (
            format!("enable the device \"{dev}\" on the hub"),
            Some(R::EnableDevice {
                device: dev.clone(),
            }),
        ),
        "cn-mismatch" | "several-cns" => (
            format!(
                "issue the device certificate with a single CN = \"{dev}\" exactly (case-sensitive), under a CA"
            ),
            reissue(false),
        ),
        "expired" | "not-yet-valid" => renew_fix(id),
        "unverified" => (
            format!(
                "prove possession of \"{root}\" to the hub with a verification certificate (the hub's code as CN, signed by the CA's key), or register it as verified"
            ),
            Some(R::ProveCa { ca: root }),
        ),
        "missing-intermediate"
            if id.missing_intermediates().is_empty()
                && id.root().is_some()
                && !id.sent.iter().any(|c| c.view.self_signed) =>
        {
            (
                format!(
                    "\"{root}\" is a root (devices never send it), so the hub does not know it: register it with the hub and prove possession of it (or register it as verified)"
                ),
                Some(R::UploadCa { ca: root }),
            )
        }
        "missing-intermediate" => {
            let missing = id.missing_intermediates();
            let names: Vec<String> = missing.iter().map(|c| format!("\"{}\"", c.name)).collect();
            let which = if names.is_empty() {
                "the intermediates".to_string()
            } else {
                names.join(", ")
            };
            (
                format!(
                    "send {which} after the leaf (workspace devices send them; for files, append them to the device's certificate file), or register the intermediate with the hub"
                ),
                (!missing.is_empty()).then(|| R::SendChain {
                    intermediates: missing.iter().map(|c| c.name.clone()).collect(),
                }),
            )
        }
        "unknown-root" => (
            format!(
                "register the CA \"{root}\" with the hub and prove possession of it (or register it as verified)"
            ),
            Some(R::UploadCa { ca: root }),
        ),
        "thumbprint" => (
            match id.workspace_name() {
                Some(name) => format!(
                    "register this certificate's thumbprint {sha1} for device \"{dev}\" on the hub: take both slots from the workspace device \"{name}\", or put it in the secondary slot to roll just one"
                ),
                None => format!(
                    "register this certificate's thumbprint {sha1} in the secondary slot of device \"{dev}\" on the hub (or in the primary, replacing the other slot)"
                ),
            },
            Some(R::SlotThumbprint {
                device: dev.clone(),
                thumbprint: Thumbprint::of(id),
            }),
        ),
        "ca-as-device" => (
            format!(
                "give \"{dev}\" a device certificate (CA:FALSE, no keyCertSign), issued under a CA; a CA's certificate never connects as a device"
            ),
            reissue(true),
        ),
        "issuer-not-ca" | "issuer-cannot-sign" => (
            format!(
                "issue \"{dev}\" again from a CA, replacing the one in the workspace; a device certificate can never sign another one"
            ),
            reissue(true),
        ),
        "pathlen-exceeded" => (
            "re-issue the CA the hub names with a larger path length, or issue the device from a CA nearer the root".into(),
            Some(R::Pathlen),
        ),
        "not-client-auth" => (
            format!(
                "issue \"{dev}\" again with extendedKeyUsage clientAuth, replacing the one in the workspace"
            ),
            reissue(true),
        ),
        "weak-crypto" => (
            "re-issue the certificate the hub names with an EC P-256 (default) or RSA 2048+ key and a SHA-256 signature".into(),
            None,
        ),
        _ => ("fix what the hub names and connect again".into(), None),
    }
}

#[cfg(test)]
#[allow(clippy::too_many_lines)] // a test table reads top to bottom
mod tests {
    use super::*;

    /// A CONNACK refusal the hub gave no reason for.
    fn connack(code: u8) -> FailureKind {
        FailureKind::Connack {
            code,
            hub_reason: None,
        }
    }

    fn wrap(e: rustls::Error) -> io::Error {
        // How tokio-rustls hands rustls errors to the caller.
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn tls_alerts_and_certificate_errors_are_classified() {
        let e = wrap(rustls::Error::AlertReceived(AlertDescription::UnknownCA));
        assert_eq!(
            classify_io(Step::MqttConnect, &e),
            FailureKind::Alert(AlertDescription::UnknownCA)
        );
        let e = wrap(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert_eq!(
            classify_io(Step::TlsHandshake, &e),
            FailureKind::ServerCert(CertificateError::UnknownIssuer)
        );
        let e = wrap(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ));
        assert_eq!(
            classify_io(Step::TlsHandshake, &e),
            FailureKind::ServerCert(CertificateError::NotValidForName)
        );
        let e = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(classify_io(Step::MqttConnect, &e), FailureKind::Closed);
    }

    #[tokio::test]
    async fn real_refused_connection_is_classified() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = tokio::net::TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(classify_io(Step::TcpConnect, &e), FailureKind::Refused);
    }

    #[tokio::test]
    async fn real_dns_failure_is_classified() {
        // .invalid never resolves (RFC 6761); bounded in case the resolver hangs.
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::lookup_host("no-such-hub.invalid:8883"),
        )
        .await;
        if let Ok(Err(e)) = r {
            assert!(matches!(
                classify_io(Step::Resolve, &e),
                FailureKind::Dns(_)
            ));
        }
    }

    use crate::mqtt::identity::ChainCert;
    use crate::pki::{CaHandle, IssueSpec, KeyAlg, Profile, Validity, issue, subject};

    fn cc(name: &str, der: Vec<u8>) -> ChainCert {
        ChainCert {
            name: name.into(),
            view: crate::pki::inspect::CertView::from_der(&der).unwrap(),
            der,
        }
    }

    fn spec(cn: &str, profile: Profile, validity: Validity) -> IssueSpec {
        IssueSpec {
            subject: subject::cn_only(cn).unwrap(),
            profile,
            validity,
        }
    }

    fn leaf_profile() -> Profile {
        Profile::Device {
            eku: Default::default(),
            sans: vec![],
        }
    }

    /// A CA certificate for `cn` issued by `issuer` (self-signed without one), valid 30 days,
    /// with the handle that signs with it.
    fn ca(cn: &str, profile: Profile, issuer: Option<&CaHandle>) -> (issue::Issued, CaHandle) {
        let made = issue::issue(
            &spec(cn, profile, Validity::days(30)),
            KeyAlg::EcP256,
            issuer,
        )
        .unwrap();
        let handle =
            CaHandle::new(cn, made.cert_der.clone(), made.key_pem.as_deref().unwrap()).unwrap();
        (made, handle)
    }

    /// "sensor-7" issued by `issuer`, with the certificates above it (nearest first).
    fn device_under(issuer: &CaHandle, above: Vec<ChainCert>) -> Identity {
        let dev_spec = spec("sensor-7", leaf_profile(), Validity::days(30));
        let dev = issue::issue(&dev_spec, KeyAlg::EcP256, Some(issuer)).unwrap();
        Identity {
            device_id: "sensor-7".into(),
            source: "test".into(),
            sent: vec![cc("sensor-7", dev.cert_der)],
            above,
            key_pem: dev.key_pem.unwrap(),
            target: None,
            workspace: None,
        }
    }

    /// Root "Contoso Root" -> device "sensor-7", as the workspace would hold them.
    fn identity() -> Identity {
        let (root, root_ca) = ca("Contoso Root", Profile::Root { pathlen: None }, None);
        device_under(&root_ca, vec![cc("Contoso Root", root.cert_der)])
    }

    /// The same identity, loaded from the workspace device "sensor-7".
    fn from_workspace(mut id: Identity) -> Identity {
        id.source = "workspace device \"sensor-7\"".into();
        id
    }

    /// Root -> intermediate "Line 2" -> "sensor-7", the leaf sent alone.
    fn without_intermediate() -> Identity {
        let (root, root_ca) = ca("Contoso Root", Profile::Root { pathlen: None }, None);
        let (mid, mid_ca) = ca(
            "Line 2",
            Profile::Intermediate { pathlen: Some(0) },
            Some(&root_ca),
        );
        device_under(
            &mid_ca,
            vec![
                cc("Line 2", mid.cert_der),
                cc("Contoso Root", root.cert_der),
            ],
        )
    }

    /// A self-signed "sensor-7" from the workspace; `expired`: its validity ended in 2021.
    fn self_signed(expired: bool) -> Identity {
        let validity = if expired {
            Validity::explicit(
                ::time::macros::datetime!(2020-01-01 00:00:00 UTC),
                ::time::macros::datetime!(2021-01-01 00:00:00 UTC),
            )
            .unwrap()
        } else {
            Validity::days(30)
        };
        let dev = issue::issue(
            &spec("sensor-7", leaf_profile(), validity),
            KeyAlg::EcP256,
            None,
        )
        .unwrap();
        Identity {
            device_id: "sensor-7".into(),
            source: "workspace device \"sensor-7\"".into(),
            sent: vec![cc("sensor-7", dev.cert_der)],
            above: vec![],
            key_pem: dev.key_pem.unwrap(),
            target: None,
            workspace: None,
        }
    }

    /// Where a test goes: "local" is the local hub, anything else as `--to` parses it.
    fn endpoint(to: &str) -> Endpoint {
        if to == "local" {
            return Endpoint {
                host: "127.0.0.1".into(),
                port: 8883,
                peer: PeerKind::LocalHub,
            };
        }
        Endpoint::parse(to).unwrap()
    }

    fn run_with(
        id: &Identity,
        preflight: &[Finding],
        kind: FailureKind,
        step: Step,
        to: &str,
    ) -> Diagnosis {
        let ep = endpoint(to);
        let cx = Context {
            identity: id,
            endpoint: &ep,
            server_cert: None,
            acceptable_cas: &[],
            preflight,
            timeout: Duration::from_secs(10),
        };
        let d = diagnose(&Failure::new(step, kind), &cx);
        // Domain words only: the faces add the flag, the command or the key.
        for text in [&d.cause, &d.fix] {
            assert!(
                !text.contains("--")
                    && !text.contains("chainsmith ")
                    && !text.contains("hub serve"),
                "{}: a flag or command in {text:?}",
                d.code
            );
        }
        d
    }

    fn run(kind: FailureKind, step: Step, to: &str) -> Diagnosis {
        run_with(&identity(), &[], kind, step, to)
    }

    #[test]
    fn azure_connack_5_gives_the_checklist_in_order() {
        let d = run(
            FailureKind::Connack {
                code: 5,
                hub_reason: None,
            },
            Step::MqttConnect,
            "myhub.azure-devices.net",
        );
        assert_eq!(d.code, "connack-5");
        assert!(d.cause.contains("gives no reason"), "{}", d.cause);
        let order = [
            "(1) device \"sensor-7\" exists in hub myhub.azure-devices.net",
            "(2)",
            "\"X.509 CA signed\"",
            "Contoso Root",
            "(3)",
            "(4)",
            "(5)",
        ];
        let mut at = 0;
        for needle in order {
            let i = d.fix[at..]
                .find(needle)
                .unwrap_or_else(|| panic!("{needle:?} missing or out of order in {}", d.fix));
            at += i;
        }
    }

    #[test]
    fn unknown_ca_from_azure_names_the_root_to_register() {
        let d = run(
            FailureKind::Alert(AlertDescription::UnknownCA),
            Step::MqttConnect,
            "myhub.azure-devices.net",
        );
        assert_eq!(d.code, "unknown-ca");
        assert!(
            d.cause
                .contains("does not trust the CA that issued \"sensor-7\""),
            "{}",
            d.cause
        );
        assert!(
            d.fix.contains(
                "register \"Contoso Root\" with the hub and prove possession of it with a verification certificate"
            ),
            "{}",
            d.fix
        );
        assert!(d.detail.contains("unknown_ca"));
    }

    #[test]
    fn timeouts_say_which_step_and_what_to_check() {
        let d = run(
            FailureKind::Timeout(Duration::from_secs(10)),
            Step::TcpConnect,
            "myhub.azure-devices.net",
        );
        assert!(
            d.cause
                .contains("port 8883 is blocked by a firewall or the host is wrong"),
            "{}",
            d.cause
        );
        let d = run(
            FailureKind::Timeout(Duration::from_secs(10)),
            Step::MqttConnect,
            "mqtts://b.example:8883",
        );
        assert!(d.cause.contains("no CONNACK within 10 s"), "{}", d.cause);
    }

    #[test]
    fn local_hub_reason_is_the_cause() {
        let r = crate::mqtt::HubRefusal {
            kind: "disabled".into(),
            reason: "device sensor-7: device disabled".into(),
        };
        let d = run(
            FailureKind::Connack {
                code: 5,
                hub_reason: Some(r),
            },
            Step::MqttConnect,
            "mqtts://127.0.0.1:1",
        );
        assert_eq!(d.code, "hub-disabled");
        assert!(
            d.cause.ends_with("device sensor-7: device disabled"),
            "{}",
            d.cause
        );
        assert_eq!(d.fix, "enable the device \"sensor-7\" on the hub");
        assert_eq!(
            d.remedy,
            Some(ConnectRemedy::EnableDevice {
                device: "sensor-7".into()
            })
        );
    }

    const AZURE: &str = "myhub.azure-devices.net";
    const BROKER: &str = "mqtts://b.example:8883";

    /// Every failure kind at every peer it can meet: domain words (checked in `run_with`) and
    /// the remedy a face turns into its hint.
    #[test]
    fn every_failure_speaks_domain_words_with_its_remedy() {
        use ConnectRemedy as R;
        use FailureKind as K;
        let ca = identity();
        let ss = self_signed(false);
        let mid = without_intermediate();
        let expired = self_signed(true);
        let contoso = || {
            Some(R::ProveCa {
                ca: "Contoso Root".into(),
            })
        };
        let alert = |a| K::Alert(a);
        let timeout = || K::Timeout(Duration::from_secs(10));
        let more_time = Some(R::MoreTime { timeout_ms: 10_000 });
        let untrusted = || K::ServerCert(CertificateError::UnknownIssuer);
        #[rustfmt::skip] // A table: one case a line.
        let cases: Vec<(&Identity, K, Step, &str, Option<R>)> = vec![
            (&ca, K::Setup("the key is not PEM".into()), Step::Lint, BROKER, None),
            (&ca, K::LintErrors(2), Step::Lint, "local", Some(R::NotStrict)),
            (&ca, K::Dns("no such host".into()), Step::Resolve, AZURE, None),
            (&ca, K::Dns("no such host".into()), Step::Resolve, BROKER, None),
            (&ca, K::Refused, Step::TcpConnect, "local", Some(R::StartHub)),
            (&ca, K::Refused, Step::TcpConnect, AZURE, None),
            (&ca, K::Refused, Step::TcpConnect, BROKER, None),
            (&ca, timeout(), Step::Resolve, AZURE, None),
            (&ca, timeout(), Step::TcpConnect, AZURE, None),
            (&ca, timeout(), Step::TlsHandshake, BROKER, None),
            (&ca, timeout(), Step::MqttConnect, BROKER, more_time.clone()),
            (&ca, timeout(), Step::Subscribe, BROKER, more_time.clone()),
            (&ca, untrusted(), Step::TlsHandshake, "local", Some(R::RestartHub)),
            (&ca, untrusted(), Step::TlsHandshake, AZURE, Some(R::ServerCa { issuer: "DigiCert Global Root G2".into() })),
            (&ca, untrusted(), Step::TlsHandshake, BROKER, Some(R::ServerCa { issuer: "(unknown)".into() })),
            (&ca, K::ServerCert(CertificateError::NotValidForName), Step::TlsHandshake, BROKER, None),
            (&ca, K::ServerCert(CertificateError::Expired), Step::TlsHandshake, BROKER, None),
            (&ca, K::ServerCert(CertificateError::NotValidYet), Step::TlsHandshake, BROKER, None),
            (&ca, K::ServerCert(CertificateError::BadEncoding), Step::TlsHandshake, BROKER, Some(R::InspectServerCert)),
            (&ca, alert(AlertDescription::ProtocolVersion), Step::TlsHandshake, BROKER, None),
            (&ca, alert(AlertDescription::UnknownCA), Step::MqttConnect, AZURE, contoso()),
            (&ca, alert(AlertDescription::BadCertificate), Step::TlsHandshake, "local", contoso()),
            (&ca, alert(AlertDescription::UnknownCA), Step::MqttConnect, BROKER, None),
            (&mid, alert(AlertDescription::UnknownCA), Step::MqttConnect, BROKER, Some(R::SendChain { intermediates: vec!["Line 2".into()], })),
            (&ss, alert(AlertDescription::UnknownCA), Step::MqttConnect, "local", Some(R::RegisterDevice { device: "sensor-7".into(), self_signed: Some(Thumbprint::of(&ss)), })),
            (&ss, alert(AlertDescription::UnknownCA), Step::MqttConnect, AZURE, None),
            (&ss, alert(AlertDescription::UnknownCA), Step::MqttConnect, BROKER, None),
            (&expired, alert(AlertDescription::CertificateExpired), Step::MqttConnect, "local", Some(R::Renew { name: "sensor-7".into(), then_update_hub: Some("sensor-7".into()), })),
            (&ca, alert(AlertDescription::CertificateExpired), Step::MqttConnect, BROKER, None),
            (&ca, K::Tls("no cipher suites in common".into()), Step::TlsHandshake, BROKER, None),
            (&ca, K::Closed, Step::MqttConnect, "local", Some(R::HubLog)),
            (&ca, K::Closed, Step::MqttConnect, AZURE, None),
            (&ca, K::Closed, Step::MqttConnect, BROKER, None),
            (&ca, K::Closed, Step::Telemetry, BROKER, None),
            (&ca, connack(5), Step::MqttConnect, AZURE, None),
            (&ca, connack(5), Step::MqttConnect, "local", Some(R::HubLog)),
            (&ca, connack(1), Step::MqttConnect, BROKER, None),
            (&ca, connack(2), Step::MqttConnect, BROKER, None),
            (&ca, connack(3), Step::MqttConnect, BROKER, None),
            (&ca, connack(5), Step::MqttConnect, BROKER, None),
            (&ca, K::SubscribeRefused("devices/x".into()), Step::Subscribe, BROKER, None),
            (&ca, K::SubscribeRefused("devices/x".into()), Step::Subscribe, AZURE, None),
            (&ca, K::Protocol("HTTP/1.1 404".into()), Step::WebSocketUpgrade, AZURE, None),
            (&ca, K::Protocol("not MQTT".into()), Step::MqttConnect, BROKER, None),
            (&ca, K::Io("broken".into()), Step::Telemetry, BROKER, None),
        ];
        for (id, kind, step, to, want) in cases {
            let what = format!("{kind:?} at {step:?} to {to}");
            let d = run_with(id, &[], kind, step, to);
            assert_eq!(d.remedy, want, "{what}: {d:#?}");
        }
    }

    /// A refusal by a hub in another process: the pre-flight finding from its registry names
    /// the fix, and its remedy comes with it.
    #[test]
    fn a_refusal_known_from_the_registry_takes_the_findings_remedy() {
        use crate::pki::lint::Severity;
        let id = from_workspace(identity());
        let finding = |code| Finding {
            severity: Severity::Error,
            code,
            message: "device \"sensor-7\" is disabled in the local hub; enable it".into(),
        };
        let refused = FailureKind::Connack {
            code: 5,
            hub_reason: None,
        };
        let d = run_with(
            &id,
            &[finding("hub-device-disabled")],
            refused.clone(),
            Step::MqttConnect,
            "local",
        );
        assert_eq!(
            d.remedy,
            Some(ConnectRemedy::EnableDevice {
                device: "sensor-7".into()
            })
        );
        let d = run_with(
            &id,
            &[finding("hub-thumbprint")],
            refused,
            Step::MqttConnect,
            "local",
        );
        assert_eq!(
            d.remedy,
            Some(ConnectRemedy::SlotThumbprint {
                device: "sensor-7".into(),
                thumbprint: Thumbprint::of(&id),
            })
        );
        assert_eq!(
            preflight_remedies(
                &[finding("hub-device-unregistered"), finding("expired")],
                &id
            ),
            vec![FindingRemedy {
                code: "hub-device-unregistered",
                remedy: ConnectRemedy::RegisterDevice {
                    device: "sensor-7".into(),
                    self_signed: None
                },
            }]
        );
    }

    /// Every refusal kind of the local hub: its fix in domain words, with the remedy.
    #[test]
    fn every_hub_refusal_speaks_domain_words_with_its_remedy() {
        use ConnectRemedy as R;
        let ca = from_workspace(identity());
        let ss = self_signed(false);
        let mid = without_intermediate();
        let file = identity();
        let dev = || "sensor-7".to_string();
        let cases: Vec<(&Identity, &str, Option<R>)> = vec![
            (&ca, "no-certificate", Some(R::ClientCertificate)),
            (&ca, "bad-certificate", Some(R::InspectDeviceCert)),
            (&ca, "username", Some(R::AzureFlavor)),
            (&ca, "username-mismatch", Some(R::AzureFlavor)),
            (
                &ca,
                "unknown-device",
                Some(R::RegisterDevice {
                    device: dev(),
                    self_signed: None,
                }),
            ),
            (
                &ss,
                "unknown-device",
                Some(R::RegisterDevice {
                    device: dev(),
                    self_signed: Some(Thumbprint::of(&ss)),
                }),
            ),
            (&ca, "disabled", Some(R::EnableDevice { device: dev() })),
            (
                &ca,
                "cn-mismatch",
                Some(R::IssueDevice {
                    device: dev(),
                    replace: false,
                }),
            ),
            (
                &ca,
                "expired",
                Some(R::Renew {
                    name: dev(),
                    then_update_hub: None,
                }),
            ),
            (
                &ss,
                "not-yet-valid",
                Some(R::Renew {
                    name: dev(),
                    then_update_hub: Some(dev()),
                }),
            ),
            (&file, "expired", None),
            (
                &ca,
                "unverified",
                Some(R::ProveCa {
                    ca: "Contoso Root".into(),
                }),
            ),
            (
                &ca,
                "missing-intermediate",
                Some(R::UploadCa {
                    ca: "Contoso Root".into(),
                }),
            ),
            (
                &mid,
                "missing-intermediate",
                Some(R::SendChain {
                    intermediates: vec!["Line 2".into()],
                }),
            ),
            (
                &ca,
                "unknown-root",
                Some(R::UploadCa {
                    ca: "Contoso Root".into(),
                }),
            ),
            (
                &ss,
                "thumbprint",
                Some(R::SlotThumbprint {
                    device: dev(),
                    thumbprint: Thumbprint::of(&ss),
                }),
            ),
            (
                &file,
                "thumbprint",
                Some(R::SlotThumbprint {
                    device: dev(),
                    thumbprint: Thumbprint::of(&file),
                }),
            ),
            (
                &ca,
                "issuer-not-ca",
                Some(R::IssueDevice {
                    device: dev(),
                    replace: true,
                }),
            ),
            (
                &ca,
                "issuer-cannot-sign",
                Some(R::IssueDevice {
                    device: dev(),
                    replace: true,
                }),
            ),
            (&ca, "pathlen-exceeded", Some(R::Pathlen)),
            (
                &ca,
                "not-client-auth",
                Some(R::IssueDevice {
                    device: dev(),
                    replace: true,
                }),
            ),
            (&ca, "weak-crypto", None),
            (&ca, "registry", None),
        ];
        for (id, kind, want) in cases {
            let r = crate::mqtt::HubRefusal {
                kind: kind.into(),
                reason: format!("device sensor-7: refused ({kind})"),
            };
            let refused = FailureKind::Connack {
                code: 5,
                hub_reason: Some(r),
            };
            let d = run_with(id, &[], refused, Step::MqttConnect, "local");
            assert_eq!(d.code, format!("hub-{kind}"));
            assert_eq!(d.remedy, want, "{kind} for {}: {d:#?}", id.source);
        }
        // The facts the old sentences carried are still there.
        let with = |id: &Identity, kind: &str| {
            let r = crate::mqtt::HubRefusal {
                kind: kind.into(),
                reason: String::new(),
            };
            let f = FailureKind::Connack {
                code: 5,
                hub_reason: Some(r),
            };
            run_with(id, &[], f, Step::MqttConnect, "local").fix
        };
        let sha1 = Thumbprint::of(&ss).sha1;
        let fix = with(&ss, "thumbprint");
        assert!(fix.contains(&sha1) && fix.contains("\"sensor-7\""), "{fix}");
        assert!(with(&ca, "unverified").contains("\"Contoso Root\""));
        assert!(with(&mid, "missing-intermediate").contains("send \"Line 2\" after the leaf"));
        assert!(with(&ca, "cn-mismatch").contains("CN = \"sensor-7\""));
    }

    #[test]
    fn connack_texts() {
        assert_eq!(connack_text(5), "5 (not authorized)");
        assert_eq!(connack_text(2), "2 (identifier rejected)");
    }
}
