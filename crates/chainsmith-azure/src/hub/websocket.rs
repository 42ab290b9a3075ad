//! MQTT and AMQP over WebSockets, as IoT Hub serves them on 443: the upgrade at
//! `/$iothub/websocket` picks the protocol by its subprotocol (`mqtt` or `AMQPWSB10`); the
//! client certificate rides on the TLS under the WebSocket. After the upgrade the hub's MQTT
//! or AMQP server runs unchanged over [`WsIo`], the byte stream of the binary messages.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

use super::events::HubEvent;
use super::shared::{CONNECT_TIMEOUT, Shared};
use crate::websocket::{AMQP_SUBPROTOCOL, MQTT_SUBPROTOCOL, PATH, WsIo, config};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Mqtt,
    Amqp,
}

/// Why an upgrade request is refused; the message is the 400 response's body and the hub's
/// log line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
enum UpgradeRefusal {
    /// Another path than IoT Hub's WebSocket endpoint.
    #[error(
        "WebSocket upgrade for path \"{}\"; IoT Hub serves {PATH}",
        crate::text::escape_controls(.0)
    )]
    Path(String),
    /// No `Sec-WebSocket-Protocol` header.
    #[error(
        "WebSocket upgrade without a subprotocol; IoT Hub needs \"{MQTT_SUBPROTOCOL}\" or \"{AMQP_SUBPROTOCOL}\""
    )]
    NoSubprotocol,
    /// Subprotocols of which IoT Hub speaks none, as offered.
    #[error(
        "WebSocket subprotocol \"{}\" is not \"{MQTT_SUBPROTOCOL}\" or \"{AMQP_SUBPROTOCOL}\"",
        crate::text::escape_controls(.0)
    )]
    Subprotocol(String),
}

/// Which protocol an upgrade request asks for, or the reason it is refused.
fn choose(path: &str, offered: Option<&str>) -> Result<Proto, UpgradeRefusal> {
    if path != PATH {
        return Err(UpgradeRefusal::Path(path.to_string()));
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
        UpgradeRefusal::NoSubprotocol
    } else {
        UpgradeRefusal::Subprotocol(offered.to_string())
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
    // What the upgrade request asked for; None until one arrives.
    let picked: Arc<Mutex<Option<Result<Proto, UpgradeRefusal>>>> = Arc::new(Mutex::new(None));
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
                let mut e = ErrorResponse::new(Some(why.to_string()));
                *e.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::BAD_REQUEST;
                Err(e)
            }
        };
        if let Ok(mut p) = seen.lock() {
            *p = Some(choice);
        }
        r
    };
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(tls, callback, Some(config()));
    let websocket = match tokio::time::timeout(CONNECT_TIMEOUT, upgrade).await {
        Ok(Ok(websocket)) => websocket,
        Ok(Err(e)) => {
            let why = match picked.lock().map(|p| p.clone()) {
                Ok(Some(Err(why))) => why.to_string(),
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
    let proto = picked.lock().ok().and_then(|p| p.clone()?.ok());
    let io = WsIo::new(websocket);
    match proto {
        Some(Proto::Mqtt) => {
            super::mqtt::mqtt_connection(sh, io, chain, peer, permit, start).await;
        }
        Some(Proto::Amqp) => super::amqp::connection(sh, io, chain, peer, permit).await,
        None => {}
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
        let none = choose(PATH, None).unwrap_err();
        assert_eq!(none, UpgradeRefusal::NoSubprotocol);
        assert!(none.to_string().contains("without a subprotocol"));
        let stomp = choose(PATH, Some("stomp")).unwrap_err();
        assert_eq!(stomp, UpgradeRefusal::Subprotocol("stomp".into()));
        assert!(stomp.to_string().contains("\"stomp\""));
        let root = choose("/", Some("mqtt")).unwrap_err();
        assert_eq!(root, UpgradeRefusal::Path("/".into()));
        assert!(root.to_string().contains("path \"/\""));
    }
}
