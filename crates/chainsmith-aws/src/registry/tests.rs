use chainsmith_pki::pki::issue::{self, IssueSpec, Profile, Validity};
use chainsmith_pki::pki::{CaHandle, Eku, KeyAlg, subject};
use time::macros::datetime;

use super::*;

const NOW: time::OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

fn clock() -> Clock {
    Clock::Fixed(NOW)
}

struct Ca {
    handle: CaHandle,
    der: Vec<u8>,
}

fn ca(cn: &str) -> Ca {
    let spec = IssueSpec {
        subject: subject::cn_only(cn).unwrap(),
        profile: Profile::Root { pathlen: None },
        validity: Validity::days_from(NOW, 3650),
    };
    let issued = issue::issue(&spec, KeyAlg::EcP256, None).unwrap();
    let handle = CaHandle::new(
        cn,
        issued.cert_der.clone(),
        issued.key_pem.as_deref().unwrap(),
    )
    .unwrap();
    Ca {
        handle,
        der: issued.cert_der,
    }
}

fn leaf(ca: &Ca, cn: &str, profile: Profile) -> Vec<u8> {
    let spec = IssueSpec {
        subject: subject::cn_only(cn).unwrap(),
        profile,
        validity: Validity::days_from(NOW, 365),
    };
    issue::issue(&spec, KeyAlg::EcP256, Some(&ca.handle))
        .unwrap()
        .cert_der
}

fn device(ca: &Ca, cn: &str) -> Vec<u8> {
    leaf(
        ca,
        cn,
        Profile::Device {
            eku: Eku::Client,
            sans: Vec::new(),
        },
    )
}

fn open(dir: &Path) -> Registry {
    Registry::open(dir, clock()).unwrap()
}

/// A registry with `ca` registered ACTIVE (and auto-registering when asked).
fn with_ca(dir: &Path, ca: &Ca, auto: bool, template: Option<&str>) -> Registry {
    with_ca_on(open(dir), ca, auto, template)
}

fn with_ca_on(r: Registry, ca: &Ca, auto: bool, template: Option<&str>) -> Registry {
    let code = r.registration_code().unwrap();
    let proof = leaf(ca, &code, Profile::Verification);
    r.register_ca(Some("root"), &ca.der, &proof, true, auto, template)
        .unwrap();
    r
}

