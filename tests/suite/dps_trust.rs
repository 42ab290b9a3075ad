//! Issue 21 ("Trust II"), items 1–5, 9 and 10: the local DPS and `sign-csr` say no where Azure
//! says no. Nobody becomes someone else through a CSR, DPS never undoes what the hub's
//! operator did, a CA certificate never registers as a device, case variants of one
//! registration id are one device, refusals name the real problem, and no document a device
//! sends can make a state file unreadable. Each test drives the real hub over MQTT (the DPS
//! client of `dps_protocol`) or the real binary.

use crate::common::{Ws, openssl};
use crate::dps_protocol::{group, register, register_as};
use chainsmith_test_support::hub_util::{self, Client, Fixture, Identity};

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use chainsmith::azure::dps as wire;
use chainsmith::hub::{Auth, Hub, HubConfig, HubHandle};
use chainsmith::ops::ValidityArg;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet, Publish, Subscribe};

async fn start_hub(fx: &Fixture) -> HubHandle {
    Hub::start(
        fx.root(),
        HubConfig {
            port: 0,
            csr_signer: Some(chainsmith::hub::dps_csr_signer()),
            clock: fx.ws.clock(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// A group "issuing" over line2 that signs CSRs with line2, and a bootstrap device `id`.
fn issuing_group(fx: &Fixture, boot: &str) -> String {
    fx.device(boot, Some("line2"), ValidityArg::default());
    fx.store.dps_add_ca("line2", true).unwrap();
    let mut g = group("issuing", "line2");
    g.settings.issue_from = Some("line2".into());
    fx.store.dps_add_group(g).unwrap();
    fx.store.dps_id_scope().unwrap()
}

/// `openssl req` for a fresh key with `-subj subj` (and `extra` arguments), DER, base64.
fn csr_b64(dir: &Path, stem: &str, subj: &str, extra: &[&str]) -> String {
    let key = format!("{stem}.key");
    let csr = format!("{stem}.csr");
    let mut args = vec!["req", "-new", "-nodes", "-subj", subj, "-outform", "DER"];
    args.extend_from_slice(extra);
    if !extra.contains(&"-key") {
        args.extend_from_slice(&["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]);
        args.extend_from_slice(&["-keyout", &key]);
    }
    args.extend_from_slice(&["-out", &csr]);
    let (ok, out) = openssl(&args, dir);
    assert!(ok, "openssl req: {out}");
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.join(&csr)).unwrap())
}

/// A leaf for `subj` made outside chainsmith, as an attacker or another tool would: a fresh
/// P-256 key and `openssl x509 -req` signed by workspace entity `signer`'s key (CA:FALSE,
/// clientAuth). The identity presents it, then the certificates of `chain` (entity names).
fn openssl_leaf(fx: &Fixture, stem: &str, subj: &str, signer: &str, chain: &[&str]) -> Identity {
    let d = fx.dir.path();
    let csr = format!("{stem}.csr");
    let (key, pem_out) = (format!("{stem}.key"), format!("{stem}.pem"));
    let (ok, o) = openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-subj",
            subj,
            "-out",
            &csr,
        ],
        d,
    );
    assert!(ok, "{o}");
    std::fs::write(
        d.join("leaf.cnf"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let signer = fx.ws.dir_of(signer).unwrap();
    let (ok, o) = openssl(
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            signer.join("cert.pem").to_str().unwrap(),
            "-CAkey",
            signer.join("key.pem").to_str().unwrap(),
            "-days",
            "30",
            "-extfile",
            "leaf.cnf",
            "-out",
            &pem_out,
        ],
        d,
    );
    assert!(ok, "{o}");
    let der = |f: &str| {
        pem::parse(std::fs::read(d.join(f)).unwrap())
            .unwrap()
            .contents()
            .to_vec()
    };
    let mut certs = vec![der(&pem_out).into()];
    certs.extend(chain.iter().map(|n| fx.ws.load(n).unwrap().cert_der.into()));
    Identity {
        certs,
        key: der(&key),
    }
}

/// Connect `device` to the hub with `id`, expect a refusal, and return the hub's records of it.
async fn refused(
    hub: &HubHandle,
    fx: &Fixture,
    id: &Identity,
    device: &str,
) -> Vec<chainsmith::hub::RefusalRecord> {
    let (_c, ack) = Client::connect(
        hub.addr,
        fx.tls(Some(id)),
        device,
        Some(&hub_util::username(device)),
    )
    .await
    .unwrap();
    assert_ne!(ack.unwrap().code, ConnectReturnCode::Success);
    hub.refusals(Some(device), 0)
}

/// A registration with a CSR (the certificate-management preview's api-version).
async fn register_csr(
    addr: std::net::SocketAddr,
    fx: &Fixture,
    id: &Identity,
    regid: &str,
    scope: &str,
    csr: &str,
) -> crate::dps_protocol::Outcome {
    register(
        addr,
        fx,
        id,
        regid,
        scope,
        wire::API_VERSION_CSR,
        serde_json::json!({"registrationId": regid, "csr": csr}),
    )
    .await
    .unwrap()
}

fn message(o: &crate::dps_protocol::Outcome) -> String {
    o.body["message"].as_str().unwrap_or_default().to_string()
}

/// Item 1: a CSR whose subject holds two CNs (`/CN=dev-a/CN=victim`) is refused by DPS's
/// certificate issuance; nothing is issued, no hub device or workspace entity "victim" appears.
/// Before, DPS checked the first CN and issued a certificate whose subject kept the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dps_refuses_a_csr_with_two_cns() {
    let fx = Fixture::new();
    let scope = issuing_group(&fx, "dev-a");
    let hub = start_hub(&fx).await;
    let boot = fx.identity(&["dev-a", "line2"]);
    let csr = csr_b64(fx.dir.path(), "two", "/CN=dev-a/CN=victim", &[]);
    let out = register_csr(hub.addr, &fx, &boot, "dev-a", &scope, &csr).await;
    assert_eq!(out.status, 400, "{out:?}");
    assert!(message(&out).contains("2 CNs"), "{out:?}");
    assert!(fx.ws.load("victim").is_err());
    assert!(
        fx.store
            .load()
            .unwrap()
            .devices
            .iter()
            .all(|d| d.id != "victim")
    );
    // The issued subject is built from the registration id alone (CN only), even when the CSR
    // carries attributes a device certificate may have.
    let csr = csr_b64(fx.dir.path(), "org", "/CN=dev-a/O=Contoso", &[]);
    let out = register_csr(hub.addr, &fx, &boot, "dev-a", &scope, &csr).await;
    assert_eq!(out.status, 200, "{out:?}");
    let leaf = fx.ws.load("dev-a").unwrap();
    assert_eq!(leaf.meta.subject, "CN=dev-a", "{:?}", leaf.meta.subject);
    hub.shutdown().await;
}

/// Item 1, `sign-csr`: two CNs are refused; the certificate's CN is `--name`, never the
/// CSR's; a subject attribute no device certificate carries is refused.
#[test]
fn sign_csr_builds_the_subject_from_the_name() {
    let ws = Ws::new();
    ws.ok(&["new", "root", "r"]);
    ws.ok(&["new", "intermediate", "i", "--issuer", "r"]);
    let d = ws.dir.path();
    csr_b64(d, "two", "/CN=dev-a/CN=victim", &[]);
    let err = ws.fails(&["sign-csr", "two.csr", "--issuer", "i"]);
    assert!(err.contains("2 CNs") && err.contains("victim"), "{err}");
    assert!(ws.fails(&["show", "victim"]).contains("victim"));

    csr_b64(d, "other", "/CN=someone-else/O=Contoso", &[]);
    let out = ws.ok_all(&["sign-csr", "other.csr", "--issuer", "i", "--name", "dev-b"]);
    assert!(out.contains("someone-else"), "the CSR's CN is named: {out}");
    let (ok, subject) = openssl(
        &[
            "x509",
            "-noout",
            "-subject",
            "-in",
            ws.ws().join("entities/dev-b/cert.pem").to_str().unwrap(),
        ],
        d,
    );
    assert!(ok, "{subject}");
    assert!(
        subject.contains("CN = dev-b") && subject.contains("O = Contoso"),
        "{subject}"
    );
    assert!(!subject.contains("someone-else"), "{subject}");

    csr_b64(d, "serial", "/CN=dev-c/serialNumber=42", &[]);
    let err = ws.fails(&["sign-csr", "serial.csr", "--issuer", "i"]);
    assert!(err.contains("serialNumber"), "{err}");
}

/// Item 5: weak or unsupported CSR keys are refused for that reason, not as an altered
/// signature.
#[test]
fn sign_csr_names_weak_and_unsupported_keys() {
    let ws = Ws::new();
    ws.ok(&["new", "root", "r"]);
    let d = ws.dir.path();
    let (ok, out) = openssl(&["genrsa", "-out", "rsa1024.key", "1024"], d);
    assert!(ok, "{out}");
    csr_b64(d, "rsa1024", "/CN=weak-1", &["-key", "rsa1024.key"]);
    let err = ws.fails(&["sign-csr", "rsa1024.csr", "--issuer", "r"]);
    assert!(
        err.contains("RSA-1024") && !err.contains("altered"),
        "{err}"
    );

    let (ok, out) = openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-param_enc",
            "explicit",
            "-genkey",
            "-out",
            "explicit.key",
        ],
        d,
    );
    assert!(ok, "{out}");
    csr_b64(d, "explicit", "/CN=weak-2", &["-key", "explicit.key"]);
    let err = ws.fails(&["sign-csr", "explicit.csr", "--issuer", "r"]);
    assert!(err.contains("explicit curve parameters"), "{err}");

    let (ok, out) = openssl(
        &[
            "ecparam",
            "-name",
            "secp112r1",
            "-genkey",
            "-out",
            "small.key",
        ],
        d,
    );
    if ok {
        csr_b64(d, "small", "/CN=weak-3", &["-key", "small.key"]);
        let err = ws.fails(&["sign-csr", "small.csr", "--issuer", "r"]);
        assert!(err.contains("secp112r1"), "{err}");
    } else {
        eprintln!("SKIPPED secp112r1: this openssl cannot make such a key: {out}");
    }
}

