//! Lifecycle meets the hub (issue 14): revoking disables the device in the local hub and drops
//! it, a revoked certificate that still connects is logged, a compromised key stays dead, and
//! EZCA's guide runs as written. The device is the official Azure IoT Python SDK.
//!
//! The SDK dials port 8883 only (no port option), which other tests and a local Mosquitto hold
//! too: each SDK test runs again in its own network namespace (`isolated::in_own_netns`), and
//! [`SdkHub::start`] is the one place that binds the port.

use crate::isolated;
use chainsmith_test_support::hub_util::Fixture;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chainsmith::hub::{Auth, Hub, HubConfig, HubEvent, HubHandle};
use chainsmith::ops::ValidityArg;
use tokio::sync::broadcast;

/// The local hub on 127.0.0.1:8883 with its control socket, as `hub serve` runs it.
struct SdkHub {
    hub: Option<Arc<HubHandle>>,
    ctl: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl SdkHub {
    async fn start(fx: &Fixture) -> SdkHub {
        let config = HubConfig {
            port: 8883,
            ..Default::default()
        };
        let hub = Hub::start(fx.root(), config)
            .await
            .expect("127.0.0.1:8883 is free in this network namespace");
        let hub = Arc::new(hub);
        let ctl = tokio::spawn(chainsmith::hub::server::serve_control(
            hub.clone(),
            fx.store.control_path(),
        ));
        SdkHub {
            hub: Some(hub),
            ctl,
        }
    }
    fn events(&self) -> broadcast::Receiver<HubEvent> {
        self.hub.as_ref().expect("running").events()
    }
    async fn stop(mut self) {
        self.ctl.abort();
        let _ = (&mut self.ctl).await;
        if let Some(h) = self.hub.take().and_then(|h| Arc::try_unwrap(h).ok()) {
            h.shutdown().await;
        }
    }
}

fn script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lifecycle_sdk_device.py")
}

fn sdk_command(fx: &Fixture, id: &str, chain: &Path, key: &Path, mode: &str) -> Command {
    let mut c = Command::new("python3");
    c.arg(script())
        .arg(id)
        .arg(chain)
        .arg(key)
        .arg(fx.trust_file())
        .arg(mode);
    c
}

/// Connect once with the SDK and send a message: (connected, what it printed).
async fn sdk_once(fx: &Fixture, id: &str, chain: &Path, key: &Path) -> (bool, String) {
    let mut c = sdk_command(fx, id, chain, key, "once");
    let out = tokio::task::spawn_blocking(move || c.output().expect("python3"))
        .await
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success() && text.contains("\"sent\""), text)
}

/// An SDK device that stays connected until dropped.
struct Holder(std::process::Child);

impl Holder {
    async fn connect(fx: &Fixture, id: &str, chain: &Path, key: &Path) -> Holder {
        use std::io::{BufRead, BufReader};
        let mut child = sdk_command(fx, id, chain, key, "hold")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let stdout = child.stdout.take().unwrap();
        let first = tokio::task::spawn_blocking(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .find(|l| l.contains("\"sent\"") || l.contains("\"error\""))
        })
        .await
        .unwrap();
        assert!(
            first.as_deref().is_some_and(|l| l.contains("sent")),
            "the SDK device did not connect: {first:?}"
        );
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run the chainsmith binary on the fixture's workspace, off the runtime's workers.
pub async fn cli(fx: &Fixture, args: &[&str]) -> (bool, String) {
    let mut c = assert_cmd::Command::cargo_bin("chainsmith").unwrap();
    c.env("CHAINSMITH_WORKSPACE", fx.root()).args(args);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("panicked"), "{text}");
    (out.status.success(), text)
}

async fn cli_ok(fx: &Fixture, args: &[&str]) -> String {
    let (ok, text) = cli(fx, args).await;
    assert!(ok, "chainsmith {args:?} failed: {text}");
    text
}

/// The first event `pick` accepts within 20 s.
async fn wait_for<T>(
    rx: &mut broadcast::Receiver<HubEvent>,
    mut pick: impl FnMut(&HubEvent) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(e)) => {
                if let Some(t) = pick(&e) {
                    return Some(t);
                }
            }
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            _ => return None,
        }
    }
}

