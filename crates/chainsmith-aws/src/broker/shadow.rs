//! The AWS IoT Device Shadow service, classic and named shadows, as AWS documents it: requests
//! on `$aws/things/THING/shadow/{get,update,delete}` (and
//! `$aws/things/THING/shadow/name/NAME/…`), answered on `…/accepted` and `…/rejected`, with
//! `update/delta` to the device and `update/documents` (previous and current) after each
//! accepted update ("Device Shadow MQTT topics",
//! <https://docs.aws.amazon.com/iot/latest/developerguide/device-shadow-mqtt.html>; the
//! documents, "Device Shadow service documents",
//! <https://docs.aws.amazon.com/iot/latest/developerguide/device-shadow-document.html>; the
//! errors, "Device Shadow error messages",
//! <https://docs.aws.amazon.com/iot/latest/developerguide/device-shadow-error-messages.html>).
//!
//! Each shadow is one JSON file under `WS/aws/shadows/THING/` (`classic.json`,
//! `named/NAME.json`), read through [`chainsmith_server::state_file`] (a damaged file is set
//! aside, never fatal) and written atomically. Thing and shadow names are held to AWS's
//! character set before they become a path, so no request can name a file outside that
//! directory.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use chainsmith_pki::clock::Clock;
use chainsmith_pki::store::{self, Workspace};
use chainsmith_server::state_file::{self, SetAside};

/// "Maximum size of a JSON state document": 8 KB for each of the desired and reported
/// sections of a classic shadow (metadata not counted). "AWS IoT Device Shadow service limits
/// and quotas" in "AWS IoT Core endpoints and quotas"
/// (<https://docs.aws.amazon.com/general/latest/gr/iot-core.html#device-shadow-limits>).
pub const MAX_STATE_BYTES: usize = 8 * 1024;
/// "Maximum depth of JSON device state documents: 6" levels in the desired or reported
/// section (same quotas page); deeper is refused with 400.
pub const MAX_DEPTH: usize = 6;
/// "Shadow name: 64 characters" of `a-zA-Z0-9:_-` (same quotas page; the `CreateThing`
/// naming rules for the characters).
pub const MAX_SHADOW_NAME_CHARS: usize = 64;
/// "Thing name: 128 characters" of `a-zA-Z0-9:_-` (AWS IoT Core quotas, "Thing name size").
pub const MAX_THING_NAME_CHARS: usize = 128;
/// "clientToken: up to 64 bytes" ("Device Shadow service documents", request state
/// documents); longer is refused as "Invalid clientToken".
pub const MAX_CLIENT_TOKEN_BYTES: usize = 64;
/// Named shadows per thing. AWS documents no quota ("unlimited"); the local service keeps at
/// most this many per thing so one device cannot fill the disk.
pub const MAX_NAMED_SHADOWS_PER_THING: usize = 1000;
/// Things with shadows in one workspace (local only: AWS's count is per account and
/// unlimited); a new thing's first shadow past it is refused with 429.
pub const MAX_SHADOW_THINGS: usize = 100_000;

/// The directory, under the workspace root, that holds the shadows.
pub const SHADOWS_DIR: &str = "aws/shadows";

/// Which shadow: a thing's classic shadow, or one of its named shadows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShadowId {
    /// The thing's name.
    pub thing: String,
    /// The named shadow's name; None: the classic shadow.
    pub name: Option<String>,
}

impl ShadowId {
    /// A shadow id from names a user or a device gave, held to AWS's naming rules.
    pub fn new(thing: &str, name: Option<&str>) -> Result<ShadowId, ShadowError> {
        if !valid_name(thing, MAX_THING_NAME_CHARS) {
            return Err(ShadowError::InvalidThingName(thing.to_string()));
        }
        if let Some(n) = name
            && !valid_name(n, MAX_SHADOW_NAME_CHARS)
        {
            return Err(ShadowError::InvalidShadowName(n.to_string()));
        }
        Ok(ShadowId {
            thing: thing.to_string(),
            name: name.map(str::to_string),
        })
    }