/// Item 2: DPS never undoes the operator. A device disabled on the hub stays disabled when it
/// registers again (the registration says why it will be refused); DPS registers the device by
/// its certificate's thumbprint and never adds a CA to the hub, so a CA removed from the hub
/// stays removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dps_never_undoes_the_operator() {
    let fx = Fixture::new();
    fx.device("op-1", Some("line2"), ValidityArg::default());
    fx.store.dps_add_ca("line2", true).unwrap();
    fx.store.dps_add_group(group("lines", "line2")).unwrap();
    let scope = fx.store.dps_id_scope().unwrap();
    let hub = start_hub(&fx).await;
    let id = fx.identity(&["op-1", "line2"]);

    let out = register_as(hub.addr, &fx, &id, "op-1", &scope)
        .await
        .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    let reg = fx.store.load().unwrap();
    assert!(
        reg.cas.is_empty(),
        "DPS touched the hub's CA list: {:?}",
        reg.cas
    );
    let dev = reg.devices.iter().find(|d| d.id == "op-1").unwrap();
    assert_eq!(
        dev.auth,
        Auth::SelfSigned,
        "by thumbprint, as Azure's DPS does"
    );
    assert_eq!(
        dev.primary.as_deref(),
        Some(fx.ws.load("op-1").unwrap().meta.sha256.as_str())
    );
    assert_eq!(dev.provisioned_by.as_deref(), Some("DPS, group lines"));

    // The operator disables the device; it registers again.
    fx.store.set_enabled("op-1", false).unwrap();
    let out = register_as(hub.addr, &fx, &id, "op-1", &scope)
        .await
        .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    assert!(
        !fx.store.device("op-1").unwrap().enabled,
        "DPS re-enabled it"
    );
    let rec = fx.store.dps_registration("op-1").unwrap().unwrap();
    assert!(
        rec.note.as_deref().unwrap_or_default().contains("disabled"),
        "{rec:?}"
    );
    let (_c, ack) = Client::connect(
        hub.addr,
        fx.tls(Some(&id)),
        "op-1",
        Some(&hub_util::username("op-1")),
    )
    .await
    .unwrap();
    assert_ne!(ack.unwrap().code, ConnectReturnCode::Success);
    let refusal = hub.refusals(Some("op-1"), 0);
    assert!(refusal.iter().any(|r| r.kind == "disabled"), "{refusal:?}");

    // A CA the operator removed from the hub is not put back by a registration.
    fx.store.add_ca("line2", true).unwrap();
    fx.store.remove_ca("line2").unwrap();
    fx.store.set_enabled("op-1", true).unwrap();
    let out = register_as(hub.addr, &fx, &id, "op-1", &scope)
        .await
        .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    assert!(fx.store.load().unwrap().cas.is_empty());
    hub.shutdown().await;
}

