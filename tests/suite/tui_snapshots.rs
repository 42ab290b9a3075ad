//! Every screen and dialog rendered with `TestBackend` and compared with insta snapshots.
//! Serials, dates, key identifiers and fingerprints are masked in the report data and the clock
//! is fixed, so the snapshots do not change from run to run.

use chainsmith::clock::Clock;
use chainsmith::ops::{self, DeviceRequest, ValidityArg};
use chainsmith::store::{Revocation, Workspace};
use chainsmith::tui::theme::Theme;
use chainsmith::tui::{Action, App, Tab, connect, hub, settle, ui};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use std::time::Duration;
use time::OffsetDateTime;
use time::macros::datetime;

/// The fixed "now" of every TUI screen test.
pub(crate) const NOW: OffsetDateTime = datetime!(2026-06-01 12:00:00 UTC);

pub(crate) fn key(c: KeyCode) -> Action {
    Action::Key(KeyEvent::new(c, KeyModifiers::NONE))
}
pub(crate) fn ch(c: char) -> Action {
    key(KeyCode::Char(c))
}
fn typed(app: &mut App, s: &str) {
    for c in s.chars() {
        app.update(ch(c));
    }
}

/// A CA with every default, for screens that only need one to exist.
pub(crate) use chainsmith_test_support::workspace::new_ca as ca;

/// root → intermediate → devices (valid, expired, revoked), a self-signed device and a
/// verification certificate.
fn fixture() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().unwrap();
    // Issued the day before NOW, looked at NOW (both fixed): nothing on screen depends on the
    // day the test runs, and the 30-day verification certificate shows its expiry warning.
    let ws = Workspace::open_or_create(&dir.path().join("ws"))
        .unwrap()
        .with_clock(Clock::Fixed(NOW - time::Duration::days(1)));
    ca(&ws, "contoso-root", None);
    ca(&ws, "contoso-int", Some("contoso-root"));
    let dev = |ids: &str, validity: ValidityArg, issuer: Option<&str>| {
        ops::new_devices(
            &ws,
            &DeviceRequest {
                ids: vec![ids.into()],
                issuer: issuer.map(Into::into),
                validity,
                ..Default::default()
            },
        )
        .unwrap();
    };
    dev("dev-{01..03}", ValidityArg::default(), Some("contoso-int"));
    dev(
        "old-dev",
        ValidityArg {
            days: None,
            not_before: Some("2019-01-01T00:00:00Z".into()),
            not_after: Some("2020-01-01T00:00:00Z".into()),
        },
        Some("contoso-int"),
    );
    dev("lost-dev", ValidityArg::default(), Some("contoso-int"));
    ws.update_meta("lost-dev", |m| {
        m.revoked = Some(Revocation {
            at: NOW,
            reason: "keyCompromise".into(),
        })
    })
    .unwrap();
    dev("lab-dev", ValidityArg::default(), None);
    ops::new_verification(
        &ws,
        "contoso-int",
        "75B86466DA34D2B04C0C4C9557A119687ADAE7D4732BDDB3",
        &ws.root().join("v.pem"),
        None,
        false,
    )
    .unwrap();
    (dir, ws.with_clock(Clock::Fixed(NOW)))
}

