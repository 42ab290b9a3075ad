//! What a newcomer tripped over in the TUI (issue 10, item 4), each checked on the state
//! machine or the rendered screen with no terminal: a "too small" screen that still took keys,
//! a help overlay cut at 60×15, a guide that never named its keys and showed commands that
//! could not be pasted, a footer advertising keys of another tab, a Hub tab blind to the hub
//! the Connect tab used, a diagnosis cut at 80×24 that named only the CLI, and an export
//! dialog splitting "[x] chain-in-pfx".

use crate::connect_support::chain_workspace;
use crate::tui_snapshots::{NOW, ca, ch, key};
use chainsmith::ops::{self, DeviceRequest};
use chainsmith::store::Workspace;
use chainsmith::tui::connect::ConnectAction;
use chainsmith::tui::guide::{self, STEPS};
use chainsmith::tui::theme::Theme;
use chainsmith::tui::{Action, App, Command, Engines, Tab, run_test, settle, ui};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// root → intermediate → dev1.
fn chain() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::open_or_create(&dir.path().join("ws")).unwrap();
    ca(&ws, "root1", None);
    ca(&ws, "int1", Some("root1"));
    ops::new_devices(
        &ws,
        &DeviceRequest {
            ids: vec!["dev1".into()],
            issuer: Some("int1".into()),
            ..Default::default()
        },
    )
    .unwrap();
    (dir, ws)
}

fn app_on(ws: &Workspace, size: (u16, u16)) -> App {
    let mut app = App::new(ws.root().to_path_buf(), Theme::plain(), NOW, size);
    let c = app.start();
    settle(&mut app, ws, c);
    app.ws_root = "/home/you/.local/share/chainsmith".into();
    app.pki.load_took = None;
    app
}

fn select(app: &mut App, ws: &Workspace, name: &str) {
    let pos = app
        .pki
        .visible
        .iter()
        .position(|&i| app.pki.rows[i].meta.name == name)
        .expect(name);
    app.pki.selected = pos;
    let c = app.pki.want_report().map(Command::LoadReport);
    settle(app, ws, c);
}

/// Feed keys as the loop does, running what they ask for.
fn press(app: &mut App, ws: &Workspace, keys: &[Action]) {
    for k in keys {
        let c = app.update(clone_key(k));
        settle(app, ws, c);
    }
}
fn clone_key(a: &Action) -> Action {
    match a {
        Action::Key(k) => Action::Key(*k),
        _ => unreachable!("keys only"),
    }
}

/// The screen as text rows (wide symbols counted once).
fn rows(app: &App) -> Vec<String> {
    let mut t = Terminal::new(TestBackend::new(app.size.0, app.size.1)).unwrap();
    t.draw(|f| ui::render(f, app)).unwrap();
    let buf = t.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            let mut line = String::new();
            let mut skip = 0;
            for x in 0..buf.area.width {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                let s = buf[(x, y)].symbol();
                skip = ratatui::text::Span::raw(s).width().saturating_sub(1);
                line.push_str(s);
            }
            line.trim_end().to_string()
        })
        .collect()
}

fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn below_the_minimum_size_only_q_and_ctrl_c_act() {
    let (_d, ws) = chain();
    let mut app = app_on(&ws, (50, 12));
    // What the newcomer typed, unseen: 1 n blind Enter.
    let mut keys = vec![ch('1'), ch('n')];
    keys.extend("blind".chars().map(ch));
    keys.push(key(KeyCode::Enter));
    for k in [ch('2'), ch('?'), ch('s'), ch('g')] {
        keys.push(k);
    }
    for k in keys {
        assert!(app.update(k).is_none(), "a key acted while too small");
    }
    assert!(app.dialog.is_none(), "no form opened unseen");
    assert!(!app.help);
    assert_eq!(app.tab, Tab::Pki);
    assert!(ws.load("blind").is_err(), "nothing created");
    let screen = rows(&app).join("\n");
    assert!(screen.contains("terminal too small"), "{screen}");
    // Paste and mouse are ignored too.
    app.update(Action::Paste("x".into()));
    assert!(app.dialog.is_none());
    // q quits at once (no "Quit?" dialog nobody could see), even with the hub running.
    app.update(Action::Hub(chainsmith::tui::hub::HubAction::Started {
        port: 8883,
    }));
    app.update(ch('q'));
    assert!(app.quit && app.dialog.is_none());
    // Ctrl-C too.
    let mut app = app_on(&ws, (50, 12));
    app.update(Action::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )));
    assert!(app.quit);
    // Back at a usable size, keys act again.
    let mut app = app_on(&ws, (50, 12));
    app.update(Action::Resize(80, 24));
    app.update(ch('n'));
    assert!(app.dialog.is_some());
}

