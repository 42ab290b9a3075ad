//! The TUI's Fleet view (Connect tab, `f`): its keys and commands without a terminal, a
//! snapshot at a fixed clock, and a live run of 50 devices in the real TUI in a pty.

use crate::connect_support::free_port;
use crate::fleet::{ROOT, fleet_ws};
use chainsmith::fleet::{Figures, Phase, figures::Percentiles};
use chainsmith::tui::fleet::FleetAction;
use chainsmith::tui::theme::Theme;
use chainsmith::tui::{Action, App, Command, Tab, ui};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::macros::datetime;

fn key(app: &mut App, c: KeyCode) -> Option<Command> {
    app.update(Action::Key(KeyEvent::new(c, KeyModifiers::NONE)))
}

fn typed(app: &mut App, s: &str) {
    for c in s.chars() {
        assert!(key(app, KeyCode::Char(c)).is_none());
    }
}

fn app() -> App {
    let mut app = App::new(
        std::env::temp_dir().join("chainsmith-fleet-tui-none"),
        Theme::plain(),
        datetime!(2026-06-01 12:00:00 UTC),
        (100, 30),
    );
    app.tab = Tab::Connect;
    app
}

#[test]
fn fleet_keys_take_a_typed_range_and_stop_a_run() {
    let mut app = app();
    assert!(key(&mut app, KeyCode::Char('f')).is_none());
    assert!(app.fleet.shown);
    // Nothing selected on the PKI tab and no range: it says what to do, runs nothing.
    assert!(key(&mut app, KeyCode::Enter).is_none());
    assert!(app.status.as_ref().unwrap().1.contains("type a range"));
    // r, a range with digits (not tab switches) and q (not quit), Enter keeps it and runs it.
    key(&mut app, KeyCode::Char('r'));
    typed(&mut app, "q-{001..050}");
    assert_eq!(app.tab, Tab::Connect);
    assert!(!app.quit);
    match key(&mut app, KeyCode::Enter) {
        Some(Command::RunFleet {
            patterns, issuer, ..
        }) => {
            assert_eq!(patterns, ["q-{001..050}"]);
            assert_eq!(issuer, None);
        }
        other => panic!("{other:?}"),
    }
    assert!(app.fleet.running);
    // One run at a time; s stops it.
    assert!(key(&mut app, KeyCode::Enter).is_none());
    assert!(matches!(
        key(&mut app, KeyCode::Char('s')),
        Some(Command::StopFleet)
    ));
    let mut f = Figures {
        devices: 50,
        connected: 50,
        ..Default::default()
    };
    f.phase = Phase::Done;
    app.update(Action::Fleet(FleetAction::Figures(Box::new(f))));
    assert_eq!(app.fleet.figures.connected, 50);
    app.update(Action::Fleet(FleetAction::Ended(Err("boom".into()))));
    assert!(!app.fleet.running);
    assert!(app.status.as_ref().unwrap().1.contains("boom"));
    // f goes back to the single test.
    key(&mut app, KeyCode::Char('f'));
    assert!(!app.fleet.shown);
}

/// The Protocol field of the target form does not apply to a fleet (it runs over MQTT with
/// TLS only): a fleet started with AMQP chosen says so plainly instead of ignoring it.
#[test]
fn a_fleet_run_says_it_runs_over_mqtt_when_another_protocol_is_chosen() {
    let start = |app: &mut App| {
        key(app, KeyCode::Char('f'));
        key(app, KeyCode::Char('r'));
        typed(app, "d-{001..003}");
        let cmd = key(app, KeyCode::Enter);
        assert!(matches!(cmd, Some(Command::RunFleet { .. })), "{cmd:?}");
        app.status.clone().unwrap()
    };
    // MQTT (the default): no word about protocols.
    let (_, said) = start(&mut app());
    assert!(!said.contains("Protocol"), "{said}");
    // t, Tab to Protocol, two steps right: amqp.
    let mut app = app();
    key(&mut app, KeyCode::Char('t'));
    key(&mut app, KeyCode::Tab);
    key(&mut app, KeyCode::Right);
    key(&mut app, KeyCode::Right);
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.connect.transport, chainsmith::mqtt::Transport::Amqp);
    let (_, said) = start(&mut app);
    assert!(
        said.contains("the fleet runs over MQTT (TLS)")
            && said.contains("the Protocol field (amqp) applies to the single test"),
        "{said}"
    );
    // The Fleet view's Target line says it too, for as long as it shows.
    let screen = crate::common::screen_of(&app, 120, 30);
    assert!(
        screen.contains("over mqtt (the fleet's only protocol; amqp is for the single test)"),
        "{screen}"
    );
}

#[test]
fn fleet_view_live_snapshot() {
    let mut app = app();
    app.fleet.shown = true;
    app.fleet.begin("every device under Fleet Root".into());
    app.update(Action::Fleet(FleetAction::Figures(Box::new(Figures {
        phase: Phase::Steady,
        elapsed_s: 12.5,
        devices: 10_000,
        connected: 9_990,
        connecting: 0,
        failed: 10,
        provisioned: 0,
        handshakes: 9_990,
        handshakes_per_s: 0.0,
        sent: 98_000,
        acked: 97_990,
        messages_per_s: 9_950.0,
        ack: Percentiles {
            count: 97_990,
            p50_ms: 0.41,
            p90_ms: 1.2,
            p99_ms: 3.9,
            max_ms: 12.0,
        },
        round_trip: Percentiles::default(),
        failures: vec![("disabled".into(), 10, "d-00042\u{1b}[31m".into())],
        rate_history: (0..60).map(|i| (i * 170) as u64).collect(),
        ack_buckets: vec![
            (0.25, 100),
            (0.5, 40_000),
            (1.0, 50_000),
            (2.0, 7_000),
            (4.0, 890),
        ],
    }))));
    let mut t = Terminal::new(TestBackend::new(100, 30)).unwrap();
    t.draw(|f| ui::render(f, &app)).unwrap();
    let buf = t.backend().buffer();
    let mut screen = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        screen.push_str(line.trim_end());
        screen.push('\n');
    }
    // The device name from the peer is escaped, never sent to the terminal raw.
    assert!(!screen.contains('\u{1b}'));
    assert!(screen.contains("9990/10000"), "{screen}");
    insta::assert_snapshot!("fleet_view_live", screen);
}

