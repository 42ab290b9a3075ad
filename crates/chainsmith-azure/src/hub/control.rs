//! The local control channel of a running `hub serve`: a Unix socket at `WS/hub/control.sock`
//! (mode 0600). Each client sends one JSON request line; the hub answers with one JSON line
//! (`{"ok": …}` or `{"error": "…"}`), or, for `monitor`, one line per event until the client
//! hangs up.
//!
//! Requests:
//! - `{"op":"c2d","device":"d1","body":"text","props":[["k","v"]]}` → `{"ok":{"message_id":"…"}}`
//! - `{"op":"method","device":"d1","name":"reboot","payload":{…},"timeout":30}` →
//!   `{"ok":{"status":200,"payload":…}}`
//! - `{"op":"desired","device":"d1","patch":{…}}` → `{"ok":{"version":N}}`
//! - `{"op":"monitor","device":null}` → `{"ok":{"monitoring":true}}` once the hub has
//!   subscribed (every event after that line is streamed), then one `HubEvent` JSON line per
//!   telemetry message
//! - `{"op":"status"}` → `{"ok":HubStatus}`: listening address and port, echo, hostname,
//!   connected devices, the last refusal's `seq` and the last 100 refusals
//! - `{"op":"kick","device":"d1","reason":"…"}` → `{"ok":{"connected":true}}`: close the
//!   device's connection (it was just disabled); `connected` says whether it was online
//! - `{"op":"refusals","device":"d1","since":7}` → `{"ok":[RefusalRecord…]}`: remembered
//!   refusals with `seq > since` (default 0), of that device when given

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A request over the control channel: one JSON line, `op` names it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// Send a cloud-to-device message.
    C2d {
        /// The device id.
        device: String,
        /// The message body.
        body: String,
        /// Application properties.
        #[serde(default)]
        props: Vec<(String, String)>,
    },
    /// Call a direct method.
    Method {
        /// The device id.
        device: String,
        /// The method name.
        name: String,
        /// The payload.
        #[serde(default)]
        payload: serde_json::Value,
        /// Seconds to wait for the answer.
        #[serde(default = "default_timeout")]
        timeout: u64,
    },
    /// Patch the desired properties of a twin.
    Desired {
        /// The device id.
        device: String,
        /// The patch (a JSON object).
        patch: serde_json::Value,
    },
    /// Stream the hub's events.
    Monitor {
        /// Only this device's.
        #[serde(default)]
        device: Option<String>,
    },
    /// The hub's status.
    Status,
    /// Close a device's connection (after it was disabled in the registry).
    Kick {
        /// The device id.
        device: String,
        /// Why, for the hub's log.
        #[serde(default)]
        reason: String,
    },
    /// The refusals the hub remembers.
    Refusals {
        /// Only this device's.
        #[serde(default)]
        device: Option<String>,
        /// Only those after this sequence number.
        #[serde(default)]
        since: u64,
    },
}

fn default_timeout() -> u64 {
    30
}

/// Send one request to the hub running for this workspace. `on_line` gets every answer line;
/// it returns false to stop reading.
pub async fn request(
    path: &Path,
    req: &Request,
    mut on_line: impl FnMut(serde_json::Value) -> bool,
) -> Result<(), ControlError> {
    let req = serde_json::to_value(req).expect("serialisable");
    chainsmith_server::control::request(path, &req, &mut on_line)
        .await
        .map_err(client_error)
}

fn client_error(e: chainsmith_server::control::ClientError) -> ControlError {
    match e {
        chainsmith_server::control::ClientError::NotRunning(p, why) => {
            ControlError::NotRunning(p, why)
        }
        chainsmith_server::control::ClientError::Io(why) => ControlError::Io(why),
    }
}

/// `{"op":"monitor"}`: stream the hub's telemetry events, of `device` when given. `on_ready`
/// runs once, when the hub has subscribed: every event after that moment reaches `on_event`,
/// which returns false to stop. Ends when the hub stops or `on_event` says stop.
pub async fn monitor(
    path: &Path,
    device: Option<String>,
    on_ready: impl FnOnce(),
    on_event: impl FnMut(serde_json::Value) -> bool,
) -> Result<(), ControlError> {
    let req = serde_json::to_value(Request::Monitor { device }).expect("serialisable");
    match chainsmith_server::control::stream(path, &req, on_ready, on_event)
        .await
        .map_err(client_error)?
    {
        Some(refused) => Err(ControlError::Hub(refused)),
        None => Ok(()),
    }
}