#[test]
fn help_at_60x15_scrolls_through_every_key_with_nothing_cut() {
    let (_d, ws) = chain();
    let mut app = app_on(&ws, (60, 15));
    // The details under the overlay carry serials and dates: leave them out of the picture.
    app.pki.reports.clear();
    app.pki.report_inflight = None;
    app.update(ch('?'));
    insta::assert_snapshot!("help_60x15", rows(&app).join("\n"));
    // The box's inner rows: the first one at each scroll position, then the whole last page.
    let inner = |app: &App| -> Vec<String> {
        rows(app)
            .into_iter()
            .filter(|r| r.starts_with('│'))
            .map(|r| {
                r.trim_start_matches('│')
                    .trim_end_matches('│')
                    .trim_end()
                    .to_string()
            })
            .collect()
    };
    let first = rows(&app).join("\n");
    assert!(
        first.contains("scroll"),
        "the title says it scrolls:\n{first}"
    );
    let mut seen = Vec::new();
    let mut last_first = None;
    for _ in 0..100 {
        let page = inner(&app);
        if last_first.as_ref() == page.first() {
            seen.extend(page.into_iter().skip(1));
            break;
        }
        last_first = page.first().cloned();
        seen.push(page[0].clone());
        app.update(key(KeyCode::Down));
        assert!(app.help, "scrolling keeps the help open");
    }
    let desc: String = seen
        .iter()
        .map(|r| r.chars().skip(28).collect::<String>())
        .collect::<Vec<_>>()
        .join(" ");
    let keys: String = seen
        .iter()
        .map(|r| r.chars().skip(9).take(19).collect::<String>())
        .collect::<Vec<_>>()
        .join(" ");
    for (_, k, what) in chainsmith::tui::app::KEYMAP {
        assert!(
            words(&desc).contains(&words(what)),
            "{what:?} is shown whole:\n{}",
            seen.join("\n")
        );
        assert!(words(&keys).contains(&words(k)), "{k:?} shown");
    }
    app.update(ch('x'));
    assert!(!app.help, "another key closes it");
}

#[test]
fn guide_text_pane_is_usable_at_60x15() {
    let (_d, ws) = chain();
    let mut app = app_on(&ws, (60, 15));
    app.update(ch('4'));
    // The guide opens at the first step not done (3); step 1's text is the one looked at here.
    app.update(key(KeyCode::Up));
    app.update(key(KeyCode::Up));
    let screen = rows(&app).join("\n");
    insta::assert_snapshot!("guide_60x15", screen);
    // A sentence of the lesson reads on one row, and the pane keeps 50 columns.
    assert!(
        screen.contains("A root CA is the anchor every device"),
        "{screen}"
    );
    let title = rows(&app)
        .into_iter()
        .find(|r| r.contains("Step 1 of 9"))
        .unwrap();
    let start = title.find("┌ Step").unwrap();
    let width = title[start..].chars().count();
    assert!(width >= 50, "text pane {width} columns:\n{screen}");
}