/// Fixed clock and masked per-run values: dates relative to NOW, no random hex, no temp path.
fn mask(app: &mut App, ws: &Workspace) {
    app.now = NOW;
    app.pki.load_took = None;
    app.ws_root = "/home/you/.local/share/chainsmith".into();
    let root = ws.root().display().to_string();
    let date = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").unwrap();
    for r in &mut app.pki.rows {
        mask_meta(&mut r.meta);
        r.days_left = r.meta.days_left(NOW);
        r.status = r.meta.status(NOW);
    }
    for rep in app.pki.reports.values_mut().flatten() {
        mask_meta(&mut rep.meta);
        let c = &mut rep.certificate;
        c.serial = "[SERIAL]".into();
        c.sha1 = "[SHA-1]".into();
        c.sha256 = "[SHA-256]".into();
        c.not_before = chainsmith::pki::issue::rfc3339(rep.meta.not_before);
        c.not_after = chainsmith::pki::issue::rfc3339(rep.meta.not_after);
        for e in &mut c.extensions {
            if e.name.contains("Key Identifier") {
                e.value = "[KEY-ID]".into();
            }
        }
        for f in &mut rep.lint {
            f.message = date
                .replace_all(&f.message.replace(&root, "[WS]"), "[DATE]")
                .into_owned();
        }
        let p = &mut rep.paths;
        for path in [&mut p.cert, &mut p.meta, &mut p.dir]
            .into_iter()
            .chain(p.key.as_mut())
        {
            *path = path.display().to_string().replace(&root, "[WS]").into();
        }
    }
}

fn mask_meta(m: &mut chainsmith::store::Meta) {
    if m.not_after.year() > 2021 {
        m.not_before = NOW - time::Duration::days(30);
        m.not_after = m.not_before
            + time::Duration::days(match m.kind {
                chainsmith::store::Kind::Root => 3650,
                chainsmith::store::Kind::Intermediate => 1825,
                chainsmith::store::Kind::Verification => 30,
                chainsmith::store::Kind::Device => 365,
            });
    }
}

fn app_on(ws: &Workspace, size: (u16, u16)) -> App {
    let mut app = App::new(ws.root().to_path_buf(), Theme::plain(), NOW, size);
    let c = app.start();
    settle(&mut app, ws, c);
    mask(&mut app, ws);
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
    let c = app
        .pki
        .want_report()
        .map(chainsmith::tui::Command::LoadReport);
    settle(app, ws, c);
    mask(app, ws);
}

fn draw(app: &App) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(app.size.0, app.size.1)).unwrap();
    t.draw(|f| ui::render(f, app)).unwrap();
    t
}

