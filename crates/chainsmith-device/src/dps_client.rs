//! The device side of DPS over MQTT, as the SDKs speak it: TLS with the device's chain,
//! CONNECT with the DPS username, SUBSCRIBE `$dps/registrations/res/#`, register, poll until
//! assigned. `connect --dps` shows each step; the DPS benchmark drives many of them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, PubAck, Publish, Subscribe};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::azure::dps as wire;

/// One step of a provisioning, as `connect --dps` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct ProvisionStep {
    /// The step's name: `TCP connect`, `TLS handshake`, `CONNECT`, `register` or `poll`.
    pub step: String,
    /// Milliseconds since the provisioning began.
    pub ms: f64,
    /// Whether the step succeeded.
    pub ok: bool,
    /// What happened: the address, certificates sent, the username, or DPS's answer.
    pub detail: String,
}

/// What a device needs to provision.
#[derive(Clone)]
pub struct Device {
    /// The DPS registration id (MQTT client id; DPS's rules: letters, digits, `- . _ :`).
    pub registration_id: String,
    /// Leaf first, then intermediates (DER).
    pub chain: Vec<Vec<u8>>,
    /// The leaf's private key (PEM).
    pub key_pem: String,
    /// Trust anchors for the server certificate (DER).
    pub trust: Vec<Vec<u8>>,
}

/// A TLS client configuration for `d` (reused across registrations by the benchmark).
pub fn tls_config(d: &Device) -> Result<Arc<rustls::ClientConfig>, crate::dial::TlsSetupError> {
    let verifier = crate::dial::server_verifier(&d.trust, false)?;
    crate::dial::device_config(verifier, &d.chain, &d.key_pem).map(Arc::new)
}

/// Provision `d` through the DPS at `addr` (TLS name `host`): the registration state on
/// success, the reason (with DPS's status and error body) otherwise. `on_step` sees each step.
#[allow(clippy::too_many_arguments)]
pub async fn provision(
    addr: SocketAddr,
    host: &str,
    config: Arc<rustls::ClientConfig>,
    d: &Device,
    id_scope: &str,
    api_version: &str,
    request: &wire::RegisterRequest,
    timeout: Duration,
    poll_delay: Option<Duration>,
    on_step: &mut (dyn FnMut(ProvisionStep) + Send),
) -> Result<wire::RegistrationState, DpsError> {
    let t0 = Instant::now();
    let mut say = |step: &str, ok: bool, detail: String| {
        on_step(ProvisionStep {
            step: step.to_string(),
            ms: t0.elapsed().as_secs_f64() * 1000.0,
            ok,
            detail,
        })
    };
    let tcp = tokio::time::timeout(timeout, crate::dial::tcp_first(&[addr]))
        .await
        .map_err(|_| DpsError::TcpTimeout { addr, timeout })?
        .map_err(|source| DpsError::Tcp { addr, source })?;
    say("TCP connect", true, addr.to_string());
    let name = crate::dial::server_name(host)?;
    let tls = tokio::time::timeout(
        timeout,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| DpsError::TlsTimeout)?
    .map_err(DpsError::Tls)?;
    say(
        "TLS handshake",
        true,
        format!("{} certificate(s) sent", d.chain.len()),
    );

    // The connection test's MQTT framing; every answer is waited for within the timeout.
    let mut conn = Conn::with_capacity(tls, 4096);
    let user = wire::username(id_scope, &d.registration_id, api_version);
    let mut connect = Connect::new(d.registration_id.clone());
    connect.keep_alive = 60;
    connect.set_login(user.clone(), "");
    send(&mut conn, Packet::Connect(connect)).await?;
    match recv(&mut conn, timeout).await {
        Some(Packet::ConnAck(a)) if a.code == ConnectReturnCode::Success => {
            say("CONNECT", true, format!("username {user}"));
        }
        other => {
            let why = match other {
                Some(Packet::ConnAck(a)) => format!("CONNACK {:?}", a.code),
                _ => "the connection closed before CONNACK".into(),
            };
            say("CONNECT", false, why.clone());
            return Err(DpsError::ConnectRefused(why));
        }
    }
    let mut sub = Subscribe::new(wire::RESPONSE_FILTER, QoS::AtLeastOnce);
    sub.pkid = 1;
    send(&mut conn, Packet::Subscribe(sub)).await?;
    let body = serde_json::to_vec(request).expect("serialisable");
    let mut rid = 1u32;
    let mut p = Publish::new(
        wire::register_topic(&rid.to_string()),
        QoS::AtLeastOnce,
        body,
    );
    p.pkid = 2;
    send(&mut conn, Packet::Publish(p)).await?;
    let mut pkid = 3u16;
    let mut polls = 0u32;
    loop {
        let pkt = recv(&mut conn, timeout).await.ok_or(DpsError::Silent)?;
        let Packet::Publish(p) = pkt else { continue };
        if p.qos == QoS::AtLeastOnce {
            let ack = PubAck::new(p.pkid);
            send(&mut conn, Packet::PubAck(ack)).await?;
        }
        let (status, _, retry) = wire::parse_response_topic(&p.topic).map_err(DpsError::Topic)?;
        let what = if polls == 0 { "register" } else { "poll" };
        if status >= 300 {
            let text = String::from_utf8_lossy(&p.payload).into_owned();
            say(what, false, format!("{status} {text}"));
            return Err(
                match serde_json::from_slice::<wire::ErrorBody>(&p.payload) {
                    Ok(body) => DpsError::Refused {
                        status,
                        error_code: Some(body.error_code),
                        message: body.message,
                    },
                    Err(_) => DpsError::Refused {
                        status,
                        error_code: None,
                        message: text,
                    },
                },
            );
        }
        let op: wire::OperationResponse =
            serde_json::from_slice(&p.payload).map_err(DpsError::Answer)?;
        say(
            what,
            true,
            format!("{status} {} (operation {})", op.status, op.operation_id),
        );
        if op.status == "assigned" {
            let st = op
                .registration_state
                .ok_or(DpsError::AssignedWithoutState)?;
            say(
                "assigned",
                true,
                format!(
                    "device {} on {} ({})",
                    st.device_id.as_deref().unwrap_or("?"),
                    st.assigned_hub.as_deref().unwrap_or("?"),
                    st.substatus.as_deref().unwrap_or("?")
                ),
            );
            let _ = conn.io.shutdown().await;
            return Ok(st);
        }
        if polls >= MAX_POLLS {
            return Err(DpsError::StillAssigning);
        }
        // Poll as the SDKs do, after retry-after (capped: this is a local test), unless the
        // caller (the benchmark) polls at once.
        let wait = poll_delay.unwrap_or_else(|| {
            Duration::from_secs(u64::from(retry.unwrap_or(wire::RETRY_AFTER_SECS).min(5)))
        });
        tokio::time::sleep(wait).await;
        polls += 1;
        rid += 1;
        let mut q = Publish::new(
            wire::status_topic(&rid.to_string(), &op.operation_id),
            QoS::AtLeastOnce,
            b" ".to_vec(),
        );
        q.pkid = pkid;
        pkid = pkid.wrapping_add(1).max(1);
        send(&mut conn, Packet::Publish(q)).await?;
    }
}

