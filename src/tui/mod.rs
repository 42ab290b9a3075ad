//! The workbench TUI: one event loop, one [`Action`] type for keys and background results,
//! [`App::update`] that only changes state, and [`ui::render`] as a function of state.
//!
//! ```text
//!  crossterm EventStream ─┐
//!  action channel ────────┼─ select! ─▶ App::update ─▶ Command ─▶ spawn_blocking ─┐
//!  tick (200 ms) ─────────┘      ▲                                              │
//!                                └──────────────── Action ◀─────────────────────┘
//! ```

pub mod action;
pub mod app;
pub mod command;
pub mod connect;
pub mod dialog;
pub mod engines;
pub mod fleet;
pub mod forms;
pub mod guide;
pub mod help;
pub mod hub;
pub mod layout;
pub mod new_form;
pub mod pki;
pub mod request;
pub mod target;
pub mod theme;
pub mod ui;
pub mod widgets;

pub use action::Action;
pub use app::App;
pub use command::{Command, CreateRequest};
pub use engines::{Engines, TestRequest, run_fleet, run_test};
use engines::{announce_hub, start_hub};
pub use layout::Tab;

use crate::ops;
use crate::store::Workspace;
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event,
    EventStream,
};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::{Backend, CrosstermBackend};
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const TICK: Duration = Duration::from_millis(200);

/// Give the terminal back: leave the alternate screen, show the cursor, stop raw mode.
/// Safe to call more than once.
fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// Owns the terminal's raw/alternate state; dropping it restores the terminal.
pub struct TerminalGuard;

impl TerminalGuard {
    /// Put the terminal in raw mode on the alternate screen, with mouse and bracketed paste
    /// on, until the guard is dropped.
    pub fn enter() -> io::Result<TerminalGuard> {
        enable_raw_mode()?;
        let guard = TerminalGuard;
        execute!(
            io::stdout(),
            EnterAlternateScreen,
            EnableMouseCapture,
            EnableBracketedPaste
        )?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// A panic anywhere (the loop, a tokio task, a blocking job) restores the terminal, prints the
/// message on the normal screen and exits: a task's panic would otherwise leave a dead screen.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
        std::process::exit(101);
    }));
}

/// Run a command to completion (in a blocking thread in the app; directly in tests) and
/// return the action that reports its result (the last one, for commands that report twice).
pub fn perform(ws: &Workspace, cmd: Command) -> Option<Action> {
    let mut last = None;
    perform_each(ws, cmd, &mut |a| last = Some(a));
    last
}

