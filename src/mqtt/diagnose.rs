//! Diagnosis: every failure becomes one plain sentence of cause and one of fix.
//!
//! [`classify_io`] turns what the network stack returned (io errors wrapping rustls errors,
//! TLS alerts, refused connections) into a [`FailureKind`]; [`diagnose`] adds what we know
//! about the device, its chain and the peer to say which certificate and what to do.

use super::identity::{Identity, cn_of};
use super::{CertSummary, Endpoint, PeerKind, Step};
use rustls::{AlertDescription, CertificateError};
use serde::Serialize;
use std::io;
use std::time::Duration;

/// What went wrong, classified.
#[derive(Clone, Debug, PartialEq)]
pub enum FailureKind {
    /// The identity or the TLS configuration could not be built.
    Setup(String),
    /// `--strict` and the pre-flight lint found errors.
    LintErrors(usize),
    Dns(String),
    Refused,
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
        code: u8,
        hub_reason: Option<super::HubRefusal>,
    },
    SubscribeRefused(String),
    /// The peer spoke something that is not MQTT 3.1.1.
    Protocol(String),
    Io(String),
}

/// A failure at a step.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub step: Step,
    pub kind: FailureKind,
}

impl Failure {
    pub fn new(step: Step, kind: FailureKind) -> Failure {
        Failure { step, kind }
    }
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
    pub cause: String,
    pub fix: String,
    /// The raw error, for the curious.
    pub detail: String,
}

