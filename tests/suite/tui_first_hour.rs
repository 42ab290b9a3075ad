//! Issue 27 ("The first hour II"), the TUI's part: the guide at 80 columns and its steps ticked
//! from the workspace whichever face did them, a filter typed from a scrolled tree, the Fleet
//! view's device input, the Hub tab's device list, the footers and the connection test's step
//! names per transport.

use crate::connect_support::{bin, ok, setup};
use crate::tui_snapshots::NOW;
use chainsmith::ops::{self, DeviceRequest};
use chainsmith::store::Workspace;
use chainsmith::tui::fleet::FleetAction;
use chainsmith::tui::hub::{DeviceRow, HubAction};
use chainsmith::tui::theme::Theme;
use chainsmith::tui::{Action, App, Command, Tab, settle};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

fn key(app: &mut App, c: KeyCode) -> Option<Command> {
    app.update(Action::Key(KeyEvent::new(c, KeyModifiers::NONE)))
}

fn typed(app: &mut App, s: &str) {
    for c in s.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn screen(app: &App, w: u16, h: u16) -> String {
    crate::common::screen_lines_of(app, w, h)
}

/// A workspace with the root `root` and the devices `ids` (a range) under it.
fn ws_with(root: &str, ids: Option<&str>) -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::open_or_create(&dir.path().join("ws")).unwrap();
    crate::tui_snapshots::ca(&ws, root, None);
    if let Some(ids) = ids {
        let req = DeviceRequest {
            ids: vec![ids.into()],
            issuer: Some(root.into()),
            ..Default::default()
        };
        ops::new_devices(&ws, &req).unwrap();
    }
    (dir, ws)
}

/// An app over `ws` at `size`, the list read, at the fixed clock and a fixed workspace path.
fn app_on(ws: &Workspace, size: (u16, u16)) -> App {
    let mut app = App::new(ws.root().to_path_buf(), Theme::plain(), NOW, size);
    let first = app.start();
    settle(&mut app, ws, first);
    app.pki.load_took = None;
    app
}

/// What the guide reads besides the entities, read as the loop reads it.
fn read_guide_facts(app: &mut App, ws: &Workspace) {
    let mut acts = Vec::new();
    chainsmith::tui::perform_each(ws, Command::GuideFacts, &mut |a| acts.push(a));
    for a in acts {
        app.update(a);
    }
}

// ---- item 6: the guide ----

/// At 80 columns the step list has its titles, cut with "…" where they do not fit; at 120
/// nothing is cut. The guide opens at the first step not done (a root exists: step 2).
#[test]
fn guide_lists_titles_at_80_columns_and_opens_at_the_first_unfinished_step() {
    let (_d, ws) = ws_with("g-root", None);
    let mut app = app_on(&ws, (80, 24));
    app.ws_root = "/home/you/.local/share/chainsmith".into();
    key(&mut app, KeyCode::Char('4'));
    assert_eq!(
        app.guide.selected, 1,
        "step 1 is done: the guide opens at 2"
    );
    let s = screen(&app, 80, 24);
    assert!(s.contains("✓ 1. Make a root CA"), "{s}");
    assert!(s.contains("· 2. Make an intermedia…"), "{s}");
    assert!(
        s.contains('…'),
        "long titles are shortened with an ellipsis:\n{s}"
    );
    insta::assert_snapshot!("guide_80x24", s);
    app.update(Action::Resize(120, 40));
    let s = screen(&app, 120, 40);
    for step in chainsmith::tui::guide::STEPS.iter() {
        let title = step.lesson().title;
        assert!(s.contains(title), "{title:?} is cut at 120 columns:\n{s}");
    }
    insta::assert_snapshot!("guide_120x40", s);
    // A step the user picks stays picked while the workspace changes under it.
    key(&mut app, KeyCode::Down);
    assert_eq!(app.guide.selected, 2);
    let c = app.update(Action::Tick(NOW + time::Duration::minutes(1)));
    settle(&mut app, &ws, c);
    assert_eq!(app.guide.selected, 2);
}