/// Run a command, reporting each result as it comes.
pub fn perform_each(ws: &Workspace, cmd: Command, emit: &mut dyn FnMut(Action)) {
    match cmd {
        Command::LoadList => load_list(ws, emit),
        Command::LoadReport(name) => {
            let report = ops::report(ws, &name)
                .map(Box::new)
                .map_err(|e| forms::error_text(&e));
            emit(Action::ReportLoaded { name, report });
        }
        Command::Create(req) => {
            let r = match &req {
                CreateRequest::Ca(r) => ops::new_ca(ws, r).map_err(|e| forms::error_text(&e)),
                CreateRequest::Devices(r) => {
                    ops::new_devices_or_slot(ws, r).map_err(|e| forms::error_text(&e))
                }
            };
            emit(Action::Created(r));
        }
        Command::MakeVerification { issuer, code, out } => {
            make_verification(ws, issuer, code, out, emit)
        }
        Command::Delete(name) => {
            let result = ws.remove(&name).map_err(|e| forms::error_text(&e));
            emit(Action::Deleted { name, result });
        }
        Command::Copy(_) => {}
        Command::Export { name, opts } => export_entity(ws, name, opts, emit),
        Command::Import(req) => import_entity(ws, req, emit),
        Command::Renew(req) => renew_entity(ws, req, emit),
        Command::Revoke {
            name,
            reason,
            disable_on_hub,
        } => {
            let req = ops::lifecycle::RevokeRequest {
                name,
                reason,
                disable_on_hub,
            };
            let r = ops::lifecycle::revoke(ws, &req, &crate::hub::HubStore::new(ws.clone()))
                .map(|rv| vec![rv.message])
                .map_err(|e| forms::error_text(&e));
            emit(Action::FormDone(r));
        }
        Command::HubRegistry => {
            emit(hub_registry(ws));
            emit(dps_state(ws));
        }
        Command::DpsProve { ca } => {
            let r = crate::hub::dps_prove(&crate::hub::HubStore::new(ws.clone()), &ca);
            emit(Action::Hub(hub::HubAction::DpsDone(
                r.map_err(|e| forms::error_text(&e)),
            )));
            emit(dps_state(ws));
        }
        Command::DpsGroup { ca } => {
            let r = crate::hub::dps_group_from_ca(&crate::hub::HubStore::new(ws.clone()), &ca);
            emit(Action::Hub(hub::HubAction::DpsDone(
                r.map_err(|e| forms::error_text(&e)),
            )));
            emit(dps_state(ws));
        }
        Command::DpsEnroll { device } => dps_enroll(ws, device, emit),
        Command::GuideFacts => {
            emit(hub_registry(ws));
            emit(dps_state(ws));
            let rows = match ws.list() {
                Ok((metas, _)) if metas.len() <= 5000 => ops::tree(metas, ws.now()),
                _ => vec![],
            };
            emit(Action::Renewed(guide::renewed(ws, &rows)));
            emit(Action::Passed(guide::passed_devices(ws.root())));
            emit(Action::GuideAws(Box::new(guide::aws_facts(
                ws,
                &guide::guide_dir(),
            ))));
        }
        Command::HubProve { ca } => {
            emit(Action::Hub(hub::HubAction::Proved(hub_prove(ws, &ca))));
            emit(hub_registry(ws));
        }
        Command::HubRegister { device } => hub_register(ws, device, emit),
        Command::HubEnable { device, enabled } => hub_enable(ws, device, enabled, emit),
        // Async: run by the loop (`spawn`), which owns the hub handle.
        Command::StartHub { .. }
        | Command::StopHub
        | Command::RunTest { .. }
        | Command::RunFleet { .. }
        | Command::StopFleet => {}
    }
}

/// Read the list (from the workspace index, for what it still describes).
fn load_list(ws: &Workspace, emit: &mut dyn FnMut(Action)) {
    let t = Instant::now();
    match ws.list() {
        Ok((metas, damaged)) => {
            let rows = ops::tree(metas, ws.now());
            emit(Action::Listed {
                rows,
                damaged: damaged.len(),
                took: t.elapsed(),
            });
        }
        Err(e) => emit(Action::ListFailed(forms::error_text(&e))),
    }
}

/// Issue the verification certificate for a hub's code and read it back to show.
fn make_verification(
    ws: &Workspace,
    issuer: String,
    code: String,
    out: std::path::PathBuf,
    emit: &mut dyn FnMut(Action),
) {
    let r = (|| -> Result<_, String> {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let created = ops::new_verification(ws, &issuer, &code, &out, None, true)
            .map_err(|e| forms::error_text(&e))?;
        let pem = std::fs::read_to_string(&out)
            .map_err(|e| format!("cannot read back {}: {e}", out.display()))?;
        Ok((created, pem))
    })();
    emit(Action::Verified(r));
}

/// Export an entity; the form lists the files written, with their modes.
fn export_entity(
    ws: &Workspace,
    name: String,
    opts: crate::export::ExportOptions,
    emit: &mut dyn FnMut(Action),
) {
    let r = crate::export::export_entity(ws, &name, &opts)
        .map(|rep| {
            let mut lines: Vec<String> = rep
                .files
                .iter()
                .map(|f| format!("{:o}  {}  ({})", f.mode, f.path.display(), f.what))
                .collect();
            lines.extend(rep.notes);
            lines
        })
        .map_err(|e| forms::error_text(&e));
    emit(Action::FormDone(r));
}

/// Import a certificate (and key) into the workspace.
fn import_entity(ws: &Workspace, req: ops::lifecycle::ImportRequest, emit: &mut dyn FnMut(Action)) {
    let r = ops::lifecycle::import(ws, &req)
        .map(|i| {
            let mut lines = vec![format!(
                "imported {} \"{}\"{}",
                i.meta.kind.as_str(),
                i.meta.name,
                if i.trust_only {
                    " (no key: trust anchor only)"
                } else {
                    ""
                }
            )];
            lines.extend(i.notes);
            lines
        })
        .map_err(|e| forms::error_text(&e));
    emit(Action::FormDone(r));
}