#[test]
fn guide_steps_name_the_key_and_tab_and_issue_before_register() {
    let lesson = |id: &str| {
        let s = STEPS.iter().find(|s| s.id == id).unwrap();
        words(s.lesson().why)
    };
    for (id, says) in [
        ("hub-ca", "press v on the Hub tab"),
        ("register", "press a on the Hub tab"),
        ("renew", "press r"),
        ("disable", "press o on the Hub tab"),
    ] {
        let l = lesson(id);
        assert!(l.contains(says), "{id}: {l}");
        assert!(
            l.contains("on the PKI tab"),
            "{id} says where to select: {l}"
        );
    }
    let pos = |id: &str| STEPS.iter().position(|s| s.id == id).unwrap();
    assert!(
        pos("device") < pos("register"),
        "the certificate is issued before `a` registers it"
    );
    // And the order works with the keys: with the device issued (step 5), `a` on the Hub tab
    // registers it (step 6) and the guide ticks both.
    let (_d, ws) = chain();
    let mut app = app_on(&ws, (100, 30));
    select(&mut app, &ws, "dev1");
    press(&mut app, &ws, &[ch('2'), ch('a')]);
    assert!(
        app.hub.devices.iter().any(|d| d.id == "dev1"),
        "{:?}",
        app.hub
    );
    let facts = app.guide_facts();
    for id in ["device", "register"] {
        let st = guide::status(&STEPS[pos(id)], &app.pki.rows, &facts);
        assert!(matches!(st, guide::StepStatus::Done(_)), "{id}: {st:?}");
    }
    // The rendered step says it too.
    // The guide opens at the first step not done: up to the first, then down to "register".
    app.update(ch('4'));
    for _ in 0..STEPS.len() {
        app.update(key(KeyCode::Up));
    }
    for _ in 0..pos("register") {
        app.update(key(KeyCode::Down));
    }
    let screen = words(&rows(&app).join(" ").replace('│', " "));
    assert!(screen.contains("press a on the Hub tab"), "{screen}");
}

/// The command lines of one section of the rendered guide pane, from its header to the next
/// blank row, as shown (pane border and 2-space indent removed).
fn shown_section(screen: &[String], header: &str, pane_x: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for r in screen {
        let pane: String = r.chars().skip(pane_x + 1).collect();
        let pane = pane.trim_end().trim_end_matches('│').trim_end().to_string();
        if pane.starts_with(header) {
            inside = true;
            continue;
        }
        if inside {
            if pane.trim().is_empty() {
                break;
            }
            out.push(pane.strip_prefix("  ").unwrap_or(&pane).to_string());
        }
    }
    out
}

#[test]
fn guide_commands_wrap_between_arguments_so_what_is_shown_pastes() {
    let (_d, ws) = chain();
    for width in [60u16, 80, 100, 120] {
        let mut app = app_on(&ws, (width, 60));
        app.update(ch('4'));
        for (n, step) in STEPS.iter().enumerate() {
            app.guide.selected = n;
            let screen = rows(&app);
            let title = screen.iter().find(|r| r.contains("┌ Step")).unwrap();
            let pane_x = title.chars().position(|c| c == '┌').unwrap();
            let pane_x = title
                .chars()
                .enumerate()
                .filter(|(_, c)| *c == '┌')
                .map(|(i, _)| i)
                .nth(1)
                .unwrap_or(pane_x);
            let l = step.lesson();
            for (header, section) in [("With openssl", l.openssl), ("With the Azure CLI", l.az)] {
                let shown = shown_section(&screen, header, pane_x);
                assert!(
                    shown.iter().all(|s| s.trim() != "\\"),
                    "a lone backslash line at {width}: {shown:#?}"
                );
                // Join what a shell would join: a line ending in " \" continues.
                let mut joined = Vec::new();
                let mut cur = String::new();
                for s in &shown {
                    match s.strip_suffix(" \\") {
                        Some(head) => {
                            cur.push_str(head.trim());
                            cur.push(' ');
                        }
                        None => {
                            cur.push_str(s.trim());
                            joined.push(std::mem::take(&mut cur));
                        }
                    }
                }
                let want: Vec<Vec<String>> = guide::commands(section)
                    .iter()
                    .filter(|c| !c.starts_with('#'))
                    .map(|c| guide::shell_words(c))
                    .collect();
                let got: Vec<Vec<String>> = joined
                    .iter()
                    .filter(|c| !c.starts_with('#'))
                    .map(|c| guide::shell_words(c))
                    .collect();
                assert_eq!(
                    got,
                    want,
                    "step {} {header} at {width} columns pastes as written:\n{shown:#?}",
                    n + 1
                );
            }
        }
        // y / Y copy the commands whole (OSC 52, written by the loop).
        app.guide.selected = 1;
        match app.update(ch('y')) {
            Some(Command::Copy(text)) => {
                assert_eq!(text, guide::section_text(STEPS[1].lesson().openssl));
                assert!(text.contains("-extfile int.ext -out int.pem\n"), "{text}");
            }
            other => panic!("y copies: {other:?}"),
        }
        assert!(app.status.as_ref().unwrap().1.contains("OSC 52"));
        assert!(matches!(app.update(ch('Y')), Some(Command::Copy(t)) if t.contains("# still")));
    }
}

