//! `hub trust --install` / `--uninstall`: the hub's CA in a Debian trust store (the real
//! `update-ca-certificates`, pointed at a temporary file tree with `--system-root`), checked by
//! `openssl verify` against the rebuilt bundle and by the official Python SDK connecting with no
//! server certificate of its own, as the IoT Central sample does.

use crate::common::{Ws, openssl};
use crate::isolated;
use chainsmith_test_support::hub_util;

use std::process::Command;
use std::time::Duration;

use chainsmith::hub::{Auth, Hub, HubConfig};
use chainsmith::ops::ValidityArg;

fn has_update_tool() -> bool {
    std::path::Path::new("/usr/sbin/update-ca-certificates").exists()
}

#[test]
fn install_adds_the_hub_ca_to_the_bundle_and_uninstall_takes_it_out() {
    if !has_update_tool() {
        println!("SKIPPED hub_trust_system: update-ca-certificates is not installed");
        return;
    }
    let w = Ws::new();
    let root = w.path("image");
    let root_s = root.to_str().unwrap();
    // Another CA already in the store, as on any system: it must stay trusted throughout.
    let other_dir = root.join("usr/local/share/ca-certificates");
    std::fs::create_dir_all(&other_dir).unwrap();
    let (ok, out) = openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "other.key",
            "-out",
            other_dir.join("other-ca.crt").to_str().unwrap(),
            "-subj",
            "/CN=Some Other CA",
            "-days",
            "30",
        ],
        w.dir.path(),
    );
    assert!(ok, "{out}");
    let other = other_dir.join("other-ca.crt");
    let v = w.json(&["hub", "trust", "--install", "--system-root", root_s]);
    assert_eq!(v["system"]["installed"], true, "{v}");
    assert_eq!(v["system"]["changed"], true, "{v}");
    let ca = v["trust"].as_str().unwrap().to_string();
    // Node reads no system store: the output says how to make it trust the hub.
    assert_eq!(v["node"]["reads_system_store"], false, "{v}");
    assert_eq!(v["node"]["env"], format!("NODE_EXTRA_CA_CERTS={ca}"), "{v}");
    let bundle = root.join("etc/ssl/certs/ca-certificates.crt");
    let file = v["system"]["file"].as_str().unwrap().to_string();
    assert!(file.starts_with(&format!(
        "{root_s}/usr/local/share/ca-certificates/chainsmith-local-hub-"
    )));
    assert!(file.ends_with(".crt"));
    let verify = || {
        openssl(
            &["verify", "-CAfile", bundle.to_str().unwrap(), &ca],
            w.dir.path(),
        )
    };
    let (ok, out) = verify();
    assert!(ok, "the rebuilt bundle trusts the hub's CA: {out}");

    // Twice is harmless; the text says so.
    let again = w.ok(&["hub", "trust", "--install", "--system-root", root_s]);
    assert!(
        again.contains("already in the system trust store"),
        "{again}"
    );
    assert!(
        again.contains("Node.js does not read the system trust store")
            && again.contains(&format!("`NODE_EXTRA_CA_CERTS={ca}`"))
            && again.contains("node --use-openssl-ca"),
        "{again}"
    );

    // Plain `hub trust` still prints the path, and reports the state in JSON.
    assert_eq!(w.ok(&["hub", "trust"]).trim(), ca);

    let out = w.ok(&["hub", "trust", "--uninstall", "--system-root", root_s]);
    assert!(out.contains("removed the hub's CA"), "{out}");
    assert!(!std::path::Path::new(&file).exists());
    let (ok, out) = verify();
    assert!(
        !ok,
        "after --uninstall the bundle no longer trusts the hub: {out}"
    );
    let (ok, out) = openssl(
        &[
            "verify",
            "-CAfile",
            bundle.to_str().unwrap(),
            other.to_str().unwrap(),
        ],
        w.dir.path(),
    );
    assert!(ok, "the other CA is still trusted: {out}");
    let out = w.ok(&["hub", "trust", "--uninstall", "--system-root", root_s]);
    assert!(out.contains("nothing to remove"), "{out}");

    // A tree with no other CA at all: update-ca-certificates leaves the bundle alone there, and
    // the hub's CA must still come out of it.
    std::fs::remove_file(&other).unwrap();
    w.ok(&["hub", "trust", "--install", "--system-root", root_s]);
    assert!(verify().0);
    w.ok(&["hub", "trust", "--uninstall", "--system-root", root_s]);
    let (ok, out) = verify();
    assert!(!ok, "an empty store no longer trusts the hub: {out}");
}

#[test]
fn a_store_that_cannot_be_written_is_named_with_the_way_out() {
    let w = Ws::new();
    // A file where the tree's directories should be: no user, root included, can write there.
    std::fs::write(w.path("not-a-dir"), "x").unwrap();
    let err = w.fails(&[
        "hub",
        "trust",
        "--install",
        "--system-root",
        w.path("not-a-dir").to_str().unwrap(),
    ]);
    assert!(err.contains("cannot write"), "{err}");
    assert!(
        err.contains("chainsmith hub trust"),
        "names the alternative: {err}"
    );
    let out = w
        .cmd()
        .args(["--json", "hub", "trust", "--install", "--system-root"])
        .arg(w.path("not-a-dir"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "permission", "{v}");
    assert!(!out.status.success());
    assert!(!w.path("not-a-dir").is_dir());
}

/// The IoT Central sample passes no server certificate: with the hub's CA installed in the trust
/// store, the official Python SDK connects unmodified; with it uninstalled, it cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_without_a_server_certificate_connects_once_installed() {
    if !has_update_tool() {
        println!("SKIPPED hub_trust_system: update-ca-certificates is not installed");
        return;
    }
    if !isolated::in_own_netns(
        "hub_trust_system::the_sdk_without_a_server_certificate_connects_once_installed",
    ) {
        return;
    }
    let fx = hub_util::Fixture::new();
    fx.store.add_ca("root", true).unwrap();
    fx.device("central-dev-1", Some("line2"), ValidityArg::default());
    fx.register("central-dev-1", Auth::Ca, None);
    let chain = fx.chain_file(&["central-dev-1", "line2"]);
    let key = fx.key_file("central-dev-1");
    let system = chainsmith::hub::system_trust::SystemTrust::under(&fx.dir.path().join("image"));
    system.install(&fx.store).unwrap();

    let hub = Hub::start(
        fx.root(),
        HubConfig {
            port: 8883,
            ..Default::default()
        },
    )
    .await
    .expect("127.0.0.1:8883 is free in this network namespace");
    let run = |bundle: std::path::PathBuf| {
        let chain = chain.clone();
        let key = key.clone();
        tokio::task::spawn_blocking(move || {
            Command::new("python3")
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/system_trust_device.py"
                ))
                .arg("central-dev-1")
                .arg(&chain)
                .arg(&key)
                .env("SSL_CERT_FILE", bundle)
                .env_remove("SSL_CERT_DIR")
                .output()
                .unwrap()
        })
    };
    let out = tokio::time::timeout(Duration::from_secs(60), run(system.bundle()))
        .await
        .expect("the SDK hung")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("sent"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    system.uninstall(&fx.store).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), run(system.bundle()))
        .await
        .expect("the SDK hung")
        .unwrap();
    assert!(
        !out.status.success(),
        "without the hub's CA in the store the SDK must not connect: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    hub.shutdown().await;
}
