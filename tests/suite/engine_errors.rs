//! Issue 12: an engine error says what is wrong and its fix in domain words, never a CLI flag,
//! and carries a kind and a remedy; the CLI turns the remedy into its flag, the TUI into its
//! field or key. The engine modules import one another without cycles.

use crate::common::Ws;
use chainsmith::error::{Classified, Remedy};
use chainsmith::export::{ExportOptions, Format};
use chainsmith::ops::{self, CaRequest, ValidityArg};
use chainsmith::pki::KeyAlg;
use chainsmith::store::Workspace;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn root(name: &str) -> CaRequest {
    CaRequest {
        name: name.into(),
        cn: None,
        subject: None,
        key: KeyAlg::EcP256,
        validity: ValidityArg::days(30),
        pathlen: None,
        issuer: None,
        force: false,
    }
}

/// The engine's words, its kind and its remedy, and no flag.
fn check(e: &impl Classified, kind: &str, remedy: Remedy) {
    let text = e.to_string();
    assert!(!text.contains("--"), "an engine error names a flag: {text}");
    assert_eq!(e.kind(), kind, "{text}");
    assert_eq!(e.remedy(), Some(remedy), "{text}");
}

#[test]
fn engine_errors_carry_kind_and_remedy_and_name_no_flag() {
    let w = Ws::new();
    let ws = Workspace::open_or_create(&w.ws()).unwrap();
    ops::new_ca(&ws, &root("r")).unwrap();

    let taken = ops::new_ca(&ws, &root("r")).unwrap_err();
    check(&taken, "name-taken", Remedy::Replace);
    // The TUI's hint names its own key, no flag.
    let tui = chainsmith::tui::forms::error_text(&taken);
    assert!(
        tui.contains("d on the PKI tab") && !tui.contains("--"),
        "{tui}"
    );

    let empty = ValidityArg::days(0)
        .resolve(&chainsmith::pki::Profile::Verification, ws.now())
        .unwrap_err();
    check(&empty, "invalid", Remedy::Validity);

    let crl = ops::lifecycle::crl(&ws, "r", Some(0)).unwrap_err();
    check(&crl, "invalid", Remedy::CrlDays);

    let pfx = chainsmith::export::export_entity(
        &ws,
        "r",
        &ExportOptions::new(w.path("out"), &[Format::Pfx]),
    )
    .unwrap_err();
    check(&pfx, "invalid", Remedy::Password);

    let cn = chainsmith::pki::subject::cn_only("").unwrap_err();
    check(&cn, "invalid", Remedy::CommonName);
}

#[test]
fn the_cli_adds_the_flag_to_the_engines_words() {
    let w = Ws::new();
    w.ok(&["new", "root", "r"]);
    let err = w.fails(&["new", "root", "r"]);
    assert!(
        err.contains("pick other names, or replace them (pass --force to replace)"),
        "{err}"
    );
    let out = w
        .cmd()
        .args(["--json", "new", "root", "r"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "name-taken", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("--force"),
        "{v}"
    );
}

/// The engine: every library module but the faces (`cli`, `tui`).
const ENGINE: [&str; 13] = [
    "pki",
    "store",
    "ops",
    "export",
    "fixtures",
    "hub",
    "azure",
    "mqtt",
    "fleet",
    "dps_client",
    "clock",
    "text",
    "error",
];

/// Where an engine module's files are in the workspace's crates: `crates/CRATE/src/m.rs`, its
/// folder `m/`, or both; `azure` is the Azure crate's root and its vocabulary files.
fn module_files(m: &str) -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates");
    let in_crate = |krate: &str, names: &[&str]| -> Vec<std::path::PathBuf> {
        names
            .iter()
            .map(|n| root.join(krate).join("src").join(n))
            .filter(|p| p.exists())
            .collect()
    };
    let files = match m {
        "azure" => in_crate(
            "chainsmith-azure",
            &["lib.rs", "dps.rs", "amqp.rs", "websocket.rs"],
        ),
        "hub" => in_crate("chainsmith-azure", &["hub"]),
        "mqtt" | "fleet" | "dps_client" => in_crate("chainsmith-device", &[m, &format!("{m}.rs")]),
        _ => in_crate("chainsmith-pki", &[m, &format!("{m}.rs")]),
    };
    assert!(!files.is_empty(), "engine module {m} has no files");
    files
}

