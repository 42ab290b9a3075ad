//! Issue 11 items 6, 7 and 8: a workspace only its owner can change, no user file replaced
//! without --force, apply's state free of password hashes, and two processes racing for the
//! same names told apart.

use crate::common::{Ws, openssl};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// `chown -R nobody` (the tests run as root; elsewhere there is no other user to give to).
fn give_to_nobody(p: &Path) -> bool {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("not root: cannot hand a directory to another user; skipped");
        return false;
    }
    std::process::Command::new("chown")
        .args(["-R", "nobody", p.to_str().unwrap()])
        .status()
        .unwrap()
        .success()
}

// ---- item 6: workspace ownership

#[test]
fn init_refuses_an_empty_world_writable_directory_of_another_user() {
    let ws = Ws::new();
    let dir = ws.ws();
    fs::create_dir(&dir).unwrap();
    chmod(&dir, 0o777);
    if !give_to_nobody(&dir) {
        return;
    }
    let err = ws.fails(&["init", dir.to_str().unwrap()]);
    assert!(err.contains("owned by user 65534"), "{err}");
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "init wrote into it");
    // Ours again but still 0777: refused with the fix.
    std::process::Command::new("chown")
        .args(["root", dir.to_str().unwrap()])
        .status()
        .unwrap();
    let err = ws.fails(&["init", dir.to_str().unwrap()]);
    assert!(
        err.contains(&format!("chmod 700 {}", dir.display())),
        "{err}"
    );
    chmod(&dir, 0o700);
    ws.ok(&["init", dir.to_str().unwrap()]);
}

#[test]
fn a_workspace_others_can_change_is_refused_with_the_fix() {
    let ws = Ws::new();
    ws.ok(&["new", "root", "r"]);
    ws.ok(&["hub", "ca", "add", "r", "--verified"]);
    let root = ws.ws();
    for (dir, mode) in [
        (root.clone(), 0o777),
        (root.clone(), 0o770),
        (root.join("entities"), 0o757),
        (root.join("hub"), 0o722),
        (root.join(".staging"), 0o702),
    ] {
        chmod(&dir, mode);
        for args in [&["list"][..], &["hub", "ca", "list"], &["new", "root", "x"]] {
            let err = ws.fails(args);
            assert!(
                err.contains(&format!("chmod 700 {}", dir.display()))
                    && err.contains("writable by"),
                "{args:?} with {} at {mode:o}: {err}",
                dir.display()
            );
        }
        chmod(&dir, 0o700);
    }
    assert!(!root.join("entities/x").exists());
    ws.ok(&["list"]);
}

/// Issue 21 item 15: whoever can write to a parent can swap the workspace for their own, so
/// every ancestor up to `/` is checked as OpenSSH's `safe_path` does; a sticky directory
/// (like /tmp) is fine, as there others cannot rename what is ours.
#[test]
fn a_parent_others_can_write_to_without_the_sticky_bit_is_refused() {
    let ws = Ws::new();
    let parent = ws.path("shared");
    let grand = parent.join("team");
    fs::create_dir_all(&grand).unwrap();
    let root = grand.join("ws");
    let root_s = root.to_str().unwrap();
    ws.ok(&["--workspace", root_s, "new", "root", "r"]);
    for (dir, mode, fix) in [
        (&parent, 0o777, "chmod go-w"),
        (&grand, 0o757, "chmod o-w"),
        (&parent, 0o775, "chmod g-w"),
    ] {
        chmod(dir, mode);
        let err = ws.fails(&["--workspace", root_s, "list"]);
        assert!(
            err.contains(&format!("{} (a parent of the workspace", dir.display()))
                && err.contains(&format!("`{fix} {}`", dir.display()))
                && err.contains(&format!("`chmod +t {}`", dir.display()))
                && err.contains("without the sticky bit"),
            "{} at {mode:o}: {err}",
            dir.display()
        );
        // A new workspace below it is refused too, before anything is created.
        let fresh = grand.join("fresh");
        let err = ws.fails(&["--workspace", fresh.to_str().unwrap(), "init"]);
        assert!(err.contains("without the sticky bit"), "{err}");
        assert!(!fresh.exists());
        // Sticky, as /tmp is: others cannot rename what is ours there.
        chmod(dir, mode | 0o1000);
        ws.ok(&["--workspace", root_s, "list"]);
        chmod(dir, 0o755);
    }
    ws.ok(&["--workspace", root_s, "list"]);
}

