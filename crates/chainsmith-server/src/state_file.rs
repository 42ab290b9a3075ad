//! The hub's and DPS's JSON state files, read so that no file can stop the hub: a file that
//! does not parse is copied aside (`NAME.damaged-N`, never deleted) and the hub goes on
//! with what can be saved of it, saying so in one note; and the JSON documents peers send are
//! held to Azure's limits at the door, so that what is written can always be read back.
//!
//! Why both: serde_json refuses to read a document nested deeper than 128 levels, and a twin
//! patch or DPS payload nested 126 deep used to be accepted, stored inside a larger document,
//! and then make `dps.json` or `twins/DEV.json` unreadable, so that `hub serve` would not start.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use chainsmith_pki::store;

/// A state file that could not be read and was set aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetAside {
    /// The file that was damaged.
    pub path: PathBuf,
    /// Where its bytes are now.
    pub moved_to: PathBuf,
    /// What the parser said.
    pub what: String,
    /// What the hub keeps going with (`an empty twin`, `the ID scope 0ne…, no enrollments`).
    pub kept: String,
}

impl std::fmt::Display for SetAside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} could not be read ({}); its bytes are kept in {} and the hub goes on with {}: repair that copy by hand and move it back to restore it",
            self.path.display(),
            self.what,
            self.moved_to.display(),
            self.kept
        )
    }
}

/// Read a JSON state file: `Ok(None)` when it does not exist; a file that does not parse is
/// copied aside and replaced (atomically) with `salvage(bytes)`, whose second part says what
/// was kept, so every reader from then on reads the replacement.
pub fn load<T: DeserializeOwned + serde::Serialize>(
    path: &Path,
    salvage: impl FnOnce(&[u8]) -> (T, String),
) -> Result<Option<(T, Option<SetAside>)>, store::Error> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(store::io_error("reading", path, e)),
    };
    match serde_json::from_slice(&bytes) {
        Ok(v) => Ok(Some((v, None))),
        Err(e) => {
            let name = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            // The first free `NAME.damaged-N`: every damaged copy is kept.
            let moved_to = (1..)
                .map(|n| path.with_file_name(format!("{name}.damaged-{n}")))
                .find(|p| !p.exists())
                .expect("a free name");
            store::write_atomic(&moved_to, &bytes, 0o600)?;
            let (value, kept) = salvage(&bytes);
            let text = serde_json::to_vec_pretty(&value).expect("serialisable");
            store::write_atomic(path, &text, 0o600)?;
            Ok(Some((
                value,
                Some(SetAside {
                    path: path.to_path_buf(),
                    moved_to,
                    what: e.to_string(),
                    kept,
                }),
            )))
        }
    }
}

/// How deep a JSON value is nested: a scalar is 0, `{"a":1}` is 1, `{"a":{"b":1}}` is 2.
/// Iterative, so a hostile document cannot overflow the stack here.
pub fn depth(v: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            serde_json::Value::Object(m) => {
                deepest = deepest.max(d + 1);
                stack.extend(m.values().map(|c| (c, d + 1)));
            }
            serde_json::Value::Array(a) => {
                deepest = deepest.max(d + 1);
                stack.extend(a.iter().map(|c| (c, d + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Why a JSON document a peer sent is refused at the door.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Nested deeper than the limit.
    #[error("{what} is nested {depth} levels deep; Azure allows at most {limit}")]
    TooDeep {
        /// What the document is (`the reported-properties patch`).
        what: &'static str,
        /// Its depth.
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// Larger than the limit.
    #[error("{what} is {bytes} bytes; Azure allows at most {limit}")]
    TooLarge {
        /// What the document is.
        what: &'static str,
        /// Its size, compact JSON.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
}

/// Hold a document to a depth and a size (compact JSON bytes).
pub fn check_document(
    what: &'static str,
    v: &serde_json::Value,
    max_depth: usize,
    max_bytes: usize,
) -> Result<(), DocumentError> {
    let d = depth(v);
    if d > max_depth {
        return Err(DocumentError::TooDeep {
            what,
            depth: d,
            limit: max_depth,
        });
    }
    let bytes = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
    if bytes > max_bytes {
        return Err(DocumentError::TooLarge {
            what,
            bytes,
            limit: max_bytes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_containers() {
        assert_eq!(depth(&serde_json::json!(1)), 0);
        assert_eq!(depth(&serde_json::json!({"a": 1})), 1);
        assert_eq!(depth(&serde_json::json!({"a": [{"b": 1}]})), 3);
    }

    #[test]
    fn a_damaged_file_is_set_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        std::fs::write(&p, "{\"a\": [[[").unwrap();
        let (v, note) =
            load::<serde_json::Value>(&p, |_| (serde_json::json!({}), "nothing".into()))
                .unwrap()
                .unwrap();
        assert_eq!(v, serde_json::json!({}));
        let note = note.unwrap();
        assert_eq!(
            std::fs::read_to_string(&note.moved_to).unwrap(),
            "{\"a\": [[["
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{}");
        assert!(note.to_string().contains("move it back"), "{note}");
    }
}
