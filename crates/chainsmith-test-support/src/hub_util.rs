//! Shared by the hub tests and the hub benchmarks: workspace fixtures and a minimal MQTT 3.1.1
//! device client over TLS (tokio-rustls + rumqttc's v4 codec, the same crates the hub uses,
//! but the client side of them).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use chainsmith_azure::hub::{Auth, Hub, HubConfig, HubHandle, HubStore};
use chainsmith_pki::clock::Clock;
use chainsmith_pki::ops::{self, DeviceRequest, ValidityArg};
use chainsmith_pki::pki::KeyAlg;
use chainsmith_pki::store::Workspace;

use crate::workspace::ca_req;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, Packet};
use rumqttc::mqttbytes::{self, QoS};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A workspace with a root and an intermediate, and the hub's store over it.
pub struct Fixture {
    /// The temporary directory that holds the workspace (removed on drop).
    pub dir: tempfile::TempDir,
    /// The workspace, at `dir/ws`.
    pub ws: Workspace,
    /// The hub's registry and trust over `ws`.
    pub store: HubStore,
}

impl Default for Fixture {
    fn default() -> Fixture {
        Fixture::new()
    }
}

impl Fixture {
    /// A workspace with root "root" (CN "Contoso Root") and intermediate "line2" (CN "Line 2").
    pub fn new() -> Fixture {
        Fixture::with_clock(Clock::System)
    }

    /// [`Fixture::new`] with the workspace's clock fixed at `t`: every window starts from it.
    pub fn at(t: time::OffsetDateTime) -> Fixture {
        Fixture::with_clock(Clock::Fixed(t))
    }

    fn with_clock(clock: Clock) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = Workspace::open_or_create(&dir.path().join("ws"))
            .expect("workspace")
            .with_clock(clock);
        ops::new_ca(&ws, &ca_req("root", Some("Contoso Root"), None)).expect("root");
        ops::new_ca(&ws, &ca_req("line2", Some("Line 2"), Some("root"))).expect("intermediate");
        let store = HubStore::new(ws.clone());
        store.ensure_tls_ca().expect("hub tls ca");
        Fixture { dir, ws, store }
    }

    /// The workspace's directory.
    pub fn root(&self) -> &Path {
        self.ws.root()
    }

    /// A CA-signed device under `issuer` with optional validity window.
    pub fn device(&self, id: &str, issuer: Option<&str>, validity: ValidityArg) {
        let req = DeviceRequest {
            ids: vec![id.to_string()],
            issuer: issuer.map(str::to_string),
            key: Some(KeyAlg::EcP256),
            validity,
            ..Default::default()
        };
        ops::new_devices(&self.ws, &req).expect("device");
    }

    /// Register `id` in the hub's registry with `auth` (`from`: the CA a self-signed device names).
    pub fn register(&self, id: &str, auth: Auth, from: Option<&str>) {
        self.store
            .add_device(id, auth, None, None, from)
            .expect("register");
    }

    /// Write `names`' certificates, in order, to one PEM file; returns its path.
    pub fn chain_file(&self, names: &[&str]) -> PathBuf {
        let mut pem = String::new();
        for n in names {
            pem.push_str(&self.ws.load(n).expect("entity").cert_pem);
        }
        let p = self
            .dir
            .path()
            .join(format!("{}-chain.pem", names.join("+")));
        std::fs::write(&p, pem).expect("write chain");
        p
    }

    /// The path of `name`'s private key in the workspace.
    pub fn key_file(&self, name: &str) -> PathBuf {
        self.ws.dir_of(name).expect("entity").join("key.pem")
    }

    /// The PEM file a device trusts to reach the hub (the hub's TLS CA).
    pub fn trust_file(&self) -> PathBuf {
        self.store.trust_path()
    }

    /// A TLS client identity: `names`' certificates (leaf first) and the first one's key.
    pub fn identity(&self, names: &[&str]) -> Identity {
        let certs = names
            .iter()
            .map(|n| CertificateDer::from(self.ws.load(n).expect("entity").cert_der))
            .collect();
        let key_pem = std::fs::read_to_string(self.key_file(names[0])).expect("key");
        Identity {
            certs,
            key: pem::parse(key_pem).expect("key pem").into_contents(),
        }
    }

    /// A TLS client config trusting the hub, presenting `id` (or nothing).
    pub fn tls(&self, id: Option<&Identity>) -> Arc<rustls::ClientConfig> {
        client_config(&std::fs::read(self.trust_file()).expect("trust"), id)
    }
}