/// Send one request and return its single answer: the `ok` value, or the hub's `error`.
pub async fn call(path: &Path, req: &Request) -> Result<serde_json::Value, ControlError> {
    let req = serde_json::to_value(req).expect("serialisable");
    chainsmith_server::control::call(path, &req)
        .await
        .map_err(client_error)?
        .map_err(ControlError::Hub)
}

/// `{"op":"status"}` of the hub running for this workspace. A hub too old to know the op
/// answers with an error ([`ControlError::Hub`]).
pub async fn status(path: &Path) -> Result<super::HubStatus, ControlError> {
    let v = call(path, &Request::Status).await?;
    serde_json::from_value(v).map_err(|e| ControlError::Io(format!("status answer: {e}")))
}

/// `{"op":"refusals"}`: remembered refusals after `since`, of `device` when given.
pub async fn refusals(
    path: &Path,
    device: Option<&str>,
    since: u64,
) -> Result<Vec<super::RefusalRecord>, ControlError> {
    let req = Request::Refusals {
        device: device.map(str::to_string),
        since,
    };
    let v = call(path, &req).await?;
    serde_json::from_value(v).map_err(|e| ControlError::Io(format!("refusals answer: {e}")))
}

/// `{"op":"kick"}` without an async runtime (the CLI's `revoke`, the TUI's revoke command):
/// `Ok(None)` when no hub is running for the workspace, else whether the device was connected.
pub(crate) fn kick_blocking(
    path: &Path,
    device: &str,
    reason: &str,
) -> Result<Option<bool>, ControlError> {
    use std::io::{BufRead, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(path) else {
        return Ok(None);
    };
    let io = |e: std::io::Error| ControlError::Io(e.to_string());
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    let req = Request::Kick {
        device: device.to_string(),
        reason: reason.to_string(),
    };
    let line = serde_json::to_string(&req).expect("serialisable");
    s.write_all(format!("{line}\n").as_bytes()).map_err(io)?;
    let mut answer = String::new();
    std::io::BufReader::new(s)
        .read_line(&mut answer)
        .map_err(io)?;
    let v: serde_json::Value =
        serde_json::from_str(&answer).map_err(|e| ControlError::Io(e.to_string()))?;
    match v.get("ok") {
        Some(ok) => Ok(Some(ok["connected"].as_bool().unwrap_or(false))),
        None => Err(ControlError::Hub(
            v["error"].as_str().unwrap_or("no answer").to_string(),
        )),
    }
}

/// Why the running hub could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No hub answers at the workspace's control address (the address, the error).
    #[error("no hub is running for this workspace (cannot reach {0}: {1}); start the hub first")]
    NotRunning(String, String),
    /// The control channel broke mid-request.
    #[error("control channel: {0}")]
    Io(String),
    /// The hub answered with an error.
    #[error("the running hub answered: {0}")]
    Hub(String),
}

impl ControlError {
    /// A short machine-friendly name for `--json` errors.
    pub fn kind(&self) -> &'static str {
        match self {
            ControlError::NotRunning(..) => "hub-not-running",
            ControlError::Io(_) => "io",
            ControlError::Hub(_) => "hub-error",
        }
    }

    /// What would fix it, for a face to turn into its own hint.
    pub fn remedy(&self) -> Option<crate::error::Remedy> {
        match self {
            ControlError::NotRunning(..) => Some(crate::error::Remedy::StartHub),
            ControlError::Io(_) | ControlError::Hub(_) => None,
        }
    }
}

impl crate::error::Classified for ControlError {
    fn kind(&self) -> &'static str {
        ControlError::kind(self)
    }
    fn remedy(&self) -> Option<crate::error::Remedy> {
        ControlError::remedy(self)
    }
}
