//! The workspace on disk.
//!
//! ```text
//! WORKSPACE/
//!   chainsmith.toml            marks the directory as a workspace
//!   entities/NAME/cert.pem     one directory per certificate, browsable by hand
//!   entities/NAME/key.pem      mode 0600, created so before a byte is written
//!   entities/NAME/meta.toml    kind, issuer, thumbprints, validity
//!   .staging/PID-N/            entities being written; renamed into entities/ when whole
//! ```
//!
//! Every entity is written completely in `.staging` and then renamed into place with
//! `RENAME_NOREPLACE` (or swapped with `RENAME_EXCHANGE` when replacing), so a `kill -9`
//! leaves either the whole entity or nothing, two processes never overwrite each other, and
//! there is no shared index to rewrite per certificate. A command calls `syncfs` once per
//! batch before it reports success.

mod chain;
pub mod meta;
mod name;
mod slots;

pub use chain::{HISTORY_DIR, chain_of};
pub use meta::{Kind, Meta, Revocation, Slot};
pub use name::EntityName;
pub use slots::{SlotView, slots};

use crate::clock::Clock;
use crate::error::Remedy;
use rayon::prelude::*;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use time::OffsetDateTime;

/// The file that marks a directory as a workspace.
pub const MARKER: &str = "chainsmith.toml";
/// The directory that holds one directory per entity.
pub const ENTITIES: &str = "entities";
const STAGING: &str = ".staging";
/// The embedded hub's registry and twins (owned by `hub::HubStore`).
const HUB: &str = "hub";
const LOCK: &str = ".lock";
/// An entity's certificate.
pub const CERT_FILE: &str = "cert.pem";
/// An entity's private key (0600).
pub const KEY_FILE: &str = "key.pem";
/// An entity's meta.toml.
pub const META_FILE: &str = "meta.toml";
const FORMAT: u32 = 1;

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
    #[error("{path}: {what}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
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
    /// The directory is not a workspace (the message says why).
    #[error("{0}")]
    NotAWorkspace(String),
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
            Error::NotAWorkspace(_) | Error::NoWorkspace(_) => "not-a-workspace",
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

/// The most a file given to a command (a certificate, bundle, CSR, key, PKCS#12, spec or CA
/// file) may hold: 64 MiB, far above a bundle of 10,000 certificates (~15 MB of PEM). Read
/// whole, `/dev/zero` took 14.6 GB before it was stopped (hostile pass).
pub const MAX_INPUT_BYTES: u64 = 64 << 20;

/// Read a file the user named, refusing what is not a regular file (a FIFO with no writer would
/// block; a device never ends) and what is larger than [`MAX_INPUT_BYTES`], before reading it.
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let meta = fs::metadata(path).map_err(|e| io_error("reading", path, e))?;
    let refuse = |detail: String| Error::Io {
        action: "reading",
        path: path.to_path_buf(),
        detail,
        remedy: None,
    };
    if !meta.is_file() {
        return Err(refuse(
            "not a regular file; give the path of a file (save a stream to one first)".into(),
        ));
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(refuse(format!(
            "{} bytes, more than the {} MiB chainsmith reads from one file; give the certificate, key or bundle itself",
            meta.len(),
            MAX_INPUT_BYTES >> 20
        )));
    }
    let mut bytes = Vec::new();
    File::open(path)
        .map_err(|e| io_error("reading", path, e))?
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error("reading", path, e))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(refuse(format!(
            "it grew past {} MiB while being read",
            MAX_INPUT_BYTES >> 20
        )));
    }
    Ok(bytes)
}

/// [`read_input`] as UTF-8 text.
pub fn read_input_text(path: &Path) -> Result<String> {
    String::from_utf8(read_input(path)?).map_err(|_| Error::Io {
        action: "reading",
        path: path.to_path_buf(),
        detail: "not UTF-8 text".into(),
        remedy: None,
    })
}