/// The real binary in a pty: the Hub tab's hub on a free port, then 50 devices from the Fleet
/// view, all connected, stopped with s; the terminal is given back on quit.
#[test]
fn fleet_view_runs_fifty_devices_live_in_the_real_tui() {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    let dir = tempfile::tempdir().unwrap();
    let ws = fleet_ws(dir.path(), 50, &[]);
    let _ = ROOT;
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 30,
            cols: 100,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_chainsmith"));
    cmd.arg("--workspace");
    cmd.arg(&ws);
    cmd.env("TERM", "xterm-256color");
    let mut child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().unwrap();
    let mut writer = pair.master.take_writer().unwrap();
    let parser = Arc::new(Mutex::new(vt100::Parser::new(30, 100, 0)));
    let p = Arc::clone(&parser);
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            p.lock().unwrap().process(&buf[..n]);
        }
    });
    let screen = || parser.lock().unwrap().screen().contents();
    let wait_for = |needle: &str| {
        let start = Instant::now();
        loop {
            let s = screen();
            if s.contains(needle) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {needle:?}; the screen shows:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    };
    let mut send = |s: &str| {
        writer.write_all(s.as_bytes()).unwrap();
        writer.flush().unwrap();
        std::thread::sleep(Duration::from_millis(60));
    };
    wait_for(ROOT);
    let port = free_port();
    send("2");
    wait_for("Hub · CAs");
    send("p");
    wait_for("Local hub port");
    send(&"\x7f".repeat(6));
    send(&port.to_string());
    send("\r");
    send("s");
    wait_for(&format!("running on 127.0.0.1:{port}"));
    send("3");
    send("f");
    wait_for("Fleet · r devices · Enter run");
    send("r");
    send("d-{001..050}");
    send("\r");
    let s = wait_for("50/50");
    assert!(s.contains("connected 50"), "{s}");
    // Telemetry flows while it runs (1 message/s per device), acknowledged.
    let start = Instant::now();
    while !screen().contains("acked") || screen().contains(" 0 acked") {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", screen());
        std::thread::sleep(Duration::from_millis(50));
    }
    send("s");
    let s = wait_for("fleet: 50 device(s): 50 connected, 0 failed");
    assert!(s.contains("interrupted"), "{s}");
    send("q");
    send("q");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", screen());
        std::thread::sleep(Duration::from_millis(30));
    }
    std::thread::sleep(Duration::from_millis(200));
    let p = parser.lock().unwrap();
    assert!(
        !p.screen().alternate_screen(),
        "still on the alternate screen"
    );
}

/// The Hub tab's port is taken (a local Mosquitto on 8883, say): a fleet run against the
/// local hub starts it on a free port and says so, as the single connection test does.
#[test]
fn a_fleet_run_starts_the_local_hub_on_a_free_port_when_the_hub_tabs_is_taken() {
    use chainsmith::tui::Engines;
    use chainsmith::tui::connect::ConnectTarget;
    let dir = tempfile::tempdir().unwrap();
    let ws = fleet_ws(dir.path(), 3, &[]);
    let held = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = held.local_addr().unwrap().port();
    let mut app = App::new(
        ws.clone(),
        Theme::plain(),
        datetime!(2026-06-01 12:00:00 UTC),
        (100, 30),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let actions = rt.block_on(async {
        let engines = Engines::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let run = tokio::spawn(chainsmith::tui::run_fleet(
            ws.clone(),
            engines.clone(),
            vec!["d-{001..003}".into()],
            None,
            ConnectTarget::LocalHub,
            port,
            tx,
        ));
        let mut actions = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let a = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(a)) => a,
                _ => break,
            };
            let all_in = matches!(&a, Action::Fleet(FleetAction::Figures(f)) if f.connected == 3);
            actions.push(a);
            if all_in {
                break;
            }
        }
        engines.stop_fleet().await;
        let r = run.await.unwrap();
        engines.shutdown().await;
        if let Err(e) = &r {
            panic!("the fleet did not run: {e}");
        }
        while let Ok(a) = rx.try_recv() {
            actions.push(a);
        }
        actions.push(Action::Fleet(FleetAction::Ended(r)));
        actions
    });
    for a in actions {
        app.update(a);
    }
    // Every device connected (the run ends disconnected: the handshakes are what count).
    let fig = &app.fleet.figures;
    assert_eq!((fig.handshakes, fig.failed), (3, 0), "{fig:?}");
    let running = app.hub.running.expect("the Hub tab shows the hub running");
    assert_ne!(running, port);
    let log: Vec<&str> = app.hub.log.iter().map(|l| l.text.as_str()).collect();
    assert!(
        log.iter()
            .any(|l| l.contains(&format!("port {port} is taken"))
                && l.contains(&format!("free port {running}"))),
        "{log:?}"
    );
    drop(held);
}
