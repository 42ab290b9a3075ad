//! MQTT and AMQP over WebSockets, as IoT Hub serves them on 443: the upgrade at
//! `/$iothub/websocket` picks the protocol by its subprotocol (`mqtt` or `AMQPWSB10`); the
//! client certificate rides on the TLS under the WebSocket. After the upgrade the hub's MQTT
//! or AMQP server runs unchanged over [`WsIo`], the byte stream of the binary messages.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::server::{CONNECT_TIMEOUT, HubEvent, MAX_PACKET, Shared};

/// The path IoT Hub serves WebSockets on.
pub const PATH: &str = "/$iothub/websocket";
/// Subprotocols: MQTT 3.1.1 and AMQP 1.0 over WebSockets.
pub const MQTT_SUBPROTOCOL: &str = "mqtt";
/// The AMQP 1.0 WebSocket subprotocol (the OASIS AMQP-over-WebSocket binding's name).
pub const AMQP_SUBPROTOCOL: &str = "AMQPWSB10";
/// The port IoT Hub serves WebSockets on.
pub const WS_PORT: u16 = 443;

/// Bytes the hub buffers before it writes them to the socket (tungstenite's default).
pub const WRITE_BUFFER: usize = 128 * 1024;
/// Most bytes the hub holds for a peer that does not read: the write buffer plus one whole
/// message (a 256 KB MQTT packet) and its frame header. Past it tungstenite refuses to queue
/// more; without it, answering pings nobody reads grew 8 M pings to 1.0 GB.
pub const MAX_WRITE_BUFFER: usize = WRITE_BUFFER + MAX_PACKET + 1024 + 64;
/// Pings that may arrive while the hub's answers to earlier ones cannot be written (the peer
/// reads nothing and the socket is full): past this the connection is closed. RFC 6455 §5.5.2
/// makes every ping owe a pong; a peer that never takes them is flooding, not keeping alive.
pub const MAX_PINGS_UNANSWERED: usize = 64;

/// Largest WebSocket message or frame the hub takes (a 256 KB MQTT packet fits), and the
/// bounded outgoing buffer ([`MAX_WRITE_BUFFER`]).
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_PACKET + 1024))
        .max_frame_size(Some(MAX_PACKET + 1024))
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Mqtt,
    Amqp,
}

/// Which protocol an upgrade request asks for, or the reason it is refused.
fn choose(path: &str, offered: Option<&str>) -> Result<Proto, String> {
    if path != PATH {
        return Err(format!(
            "WebSocket upgrade for path \"{}\"; IoT Hub serves {PATH}",
            crate::text::escape_controls(path)
        ));
    }
    let offered = offered.unwrap_or("");
    for p in offered.split(',').map(str::trim) {
        if p.eq_ignore_ascii_case(MQTT_SUBPROTOCOL) {
            return Ok(Proto::Mqtt);
        }
        if p == AMQP_SUBPROTOCOL {
            return Ok(Proto::Amqp);
        }
    }
    Err(if offered.is_empty() {
        format!(
            "WebSocket upgrade without a subprotocol; IoT Hub needs \"{MQTT_SUBPROTOCOL}\" or \"{AMQP_SUBPROTOCOL}\""
        )
    } else {
        format!(
            "WebSocket subprotocol \"{}\" is not \"{MQTT_SUBPROTOCOL}\" or \"{AMQP_SUBPROTOCOL}\"",
            crate::text::escape_controls(offered)
        )
    })
}

