//! A real Mosquitto broker on 127.0.0.1 with mutual TLS, started and stopped by the test or
//! bench, and the ports it needs.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use chainsmith_pki::pki::issue::{self, San};
use chainsmith_pki::pki::{IssueSpec, KeyAlg, Profile, Validity, subject};
use chainsmith_pki::store::Workspace;

/// How long a started broker or hub may take to listen before the set-up fails: far above a
/// loaded CI machine's start-up (well under a second), short enough to fail a broken run fast.
pub const LISTEN_DEADLINE: Duration = Duration::from_secs(20);

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Wait until something accepts TCP on 127.0.0.1:`port`; false after [`LISTEN_DEADLINE`].
pub fn wait_port(port: u16) -> bool {
    let start = Instant::now();
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        if start.elapsed() > LISTEN_DEADLINE {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// A server certificate for 127.0.0.1 (IP SAN only) issued by workspace CA `ca`, written to
/// `dir`: (cert PEM path, key PEM path).
pub fn server_cert(ws: &Path, ca: &str, dir: &Path) -> (PathBuf, PathBuf) {
    server_cert_with(ws, ca, dir, vec![San::Ip(Ipv4Addr::LOCALHOST.into())])
}

/// [`server_cert`] naming `sans` (a client that checks "localhost" needs `San::Dns`).
pub fn server_cert_with(ws: &Path, ca: &str, dir: &Path, sans: Vec<San>) -> (PathBuf, PathBuf) {
    let w = Workspace::open(ws).expect("workspace");
    let ca = chainsmith_pki::ops::load_ca(&w, ca).expect("ca");
    let spec = IssueSpec {
        subject: subject::cn_only("test broker").expect("cn"),
        profile: Profile::Server { sans },
        validity: Validity::days(30),
    };
    let issued = issue::issue(&spec, KeyAlg::EcP256, Some(&ca)).expect("issue");
    let cert = dir.join("server.pem");
    let key = dir.join("server.key");
    std::fs::write(&cert, issued.cert_pem).expect("write");
    chainsmith_pki::store::write_new(&key, issued.key_pem.expect("key").as_bytes(), 0o600)
        .expect("write key");
    (cert, key)
}

/// A running Mosquitto, killed on drop.
pub struct Mosquitto {
    child: Child,
    /// Its TLS listener on 127.0.0.1.
    pub port: u16,
    /// Where its configuration and log (`mosquitto-PORT.log`) are.
    pub dir: PathBuf,
}

impl Mosquitto {
    /// Its process id (for its RSS and CPU).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a `mosquitto` binary is on PATH.
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
    let log_path = dir.join(format!("mosquitto-{port}.log"));
    let log = std::fs::File::create(&log_path).expect("log");
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
    assert!(
        wait_port(port),
        "mosquitto did not listen on {port}: {}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    m
}