/// Item 3: a CA certificate is never a device, and a registration id equal to a workspace
/// CA's name never replaces that CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dps_refuses_a_ca_as_a_device_and_never_replaces_a_ca() {
    let fx = Fixture::new();
    let scope = issuing_group(&fx, "boot-1");
    // An intermediate whose CN is a registration id.
    chainsmith::ops::new_ca(
        &fx.ws,
        &chainsmith_test_support::workspace::ca_req("gw-ca", Some("gw-ca"), Some("root")),
    )
    .unwrap();
    let hub = start_hub(&fx).await;
    let ca_id = fx.identity(&["gw-ca"]);
    let out = register_as(hub.addr, &fx, &ca_id, "gw-ca", &scope)
        .await
        .unwrap();
    assert_eq!(out.status, 401, "{out:?}");
    assert!(message(&out).contains("CA certificate"), "{out:?}");

    // A leaf whose CN is the name of workspace CA "gw-ca", signed by line2's key, as a device
    // with a stolen name would be.
    let id = openssl_leaf(&fx, "gw", "/CN=gw-ca", "line2", &["line2"]);
    let d = fx.dir.path();
    let ca_before = fx.ws.load("gw-ca").unwrap().meta.sha256;
    let fresh = csr_b64(d, "gw2", "/CN=gw-ca", &[]);
    let out = register_csr(hub.addr, &fx, &id, "gw-ca", &scope, &fresh).await;
    assert_eq!(out.status, 400, "{out:?}");
    assert!(message(&out).contains("name of a CA"), "{out:?}");
    let after = fx.ws.load("gw-ca").unwrap();
    assert_eq!(after.meta.sha256, ca_before, "the CA was replaced");
    assert!(after.meta.kind.is_ca());
    hub.shutdown().await;
}

