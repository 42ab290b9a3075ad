//! `chainsmith list`, `list --json` and the TUI's first tree frame on large workspaces, warm
//! (files in the page cache) and cold (as after a reboot), at each size in
//! CHAINSMITH_BENCH_LIST_SIZES (default "100000,200000" devices under one root).
//!
//! Run: `cargo bench --bench list`. The workspace grows in place from one size to the next and
//! is kept in `target/list-bench-ws` (or CHAINSMITH_BENCH_WS) for the next run. Set
//! CHAINSMITH_BENCH_BEFORE to the path of another chainsmith binary (e.g. one built before the
//! workspace index) to time its `list` in the same run, beside this build's.
//!
//! Cold, in the order tried: `echo 3 > /proc/sys/vm/drop_caches`; when that is refused (a
//! container) and the workspace lies on its own mount of a loop device, unmount and mount it
//! again, which empties the page, inode and directory caches of that file system (put the
//! workspace there with the commands in the output of a run without it); else
//! `posix_fadvise(DONTNEED)` on every file of the workspace, which drops file contents only
//! (directories and inodes stay cached, so that figure is a lower bound). The output names the
//! method used.

#![allow(clippy::unwrap_used)] // a bench that cannot set up should stop loudly
#![allow(clippy::too_many_lines)] // a bench reads top to bottom; the 150-line limit is for the product

use chainsmith::store::{INDEX_FILE, Workspace};
use chainsmith::tui::theme::Theme;
use chainsmith::tui::{App, perform_each, ui};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const AFTER: &str = env!("CARGO_BIN_EXE_chainsmith");

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// One run of `bin` with `args` on the workspace, its output thrown away as a pipe to a
/// terminal pager would not be: what is timed is reading and formatting.
fn run(bin: &str, ws: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let status = Command::new(bin)
        .env("CHAINSMITH_WORKSPACE", ws)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{bin} {args:?}");
    t.elapsed()
}

fn best_of_3(f: &mut dyn FnMut() -> Duration) -> Duration {
    (0..3).map(|_| f()).min().unwrap()
}

/// Open the TUI's app on the workspace and time until the tree is on a (test) screen.
fn tui_first_tree(dir: &Path) -> (Duration, usize) {
    let size = (120u16, 40u16);
    let mut term = Terminal::new(TestBackend::new(size.0, size.1)).unwrap();
    let t = Instant::now();
    let ws = Workspace::open(dir).unwrap();
    let mut app = App::new(
        ws.root().to_path_buf(),
        Theme::plain(),
        OffsetDateTime::now_utc(),
        size,
    );
    let first = app.start().unwrap();
    term.draw(|f| ui::render(f, &app)).unwrap();
    let mut listed = Vec::new();
    perform_each(&ws, first, &mut |a| listed.push(a));
    for a in listed {
        app.update(a);
    }
    term.draw(|f| ui::render(f, &app)).unwrap();
    (t.elapsed(), app.pki.rows.len())
}

/// Make every file of the workspace cold; says how.
fn drop_caches(ws: &Path) -> &'static str {
    let _ = Command::new("sync").status();
    if std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok() {
        return "drop_caches";
    }
    if let Some((dev, mount_point)) = loop_mount_of(ws) {
        let umount = Command::new("umount").arg(&mount_point).status().unwrap();
        assert!(umount.success(), "umount {}", mount_point.display());
        let mount = Command::new("mount")
            .arg(&dev)
            .arg(&mount_point)
            .status()
            .unwrap();
        assert!(mount.success(), "mount {dev} {}", mount_point.display());
        return "unmount + mount of the workspace's loop device";
    }
    fadvise_tree(ws);
    "posix_fadvise(DONTNEED) on every file (directories and inodes stay cached)"
}

/// The loop device and mount point the workspace lies on, when it has its own.
fn loop_mount_of(ws: &Path) -> Option<(String, PathBuf)> {
    let ws = ws.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), PathBuf::from(f.next()?)))
        })
        .filter(|(dev, mp)| dev.starts_with("/dev/loop") && ws.starts_with(mp))
        .max_by_key(|(_, mp)| mp.as_os_str().len())
}

