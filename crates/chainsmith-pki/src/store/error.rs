//! What can go wrong with the workspace on disk, and the I/O error that says what to do.

use super::MARKER;
use super::files::LINK_HINT;
use crate::error::Remedy;
use std::io;
use std::path::{Path, PathBuf};

/// What can go wrong with the workspace on disk; each message names the path and the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A certificate or key in the workspace that does not parse or check.
    #[error(transparent)]
    Pki(#[from] crate::pki::Error),
    /// Reading or writing a file failed.
    #[error("{action} {path}: {detail}")]
    Io {
        /// What was being done, e.g. "reading".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause, with what to do about it.
        detail: String,
        /// Set when another workspace directory would avoid the problem.
        remedy: Option<Remedy>,
    },
    /// A workspace file that cannot be used as it is.
    #[error("{}: {what}", .path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: Damage,
    },
    /// Names that exist already (replacing them is the fix).
    #[error("{} already exist{} in the workspace: {}; pick other names, or replace them", plural(.0.len(), "entity", "entities"), if .0.len() == 1 { "s" } else { "" }, .0.join(", "))]
    NameTaken(Vec<String>),
    #[error(
        "no entity named \"{name}\" in the workspace {workspace}{hint}; list the workspace's entities to see what exists"
    )]
    /// No entity of that name.
    NotFound {
        /// The name looked up.
        name: String,
        /// The workspace looked in.
        workspace: PathBuf,
        /// Similar names, or what to create.
        hint: String,
    },
    /// Another process holds the workspace lock.
    #[error("the workspace {0} is busy: another chainsmith is changing it; try again in a moment")]
    Busy(PathBuf),
    /// A directory to make a workspace in that already holds other files.
    #[error(
        "{} exists and is not empty; give an empty or new directory for the workspace",
        .path.display()
    )]
    NotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// Another process created some of the names of a batch at the same time: this one
    /// made `made`, the other had already taken `taken` (its certificates, not ours).
    #[error("made {} of {} ({}); the other {} had been created meanwhile by another process ({}): those are its certificates, not this command's; look at their issuer and key before using them", .made.len(), .made.len() + .taken.len(), short_list(.made), .taken.len(), short_list(.taken))]
    Raced {
        /// The names this process made.
        made: Vec<String>,
        /// The names the other process had taken.
        taken: Vec<String>,
    },
    /// Files outside the workspace that exist (overwriting them is the fix).
    #[error("{} already exist{}: {}; nothing was written; overwrite them, or write elsewhere", if .0.len() == 1 { "a file" } else { "files" }, if .0.len() == 1 { "s" } else { "" }, .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Exists(Vec<PathBuf>),
    /// The directory of a file to write does not exist.
    #[error(
        "cannot write {}: the directory {} does not exist; create it or choose another directory",
        .file.display(),
        .dir.display()
    )]
    MissingDir {
        /// The file to write.
        file: PathBuf,
        /// Its directory, which does not exist.
        dir: PathBuf,
    },
    /// A workspace directory another user could change (ssh's rule for `~/.ssh`).
    #[error(
        "{path} {problem}, so another user could replace the certificates and keys in it; {fix}"
    )]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// What to do about it.
        fix: String,
    },
    /// No entity of that name to issue with (making it as a root CA is one fix).
    #[error(
        "no entity named \"{name}\" in the workspace {workspace}{hint} to use as issuer; make a root CA of that name, or list the workspace's entities to see what exists"
    )]
    NoIssuer {
        /// The issuer's name.
        name: String,
        /// The workspace looked in.
        workspace: PathBuf,
        /// Similar names.
        hint: String,
    },
    /// A directory without the workspace marker (creating a workspace there is the fix).
    #[error(
        "{} is not a chainsmith workspace (no {}); create a workspace there",
        .0.display(),
        MARKER
    )]
    NoWorkspace(PathBuf),
    /// The entity named as issuer (or CRL signer) is not a CA.
    #[error("\"{name}\" is a {kind} certificate, not a CA, so it cannot issue certificates or sign CRLs; {}", cas_list(.cas))]
    NotACa {
        /// The entity.
        name: String,
        /// Its kind ("device", ...).
        kind: &'static str,
        /// The workspace's CAs that have a key, sorted.
        cas: Vec<String>,
    },
}