/// Renew a certificate; the form shows the old and new serials.
fn renew_entity(ws: &Workspace, req: ops::lifecycle::RenewRequest, emit: &mut dyn FnMut(Action)) {
    let r = ops::lifecycle::renew(ws, &req, &crate::hub::HubStore::new(ws.clone()))
        .map(|rn| {
            let mut lines = vec![format!(
                "renewed \"{}\": serial {} → {}, valid until {}{}",
                rn.new.name,
                rn.old.serial,
                rn.new.serial,
                crate::pki::issue::rfc3339(rn.new.not_after),
                if rn.rekeyed {
                    ", new key"
                } else {
                    ", same key"
                }
            )];
            lines.extend(rn.notes);
            lines
        })
        .map_err(|e| forms::error_text(&e));
    emit(Action::FormDone(r));
}

/// Enroll a workspace device individually in the local DPS.
fn dps_enroll(ws: &Workspace, device: String, emit: &mut dyn FnMut(Action)) {
    let r = crate::hub::HubStore::new(ws.clone()).dps_enroll(
        &device,
        None,
        Some(&device),
        None,
        None,
        false,
        None,
        Default::default(),
    );
    let r = r
        .map(|(ind, warnings)| {
            let mut steps = vec![format!(
                "enrolled \"{}\" individually in DPS (its certificate's thumbprint)",
                ind.registration_id
            )];
            steps.extend(warnings);
            steps
        })
        .map_err(|e| forms::error_text(&e));
    emit(Action::Hub(hub::HubAction::DpsDone(r)));
    emit(dps_state(ws));
}

/// Register a workspace device with the local hub.
fn hub_register(ws: &Workspace, device: String, emit: &mut dyn FnMut(Action)) {
    let r = (|| {
        let store = crate::hub::HubStore::new(ws.clone());
        let e = ws.load(&device)?;
        // Thumbprints come from the workspace for self-signed devices only: the hub
        // refuses them for CA-signed ones, whose chain is what it checks.
        if e.meta.self_signed {
            store
                .add_device(
                    &device,
                    crate::hub::Auth::SelfSigned,
                    None,
                    None,
                    Some(&device),
                )
                .map(|_| "X.509 self-signed, by its thumbprint")
        } else {
            store
                .add_device(&device, crate::hub::Auth::Ca, None, None, None)
                .map(|_| "X.509 CA signed")
        }
    })();
    emit(Action::Hub(match r {
        Ok(auth) => hub::HubAction::Done(format!(
            "registered device \"{device}\" with the hub ({auth})"
        )),
        Err(e) => hub::HubAction::Error(forms::error_text(&e)),
    }));
    emit(hub_registry(ws));
}

/// Enable or disable a device in the local hub's registry.
fn hub_enable(ws: &Workspace, device: String, enabled: bool, emit: &mut dyn FnMut(Action)) {
    let r = crate::hub::HubStore::open(ws.root()).and_then(|s| s.set_enabled(&device, enabled));
    emit(Action::Hub(match r {
        Ok(_) if enabled => hub::HubAction::Done(format!("enabled device \"{device}\" in the hub")),
        Ok(_) => hub::HubAction::Done(format!(
            "disabled device \"{device}\" in the hub: it is refused from its next connection"
        )),
        Err(e) => hub::HubAction::Error(forms::error_text(&e)),
    }));
    emit(hub_registry(ws));
}

/// The hub registry as the Hub tab shows it.
fn hub_registry(ws: &Workspace) -> Action {
    match crate::hub::HubStore::open(ws.root()).and_then(|s| s.load()) {
        Ok(r) => {
            let (cas, devices) = hub::from_registry(&r);
            Action::Hub(hub::HubAction::Registry { cas, devices })
        }
        Err(e) => Action::Hub(hub::HubAction::Error(forms::error_text(&e))),
    }
}