#[test]
fn a_planted_hub_or_entities_directory_is_refused() {
    let ws = Ws::new();
    ws.ok(&["new", "root", "r"]);
    ws.ok(&["hub", "ca", "add", "r", "--verified"]);
    // entities/ replaced by a link to a directory someone else prepared.
    let planted = ws.path("planted");
    fs::rename(ws.ws().join("entities"), &planted).unwrap();
    std::os::unix::fs::symlink(&planted, ws.ws().join("entities")).unwrap();
    let err = ws.fails(&["list"]);
    assert!(err.contains("symbolic link"), "{err}");
    fs::remove_file(ws.ws().join("entities")).unwrap();
    fs::rename(&planted, ws.ws().join("entities")).unwrap();
    // hub/ owned by another user (mode 0700, so only ownership gives it away).
    if !give_to_nobody(&ws.ws().join("hub")) {
        return;
    }
    let err = ws.fails(&["hub", "ca", "list"]);
    assert!(err.contains("owned by user 65534"), "{err}");
}

// ---- item 7: no user file replaced without --force

#[test]
fn crl_out_keeps_a_users_file_unless_forced() {
    let ws = Ws::new();
    ws.ok(&["new", "root", "r"]);
    let notes = ws.path("notes.txt");
    fs::write(&notes, "my notes\n").unwrap();
    let err = ws.fails(&["crl", "r", "--out", "notes.txt"]);
    assert!(
        err.contains("notes.txt") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&notes).unwrap(), "my notes\n");
    ws.ok(&["crl", "r", "--out", "notes.txt", "--force"]);
    assert!(
        fs::read_to_string(&notes)
            .unwrap()
            .contains("BEGIN X509 CRL")
    );
    // A new file is simply written.
    ws.ok(&["crl", "r", "--out", "r.crl.pem"]);
}

#[test]
fn verification_out_keeps_a_users_file_and_the_first_code() {
    let ws = Ws::new();
    ws.ok(&["new", "root", "r"]);
    let doc = ws.path("doc.txt");
    fs::write(&doc, "my document\n").unwrap();
    let err = ws.fails(&[
        "new",
        "verification",
        "--issuer",
        "r",
        "--code",
        "AAAA11",
        "--out",
        "doc.txt",
    ]);
    assert!(err.contains("doc.txt") && err.contains("--force"), "{err}");
    assert_eq!(fs::read_to_string(&doc).unwrap(), "my document\n");
    // Refused before anything was made.
    assert!(!ws.ok(&["list"]).contains("verify-r-AAAA11"));

    // The default file: a second code does not silently replace the first.
    ws.ok(&["new", "verification", "--issuer", "r", "--code", "CODE1"]);
    let default = ws.path("verification_cert.pem");
    let first = fs::read(&default).unwrap();
    let err = ws.fails(&["new", "verification", "--issuer", "r", "--code", "CODE2"]);
    assert!(err.contains("verification_cert.pem"), "{err}");
    assert_eq!(fs::read(&default).unwrap(), first);
    ws.ok(&[
        "new",
        "verification",
        "--issuer",
        "r",
        "--code",
        "CODE2",
        "--force",
    ]);
    let (ok, text) = openssl(
        &["x509", "-noout", "-subject", "-in", "verification_cert.pem"],
        ws.dir.path(),
    );
    assert!(ok && text.contains("CODE2"), "{text}");
}

