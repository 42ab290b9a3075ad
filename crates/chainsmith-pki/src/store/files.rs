//! Files on disk: bounded reads of what a user names, entity files that must not be links,
//! private directories, new files with their mode from the first byte, atomic replacement,
//! the refuse-to-overwrite rule for a user's files, and the one `syncfs` per batch.

use super::{Damage, Error, Result, io_error};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Numbers staging directories and temp files, so two writers in one process never collide.
pub(super) static STAGE_COUNTER: AtomicU64 = AtomicU64::new(0);

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

pub(crate) const LINK_HINT: &str = "entity files must be real files and directories inside the workspace, not links to elsewhere; remove the link";

/// Check that an entity directory is a directory and not a symbolic link to one; its
/// metadata (the index stamps it).
pub(super) fn real_dir(dir: &Path) -> Result<fs::Metadata> {
    let md = dir
        .symlink_metadata()
        .map_err(|e| io_error("reading", dir, e))?;
    if md.file_type().is_symlink() {
        return Err(Error::Damaged {
            path: dir.to_path_buf(),
            what: Damage::SymbolicLink,
        });
    }
    if !md.is_dir() {
        return Err(Error::Damaged {
            path: dir.to_path_buf(),
            what: Damage::NotADirectory,
        });
    }
    Ok(md)
}

/// Read a file of an entity, refusing a symbolic link in its place (`O_NOFOLLOW`), so a
/// planted link cannot make the workspace read or sign with a key from elsewhere.
pub(super) fn read_own_file(path: &Path) -> Result<String> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                Error::Damaged {
                    path: path.to_path_buf(),
                    what: Damage::SymbolicLink,
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

pub(super) fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    for e in fs::read_dir(from).map_err(|e| io_error("reading", from, e))? {
        let e = e.map_err(|e| io_error("reading", from, e))?;
        let src = e.path();
        let dst = to.join(e.file_name());
        let md = e.metadata().map_err(|err| io_error("reading", &src, err))?;
        if md.file_type().is_symlink() {
            return Err(Error::Damaged {
                path: src,
                what: Damage::SymbolicLink,
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