    /// The topic prefix of its requests: `$aws/things/THING/shadow[/name/NAME]`.
    pub fn topic(&self) -> String {
        match &self.name {
            None => format!("$aws/things/{}/shadow", self.thing),
            Some(n) => format!("$aws/things/{}/shadow/name/{n}", self.thing),
        }
    }

    /// What AWS's "No shadow exists with name" message names.
    fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.thing)
    }
}

/// AWS's characters for thing and shadow names: `a-zA-Z0-9:_-`, 1 to `max` of them.
fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-'))
}

/// A shadow request: get, update or delete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `…/get`.
    Get,
    /// `…/update`.
    Update,
    /// `…/delete`.
    Delete,
}

/// Why a request is rejected: each variant is one of AWS's documented errors, its code from
/// [`ShadowError::code`] and its message from `Display` (AWS's wording).
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    /// 400: the payload is not JSON (or not a JSON object).
    #[error("Invalid JSON")]
    InvalidJson,
    /// 400: an update without `state`.
    #[error("Missing required node: state")]
    MissingState,
    /// 400: `state`, `desired` or `reported` is not an object (or null).
    #[error("{0} node must be an object")]
    NotAnObject(&'static str),
    /// 400: a node in `state` other than `desired` and `reported`.
    #[error("State contains an invalid node: '{0}'")]
    InvalidNode(String),
    /// 400: `version` is not a non-negative integer.
    #[error("Invalid version")]
    InvalidVersion,
    /// 400: `clientToken` is not a string of at most 64 bytes.
    #[error("Invalid clientToken")]
    InvalidClientToken,
    /// 400: desired or reported nested deeper than [`MAX_DEPTH`].
    #[error("JSON contains too many levels of nesting; maximum is {MAX_DEPTH}")]
    TooDeep,
    /// 400: a thing name outside AWS's rules.
    #[error(
        "Invalid thing name: a thing name is 1 to {MAX_THING_NAME_CHARS} characters of a-z A-Z 0-9 : _ -"
    )]
    InvalidThingName(String),
    /// 400: a shadow name outside AWS's rules.
    #[error(
        "Invalid shadow name: a shadow name is 1 to {MAX_SHADOW_NAME_CHARS} characters of a-z A-Z 0-9 : _ -"
    )]
    InvalidShadowName(String),
    /// 404: no such shadow (or it was deleted).
    #[error("No shadow exists with name: '{0}'")]
    NotFound(String),
    /// 409: the update's `version` is not the shadow's.
    #[error("Version conflict")]
    VersionConflict {
        /// The shadow's version now.
        current: u64,
    },
    /// 413: the desired or reported section would exceed [`MAX_STATE_BYTES`].
    #[error("The payload exceeds the maximum size allowed")]
    PayloadTooLarge {
        /// `desired` or `reported`.
        section: &'static str,
        /// Its size, compact JSON.
        bytes: usize,
    },
    /// 429: the local service's own limits on how many shadows it keeps.
    #[error("Too many requests")]
    TooManyShadows,
    /// 500: the shadow's file could not be read or written.
    #[error("Internal service failure")]
    Store(#[from] store::Error),
    /// 500: a directory on the way to the shadow's file is a symbolic link; the service
    /// reads and writes shadows only inside the workspace.
    #[error("Internal service failure")]
    Symlink(PathBuf),
}

impl ShadowError {
    /// The HTTP-style code AWS puts in the rejected document.
    pub fn code(&self) -> u16 {
        match self {
            ShadowError::NotFound(_) => 404,
            ShadowError::VersionConflict { .. } => 409,
            ShadowError::PayloadTooLarge { .. } => 413,
            ShadowError::TooManyShadows => 429,
            ShadowError::Store(_) | ShadowError::Symlink(_) => 500,
            _ => 400,
        }
    }