/// The `.rs` files under `p` (or `p` itself), each cut at its `#[cfg(test)]`.
fn sources(p: &Path, out: &mut Vec<String>) {
    sources_with_paths(p, &mut Vec::new(), out);
}

fn sources_with_paths(p: &Path, paths: &mut Vec<std::path::PathBuf>, out: &mut Vec<String>) {
    if p.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            sources_with_paths(&e, paths, out);
        }
    } else if p.extension().is_some_and(|x| x == "rs") {
        let text = std::fs::read_to_string(p).unwrap();
        out.push(text.split("#[cfg(test)]").next().unwrap_or("").to_string());
        paths.push(p.to_path_buf());
    }
}

/// `crate::X` references of each engine module's non-test code.
fn engine_imports() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let mut deps = BTreeMap::new();
    for m in ENGINE {
        let mut texts = Vec::new();
        for p in module_files(m) {
            sources(&p, &mut texts);
        }
        let uses: BTreeSet<&str> = ENGINE
            .into_iter()
            .filter(|o| *o != m)
            .filter(|o| {
                let pat = format!("crate::{o}");
                texts.iter().any(|t| {
                    t.match_indices(&pat).any(|(i, _)| {
                        !t[i + pat.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
                    })
                })
            })
            .collect();
        deps.insert(m, uses);
    }
    deps
}

