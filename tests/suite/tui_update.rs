//! The TUI's state machine with no terminal: keys, mouse, background results go through
//! `App::update`; commands run synchronously with `tui::perform` against a real workspace.

use chainsmith::ops::{self, DeviceRequest, ValidityArg};
use chainsmith::pki::KeyAlg;
use chainsmith::store::{Kind, Workspace};
use chainsmith::tui::dialog::{Dialog, NewKind};
use chainsmith::tui::theme::Theme;
use chainsmith::tui::{Action, App, Command, CreateRequest, Tab, hub, perform, settle};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use std::process::Command as Proc;

use chainsmith_test_support::workspace::new_ca;
use time::OffsetDateTime;

fn key(c: KeyCode) -> Action {
    Action::Key(KeyEvent::new(c, KeyModifiers::NONE))
}
fn ch(c: char) -> Action {
    key(KeyCode::Char(c))
}
fn typed(app: &mut App, s: &str) -> Vec<Command> {
    s.chars().filter_map(|c| app.update(ch(c))).collect()
}
fn mouse(kind: MouseEventKind, column: u16, row: u16) -> Action {
    Action::Mouse(MouseEvent {
        kind,
        column,
        row,
        modifiers: KeyModifiers::NONE,
    })
}

fn ws() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::open_or_create(&dir.path().join("ws")).unwrap();
    (dir, ws)
}

fn devices(ws: &Workspace, ids: &str, issuer: &str) {
    let req = DeviceRequest {
        ids: vec![ids.into()],
        issuer: Some(issuer.into()),
        ..Default::default()
    };
    ops::new_devices(ws, &req).unwrap();
}

/// An app over `ws`, list and first report loaded.
fn app_on(ws: &Workspace) -> App {
    let mut app = App::new(
        ws.root().to_path_buf(),
        Theme::plain(),
        OffsetDateTime::now_utc(),
        (100, 30),
    );
    let first = app.start();
    settle(&mut app, ws, first);
    app
}

#[test]
fn number_keys_and_g_switch_tabs_and_help_opens_and_closes() {
    let (_d, ws) = ws();
    let mut app = app_on(&ws);
    assert_eq!(app.tab, Tab::Pki);
    app.update(ch('2'));
    assert_eq!(app.tab, Tab::Hub);
    app.update(ch('3'));
    assert_eq!(app.tab, Tab::Connect);
    let c = app.update(ch('g'));
    assert_eq!(app.tab, Tab::Guide);
    assert!(
        matches!(c, Some(Command::LoadList)),
        "entering the guide re-reads the workspace to check the steps"
    );
    app.update(ch('1'));
    assert_eq!(app.tab, Tab::Pki);
    app.update(ch('?'));
    assert!(app.help);
    app.update(ch('2'));
    assert!(!app.help, "any key closes help");
    assert_eq!(
        app.tab,
        Tab::Pki,
        "the key that closes help does nothing else"
    );
    app.update(ch('q'));
    assert!(app.quit);
}

#[test]
fn quit_asks_while_the_hub_runs() {
    let (_d, ws) = ws();
    let mut app = app_on(&ws);
    app.update(Action::Hub(hub::HubAction::Started { port: 8883 }));
    app.update(ch('q'));
    assert!(!app.quit);
    assert!(matches!(app.dialog, Some(Dialog::Message { .. })));
    app.update(ch('q'));
    assert!(app.quit);
}

#[test]
fn ctrl_c_quits_even_in_a_form() {
    let (_d, ws) = ws();
    let mut app = app_on(&ws);
    app.update(ch('n'));
    app.update(Action::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )));
    assert!(app.quit);
}

#[test]
fn mouse_clicks_switch_tabs_and_select_rows_and_wheel_scrolls() {
    let (_d, ws) = ws();
    new_ca(&ws, "r", None);
    devices(&ws, "d-{01..40}", "r");
    let mut app = app_on(&ws);
    let hub_x = chainsmith::tui::ui::tab_ranges()[1].1.start + 1;
    app.update(mouse(MouseEventKind::Down(MouseButton::Left), hub_x, 0));
    assert_eq!(app.tab, Tab::Hub);
    app.update(mouse(MouseEventKind::Down(MouseButton::Left), 1, 0));
    assert_eq!(app.tab, Tab::Pki);
    // Row 1 is the tree's border; row 4 is the third entity.
    let c = app.update(mouse(MouseEventKind::Down(MouseButton::Left), 5, 4));
    assert_eq!(app.pki.selected, 2);
    assert_eq!(app.pki.selected_name().as_deref(), Some("d-02"));
    assert!(matches!(&c, Some(Command::LoadReport(n)) if n == "d-02"));
    settle(&mut app, &ws, c);
    app.update(mouse(MouseEventKind::ScrollDown, 5, 10));
    assert_eq!(app.pki.selected, 5);
    for _ in 0..20 {
        app.update(mouse(MouseEventKind::ScrollDown, 5, 10));
    }
    assert_eq!(app.pki.selected, 40, "the wheel stops at the last row");
    let h = 30 - 2 - 2; // tabs + status, tree borders
    assert!(
        app.pki.offset + h > app.pki.selected && app.pki.offset <= app.pki.selected,
        "the selection stays in view"
    );
    app.update(mouse(MouseEventKind::ScrollDown, 80, 10));
    assert_eq!(
        app.pki.detail_scroll, 3,
        "the wheel over the details scrolls them"
    );
}

#[test]
fn resize_keeps_the_selection_in_view() {
    let (_d, ws) = ws();
    new_ca(&ws, "r", None);
    devices(&ws, "d-{01..60}", "r");
    let mut app = app_on(&ws);
    app.update(key(KeyCode::End));
    assert_eq!(app.pki.selected, 60);
    app.update(Action::Resize(80, 15));
    let h = 15 - 4;
    assert!(app.pki.offset + h > 60);
}

#[test]
fn reports_load_one_at_a_time_and_the_newest_wish_wins() {
    let (_d, ws) = ws();
    new_ca(&ws, "r", None);
    devices(&ws, "d-{1..5}", "r");
    let mut app = App::new(
        ws.root().to_path_buf(),
        Theme::plain(),
        OffsetDateTime::now_utc(),
        (100, 30),
    );
    let c = app.start();
    assert!(matches!(c, Some(Command::LoadList)));
    let listed = perform(&ws, c.unwrap()).unwrap();
    let first = app.update(listed);
    assert!(matches!(&first, Some(Command::LoadReport(n)) if n == "r"));
    // While "r" is loading, the user moves three rows: no new job starts.
    assert!(app.update(key(KeyCode::Down)).is_none());
    assert!(app.update(key(KeyCode::Down)).is_none());
    assert!(app.update(key(KeyCode::Down)).is_none());
    assert_eq!(app.pki.report_queued.as_deref(), Some("d-3"));
    // When "r" lands, the queued (newest) selection is loaded next, not d-1 or d-2.
    let next = app.update(perform(&ws, first.unwrap()).unwrap());
    assert!(matches!(&next, Some(Command::LoadReport(n)) if n == "d-3"));
    settle(&mut app, &ws, next);
    assert!(app.pki.reports.contains_key("d-3"));
    assert!(!app.pki.reports.contains_key("d-1"));
    // Coming back to a cached report starts no job.
    app.update(key(KeyCode::Home));
    assert!(
        app.update(key(KeyCode::Down)).is_some(),
        "d-1 was never loaded"
    );
}

