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
pub mod connect;
pub mod dialog;
pub mod guide;
pub mod hub;
pub mod pki;
pub mod theme;
pub mod ui;

pub use action::{Action, Command, CreateRequest};
pub use app::{App, Tab};

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
use time::OffsetDateTime;
use tokio::sync::mpsc;

const TICK: Duration = Duration::from_millis(200);

/// `HH:MM:SS` of a time, for logs.
pub fn clock(t: OffsetDateTime) -> String {
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

/// Give the terminal back: leave the alternate screen, show the cursor, stop raw mode.
/// Safe to call more than once.
pub fn restore_terminal() {
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

/// Run a command to completion (in a blocking thread in the app; directly in tests).
/// Returns the action that reports its result.
pub fn perform(ws: &Workspace, cmd: Command) -> Option<Action> {
    match cmd {
        Command::LoadList => {
            let t = Instant::now();
            Some(match ws.list() {
                Ok((metas, damaged)) => {
                    let rows = ops::tree(metas, OffsetDateTime::now_utc());
                    Action::Listed {
                        rows,
                        damaged: damaged.len(),
                        took: t.elapsed(),
                    }
                }
                Err(e) => Action::ListFailed(e.to_string()),
            })
        }
        Command::LoadReport(name) => {
            let report = ops::report(ws, &name)
                .map(Box::new)
                .map_err(|e| e.to_string());
            Some(Action::ReportLoaded { name, report })
        }
        Command::Create(req) => {
            let r = match &req {
                CreateRequest::Ca(r) => ops::new_ca(ws, r),
                CreateRequest::Devices(r) => ops::new_devices(ws, r),
            };
            Some(Action::Created(r.map_err(|e| e.to_string())))
        }
        Command::MakeVerification { issuer, code, out } => {
            let r = (|| -> Result<_, String> {
                if let Some(dir) = out.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                let created = ops::new_verification(ws, &issuer, &code, &out, None)
                    .map_err(|e| e.to_string())?;
                let pem = std::fs::read_to_string(&out)
                    .map_err(|e| format!("cannot read back {}: {e}", out.display()))?;
                Ok((created, pem))
            })();
            Some(Action::Verified(r))
        }
        Command::Delete(name) => {
            let result = ws.remove(&name).map_err(|e| e.to_string());
            Some(Action::Deleted { name, result })
        }
        Command::Copy(_) => None,
    }
}

/// Run `first` and every command that follows from it to completion, synchronously: how
/// tests and benches drive the app without a loop or a terminal.
pub fn settle(app: &mut App, ws: &Workspace, first: Option<Command>) {
    let mut queue: std::collections::VecDeque<Command> = first.into_iter().collect();
    while let Some(c) = queue.pop_front() {
        if let Some(a) = perform(ws, c) {
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
fn spawn(ws: &Arc<Workspace>, tx: &mpsc::UnboundedSender<Action>, cmd: Command) {
    if let Command::Copy(text) = &cmd {
        let mut out = io::stdout();
        let _ = out.write_all(osc52(text).as_bytes());
        let _ = out.flush();
        return;
    }
    let ws = Arc::clone(ws);
    let tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        if let Some(a) = perform(&ws, cmd) {
            let _ = tx.send(a);
        }
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

/// Open the TUI on `ws_root` at `tab`; returns when the user quits.
pub fn run(ws_root: &std::path::Path, tab: Tab) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if !io::stdout().is_terminal() || !io::stdin().is_terminal() {
        anyhow::bail!(
            "the TUI needs a terminal; use the subcommands (`chainsmith --help`) in scripts"
        );
    }
    let ws = Workspace::open_or_create(ws_root)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    install_panic_hook();
    let guard = TerminalGuard::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    let result = rt.block_on(event_loop(&mut terminal, Arc::new(ws), tab));
    drop(terminal);
    drop(guard);
    rt.shutdown_timeout(Duration::from_millis(100));
    result
}

async fn event_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    ws: Arc<Workspace>,
    tab: Tab,
) -> anyhow::Result<()> {
    let size = terminal.size()?;
    let mut app = App::new(
        ws.root().to_path_buf(),
        theme::Theme::from_env(),
        OffsetDateTime::now_utc(),
        (size.width, size.height),
    );
    app.tab = tab;
    let (tx, mut rx) = mpsc::unbounded_channel::<Action>();
    if let Some(c) = app.start() {
        spawn(&ws, &tx, c);
    }
    if std::env::var_os("CHAINSMITH_TUI_TEST_PANIC").is_some() {
        // For the terminal-restore test: a background task that panics.
        tokio::spawn(async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            panic!("test panic in a background task");
        });
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
            _ = tick.tick() => Action::Tick(OffsetDateTime::now_utc()),
        };
        for c in drain(&mut app, first, &mut rx) {
            spawn(&ws, &tx, c);
        }
        if app.quit {
            break;
        }
        terminal.draw(|f| ui::render(f, &app))?;
    }
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
