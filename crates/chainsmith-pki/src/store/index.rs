//! The workspace index: one file, `WORKSPACE/index`, holding every entity's meta.toml as `list`
//! and the TUI's tree need it, so that they open one file instead of 100,000 directories
//! (1.1 s warm and 17 s cold at 100,000 entities before it; see `benches/list.rs`).
//!
//! Git's index is the model. Each record carries the inode number of the entity directory it
//! summarises, the file ends in a SHA-256 of everything before it, and it is never the source
//! of truth: every command that acts on an entity reads the entity's own files
//! ([`super::Workspace::load`]); only the listing reads the index.
//!
//! [`super::Workspace::list`] lists `entities/` (names and inode numbers come from the same
//! `getdents`, no file or directory is opened) and takes a record only when its inode number
//! equals the directory's; every other entity's meta.toml is read as before and its record
//! rewritten. So what is noticed, whoever made the change:
//! - an entity directory added, removed, renamed or replaced: chainsmith's own writes always
//!   swap in a new directory (a new inode), and so do `mv` and `cp -r` of a whole entity;
//! - a damaged index (checksum), one of another format version, or one larger than
//!   [`MAX_INDEX_BYTES`]: ignored and rebuilt, never fatal.
//!
//! Not noticed: a change inside an entity directory that keeps the directory (meta.toml
//! edited or replaced by hand), and a directory deleted and another made under the same name
//! that happens to get the freed inode number. Seeing those needs a `stat` per entity
//! directory, and cold that is a read of 100,000 scattered inodes: measured on this machine,
//! 10.8 s for the stats alone against 1.4 s for the listing (`benches/list.rs`), the cold
//! time this index exists to remove. It is enough because the index feeds only what is
//! displayed: `show`, `export`, `renew`, `revoke`, the hub and the rest read the entity's own
//! files, and any change chainsmith makes to an entity gives it a new directory.
//!
//! Writers ([`super::Workspace`]'s create, replace, update_meta and remove, and `list` when it
//! refreshes records) merge their records into the file as it is when they hold
//! `WORKSPACE/.index.lock`, so two processes writing at once never drop each other's records;
//! and since a record is trusted only while its inode matches, a record that is missing or
//! old only costs the next `list` one meta.toml read, never a wrong line.

use super::Meta;
use super::meta::{Kind, Revocation, Slot};
use crate::pki::{KeyAlg, Target};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use time::{OffsetDateTime, UtcOffset};

/// The index file, in the workspace root.
pub const INDEX_FILE: &str = "index";
/// Taken while the index is read, merged and replaced.
const INDEX_LOCK: &str = ".index.lock";
/// The first bytes of an index; the version follows.
const MAGIC: &[u8; 16] = b"chainsmith-index";
/// The index's format; an index of another version is rebuilt, not read.
const VERSION: u32 = 1;
const CHECKSUM_LEN: usize = 32;
/// The largest index read or written: 512 MiB, about 1.8 million entities at the ~290 bytes a
/// P-256 device's record takes (100,000 devices: 29 MB). No cloud limit applies: an IoT Hub
/// holds up to a million devices per unit, and a workspace beyond this lists by reading
/// every directory, as before the index.
pub const MAX_INDEX_BYTES: u64 = 512 << 20;

/// What identifies an entity directory: its inode number. Every swap chainsmith makes puts a
/// new directory (a new inode) under the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) ino: u64,
}

impl Stamp {
    pub(crate) fn of(md: &fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt as _;
        Stamp { ino: md.ino() }
    }
}

/// One entity's record: its directory's stamp and its meta.toml.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub(crate) stamp: Stamp,
    pub(crate) meta: Meta,
}

fn index_path(root: &Path) -> PathBuf {
    root.join(INDEX_FILE)
}

/// The records of the index in `root`, sorted by name; None when there is no usable index
/// (missing, unreadable, too large, another version, damaged).
pub(crate) fn read(root: &Path) -> Option<Vec<Record>> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(index_path(root))
        .ok()?;
    let len = f.metadata().ok()?.len();
    if len > MAX_INDEX_BYTES {
        return None;
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.by_ref()
        .take(MAX_INDEX_BYTES)
        .read_to_end(&mut bytes)
        .ok()?;
    decode(&bytes)
}