/// Item 4: registration ids are case-insensitive in DPS, device ids case-sensitive in the
/// hub: case variants of one id never make a hub identity each. The first spelling holds the
/// registration; a variant is refused (it would otherwise re-pin the first device's hub
/// identity to its own certificate and lock the owner out: found by the hostile pass), and
/// the first spelling registers again as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_variants_are_one_registration_and_one_device() {
    let fx = Fixture::new();
    for id in ["Case-Dev", "case-dev", "CASE-DEV"] {
        fx.device(id, Some("line2"), ValidityArg::default());
    }
    fx.store.dps_add_ca("line2", true).unwrap();
    fx.store.dps_add_group(group("lines", "line2")).unwrap();
    let scope = fx.store.dps_id_scope().unwrap();
    let hub = start_hub(&fx).await;
    let first = fx.identity(&["Case-Dev", "line2"]);
    let out = register_as(hub.addr, &fx, &first, "Case-Dev", &scope)
        .await
        .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    let pinned = fx.store.device("Case-Dev").unwrap().primary;
    for id in ["case-dev", "CASE-DEV"] {
        let ident = fx.identity(&[id, "line2"]);
        let out = register_as(hub.addr, &fx, &ident, id, &scope)
            .await
            .unwrap();
        assert_eq!(out.status, 401, "{out:?}");
        assert!(message(&out).contains("\"Case-Dev\""), "{out:?}");
    }
    assert_eq!(fx.store.device("Case-Dev").unwrap().primary, pinned);
    // A certificate whose CN differs in case may not register as the first spelling either: its
    // holder would take over hub device "Case-Dev" (hostile pass, second round).
    let variant = fx.identity(&["CASE-DEV", "line2"]);
    let out = register_as(hub.addr, &fx, &variant, "Case-Dev", &scope)
        .await
        .unwrap();
    assert_eq!(out.status, 401, "{out:?}");
    assert!(message(&out).contains("in case"), "{out:?}");
    assert_eq!(fx.store.device("Case-Dev").unwrap().primary, pinned);
    let out = register_as(hub.addr, &fx, &first, "Case-Dev", &scope)
        .await
        .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    let devices: Vec<String> = fx
        .store
        .load()
        .unwrap()
        .devices
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(devices, ["Case-Dev"]);
    let st = fx.store.dps_load().unwrap();
    assert_eq!(st.registrations.len(), 1, "{:?}", st.registrations);
    assert_eq!(
        st.registrations[0].substatus,
        wire::REPROVISIONED_TO_INITIAL
    );

    // Item 5: a CSR CN that differs from the registration id only in case is refused here
    // (the hub compares device ids case-sensitively and would refuse it anyway).
    hub.shutdown().await;
    let fx = Fixture::new();
    let scope = issuing_group(&fx, "mixed-1");
    let hub = start_hub(&fx).await;
    let boot = fx.identity(&["mixed-1", "line2"]);
    let csr = csr_b64(fx.dir.path(), "mixed", "/CN=MIXED-1", &[]);
    let out = register_csr(hub.addr, &fx, &boot, "mixed-1", &scope, &csr).await;
    assert_eq!(out.status, 400, "{out:?}");
    assert!(message(&out).contains("in case"), "{out:?}");
    hub.shutdown().await;
}

/// Item 2 with issuance: a certificate DPS issues from a CSR authenticates at the hub at once
/// (registered by its thumbprint), although the hub holds no CA at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issued_certificate_connects_with_no_ca_on_the_hub() {
    let fx = Fixture::new();
    let scope = issuing_group(&fx, "iss-1");
    let hub = start_hub(&fx).await;
    let boot = fx.identity(&["iss-1", "line2"]);
    let d = fx.dir.path();
    let csr = csr_b64(d, "iss", "/CN=iss-1", &[]);
    let out = register_csr(hub.addr, &fx, &boot, "iss-1", &scope, &csr).await;
    assert_eq!(out.status, 200, "{out:?}");
    assert!(fx.store.load().unwrap().cas.is_empty());
    let leaf = fx.ws.load("iss-1").unwrap();
    let key = pem::parse(std::fs::read(d.join("iss.key")).unwrap()).unwrap();
    let id = Identity {
        certs: vec![leaf.cert_der.into()],
        key: key.contents().to_vec(),
    };
    let (_c, ack) = Client::connect(
        hub.addr,
        fx.tls(Some(&id)),
        "iss-1",
        Some(&hub_util::username("iss-1")),
    )
    .await
    .unwrap();
    assert_eq!(ack.unwrap().code, ConnectReturnCode::Success);
    hub.shutdown().await;
}

