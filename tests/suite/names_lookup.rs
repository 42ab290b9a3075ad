//! Issue 11 item 2: a name given for lookup follows the rules names are created with, and an
//! entity directory (or file) that is a link to elsewhere is refused. Every command that takes
//! a name is tried with `..`, `a/b`, an absolute path and a symlinked entity directory; the
//! workspace next door must not change and nothing may land in this one.

use crate::common::Ws;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Every file under `dir` with its bytes (links as their target), to prove nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                out.insert(
                    p.clone(),
                    fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                );
            } else if ft.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.clone(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

struct Setup {
    ws: Ws,
    other: PathBuf,
}

/// This workspace: root `r`, device `d`. Next door (`other/`): CA `outside-ca`, device `evil`.
fn setup() -> Setup {
    let ws = Ws::new();
    ws.ok(&["new", "root", "r"]);
    ws.ok(&["new", "device", "d", "--issuer", "r"]);
    let other = ws.path("other");
    let o = other.to_str().unwrap();
    ws.ok(&["--workspace", o, "new", "root", "outside-ca"]);
    ws.ok(&[
        "--workspace",
        o,
        "new",
        "device",
        "evil",
        "--issuer",
        "outside-ca",
    ]);
    // `a/b`: a real entity copied one level down, which a joined path would find.
    let nested = ws.ws().join("entities/a/b");
    fs::create_dir_all(&nested).unwrap();
    for f in ["cert.pem", "key.pem", "meta.toml"] {
        fs::copy(other.join("entities/outside-ca").join(f), nested.join(f)).unwrap();
    }
    // A symlinked entity directory, and a real CA whose key file links to the other key.
    std::os::unix::fs::symlink(
        other.join("entities/outside-ca"),
        ws.ws().join("entities/linked"),
    )
    .unwrap();
    ws.ok(&["new", "root", "lk"]);
    let key = ws.ws().join("entities/lk/key.pem");
    fs::remove_file(&key).unwrap();
    std::os::unix::fs::symlink(other.join("entities/outside-ca/key.pem"), &key).unwrap();
    // A CSR for sign-csr.
    crate::common::openssl_csr(ws.dir.path(), "zz", &[]);
    Setup { ws, other }
}

/// The bad names, and what the error must say about each.
fn bad_names(s: &Setup) -> Vec<(String, &'static str)> {
    let abs = s.other.join("entities/outside-ca").display().to_string();
    vec![
        (
            "../../other/entities/outside-ca".into(),
            "names are file names in the workspace",
        ),
        ("..".into(), "names are file names in the workspace"),
        ("a/b".into(), "names are file names in the workspace"),
        (abs, "names are file names in the workspace"),
        ("linked".into(), "symbolic link"),
    ]
}

fn commands(name: &str) -> Vec<Vec<String>> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        v(&["show", name]),
        v(&["renew", name]),
        v(&["revoke", name]),
        v(&["export", name, "--out", "exp"]),
        v(&["crl", name]),
        v(&["lint", name]),
        v(&["new", "device", "zz", "--issuer", name]),
        v(&["new", "intermediate", "zz", "--issuer", name]),
        v(&[
            "new",
            "verification",
            "--issuer",
            name,
            "--code",
            "ABC123",
            "--out",
            "v.pem",
        ]),
        v(&["sign-csr", "zz.csr", "--issuer", name]),
        v(&["hub", "ca", "add", name, "--verified"]),
        v(&[
            "hub",
            "device",
            "add",
            "zz",
            "--auth",
            "self-signed",
            "--from",
            name,
        ]),
        v(&["connect", name, "--to", "127.0.0.1:1"]),
    ]
}

fn assert_untouched(s: &Setup, before: &BTreeMap<PathBuf, Vec<u8>>, what: &str) {
    assert!(
        snapshot(&s.other) == *before,
        "{what} changed the workspace next door"
    );
    assert!(
        !s.ws.ws().join("entities/zz").exists(),
        "{what} made an entity"
    );
    assert!(
        !s.ws.path("exp").exists() && !s.ws.path("v.pem").exists(),
        "{what} wrote a file"
    );
    let hub = s.ws.ok(&["hub", "ca", "list"]);
    assert!(!hub.contains("outside"), "{what} registered a CA: {hub}");
}

#[test]
fn every_command_refuses_names_outside_the_workspace() {
    let s = setup();
    let before = snapshot(&s.other);
    for (name, why) in bad_names(&s) {
        for args in commands(&name) {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            let err = s.ws.fails(&a);
            assert!(
                err.contains(why),
                "chainsmith {a:?}: expected \"{why}\", got: {err}"
            );
            assert_untouched(&s, &before, &format!("{a:?}"));
        }
    }
}

#[test]
fn a_key_file_linked_from_elsewhere_is_not_used() {
    let s = setup();
    let before = snapshot(&s.other);
    for args in [
        vec!["new", "device", "zz", "--issuer", "lk"],
        vec!["export", "lk", "--out", "exp"],
        vec!["renew", "lk"],
        vec!["revoke", "lk"],
        vec!["show", "lk"],
        vec!["hub", "ca", "add", "lk", "--verified"],
    ] {
        let err = s.ws.fails(&args);
        assert!(err.contains("symbolic link"), "{args:?}: {err}");
        assert_untouched(&s, &before, &format!("{args:?}"));
    }
    // `list` names the linked directory as damaged rather than showing the other's CA.
    let list = s.ws.ok_all(&["list"]);
    assert!(
        list.contains("linked") && list.contains("symbolic link"),
        "{list}"
    );
}

#[test]
fn a_spec_cannot_name_an_issuer_outside_the_workspace() {
    let s = setup();
    let before = snapshot(&s.other);
    let spec = s.ws.path("spec.toml");
    fs::write(
        &spec,
        "[[device]]\nid = \"zz\"\nissuer = \"../../other/entities/outside-ca\"\n",
    )
    .unwrap();
    let err = s.ws.fails(&["apply", spec.to_str().unwrap()]);
    assert!(err.contains("outside-ca"), "{err}");
    assert_untouched(&s, &before, "apply");
}

/// The engine's own lookups (what the TUI calls) take the same path.
#[test]
fn engine_lookups_refuse_bad_names() {
    let s = setup();
    let ws = chainsmith::store::Workspace::open(&s.ws.ws()).unwrap();
    let before = snapshot(&s.other);
    for (name, why) in bad_names(&s) {
        let err = ws.load(&name).unwrap_err().to_string();
        assert!(err.contains(why), "load({name}): {err}");
        assert!(!ws.exists(&name) || name == "linked");
        if name != "linked" {
            assert!(ws.remove(&name).is_err(), "remove({name})");
        }
        let err = chainsmith::mqtt::identity::Identity::from_workspace(&ws, &name)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(why), "identity({name}): {err}");
    }
    assert!(snapshot(&s.other) == before);
    assert!(ws.load("r").is_ok());
}