#[test]
fn filter_narrows_the_tree_and_esc_clears_it() {
    let (_d, ws) = ws();
    new_ca(&ws, "r", None);
    devices(&ws, "sensor-{1..3}", "r");
    devices(&ws, "pump-{1..2}", "r");
    let mut app = app_on(&ws);
    assert_eq!(app.pki.visible.len(), 6);
    app.update(ch('/'));
    typed(&mut app, "PUMP");
    assert_eq!(app.pki.visible.len(), 2, "case-insensitive");
    assert_eq!(app.pki.selected_name().as_deref(), Some("pump-1"));
    app.update(key(KeyCode::Enter));
    assert!(!app.pki.filtering);
    assert_eq!(app.pki.visible.len(), 2, "Enter keeps the filter");
    app.update(key(KeyCode::Esc));
    assert_eq!(app.pki.visible.len(), 6);
}

#[test]
fn new_root_form_creates_it_off_the_loop_and_selects_it() {
    let (_d, ws) = ws();
    let mut app = app_on(&ws);
    app.update(ch('n'));
    let Some(Dialog::New(form)) = &app.dialog else {
        panic!("n opens the form")
    };
    assert_eq!(
        form.kind,
        NewKind::Root,
        "an empty workspace starts with a root"
    );
    typed(&mut app, "my-root");
    let cmd = app.update(key(KeyCode::Enter));
    let Some(Command::Create(CreateRequest::Ca(req))) = &cmd else {
        panic!("Enter submits: {cmd:?}")
    };
    assert_eq!(req.name, "my-root");
    assert!(req.issuer.is_none());
    // The work has not happened: update only asked for it, and the form shows a spinner.
    assert!(!ws.exists("my-root"));
    let Some(Dialog::New(form)) = &app.dialog else {
        panic!()
    };
    assert!(form.busy.is_some());
    let s0 = app.spinner;
    app.update(Action::Tick(OffsetDateTime::now_utc()));
    assert_eq!(
        app.spinner,
        s0 + 1,
        "the spinner turns while the key is generated"
    );
    settle(&mut app, &ws, cmd);
    assert!(app.dialog.is_none());
    assert!(ws.exists("my-root"));
    assert_eq!(app.pki.selected_name().as_deref(), Some("my-root"));
    assert_eq!(ws.load("my-root").unwrap().meta.kind, Kind::Root);
}

#[test]
fn rsa_4096_request_returns_at_once() {
    let (_d, ws) = ws();
    let mut app = app_on(&ws);
    app.update(ch('n'));
    typed(&mut app, "big");
    app.update(key(KeyCode::Down)); // Key
    for _ in 0..4 {
        app.update(key(KeyCode::Right));
    }
    let cmd = app.update(key(KeyCode::Enter));
    let Some(Command::Create(CreateRequest::Ca(req))) = &cmd else {
        panic!("{cmd:?}")
    };
    assert_eq!(req.key, KeyAlg::Rsa4096);
    // While it runs, the UI still takes keys: help opens and closes.
    app.update(ch('x'));
    assert!(matches!(app.dialog, Some(Dialog::New(_))));
    assert!(app.busy());
}

#[test]
fn intermediate_and_device_forms_default_to_the_selected_ca() {
    let (_d, ws) = ws();
    new_ca(&ws, "r", None);
    new_ca(&ws, "i", Some("r"));
    let mut app = app_on(&ws);
    app.update(key(KeyCode::Down)); // select "i"
    app.update(ch('n'));
    let Some(Dialog::New(form)) = &app.dialog else {
        panic!()
    };
    assert_eq!(
        form.kind,
        NewKind::Device,
        "with a CA selected, n starts a device under it"
    );
    assert_eq!(form.cas[form.issuer], "i");
    typed(&mut app, "dev1");
    let cmd = app.update(key(KeyCode::Enter));
    let Some(Command::Create(CreateRequest::Devices(req))) = &cmd else {
        panic!()
    };
    assert_eq!(req.issuer.as_deref(), Some("i"));
    settle(&mut app, &ws, cmd);
    assert_eq!(ws.load("dev1").unwrap().meta.issuer.as_deref(), Some("i"));
    // An intermediate: Up to the kind, Left from device to intermediate.
    app.update(key(KeyCode::Home)); // the root: "i" has pathlen 0 and cannot issue CAs
    app.update(ch('n'));
    app.update(key(KeyCode::Up));
    app.update(key(KeyCode::Left));
    let Some(Dialog::New(form)) = &app.dialog else {
        panic!()
    };
    assert_eq!(form.kind, NewKind::Intermediate);
    app.update(key(KeyCode::Down));
    typed(&mut app, "i2");
    let cmd = app.update(key(KeyCode::Enter));
    settle(&mut app, &ws, cmd);
    let m = ws.load("i2").unwrap().meta;
    assert_eq!(m.kind, Kind::Intermediate);
    assert_eq!(m.issuer.as_deref(), Some("r"));
}

