//! The command line's conventions (issue 26, items 3–6): shell completions and man pages from
//! the clap definition, `--quiet`, `--color` and `NO_COLOR` outside a terminal, no progress bar
//! when the output is piped, and the exit codes docs/reference/exit-codes.md lists. The bar on
//! a terminal and the TUI's colours are in `tui_pty` (they need a pseudo-terminal).

use crate::common::Ws;
use clap::CommandFactory;
use std::process::Command as Proc;

/// Every subcommand's name, from the same definition the binary parses with.
fn subcommand_names() -> Vec<String> {
    chainsmith::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect()
}

/// The shell is installed here (zsh and fish may not be).
fn have(program: &str) -> bool {
    Proc::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn completions_for_every_shell_name_the_subcommands_and_parse() {
    let w = Ws::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = w.ok(&["completions", shell]);
        for name in subcommand_names() {
            assert!(script.contains(&name), "{shell}: no {name}");
        }
        assert!(
            script.contains("export-shards"),
            "{shell}: no nested subcommand"
        );
        // The shell itself reads the script without a syntax error, where it is installed.
        let check = match shell {
            "bash" => Some("bash"),
            "zsh" if have("zsh") => Some("zsh"),
            "fish" if have("fish") => Some("fish"),
            _ => None,
        };
        if let Some(program) = check {
            let file = w.path(&format!("completion.{shell}"));
            std::fs::write(&file, &script).unwrap();
            let out = Proc::new(program).arg("-n").arg(&file).output().unwrap();
            assert!(
                out.status.success(),
                "{program} -n: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let err = w.fails(&["completions", "tcsh"]);
    assert!(err.contains("possible values"), "{err}");
}

#[test]
fn man_prints_a_page_naming_every_subcommand_and_writes_them_all() {
    let w = Ws::new();
    let page = w.ok(&["man"]);
    assert!(page.contains(".TH chainsmith 1"), "{page}");
    for name in subcommand_names() {
        assert!(page.contains(&name.replace('-', "\\-")), "no {name}");
    }
    let dir = w.path("man");
    w.ok(&["man", "--out", dir.to_str().unwrap()]);
    for page in [
        "chainsmith.1",
        "chainsmith-new-device.1",
        "chainsmith-fleet-export-shards.1",
    ] {
        assert!(dir.join(page).is_file(), "{page} not written");
    }
    // groff (what `man` runs) renders each page without a warning; -k reads the UTF-8 the
    // help texts hold, as man's preconv does.
    if have("groff") {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let out = Proc::new("groff")
                .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// `--quiet`: the long commands print nothing at all when they succeed, and still say why
/// when they fail; `--quiet` with `--json` is a usage error.
#[test]
fn quiet_prints_only_errors() {
    let w = Ws::new();
    let silent = |args: &[&str]| {
        let out = w.cmd().arg("--quiet").args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "{args:?} printed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    silent(&["new", "root", "r"]);
    silent(&["new", "device", "q-{001..030}", "--issuer", "r"]);
    assert!(
        w.ws().join("entities").join("q-030").is_dir(),
        "the devices were made"
    );
    let exports = w.path("exports");
    silent(&[
        "export",
        "q-001",
        "--out",
        exports.to_str().unwrap(),
        "--format",
        "pem,pfx",
        "--password",
        "pw",
    ]);
    assert!(std::fs::read_dir(&exports).unwrap().count() > 2);
    let spec = w.path("spec.toml");
    std::fs::write(
        &spec,
        "[[ca]]\nname = \"sroot\"\n\n[[device]]\nid = \"s-{01..05}\"\nissuer = \"sroot\"\nexport = { formats = [\"pem\"] }\n",
    )
    .unwrap();
    let out = w.path("applied");
    silent(&[
        "apply",
        spec.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(out.is_dir());
    let bundles = w.path("bundles");
    silent(&[
        "fleet",
        "export-shards",
        "--issuer",
        "r",
        "--out",
        bundles.to_str().unwrap(),
        "--shards",
        "2",
    ]);
    assert!(bundles.join("shard-2").is_dir());

    let out = w.cmd().args(["--quiet", "show", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: "),
        "{out:?}"
    );

    let out = w
        .cmd()
        .args(["--quiet", "--json", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// Piped, a long batch draws nothing: no carriage returns, no bar, just the summary lines.
#[test]
fn piped_output_has_no_progress_bar() {
    let w = Ws::new();
    w.ok(&["new", "root", "r"]);
    let out = w
        .cmd()
        .args([
            "new",
            "device",
            "p-{001..040}",
            "--issuer",
            "r",
            "--key",
            "rsa-2048",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let all = [out.stdout, out.stderr].concat();
    let text = String::from_utf8_lossy(&all);
    assert!(
        !text.contains('\r') && !text.contains("ETA") && !text.contains('\x1b'),
        "{text}"
    );
    assert!(text.contains("... and 37 more (40 in all)"), "{text}");
}

/// `--color always` colours the labels of standard error even into a pipe; `never`, `auto`
/// into a pipe and `NO_COLOR` do not; clap's help follows the flag too.
#[test]
fn color_flag_and_no_color() {
    let w = Ws::new();
    let stderr_of = |args: &[&str], no_color: bool| {
        let mut c = w.cmd();
        c.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
        if no_color {
            c.env("NO_COLOR", "1");
        }
        let out = c.args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let painted = stderr_of(&["--color", "always", "show", "nope"], false);
    assert!(
        painted.starts_with("\x1b[1;31merror:\x1b[0m "),
        "{painted:?}"
    );
    // The flag is the more specific wish: it wins over NO_COLOR.
    let painted = stderr_of(&["--color=always", "show", "nope"], true);
    assert!(painted.starts_with("\x1b[1;31merror:"), "{painted:?}");
    for (args, no_color) in [
        (&["--color", "never", "show", "nope"][..], false),
        (&["show", "nope"][..], false),
        (&["--color", "auto", "show", "nope"][..], true),
    ] {
        let plain = stderr_of(args, no_color);
        assert!(
            plain.starts_with("error: ") && !plain.contains('\x1b'),
            "{args:?}: {plain:?}"
        );
    }
    let help = |when: &str| {
        let out = w.cmd().args(["--color", when, "--help"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(help("always").contains('\x1b'), "help not coloured");
    assert!(!help("never").contains('\x1b'));
    let err = w.fails(&["--color", "sometimes", "list"]);
    assert!(err.contains("possible values"), "{err}");
}

/// The exit statuses docs/reference/exit-codes.md lists are the ones the binary returns.
#[test]
fn exit_codes_are_the_documented_ones() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference/exit-codes.md"),
    )
    .unwrap();
    for row in ["| 0 |", "| 1 |", "| 2 |"] {
        assert!(doc.contains(row), "the table has no row {row}");
    }
    let w = Ws::new();
    let code = |args: &[&str]| w.cmd().args(args).output().unwrap().status.code();
    assert_eq!(code(&["new", "root", "r"]), Some(0));
    assert_eq!(code(&["show", "nope"]), Some(1), "refused");
    assert_eq!(code(&["new", "root", "r"]), Some(1), "refused: exists");
    assert_eq!(code(&["frobnicate"]), Some(2), "usage");
    assert_eq!(code(&["new", "root"]), Some(2), "usage: a missing argument");
    assert_eq!(code(&["--json", "frobnicate"]), Some(2), "usage, as JSON");
}