#[test]
fn no_import_cycle_between_engine_modules() {
    let deps = engine_imports();
    // A cycle of any length: depth-first search with the path kept.
    fn visit<'a>(
        m: &'a str,
        deps: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if let Some(at) = path.iter().position(|p| *p == m) {
            panic!("import cycle: {} -> {m}", path[at..].join(" -> "));
        }
        if !done.insert(m) {
            return;
        }
        path.push(m);
        for d in &deps[m] {
            visit(d, deps, path, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for m in deps.keys() {
        visit(m, &deps, &mut Vec::new(), &mut done);
    }
    // The layering the issue asks for, spelled out. (The PKI crate cannot name the hub at
    // all: `crates_are_layered` checks its manifest.)
    assert!(!deps["ops"].contains("hub"), "{deps:?}");
    assert!(!deps["azure"].contains("hub"), "{deps:?}");
    assert!(!deps["export"].contains("ops"), "{deps:?}");
    assert!(!deps["pki"].contains("export"), "{deps:?}");
}

#[test]
fn hub_errors_carry_kind_and_remedy_and_name_no_flag() {
    use chainsmith::hub::{Auth, HubStore, control::ControlError, system_trust::SystemTrust};
    let w = Ws::new();
    let ws = Workspace::open_or_create(&w.ws()).unwrap();
    ops::new_ca(&ws, &root("r")).unwrap();
    let hub = HubStore::open(&w.ws()).unwrap();

    let unknown = hub.remove_device("d1").unwrap_err();
    check(&unknown, "not-registered", Remedy::RegisterDevice);
    let with_ca = hub
        .add_device("d1", Auth::Ca, None, None, Some("r"))
        .unwrap_err();
    check(&with_ca, "thumbprint-with-ca", Remedy::NoThumbprints);
    let none = hub
        .add_device("d1", Auth::SelfSigned, None, None, None)
        .unwrap_err();
    check(&none, "no-thumbprint", Remedy::Thumbprints);
    let not_device = hub
        .add_device("d1", Auth::SelfSigned, None, None, Some("r"))
        .unwrap_err();
    check(&not_device, "not-a-device", Remedy::PickDevice);
    hub.add_ca("r", false).unwrap();
    check(
        &hub.add_ca("r", false).unwrap_err(),
        "already-registered",
        Remedy::UnregisterCa,
    );
    let proof = hub.verify_ca("r", b"not a certificate").unwrap_err();
    check(&proof, "proof-refused", Remedy::VerificationCertificate);

    check(
        &ControlError::NotRunning("hub.sock".into(), "refused".into()),
        "hub-not-running",
        Remedy::StartHub,
    );
    // A file where the store's directories should be: nobody can write there.
    std::fs::write(w.path("not-a-dir"), "x").unwrap();
    let trust = SystemTrust::under(&w.path("not-a-dir"))
        .install(&hub)
        .unwrap_err();
    check(&trust, "permission", Remedy::HubCaFile);

    // The Hub tab's words: the engine's, plus the key that does the fix.
    let tui = chainsmith::tui::forms::error_text(&unknown);
    assert!(
        tui.contains("a on the Hub tab") && !tui.contains("--"),
        "{tui}"
    );
}

#[test]
fn the_hub_cli_adds_the_command_to_the_engines_words() {
    let w = Ws::new();
    let err = w.fails(&["hub", "device", "remove", "d1"]);
    assert!(
        err.contains("register it first, by CA or as self-signed")
            && err.contains("(`chainsmith hub device add ID --auth ca|self-signed` registers it)"),
        "{err}"
    );
    let out = w
        .cmd()
        .args([
            "--json",
            "hub",
            "device",
            "add",
            "d1",
            "--auth",
            "self-signed",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "no-thumbprint", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--primary THUMBPRINT"),
        "{v}"
    );
}

/// Issue 12, the rest of the engine (store, ops, pki, hub, fleet): each error says its fix in
/// domain words and carries the remedy the faces turn into a flag, a command or a key.
#[test]
fn the_rest_of_the_engine_names_no_flag_or_command() {
    use chainsmith::fleet::{FleetError, Shard};
    use chainsmith::store::Error as S;
    let w = Ws::new();
    let ws = Workspace::open_or_create(&w.ws()).unwrap();

    // No CA yet, and a self-signed device named as issuer: make a root.
    w.ok(&["new", "device", "lab", "--self-signed"]);
    let Err(no_ca) = ops::load_ca(&ws, "lab") else {
        panic!("a device cannot issue");
    };
    check(&no_ca, "invalid", Remedy::MakeRoot);
    assert!(no_ca.to_string().contains("no CA yet"), "{no_ca}");

    ops::new_ca(&ws, &root("r")).unwrap();
    w.ok(&["new", "device", "d-1", "--issuer", "r"]);
    let Err(not_ca) = ops::load_ca(&ws, "d-1") else {
        panic!("a device cannot issue");
    };
    check(&not_ca, "invalid", Remedy::PickCa);
    let Err(missing) = ops::load_ca(&ws, "nope") else {
        panic!("no such issuer");
    };
    check(&missing, "not-found", Remedy::MakeRoot);
    assert!(matches!(&missing, S::NoIssuer { name, .. } if name == "nope"));
    let Err(unknown) = ws.load("nope") else {
        panic!("no such entity");
    };
    check(&unknown, "not-found", Remedy::ListEntities);

    std::fs::create_dir(w.path("empty")).unwrap();
    let Err(not_ws) = Workspace::open(&w.path("empty")) else {
        panic!("no marker");
    };
    check(&not_ws, "not-a-workspace", Remedy::InitWorkspace);
    let raced = S::Raced {
        made: vec!["a".into()],
        taken: vec!["b".into()],
    };
    check(&raced, "raced", Remedy::ShowEntity);

    let weak = "rsa-1024".parse::<KeyAlg>().unwrap_err();
    check(&weak, "invalid", Remedy::WeakKeyFixture);

    let bind = chainsmith::hub::HubError::Bind {
        addr: "127.0.0.1:8883".parse().unwrap(),
        source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
    };
    check(&bind, "bind", Remedy::Port);

    // The fleet: a CA without devices, a shard the environment does not name, a bundle
    // directory that is not empty.
    ops::new_ca(&ws, &root("empty-ca")).unwrap();
    let none = chainsmith::fleet::select(&ws, &[], Some("empty-ca")).unwrap_err();
    check(&none, "fleet-selection", Remedy::IssueDevices);
    let shard = Shard::from_env(|_| None, None).unwrap_err();
    check(&shard, "fleet-selection", Remedy::Shard);
    std::fs::create_dir_all(w.path("bundles/shard-1")).unwrap();
    std::fs::write(w.path("bundles/shard-1/x"), "keep").unwrap();
    let names = vec!["d-1".to_string()];
    let full =
        chainsmith::fleet::bundle::export_shards(&ws, &names, &w.path("bundles"), 1).unwrap_err();
    check(&full, "exists", Remedy::NewOutDir);
    assert!(matches!(full, FleetError::BundleDirNotEmpty(_)));

    // Steps left to the user are values, their words name no command.
    let mut replace = root("r");
    replace.force = true;
    let created = ops::new_ca(&ws, &replace).unwrap();
    assert!(
        created
            .next
            .contains(&ops::NextStep::KeepKey { name: "r".into() }),
        "{:?}",
        created.next
    );
    assert!(!created.warnings.is_empty());
    for text in &created.warnings {
        assert!(
            !text.contains("--") && !text.contains("chainsmith") && !text.contains('`'),
            "{text}"
        );
    }

    // The TUI adds its key where it has one.
    let tui = chainsmith::tui::forms::error_text(&missing);
    assert!(
        tui.contains("n on the PKI tab") && !tui.contains("--"),
        "{tui}"
    );

    // A hub log line (hub serve prints it, the Hub tab shows it): words in the engine, the
    // command from `hub serve`, the key from the Hub tab.
    let revoked = chainsmith::hub::HubEvent::RevokedCertificate {
        device: "d-1".into(),
        name: "d-1".into(),
        serial: "01".into(),
        reason: "keyCompromise".into(),
    };
    let line = revoked.line();
    assert!(
        line.contains("disable the device on the hub")
            && !line.contains("chainsmith")
            && !line.contains("--"),
        "{line}"
    );
    let cli = chainsmith::cli::hub_log_line(&revoked);
    assert!(
        cli.contains("(`chainsmith hub device disable d-1`, or revoke with --disable-on-hub)"),
        "{cli}"
    );
    let tab = chainsmith::tui::hub::log_line(&revoked, ::time::OffsetDateTime::UNIX_EPOCH);
    assert!(
        tab.text.contains("(o on the Hub tab turns it off)") && !tab.text.contains("--"),
        "{}",
        tab.text
    );
}

/// The CLI puts the flag or command (with the real names) after the engine's words, in
/// `error:` and in `--json`'s message, and `--json`'s kind is the engine's.
#[test]
fn the_cli_adds_its_commands_to_the_rest_of_the_engine() {
    let w = Ws::new();
    let json_error = |args: &[&str]| -> serde_json::Value {
        let out = w.cmd().arg("--json").args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["error"].clone()
    };

    w.ok(&["new", "device", "lab", "--self-signed"]);
    let err = w.fails(&["new", "device", "d", "--issuer", "lab"]);
    assert!(
        err.contains("make a root CA first (`chainsmith new root NAME` makes one)"),
        "{err}"
    );
    w.ok(&["new", "root", "r"]);
    let err = w.fails(&["new", "device", "d", "--issuer", "nope"]);
    assert!(
        err.contains("make a root CA of that name")
            && err.contains(
                "(`chainsmith new root nope` creates it; `chainsmith list` shows what exists)"
            ),
        "{err}"
    );
    let err = w.fails(&["show", "nope"]);
    assert!(
        err.contains(
            "list the workspace's entities to see what exists (`chainsmith list` shows them)"
        ),
        "{err}"
    );
    let e = json_error(&["show", "nope"]);
    assert_eq!(e["kind"], "not-found", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("`chainsmith list`"),
        "{e}"
    );

    std::fs::create_dir(w.path("empty")).unwrap();
    let empty = w.path("empty");
    let out = w
        .cmd()
        .args(["--workspace", empty.to_str().unwrap(), "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("create a workspace there")
            && err.contains(&format!(
                "(`chainsmith init {}` creates one)",
                empty.display()
            )),
        "{err}"
    );

    let err = w.fails(&["new", "root", "weak", "--key", "rsa-1024"]);
    assert!(
        err.contains("weak_key fixture makes one") && err.contains("`chainsmith apply SPEC`"),
        "{err}"
    );

    // The fleet's selection, shard and bundle errors.
    w.ok(&["new", "device", "d-1", "--issuer", "r"]);
    w.ok(&["new", "root", "bare"]);
    let err = w.fails(&["fleet", "run", "--issuer", "bare"]);
    assert!(
        err.contains("issue some devices under it first (`chainsmith new device ID --issuer bare` makes some)"),
        "{err}"
    );
    let e = json_error(&["fleet", "run", "--issuer", "bare"]);
    assert_eq!(e["kind"], "fleet-selection", "{e}");
    let out = w
        .cmd()
        .args(["--json", "fleet", "run", "d-1", "--shard-from-env"])
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .unwrap();
    let e = &serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["error"];
    assert_eq!(e["kind"], "fleet-selection", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("name the shard, K of N, yourself")
            && e["message"]
                .as_str()
                .unwrap()
                .contains("(pass --shard K/N)"),
        "{e}"
    );
    let bundles = w.path("bundles");
    let args = [
        "fleet",
        "export-shards",
        "--issuer",
        "r",
        "--out",
        bundles.to_str().unwrap(),
        "--shards",
        "1",
    ];
    w.ok(&args);
    let e = json_error(&args);
    assert_eq!(e["kind"], "exists", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("write the bundles to a new directory")
            && e["message"]
                .as_str()
                .unwrap()
                .contains("(give --out a new directory)"),
        "{e}"
    );

    // Replacing a CA that issued: the hint names the renewal that keeps the key.
    let out = w
        .cmd()
        .args(["new", "root", "r", "--force"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no longer verify; re-issue them")
            && err.contains("hint: `chainsmith renew r` keeps the key instead"),
        "{err}"
    );
}

/// `hub serve` on a port another process holds: the engine says to listen elsewhere, the CLI
/// names the flag.
#[test]
fn hub_serve_on_a_taken_port_names_the_flag() {
    let w = Ws::new();
    w.ok(&["new", "root", "r"]);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = w
        .cmd()
        .args(["--json", "hub", "serve", "--port", &port])
        .args(["--amqp-port", "0", "--ws-port", "0"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "bind", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("listen on another port, or stop what uses it")
            && message.contains("(pick another with --port"),
        "{message}"
    );
}

/// The string literals of a Rust source, with their line numbers and the code just before each
/// (to tell a process argument, `.arg("--fresh")`, from a message).
fn string_literals(src: &str) -> Vec<(usize, String, String)> {
    let c: Vec<char> = src.chars().collect();
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or('\0');
        match c[i] {
            '\n' => line += 1,
            '/' if at(i + 1) == '/' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if at(i + 1) == '*' => {
                while i + 1 < c.len() && !(c[i] == '*' && c[i + 1] == '/') {
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
                i += 2;
                continue;
            }
            // A char literal ('"', '\'', 'x'), not a lifetime ('a).
            '\'' if at(i + 1) == '\\' => {
                i += 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
            }
            '\'' if at(i + 2) == '\'' => i += 2,
            'r' if (i == 0 || !ident(c[i - 1]) || c[i - 1] == 'b')
                && (at(i + 1) == '"' || at(i + 1) == '#') =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while at(j) == '#' {
                    hashes += 1;
                    j += 1;
                }
                if at(j) == '"' {
                    let (start, first_line) = (j + 1, line);
                    let mut k = start;
                    while k < c.len() && !(c[k] == '"' && (1..=hashes).all(|h| at(k + h) == '#')) {
                        line += usize::from(c[k] == '\n');
                        k += 1;
                    }
                    let before: String = c[i.saturating_sub(8)..i].iter().collect();
                    out.push((first_line, c[start..k].iter().collect(), before));
                    i = k + 1 + hashes;
                    continue;
                }
            }
            '"' => {
                let (start, first_line) = (i + 1, line);
                let mut k = start;
                while k < c.len() && c[k] != '"' {
                    line += usize::from(c[k] == '\n');
                    k += if c[k] == '\\' { 2 } else { 1 };
                }
                let before: String = c[i.saturating_sub(8)..i].iter().collect();
                out.push((
                    first_line,
                    c[start..k.min(c.len())].iter().collect(),
                    before,
                ));
                i = k + 1;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// What in an engine string would be a face's words: a `--flag`, or a chainsmith command
/// (`chainsmith hub ...`, or a subcommand in backticks such as `` `hub dps show` ``).
fn names_the_cli(text: &str, commands: &[String]) -> Option<String> {
    let b = text.as_bytes();
    for (i, _) in text.match_indices("--") {
        let before_ok = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-');
        if before_ok && b.get(i + 2).is_some_and(u8::is_ascii_lowercase) {
            return Some(text[i..].chars().take(24).collect());
        }
    }
    for cmd in commands {
        for pat in [format!("chainsmith {cmd}"), format!("`{cmd}")] {
            for (i, _) in text.match_indices(&pat) {
                let next = text[i + pat.len()..].chars().next();
                if matches!(next, None | Some(' ' | '`' | '\'' | '"')) {
                    return Some(text[i..].chars().take(40).collect());
                }
            }
        }
    }
    None
}

#[test]
fn string_literal_scanner_finds_what_it_should() {
    let src = "fn f() { let _ = '\"'; // \"--no\"\n x.arg(\"--fresh\"); g(r#\"run `hub serve`\"#, \"a \\\"b\\\" --port\"); }\n/* \"--no\" */ const C: &str = \"-----BEGIN\";";
    let lits = string_literals(src);
    let texts: Vec<&str> = lits.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(
        texts,
        [
            "--fresh",
            "run `hub serve`",
            "a \\\"b\\\" --port",
            "-----BEGIN"
        ]
    );
    assert_eq!(lits[1].0, 2);
    let cmds = vec!["hub".to_string(), "new".to_string()];
    assert!(names_the_cli("run `hub serve`", &cmds).is_some());
    assert!(names_the_cli("raise --timeout", &cmds).is_some());
    assert!(names_the_cli("is not a chainsmith workspace", &cmds).is_none());
    assert!(names_the_cli("-----BEGIN CERTIFICATE", &cmds).is_none());
    assert!(names_the_cli("a new device", &cmds).is_none());
}

/// Issue 12's "no CLI flag name in an engine error string", for every engine module's
/// non-test code at once: message strings, log lines and report texts speak domain words, and
/// each face adds its own flag, command or key. Two kinds of literal are not messages: a
/// process's arguments (`update-ca-certificates --fresh`) and the Azure and AWS CLI commands
/// that are facts about those clouds (`az iot hub ...`, `` `aws iot ...` ``: what fixes a real
/// endpoint, where no chainsmith command reaches).
#[test]
fn no_engine_string_names_a_cli_flag_or_command() {
    let help = Ws::new().ok(&["--help"]);
    let commands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("    "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(
        commands.len() > 10 && commands.contains(&"hub".to_string()),
        "{commands:?}"
    );

    let mut found = Vec::new();
    let (mut files, mut codes) = (Vec::new(), Vec::new());
    for m in ENGINE {
        for p in module_files(m) {
            sources_with_paths(&p, &mut files, &mut codes);
        }
    }
    assert!(files.len() > 40, "{files:?}");
    for (f, code) in files.iter().zip(&codes) {
        for (line, lit, before) in string_literals(code) {
            if before.trim_end().ends_with(".arg(")
                || lit.contains("az iot hub")
                || lit.contains("`aws iot ")
            {
                continue;
            }
            if let Some(what) = names_the_cli(&lit, &commands) {
                found.push(format!("{}:{line}: {what}", f.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "engine strings that name the CLI:\n{}",
        found.join("\n")
    );
}

/// Issue 12's lints, for the whole workspace: no unsafe code but in one named function
/// (`chainsmith_server::memory::page_out`, issue 25's madvise), no `unwrap()` outside tests,
/// every public item documented and no product function over 150 lines (clippy's
/// `too_many_lines`, threshold in clippy.toml); CI's clippy runs with `-D warnings`, so a
/// warning there fails the build. Every crate takes the workspace's table, the server crate
/// with unsafe code denied instead of forbidden.
#[test]
fn the_lints_table_forbids_unsafe_and_asks_for_docs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &Path| -> toml::Table { std::fs::read_to_string(p).unwrap().parse().unwrap() };
    let manifest = read(&root.join("Cargo.toml"));
    let lints = &manifest["workspace"]["lints"];
    assert_eq!(lints["rust"]["unsafe_code"].as_str(), Some("forbid"));
    assert_eq!(lints["rust"]["missing_docs"].as_str(), Some("warn"));
    assert_eq!(lints["clippy"]["unwrap_used"].as_str(), Some("warn"));
    assert_eq!(lints["clippy"]["too_many_lines"].as_str(), Some("warn"));
    let clippy = read(&root.join("clippy.toml"));
    assert_eq!(clippy["too-many-lines-threshold"].as_integer(), Some(150));
    for c in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = c.unwrap().path();
        let m = read(&dir.join("Cargo.toml"));
        if dir.ends_with("chainsmith-server") {
            // The one exception: the workspace's lints with unsafe code denied, not forbidden,
            // so that `memory::page_out` alone may allow it (madvise has no safe binding).
            let own = &m["lints"];
            assert_eq!(own["rust"]["unsafe_code"].as_str(), Some("deny"), "{m:?}");
            for (group, lint) in [
                ("rust", "missing_docs"),
                ("clippy", "unwrap_used"),
                ("clippy", "too_many_lines"),
            ] {
                assert_eq!(own[group][lint], lints[group][lint], "{group}::{lint}");
            }
        } else {
            assert_eq!(m["lints"]["workspace"].as_bool(), Some(true), "{m:?}");
        }
    }
    assert_eq!(manifest["lints"]["workspace"].as_bool(), Some(true));
    // Where unsafe code is allowed: one function, named here, so a second needs this test
    // changed in the same commit.
    let mut allowed = Vec::new();
    let mut stack = vec![root.join("src"), root.join("crates")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                let n = text.matches("allow(unsafe_code)").count();
                if n > 0 {
                    allowed.push((p.strip_prefix(root).unwrap().display().to_string(), n));
                }
            }
        }
    }
    assert_eq!(
        allowed,
        vec![("crates/chainsmith-server/src/memory.rs".to_string(), 1)]
    );
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(
        ci.contains("cargo clippy --release --workspace --all-targets -- -D warnings"),
        "{ci}"
    );
}

/// The crates are layers: the PKI core depends on no other chainsmith crate and on nothing
/// async or terminal; the shared local-cloud server on the PKI core; the Azure crate on those
/// two; the device side on the PKI core and Azure's vocabulary; the faces (this package) on all. Cargo refuses a cycle; this refuses a layer skipped upward.
#[test]
fn crates_are_layered() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let deps = |krate: &str| -> BTreeSet<String> {
        let m: toml::Table =
            std::fs::read_to_string(root.join("crates").join(krate).join("Cargo.toml"))
                .unwrap()
                .parse()
                .unwrap();
        m["dependencies"]
            .as_table()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let ours = |d: &BTreeSet<String>| -> Vec<String> {
        d.iter()
            .filter(|n| n.starts_with("chainsmith"))
            .cloned()
            .collect()
    };
    let pki = deps("chainsmith-pki");
    assert!(ours(&pki).is_empty(), "{pki:?}");
    for forbidden in [
        "tokio",
        "ratatui",
        "crossterm",
        "clap",
        "rustls",
        "indicatif",
    ] {
        assert!(
            !pki.contains(forbidden),
            "chainsmith-pki depends on {forbidden}"
        );
    }
    assert_eq!(ours(&deps("chainsmith-server")), ["chainsmith-pki"]);
    assert_eq!(
        ours(&deps("chainsmith-azure")),
        ["chainsmith-pki", "chainsmith-server"]
    );
    // The device side knows each cloud's conventions (AWS: the running `aws serve`'s endpoint
    // record and control socket).
    assert_eq!(
        ours(&deps("chainsmith-device")),
        ["chainsmith-aws", "chainsmith-azure", "chainsmith-pki"]
    );
    for face in ["ratatui", "crossterm", "clap", "indicatif"] {
        for krate in ["chainsmith-server", "chainsmith-azure", "chainsmith-device"] {
            assert!(!deps(krate).contains(face), "{krate} depends on {face}");
        }
    }
}

/// Every error enum the engine crates classify (`impl Classified for T`), as the Rust path
/// `std::any::type_name` gives it: crate, the module its file is, the type.
fn classified_types_in_sources() -> BTreeSet<String> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates");
    let mut found = BTreeSet::new();
    for krate in std::fs::read_dir(&crates).unwrap() {
        let krate = krate.unwrap().path();
        let src = krate.join("src");
        let mut paths = Vec::new();
        let mut texts = Vec::new();
        sources_with_paths(&src, &mut paths, &mut texts);
        let crate_name = krate
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace('-', "_");
        for (path, text) in paths.iter().zip(&texts) {
            let mut module = vec![crate_name.clone()];
            let rel = path.strip_prefix(&src).unwrap().with_extension("");
            for part in rel.iter() {
                let part = part.to_string_lossy();
                if part != "mod" && part != "lib" {
                    module.push(part.into_owned());
                }
            }
            // `impl Classified for T`, or the PKI core's macro that writes it
            // (`classified_by_inherent_methods!(T)`); the macro's own `for $ty` names none.
            for marker in ["Classified for ", "classified_by_inherent_methods!("] {
                for (at, _) in text.match_indices(marker) {
                    let ty: String = text[at + marker.len()..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !ty.is_empty() {
                        found.insert(format!("{}::{ty}", module.join("::")));
                    }
                }
            }
        }
    }
    found
}

/// Issue 23: the faces learn a kind and a remedy from one enum, `chainsmith::EngineError`; an
/// error enum the crates classify but the enum does not list would lose its `--json` kind.
#[test]
fn every_classified_engine_error_is_one_the_faces_find() {
    let listed: BTreeSet<String> = chainsmith::EngineError::type_names()
        .into_iter()
        .map(String::from)
        .collect();
    let classified = classified_types_in_sources();
    assert!(
        classified.len() >= 13,
        "the source scan found too few: {classified:?}"
    );
    let missing: Vec<_> = classified.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "engine errors that chainsmith::EngineError does not list (add each to `engine_errors!` in src/engine_error.rs): {missing:?}"
    );
}

/// Issue 23: the engine's errors say what went wrong by their variant, not only in a string;
/// the messages and kinds the CLI prints are what they were.
#[test]
fn engine_errors_are_typed_by_what_went_wrong() {
    use chainsmith::pki::{Error as P, Target, identity};
    let e = identity::check_device_id("dev 01", Target::Hub).unwrap_err();
    assert!(matches!(e, P::DeviceId(_)), "{e:?}");
    assert_eq!(e.kind(), "invalid");
    let e = "rsa-9".parse::<KeyAlg>().unwrap_err();
    assert!(matches!(e, P::UnknownChoice(_)), "{e:?}");
    assert!(
        e.to_string().starts_with("unknown key algorithm \"rsa-9\""),
        "{e}"
    );
    let e = "pfx2".parse::<Format>().unwrap_err();
    assert!(
        matches!(e, chainsmith::export::Error::UnknownChoice(_)),
        "{e:?}"
    );
    let e = ops::lifecycle::parse_reason("stolen").unwrap_err();
    assert!(
        matches!(e, ops::lifecycle::Error::RevocationReason { .. }),
        "{e:?}"
    );
    assert_eq!(e.kind(), "invalid");
}

/// Issue 23, "typed errors in the rustls style": the variants of the PKI core's four error
/// enums (and of the sub-enums in their files) carry facts as fields, and their `#[error]`
/// says the sentence; a pre-formatted message in a `(String)` tuple variant is refused, but
/// for a last `Other(String)` whose words come from elsewhere.
#[test]
fn pki_core_errors_carry_facts_not_preformatted_strings() {
    let pki = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/chainsmith-pki/src");
    let files = [
        "pki/error.rs",
        "ops/lifecycle/error.rs",
        "export/error.rs",
        "store/error.rs",
    ];
    let mut found = Vec::new();
    let mut enums = 0;
    for f in files {
        let text = std::fs::read_to_string(pki.join(f)).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (at, _) in code.match_indices("pub enum ") {
            enums += 1;
            let name: String = code[at + 9..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // The enum's body: from its `{` to the `}` that closes it.
            let open = at + code[at..].find('{').unwrap();
            let mut depth = 0;
            let mut close = open;
            for (i, c) in code[open..].char_indices() {
                depth += match c {
                    '{' => 1,
                    '}' => -1,
                    _ => 0,
                };
                if depth == 0 {
                    close = open + i;
                    break;
                }
            }
            let body = &code[open + 1..close];
            // Variants are the lines at the body's first indentation that start with a name.
            let variants: Vec<&str> = body
                .lines()
                .filter(|l| l.starts_with("    ") && !l.starts_with("     "))
                .map(str::trim)
                .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
                .collect();
            let last = variants.len().saturating_sub(1);
            for (i, v) in variants.iter().enumerate() {
                let tuple = v.split_once('(').map(|(_, rest)| rest.replace(' ', ""));
                if tuple.is_some_and(|t| t.starts_with("String)"))
                    && !(v.starts_with("Other(") && i == last)
                {
                    found.push(format!("{f}: {name}::{v}"));
                }
            }
        }
    }
    assert!(enums >= 20, "the scan found too few enums: {enums}");
    assert!(
        found.is_empty(),
        "variants that carry a pre-formatted message (give them fields and build the sentence in #[error]):\n{}",
        found.join("\n")
    );
}