fn fadvise_tree(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            fadvise_tree(&e.path());
        } else if ft.is_file() {
            if let Ok(f) = std::fs::File::open(e.path()) {
                let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
            }
        }
    }
}

/// Add devices under `bench-root` until the workspace holds `n` of them; false (and nothing
/// done) when it holds more already, as a workspace kept from a larger run does: the figures
/// would be the larger size's under this size's label.
fn grow(dir: &Path, n: usize) -> bool {
    let have = Workspace::open_or_create(dir)
        .unwrap()
        .names()
        .unwrap()
        .len();
    if have == 0 {
        run(AFTER, dir, &["new", "root", "bench-root"]);
    }
    let mut made = have.saturating_sub(1);
    if made > n {
        println!(
            "\n{} holds {made} devices, more than {n}: that size is skipped (remove the directory, \
             or set CHAINSMITH_BENCH_WS, to measure it)",
            dir.display()
        );
        return false;
    }
    let t = Instant::now();
    while made < n {
        let k = (n - made).min(50_000);
        let ids = format!("d-{{{:07}..{:07}}}", made + 1, made + k);
        run(
            AFTER,
            dir,
            &["new", "device", &ids, "--issuer", "bench-root"],
        );
        made += k;
    }
    if t.elapsed() > Duration::from_secs(1) {
        println!(
            "grew the workspace to root + {n} devices in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    true
}

fn main() {
    let sizes: Vec<usize> = std::env::var("CHAINSMITH_BENCH_LIST_SIZES")
        .unwrap_or_else(|_| "100000,200000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("CHAINSMITH_BENCH_LIST_SIZES: numbers, comma-separated")
        })
        .collect();
    let dir = std::env::var_os("CHAINSMITH_BENCH_WS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/list-bench-ws"));
    let before = std::env::var("CHAINSMITH_BENCH_BEFORE").ok();
    if loop_mount_of(dir.parent().unwrap_or(&dir)).is_none() {
        println!(
            "(for true cold figures without drop_caches: truncate -s 8G IMG; mkfs.ext4 -q IMG; \
             mount -o loop IMG MNT; CHAINSMITH_BENCH_WS=MNT/ws)"
        );
    }
    let mut bins: Vec<(&str, &str)> = Vec::new();
    if let Some(b) = before.as_deref() {
        bins.push(("before", b));
    }
    bins.push(("this build", AFTER));
    for &n in &sizes {
        if !grow(&dir, n) {
            continue;
        }
        let entities = n + 1;
        let index_bytes = std::fs::metadata(dir.join(INDEX_FILE)).map_or(0, |m| m.len());
        println!(
            "\n{entities} entities ({}), index {:.1} MB",
            dir.display(),
            index_bytes as f64 / 1e6
        );
        for (label, bin) in &bins {
            for args in [&["list"][..], &["list", "--json"][..]] {
                run(bin, &dir, args);
                let warm = best_of_3(&mut || run(bin, &dir, args));
                let how = drop_caches(&dir);
                let cold = run(bin, &dir, args);
                println!(
                    "{label:<10} {:<12} warm {} ({:.2} µs/entity), cold {}   [cold: {how}]",
                    args.join(" "),
                    secs(warm),
                    warm.as_secs_f64() * 1e6 / entities as f64,
                    secs(cold),
                );
            }
        }
        tui_first_tree(&dir);
        let (warm, rows) = (0..3).map(|_| tui_first_tree(&dir)).min().unwrap();
        let how = drop_caches(&dir);
        let (cold, _) = tui_first_tree(&dir);
        println!(
            "this build TUI open → tree of {rows} rows on screen: warm {}, cold {}   [cold: {how}]",
            secs(warm),
            secs(cold)
        );
        // Without the index (removed first), as every read was before it: the full read,
        // which then writes the index again.
        std::fs::remove_file(dir.join(INDEX_FILE)).unwrap();
        let (rebuild, _) = tui_first_tree(&dir);
        println!(
            "this build TUI with the index removed (full read + index rebuilt), warm: {}",
            secs(rebuild)
        );
    }
}