/// The form's inline messages are the CLI's messages: both call the same checks.
#[test]
fn form_validation_says_what_the_cli_says() {
    let (d, ws) = ws();
    new_ca(&ws, "r", None);
    let mut app = app_on(&ws);
    app.update(ch('n'));
    typed(&mut app, "dev 01");
    let Some(Dialog::New(form)) = &app.dialog else {
        panic!()
    };
    let tui_error = form.error.clone().expect("inline error");
    let out = Proc::new(env!("CARGO_BIN_EXE_chainsmith"))
        .args(["--workspace"])
        .arg(d.path().join("ws"))
        .args(["new", "device", "dev 01", "--issuer", "r"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let cli = String::from_utf8_lossy(&out.stderr);
    assert_eq!(cli.trim(), format!("error: {tui_error}"));
    // Enter does not submit an invalid form.
    assert!(app.update(key(KeyCode::Enter)).is_none());

    // Days: the same rule as --days 0.
    app.update(key(KeyCode::Esc));
    app.update(ch('n'));
    typed(&mut app, "x");
    for _ in 0..3 {
        app.update(key(KeyCode::Down));
    }
    for _ in 0..4 {
        app.update(key(KeyCode::Backspace));
    }
    app.update(ch('0'));
    let Some(Dialog::New(form)) = &app.dialog else {
        panic!()
    };
    let out = Proc::new(env!("CARGO_BIN_EXE_chainsmith"))
        .args(["--workspace"])
        .arg(d.path().join("ws"))
        .args(["new", "device", "x", "--issuer", "r", "--days", "0"])
        .output()
        .unwrap();
    // The engine says what is wrong and the fix in domain words; each face adds its own hint:
    // the CLI names the flag, the TUI the field.
    let engine = ValidityArg::days(0)
        .resolve(
            &chainsmith::pki::Profile::Verification,
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap_err()
        .to_string();
    assert!(!engine.contains("--"), "{engine}");
    let cli = String::from_utf8_lossy(&out.stderr);
    let tui = form.error.clone().unwrap();
    assert!(
        cli.trim().starts_with(&format!("error: {engine} (")),
        "{cli}"
    );
    assert!(cli.contains("--days"), "{cli}");
    assert!(tui.starts_with(&format!("{engine} (")), "{tui}");
    assert!(tui.contains("Days field") && !tui.contains("--"), "{tui}");
}

#[test]
fn engine_errors_stay_in_the_form() {
    let (_d, ws) = ws();
    new_ca(&ws, "r", None);
    let mut app = app_on(&ws);
    app.update(key(KeyCode::Home));
    app.update(ch('n'));
    app.update(key(KeyCode::Up));
    app.update(key(KeyCode::Left));
    app.update(key(KeyCode::Left));
    app.update(key(KeyCode::Left)); // device -> intermediate -> root
    app.update(key(KeyCode::Down));
    typed(&mut app, "r");
    let cmd = app.update(key(KeyCode::Enter));
    settle(&mut app, &ws, cmd);
    let Some(Dialog::New(form)) = &app.dialog else {
        panic!("the form stays open")
    };
    let e = form.error.clone().unwrap();
    assert!(
        e.contains("already exists") && e.contains("\"r\"") || e.contains("r"),
        "{e}"
    );
}

#[test]
fn verification_certificate_for_a_code_verifies_with_openssl_and_copies() {
    let (_d, ws) = ws();
    new_ca(&ws, "r", None);
    let mut app = app_on(&ws);
    let code = "75B86466DA34D2B04C0C4C9557A119687ADAE7D4732BDDB3";
    app.update(ch('v'));
    assert!(matches!(app.dialog, Some(Dialog::Verify(_))));
    app.update(Action::Paste(format!(" {code}\n")));
    let cmd = app.update(key(KeyCode::Enter));
    let Some(Command::MakeVerification {
        issuer,
        code: c,
        out,
    }) = &cmd
    else {
        panic!("{cmd:?}")
    };
    assert_eq!(issuer, "r");
    assert_eq!(c, code);
    let out = out.clone();
    settle(&mut app, &ws, cmd);
    let Some(Dialog::Verify(v)) = &app.dialog else {
        panic!()
    };
    let res = v.result.as_ref().expect("result shown");
    assert_eq!(res.path, out);
    assert!(res.pem.starts_with("-----BEGIN CERTIFICATE-----"));
    // openssl, as an independent checker: CN = code, signed by the root.
    let root_pem = ws.dir_of("r").unwrap().join("cert.pem");
    let v = Proc::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&root_pem)
        .arg(&out)
        .output()
        .unwrap();
    chainsmith_test_support::process::assert_success(&v);
    let s = Proc::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&s.stdout).contains(code));
    // y copies the PEM with OSC 52.
    let c = app.update(ch('y'));
    let Some(Command::Copy(text)) = c else {
        panic!()
    };
    assert_eq!(text, res_pem(&app));
    let osc = chainsmith::tui::osc52(&text);
    assert!(osc.starts_with("\x1b]52;c;") && osc.ends_with('\x07'));
    use base64::Engine;
    let b64 = &osc[7..osc.len() - 1];
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        text.as_bytes()
    );
    assert!(
        app.pki
            .rows
            .iter()
            .any(|r| r.meta.kind == Kind::Verification),
        "the tree shows the verification certificate"
    );
}

fn res_pem(app: &App) -> String {
    match &app.dialog {
        Some(Dialog::Verify(v)) => v.result.as_ref().unwrap().pem.clone(),
        _ => panic!(),
    }
}

#[test]
fn v_on_a_device_explains_and_bad_codes_are_refused_inline() {
    let (_d, ws) = ws();
    new_ca(&ws, "r", None);
    devices(&ws, "d1", "r");
    let mut app = app_on(&ws);
    app.update(key(KeyCode::End));
    app.update(ch('v'));
    assert!(app.dialog.is_none());
    assert!(
        app.status
            .as_ref()
            .unwrap()
            .1
            .contains("\"d1\" is a device")
    );
    app.update(key(KeyCode::Home));
    app.update(ch('v'));
    typed(&mut app, "has space");
    let Some(Dialog::Verify(v)) = &app.dialog else {
        panic!()
    };
    let expected = chainsmith::pki::identity::check_verification_code("has space")
        .unwrap_err()
        .to_string();
    assert_eq!(v.error.as_deref(), Some(expected.as_str()));
    assert!(app.update(key(KeyCode::Enter)).is_none());
}

#[test]
fn delete_asks_then_removes() {
    let (_d, ws) = ws();
    new_ca(&ws, "r", None);
    devices(&ws, "d1", "r");
    let mut app = app_on(&ws);
    app.update(key(KeyCode::End));
    app.update(ch('d'));
    assert!(matches!(&app.dialog, Some(Dialog::ConfirmDelete { name, .. }) if name == "d1"));
    app.update(ch('n'));
    assert!(app.dialog.is_none());
    assert!(ws.exists("d1"));
    app.update(ch('d'));
    let cmd = app.update(ch('y'));
    assert!(matches!(&cmd, Some(Command::Delete(n)) if n == "d1"));
    settle(&mut app, &ws, cmd);
    assert!(!ws.exists("d1"));
    assert_eq!(app.pki.rows.len(), 1);
    // Deleting a CA warns about what it issued.
    devices(&ws, "d2", "r");
    let c = app.update(ch('1'));
    settle(&mut app, &ws, c);
    app.update(key(KeyCode::Home));
    app.update(ch('d'));
    assert!(matches!(
        &app.dialog,
        Some(Dialog::ConfirmDelete { children: 0, .. })
            | Some(Dialog::ConfirmDelete { children: 1, .. })
    ));
}

#[test]
fn a_burst_of_hub_events_is_handled_in_one_drain() {
    let (_d, ws) = ws();
    let mut app = app_on(&ws);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..1500 {
        tx.send(Action::Hub(hub::HubAction::Event(hub::LogLine {
            at: OffsetDateTime::UNIX_EPOCH,
            kind: hub::LogKind::Telemetry,
            device: "dev1".into(),
            text: format!("message {i}"),
        })))
        .unwrap();
    }
    let first = rx.try_recv().unwrap();
    chainsmith::tui::drain(&mut app, first, &mut rx);
    assert!(
        rx.try_recv().is_err(),
        "one drain (one frame) takes the whole burst"
    );
    assert_eq!(app.hub.log.len(), hub::LOG_CAP);
    assert_eq!(app.hub.dropped, 500);
    assert_eq!(app.hub.log.back().unwrap().text, "message 1499");
}