/// What a device presents in the TLS handshake.
#[derive(Clone)]
pub struct Identity {
    /// The chain, leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The leaf's PKCS#8 key (DER).
    pub key: Vec<u8>,
}

/// A TLS client config trusting the certificates in `trust_pem`, presenting `id` (or nothing).
pub fn client_config(trust_pem: &[u8], id: Option<&Identity>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for p in pem::parse_many(trust_pem).expect("trust pem") {
        roots
            .add(CertificateDer::from(p.into_contents()))
            .expect("root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let c = match id {
        Some(id) => b
            .with_client_auth_cert(
                id.certs.clone(),
                PrivateKeyDer::Pkcs8(id.key.clone().into()),
            )
            .expect("client cert"),
        None => b.with_no_client_auth(),
    };
    Arc::new(c)
}

/// The MQTT user name a device `id` sends to the local hub.
pub fn username(id: &str) -> String {
    chainsmith_azure::username("localhost", id)
}

/// A raw MQTT connection over TLS.
pub struct Client {
    /// The TLS stream under the MQTT packets.
    pub stream: TlsStream<TcpStream>,
    buf: BytesMut,
}

impl Client {
    /// A client on a TLS stream opened elsewhere (from a chosen source address, say).
    pub fn from_stream(stream: TlsStream<TcpStream>) -> Client {
        Client {
            stream,
            buf: BytesMut::with_capacity(4096),
        }
    }

    /// TCP (no Nagle) + TLS to `addr` as "localhost", no MQTT yet.
    pub async fn tls(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<Client> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let conn = tokio_rustls::TlsConnector::from(config);
        let stream = conn
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await?;
        Ok(Client {
            stream,
            buf: BytesMut::with_capacity(4096),
        })
    }

    /// TLS + CONNECT; returns the client and the CONNACK (None if the hub closed instead).
    pub async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        client_id: &str,
        username: Option<&str>,
    ) -> std::io::Result<(Client, Option<ConnAck>)> {
        let mut c = Client::tls(addr, config).await?;
        let mut connect = Connect::new(client_id);
        connect.keep_alive = 60;
        if let Some(u) = username {
            connect.set_login(u, "");
        }
        c.send(&Packet::Connect(connect)).await?;
        let ack = match c.recv(Duration::from_secs(10)).await {
            Some(Packet::ConnAck(a)) => Some(a),
            _ => None,
        };
        Ok((c, ack))
    }

    /// Encode and send one packet.
    pub async fn send(&mut self, p: &Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        match p {
            Packet::Connect(c) => c.write(&mut out),
            Packet::Publish(x) => x.write(&mut out),
            Packet::PubAck(x) => x.write(&mut out),
            Packet::Subscribe(x) => x.write(&mut out),
            Packet::Unsubscribe(x) => x.write(&mut out),
            Packet::PingReq => rumqttc::mqttbytes::v4::PingReq.write(&mut out),
            Packet::Disconnect => rumqttc::mqttbytes::v4::Disconnect.write(&mut out),
            other => panic!("client does not send {other:?}"),
        }
        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        self.send_raw(&out).await
    }

    /// Send bytes as they are (malformed packets, floods).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// The next packet, or None on close / timeout / garbage.
    pub async fn recv(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(p) => return Some(p),
                Err(mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(_) => return None,
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// True when the hub has closed the connection (EOF or error) within `wait`.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut b = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

/// Publish QoS 1 and wait for its PUBACK.
pub async fn publish_acked(c: &mut Client, topic: &str, payload: &[u8], pkid: u16) -> bool {
    let mut p = rumqttc::mqttbytes::v4::Publish::new(topic, QoS::AtLeastOnce, payload.to_vec());
    p.pkid = pkid;
    if c.send(&Packet::Publish(p)).await.is_err() {
        return false;
    }
    loop {
        match c.recv(Duration::from_secs(5)).await {
            Some(Packet::PubAck(a)) if a.pkid == pkid => return true,
            Some(_) => {}
            None => return false,
        }
    }
}

/// The hub of `workspace` started in this process on a free port (MQTT only, defaults
/// otherwise): what most hub tests and the DPS bench talk to.
pub async fn start_hub(workspace: &Path) -> HubHandle {
    Hub::start(
        workspace,
        HubConfig {
            port: 0,
            ..Default::default()
        },
    )
    .await
    .expect("start the hub")
}

/// MQTT's remaining-length encoding of `n` (MQTT 3.1.1, 2.2.3): how a test writes a packet
/// header by hand.
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}