#[test]
fn footer_lists_only_the_keys_of_the_focused_tab() {
    let (_d, ws) = chain();
    let mut app = app_on(&ws, (120, 30));
    let footer = |app: &App| rows(app).last().cloned().unwrap();
    let pki_only = ["n new", "d delete", "/ filter", "e export"];
    let hub_only = ["s start", "a register", "o on/off", "p port"];
    let cases = [
        ('1', &["n new", "v verify", "/ filter"][..], &hub_only[..]),
        (
            '2',
            &["s start", "a register", "o on/off"][..],
            &pki_only[..],
        ),
        (
            '3',
            &["Enter run", "t target"][..],
            &[&pki_only[..], &hub_only[..]].concat()[..],
        ),
        (
            '4',
            &["y copy", "J K scroll"][..],
            &[&pki_only[..], &hub_only[..]].concat()[..],
        ),
    ];
    for (tab, has, lacks) in cases {
        app.update(ch(tab));
        let f = footer(&app);
        for k in has {
            assert!(f.contains(k), "tab {tab}: {k} in {f:?}");
        }
        for k in lacks {
            assert!(!f.contains(k), "tab {tab}: {k} does nothing there: {f:?}");
        }
        assert!(f.contains("? help") && f.contains("q quit"), "{f:?}");
    }
    // A dialog or the filter takes the keys: the footer says so instead of the tab's keys.
    app.update(ch('1'));
    app.update(ch('/'));
    let f = footer(&app);
    assert!(
        f.contains("type to filter") && !f.contains("n new"),
        "{f:?}"
    );
    app.update(key(KeyCode::Esc));
    app.update(ch('i'));
    let f = footer(&app);
    assert!(f.contains("Esc closes it") && !f.contains("n new"), "{f:?}");
}

