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
) -> Result<wire::RegistrationState, String> {
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
        .map_err(|_| format!("TCP connect to {addr}: no answer within {timeout:?}"))?
        .map_err(|e| format!("TCP connect to {addr}: {e}"))?;
    say("TCP connect", true, addr.to_string());
    let name = crate::dial::server_name(host).map_err(|e| e.to_string())?;
    let tls = tokio::time::timeout(
        timeout,
        tokio_rustls::TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| "TLS handshake: no answer".to_string())?
    .map_err(|e| format!("TLS handshake: {e}"))?;
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
            return Err(format!(
                "DPS refused the CONNECT ({why}); the hub log says why"
            ));
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
        let pkt = recv(&mut conn, timeout)
            .await
            .ok_or_else(|| "DPS closed the connection or did not answer".to_string())?;
        let Packet::Publish(p) = pkt else { continue };
        if p.qos == QoS::AtLeastOnce {
            let ack = PubAck::new(p.pkid);
            send(&mut conn, Packet::PubAck(ack)).await?;
        }
        let (status, _, retry) = wire::parse_response_topic(&p.topic).map_err(|e| e.to_string())?;
        let what = if polls == 0 { "register" } else { "poll" };
        if status >= 300 {
            let text = String::from_utf8_lossy(&p.payload).into_owned();
            say(what, false, format!("{status} {text}"));
            let reason = serde_json::from_slice::<wire::ErrorBody>(&p.payload)
                .map(|e| format!("{status} ({}): {}", e.error_code, e.message))
                .unwrap_or(format!("{status}: {text}"));
            return Err(format!("{REFUSED}{reason}"));
        }
        let op: wire::OperationResponse =
            serde_json::from_slice(&p.payload).map_err(|e| format!("DPS answer: {e}"))?;
        say(
            what,
            true,
            format!("{status} {} (operation {})", op.status, op.operation_id),
        );
        if op.status == "assigned" {
            let st = op
                .registration_state
                .ok_or("an assigned answer without registrationState")?;
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
        if polls >= 30 {
            return Err("still assigning after 30 polls".into());
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

/// DPS's status in a reason [`provision`] returned for a refused registration (401, 403, …).
pub fn refused_status(reason: &str) -> Option<u16> {
    let rest = reason.strip_prefix(REFUSED)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

const REFUSED: &str = "DPS refused the registration: ";

type Conn = crate::mqtt::session::Conn<tokio_rustls::client::TlsStream<TcpStream>>;

async fn send(conn: &mut Conn, p: Packet) -> Result<(), String> {
    conn.send(&p).await.map_err(|e| format!("write: {e}"))
}

/// The next packet within `timeout`; None when the connection closed, broke or stayed silent.
async fn recv(conn: &mut Conn, timeout: Duration) -> Option<Packet> {
    tokio::time::timeout(timeout, conn.recv()).await.ok()?.ok()
}

/// A fresh P-256 key and a PKCS#10 CSR with CN = `registration_id`: (key PEM, CSR DER).
pub fn fresh_csr(registration_id: &str) -> Result<(String, Vec<u8>), String> {
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, registration_id);
    let csr = params.serialize_request(&key).map_err(|e| e.to_string())?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}
