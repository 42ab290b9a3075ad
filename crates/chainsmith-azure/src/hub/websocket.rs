//! MQTT and AMQP over WebSockets, as IoT Hub serves them on 443: the upgrade at
//! `/$iothub/websocket` picks the protocol by its subprotocol (`mqtt` or `AMQPWSB10`); the
//! client certificate rides on the TLS under the WebSocket. The 443 listener's HTTP server
//! ([`super::https`]) hands an upgrade request here; after the 101 the hub's MQTT or AMQP
//! server runs unchanged over [`WsIo`], the byte stream of the binary messages.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::budget::{BudgetPermit, BudgetRefusal};
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
    /// A request at the WebSocket path that is not an RFC 6455 upgrade; says what is missing.
    #[error(
        "\"{0}\" is not a WebSocket upgrade (GET, HTTP/1.1, Connection: Upgrade, Upgrade: websocket, Sec-WebSocket-Key, Sec-WebSocket-Version: 13); IoT Hub serves MQTT and AMQP over WebSockets at {PATH}"
    )]
    Handshake(String),
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

/// The `Sec-WebSocket-Key` of an RFC 6455 upgrade request, or what is wrong with it.
fn handshake_key(req: &Request<Incoming>) -> Result<&str, UpgradeRefusal> {
    let h = req.headers();
    let has = |name: header::HeaderName, token: &str| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    let line = || {
        format!(
            "{} {}",
            req.method(),
            crate::text::escape_controls(req.uri().path())
        )
    };
    let upgrade = req.method() == hyper::Method::GET
        && req.version() == hyper::Version::HTTP_11
        && has(header::CONNECTION, "upgrade")
        && has(header::UPGRADE, "websocket")
        && h.get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13");
    match h
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|k| k.to_str().ok())
    {
        Some(key) if upgrade => Ok(key),
        _ => Err(UpgradeRefusal::Handshake(line())),
    }
}

/// Answer an upgrade request: 101 and MQTT or AMQP served over the upgraded stream in a task
/// of its own, or 400 with the reason (the hub's log line too). `permit` is the connection's
/// pre-authentication slot, taken only when the upgrade is accepted; the device's CONNECT or
/// link must come within [`CONNECT_TIMEOUT`] of the upgrade.
pub(super) fn upgrade(
    sh: &Arc<Shared>,
    req: &mut Request<Incoming>,
    chain: Vec<Vec<u8>>,
    peer: SocketAddr,
    permit: impl FnOnce() -> Result<BudgetPermit, BudgetRefusal>,
) -> Response<Full<Bytes>> {
    let offered = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok());
    let chosen = handshake_key(req).and_then(|key| {
        let proto = choose(req.uri().path(), offered)?;
        Ok((proto, derive_accept_key(key.as_bytes())))
    });
    let (proto, accept) = match chosen {
        Ok(c) => c,
        Err(why) => return refuse(sh, peer, StatusCode::BAD_REQUEST, why.to_string()),
    };
    let permit = match permit() {
        Ok(p) => p,
        Err(why) => return refuse(sh, peer, StatusCode::SERVICE_UNAVAILABLE, why.to_string()),
    };
    let upgrading = hyper::upgrade::on(req);
    let sh = sh.clone();
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let upgraded = match tokio::time::timeout(CONNECT_TIMEOUT, upgrading).await {
            Ok(Ok(u)) => u,
            Ok(Err(e)) => {
                let reason = format!("WebSocket upgrade failed: {e}");
                sh.emit(HubEvent::Dropped { peer, reason });
                return;
            }
            Err(_) => {
                let reason = "the WebSocket upgrade did not complete within 10 s; closed".into();
                sh.emit(HubEvent::Dropped { peer, reason });
                return;
            }
        };
        let websocket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config()))
                .await;
        let io = WsIo::new(websocket);
        match proto {
            Proto::Mqtt => {
                super::mqtt::mqtt_connection(sh, io, chain, peer, permit, start).await;
            }
            Proto::Amqp => super::amqp::connection(sh, io, chain, peer, permit).await,
        }
    });
    let name = match proto {
        Proto::Mqtt => MQTT_SUBPROTOCOL,
        Proto::Amqp => AMQP_SUBPROTOCOL,
    };
    let mut resp = Response::new(Full::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(name),
    );
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// A refused upgrade: `status` with the reason as its body and the hub's log line; the
/// connection closes after it, as it did when tungstenite answered.
fn refuse(
    sh: &Shared,
    peer: SocketAddr,
    status: StatusCode,
    reason: String,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{reason}\n"))));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    sh.emit(HubEvent::Dropped { peer, reason });
    resp
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
