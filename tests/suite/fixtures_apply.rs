//! `chainsmith apply`: idempotence byte for byte, re-issuing only what changed, the manifest
//! checked against `openssl x509`, and spec errors that name line and field.

use assert_cmd::Command;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn cs(ws: &Path) -> Command {
    let mut c = Command::cargo_bin("chainsmith").unwrap();
    c.arg("--workspace").arg(ws);
    c
}

fn apply_json(ws: &Path, spec: &Path, extra: &[&str]) -> serde_json::Value {
    let out = cs(ws)
        .arg("--json")
        .arg("apply")
        .arg(spec)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                m.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    m
}

fn changed(a: &BTreeMap<PathBuf, Vec<u8>>, b: &BTreeMap<PathBuf, Vec<u8>>) -> Vec<String> {
    let mut names: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .chain(b.iter().filter(|(k, _)| !a.contains_key(*k)))
        .map(|(k, _)| k.iter().next().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

const SPEC: &str = r#"
[[ca]]
name = "root"
days = 3650

[[ca]]
name = "inter"
parent = "root"

[[ca]]
name = "other-inter"
parent = "root"

[[device]]
id = "dev-{01..05}"
issuer = "inter"

[[device]]
id = "solo"
issuer = "inter"
days = 365

[[device]]
id = "other-dev"
issuer = "other-inter"

[[device]]
id = "ss"
slots = ["primary", "secondary"]

[[verification]]
ca = "inter"
code = "75B86466DA34D2B04C0C4C9557A119687ADAE7D4732BDDB3"
export = { formats = ["pem"] }

[[negative]]
name = "neg-expired"
kind = "expired"
issuer = "inter"
"#;

#[test]
fn apply_twice_changes_nothing_and_edits_reissue_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let out = tmp.path().join("out");
    let spec = tmp.path().join("spec.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let m = apply_json(&ws, &spec, &["--out", out.to_str().unwrap()]);
    assert_eq!(m["made"], 13, "{m}");
    let before = snapshot(&ws.join("entities"));
    let out_before = snapshot(&out);
    assert!(!out_before.is_empty());

    // Second apply: nothing made, files byte for byte the same (workspace and --out).
    let m = apply_json(&ws, &spec, &["--out", out.to_str().unwrap()]);
    assert_eq!(
        (
            m["made"].as_u64(),
            m["reissued"].as_u64(),
            m["unchanged"].as_u64()
        ),
        (Some(0), Some(0), Some(13))
    );
    assert_eq!(snapshot(&ws.join("entities")), before);
    assert_eq!(snapshot(&out), out_before);

    // One device's days: only that device changes.
    std::fs::write(&spec, SPEC.replace("days = 365\n", "days = 100\n")).unwrap();
    let m = apply_json(&ws, &spec, &[]);
    assert_eq!(m["reissued"], 1, "{m}");
    let after = snapshot(&ws.join("entities"));
    assert_eq!(changed(&before, &after), ["solo"]);
    let na = m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "solo")
        .unwrap()["not_after"]
        .as_str()
        .unwrap()
        .to_string();
    let days = (time::OffsetDateTime::parse(&na, &time::format_description::well_known::Rfc3339)
        .unwrap()
        - time::OffsetDateTime::now_utc())
    .whole_days();
    assert!((99..=100).contains(&days), "{na}");

    // A CA's days: the CA and everything under it, nothing else.
    std::fs::write(
        &spec,
        SPEC.replace("days = 365\n", "days = 100\n").replace(
            "parent = \"root\"\n\n[[ca]]\nname = \"other-inter\"",
            "parent = \"root\"\ndays = 900\n\n[[ca]]\nname = \"other-inter\"",
        ),
    )
    .unwrap();
    let m = apply_json(&ws, &spec, &[]);
    let again = snapshot(&ws.join("entities"));
    let mut expect = vec![
        "dev-01",
        "dev-02",
        "dev-03",
        "dev-04",
        "dev-05",
        "inter",
        "neg-expired",
        "solo",
        "verify-inter",
    ];
    expect.sort();
    assert_eq!(changed(&after, &again), expect, "{m}");
    // The re-issued children verify against the re-issued intermediate.
    let e = ws.join("entities");
    let ok = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(e.join("root/cert.pem"))
        .arg("-untrusted")
        .arg(e.join("inter/cert.pem"))
        .arg(e.join("dev-03/cert.pem"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
}

fn openssl_field(args: &[&str], cert: &Path) -> String {
    let out = std::process::Command::new("openssl")
        .arg("x509")
        .arg("-noout")
        .args(args)
        .arg("-in")
        .arg(cert)
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    s.split_once('=').map(|(_, v)| v.to_string()).unwrap_or(s)
}

#[test]
fn manifest_paths_exist_and_thumbprints_match_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let out = tmp.path().join("out");
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fixtures/example.toml");
    let m = apply_json(&ws, &spec, &["--out", out.to_str().unwrap()]);
    let entries = m["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 26);
    let mut exports = 0;
    for e in entries {
        for (what, p) in e["paths"].as_object().unwrap() {
            let p = Path::new(p.as_str().unwrap());
            assert!(
                p.is_file(),
                "{what} of {}: {} missing",
                e["name"],
                p.display()
            );
            if what == "key" {
                assert_eq!(
                    std::fs::metadata(p).unwrap().permissions().mode() & 0o777,
                    0o600,
                    "{}",
                    p.display()
                );
            }
        }
        for p in e["exports"].as_array().into_iter().flatten() {
            assert!(Path::new(p.as_str().unwrap()).is_file(), "{p}");
            exports += 1;
        }
        let cert = Path::new(e["paths"]["cert"].as_str().unwrap());
        let colonless = |s: String| s.replace(':', "");
        assert_eq!(
            colonless(openssl_field(&["-fingerprint", "-sha1"], cert)),
            e["sha1"].as_str().unwrap(),
            "{}",
            e["name"]
        );
        assert_eq!(
            colonless(openssl_field(&["-fingerprint", "-sha256"], cert)),
            e["sha256"].as_str().unwrap(),
            "{}",
            e["name"]
        );
        assert_eq!(
            openssl_field(&["-serial"], cert),
            e["serial"].as_str().unwrap(),
            "{}",
            e["name"]
        );
        assert!(
            ["root", "intermediate", "device", "verification"]
                .contains(&e["kind"].as_str().unwrap())
        );
        assert!(e["not_after"].as_str().unwrap().ends_with('Z'));
    }
    assert!(exports >= 20, "exports listed: {exports}");
    // The self-signed device with two slots is one entity, as `new device --slot` makes it:
    // the manifest lists both slots, their files and thumbprints, and their exports.
    assert!(
        !entries
            .iter()
            .any(|e| e["name"].as_str().unwrap().starts_with("thermo-ss-"))
    );
    let e = entries.iter().find(|e| e["name"] == "thermo-ss").unwrap();
    assert_eq!(e["cn"], "thermo-ss");
    let slots = e["slots"].as_array().unwrap();
    let names: Vec<&str> = slots.iter().map(|s| s["slot"].as_str().unwrap()).collect();
    assert_eq!(names, ["primary", "secondary"]);
    assert_eq!(slots[0]["sha1"], e["sha1"]);
    assert_ne!(slots[0]["sha1"], slots[1]["sha1"]);
    let colonless = |s: String| s.replace(':', "");
    let ents = ws.join("entities");
    for (s, dir) in slots
        .iter()
        .zip([ents.join("thermo-ss"), ents.join("thermo-ss/secondary")])
    {
        let cert = Path::new(s["paths"]["cert"].as_str().unwrap());
        let key = Path::new(s["paths"]["key"].as_str().unwrap());
        assert_eq!(cert, dir.join("cert.pem"));
        assert_eq!(key, dir.join("key.pem"));
        assert_eq!(
            std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            colonless(openssl_field(&["-fingerprint", "-sha1"], cert)),
            s["sha1"].as_str().unwrap()
        );
        assert_eq!(
            colonless(openssl_field(&["-fingerprint", "-sha256"], cert)),
            s["sha256"].as_str().unwrap()
        );
        assert_eq!(openssl_field(&["-subject"], cert), "CN = thermo-ss");
        // Each slot's export is of that slot's certificate.
        let exported: Vec<&str> = s["exports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let pem = exported
            .iter()
            .find(|p| p.ends_with("thermo-ss.cert.pem"))
            .unwrap();
        assert_eq!(
            colonless(openssl_field(&["-fingerprint", "-sha1"], Path::new(pem))),
            s["sha1"].as_str().unwrap(),
            "{pem}"
        );
        assert!(exported.iter().any(|p| p.ends_with("thermo-ss.pfx")));
    }
    assert_eq!(
        slots[1]["exports"][0].as_str().unwrap(),
        out.join("secondary/thermo-ss.cert.pem").to_str().unwrap()
    );

    // `lint` passes it (CN = entity name = device id) and `show` lists both slots with the
    // thumbprints OpenSSL computes.
    cs(&ws).args(["lint", "thermo-ss"]).assert().success();
    let out = cs(&ws)
        .args(["--json", "show", "thermo-ss"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let show: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shown = show["slots"].as_array().unwrap();
    assert_eq!(shown.len(), 2, "{show}");
    for (s, cert) in shown.iter().zip([
        ents.join("thermo-ss/cert.pem"),
        ents.join("thermo-ss/secondary/cert.pem"),
    ]) {
        assert_eq!(
            colonless(openssl_field(&["-fingerprint", "-sha1"], &cert)),
            s["sha1"].as_str().unwrap()
        );
        assert_eq!(
            colonless(openssl_field(&["-fingerprint", "-sha256"], &cert)),
            s["sha256"].as_str().unwrap()
        );
    }
}

/// The relative path of every file in an entity directory, and the keys of its meta files.
fn layout(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = snapshot(dir)
        .into_iter()
        .flat_map(|(p, bytes)| {
            let p = p.display().to_string();
            let mut lines = vec![p.clone()];
            if p.ends_with("meta.toml") {
                let t: toml::Table = toml::from_str(&String::from_utf8(bytes).unwrap()).unwrap();
                lines.extend(t.iter().filter(|(k, _)| *k != "spec_hash").map(|(k, v)| {
                    match k.as_str() {
                        // Values that differ by nature: the id, and what each issuing draws.
                        "name" | "cn" | "subject" | "serial" | "not_before" | "not_after"
                        | "sha1" | "sha256" | "created" => format!("{p}: {k}"),
                        _ => format!("{p}: {k} = {v}"),
                    }
                }));
            }
            lines
        })
        .collect();
    v.sort();
    v
}

#[test]
fn slot_devices_are_one_entity_like_new_device_makes() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let spec = tmp.path().join("spec.toml");
    // The order of the list does not matter: the primary is the entity's own certificate.
    let text = "[[ca]]\nname = \"root\"\n[[device]]\nid = \"d1\"\nissuer = \"root\"\n[[device]]\nid = \"ss\"\nslots = [\"secondary\", \"primary\"]\n";
    std::fs::write(&spec, text).unwrap();
    let m = apply_json(&ws, &spec, &[]);
    assert_eq!(m["made"], 3, "{m}");

    // The same device made by hand, the way the lifecycle commands make it.
    let by_hand = tmp.path().join("hand");
    for slot in ["primary", "secondary"] {
        cs(&by_hand)
            .args(["new", "device", "ss", "--self-signed", "--slot", slot])
            .assert()
            .success();
    }
    assert_eq!(
        layout(&ws.join("entities/ss")),
        layout(&by_hand.join("entities/ss"))
    );
    assert!(ws.join("entities/ss/secondary/cert.pem").is_file());
    assert!(!ws.join("entities/ss-primary").exists());

    // Apply again: byte for byte the same. Change the slot device: it alone is re-issued,
    // both of its slots, and nothing else.
    let before = snapshot(&ws.join("entities"));
    let m = apply_json(&ws, &spec, &[]);
    assert_eq!(m["unchanged"], 3, "{m}");
    assert_eq!(snapshot(&ws.join("entities")), before);
    std::fs::write(&spec, format!("{text}days = 30\n")).unwrap();
    let m = apply_json(&ws, &spec, &[]);
    assert_eq!(
        (m["reissued"].as_u64(), m["unchanged"].as_u64()),
        (Some(1), Some(2)),
        "{m}"
    );
    let after = snapshot(&ws.join("entities"));
    assert_eq!(changed(&before, &after), ["ss"]);
    for f in ["ss/cert.pem", "ss/secondary/cert.pem"] {
        assert_ne!(before.get(Path::new(f)), after.get(Path::new(f)), "{f}");
    }
    // A lost secondary slot is made again.
    std::fs::remove_dir_all(ws.join("entities/ss/secondary")).unwrap();
    let m = apply_json(&ws, &spec, &[]);
    assert_eq!(m["reissued"], 1, "{m}");
    assert!(ws.join("entities/ss/secondary/meta.toml").is_file());
    cs(&ws).args(["lint", "ss"]).assert().success();
}

fn spec_error(text: &str) -> (String, PathBuf) {
    let tmp = tempfile::tempdir().unwrap().keep();
    let ws = tmp.join("ws");
    let spec = tmp.join("bad.toml");
    std::fs::write(&spec, text).unwrap();
    let out = cs(&ws).arg("apply").arg(&spec).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    // Nothing half-written.
    let ents = ws.join("entities");
    assert!(
        !ents.exists() || std::fs::read_dir(&ents).unwrap().next().is_none(),
        "entities written despite {err}"
    );
    (err, tmp)
}

#[test]
fn spec_errors_name_line_and_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[[ca]]\nname = \"r\"\ncolour = \"red\"\n",
            ":3: field `colour`",
            "unknown field",
        ),
        (
            "[[ca]]\nname = \"r\"\n[[ca]]\nname = \"i\"\nparent = \"nope\"\n",
            ":5: field `parent`",
            "no [[ca]] named \"nope\"",
        ),
        (
            "[[ca]]\nname = \"a\"\nparent = \"b\"\n[[ca]]\nname = \"b\"\nparent = \"a\"\n",
            "field `parent`",
            "cycle",
        ),
        (
            "[[ca]]\nname = \"r\"\n[[ca]]\nname = \"r\"\n",
            ":4: field `name`",
            "duplicate name \"r\"",
        ),
        (
            "[[ca]]\nname = \"r\"\n[[device]]\nid = \"d-{9..1}\"\nissuer = \"r\"\n",
            ":4: field `id`",
            "counts downwards",
        ),
        (
            "[[ca]]\nname = \"r\"\n[[device]]\nid = \"d-{1..x}\"\nissuer = \"r\"\n",
            ":4: field `id`",
            "not a number",
        ),
        (
            "[[ca]]\nname = \"r\"\n[[device]]\nid = \"d1\"\nissuer = \"r\"\nkey = \"rsa-1024\"\n",
            ":6: field `key`",
            "too weak",
        ),
        (
            "[[ca]]\nname = \"r\"\n[[negative]]\nname = \"n\"\nkind = \"sloppy\"\nissuer = \"r\"\n",
            ":5: field `kind`",
            "weak_key",
        ),
        (
            "[[ca]]\nname = \"r\"\n[[device]]\nid = \"dev 1\"\nissuer = \"r\"\n",
            ":4: field `id`",
            "space",
        ),
        (
            "[[ca]]\nname = \"r\"\n[[device]]\nid = \"d\"\nissuer = \"r\"\nexport = { formats = [\"pfx\"] }\n",
            ":6: field `export.password`",
            "password",
        ),
    ];
    for (text, at, what) in cases {
        let (err, _) = spec_error(text);
        assert!(
            err.starts_with("error: ")
                && err.contains("bad.toml")
                && err.contains(at)
                && err.contains(what),
            "expected {at} / {what}, got: {err}"
        );
    }
}

#[test]
fn check_only_reads_the_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fixtures/example.toml");
    cs(&ws)
        .arg("apply")
        .arg("--check")
        .arg(&spec)
        .assert()
        .success()
        .stdout(predicates::str::contains("OK, 26 entries"));
    assert!(!ws.exists());
}

#[test]
fn spec_errors_in_json() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("bad.toml");
    std::fs::write(&spec, "[[ca]]\nname = \"r\"\n[[ca]]\nname = \"r\"\n").unwrap();
    let out = cs(&tmp.path().join("ws"))
        .arg("--json")
        .arg("apply")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "spec");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(":4: field `name`"),
        "{v}"
    );
}

