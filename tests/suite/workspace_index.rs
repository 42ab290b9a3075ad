//! The workspace index (`WORKSPACE/index`): every command that changes entities keeps it
//! current, a workspace changed by hand is noticed, a damaged or foreign index is rebuilt, two
//! writers at once lose nothing, and `list` says exactly what it said without an index.

use crate::common::Ws;
use chainsmith::store::{INDEX_FILE, Workspace};
use std::fs;
use std::path::{Path, PathBuf};

const NOW: &str = "2026-06-01T12:00:00Z";

fn list_json(w: &Ws) -> serde_json::Value {
    let out = w
        .cmd()
        .env("CHAINSMITH_NOW", NOW)
        .args(["--json", "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn list_text(w: &Ws) -> String {
    let out = w
        .cmd()
        .env("CHAINSMITH_NOW", NOW)
        .arg("list")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `list` with no index: every entity directory read, as before the index existed.
fn full_read(w: &Ws) -> (serde_json::Value, String) {
    let _ = fs::remove_file(w.ws().join(INDEX_FILE));
    let json = list_json(w);
    let _ = fs::remove_file(w.ws().join(INDEX_FILE));
    (json, list_text(w))
}

fn meta_files(ws: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(ws.join("entities"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("meta.toml"))
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// `list --json` from the index alone: while it runs, every meta.toml holds garbage written in
/// place (which the index does not notice, by design: the directory is the same inode), so an
/// entity whose record was missing or stale shows up as damaged.
fn listed_from_index_only(w: &Ws) -> serde_json::Value {
    let saved: Vec<(PathBuf, Vec<u8>)> = meta_files(&w.ws())
        .into_iter()
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    for (p, _) in &saved {
        write_in_place(p, b"not toml [");
    }
    let json = list_json(w);
    for (p, b) in &saved {
        write_in_place(p, b);
    }
    json
}

/// Rewrite a file's bytes keeping its inode (as `cat > file` does).
fn write_in_place(p: &Path, bytes: &[u8]) {
    use std::io::Write as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(p)
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// The index holds every entity, current: `list` from it alone equals a full read.
fn assert_index_current(w: &Ws, after: &str) {
    let from_index = listed_from_index_only(w);
    let (full, _) = full_read(w);
    assert_eq!(from_index, full, "after {after}");
    // The full read wrote the index again; it must be current once more.
    assert_eq!(listed_from_index_only(w), full, "after {after}, rebuilt");
}

#[test]
fn every_command_that_changes_entities_keeps_the_index_current() {
    let w = Ws::new();
    let steps: Vec<(&str, Vec<&str>)> = vec![
        ("new root", vec!["new", "root", "acme"]),
        (
            "new intermediate",
            vec!["new", "intermediate", "inter", "--issuer", "acme"],
        ),
        (
            "new device",
            vec!["new", "device", "d-{1..20}", "--issuer", "inter"],
        ),
        (
            "new device --force",
            vec!["new", "device", "d-3", "--issuer", "acme", "--force"],
        ),
        ("renew", vec!["renew", "d-4", "--days", "30"]),
        ("revoke", vec!["revoke", "d-5", "--reason", "keyCompromise"]),
        ("apply", vec!["apply", "spec.toml"]),
        (
            "import",
            vec!["import", "other-root.pem", "--name", "partner"],
        ),
    ];
    fs::write(
        w.path("spec.toml"),
        "[[ca]]\nname = \"spec-root\"\n[[device]]\nid = \"s1\"\nissuer = \"spec-root\"\n[[device]]\nid = \"ss\"\nslots = [\"secondary\", \"primary\"]\n",
    )
    .unwrap();
    let other = w.other();
    other.ok(&["new", "root", "outside"]);
    fs::copy(
        other.ws().join("entities/outside/cert.pem"),
        w.path("other-root.pem"),
    )
    .unwrap();
    for (what, args) in &steps {
        w.ok(args);
        assert_index_current(&w, what);
    }
    // Deleting goes through the store layer (the TUI's `d`).
    let ws = Workspace::open(&w.ws()).unwrap();
    ws.remove("d-6").unwrap();
    assert_index_current(&w, "remove");
    let listed = list_json(&w);
    let names: Vec<&str> = listed["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"partner") && names.contains(&"ss") && !names.contains(&"d-6"));
}

#[test]
fn a_workspace_changed_by_hand_is_noticed() {
    let w = Ws::new();
    w.ok(&["new", "root", "r"]);
    w.ok(&["new", "device", "d-{1..5}", "--issuer", "r"]);
    list_json(&w);
    let entities = w.ws().join("entities");
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };

    // An entity directory removed.
    fs::remove_dir_all(entities.join("d-2")).unwrap();
    assert!(!names(&list_json(&w)).contains(&"d-2".to_string()));

    // One added: moved in from another workspace.
    let other = w.other();
    other.ok(&["new", "root", "moved"]);
    fs::rename(other.ws().join("entities/moved"), entities.join("moved")).unwrap();
    assert!(names(&list_json(&w)).contains(&"moved".to_string()));

    // An entity directory replaced by an edited copy (copied out, meta.toml and cert.pem
    // changed, the copy moved over the original).
    let copy = w.path("d-3-edited");
    fs::create_dir(&copy).unwrap();
    for f in ["cert.pem", "key.pem", "meta.toml"] {
        fs::copy(entities.join("d-3").join(f), copy.join(f)).unwrap();
    }
    let text = fs::read_to_string(copy.join("meta.toml")).unwrap();
    let edited = text.replace("cn = \"d-3\"", "cn = \"edited by hand\"");
    assert_ne!(text, edited);
    fs::write(copy.join("meta.toml"), &edited).unwrap();
    fs::copy(entities.join("d-1/cert.pem"), copy.join("cert.pem")).unwrap();
    fs::remove_dir_all(entities.join("d-3")).unwrap();
    fs::rename(&copy, entities.join("d-3")).unwrap();
    let v = list_json(&w);
    let d3 = v["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "d-3")
        .unwrap();
    assert_eq!(d3["cn"], "edited by hand", "{d3:#}");

    // An entity directory replaced by a link to elsewhere: damaged, as without the index.
    let away = w.path("away");
    fs::rename(entities.join("d-4"), &away).unwrap();
    std::os::unix::fs::symlink(&away, entities.join("d-4")).unwrap();
    let v = list_json(&w);
    assert!(!names(&v).contains(&"d-4".to_string()));
    assert_eq!(v["damaged"].as_array().unwrap().len(), 1, "{v:#}");

    // Whatever was changed, the listing equals a full read, and the index is current again.
    let (full, _) = full_read(&w);
    assert_eq!(list_json(&w), full);
    assert_eq!(listed_from_index_only(&w), full);
}

#[test]
fn a_damaged_or_foreign_index_is_ignored_and_rebuilt() {
    let w = Ws::new();
    w.ok(&["new", "root", "r"]);
    w.ok(&["new", "device", "d-{1..5}", "--issuer", "r"]);
    let (full, text) = full_read(&w);
    let index = w.ws().join(INDEX_FILE);
    list_json(&w);
    let good = fs::read(&index).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 1;
    // Version 2 with a correct checksum: a later chainsmith's index.
    let mut foreign = good[..good.len() - 32].to_vec();
    foreign[16..20].copy_from_slice(&2u32.to_le_bytes());
    let sum = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &foreign);
    foreign.extend_from_slice(sum.as_ref());
    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("cut in half", good[..good.len() / 2].to_vec()),
        ("one bit flipped", flipped),
        ("another version", foreign),
        ("not an index", b"hello".to_vec()),
    ];
    for (what, bytes) in damages {
        fs::write(&index, &bytes).unwrap();
        assert_eq!(list_json(&w), full, "{what}");
        assert_ne!(fs::read(&index).unwrap(), bytes, "{what}: rebuilt");
        assert_eq!(
            listed_from_index_only(&w),
            full,
            "{what}: rebuilt and current"
        );
        assert_eq!(list_text(&w), text, "{what}");
    }
    // A directory where the index should be: listing still works (from the entities).
    fs::remove_file(&index).unwrap();
    fs::create_dir(&index).unwrap();
    assert_eq!(list_json(&w), full);
    assert_eq!(list_text(&w), text);
}

#[test]
fn two_processes_writing_at_once_lose_no_entity_from_the_index() {
    let w = Ws::new();
    w.ok(&["new", "root", "r"]);
    for round in 0..3 {
        let a = format!("a{round}-{{1..150}}");
        let b = format!("b{round}-{{1..150}}");
        let mut one = w.cmd();
        one.args(["new", "device", &a, "--issuer", "r"]);
        let mut two = w.cmd();
        two.args(["new", "device", &b, "--issuer", "r"]);
        let (x, y) = std::thread::scope(|s| {
            let x = s.spawn(|| one.output().unwrap());
            let y = s.spawn(|| two.output().unwrap());
            (x.join().unwrap(), y.join().unwrap())
        });
        assert!(x.status.success() && y.status.success());
        let v = listed_from_index_only(&w);
        assert_eq!(v["damaged"].as_array().unwrap().len(), 0, "round {round}");
        assert_eq!(
            v["entities"].as_array().unwrap().len(),
            1 + 300 * (round + 1)
        );
    }
}

/// A seeded walk of changes (new CAs and devices, renewals, revocations, removals, changes by
/// hand); after each, `list` and `list --json` through the index equal a full read.
#[test]
fn list_through_the_index_equals_a_full_read_after_any_change() {
    use rand::{Rng as _, SeedableRng as _};
    let mut rng = rand::rngs::StdRng::seed_from_u64(25);
    let w = Ws::new();
    w.ok(&["new", "root", "root-0"]);
    let mut cas = vec!["root-0".to_string()];
    let mut devices: Vec<String> = Vec::new();
    let mut next = 0;
    for step in 0..24 {
        let pick =
            |rng: &mut rand::rngs::StdRng, v: &Vec<String>| v[rng.random_range(0..v.len())].clone();
        let change = rng.random_range(0..7);
        match change {
            0 => {
                next += 1;
                let name = format!("ca-{next}");
                let issuer = pick(&mut rng, &cas);
                w.ok(&["new", "intermediate", &name, "--issuer", &issuer]);
                cas.push(name);
            }
            1 | 2 => {
                next += 1;
                let issuer = pick(&mut rng, &cas);
                let ids = format!("dev{next}-{{1..4}}");
                w.ok(&["new", "device", &ids, "--issuer", &issuer]);
                devices.extend((1..=4).map(|i| format!("dev{next}-{i}")));
            }
            3 if !devices.is_empty() => {
                let d = pick(&mut rng, &devices);
                w.ok(&["renew", &d, "--days", "90"]);
            }
            4 if !devices.is_empty() => {
                let d = pick(&mut rng, &devices);
                let _ = w
                    .cmd()
                    .args(["revoke", &d, "--reason", "superseded"])
                    .output();
            }
            5 if !devices.is_empty() => {
                let d = devices.remove(rng.random_range(0..devices.len()));
                Workspace::open(&w.ws()).unwrap().remove(&d).unwrap();
            }
            _ if !devices.is_empty() => {
                let d = devices.remove(rng.random_range(0..devices.len()));
                fs::remove_dir_all(w.ws().join("entities").join(&d)).unwrap();
            }
            _ => {}
        }
        let through_index = (list_json(&w), list_text(&w));
        let full = full_read(&w);
        assert_eq!(through_index, full, "step {step} (change {change})");
    }
}