/// `chainsmith connect` (the CLI face) passes: the guide's connect step is done, in the CLI's
/// `guide --text` and in the TUI, which reads the record the engine keeps in the workspace.
#[test]
fn a_connection_test_run_with_the_cli_ticks_the_guide() {
    let (_t, websocket_path) = setup();
    let before = bin(&websocket_path)
        .args(["guide", "--text"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&before.stdout).contains("· 7. Connect"));
    ok(
        &websocket_path,
        &["connect", "sensor-7", "--count", "1", "--interval", "0"],
    );
    let after = bin(&websocket_path)
        .args(["guide", "--text"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&after.stdout);
    assert!(
        text.contains("✓ 7. Connect and send telemetry (done: \"sensor-7\" connected"),
        "{text}"
    );
    let ws = Workspace::open(&websocket_path).unwrap();
    let mut app = app_on(&ws, (120, 40));
    key(&mut app, KeyCode::Char('4'));
    read_guide_facts(&mut app, &ws);
    assert_eq!(app.guide_facts().connected, ["sensor-7"]);
    let s = screen(&app, 120, 40);
    assert!(s.contains("✓ 7. Connect and send telemetry"), "{s}");
    // Steps 1-7 are done (8, renew, is not): the guide shows step 8.
    assert_eq!(app.guide.selected, 7, "{s}");
}

/// `connect --dps` ticks the IoT Central track's telemetry step: the device DPS assigned passed.
#[test]
fn connect_with_dps_ticks_the_central_telemetry_step() {
    let ws = crate::common::Ws::new();
    ws.chain("dev-9");
    ws.ok(&["hub", "dps", "ca", "add", "inter", "--verified"]);
    ws.ok(&[
        "hub",
        "dps",
        "group",
        "add",
        "G",
        "--ca",
        "inter",
        "--issue-from",
        "inter",
    ]);
    let text = ws.ok(&["guide", "--text", "--central"]);
    assert!(text.contains("· 6. Send telemetry"), "{text}");
    ws.ok(&[
        "connect",
        "dev-9",
        "--dps",
        "--count",
        "1",
        "--interval",
        "0",
    ]);
    let text = ws.ok(&["guide", "--text", "--central"]);
    assert!(
        text.contains(
            "✓ 6. Send telemetry to the assigned hub (done: \"dev-9\" (provisioned by DPS)"
        ),
        "{text}"
    );
}

// ---- item 7: the filter ----

/// A filter typed from the bottom of a long tree shows its matches (the scroll offset of the
/// long list used to hide them), and Esc goes back to the entity selected before `/`.
#[test]
fn a_filter_typed_from_a_scrolled_tree_shows_its_matches_and_esc_goes_back() {
    let (_d, ws) = ws_with("f-root", Some("dev-{01..40}"));
    let mut app = app_on(&ws, (80, 24));
    key(&mut app, KeyCode::End);
    assert_eq!(app.pki.selected_name().as_deref(), Some("dev-40"));
    assert!(app.pki.offset > 0);
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "dev-0");
    let s = screen(&app, 80, 24);
    assert!(s.contains("9/41"), "{s}");
    assert!(!s.contains("nothing matches"), "{s}");
    for n in 1..=9 {
        assert!(s.contains(&format!("dev-0{n}")), "dev-0{n} not shown:\n{s}");
    }
    // Narrow to one: it shows too.
    typed(&mut app, "7");
    let s = screen(&app, 80, 24);
    assert!(s.contains("1/41") && s.contains("dev-07"), "{s}");
    key(&mut app, KeyCode::Esc);
    assert_eq!(
        app.pki.selected_name().as_deref(),
        Some("dev-40"),
        "Esc goes back to the selection before the filter"
    );
    let s = screen(&app, 80, 24);
    assert!(s.contains("dev-40"), "{s}");
}

// ---- item 8: the Fleet view ----

fn fleet_app() -> App {
    let mut app = App::new(
        std::env::temp_dir().join("chainsmith-first-hour-none"),
        Theme::plain(),
        NOW,
        (80, 24),
    );
    app.tab = Tab::Connect;
    key(&mut app, KeyCode::Char('f'));
    app
}

