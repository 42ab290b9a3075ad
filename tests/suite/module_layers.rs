//! The engine's folders have no import circles (issue 23: `server.rs`, `amqp.rs`, `ws.rs` and
//! `dps_server.rs` imported each other in a circle). Read from the source: each file of a
//! folder module is a node, and an edge is a path its non-test code names: `super::x` or
//! `crate::FOLDER::x` (the folder's `x.rs` or `x/`). A nested file's `super::` is its own
//! folder's `mod.rs`. (A `mod.rs` re-exporting its children is not an edge: the children's
//! `super::Error` and the parent's `pub use child::*` are one module's two halves.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Each `.rs` file under `dir`, named by its path below it without `.rs` (`dps/mqtt`), with its
/// non-test code without comments.
fn sources(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, p: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(p).unwrap() {
            let p: PathBuf = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                let code: String = text
                    .split("#[cfg(test)]")
                    .next()
                    .unwrap_or("")
                    .lines()
                    .map(|l| l.split("//").next().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join("\n");
                let rel = p.strip_prefix(root).unwrap().with_extension("");
                out.insert(rel.to_string_lossy().into_owned(), code);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The first names after each occurrence of `prefix` (one, or each of a `{a, b}` group).
fn named_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        if code[..i].ends_with(|c: char| is_ident(c) || c == ':') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(
                body.split(',')
                    .map(|p| {
                        p.trim()
                            .chars()
                            .take_while(|c| is_ident(*c))
                            .collect::<String>()
                    })
                    .filter(|s| !s.is_empty()),
            );
        } else {
            out.push(rest.chars().take_while(|c| is_ident(*c)).collect());
        }
    }
    out
}

/// The graph of folder `dir` (module path `crate_path`, e.g. `crate::hub`).
fn graph(dir: &Path, crate_path: &str) -> BTreeMap<String, BTreeSet<String>> {
    let files = sources(dir);
    // A name of the folder: `x` is node `x` (x.rs) or `x/mod` (x/); else it is `mod`'s.
    let node = |scope: &str, name: &str| -> String {
        let base = if scope.is_empty() {
            name.to_string()
        } else {
            format!("{scope}/{name}")
        };
        if files.contains_key(&base) {
            base
        } else if files.contains_key(&format!("{base}/mod")) {
            format!("{base}/mod")
        } else if scope.is_empty() {
            "mod".into()
        } else {
            format!("{scope}/mod")
        }
    };
    let mut g = BTreeMap::new();
    for (file, code) in &files {
        let (scope, stem) = match file.rsplit_once('/') {
            Some((s, f)) => (s.to_string(), f.to_string()),
            None => (String::new(), file.clone()),
        };
        let mut deps = BTreeSet::new();
        for n in named_after(code, &format!("{crate_path}::")) {
            deps.insert(node("", &n));
        }
        // `super::` from `x.rs` is the folder; from `x/y.rs` it is `x`; from `x/mod.rs` the
        // folder above.
        let parent_scope = if stem == "mod" {
            scope
                .rsplit_once('/')
                .map(|(s, _)| s.to_string())
                .unwrap_or_default()
        } else {
            scope.clone()
        };
        if !(stem == "mod" && scope.is_empty()) {
            for n in named_after(code, "super::") {
                if n != "super" {
                    deps.insert(node(&parent_scope, &n));
                }
            }
        }
        deps.remove(file);
        g.insert(file.clone(), deps);
    }
    g
}

fn cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut c = path[at..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if !done.insert(m.to_string()) {
            return None;
        }
        path.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|m| visit(m, g, &mut Vec::new(), &mut done))
}

fn crate_dir(krate: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates")
        .join(krate)
        .join("src")
}

/// The local hub: its lifecycle on top, then the transports (WebSockets over MQTT and AMQP,
/// MQTT over the device session and DPS), then what they share, then the registry.
#[test]
fn the_hub_has_no_import_cycle() {
    let g = graph(&crate_dir("chainsmith-azure").join("hub"), "crate::hub");
    assert!(
        g["server"].contains("mqtt") && g["mqtt"].contains("shared"),
        "{g:#?}"
    );
    assert_eq!(cycle(&g), None, "{g:#?}");
    // The layers, spelled out: nothing below the server reaches up to it.
    for f in g.keys().filter(|f| *f != "server" && *f != "mod") {
        assert!(
            !g[f].contains("server"),
            "{f} reaches the hub's lifecycle: {g:#?}"
        );
    }
}

/// The other folders of the engine.
#[test]
fn the_engine_folders_have_no_import_cycle() {
    for (krate, folder, path) in [
        ("chainsmith-pki", "ops", "crate::ops"),
        ("chainsmith-pki", "store", "crate::store"),
        ("chainsmith-pki", "export", "crate::export"),
        ("chainsmith-pki", "pki", "crate::pki"),
        ("chainsmith-pki", "fixtures", "crate::fixtures"),
        ("chainsmith-device", "fleet", "crate::fleet"),
        ("chainsmith-device", "mqtt", "crate::mqtt"),
    ] {
        let g = graph(&crate_dir(krate).join(folder), path);
        assert_eq!(cycle(&g), None, "{krate}/{folder}: {g:#?}");
    }
}

#[test]
fn the_reader_sees_groups_and_nested_files() {
    assert_eq!(
        named_after("use super::{a, b::C};\nx::super::y", "super::"),
        ["a", "b"]
    );
    let g = graph(&crate_dir("chainsmith-azure").join("hub"), "crate::hub");
    // dps/mqtt.rs names `super::exchange::{self, Registrant}` (dps/exchange.rs) and
    // `crate::hub::shared::Shared`.
    assert!(g["dps/mqtt"].contains("dps/exchange"), "{g:#?}");
    assert!(g["dps/mqtt"].contains("shared"), "{g:#?}");
}
