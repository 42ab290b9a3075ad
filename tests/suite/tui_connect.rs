//! The Connect tab's engine wiring without a terminal: `tui::run_test` (what `Enter` on the
//! Connect tab starts) against real peers, its events fed through `App::update` exactly as the
//! loop does: a real Mosquitto broker typed in as `mqtts://HOST:PORT`, and the local hub
//! (started for the test when the Hub tab's is not running), before and after the device is
//! disabled.

use crate::connect_support;
use chainsmith::store::Workspace;
use chainsmith::tui::connect::{ConnectAction, ConnectTarget};
use chainsmith::tui::theme::Theme;
use chainsmith::tui::{Action, App, Engines, TestRequest, run_test};
use connect_support::*;
use time::OffsetDateTime;

/// Run the test like the loop does and return the app state it produced.
fn run(ws: &std::path::Path, device: &str, target: ConnectTarget) -> App {
    let mut app = App::new(
        ws.to_path_buf(),
        Theme::plain(),
        OffsetDateTime::now_utc(),
        (100, 30),
    );
    run_on(&mut app, ws, device, target);
    app
}

/// The same, on an existing app (its transport and earlier results kept).
fn run_on(app: &mut App, ws: &std::path::Path, device: &str, target: ConnectTarget) {
    app.connect.device = Some(device.into());
    app.connect.target = target.clone();
    app.connect.begin();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let root = ws.to_path_buf();
    let device = device.to_string();
    let transport = app.connect.transport;
    let r = rt.block_on(async move {
        let req = TestRequest {
            device,
            target,
            transport,
            hub_port: 0,
        };
        let r = run_test(root, Engines::default(), req, tx.clone()).await;
        drop(tx);
        r
    });
    app.update(Action::Connect(ConnectAction::Ended(r)));
    let mut actions = Vec::new();
    while let Ok(a) = rx.try_recv() {
        actions.push(a);
    }
    // The Ended action is handled last by the loop too (it is sent after the events).
    let ended = app.connect.diagnosis.clone();
    app.connect.begin();
    for a in actions {
        app.update(a);
    }
    if let Some(d) = ended {
        app.connect.diagnosis.get_or_insert(d);
    }
    app.connect.running = false;
}

#[test]
fn a_broker_typed_in_as_mqtts_url_gets_the_generic_test_and_echo_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = chain_workspace(tmp.path());
    let root_pem = ws.join("entities/Test Root/cert.pem");
    let (cert, key) = server_cert(&ws, "Test Root", tmp.path());
    let broker = mosquitto(tmp.path(), &root_pem, &cert, &key);
    let target = ConnectTarget::parse(&format!("mqtts://127.0.0.1:{}", broker.port)).unwrap();
    assert!(matches!(target, ConnectTarget::Broker(_)));
    let app = run(&ws, "sensor-7", target);
    let c = &app.connect;
    assert!(c.diagnosis.is_none(), "{:?}\n{:?}", c.diagnosis, c.log);
    assert_eq!((c.sent, c.acked), (5, 5), "{:?}", c.log);
    assert_eq!(c.rt_seen, 5, "echo round trips: {:?}", c.log);
    assert_eq!(c.round_trips.len(), 5);
    assert!(c.log.iter().any(|l| l.contains("echo round trip")));
    assert!(c.steps.iter().any(|s| s.name == "TLS handshake"));
    assert!(!c.tls.is_empty(), "TLS details shown");
    assert_eq!(c.passed.as_deref(), Some("sensor-7"));
}

