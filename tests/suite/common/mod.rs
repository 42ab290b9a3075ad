//! What the export, import and lifecycle tests share: a temporary workspace driven through the
//! real binary, and the `openssl` CLI as the independent checker.
#![allow(dead_code)] // each area uses a different part

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

pub struct Ws {
    pub dir: TempDir,
    pub name: &'static str,
}

impl Ws {
    pub fn new() -> Ws {
        Ws {
            dir: tempfile::tempdir().unwrap(),
            name: "ws",
        }
    }
    /// A second workspace inside this one's temp dir (the "company" side of an import).
    pub fn other(&self) -> Ws {
        Ws {
            dir: tempfile::tempdir_in(self.dir.path()).unwrap(),
            name: "ws2",
        }
    }
    pub fn ws(&self) -> PathBuf {
        self.path(self.name)
    }
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("chainsmith").unwrap();
        c.env("CHAINSMITH_WORKSPACE", self.ws())
            .env_remove("CHAINSMITH_PFX_PASSWORD")
            .current_dir(self.dir.path());
        c
    }
    /// Run, expect success, return standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "chainsmith {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// Run, expect success, return standard output followed by standard error (warnings).
    pub fn ok_all(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "chainsmith {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
    /// Run, expect failure without a panic, return standard error.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            !out.status.success(),
            "chainsmith {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains("panicked"), "{err}");
        err
    }
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }
    /// root "acme" → intermediate "inter" → device ID
    pub fn chain(&self, id: &str) {
        self.ok(&["new", "root", "acme"]);
        self.ok(&["new", "intermediate", "inter", "--issuer", "acme"]);
        self.ok(&["new", "device", id, "--issuer", "inter"]);
    }
}

/// Run the openssl CLI in `dir`: success, and stdout + stderr.
pub fn openssl(args: &[&str], dir: &Path) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is installed");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A P-256 key and a CSR for `CN=cn` made by the openssl CLI in `dir`, as a device makes
/// them, with `extra` arguments for `openssl req` (e.g. `-addext subjectAltName=…`):
/// `(cn.key, cn.csr)`, paths in `dir`.
pub fn openssl_csr(
    dir: &Path,
    cn: &str,
    extra: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (key, csr) = (format!("{cn}.key"), format!("{cn}.csr"));
    let subj = format!("/CN={cn}");
    let mut args = vec![
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        &subj,
        "-keyout",
        &key,
        "-out",
        &csr,
    ];
    args.extend_from_slice(extra);
    let (ok, out) = openssl(&args, dir);
    assert!(ok, "openssl req: {out}");
    (dir.join(key), dir.join(csr))
}

/// The whole TUI drawn at `width`×`height`, every cell's symbol in a row (no line breaks):
/// what a test searches for a phrase the screen shows.
pub fn screen_of(app: &chainsmith::tui::App, width: u16, height: u16) -> String {
    let backend = ratatui::backend::TestBackend::new(width, height);
    let mut term = ratatui::Terminal::new(backend).unwrap();
    term.draw(|f| chainsmith::tui::ui::render(f, app)).unwrap();
    term.backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect()
}

/// The whole TUI drawn at `width`×`height` as lines, trailing blanks cut: for snapshots and
/// for checks on one row (the footer, a step's line).
pub fn screen_lines_of(app: &chainsmith::tui::App, width: u16, height: u16) -> String {
    let backend = ratatui::backend::TestBackend::new(width, height);
    let mut term = ratatui::Terminal::new(backend).unwrap();
    term.draw(|f| chainsmith::tui::ui::render(f, app)).unwrap();
    let buf = term.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let line: String = (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