#[test]
fn every_hub_action_leaves_its_own_log_and_status_line() {
    let (_d, ws) = chain();
    let mut app = app_on(&ws, (100, 30));
    // What the newcomer saw stay on: the status of creating the device.
    app.status = Some((
        chainsmith::tui::app::Level::Ok,
        "created device dev1".into(),
    ));
    select(&mut app, &ws, "dev1");
    press(&mut app, &ws, &[ch('2')]);
    let before = app.hub.log.len();
    press(&mut app, &ws, &[ch('a')]);
    let status = app.status.clone().unwrap().1;
    assert!(status.contains("registered device \"dev1\""), "{status}");
    let last = app.hub.log.back().unwrap();
    assert!(last.text.contains("registered device \"dev1\""), "{last:?}");
    assert_eq!(app.hub.log.len(), before + 1);
    press(&mut app, &ws, &[ch('o')]);
    let status = app.status.clone().unwrap().1;
    assert!(status.contains("disabled device \"dev1\""), "{status}");
    assert!(app.hub.log.back().unwrap().text.contains("disabled device"));
    press(&mut app, &ws, &[ch('o')]);
    assert!(app.status.clone().unwrap().1.contains("enabled device"));
    // A refusal is a line too (registering twice is refused by the registry).
    press(&mut app, &ws, &[ch('a')]);
    let (level, status) = app.status.clone().unwrap();
    assert_eq!(level, chainsmith::tui::app::Level::Error, "{status}");
    assert!(app.hub.log.back().unwrap().text.contains("dev1"));
    // And they are on the screen, with the hub's other events.
    let screen = rows(&app).join("\n");
    assert!(screen.contains("✓ 12:00:00 registered device"), "{screen}");
    assert!(screen.contains("✓ 12:00:00 disabled device"), "{screen}");
    // Leaving the tab leaves the line with it: the footer shows the next tab's keys.
    app.update(ch('3'));
    assert!(app.status.is_none());
}

/// Run a test the way the loop does and feed every action to `app` (the hub forwards its
/// events from a task: give it a moment to deliver the last ones).
fn run_like_the_loop(app: &mut App, rt: &tokio::runtime::Runtime, engines: &Engines) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cmd = app.update(key(KeyCode::Enter));
    let Some(Command::RunTest {
        device,
        target,
        transport,
        hub_port,
    }) = cmd
    else {
        panic!("Enter runs the test: {cmd:?}");
    };
    let root = app.ws_root.clone();
    let engines = engines.clone();
    let r = rt.block_on(async move {
        let req = chainsmith::tui::TestRequest {
            device,
            target,
            transport,
            hub_port,
        };
        let r = run_test(root, engines, req, tx.clone()).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        r
    });
    while let Ok(a) = rx.try_recv() {
        app.update(a);
    }
    app.update(Action::Connect(ConnectAction::Ended(r)));
}

#[test]
fn the_hub_tab_shows_the_hub_the_connect_test_used_and_the_diagnosis_names_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let ws_root = chain_workspace(tmp.path());
    let ws = Workspace::open(&ws_root).unwrap();
    chainsmith::tui::hub_prove(&ws, "Line 2").unwrap();
    let store = chainsmith::hub::HubStore::open(&ws_root).unwrap();
    store
        .add_device("sensor-7", chainsmith::hub::Auth::Ca, None, None, None)
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engines = Engines::default();
    let mut app = App::new(ws_root.clone(), Theme::plain(), NOW, (80, 24));
    let c = app.start();
    settle(&mut app, &ws, c);
    app.hub.port = 0;
    select(&mut app, &ws, "sensor-7");
    app.update(ch('c'));
    assert_eq!(app.tab, Tab::Connect);
    run_like_the_loop(&mut app, &rt, &engines);
    assert!(app.connect.diagnosis.is_none(), "{:?}", app.connect.log);
    // One hub: the Hub tab shows the one the test used, running, with the test in its log.
    let port = app.hub.running.expect("the Hub tab shows the hub running");
    let addr = rt.block_on(async { engines_addr(&engines).await });
    assert_eq!(Some(port), addr.map(|a| a.port()));
    assert!(
        app.hub
            .log
            .iter()
            .any(|l| l.device == "sensor-7" && l.kind == chainsmith::tui::hub::LogKind::Telemetry),
        "{:?}",
        app.hub.log
    );
    app.update(ch('2'));
    let screen = rows(&app).join("\n");
    assert!(
        screen.contains(&format!("running on 127.0.0.1:{port}")),
        "{screen}"
    );
    assert!(screen.contains("sensor-7"), "{screen}");
    let status = app.status.clone();
    assert!(status.is_none(), "{status:?}");

    // Disabled: the same hub refuses it; at 80×24 the failing step and the whole diagnosis
    // show: the engine's fix in domain words, then the key, and no CLI flag or command.
    store.set_enabled("sensor-7", false).unwrap();
    app.update(ch('3'));
    run_like_the_loop(&mut app, &rt, &engines);
    let d = app.connect.diagnosis.clone().expect("a diagnosis");
    let fix_at = d
        .find("fix: enable the device \"sensor-7\" on the hub")
        .expect(&d);
    let key_at = d
        .find("key: press o on the Hub tab with \"sensor-7\"")
        .expect(&d);
    assert!(fix_at < key_at, "{d}");
    assert!(!d.contains("--") && !d.contains("chainsmith "), "{d}");
    let screen = rows(&app);
    let text = screen.join("\n");
    assert!(text.contains("✗ MQTT CONNECT"), "{text}");
    let boxed = words(
        &screen
            .iter()
            .map(|r| r.trim_start_matches('│').trim_end_matches('│'))
            .collect::<Vec<_>>()
            .join(" "),
    );
    for line in d.lines() {
        assert!(
            boxed.contains(&words(line)),
            "{line:?} shown whole:\n{text}"
        );
    }
    assert!(
        app.status.clone().unwrap().1.contains("failed"),
        "{:?}",
        app.status
    );
    rt.block_on(engines.shutdown());
}

