//! The guide's AWS track (issue 24: "register CA → JITP → device connects → shadow, checked
//! against the workspace"): its commands run as written, through a shell and the real binary,
//! tick each step from the local AWS IoT Core's real state (`WS/aws/registry.json` through the
//! registry, the shadow under `WS/aws/shadows/`), with the real `chainsmith aws serve` and the
//! connection test as the device; every track's `chainsmith` commands parse; `t` cycles the
//! three tracks in the TUI.

use std::path::Path;
use std::process::Command;

use chainsmith::ops;
use chainsmith::store::Workspace;
use chainsmith::tui::guide::{
    self, AWS_STEPS, CENTRAL_STEPS, Facts, STEPS, StepStatus, Track, aws_facts, status,
};
use chainsmith::tui::theme::Theme;
use chainsmith::tui::{Action, App, Command as TuiCommand, settle};
use chainsmith_test_support::process::KillOnDrop;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::common::{Ws, screen_of};

/// Every step of the AWS track, as the guide sees `w` (the export looked for in `w`'s
/// directory, where the commands run).
fn statuses(w: &Ws) -> Vec<(&'static str, StepStatus)> {
    let ws = Workspace::open_or_create(&w.ws()).unwrap();
    let (metas, _) = ws.list().unwrap();
    let rows = ops::tree(metas, ws.now());
    let facts = Facts {
        aws: aws_facts(&ws, w.dir.path()),
        ..Facts::default()
    };
    AWS_STEPS
        .iter()
        .map(|s| (s.id, status(s, &rows, &facts)))
        .collect()
}

fn is_done(w: &Ws, id: &str) -> bool {
    statuses(w)
        .iter()
        .any(|(i, s)| *i == id && matches!(s, StepStatus::Done(_)))
}

/// Run `cmd` as a user pastes it: `sh -c` in `w`'s directory, `chainsmith` on the PATH.
fn sh(w: &Ws, cmd: &str) -> std::process::Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_chainsmith"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(w.dir.path())
        .env("CHAINSMITH_WORKSPACE", w.ws())
        .env("PATH", path)
        .output()
        .unwrap()
}

fn sh_ok(w: &Ws, cmd: &str) -> String {
    let out = sh(w, cmd);
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The step's `chainsmith` commands (comments left out).
fn step_commands(id: &str) -> Vec<String> {
    let step = AWS_STEPS.iter().find(|s| s.id == id).unwrap();
    guide::commands(step.lesson().openssl)
        .into_iter()
        .filter(|c| !c.starts_with('#'))
        .collect()
}

/// The AWS track as a user follows it: each step's commands pasted into a shell, in order;
/// a step is not done before its commands ran and is done after, from the real state.
#[test]
fn aws_track_commands_run_as_written_and_tick_each_step() {
    let w = Ws::new();
    assert!(
        statuses(&w).iter().all(|(_, s)| *s == StepStatus::Todo),
        "{:?}",
        statuses(&w)
    );
    for id in [
        "a-ca",
        "a-code",
        "a-verify",
        "a-register",
        "a-device",
        "a-export",
    ] {
        assert!(!is_done(&w, id), "{id} before its commands");
        for cmd in step_commands(id) {
            sh_ok(&w, &cmd);
        }
        assert!(is_done(&w, id), "{id}: {:?}", statuses(&w));
    }
    // Not by JITP yet: the device's certificate is unknown to the registry.
    assert!(!is_done(&w, "a-connect"));

    // The lesson's `chainsmith aws serve`, on free ports; then its `aws endpoint`.
    // (8883 and 443 may be held on a shared machine.)
    let (server, port, _) = crate::aws_rules::serve(&w);
    let server = KillOnDrop(server);
    let serve_cmds = step_commands("a-serve");
    assert_eq!(serve_cmds[0], "chainsmith aws serve");
    let endpoint = sh_ok(&w, &serve_cmds[1]);
    assert!(
        endpoint.contains(&format!("localhost:{port}")),
        "{endpoint}"
    );
    assert!(is_done(&w, "a-serve"));

    // The connection test twice, as written (`--to aws-local` dials the port the server
    // recorded): the first is closed while JITP provisions, the second gets through.
    let connect = step_commands("a-connect");
    let test = &connect[0];
    assert_eq!(test, "chainsmith connect aws-sensor-1 --to aws-local");
    let first = sh(&w, test);
    assert!(!first.status.success(), "JITP closes the first connection");
    assert!(is_done(&w, "a-connect"), "{:?}", statuses(&w));
    let second = sh(&w, test);
    assert!(
        second.status.success(),
        "{}{}",
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr)
    );
    let things = sh_ok(&w, &connect[1]);
    assert!(things.contains("aws-sensor-1"), "{things}");

    assert!(!is_done(&w, "a-shadow"));
    let shadow = step_commands("a-shadow");
    sh_ok(&w, &shadow[0]);
    let got = sh_ok(&w, &shadow[1]);
    assert!(got.contains("led"), "{got}");
    assert!(is_done(&w, "a-shadow"), "{:?}", statuses(&w));
    drop(server);

    // Every lesson has its what-and-why and both command sets.
    for s in &AWS_STEPS {
        let l = s.lesson();
        assert!(!l.title.is_empty() && l.why.len() > 80, "{}", s.id);
        assert!(l.openssl.contains("chainsmith"), "{}", s.id);
        assert!(l.az.contains("aws ") || l.az.starts_with('#'), "{}", s.id);
    }
}