/// Item 5: a device directly under a root the hub does not hold is refused as such ("chain
/// ends at root"), not as a missing intermediate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_under_an_unregistered_root_is_told_so() {
    let fx = Fixture::new();
    fx.device("rooted-1", Some("root"), ValidityArg::default());
    fx.register("rooted-1", Auth::Ca, None);
    let hub = start_hub(&fx).await;
    let id = fx.identity(&["rooted-1"]);
    let r = refused(&hub, &fx, &id, "rooted-1").await;
    assert_eq!(r[0].kind, "unknown-root", "{r:?}");
    assert!(r[0].reason.contains("root \"Contoso Root\""), "{r:?}");
    hub.shutdown().await;
}

/// Items 9 and 10: a payload nested deeper than Azure's limit is refused at the door, and a
/// registration writes its own small file, not the whole `dps.json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_payloads_are_refused_and_registrations_do_not_rewrite_dps_json() {
    let fx = Fixture::new();
    fx.device("deep-1", Some("line2"), ValidityArg::default());
    fx.store.dps_add_ca("line2", true).unwrap();
    fx.store.dps_add_group(group("lines", "line2")).unwrap();
    let scope = fx.store.dps_id_scope().unwrap();
    let hub = start_hub(&fx).await;
    let id = fx.identity(&["deep-1", "line2"]);
    let deep: serde_json::Value =
        serde_json::from_str(&format!("{}1{}", "[".repeat(126), "]".repeat(126))).unwrap();
    let out = register(
        hub.addr,
        &fx,
        &id,
        "deep-1",
        &scope,
        wire::API_VERSION,
        serde_json::json!({"registrationId": "deep-1", "payload": deep}),
    )
    .await
    .unwrap();
    assert_eq!(out.status, 400, "{out:?}");
    assert!(message(&out).contains("at most 10"), "{out:?}");
    let large = "x".repeat(chainsmith::hub::dps::MAX_PAYLOAD_BYTES);
    let out = register(
        hub.addr,
        &fx,
        &id,
        "deep-1",
        &scope,
        wire::API_VERSION,
        serde_json::json!({"registrationId": "deep-1", "payload": {"blob": large}}),
    )
    .await
    .unwrap();
    assert_eq!(out.status, 400, "{out:?}");
    assert!(message(&out).contains("bytes"), "{out:?}");

    let dps_json = fx.store.dps_path();
    let before = std::fs::metadata(&dps_json).unwrap();
    use std::os::unix::fs::MetadataExt;
    let out = register(
        hub.addr,
        &fx,
        &id,
        "deep-1",
        &scope,
        wire::API_VERSION,
        serde_json::json!({"registrationId": "deep-1", "payload": {"model": [1, [2, [3]]]}}),
    )
    .await
    .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    let after = std::fs::metadata(&dps_json).unwrap();
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec()),
        "dps.json was rewritten by a registration"
    );
    let rec =
        std::fs::read_to_string(fx.store.dps_registrations_dir().join("deep-1.json")).unwrap();
    assert!(
        rec.contains(r#""payload":{"model":[1,[2,[3]]]}"#),
        "stored compact: {rec}"
    );
    hub.shutdown().await;
    // The hub starts again on what it wrote.
    hub_restarts(&fx).await;
}

async fn hub_restarts(fx: &Fixture) {
    let h = start_hub(fx).await;
    assert!(h.set_aside.is_empty(), "{:?}", h.set_aside);
    h.shutdown().await;
}