fn screen(app: &App) -> String {
    let t = draw(app);
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        let mut skip = 0;
        for x in 0..buf.area.width {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            let s = buf[(x, y)].symbol();
            skip = unicode_width(s).saturating_sub(1);
            line.push_str(s);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn unicode_width(s: &str) -> usize {
    ratatui::text::Span::raw(s).width()
}

#[test]
fn pki_tree_and_details_80x24() {
    let (_d, ws) = fixture();
    let mut app = app_on(&ws, (80, 24));
    select(&mut app, &ws, "dev-01");
    insta::assert_snapshot!("pki_device_80x24", screen(&app));
}

#[test]
fn pki_details_of_each_kind_120x40() {
    let (_d, ws) = fixture();
    let mut app = app_on(&ws, (120, 40));
    for name in [
        "contoso-root",
        "contoso-int",
        "dev-01",
        "old-dev",
        "lost-dev",
        "lab-dev",
        "verify-contoso-int-75B86466DA34D2B04C0C4C9557A119687ADAE7D4732BDDB3",
    ] {
        select(&mut app, &ws, name);
        insta::assert_snapshot!(format!("pki_details_{name}"), screen(&app));
    }
}

#[test]
fn pki_filter() {
    let (_d, ws) = fixture();
    let mut app = app_on(&ws, (80, 24));
    app.update(ch('/'));
    typed(&mut app, "dev-0");
    mask(&mut app, &ws);
    app.pki.reports.clear();
    app.pki.report_inflight = None;
    insta::assert_snapshot!("pki_filter_typing", screen(&app));
}

#[test]
fn loading_and_empty_workspace() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Workspace::open_or_create(&dir.path().join("ws"))
        .unwrap()
        .with_clock(Clock::Fixed(NOW));
    let mut app = App::new(
        "/home/you/.local/share/chainsmith".into(),
        Theme::plain(),
        NOW,
        (80, 24),
    );
    let c = app.start();
    insta::assert_snapshot!("loading", screen(&app));
    settle(&mut app, &ws, c);
    app.pki.load_took = None;
    app.ws_root = "/home/you/.local/share/chainsmith".into();
    insta::assert_snapshot!("empty_workspace", screen(&app));
}

#[test]
fn help_overlay_lists_every_key_at_80x24() {
    let (_d, ws) = fixture();
    let mut app = app_on(&ws, (80, 24));
    app.update(ch('?'));
    let s = screen(&app);
    for (_, keys, _) in chainsmith::tui::app::KEYMAP {
        assert!(s.contains(keys), "help shows {keys}");
    }
    insta::assert_snapshot!("help", s);
}

#[test]
fn too_small_and_minimum_size() {
    let (_d, ws) = fixture();
    let mut app = app_on(&ws, (59, 15));
    insta::assert_snapshot!("too_small", screen(&app));
    app.update(Action::Resize(60, 15));
    select(&mut app, &ws, "contoso-int");
    insta::assert_snapshot!("minimum_60x15", screen(&app));
}

#[test]
fn new_forms() {
    let (_d, ws) = fixture();
    let mut app = app_on(&ws, (80, 24));
    select(&mut app, &ws, "contoso-int");
    app.update(ch('n'));
    insta::assert_snapshot!("new_device_empty", screen(&app));
    typed(&mut app, "dev 01");
    insta::assert_snapshot!("new_device_invalid_id", screen(&app));
    for _ in 0..6 {
        app.update(key(KeyCode::Backspace));
    }
    typed(&mut app, "sensor-{001..100}");
    insta::assert_snapshot!("new_device_range_ready", screen(&app));
    app.update(key(KeyCode::Up));
    app.update(key(KeyCode::Right));
    insta::assert_snapshot!("new_self_signed", screen(&app));
    app.update(key(KeyCode::Right));
    insta::assert_snapshot!("new_root", screen(&app));
    app.update(key(KeyCode::Right));
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Down));
    for _ in 0..4 {
        app.update(key(KeyCode::Right));
    }
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Down));
    typed(&mut app, "300");
    insta::assert_snapshot!("new_intermediate_bad_pathlen_rsa4096", screen(&app));
    for _ in 0..3 {
        app.update(key(KeyCode::Backspace));
    }
    app.update(key(KeyCode::Enter));
    app.spinner = 3;
    insta::assert_snapshot!("new_generating_spinner", screen(&app));
}

#[test]
fn verify_dialog_input_and_result() {
    let (_d, ws) = fixture();
    let mut app = app_on(&ws, (80, 24));
    select(&mut app, &ws, "contoso-int");
    app.update(ch('v'));
    typed(&mut app, "75B86466DA34D2B04C0C4C9557A119687ADAE7D4732BDDB3");
    insta::assert_snapshot!("verify_code", screen(&app));
    app.update(key(KeyCode::Backspace));
    typed(&mut app, " 3");
    insta::assert_snapshot!("verify_code_invalid", screen(&app));
    // The result, with a fixed PEM so the snapshot is stable.
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n".to_string();
    if let Some(chainsmith::tui::dialog::Dialog::Verify(v)) = &mut app.dialog {
        v.code = "75B86466DA34D2B04C0C4C9557A119687ADAE7D4732BDDB3".into();
        v.result = Some(chainsmith::tui::dialog::VerifyResult {
            path:
                "/home/you/.local/share/chainsmith/verification/contoso-int_verification_cert.pem"
                    .into(),
            entity: "verify-contoso-int-75B86466DA34D2B04C0C4C9557A119687ADAE7D4732BDDB3".into(),
            pem,
            scroll: 0,
        });
    }
    insta::assert_snapshot!("verify_result", screen(&app));
}

#[test]
fn delete_confirmation() {
    let (_d, ws) = fixture();
    let mut app = app_on(&ws, (80, 24));
    select(&mut app, &ws, "contoso-int");
    app.update(ch('d'));
    insta::assert_snapshot!("delete_confirm", screen(&app));
}