/// What is wrong with a workspace file, after its path.
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    /// A link where an entity's own file or directory should be.
    #[error("is a symbolic link; {}", LINK_HINT)]
    SymbolicLink,
    /// A file where a directory should be.
    #[error("is not a directory; remove it")]
    NotADirectory,
    /// Issuer links that come back to an entity already in the chain.
    #[error("the issuer links loop back to \"{issuer}\"; fix the issuer in meta.toml")]
    IssuerLoop {
        /// The issuer met twice.
        issuer: String,
    },
    /// A cert.pem that is not PEM.
    #[error("not a PEM certificate; restore it or remove the entity directory")]
    NotPemCertificate,
    /// A workspace made by a newer chainsmith.
    #[error(
        "workspace format {found} is newer than this chainsmith understands ({supported}); upgrade chainsmith"
    )]
    NewerFormat {
        /// The format the marker names.
        found: u32,
        /// The format this chainsmith writes and reads.
        supported: u32,
    },
    /// A marker file without a format line.
    #[error(
        "not a chainsmith marker (no `format = 1` line); restore it or use another workspace directory"
    )]
    NotAMarker,
    /// An entity directory without its meta.toml.
    #[error("missing: this entity directory is incomplete; remove it")]
    Missing,
    /// A meta.toml that does not parse as an entity record.
    #[error(
        "not a valid entity record ({}); restore it from a backup or remove the entity directory",
        .error.message()
    )]
    InvalidRecord {
        /// The TOML parser's refusal (its message only: the file is named before it).
        error: Box<toml::de::Error>,
    },
    /// A past certificate that cannot be carried into a renewal, in the words of the check
    /// that refused it (a lifecycle error, which this module cannot name).
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// A stable word for scripts (`--json` error kinds).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NameTaken(_) => "name-taken",
            Error::Raced { .. } => "raced",
            Error::NotFound { .. } | Error::NoIssuer { .. } => "not-found",
            Error::Busy(_) => "busy",
            Error::Damaged { .. } => "damaged",
            Error::Io { .. } => "io",
            Error::NotEmpty { .. } | Error::NoWorkspace(_) => "not-a-workspace",
            Error::Unsafe { .. } => "unsafe-workspace",
            Error::Exists(_) => "exists",
            Error::MissingDir { .. } | Error::NotACa { .. } => "invalid",
            Error::Pki(p) => p.kind(),
        }
    }

    /// What would fix it, for a face to turn into its own hint.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            Error::NameTaken(_) => Some(Remedy::Replace),
            Error::Exists(_) => Some(Remedy::Overwrite),
            Error::MissingDir { .. } => Some(Remedy::OutDir),
            Error::Unsafe { .. } => Some(Remedy::Workspace),
            Error::Io { remedy, .. } => *remedy,
            Error::Pki(p) => p.remedy(),
            Error::NotFound { .. } => Some(Remedy::ListEntities),
            Error::NoIssuer { .. } => Some(Remedy::MakeRoot),
            Error::Raced { .. } => Some(Remedy::ShowEntity),
            Error::NoWorkspace(_) => Some(Remedy::InitWorkspace),
            Error::NotACa { cas, .. } if cas.is_empty() => Some(Remedy::MakeRoot),
            Error::NotACa { .. } => Some(Remedy::PickCa),
            _ => None,
        }
    }
}

/// The CAs an issuer could be picked from, as [`Error::NotACa`] says them.
fn cas_list(cas: &[String]) -> String {
    match cas.len() {
        0 => "this workspace has no CA yet; make a root CA first".into(),
        n if n <= 10 => format!("the CAs here are {}", cas.join(", ")),
        n => format!(
            "the CAs here include {} ({n} in all; list the workspace's entities to see them)",
            cas[..10].join(", ")
        ),
    }
}

fn short_list(names: &[String]) -> String {
    let mut s = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        s.push_str(", ...");
    }
    s
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

impl crate::error::Classified for Error {
    fn kind(&self) -> &'static str {
        Error::kind(self)
    }
    fn remedy(&self) -> Option<Remedy> {
        Error::remedy(self)
    }
}

/// A workspace result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Turn an I/O error into one that says what to do about it.
pub fn io_error(action: &'static str, path: &Path, e: io::Error) -> Error {
    let (detail, remedy) = match e.raw_os_error() {
        Some(c) if c == rustix::io::Errno::NOSPC.raw_os_error() => {
            ("the disk is full; free some space and run the command again (nothing was changed)".to_string(), None)
        }
        Some(c) if c == rustix::io::Errno::ROFS.raw_os_error() => {
            ("the file system is read-only; choose another workspace directory".to_string(), Some(Remedy::Workspace))
        }
        Some(c) if c == rustix::io::Errno::ACCESS.raw_os_error() || c == rustix::io::Errno::PERM.raw_os_error() => {
            ("permission denied; check the directory's owner and mode, or choose another workspace directory".to_string(), Some(Remedy::Workspace))
        }
        _ => (e.to_string(), None),
    };
    Error::Io {
        action,
        path: path.to_path_buf(),
        detail,
        remedy,
    }
}