/// Merge `upserts` (which win over records of the same name) into the index as it is now,
/// drop the records named in `removals`, and replace the file atomically. Best effort: the
/// index only saves time, so a failure to write it is not the command's failure.
pub(crate) fn merge(root: &Path, mut upserts: Vec<Record>, removals: &[String]) {
    if upserts.is_empty() && removals.is_empty() {
        return;
    }
    let Ok(_lock) = lock(root) else {
        return;
    };
    upserts.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
    upserts.dedup_by(|later, earlier| later.meta.name == earlier.meta.name);
    let current = read(root).unwrap_or_default();
    let mut merged = Vec::with_capacity(current.len() + upserts.len());
    let mut ups = upserts.into_iter().peekable();
    for old in current {
        while let Some(u) = ups.next_if(|u| u.meta.name < old.meta.name) {
            merged.push(u);
        }
        match ups.next_if(|u| u.meta.name == old.meta.name) {
            Some(u) => merged.push(u),
            None => merged.push(old),
        }
    }
    merged.extend(ups);
    if !removals.is_empty() {
        let gone: std::collections::HashSet<&str> = removals.iter().map(String::as_str).collect();
        merged.retain(|r| !gone.contains(r.meta.name.as_str()));
    }
    let bytes = encode(&merged);
    if bytes.len() as u64 > MAX_INDEX_BYTES {
        let _ = fs::remove_file(index_path(root));
        return;
    }
    // No fsync of its own: the command's one `syncfs` covers it, and an index torn by a
    // crash fails its checksum and is rebuilt.
    let _ = write_replacing(&index_path(root), &bytes);
}

/// Write `bytes` to a new file beside `path` and rename it over `path`.
fn write_replacing(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let n = super::files::STAGE_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{INDEX_FILE}.{}-{n}.tmp", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| io::Write::write_all(&mut f, bytes))
        .and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// The index lock. Another writer holds it for one read, merge and write (tens of ms at
/// 100,000 entities); after [`LOCK_WAIT`] the write is skipped, which costs only time.
fn lock(root: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(root.join(INDEX_LOCK))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(f),
            Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// How long a writer waits for the index lock: the workspace lock's 5 s.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn encode(records: &[Record]) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64 + records.len() * 256));
    w.0.extend_from_slice(MAGIC);
    w.u32(VERSION);
    w.u64(records.len() as u64);
    for r in records {
        w.u64(r.stamp.ino);
        w.meta(&r.meta);
    }
    let sum = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &w.0);
    w.0.extend_from_slice(sum.as_ref());
    w.0
}

fn decode(bytes: &[u8]) -> Option<Vec<Record>> {
    let body_len = bytes.len().checked_sub(CHECKSUM_LEN)?;
    let (body, sum) = bytes.split_at(body_len);
    if aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body).as_ref() != sum {
        return None;
    }
    let mut r = Reader(body);
    if r.take(MAGIC.len())? != MAGIC || r.u32()? != VERSION {
        return None;
    }
    let count = r.u64()?;
    // Each record takes well over 16 bytes: a count beyond that is damage, not a reason to
    // reserve memory.
    if count > body.len() as u64 / 16 {
        return None;
    }
    let mut records = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let stamp = Stamp { ino: r.u64()? };
        records.push(Record {
            stamp,
            meta: r.meta()?,
        });
    }
    // Sorted by name, as written: a merge relies on it.
    let sorted = records.windows(2).all(|w| w[0].meta.name < w[1].meta.name);
    (r.0.is_empty() && sorted).then_some(records)
}

/// The index's encoding: little-endian integers, strings as a u32 length and UTF-8, an
/// optional value as a 0/1 byte and the value, an enum as its position in the type's list.
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn opt<T>(&mut self, v: Option<T>, put: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                put(self, v);
            }
        }
    }
    fn time(&mut self, t: OffsetDateTime) {
        self.0
            .extend_from_slice(&t.unix_timestamp_nanos().to_le_bytes());
        self.u32(t.offset().whole_seconds() as u32);
    }
    fn meta(&mut self, m: &Meta) {
        self.u32(m.format);
        self.str(&m.name);
        self.u8(m.kind as u8);
        self.str(&m.cn);
        self.str(&m.subject);
        self.opt(m.issuer.as_deref(), Self::str);
        self.opt(m.key_alg, |w, a| w.u8(position(&KeyAlg::ALL, &a)));
        self.str(&m.serial);
        self.time(m.not_before);
        self.time(m.not_after);
        self.str(&m.sha1);
        self.str(&m.sha256);
        self.opt(m.pathlen, Self::u32);
        self.opt(m.target, |w, t| w.u8(position(&Target::ALL, &t)));
        self.u8(u8::from(m.has_key));
        self.u8(u8::from(m.self_signed));
        self.opt(m.slot, |w, s| w.u8(s as u8));
        self.opt(m.code.as_deref(), Self::str);
        self.opt(m.revoked.as_ref(), |w, r| {
            w.time(r.at);
            w.str(&r.reason);
        });
        self.time(m.created);
        self.opt(m.spec_hash.as_deref(), Self::str);
        self.opt(m.fixture.as_deref(), Self::str);
    }
}