#[test]
fn the_local_hub_is_started_for_the_test_and_its_refusal_is_diagnosed() {
    let tmp = tempfile::tempdir().unwrap();
    let ws_root = chain_workspace(tmp.path());
    let ws = Workspace::open(&ws_root).unwrap();
    // Proof of possession and registration the way the Hub tab does them.
    let steps = chainsmith::tui::hub_prove(&ws, "Line 2").unwrap();
    assert!(steps.last().unwrap().contains("Verified"));
    let store = chainsmith::hub::HubStore::open(&ws_root).unwrap();
    store
        .add_device("sensor-7", chainsmith::hub::Auth::Ca, None, None, None)
        .unwrap();
    let app = run(&ws_root, "sensor-7", ConnectTarget::LocalHub);
    let c = &app.connect;
    assert!(c.diagnosis.is_none(), "{:?}\n{:?}", c.diagnosis, c.log);
    assert_eq!((c.sent, c.acked), (5, 5));
    // Azure flavor: a C2D echo and a twin GET per message.
    assert_eq!(c.rt_seen, 10, "{:?}", c.log);
    assert!(c.log.iter().any(|l| l.contains("local hub recorded all 5")));
    // Disabled: the hub refuses with its own sentence, and the diagnosis box says so.
    store.set_enabled("sensor-7", false).unwrap();
    let app = run(&ws_root, "sensor-7", ConnectTarget::LocalHub);
    let d = app.connect.diagnosis.clone().expect("a diagnosis");
    assert!(d.contains("disabled"), "{d}");
    // The engine's fix in domain words, then the TUI's key; no CLI flag or command.
    assert!(
        d.contains("fix: enable the device \"sensor-7\" on the hub"),
        "{d}"
    );
    let key = "press o on the Hub tab with \"sensor-7\" selected on the PKI tab to enable it";
    assert!(d.contains(&format!("key: {key}")), "{d}");
    assert!(!d.contains("--") && !d.contains("chainsmith "), "{d}");
    // The pre-flight finding in the log carries the same key.
    let log = &app.connect.log;
    let at = log
        .iter()
        .position(|l| l.contains("hub-device-disabled"))
        .unwrap_or_else(|| panic!("{log:?}"));
    assert_eq!(log[at + 1], format!("  key: {key}"), "{log:?}");
    assert_eq!(app.connect.acked, 0);
    assert!(app.connect.passed.is_none());
}

#[test]
fn a_device_that_does_not_exist_ends_with_a_message_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = chain_workspace(tmp.path());
    let app = run(&ws, "nope", ConnectTarget::LocalHub);
    let d = app.connect.diagnosis.expect("why it could not start");
    assert!(d.contains("nope"), "{d}");
}

/// `t` picks the transport in the target form; after tests over two transports the Connect
/// tab compares them, one line each.
#[test]
fn t_picks_the_transport_and_the_summary_compares_transports() {
    use chainsmith::mqtt::Transport;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let tmp = tempfile::tempdir().unwrap();
    let ws_root = chain_workspace(tmp.path());
    let ws = Workspace::open(&ws_root).unwrap();
    chainsmith::tui::hub_prove(&ws, "Line 2").unwrap();
    let store = chainsmith::hub::HubStore::open(&ws_root).unwrap();
    store
        .add_device("sensor-7", chainsmith::hub::Auth::Ca, None, None, None)
        .unwrap();
    let mut app = App::new(
        ws_root.clone(),
        Theme::plain(),
        OffsetDateTime::now_utc(),
        (100, 30),
    );
    app.tab = chainsmith::tui::Tab::Connect;
    let key = |c| Action::Key(KeyEvent::new(c, KeyModifiers::NONE));
    app.update(key(KeyCode::Char('t')));
    // Target field, then the transport choice: two steps right (mqtt -> mqtt-ws -> amqp).
    app.update(key(KeyCode::Tab));
    app.update(key(KeyCode::Right));
    app.update(key(KeyCode::Right));
    app.update(key(KeyCode::Enter));
    assert_eq!(app.connect.transport, Transport::Amqp);
    run_on(&mut app, &ws_root, "sensor-7", ConnectTarget::LocalHub);
    assert!(
        app.connect.diagnosis.is_none(),
        "{:?}\n{:?}",
        app.connect.diagnosis,
        app.connect.log
    );
    assert!(
        app.connect
            .steps
            .iter()
            .any(|s| s.name == "AMQP link attach"),
        "{:?}",
        app.connect.steps
    );
    assert_eq!(app.connect.compare.len(), 1);
    app.connect.transport = Transport::MqttWs;
    run_on(&mut app, &ws_root, "sensor-7", ConnectTarget::LocalHub);
    assert!(
        app.connect
            .steps
            .iter()
            .any(|s| s.name == "WebSocket upgrade")
    );
    let c = &app.connect.compare;
    assert_eq!(
        c.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        vec![Transport::Amqp, Transport::MqttWs]
    );
    assert!(c.iter().all(|(_, l)| l.starts_with("✓ 5/5 acked")), "{c:?}");
    // Drawn: one Compare line per transport.
    let screen = crate::common::screen_of(&app, 100, 30);
    assert!(screen.contains("Compare amqp"), "{screen}");
    assert!(screen.contains("mqtt-ws  ✓ 5/5 acked"), "{screen}");
}
