//! The TUI's state machine with no terminal: keys, mouse, background results go through
//! `App::update`; commands run synchronously with `tui::perform` against a real workspace.

use chainsmith::ops::{self, CaRequest, DeviceRequest, ValidityArg};
use chainsmith::pki::KeyAlg;
use chainsmith::store::{Kind, Workspace};
use chainsmith::tui::dialog::{Dialog, NewKind};
use chainsmith::tui::theme::Theme;
use chainsmith::tui::{Action, App, Command, CreateRequest, Tab, hub, perform, settle};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use std::process::Command as Proc;
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

fn root(ws: &Workspace, name: &str) {
    let req = CaRequest {
        name: name.into(),
        cn: None,
        subject: None,
        key: KeyAlg::EcP256,
        validity: ValidityArg::default(),
        pathlen: None,
        issuer: None,
        force: false,
    };
    ops::new_ca(ws, &req).unwrap();
}
fn intermediate(ws: &Workspace, name: &str, issuer: &str) {
    let req = CaRequest {
        name: name.into(),
        cn: None,
        subject: None,
        key: KeyAlg::EcP256,
        validity: ValidityArg::default(),
        pathlen: None,
        issuer: Some(issuer.into()),
        force: false,
    };
    ops::new_ca(ws, &req).unwrap();
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
    root(&ws, "r");
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
    root(&ws, "r");
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
    root(&ws, "r");
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
    root(&ws, "r");
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
    root(&ws, "r");
    intermediate(&ws, "i", "r");
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
    root(&ws, "r");
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
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        format!("error: {}", form.error.clone().unwrap())
    );
}

#[test]
fn engine_errors_stay_in_the_form() {
    let (_d, ws) = ws();
    root(&ws, "r");
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
    root(&ws, "r");
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
    let root_pem = ws.entity_dir("r").join("cert.pem");
    let v = Proc::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&root_pem)
        .arg(&out)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
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
    root(&ws, "r");
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
    root(&ws, "r");
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
fn hub_and_connect_say_they_are_not_in_this_build() {
    let (_d, ws) = ws();
    root(&ws, "r");
    devices(&ws, "d1", "r");
    let mut app = app_on(&ws);
    app.update(ch('2'));
    app.update(ch('s'));
    assert!(
        app.status
            .as_ref()
            .unwrap()
            .1
            .contains("not available in this build")
    );
    assert!(app.hub.running.is_none(), "no fake hub");
    app.update(ch('1'));
    app.update(key(KeyCode::End));
    app.update(ch('c'));
    assert_eq!(app.tab, Tab::Connect);
    assert_eq!(app.connect.device.as_deref(), Some("d1"));
    app.update(key(KeyCode::Enter));
    assert!(
        app.status
            .as_ref()
            .unwrap()
            .1
            .contains("not available in this build")
    );
    assert!(app.connect.steps.is_empty(), "no fake steps");
}

#[test]
fn guide_steps_check_the_real_workspace() {
    use chainsmith::tui::guide::{STEPS, StepStatus, status};
    let (_d, ws) = ws();
    let rows = |ws: &Workspace| ops::tree(ws.list().unwrap().0, OffsetDateTime::now_utc());
    let st =
        |ws: &Workspace, id: &str| status(STEPS.iter().find(|s| s.id == id).unwrap(), &rows(ws));
    assert_eq!(st(&ws, "root"), StepStatus::Todo);
    root(&ws, "r");
    assert!(matches!(st(&ws, "root"), StepStatus::Done(_)));
    assert_eq!(st(&ws, "intermediate"), StepStatus::Todo);
    intermediate(&ws, "i", "r");
    assert!(matches!(st(&ws, "intermediate"), StepStatus::Done(_)));
    assert_eq!(st(&ws, "verify"), StepStatus::Todo);
    let out = ws.root().join("v.pem");
    ops::new_verification(&ws, "i", "ABC123", &out, None).unwrap();
    assert!(matches!(st(&ws, "verify"), StepStatus::Done(d) if d.contains("ABC123")));
    assert_eq!(st(&ws, "device"), StepStatus::Todo);
    devices(&ws, "dev1", "i");
    assert!(matches!(st(&ws, "device"), StepStatus::Done(_)));
    for id in ["hub-ca", "register", "connect", "renew", "disable"] {
        assert!(
            matches!(st(&ws, id), StepStatus::Unavailable(_)),
            "{id} needs an engine this build lacks"
        );
    }
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
    root(&ws, "made-elsewhere");
    let later = app.now + time::Duration::seconds(5);
    let c = app.update(Action::Tick(later));
    assert!(matches!(c, Some(Command::LoadList)));
    settle(&mut app, &ws, c);
    assert_eq!(app.pki.rows.len(), 1);
}

#[test]
fn guide_text_subcommand_prints_steps_with_status() {
    let (d, ws) = ws();
    root(&ws, "r");
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
    assert!(s.contains("not in this build"), "{s}");
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