fn spec(ws: &Ws, days: u32, password: &str) -> String {
    let p = ws.path("spec.toml");
    fs::write(
        &p,
        format!(
            "[[ca]]\nname = \"r\"\nexport = {{ formats = [\"pem\"] }}\n\n\
             [[device]]\nid = \"dev{{1..2}}\"\nissuer = \"r\"\ndays = {days}\n\
             export = {{ formats = [\"pem\", \"pfx\"], password = \"{password}\" }}\n"
        ),
    )
    .unwrap();
    p.display().to_string()
}

#[test]
fn apply_out_keeps_a_users_file_but_replaces_its_own() {
    let ws = Ws::new();
    let out = ws.path("out");
    fs::create_dir(&out).unwrap();
    let user = out.join("dev1.cert.pem");
    fs::write(&user, "user data\n").unwrap();
    let s = spec(&ws, 30, "pw-one");
    let err = ws.fails(&["apply", &s, "--out", "out"]);
    assert!(
        err.contains("dev1.cert.pem") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&user).unwrap(), "user data\n");
    let names: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        names.len(),
        1,
        "something was written under --out: {names:?}"
    );

    fs::remove_file(&user).unwrap();
    ws.ok(&["apply", &s, "--out", "out"]);
    // A changed spec re-issues the devices: apply replaces the files it wrote itself.
    let before = fs::read(&user).unwrap();
    let s = spec(&ws, 31, "pw-one");
    ws.ok(&["apply", &s, "--out", "out"]);
    assert_ne!(fs::read(&user).unwrap(), before);
    // Once the user edits one, a re-issue stops before writing anything.
    fs::write(&user, "edited by hand\n").unwrap();
    let dev2 = fs::read(out.join("dev2.cert.pem")).unwrap();
    let s = spec(&ws, 32, "pw-one");
    let err = ws.fails(&["apply", &s, "--out", "out"]);
    assert!(err.contains("dev1.cert.pem"), "{err}");
    assert_eq!(fs::read_to_string(&user).unwrap(), "edited by hand\n");
    assert_eq!(fs::read(out.join("dev2.cert.pem")).unwrap(), dev2);
    ws.ok(&["apply", &s, "--out", "out", "--force"]);
    assert!(
        fs::read_to_string(&user)
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
}

// ---- item 8: apply's state; racing processes

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

#[test]
fn apply_state_holds_no_password_hash_and_a_new_password_is_noticed() {
    let ws = Ws::new();
    let s = spec(&ws, 30, "s3cret-pw");
    ws.ok(&["apply", &s, "--out", "out"]);
    let out = ws.path("out");
    // The hashes a state may hold: certificates' and written files'. Nothing else.
    let mut known: Vec<String> = Vec::new();
    for e in fs::read_dir(&out).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            known.push(sha256_hex(&fs::read(e.path()).unwrap()));
        }
    }
    for m in ws.json(&["list"])["entities"].as_array().unwrap() {
        known.push(
            m["sha256"]
                .as_str()
                .unwrap()
                .replace(':', "")
                .to_lowercase(),
        );
    }
    let state = fs::read_to_string(out.join(".chainsmith-apply/dev1.state")).unwrap();
    assert!(!state.contains("s3cret-pw"));
    for word in state.split(|c: char| !c.is_ascii_hexdigit()) {
        if word.len() >= 32 {
            assert!(
                known.contains(&word.to_lowercase()),
                "the state holds a hash of something other than a certificate or file: {word}\n{state}"
            );
        }
    }
    // Same spec: nothing changes. New password: the PFX is written again and opens with it.
    let pfx = out.join("dev1.pfx");
    let before = fs::read(&pfx).unwrap();
    ws.ok(&["apply", &s, "--out", "out"]);
    assert_eq!(fs::read(&pfx).unwrap(), before);
    let s = spec(&ws, 30, "other-pw");
    ws.ok(&["apply", &s, "--out", "out"]);
    let (ok, msg) = openssl(
        &[
            "pkcs12",
            "-info",
            "-noout",
            "-in",
            "out/dev1.pfx",
            "-passin",
            "pass:other-pw",
        ],
        ws.dir.path(),
    );
    assert!(ok, "{msg}");
}

