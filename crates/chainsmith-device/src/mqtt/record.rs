//! The workspace's record of connection tests that passed, kept by the engine whichever face
//! ran the test (`chainsmith connect`, `connect --dps`, the TUI's Connect tab): the guide
//! ticks its "connect" steps from it, so a step done with the CLI is done in the TUI too.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The record's file in the workspace directory.
pub const FILE: &str = "connections.json";

/// Devices the record keeps, newest last: the guide asks whether a device (the one it
/// tells the user to make) passed, so the last hundred distinct devices are plenty, and the
/// file stays a few kilobytes however long the workspace is used.
pub(crate) const PASSED_MAX: usize = 100;

/// One device whose test passed (its latest pass).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Passed {
    /// The device id it connected as.
    pub device: String,
    /// `mqtt`, `amqp`, `mqtt-ws`, `amqp-ws`.
    pub transport: String,
    /// The endpoint (`host:port`) it passed against.
    pub endpoint: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    passed: Vec<Passed>,
}

/// The record's path in the workspace at `ws_root`.
pub fn path(ws_root: &Path) -> PathBuf {
    ws_root.join(FILE)
}

/// Add a pass to the record (the device moves to the end; the oldest beyond [`PASSED_MAX`]
/// go). A test's outcome does not depend on it: the caller ignores a write that fails.
pub(crate) fn record_passed(ws_root: &Path, pass: Passed) -> crate::store::Result<()> {
    let mut rec = read(ws_root);
    rec.passed.retain(|p| p.device != pass.device);
    rec.passed.push(pass);
    let extra = rec.passed.len().saturating_sub(PASSED_MAX);
    rec.passed.drain(..extra);
    let json = serde_json::to_vec_pretty(&rec).unwrap_or_default();
    crate::store::write_atomic(&path(ws_root), &json, 0o644)
}

/// The devices whose test passed, oldest first (empty when there is no record or it does not
/// parse: the guide then shows the step to do, which is what a re-run fixes).
pub fn passed(ws_root: &Path) -> Vec<Passed> {
    read(ws_root).passed
}

fn read(ws_root: &Path) -> Record {
    std::fs::read(path(ws_root))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(device: &str) -> Passed {
        Passed {
            device: device.into(),
            transport: "mqtt".into(),
            endpoint: "127.0.0.1:8883".into(),
        }
    }

    /// The record keeps the newest PASSED_MAX distinct devices, a repeated device moving last.
    #[test]
    fn keeps_the_newest_distinct_devices_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..=PASSED_MAX {
            record_passed(dir.path(), pass(&format!("d{i}"))).unwrap();
        }
        record_passed(dir.path(), pass("d1")).unwrap();
        let got: Vec<String> = passed(dir.path()).into_iter().map(|p| p.device).collect();
        assert_eq!(got.len(), PASSED_MAX);
        assert_eq!(got.first().map(String::as_str), Some("d2"));
        assert_eq!(got.last().map(String::as_str), Some("d1"));
        std::fs::write(path(dir.path()), "not json").unwrap();
        assert!(passed(dir.path()).is_empty());
    }
}
