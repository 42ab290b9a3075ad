//! The AMQP 1.0 listener (port 5671, and AMQP over WebSockets): `fe2o3-amqp`'s acceptor over
//! the hub's rustls. A connection is authenticated by its TLS client certificate at the first
//! link attach (the link address names the device), with the same verifier, registry and
//! refusal sentences as MQTT; a refused link is detached with `amqp:unauthorized-access` and
//! the hub's sentence, which the SDKs report as an unauthorized error and do not retry.
//!
//! Each admitted connection runs the hub's device session (`DeviceSession`) (the MQTT device protocol)
//! in one task; links translate to and from it ([`crate::amqp`]). A link at DPS's address
//! (`{idScope}/registrations/{registrationId}`) makes the connection a DPS session instead,
//! served by `dps/amqp.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::BytesMut;
use fe2o3_amqp::acceptor::{
    ConnectionAcceptor, LinkAcceptor, LinkEndpoint, ListenerConnectionHandle,
    ListenerSessionHandle, SaslAcceptor, SessionAcceptor, sasl_acceptor::SaslServerFrame,
};
use fe2o3_amqp::types::definitions::{AmqpError, Error as AmqpErr, Role};
use fe2o3_amqp::types::messaging::{Body, Outcome};
use fe2o3_amqp::types::primitives::{Array, Symbol, Value};
use fe2o3_amqp::types::sasl::{SaslCode, SaslInit, SaslOutcome, SaslResponse};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Packet, Publish, Subscribe, SubscribeFilter, Unsubscribe};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::budget::BudgetPermit;
use super::device_session::DeviceSession;
use super::dps::amqp::{self as dps_amqp, DpsAmqpSession, DpsLink};
use super::events::HubEvent;
use super::mqtt_packets::SessionEnd;
use super::shared::{CONNECT_TIMEOUT, Outbound, Shared, admit, release, take_over};
use crate::MAX_PACKET;
use crate::amqp::{self as proto, LinkKind, TwinOp};
use crate::azure;

/// Deliveries of one C2D message before it is dead-lettered (IoT Hub's default maximum
/// delivery count).
pub(crate) const MAX_DELIVERY_COUNT: usize = 10;

/// How long the hub waits for the peer's Close after its own before it drops the connection.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

use crate::amqp::MAX_FRAME;

/// Links attached at once on one connection; the next attach is detached with
/// `amqp:resource-limit-exceeded`. IoT Hub documents no per-connection link limit for one
/// device (its SDKs cap *multiplexed* devices per connection, which only symmetric-key devices
/// may do, and this hub serves X.509 devices only). One device uses at most six links:
/// telemetry, cloud-to-device, and a sender and a receiver each for twin and methods; 32 leaves
/// room for an SDK that attaches a link again before the hub has seen the old one go. Without
/// a cap, 80,000 attaches held 825 MB.
pub const MAX_LINKS_PER_CONNECTION: usize = 32;
/// Refused attaches after which a connection is closed. The SDKs stop at the first refusal
/// (an unauthorized detach); a few more let a client try its other addresses.
pub const MAX_REFUSED_LINKS: usize = 8;

/// AMQP sessions (channels) on one connection: the SDKs open one per device. The hub offers
/// `channel-max` = this − 1 in its Open; a Begin past it ends the connection.
pub(crate) const MAX_SESSIONS_PER_CONNECTION: u16 = 4;

/// One attached link, counted against [`MAX_LINKS_PER_CONNECTION`] and in the hub's
/// `load.amqp_links`; the count drops when the link's task ends (detach or connection close).
struct LinkSlot {
    conn: Arc<AtomicUsize>,
    hub: Arc<AtomicUsize>,
}

impl LinkSlot {
    /// A slot on `conn`, or None when it holds [`MAX_LINKS_PER_CONNECTION`] already.
    fn take(conn: &Arc<AtomicUsize>, hub: &Arc<AtomicUsize>) -> Option<LinkSlot> {
        conn.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < MAX_LINKS_PER_CONNECTION).then_some(n + 1)
        })
        .ok()?;
        hub.fetch_add(1, Ordering::SeqCst);
        Some(LinkSlot {
            conn: conn.clone(),
            hub: hub.clone(),
        })
    }
}