#[test]
fn hub_and_connect_tabs() {
    let (_d, ws) = fixture();
    let mut app = app_on(&ws, (80, 24));
    app.update(ch('2'));
    insta::assert_snapshot!("hub_stopped", screen(&app));
    app.update(ch('1'));
    select(&mut app, &ws, "dev-01");
    app.update(ch('c'));
    insta::assert_snapshot!("connect_ready", screen(&app));
}

/// What the tabs show from the actions their engines send.
#[test]
fn hub_and_connect_tabs_render_engine_events() {
    let (_d, ws) = fixture();
    let mut app = app_on(&ws, (100, 30));
    app.update(Action::Hub(hub::HubAction::Started { port: 8883 }));
    app.update(Action::Hub(hub::HubAction::Registry {
        cas: vec![
            hub::CaRow {
                name: "contoso-int".into(),
                verified: true,
                code: None,
            },
            hub::CaRow {
                name: "other-root".into(),
                verified: false,
                code: Some("75B8…BDDB3".into()),
            },
        ],
        devices: vec![
            hub::DeviceRow {
                id: "dev-01".into(),
                enabled: true,
                auth: "X.509 CA signed".into(),
            },
            hub::DeviceRow {
                id: "lost-dev".into(),
                enabled: false,
                auth: "X.509 CA signed".into(),
            },
        ],
    }));
    let events = [
        (
            hub::LogKind::Connected,
            "dev-01",
            "connected (TLS 1.3, chain dev-01 → contoso-int)",
        ),
        (
            hub::LogKind::Telemetry,
            "dev-01",
            "devices/dev-01/messages/events/ {\"temperature\":27}",
        ),
        (hub::LogKind::Twin, "dev-01", "reported PATCH → 204"),
        (
            hub::LogKind::Refused,
            "lost-dev",
            "not authorized: device is disabled in the registry",
        ),
    ];
    for (kind, device, text) in events {
        app.update(Action::Hub(hub::HubAction::Event(hub::LogLine {
            at: NOW,
            kind,
            device: device.into(),
            text: text.into(),
        })));
    }
    app.update(ch('2'));
    insta::assert_snapshot!("hub_with_events", screen(&app));
    app.connect.device = Some("dev-01".into());
    for (name, ms) in [("DNS", 1), ("TCP", 2), ("TLS", 14), ("CONNECT", 3)] {
        app.update(Action::Connect(connect::ConnectAction::Step(
            connect::StepRow {
                name: name.into(),
                state: connect::StepState::Ok,
                took: Some(Duration::from_millis(ms)),
                detail: String::new(),
            },
        )));
    }
    for i in 0..5u64 {
        app.update(Action::Connect(connect::ConnectAction::Message(format!(
            "→ message {i}"
        ))));
        app.update(Action::Connect(connect::ConnectAction::RoundTrip(
            Duration::from_micros(300 + i * 50),
        )));
    }
    app.update(ch('3'));
    insta::assert_snapshot!("connect_with_events", screen(&app));
}

#[test]
fn guide_tab() {
    let (_d, ws) = fixture();
    let mut app = app_on(&ws, (100, 30));
    app.update(ch('g'));
    assert_eq!(app.tab, Tab::Guide);
    // The guide opens at the first step not done: 3, the CA is not in the hub yet.
    assert_eq!(app.guide.selected, 2);
    insta::assert_snapshot!("guide_step3_hub_todo", screen(&app));
    for _ in 0..2 {
        app.update(key(KeyCode::Up));
    }
    insta::assert_snapshot!("guide_step1_done", screen(&app));
}

