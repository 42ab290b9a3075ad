//! Issue 11, item 5: what an input may cost is bounded. Before authentication a hub connection
//! may send only a small CONNECT and only so many may wait; the control socket reads a bounded
//! line; `inspect` of a large bundle does linear work; a PKCS#12 file or encrypted key asking for
//! billions of key-derivation iterations is refused before any of them run. The figures (RSS,
//! times) are in `cargo bench --bench bounds`; these tests check the caps' behaviour.

use crate::common::Ws;
use chainsmith_test_support::der_edit::{bump_iterations, der_encode, der_parse, stall_pfx_mac};
use chainsmith_test_support::hub_util::{Client, Fixture, publish_acked, username, varint};
use chainsmith_test_support::workspace::self_signed_device;

use std::sync::Arc;
use std::time::Duration;

use chainsmith::export::pfx::{self, PfxProfile};
use chainsmith::hub::server::{
    MAX_CONNECT_BYTES, MAX_UNAUTHENTICATED, MAX_UNAUTHENTICATED_PER_PEER,
};
use chainsmith::hub::{Auth, HubEvent, HubHandle};
use chainsmith::ops::ValidityArg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

async fn hub_with_good_device(fx: &Fixture) -> HubHandle {
    fx.store.add_ca("root", true).unwrap();
    fx.device("good", Some("line2"), ValidityArg::default());
    fx.register("good", Auth::Ca, None);
    chainsmith_test_support::hub_util::start_hub(fx.root()).await
}