const ALLOW_OWN_CLIENT_ID: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
  {"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"arn:aws:iot:*:*:topic/things/${iot:ClientId}/*"}]}"#;

#[test]
fn registration_code_is_64_lowercase_hex_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let code = open(dir.path()).registration_code().unwrap();
    assert_eq!(code.len(), 64);
    assert!(
        code.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{code}"
    );
    assert_eq!(open(dir.path()).registration_code().unwrap(), code);
    let other = tempfile::tempdir().unwrap();
    assert_ne!(open(other.path()).registration_code().unwrap(), code);
}

#[test]
fn a_ca_needs_the_code_as_cn_and_its_own_key() {
    let dir = tempfile::tempdir().unwrap();
    let (root, stranger) = (ca("Root"), ca("Stranger"));
    let r = open(dir.path());
    let code = r.registration_code().unwrap();
    let wrong_cn = leaf(&root, "not-the-code", Profile::Verification);
    let e = r
        .register_ca(None, &root.der, &wrong_cn, true, false, None)
        .unwrap_err();
    assert!(
        matches!(e, RegistryError::VerificationWrongCn { ref found, .. } if found == "not-the-code"),
        "{e}"
    );
    let wrong_key = leaf(&stranger, &code, Profile::Verification);
    let e = r
        .register_ca(None, &root.der, &wrong_key, true, false, None)
        .unwrap_err();
    assert!(
        matches!(e, RegistryError::VerificationWrongKey { .. }),
        "{e}"
    );
    let good = leaf(&root, &code, Profile::Verification);
    let rec = r
        .register_ca(None, &root.der, &good, false, false, None)
        .unwrap();
    assert_eq!(rec.id, certificate_id(&root.der));
    assert_eq!(rec.status, Status::Inactive);
    let e = r
        .register_ca(None, &root.der, &good, false, false, None)
        .unwrap_err();
    assert!(matches!(e, RegistryError::Exists { .. }), "{e}");
    // A device certificate is not a CA.
    let dev = device(&root, "d1");
    let e = r
        .register_ca(None, &dev, &good, false, false, None)
        .unwrap_err();
    assert!(matches!(e, RegistryError::NotACa { .. }), "{e}");
}

#[test]
fn admission_follows_awss_statuses_and_policies() {
    let dir = tempfile::tempdir().unwrap();
    let root = ca("Root");
    let r = with_ca(dir.path(), &root, false, None);
    let dev = device(&root, "d1");
    let id = certificate_id(&dev);
    let chain = vec![dev.clone()];
    assert_eq!(
        r.admit(&chain, "d1"),
        Err(Refused::CertificateNotRegistered {
            certificate_id: id.clone()
        })
    );
    r.register_certificate(Some("d1"), &dev, false).unwrap();
    assert!(
        matches!(r.admit(&chain, "d1"), Err(Refused::CertificateNotActive { ref status, .. }) if status == "INACTIVE")
    );
    r.update_certificate(&id, Status::Active).unwrap();
    assert_eq!(
        r.admit(&chain, "d1"),
        Err(Refused::ConnectNotAllowed {
            client_id: "d1".into()
        })
    );
    r.create_policy("own", ALLOW_OWN_CLIENT_ID).unwrap();
    r.attach_policy("own", &id).unwrap();
    // The policy wants the thing named by the client id attached.
    assert_eq!(
        r.admit(&chain, "d1"),
        Err(Refused::ConnectNotAllowed {
            client_id: "d1".into()
        })
    );
    r.create_thing("d1").unwrap();
    r.attach_thing("d1", &id).unwrap();
    let who = r.admit(&chain, "d1").unwrap();
    assert_eq!(who.thing_name.as_deref(), Some("d1"));
    assert_eq!(
        r.admit(&chain, "d2"),
        Err(Refused::ConnectNotAllowed {
            client_id: "d2".into()
        })
    );
    assert!(r.allows(&who, Action::Publish, "things/d1/telemetry"));
    assert!(!r.allows(&who, Action::Publish, "things/d2/telemetry"));
    assert!(!r.allows(&who, Action::Subscribe, "things/d1/telemetry"));
    // The CA switched off keeps its devices out.
    let ca_id = certificate_id(&root.der);
    r.update_ca(&ca_id, Status::Inactive).unwrap();
    assert_eq!(
        r.admit(&chain, "d1"),
        Err(Refused::CaInactive {
            ca_certificate_id: ca_id.clone()
        })
    );
    r.update_ca(&ca_id, Status::Active).unwrap();
    r.update_certificate(&id, Status::Revoked).unwrap();
    assert!(
        matches!(r.admit(&chain, "d1"), Err(Refused::CertificateNotActive { ref status, .. }) if status == "REVOKED")
    );
}

#[test]
fn a_ca_is_found_by_signature_not_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = ca("Root");
    let r = with_ca(dir.path(), &root, true, None);
    // Another CA with the very same name: its devices are not the registered CA's.
    let impostor = ca("Root");
    let dev = device(&impostor, "d1");
    let e = r
        .admit(&[dev.clone(), impostor.der.clone()], "d1")
        .unwrap_err();
    assert_eq!(
        e,
        Refused::CaNotRegistered {
            ca_certificate_id: certificate_id(&impostor.der)
        }
    );
    let e = r.register_certificate(None, &dev, true).unwrap_err();
    assert!(matches!(e, RegistryError::NoRegisteredCa { .. }), "{e}");
}

#[test]
fn jitr_leaves_an_unknown_certificate_pending_activation() {
    let dir = tempfile::tempdir().unwrap();
    let root = ca("Root");
    let r = with_ca(dir.path(), &root, true, None);
    let dev = device(&root, "d1");
    let chain = vec![dev.clone(), root.der.clone()];
    assert!(
        matches!(r.admit(&chain, "d1"), Err(Refused::CertificateNotActive { ref status, .. }) if status == "PENDING_ACTIVATION")
    );
    assert_eq!(
        r.snapshot().unwrap().certificates[&certificate_id(&dev)].status,
        Status::PendingActivation
    );
}

const JITP_TEMPLATE: &str = r#"{
  "Parameters": {
    "AWS::IoT::Certificate::CommonName": {"Type": "String"},
    "AWS::IoT::Certificate::Id": {"Type": "String"}
  },
  "Resources": {
    "thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": {"Ref": "AWS::IoT::Certificate::CommonName"}}},
    "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
    "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": "{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"iot:Connect\",\"Resource\":\"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}\"}]}"}}
  }
}"#;

#[test]
fn jitp_provisions_then_refuses_once_then_admits() {
    let dir = tempfile::tempdir().unwrap();
    let root = ca("Root");
    let r = open(dir.path());
    r.create_template("jitp", JITP_TEMPLATE).unwrap();
    let r = with_ca_on(r, &root, true, Some("jitp"));
    let dev = device(&root, "bulb-7");
    let id = certificate_id(&dev);
    let chain = vec![dev.clone(), root.der.clone()];
    assert_eq!(
        r.admit(&chain, "bulb-7"),
        Err(Refused::JustProvisioned {
            certificate_id: id.clone(),
            ca_certificate_id: certificate_id(&root.der)
        })
    );
    let s = r.snapshot().unwrap();
    assert_eq!(s.certificates[&id].status, Status::Active);
    assert_eq!(s.certificates[&id].things, vec!["bulb-7".to_string()]);
    assert_eq!(s.certificates[&id].policies.len(), 1);
    assert!(s.things.contains_key("bulb-7"));
    let who = r.admit(&chain, "bulb-7").unwrap();
    assert_eq!(who.thing_name.as_deref(), Some("bulb-7"));
    // A second device shares the template's policy.
    let dev2 = device(&root, "bulb-8");
    let _ = r.admit(&[dev2.clone(), root.der.clone()], "bulb-8");
    assert_eq!(r.snapshot().unwrap().policies.len(), 1);
    r.admit(&[dev2], "bulb-8").unwrap();
}

#[test]
fn jitp_with_a_hostile_common_name_provisions_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = ca("Root");
    let r = open(dir.path());
    r.create_template("jitp", JITP_TEMPLATE).unwrap();
    let r = with_ca_on(r, &root, true, Some("jitp"));
    for cn in [r#"{"Ref":"AWS::IoT::Certificate::Id"}"#, "${iot:ClientId}"] {
        let dev = device(&root, cn);
        let e = r.admit(&[dev.clone(), root.der.clone()], cn).unwrap_err();
        assert!(matches!(e, Refused::ProvisioningFailed { .. }), "{cn}: {e}");
        let s = r.snapshot().unwrap();
        assert!(
            s.certificates.is_empty() && s.things.is_empty() && s.policies.is_empty(),
            "{cn}"
        );
    }
}

#[test]
fn at_most_ten_policies_per_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let root = ca("Root");
    let r = with_ca(dir.path(), &root, false, None);
    let dev = device(&root, "d1");
    let id = certificate_id(&dev);
    r.register_certificate(None, &dev, true).unwrap();
    for i in 0..=MAX_POLICIES_PER_CERTIFICATE {
        r.create_policy(&format!("p{i}"), ALLOW_OWN_CLIENT_ID)
            .unwrap();
    }
    for i in 0..MAX_POLICIES_PER_CERTIFICATE {
        r.attach_policy(&format!("p{i}"), &id).unwrap();
    }
    let e = r
        .attach_policy(&format!("p{MAX_POLICIES_PER_CERTIFICATE}"), &id)
        .unwrap_err();
    assert!(
        matches!(
            e,
            RegistryError::Full {
                limit: MAX_POLICIES_PER_CERTIFICATE,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_change_in_another_process_is_seen_by_the_next_decision() {
    let dir = tempfile::tempdir().unwrap();
    let root = ca("Root");
    let server = with_ca(dir.path(), &root, false, None);
    let dev = device(&root, "d1");
    let id = certificate_id(&dev);
    let cli = open(dir.path());
    cli.register_certificate(None, &dev, true).unwrap();
    cli.create_policy(
        "all",
        r#"{"Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*"}}"#,
    )
    .unwrap();
    cli.attach_policy("all", &id).unwrap();
    let who = server.admit(std::slice::from_ref(&dev), "d1").unwrap();
    assert!(server.allows(&who, Action::Publish, "x"));
    // Make sure the modification time moves on filesystems with coarse timestamps.
    std::thread::sleep(std::time::Duration::from_millis(20));
    cli.update_certificate(&id, Status::Revoked).unwrap();
    assert!(matches!(
        server.admit(&[dev], "d1"),
        Err(Refused::CertificateNotActive { .. })
    ));
}

#[test]
fn a_damaged_state_file_is_set_aside_and_the_code_kept() {
    let dir = tempfile::tempdir().unwrap();
    let code = open(dir.path()).registration_code().unwrap();
    let path = dir.path().join("registry.json");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{ broken");
    std::fs::write(&path, text).unwrap();
    let r = open(dir.path());
    assert_eq!(r.registration_code().unwrap(), code);
    assert_eq!(r.notes().len(), 1, "{:?}", r.notes());
    assert!(dir.path().join("registry.json.damaged-1").exists());
}

const FLEET_TEMPLATE: &str = r#"{
  "Parameters": {
    "SerialNumber": {"Type": "String"},
    "AWS::IoT::Certificate::Id": {"Type": "String"}
  },
  "Resources": {
    "thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": {"Fn::Join": ["", ["sensor-", {"Ref": "SerialNumber"}]]}}},
    "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
    "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "fleet"}}
  },
  "DeviceConfiguration": {"Serial": {"Ref": "SerialNumber"}}
}"#;

fn fleet_registry(dir: &Path) -> Registry {
    let r = open(dir);
    r.create_policy(
        "fleet",
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"}}"#,
    )
    .unwrap();
    r.create_template("fleet", FLEET_TEMPLATE).unwrap();
    r
}

fn params(serial: &str) -> BTreeMap<String, String> {
    [("SerialNumber".to_string(), serial.to_string())].into()
}

#[test]
fn fleet_provisioning_by_claim_with_a_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = ca("Issuer");
    let r = fleet_registry(dir.path());
    let new = r.create_keys_and_certificate(&issuer.handle).unwrap();
    assert!(new.private_key.is_some());
    let der = pem_to_der(&new.certificate_pem).unwrap();
    assert_eq!(new.certificate_id, certificate_id(&der));
    assert!(signed_by(&der, &issuer.der));
    assert_eq!(
        r.snapshot().unwrap().certificates[&new.certificate_id].status,
        Status::PendingActivation
    );
    let done = r
        .register_thing("fleet", &params("42"), &new.certificate_ownership_token)
        .unwrap();
    assert_eq!(done.thing_name.as_deref(), Some("sensor-42"));
    assert_eq!(done.device_configuration["Serial"], "42");
    let who = r.admit(&[der], "sensor-42").unwrap();
    assert_eq!(who.thing_name.as_deref(), Some("sensor-42"));
    // The token is single use.
    let e = r
        .register_thing("fleet", &params("43"), &new.certificate_ownership_token)
        .unwrap_err();
    assert_eq!(e.status_code(), 400, "{e}");
    assert_eq!(e.error_code(), "InvalidCertificateOwnershipToken");
}

#[test]
fn fleet_provisioning_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = ca("Issuer");
    let r = fleet_registry(dir.path());
    let e = r
        .create_certificate_from_csr(&issuer.handle, "not a csr")
        .unwrap_err();
    assert_eq!(e.status_code(), 400, "{e}");
    let new = r.create_keys_and_certificate(&issuer.handle).unwrap();
    let e = r
        .register_thing("nope", &params("1"), &new.certificate_ownership_token)
        .unwrap_err();
    assert_eq!(e.status_code(), 404, "{e}");
    // An hour later the token is spent by time.
    let new = r.create_keys_and_certificate(&issuer.handle).unwrap();
    r.set_clock(Clock::Fixed(NOW + OWNERSHIP_TOKEN_LIFETIME));
    let e = r
        .register_thing("fleet", &params("1"), &new.certificate_ownership_token)
        .unwrap_err();
    assert_eq!(e.status_code(), 400, "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
    // A parameter the template lacks leaves the certificate pending.
    r.set_clock(clock());
    let new = r.create_keys_and_certificate(&issuer.handle).unwrap();
    let e = r
        .register_thing("fleet", &BTreeMap::new(), &new.certificate_ownership_token)
        .unwrap_err();
    assert_eq!(e.status_code(), 400, "{e}");
    assert_eq!(
        r.snapshot().unwrap().certificates[&new.certificate_id].status,
        Status::PendingActivation
    );
}

#[test]
fn fleet_provisioning_from_an_openssl_csr() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = ca("Issuer");
    let r = fleet_registry(dir.path());
    let csr = openssl_csr(
        dir.path(),
        &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "/CN=claimed-device",
    );
    let new = r.create_certificate_from_csr(&issuer.handle, &csr).unwrap();
    assert!(new.private_key.is_none());
    let view = CertView::from_der(&pem_to_der(&new.certificate_pem).unwrap()).unwrap();
    assert_eq!(view.cn.as_deref(), Some("claimed-device"));
}

/// A CSR from `openssl req` with `-newkey KEYSPEC…` and `-subj SUBJ`.
fn openssl_csr(dir: &Path, key: &[&str], subj: &str) -> String {
    let out = std::process::Command::new("openssl")
        .args(["req", "-new", "-nodes", "-newkey"])
        .args(key)
        .args(["-subj", subj, "-keyout"])
        .arg(dir.join("k.pem"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn csrs_aws_would_not_sign_are_rejected_as_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = ca("Issuer");
    let r = fleet_registry(dir.path());
    let cases: [(&[&str], &str, &str); 3] = [
        (&["ed25519"], "/CN=d", "algorithm"),
        (&["rsa:1024"], "/CN=d", "RSA-1024"),
        (
            &["ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "/CN=a/CN=b",
            "CNs",
        ),
    ];
    for (key, subj, why) in cases {
        let csr = openssl_csr(dir.path(), key, subj);
        let e = r
            .create_certificate_from_csr(&issuer.handle, &csr)
            .unwrap_err();
        assert_eq!(
            (e.status_code(), e.error_code()),
            (400, "InvalidCsr"),
            "{e}"
        );
        assert!(e.to_string().contains(why), "{key:?} {subj}: {e}");
    }
    // P-384 and RSA 2048 are AWS's too.
    for key in [
        &["ec", "-pkeyopt", "ec_paramgen_curve:P-384"][..],
        &["rsa:2048"],
    ] {
        let csr = openssl_csr(dir.path(), key, "/CN=d");
        r.create_certificate_from_csr(&issuer.handle, &csr).unwrap();
    }
    let long = format!("{}{}", "A".repeat(MAX_CSR_CHARS), "\n");
    let e = r
        .create_certificate_from_csr(&issuer.handle, &long)
        .unwrap_err();
    assert!(e.to_string().contains("at most 4096"), "{e}");
    assert!(
        r.snapshot().unwrap().certificates.len() == 2,
        "nothing kept for the refused"
    );
}

#[test]
fn the_fleet_answers_are_awss_json_and_aws_parameters_are_the_services() {
    use crate::rules::{Fleet, FleetRequest};
    let dir = tempfile::tempdir().unwrap();
    let r = fleet_registry(dir.path());
    let e = r
        .handle(
            &FleetRequest::CreateKeysAndCertificate,
            &serde_json::json!({}),
        )
        .unwrap_err();
    assert_eq!(e.status_code, 500, "no issuer set: {e:?}");
    r.set_issuer(Box::new(|| Ok(ca("Issuer").handle)));
    let new = r
        .handle(
            &FleetRequest::CreateKeysAndCertificate,
            &serde_json::json!({}),
        )
        .unwrap();
    for k in [
        "certificateId",
        "certificatePem",
        "privateKey",
        "certificateOwnershipToken",
    ] {
        assert!(new[k].is_string(), "{k}: {new}");
    }
    let register = FleetRequest::RegisterThing {
        template: "fleet".into(),
    };
    // A device cannot name the certificate the template provisions.
    let e = r
        .handle(
            &register,
            &serde_json::json!({
                "certificateOwnershipToken": new["certificateOwnershipToken"],
                "parameters": {"SerialNumber": "1", "AWS::IoT::Certificate::Id": "0".repeat(64)}
            }),
        )
        .unwrap_err();
    assert_eq!(e.status_code, 400, "{e:?}");
    let e = r
        .handle(
            &register,
            &serde_json::json!({"parameters": {"SerialNumber": "1"}}),
        )
        .unwrap_err();
    assert_eq!(e.error_code, "InvalidCertificateOwnershipToken", "{e:?}");
    let done = r
        .handle(
            &register,
            &serde_json::json!({
                "certificateOwnershipToken": new["certificateOwnershipToken"],
                "parameters": {"SerialNumber": "5"}
            }),
        )
        .unwrap();
    assert_eq!(done["thingName"], "sensor-5");
    assert_eq!(done["deviceConfiguration"]["Serial"], "5");
}

#[test]
fn a_certificate_left_pending_past_its_tokens_hour_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = ca("Issuer");
    let r = fleet_registry(dir.path());
    let left = r.create_keys_and_certificate(&issuer.handle).unwrap();
    let kept = r.create_keys_and_certificate(&issuer.handle).unwrap();
    r.register_thing("fleet", &params("1"), &kept.certificate_ownership_token)
        .unwrap();
    // A failed RegisterThing spends the token and leaves the certificate pending.
    let failed = r.create_keys_and_certificate(&issuer.handle).unwrap();
    r.register_thing(
        "fleet",
        &BTreeMap::new(),
        &failed.certificate_ownership_token,
    )
    .unwrap_err();
    r.set_clock(Clock::Fixed(NOW + OWNERSHIP_TOKEN_LIFETIME));
    let next = r.create_keys_and_certificate(&issuer.handle).unwrap();
    let certs = r.snapshot().unwrap().certificates;
    assert!(
        !certs.contains_key(&left.certificate_id),
        "never registered: deleted"
    );
    assert!(
        !certs.contains_key(&failed.certificate_id),
        "registration failed: deleted"
    );
    assert_eq!(certs[&kept.certificate_id].status, Status::Active);
    assert!(certs.contains_key(&next.certificate_id));
}

#[test]
fn past_the_token_limit_creation_is_throttled_until_the_hour_is_over() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = ca("Issuer");
    let mut r = fleet_registry(dir.path());
    r.token_limit = 2;
    for _ in 0..2 {
        r.create_keys_and_certificate(&issuer.handle).unwrap();
    }
    let e = r.create_keys_and_certificate(&issuer.handle).unwrap_err();
    assert_eq!(
        (e.status_code(), e.error_code()),
        (429, "Throttling"),
        "{e}"
    );
    r.set_clock(Clock::Fixed(NOW + OWNERSHIP_TOKEN_LIFETIME));
    r.create_keys_and_certificate(&issuer.handle).unwrap();
    assert_eq!(
        r.snapshot().unwrap().certificates.len(),
        1,
        "the two abandoned are gone"
    );
}
