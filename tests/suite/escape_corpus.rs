//! Terminal escape injection: certificate subjects, SANs, CSRs, PEM labels, PKCS#12 friendly
//! names, spec values, MQTT client ids, usernames, payloads and property bags carrying CSI,
//! OSC (title, OSC 52 clipboard), DCS, C1 controls, bidi overrides and NUL. No text output
//! (CLI text, errors, `hub serve` / `hub monitor`, the TUI in a pty) may carry ESC, a C1
//! control or a bidi control; they are shown escaped. `--json` keeps the exact strings.

use crate::common::Ws;
use chainsmith::hub::Auth;
use chainsmith::ops::ValidityArg;
use chainsmith_test_support::hub_util::{Client, Fixture, publish_acked, username};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, DnValue, IsCa, KeyPair, SanType, date_time_ymd,
};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Title, screen clear + OSC 52 clipboard, DCS, C1 CSI, DEL, NUL, bidi: one per DN attribute.
const CN: &str = "ca\x1b]0;pwned\x07";
const O: &str = "org\x1b[2J\x1b]52;c;cHduZWQ=\x07";
const OU: &str = "dcs\x1bP+q544e\x1b\\ c1\u{9b}31m del\x7f nul\0\n  Chain        forged\r";
const L: &str = "bidi\u{202e}exe.txt\u{2066}\u{2069}\u{200f}\u{061c}";
/// Ordinary non-ASCII text passes unchanged.
const ST: &str = "Zürich 日本";
const SAN: &str = "san\x1b]0;dns\x07.example";

