//! The control channel of a running `aws serve`, on `chainsmith_server::control`: a Unix
//! socket at `WS/aws/control.sock` (mode 0600) carrying the CLI's `aws publish`, `aws monitor`
//! and `aws shadow get|update`, so that what the CLI does reaches connected devices (a shadow
//! update's delta, a published message).
//!
//! Requests (one JSON line; one answer line `{"ok": …}` or `{"error": "…", "kind": "…"}`):
//! - `{"op":"publish","topic":"t","message":"text","qos":1}` → `{"ok":{"queued":N}}`
//! - `{"op":"monitor","topic":"filter"}` → `{"ok":{"monitoring":true}}`, then one
//!   `{"client_id","topic","payload"}` line per message a device publishes that matches
//! - `{"op":"watch","client_id":"d1","published":true}` → `{"ok":{"watching":true}}`, then one
//!   `{"client_id","kind","reason"}` line per refusal, policy denial or takeover of that client
//!   id (every client id when null), and with `published` one `{"client_id","kind":"published",
//!   "topic","payload"}` line per message it publishes: how the connection test learns why AWS
//!   closed its connection (AWS itself says nothing)
//! - `{"op":"shadow-get","thing":"t","name":null}` → `{"ok":DOCUMENT}`
//! - `{"op":"shadow-update","thing":"t","name":null,"desired":{…}}` → `{"ok":DOCUMENT}`

use std::path::{Path, PathBuf};

use bytes::Bytes;
use chainsmith_pki::store::Workspace;
use chainsmith_server::control::{self as channel, ClientError};
use chainsmith_server::topic::filter_matches;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Control;
use super::events::BrokerEvent;
use super::limits::{MAX_PAYLOAD_BYTES, TopicError, check_topic_filter, check_topic_name};
use super::shadow::{ShadowError, ShadowId};

/// Where a running `aws serve` listens for the CLI, under the workspace root.
pub const CONTROL_SOCKET: &str = "aws/control.sock";

/// The control socket of workspace `ws`.
pub fn socket_path(ws: &Workspace) -> PathBuf {
    ws.root().join(CONTROL_SOCKET)
}

/// A request over the control channel: `op` names it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Publish as the service.
    Publish {
        /// The topic name.
        topic: String,
        /// The payload, as text.
        message: String,
        /// 0 or 1.
        #[serde(default)]
        qos: u8,
    },
    /// Stream what devices publish.
    Monitor {
        /// Only topics matching this filter.
        #[serde(default)]
        topic: Option<String>,
    },
    /// Stream why connections of a client id were refused, denied or taken over.
    Watch {
        /// Only this client id (every one when None).
        #[serde(default)]
        client_id: Option<String>,
        /// Also stream what it publishes.
        #[serde(default)]
        published: bool,
    },
    /// A shadow's document.
    ShadowGet {
        /// The thing.
        thing: String,
        /// The named shadow, or the classic one.
        #[serde(default)]
        name: Option<String>,
    },
    /// Update a shadow's desired state.
    ShadowUpdate {
        /// The thing.
        thing: String,
        /// The named shadow, or the classic one.
        #[serde(default)]
        name: Option<String>,
        /// The desired section (an object; `null` values delete keys).
        desired: Value,
    },
}

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No `aws serve` answers for this workspace.
    #[error("no aws serve is running for this workspace ({0})")]
    NotRunning(String),
    /// The channel broke.
    #[error("control channel: {0}")]
    Io(String),
    /// The running service answered with an error.
    #[error("the running aws serve answered: {0}")]
    Service(String),
}

impl From<ClientError> for ControlError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::NotRunning(..) => ControlError::NotRunning(e.to_string()),
            ClientError::Io(why) => ControlError::Io(why),
        }
    }
}

/// Why a publish from the CLI is refused before it reaches a device.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The topic breaks AWS's rules.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// Over AWS's 128 KB message limit.
    #[error("the message is {0} bytes; AWS IoT Core allows at most {MAX_PAYLOAD_BYTES}")]
    TooLarge(usize),
    /// QoS 2 or more.
    #[error("QoS {0}; AWS IoT Core supports QoS 0 and 1")]
    Qos(u8),
}