/// Classify what the network stack returned at `step`.
pub fn classify_io(step: Step, e: &io::Error) -> FailureKind {
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

pub fn classify_tls(e: &rustls::Error) -> FailureKind {
    match e {
        rustls::Error::AlertReceived(a) => FailureKind::Alert(*a),
        rustls::Error::InvalidCertificate(c) => FailureKind::ServerCert(c.clone()),
        other => FailureKind::Tls(other.to_string()),
    }
}

/// What the diagnosis knows besides the failure.
pub struct Context<'a> {
    pub identity: &'a Identity,
    pub endpoint: &'a Endpoint,
    pub server_cert: Option<&'a [u8]>,
    pub acceptable_cas: &'a [String],
    /// The pre-flight findings: against a running hub, its registry's view explains a refusal.
    pub preflight: &'a [crate::pki::lint::Finding],
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

pub fn connack_text(code: u8) -> String {
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
    let d = |code: &str, cause: String, fix: String, detail: String| Diagnosis {
        code: code.to_string(),
        cause,
        fix,
        detail,
    };
    match &f.kind {
        FailureKind::Setup(msg) => d("setup", format!("the test could not start: {msg}"), "fix the identity or the --ca file named above and run again".into(), msg.clone()),
        FailureKind::LintErrors(n) => d(
            "lint",
            format!("the pre-flight lint found {n} error(s) in the identity of \"{dev}\" and --strict is on"),
            "fix the findings listed above, or drop --strict to try the connection anyway".into(),
            String::new(),
        ),
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
                PeerKind::LocalHub => "start the local hub with `chainsmith hub serve`, or run `chainsmith connect DEVICE` with no running hub to start one in-process".into(),
                PeerKind::AzureHub => "IoT Hub takes MQTT over TLS on port 8883; check the host and port".into(),
                PeerKind::Broker => format!("start the broker or check the port (MQTT over TLS is usually 8883, not {})", ep.port),
            },
            String::new(),
        ),
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
                    "check that the port is an MQTT port and the broker is not overloaded; raise --timeout for slow links".into(),
                    String::new(),
                ),
                s => d("timeout", format!("{} did not complete within {t}", s.label()), "raise --timeout, or check the broker's load and the network".into(), String::new()),
            }
        }
        FailureKind::ServerCert(ce) => server_cert(ce, cx),
        FailureKind::Alert(a) => client_refused(*a, f.step, cx),
        FailureKind::Tls(detail) => d("tls", format!("the TLS handshake with {at} failed: {detail}"), "check that the port speaks TLS 1.2 or 1.3 and that the device's key type is supported by the peer".into(), detail.clone()),
        FailureKind::Closed => {
            let when = if f.step <= Step::MqttConnect { "before CONNACK" } else { "during the session" };
            let fix = match ep.peer {
                PeerKind::AzureHub => azure_checklist(id, ep),
                PeerKind::LocalHub => "look at the local hub's log (`chainsmith hub serve` prints each refusal with its reason)".into(),
                PeerKind::Broker if f.step <= Step::MqttConnect => format!(
                    "look at the broker's log: it most often means the client certificate of \"{dev}\" was refused (its CA is not in the broker's cafile, or the intermediate was not sent) or the client id is not allowed"
                ),
                PeerKind::Broker => "look at the broker's log: brokers close the connection on an ACL violation or a second connection with the same client id".into(),
            };
            d("closed", format!("{at} closed the connection {when} without giving a reason"), fix, String::new())
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
    let d = |code: &str, cause: String, fix: String| Diagnosis {
        code: code.into(),
        cause,
        fix,
        detail: detail.clone(),
    };
    match ce {
        CertificateError::UnknownIssuer => d(
            "server-untrusted",
            format!("the server's certificate \"{subject}\" is issued by \"{issuer}\", which this device does not trust"),
            match ep.peer {
                PeerKind::LocalHub => "pass --ca with the local hub's CA (chainsmith does this itself for --to local; a stale hub directory can cause it: restart the hub)".into(),
                PeerKind::AzureHub => "update the system trust store: IoT Hub's certificates chain to DigiCert Global Root G2 (pass --ca FILE with that root if the store lacks it)".into(),
                PeerKind::Broker => format!("pass --ca FILE with the CA \"{issuer}\" that issued the broker's certificate"),
            },
        ),
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
        other => d("server-cert", format!("the server's certificate \"{subject}\" did not verify: {other:?}"), "check the broker's certificate with `chainsmith inspect` and re-issue it".into()),
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
    };
    let when = if step == Step::TlsHandshake {
        "during the TLS handshake"
    } else {
        "after the handshake (TLS 1.3 sends it while the client waits for CONNACK)"
    };
    let detail = format!("TLS alert {} received {when}", alert_name(a));
    let d = |code: &str, cause: String, fix: String| Diagnosis {
        code: code.into(),
        cause,
        fix,
        detail: detail.clone(),
    };
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
    if let Some((cause, fix)) = expired_in_chain(id, who) {
        return d("expired", cause, fix);
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
                "send the full chain, leaf then {} (put them after the leaf in the --cert file, or connect the workspace device, which sends them)",
                names.join(", ")
            ),
        );
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
        );
    }
    let (code, cause, fix) = untrusted_ca(a, who, &root, cx);
    d(code, cause, fix)
}

/// The first certificate sent that is out of date by this machine's clock, as a refusal's cause
/// and fix.
fn expired_in_chain(id: &Identity, who: &str) -> Option<(String, String)> {
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
    let fix = if is_leaf {
        renew_fix(id)
    } else {
        format!(
            "renew \"{}\" and re-issue the certificates under it",
            c.name
        )
    };
    Some((format!("{who} refused {what}: it {state} {date}"), fix))
}

