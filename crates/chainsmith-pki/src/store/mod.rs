//! The workspace on disk.
//!
//! ```text
//! WORKSPACE/
//!   chainsmith.toml            marks the directory as a workspace
//!   entities/NAME/cert.pem     one directory per certificate, browsable by hand
//!   entities/NAME/key.pem      mode 0600, created so before a byte is written
//!   entities/NAME/meta.toml    kind, issuer, thumbprints, validity
//!   .staging/PID-N/            entities being written; renamed into entities/ when whole
//!   index                      every meta.toml in one file, for `list` (see `index`)
//! ```
//!
//! Every entity is written completely in `.staging` and then renamed into place with
//! `RENAME_NOREPLACE` (or swapped with `RENAME_EXCHANGE` when replacing), so a `kill -9`
//! leaves either the whole entity or nothing and two processes never overwrite each other.
//! The index is updated once per batch, after the renames, and is never the source of truth:
//! a record counts only while its entity directory is as the record says. A command calls
//! `syncfs` once per batch before it reports success.

mod batch;
mod chain;
mod error;
mod files;
mod index;
pub mod meta;
mod name;
mod private;
mod slots;
mod stream;

pub use chain::{HISTORY_DIR, chain_of};
pub use error::{Damage, Error, Result, io_error};
pub use files::{
    MAX_INPUT_BYTES, make_private_dir_all, read_input, read_input_text, refuse_overwrite, sync_fs,
    write_atomic, write_new, write_user_file,
};
pub use index::{INDEX_FILE, MAX_INDEX_BYTES};
pub use meta::{Kind, Meta, Revocation, Slot};
pub use name::EntityName;
pub use slots::{SlotView, slots};

use batch::BatchDirs;
use files::{STAGE_COUNTER, copy_dir, read_own_file, real_dir};
use index::{Record, Stamp};
use private::{check_ancestors, check_private};

use crate::clock::Clock;
use rayon::prelude::*;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use time::OffsetDateTime;