fn position<T: PartialEq>(all: &[T], v: &T) -> u8 {
    all.iter().position(|a| a == v).unwrap_or(usize::MAX) as u8
}

const KINDS: [Kind; 4] = [
    Kind::Root,
    Kind::Intermediate,
    Kind::Device,
    Kind::Verification,
];
const SLOTS: [Slot; 2] = [Slot::Primary, Slot::Secondary];

/// Reads what [`Writer`] wrote; None on anything short or out of range (a damaged index).
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn bool(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn opt<T>(&mut self, get: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.bool()? {
            get(self).map(Some)
        } else {
            Some(None)
        }
    }
    fn pick<T: Copy>(&mut self, all: &[T]) -> Option<T> {
        all.get(usize::from(self.u8()?)).copied()
    }
    fn time(&mut self) -> Option<OffsetDateTime> {
        let nanos = i128::from_le_bytes(self.array()?);
        let offset = UtcOffset::from_whole_seconds(self.u32()? as i32).ok()?;
        Some(
            OffsetDateTime::from_unix_timestamp_nanos(nanos)
                .ok()?
                .to_offset(offset),
        )
    }
    fn meta(&mut self) -> Option<Meta> {
        Some(Meta {
            format: self.u32()?,
            name: self.str()?,
            kind: self.pick(&KINDS)?,
            cn: self.str()?,
            subject: self.str()?,
            issuer: self.opt(Self::str)?,
            key_alg: self.opt(|r| r.pick(&KeyAlg::ALL))?,
            serial: self.str()?,
            not_before: self.time()?,
            not_after: self.time()?,
            sha1: self.str()?,
            sha256: self.str()?,
            pathlen: self.opt(Self::u32)?,
            target: self.opt(|r| r.pick(&Target::ALL))?,
            has_key: self.bool()?,
            self_signed: self.bool()?,
            slot: self.opt(|r| r.pick(&SLOTS))?,
            code: self.opt(Self::str)?,
            revoked: self.opt(|r| {
                Some(Revocation {
                    at: r.time()?,
                    reason: r.str()?,
                })
            })?,
            created: self.time()?,
            spec_hash: self.opt(Self::str)?,
            fixture: self.opt(Self::str)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str) -> Meta {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        Meta {
            format: 1,
            name: name.into(),
            kind: Kind::Device,
            cn: "CN with ünïcode".into(),
            subject: "CN=x, O=y".into(),
            issuer: Some("root".into()),
            key_alg: Some(KeyAlg::EcP384),
            serial: "0A".into(),
            not_before: t,
            not_after: t.to_offset(UtcOffset::from_hms(2, 0, 0).unwrap()),
            sha1: "AB".into(),
            sha256: "CD".into(),
            pathlen: Some(0),
            target: Some(Target::Central),
            has_key: true,
            self_signed: false,
            slot: Some(Slot::Secondary),
            code: None,
            revoked: Some(Revocation {
                at: t,
                reason: "keyCompromise".into(),
            }),
            created: t,
            spec_hash: Some("h".into()),
            fixture: None,
        }
    }

    fn record(name: &str) -> Record {
        Record {
            stamp: Stamp { ino: 7 },
            meta: meta(name),
        }
    }

    #[test]
    fn a_record_comes_back_as_written() {
        let bytes = encode(&[record("a"), record("b")]);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].meta, meta("b"));
        assert_eq!(back[1].stamp, record("b").stamp);
        assert_eq!(
            back[1].meta.not_after.offset(),
            meta("b").not_after.offset()
        );
    }

    #[test]
    fn any_flipped_or_missing_byte_makes_the_index_unusable() {
        let bytes = encode(&[record("a")]);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_none(), "flipped byte {i}");
            assert!(decode(&bytes[..i]).is_none(), "cut at {i}");
        }
    }

    #[test]
    fn another_version_is_not_read() {
        let mut w = Writer(MAGIC.to_vec());
        w.u32(VERSION + 1);
        w.u64(0);
        let sum = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &w.0);
        w.0.extend_from_slice(sum.as_ref());
        assert!(decode(&w.0).is_none());
    }
}
