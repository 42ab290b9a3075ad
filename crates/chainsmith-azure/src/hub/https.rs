//! The hub's 443 listener, as Azure serves it: one HTTP/1.1 server (hyper) over the TLS
//! stream. `GET /$iothub/websocket` with an upgrade becomes MQTT or AMQP over WebSockets
//! ([`super::websocket`]); DPS's REST paths are answered by [`super::dps::https`]; anything
//! else is 404 with a line naming what the hub serves.
//!
//! The limits of the pre-authentication phase hold here too: a connection must send a whole
//! request head within [`CONNECT_TIMEOUT`] of connecting (and of its previous answer), a head
//! is at most [`MAX_REQUEST_HEAD_BYTES`], a body at most [`super::dps::https::MAX_BODY_BYTES`],
//! a connection serves at most [`MAX_REQUESTS_PER_CONNECTION`] requests and, until it is
//! upgraded, lives at most the hub's DPS session lifetime.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::budget::{BudgetPermit, BudgetRefusal};
use super::dps::https::{self as dps_https, DpsConn, DpsLink};
use super::events::{HubEvent, clip};
use super::shared::{CONNECT_TIMEOUT, Shared};
use crate::azure::dps as wire;
use crate::websocket::PATH;

/// Largest request head (request line and headers) the listener reads, and so the most it
/// buffers for a peer that never ends its headers: IoT Hub and DPS document no limit; the SDKs
/// send under 1 KB, and 16 KiB is twice the 8 KiB common servers allow. A longer head is
/// answered 431 and the connection closed.
pub const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;
/// Requests one connection may make before the hub closes it (`Connection: close` on the
/// last answer): a registration is one PUT and a poll every `retry-after` (1 s), so this is a
/// minute of polling; a device that needs more reconnects, as the SDKs do anyway.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 64;

/// The one line a request for anything else gets (with its 404).
const SERVED: &str = "this hub serves MQTT and AMQP over WebSockets at /$iothub/websocket (subprotocols mqtt, AMQPWSB10) and DPS's REST API at /{idScope}/registrations/{registrationId}/register and …/operations/{operationId}";

/// One accepted TLS connection on the 443 listener.
struct Conn {
    sh: Arc<Shared>,
    peer: SocketAddr,
    chain: Vec<Vec<u8>>,
    /// The pre-authentication slot, until an upgrade takes it or DPS trades it for a DPS
    /// session slot.
    pre_auth: Mutex<Option<BudgetPermit>>,
    dps: DpsLink,
    requests: AtomicUsize,
}

/// Serve HTTP on one accepted TLS connection until it closes, is upgraded, or a limit ends it.
pub(super) async fn connection<S>(
    sh: Arc<Shared>,
    tls: S,
    chain: Vec<Vec<u8>>,
    peer: SocketAddr,
    permit: BudgetPermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug + 'static,
{
    let conn = Arc::new(Conn {
        sh: sh.clone(),
        peer,
        chain,
        pre_auth: Mutex::new(Some(permit)),
        dps: DpsLink::default(),
        requests: AtomicUsize::new(0),
    });
    let serving_conn = conn.clone();
    let service = hyper::service::service_fn(move |req| {
        let c = serving_conn.clone();
        async move { Ok::<_, Infallible>(c.route(req).await) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(CONNECT_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES);
    let serving = http
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades();
    let mut stop = sh.gate.shutdown.clone();
    let lifetime = sh.config.dps_session_lifetime;
    let ended = tokio::select! {
        r = tokio::time::timeout(lifetime, serving) => match r {
            // Closed by the device, or upgraded (the WebSocket task carries on).
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(conn.why_closed(&e)),
            Err(_) => Some(format!(
                "the HTTPS connection was open for {} s, the hub's limit for one registration; closed",
                lifetime.as_secs_f64()
            )),
        },
        _ = stop.changed() => Some("hub shutting down".to_string()),
    };
    let requests = conn.requests.load(Ordering::Relaxed);
    let reason = ended
        .clone()
        .unwrap_or_else(|| "connection closed by the device".into());
    let had_dps = conn.dps.end(&sh, reason.clone());
    if !had_dps && (ended.is_some() || requests == 0) {
        sh.emit(HubEvent::Dropped { peer, reason });
    }
}

impl Conn {
    /// One request: to the WebSocket upgrade, to DPS, or 404.
    async fn route(&self, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let path = req.uri().path().to_string();
        let wants_upgrade = req.headers().contains_key(header::UPGRADE);
        let mut resp = if wants_upgrade || path == PATH {
            let chain = self.chain.clone();
            super::websocket::upgrade(&self.sh, &mut req, chain, self.peer, || {
                self.pre_auth_slot()
            })
        } else if let Some(rest) = wire::parse_rest_path(&path, req.uri().query()) {
            let c = DpsConn {
                sh: &self.sh,
                peer: self.peer,
                chain: &self.chain,
                pre_auth: &self.pre_auth,
                link: &self.dps,
            };
            dps_https::answer(c, req, rest).await
        } else {
            self.not_found(&req)
        };
        if n >= MAX_REQUESTS_PER_CONNECTION {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }

    /// The connection's pre-authentication slot for an upgrade: the one it was accepted with,
    /// or a new one when DPS requests on it traded that for a DPS session slot.
    fn pre_auth_slot(&self) -> Result<BudgetPermit, BudgetRefusal> {
        let held = self
            .pre_auth
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match held {
            Some(p) => Ok(p),
            None => {
                let budget = &self.sh.gate.pre_auth;
                budget
                    .charge(self.peer.ip())
                    .map_err(|full| budget.refusal(full, self.peer.ip()))
            }
        }
    }

    /// 404 for a path the hub does not serve, with the one line saying what it does serve.
    fn not_found(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let reason = format!(
            "HTTP {} \"{}\": answered 404, {SERVED}",
            req.method(),
            clip(&crate::text::escape_controls(req.uri().path()))
        );
        self.sh.emit(HubEvent::Dropped {
            peer: self.peer,
            reason,
        });
        let mut resp = Response::new(Full::new(Bytes::from(format!("not found: {SERVED}\n"))));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp
    }

    /// Why hyper ended the connection, in the hub's words.
    fn why_closed(&self, e: &hyper::Error) -> String {
        let secs = CONNECT_TIMEOUT.as_secs();
        if e.is_timeout() {
            if self.requests.load(Ordering::Relaxed) == 0 {
                format!(
                    "no HTTP request (WebSocket upgrade or DPS call) within {secs} s of connecting; closed"
                )
            } else {
                format!("no further HTTP request within {secs} s; closed")
            }
        } else if e.is_parse_too_large() {
            format!(
                "HTTP request head over {} KiB; answered 431 and closed",
                MAX_REQUEST_HEAD_BYTES / 1024
            )
        } else if e.is_parse() {
            format!("not an HTTP/1.1 request ({e}); answered 400 and closed")
        } else {
            format!("HTTP connection failed: {e}")
        }
    }
}