impl Control {
    /// Publish as the service after AWS's checks on topic, size and QoS; how many
    /// connections it was queued for.
    pub fn checked_publish(
        &self,
        topic: &str,
        message: &[u8],
        qos: u8,
    ) -> Result<usize, PublishError> {
        check_topic_name(topic)?;
        if message.len() > MAX_PAYLOAD_BYTES {
            return Err(PublishError::TooLarge(message.len()));
        }
        if qos > 1 {
            return Err(PublishError::Qos(qos));
        }
        Ok(self.publish(topic, Bytes::copy_from_slice(message), qos, false))
    }
}

/// The `{"client_id","topic","payload"}` line `monitor` streams for a device's publish.
fn monitor_line(e: &BrokerEvent, filter: Option<&str>) -> Option<Value> {
    let BrokerEvent::Published {
        client_id,
        topic,
        payload,
    } = e
    else {
        return None;
    };
    if filter.is_some_and(|f| !filter_matches(f, topic)) {
        return None;
    }
    Some(json!({
        "client_id": client_id,
        "topic": topic,
        "payload": String::from_utf8_lossy(payload),
    }))
}

/// The `watch` line for an event about `client_id` (any when None): a refusal at CONNECT
/// (its [`crate::rules::Refused::kind`]), a policy denial (`publish-denied`,
/// `subscribe-denied`, `receive-denied`), a takeover (`taken-over`), and with `published` a
/// message it published.
pub fn watch_line(e: &BrokerEvent, client_id: Option<&str>, published: bool) -> Option<Value> {
    let about = |id: &str| client_id.is_none_or(|want| want == id);
    let line = |id: &str, kind: &str, reason: String| json!({ "client_id": id, "kind": kind, "reason": reason });
    match e {
        BrokerEvent::Refused {
            client_id: Some(id),
            kind,
            reason,
            ..
        } if about(id) => Some(line(id, kind, reason.clone())),
        BrokerEvent::Denied {
            client_id: id,
            action,
            resource,
        } if about(id) => {
            let kind = match action {
                crate::rules::Action::Publish => "publish-denied",
                crate::rules::Action::Subscribe => "subscribe-denied",
                crate::rules::Action::Receive => "receive-denied",
                crate::rules::Action::Connect => "connect-not-allowed",
            };
            let mut v = line(id, kind, e.line());
            v["resource"] = json!(resource);
            Some(v)
        }
        BrokerEvent::Disconnected {
            client_id: id,
            reason,
        } if about(id) && reason == super::session::TAKEN_OVER => {
            Some(line(id, "taken-over", reason.clone()))
        }
        BrokerEvent::Published {
            client_id: id,
            topic,
            payload,
        } if published && about(id) => Some(json!({
            "client_id": id,
            "kind": "published",
            "topic": topic,
            "payload": String::from_utf8_lossy(payload),
        })),
        _ => None,
    }
}

fn shadow_request(desired: Value) -> Result<serde_json::Map<String, Value>, ShadowError> {
    match desired {
        Value::Object(_) | Value::Null => {}
        _ => return Err(ShadowError::NotAnObject("Desired")),
    }
    let mut m = serde_json::Map::new();
    m.insert("state".into(), json!({ "desired": desired }));
    Ok(m)
}

/// Update a shadow's desired section directly on the files (no `aws serve` running: no device
/// is connected to be told).
pub fn shadow_update_offline(
    ws: &Workspace,
    id: &ShadowId,
    desired: Value,
) -> Result<Value, ShadowError> {
    let shadows = super::shadow::Shadows::new(ws);
    shadows.update(id, &shadow_request(desired)?)?;
    shadows.get(id).map(|(doc, _)| doc)
}

fn error_line(message: String, kind: &str) -> Value {
    json!({ "error": message, "kind": kind })
}