/// DPS's state as the Hub tab shows it.
pub fn dps_state(ws: &Workspace) -> Action {
    match crate::hub::HubStore::open(ws.root()).and_then(|s| s.dps_load()) {
        Ok(st) => Action::Hub(hub::HubAction::Dps(Box::new(st))),
        Err(e) => Action::Hub(hub::HubAction::Error(forms::error_text(&e))),
    }
}

/// The whole proof of possession against the local hub's registry (`hub::hub_prove`), as
/// the steps it took.
pub fn hub_prove(ws: &Workspace, ca: &str) -> Result<Vec<String>, String> {
    crate::hub::HubStore::open(ws.root())
        .and_then(|s| crate::hub::hub_prove(&s, ca))
        .map_err(|e| forms::error_text(&e))
}

/// Run `first` and every command that follows from it to completion, synchronously: how
/// tests and benches drive the app without a loop or a terminal.
pub fn settle(app: &mut App, ws: &Workspace, first: Option<Command>) {
    let mut queue: std::collections::VecDeque<Command> = first.into_iter().collect();
    while let Some(c) = queue.pop_front() {
        let mut actions = Vec::new();
        perform_each(ws, c, &mut |a| actions.push(a));
        for a in actions {
            queue.extend(app.update(a));
        }
    }
}

/// The OSC 52 sequence that puts `text` on the terminal's clipboard.
pub fn osc52(text: &str) -> String {
    use base64::Engine;
    format!(
        "\x1b]52;c;{}\x07",
        base64::engine::general_purpose::STANDARD.encode(text)
    )
}

/// Start a command off the draw loop; its result comes back over `tx`.
fn spawn(ws: &Arc<Workspace>, engines: &Engines, tx: &mpsc::UnboundedSender<Action>, cmd: Command) {
    if let Command::Copy(text) = &cmd {
        let mut out = io::stdout();
        let _ = out.write_all(osc52(text).as_bytes());
        let _ = out.flush();
        return;
    }
    match cmd {
        Command::StartHub { port } => {
            let (engines, tx, root) = (engines.clone(), tx.clone(), ws.root().to_path_buf());
            tokio::spawn(async move {
                let mut slot = engines.hub.lock().await;
                if let Some(h) = slot.as_ref() {
                    let _ = tx.send(Action::Hub(hub::HubAction::Started {
                        port: h.addr.port(),
                    }));
                    return;
                }
                match start_hub(&root, port, engines.clock).await {
                    Ok(h) => {
                        announce_hub(&h, &tx);
                        *slot = Some(h);
                    }
                    Err(e) => {
                        let _ = tx.send(Action::Hub(hub::HubAction::Failed(forms::error_text(&e))));
                    }
                }
            });
            return;
        }
        Command::StopHub => {
            let (engines, tx) = (engines.clone(), tx.clone());
            tokio::spawn(async move {
                engines.shutdown().await;
                let _ = tx.send(Action::Hub(hub::HubAction::Stopped));
            });
            return;
        }
        Command::RunTest {
            device,
            target,
            transport,
            hub_port,
        } => {
            let (engines, tx, root) = (engines.clone(), tx.clone(), ws.root().to_path_buf());
            tokio::spawn(async move {
                let test = TestRequest {
                    device,
                    target,
                    transport,
                    hub_port,
                };
                let r = run_test(root, engines, test, tx.clone()).await;
                let _ = tx.send(Action::Connect(connect::ConnectAction::Ended(r)));
            });
            return;
        }
        Command::RunFleet {
            patterns,
            issuer,
            target,
            hub_port,
        } => {
            let (engines, tx, root) = (engines.clone(), tx.clone(), ws.root().to_path_buf());
            tokio::spawn(async move {
                let r = run_fleet(
                    root,
                    engines,
                    patterns,
                    issuer,
                    target,
                    hub_port,
                    tx.clone(),
                )
                .await;
                let _ = tx.send(Action::Fleet(fleet::FleetAction::Ended(r)));
            });
            return;
        }
        Command::StopFleet => {
            let engines = engines.clone();
            tokio::spawn(async move { engines.stop_fleet().await });
            return;
        }
        Command::Revoke {
            name,
            reason,
            disable_on_hub: true,
        } => {
            // The Hub tab's hub has no control socket: drop the disabled devices here.
            let (engines, tx, ws) = (engines.clone(), tx.clone(), Arc::clone(ws));
            tokio::spawn(async move {
                let req = ops::lifecycle::RevokeRequest {
                    name,
                    reason,
                    disable_on_hub: true,
                };
                let r = tokio::task::spawn_blocking(move || {
                    ops::lifecycle::revoke(&ws, &req, &crate::hub::HubStore::new((*ws).clone()))
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| forms::error_text(&e)));
                let r = match r {
                    Ok(rv) => {
                        let mut lines = vec![rv.message];
                        if let Some(h) = engines.hub.lock().await.as_ref() {
                            for d in &rv.disabled {
                                if h.kick(&d.id, "device disabled: its certificate was revoked") {
                                    lines.push(format!(
                                        "the Hub tab's hub dropped the connection of \"{}\"",
                                        d.id
                                    ));
                                }
                            }
                        }
                        Ok(lines)
                    }
                    Err(e) => Err(e),
                };
                let _ = tx.send(Action::FormDone(r));
            });
            return;
        }
        _ => {}
    }
    let ws = Arc::clone(ws);
    let tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        perform_each(&ws, cmd, &mut |a| {
            let _ = tx.send(a);
        });
    });
}

