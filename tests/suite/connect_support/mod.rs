//! Shared by the connect tests: a workspace with a chain made by the real binary, and a real
//! Mosquitto broker on 127.0.0.1 with mutual TLS, started and stopped by the test.
#![allow(dead_code)] // each area uses a different part

use assert_cmd::Command;
use chainsmith::pki::issue::{self, San};
use chainsmith::pki::{IssueSpec, KeyAlg, Profile, Validity, subject};
use chainsmith::store::Workspace;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub fn bin(ws: &Path) -> Command {
    let mut c = Command::cargo_bin("chainsmith").expect("binary");
    c.arg("--workspace")
        .arg(ws)
        .env_remove("CHAINSMITH_WORKSPACE");
    c
}

pub fn ok(ws: &Path, args: &[&str]) {
    let out = bin(ws).args(args).output().expect("run");
    assert!(
        out.status.success(),
        "chainsmith {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Root "Test Root" -> intermediate "Line 2" -> device "sensor-7".
pub fn chain_workspace(dir: &Path) -> PathBuf {
    let ws = dir.join("ws");
    ok(&ws, &["new", "root", "Test Root"]);
    ok(
        &ws,
        &["new", "intermediate", "Line 2", "--issuer", "Test Root"],
    );
    ok(&ws, &["new", "device", "sensor-7", "--issuer", "Line 2"]);
    ws
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A server certificate for 127.0.0.1 (IP SAN only) issued by workspace CA `ca`; returns
/// (cert PEM path, key PEM path).
pub fn server_cert(ws: &Path, ca: &str, dir: &Path) -> (PathBuf, PathBuf) {
    let w = Workspace::open(ws).expect("workspace");
    let ca = chainsmith::ops::load_ca(&w, ca).expect("ca");
    let spec = IssueSpec {
        subject: subject::cn_only("test broker").expect("cn"),
        profile: Profile::Server {
            sans: vec![San::Ip("127.0.0.1".parse().expect("ip"))],
        },
        validity: Validity::days(30),
    };
    let issued = issue::issue(&spec, KeyAlg::EcP256, Some(&ca)).expect("issue");
    let cert = dir.join("server.pem");
    let key = dir.join("server.key");
    std::fs::write(&cert, issued.cert_pem).expect("write");
    chainsmith::store::write_new(&key, issued.key_pem.expect("key").as_bytes(), 0o600)
        .expect("write key");
    (cert, key)
}

pub struct Mosquitto {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn mosquitto_available() -> bool {
    std::process::Command::new("mosquitto")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Start Mosquitto with mutual TLS: trusts `cafile` for clients, presents the server cert.
pub fn mosquitto(dir: &Path, cafile: &Path, cert: &Path, key: &Path) -> Mosquitto {
    mosquitto_with(dir, cafile, cert, key, "")
}

/// Same, with extra lines for the listener (e.g. `tls_version tlsv1.2`).
pub fn mosquitto_with(
    dir: &Path,
    cafile: &Path,
    cert: &Path,
    key: &Path,
    extra: &str,
) -> Mosquitto {
    assert!(
        mosquitto_available(),
        "mosquitto is not installed (apt-get install mosquitto); the connect tests need a real broker"
    );
    let port = free_port();
    let conf = dir.join(format!("mosquitto-{port}.conf"));
    let root = if rustix::process::geteuid().is_root() {
        "user root\n"
    } else {
        ""
    };
    std::fs::write(
        &conf,
        format!(
            "{root}persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\nlistener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\nuse_identity_as_username true\nallow_anonymous false\nset_tcp_nodelay true\n{extra}",
            cafile.display(),
            cert.display(),
            key.display()
        ),
    )
    .expect("conf");
    let log = std::fs::File::create(dir.join(format!("mosquitto-{port}.log"))).expect("log");
    let child = std::process::Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start mosquitto");
    let m = Mosquitto {
        child,
        port,
        dir: dir.to_path_buf(),
    };
    let start = Instant::now();
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "mosquitto did not listen on {port}: {}",
            std::fs::read_to_string(dir.join(format!("mosquitto-{port}.log"))).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    m
}

/// The JSON event lines of `connect --json`.
pub fn events(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// Events as compact JSON, one per line, for a failure message: a log viewer that keeps only
/// part of a long message still shows whole events (the last one says what failed).
pub fn shown(events: &[serde_json::Value]) -> String {
    events
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn find<'a>(events: &'a [serde_json::Value], kind: &str) -> Option<&'a serde_json::Value> {
    events.iter().find(|e| e["event"] == kind)
}

/// Test Root -> Line 2 -> sensor-7 in a new workspace, Test Root uploaded to the local hub and
/// verified, sensor-7 registered (CA-authenticated): the starting point of the local-hub tests.
pub fn setup() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let ws = chain_workspace(tmp.path());
    ok(&ws, &["hub", "ca", "add", "Test Root", "--verified"]);
    ok(&ws, &["hub", "device", "add", "sensor-7", "--auth", "ca"]);
    (tmp, ws)
}

/// `chainsmith connect --json` (no interval, a 5 s timeout) with `args`: whether it passed, and
/// its events. A panic in the child fails the test.
pub fn connect(ws: &Path, args: &[&str]) -> (bool, Vec<serde_json::Value>) {
    let out = bin(ws)
        .args(["connect", "--json", "--interval", "0", "--timeout", "5s"])
        .args(args)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.success(), events(&out.stdout))
}
