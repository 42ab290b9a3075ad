//! `connect` and `fleet run` against AWS IoT Core: `--to aws-local` (the workspace's running
//! `chainsmith aws serve`, which the test asks why it closed a connection) and `--to aws
//! --endpoint` (a real endpoint's conventions: no reason, a list of likely causes), both
//! against the real `aws serve` on free ports over real TLS, the workspace set up with the
//! real `chainsmith aws …` commands.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use crate::common::Ws;

/// The tutorial's device policy: connect as the attached thing, publish, receive and
/// subscribe under `device/CLIENT-ID/`.
const DEVICE_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
 {"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"arn:aws:iot:*:*:topic/device/${iot:ClientId}/*"},
 {"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:*:*:topicfilter/device/${iot:ClientId}/*"}]}"#;
/// An explicit Deny of publishing (wins over the Allow above).
const DENY_PUBLISH: &str = r#"{"Statement":{"Effect":"Deny","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/device/*"}}"#;
/// An explicit Deny of subscribing.
const DENY_SUBSCRIBE: &str = r#"{"Statement":{"Effect":"Deny","Action":"iot:Subscribe","Resource":"arn:aws:iot:*:*:topicfilter/device/*"}}"#;

fn policy(w: &Ws, name: &str, doc: &str) {
    let path = w.path(&format!("{name}.json"));
    std::fs::write(&path, doc).unwrap();
    w.ok(&[
        "aws",
        "policy",
        "create",
        name,
        "--document",
        path.to_str().unwrap(),
    ]);
}

/// Register CA `ca` with a verification certificate for the registration code.
fn register_ca(w: &Ws, ca: &str, extra: &[&str]) {
    let code = w.ok(&["aws", "registration-code"]).trim().to_string();
    let proof = w.path(&format!("{ca}-proof.pem"));
    let proof_s = proof.to_str().unwrap();
    w.ok(&[
        "new",
        "verification",
        "--issuer",
        ca,
        "--code",
        &code,
        "--out",
        proof_s,
    ]);
    let mut args = vec!["aws", "ca", "register", ca, "--verification-cert", proof_s];
    args.extend_from_slice(extra);
    w.ok(&args);
}

/// A registered ACTIVE device with its thing and the device policy (plus `more` policies).
fn device(w: &Ws, name: &str, issuer: &str, more: &[&str]) {
    w.ok(&["new", "device", name, "--issuer", issuer]);
    w.ok(&["aws", "cert", "register", name, "--active"]);
    w.ok(&["aws", "thing", "create", name]);
    w.ok(&["aws", "thing", "attach", name, "--cert", name]);
    for p in std::iter::once(&"device").chain(more) {
        w.ok(&["aws", "policy", "attach", p, "--cert", name]);
    }
}

/// `chainsmith aws serve` on free ports, once its control socket answers; the child, the
/// MQTT port and the trust PEM.
fn serve(w: &Ws) -> (Child, u16, String) {
    let (child, port, trust) = crate::aws_rules::serve(w);
    let control = w.ws().join("aws/control.sock");
    for _ in 0..100 {
        if std::os::unix::net::UnixStream::connect(&control).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (child, port, trust)
}

fn stop(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `connect DEVICE ARGS…` (one message, no pause); exit code, stdout, stderr.
fn connect(w: &Ws, device: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = w
        .cmd()
        .args([
            "connect",
            device,
            "--count",
            "1",
            "--interval",
            "0",
            "--timeout",
            "5s",
        ])
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        err,
    )
}

/// The `failed` event of a `--json` connect.
fn failed_event(stdout: &str) -> serde_json::Value {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "failed")
        .unwrap_or_else(|| panic!("no failed event in {stdout}"))
}

/// root registered and ACTIVE, the device policy, and the devices of every refusal.
fn workspace() -> Ws {
    let w = Ws::new();
    w.ok(&["new", "root", "root", "--cn", "Example Root"]);
    register_ca(&w, "root", &["--active"]);
    policy(&w, "device", DEVICE_POLICY);
    policy(&w, "deny-publish", DENY_PUBLISH);
    policy(&w, "deny-subscribe", DENY_SUBSCRIBE);
    device(&w, "d1", "root", &[]);
    device(&w, "d-inactive", "root", &[]);
    w.ok(&[
        "aws",
        "cert",
        "update",
        "d-inactive",
        "--status",
        "INACTIVE",
    ]);
    device(&w, "d-revoked", "root", &[]);
    w.ok(&["aws", "cert", "update", "d-revoked", "--status", "REVOKED"]);
    device(&w, "d-pub", "root", &["deny-publish"]);
    device(&w, "d-sub", "root", &["deny-subscribe"]);
    // Registered, no thing, no policy: nothing allows iot:Connect.
    w.ok(&["new", "device", "d-nopolicy", "--issuer", "root"]);
    w.ok(&["aws", "cert", "register", "d-nopolicy", "--active"]);
    // Issued under the registered CA, never registered.
    w.ok(&["new", "device", "d-new", "--issuer", "root"]);
    // Under a CA AWS never saw.
    w.ok(&["new", "root", "other-root"]);
    w.ok(&["new", "device", "d-other", "--issuer", "other-root"]);
    // Under a CA made INACTIVE after its device registered.
    w.ok(&["new", "root", "idle-root"]);
    register_ca(&w, "idle-root", &["--active"]);
    device(&w, "d-idle", "idle-root", &[]);
    w.ok(&["aws", "ca", "update", "idle-root", "--status", "INACTIVE"]);
    // JITR: an auto-registering CA leaves a new certificate PENDING_ACTIVATION.
    w.ok(&["new", "root", "jitr-root"]);
    register_ca(&w, "jitr-root", &["--active", "--auto-registration"]);
    w.ok(&["new", "device", "d-pending", "--issuer", "jitr-root"]);
    w
}

#[test]
fn connect_to_aws_local_names_each_refusal_and_passes_with_a_round_trip() {
    let w = workspace();
    let (server, _port, _trust) = serve(&w);
    // The JITR device's first connection registers it PENDING_ACTIVATION.
    let _ = connect(&w, "d-pending", &["--to", "aws-local"]);
    let cases = [
        (
            "d-new",
            "aws-certificate-not-registered",
            "chainsmith aws cert register d-new --active",
        ),
        (
            "d-inactive",
            "aws-certificate-inactive",
            "chainsmith aws cert update d-inactive --status ACTIVE",
        ),
        (
            "d-revoked",
            "aws-certificate-revoked",
            "chainsmith renew d-revoked",
        ),
        (
            "d-pending",
            "aws-certificate-pending-activation",
            "chainsmith aws cert update d-pending --status ACTIVE",
        ),
        (
            "d-other",
            "aws-ca-not-registered",
            "chainsmith aws ca register other-root",
        ),
        (
            "d-idle",
            "aws-ca-inactive",
            "chainsmith aws ca update idle-root --status ACTIVE",
        ),
        (
            "d-nopolicy",
            "aws-connect-not-allowed",
            "chainsmith aws policy attach POLICY --cert d-nopolicy",
        ),
        (
            "d-pub",
            "aws-publish-denied",
            "chainsmith aws policy attach POLICY --cert d-pub",
        ),
        (
            "d-sub",
            "aws-subscribe-denied",
            "chainsmith aws policy attach POLICY --cert d-sub",
        ),
    ];
    for (dev, code, command) in cases {
        let (exit, out, _) = connect(&w, dev, &["--to", "aws-local"]);
        assert_eq!(exit, Some(1), "{dev}: {out}");
        assert!(
            out.contains(command),
            "{dev}: the fix names `{command}`: {out}"
        );
        assert!(
            !out.contains("$iothub") && !out.contains("/messages/events"),
            "{dev}: no Azure topics: {out}"
        );
        let (exit, out, _) = connect(&w, dev, &["--to", "aws-local", "--json"]);
        assert_eq!(exit, Some(1), "{dev}: {out}");
        let f = failed_event(&out);
        assert_eq!(f["code"], code, "{dev}: {f}");
        assert_eq!(f["remedy"]["kind"], "aws", "{dev}: {f}");
        assert!(f["hint"].as_str().unwrap().contains(command), "{dev}: {f}");
    }
    let (exit, out, err) = connect(&w, "d1", &["--to", "aws-local"]);
    assert_eq!(exit, Some(0), "{out}{err}");
    assert!(out.contains("local AWS IoT Core"), "{out}");
    assert!(out.contains("aws flavor"), "{out}");
    let (exit, out, _) = connect(&w, "d1", &["--to", "aws-local", "--json"]);
    assert_eq!(exit, Some(0), "{out}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let sub = events
        .iter()
        .find(|e| e["event"] == "subscribed")
        .expect(&out);
    assert_eq!(sub["topics"][0]["topic"], "device/d1/telemetry");
    let published = events
        .iter()
        .find(|e| e["event"] == "published")
        .expect(&out);
    assert_eq!(published["topic"], "device/d1/telemetry");
    let trip = events
        .iter()
        .find(|e| e["event"] == "round-trip")
        .expect(&out);
    assert_eq!(trip["kind"], "echo");
    let recorded = events
        .iter()
        .find(|e| e["event"] == "hub-recorded")
        .expect(&out);
    assert_eq!(
        recorded["recorded"], 1,
        "aws serve saw the message: {recorded}"
    );
    let summary = events.iter().find(|e| e["event"] == "summary").expect(&out);
    assert_eq!(summary["ok"], true);
    stop(server);
}

#[test]
fn a_second_connection_with_the_same_client_id_is_named_as_a_takeover() {
    let w = workspace();
    let (server, _port, _trust) = serve(&w);
    let mut first = Command::new(env!("CARGO_BIN_EXE_chainsmith"))
        .env("CHAINSMITH_WORKSPACE", w.ws())
        .args([
            "--json",
            "connect",
            "d1",
            "--to",
            "aws-local",
            "--count",
            "6",
        ])
        .args(["--interval", "1s", "--timeout", "5s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    // Wait until the first device publishes, then connect the second as the same client id.
    let mut seen = Vec::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        let published = l.contains("\"published\"");
        seen.push(l);
        if published {
            break;
        }
    }
    let (exit, out, _) = connect(&w, "d1", &["--to", "aws-local"]);
    assert_eq!(exit, Some(0), "the second connection works: {out}");
    seen.extend(lines.map_while(Result::ok));
    let status = first.wait().unwrap();
    stop(server);
    assert_eq!(status.code(), Some(1), "{seen:?}");
    let f = failed_event(&seen.join("\n"));
    assert_eq!(f["code"], "aws-taken-over", "{f}");
    assert!(f["cause"].as_str().unwrap().contains("took over"), "{f}");
}

#[test]
fn fleet_run_to_aws_local_connects_twenty_devices() {
    let w = Ws::new();
    w.ok(&["new", "root", "root"]);
    register_ca(&w, "root", &["--active"]);
    w.ok(&["new", "intermediate", "fleet-ca", "--issuer", "root"]);
    register_ca(&w, "fleet-ca", &["--active"]);
    policy(&w, "device", DEVICE_POLICY);
    for i in 0..20 {
        device(&w, &format!("f{i:02}"), "fleet-ca", &[]);
    }
    w.ok(&["new", "device", "f-new", "--issuer", "fleet-ca"]);
    let (server, _port, _trust) = serve(&w);
    // A device AWS does not know is grouped under the rule aws serve names.
    let refused = w.path("refused.json");
    let out = w
        .cmd()
        .args([
            "fleet",
            "run",
            "f-new",
            "--to",
            "aws-local",
            "--messages",
            "1",
        ])
        .args(["--timeout", "5s", "--report"])
        .arg(&refused)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&refused).unwrap()).unwrap();
    let group = &r["failures"]["aws-certificate-not-registered"];
    assert!(group.is_object(), "{r}");
    assert_eq!(
        group["remedy"]["fix"]["fix"], "register-certificate",
        "{group}"
    );
    assert_eq!(group["devices"][0], "f-new", "{group}");
    let report = w.path("report.json");
    let out = w
        .cmd()
        .args([
            "fleet", "run", "f00", "f01", "f02", "f03", "f04", "f05", "f06", "f07", "f08",
        ])
        .args([
            "f09", "f10", "f11", "f12", "f13", "f14", "f15", "f16", "f17", "f18", "f19",
        ])
        .args(["--to", "aws-local"])
        .args(["--messages", "2", "--timeout", "5s", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    stop(server);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let s = r.to_string();
    assert_eq!(r["devices"], 20, "{s}");
    assert_eq!(r["connected"], 20, "{s}");
    assert_eq!(r["failed"], 0, "{s}");
    assert_eq!(r["flavor"], "aws", "{s}");
    assert!(
        r["messages"].to_string().contains("40"),
        "2 messages each: {s}"
    );
}

#[test]
fn connect_to_aws_endpoint_lists_the_likely_causes_and_passes_when_allowed() {
    let w = workspace();
    let (server, port, trust) = serve(&w);
    let endpoint = format!("127.0.0.1:{port}");
    let at = ["--to", "aws", "--endpoint", &endpoint, "--ca", &trust];
    let (exit, out, _) = connect(&w, "d-new", &at);
    assert_eq!(exit, Some(1), "{out}");
    for cause in [
        "likely causes, in order",
        "(1) the certificate",
        "aws iot register-certificate",
        "(2) the certificate is INACTIVE, REVOKED or PENDING_ACTIVATION",
        "aws iot update-certificate",
        "(3) the CA \"root\"",
        "aws iot register-ca-certificate",
        "(4) no policy attached",
        "aws iot attach-policy",
    ] {
        assert!(out.contains(cause), "{cause}: {out}");
    }
    let mut json = at.to_vec();
    json.push("--json");
    let (exit, out, _) = connect(&w, "d-new", &json);
    assert_eq!(exit, Some(1), "{out}");
    let f = failed_event(&out);
    assert_eq!(f["code"], "aws-closed", "{f}");
    assert!(
        f["fix"].as_str().unwrap().contains("aws iot attach-policy"),
        "{f}"
    );
    let (exit, out, err) = connect(&w, "d1", &at);
    assert_eq!(exit, Some(0), "{out}{err}");
    assert!(out.contains("AWS IoT Core"), "{out}");
    let err = w.fails(&["connect", "d1", "--to", "aws"]);
    assert!(err.contains("--endpoint"), "{err}");
    stop(server);
}

#[test]
fn connect_to_aws_local_without_a_running_service_says_to_start_it() {
    let w = Ws::new();
    w.ok(&["new", "root", "root"]);
    w.ok(&["new", "device", "d1", "--issuer", "root"]);
    let err = w.fails(&["connect", "d1", "--to", "aws-local"]);
    assert!(err.contains("chainsmith aws serve"), "{err}");
}

/// tmux on its own socket (so no other session is touched): `args` after `-L SOCKET`.
fn tmux(socket: &str, args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(["-L", socket, "-f", "/dev/null"])
        .args(args)
        .output()
        .expect("tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Capture the pane until it shows every one of `needles` (20 s at most).
fn pane_until(socket: &str, needles: &[&str]) -> String {
    let start = std::time::Instant::now();
    loop {
        let screen = tmux(socket, &["capture-pane", "-p", "-t", "tui"]);
        if needles.iter().all(|n| screen.contains(n)) {
            return screen;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "waiting for {needles:?}; the pane shows:\n{screen}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn the_hub_tab_switches_to_aws_showing_the_registry_and_the_running_service() {
    let w = Ws::new();
    w.ok(&["new", "root", "root"]);
    register_ca(&w, "root", &["--active"]);
    policy(&w, "device", DEVICE_POLICY);
    device(&w, "d1", "root", &[]);
    w.ok(&["new", "device", "d2", "--issuer", "root"]);
    w.ok(&["aws", "cert", "register", "d2"]);
    let socket = format!("chainsmith-awsfaces-{}", std::process::id());
    let bin = env!("CARGO_BIN_EXE_chainsmith");
    let ws = w.ws();
    tmux(
        &socket,
        &[
            "new-session",
            "-d",
            "-s",
            "tui",
            "-x",
            "120",
            "-y",
            "40",
            bin,
            "--workspace",
            ws.to_str().unwrap(),
        ],
    );
    pane_until(&socket, &["PKI"]);
    tmux(&socket, &["send-keys", "-t", "tui", "2"]);
    pane_until(&socket, &["Hub · CAs", "cloud"]);
    tmux(&socket, &["send-keys", "-t", "tui", "c"]);
    let screen = pane_until(
        &socket,
        &["AWS IoT Core (local)", "aws serve not running", "d2"],
    );
    for seen in [
        "CAs · 1",
        "ACTIVE",
        "root",
        "Certificates · 2",
        "INACTIVE",
        "d1",
        "Things · 1",
        "Policies · 1",
        "device",
        "Templates · 0",
    ] {
        assert!(screen.contains(seen), "{seen}:\n{screen}");
    }
    // The Azure keys act on the IoT Hub, not shown now: the footer names only the switch.
    assert!(!screen.contains("enroll"), "{screen}");
    let (server, port, _trust) = serve(&w);
    let running = format!("aws serve running · endpoint localhost:{port}");
    pane_until(&socket, &[&running]);
    stop(server);
    pane_until(&socket, &["aws serve not running"]);
    tmux(&socket, &["send-keys", "-t", "tui", "c"]);
    pane_until(&socket, &["Hub · CAs"]);
    tmux(&socket, &["send-keys", "-t", "tui", "q"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    tmux(&socket, &["kill-server"]);
}