    /// What the local service adds for a person (the CLI, the log): AWS's message alone does
    /// not say which limit or which file.
    pub fn detail(&self) -> String {
        match self {
            ShadowError::PayloadTooLarge { section, bytes } => format!(
                "the {section} section would be {bytes} bytes; AWS allows at most {MAX_STATE_BYTES}"
            ),
            ShadowError::VersionConflict { current } => {
                format!("the shadow's version is {current}")
            }
            ShadowError::Store(e) => e.to_string(),
            ShadowError::Symlink(p) => format!(
                "{} is a symbolic link; shadows are kept only inside the workspace: replace it with a directory",
                p.display()
            ),
            ShadowError::TooManyShadows => format!(
                "the local service keeps at most {MAX_NAMED_SHADOWS_PER_THING} named shadows per thing and {MAX_SHADOW_THINGS} things with shadows"
            ),
            other => other.to_string(),
        }
    }
}

/// A message the shadow service publishes.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    /// The topic.
    pub topic: String,
    /// The JSON payload.
    pub payload: Vec<u8>,
}

/// What one request produced: the messages to publish, and a damaged file set aside on the way
/// (the faces say so).
#[derive(Debug, Default)]
pub struct Answer {
    /// In order: accepted or rejected, then (update) delta and documents.
    pub messages: Vec<Outgoing>,
    /// A shadow file that did not parse and was set aside.
    pub set_aside: Option<SetAside>,
}

/// One section pair (`desired`, `reported`), as stored in `state` and in `metadata`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Sections {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    desired: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reported: Option<Map<String, Value>>,
}

/// A shadow file. A deleted shadow keeps its version ("Deleting a shadow doesn't reset its
/// version number to 0", "Device Shadow service documents").
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Stored {
    #[serde(default)]
    state: Sections,
    #[serde(default)]
    metadata: Sections,
    #[serde(default)]
    version: u64,
    #[serde(default)]
    timestamp: i64,
    #[serde(default)]
    deleted: bool,
}

/// The shadow service of one workspace.
pub struct Shadows {
    dir: PathBuf,
    clock: Clock,
    /// One request at a time: read, change, write of a shadow file is not interleaved.
    lock: Mutex<()>,
}

/// Parse a shadow request topic: None when `topic` is not one (it is then a plain topic).
pub fn parse_topic(topic: &str) -> Option<(Result<ShadowId, ShadowError>, Operation)> {
    let rest = topic.strip_prefix("$aws/things/")?;
    let levels: Vec<&str> = rest.split('/').collect();
    let (thing, name, op) = match levels.as_slice() {
        [thing, "shadow", op] => (*thing, None, *op),
        [thing, "shadow", "name", name, op] => (*thing, Some(*name), *op),
        _ => return None,
    };
    let op = match op {
        "get" => Operation::Get,
        "update" => Operation::Update,
        "delete" => Operation::Delete,
        _ => return None,
    };
    Some((ShadowId::new(thing, name), op))
}

/// The `clientToken` of a request, when it is one AWS takes.
fn client_token(request: &Map<String, Value>) -> Result<Option<String>, ShadowError> {
    match request.get("clientToken") {
        None => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_CLIENT_TOKEN_BYTES => Ok(Some(s.clone())),
        Some(_) => Err(ShadowError::InvalidClientToken),
    }
}

/// Add `clientToken` to a response when the request had one.
fn with_token(mut v: Value, token: &Option<String>) -> Value {
    if let (Some(t), Value::Object(m)) = (token, &mut v) {
        m.insert("clientToken".into(), Value::String(t.clone()));
    }
    v
}

/// The metadata of a value: `{"timestamp": T}` for each leaf, arrays element by element.
fn metadata_of(v: &Value, ts: i64) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), metadata_of(v, ts)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| metadata_of(v, ts)).collect()),
        _ => json!({ "timestamp": ts }),
    }
}

/// Merge `patch` into `target` as AWS does: `null` deletes a key, objects merge key by key,
/// anything else (arrays included) replaces; `meta` follows with the update's timestamp. An
/// object left empty is removed.
fn merge(
    target: &mut Map<String, Value>,
    meta: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    ts: i64,
) {
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(k);
                meta.remove(k);
            }
            Value::Object(p) => {
                let mut t = match target.remove(k) {
                    Some(Value::Object(t)) => t,
                    _ => Map::new(),
                };
                let mut m = match meta.remove(k) {
                    Some(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                merge(&mut t, &mut m, p, ts);
                if !t.is_empty() {
                    target.insert(k.clone(), Value::Object(t));
                    meta.insert(k.clone(), Value::Object(m));
                }
            }
            other => {
                target.insert(k.clone(), other.clone());
                meta.insert(k.clone(), metadata_of(other, ts));
            }
        }
    }
}