/// A certificate to be added to the workspace.
pub struct NewEntity {
    /// Its meta.toml.
    pub meta: Meta,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (None for trust-only entities and signed CSRs).
    pub key_pem: Option<String>,
    /// More files for the entity directory (relative path, contents); e.g. history.
    pub extra: Vec<(String, Vec<u8>)>,
}

/// An entity read back from disk.
#[derive(Clone, Debug)]
pub struct Entity {
    /// Its meta.toml.
    pub meta: Meta,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// Its directory.
    pub dir: PathBuf,
}

impl Entity {
    /// Read the entity (or a slot of one) stored in `dir`: its meta and certificate.
    pub fn read_dir(dir: PathBuf) -> Result<Entity> {
        let meta = read_meta(&dir.join(META_FILE))?;
        let cert_path = dir.join(CERT_FILE);
        let cert_pem = read_own_file(&cert_path)?;
        let cert_der = pem::parse(&cert_pem)
            .ok()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| p.into_contents())
            .ok_or_else(|| Error::Damaged {
                path: cert_path.clone(),
                what: "not a PEM certificate; restore it or remove the entity directory".into(),
            })?;
        Ok(Entity {
            meta,
            cert_pem,
            cert_der,
            dir,
        })
    }

    /// Where its certificate lies.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CERT_FILE)
    }
    /// Where its private key lies.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }
    /// Where its meta.toml lies.
    pub fn meta_path(&self) -> PathBuf {
        self.dir.join(META_FILE)
    }
    /// Its private key, PEM (an error for a trust-only entity).
    pub fn read_key_pem(&self) -> Result<String> {
        read_own_file(&self.key_path())
    }
}

/// An entity directory that could not be read, and why; the rest of the workspace works.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Damaged {
    /// The entity directory.
    pub path: PathBuf,
    /// Why it could not be read.
    pub problem: String,
}

/// A workspace directory: entities, the hub registry and a lock, with the clock its operations use.
#[derive(Clone, Debug)]
pub struct Workspace {
    root: PathBuf,
    /// "Now" for everything done in this workspace (tests fix it).
    clock: Clock,
}