/// r, the devices, Enter: one Enter stores and runs them; ids separated by spaces are several;
/// a new run clears the last one's error; the error is shown whole; the footer and `?` list the
/// Fleet view's keys.
#[test]
fn fleet_range_enter_runs_spaces_separate_ids_and_errors_wrap() {
    let mut app = fleet_app();
    let s = screen(&app, 80, 24);
    let footer = s.lines().last().unwrap();
    for k in ["r ", "Enter ", "s ", "f ", "? help"] {
        assert!(footer.contains(k), "{k:?} not in the footer {footer:?}");
    }
    key(&mut app, KeyCode::Char('r'));
    typed(&mut app, "dev-1 dev-2  sensor-{01..03}");
    match key(&mut app, KeyCode::Enter) {
        Some(Command::RunFleet { patterns, .. }) => {
            assert_eq!(patterns, ["dev-1", "dev-2", "sensor-{01..03}"])
        }
        other => panic!("Enter did not run the typed devices: {other:?}"),
    }
    let long = "unknown-device: 2 device(s) are not registered in the local hub; register them \
                with `chainsmith hub device add dev-1 dev-2` or run with --register, then run again";
    app.update(Action::Fleet(FleetAction::Ended(Err(long.into()))));
    let s = screen(&app, 80, 24);
    let flat: String = s
        .lines()
        .map(|l| l.trim_matches('│').trim())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(flat.contains("then run again"), "the error is cut:\n{s}");
    insta::assert_snapshot!("fleet_error_80x24", s);
    // A new run: the old error goes.
    assert!(matches!(
        key(&mut app, KeyCode::Enter),
        Some(Command::RunFleet { .. })
    ));
    let s = screen(&app, 80, 24);
    assert!(!s.contains("unknown-device"), "{s}");
    // ? lists the Fleet view's keys.
    app.update(Action::Fleet(FleetAction::Ended(Err("stopped".into()))));
    key(&mut app, KeyCode::Char('?'));
    let s = screen(&app, 120, 40);
    assert!(s.contains("Fleet"), "{s}");
    assert!(
        s.contains("type devices and run them, stop, single test"),
        "{s}"
    );
}

/// The typed device list stops at RANGE_MAX bytes (the next key is not taken).
#[test]
fn fleet_range_input_stops_at_its_limit() {
    let mut app = fleet_app();
    key(&mut app, KeyCode::Char('r'));
    typed(&mut app, &"d".repeat(chainsmith::tui::fleet::RANGE_MAX + 5));
    match key(&mut app, KeyCode::Enter) {
        Some(Command::RunFleet { patterns, .. }) => {
            assert_eq!(patterns[0].len(), chainsmith::tui::fleet::RANGE_MAX)
        }
        other => panic!("{other:?}"),
    }
}

// ---- item 9: the Hub tab's devices ----

fn hub_app(n: usize, size: (u16, u16)) -> App {
    let mut app = App::new(
        "/home/you/.local/share/chainsmith".into(),
        Theme::plain(),
        NOW,
        size,
    );
    app.update(Action::Listed {
        rows: vec![],
        damaged: 0,
        took: std::time::Duration::ZERO,
    });
    app.tab = Tab::Hub;
    app.update(Action::Hub(HubAction::Registry {
        cas: vec![],
        devices: (1..=n)
            .map(|i| DeviceRow {
                id: format!("sensor-{i:03}"),
                enabled: i % 50 != 0,
                auth: "X.509 CA signed".into(),
            })
            .collect(),
    }));
    app.pki.load_took = None;
    app
}

/// 403 devices: the list says how many and which rows show, scrolls with the keys, and `/`
/// filters it by id.
#[test]
fn hub_devices_show_their_count_scroll_and_filter() {
    let mut app = hub_app(403, (80, 24));
    let s = screen(&app, 80, 24);
    assert!(s.contains("Devices · 1–6 of 403"), "{s}");
    insta::assert_snapshot!("hub_devices_80x24", s);
    key(&mut app, KeyCode::PageDown);
    key(&mut app, KeyCode::Down);
    let s = screen(&app, 80, 24);
    assert!(s.contains("8–13 of 403") && s.contains("sensor-008"), "{s}");
    assert!(!s.contains("sensor-007"), "{s}");
    key(&mut app, KeyCode::End);
    let s = screen(&app, 80, 24);
    assert!(
        s.contains("398–403 of 403") && s.contains("sensor-403"),
        "{s}"
    );
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "-40");
    key(&mut app, KeyCode::Enter);
    let s = screen(&app, 120, 40);
    assert!(s.contains("Devices /-40 · 4 (of 403)"), "{s}");
    for id in ["sensor-400", "sensor-401", "sensor-402", "sensor-403"] {
        assert!(s.contains(id), "{id}:\n{s}");
    }
    insta::assert_snapshot!("hub_devices_filtered_120x40", s);
    // Keys typed into the filter did not act: `s` did not start the hub.
    assert!(app.hub.running.is_none() && !s.contains("starting"));
    key(&mut app, KeyCode::Char('/'));
    typed(&mut app, "zzz");
    let s = screen(&app, 120, 40);
    assert!(s.contains("no device id contains \"-40zzz\""), "{s}");
    key(&mut app, KeyCode::Esc);
    let s = screen(&app, 120, 40);
    assert!(s.contains("Devices · 1–6 of 403"), "{s}");
}

// ---- item 10: layout ----