/// The desired keys whose value differs from reported (objects compared key by key, anything
/// else as a whole), as AWS computes `state.delta`.
fn delta(desired: &Map<String, Value>, reported: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, d) in desired {
        match (d, reported.get(k)) {
            (Value::Object(d), Some(Value::Object(r))) => {
                let sub = delta(d, r);
                if !sub.is_empty() {
                    out.insert(k.clone(), Value::Object(sub));
                }
            }
            (d, Some(r)) if d == r => {}
            (d, _) => {
                out.insert(k.clone(), d.clone());
            }
        }
    }
    out
}

/// The metadata of the keys in `delta`, taken from the desired section's metadata.
fn delta_metadata(delta: &Map<String, Value>, meta: &Map<String, Value>) -> Map<String, Value> {
    delta
        .iter()
        .filter_map(|(k, d)| {
            let m = meta.get(k)?;
            Some((
                k.clone(),
                match (d, m) {
                    (Value::Object(d), Value::Object(m)) => Value::Object(delta_metadata(d, m)),
                    _ => m.clone(),
                },
            ))
        })
        .collect()
}

fn section_value(s: &Option<Map<String, Value>>) -> Option<Value> {
    s.as_ref().map(|m| Value::Object(m.clone()))
}

impl Stored {
    /// The document as `get` and `update/documents` show it.
    fn document(&self, with_delta: bool) -> Value {
        let mut state = Map::new();
        if let Some(d) = section_value(&self.state.desired) {
            state.insert("desired".into(), d);
        }
        if let Some(r) = section_value(&self.state.reported) {
            state.insert("reported".into(), r);
        }
        let mut doc = json!({
            "state": state,
            "metadata": serde_json::to_value(&self.metadata).unwrap_or_default(),
            "version": self.version,
            "timestamp": self.timestamp,
        });
        if with_delta
            && let Some(d) = self.delta()
            && let Some(s) = doc.get_mut("state").and_then(Value::as_object_mut)
        {
            s.insert("delta".into(), Value::Object(d));
        }
        doc
    }

    fn delta(&self) -> Option<Map<String, Value>> {
        let empty = Map::new();
        let d = delta(
            self.state.desired.as_ref()?,
            self.state.reported.as_ref().unwrap_or(&empty),
        );
        (!d.is_empty()).then_some(d)
    }
}

/// A request's `desired` or `reported` node: absent, null (delete the section), or an object
/// no deeper than AWS allows.
enum Node {
    Absent,
    Null,
    Object(Map<String, Value>),
}

fn node(state: &Map<String, Value>, key: &str, what: &'static str) -> Result<Node, ShadowError> {
    match state.get(key) {
        None => Ok(Node::Absent),
        Some(Value::Null) => Ok(Node::Null),
        Some(v @ Value::Object(m)) => {
            if state_file::depth(v) > MAX_DEPTH {
                return Err(ShadowError::TooDeep);
            }
            Ok(Node::Object(m.clone()))
        }
        Some(_) => Err(ShadowError::NotAnObject(what)),
    }
}

/// Apply a node to a section.
fn apply(
    section: &mut Option<Map<String, Value>>,
    meta: &mut Option<Map<String, Value>>,
    node: &Node,
    ts: i64,
) {
    match node {
        Node::Absent => {}
        Node::Null => {
            *section = None;
            *meta = None;
        }
        Node::Object(p) => {
            let mut s = section.take().unwrap_or_default();
            let mut m = meta.take().unwrap_or_default();
            merge(&mut s, &mut m, p, ts);
            if !s.is_empty() {
                *section = Some(s);
                *meta = Some(m);
            }
        }
    }
}

fn size_check(section: &Option<Map<String, Value>>, name: &'static str) -> Result<(), ShadowError> {
    let bytes = section
        .as_ref()
        .map(|m| serde_json::to_vec(m).map_or(usize::MAX, |b| b.len()))
        .unwrap_or(0);
    if bytes > MAX_STATE_BYTES {
        return Err(ShadowError::PayloadTooLarge {
            section: name,
            bytes,
        });
    }
    Ok(())
}