/// The IoT Central track (`t`): its steps marked from the workspace and the local DPS's
/// state (the root proved to DPS), the step's chainsmith and `az iot dps` commands.
#[test]
fn guide_central_track() {
    let (_d, ws) = fixture();
    let mut app = app_on(&ws, (100, 30));
    app.update(ch('g'));
    app.update(ch('t'));
    let store = chainsmith::hub::HubStore::open(ws.root()).unwrap();
    chainsmith::hub::dps_prove(&store, "contoso-root").unwrap();
    app.update(chainsmith::tui::dps_state(&ws));
    // The track opens at its first step not done: 2, no sample-device-01 yet.
    assert_eq!(app.guide.selected, 1);
    app.update(key(KeyCode::Down));
    insta::assert_snapshot!("guide_central_verify_done", screen(&app));
}

/// Colour plus a symbol: with NO_COLOR no cell has a colour, and the symbols are still there.
#[test]
fn no_color_keeps_the_symbols_and_drops_the_colours() {
    let (_d, ws) = fixture();
    let mut app = app_on(&ws, (100, 30));
    select(&mut app, &ws, "old-dev");
    for theme in [Theme { color: true }, Theme::plain()] {
        app.theme = theme;
        let t = draw(&app);
        let buf = t.backend().buffer();
        let colours: Vec<Color> = buf
            .content
            .iter()
            .flat_map(|c| [c.fg, c.bg])
            .filter(|c| *c != Color::Reset)
            .collect();
        let s = screen(&app);
        assert!(
            s.contains("✗ expired") && s.contains("⊘ revoked") && s.contains("✎"),
            "{s}"
        );
        if theme.color {
            assert!(colours.contains(&Color::Red), "expired is red with colour");
        } else {
            assert!(
                colours.is_empty(),
                "NO_COLOR: no colours at all, got {colours:?}"
            );
        }
        // Only named colours: they follow the terminal's palette on light and dark backgrounds.
        assert!(colours.iter().all(|c| !matches!(
            c,
            Color::Rgb(..) | Color::Indexed(_) | Color::White | Color::Black
        )));
    }
}

/// The connection test as the engine reports it: steps with durations, TLS details, the
/// message log, the round-trip sparkline, counters; then a failure with its diagnosis box.
#[test]
fn connect_engine_events_and_diagnosis() {
    use chainsmith::mqtt::{CertSummary, Diagnosis, Event, RoundTripKind, Step, Summary, TlsFacts};
    let (_d, ws) = fixture();
    let mut app = app_on(&ws, (80, 24));
    select(&mut app, &ws, "dev-01");
    app.update(ch('c'));
    app.connect.begin();
    let ev = |e: Event| Action::Connect(connect::ConnectAction::Engine(Box::new(e)));
    let evs = vec![
        Event::Lint {
            findings: vec![],
            remedies: vec![],
        },
        Event::Resolved {
            ms: 0.1,
            addresses: vec!["127.0.0.1".into()],
        },
        Event::TcpConnected {
            ms: 0.3,
            address: "127.0.0.1:PORT".into(),
        },
        Event::TlsEstablished {
            ms: 4.2,
            facts: TlsFacts {
                version: "TLSv1.3".into(),
                cipher_suite: "TLS13_AES_256_GCM_SHA384".into(),
                server_cert: Some(CertSummary {
                    subject: "CN=localhost".into(),
                    issuer: "CN=chainsmith local hub".into(),
                    not_after: "DATE".into(),
                    expired: false,
                }),
                server_chain_len: 0,
                server_verified: true,
                client_cert_requested: true,
                acceptable_cas: vec![],
                client_chain_sent: vec!["CN=dev-01".into(), "CN=contoso-int".into()],
            },
        },
        Event::Connack {
            ms: 1.0,
            code: 0,
            meaning: "accepted".into(),
            username: String::new(),
        },
        Event::Subscribed {
            ms: 0.5,
            topics: vec![],
        },
    ];
    for e in evs {
        app.update(ev(e));
    }
    for i in 1..=5u32 {
        app.update(ev(Event::Published {
            message_id: i,
            topic: "t".into(),
            payload: format!("{{\"messageId\":{i}}}"),
            temperature_alert: false,
            ack_ms: Some(1.0),
        }));
        app.update(ev(Event::RoundTrip {
            message_id: i,
            kind: RoundTripKind::C2d,
            ms: 1.0 + i as f64,
            detail: String::new(),
        }));
    }
    app.update(ev(Event::Disconnected { ms: 0.2 }));
    app.update(ev(Event::Summary(Summary {
        ok: true,
        sent: 5,
        acked: 5,
        round_trips_expected: 5,
        round_trips_seen: 5,
        ..Default::default()
    })));
    insta::assert_snapshot!("connect_passed", screen(&app));
    app.connect.begin();
    app.update(ev(Event::TcpConnected {
        ms: 0.3,
        address: "127.0.0.1:PORT".into(),
    }));
    app.update(ev(Event::Failed {
        step: Step::MqttConnect,
        diagnosis: Diagnosis {
            code: "connack-5".into(),
            cause: "the hub refused dev-01: device is disabled".into(),
            fix: "enable the device \"dev-01\" on the hub".into(),
            detail: String::new(),
            remedy: Some(chainsmith::mqtt::ConnectRemedy::EnableDevice {
                device: "dev-01".into(),
            }),
        },
    }));
    app.update(ev(Event::Summary(Summary::default())));
    insta::assert_snapshot!("connect_failed_diagnosis", screen(&app));
}

