//! The `chainsmith hub` commands through the real binary: registry, proof of possession,
//! twin, trust, and a running `hub serve` driven by mosquitto clients and `hub c2d` /
//! `hub monitor` / `hub method` over the control socket.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chainsmith_test_support::broker::free_port;
use chainsmith_test_support::process::KillOnDrop;
use std::time::{Duration, Instant};

use assert_cmd::prelude::*;
use predicates::prelude::*;

fn cs(ws: &Path) -> Command {
    let mut c = Command::cargo_bin("chainsmith").unwrap();
    c.env("CHAINSMITH_WORKSPACE", ws);
    c
}

fn ok(ws: &Path, args: &[&str]) -> String {
    let out = cs(ws).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    ok(&ws, &["new", "root", "root", "--cn", "Contoso Root"]);
    ok(
        &ws,
        &[
            "new",
            "intermediate",
            "line2",
            "--issuer",
            "root",
            "--cn",
            "Line 2",
        ],
    );
    ok(&ws, &["new", "root", "other", "--cn", "Fabrikam Root"]);
    (dir, ws)
}

fn code_of(ws: &Path, name: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&ok(ws, &["--json", "hub", "ca", "list"])).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn ca_proof_of_possession_says_what_is_wrong() {
    let (dir, ws) = setup();
    let out = ok(&ws, &["hub", "ca", "add", "root"]);
    let code = code_of(&ws, "root");
    assert_eq!(code.len(), 48);
    assert!(code.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(out.contains(&code) && out.contains("unverified"), "{out}");

    // Wrong code.
    let wrong = dir.path().join("wrong.pem");
    ok(
        &ws,
        &[
            "new",
            "verification",
            "--issuer",
            "root",
            "--code",
            &"AB".repeat(24),
            "--out",
            wrong.to_str().unwrap(),
        ],
    );
    cs(&ws)
        .args([
            "hub",
            "ca",
            "verify",
            "root",
            "--cert",
            wrong.to_str().unwrap(),
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("wrong code").and(predicate::str::contains(&code)));
    // Right code, signed by another workspace CA: named.
    let other = dir.path().join("other.pem");
    ok(
        &ws,
        &[
            "new",
            "verification",
            "--issuer",
            "other",
            "--code",
            &code,
            "--out",
            other.to_str().unwrap(),
        ],
    );
    cs(&ws)
        .args([
            "hub",
            "ca",
            "verify",
            "root",
            "--cert",
            other.to_str().unwrap(),
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("signed by \"other\""));
    // Not a certificate; a file with a private key.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "hello").unwrap();
    cs(&ws)
        .args([
            "hub",
            "ca",
            "verify",
            "root",
            "--cert",
            junk.to_str().unwrap(),
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not a certificate"));
    let withkey = dir.path().join("withkey.pem");
    let key = std::fs::read_to_string(ws.join("entities/root/key.pem")).unwrap();
    std::fs::write(
        &withkey,
        format!("{}{key}", std::fs::read_to_string(&other).unwrap()),
    )
    .unwrap();
    cs(&ws)
        .args([
            "hub",
            "ca",
            "verify",
            "root",
            "--cert",
            withkey.to_str().unwrap(),
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("private key"));
    // Still unverified after all that.
    assert!(ok(&ws, &["hub", "ca", "list"]).contains("unverified"));
    // The real proof.
    let good = dir.path().join("good.pem");
    ok(
        &ws,
        &[
            "new",
            "verification",
            "--issuer",
            "root",
            "--code",
            &code,
            "--out",
            good.to_str().unwrap(),
        ],
    );
    ok(
        &ws,
        &[
            "hub",
            "ca",
            "verify",
            "root",
            "--cert",
            good.to_str().unwrap(),
        ],
    );
    assert!(ok(&ws, &["hub", "ca", "list"]).contains(" verified"));
    // A device cert is not a CA; duplicates and unknown names are refused with the fix.
    ok(&ws, &["new", "device", "dev1", "--issuer", "line2"]);
    cs(&ws)
        .args(["hub", "ca", "add", "dev1"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not a CA"));
    cs(&ws)
        .args(["hub", "ca", "add", "root"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("already registered"));
    ok(&ws, &["hub", "ca", "add", "line2", "--verified"]);
    ok(&ws, &["hub", "ca", "remove", "line2"]);
    cs(&ws)
        .args(["hub", "ca", "remove", "line2"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not registered"));
}

#[test]
fn devices_twins_and_trust() {
    let (_dir, ws) = setup();
    ok(&ws, &["new", "device", "selfie", "--self-signed"]);
    ok(
        &ws,
        &[
            "hub",
            "device",
            "add",
            "selfie",
            "--auth",
            "self-signed",
            "--from",
            "selfie",
        ],
    );
    let sha256 = std::fs::read_to_string(ws.join("entities/selfie/meta.toml"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("sha256"))
        .unwrap()
        .split('"')
        .nth(1)
        .unwrap()
        .to_string();
    let dev: serde_json::Value =
        serde_json::from_str(&ok(&ws, &["--json", "hub", "device", "show", "selfie"])).unwrap();
    assert_eq!(dev["primary"], sha256);
    cs(&ws)
        .args(["hub", "device", "add", "x1", "--auth", "self-signed"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("needs a thumbprint"));
    cs(&ws)
        .args([
            "hub",
            "device",
            "add",
            "x1",
            "--auth",
            "self-signed",
            "--primary",
            "12:34",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("neither SHA-1"));
    cs(&ws)
        .args(["hub", "device", "add", "bad id", "--auth", "ca"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("bad id"));
    // --auth ca takes no thumbprints: refused, naming the fix, nothing registered.
    let ab = "ab".repeat(20);
    for extra in [
        ["--primary", ab.as_str()],
        ["--secondary", ab.as_str()],
        ["--from", "selfie"],
    ] {
        cs(&ws)
            .args(["hub", "device", "add", "dev-2", "--auth", "ca"])
            .args(extra)
            .assert()
            .failure()
            .stderr(
                predicate::str::contains("dev-2")
                    .and(predicate::str::contains("takes no thumbprints"))
                    .and(predicate::str::contains("--auth self-signed")),
            );
    }
    assert!(!ok(&ws, &["hub", "device", "list"]).contains("dev-2"));
    ok(&ws, &["hub", "device", "add", "dev-2", "--auth", "ca"]);
    ok(&ws, &["hub", "device", "disable", "dev-2"]);
    assert!(ok(&ws, &["hub", "device", "list"]).contains("disabled"));
    ok(&ws, &["hub", "device", "enable", "dev-2"]);
    // Twin: desired patch without a running hub is stored; versions count.
    let t: serde_json::Value = serde_json::from_str(&ok(
        &ws,
        &[
            "--json",
            "hub",
            "twin",
            "dev-2",
            "--set-desired",
            r#"{"interval":5}"#,
        ],
    ))
    .unwrap();
    assert_eq!(t["desired"]["interval"], 5);
    assert_eq!(t["desired"]["$version"], 2);
    cs(&ws)
        .args(["hub", "twin", "dev-2", "--set-desired", "[1]"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not a JSON object"));
    cs(&ws)
        .args(["hub", "twin", "nobody"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not registered"));
    ok(&ws, &["hub", "device", "remove", "dev-2"]);
    cs(&ws)
        .args(["hub", "device", "show", "dev-2"])
        .assert()
        .failure();
    // Trust: a CA PEM openssl reads; its key is private.
    let trust = ok(&ws, &["hub", "trust"]).trim().to_string();
    assert!(Path::new(&trust).exists());
    let key = Path::new(&trust).with_file_name("ca.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in", &trust])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("chainsmith local hub"));
    // The registry is a file in the workspace: a second process sees the same state.
    assert!(ws.join("hub/registry.json").exists());
    // No control socket: commands that need the running hub say so.
    cs(&ws)
        .args(["hub", "c2d", "selfie", "hi"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no hub is running"));
}

#[test]
fn serve_with_mosquitto_clients_c2d_monitor_method_echo() {
    let (dir, ws) = setup();
    ok(&ws, &["new", "device", "m-dev", "--issuer", "line2"]);
    ok(&ws, &["hub", "ca", "add", "root", "--verified"]);
    ok(&ws, &["hub", "device", "add", "m-dev", "--auth", "ca"]);
    let chain = dir.path().join("chain.pem");
    std::fs::write(
        &chain,
        std::fs::read_to_string(ws.join("entities/m-dev/cert.pem")).unwrap()
            + &std::fs::read_to_string(ws.join("entities/line2/cert.pem")).unwrap(),
    )
    .unwrap();
    let key = ws.join("entities/m-dev/key.pem");
    let trust = ok(&ws, &["hub", "trust"]).trim().to_string();
    let port = free_port().to_string();
    let mut serve = KillOnDrop(
        cs(&ws)
            .args(["hub", "serve", "--port", &port, "--echo", "--log", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let out = serve.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&l) {
                let _ = tx.send(v);
            }
        }
    });
    let wait_for = |pred: &dyn Fn(&serde_json::Value) -> bool| -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("hub log line");
            if pred(&v) {
                return v;
            }
        }
    };
    wait_for(&|v| v["event"] == "listening");
    // One line per listener (issue 22 item 7: the AMQP and WebSocket lines were lost).
    wait_for(&|v| v["event"] == "listening-for" && v["transport"] == "AMQP");
    wait_for(&|v| {
        v["event"] == "listening-for"
            && v["transport"] == "MQTT and AMQP over WebSockets, DPS over HTTPS"
    });
    let sock = ws.join("hub/control.sock");
    let t0 = Instant::now();
    while !sock.exists() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }

    let mosq = |bin: &str| {
        let mut c = Command::new(bin);
        c.args(["-h", "localhost", "-p", &port, "--cafile", &trust])
            .arg("--cert")
            .arg(&chain)
            .arg("--key")
            .arg(&key)
            .args([
                "-i",
                "m-dev",
                "-u",
                "localhost/m-dev/?api-version=2021-04-12",
            ]);
        c
    };
    // hub monitor streams telemetry. It says so on stderr (in --json mode too) once the hub
    // has subscribed it: everything sent after that line reaches it, no sleep needed.
    let mut monitor = KillOnDrop(
        cs(&ws)
            .args(["--json", "hub", "monitor", "--device", "m-dev"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut ready = String::new();
    BufReader::new(monitor.0.stderr.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready, "Starting event monitor, use ctrl-c to stop...\n");
    // mosquitto_sub receives a C2D message sent with `hub c2d`.
    let sub = mosq("mosquitto_sub")
        .args([
            "-t",
            "devices/m-dev/messages/devicebound/#",
            "-q",
            "1",
            "-v",
            "-C",
            "1",
            "-W",
            "20",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&|v| v["event"] == "accepted");
    let out = ok(
        &ws,
        &["hub", "c2d", "m-dev", "first message", "--prop", "k=v w"],
    );
    assert!(out.contains("message id"), "{out}");
    let sub_out = sub.wait_with_output().unwrap();
    let got = String::from_utf8_lossy(&sub_out.stdout);
    assert!(
        got.starts_with("devices/m-dev/messages/devicebound/%24.mid=")
            && got.contains("&k=v%20w first message"),
        "{got}"
    );
    wait_for(&|v| v["event"] == "disconnected");

    // mosquitto_pub sends telemetry with a property bag; the hub records it.
    let pub_out = mosq("mosquitto_pub")
        .args([
            "-t",
            "devices/m-dev/messages/events/temperatureAlert=true&%24.ct=application%2Fjson&%24.to=%2Fdevices%2Fm-dev%2Fmessages%2Fevents&%24.exp=2030-01-01T00%3A00%3A00Z",
            "-m",
            r#"{"t":31}"#,
            "-q",
            "1",
        ])
        .output()
        .unwrap();
    chainsmith_test_support::process::assert_success(&pub_out);
    let tele = wait_for(&|v| v["event"] == "telemetry");
    assert_eq!(tele["payload"], r#"{"t":31}"#);
    assert!(tele["enqueued"].as_str().unwrap().ends_with('Z'));

    // hub monitor printed it like az iot hub monitor-events.
    let mline = {
        let out = monitor.0.stdout.take().unwrap();
        let mut l = String::new();
        BufReader::new(out).read_line(&mut l).unwrap();
        l
    };
    let m: serde_json::Value = serde_json::from_str(&mline).unwrap();
    assert_eq!(m["event"]["origin"], "m-dev");
    assert_eq!(m["event"]["payload"]["t"], 31);
    assert_eq!(
        m["event"]["properties"]["application"]["temperatureAlert"],
        "true"
    );
    // Every `$.` property is a system property (issue 22 item 6: `$.to` was listed among the
    // application properties).
    assert_eq!(
        m["event"]["properties"]["system"],
        serde_json::json!({
            "content_type": "application/json",
            "to": "/devices/m-dev/messages/events",
            "absolute_expiry_time": "2030-01-01T00:00:00Z",
        })
    );
    assert_eq!(
        m["event"]["properties"]["application"],
        serde_json::json!({ "temperatureAlert": "true" })
    );
    drop(monitor);

    // A desired patch while the hub runs goes through it (and would be pushed).
    let t: serde_json::Value = serde_json::from_str(&ok(
        &ws,
        &[
            "--json",
            "hub",
            "twin",
            "m-dev",
            "--set-desired",
            r#"{"interval":7}"#,
        ],
    ))
    .unwrap();
    assert_eq!(t["desired"]["interval"], 7);
    let d = wait_for(&|v| v["event"] == "twin-desired");
    assert_eq!(d["version"], 2);
    // A second hub on the same workspace is refused.
    cs(&ws)
        .args(["hub", "serve", "--port", "0"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("already running"));

    // No device connected now: `hub method` says so.
    cs(&ws)
        .args(["hub", "method", "m-dev", "reboot", "--timeout", "2"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not connected"));
    // The same with --json: the running hub's own error kinds come through.
    for (args, kind) in [
        (
            vec!["hub", "method", "m-dev", "reboot", "--timeout", "2"],
            "device-offline",
        ),
        (vec!["hub", "c2d", "ghost", "hi"], "not-registered"),
        (vec!["hub", "serve", "--port", "0"], "hub-running"),
    ] {
        let out = cs(&ws).arg("--json").args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["error"]["kind"], kind, "{args:?}: {v}");
    }
    drop(serve);
}

/// `show NAME --json`'s thumbprint slots: (primary SHA-256, secondary SHA-256, secondary SHA-1).
fn slots(ws: &Path, name: &str) -> (String, String, String) {
    let v: serde_json::Value = serde_json::from_str(&ok(ws, &["--json", "show", name])).unwrap();
    let s = v["slots"].as_array().unwrap();
    let of = |slot: &str, key: &str| {
        s.iter().find(|x| x["slot"] == slot).unwrap()[key]
            .as_str()
            .unwrap()
            .to_string()
    };
    (
        of("primary", "sha256"),
        of("secondary", "sha256"),
        of("secondary", "sha1"),
    )
}

fn hub_device(ws: &Path, id: &str) -> serde_json::Value {
    serde_json::from_str(&ok(ws, &["--json", "hub", "device", "show", id])).unwrap()
}

#[test]
fn from_takes_both_slots_and_update_rolls_one() {
    let (_dir, ws) = setup();
    ok(&ws, &["new", "device", "duo", "--self-signed"]);
    ok(
        &ws,
        &[
            "new",
            "device",
            "duo",
            "--self-signed",
            "--slot",
            "secondary",
        ],
    );
    let (p, s, _) = slots(&ws, "duo");
    ok(
        &ws,
        &[
            "hub",
            "device",
            "add",
            "duo",
            "--auth",
            "self-signed",
            "--from",
            "duo",
        ],
    );
    let d = hub_device(&ws, "duo");
    assert_eq!(
        (d["primary"].as_str(), d["secondary"].as_str()),
        (Some(p.as_str()), Some(s.as_str()))
    );

    // Roll the secondary in the workspace, then in the hub by hand: the primary is untouched.
    ok(
        &ws,
        &[
            "new",
            "device",
            "duo",
            "--self-signed",
            "--slot",
            "secondary",
            "--force",
        ],
    );
    let (p2, s2, s2_sha1) = slots(&ws, "duo");
    assert_eq!(p2, p);
    assert_ne!(s2, s);
    let lower_colons: String = s2_sha1
        .to_ascii_lowercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    ok(
        &ws,
        &[
            "hub",
            "device",
            "update",
            "duo",
            "--secondary",
            &lower_colons,
        ],
    );
    let d = hub_device(&ws, "duo");
    assert_eq!(
        (d["primary"].as_str(), d["secondary"].as_str()),
        (Some(p.as_str()), Some(s2_sha1.as_str()))
    );
    // --from mirrors the workspace device's slots again.
    ok(&ws, &["hub", "device", "update", "duo", "--from", "duo"]);
    let d = hub_device(&ws, "duo");
    assert_eq!(
        (d["primary"].as_str(), d["secondary"].as_str()),
        (Some(p.as_str()), Some(s2.as_str()))
    );
    // --from a one-certificate device: its SHA-256 as primary, the secondary cleared.
    ok(&ws, &["new", "device", "solo", "--self-signed"]);
    ok(&ws, &["hub", "device", "update", "duo", "--from", "solo"]);
    let d = hub_device(&ws, "duo");
    assert!(
        d["primary"]
            .as_str()
            .is_some_and(|t| t.len() == 64 && t != p)
    );
    assert!(d.get("secondary").is_none_or(|v| v.is_null()), "{d}");

    // Mistakes: clear errors, nothing changed.
    cs(&ws)
        .args(["hub", "device", "update", "duo"])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("nothing to update")
                .and(predicate::str::contains("--secondary")),
        );
    cs(&ws)
        .args([
            "hub",
            "device",
            "update",
            "ghost",
            "--primary",
            &"ab".repeat(20),
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("not registered"));
    cs(&ws)
        .args(["hub", "device", "update", "duo", "--primary", "12:34"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("neither SHA-1"));
    ok(&ws, &["hub", "device", "add", "casey", "--auth", "ca"]);
    cs(&ws)
        .args([
            "hub",
            "device",
            "update",
            "casey",
            "--primary",
            &"ab".repeat(20),
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("takes no thumbprints"));
    assert!(
        hub_device(&ws, "casey")
            .get("primary")
            .is_none_or(|v| v.is_null())
    );
}

/// `--json` errors of the hub commands: `{"error": {"kind", "message"}}` with a specific kind.
#[test]
fn json_errors_have_specific_kinds() {
    let (_dir, ws) = setup();
    let hex = "ab".repeat(20);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["hub", "device", "show", "ghost"], "not-registered"),
        (
            vec![
                "hub",
                "device",
                "add",
                "x",
                "--auth",
                "ca",
                "--primary",
                &hex,
            ],
            "thumbprint-with-ca",
        ),
        (
            vec!["hub", "device", "add", "x", "--auth", "self-signed"],
            "no-thumbprint",
        ),
        (
            vec![
                "hub",
                "device",
                "add",
                "x",
                "--auth",
                "self-signed",
                "--primary",
                "12",
            ],
            "bad-thumbprint",
        ),
        (
            vec![
                "hub",
                "device",
                "add",
                "x",
                "--auth",
                "self-signed",
                "--from",
                "root",
            ],
            "not-a-device",
        ),
        (
            vec![
                "hub",
                "device",
                "add",
                "x",
                "--auth",
                "self-signed",
                "--from",
                "nope",
            ],
            "not-found",
        ),
        (vec!["hub", "ca", "add", "nope"], "not-found"),
        (vec!["hub", "ca", "remove", "root"], "not-registered"),
        (vec!["hub", "c2d", "x", "hi"], "hub-not-running"),
        (
            vec!["hub", "method", "x", "m", "--payload", "{bad"],
            "invalid-json",
        ),
    ];
    for (args, kind) in cases {
        let out = cs(&ws).arg("--json").args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        assert_eq!(v["error"]["kind"], kind, "{args:?}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
    }
    ok(&ws, &["hub", "ca", "add", "root"]);
    let out = cs(&ws)
        .args(["--json", "hub", "ca", "add", "root"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "already-registered", "{v}");
}

/// `hub ca prove` is the TUI's one-step proof of possession (`hub::hub_prove`): add, make the
/// verification certificate for the hub's code, verify; a second run leaves a Verified CA alone.
#[test]
fn ca_prove_adds_makes_the_certificate_and_verifies_in_one_step() {
    let (_d, ws) = setup();
    let out = ok(&ws, &["hub", "ca", "prove", "line2"]);
    assert!(out.contains("added CA \"line2\""), "{out}");
    assert!(out.contains("is Verified"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&ws, &["--json", "hub", "ca", "list"])).unwrap();
    let line2 = v
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "line2")
        .unwrap();
    assert_eq!(line2["verified"], true);
    // The certificate it made: CN = the hub's code, signed by line2 (checked by openssl).
    let code = code_of(&ws, "line2");
    let cert = ws.join("verification/line2_verification_cert.pem");
    let subject = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&subject.stdout).contains(&code));
    let verify = Command::new("openssl")
        .args(["verify", "-partial_chain", "-CAfile"])
        .arg(ws.join("entities/line2/cert.pem"))
        .arg(&cert)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");
    let again = ok(&ws, &["--json", "hub", "ca", "prove", "line2"]);
    assert!(again.contains("already Verified"), "{again}");
    cs(&ws)
        .args(["hub", "ca", "prove", "device-none"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("device-none"));
}

/// `hub serve | head -1`: when the reader of its log goes away the hub says so once on
/// standard error and goes on serving (it used to exit at the next log line, with status 0).
#[test]
fn hub_serve_goes_on_serving_when_its_log_reader_goes_away() {
    let (_dir, ws) = setup();
    let port = free_port();
    let mut serve = KillOnDrop(
        cs(&ws)
            .args(["hub", "serve", "--port", &port.to_string()])
            .args(["--amqp-port", "0", "--ws-port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(serve.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.contains("listening on"), "{first}");
    drop(out);
    // Log lines now go nowhere: a connection that is no TLS at all makes one.
    for _ in 0..3 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write;
            let _ = s.write_all(b"not tls\r\n\r\n");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        serve.0.try_wait().unwrap().is_none(),
        "the hub exited when its log reader went away"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the hub stopped listening"
    );
    let _ = serve.0.kill();
    let mut err = String::new();
    use std::io::Read;
    serve
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("goes on serving without its log"), "{err}");
}

/// README: "every listener is logged": `hub serve` writes one line per listener (MQTT and DPS,
/// AMQP, WebSockets) before anything else, in text and in JSON (`--log json` and `--json`).
#[test]
fn hub_serve_logs_one_line_per_listener_in_text_and_json() {
    let (_dir, ws) = setup();
    let first_lines = |extra: &[&str], json_flag: bool| -> Vec<String> {
        let [port, amqp, wss] = [free_port(), free_port(), free_port()].map(|p| p.to_string());
        let mut c = cs(&ws);
        if json_flag {
            c.arg("--json");
        }
        let mut serve = KillOnDrop(
            c.args(["hub", "serve", "--port", &port])
                .args(["--amqp-port", &amqp, "--ws-port", &wss])
                .args(extra)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut out = BufReader::new(serve.0.stdout.take().unwrap());
        let lines = (0..3)
            .map(|_| {
                let mut l = String::new();
                out.read_line(&mut l).unwrap();
                l.trim_end().to_string()
            })
            .collect();
        let _ = serve.0.kill();
        lines
    };
    let text = first_lines(&[], false);
    assert!(text[0].starts_with("listening on 127.0.0.1:"), "{text:?}");
    assert!(
        text[1].starts_with("listening for AMQP on 127.0.0.1:"),
        "{text:?}"
    );
    assert!(
        text[2].starts_with(
            "listening for MQTT and AMQP over WebSockets, DPS over HTTPS on 127.0.0.1:"
        ),
        "{text:?}"
    );
    for (extra, json_flag) in [(&["--log", "json"][..], false), (&[][..], true)] {
        let lines = first_lines(extra, json_flag);
        let v: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(v[0]["event"], "listening", "{lines:?}");
        assert_eq!(v[1]["event"], "listening-for", "{lines:?}");
        assert_eq!(v[1]["transport"], "AMQP", "{lines:?}");
        assert_eq!(
            v[2]["transport"],
            "MQTT and AMQP over WebSockets, DPS over HTTPS"
        );
        for e in &v {
            assert!(e["addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{e}");
        }
    }
}