/// Parse a request payload: an object (a `get` or `delete` may send nothing).
fn request_object(payload: &[u8], may_be_empty: bool) -> Result<Map<String, Value>, ShadowError> {
    if may_be_empty && payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(payload) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ShadowError::InvalidJson),
    }
}

impl Shadows {
    /// The shadow service of workspace `ws`, timestamps from its clock.
    pub fn new(ws: &Workspace) -> Shadows {
        Shadows::at(ws.root().join(SHADOWS_DIR), ws.clock().running())
    }

    /// The shadow service keeping its files in `dir`, timestamps from `clock`.
    pub fn at(dir: PathBuf, clock: Clock) -> Shadows {
        Shadows {
            dir,
            clock,
            lock: Mutex::new(()),
        }
    }

    /// The shadow's file, refused when a directory on the way is a symbolic link: followed,
    /// a device's update would be written (and a damaged file set aside) outside the
    /// workspace.
    fn path(&self, id: &ShadowId) -> Result<PathBuf, ShadowError> {
        let thing = self.dir.join(&id.thing);
        let named = thing.join("named");
        let dirs: &[&Path] = match id.name {
            None => &[&self.dir, &thing],
            Some(_) => &[&self.dir, &thing, &named],
        };
        if let Some(link) = dirs
            .iter()
            .find(|d| std::fs::symlink_metadata(d).is_ok_and(|m| m.file_type().is_symlink()))
        {
            return Err(ShadowError::Symlink(link.to_path_buf()));
        }
        Ok(match &id.name {
            None => thing.join("classic.json"),
            Some(n) => named.join(format!("{n}.json")),
        })
    }

    fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    fn load(&self, id: &ShadowId) -> Result<(Option<Stored>, Option<SetAside>), ShadowError> {
        let loaded = state_file::load(&self.path(id)?, |_| {
            (
                Stored {
                    deleted: true,
                    ..Stored::default()
                },
                "no shadow (the next update starts it again at version 1)".to_string(),
            )
        })?;
        Ok(match loaded {
            None => (None, None),
            Some((s, note)) => (Some(s), note),
        })
    }

    /// Refuse a new shadow past the local limits.
    fn room_for(&self, id: &ShadowId) -> Result<(), ShadowError> {
        let count = |p: &Path| std::fs::read_dir(p).map_or(0, |d| d.count());
        let thing = self.dir.join(&id.thing);
        if !thing.exists() && count(&self.dir) >= MAX_SHADOW_THINGS {
            return Err(ShadowError::TooManyShadows);
        }
        if id.name.is_some() && count(&thing.join("named")) >= MAX_NAMED_SHADOWS_PER_THING {
            return Err(ShadowError::TooManyShadows);
        }
        Ok(())
    }

    fn save(&self, id: &ShadowId, s: &Stored) -> Result<(), ShadowError> {
        let path = self.path(id)?;
        if let Some(parent) = path.parent() {
            store::make_private_dir_all(parent)?;
        }
        let text = serde_json::to_vec_pretty(s).expect("a shadow serialises");
        store::write_atomic(&path, &text, 0o600)?;
        Ok(())
    }

