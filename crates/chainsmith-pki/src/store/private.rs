//! The checks that a workspace is ours alone: its directories and every ancestor.

use super::{Error, Result, io_error};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Refuse a workspace directory that is not ours alone, the way ssh treats `~/.ssh`: owned
/// by another user (root excepted), writable by group or others, or (below the root) a link.
/// The root may be a link (a workspace kept elsewhere: `is_root`); the directories inside may not.
pub(super) fn check_private(dir: &Path, is_root: bool) -> Result<()> {
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
pub(super) fn check_ancestors(root: &Path) -> Result<()> {
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