/// Serve the control socket for a broker (its [`super::BrokerHandle::control`]) until the
/// task is dropped.
pub async fn serve(control: Control, path: PathBuf) -> std::io::Result<()> {
    channel::serve(path, move |line, mut w| {
        let control = control.clone();
        async move {
            let req: Request = match serde_json::from_slice(&line) {
                Ok(r) => r,
                Err(e) => {
                    let msg = error_line(format!("bad request: {e}"), "bad-request");
                    return channel::write_line(&mut w, &msg).await;
                }
            };
            let answer = match req {
                Request::Monitor { topic } => {
                    if let Some(f) = &topic
                        && let Err(e) = check_topic_filter(f)
                    {
                        let msg = error_line(e.to_string(), "bad-filter");
                        return channel::write_line(&mut w, &msg).await;
                    }
                    let ok = json!({ "ok": { "monitoring": true } });
                    return stream_events(&control, &mut w, ok, |e| {
                        monitor_line(e, topic.as_deref())
                    })
                    .await;
                }
                Request::Watch {
                    client_id,
                    published,
                } => {
                    let ok = json!({ "ok": { "watching": true } });
                    return stream_events(&control, &mut w, ok, |e| {
                        watch_line(e, client_id.as_deref(), published)
                    })
                    .await;
                }
                Request::Publish {
                    topic,
                    message,
                    qos,
                } => control
                    .checked_publish(&topic, message.as_bytes(), qos)
                    .map(|n| json!({ "queued": n }))
                    .map_err(|e| error_line(e.to_string(), "bad-publish")),
                Request::ShadowGet { thing, name } => ShadowId::new(&thing, name.as_deref())
                    .and_then(|id| control.shadow_get(&id))
                    .map_err(|e| shadow_error(&e)),
                Request::ShadowUpdate {
                    thing,
                    name,
                    desired,
                } => ShadowId::new(&thing, name.as_deref())
                    .and_then(|id| control.shadow_update(&id, &shadow_request(desired)?))
                    .map_err(|e| shadow_error(&e)),
            };
            let msg = match answer {
                Ok(v) => json!({ "ok": v }),
                Err(e) => e,
            };
            channel::write_line(&mut w, &msg).await
        }
    })
    .await
}

/// Answer `ok`, then stream one line per event `line_of` keeps (and `{"lagged":N}` when the
/// reader fell behind) until the service stops or the reader goes.
async fn stream_events(
    control: &Control,
    w: &mut tokio::net::unix::OwnedWriteHalf,
    ok: Value,
    line_of: impl Fn(&BrokerEvent) -> Option<Value>,
) -> std::io::Result<()> {
    // Subscribed before saying so: what follows this line is streamed.
    let mut rx = control.events();
    channel::write_line(w, &ok).await?;
    loop {
        match rx.recv().await {
            Ok(e) => {
                if let Some(v) = line_of(&e) {
                    channel::write_line(w, &v).await?;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                channel::write_line(w, &json!({ "lagged": n })).await?;
            }
            Err(_) => return Ok(()),
        }
    }
}

fn shadow_error(e: &ShadowError) -> Value {
    json!({ "error": e.detail(), "code": e.code(), "kind": "shadow" })
}

/// Send one request and return its single answer.
pub async fn call(path: &Path, req: &Request) -> Result<Value, ControlError> {
    let req = serde_json::to_value(req).expect("serialisable");
    channel::call(path, &req)
        .await?
        .map_err(ControlError::Service)
}

/// Stream the `watch` lines about `client_id` (every one when None), as [`monitor`] does.
pub async fn watch(
    path: &Path,
    client_id: Option<String>,
    published: bool,
    on_ready: impl FnOnce(),
    on_line: impl FnMut(Value) -> bool,
) -> Result<(), ControlError> {
    let req = serde_json::to_value(Request::Watch {
        client_id,
        published,
    })
    .expect("serialisable");
    match channel::stream(path, &req, on_ready, on_line).await? {
        Some(refused) => Err(ControlError::Service(refused)),
        None => Ok(()),
    }
}

/// Stream what devices publish (matching `topic` when given): `on_ready` once the service
/// has subscribed, then `on_message` per message until it returns false or the service stops.
pub async fn monitor(
    path: &Path,
    topic: Option<String>,
    on_ready: impl FnOnce(),
    on_message: impl FnMut(Value) -> bool,
) -> Result<(), ControlError> {
    let req = serde_json::to_value(Request::Monitor { topic }).expect("serialisable");
    match channel::stream(path, &req, on_ready, on_message).await? {
        Some(refused) => Err(ControlError::Service(refused)),
        None => Ok(()),
    }
}
