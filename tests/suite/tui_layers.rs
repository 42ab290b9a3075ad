//! The TUI's layers, read from its source: each tab (its state, its keys, its drawing) and each
//! shared widget stands on its own; `app` composes the tabs, `ui` lays out the frame, and the
//! loop (`mod.rs`) runs both. A tab that reached back into `app` (or any circle among the
//! files) would make the tabs one tangle again, as they were before issue 23.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The tabs: each owns its state, `key` and `render`, and sees nothing of the app.
const TABS: [&str; 5] = ["pki", "hub", "connect", "fleet", "guide"];

/// The composition, which may import the tabs and which no tab imports: the app, the frame
/// layout, the loop, the loop's action type (it gathers every tab's results) and the engines
/// the loop drives.
const COMPOSERS: [&str; 5] = ["app", "ui", "mod", "action", "engines"];

/// Each `src/tui/*.rs` file (by stem) and its non-test code without comments.
fn tui_sources() -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join("tui");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or("")
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        out.insert(stem, code);
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The names a path names after `prefix` at `rest`: `x` in `x::…`, or each of `{a, b::c}`.
fn names_after(rest: &str) -> Vec<String> {
    if let Some(group) = rest.strip_prefix('{') {
        let body = &group[..group.find('}').unwrap_or(group.len())];
        return body
            .split(',')
            .map(|part| part.trim().chars().take_while(|c| is_ident(*c)).collect())
            .filter(|s: &String| !s.is_empty())
            .collect();
    }
    let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
    vec![name]
}

/// The import graph of `src/tui/`: file → the files its non-test code names. `super::x` (or
/// `crate::tui::x`) is file `x` when `x` is a module, else an item of `mod.rs`; in `mod.rs`
/// itself a path that starts with a module's name (`app::App`) names that module.
fn tui_imports() -> BTreeMap<String, BTreeSet<String>> {
    let sources = tui_sources();
    let modules: BTreeSet<String> = sources.keys().filter(|m| *m != "mod").cloned().collect();
    let mut graph = BTreeMap::new();
    for (file, code) in &sources {
        let mut deps = BTreeSet::new();
        let prefixes: &[&str] = if file == "mod" {
            &["crate::tui::", "self::"]
        } else {
            &["crate::tui::", "super::"]
        };
        for prefix in prefixes {
            for (i, _) in code.match_indices(prefix) {
                if code[..i].ends_with(|c: char| is_ident(c) || c == ':') && *prefix != "super::" {
                    continue;
                }
                for name in names_after(&code[i + prefix.len()..]) {
                    if name == "super" || name == "self" {
                        continue;
                    }
                    deps.insert(if modules.contains(&name) {
                        name
                    } else {
                        "mod".to_string()
                    });
                }
            }
        }
        if file == "mod" {
            for m in &modules {
                let pat = format!("{m}::");
                for (i, _) in code.match_indices(&pat) {
                    if !code[..i].ends_with(|c: char| is_ident(c) || c == ':') {
                        deps.insert(m.clone());
                    }
                }
            }
        }
        deps.remove(file);
        graph.insert(file.clone(), deps);
    }
    graph
}

/// Every file a file reaches through the graph.
fn reach(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(m) = stack.pop() {
        for d in graph.get(&m).into_iter().flatten() {
            if seen.insert(d.clone()) {
                stack.push(d.clone());
            }
        }
    }
    seen
}

/// No circle among the TUI's files, of any length.
#[test]
fn no_import_cycle_among_tui_modules() {
    let graph = tui_imports();
    assert!(
        graph.contains_key("app") && graph.contains_key("pki"),
        "{graph:?}"
    );
    for m in graph.keys() {
        assert!(
            !reach(&graph, m).contains(m),
            "import cycle through src/tui/{m}.rs: {m} imports {:?}; the whole graph: {graph:#?}",
            graph[m]
        );
    }
}

/// A tab reaches neither `app`, `ui` nor the loop, directly or through a widget, and the shared
/// widgets reach no tab: what a tab needs from elsewhere comes in as arguments to `key` and
/// `render`, and what it asks of the app goes out as a request.
#[test]
fn tabs_and_widgets_import_no_app() {
    let graph = tui_imports();
    for tab in TABS {
        assert!(
            graph.contains_key(tab),
            "the {tab} tab has no src/tui/{tab}.rs"
        );
        let reached = reach(&graph, tab);
        for c in COMPOSERS {
            assert!(
                !reached.contains(c),
                "the {tab} tab reaches {c} (it imports {:?}): a tab takes what it needs as \
                 arguments and returns a request",
                graph[tab]
            );
        }
    }
    for (m, deps) in &graph {
        if TABS.contains(&m.as_str()) || COMPOSERS.contains(&m.as_str()) {
            continue;
        }
        // A shared module (theme, widgets, forms, dialogs, the request types) is a leaf under
        // the tabs.
        let reached = reach(&graph, m);
        for above in TABS.iter().chain(COMPOSERS.iter()) {
            assert!(
                !reached.contains(*above),
                "shared module {m} reaches {above} (it imports {deps:?})"
            );
        }
    }
}

/// The graph reader itself: grouped imports, items of `mod.rs`, and `mod.rs`'s own paths.
#[test]
fn import_reader_sees_grouped_and_item_paths() {
    assert_eq!(names_after("{a, b::c, d as e}"), vec!["a", "b", "d"]);
    assert_eq!(names_after("clock(t)"), vec!["clock"]);
    let graph = tui_imports();
    assert!(graph["mod"].contains("app"), "{:?}", graph["mod"]);
}