static STAGE_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Workspace {
    /// The platform data directory (`~/.local/share/chainsmith` on Linux).
    pub fn default_dir() -> PathBuf {
        directories::ProjectDirs::from("", "", "chainsmith")
            .map(|d| d.data_dir().to_path_buf())
            .unwrap_or_else(|| PathBuf::from(".chainsmith"))
    }

    /// Open a workspace, creating it on first use.
    pub fn open_or_create(root: &Path) -> Result<Workspace> {
        if root.join(MARKER).is_file() {
            return Workspace::open(root);
        }
        Workspace::init(root)
    }

    /// Open an existing workspace.
    pub fn open(root: &Path) -> Result<Workspace> {
        check_private(root, true)?;
        check_ancestors(root)?;
        let marker = root.join(MARKER);
        let text = fs::read_to_string(&marker).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Error::NoWorkspace(root.to_path_buf())
            } else {
                io_error("reading", &marker, e)
            }
        })?;
        let format = text
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("format")
                    .map(|r| r.trim_start_matches([' ', '=']).trim().to_string())
            })
            .and_then(|v| v.parse::<u32>().ok());
        match format {
            Some(FORMAT) => {}
            Some(n) => {
                return Err(Error::Damaged {
                    path: marker,
                    what: format!(
                        "workspace format {n} is newer than this chainsmith understands ({FORMAT}); upgrade chainsmith"
                    ),
                });
            }
            None => {
                return Err(Error::Damaged {
                    path: marker,
                    what: "not a chainsmith marker (no `format = 1` line); restore it or use another workspace directory".into(),
                });
            }
        }
        for sub in [ENTITIES, HUB, STAGING] {
            let p = root.join(sub);
            if p.symlink_metadata().is_ok() {
                check_private(&p, false)?;
            }
        }
        let ws = Workspace {
            root: root.to_path_buf(),
            clock: Clock::System,
        };
        ws.clean_stale_staging();
        Ok(ws)
    }

    /// Create a workspace in `root` (which may exist, but then must be empty or already one).
    pub fn init(root: &Path) -> Result<Workspace> {
        if root.join(MARKER).is_file() {
            return Workspace::open(root);
        }
        // Before creating or looking inside: a directory another user can write to, or rename
        // in a parent they can write to, may change under us.
        check_ancestors(root)?;
        if root.exists() {
            check_private(root, true)?;
            let non_empty = fs::read_dir(root)
                .map_err(|e| io_error("reading", root, e))?
                .next()
                .is_some();
            if non_empty {
                return Err(Error::NotAWorkspace(format!(
                    "{} exists and is not empty; give an empty or new directory for the workspace",
                    root.display()
                )));
            }
        }
        make_private_dir_all(root)?;
        make_private_dir_all(&root.join(ENTITIES))?;
        make_private_dir_all(&root.join(STAGING))?;
        let body = format!(
            "# A chainsmith workspace: certificates and keys live under entities/NAME/.\nformat = {FORMAT}\n"
        );
        write_atomic(&root.join(MARKER), body.as_bytes(), 0o644)?;
        sync_fs(root)?;
        Ok(Workspace {
            root: root.to_path_buf(),
            clock: Clock::System,
        })
    }

    /// The workspace directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The same workspace, seen with `clock` as "now".
    pub fn with_clock(mut self, clock: Clock) -> Workspace {
        self.clock = clock;
        self
    }

    /// The clock its operations read "now" from.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// "Now" by this workspace's clock.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Where the entity directories are.
    pub fn entities_dir(&self) -> PathBuf {
        self.root.join(ENTITIES)
    }

    /// The one way from a name to a path: only a checked [`EntityName`] is joined.
    pub fn entity_dir(&self, name: &EntityName) -> PathBuf {
        self.root.join(ENTITIES).join(name.as_str())
    }

    /// Check a name given for lookup with the rules names are created with.
    pub fn resolve(&self, name: &str) -> Result<EntityName> {
        Ok(EntityName::new(name)?)
    }

    /// `entity_dir` for a name not checked yet.
    pub fn dir_of(&self, name: &str) -> Result<PathBuf> {
        Ok(self.entity_dir(&self.resolve(name)?))
    }

    /// Whether an entity of that name exists.
    pub fn exists(&self, name: &str) -> bool {
        self.dir_of(name)
            .is_ok_and(|d| d.join(META_FILE).symlink_metadata().is_ok())
    }

    /// Read one entity's meta and certificate. The name must follow the creation rules and
    /// its directory must be a real directory (not a link to one elsewhere).
    pub fn load(&self, name: &str) -> Result<Entity> {
        let name = self.resolve(name)?;
        let dir = self.entity_dir(&name);
        match real_dir(&dir) {
            Err(Error::Io { .. }) if dir.symlink_metadata().is_err() => Err(self.not_found(&name)),
            Err(e) => Err(e),
            Ok(()) => {
                // A file of the entity that links elsewhere would be read, copied (revoke,
                // renew) or signed with as if it were the entity's own.
                let rd = fs::read_dir(&dir).map_err(|e| io_error("reading", &dir, e))?;
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_symlink()) {
                        return Err(Error::Damaged {
                            path: e.path(),
                            what: format!("is a symbolic link; {LINK_HINT}"),
                        });
                    }
                }
                Entity::read_dir(dir)
            }
        }
    }

    fn not_found(&self, name: &str) -> Error {
        let lower = name.to_ascii_lowercase();
        let close: Vec<String> = self
            .names()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| {
                n.to_ascii_lowercase() == lower
                    || (n.len() > 2 && lower.contains(&n.to_ascii_lowercase()))
                    || (lower.len() > 2 && n.to_ascii_lowercase().contains(&lower))
            })
            .take(3)
            .collect();
        let hint = if close.is_empty() {
            String::new()
        } else {
            format!(" (did you mean {}?)", close.join(", "))
        };
        Error::NotFound {
            name: name.to_string(),
            workspace: self.root.clone(),
            hint,
        }
    }

    /// Every entity name, from the directory listing (cheap: no file is opened).
    pub fn names(&self) -> Result<Vec<String>> {
        let dir = self.entities_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("reading", &dir, e)),
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every entity's meta, read in parallel; unreadable ones are reported, not fatal.
    pub fn list(&self) -> Result<(Vec<Meta>, Vec<Damaged>)> {
        let names = self.names()?;
        let dir = self.entities_dir();
        let results: Vec<Result<Meta, Damaged>> = names
            .par_iter()
            .map(|n| {
                real_dir(&dir.join(n)).map_err(|e| Damaged {
                    path: dir.join(n),
                    problem: match e {
                        Error::Damaged { what, .. } => what,
                        other => other.to_string(),
                    },
                })?;
                let p = dir.join(n).join(META_FILE);
                read_meta(&p).map_err(|e| Damaged { path: p, problem: e.to_string() }).and_then(|m| {
                    if m.name == *n {
                        Ok(m)
                    } else {
                        Err(Damaged {
                            path: dir.join(n),
                            problem: format!("meta.toml names \"{}\" but the directory is \"{n}\"; rename one to match", m.name),
                        })
                    }
                })
            })
            .collect();
        let mut metas = Vec::with_capacity(results.len());
        let mut damaged = Vec::new();
        for r in results {
            match r {
                Ok(m) => metas.push(m),
                Err(d) => damaged.push(d),
            }
        }
        Ok((metas, damaged))
    }

    /// Refuse names that exist already.
    pub fn check_free(&self, names: &[String]) -> Result<()> {
        let mut taken = Vec::new();
        for n in names {
            // Anything at the path counts, a dangling link too: the rename would fail on it.
            if self.dir_of(n)?.symlink_metadata().is_ok() {
                taken.push(n.clone());
            }
        }
        if taken.is_empty() {
            Ok(())
        } else {
            Err(Error::NameTaken(taken))
        }
    }

    fn new_staging_dir(&self) -> Result<PathBuf> {
        let n = STAGE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = self
            .root
            .join(STAGING)
            .join(format!("{}-{n}", std::process::id()));
        make_private_dir_all(&p)?;
        Ok(p)
    }

    /// Write one entity into a fresh staging directory, complete, ready to rename.
    fn stage(&self, e: &NewEntity) -> Result<PathBuf> {
        let dir = self.new_staging_dir()?;
        if let Some(key) = &e.key_pem {
            write_new(&dir.join(KEY_FILE), key.as_bytes(), 0o600)?;
        }
        write_new(&dir.join(CERT_FILE), e.cert_pem.as_bytes(), 0o644)?;
        for (rel, bytes) in &e.extra {
            let p = dir.join(rel);
            if let Some(parent) = p.parent() {
                make_private_dir_all(parent)?;
            }
            let mode = if rel.ends_with("key.pem") {
                0o600
            } else {
                0o644
            };
            write_new(&p, bytes, mode)?;
        }
        // meta.toml last: its presence is what makes a staging directory look whole.
        write_new(&dir.join(META_FILE), e.meta.to_toml().as_bytes(), 0o644)?;
        Ok(dir)
    }

    /// Add new entities. Each lands whole or not at all; a name another process took in
    /// the meantime is reported and the rest still land. Syncs once at the end.
    pub fn create(&self, batch: &[NewEntity]) -> Result<()> {
        let failures: Vec<Error> = batch
            .par_iter()
            .filter_map(|e| {
                let r = self.dir_of(&e.meta.name).and_then(|target| {
                    let staged = self.stage(e)?;
                    rename_noreplace(&staged, &target).map_err(|err| {
                        let _ = fs::remove_dir_all(&staged);
                        if err.kind() == io::ErrorKind::AlreadyExists
                            || err.raw_os_error()
                                == Some(rustix::io::Errno::NOTEMPTY.raw_os_error())
                        {
                            Error::NameTaken(vec![e.meta.name.clone()])
                        } else {
                            io_error("renaming into place", &target, err)
                        }
                    })
                });
                r.err()
            })
            .collect();
        sync_fs(&self.root)?;
        match failures.len() {
            0 => Ok(()),
            _ => {
                let taken: Vec<String> = failures
                    .iter()
                    .filter_map(|f| {
                        if let Error::NameTaken(n) = f {
                            Some(n.clone())
                        } else {
                            None
                        }
                    })
                    .flatten()
                    .collect();
                if taken.len() == failures.len() && taken.len() < batch.len() {
                    let lost: std::collections::HashSet<&String> = taken.iter().collect();
                    let made = batch
                        .iter()
                        .map(|e| e.meta.name.clone())
                        .filter(|n| !lost.contains(n))
                        .collect();
                    Err(Error::Raced { made, taken })
                } else if taken.len() == failures.len() {
                    Err(Error::NameTaken(taken))
                } else {
                    Err(failures
                        .into_iter()
                        .find(|f| !matches!(f, Error::NameTaken(_)))
                        .expect("a non-name failure"))
                }
            }
        }
    }

    /// Replace entities atomically (renew, revoke, --force): the new directory is swapped
    /// with the old in one `RENAME_EXCHANGE`, so readers see one or the other, never a mix.
    /// Names that do not exist yet are simply created.
    pub fn replace(&self, batch: &[NewEntity]) -> Result<()> {
        let lock = self.lock()?;
        self.replace_locked(&lock, batch)
    }

    /// `replace` for a caller that already holds the workspace lock (a read-compare-write
    /// such as `apply`, which must not let another process change the workspace between).
    pub fn replace_locked(&self, _lock: &WorkspaceLock, batch: &[NewEntity]) -> Result<()> {
        let result: Result<Vec<()>> = batch
            .par_iter()
            .map(|e| {
                let target = self.dir_of(&e.meta.name)?;
                // Swapping with a link would put the entity outside the workspace.
                if target.symlink_metadata().is_ok() {
                    real_dir(&target)?;
                }
                let staged = self.stage(e)?;
                match rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &staged,
                    rustix::fs::CWD,
                    &target,
                    rustix::fs::RenameFlags::EXCHANGE,
                ) {
                    Ok(()) => {
                        // `staged` now holds the old entity.
                        let _ = fs::remove_dir_all(&staged);
                        Ok(())
                    }
                    Err(rustix::io::Errno::NOENT) => rename_noreplace(&staged, &target)
                        .map_err(|err| io_error("renaming into place", &target, err)),
                    Err(err) => {
                        let _ = fs::remove_dir_all(&staged);
                        Err(io_error("swapping into place", &target, err.into()))
                    }
                }
            })
            .collect();
        result?;
        sync_fs(&self.root)
    }

    /// Change an entity's meta only (revoke): copies the directory with the new meta and
    /// swaps it in, keeping cert and key byte for byte.
    pub fn update_meta(&self, name: &str, f: impl FnOnce(&mut Meta)) -> Result<Meta> {
        let _lock = self.lock()?;
        let entity = self.load(name)?;
        let mut meta = entity.meta.clone();
        f(&mut meta);
        let staged = self.new_staging_dir()?;
        copy_dir(&entity.dir, &staged)?;
        let mp = staged.join(META_FILE);
        fs::remove_file(&mp).map_err(|e| io_error("replacing", &mp, e))?;
        write_new(&mp, meta.to_toml().as_bytes(), 0o644)?;
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &staged,
            rustix::fs::CWD,
            &entity.dir,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| io_error("swapping into place", &entity.dir, e.into()))?;
        let _ = fs::remove_dir_all(&staged);
        sync_fs(&self.root)?;
        Ok(meta)
    }

    /// Remove an entity (its directory goes in one rename, then is deleted).
    pub fn remove(&self, name: &str) -> Result<()> {
        let dir = self.dir_of(name)?;
        if dir.symlink_metadata().is_err() {
            return Err(self.not_found(name));
        }
        let trash = self.new_staging_dir()?;
        let into = trash.join("old");
        fs::rename(&dir, &into).map_err(|e| io_error("removing", &dir, e))?;
        let _ = fs::remove_dir_all(&trash);
        sync_fs(&self.root)
    }

    /// An exclusive advisory lock for read-modify-write changes; waits up to 5 s, then says busy.
    pub fn lock(&self) -> Result<WorkspaceLock> {
        let p = self.root.join(LOCK);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .map_err(|e| io_error("opening", &p, e))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(WorkspaceLock { _file: f }),
                Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(rustix::io::Errno::WOULDBLOCK) => return Err(Error::Busy(self.root.clone())),
                Err(e) => return Err(io_error("locking", &p, e.into())),
            }
        }
    }

    /// Remove staging directories of processes that died (a `kill -9` mid-command).
    fn clean_stale_staging(&self) {
        let Ok(rd) = fs::read_dir(self.root.join(STAGING)) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().and_then(|p| p.parse::<i32>().ok());
            let alive = pid
                .and_then(rustix::process::Pid::from_raw)
                .is_some_and(|p| {
                    p.as_raw_nonzero().get() == std::process::id() as i32
                        || !matches!(
                            rustix::process::test_kill_process(p),
                            Err(rustix::io::Errno::SRCH)
                        )
                });
            if !alive {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Held while a read-modify-write change is made.
pub struct WorkspaceLock {
    _file: File,
}

/// Read a meta.toml.
pub fn read_meta(path: &Path) -> Result<Meta> {
    let text = read_own_file(path).map_err(|e| match e {
        Error::Io { .. } if path.symlink_metadata().is_err() => Error::Damaged {
            path: path.to_path_buf(),
            what: "missing: this entity directory is incomplete; remove it".into(),
        },
        other => other,
    })?;
    toml::from_str(&text).map_err(|e| Error::Damaged {
        path: path.to_path_buf(),
        what: format!("not a valid entity record ({}); restore it from a backup or remove the entity directory", e.message()),
    })
}

/// Refuse a workspace directory that is not ours alone, the way ssh treats `~/.ssh`: owned
/// by another user (root excepted), writable by group or others, or (below the root) a link.
/// The root may be a link (a workspace kept elsewhere: `is_root`); the directories inside may not.
fn check_private(dir: &Path, is_root: bool) -> Result<()> {
    let md = if is_root {
        dir.metadata()
    } else {
        dir.symlink_metadata()
    }
    .map_err(|e| io_error("reading", dir, e))?;
    let unsafe_dir = |problem: String, fix: String| Error::Unsafe {
        path: dir.to_path_buf(),
        problem,
        fix,
    };
    if md.file_type().is_symlink() {
        return Err(unsafe_dir(
            "is a symbolic link".into(),
            format!(
                "remove the link and run the command again, or restore {} as a directory",
                dir.display()
            ),
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    let owner = std::os::unix::fs::MetadataExt::uid(&md);
    if owner != me && owner != 0 {
        return Err(unsafe_dir(
            format!("is owned by user {owner}, not by you (user {me})"),
            "use a workspace directory of your own, or have it handed to you with `chown`".into(),
        ));
    }
    let mode = md.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "group and others",
            (true, false) => "its group",
            _ => "others",
        };
        return Err(unsafe_dir(
            format!("is writable by {who} (mode {mode:04o})"),
            format!("run `chmod 700 {}` and check what is inside", dir.display()),
        ));
    }
    Ok(())
}

/// Refuse a workspace below a directory another user could change: whoever can write to a
/// parent can rename the workspace away and put their own in its place. OpenSSH's
/// `safe_path` walks every ancestor to `/` the same way (owned by root or by us, writable by
/// no one else), except that a sticky directory (`/tmp`) is allowed: there others cannot
/// rename what is ours. The path is resolved first, so a link is judged by where it leads.
fn check_ancestors(root: &Path) -> Result<()> {
    // The nearest part of the path that exists (init may create the rest).
    let mut existing = root;
    while existing.symlink_metadata().is_err() {
        match existing.parent() {
            Some(p) if !p.as_os_str().is_empty() => existing = p,
            _ => {
                existing = Path::new(".");
                break;
            }
        }
    }
    let real = existing
        .canonicalize()
        .map_err(|e| io_error("resolving", existing, e))?;
    let me = rustix::process::geteuid().as_raw();
    // The workspace itself is check_private's; its parents are checked here.
    let parents = if existing == root {
        real.parent()
    } else {
        Some(real.as_path())
    };
    for dir in parents.into_iter().flat_map(Path::ancestors) {
        let md = dir.metadata().map_err(|e| io_error("reading", dir, e))?;
        let owner = std::os::unix::fs::MetadataExt::uid(&md);
        let mode = md.permissions().mode() & 0o7777;
        let unsafe_parent = |problem: String, fix: String| Error::Unsafe {
            path: dir.to_path_buf(),
            problem: format!("(a parent of the workspace {}) {problem}", root.display()),
            fix,
        };
        if owner != me && owner != 0 {
            return Err(unsafe_parent(
                format!("is owned by user {owner}, not by you (user {me}) or root"),
                "keep the workspace under directories owned by you or root".into(),
            ));
        }
        let sticky = mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky {
            let (who, whom) = match (mode & 0o020 != 0, mode & 0o002 != 0) {
                (true, true) => ("group and others", "go"),
                (true, false) => ("its group", "g"),
                _ => ("others", "o"),
            };
            return Err(unsafe_parent(
                format!("is writable by {who} without the sticky bit (mode {mode:04o})"),
                format!(
                    "run `chmod {whom}-w {d}`, or `chmod +t {d}` if others must create files there",
                    d = dir.display()
                ),
            ));
        }
    }
    Ok(())
}

const LINK_HINT: &str = "entity files must be real files and directories inside the workspace, not links to elsewhere; remove the link";

/// Check that an entity directory is a directory and not a symbolic link to one.
fn real_dir(dir: &Path) -> Result<()> {
    let md = dir
        .symlink_metadata()
        .map_err(|e| io_error("reading", dir, e))?;
    if md.file_type().is_symlink() {
        return Err(Error::Damaged {
            path: dir.to_path_buf(),
            what: format!("is a symbolic link; {LINK_HINT}"),
        });
    }
    if !md.is_dir() {
        return Err(Error::Damaged {
            path: dir.to_path_buf(),
            what: "is not a directory; remove it".into(),
        });
    }
    Ok(())
}

/// Read a file of an entity, refusing a symbolic link in its place (`O_NOFOLLOW`), so a
/// planted link cannot make the workspace read or sign with a key from elsewhere.
fn read_own_file(path: &Path) -> Result<String> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                Error::Damaged {
                    path: path.to_path_buf(),
                    what: format!("is a symbolic link; {LINK_HINT}"),
                }
            } else {
                io_error("reading", path, e)
            }
        })?;
    let mut text = String::new();
    io::Read::read_to_string(&mut f, &mut text).map_err(|e| io_error("reading", path, e))?;
    Ok(text)
}

