//! "Now" is an input: snapshots, lint and the CLI's day counts do not depend on the day the suite
//! runs. The proof runs the snapshot tests (and these) again with the system clock a year ahead.

use crate::common::Ws;
use crate::isolated;
use time::OffsetDateTime;

/// In the child: the earliest time its system clock may show if faketime really moved it.
const MOVED_AFTER: &str = "CHAINSMITH_TEST_CLOCK_AFTER";
const NOW: &str = "2026-06-01T12:00:00Z";

#[test]
fn snapshots_do_not_depend_on_the_date() {
    const NAME: &str = "clock::snapshots_do_not_depend_on_the_date";
    if isolated::inside(NAME) {
        let after: i64 = std::env::var(MOVED_AFTER).unwrap().parse().unwrap();
        assert!(
            OffsetDateTime::now_utc().unix_timestamp() >= after,
            "the child's system clock was not moved a year ahead"
        );
        return;
    }
    let after = (OffsetDateTime::now_utc() + time::Duration::days(364)).unix_timestamp();
    // Every snapshot compares with the same .snap files; INSTA_UPDATE=no in the child.
    isolated::with_clock_ahead(
        NAME,
        &["tui_snapshots::", "clock::"],
        365,
        &[(MOVED_AFTER, after.to_string())],
    );
}