/// The hub tab after the proof of possession, and every form dialog.
#[test]
fn hub_proof_and_form_dialogs() {
    let (_d, ws) = fixture();
    let mut app = app_on(&ws, (80, 24));
    app.update(Action::Hub(hub::HubAction::Started { port: 18883 }));
    app.update(Action::Hub(hub::HubAction::Proved(Ok(vec![
        "added CA \"contoso-int\" to the hub (Unverified)".into(),
        "hub verification code CODE".into(),
        "verification certificate /ws/verification/contoso-int_verification_cert.pem".into(),
        "hub verified the proof: CA \"contoso-int\" is Verified".into(),
    ]))));
    app.update(Action::Hub(hub::HubAction::Registry {
        cas: vec![hub::CaRow {
            name: "contoso-int".into(),
            verified: true,
            code: None,
        }],
        devices: vec![],
    }));
    app.update(Action::Hub(hub::HubAction::Events(vec![hub::LogLine {
        at: NOW,
        kind: hub::LogKind::Refused,
        device: "dev-02".into(),
        text:
            "refused 127.0.0.1:PORT: CONNACK 5 not authorized: device \"dev-02\" is not registered"
                .into(),
    }])));
    app.update(ch('2'));
    insta::assert_snapshot!("hub_after_proof", screen(&app));
    app.update(ch('p'));
    insta::assert_snapshot!("dialog_hub_port", screen(&app));
    app.update(key(KeyCode::Esc));
    app.update(ch('1'));
    select(&mut app, &ws, "dev-01");
    app.update(ch('e'));
    app.update(key(KeyCode::Right));
    app.update(key(KeyCode::Right));
    app.update(ch(' '));
    app.update(key(KeyCode::Tab));
    typed(&mut app, "secret");
    // The destination is under the (masked) workspace path.
    insta::assert_snapshot!("dialog_export", screen(&app));
    if let Some(chainsmith::tui::dialog::Dialog::Form(f)) = &mut app.dialog {
        f.result = Some(vec![
            "600  /out/dev-01.pfx  (PKCS#12 modern)".into(),
            "644  /out/dev-01.cert.pem  (certificate)".into(),
        ]);
    }
    insta::assert_snapshot!("dialog_export_done", screen(&app));
    app.update(key(KeyCode::Esc));
    app.update(ch('x'));
    insta::assert_snapshot!("dialog_revoke", screen(&app));
    app.update(key(KeyCode::Esc));
    app.update(ch('r'));
    insta::assert_snapshot!("dialog_renew", screen(&app));
    app.update(key(KeyCode::Esc));
    app.update(ch('i'));
    typed(&mut app, "/tmp/device.pfx");
    insta::assert_snapshot!("dialog_import", screen(&app));
    app.update(key(KeyCode::Esc));
    app.update(ch('c'));
    app.update(ch('t'));
    insta::assert_snapshot!("dialog_target", screen(&app));
}