/// The good device connects (retrying while the hub frees slots) and gets a PUBACK.
async fn good_device_works(fx: &Fixture, hub: &HubHandle) {
    let cfg = fx.tls(Some(&fx.identity(&["good", "line2"])));
    for _ in 0..50 {
        if let Ok((mut c, Some(ack))) =
            Client::connect(hub.addr, cfg.clone(), "good", Some(&username("good"))).await
        {
            if ack.code == rumqttc::mqttbytes::v4::ConnectReturnCode::Success {
                assert!(publish_acked(&mut c, "devices/good/messages/events/", b"ok", 1).await);
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the good device could not connect");
}

/// An event whose Dropped reason contains `needle`, within a few seconds.
async fn dropped_with(ev: &mut tokio::sync::broadcast::Receiver<HubEvent>, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, ev.recv()).await {
            Ok(Ok(HubEvent::Dropped { reason, .. })) if reason.contains(needle) => return reason,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            _ => panic!("no Dropped event mentioning \"{needle}\""),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_connect_is_refused_before_authentication() {
    let fx = Fixture::new();
    let hub = hub_with_good_device(&fx).await;
    let mut ev = hub.events();
    let addr = hub.addr;
    // Clients without a certificate, each announcing a 255 KB CONNECT and sending 64 KB of it
    // (or sending 64 KB of one that never says its length is over): the hub must close them
    // now, not hold the bytes until its 10 s CONNECT deadline.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let cfg = fx.tls(None);
        tasks.push(tokio::spawn(async move {
            let mut c = Client::tls(addr, cfg).await.unwrap();
            let mut head = vec![0x10];
            head.extend(varint(if i % 2 == 0 { 255 * 1024 } else { 100 }));
            let _ = c.send_raw(&head).await;
            // The odd ones declared 100 bytes: their "CONNECT" is garbage but the point is the
            // even ones; both kinds must be closed promptly.
            let _ = c.send_raw(&vec![0u8; 64 * 1024]).await;
            c.closed_within(Duration::from_secs(5)).await
        }));
    }
    for t in tasks {
        assert!(
            t.await.unwrap(),
            "a connection kept sending an unfinished CONNECT and stayed open"
        );
    }
    let reason = dropped_with(&mut ev, "before authentication").await;
    assert!(
        reason.contains(&format!("{} KiB", MAX_CONNECT_BYTES / 1024)),
        "{reason}"
    );
    good_device_works(&fx, &hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_are_capped_and_a_newcomer_still_gets_in() {
    let fx = Fixture::new();
    let hub = hub_with_good_device(&fx).await;
    let mut ev = hub.events();
    let addr = hub.addr;
    // Each peer may hold only its share, so the total takes several source addresses.
    let mut held = Vec::new();
    for peer in 0..MAX_UNAUTHENTICATED / MAX_UNAUTHENTICATED_PER_PEER {
        let from = std::net::SocketAddr::from(([127, 0, 1, 10 + peer as u8], 0));
        for _ in 0..MAX_UNAUTHENTICATED_PER_PEER {
            let s = tokio::net::TcpSocket::new_v4().unwrap();
            s.bind(from).unwrap();
            held.push(s.connect(addr).await.unwrap());
        }
    }
    for _ in 0..500 {
        if hub.load().unauthenticated == MAX_UNAUTHENTICATED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The total is reached, and a peer that holds nothing still gets in: the oldest
    // connection of a peer holding the most is shut down to make room (four addresses used to
    // lock every device out: hostile pass). The device connects while the flood holds.
    good_device_works(&fx, &hub).await;
    let reason = dropped_with(&mut ev, "lost its oldest").await;
    assert!(
        reason.contains(&MAX_UNAUTHENTICATED.to_string()),
        "{reason}"
    );
    let mut closed = 0;
    for t in &mut held {
        let mut b = [0u8; 16];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(2), t.read(&mut b)).await
        {
            closed += 1;
        }
    }
    assert!(closed >= 1, "no flooding connection was shut down");
    assert!(
        closed < 8,
        "{closed} flooding connections were shut down for one device"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_socket_refuses_an_overlong_line() {
    let fx = Fixture::new();
    let hub = Arc::new(hub_with_good_device(&fx).await);
    let path = fx.dir.path().join("control.sock");
    let server = tokio::spawn(chainsmith::hub::server::serve_control(
        hub.clone(),
        path.clone(),
    ));
    for _ in 0..100 {
        if UnixStream::connect(&path).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = UnixStream::connect(&path).await.unwrap();
    let (mut r, mut w) = s.into_split();
    // 3 MiB and no newline, the connection kept open.
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..48 {
            if w.write_all(&chunk).await.is_err() {
                break;
            }
        }
        w
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the hub kept reading an endless request line");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("longer than 1 MiB"), "{answer}");
    drop(writer.await);
    // The hub still answers ordinary requests.
    let status = chainsmith::hub::control::status(&path).await.unwrap();
    assert_eq!(status.port, hub.addr.port());
    server.abort();
}

fn cert_pem_of(ws: &Ws, name: &str) -> String {
    std::fs::read_to_string(ws.ws().join("entities").join(name).join("cert.pem")).unwrap()
}

#[test]
fn inspect_does_not_treat_a_bundle_as_one_long_chain() {
    let ws = Ws::new();
    ws.ok(&["init"]);
    ws.ok(&["new", "device", "b-{01..30}", "--self-signed"]);
    let bundle: String = (1..=30)
        .map(|i| cert_pem_of(&ws, &format!("b-{i:02}")))
        .collect();
    std::fs::write(ws.path("bundle.pem"), bundle).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&ws.ok(&["--json", "inspect", "bundle.pem"])).unwrap();
    let lint = v["lint"].as_array().unwrap();
    assert_eq!(lint.len(), 30);
    let issuer_findings = lint
        .iter()
        .flat_map(|f| f.as_array().unwrap())
        .filter(|f| f["code"] == "issuer-not-ca")
        .count();
    // Unrelated certificates are not each other's issuers (before: 435 findings, and work
    // quadratic in the bundle size).
    assert_eq!(issuer_findings, 0, "{lint:?}");

    // A real chain is still read as one.
    ws.ok(&["new", "root", "r"]);
    ws.ok(&["new", "device", "d", "--issuer", "r"]);
    let chain = cert_pem_of(&ws, "d") + &cert_pem_of(&ws, "r");
    std::fs::write(ws.path("chain.pem"), chain).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&ws.ok(&["--json", "inspect", "chain.pem"])).unwrap();
    assert_eq!(v["items"][0]["signed_by_next"], true, "{v}");
    assert_eq!(v["lint"].as_array().unwrap().len(), 2, "{v}");
}

/// A PFX made as OpenSSL makes them, then its MAC iteration count set to 2^31 - 1.
fn stalling_pfx() -> Vec<u8> {
    let (cert, _, key) = self_signed_device("pfx-dev");
    stall_pfx_mac(&pfx::build(PfxProfile::Modern, "pw", "x", &cert, &key, &[]).unwrap())
}

#[test]
fn a_pfx_asking_for_billions_of_iterations_is_refused_before_the_work() {
    let ws = Ws::new();
    ws.ok(&["init"]);
    let evil = stalling_pfx();
    assert!(evil.len() < 4096);
    std::fs::write(ws.path("evil.pfx"), &evil).unwrap();
    // The engine reads the counts from the structure alone.
    let e = pfx::check_iterations(&evil, "evil.pfx")
        .unwrap_err()
        .to_string();
    assert!(e.contains("2147483647") && e.contains("2000000"), "{e}");
    for args in [
        vec!["inspect", "evil.pfx", "--password", "pw"],
        vec!["import", "evil.pfx", "--password", "pw", "--name", "evil"],
    ] {
        // The timeout only stops a hung run; the assertion is about the message.
        let out = ws
            .cmd()
            .args(&args)
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("iterations") && err.contains("2147483647"),
            "{args:?}: {err}"
        );
    }
    // An ordinary file still opens.
    let (cert, _, key) = self_signed_device("pfx-dev");
    let good = pfx::build(PfxProfile::Compat, "pw", "x", &cert, &key, &[]).unwrap();
    std::fs::write(ws.path("good.pfx"), &good).unwrap();
    ws.ok(&["inspect", "good.pfx", "--password", "pw"]);
}

#[test]
fn an_encrypted_key_asking_for_billions_of_iterations_is_refused() {
    let ws = Ws::new();
    ws.ok(&["init"]);
    let (_, cert_pem, key) = self_signed_device("pfx-dev");
    let enc = key
        .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_256_cbc(), b"pw")
        .unwrap();
    let der = pem::parse(&enc).unwrap().into_contents();
    let mut tree = der_parse(&der);
    assert!(bump_iterations(&mut tree[0]), "PBKDF2 with 2048 iterations");
    let evil = pem::encode(&pem::Pem::new("ENCRYPTED PRIVATE KEY", der_encode(&tree)));
    std::fs::write(ws.path("c.pem"), &cert_pem).unwrap();
    std::fs::write(ws.path("k.pem"), &evil).unwrap();
    let out = ws
        .cmd()
        .args([
            "import",
            "c.pem",
            "k.pem",
            "--password",
            "pw",
            "--name",
            "k",
        ])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("iterations") && err.contains("2147483647"),
        "{err}"
    );
    // The same key with OpenSSL's count imports.
    std::fs::write(ws.path("k.pem"), &enc).unwrap();
    ws.ok(&[
        "import",
        "c.pem",
        "k.pem",
        "--password",
        "pw",
        "--name",
        "k",
    ]);
}

/// Every file a command reads is a regular file of at most `MAX_INPUT_BYTES`, refused before it
/// is read: `inspect /dev/zero` took 14.6 GB, and `import`, `sign-csr` and `hub ca verify
/// --cert` the same (hostile pass).
#[test]
fn files_given_to_commands_are_bounded_before_they_are_read() {
    let ws = crate::common::Ws::new();
    ws.ok(&["new", "root", "r"]);
    ws.ok(&["hub", "ca", "add", "r"]);
    let big = ws.path("big.pem");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(chainsmith::store::MAX_INPUT_BYTES + 1)
        .unwrap();
    let big = big.to_str().unwrap();
    for args in [
        vec!["inspect", "/dev/zero"],
        vec!["inspect", big],
        vec!["sign-csr", "/dev/zero", "--issuer", "r"],
        vec!["import", "/dev/zero", "--name", "zz"],
        vec!["hub", "ca", "verify", "r", "--cert", "/dev/zero"],
    ] {
        let err = ws.fails(&args);
        assert!(
            err.contains("not a regular file") || err.contains("more than the 64 MiB"),
            "{args:?}: {err}"
        );
    }
}

/// An output that exists and is not a regular file is never read (it was, whole: 9.6 GB for
/// `crl --out /dev/zero`) nor written over, even with --force (a rename would replace the
/// device node).
#[test]
fn outputs_that_are_not_regular_files_are_refused() {
    use std::os::unix::fs::FileTypeExt;
    let ws = crate::common::Ws::new();
    ws.ok(&["new", "root", "r"]);
    for args in [
        vec!["crl", "r", "--out", "/dev/zero", "--force"],
        vec!["crl", "r", "--out", "/dev/zero"],
        vec![
            "new",
            "verification",
            "--issuer",
            "r",
            "--code",
            "ABCD",
            "--out",
            "/dev/zero",
            "--force",
        ],
    ] {
        let err = ws.fails(&args);
        assert!(err.contains("not a regular file"), "{args:?}: {err}");
    }
    assert!(
        std::fs::metadata("/dev/zero")
            .unwrap()
            .file_type()
            .is_char_device()
    );
}