fn ca_device(fx: &Fixture, id: &str) -> PathBuf {
    fx.device(id, Some("line2"), ValidityArg::default());
    fx.register(id, Auth::Ca, None);
    fx.chain_file(&[id, "line2"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_disable_on_hub_drops_and_refuses_the_sdk_device() {
    if !isolated::in_own_netns(
        "lifecycle_hub::revoke_disable_on_hub_drops_and_refuses_the_sdk_device",
    ) {
        return;
    }
    let fx = Fixture::new();
    fx.store.add_ca("root", true).unwrap();
    let chain = ca_device(&fx, "rev-dev");
    fx.device("bystander", Some("line2"), ValidityArg::default());
    fx.register("bystander", Auth::Ca, None);
    let hub = SdkHub::start(&fx).await;
    let mut events = hub.events();

    let holder = Holder::connect(&fx, "rev-dev", &chain, &fx.key_file("rev-dev")).await;
    let out = cli_ok(&fx, &["revoke", "rev-dev", "--disable-on-hub"]).await;
    assert!(
        out.contains("Disabled hub device \"rev-dev\" (ca auth, by CN)"),
        "{out}"
    );
    assert!(
        out.contains("the running hub dropped its connection"),
        "{out}"
    );
    // The connected device was dropped by the running hub...
    let why = wait_for(&mut events, |e| match e {
        HubEvent::Disconnected { device, reason } if device == "rev-dev" => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(why.is_some_and(|r| r.contains("revoked")));
    drop(holder);
    // ...and the SDK cannot come back: CONNACK 5, the hub's reason "device disabled".
    let (ok, text) = sdk_once(&fx, "rev-dev", &chain, &fx.key_file("rev-dev")).await;
    assert!(!ok, "a disabled device connected: {text}");
    let kind = wait_for(&mut events, |e| match e {
        HubEvent::Refused { device, kind, .. } if device.as_deref() == Some("rev-dev") => {
            Some(kind.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(kind.as_deref(), Some("disabled"));
    // Only the device whose credential it was: another device of the same CA is untouched.
    assert!(fx.store.device("bystander").unwrap().enabled);
    assert!(!fx.store.device("rev-dev").unwrap().enabled);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_connects_like_on_iot_hub_but_the_hub_warns() {
    if !isolated::in_own_netns(
        "lifecycle_hub::a_revoked_certificate_connects_like_on_iot_hub_but_the_hub_warns",
    ) {
        return;
    }
    let fx = Fixture::new();
    fx.store.add_ca("root", true).unwrap();
    let chain = ca_device(&fx, "rev-warn");
    let out = cli_ok(&fx, &["revoke", "rev-warn"]).await;
    // Without --disable-on-hub it says how to cut the device off, here and in Azure.
    assert!(out.contains("--disable-on-hub"), "{out}");
    assert!(out.contains("az iot hub device-identity update"), "{out}");
    let hub = SdkHub::start(&fx).await;
    let mut events = hub.events();
    let (ok, text) = sdk_once(&fx, "rev-warn", &chain, &fx.key_file("rev-warn")).await;
    assert!(ok, "IoT Hub checks no CRL, nor does the local hub: {text}");
    let event = wait_for(&mut events, |e| match e {
        HubEvent::RevokedCertificate { device, .. } if device == "rev-warn" => Some(e.clone()),
        _ => None,
    })
    .await
    .expect("a warning event for the revoked certificate");
    // The engine's line says the fix in words; `hub serve` adds the command.
    let warning = event.line();
    assert!(
        warning.contains("revoked in this workspace")
            && warning.contains("disable the device on the hub")
            && !warning.contains("chainsmith")
            && !warning.contains("--"),
        "{warning}"
    );
    let printed = chainsmith::cli::hub_log_line(&event);
    assert!(
        printed.contains("chainsmith hub device disable rev-warn")
            && printed.contains("--disable-on-hub"),
        "{printed}"
    );
    hub.stop().await;
}

#[test]
fn revoke_disables_a_self_signed_device_by_thumbprint_only() {
    let fx = Fixture::new();
    let req = chainsmith::ops::DeviceRequest {
        ids: vec!["selfie".into()],
        issuer: None,
        ..Default::default()
    };
    chainsmith::ops::new_devices(&fx.ws, &req).unwrap();
    fx.register("selfie", Auth::SelfSigned, Some("selfie"));
    // A self-signed device holding another certificate is left alone.
    fx.store
        .add_device(
            "other",
            Auth::SelfSigned,
            Some(&"AB".repeat(32)),
            None,
            None,
        )
        .unwrap();
    let r = chainsmith::ops::lifecycle::revoke(
        &fx.ws,
        &chainsmith::ops::lifecycle::RevokeRequest {
            name: "selfie".into(),
            reason: "superseded".into(),
            disable_on_hub: true,
        },
        &chainsmith::hub::HubStore::new(fx.ws.clone()),
    )
    .unwrap();
    assert_eq!(r.disabled.len(), 1, "{:?}", r.disabled);
    assert_eq!(r.disabled[0].id, "selfie");
    assert_eq!(r.disabled[0].matched, "primary thumbprint");
    assert!(
        r.message.contains("Disabled hub device \"selfie\""),
        "{}",
        r.message
    );
    assert!(!fx.store.device("selfie").unwrap().enabled);
    assert!(fx.store.device("other").unwrap().enabled);
}

/// `export NAME --format pem` into `dir`: the chain a device sends and its key.
async fn exported(fx: &Fixture, name: &str, dir: &str) -> (PathBuf, PathBuf) {
    let out = fx.dir.path().join(dir);
    let o = out.to_str().unwrap().to_string();
    cli_ok(fx, &["export", name, "--out", &o, "--force"]).await;
    (
        out.join(format!("{name}.chain.pem")),
        out.join(format!("{name}.key.pem")),
    )
}

/// EZCA's guide (seed 000) as written: the CA is trusted by the hub, devices are registered
/// "X.509 CA signed" before their certificates exist, a renewal needs no re-registration,
/// a revoked certificate's device is disabled (IoT Hub ignores CRLs), and after the issuing CA
/// is renewed with a new key every device still connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ezca_guide_flow_with_the_python_sdk() {
    if !isolated::in_own_netns("lifecycle_hub::ezca_guide_flow_with_the_python_sdk") {
        return;
    }
    let fx = Fixture::new();
    // Establish trust: upload the CA, "set certificate status to verified".
    cli_ok(&fx, &["hub", "ca", "add", "root", "--verified"]).await;
    // Register before issuing.
    for id in ["ezca-1", "ezca-2"] {
        cli_ok(&fx, &["hub", "device", "add", id, "--auth", "ca"]).await;
        cli_ok(&fx, &["new", "device", id, "--issuer", "line2"]).await;
    }
    let hub = SdkHub::start(&fx).await;
    let (chain1, key1) = exported(&fx, "ezca-1", "e1").await;
    let (chain2, key2) = exported(&fx, "ezca-2", "e2").await;
    for (id, chain, key) in [("ezca-1", &chain1, &key1), ("ezca-2", &chain2, &key2)] {
        let (ok, text) = sdk_once(&fx, id, chain, key).await;
        assert!(ok, "{id}: {text}");
    }

    // Renew without re-registering.
    let out = cli_ok(&fx, &["renew", "ezca-1"]).await;
    assert!(out.contains("no re-registration"), "{out}");
    let (chain1r, key1r) = exported(&fx, "ezca-1", "e1r").await;
    let (ok, text) = sdk_once(&fx, "ezca-1", &chain1r, &key1r).await;
    assert!(ok, "renewed ezca-1: {text}");

    // Revoke, and the device is refused.
    cli_ok(&fx, &["revoke", "ezca-2", "--disable-on-hub"]).await;
    let (ok, text) = sdk_once(&fx, "ezca-2", &chain2, &key2).await;
    assert!(!ok, "revoked ezca-2 connected: {text}");

    // Renew the issuing CA with a new key: the device still holding its chain from before
    // connects, so does one renewed under the new CA certificate, and a new device.
    cli_ok(&fx, &["renew", "line2", "--rekey"]).await;
    let (ok, text) = sdk_once(&fx, "ezca-1", &chain1r, &key1r).await;
    assert!(
        ok,
        "ezca-1 with its chain from before the CA re-key: {text}"
    );
    cli_ok(&fx, &["renew", "ezca-1"]).await;
    let (chain1n, key1n) = exported(&fx, "ezca-1", "e1n").await;
    let (ok, text) = sdk_once(&fx, "ezca-1", &chain1n, &key1n).await;
    assert!(ok, "ezca-1 renewed under the re-keyed CA: {text}");
    cli_ok(&fx, &["hub", "device", "add", "ezca-3", "--auth", "ca"]).await;
    cli_ok(&fx, &["new", "device", "ezca-3", "--issuer", "line2"]).await;
    let (chain3, key3) = exported(&fx, "ezca-3", "e3").await;
    let (ok, text) = sdk_once(&fx, "ezca-3", &chain3, &key3).await;
    assert!(ok, "new device under the re-keyed CA: {text}");
    hub.stop().await;
}

/// The code `hub ca add` / `renew --upload-to-hub` printed.
fn code_in(text: &str) -> String {
    let at = text.find("verification code").expect("a verification code") + 17;
    text[at..]
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 48)
        .expect("48 hex digits")
        .to_string()
}

/// A CA with several certificates (issue 14): the issuing CA is registered, re-keyed, and its
/// new certificate uploaded beside the earlier one; devices of either connect, the export of a
/// device issued before the re-key carries the CA certificate that signed it, and a hub that
/// no longer holds that certificate says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_keeps_all_its_certificates_in_the_hub() {
    if !isolated::in_own_netns("lifecycle_hub::a_ca_keeps_all_its_certificates_in_the_hub") {
        return;
    }
    let fx = Fixture::new();
    cli_ok(&fx, &["hub", "ca", "add", "line2", "--verified"]).await;
    for id in ["old-1", "new-1", "new-2"] {
        cli_ok(&fx, &["hub", "device", "add", id, "--auth", "ca"]).await;
    }
    cli_ok(&fx, &["new", "device", "old-1", "--issuer", "line2"]).await;
    let out = cli_ok(&fx, &["renew", "line2", "--rekey"]).await;
    assert!(
        out.contains("holds only \"line2\"'s earlier certificate"),
        "{out}"
    );
    // The new certificate goes in beside the old one, unverified, with its own code.
    let out = cli_ok(&fx, &["hub", "ca", "add", "line2"]).await;
    let code = code_in(&out);
    let list = cli_ok(&fx, &["hub", "ca", "list"]).await;
    assert_eq!(list.matches("line2").count(), 2, "{list}");
    assert!(
        list.contains("verified") && list.contains("unverified"),
        "{list}"
    );
    cli_ok(&fx, &["new", "device", "new-1", "--issuer", "line2"]).await;

    // Exported after the re-key, old-1's chain still carries the certificate that signed it,
    // and show says which one that is.
    let show = cli_ok(&fx, &["show", "old-1"]).await;
    assert!(show.contains("earlier certificate of \"line2\""), "{show}");
    let (old_chain, old_key) = exported(&fx, "old-1", "old1").await;
    let (new_chain, new_key) = exported(&fx, "new-1", "new1").await;

    let hub = SdkHub::start(&fx).await;
    let mut events = hub.events();
    let (ok, text) = sdk_once(&fx, "old-1", &old_chain, &old_key).await;
    assert!(ok, "old-1: {text}");
    let (ok, text) = sdk_once(&fx, "new-1", &new_chain, &new_key).await;
    assert!(
        !ok,
        "new-1 connected under an unverified certificate: {text}"
    );
    let kind = wait_for(&mut events, |e| match e {
        HubEvent::Refused { device, kind, .. } if device.as_deref() == Some("new-1") => {
            Some(kind.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(kind.as_deref(), Some("unverified"));
    // Proof of possession for the new certificate, by its code.
    let ver = fx.dir.path().join("ver.pem");
    let ver = ver.to_str().unwrap();
    cli_ok(
        &fx,
        &[
            "new",
            "verification",
            "--issuer",
            "line2",
            "--code",
            &code,
            "--out",
            ver,
        ],
    )
    .await;
    cli_ok(&fx, &["hub", "ca", "verify", "line2", "--cert", ver]).await;
    let (ok, text) = sdk_once(&fx, "new-1", &new_chain, &new_key).await;
    assert!(ok, "new-1 after proof of possession: {text}");

    // A hub that holds only the current certificate names the real cause for old-1.
    cli_ok(&fx, &["hub", "ca", "remove", "line2"]).await;
    cli_ok(&fx, &["hub", "ca", "add", "line2", "--verified"]).await;
    let (ok, text) = sdk_once(&fx, "old-1", &old_chain, &old_key).await;
    assert!(!ok, "{text}");
    let reason = wait_for(&mut events, |e| match e {
        HubEvent::Refused {
            device,
            kind,
            reason,
            ..
        } if device.as_deref() == Some("old-1") => Some((kind.clone(), reason.clone())),
        _ => None,
    })
    .await
    .expect("old-1 refused");
    assert_eq!(reason.0, "earlier-ca-certificate", "{reason:?}");
    assert!(
        reason.1.contains(
            "issued by an earlier certificate of CA \"line2\" that the hub no longer holds"
        ),
        "{reason:?}"
    );

    // renew --upload-to-hub --verified: re-key again, the hub takes the new certificate at once.
    let out = cli_ok(
        &fx,
        &["renew", "line2", "--rekey", "--upload-to-hub", "--verified"],
    )
    .await;
    assert!(out.contains("uploaded to the local hub"), "{out}");
    cli_ok(&fx, &["new", "device", "new-2", "--issuer", "line2"]).await;
    let (chain2, key2) = exported(&fx, "new-2", "new2").await;
    let (ok, text) = sdk_once(&fx, "new-2", &chain2, &key2).await;
    assert!(ok, "new-2: {text}");
    let (ok, text) = sdk_once(&fx, "new-1", &new_chain, &new_key).await;
    assert!(ok, "new-1 under the certificate before: {text}");
    hub.stop().await;
}

/// The TUI's revoke dialog offers the same choice, on by default for a registered device, and
/// the engine then disables it in the hub.
#[test]
fn tui_revoke_dialog_disables_a_registered_device_by_default() {
    use chainsmith::tui::theme::Theme;
    use chainsmith::tui::{Action, App, Command, dialog::Dialog, settle};
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let key = |c: KeyCode| Action::Key(KeyEvent::new(c, KeyModifiers::NONE));
    let fx = Fixture::new();
    fx.device("tui-reg", Some("line2"), ValidityArg::default());
    fx.register("tui-reg", Auth::Ca, None);
    let mut app = App::new(
        fx.root().to_path_buf(),
        Theme::plain(),
        time::OffsetDateTime::now_utc(),
        (100, 30),
    );
    let first = app.start();
    settle(&mut app, &fx.ws, first);
    // The device is the last row; End selects it, x opens the revoke dialog.
    app.update(key(KeyCode::End));
    app.update(key(KeyCode::Char('x')));
    let Some(Dialog::Form(f)) = &app.dialog else {
        panic!("revoke dialog")
    };
    assert_eq!(f.title, "Revoke tui-reg");
    assert!(
        f.fields[1].shown().contains("disable the device"),
        "{:?}",
        f.fields[1]
    );
    let c = app.update(key(KeyCode::Enter));
    assert!(
        matches!(
            &c,
            Some(Command::Revoke {
                disable_on_hub: true,
                ..
            })
        ),
        "{c:?}"
    );
    settle(&mut app, &fx.ws, c);
    assert!(!fx.store.device("tui-reg").unwrap().enabled);
    let Some(Dialog::Form(f)) = &app.dialog else {
        panic!()
    };
    let lines = f.result.as_ref().unwrap().join("\n");
    assert!(lines.contains("Disabled hub device \"tui-reg\""), "{lines}");
}