/// The peer does not trust the CA that issued the device: the code, cause and fix, naming what the
/// peer accepts when it said.
fn untrusted_ca(
    a: AlertDescription,
    who: &str,
    root: &str,
    cx: &Context<'_>,
) -> (&'static str, String, String) {
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
            "register and verify \"{root}\" on the hub (chainsmith new verification --issuer {root} --code CODE), then connect again"
        ),
    };
    (code, cause, fix)
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
    };
    let c = format!("connack-{code}");
    if let Some(r) = hub_reason {
        // The local hub knows exactly why; say it, and the fix for that reason.
        return d(
            format!("hub-{}", r.kind),
            format!(
                "the local hub refused \"{}\" ({}): {}",
                id.device_id,
                connack_text(code),
                r.reason
            ),
            hub_fix(&r.kind, id),
        );
    }
    match (ep.peer, code) {
        (PeerKind::AzureHub, 4 | 5) => d(c, format!("IoT Hub {} refused device \"{}\" ({}) and gives no reason", ep.host, id.device_id, connack_text(code)), azure_checklist(id, ep)),
        (PeerKind::LocalHub, _) => {
            // A running `hub serve` does not tell this process why; its registry on disk does.
            let likely = cx.preflight.iter().find(|f| f.severity == crate::pki::lint::Severity::Error);
            match likely {
                Some(f) => d(
                    c,
                    format!("the local hub refused \"{}\" ({}); its registry shows why: {}", id.device_id, connack_text(code), f.message),
                    "fix that (the hub re-reads its registry on every CONNECT) and connect again; the `hub serve` log has the hub's own sentence".into(),
                ),
                None => d(
                    c,
                    format!("the local hub refused \"{}\" ({})", id.device_id, connack_text(code)),
                    "read the `hub serve` log for the exact reason, or stop it and run `chainsmith connect DEVICE`, which starts the hub in-process and reports it".into(),
                ),
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

/// How to renew an expired (or not yet valid) device certificate: `chainsmith renew NAME`
/// for a workspace device (same key and profile, issuer and thumbprint slots kept).
fn renew_fix(id: &Identity) -> String {
    match id.workspace_name() {
        Some(name) => format!(
            "renew it: `chainsmith renew {name}` (the hub needs no change for CA-signed devices; for self-signed ones, then `chainsmith hub device update {} --from {name}`)",
            id.device_id
        ),
        None => format!(
            "renew the certificate in {} (a workspace device renews with `chainsmith renew NAME`); the hub needs no change for CA-signed devices",
            id.source
        ),
    }
}

/// The fix for each of the local hub's refusal kinds (`crate::hub::Refusal::kind`).
fn hub_fix(kind: &str, id: &Identity) -> String {
    let dev = &id.device_id;
    let root = id
        .root()
        .map(|r| r.name.clone())
        .unwrap_or_else(|| id.leaf_issuer_name());
    let (sha1, _) = crate::pki::thumbprints(&id.leaf().der);
    match kind {
        "no-certificate" => {
            "connect with a client certificate: a workspace device, or --cert FILE --key FILE"
                .into()
        }
        "bad-certificate" => {
            "send a DER X.509 certificate (check the --cert file with `chainsmith inspect`)".into()
        }
        "username" | "username-mismatch" => format!(
            "use client id \"{dev}\" and username {{host}}/{dev}/?api-version={} (chainsmith sends these with --flavor azure)",
            crate::azure::API_VERSION
        ),
        "unknown-device" => format!(
            "register it: `chainsmith hub device add {dev} --auth ca` (or `--auth self-signed --from {dev}`)"
        ),
        "disabled" => format!("enable it: `chainsmith hub device enable {dev}`"),
        "cn-mismatch" => format!(
            "issue the device certificate with CN = \"{dev}\" exactly (case-sensitive): `chainsmith new device {dev} --issuer CA`"
        ),
        "expired" | "not-yet-valid" => renew_fix(id),
        "unverified" => format!(
            "prove possession: `chainsmith new verification --issuer {root} --code CODE` with the code from `chainsmith hub ca list`, then `chainsmith hub ca verify {root} --cert verification_cert.pem` (or add it with --verified)"
        ),
        "missing-intermediate"
            if id.missing_intermediates().is_empty()
                && id.root().is_some()
                && !id.sent.iter().any(|c| c.view.self_signed) =>
        {
            format!(
                "\"{root}\" is a root (devices never send it), so the hub does not know it: upload and verify it with `chainsmith hub ca add {root}` (or `--verified`)"
            )
        }
        "missing-intermediate" => {
            let names: Vec<String> = id
                .missing_intermediates()
                .iter()
                .map(|c| format!("\"{}\"", c.name))
                .collect();
            let which = if names.is_empty() {
                "the intermediates".to_string()
            } else {
                names.join(", ")
            };
            format!(
                "send {which} after the leaf (workspace devices send them; for files, append them to the --cert file), or register the intermediate with the hub"
            )
        }
        "unknown-root" => {
            format!("upload the CA: `chainsmith hub ca add {root}` and verify it (or `--verified`)")
        }
        "thumbprint" => match id.workspace_name() {
            Some(name) => format!(
                "register this certificate's thumbprint {sha1} in a slot: `chainsmith hub device update {dev} --from {name}` (takes both of {name}'s slots), or `--secondary {sha1}` to roll just one"
            ),
            None => format!(
                "register this certificate's thumbprint {sha1} in a slot: `chainsmith hub device update {dev} --secondary {sha1}` (or --primary to replace the other slot)"
            ),
        },
        "issuer-not-ca" | "issuer-cannot-sign" => format!(
            "issue \"{dev}\" from a CA: `chainsmith new device {dev} --issuer CA --force`; a device certificate can never sign another one"
        ),
        "pathlen-exceeded" => {
            "re-issue the CA the hub names with a larger --pathlen, or issue the device from a CA nearer the root".into()
        }
        "not-client-auth" => format!(
            "re-issue the device certificate with extendedKeyUsage clientAuth: `chainsmith new device {dev} --issuer CA --force`"
        ),
        "weak-crypto" => {
            "re-issue the certificate the hub names with an EC P-256 (default) or RSA 2048+ key and a SHA-256 signature".into()
        }
        _ => "fix what the hub names and connect again".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Root "Contoso Root" -> device "sensor-7", as the workspace would hold them.
    fn identity() -> Identity {
        use crate::mqtt::identity::ChainCert;
        use crate::pki::{CaHandle, IssueSpec, KeyAlg, Profile, Validity, issue, subject};
        let root_spec = IssueSpec {
            subject: subject::cn_only("Contoso Root").unwrap(),
            profile: Profile::Root { pathlen: None },
            validity: Validity::days(30),
        };
        let root = issue::issue(&root_spec, KeyAlg::EcP256, None).unwrap();
        let ca = CaHandle::new(
            "Contoso Root",
            root.cert_der.clone(),
            root.key_pem.as_deref().unwrap(),
        )
        .unwrap();
        let dev_spec = IssueSpec {
            subject: subject::cn_only("sensor-7").unwrap(),
            profile: Profile::Device {
                eku: Default::default(),
                sans: vec![],
            },
            validity: Validity::days(30),
        };
        let dev = issue::issue(&dev_spec, KeyAlg::EcP256, Some(&ca)).unwrap();
        let cc = |name: &str, der: Vec<u8>| ChainCert {
            name: name.into(),
            view: crate::pki::inspect::CertView::from_der(&der).unwrap(),
            der,
        };
        Identity {
            device_id: "sensor-7".into(),
            source: "test".into(),
            sent: vec![cc("sensor-7", dev.cert_der)],
            above: vec![cc("Contoso Root", root.cert_der)],
            key_pem: dev.key_pem.unwrap(),
            target: None,
        }
    }

    fn run(kind: FailureKind, step: Step, to: &str) -> Diagnosis {
        let id = identity();
        let ep = Endpoint::parse(to).unwrap();
        let cx = Context {
            identity: &id,
            endpoint: &ep,
            server_cert: None,
            acceptable_cas: &[],
            preflight: &[],
            timeout: Duration::from_secs(10),
        };
        diagnose(&Failure::new(step, kind), &cx)
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
            d.fix
                .contains("register and verify \"Contoso Root\" on the hub"),
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
        assert!(d.fix.contains("chainsmith hub device enable sensor-7"));
    }

    #[test]
    fn connack_texts() {
        assert_eq!(connack_text(5), "5 (not authorized)");
        assert_eq!(connack_text(2), "2 (identifier rejected)");
    }
}