#[test]
fn hub_keys_start_stop_and_prove_through_commands() {
    let (_d, ws) = ws();
    new_ca(&ws, "r", None);
    devices(&ws, "d1", "r");
    let mut app = app_on(&ws);
    // Entering the tab reads the hub registry (empty: no CA yet).
    let c = app.update(ch('2'));
    assert!(matches!(c, Some(Command::HubRegistry)));
    settle(&mut app, &ws, c);
    assert!(app.hub.cas.is_empty() && app.hub.error.is_none());
    // Port choice, checked.
    app.update(ch('p'));
    app.update(key(KeyCode::Backspace));
    typed(&mut app, "99999");
    app.update(key(KeyCode::Enter));
    assert!(
        matches!(&app.dialog, Some(Dialog::Form(f)) if f.error.as_deref().unwrap().contains("0 to 65535"))
    );
    app.update(key(KeyCode::Esc));
    app.update(ch('p'));
    for _ in 0..5 {
        app.update(key(KeyCode::Backspace));
    }
    typed(&mut app, "18883");
    app.update(key(KeyCode::Enter));
    assert!(app.dialog.is_none());
    assert_eq!(app.hub.port, 18883);
    // s asks the loop to start the hub on that port; a second s while starting does nothing.
    assert!(matches!(
        app.update(ch('s')),
        Some(Command::StartHub { port: 18883 })
    ));
    assert!(app.update(ch('s')).is_none());
    // Started: the registry is read again.
    let c = app.update(Action::Hub(hub::HubAction::Started { port: 18883 }));
    assert!(matches!(c, Some(Command::HubRegistry)));
    assert_eq!(app.hub.running, Some(18883));
    assert!(matches!(app.update(ch('s')), Some(Command::StopHub)));
    app.update(Action::Hub(hub::HubAction::Stopped));
    assert!(app.hub.running.is_none());
    // v with a device selected says what it needs; with the root selected it runs the whole
    // proof of possession against the hub registry.
    app.update(ch('1'));
    app.update(key(KeyCode::End));
    app.update(ch('2'));
    assert!(app.update(ch('v')).is_none());
    assert!(app.status.as_ref().unwrap().1.contains("select a root"));
    let c = app.update(ch('a'));
    assert!(matches!(&c, Some(Command::HubRegister { device }) if device == "d1"));
    settle(&mut app, &ws, c);
    assert_eq!(app.hub.devices.len(), 1);
    assert!(app.hub.devices[0].enabled);
    assert_eq!(app.hub.devices[0].auth, "X.509 CA signed");
    let c = app.update(ch('o'));
    assert!(matches!(
        &c,
        Some(Command::HubEnable { enabled: false, .. })
    ));
    settle(&mut app, &ws, c);
    assert!(!app.hub.devices[0].enabled);
    app.update(ch('1'));
    app.update(key(KeyCode::Home));
    app.update(ch('2'));
    let c = app.update(ch('v'));
    assert!(matches!(&c, Some(Command::HubProve { ca }) if ca == "r"));
    assert!(app.hub.proving);
    settle(&mut app, &ws, c);
    assert!(!app.hub.proving);
    assert_eq!(app.hub.cas.len(), 1);
    assert!(
        app.hub.cas[0].verified,
        "{:?} {:?}",
        app.hub.proof, app.hub.error
    );
    assert!(app.hub.proof.iter().any(|p| p.contains("added CA")));
    assert!(
        app.hub
            .proof
            .iter()
            .any(|p| p.contains("hub verification code"))
    );
    assert!(app.hub.proof.last().unwrap().contains("Verified"));
    // The hub's own registry agrees (the same file the CLI reads).
    let reg = chainsmith::hub::HubStore::open(ws.root())
        .unwrap()
        .load()
        .unwrap();
    assert!(reg.cas[0].verified);
    // Proving again says so instead of failing.
    let c = app.update(ch('v'));
    settle(&mut app, &ws, c);
    assert!(app.hub.proof[0].contains("already Verified"));
    // While the tab is shown the registry is re-read every few seconds (CLI changes show).
    let later = app.now + time::Duration::seconds(4);
    assert!(matches!(
        app.update(Action::Tick(later)),
        Some(Command::HubRegistry)
    ));
    assert!(app.update(Action::Tick(later)).is_none());
    // Quit asks while the hub runs.
    app.update(Action::Hub(hub::HubAction::Started { port: 18883 }));
    app.update(ch('q'));
    assert!(!app.quit);
    app.update(ch('q'));
    assert!(app.quit);
}

#[test]
fn connect_runs_one_test_at_a_time_and_fills_state_from_engine_events() {
    use chainsmith::mqtt::{Event, RoundTripKind, Summary};
    use chainsmith::tui::connect::{ConnectAction, ConnectTarget};
    let (_d, ws) = ws();
    new_ca(&ws, "r", None);
    devices(&ws, "d1", "r");
    let mut app = app_on(&ws);
    app.update(ch('3'));
    assert!(app.update(key(KeyCode::Enter)).is_none());
    assert!(app.status.as_ref().unwrap().1.contains("select a device"));
    app.update(ch('1'));
    app.update(key(KeyCode::End));
    app.update(ch('c'));
    assert_eq!(app.tab, Tab::Connect);
    // Target typed in, checked with the CLI's parser.
    app.update(ch('t'));
    for _ in 0..5 {
        app.update(key(KeyCode::Backspace));
    }
    typed(&mut app, "mqtt://h:1883");
    app.update(key(KeyCode::Enter));
    assert!(
        matches!(&app.dialog, Some(Dialog::Form(f)) if f.error.as_deref().unwrap().contains("mqtts://"))
    );
    for _ in 0..13 {
        app.update(key(KeyCode::Backspace));
    }
    typed(&mut app, "mqtts://127.0.0.1:18884");
    app.update(key(KeyCode::Enter));
    assert_eq!(
        app.connect.target,
        ConnectTarget::Broker("mqtts://127.0.0.1:18884".into())
    );
    retype_target(&mut app, "myhub.azure-devices.net");
    assert_eq!(
        app.connect.target,
        ConnectTarget::AzureHub("myhub.azure-devices.net".into())
    );
    retype_target(&mut app, "local");
    assert_eq!(app.connect.target, ConnectTarget::LocalHub);
    let c = app.update(key(KeyCode::Enter));
    assert!(
        matches!(&c, Some(Command::RunTest { device, target: ConnectTarget::LocalHub, .. }) if device == "d1")
    );
    assert!(app.connect.running);
    assert!(app.update(key(KeyCode::Enter)).is_none(), "one at a time");
    assert!(app.status.as_ref().unwrap().1.contains("one at a time"));
    let ev = |e: Event| Action::Connect(ConnectAction::Engine(Box::new(e)));
    app.update(ev(Event::TcpConnected {
        ms: 0.4,
        address: "127.0.0.1:1".into(),
    }));
    for i in 1..=3u32 {
        app.update(ev(Event::Published {
            message_id: i,
            topic: "t".into(),
            payload: "{}".into(),
            temperature_alert: false,
            ack_ms: Some(1.5),
        }));
        app.update(ev(Event::RoundTrip {
            message_id: i,
            kind: RoundTripKind::C2d,
            ms: 2.5,
            detail: String::new(),
        }));
    }
    assert_eq!(
        (app.connect.sent, app.connect.acked, app.connect.rt_seen),
        (3, 3, 3)
    );
    assert_eq!(app.connect.round_trips, vec![2500, 2500, 2500]);
    assert!(app.connect.log.iter().any(|l| l.contains("c2d round trip")));
    assert_eq!(app.connect.steps[0].name, "TCP connect");
    app.update(ev(Event::Summary(Summary {
        ok: true,
        sent: 3,
        acked: 3,
        round_trips_expected: 3,
        round_trips_seen: 3,
        ..Default::default()
    })));
    assert!(!app.connect.running);
    assert_eq!(app.connect.passed.as_deref(), Some("d1"));
    // A failure fills the diagnosis box; a test that cannot start says why.
    let c = app.update(key(KeyCode::Enter));
    assert!(c.is_some());
    assert!(
        app.connect.steps.is_empty() && app.connect.sent == 0,
        "a new test starts clean"
    );
    app.update(Action::Connect(ConnectAction::Ended(Err(
        "starting the local hub: cannot listen".into(),
    ))));
    assert!(!app.connect.running);
    assert!(
        app.connect
            .diagnosis
            .as_deref()
            .unwrap()
            .contains("cannot listen")
    );
}