async fn engines_addr(e: &Engines) -> Option<std::net::SocketAddr> {
    e.hub_addr().await
}

#[test]
fn a_disabled_device_is_diagnosed_with_the_domain_fix_then_the_key() {
    use chainsmith::mqtt::{ConnectRemedy, Diagnosis, Event, Step};
    let mut app = App::new("/ws".into(), Theme::plain(), NOW, (80, 24));
    app.connect.device = Some("dev1".into());
    app.connect.begin();
    app.update(Action::Connect(ConnectAction::Engine(Box::new(
        Event::Failed {
            step: Step::MqttConnect,
            diagnosis: Diagnosis {
                code: "hub-disabled".into(),
                cause: "the local hub refused \"dev1\": device dev1: device is disabled".into(),
                fix: "enable the device \"dev1\" on the hub".into(),
                detail: String::new(),
                remedy: Some(ConnectRemedy::EnableDevice {
                    device: "dev1".into(),
                }),
            },
        },
    ))));
    let d = app.connect.diagnosis.clone().unwrap();
    let lines: Vec<&str> = d.lines().collect();
    assert_eq!(
        lines[1], "fix: enable the device \"dev1\" on the hub",
        "{d}"
    );
    assert_eq!(
        lines[2],
        "key: press o on the Hub tab with \"dev1\" selected on the PKI tab to enable it"
    );
    // A remedy the TUI has no key for keeps the engine's domain words alone.
    use chainsmith::tui::connect::{ConnectTarget, key_hint};
    let tls = ConnectRemedy::ServerCa {
        issuer: "Test Root".into(),
    };
    assert!(key_hint(&tls, &ConnectTarget::LocalHub).is_none());
    // The hub keys act on the local hub only: against another hub, no key.
    let enable = ConnectRemedy::EnableDevice {
        device: "dev1".into(),
    };
    let azure = ConnectTarget::AzureHub("myhub.azure-devices.net".into());
    assert!(key_hint(&enable, &azure).is_none());
}