/// What a terminal must never receive from us as text.
fn assert_clean(what: &str, bytes: &[u8]) {
    let s = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"));
    let bad = |c: char| {
        c.is_control() && c != '\n' && c != '\t'
            || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    if let Some((i, c)) = s.char_indices().find(|&(_, c)| bad(c)) {
        panic!(
            "{what}: raw {c:?} at byte {i}: {:?}",
            &s[i.saturating_sub(60)..(i + 20).min(s.len())]
        );
    }
}

fn run(ws: &Ws, args: &[&str]) -> (bool, Vec<u8>, Vec<u8>) {
    let out = ws.cmd().args(args).output().unwrap();
    (out.status.success(), out.stdout, out.stderr)
}

/// Run a text command: standard output and error are both clean; returns both as text.
fn text(ws: &Ws, args: &[&str]) -> (bool, String) {
    let (ok, o, e) = run(ws, args);
    assert_clean(&format!("{args:?} stdout"), &o);
    assert_clean(&format!("{args:?} stderr"), &e);
    let all = String::from_utf8_lossy(&o).into_owned() + &String::from_utf8_lossy(&e);
    assert!(!all.contains("panicked"), "{args:?}: {all}");
    (ok, all)
}

fn dn(p: &mut CertificateParams) {
    for (t, v) in [
        (DnType::CommonName, CN),
        (DnType::OrganizationName, O),
        (DnType::OrganizationalUnitName, OU),
        (DnType::LocalityName, L),
        (DnType::StateOrProvinceName, ST),
    ] {
        p.distinguished_name
            .push(t, DnValue::Utf8String(v.to_string()));
    }
    // Fixed dates: nothing here depends on today.
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(2090, 1, 1);
}

/// evil-ca.pem (+ key), evil-chain.pem (leaf, CA), evil.csr, evil-label.pem, evil.pfx.
fn corpus(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    dn(&mut p);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = p.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(p, &ca_key);

    let leaf_key = KeyPair::generate().unwrap();
    let mut lp = CertificateParams::new(Vec::<String>::new()).unwrap();
    dn(&mut lp);
    lp.subject_alt_names = vec![
        SanType::DnsName(SAN.try_into().unwrap()),
        SanType::Rfc822Name("x\x1b[31m@evil".try_into().unwrap()),
    ];
    let leaf = lp.signed_by(&leaf_key, &issuer).unwrap();
    let csr = lp.serialize_request(&leaf_key).unwrap();

    std::fs::write(dir.join("evil-ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("evil-ca.key"), ca_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("evil-chain.pem"), leaf.pem() + &ca.pem()).unwrap();
    std::fs::write(dir.join("evil-leaf.key"), leaf_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("evil.csr"), csr.pem().unwrap()).unwrap();
    // A PEM label is file text too.
    let body = ca.pem();
    let body = body
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(
        dir.join("evil-label.pem"),
        format!(
            "-----BEGIN \x1b]0;x\x07 \u{9b}2J-----\n{body}\n-----END \x1b]0;x\x07 \u{9b}2J-----\n"
        ),
    )
    .unwrap();
    // A PKCS#12 whose friendly name is an OSC, made by the openssl CLI.
    let (ok, out) = crate::common::openssl(
        &[
            "pkcs12",
            "-export",
            "-in",
            "evil-chain.pem",
            "-inkey",
            "evil-leaf.key",
            "-name",
            "pfx\x1b]0;friendly\x07\u{202e}",
            "-passout",
            "pass:1234",
            "-out",
            "evil.pfx",
        ],
        dir,
    );
    assert!(ok, "{out}");
}

#[test]
fn inspect_shows_controls_escaped_and_json_keeps_them() {
    let ws = Ws::new();
    corpus(ws.dir.path());
    for f in ["evil-ca.pem", "evil-chain.pem", "evil.csr"] {
        let (ok, out) = text(&ws, &["inspect", f]);
        assert!(ok, "{out}");
        // Shown, not obeyed, and ordinary non-ASCII left alone.
        assert!(out.contains(r"CN=ca\e]0;pwned\a"), "{f}: {out}");
        assert!(out.contains(r"\e[2J\e]52;c;cHduZWQ=\a"), "{f}: {out}");
        assert!(out.contains(r"\x9b31m"), "{f}: {out}");
        assert!(out.contains(r"bidi\u{202e}exe.txt"), "{f}: {out}");
        assert!(out.contains(ST), "{f}: {out}");
        // A newline in a single-line field cannot forge the next line.
        assert!(
            out.contains(r"nul\0\n  Chain        forged\r"),
            "{f}: {out}"
        );
        assert!(
            !out.lines()
                .any(|l| l.trim_start().starts_with("Chain        forged")),
            "{out}"
        );
        // --json: the exact strings, with C1 and bidi controls as \\uXXXX escapes.
        let (ok, raw, _) = run(&ws, &["--json", "inspect", f]);
        assert!(ok, "{f}");
        assert_clean(&format!("inspect --json {f}"), &raw);
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.contains(r"c1\u009b31m") && text.contains(r"bidi\u202eexe"),
            "{text}"
        );
        let v = ws.json(&["inspect", f]);
        let subject = v["items"][0]["subject"]
            .as_str()
            .or_else(|| v["items"][0]["view"]["subject"].as_str())
            .unwrap_or_else(|| panic!("{f}: no subject in {v}"))
            .to_string();
        for part in [CN, O, L, ST] {
            assert!(subject.contains(part), "{f}: {subject:?} lacks {part:?}");
        }
    }
    let (_, out) = text(&ws, &["inspect", "evil-chain.pem"]);
    assert!(out.contains(r"san\e]0;dns\a.example"), "{out}");
    // The label in an error message, and a PFX's friendly name.
    let (ok, out) = text(&ws, &["inspect", "evil-label.pem"]);
    assert!(!ok && out.contains(r#"block "\e]0;x\a \x9b2J""#), "{out}");
    let v: serde_json::Value =
        serde_json::from_slice(&run(&ws, &["--json", "inspect", "evil-label.pem"]).1).unwrap();
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.contains("\x1b]0;x\x07 \u{9b}2J"), "{m:?}");
    text(&ws, &["inspect", "evil.pfx", "--password", "1234"]);
    text(&ws, &["inspect", "evil.pfx", "--password", "wrong"]);
    // A file name is text from elsewhere too.
    text(&ws, &["inspect", "no\x1b]0;such\x07file"]);
}

#[test]
fn workspace_commands_and_errors_escape() {
    let ws = Ws::new();
    corpus(ws.dir.path());
    let (ok, out) = text(
        &ws,
        &["import", "evil-ca.pem", "evil-ca.key", "--name", "evil"],
    );
    assert!(ok, "{out}");
    text(&ws, &["new", "device", "dev-1", "--issuer", "evil"]);
    let (_, out) = text(&ws, &["show", "evil"]);
    assert!(out.contains(r"CN=ca\e]0;pwned\a"), "{out}");
    let (_, out) = text(&ws, &["show", "dev-1"]);
    assert!(out.contains(r"CN=ca\e]0;pwned\a"), "issuer: {out}");
    text(&ws, &["show", "evil", "--history"]);
    text(&ws, &["list"]);
    text(&ws, &["lint"]);
    text(&ws, &["sign-csr", "evil.csr", "--issuer", "evil"]);
    text(
        &ws,
        &[
            "sign-csr", "evil.csr", "--issuer", "evil", "--name", "csr-dev",
        ],
    );
    text(&ws, &["export", "evil", "--format", "pem", "--out", "x"]);
    // Names typed (or scripted) with controls come back in errors, escaped.
    let (ok, out) = text(&ws, &["show", "bad\x1b]0;name\x07"]);
    assert!(!ok && out.contains(r"\e]0;name\a"), "{out}");
    text(
        &ws,
        &["new", "device", "d\x1b[2J\u{202e}", "--issuer", "evil"],
    );
    let (_, out) = text(
        &ws,
        &["new", "root", "r", "--cn", "x\x1b]0;cn\x07\nfake-row"],
    );
    assert!(out.contains(r"CN=x\e]0;cn\a\nfake-row"), "{out}");
    text(&ws, &["show", "r"]);
    let (_, out) = text(&ws, &["list"]);
    assert!(!out.lines().any(|l| l.starts_with("fake-row")), "{out}");
    text(&ws, &["list", "--expiring", "3\x1b[2Jd"]);
    text(
        &ws,
        &[
            "import",
            "evil.pfx",
            "--name",
            "from-pfx",
            "--password",
            "1234",
        ],
    );
    text(&ws, &["show", "from-pfx"]);
    // clap's own errors quote the argument.
    let (ok, _) = text(&ws, &["show", "evil", "--bogus\x1b]0;t\x07\u{9b}\u{202e}"]);
    assert!(!ok);
    let (ok, _) = text(
        &ws,
        &["renew", "evil", "--days", "1\x1b]0;t\x07\u{9b}\u{202e}"],
    );
    assert!(!ok);
    // --json keeps what the certificate says.
    let v = ws.json(&["show", "evil"]);
    assert!(v.to_string().contains(r"ca\u001b]0;pwned\u0007"), "{v}");

    // Spec files: values and keys in errors, and a CA whose cn carries an OSC.
    let spec = ws.path("evil.toml");
    std::fs::write(
        &spec,
        "[[ca]]\nname = \"spec-ca\"\ncn = \"spec\\u001b]0;t\\u0007\\u009b\\u202e\"\n\n\
         [[ca]]\nname = \"b\\u001b]0;n\\u0007\"\n",
    )
    .unwrap();
    let (ok, out) = text(&ws, &["apply", "evil.toml"]);
    assert!(!ok && out.contains(r#"name "b\e]0;n\a""#), "{out}");
    std::fs::write(
        &spec,
        "[[ca]]\nname = \"spec-ca\"\ncn = \"spec\\u001b]0;t\\u0007\\u009b\\u202e\"\n\n\
         [[device]]\nid = \"dev-9\"\nissuer = \"no\\u001b]0;such\\u0007\"\n",
    )
    .unwrap();
    text(&ws, &["apply", "evil.toml"]);
    std::fs::write(
        &spec,
        "\"k\\u001b[2J\" = 1\n[[ca]]\nname = \"\\u001b]52;c;eA==\\u0007\"\n",
    )
    .unwrap();
    let (ok, out) = text(&ws, &["apply", "evil.toml"]);
    assert!(!ok && out.contains(r"`k\e[2J`"), "{out}");
    std::fs::write(
        &spec,
        "[[ca]]\nname = \"spec-ca\"\ncn = \"spec\\u001b]0;t\\u0007\"\n",
    )
    .unwrap();
    let (_, out) = text(&ws, &["apply", "evil.toml"]);
    let (_, shown) = text(&ws, &["show", "spec-ca"]);
    assert!(
        shown.contains(r"spec\e]0;t\a") || out.contains(r"\e]0;t\a"),
        "{out}{shown}"
    );
}

/// `hub serve` (text log) and `hub monitor` as child processes; a raw MQTT client without a
/// certificate, and a registered device, send controls in every field they choose.
#[test]
fn hub_serve_and_monitor_show_peer_text_escaped() {
    let fx = Fixture::new();
    fx.device("dev-1", Some("line2"), ValidityArg::default());
    fx.store.add_ca("line2", true).unwrap();
    fx.register("dev-1", Auth::Ca, None);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cs = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_chainsmith"));
        c.arg("--workspace").arg(fx.root());
        c
    };
    let serve = Kill(
        cs().args(["hub", "serve", "--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut serve = Lines::of(serve);
    serve.wait_for("listening on");
    let sock = fx.root().join("hub/control.sock");
    let t0 = Instant::now();
    while !sock.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut monitor = Lines::of(Kill(
        cs().args(["hub", "monitor"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let mut monitor_json = Lines::of(Kill(
        cs().args(["--json", "hub", "monitor"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    // Both monitors say when the hub has subscribed them: the payload is sent after that.
    monitor.wait_for("Starting event monitor");
    monitor_json.wait_for("Starting event monitor");

    let payload = "{\"t\":\"\x1b]0;pay\x07\u{9b}1J\u{202e}\",\"nul\":\"\0\"}";
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // No certificate: the client id and username are all the hub hears.
        let (_c, ack) = Client::connect(
            addr,
            fx.tls(None),
            "\x1b]0;pwned-by-remote\x07\u{9b}2J\u{202e}\ndevice forged: connected",
            Some("u\x1bP+q\x1b\\\n"),
        )
        .await
        .unwrap();
        assert!(ack.is_none_or(|a| a.code != rumqttc::mqttbytes::v4::ConnectReturnCode::Success));
        // A registered device: payload and property bag.
        let id = fx.identity(&["dev-1", "line2"]);
        let (mut c, ack) =
            Client::connect(addr, fx.tls(Some(&id)), "dev-1", Some(&username("dev-1")))
                .await
                .unwrap();
        assert!(ack.is_some());
        let topic =
            "devices/dev-1/messages/events/k%1B%5D0%3Bprop%07=v%C2%9B%E2%80%AE&raw\x1b[2J=1";
        assert!(publish_acked(&mut c, topic, payload.as_bytes(), 1).await);
    });

    let refused = serve.wait_for("refused");
    assert!(refused.contains(r"\e]0;pwned-by-remote\a"), "{refused}");
    let tele = serve.wait_for("telemetry");
    assert!(tele.contains(r"\e]0;pay\a"), "{tele}");
    let shown = monitor.wait_for("pay");
    assert!(
        shown.contains(r"\e]0;pay\a") || shown.contains(r"\u001b]0;pay\u0007"),
        "{shown}"
    );
    // --json: the payload is exact.
    let line = monitor_json.wait_for("pay");
    // Exact once parsed, yet no raw C1 or bidi control for the terminal it is read on.
    assert_clean("hub monitor --json", line.as_bytes());
    assert!(line.contains(r"\u009b1J\u202e"), "{line}");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["event"]["payload"], payload, "{line}");
    let app = &v["event"]["properties"]["application"];
    assert_eq!(app["k\x1b]0;prop\x07"], "v\u{9b}\u{202e}", "{line}");

    for (what, l) in [("serve", serve), ("monitor", monitor)] {
        let all = l.finish();
        assert_clean(what, &all);
        let all = String::from_utf8_lossy(&all);
        assert!(
            !all.lines().any(|l| l.starts_with("device forged")),
            "{what}: {all}"
        );
    }
}

/// A device's DPS payload is peer text: `hub dps registrations --json` and `hub dps
/// registration ID --json` keep it exact once parsed, with C1 and bidi controls escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dps_registrations_json_escapes_c1_and_bidi_controls() {
    let fx = Fixture::new();
    fx.device("dev-1", Some("line2"), ValidityArg::default());
    chainsmith::hub::dps_prove(&fx.store, "line2").unwrap();
    fx.store
        .dps_add_group(crate::dps_protocol::group("G", "line2"))
        .unwrap();
    let scope = fx.store.dps_id_scope().unwrap();
    let hub = chainsmith::hub::Hub::start(
        fx.root(),
        chainsmith::hub::HubConfig {
            port: 0,
            clock: fx.ws.clock(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let evil = "m\u{9b}31m\u{85}\u{202e}gpj.exe\u{2066}\u{2069}";
    let body = serde_json::json!({"registrationId": "dev-1", "payload": {"modelId": evil}});
    let id = fx.identity(&["dev-1", "line2"]);
    let done = crate::dps_protocol::register(
        hub.addr,
        &fx,
        &id,
        "dev-1",
        &scope,
        chainsmith::azure::dps::API_VERSION,
        body,
    )
    .await
    .unwrap();
    assert_eq!(done.status, 200, "{done:?}");
    hub.shutdown().await;
    let ws = fx.root().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        [
            &["hub", "dps", "registrations"][..],
            &["hub", "dps", "registration", "dev-1"],
        ]
        .map(|args| {
            Command::new(env!("CARGO_BIN_EXE_chainsmith"))
                .arg("--workspace")
                .arg(&ws)
                .arg("--json")
                .args(args)
                .output()
                .unwrap()
        })
    })
    .await
    .unwrap();
    for (what, o) in ["registrations", "registration dev-1"].iter().zip(out) {
        assert!(
            o.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_clean(what, &o.stdout);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains(r"m\u009b31m\u0085\u202egpj.exe\u2066\u2069"),
            "{what}: {text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let r = if v.is_array() {
            &v[0]
        } else {
            &v["registration"]
        };
        assert_eq!(r["payload"]["modelId"], evil, "{what}: {v}");
    }
}

/// A child whose output is collected; killed when dropped.
struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every byte a child writes (stdout then stderr, as they come), and its lines as they come.
struct Lines {
    child: Kill,
    rx: std::sync::mpsc::Receiver<String>,
    raw: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Lines {
    fn of(mut child: Kill) -> Lines {
        let (tx, rx) = std::sync::mpsc::channel();
        let raw = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out: Box<dyn Read + Send> = Box::new(child.0.stdout.take().unwrap());
        let err: Box<dyn Read + Send> = Box::new(child.0.stderr.take().unwrap());
        for r in [out, err] {
            let (tx, raw) = (tx.clone(), raw.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(r);
                let mut line = Vec::new();
                while r
                    .read_until(b'\n', &mut line)
                    .map(|n| n > 0)
                    .unwrap_or(false)
                {
                    raw.lock().unwrap().extend_from_slice(&line);
                    let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
                    line.clear();
                }
            });
        }
        Lines { child, rx, raw }
    }

    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let l = self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    panic!(
                        "no line with {needle:?}; so far: {}",
                        String::from_utf8_lossy(&self.raw.lock().unwrap())
                    )
                });
            if l.contains(needle) {
                return l;
            }
        }
    }

    fn finish(self) -> Vec<u8> {
        drop(self.child);
        std::thread::sleep(Duration::from_millis(200));
        self.raw.lock().unwrap().clone()
    }
}

/// The TUI in a pty with the evil CA selected: the subject is on the screen, escaped; the bytes
/// written to the terminal hold no OSC (title, clipboard), DCS, BEL, NUL, C1 or bidi control.
#[test]
fn tui_shows_certificate_controls_escaped() {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    let ws = Ws::new();
    corpus(ws.dir.path());
    ws.ok(&["import", "evil-ca.pem", "evil-ca.key", "--name", "evil"]);
    ws.ok(&["new", "device", "dev-1", "--issuer", "evil"]);

    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 40,
            cols: 160,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_chainsmith"));
    cmd.arg("--workspace");
    cmd.arg(ws.ws());
    cmd.env("TERM", "xterm-256color");
    let mut child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().unwrap();
    let mut writer = pair.master.take_writer().unwrap();
    let parser = Arc::new(Mutex::new(vt100::Parser::new(40, 160, 0)));
    let raw = Arc::new(Mutex::new(Vec::new()));
    let (p, r) = (Arc::clone(&parser), Arc::clone(&raw));
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            p.lock().unwrap().process(&buf[..n]);
            r.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let wait_for = |needle: &str| -> String {
        let start = Instant::now();
        loop {
            let s = parser.lock().unwrap().screen().contents();
            if s.contains(needle) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {needle:?}; the screen shows:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    };
    // The CA is selected first: its details show the subject.
    let s = wait_for(r"CN=ca\e]0;pwned\a");
    assert!(s.contains(r"\e[2J\e]52;c;cHduZWQ=\a"), "{s}");
    // The device (issuer line and SAN-less leaf) too.
    writer.write_all(b"\x1b[B").unwrap();
    writer.flush().unwrap();
    wait_for("dev-1 (device");
    std::thread::sleep(Duration::from_millis(300));
    writer.write_all(b"q").unwrap();
    writer.flush().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            break;
        }
        // A "Quit?" dialog, if any, takes the second q.
        writer.write_all(b"q").unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));

    assert_eq!(
        parser.lock().unwrap().screen().title(),
        "",
        "the title was set"
    );
    let bytes = raw.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&bytes);
    for (i, w) in bytes.windows(2).enumerate() {
        assert!(
            w[0] != 0x1b || w[1] == b'[',
            "an escape sequence other than CSI at byte {i}: {:?}",
            String::from_utf8_lossy(&bytes[i..(i + 24).min(bytes.len())])
        );
    }
    assert!(
        !bytes.contains(&0x07) && !bytes.contains(&0),
        "BEL or NUL written"
    );
    let bad = text.chars().find(|&c| {
        ('\u{80}'..='\u{9f}').contains(&c)
            || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    });
    assert_eq!(bad, None, "a C1 or bidi control reached the pty");
}

/// The Hub tab's log: a refused client's id becomes the line's device column and text.
#[test]
fn tui_hub_log_lines_escape_peer_text() {
    use chainsmith::hub::HubEvent;
    let id = "\x1b]0;pwned-by-remote\x07\u{9b}\u{202e}\n";
    let e = HubEvent::Refused {
        peer: "127.0.0.1:9".parse().unwrap(),
        device: Some(id.into()),
        kind: "unknown-device".into(),
        reason: format!("device {id} is not registered"),
    };
    let l = chainsmith::tui::hub::log_line(&e, time::macros::datetime!(2030-01-01 0:00 UTC));
    for s in [&l.device, &l.text, &e.line()] {
        assert_clean("hub log line", s.as_bytes());
        assert!(!s.contains('\n'), "{s:?}");
        assert!(s.contains(r"\e]0;pwned-by-remote\a\x9b\u{202e}\n"), "{s:?}");
    }
}
