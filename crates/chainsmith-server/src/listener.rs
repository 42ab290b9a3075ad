//! The one accept path of every local cloud and every transport: bind, accept, charge the
//! pre-authentication budget (a peer at its share is closed at accept, others are not), give
//! the TLS handshake [`TLS_HANDSHAKE_TIMEOUT`], and hand the stream, the client's chain and
//! the budget slot to the cloud's [`Service`], which frees the slot once a device is admitted.
//!
//! A cloud is a [`Service`]: its transports (an enum of its own) and what it does with one
//! accepted connection of each. A new transport is a variant there; a new cloud is one more
//! implementation of the trait, on the same accept loop.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::budget::{BudgetPermit, PeerBudget};

/// The pre-TLS window: a connection must finish its TLS handshake this long after the TCP
/// accept, or it is closed and its pre-authentication slot freed. A TLS 1.2 handshake is two
/// round trips, 1.3 one; 5 s leaves room for a cellular link's 1-2 s round trips (it was the
/// whole 10 s CONNECT window, which let an idle socket hold a slot twice as long).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Lines about connections closed by a full budget are said at most this often; the next line
/// counts the ones closed in between.
pub(crate) const OVER_CAP_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// A TLS connection the accept loop handed to its cloud.
pub struct Accepted {
    /// The TLS stream, handshake done.
    pub tls: tokio_rustls::server::TlsStream<TcpStream>,
    /// The client's certificate chain as it sent it (leaf first; empty without one).
    pub chain: Vec<Vec<u8>>,
    /// Where it came from.
    pub peer: SocketAddr,
    /// Its pre-authentication slot: the cloud drops it once the device is admitted.
    pub unauthenticated: BudgetPermit,
    /// When the TCP connection was accepted (protocol deadlines count from here).
    pub start: Instant,
}

/// A local cloud as the accept loop sees it.
pub trait Service: Send + Sync + 'static {
    /// The transports it serves, one listener each.
    type Transport: Copy + Send + Sync + 'static;
    /// Serve one accepted connection of `transport` to its end.
    fn serve(
        self: Arc<Self>,
        transport: Self::Transport,
        conn: Accepted,
    ) -> impl Future<Output = ()> + Send + 'static;
    /// A connection was closed before it reached the cloud's protocol; `reason` says why.
    fn dropped(&self, peer: SocketAddr, reason: String);
    /// What every listener of this cloud shares: the budget, the log limiter and the stop.
    fn gate(&self) -> &Gate;
}

/// What every listener of one cloud shares.
pub struct Gate {
    /// One slot per connection not yet authenticated, charged at accept by every listener.
    pub pre_auth: PeerBudget,
    /// Fires when the cloud stops: every accept loop and handshake ends.
    pub shutdown: watch::Receiver<bool>,
    /// Connections closed by a cap since the last log line about it, and when that was.
    over_cap: Mutex<(u64, Option<Instant>)>,
}

impl Gate {
    /// A gate charging `pre_auth` and stopping when `shutdown` turns true.
    pub fn new(pre_auth: PeerBudget, shutdown: watch::Receiver<bool>) -> Self {
        Gate {
            pre_auth,
            shutdown,
            over_cap: Mutex::new((0, None)),
        }
    }

    /// A connection was closed because a budget is full (`why`): the line to log, at most one
    /// per [`OVER_CAP_LOG_INTERVAL`] (None: one was said recently, this one is counted).
    pub fn over_cap_line(&self, why: &str) -> Option<String> {
        let closed = {
            let mut c = self.over_cap.lock().unwrap_or_else(|p| p.into_inner());
            c.0 += 1;
            let now = Instant::now();
            if c.1.is_some_and(|t| now < t + OVER_CAP_LOG_INTERVAL) {
                return None;
            }
            c.1 = Some(now);
            std::mem::take(&mut c.0)
        };
        Some(format!(
            "{why}; closed {closed} new connection(s) since the last such line"
        ))
    }
}

/// Bind a listener on `ip:port` (port 0: a free one), ready for tokio.
pub fn bind(ip: IpAddr, port: u16) -> std::io::Result<TcpListener> {
    let l = std::net::TcpListener::bind(SocketAddr::new(ip, port))?;
    l.set_nonblocking(true)?;
    TcpListener::from_std(l)
}

/// Accept connections for `transport` until the cloud stops.
pub async fn listen<S: Service>(
    svc: Arc<S>,
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    transport: S::Transport,
) {
    let mut stop = svc.gate().shutdown.clone();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    // Out of descriptors, most likely: wait for some to be given back.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let Some(unauthenticated) = charge(&*svc, &tcp, peer) else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (svc, acceptor) = (svc.clone(), acceptor.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            // Boxed: the handshake's state (rustls's connection mid-handshake, its timer) is
            // freed when it ends instead of sizing the connection's task for the session's life.
            let Some((tls, chain)) = Box::pin(handshake(&*svc, &acceptor, tcp, peer)).await else {
                return;
            };
            let conn = Accepted {
                tls,
                chain,
                peer,
                unauthenticated,
                start,
            };
            svc.serve(transport, conn).await;
        });
    }
}

/// The pre-authentication slot for a new connection, or None when it was closed at accept.
fn charge<S: Service>(svc: &S, tcp: &TcpStream, peer: SocketAddr) -> Option<BudgetPermit> {
    let gate = svc.gate();
    // A duplicate of the socket's descriptor lets the budget shut this connection down to
    // make room for a peer holding less (PeerBudget::charge_evicting).
    let socket = {
        use std::os::fd::AsFd;
        tcp.as_fd().try_clone_to_owned().ok()
    };
    match gate.pre_auth.charge_evicting(peer.ip(), socket) {
        Ok((permit, evicted)) => {
            if let Some(greedy) = evicted {
                let why = format!(
                    "{} {} are held; {greedy}, which held the most, lost its oldest to let {} in",
                    gate.pre_auth.total,
                    gate.pre_auth.what,
                    peer.ip()
                );
                if let Some(line) = gate.over_cap_line(&why) {
                    svc.dropped(peer, line);
                }
            }
            Some(permit)
        }
        Err(full) => {
            let why = gate.pre_auth.refusal(full, peer.ip());
            if let Some(line) = gate.over_cap_line(&format!("{why}; closed at accept")) {
                svc.dropped(peer, line);
            }
            None
        }
    }
}

/// The TLS handshake within [`TLS_HANDSHAKE_TIMEOUT`]: the stream and the client's chain.
async fn handshake<S: Service>(
    svc: &S,
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, Vec<Vec<u8>>)> {
    let mut stop = svc.gate().shutdown.clone();
    let r = tokio::select! {
        r = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => r,
        _ = stop.changed() => return None,
    };
    let reason = match r {
        Ok(Ok(tls)) => {
            let chain = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.as_ref().to_vec()).collect())
                .unwrap_or_default();
            return Some((tls, chain));
        }
        Ok(Err(e)) => format!("TLS handshake failed: {e}"),
        Err(_) => format!(
            "no TLS handshake within {} s of connecting (the pre-TLS window); closed",
            TLS_HANDSHAKE_TIMEOUT.as_secs()
        ),
    };
    svc.dropped(peer, reason);
    None
}