impl Drop for LinkSlot {
    fn drop(&mut self) {
        self.conn.fetch_sub(1, Ordering::SeqCst);
        self.hub.fetch_sub(1, Ordering::SeqCst);
    }
}

type Out = fe2o3_amqp::types::messaging::message::Message<fe2o3_amqp::types::messaging::Data>;

/// SASL as IoT Hub's devices use it with X.509: EXTERNAL (the TLS certificate is the
/// credential) or ANONYMOUS; both succeed here, the certificate is checked at attach.
#[derive(Clone, Debug)]
struct TlsCertificateSasl;

impl SaslAcceptor for TlsCertificateSasl {
    fn mechanisms(&self) -> Array<Symbol> {
        Array::from(vec![Symbol::from("EXTERNAL"), Symbol::from("ANONYMOUS")])
    }
    fn on_init(&mut self, init: SaslInit) -> SaslServerFrame {
        let ok = matches!(init.mechanism.as_str(), "EXTERNAL" | "ANONYMOUS");
        SaslServerFrame::Outcome(SaslOutcome {
            code: if ok { SaslCode::Ok } else { SaslCode::Auth },
            additional_data: None,
        })
    }
    fn on_response(&mut self, _r: SaslResponse) -> SaslServerFrame {
        SaslServerFrame::Outcome(SaslOutcome {
            code: SaslCode::Auth,
            additional_data: None,
        })
    }
}

/// Ends a connection whose AMQP engine would wait forever (a peer that never answers the
/// hub's Close): its stream then reads and writes as aborted.
#[derive(Clone, Debug, Default)]
struct Kill(Arc<(std::sync::atomic::AtomicBool, futures::task::AtomicWaker)>);

impl Kill {
    fn kill(&self) {
        self.0.0.store(true, std::sync::atomic::Ordering::SeqCst);
        self.0.1.wake();
    }
    fn check(&self, cx: &mut Context<'_>) -> Option<std::io::Error> {
        self.0.1.register(cx.waker());
        self.0
            .0
            .load(std::sync::atomic::Ordering::SeqCst)
            .then(|| std::io::Error::from(std::io::ErrorKind::ConnectionAborted))
    }
}