/// How many times a device polls an assignment before giving up: the SDKs poll for as long
/// as DPS answers `assigning`; the local DPS assigns on the first poll, so 30 (2.5 minutes at
/// the capped 5 s) means something is stuck.
const MAX_POLLS: u32 = 30;

/// Why [`provision`] did not give a registration state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DpsError {
    /// The TCP connection was not made within the timeout.
    #[error("TCP connect to {addr}: no answer within {timeout:?}")]
    TcpTimeout {
        /// The DPS address dialled.
        addr: SocketAddr,
        /// The limit that passed.
        timeout: Duration,
    },
    /// The TCP connection was refused or broke.
    #[error("TCP connect to {addr}: {source}")]
    Tcp {
        /// The DPS address dialled.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The host is not a name TLS can check the server certificate against.
    #[error(transparent)]
    ServerName(#[from] crate::dial::TlsSetupError),
    /// The TLS handshake did not finish within the timeout.
    #[error("TLS handshake: no answer")]
    TlsTimeout,
    /// The TLS handshake failed (the alert or certificate error).
    #[error("TLS handshake: {0}")]
    Tls(#[source] std::io::Error),
    /// DPS refused the MQTT CONNECT (the CONNACK code, or that the connection closed first).
    #[error("DPS refused the CONNECT ({0}); the hub log says why")]
    ConnectRefused(String),
    /// Writing a packet failed.
    #[error("write: {0}")]
    Write(#[source] std::io::Error),
    /// DPS closed the connection or said nothing within the timeout.
    #[error("DPS closed the connection or did not answer")]
    Silent,
    /// DPS answered on a topic that is not a registration response.
    #[error("{0}")]
    Topic(#[source] crate::azure::AzureError),
    /// DPS refused the registration: its status, and its error body when it sent one.
    #[error(
        "DPS refused the registration: {status}{}: {message}",
        .error_code.map(|c| format!(" ({c})")).unwrap_or_default()
    )]
    Refused {
        /// DPS's status (401, 403, 404, 429, …).
        status: u16,
        /// The body's `errorCode` (status × 1000 + a detail), when the body was DPS's JSON.
        error_code: Option<u32>,
        /// The body's `message`, or the whole body when it was not DPS's JSON.
        message: String,
    },
    /// DPS's answer is not an operation response.
    #[error("DPS answer: {0}")]
    Answer(#[source] serde_json::Error),
    /// DPS said `assigned` but sent no registration state.
    #[error("an assigned answer without registrationState")]
    AssignedWithoutState,
    /// DPS was still assigning after [`MAX_POLLS`] polls.
    #[error("still assigning after {MAX_POLLS} polls")]
    StillAssigning,
}

impl DpsError {
    /// A short machine-friendly name for the failure, by DPS's status when it answered one
    /// (a fleet groups its failures by it).
    pub fn kind(&self) -> &'static str {
        match self {
            DpsError::Refused { status: 400, .. } => "dps-bad-request",
            DpsError::Refused { status: 401, .. } => "dps-unauthorized",
            DpsError::Refused { status: 403, .. } => "dps-forbidden",
            DpsError::Refused { status: 404, .. } => "dps-not-found",
            DpsError::Refused { status: 429, .. } => "dps-throttled",
            DpsError::Refused { .. } => "dps-refused",
            DpsError::ConnectRefused(_) => "dps-connect-refused",
            DpsError::TcpTimeout { .. } | DpsError::TlsTimeout | DpsError::Silent => "dps-timeout",
            _ => "dps-failed",
        }
    }
}

type Conn = crate::mqtt::session::Conn<tokio_rustls::client::TlsStream<TcpStream>>;

async fn send(conn: &mut Conn, p: Packet) -> Result<(), DpsError> {
    conn.send(&p).await.map_err(DpsError::Write)
}

/// The next packet within `timeout`; None when the connection closed, broke or stayed silent.
async fn recv(conn: &mut Conn, timeout: Duration) -> Option<Packet> {
    tokio::time::timeout(timeout, conn.recv()).await.ok()?.ok()
}

/// Why a fresh key and its CSR could not be made (rcgen's reason).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CsrError(#[source] rcgen::Error);

/// A fresh P-256 key and a PKCS#10 CSR with CN = `registration_id`: (key PEM, CSR DER).
pub(crate) fn fresh_csr(registration_id: &str) -> Result<(String, Vec<u8>), CsrError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(CsrError)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(CsrError)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, registration_id);
    let csr = params.serialize_request(&key).map_err(CsrError)?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::DpsError;
    use std::time::Duration;

    /// A fleet groups DPS failures by the typed error (no sniffing of the sentence), and each
    /// sentence is the one `connect --dps` and the fleet report always printed.
    #[test]
    fn dps_failures_are_grouped_by_kind_and_keep_their_sentences() {
        let refused = |status, error_code, message: &str| DpsError::Refused {
            status,
            error_code,
            message: message.into(),
        };
        let addr = "127.0.0.1:1".parse().expect("literal address");
        for (e, kind, text) in [
            (
                refused(401, Some(401002), "unknown certificate"),
                "dps-unauthorized",
                "DPS refused the registration: 401 (401002): unknown certificate",
            ),
            (
                refused(403, Some(403000), "disabled"),
                "dps-forbidden",
                "DPS refused the registration: 403 (403000): disabled",
            ),
            (
                refused(404, None, "{}"),
                "dps-not-found",
                "DPS refused the registration: 404: {}",
            ),
            (
                refused(500, None, "oops"),
                "dps-refused",
                "DPS refused the registration: 500: oops",
            ),
            (
                DpsError::ConnectRefused("CONNACK 5".into()),
                "dps-connect-refused",
                "DPS refused the CONNECT (CONNACK 5); the hub log says why",
            ),
            (
                DpsError::TlsTimeout,
                "dps-timeout",
                "TLS handshake: no answer",
            ),
            (
                DpsError::TcpTimeout {
                    addr,
                    timeout: Duration::from_secs(2),
                },
                "dps-timeout",
                "TCP connect to 127.0.0.1:1: no answer within 2s",
            ),
            (
                DpsError::Silent,
                "dps-timeout",
                "DPS closed the connection or did not answer",
            ),
            (
                DpsError::Tcp {
                    addr,
                    source: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
                },
                "dps-failed",
                "TCP connect to 127.0.0.1:1: refused",
            ),
            (
                DpsError::StillAssigning,
                "dps-failed",
                "still assigning after 30 polls",
            ),
        ] {
            assert_eq!((e.kind(), e.to_string().as_str()), (kind, text));
        }
    }
}