/// Upgrade, then serve MQTT or AMQP over the WebSocket.
pub(super) async fn connection<S>(
    sh: Arc<Shared>,
    tls: S,
    chain: Vec<Vec<u8>>,
    peer: SocketAddr,
    permit: super::budget::BudgetPermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug + 'static,
{
    let start = tokio::time::Instant::now();
    let picked: Arc<Mutex<Result<Proto, String>>> =
        Arc::new(Mutex::new(Err("no upgrade request".into())));
    let seen = picked.clone();
    // The callback's type is tungstenite's; its error response is large by design.
    #[allow(clippy::result_large_err)]
    let callback = move |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let offered = req
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok());
        let choice = choose(req.uri().path(), offered);
        let r = match &choice {
            Ok(p) => {
                let name = match p {
                    Proto::Mqtt => MQTT_SUBPROTOCOL,
                    Proto::Amqp => AMQP_SUBPROTOCOL,
                };
                if let Ok(v) = name.parse() {
                    resp.headers_mut().insert("sec-websocket-protocol", v);
                }
                Ok(resp)
            }
            Err(why) => {
                let mut e = ErrorResponse::new(Some(why.clone()));
                *e.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::BAD_REQUEST;
                Err(e)
            }
        };
        if let Ok(mut p) = seen.lock() {
            *p = choice;
        }
        r
    };
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(tls, callback, Some(config()));
    let ws = match tokio::time::timeout(CONNECT_TIMEOUT, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            let why = match picked.lock().map(|p| p.clone()) {
                Ok(Err(why)) if why != "no upgrade request" => why,
                _ => format!("WebSocket upgrade failed: {e}"),
            };
            sh.emit(HubEvent::Dropped { peer, reason: why });
            return;
        }
        Err(_) => {
            sh.emit(HubEvent::Dropped {
                peer,
                reason: "no WebSocket upgrade within 10 s; closed".into(),
            });
            return;
        }
    };
    let proto = picked.lock().ok().and_then(|p| p.clone().ok());
    let io = WsIo::new(ws);
    match proto {
        Some(Proto::Mqtt) => {
            super::server::mqtt_connection(sh, io, chain, peer, permit, start).await;
        }
        Some(Proto::Amqp) => super::amqp::connection(sh, io, chain, peer, permit).await,
        None => {}
    }
}

/// The byte stream carried in a WebSocket's binary messages (both MQTT and AMQP over
/// WebSockets send their bytes that way); text messages are a protocol error, close ends it.
pub struct WsIo<S> {
    ws: WebSocketStream<S>,
    pending: Bytes,
    /// Pings received since the hub last managed to write everything it owes
    /// ([`MAX_PINGS_UNANSWERED`]).
    pings_unanswered: usize,
}

impl<S> std::fmt::Debug for WsIo<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsIo")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<S> WsIo<S> {
    /// Wrap an upgraded WebSocket so MQTT or AMQP can run over it as over a byte stream.
    pub fn new(ws: WebSocketStream<S>) -> Self {
        WsIo {
            ws,
            pending: Bytes::new(),
            pings_unanswered: 0,
        }
    }
}

fn io_err(e: tokio_tungstenite::tungstenite::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = buf.remaining().min(self.pending.len());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(b))) => self.pending = b,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "text WebSocket message; MQTT and AMQP use binary messages",
                    )));
                }
                Some(Ok(Message::Ping(_))) => {
                    // tungstenite has queued the pong; whether it could be written tells a
                    // peer that keeps alive from one that floods and never reads.
                    match Pin::new(&mut self.ws).poll_flush(cx) {
                        Poll::Ready(Ok(())) => self.pings_unanswered = 0,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(io_err(e))),
                        Poll::Pending => self.pings_unanswered += 1,
                    }
                    if self.pings_unanswered > MAX_PINGS_UNANSWERED {
                        return Poll::Ready(Err(std::io::Error::other(format!(
                            "{} WebSocket pings arrived while the peer read none of the pongs owed (the hub's cap is {MAX_PINGS_UNANSWERED}); a ping flood, closed",
                            self.pings_unanswered
                        ))));
                    }
                }
                Some(Ok(_)) => {} // pong, raw frame: nothing owed
                Some(Err(e)) => return Poll::Ready(Err(io_err(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_err)?;
        // At most one packet's worth per message, so a message always fits the bounded write
        // buffer ([`MAX_WRITE_BUFFER`]); MQTT and AMQP over WebSockets are byte streams that
        // may split anywhere across messages.
        let n = buf.len().min(MAX_PACKET);
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(io_err)?;
        Poll::Ready(Ok(n))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_err)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.ws).poll_close(cx).map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_picks_the_protocol_by_subprotocol_and_refuses_without_one() {
        assert_eq!(choose(PATH, Some("mqtt")), Ok(Proto::Mqtt));
        assert_eq!(choose(PATH, Some("AMQPWSB10")), Ok(Proto::Amqp));
        assert_eq!(choose(PATH, Some("foo, mqtt")), Ok(Proto::Mqtt));
        assert!(
            choose(PATH, None)
                .unwrap_err()
                .contains("without a subprotocol")
        );
        assert!(choose(PATH, Some("stomp")).unwrap_err().contains("stomp"));
        assert!(choose("/", Some("mqtt")).unwrap_err().contains("path"));
    }
}