/// A stream whose first bytes were already read (the protocol header, to pick SASL or not).
#[derive(Debug)]
struct Prefixed<S> {
    head: Vec<u8>,
    at: usize,
    inner: S,
    kill: Kill,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(e) = self.kill.check(cx) {
            return Poll::Ready(Err(e));
        }
        if self.at < self.head.len() {
            let n = buf.remaining().min(self.head.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.head[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(e) = self.kill.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serve one AMQP connection on an authenticated-TLS stream (TCP+TLS, or a WebSocket over
/// TLS). `chain` is the client's certificate chain from the TLS handshake.
pub(super) async fn connection<S>(
    sh: Arc<Shared>,
    mut stream: S,
    chain: Vec<Vec<u8>>,
    peer: SocketAddr,
    unauthenticated: BudgetPermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug + 'static,
{
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let dropped = |reason: String| sh.emit(HubEvent::Dropped { peer, reason });
    let mut head = [0u8; 8];
    match tokio::time::timeout_at(deadline, stream.read_exact(&mut head)).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return dropped("closed before the AMQP protocol header".into()),
        Err(_) => return dropped("no AMQP protocol header within 10 s; closed".into()),
    }
    let sasl = match head {
        [b'A', b'M', b'Q', b'P', 3, 1, 0, 0] => true,
        [b'A', b'M', b'Q', b'P', 0, 1, 0, 0] => false,
        _ => {
            return dropped(format!(
                "first bytes are not an AMQP 1.0 protocol header ({}); closed",
                crate::text::escape_controls(&String::from_utf8_lossy(&head))
            ));
        }
    };
    let kill = Kill::default();
    let stream = Prefixed {
        head: head.to_vec(),
        at: 0,
        inner: stream,
        kill: kill.clone(),
    };
    let builder = || {
        ConnectionAcceptor::builder()
            .container_id("chainsmith-local-hub")
            .max_frame_size(MAX_FRAME)
            .channel_max(MAX_SESSIONS_PER_CONNECTION - 1)
    };
    // SASL (EXTERNAL/ANONYMOUS) or none (the Node SDK sends none with X.509); both within
    // what is left of the 10 s, so a SASL exchange that never finishes is closed.
    let opened = if sasl {
        let acc = builder().sasl_acceptor(TlsCertificateSasl).build();
        tokio::time::timeout_at(deadline, acc.accept(stream)).await
    } else {
        let acc = builder().build();
        tokio::time::timeout_at(deadline, acc.accept(stream)).await
    };
    let conn = match opened {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return dropped(format!("AMQP open failed: {e}")),
        Err(_) => return dropped("AMQP open (SASL, Open) not complete within 10 s; closed".into()),
    };
    serve(sh, conn, chain, peer, unauthenticated, deadline).await;
    kill.kill();
}

/// What the links of one connection share: who it is (decided at the first attach).
struct ConnState {
    sh: Arc<Shared>,
    peer: SocketAddr,
    chain: Vec<Vec<u8>>,
    admitted: Mutex<Admission>,
    /// The device session asks the connection to close (taken over, disabled, hub stopping).
    close: mpsc::Sender<String>,
    /// This connection's share of the cap on unauthenticated connections, until admitted.
    unauthenticated: std::sync::Mutex<Option<BudgetPermit>>,
    /// Links attached now ([`MAX_LINKS_PER_CONNECTION`]).
    links: Arc<AtomicUsize>,
    /// Attaches refused on this connection so far ([`MAX_REFUSED_LINKS`]).
    refused_links: AtomicUsize,
}

enum Admission {
    Pending,
    Device(String, mpsc::Sender<ToSession>),
    /// The connection registers with DPS (its first link was at DPS's address).
    Dps(Arc<DpsAmqpSession>),
    Refused(String),
}

/// What an admitted link is: one of a hub device's, or one of a DPS session's.
enum Admitted {
    Device(LinkKind, String, mpsc::Sender<ToSession>),
    Dps(DpsLink),
}

/// Requests from the links to the device session.
enum ToSession {
    /// A device-to-hub PUBLISH (telemetry, twin request, method answer) and its verdict.
    Device(Publish, oneshot::Sender<Result<(), SessionEnd>>),
    /// A link the hub sends on, with the subscription it stands for.
    Route(LinkKind, mpsc::Sender<Out>),
    /// Twin desired-property updates on or off; answers `rid` with status 200.
    Desired(bool, String),
    /// The connection ended.
    Closed(String),
}

/// `unauthenticated` is held until a device link is admitted, which must happen by
/// `deadline` (the same 10 s an MQTT client has for its CONNECT).
async fn serve(
    sh: Arc<Shared>,
    mut conn: ListenerConnectionHandle,
    chain: Vec<Vec<u8>>,
    peer: SocketAddr,
    unauthenticated: BudgetPermit,
    deadline: tokio::time::Instant,
) {
    let (close_tx, mut close_rx) = mpsc::channel(4);
    let state = Arc::new(ConnState {
        sh: sh.clone(),
        peer,
        chain,
        admitted: Mutex::new(Admission::Pending),
        close: close_tx,
        unauthenticated: std::sync::Mutex::new(Some(unauthenticated)),
        links: Arc::default(),
        refused_links: AtomicUsize::new(0),
    });
    let mut waiting = true;
    let mut stop = sh.gate.shutdown.clone();
    enum Next {
        Session(Option<fe2o3_amqp::acceptor::IncomingSession>),
        Close(String),
        Deadline,
    }
    let reason = loop {
        let next = tokio::select! {
            s = conn.next_incoming_session() => Next::Session(s),
            Some(why) = close_rx.recv() => Next::Close(why),
            _ = stop.changed() => Next::Close("hub shutting down".into()),
            _ = tokio::time::sleep_until(deadline), if waiting => Next::Deadline,
        };
        match next {
            Next::Session(Some(incoming)) => {
                match SessionAcceptor::new()
                    .accept_incoming_session(incoming, &mut conn)
                    .await
                {
                    Ok(session) => {
                        tokio::spawn(session_links(state.clone(), session));
                    }
                    Err(e) => break format!("session begin failed: {e}"),
                }
            }
            Next::Session(None) => break "connection closed by the device".to_string(),
            Next::Deadline => {
                waiting = false;
                if matches!(
                    *state.admitted.lock().await,
                    Admission::Device(..) | Admission::Dps(_)
                ) {
                    continue;
                }
                let why = "no device link attached within 10 s of connecting; closed".to_string();
                sh.emit(HubEvent::Dropped {
                    peer,
                    reason: why.clone(),
                });
                let err = AmqpErr::new(AmqpError::UnauthorizedAccess, Some(why.clone()), None);
                let _ = tokio::time::timeout(CLOSE_WAIT, conn.close_with_error(err)).await;
                break why;
            }
            Next::Close(why) => {
                let err = AmqpErr::new(AmqpError::UnauthorizedAccess, Some(why.clone()), None);
                let _ = tokio::time::timeout(CLOSE_WAIT, conn.close_with_error(err)).await;
                break why;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, conn.close()).await;
    match &*state.admitted.lock().await {
        Admission::Device(_, tx) => {
            let _ = tx.send(ToSession::Closed(reason)).await;
        }
        Admission::Dps(dps) => dps.closed(reason),
        Admission::Pending | Admission::Refused(_) => {}
    }
}

/// Accept the links of one AMQP session, each in its own task.
async fn session_links(state: Arc<ConnState>, mut session: ListenerSessionHandle) {
    let acceptor = LinkAcceptor::builder()
        .max_message_size(MAX_PACKET as u64)
        .build();
    while let Some(attach) = session.next_incoming_attach().await {
        let device_sends = attach.role == Role::Sender;
        let address = if device_sends {
            attach.target.as_deref().and_then(|t| match t {
                fe2o3_amqp::types::messaging::TargetArchetype::Target(t) => t.address.clone(),
                #[allow(unreachable_patterns)]
                _ => None,
            })
        } else {
            attach.source.as_ref().and_then(|s| s.address.clone())
        };
        // Decide before the Attach is answered: a device that sees its link attached is
        // admitted (and owns its device id) already. A link past the cap is not even decided.
        let slot = LinkSlot::take(&state.links, &state.sh.amqp_links);
        let address = address.as_deref().unwrap_or("");
        let verdict = match &slot {
            Some(_) if crate::azure::dps::is_link_address(address) => {
                decide_dps(&state, address, attach.properties.as_ref(), device_sends)
                    .await
                    .map(Admitted::Dps)
            }
            Some(_) => decide(&state, address, device_sends)
                .await
                .map(|(kind, device, tx)| Admitted::Device(kind, device, tx)),
            None => Err((
                AmqpError::ResourceLimitExceeded,
                format!(
                    "this connection already has {MAX_LINKS_PER_CONNECTION} links attached, the hub's cap (a device needs at most 6); detach one first"
                ),
            )),
        };
        // A link the hub sends on is routed in the device's session before its Attach is
        // answered: the device sends its first twin GET the moment it sees the response link
        // attached, and the answer must find the link (the session reads one channel in order).
        let route = match &verdict {
            Ok(Admitted::Device(kind, _, to_session)) if !device_sends => {
                let (tx, rx) = mpsc::channel::<Out>(64);
                let routed = to_session.send(ToSession::Route(*kind, tx)).await;
                routed.is_ok().then_some(rx)
            }
            _ => None,
        };
        let link = match acceptor.accept_incoming_attach(attach, &mut session).await {
            Ok(l) => l,
            Err(_) => continue,
        };
        match verdict {
            Ok(Admitted::Device(kind, device, to_session)) => {
                let sh = state.sh.clone();
                tokio::spawn(async move {
                    run_link(link, kind, sh, device, to_session, route).await;
                    drop(slot);
                });
            }
            Ok(Admitted::Dps(dps)) => {
                tokio::spawn(async move {
                    dps_amqp::run_link(dps, link).await;
                    drop(slot);
                });
            }
            Err((condition, why)) => {
                // A connection that keeps attaching after refusals is closed: the SDKs stop at
                // the first unauthorized detach, and 80,000 refused attaches without a
                // certificate grew the hub by ~66 MB, kept after close (hostile pass).
                let refused = state.refused_links.fetch_add(1, Ordering::Relaxed) + 1;
                if refused >= MAX_REFUSED_LINKS {
                    let _ = state.close.try_send(format!(
                        "{refused} link attaches refused on this connection ({why}); closed"
                    ));
                }
                // In its own task, bounded by CLOSE_WAIT: a peer that never answers the
                // Detach must not stall the attaches behind it, nor hold the link forever.
                let err = AmqpErr::new(condition, Some(why), None);
                tokio::spawn(async move {
                    let closing = async {
                        match link {
                            LinkEndpoint::Sender(s) => {
                                let _ = s.close_with_error(err).await;
                            }
                            LinkEndpoint::Receiver(r) => {
                                let _ = r.close_with_error(err).await;
                            }
                        }
                    };
                    let _ = tokio::time::timeout(CLOSE_WAIT, closing).await;
                    drop(slot);
                });
            }
        }
    }
}

/// Whether this link may attach: the address is IoT Hub's, the device is the connection's
/// (admitted at its first link), the role fits.
async fn decide(
    state: &ConnState,
    address: &str,
    device_sends: bool,
) -> Result<(LinkKind, String, mpsc::Sender<ToSession>), (AmqpError, String)> {
    let (device, kind) =
        proto::parse_address(address).map_err(|e| (AmqpError::NotFound, e.to_string()))?;
    if !kind.allows(device_sends) {
        return Err((
            AmqpError::NotAllowed,
            format!(
                "the device attached {} as {}; IoT Hub expects the other role",
                kind.as_str(),
                if device_sends { "sender" } else { "receiver" }
            ),
        ));
    }
    let mut admitted = state.admitted.lock().await;
    match &*admitted {
        Admission::Device(d, tx) if *d == device => return Ok((kind, device, tx.clone())),
        Admission::Device(d, _) => {
            return Err((
                AmqpError::UnauthorizedAccess,
                format!(
                    "this connection is device \"{}\"; a link for \"{}\" is not allowed on it",
                    crate::text::escape_controls(d),
                    crate::text::escape_controls(&device)
                ),
            ));
        }
        Admission::Dps(dps) => {
            return Err((
                AmqpError::UnauthorizedAccess,
                format!(
                    "this connection registers \"{}\" with DPS; IoT Hub's links are not allowed on it (connect again to the assigned hub)",
                    crate::text::escape_controls(dps.registration_id())
                ),
            ));
        }
        Admission::Refused(why) => return Err((AmqpError::UnauthorizedAccess, why.clone())),
        Admission::Pending => {}
    }
    let sh = &state.sh;
    let username = azure::username("localhost", &device);
    match admit(sh, state.peer, &device, Some(&username), &state.chain).await {
        Err(refusal) => {
            let why = refusal.to_string();
            *admitted = Admission::Refused(why.clone());
            Err((AmqpError::UnauthorizedAccess, why))
        }
        Ok(revoked) => {
            if let Ok(mut p) = state.unauthenticated.lock() {
                p.take();
            }
            let (conn_id, outbound, subs) = take_over(sh, &device);
            sh.announce_accepted(&device, state.peer, 0, revoked);
            let (tx, rx) = mpsc::channel(64);
            let session = DeviceSession::new(sh.clone(), device.clone(), subs);
            tokio::spawn(device_session(
                sh.clone(),
                session,
                device.clone(),
                conn_id,
                outbound,
                rx,
                state.close.clone(),
            ));
            *admitted = Admission::Device(device.clone(), tx.clone());
            Ok((kind, device, tx))
        }
    }
}

/// Whether this DPS link may attach: the connection's first DPS link admits it to DPS
/// (`dps/amqp.rs`), later ones must name the same registration.
async fn decide_dps(
    state: &ConnState,
    address: &str,
    properties: Option<&fe2o3_amqp::types::definitions::Fields>,
    device_sends: bool,
) -> Result<DpsLink, (AmqpError, String)> {
    let mut admitted = state.admitted.lock().await;
    let session = match &*admitted {
        Admission::Dps(dps) => dps.clone(),
        Admission::Device(d, _) => {
            return Err((
                AmqpError::UnauthorizedAccess,
                format!(
                    "this connection is device \"{}\"; a DPS link is not allowed on it (register on a connection of its own)",
                    crate::text::escape_controls(d)
                ),
            ));
        }
        Admission::Refused(why) => return Err((AmqpError::UnauthorizedAccess, why.clone())),
        Admission::Pending => {
            let socket = state
                .unauthenticated
                .lock()
                .ok()
                .and_then(|p| p.as_ref().and_then(BudgetPermit::socket));
            let attach = dps_amqp::DpsAttach {
                sh: &state.sh,
                peer: state.peer,
                chain: &state.chain,
                address,
                properties,
                socket,
                close: state.close.clone(),
            };
            match dps_amqp::admit(attach).await {
                Ok(dps) => {
                    if let Ok(mut p) = state.unauthenticated.lock() {
                        p.take();
                    }
                    *admitted = Admission::Dps(dps.clone());
                    dps
                }
                Err((condition, why)) => {
                    // A malformed address decides nothing; a refused device stays refused.
                    if condition != AmqpError::NotFound {
                        *admitted = Admission::Refused(why.clone());
                    }
                    return Err((condition, why));
                }
            }
        }
    };
    session.attach(address, device_sends)
}

/// The device's session: runs the hub's device protocol and routes what it sends to the
/// links it belongs on.
async fn device_session(
    sh: Arc<Shared>,
    mut session: DeviceSession,
    device: String,
    conn_id: u64,
    mut outbound: mpsc::Receiver<Outbound>,
    mut rx: mpsc::Receiver<ToSession>,
    close: mpsc::Sender<String>,
) {
    let mut routes: HashMap<LinkKind, mpsc::Sender<Out>> = HashMap::new();
    let mut out = BytesMut::new();
    let mut stop = sh.gate.shutdown.clone();
    let mut pkid: u16 = 1;
    let mut next_pkid = || {
        pkid = pkid.checked_add(1).unwrap_or(1);
        pkid
    };
    let reason = loop {
        tokio::select! {
            m = rx.recv() => match m {
                None => break "connection closed by the device".to_string(),
                Some(ToSession::Closed(why)) => break why,
                Some(ToSession::Device(p, done)) => {
                    let r = session.handle(Packet::Publish(p), &mut out).await;
                    let _ = done.send(r);
                }
                Some(ToSession::Route(kind, tx)) => {
                    routes.insert(kind, tx);
                    let filter = match kind {
                        LinkKind::C2d => Some(azure::c2d_filter(&device)),
                        LinkKind::Twin => Some(azure::TWIN_RESPONSE_FILTER.to_string()),
                        LinkKind::Methods => Some(azure::METHODS_FILTER.to_string()),
                        LinkKind::Telemetry => None,
                    };
                    if let Some(f) = filter {
                        let sub = Subscribe::new(f, QoS::AtLeastOnce);
                        let _ = session.handle(Packet::Subscribe(sub), &mut out).await;
                    }
                }
                Some(ToSession::Desired(on, rid)) => {
                    let f = azure::TWIN_DESIRED_FILTER.to_string();
                    let p = if on {
                        let mut s = Subscribe::new_many([SubscribeFilter::new(f, QoS::AtLeastOnce)]);
                        s.pkid = next_pkid();
                        Packet::Subscribe(s)
                    } else {
                        Packet::Unsubscribe(Unsubscribe::new(f))
                    };
                    let _ = session.handle(p, &mut out).await;
                    session.publish(azure::twin_response_topic(200, &rid, None), Vec::new(), &mut out);
                }
            },
            o = outbound.recv() => match o {
                Some(Outbound::Publish(p)) => {
                    session.publish(p.topic, p.payload, &mut out);
                }
                Some(Outbound::Kick(why)) => {
                    let why = String::from(why);
                    let _ = close.try_send(why.clone());
                    break why;
                }
                None => break "hub closed the session".to_string(),
            },
            _ = stop.changed() => break "hub shutting down".to_string(),
        }
        route(&device, &mut out, &routes);
    };
    release(&sh, &device, conn_id);
    sh.emit(HubEvent::Disconnected { device, reason });
}

/// Send what the device protocol produced to the links (acknowledgements stay inside: AMQP
/// settles per delivery).
fn route(device: &str, out: &mut BytesMut, routes: &HashMap<LinkKind, mpsc::Sender<Out>>) {
    while let Ok(p) = Packet::read(out, MAX_PACKET) {
        let Packet::Publish(p) = p else { continue };
        let Some((kind, msg)) = proto::outbound(device, &p.topic, p.payload.to_vec()) else {
            continue;
        };
        if let Some(tx) = routes.get(&kind) {
            let _ = tx.try_send(msg);
        }
    }
    out.clear();
}

/// `route`: what the device's session sends on a link the hub sends on (None when the session
/// had already ended: the link is closed).
async fn run_link(
    link: LinkEndpoint,
    kind: LinkKind,
    sh: Arc<Shared>,
    device: String,
    to_session: mpsc::Sender<ToSession>,
    route: Option<mpsc::Receiver<Out>>,
) {
    match (link, route) {
        (LinkEndpoint::Receiver(r), _) => device_sends(r, kind, device, to_session).await,
        (LinkEndpoint::Sender(s), Some(rx)) => hub_sends(s, kind, sh, device, rx).await,
        (LinkEndpoint::Sender(s), None) => {
            let _ = s.close().await;
        }
    }
}

/// A link the device sends on: telemetry, twin requests, method answers. Each delivery is
/// settled with the session's verdict.
async fn device_sends(
    mut r: fe2o3_amqp::Receiver,
    kind: LinkKind,
    device: String,
    to_session: mpsc::Sender<ToSession>,
) {
    loop {
        let delivery = match r.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(_) => break,
        };
        let m = delivery.message();
        let body = proto::body_bytes(&m.body);
        let topic = match kind {
            LinkKind::Telemetry => Ok(azure::telemetry_topic(
                &device,
                &proto::telemetry_properties(m),
            )),
            LinkKind::Twin => match proto::twin_request_topic(m) {
                Ok((t, TwinOp::Get | TwinOp::PatchReported)) => Ok(t),
                Ok((rid, op)) => {
                    let on = op == TwinOp::SubscribeDesired;
                    let _ = to_session.send(ToSession::Desired(on, rid)).await;
                    let _ = r.accept(&delivery).await;
                    continue;
                }
                Err(e) => Err(e),
            },
            LinkKind::Methods => proto::method_response_topic(m),
            LinkKind::C2d => Err(proto::LinkError::SentOnCloudToDevice),
        };
        let verdict = match topic {
            Ok(topic) => {
                let mut p = Publish::new(topic, QoS::AtLeastOnce, body);
                p.pkid = 1;
                let (tx, rx) = oneshot::channel();
                if to_session.send(ToSession::Device(p, tx)).await.is_err() {
                    break;
                }
                rx.await
                    .map_err(|_| "session closed".to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
            }
            Err(e) => Err(e.to_string()),
        };
        let settled = match verdict {
            Ok(()) => r.accept(&delivery).await,
            Err(why) => {
                let err = AmqpErr::new(AmqpError::NotAllowed, Some(why), None);
                r.reject(&delivery, err).await
            }
        };
        if settled.is_err() {
            break;
        }
    }
    let _ = r.close().await;
}

/// A link the hub sends on: C2D (settled by the device: accept = complete, reject,
/// release/modify = abandon), twin responses and desired updates, method requests.
async fn hub_sends(
    mut s: fe2o3_amqp::Sender,
    kind: LinkKind,
    sh: Arc<Shared>,
    device: String,
    mut rx: mpsc::Receiver<Out>,
) {
    'messages: while let Some(msg) = rx.recv().await {
        let message_id = msg
            .properties
            .as_ref()
            .and_then(|p| p.message_id.as_ref())
            .map(proto::id_text)
            .unwrap_or_default();
        for _ in 0..MAX_DELIVERY_COUNT {
            let outcome = match s.send(msg.clone()).await {
                Ok(o) => o,
                Err(_) => break 'messages,
            };
            if kind != LinkKind::C2d {
                continue 'messages;
            }
            let settled = match outcome {
                Outcome::Accepted(_) => "completed",
                Outcome::Rejected(_) => "rejected",
                Outcome::Released(_) | Outcome::Modified(_) => "abandoned",
                #[allow(unreachable_patterns)]
                _ => "settled",
            };
            sh.emit(HubEvent::C2dSettled {
                device: device.clone(),
                message_id: message_id.clone(),
                outcome: settled,
            });
            if settled != "abandoned" {
                continue 'messages;
            }
        }
        sh.emit(HubEvent::C2dSettled {
            device: device.clone(),
            message_id,
            outcome: "dead-lettered",
        });
    }
    let _ = s.close().await;
}