/// The engine: a batch some of whose names another process created meanwhile says which
/// this call made and which were taken (deterministic, unlike the process race below).
#[test]
fn a_batch_that_lost_names_reports_made_and_taken() {
    let dir = tempfile::tempdir().unwrap();
    let ws = chainsmith::store::Workspace::init(&dir.path().join("ws")).unwrap();
    let dev = |id: &str| {
        chainsmith::ops::device_entity(
            id,
            None,
            chainsmith::pki::KeyAlg::EcP256,
            &chainsmith::pki::Profile::Device {
                eku: Default::default(),
                sans: vec![],
            },
            chainsmith::pki::Validity::days_from(ws.now(), 30),
            Default::default(),
            None,
            ws.now(),
        )
        .unwrap()
    };
    ws.create(&[dev("d2")]).unwrap();
    let err = ws.create(&[dev("d1"), dev("d2"), dev("d3")]).unwrap_err();
    match &err {
        chainsmith::store::Error::Raced { made, taken } => {
            assert_eq!(made, &["d1", "d3"]);
            assert_eq!(taken, &["d2"]);
        }
        other => panic!("expected Raced, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("made 2 of 3") && text.contains("d2"),
        "{text}"
    );
    assert_eq!(err.kind(), "raced");
}

#[test]
fn two_processes_on_overlapping_ranges_say_what_each_made() {
    let ws = Ws::new();
    ws.ok(&["new", "root", "r"]);
    let run = |range: &'static str| {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("chainsmith"));
        c.env("CHAINSMITH_WORKSPACE", ws.ws())
            .args(["--json", "new", "device", range, "--issuer", "r"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let ranges = [("dev-{001..300}", 1..=300), ("dev-{151..450}", 151..=450)];
    let children: Vec<_> = ranges.iter().map(|(r, _)| run(r)).collect();
    let mut made_by: Vec<Vec<String>> = Vec::new();
    for (child, (range, ids)) in children.into_iter().zip(ranges.iter()) {
        let out = child.wait_with_output().unwrap();
        let all: Vec<String> = ids.clone().map(|i| format!("dev-{i:03}")).collect();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{range}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        let names = |k: &str| -> Vec<String> {
            v["error"][k]
                .as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                .unwrap_or_default()
        };
        match out.status.code() {
            Some(0) => made_by.push(all),
            Some(1) => match v["error"]["kind"].as_str() {
                // Lost some names after issuing: both lists, together the whole range.
                Some("raced") => {
                    let (made, taken) = (names("made"), names("taken"));
                    assert!(!made.is_empty() && !taken.is_empty(), "{v}");
                    let mut both: Vec<String> = made.iter().chain(&taken).cloned().collect();
                    both.sort();
                    assert_eq!(both, all, "{range}: made + taken must be the range");
                    made_by.push(made);
                }
                // Saw the other's names before issuing anything: made nothing.
                Some("name-taken") => made_by.push(vec![]),
                k => panic!("{range}: unexpected error kind {k:?}: {v}"),
            },
            c => panic!("{range}: exit {c:?}"),
        }
    }
    // Every device in the workspace was made by exactly one of them, as they said.
    let mut union: Vec<String> = made_by.concat();
    union.sort();
    let mut existing: Vec<String> = ws.json(&["list"])["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .filter(|n| n.starts_with("dev-"))
        .collect();
    existing.sort();
    assert_eq!(union, existing, "made lists overlap or miss names");
    assert!(existing.len() >= 300);
}