/// Create a directory and its missing parents, each 0700.
pub fn make_private_dir_all(p: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .map_err(|e| io_error("creating directory", p, e))
}

/// Create a new file with `mode` from the first byte (no window where a key is readable).
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io_error("creating", path, e))?;
    // The umask may have removed bits; it never adds them, but be exact.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| io_error("setting mode of", path, e))?;
    f.write_all(bytes).map_err(|e| io_error("writing", path, e))
}

/// The rule for every file chainsmith writes where a user's files live (`export`, `crl`, the
/// verification certificate, `apply`'s exports): if any target exists and holds other bytes,
/// nothing is written and the error names them all, unless `force`. A target that already
/// holds exactly these bytes (a shared root exported for several devices into one directory)
/// is left alone: its path is returned so the caller skips it.
pub fn refuse_overwrite<'a>(
    targets: impl IntoIterator<Item = (&'a Path, &'a [u8])>,
    force: bool,
) -> Result<Vec<PathBuf>> {
    let mut unchanged = Vec::new();
    let mut existing = Vec::new();
    for (path, bytes) in targets {
        // Never write over what is not a regular file, even with force: replacing /dev/zero
        // or a FIFO by a rename (as root) would break the machine, not write a report.
        if fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            return Err(Error::Io {
                action: "writing",
                path: path.to_path_buf(),
                detail: "not a regular file (a device, FIFO, socket or directory); give the path of a file".into(),
                remedy: None,
            });
        }
        // Read only a regular file of exactly this length: a target that is /dev/zero, a FIFO
        // or a huge file was read whole before (hostile pass: 9.6 GB for `crl --out`).
        let same_length =
            fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64);
        if same_length && std::fs::read(path).is_ok_and(|b| b == bytes) {
            unchanged.push(path.to_path_buf());
        } else if path.symlink_metadata().is_ok() && !force {
            existing.push(path.to_path_buf());
        }
    }
    if existing.is_empty() {
        Ok(unchanged)
    } else {
        Err(Error::Exists(existing))
    }
}