#[test]
fn export_renew_revoke_import_dialogs_run_the_engine() {
    let (d, ws) = ws();
    new_ca(&ws, "r", None);
    devices(&ws, "d1", "r");
    let mut app = app_on(&ws);
    app.update(key(KeyCode::End));
    // e: PFX needs a password; typed masked; files listed.
    app.update(ch('e'));
    let Some(Dialog::Form(f)) = &app.dialog else {
        panic!("export form")
    };
    assert_eq!(f.title, "Export d1");
    app.update(key(KeyCode::Right));
    app.update(key(KeyCode::Right));
    app.update(ch(' ')); // pfx
    assert!(app.update(key(KeyCode::Enter)).is_none());
    assert!(
        matches!(&app.dialog, Some(Dialog::Form(f)) if f.error.as_deref().unwrap().contains("password"))
    );
    app.update(key(KeyCode::Tab));
    typed(&mut app, "s3cret");
    let Some(Dialog::Form(f)) = &app.dialog else {
        panic!()
    };
    assert_eq!(f.fields[1].shown(), "••••••");
    app.update(key(KeyCode::Tab));
    for _ in 0..300 {
        app.update(key(KeyCode::Backspace));
    }
    let out = d.path().join("out");
    typed(&mut app, out.to_str().unwrap());
    let c = app.update(key(KeyCode::Enter));
    assert!(matches!(&c, Some(Command::Export { name, .. }) if name == "d1"));
    settle(&mut app, &ws, c);
    let Some(Dialog::Form(f)) = &app.dialog else {
        panic!()
    };
    let res = f.result.as_ref().expect("files listed");
    assert!(res.iter().any(|l| l.contains("d1.pfx")), "{res:?}");
    assert!(out.join("d1.pfx").exists() && out.join("d1.cert.pem").exists());
    // The PFX opens with the password (openssl as the oracle).
    let o = Proc::new("openssl")
        .args(["pkcs12", "-in"])
        .arg(out.join("d1.pfx"))
        .args(["-passin", "pass:s3cret", "-nokeys"])
        .output()
        .unwrap();
    chainsmith_test_support::process::assert_success(&o);
    app.update(key(KeyCode::Esc));
    assert!(app.dialog.is_none());
    // r renews: new serial, old one in the history.
    let before = ws.load("d1").unwrap().meta.serial;
    app.update(ch('r'));
    let c = app.update(key(KeyCode::Enter));
    assert!(matches!(&c, Some(Command::Renew(r)) if r.name == "d1" && !r.rekey));
    settle(&mut app, &ws, c);
    assert_ne!(ws.load("d1").unwrap().meta.serial, before);
    assert_eq!(ops::lifecycle::history(&ws, "d1").unwrap().len(), 1);
    app.update(key(KeyCode::Esc));
    // x revokes with the Azure-ignores-CRLs note shown before and after.
    app.update(ch('x'));
    let Some(Dialog::Form(f)) = &app.dialog else {
        panic!()
    };
    assert!(f.note.as_deref().unwrap().contains("does not check CRLs"));
    app.update(key(KeyCode::Right));
    let c = app.update(key(KeyCode::Enter));
    assert!(matches!(&c, Some(Command::Revoke { reason, .. }) if reason == "key-compromise"));
    settle(&mut app, &ws, c);
    assert!(ws.load("d1").unwrap().meta.revoked.is_some());
    let Some(Dialog::Form(f)) = &app.dialog else {
        panic!()
    };
    assert!(f.result.as_ref().unwrap()[0].contains("does not check CRLs"));
    app.update(key(KeyCode::Esc));
    // i imports the exported PFX under a new name.
    app.update(ch('i'));
    typed(&mut app, out.join("d1.pfx").to_str().unwrap());
    app.update(key(KeyCode::Tab));
    app.update(key(KeyCode::Tab));
    typed(&mut app, "d1-copy");
    app.update(key(KeyCode::Tab));
    typed(&mut app, "wrong");
    let c = app.update(key(KeyCode::Enter));
    settle(&mut app, &ws, c);
    let Some(Dialog::Form(f)) = &app.dialog else {
        panic!()
    };
    assert!(f.error.is_some(), "a wrong password is an error");
    for _ in 0..5 {
        app.update(key(KeyCode::Backspace));
    }
    typed(&mut app, "s3cret");
    let c = app.update(key(KeyCode::Enter));
    settle(&mut app, &ws, c);
    let Some(Dialog::Form(f)) = &app.dialog else {
        panic!()
    };
    assert!(f.error.is_none(), "{:?}", f.error);
    assert!(f.result.as_ref().unwrap()[0].contains("d1-copy"));
    assert!(ws.load("d1-copy").unwrap().meta.has_key);
}

#[test]
fn guide_steps_check_the_real_workspace() {
    use chainsmith::tui::guide::{STEPS, StepStatus, facts_from_disk, status};
    let (_d, ws) = ws();
    let rows = |ws: &Workspace| ops::tree(ws.list().unwrap().0, OffsetDateTime::now_utc());
    let st = |ws: &Workspace, id: &str| {
        let r = rows(ws);
        let facts = facts_from_disk(ws, &r);
        status(STEPS.iter().find(|s| s.id == id).unwrap(), &r, &facts)
    };
    assert_eq!(st(&ws, "root"), StepStatus::Todo);
    new_ca(&ws, "r", None);
    assert!(matches!(st(&ws, "root"), StepStatus::Done(_)));
    assert_eq!(st(&ws, "intermediate"), StepStatus::Todo);
    new_ca(&ws, "i", Some("r"));
    assert!(matches!(st(&ws, "intermediate"), StepStatus::Done(_)));
    assert_eq!(st(&ws, "verify"), StepStatus::Todo);
    let out = ws.root().join("v.pem");
    ops::new_verification(&ws, "i", "ABC123", &out, None, false).unwrap();
    assert!(matches!(st(&ws, "verify"), StepStatus::Done(d) if d.contains("ABC123")));
    assert_eq!(st(&ws, "device"), StepStatus::Todo);
    devices(&ws, "dev1", "i");
    assert!(matches!(st(&ws, "device"), StepStatus::Done(_)));
    // Hub steps read the hub registry.
    for id in ["hub-ca", "register", "connect", "renew", "disable"] {
        assert_eq!(st(&ws, id), StepStatus::Todo, "{id}");
    }
    let store = chainsmith::hub::HubStore::open(ws.root()).unwrap();
    store.add_ca("i", false).unwrap();
    assert!(matches!(st(&ws, "hub-ca"), StepStatus::Done(d) if d.contains("Unverified")));
    chainsmith::tui::hub_prove(&ws, "i").unwrap();
    assert!(
        matches!(st(&ws, "verify"), StepStatus::Done(d) if d.contains("Verified in the local hub"))
    );
    store
        .add_device("dev1", chainsmith::hub::Auth::Ca, None, None, None)
        .unwrap();
    assert!(matches!(st(&ws, "register"), StepStatus::Done(_)));
    ops::lifecycle::renew(
        &ws,
        &ops::lifecycle::RenewRequest {
            name: "dev1".into(),
            ..Default::default()
        },
        &chainsmith::hub::HubStore::new(ws.clone()),
    )
    .unwrap();
    assert!(matches!(st(&ws, "renew"), StepStatus::Done(d) if d.contains("dev1")));
    assert_eq!(st(&ws, "disable"), StepStatus::Todo);
    store.set_enabled("dev1", false).unwrap();
    assert!(matches!(st(&ws, "disable"), StepStatus::Done(_)));
    // "connect" needs a passed test: the TUI's own state.
    assert_eq!(st(&ws, "connect"), StepStatus::Todo);
    // Every lesson has its what-and-why and both command sets.
    for s in &STEPS {
        let l = s.lesson();
        assert!(!l.title.is_empty() && l.why.len() > 80, "{}", s.id);
        assert!(
            !l.openssl.is_empty() && l.az.contains("az") || l.az.starts_with('#'),
            "{}",
            s.id
        );
    }
}