/// Handle one action and everything already queued behind it, so a burst costs one frame.
pub fn drain(
    app: &mut App,
    first: Action,
    rx: &mut mpsc::UnboundedReceiver<Action>,
) -> Vec<Command> {
    let mut cmds: Vec<Command> = app.update(first).into_iter().collect();
    while let Ok(a) = rx.try_recv() {
        cmds.extend(app.update(a));
    }
    cmds
}

/// Open the TUI on `ws_root` at `tab`, drawn with `theme`; returns when the user quits.
pub(crate) fn run(
    ws_root: &std::path::Path,
    tab: Tab,
    clock: crate::clock::Clock,
    theme: theme::Theme,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        anyhow::bail!(
            "the TUI needs a terminal; use the subcommands (`chainsmith --help`) in scripts"
        );
    }
    let ws = Workspace::open_or_create(ws_root)?.with_clock(clock.running());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // crossterm drops every colour code by itself when NO_COLOR is set; `--color always` is
    // the more specific wish, so the theme's choice is what the terminal gets.
    crossterm::style::force_color_output(theme.color);
    install_panic_hook();
    let guard = TerminalGuard::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    let result = rt.block_on(event_loop(&mut terminal, Arc::new(ws), tab, theme));
    drop(terminal);
    drop(guard);
    rt.shutdown_timeout(Duration::from_millis(100));
    result
}

async fn event_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    ws: Arc<Workspace>,
    tab: Tab,
    theme: theme::Theme,
) -> anyhow::Result<()>
where
    B::Error: Send + Sync + 'static,
{
    let size = terminal.size()?;
    let mut app = App::new(
        ws.root().to_path_buf(),
        theme,
        ws.now(),
        (size.width, size.height),
    );
    app.tab = tab;
    let (tx, mut rx) = mpsc::unbounded_channel::<Action>();
    let engines = Engines {
        clock: ws.clock(),
        ..Engines::default()
    };
    if let Some(c) = app.start() {
        spawn(&ws, &engines, &tx, c);
    }
    terminal.draw(|f| ui::render(f, &app))?;
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let first = tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(ev)) => match event_action(ev) { Some(a) => a, None => continue },
                Some(Err(e)) => return Err(e.into()),
                None => break,
            },
            Some(a) = rx.recv() => a,
            _ = tick.tick() => Action::Tick(ws.now()),
        };
        for c in drain(&mut app, first, &mut rx) {
            spawn(&ws, &engines, &tx, c);
        }
        if app.quit {
            break;
        }
        terminal.draw(|f| ui::render(f, &app))?;
    }
    engines.shutdown().await;
    Ok(())
}

fn event_action(ev: Event) -> Option<Action> {
    match ev {
        Event::Key(k) => Some(Action::Key(k)),
        Event::Mouse(m) => Some(Action::Mouse(m)),
        Event::Resize(w, h) => Some(Action::Resize(w, h)),
        Event::Paste(s) => Some(Action::Paste(s)),
        _ => None,
    }
}