#[test]
fn connect_failure_at_80x24_with_every_step_keeps_the_failing_step_and_diagnosis() {
    use chainsmith::mqtt::{Diagnosis, Event, Step};
    let mut app = App::new("/ws".into(), Theme::plain(), NOW, (80, 24));
    app.tab = Tab::Connect;
    app.connect.device = Some("dev1".into());
    app.connect.begin();
    let ev = |e: Event| Action::Connect(ConnectAction::Engine(Box::new(e)));
    app.update(ev(Event::Lint {
        findings: vec![],
        remedies: vec![],
    }));
    app.update(ev(Event::Resolved {
        ms: 0.1,
        addresses: vec!["127.0.0.1".into()],
    }));
    app.update(ev(Event::TcpConnected {
        ms: 0.3,
        address: "127.0.0.1:42817".into(),
    }));
    app.update(ev(Event::TlsEstablished {
        ms: 4.2,
        facts: chainsmith::mqtt::TlsFacts {
            version: "TLSv1.3".into(),
            cipher_suite: "TLS13_AES_256_GCM_SHA384".into(),
            server_cert: None,
            server_chain_len: 0,
            server_verified: true,
            client_cert_requested: true,
            acceptable_cas: vec![],
            client_chain_sent: vec!["CN=dev1".into(), "CN=int1".into()],
        },
    }));
    app.update(ev(Event::Failed {
        step: Step::MqttConnect,
        diagnosis: Diagnosis {
            code: "hub-disabled".into(),
            cause: "the local hub refused \"dev1\": device dev1: device is disabled".into(),
            fix: "enable the device \"dev1\" on the hub".into(),
            detail: String::new(),
            remedy: Some(chainsmith::mqtt::ConnectRemedy::EnableDevice {
                device: "dev1".into(),
            }),
        },
    }));
    app.update(ev(Event::Summary(Default::default())));
    let screen = rows(&app);
    let text = screen.join("\n");
    assert!(text.contains("✗ MQTT CONNECT"), "{text}");
    assert!(!text.contains("is disable\n"), "{text}");
    let boxed = words(
        &screen
            .iter()
            .map(|r| r.trim_start_matches('│').trim_end_matches('│'))
            .collect::<Vec<_>>()
            .join(" "),
    );
    for line in app.connect.diagnosis.as_deref().unwrap().lines() {
        assert!(boxed.contains(&words(line)), "{line:?}:\n{text}");
    }
    insta::assert_snapshot!("connect_disabled_80x24", text);
    // At the minimum size too.
    app.update(Action::Resize(60, 15));
    let screen = rows(&app);
    let text = screen.join("\n");
    assert!(text.contains("✗ MQTT CONNECT"), "{text}");
    let boxed = words(
        &screen
            .iter()
            .map(|r| r.trim_start_matches('│').trim_end_matches('│'))
            .collect::<Vec<_>>()
            .join(" "),
    );
    for line in app.connect.diagnosis.as_deref().unwrap().lines() {
        assert!(boxed.contains(&words(line)), "{line:?}:\n{text}");
    }
    insta::assert_snapshot!("connect_disabled_60x15", text);
}

#[test]
fn export_formats_keep_each_option_whole_at_80x24() {
    let (_d, ws) = chain();
    let mut app = app_on(&ws, (80, 24));
    select(&mut app, &ws, "dev1");
    app.update(ch('e'));
    // The details under the dialog carry serials and dates: leave them out of the picture.
    app.pki.reports.clear();
    app.pki.report_inflight = None;
    let screen = rows(&app);
    let text = screen.join("\n");
    assert!(text.contains("[x] chain-in-pfx"), "{text}");
    for r in &screen {
        let inner = r.trim_end_matches('│').trim_end();
        assert!(
            !inner.ends_with("[x]") && !inner.ends_with("[ ]"),
            "a mark without its option: {r:?}\n{text}"
        );
    }
    insta::assert_snapshot!("export_formats_80x24", text);
}

#[test]
fn a_finished_dialog_leaves_its_own_status_line() {
    let (_d, ws) = chain();
    let mut app = app_on(&ws, (100, 30));
    app.status = Some((
        chainsmith::tui::app::Level::Ok,
        "created device dev1".into(),
    ));
    select(&mut app, &ws, "dev1");
    // r, Enter: renew dev1 with the defaults; Esc closes the result.
    press(&mut app, &ws, &[ch('r'), key(KeyCode::Enter)]);
    let status = app.status.clone().unwrap().1;
    assert!(status.starts_with("renewed \"dev1\""), "{status}");
    press(&mut app, &ws, &[key(KeyCode::Esc)]);
    assert!(app.status.clone().unwrap().1.starts_with("renewed"));
}