/// `CHAINSMITH_NOW` fixes what every command measures against: new windows, days left, lint,
/// `list --expiring`; a value that is not a time is refused by name.
#[test]
fn the_cli_measures_against_chainsmith_now() {
    let w = Ws::new();
    let run = |args: &[&str]| {
        let out = w
            .cmd()
            .env("CHAINSMITH_NOW", NOW)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ok = |args: &[&str]| {
        let (code, out, err) = run(args);
        assert_eq!(code, Some(0), "{args:?}: {out}{err}");
        out
    };
    ok(&[
        "new",
        "root",
        "r",
        "--not-before",
        "2026-01-01T00:00:00Z",
        "--not-after",
        "2036-01-01T00:00:00Z",
    ]);
    ok(&["new", "device", "fresh", "--issuer", "r"]);
    ok(&[
        "new",
        "device",
        "old",
        "--issuer",
        "r",
        "--not-before",
        "2019-01-01T00:00:00Z",
        "--not-after",
        "2020-01-01T00:00:00Z",
    ]);

    // A new window starts five minutes before "now" and lasts exactly the default year.
    let v: serde_json::Value = serde_json::from_str(&ok(&["show", "fresh", "--json"])).unwrap();
    assert_eq!(v["meta"]["not_before"], "2026-06-01T11:55:00Z", "{v:#}");
    assert_eq!(v["meta"]["not_after"], "2027-06-01T12:00:00Z", "{v:#}");
    assert_eq!(v["certificate"]["days_left"], 365);
    let v: serde_json::Value = serde_json::from_str(&ok(&["list", "--json"])).unwrap();
    let days = |name: &str| {
        v["entities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap()["days_left"]
            .as_i64()
            .unwrap()
    };
    assert_eq!((days("r"), days("fresh"), days("old")), (3500, 365, -2344));

    let (code, out, _) = run(&["lint", "old"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("\"old\" expired 2344 days ago"), "{out}");
    let out = ok(&["list", "--expiring", "400d"]);
    assert!(out.contains("fresh") && out.contains("old"), "{out}");
    let out = ok(&["list", "--expiring", "300d"]);
    assert!(!out.contains("fresh") && out.contains("old"), "{out}");

    let out = w
        .cmd()
        .env("CHAINSMITH_NOW", "next tuesday")
        .args(["list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("CHAINSMITH_NOW=\"next tuesday\"") && err.contains("RFC 3339"),
        "{err}"
    );
}

/// The negative fixtures are dated from the workspace's clock, not the real day: under a
/// `CHAINSMITH_NOW` years away, "expired" ended 30 days before it, "not yet valid" starts ten
/// years after it, and the others start five minutes before it, as `openssl x509` reads them.
#[test]
fn negative_fixtures_are_dated_from_chainsmith_now() {
    const FAR: &str = "2031-03-01T00:00:00Z";
    let w = Ws::new();
    let spec = w.path("spec.toml");
    std::fs::write(
        &spec,
        "[[ca]]\nname = \"root\"\ndays = 9000\n\n\
         [[negative]]\nname = \"old\"\nkind = \"expired\"\nissuer = \"root\"\n\n\
         [[negative]]\nname = \"early\"\nkind = \"not_yet_valid\"\nissuer = \"root\"\n\n\
         [[negative]]\nname = \"stranger\"\nkind = \"unknown_ca\"\n\n\
         [[negative]]\nname = \"other-cn\"\nkind = \"wrong_cn\"\nissuer = \"root\"\n",
    )
    .unwrap();
    let out = w
        .cmd()
        .env("CHAINSMITH_NOW", FAR)
        .arg("apply")
        .arg(&spec)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let dates = |name: &str, file: &str| {
        let p = w.ws().join("entities").join(name).join(file);
        let (ok, text) = crate::common::openssl(
            &["x509", "-noout", "-dates", "-in", p.to_str().unwrap()],
            w.dir.path(),
        );
        assert!(ok, "{text}");
        text
    };
    let old = dates("old", "cert.pem");
    assert!(
        old.contains("notBefore=Dec 31 00:00:00 2030 GMT")
            && old.contains("notAfter=Jan 30 00:00:00 2031 GMT"),
        "{old}"
    );
    let early = dates("early", "cert.pem");
    assert!(
        early.contains("notBefore=Feb 26 00:00:00 2041 GMT")
            && early.contains("notAfter=Feb 26 00:00:00 2042 GMT"),
        "{early}"
    );
    for (name, file, until) in [
        ("other-cn", "cert.pem", "Feb 29 00:00:00 2032"),
        ("stranger", "cert.pem", "Feb 29 00:00:00 2032"),
        ("stranger", "foreign-ca.pem", "Feb 26 00:00:00 2041"),
    ] {
        let d = dates(name, file);
        assert!(
            d.contains("notBefore=Feb 28 23:55:00 2031 GMT")
                && d.contains(&format!("notAfter={until} GMT")),
            "{name}/{file}: {d}"
        );
    }
}

/// The local hub judges a device certificate's window by its own clock, not the real day:
/// a device made in a workspace fixed at T (valid T-5min .. T+365d) connects to a hub whose
/// clock reads T+1d, is refused as `expired` by a hub at T+400d and as `not-yet-valid` by a
/// hub at T-1d, whatever day the suite runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_judges_validity_by_its_clock() {
    use chainsmith::clock::Clock;
    use chainsmith::hub::{Auth, Hub, HubConfig, HubEvent};
    use chainsmith::ops::ValidityArg;
    use chainsmith_test_support::hub_util::{Client, Fixture, username};
    use time::Duration;
    use time::macros::datetime;

    let t = datetime!(2031-03-01 00:00 UTC);
    let fx = Fixture::at(t);
    fx.device("dev-1", Some("line2"), ValidityArg::default());
    fx.store.add_ca("root", true).unwrap();
    fx.register("dev-1", Auth::Ca, None);
    let id = fx.identity(&["dev-1", "line2"]);

    // (the hub's time, Ok(()) or the refusal's kind)
    let cases = [
        (t + Duration::days(1), Ok(())),
        (t + Duration::days(400), Err("expired")),
        (t - Duration::days(1), Err("not-yet-valid")),
    ];
    for (at, want) in cases {
        let hub = Hub::start(
            fx.root(),
            HubConfig {
                port: 0,
                clock: Clock::Fixed(at),
                ..HubConfig::default()
            },
        )
        .await
        .unwrap();
        let mut events = hub.events();
        let (_c, ack) = Client::connect(
            hub.addr,
            fx.tls(Some(&id)),
            "dev-1",
            Some(&username("dev-1")),
        )
        .await
        .unwrap();
        let got = loop {
            let e = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
                .await
                .expect("the hub said nothing")
                .unwrap();
            match e {
                HubEvent::Accepted { .. } => break Ok(()),
                HubEvent::Refused { kind, reason, .. } => break Err((kind, reason)),
                _ => {}
            }
        };
        let ack = ack.expect("a CONNACK");
        match (want, got) {
            (Ok(()), Ok(())) => {
                assert_eq!(ack.code, rumqttc::mqttbytes::v4::ConnectReturnCode::Success)
            }
            (Err(kind), Err((k, reason))) => {
                assert_eq!(k, kind, "hub at {at}: {reason}");
                assert_ne!(ack.code, rumqttc::mqttbytes::v4::ConnectReturnCode::Success);
            }
            (want, got) => panic!("hub at {at}: wanted {want:?}, got {got:?}"),
        }
        hub.shutdown().await;
    }
}

/// Engine and face code asks a [`chainsmith::clock::Clock`] for "now"; a read of the real
/// clock outside `src/clock.rs` is one of the few below, each with its reason, or this fails
/// naming it (so a new one is either given the workspace's clock or argued for here).
#[test]
fn only_the_allowed_places_read_the_real_clock() {
    use std::collections::BTreeMap;
    use std::path::Path;
    // (file under a crate's src/, how many reads, why real time is right there)
    const ALLOWED: [(&str, usize, &str); 4] = [
        (
            "local_tls.rs",
            2,
            "the hub's TLS CA and server certificate: SDKs, openssl and rustls judge them by their real clocks",
        ),
        (
            "pki/inspect.rs",
            1,
            "CertView::from_der for callers that read names and dates only, or a server certificate real TLS already judged; a validity verdict goes through from_der_at",
        ),
        (
            "pki/issue.rs",
            1,
            "Validity::days, the window of those TLS certificates (and of tests)",
        ),
        (
            "tui/engines.rs",
            3,
            "the Hub tab's log stamps: when an event arrived, shown as HH:MM:SS, never compared with a certificate",
        ),
    ];
    const READS: [&str; 4] = [
        "now_utc",
        "Clock::System.now()",
        "SystemTime::now()",
        "Validity::days(",
    ];
    fn sources(p: &Path, out: &mut Vec<std::path::PathBuf>) {
        if p.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                sources(&e.unwrap().path(), out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p.to_path_buf());
        }
    }
    // The faces' sources and every crate's, named relative to their `src/`.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("src")];
    for c in std::fs::read_dir(root.join("crates")).unwrap() {
        let c = c.unwrap().path();
        // The tests' own support crate may read the real clock (a broker's certificate).
        if !c.ends_with("chainsmith-test-support") {
            dirs.push(c.join("src"));
        }
    }
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    for (src, f) in dirs.iter().flat_map(|src| {
        let mut files = Vec::new();
        sources(src, &mut files);
        files.into_iter().map(move |f| (src, f))
    }) {
        let rel = f.strip_prefix(src).unwrap().to_string_lossy().into_owned();
        if rel == "clock.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        // Unit tests may use the real clock: the non-test code is what comes before them.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let n: usize = READS.iter().map(|r| code.matches(r).count()).sum();
        if n > 0 {
            found.insert(rel, n);
        }
    }
    let allowed: BTreeMap<String, usize> = ALLOWED
        .iter()
        .map(|(f, n, _)| (f.to_string(), *n))
        .collect();
    assert_eq!(
        found, allowed,
        "reads of the real clock (file: count) differ from the allowed ones; give the code the workspace's or the hub's clock, or add the place to ALLOWED with its reason"
    );
}

/// `connect` against the local hub it starts in-process judges by `CHAINSMITH_NOW`: a device
/// made under a fixed day connects a day later and is refused as expired two years later; a
/// `hub serve` started under that day admits it too.
#[test]
fn connect_to_the_local_hub_follows_chainsmith_now() {
    const MADE: &str = "2031-03-01T00:00:00Z";
    let w = Ws::new();
    let at = |now: &str, args: &[&str]| {
        let out = w
            .cmd()
            .env("CHAINSMITH_NOW", now)
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!text.contains("panicked"), "{text}");
        (out.status.success(), text)
    };
    for args in [
        &["new", "root", "r"][..],
        &["new", "device", "sensor-7", "--issuer", "r"],
        &["hub", "ca", "add", "r", "--verified"],
        &["hub", "device", "add", "sensor-7", "--auth", "ca"],
    ] {
        let (ok, text) = at(MADE, args);
        assert!(ok, "{args:?}: {text}");
    }
    let connect = ["connect", "sensor-7", "--count", "1", "--timeout", "5s"];
    let (ok, text) = at("2031-03-02T00:00:00Z", &connect);
    assert!(ok, "{text}");
    let (ok, text) = at("2033-03-01T00:00:00Z", &connect);
    assert!(!ok && text.contains("expired"), "{text}");

    // `hub serve` under the same day starts its clock there: the device connects to it.
    struct Serve(std::process::Child);
    impl Drop for Serve {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _hub = Serve(
        std::process::Command::new(assert_cmd::cargo::cargo_bin("chainsmith"))
            .env("CHAINSMITH_WORKSPACE", w.ws())
            .env("CHAINSMITH_NOW", MADE)
            .args([
                "hub",
                "serve",
                "--port",
                "0",
                "--amqp-port",
                "0",
                "--ws-port",
                "0",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let control = w.ws().join("hub/control.sock");
    let start = std::time::Instant::now();
    while std::os::unix::net::UnixStream::connect(&control).is_err() {
        assert!(start.elapsed().as_secs() < 20, "hub serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let port = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(chainsmith::hub::control::status(&control))
        .unwrap()
        .port;
    let (ok, text) = at("2031-03-02T00:00:00Z", &connect);
    assert!(
        ok && text.contains(&format!("127.0.0.1:{port} (local hub")),
        "{text}"
    );
}