/// Every `chainsmith …` command of a shell line, the ones inside `$(…)` too, as words.
fn chainsmith_commands(cmd: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // A redirection, pipe or next command ends this one.
    let words: Vec<String> = guide::shell_words(cmd)
        .into_iter()
        .take_while(|w| !matches!(w.as_str(), ">" | ">>" | "|" | "&&" | ";"))
        .collect();
    if words.first().is_some_and(|w| w == "chainsmith") {
        let words: Vec<String> = words
            .iter()
            .map(|w| {
                let unquoted = w
                    .strip_prefix('"')
                    .and_then(|w| w.strip_suffix('"'))
                    .or_else(|| w.strip_prefix('\'').and_then(|w| w.strip_suffix('\'')));
                unquoted.unwrap_or(w).to_string()
            })
            .collect();
        out.push(words);
    }
    let mut rest = cmd;
    while let Some(at) = rest.find("$(") {
        let inner = &rest[at + 2..];
        let end = inner.find(')').unwrap_or(inner.len());
        let sub = inner[..end].split('|').next().unwrap_or("").trim();
        out.extend(chainsmith_commands(sub));
        rest = &inner[end..];
    }
    out
}

/// What every track shows can be pasted: each `chainsmith` command (and each inside `$(…)`)
/// parses with the CLI's own parser.
#[test]
fn every_tracks_chainsmith_commands_parse_with_the_cli() {
    use clap::Parser as _;
    let mut seen = 0;
    for steps in [&STEPS[..], &CENTRAL_STEPS[..], &AWS_STEPS[..]] {
        for s in steps {
            let l = s.lesson();
            for cmd in guide::commands(l.openssl)
                .into_iter()
                .chain(guide::commands(l.az))
            {
                for words in chainsmith_commands(&cmd) {
                    seen += 1;
                    if let Err(e) = chainsmith::cli::Cli::try_parse_from(&words) {
                        panic!("step {}: {cmd}\n{words:?}\n{e}", s.id);
                    }
                }
            }
        }
    }
    assert!(seen > 30, "only {seen} chainsmith commands found");
}

fn key(c: char) -> Action {
    Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

/// `t` goes through the three tracks; the AWS track names itself and its CLI, copies its
/// commands, and the app reads the local AWS IoT Core's state on its tick.
#[test]
fn t_cycles_three_tracks_and_the_aws_track_reads_the_aws_state() {
    let w = Ws::new();
    w.ok(&["aws", "registration-code"]);
    let ws = Workspace::open_or_create(&w.ws()).unwrap();
    let mut app = App::new(
        ws.root().to_path_buf(),
        Theme::plain(),
        // The workspace's certificates were issued on the real clock just now; the app's
        // clock is that moment, so the statuses shown hold on any day.
        time::OffsetDateTime::now_utc(),
        (120, 40),
    );
    let first = app.start();
    settle(&mut app, &ws, first);
    let c = app.update(key('g'));
    settle(&mut app, &ws, c);
    assert_eq!(app.guide.track, Track::Hub);
    app.update(key('t'));
    assert_eq!(app.guide.track, Track::Central);
    app.update(key('t'));
    assert_eq!(app.guide.track, Track::Aws);
    let screen = screen_of(&app, 120, 40);
    assert!(screen.contains("AWS IoT Core (JITP)"), "{screen}");
    assert!(screen.contains("With the AWS CLI"), "{screen}");
    match app.update(key('Y')) {
        Some(TuiCommand::Copy(text)) => assert!(text.contains("# nothing in AWS yet"), "{text}"),
        other => panic!("Y copies the AWS CLI section: {other:?}"),
    }
    assert!(app.status.as_ref().unwrap().1.contains("AWS CLI"));
    // The ticks re-read the workspace, then the facts: the registration code is in the
    // registry.
    let later = app.now + time::Duration::seconds(10);
    for tick in [later, later + time::Duration::seconds(1)] {
        let c = app.update(Action::Tick(tick));
        settle(&mut app, &ws, c);
    }
    assert!(app.guide_facts().aws.registration_code.is_some());
    let code_step = &AWS_STEPS[1];
    assert!(matches!(
        status(code_step, &app.pki.rows, &app.guide_facts()),
        StepStatus::Done(d) if d.contains("registration code")
    ));
    app.update(key('t'));
    assert_eq!(app.guide.track, Track::Hub);
}

/// `chainsmith guide --text --aws` prints the AWS track with its status and the aws commands.
#[test]
fn guide_text_aws_prints_the_aws_track() {
    let w = Ws::new();
    w.ok(&["aws", "registration-code"]);
    let s = w.ok(&["guide", "--text", "--aws"]);
    assert!(
        s.contains("· 1. Make a root CA and the CA that signs devices (to do)"),
        "{s}"
    );
    assert!(
        s.contains("✓ 2. Get the registration code (done: registration code"),
        "{s}"
    );
    assert!(
        s.contains("   aws:\n     aws iot get-registration-code"),
        "{s}"
    );
    let j = w.json(&["guide", "--aws"]);
    assert_eq!(j["steps"][1]["id"], "a-code");
    assert_eq!(j["steps"][1]["status"], "done");
}