/// The Hub tab with DPS beside the hub: ID scope, DPS's CAs, enrollments, registrations and
/// live DPS events with their exact refusals; names from `dps.json` or a peer are escaped.
#[test]
fn hub_tab_with_dps_state() {
    use chainsmith::hub::HubEvent;
    use chainsmith::hub::dps::{DpsState, Group, Individual, Registration};
    let (_d, ws) = fixture();
    let mut app = app_on(&ws, (100, 30));
    let dps_ca = |name: &str, verified: bool| chainsmith::hub::HubCa {
        name: name.into(),
        cn: name.into(),
        cert_pem: String::new(),
        verified,
        code: "75B86466DA34D2B04C0C4C9557A119687ADAE7D4732BDDB3".into(),
        added: NOW,
    };
    let reg = |rid: &str, substatus: &str| Registration {
        registration_id: rid.into(),
        device_id: rid.into(),
        assigned_hub: "localhost".into(),
        status: "assigned".into(),
        substatus: substatus.into(),
        created: NOW - time::Duration::minutes(5),
        updated: NOW,
        etag: "\"1\"".into(),
        payload: None,
        enrollment: "group contoso-root".into(),
        note: None,
    };
    let st = DpsState {
        id_scope: "0ne0000AB12".into(),
        cas: vec![dps_ca("contoso-root", true), dps_ca("contoso-int", false)],
        groups: vec![Group {
            name: "contoso-root".into(),
            primary: "contoso-root".into(),
            secondary: Some("contoso-int".into()),
            settings: chainsmith::hub::dps::EnrollmentSettings {
                edge: false,
                enabled: true,
                issue_from: None,
                allocation: Default::default(),
                added: NOW,
            },
        }],
        individuals: vec![Individual {
            registration_id: "mytestselfcertprimary".into(),
            device_id: None,
            primary: Some("0A1B2C3D4E5F".into()),
            secondary: Some("FFEEDDCCBBAA".into()),
            from: Some("lab-dev".into()),
            settings: chainsmith::hub::dps::EnrollmentSettings {
                edge: false,
                enabled: false,
                issue_from: None,
                allocation: Default::default(),
                added: NOW,
            },
        }],
        registrations: vec![
            reg("sample-device-01", "initialAssignment"),
            reg(
                "evil\u{1b}]0;pwned\u{7}",
                "reprovisionedToInitialAssignment",
            ),
        ],
    };
    app.update(Action::Hub(hub::HubAction::Dps(Box::new(st))));
    let peer = "127.0.0.1:50000".parse().unwrap();
    for e in [
        HubEvent::DpsAssigned {
            registration_id: "sample-device-01".into(),
            device_id: "sample-device-01".into(),
            assigned_hub: "localhost".into(),
            substatus: "initialAssignment".into(),
            enrollment: "group contoso-root".into(),
            issued: false,
            note: None,
        },
        HubEvent::DpsRefused {
            registration_id: "mytestselfcertprimary".into(),
            peer,
            status: 401,
            error_code: 401002,
            kind: "disabled".into(),
            reason: "individual enrollment \"mytestselfcertprimary\" is disabled".into(),
        },
    ] {
        app.update(Action::Hub(hub::HubAction::Event(hub::log_line(&e, NOW))));
    }
    app.update(ch('2'));
    let s = screen(&app);
    assert!(
        !s.contains('\u{1b}') && s.contains("evil\\e]0;pwned\\a"),
        "{s}"
    );
    insta::assert_snapshot!("hub_with_dps", s);
}