#[test]
fn guide_tick_rereads_the_workspace_so_cli_changes_show() {
    let (_d, ws) = ws();
    let mut app = app_on(&ws);
    let c = app.update(ch('g'));
    settle(&mut app, &ws, c);
    new_ca(&ws, "made-elsewhere", None);
    let later = app.now + time::Duration::seconds(5);
    let c = app.update(Action::Tick(later));
    assert!(matches!(c, Some(Command::LoadList)));
    settle(&mut app, &ws, c);
    assert_eq!(app.pki.rows.len(), 1);
}

#[test]
fn guide_text_subcommand_prints_steps_with_status() {
    let (d, ws) = ws();
    new_ca(&ws, "r", None);
    let out = Proc::new(env!("CARGO_BIN_EXE_chainsmith"))
        .arg("--workspace")
        .arg(d.path().join("ws"))
        .args(["guide", "--text"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("✓ 1. Make a root CA (done: root \"r\")"), "{s}");
    assert!(s.contains("· 2. Make an intermediate CA (to do)"), "{s}");
    assert!(s.contains("az iot hub certificate verify"), "{s}");
    assert!(s.contains("· 3. "), "{s}");
}

#[test]
fn guide_text_central_prints_the_dps_track_with_status() {
    let (d, ws) = ws();
    new_ca(&ws, "mytestrootcert", None);
    chainsmith::hub::dps_prove(
        &chainsmith::hub::HubStore::open(ws.root()).unwrap(),
        "mytestrootcert",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Proc::new(env!("CARGO_BIN_EXE_chainsmith"))
            .arg("--workspace")
            .arg(d.path().join("ws"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let s = run(&["guide", "--text", "--central"]);
    assert!(s.contains("✓ 3. Prove possession of the CA to DPS (done: CA \"mytestrootcert\" is Verified in DPS)"), "{s}");
    assert!(
        s.contains("· 4. Create the enrollment group (to do)"),
        "{s}"
    );
    assert!(
        s.contains("   chainsmith:\n") && s.contains("az iot dps enrollment-group create"),
        "{s}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&run(&["--json", "guide", "--central"])).unwrap();
    assert_eq!(j["steps"].as_array().unwrap().len(), 11);
    assert_eq!(j["steps"][2]["status"], "done");
    assert_eq!(j["steps"][2]["tool"], "chainsmith");
}

#[test]
fn no_arguments_without_a_terminal_explains_instead_of_printing_garbage() {
    let (d, _ws) = ws();
    let out = Proc::new(env!("CARGO_BIN_EXE_chainsmith"))
        .arg("--workspace")
        .arg(d.path().join("ws"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the TUI needs a terminal"));
}

#[test]
fn the_tree_is_read_through_the_workspace_index_and_sees_what_changed_behind_its_back() {
    let (_d, ws) = ws();
    new_ca(&ws, "r", None);
    devices(&ws, "d-{1..50}", "r");
    assert!(ws.root().join(chainsmith::store::INDEX_FILE).is_file());
    assert_eq!(app_on(&ws).pki.rows.len(), 51);
    // Something changes behind the TUI's back (a shell in another terminal).
    std::fs::remove_dir_all(ws.entities_dir().join("d-7")).unwrap();
    let app = app_on(&ws);
    assert_eq!(app.pki.rows.len(), 50);
    assert!(!app.pki.rows.iter().any(|r| r.meta.name == "d-7"));
}

#[test]
fn closing_the_form_while_the_key_is_generated_still_reports_the_result() {
    let (_d, ws) = ws();
    let mut app = app_on(&ws);
    app.update(ch('n'));
    typed(&mut app, "r1");
    let cmd = app.update(key(KeyCode::Enter));
    app.update(key(KeyCode::Esc));
    assert!(app.dialog.is_none());
    settle(&mut app, &ws, cmd);
    assert!(ws.exists("r1"));
    assert_eq!(app.status.as_ref().unwrap().1, "created r1");
    assert_eq!(app.pki.rows.len(), 1);
}

#[test]
fn hub_events_become_log_lines_with_the_exact_refusal_reason() {
    use chainsmith::hub::HubEvent;
    let at = OffsetDateTime::now_utc();
    let e = HubEvent::Refused {
        peer: "127.0.0.1:5000".parse().unwrap(),
        device: Some("d1".into()),
        kind: "device-disabled".into(),
        reason: "device \"d1\" is disabled in the registry".into(),
    };
    let l = hub::log_line(&e, at);
    assert_eq!(l.kind, hub::LogKind::Refused);
    assert_eq!(l.device, "d1");
    assert!(
        l.text
            .contains("CONNACK 5 not authorized: device \"d1\" is disabled"),
        "{}",
        l.text
    );
    let e = HubEvent::C2d {
        device: "d1".into(),
        message_id: "m1".into(),
        delivered: true,
    };
    let l = hub::log_line(&e, at);
    assert_eq!(
        (l.kind, l.text.as_str()),
        (hub::LogKind::C2d, "c2d m1 delivered")
    );
    // A burst arrives as one action and lands in one update.
    let mut app = App::new("/nonexistent".into(), Theme::plain(), at, (80, 24));
    let burst: Vec<_> = (0..1000)
        .map(|i| hub::LogLine {
            at,
            kind: hub::LogKind::Telemetry,
            device: "d1".into(),
            text: format!("m{i}"),
        })
        .collect();
    app.update(Action::Hub(hub::HubAction::Events(burst)));
    assert_eq!(app.hub.log.len(), 1000);
    // A registry error does not stop a running hub.
    app.update(Action::Hub(hub::HubAction::Started { port: 1 }));
    app.update(Action::Hub(hub::HubAction::Error(
        "registry damaged".into(),
    )));
    assert_eq!(app.hub.running, Some(1));
    assert_eq!(app.hub.error.as_deref(), Some("registry damaged"));
}

/// `t` on the Connect tab, clear the field, type a new target, Enter.
fn retype_target(app: &mut App, target: &str) {
    app.update(ch('t'));
    for _ in 0..30 {
        app.update(key(KeyCode::Backspace));
    }
    typed(app, target);
    app.update(key(KeyCode::Enter));
}

/// The TUI creates devices through the same engine call as `new device`: a second request with
/// a slot for an existing self-signed device fills its other thumbprint slot (as
/// export_lifecycle::self_signed_device_holds_both_thumbprint_slots does through the CLI)
/// instead of refusing the taken name.
#[test]
fn create_fills_the_other_slot_of_a_self_signed_device_like_the_cli() {
    use chainsmith::store::Slot;
    let (_d, ws) = ws();
    let create = |slot: Slot| {
        Command::Create(CreateRequest::Devices(DeviceRequest {
            ids: vec!["thermo-1".into()],
            slot: Some(slot),
            ..Default::default()
        }))
    };
    for slot in [Slot::Primary, Slot::Secondary] {
        match perform(&ws, create(slot)) {
            Some(Action::Created(Ok(c))) => assert_eq!(c.entities.len(), 1),
            other => panic!("the {slot:?} slot was not created: {other:?}"),
        }
    }
    let slots = ops::lifecycle::slots(&ws, "thermo-1").unwrap();
    assert_eq!(
        slots.iter().map(|s| s.slot).collect::<Vec<_>>(),
        [Slot::Primary, Slot::Secondary]
    );
    assert_ne!(slots[0].sha1, slots[1].sha1);
    // A taken slot is refused, as on the CLI, and names the slot.
    match perform(&ws, create(Slot::Secondary)) {
        Some(Action::Created(Err(e))) => assert!(e.contains("secondary slot"), "{e}"),
        other => panic!("a taken slot was accepted: {other:?}"),
    }
}

/// The Hub tab's DPS keys: G adds a group from the PKI-selected CA (proving it to DPS first),
/// V proves only, e enrolls the selected device; each runs as a command and the tab shows
/// what DPS's own file (the one `chainsmith hub dps` reads) now holds.
#[test]
fn dps_keys_add_a_group_prove_and_enroll() {
    let (_d, ws) = ws();
    new_ca(&ws, "r", None);
    new_ca(&ws, "r2", None);
    devices(&ws, "d1", "r");
    let mut app = app_on(&ws);
    let c = app.update(ch('2'));
    settle(&mut app, &ws, c);
    assert!(app.hub.dps.as_ref().is_some_and(|d| d.groups.is_empty()));
    // A device selected: G and V say what they need and run nothing.
    pick(&mut app, "d1");
    assert!(app.update(ch('G')).is_none());
    assert!(app.status.as_ref().unwrap().1.contains("select a root"));
    assert!(app.update(ch('V')).is_none());
    // e enrolls the selected device individually, by its certificate's thumbprint.
    let c = app.update(ch('e'));
    assert!(matches!(&c, Some(Command::DpsEnroll { device }) if device == "d1"));
    assert!(app.hub.dps_busy);
    // One DPS job at a time.
    assert!(app.update(ch('e')).is_none());
    settle(&mut app, &ws, c);
    assert!(!app.hub.dps_busy);
    let dps = app.hub.dps.as_ref().unwrap();
    assert_eq!(dps.individuals.len(), 1);
    assert_eq!(dps.individuals[0].registration_id, "d1");
    assert!(dps.individuals[0].primary.is_some());
    // G on the root: DPS's proof of possession first (the CA is not in DPS yet), then the group.
    pick(&mut app, "r");
    let c = app.update(ch('G'));
    assert!(matches!(&c, Some(Command::DpsGroup { ca }) if ca == "r"));
    settle(&mut app, &ws, c);
    let dps = app.hub.dps.as_ref().unwrap();
    assert!(!dps.id_scope.is_empty());
    assert_eq!(dps.cas.len(), 1);
    assert!(dps.cas[0].verified, "{:?}", app.hub.error);
    assert_eq!(dps.groups.len(), 1);
    assert_eq!(
        (dps.groups[0].name.as_str(), dps.groups[0].primary.as_str()),
        ("r", "r")
    );
    let log: Vec<&str> = app.hub.log.iter().map(|l| l.text.as_str()).collect();
    assert!(
        log.iter().any(|l| l.contains("DPS verification code")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("added enrollment group \"r\"")),
        "{log:?}"
    );
    // The hub's own CA list is untouched: DPS keeps its own.
    let store = chainsmith::hub::HubStore::open(ws.root()).unwrap();
    assert!(store.load().unwrap().cas.is_empty());
    assert_eq!(store.dps_load().unwrap().groups.len(), 1);
    // G again leaves the group as it is.
    let c = app.update(ch('G'));
    settle(&mut app, &ws, c);
    assert!(
        app.hub
            .log
            .back()
            .unwrap()
            .text
            .contains("already holds CA")
    );
    // V on another root proves it to DPS without a group.
    pick(&mut app, "r2");
    let sel = "r2".to_string();
    let c = app.update(ch('V'));
    assert!(matches!(&c, Some(Command::DpsProve { ca }) if *ca == sel));
    settle(&mut app, &ws, c);
    let dps = app.hub.dps.as_ref().unwrap();
    assert!(dps.cas.iter().any(|c| c.name == sel && c.verified));
    assert_eq!(dps.groups.len(), 1);
    // An engine refusal reaches the tab as an error, and the job is over.
    app.update(Action::Hub(hub::HubAction::DpsDone(Err(
        "no such CA".into()
    ))));
    assert_eq!(app.hub.error.as_deref(), Some("no such CA"));
    assert!(
        app.status
            .as_ref()
            .unwrap()
            .1
            .contains("DPS refused: no such CA")
    );
}

/// Select `name` in the PKI tree (as a click would) and come back to the Hub tab.
fn pick(app: &mut App, name: &str) {
    app.update(ch('1'));
    let pos = app
        .pki
        .visible
        .iter()
        .position(|&i| app.pki.rows[i].meta.name == name)
        .expect(name);
    app.pki.selected = pos;
    app.update(ch('2'));
}

/// The IoT Central track: `t` switches to it (and back), and each step ticks off from the
/// real state: workspace entities, `dps.json` through the engine, the connection test's result.
#[test]
fn guide_central_track_switches_with_t_and_checks_dps_state() {
    use chainsmith::tui::guide::{CENTRAL_STEPS, StepStatus, Track, status};
    let (_d, ws) = ws();
    let mut app = app_on(&ws);
    let c = app.update(ch('g'));
    settle(&mut app, &ws, c);
    assert_eq!(app.guide.track, Track::Hub);
    app.update(key(KeyCode::Down));
    assert_eq!(app.guide.selected, 1);
    app.update(ch('t'));
    assert_eq!(app.guide.track, Track::Central);
    assert_eq!(
        app.guide.selected, 0,
        "the other track starts at its first step"
    );
    for _ in 0..20 {
        app.update(key(KeyCode::Down));
    }
    assert_eq!(
        app.guide.selected,
        CENTRAL_STEPS.len() - 1,
        "↓ stops at the last step"
    );
    app.update(ch('t'));
    assert_eq!(app.guide.track, Track::Aws, "t goes on to the AWS track");
    app.update(ch('t'));
    assert_eq!(app.guide.track, Track::Hub, "and back to the first");
    app.update(ch('t'));

    // The app's own facts, as the Guide tab draws them: re-read on the tick, off the draw.
    let mut now = app.now;
    let mut st = |app: &mut App, id: &str| {
        now += time::Duration::seconds(10);
        let c = app.update(Action::Tick(now));
        settle(app, &ws, c);
        let c = app.update(Action::Tick(now + time::Duration::seconds(1)));
        settle(app, &ws, c);
        let step = CENTRAL_STEPS.iter().find(|s| s.id == id).unwrap();
        status(step, &app.pki.rows, &app.guide_facts())
    };
    let done = |s: StepStatus, want: &str| matches!(&s, StepStatus::Done(d) if d.contains(want));
    for s in &CENTRAL_STEPS {
        assert_eq!(st(&mut app, s.id), StepStatus::Todo, "{}", s.id);
    }

    // 1. Group enrollment.
    new_ca(&ws, "mytestrootcert", None);
    assert!(done(st(&mut app, "c-root"), "mytestrootcert"));
    devices(&ws, "not-the-guide-device", "mytestrootcert");
    assert_eq!(st(&mut app, "c-device"), StepStatus::Todo, "the guide's id");
    devices(&ws, "sample-device-01", "mytestrootcert");
    assert!(done(st(&mut app, "c-device"), "sample-device-01"));
    let store = chainsmith::hub::HubStore::open(ws.root()).unwrap();
    store.dps_add_ca("mytestrootcert", false).unwrap();
    assert_eq!(
        st(&mut app, "c-verify"),
        StepStatus::Todo,
        "added, not proved"
    );
    chainsmith::hub::dps_prove(&store, "mytestrootcert").unwrap();
    assert!(done(st(&mut app, "c-verify"), "Verified in DPS"));
    store
        .dps_add_group(chainsmith::hub::dps::Group {
            name: "MyX509Group".into(),
            primary: "mytestrootcert".into(),
            secondary: None,
            settings: chainsmith::hub::dps::EnrollmentSettings {
                edge: false,
                enabled: true,
                issue_from: None,
                allocation: Default::default(),
                added: store.ws.now(),
            },
        })
        .unwrap();
    assert!(done(st(&mut app, "c-group"), "MyX509Group"));
    let register = |regid: &str| {
        let chain = vec![ws.load(regid).unwrap().cert_der];
        let req = chainsmith::azure::dps::RegisterRequest {
            registration_id: regid.into(),
            payload: None,
            csr: None,
        };
        store
            .dps_register(
                regid,
                &chain,
                &req,
                "localhost",
                OffsetDateTime::now_utc(),
                &|_, _, _| {
                    Err(chainsmith::hub::dps::CsrRefusal {
                        kind: "test",
                        reason: "no issuance".into(),
                    })
                },
            )
            .unwrap();
    };
    register("not-the-guide-device");
    assert_eq!(
        st(&mut app, "c-provision"),
        StepStatus::Todo,
        "the guide's device"
    );
    register("sample-device-01");
    assert!(done(st(&mut app, "c-provision"), "group MyX509Group"));
    // Telemetry: the connection test of the provisioned device passed (the TUI's own state,
    // as for the first track's connect step).
    app.connect.passed = Some("dev-never-provisioned".into());
    assert_eq!(st(&mut app, "c-telemetry"), StepStatus::Todo);
    app.connect.passed = Some("sample-device-01".into());
    assert!(done(st(&mut app, "c-telemetry"), "provisioned by DPS"));

    // 2. Individual enrollment.
    let selfsigned = |id: &str| {
        ops::new_devices(
            &ws,
            &DeviceRequest {
                ids: vec![id.into()],
                ..Default::default()
            },
        )
        .unwrap();
    };
    selfsigned("mytestselfcertprimary");
    assert_eq!(st(&mut app, "c-selfsigned"), StepStatus::Todo, "both");
    selfsigned("mytestselfcertsecondary");
    assert!(done(
        st(&mut app, "c-selfsigned"),
        "mytestselfcertsecondary"
    ));
    let secondary = ws.load("mytestselfcertsecondary").unwrap().meta.sha256;
    store
        .dps_enroll(
            "mytestselfcertprimary",
            None,
            Some("mytestselfcertprimary"),
            None,
            Some(&secondary),
            false,
            None,
            Default::default(),
        )
        .unwrap();
    assert!(done(st(&mut app, "c-enroll"), "primary and secondary"));
    assert_eq!(st(&mut app, "c-individual"), StepStatus::Todo);
    register("mytestselfcertprimary");
    assert!(done(st(&mut app, "c-individual"), "mytestselfcertprimary"));

    // 3. Rolling the group's certificates.
    assert_eq!(st(&mut app, "c-secondary"), StepStatus::Todo);
    assert_eq!(st(&mut app, "c-roll"), StepStatus::Todo);
    new_ca(&ws, "mytestrootcert2", None);
    std::thread::sleep(std::time::Duration::from_millis(5));
    store.dps_add_ca("mytestrootcert2", false).unwrap();
    let group = |primary: &str, secondary: &str| {
        store
            .dps_add_group(chainsmith::hub::dps::Group {
                name: "MyX509Group".into(),
                primary: primary.into(),
                secondary: Some(secondary.into()),
                settings: chainsmith::hub::dps::EnrollmentSettings {
                    edge: false,
                    enabled: true,
                    issue_from: None,
                    allocation: Default::default(),
                    added: store.ws.now(),
                },
            })
            .unwrap();
    };
    group("mytestrootcert", "mytestrootcert2");
    assert_eq!(
        st(&mut app, "c-secondary"),
        StepStatus::Todo,
        "not verified yet"
    );
    chainsmith::hub::dps_prove(&store, "mytestrootcert2").unwrap();
    assert!(done(st(&mut app, "c-secondary"), "mytestrootcert2"));
    assert_eq!(
        st(&mut app, "c-roll"),
        StepStatus::Todo,
        "primary unchanged"
    );
    group("mytestrootcert2", "mytestrootcert");
    assert!(done(
        st(&mut app, "c-roll"),
        "rolled to primary CA \"mytestrootcert2\""
    ));

    // Every lesson has its what-and-why and both command sets.
    for s in &CENTRAL_STEPS {
        let l = s.lesson();
        assert!(!l.title.is_empty() && l.why.len() > 80, "{}", s.id);
        assert!(l.openssl.contains("chainsmith"), "{}", s.id);
        assert!(l.az.contains("az ") || l.az.starts_with('#'), "{}", s.id);
    }
}

/// A DPS error keeps the TUI's key: the engine says what is wrong in domain words, and the
/// TUI adds where to look (here DPS is asked to prove a CA the workspace does not have: the
/// PKI tab lists what it has).
#[test]
fn dps_errors_carry_the_tuis_key_hint() {
    let (_d, ws) = ws();
    let mut app = app_on(&ws);
    app.tab = Tab::Hub;
    let hint = "(the PKI tab lists them)";
    // The DPS command (V on the Hub tab) and the DPS state read after it.
    let mut actions = Vec::new();
    chainsmith::tui::perform_each(&ws, Command::DpsProve { ca: "r".into() }, &mut |a| {
        actions.push(a)
    });
    assert!(!actions.is_empty(), "{actions:?}");
    let done = actions.remove(0);
    assert!(
        matches!(&done, Action::Hub(hub::HubAction::DpsDone(Err(e))) if e.contains("\"r\"") && e.ends_with(hint)),
        "{done:?}"
    );
    app.update(done);
    let e = app.hub.error.clone().unwrap_or_default();
    assert!(e.ends_with(hint), "{e}");
}