    /// Answer a message published on `topic`: None when it is not a shadow request; else
    /// the messages to publish (accepted or rejected, delta, documents). A request naming a
    /// thing or shadow outside AWS's rules is rejected like any other bad request.
    pub fn handle(&self, topic: &str, payload: &[u8]) -> Option<Answer> {
        let (id, op) = parse_topic(topic)?;
        let reject = |e: ShadowError, token: &Option<String>| {
            let body = json!({
                "code": e.code(),
                "message": e.to_string(),
                "timestamp": self.now(),
            });
            Answer {
                messages: vec![Outgoing {
                    topic: format!("{topic}/rejected"),
                    payload: with_token(body, token).to_string().into_bytes(),
                }],
                set_aside: None,
            }
        };
        let request = match request_object(payload, op != Operation::Update) {
            Ok(r) => r,
            Err(e) => return Some(reject(e, &None)),
        };
        let token = match client_token(&request) {
            Ok(t) => t,
            Err(e) => return Some(reject(e, &None)),
        };
        let id = match id {
            Ok(id) => id,
            Err(e) => return Some(reject(e, &token)),
        };
        let result = match op {
            Operation::Get => self.get(&id).map(|(doc, note)| {
                let messages = vec![Outgoing {
                    topic: format!("{topic}/accepted"),
                    payload: with_token(doc, &token).to_string().into_bytes(),
                }];
                Answer {
                    messages,
                    set_aside: note,
                }
            }),
            Operation::Update => self.update(&id, &request),
            Operation::Delete => self.delete(&id, &token),
        };
        Some(result.unwrap_or_else(|e| reject(e, &token)))
    }