/// Item 10: a reported-properties patch nested deeper than IoT Hub's 10 levels is answered
/// 400 and not stored, so the twin file stays readable and the hub restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_reported_patch_is_refused_and_the_twin_stays_readable() {
    let fx = Fixture::new();
    fx.device("twin-1", Some("line2"), ValidityArg::default());
    fx.store.add_ca("line2", true).unwrap();
    fx.register("twin-1", Auth::Ca, None);
    let hub = start_hub(&fx).await;
    let id = fx.identity(&["twin-1", "line2"]);
    let (mut c, ack) = Client::connect(
        hub.addr,
        fx.tls(Some(&id)),
        "twin-1",
        Some(&hub_util::username("twin-1")),
    )
    .await
    .unwrap();
    assert_eq!(ack.unwrap().code, ConnectReturnCode::Success);
    let mut sub = Subscribe::new(chainsmith::azure::TWIN_RESPONSE_FILTER, QoS::AtLeastOnce);
    sub.pkid = 1;
    c.send(&Packet::Subscribe(sub)).await.unwrap();
    let deep = format!("{}1{}", "{\"a\":".repeat(126), "}".repeat(126));
    let mut p = Publish::new(
        chainsmith::azure::twin_patch_reported_topic("7"),
        QoS::AtMostOnce,
        deep.into_bytes(),
    );
    p.pkid = 0;
    c.send(&Packet::Publish(p)).await.unwrap();
    let status = loop {
        match c.recv(Duration::from_secs(10)).await {
            Some(Packet::Publish(p)) if p.topic.starts_with("$iothub/twin/res/") => break p.topic,
            Some(_) => continue,
            None => panic!("no twin answer"),
        }
    };
    assert!(status.starts_with("$iothub/twin/res/400/"), "{status}");
    let twin = fx.store.load_twin("twin-1").unwrap();
    assert!(twin.reported.get("a").is_none());
    // Keys IoT Hub does not take ('.', '$', space, controls, over 1 KB) are refused too
    // (hostile pass: they were stored).
    for (rid, patch) in [("8", r#"{"a.b": 1}"#), ("9", r#"{"ok": {"$x": 1}}"#)] {
        let p = Publish::new(
            chainsmith::azure::twin_patch_reported_topic(rid),
            QoS::AtMostOnce,
            patch.as_bytes().to_vec(),
        );
        c.send(&Packet::Publish(p)).await.unwrap();
        let status = loop {
            match c.recv(Duration::from_secs(10)).await {
                Some(Packet::Publish(p)) if p.topic.starts_with("$iothub/twin/res/") => {
                    break p.topic;
                }
                Some(_) => continue,
                None => panic!("no twin answer"),
            }
        };
        assert!(
            status.starts_with("$iothub/twin/res/400/"),
            "{patch}: {status}"
        );
    }
    let twin = fx.store.load_twin("twin-1").unwrap();
    assert!(twin.reported.get("a.b").is_none() && twin.reported.get("ok").is_none());
    // A twin stored before these rules (a forbidden key in it) can still be patched, and the
    // key deleted with a null (hostile pass, second round).
    fx.store
        .modify_twin("twin-1", |t| t.reported["old.key"] = 1.into())
        .unwrap();
    fx.store
        .patch_reported("twin-1", &serde_json::json!({"fresh": 1}))
        .unwrap();
    fx.store
        .patch_reported("twin-1", &serde_json::json!({"old.key": null}))
        .unwrap();
    let twin = fx.store.load_twin("twin-1").unwrap();
    assert!(twin.reported.get("old.key").is_none() && twin.reported["fresh"] == 1);
    hub.shutdown().await;
    hub_restarts(&fx).await;
}

/// Item 10: a state file that cannot be read never stops the hub: `dps.json` is set aside
/// keeping its ID scope, a twin is set aside, the hub starts and says where the bytes went,
/// and every `hub dps` command works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_state_files_are_set_aside_and_the_hub_starts() {
    let fx = Fixture::new();
    let scope = fx.store.dps_id_scope().unwrap();
    let dps_json = fx.store.dps_path();
    let text = std::fs::read_to_string(&dps_json).unwrap();
    std::fs::write(&dps_json, text.replace('}', "")).unwrap();
    let twin = fx.store.twin_path("some-device");
    std::fs::create_dir_all(twin.parent().unwrap()).unwrap();
    std::fs::write(&twin, format!("{}{}", "[".repeat(200), "]".repeat(200))).unwrap();
    let _ = fx.store.load_twin("some-device").unwrap();

    let h = start_hub(&fx).await;
    let notes: Vec<String> = h.set_aside.iter().map(ToString::to_string).collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("dps.json") && notes[0].contains(&scope),
        "{notes:?}"
    );
    assert_eq!(
        fx.store.dps_id_scope().unwrap(),
        scope,
        "the ID scope changed"
    );
    let aside = std::fs::read_dir(dps_json.parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("dps.json.damaged-")
        })
        .count();
    assert_eq!(aside, 1);
    let taken = fx.store.take_set_aside();
    assert!(
        taken.iter().any(|n| n.path == twin),
        "the twin was set aside: {taken:?}"
    );
    h.shutdown().await;

    for args in [["hub", "dps", "list"], ["hub", "dps", "registrations"]] {
        let out = assert_cmd::Command::cargo_bin("chainsmith")
            .unwrap()
            .arg("--workspace")
            .arg(fx.root())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
}