/// The footer names every key of the tab at 80 columns, and the PKI footer keeps the
/// workspace path whole at 120 (shortened from the left, with "…", where it must be).
#[test]
fn footers_keep_every_key_and_the_workspace_path() {
    let app = hub_app(3, (80, 24));
    let s = screen(&app, 80, 24);
    let footer = s.lines().last().unwrap();
    for k in [
        "s hub",
        "p port",
        "v V prove",
        "a add",
        "o on/off",
        "G group",
        "e enroll",
        "? help",
        "q quit",
    ] {
        assert!(footer.contains(k), "{k:?} not in the Hub footer {footer:?}");
    }
    let mut app = hub_app(3, (120, 40));
    app.tab = Tab::Pki;
    let s = screen(&app, 120, 40);
    let footer = s.lines().last().unwrap();
    assert!(
        footer.ends_with("/home/you/.local/share/chainsmith"),
        "{footer:?}"
    );
    app.update(Action::Resize(80, 24));
    let s = screen(&app, 80, 24);
    let footer = s.lines().last().unwrap();
    for k in [
        "n new",
        "v verify",
        "e export",
        "c connect",
        "d delete",
        "/ filter",
        "? help",
    ] {
        assert!(footer.contains(k), "{k:?} not in the PKI footer {footer:?}");
    }
}

/// Histogram labels are shown whole: 1024 and 2048 ms do not become "102 204".
#[test]
fn fleet_histogram_labels_are_whole() {
    let mut app = fleet_app();
    app.fleet.begin("d-{1..9}".into());
    let f = chainsmith::fleet::Figures {
        ack_buckets: vec![(256.0, 0), (512.0, 3), (1024.0, 5), (2048.0, 2)],
        ..Default::default()
    };
    app.update(Action::Fleet(FleetAction::Figures(Box::new(f))));
    let s = screen(&app, 120, 40);
    assert!(s.contains("512  1024 2048"), "{s}");
    assert!(!s.contains("102 204"), "{s}");
}

/// Over AMQP the steps and messages say what AMQP calls them (disposition, detach/close), and
/// the step names line up whatever their length ("AMQP link attach" among them).
#[test]
fn amqp_steps_are_named_as_amqp_names_them_and_line_up() {
    // The CLI face, against the local hub.
    let (_t, ws) = setup();
    let out = bin(&ws)
        .args([
            "connect",
            "sensor-7",
            "--transport",
            "amqp",
            "--count",
            "2",
            "--interval",
            "0",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains("PUBACK") && !text.contains("DISCONNECT"),
        "{text}"
    );
    assert!(
        text.contains("disposition") && text.contains("detach/close"),
        "{text}"
    );
    let ms_col: Vec<usize> = text
        .lines()
        .filter(|l| l.starts_with('✓') && l.contains(" ms  "))
        .map(|l| l.find(" ms  ").unwrap_or(0))
        .collect();
    assert!(ms_col.len() >= 5, "{text}");
    assert!(
        ms_col.iter().all(|c| *c == ms_col[0]),
        "the timings are not in one column:\n{text}"
    );
    // The TUI face: the Connect tab's steps and log.
    let ws = Workspace::open(&ws).unwrap();
    let mut app = app_on(&ws, (120, 40));
    app.connect.transport = chainsmith::mqtt::Transport::Amqp;
    app.connect.device = Some("sensor-7".into());
    app.tab = Tab::Connect;
    use chainsmith::mqtt::{Event as E, Step};
    use chainsmith::tui::connect::ConnectAction;
    for e in [
        E::TcpConnected {
            ms: 1.0,
            address: "127.0.0.1:5671".into(),
        },
        E::StepDone {
            step: Step::LinkAttach,
            ms: 2.0,
            detail: "4 links".into(),
        },
        E::Published {
            message_id: 0,
            topic: "t".into(),
            payload: "{}".into(),
            temperature_alert: false,
            ack_ms: Some(1.5),
        },
        E::Disconnected { ms: 0.5 },
    ] {
        app.update(Action::Connect(ConnectAction::Engine(Box::new(e))));
    }
    let s = screen(&app, 120, 40);
    assert!(
        s.contains("disposition 1.5 ms") && s.contains("detach/close"),
        "{s}"
    );
    assert!(!s.contains("PUBACK 1.5"), "{s}");
    let col = |name: &str| {
        let l = s.lines().find(|l| l.contains(name)).unwrap();
        l.find(" ms").unwrap() - l.find(name).unwrap()
    };
    assert_eq!(col("TCP connect"), col("AMQP link attach"), "{s}");
}