/// Write one file under [`refuse_overwrite`]'s rule: a new file is created (0600 keys from
/// the first byte), `force` replaces atomically, identical bytes are left alone.
pub fn write_user_file(path: &Path, bytes: &[u8], mode: u32, force: bool) -> Result<()> {
    if !refuse_overwrite([(path, bytes)], force)?.is_empty() {
        return Ok(());
    }
    let r = if force {
        write_atomic(path, bytes, mode)
    } else {
        write_new(path, bytes, mode)
    };
    r.map_err(|e| match e {
        // Created by someone else between the check and the write.
        Error::Io { ref detail, .. } if detail.contains("exists") => {
            Error::Exists(vec![path.to_path_buf()])
        }
        other => other,
    })
}

/// Write a file atomically: a temp file beside it, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let n = STAGE_COUNTER.fetch_add(1, Ordering::Relaxed);
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.{}-{n}.tmp", std::process::id()));
    let r = (|| {
        write_new(&tmp, bytes, mode)?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_error("syncing", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| io_error("renaming into place", path, e))
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(io::Error::from)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    for e in fs::read_dir(from).map_err(|e| io_error("reading", from, e))? {
        let e = e.map_err(|e| io_error("reading", from, e))?;
        let src = e.path();
        let dst = to.join(e.file_name());
        let md = e.metadata().map_err(|err| io_error("reading", &src, err))?;
        if md.file_type().is_symlink() {
            return Err(Error::Damaged {
                path: src,
                what: format!("is a symbolic link; {LINK_HINT}"),
            });
        }
        if md.is_dir() {
            make_private_dir_all(&dst)?;
            copy_dir(&src, &dst)?;
        } else {
            let bytes = fs::read(&src).map_err(|err| io_error("reading", &src, err))?;
            write_new(&dst, &bytes, md.permissions().mode() & 0o777)?;
        }
    }
    Ok(())
}

/// Flush everything written to the file system holding `root`: one call per batch.
pub fn sync_fs(root: &Path) -> Result<()> {
    let f = File::open(root).map_err(|e| io_error("opening", root, e))?;
    rustix::fs::syncfs(&f).map_err(|e| io_error("syncing", root, e.into()))
}