/// Item 5: an issuer that is a device certificate (CA:FALSE) is named as such, by the hub and
/// by DPS, not as a missing intermediate or an unknown CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_false_issuer_is_named_as_such() {
    let fx = Fixture::new();
    fx.device("leaf-1", Some("line2"), ValidityArg::default());
    let id = openssl_leaf(
        &fx,
        "under",
        "/CN=under-leaf",
        "leaf-1",
        &["leaf-1", "line2"],
    );
    fx.store.add_ca("root", true).unwrap();
    fx.register("under-leaf", Auth::Ca, None);
    fx.store.dps_add_ca("root", true).unwrap();
    fx.store.dps_add_group(group("roots", "root")).unwrap();
    let scope = fx.store.dps_id_scope().unwrap();
    let hub = start_hub(&fx).await;
    let r = refused(&hub, &fx, &id, "under-leaf").await;
    assert_eq!(r[0].kind, "issuer-not-ca", "{r:?}");
    assert!(r[0].reason.contains("\"leaf-1\" is not a CA"), "{r:?}");
    let out = register_as(hub.addr, &fx, &id, "under-leaf", &scope)
        .await
        .unwrap();
    assert_eq!(out.status, 401, "{out:?}");
    assert!(message(&out).contains("\"leaf-1\" is not a CA"), "{out:?}");
    hub.shutdown().await;
}

/// A device certificate (not a CSR) whose subject holds two CNs is an ambiguous identity: the
/// hub and DPS refuse it, whichever CN comes first (found by the hostile pass: the hub read the
/// first CN, so `/CN=v2/CN=a2` connected as v2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_with_two_cns_is_refused_by_hub_and_dps() {
    let fx = Fixture::new();
    let id = openssl_leaf(&fx, "two", "/CN=v2/CN=a2", "line2", &["line2"]);
    fx.store.add_ca("root", true).unwrap();
    fx.register("v2", Auth::Ca, None);
    fx.store.dps_add_ca("line2", true).unwrap();
    fx.store.dps_add_group(group("lines", "line2")).unwrap();
    let scope = fx.store.dps_id_scope().unwrap();
    let hub = start_hub(&fx).await;
    let r = refused(&hub, &fx, &id, "v2").await;
    assert_eq!(r[0].kind, "several-cns", "{r:?}");
    let out = register_as(hub.addr, &fx, &id, "v2", &scope).await.unwrap();
    assert_eq!(out.status, 401, "{out:?}");
    assert!(message(&out).contains("2 CNs"), "{out:?}");
    hub.shutdown().await;
}

/// A CA certificate pinned by thumbprint as a self-signed device is still refused: a CA's key
/// never authenticates as a device (hostile pass: the hub took line2's certificate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_certificate_pinned_by_thumbprint_is_refused() {
    let fx = Fixture::new();
    let sha256 = fx.ws.load("line2").unwrap().meta.sha256;
    fx.store
        .add_device("caasdev", Auth::SelfSigned, Some(&sha256), None, None)
        .unwrap();
    let hub = start_hub(&fx).await;
    let id = fx.identity(&["line2"]);
    let r = refused(&hub, &fx, &id, "caasdev").await;
    assert_eq!(r[0].kind, "ca-as-device", "{r:?}");
    hub.shutdown().await;
}

/// A device registering again with the same certificate changes nothing in the hub, so the
/// hub's registry is not rewritten (hostile pass: 2.6 MB written per registration with 20,000
/// devices); and a TLS chain longer than any real one is refused before it is verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_registration_writes_nothing_and_long_chains_are_refused() {
    use std::os::unix::fs::MetadataExt;
    let fx = Fixture::new();
    fx.device("again-1", Some("line2"), ValidityArg::default());
    fx.store.dps_add_ca("line2", true).unwrap();
    fx.store.dps_add_group(group("lines", "line2")).unwrap();
    let scope = fx.store.dps_id_scope().unwrap();
    let hub = start_hub(&fx).await;
    let id = fx.identity(&["again-1", "line2"]);
    let out = register_as(hub.addr, &fx, &id, "again-1", &scope)
        .await
        .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    let stamp = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.ino(), m.mtime_nsec())
    };
    let before = stamp(&fx.store.registry_path());
    let out = register_as(hub.addr, &fx, &id, "again-1", &scope)
        .await
        .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(
        stamp(&fx.store.registry_path()),
        before,
        "registry.json rewritten"
    );

    let mut long = fx.identity(&["again-1"]);
    let line2 = fx.ws.load("line2").unwrap().cert_der;
    long.certs
        .extend((0..chainsmith::hub::auth::MAX_CLIENT_CHAIN).map(|_| line2.clone().into()));
    let out = register_as(hub.addr, &fx, &long, "again-1", &scope)
        .await
        .unwrap();
    assert_eq!(out.status, 401, "{out:?}");
    assert!(message(&out).contains("certificates"), "{out:?}");
    fx.store.add_ca("root", true).unwrap();
    fx.register("again-2", Auth::Ca, None);
    let r = refused(&hub, &fx, &long, "again-2").await;
    assert_eq!(r[0].kind, "chain-too-long", "{r:?}");
    hub.shutdown().await;
}