/// The file that marks a directory as a workspace.
pub(crate) const MARKER: &str = "chainsmith.toml";
/// The directory that holds one directory per entity.
pub(crate) const ENTITIES: &str = "entities";
const STAGING: &str = ".staging";
/// The embedded hub's registry and twins (owned by `hub::HubStore`).
const HUB: &str = "hub";
const LOCK: &str = ".lock";
/// An entity's certificate.
pub const CERT_FILE: &str = "cert.pem";
/// An entity's private key (0600).
pub const KEY_FILE: &str = "key.pem";
/// An entity's meta.toml.
pub(crate) const META_FILE: &str = "meta.toml";
const FORMAT: u32 = 1;

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
                what: Damage::NotPemCertificate,
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
    pub(crate) fn meta_path(&self) -> PathBuf {
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
                    what: Damage::NewerFormat {
                        found: n,
                        supported: FORMAT,
                    },
                });
            }
            None => {
                return Err(Error::Damaged {
                    path: marker,
                    what: Damage::NotAMarker,
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
                return Err(Error::NotEmpty {
                    path: root.to_path_buf(),
                });
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
    pub(crate) fn entity_dir(&self, name: &EntityName) -> PathBuf {
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

    /// The workspace CA whose key signed `cert_der`, by signature (a proof of possession
    /// signed by the wrong CA is refused naming the one that did sign it).
    pub fn signing_ca(&self, cert_der: &[u8]) -> Option<String> {
        let (metas, _) = self.list().ok()?;
        metas
            .into_iter()
            .filter(|m| m.kind.is_ca())
            .find(|m| {
                self.load(&m.name)
                    .is_ok_and(|e| crate::pki::inspect::signed_by(cert_der, &e.cert_der))
            })
            .map(|m| m.name)
    }

    /// Read one entity's meta and certificate. The name must follow the creation rules and
    /// its directory must be a real directory (not a link to one elsewhere).
    pub fn load(&self, name: &str) -> Result<Entity> {
        let name = self.resolve(name)?;
        let dir = self.entity_dir(&name);
        match real_dir(&dir) {
            Err(Error::Io { .. }) if dir.symlink_metadata().is_err() => Err(self.not_found(&name)),
            Err(e) => Err(e),
            Ok(_) => {
                // A file of the entity that links elsewhere would be read, copied (revoke,
                // renew) or signed with as if it were the entity's own.
                let rd = fs::read_dir(&dir).map_err(|e| io_error("reading", &dir, e))?;
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_symlink()) {
                        return Err(Error::Damaged {
                            path: e.path(),
                            what: Damage::SymbolicLink,
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
        Ok(self.listing()?.into_iter().map(|e| e.name).collect())
    }

    /// The entries of `entities/`, sorted by name, as one `getdents` pass gives them.
    fn listing(&self) -> Result<Vec<Listing>> {
        use std::os::unix::fs::DirEntryExt as _;
        let dir = self.entities_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("reading", &dir, e)),
        };
        let mut entries: Vec<Listing> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                Some(Listing {
                    ino: e.ino(),
                    is_dir: e.file_type().is_ok_and(|t| t.is_dir()),
                    head: name_head(&name),
                    name,
                })
            })
            .filter(|e| !e.name.starts_with('.'))
            .collect();
        // Names in a directory are unique, so an unstable sort gives the one order; the
        // heads settle most comparisons without reading the names (at 200,000 entities the
        // name comparisons of sorting and merging were a seventh of `list`, perf).
        entries.sort_unstable_by(|a, b| a.head.cmp(&b.head).then_with(|| a.name.cmp(&b.name)));
        Ok(entries)
    }

    /// Every entity's meta, sorted by name; unreadable ones are reported, not fatal. Taken
    /// from the index for each entity whose directory is as the index recorded it, read from
    /// meta.toml (in parallel) for the rest, which are then written back to the index.
    pub fn list(&self) -> Result<(Vec<Meta>, Vec<Damaged>)> {
        let listing = self.listing()?;
        let mut records = index::read(&self.root)
            .unwrap_or_default()
            .into_iter()
            .peekable();
        let mut stale = Vec::new();
        // A meta is some 400 bytes and there may be 100,000: the usual case (the record
        // matches its directory) moves each once, from the index into `indexed`; at that
        // size every extra copy into a fresh vector was a tenth of the time, mostly the
        // kernel zeroing new pages.
        let mut indexed = Vec::with_capacity(listing.len());
        let mut unsure = Vec::new();
        for e in listing {
            // One comparison per step: records before `e` are gone, one equal to it is its.
            let record = loop {
                match records.peek().map(|r| r.meta.name.as_str().cmp(&e.name)) {
                    Some(std::cmp::Ordering::Less) => {
                        stale.extend(records.next().map(|gone| gone.meta.name));
                    }
                    Some(std::cmp::Ordering::Equal) => break records.next(),
                    _ => break None,
                }
            };
            match record {
                Some(r) if e.is_dir && r.stamp.ino == e.ino => indexed.push(r.meta),
                record => unsure.push((e, record)),
            }
        }
        stale.extend(records.map(|r| r.meta.name));
        let dir = self.entities_dir();
        let listed: Vec<Listed> = unsure
            .into_par_iter()
            .map(|(e, record)| list_one(&dir, e, record))
            .collect();
        let mut read = Vec::with_capacity(listed.len());
        let mut damaged = Vec::new();
        let mut fresh = Vec::new();
        for l in listed {
            match l {
                Listed::Indexed(m) => read.push(m),
                Listed::Read(r) => {
                    read.push(r.meta.clone());
                    fresh.push(r);
                }
                Listed::Damaged {
                    damage,
                    name,
                    had_record,
                } => {
                    damaged.push(damage);
                    if had_record {
                        stale.push(name);
                    }
                }
            }
        }
        index::merge(&self.root, fresh, &stale);
        Ok((merge_by_name(indexed, read), damaged))
    }

    /// Refuse names that exist already.
    pub(crate) fn check_free(&self, names: &[String]) -> Result<()> {
        let dirs = BatchDirs::open(&self.root)?;
        let mut taken = Vec::new();
        for n in names {
            // Anything at the path counts, a dangling link too: the rename would fail on it.
            if dirs.taken(self.resolve(n)?.as_str()) {
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

    /// Add new entities. Each lands whole or not at all; a name another process took in
    /// the meantime is reported and the rest still land. Syncs once at the end.
    pub fn create(&self, batch: &[NewEntity]) -> Result<()> {
        self.create_watched(batch, &crate::progress::Unwatched)
    }

    /// [`Workspace::create`], telling `progress` of each entity written (stage "writing").
    pub fn create_watched(
        &self,
        batch: &[NewEntity],
        progress: &dyn crate::progress::Progress,
    ) -> Result<()> {
        progress.stage("writing", crate::progress::total(batch.len()));
        let dirs = BatchDirs::open(&self.root)?;
        // Every entity is tried (see `replace_locked`).
        let outcomes: Vec<Result<Option<Record>>> = batch
            .par_iter()
            .map(|e| {
                let r = self.land_new(&dirs, e);
                progress.done(1);
                r
            })
            .collect();
        self.settle_new(outcomes, || batch.iter().map(|e| e.meta.name.clone()))
    }

    /// Stage one new entity and rename it into place, refusing to replace anything under its
    /// name; its index record (None when its stamp could not be read).
    fn land_new(&self, dirs: &BatchDirs, e: &NewEntity) -> Result<Option<Record>> {
        let name = self.resolve(&e.meta.name)?;
        let staged = dirs.stage(e)?;
        let stamp = dirs.stamp(&staged);
        dirs.rename_new(&staged, name.as_str()).map_err(|err| {
            dirs.discard(&staged);
            if err.kind() == io::ErrorKind::AlreadyExists
                || err.raw_os_error() == Some(rustix::io::Errno::NOTEMPTY.raw_os_error())
            {
                Error::NameTaken(vec![e.meta.name.clone()])
            } else {
                io_error("renaming into place", &dirs.entity_path(name.as_str()), err)
            }
        })?;
        Ok(stamp.map(|stamp| Record {
            stamp,
            meta: e.meta.clone(),
        }))
    }

    /// After a batch of `land_new`: index what landed, sync, and tell what did not land.
    /// `names` gives every name the batch was to create (only read when names were taken).
    fn settle_new<N: Iterator<Item = String>>(
        &self,
        outcomes: Vec<Result<Option<Record>>>,
        names: impl FnOnce() -> N,
    ) -> Result<()> {
        let tried = outcomes.len();
        let mut landed = Vec::with_capacity(tried);
        let mut failures = Vec::new();
        for o in outcomes {
            match o {
                Ok(record) => landed.extend(record),
                Err(e) => failures.push(e),
            }
        }
        index::merge(&self.root, landed, &[]);
        sync_fs(&self.root)?;
        if failures.is_empty() {
            return Ok(());
        }
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
        if taken.len() == failures.len() && taken.len() < tried {
            let lost: std::collections::HashSet<&String> = taken.iter().collect();
            let made = names().filter(|n| !lost.contains(n)).collect();
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

    /// Replace entities atomically (renew, revoke, --force): the new directory is swapped
    /// with the old in one `RENAME_EXCHANGE`, so readers see one or the other, never a mix.
    /// Names that do not exist yet are simply created.
    pub fn replace(&self, batch: &[NewEntity]) -> Result<()> {
        self.replace_watched(batch, &crate::progress::Unwatched)
    }

    /// [`Workspace::replace`], telling `progress` of each entity written (stage "writing").
    pub fn replace_watched(
        &self,
        batch: &[NewEntity],
        progress: &dyn crate::progress::Progress,
    ) -> Result<()> {
        let lock = self.lock()?;
        self.replace_locked(&lock, batch, progress)
    }

    /// `replace` for a caller that already holds the workspace lock (a read-compare-write
    /// such as `apply`, which must not let another process change the workspace between).
    pub(crate) fn replace_locked(
        &self,
        _lock: &WorkspaceLock,
        batch: &[NewEntity],
        progress: &dyn crate::progress::Progress,
    ) -> Result<()> {
        progress.stage("writing", crate::progress::total(batch.len()));
        let dirs = BatchDirs::open(&self.root)?;
        // Every entity is tried: collecting into a `Result` would let rayon stop at the first
        // failure and leave the rest of the batch unwritten (and landed ones unindexed).
        let outcomes: Vec<Result<Option<Record>>> = batch
            .par_iter()
            .map(|e| {
                let written = self.swap_in(&dirs, e);
                progress.done(1);
                written
            })
            .collect();
        let mut landed = Vec::with_capacity(batch.len());
        let mut first_failure = None;
        for o in outcomes {
            match o {
                Ok(record) => landed.extend(record),
                Err(e) => {
                    first_failure.get_or_insert(e);
                }
            }
        }
        index::merge(&self.root, landed, &[]);
        sync_fs(&self.root)?;
        first_failure.map_or(Ok(()), Err)
    }

    /// Stage one entity and swap it with what is there under its name (or rename it into
    /// place when nothing is: tried first, as in a new workspace nothing is); its index record.
    fn swap_in(&self, dirs: &BatchDirs, e: &NewEntity) -> Result<Option<Record>> {
        let name = self.resolve(&e.meta.name)?;
        let name = name.as_str();
        let staged = dirs.stage(e)?;
        // The directory keeps its inode through the rename: the record's stamp.
        let landed = dirs.stamp(&staged).map(|stamp| Record {
            stamp,
            meta: e.meta.clone(),
        });
        let occupied = |err: &io::Error| {
            err.kind() == io::ErrorKind::AlreadyExists
                || err.raw_os_error() == Some(rustix::io::Errno::NOTEMPTY.raw_os_error())
        };
        let failed = match dirs.rename_new(&staged, name) {
            Ok(()) => return Ok(landed),
            Err(err) if !occupied(&err) => {
                io_error("renaming into place", &dirs.entity_path(name), err)
            }
            // Swapping with a link would put the entity outside the workspace.
            Err(_) => match dirs.real_entity_dir(name) {
                Err(refused) => refused,
                Ok(()) => match dirs.exchange(&staged, name) {
                    Ok(()) => {
                        // `staged` now holds the old entity.
                        dirs.discard(&staged);
                        return Ok(landed);
                    }
                    // Removed in the meantime: nothing to swap with.
                    Err(rustix::io::Errno::NOENT) => match dirs.rename_new(&staged, name) {
                        Ok(()) => return Ok(landed),
                        Err(err) => io_error("renaming into place", &dirs.entity_path(name), err),
                    },
                    Err(err) => {
                        io_error("swapping into place", &dirs.entity_path(name), err.into())
                    }
                },
            },
        };
        dirs.discard(&staged);
        Err(failed)
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
        let handle = File::open(&staged).ok();
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &staged,
            rustix::fs::CWD,
            &entity.dir,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| io_error("swapping into place", &entity.dir, e.into()))?;
        let _ = fs::remove_dir_all(&staged);
        index::merge(
            &self.root,
            landed_record(handle, &meta).into_iter().collect(),
            &[],
        );
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
        index::merge(&self.root, Vec::new(), &[name.to_string()]);
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

/// The index record of an entity just renamed into place: the stamp is read through a handle
/// opened on the staged directory, so it is that directory's even if another process has
/// swapped the name since (the record then fails to match and is re-read, never trusted).
fn landed_record(handle: Option<File>, meta: &Meta) -> Option<Record> {
    let md = handle?.metadata().ok()?;
    Some(Record {
        stamp: Stamp::of(&md),
        meta: meta.clone(),
    })
}

/// One entry of `entities/`: what `getdents` says without opening it.
struct Listing {
    name: String,
    /// The name's first bytes as a number that sorts as they do (see [`name_head`]).
    head: u128,
    ino: u64,
    /// From the entry's type (`d_type`): a link or file is never taken from the index.
    is_dir: bool,
}

/// The first 16 bytes of `name`, zero-padded, big-endian: heads order as the names do
/// wherever they differ (no name holds a NUL, so a shorter name's padding sorts first).
fn name_head(name: &str) -> u128 {
    let mut b = [0u8; 16];
    let n = name.len().min(16);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    u128::from_be_bytes(b)
}

/// One entity as `list` found it.
enum Listed {
    /// Its index record still matches its directory.
    Indexed(Meta),
    /// Read from its meta.toml; the record to write back.
    Read(Record),
    /// Unreadable; `had_record` when the index holds one to drop.
    Damaged {
        damage: Damaged,
        name: String,
        had_record: bool,
    },
}

/// Two lists sorted by name, as one.
fn merge_by_name(a: Vec<Meta>, b: Vec<Meta>) -> Vec<Meta> {
    if b.is_empty() {
        return a;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let mut b = b.into_iter().peekable();
    for m in a {
        while let Some(earlier) = b.next_if(|x| x.name < m.name) {
            out.push(earlier);
        }
        out.push(m);
    }
    out.extend(b);
    out
}

/// Take entity `name`'s meta from its index record when the directory's stamp still matches,
/// else read its meta.toml (stamping the directory first, so a change made while reading
/// leaves a record that no longer matches).
fn list_one(entities: &Path, entry: Listing, record: Option<Record>) -> Listed {
    let Listing {
        name, ino, is_dir, ..
    } = entry;
    let record = match record {
        Some(r) if is_dir && r.stamp.ino == ino => return Listed::Indexed(r.meta),
        other => other,
    };
    let dir = entities.join(&name);
    let had_record = record.is_some();
    let damaged = |path: PathBuf, problem: String| Listed::Damaged {
        damage: Damaged { path, problem },
        name: name.clone(),
        had_record,
    };
    let stamp = match real_dir(&dir) {
        Ok(md) => Stamp::of(&md),
        Err(e) => {
            let problem = match e {
                Error::Damaged { what, .. } => what.to_string(),
                other => other.to_string(),
            };
            return damaged(dir, problem);
        }
    };
    if let Some(r) = record.filter(|r| r.stamp == stamp) {
        return Listed::Indexed(r.meta);
    }
    let p = dir.join(META_FILE);
    match read_meta(&p) {
        Err(e) => damaged(p, e.to_string()),
        Ok(m) if m.name != name => damaged(
            dir,
            format!(
                "meta.toml names \"{}\" but the directory is \"{name}\"; rename one to match",
                m.name
            ),
        ),
        Ok(meta) => Listed::Read(Record { stamp, meta }),
    }
}

/// Read a meta.toml.
pub(crate) fn read_meta(path: &Path) -> Result<Meta> {
    let text = read_own_file(path).map_err(|e| match e {
        Error::Io { .. } if path.symlink_metadata().is_err() => Error::Damaged {
            path: path.to_path_buf(),
            what: Damage::Missing,
        },
        other => other,
    })?;
    toml::from_str(&text).map_err(|e| Error::Damaged {
        path: path.to_path_buf(),
        what: Damage::InvalidRecord { error: Box::new(e) },
    })
}

#[cfg(test)]
mod tests {
    use super::name_head;

    /// Sorting by (head, name) is sorting by name: shorter and longer than 16 bytes, equal
    /// heads, prefixes of each other, bytes above 0x7f.
    #[test]
    fn name_heads_sort_as_the_names_do() {
        let names = [
            "a",
            "ab",
            "ab-",
            "abcdefghijklmnop",
            "abcdefghijklmnopq",
            "abcdefghijklmnopa",
            "abcdefghijklmno",
            "d-0000001",
            "d-0000010",
            "d-000001",
            "zé",
            "z~",
            "Z",
            "0",
        ];
        for a in names {
            for b in names {
                let by_head = name_head(a).cmp(&name_head(b)).then_with(|| a.cmp(b));
                assert_eq!(by_head, a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }
}
