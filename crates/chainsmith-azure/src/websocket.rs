//! IoT Hub's WebSocket binding, which the hub and the device side share: the path and
//! subprotocols of the upgrade on 443 (`mqtt` or `AMQPWSB10`), the frame limits, and [`WsIo`],
//! the byte stream of a WebSocket's binary messages that MQTT or AMQP then runs over.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::MAX_PACKET;

/// The path IoT Hub serves WebSockets on.
pub const PATH: &str = "/$iothub/websocket";
/// Subprotocols: MQTT 3.1.1 and AMQP 1.0 over WebSockets.
pub const MQTT_SUBPROTOCOL: &str = "mqtt";
/// The AMQP 1.0 WebSocket subprotocol (the OASIS AMQP-over-WebSocket binding's name).
pub const AMQP_SUBPROTOCOL: &str = "AMQPWSB10";
/// The port IoT Hub serves WebSockets on.
pub const WS_PORT: u16 = 443;

/// Bytes the hub buffers before it writes them to the socket (tungstenite's default).
pub(crate) const WRITE_BUFFER: usize = 128 * 1024;
/// Most bytes the hub holds for a peer that does not read: the write buffer plus one whole
/// message (a 256 KB MQTT packet) and its frame header. Past it tungstenite refuses to queue
/// more; without it, answering pings nobody reads grew 8 M pings to 1.0 GB.
pub(crate) const MAX_WRITE_BUFFER: usize = WRITE_BUFFER + MAX_PACKET + 1024 + 64;
/// Pings that may arrive while the hub's answers to earlier ones cannot be written (the peer
/// reads nothing and the socket is full): past this the connection is closed. RFC 6455 §5.5.2
/// makes every ping owe a pong; a peer that never takes them is flooding, not keeping alive.
pub(crate) const MAX_PINGS_UNANSWERED: usize = 64;

/// Largest WebSocket message or frame the hub takes (a 256 KB MQTT packet fits), and the
/// bounded outgoing buffer ([`MAX_WRITE_BUFFER`]).
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_PACKET + 1024))
        .max_frame_size(Some(MAX_PACKET + 1024))
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
}

/// The byte stream carried in a WebSocket's binary messages (both MQTT and AMQP over
/// WebSockets send their bytes that way); text messages are a protocol error, close ends it.
pub struct WsIo<S> {
    websocket: WebSocketStream<S>,
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
    pub fn new(websocket: WebSocketStream<S>) -> Self {
        WsIo {
            websocket,
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
            match ready!(Pin::new(&mut self.websocket).poll_next(cx)) {
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
                    match Pin::new(&mut self.websocket).poll_flush(cx) {
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
        ready!(Pin::new(&mut self.websocket).poll_ready(cx)).map_err(io_err)?;
        // At most one packet's worth per message, so a message always fits the bounded write
        // buffer ([`MAX_WRITE_BUFFER`]); MQTT and AMQP over WebSockets are byte streams that
        // may split anywhere across messages.
        let n = buf.len().min(MAX_PACKET);
        Pin::new(&mut self.websocket)
            .start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(io_err)?;
        Poll::Ready(Ok(n))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.websocket).poll_flush(cx).map_err(io_err)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.websocket).poll_close(cx).map_err(io_err)
    }
}