/// Disabling or removing a device ends its live session on the running hub, as IoT Hub
/// disconnects a disabled or deleted device (hostile pass: the open session kept getting
/// PUBACKs, and a removed device wrote its twin again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_or_removing_a_device_ends_its_session() {
    let fx = Fixture::new();
    fx.device("live-1", Some("line2"), ValidityArg::default());
    fx.store.add_ca("root", true).unwrap();
    fx.register("live-1", Auth::Ca, None);
    let hub = std::sync::Arc::new(start_hub(&fx).await);
    let control = fx.store.control_path();
    tokio::spawn(chainsmith::hub::server::serve_control(
        hub.clone(),
        control.clone(),
    ));
    while tokio::net::UnixStream::connect(&control).await.is_err() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = fx.identity(&["live-1", "line2"]);
    for (what, act) in [("disable", true), ("remove", false)] {
        if !act {
            fx.store.set_enabled("live-1", true).unwrap();
        }
        let (mut c, ack) = Client::connect(
            hub.addr,
            fx.tls(Some(&id)),
            "live-1",
            Some(&hub_util::username("live-1")),
        )
        .await
        .unwrap();
        assert_eq!(ack.unwrap().code, ConnectReturnCode::Success, "{what}");
        let store = fx.store.clone();
        tokio::task::spawn_blocking(move || {
            if act {
                store.set_enabled("live-1", false).map(|_| ())
            } else {
                store.remove_device("live-1")
            }
        })
        .await
        .unwrap()
        .unwrap();
        assert!(
            c.closed_within(Duration::from_secs(5)).await,
            "the session outlived {what}"
        );
    }
}

/// Issue 23: a DPS refusal carries its kind as a value callers match on
/// ([`DpsRefusalKind`]), and its JSON still says the short kind scripts have always read.
#[test]
fn dps_refusal_kinds_are_values_and_keep_their_json() {
    use chainsmith::hub::dps::{CsrRefusal, DpsRefusalKind};
    let fx = Fixture::new();
    fx.device("unenrolled-1", Some("line2"), ValidityArg::default());
    fx.store.dps_add_ca("line2", true).unwrap();
    let chain = vec![
        fx.ws.load("unenrolled-1").unwrap().cert_der,
        fx.ws.load("line2").unwrap().cert_der,
    ];
    let req = wire::RegisterRequest {
        registration_id: "unenrolled-1".into(),
        payload: None,
        csr: None,
    };
    let refusal = fx
        .store
        .dps_register(
            "unenrolled-1",
            &chain,
            &req,
            "localhost",
            fx.ws.now(),
            &|_, _, _| {
                Err(CsrRefusal {
                    kind: "unused",
                    reason: "no CSR in this request".into(),
                })
            },
        )
        .unwrap_err();
    assert_eq!(refusal.kind, DpsRefusalKind::NoEnrollment, "{refusal:?}");
    let json = serde_json::to_value(&refusal).unwrap();
    assert_eq!(json["kind"], "no-enrollment", "{json}");
    assert_eq!(json["status"], 401, "{json}");
}

/// Issue 23: the CSR signer the hub is given answers with the workspace's typed error, and the
/// device is refused with that error's own message (kind `bad-csr`, as before); nothing is
/// issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_refusal_reaches_the_device_in_its_own_words() {
    use chainsmith::hub::dps::CsrSigner;
    let fx = Fixture::new();
    let scope = issuing_group(&fx, "dev-b");
    let refusal = chainsmith::store::Error::from(chainsmith::pki::Error::CsrWithoutCn);
    let expected = refusal.to_string();
    let hub = Hub::start(
        fx.root(),
        HubConfig {
            port: 0,
            csr_signer: Some(CsrSigner(std::sync::Arc::new(|_, _, _, _| {
                Err(chainsmith::store::Error::from(
                    chainsmith::pki::Error::CsrWithoutCn,
                ))
            }))),
            clock: fx.ws.clock(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let boot = fx.identity(&["dev-b", "line2"]);
    let before = fx.ws.load("dev-b").unwrap().meta.sha256;
    let csr = csr_b64(fx.dir.path(), "plain", "/CN=dev-b", &[]);
    let out = register_csr(hub.addr, &fx, &boot, "dev-b", &scope, &csr).await;
    assert_eq!(out.status, 400, "{out:?}");
    assert!(message(&out).contains(&expected), "{out:?}");
    let refusals = hub.refusals(Some("dev-b"), 0);
    assert!(refusals.iter().any(|r| r.kind == "bad-csr"), "{refusals:?}");
    assert_eq!(
        fx.ws.load("dev-b").unwrap().meta.sha256,
        before,
        "nothing issued"
    );
    hub.shutdown().await;
}