    /// The shadow's document with its delta, as `get/accepted` carries it.
    pub fn get(&self, id: &ShadowId) -> Result<(Value, Option<SetAside>), ShadowError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        match self.load(id)? {
            (Some(s), note) if !s.deleted => Ok((s.document(true), note)),
            _ => Err(ShadowError::NotFound(id.label().to_string())),
        }
    }

    /// Apply an update request (`{"state": {...}, "version": N, "clientToken": "..."}`):
    /// the messages AWS publishes on acceptance (accepted; delta when the request had a
    /// desired section and desired differs from reported; documents).
    pub fn update(
        &self,
        id: &ShadowId,
        request: &Map<String, Value>,
    ) -> Result<Answer, ShadowError> {
        let token = client_token(request)?;
        let expected = match request.get("version") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or(ShadowError::InvalidVersion)?),
        };
        let (desired, reported) = match request.get("state") {
            None => return Err(ShadowError::MissingState),
            Some(Value::Null) => (Node::Null, Node::Null),
            Some(Value::Object(state)) => {
                if let Some(k) = state.keys().find(|k| *k != "desired" && *k != "reported") {
                    return Err(ShadowError::InvalidNode(k.clone()));
                }
                (
                    node(state, "desired", "Desired")?,
                    node(state, "reported", "Reported")?,
                )
            }
            Some(_) => return Err(ShadowError::NotAnObject("State")),
        };
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let (old, set_aside) = self.load(id)?;
        if old.is_none() {
            self.room_for(id)?;
        }
        let old = old.unwrap_or(Stored {
            deleted: true,
            ..Stored::default()
        });
        if let Some(v) = expected
            && v != old.version
        {
            return Err(ShadowError::VersionConflict {
                current: old.version,
            });
        }
        let ts = self.now();
        let mut new = if old.deleted {
            Stored {
                version: old.version,
                ..Stored::default()
            }
        } else {
            old.clone()
        };
        apply(
            &mut new.state.desired,
            &mut new.metadata.desired,
            &desired,
            ts,
        );
        apply(
            &mut new.state.reported,
            &mut new.metadata.reported,
            &reported,
            ts,
        );
        size_check(&new.state.desired, "desired")?;
        size_check(&new.state.reported, "reported")?;
        new.version += 1;
        new.timestamp = ts;
        new.deleted = false;
        self.save(id, &new)?;

        let topic = id.topic();
        let request_state = request.get("state").cloned().unwrap_or(Value::Null);
        let metadata = match &request_state {
            Value::Object(m) => metadata_of(&Value::Object(m.clone()), ts),
            _ => json!({}),
        };
        let mut messages = vec![Outgoing {
            topic: format!("{topic}/update/accepted"),
            payload: with_token(
                json!({
                    "state": request_state,
                    "metadata": metadata,
                    "version": new.version,
                    "timestamp": ts,
                }),
                &token,
            )
            .to_string()
            .into_bytes(),
        }];
        if matches!(desired, Node::Object(_))
            && let Some(d) = new.delta()
        {
            let meta = delta_metadata(&d, new.metadata.desired.as_ref().unwrap_or(&Map::new()));
            messages.push(Outgoing {
                topic: format!("{topic}/update/delta"),
                payload: with_token(
                    json!({
                        "state": d,
                        "metadata": meta,
                        "version": new.version,
                        "timestamp": ts,
                    }),
                    &token,
                )
                .to_string()
                .into_bytes(),
            });
        }
        let previous = if old.deleted {
            Value::Null
        } else {
            old.document(false)
        };
        let strip_ts = |mut d: Value| {
            if let Value::Object(m) = &mut d {
                m.remove("timestamp");
            }
            d
        };
        messages.push(Outgoing {
            topic: format!("{topic}/update/documents"),
            payload: with_token(
                json!({
                    "previous": strip_ts(previous),
                    "current": strip_ts(new.document(false)),
                    "timestamp": ts,
                }),
                &token,
            )
            .to_string()
            .into_bytes(),
        });
        Ok(Answer {
            messages,
            set_aside,
        })
    }

    /// Delete the shadow (its version is kept for the next update).
    pub fn delete(&self, id: &ShadowId, token: &Option<String>) -> Result<Answer, ShadowError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let (old, set_aside) = self.load(id)?;
        let Some(old) = old.filter(|s| !s.deleted) else {
            return Err(ShadowError::NotFound(id.label().to_string()));
        };
        let ts = self.now();
        self.save(
            id,
            &Stored {
                version: old.version,
                timestamp: ts,
                deleted: true,
                ..Stored::default()
            },
        )?;
        Ok(Answer {
            messages: vec![Outgoing {
                topic: format!("{}/delete/accepted", id.topic()),
                payload: with_token(json!({"version": old.version, "timestamp": ts}), token)
                    .to_string()
                    .into_bytes(),
            }],
            set_aside,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> (tempfile::TempDir, Shadows) {
        let dir = tempfile::tempdir().unwrap();
        let at = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let s = Shadows::at(dir.path().join("shadows"), Clock::Fixed(at));
        (dir, s)
    }

    fn answer(s: &Shadows, topic: &str, payload: &str) -> Vec<(String, Value)> {
        s.handle(topic, payload.as_bytes())
            .expect("a shadow topic")
            .messages
            .into_iter()
            .map(|o| (o.topic, serde_json::from_slice(&o.payload).unwrap()))
            .collect()
    }

    const UPDATE: &str = "$aws/things/lamp/shadow/update";

    #[test]
    fn update_then_get_with_delta_metadata_and_version() {
        let (_d, s) = service();
        let out = answer(
            &s,
            UPDATE,
            r#"{"state":{"reported":{"color":"red","n":[1,2]}},"clientToken":"t1"}"#,
        );
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].0, "$aws/things/lamp/shadow/update/accepted");
        assert_eq!(out[0].1["version"], 1);
        assert_eq!(out[0].1["clientToken"], "t1");
        assert_eq!(
            out[0].1["metadata"]["reported"]["color"]["timestamp"],
            1_800_000_000
        );
        assert_eq!(out[1].0, "$aws/things/lamp/shadow/update/documents");
        assert_eq!(out[1].1["previous"], Value::Null);
        assert_eq!(out[1].1["current"]["version"], 1);

        let out = answer(
            &s,
            UPDATE,
            r#"{"state":{"desired":{"color":"green","n":[1,2]}}}"#,
        );
        assert_eq!(out[1].0, "$aws/things/lamp/shadow/update/delta");
        assert_eq!(out[1].1["state"], json!({"color": "green"}));
        assert_eq!(out[1].1["version"], 2);
        assert_eq!(out[2].1["previous"]["version"], 1);

        let got = answer(&s, "$aws/things/lamp/shadow/get", "");
        assert_eq!(got[0].0, "$aws/things/lamp/shadow/get/accepted");
        assert_eq!(got[0].1["state"]["delta"], json!({"color": "green"}));
        assert_eq!(got[0].1["version"], 2);

        // Reported catching up clears the delta; null deletes a key.
        answer(
            &s,
            UPDATE,
            r#"{"state":{"reported":{"color":"green"},"desired":{"n":null}}}"#,
        );
        let got = answer(&s, "$aws/things/lamp/shadow/get", "{}");
        assert!(got[0].1["state"].get("delta").is_none(), "{got:?}");
        assert!(got[0].1["state"]["desired"].get("n").is_none());
        assert_eq!(got[0].1["state"]["reported"]["n"], json!([1, 2]));
        assert_eq!(got[0].1["version"], 3);
    }

    #[test]
    fn rejections_carry_aws_codes_and_messages() {
        let (_d, s) = service();
        let rejected = |topic: &str, payload: &str| {
            let out = answer(&s, topic, payload);
            assert_eq!(out.len(), 1);
            assert!(out[0].0.ends_with("/rejected"), "{out:?}");
            (
                out[0].1["code"].as_u64().unwrap(),
                out[0].1["message"].clone(),
            )
        };
        assert_eq!(rejected(UPDATE, "{not json").0, 400);
        assert_eq!(
            rejected(UPDATE, r#"{"clientToken":"x"}"#).1,
            "Missing required node: state"
        );
        assert_eq!(rejected(UPDATE, r#"{"state":{"desired":3}}"#).0, 400);
        assert_eq!(
            rejected("$aws/things/lamp/shadow/get", "").1,
            "No shadow exists with name: 'lamp'"
        );
        let deep = r#"{"state":{"desired":{"1":{"2":{"3":{"4":{"5":{"6":{"7":1}}}}}}}}}"#;
        assert_eq!(
            rejected(UPDATE, deep).1,
            "JSON contains too many levels of nesting; maximum is 6"
        );
        let six = r#"{"state":{"desired":{"1":{"2":{"3":{"4":{"5":{"6":1}}}}}}}}"#;
        assert!(answer(&s, UPDATE, six)[0].0.ends_with("/accepted"));
        let big = format!(
            r#"{{"state":{{"reported":{{"k":"{}"}}}}}}"#,
            "x".repeat(9000)
        );
        assert_eq!(rejected(UPDATE, &big).0, 413);
        assert_eq!(
            rejected(UPDATE, r#"{"state":{"reported":{"a":1}},"version":7}"#).0,
            409
        );
        let long = format!("$aws/things/lamp/shadow/name/{}/get", "n".repeat(65));
        assert_eq!(rejected(&long, "").0, 400);
        assert!(
            s.handle("$aws/things/lamp/shadow/update/accepted", b"{}")
                .is_none()
        );
        assert!(s.handle("$aws/things/../shadow/update", b"{}").is_some());
    }

    #[test]
    fn delete_keeps_the_version_and_named_shadows_are_apart() {
        let (_d, s) = service();
        answer(&s, UPDATE, r#"{"state":{"reported":{"a":1}}}"#);
        let named = "$aws/things/lamp/shadow/name/cfg/update";
        let out = answer(&s, named, r#"{"state":{"desired":{"b":2}}}"#);
        assert_eq!(out[0].0, "$aws/things/lamp/shadow/name/cfg/update/accepted");
        assert_eq!(out[1].0, "$aws/things/lamp/shadow/name/cfg/update/delta");
        let del = answer(&s, "$aws/things/lamp/shadow/delete", "");
        assert_eq!(del[0].0, "$aws/things/lamp/shadow/delete/accepted");
        assert_eq!(del[0].1["version"], 1);
        assert_eq!(
            answer(&s, "$aws/things/lamp/shadow/get", "")[0].1["code"],
            404
        );
        assert_eq!(
            answer(&s, "$aws/things/lamp/shadow/name/cfg/get", "")[0].1["version"],
            1
        );
        let again = answer(&s, UPDATE, r#"{"state":{"reported":{"a":1}}}"#);
        assert_eq!(again[0].1["version"], 2);
    }

    #[test]
    fn a_damaged_shadow_file_is_set_aside() {
        let (d, s) = service();
        let p = d.path().join("shadows/lamp/classic.json");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "{\"state\":").unwrap();
        let a = s
            .handle(UPDATE, br#"{"state":{"reported":{"a":1}}}"#)
            .unwrap();
        assert!(a.set_aside.is_some());
        assert!(a.messages[0].topic.ends_with("/accepted"));
        assert!(
            d.path()
                .join("shadows/lamp/classic.json.damaged-1")
                .exists()
        );
    }
}