#[test]
fn exports_follow_their_settings_and_come_back_when_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    let out = tmp.path().join("out");
    let spec = tmp.path().join("spec.toml");
    let text = "[[ca]]\nname = \"root\"\n[[device]]\nid = \"d1\"\nissuer = \"root\"\nexport = { formats = [\"pfx\", \"pem\"], password = \"first\" }\n";
    std::fs::write(&spec, text).unwrap();
    let o = out.to_str().unwrap();
    apply_json(&ws, &spec, &["--out", o]);
    let pfx = out.join("d1.pfx");
    let opens = |pw: &str| {
        std::process::Command::new("openssl")
            .args(["pkcs12", "-info", "-noout", "-passin"])
            .arg(format!("pass:{pw}"))
            .arg("-in")
            .arg(&pfx)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(opens("first"));
    // A new password only: the certificate stays, the PFX is written again.
    std::fs::write(&spec, text.replace("first", "second")).unwrap();
    let m = apply_json(&ws, &spec, &["--out", o]);
    assert_eq!(m["unchanged"], 2, "{m}");
    assert!(opens("second") && !opens("first"));
    // A deleted export comes back; the others keep their bytes.
    let before = std::fs::read(out.join("d1.cert.pem")).unwrap();
    std::fs::remove_file(out.join("d1.key.pem")).unwrap();
    let m = apply_json(&ws, &spec, &["--out", o]);
    assert!(out.join("d1.key.pem").is_file(), "{m}");
    assert_eq!(std::fs::read(out.join("d1.cert.pem")).unwrap(), before);
    assert_eq!(
        std::fs::metadata(out.join("d1.key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

#[test]
fn entities_made_by_hand_are_replaced_only_with_force() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    cs(&ws).args(["new", "root", "root"]).assert().success();
    let by_hand = std::fs::read(ws.join("entities/root/cert.pem")).unwrap();
    let spec = tmp.path().join("spec.toml");
    std::fs::write(
        &spec,
        "[[ca]]\nname = \"root\"\n[[device]]\nid = \"d1\"\nissuer = \"root\"\n",
    )
    .unwrap();
    let out = cs(&ws).arg("apply").arg(&spec).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not made by applying a spec (root)") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(ws.join("entities/root/cert.pem")).unwrap(),
        by_hand
    );
    assert!(!ws.join("entities/d1").exists());
    let m = apply_json(&ws, &spec, &["--force"]);
    assert_eq!(
        (m["reissued"].as_u64(), m["made"].as_u64()),
        (Some(1), Some(1)),
        "{m}"
    );
    assert_ne!(
        std::fs::read(ws.join("entities/root/cert.pem")).unwrap(),
        by_hand
    );
}
