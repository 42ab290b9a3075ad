//! The app's state and `update`: every key, mouse event and background result goes through
//! [`App::update`], which changes state and returns the side effect for the loop to run.
//! No terminal, no disk, no network here, so all of it is testable with plain values.

use super::action::Action;
use super::command::Command;
use super::connect::ConnectState;
use super::dialog::{Dialog, DialogReply, VerifyResult};
use super::fleet::{FleetKeyContext, FleetState};
use super::forms::Purpose;
use super::guide::GuideState;
pub use super::help::KEYMAP;
use super::help::{help_max_scroll, help_page};
use super::hub::HubState;
use super::layout::{self, MIN_HEIGHT, MIN_WIDTH, Tab};
use super::pki::{PkiKeyContext, PkiState};
use super::request::Request;
pub use super::theme::Level;
use super::theme::Theme;
use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use std::path::PathBuf;
use time::OffsetDateTime;

/// Everything the TUI shows and remembers: each tab's state, the open dialog, the status
/// line. [`App::update`] is the only thing that changes it; the frame (`ui::render`) draws it.
pub struct App {
    /// The workspace directory (shown in the PKI footer; where exports and verification
    /// certificates go by default).
    pub ws_root: PathBuf,
    /// Colour or plain (`NO_COLOR`).
    pub theme: Theme,
    /// The clock as of the last tick: "days left" and the guide's re-reads follow it.
    pub now: OffsetDateTime,
    /// The terminal, in columns and rows.
    pub size: (u16, u16),
    /// The tab shown.
    pub tab: Tab,
    /// The key help overlay (`?`) is open.
    pub help: bool,
    /// First help row shown (the overlay scrolls when the terminal is short).
    pub(crate) help_scroll: u16,
    /// The user quit: the loop stops after this action.
    pub quit: bool,
    /// Frame counter of the busy spinner; advances on ticks while something runs.
    pub spinner: usize,
    /// The status line's message; replaced by the next one.
    pub status: Option<(Level, String)>,
    /// The open dialog (new, verify, delete, a form, a message), which takes the keys.
    pub dialog: Option<Dialog>,
    /// The PKI tab: the tree, its filter and selection, the reports.
    pub pki: PkiState,
    /// The Hub tab: the hub's state, registry, DPS and log.
    pub hub: HubState,
    /// The Connect tab: target, device, the running or last test.
    pub connect: ConnectState,
    /// The Fleet view on the Connect tab.
    pub fleet: FleetState,
    /// The Guide tab: track, step, scroll, the facts read in the background.
    pub guide: GuideState,
    /// A workspace read is running (a second one waits, see `list_queued`).
    pub list_inflight: bool,
    /// A read was asked for while one ran: start it when that one ends.
    list_queued: bool,
    /// When the workspace was last read (the guide re-reads it when stale).
    last_list: Option<OffsetDateTime>,
}

impl App {
    /// An app on the workspace at `ws_root`, on the PKI tab, for a terminal of `size`
    /// (columns, rows); [`App::start`] gives the first command.
    pub fn new(ws_root: PathBuf, theme: Theme, now: OffsetDateTime, size: (u16, u16)) -> App {
        App {
            ws_root,
            theme,
            now,
            size,
            tab: Tab::Pki,
            help: false,
            help_scroll: 0,
            quit: false,
            spinner: 0,
            status: None,
            dialog: None,
            pki: PkiState::default(),
            hub: HubState::new(),
            connect: ConnectState::default(),
            fleet: FleetState::default(),
            guide: GuideState::default(),
            list_inflight: false,
            list_queued: false,
            last_list: None,
        }
    }

    /// The first command: read the workspace.
    pub fn start(&mut self) -> Option<Command> {
        self.list_inflight = true;
        Some(Command::LoadList)
    }

    /// How often the guide re-reads the workspace: every 3 s, less often when a read is slow
    /// (a 100,000-entity workspace takes seconds to read).
    fn refresh_every(&self) -> time::Duration {
        let took = self.pki.load_took.unwrap_or_default();
        time::Duration::seconds(3)
            .max(time::Duration::try_from(took * 10).unwrap_or(time::Duration::MAX))
    }

    fn request_list(&mut self) -> Option<Command> {
        if self.list_inflight {
            self.list_queued = true;
            return None;
        }
        self.list_inflight = true;
        Some(Command::LoadList)
    }

    fn tree_height(&self) -> usize {
        layout::areas(self.size).tree.height.saturating_sub(2) as usize
    }

    fn say(&mut self, level: Level, text: impl Into<String>) {
        self.status = Some((level, text.into()));
    }

    /// Below the minimum size only the "terminal too small" notice is drawn.
    fn too_small(&self) -> bool {
        self.size.0 < MIN_WIDTH || self.size.1 < MIN_HEIGHT
    }

    /// Something runs in the background (a read, a key generation, a form, the hub, a test):
    /// the spinner turns while it does.
    pub fn busy(&self) -> bool {
        !self.pki.loaded
            || matches!(&self.dialog, Some(Dialog::New(f)) if f.busy.is_some())
            || matches!(&self.dialog, Some(Dialog::Verify(v)) if v.busy)
            || self.pki.report_inflight.is_some()
            || matches!(&self.dialog, Some(Dialog::Form(f)) if f.busy.is_some())
            || self.hub.proving
            || self.hub.dps_busy
            || self.hub.pending
            || self.connect.running
    }

    /// What the guide checks besides the entities: hub registry, last test, renewals.
    pub fn guide_facts(&self) -> super::guide::Facts {
        super::guide::Facts {
            hub_cas: self
                .hub
                .cas
                .iter()
                .map(|c| (c.name.clone(), c.verified))
                .collect(),
            hub_devices: self
                .hub
                .devices
                .iter()
                .map(|d| (d.id.clone(), d.enabled))
                .collect(),
            connected: {
                let mut c = self.guide.passed.clone();
                if let Some(d) = &self.connect.passed {
                    c.retain(|x| x != d);
                    c.push(d.clone());
                }
                c
            },
            renewed: self.guide.renewed.clone(),
            dps: self.hub.dps.clone().unwrap_or_default(),
            aws: self.guide.aws.clone(),
        }
    }

    /// Apply one action to the state; the command it returns is the side effect for the loop
    /// to run (its result comes back as another action).
    pub fn update(&mut self, action: Action) -> Option<Command> {
        // What the user does to the guide's keys leaves its selection alone; what the workspace
        // reports (and entering the tab) moves it to the first step not done, until a step is
        // picked.
        let follows = !matches!(
            action,
            Action::Key(_) | Action::Mouse(_) | Action::Paste(_) | Action::Resize(..)
        );
        let was = self.tab;
        let cmd = self.apply(action);
        let entered = was != Tab::Guide && self.tab == Tab::Guide;
        if self.tab == Tab::Guide && !self.guide.picked && (follows || entered) {
            self.guide.selected = super::guide::first_unfinished(
                self.guide.track,
                &self.pki.rows,
                &self.guide_facts(),
            );
        }
        cmd
    }

    fn apply(&mut self, action: Action) -> Option<Command> {
        match action {
            Action::Tick(now) => self.on_tick(now),
            Action::Resize(w, h) => {
                self.size = (w, h);
                self.help_scroll = self.help_scroll.min(help_max_scroll(self.size));
                let hgt = self.tree_height();
                self.pki.scroll_into_view(hgt);
                None
            }
            Action::Listed {
                rows,
                damaged,
                took,
            } => self.on_listed(rows, damaged, took),
            Action::ListFailed(e) => {
                self.list_inflight = false;
                self.pki.loaded = true;
                self.pki.load_error = Some(e);
                None
            }
            Action::ReportLoaded { name, report } => self
                .pki
                .report_loaded(name, report)
                .map(Command::LoadReport),
            Action::Created(result) => self.on_created(result),
            Action::Verified(result) => self.on_verified(result),
            Action::Deleted { name, result } => match result {
                Ok(()) => {
                    self.say(Level::Ok, format!("deleted {name}"));
                    self.request_list()
                }
                Err(e) => {
                    self.say(Level::Error, e);
                    None
                }
            },
            Action::FormDone(result) => self.on_form_done(result),
            Action::Renewed(names) => {
                self.guide.renewed = names;
                None
            }
            Action::Passed(names) => {
                self.guide.passed = names;
                None
            }
            Action::GuideAws(facts) => {
                self.guide.aws = *facts;
                None
            }
            Action::Hub(a) => self.on_hub(a),
            Action::Connect(a) => self.on_connect(a),
            Action::Paste(_) if self.too_small() => None,
            Action::Paste(text) => self.on_paste(text),
            Action::Fleet(a) => {
                let ended = matches!(a, super::fleet::FleetAction::Ended(_));
                self.fleet.apply(a);
                if ended {
                    match (&self.fleet.error, &self.fleet.summary) {
                        (Some(e), _) => self.say(Level::Error, format!("fleet: {e}")),
                        (None, Some(s)) => self.say(Level::Ok, format!("fleet: {s}")),
                        _ => {}
                    }
                }
                None
            }
            Action::Key(k) => self.key(k),
            Action::Mouse(m) => self.mouse(m),
        }
    }

    /// Advance the clock; re-read what the shown tab watches when it is stale.
    fn on_tick(&mut self, now: OffsetDateTime) -> Option<Command> {
        self.now = now;
        if self.busy() {
            self.spinner = self.spinner.wrapping_add(1);
        }
        // The guide checks the real workspace: re-read it now and then while it is shown,
        // so steps done with the CLI in another terminal tick off too.
        let stale = self
            .last_list
            .is_none_or(|t| (now - t) >= self.refresh_every());
        if self.tab == Tab::Guide && stale && !self.list_inflight {
            self.last_list = Some(now);
            return self.request_list();
        }
        // The Hub tab re-reads the registry the same way.
        if self.tab == Tab::Hub
            && self
                .hub
                .last_read
                .is_none_or(|t| (now - t) >= time::Duration::seconds(3))
        {
            self.hub.last_read = Some(now);
            return Some(Command::HubRegistry);
        }
        // ...and the hub registry and renewals, on the tick after.
        let facts_stale = self
            .guide
            .last_facts
            .is_none_or(|t| (now - t) >= self.refresh_every());
        if self.tab == Tab::Guide && facts_stale && self.pki.loaded {
            self.guide.last_facts = Some(now);
            return Some(Command::GuideFacts);
        }
        None
    }

    /// The workspace was read.
    fn on_listed(
        &mut self,
        rows: Vec<crate::ops::TreeRow>,
        damaged: usize,
        took: std::time::Duration,
    ) -> Option<Command> {
        self.list_inflight = false;
        self.last_list = Some(self.now);
        self.pki.damaged = damaged;
        self.pki.load_took = Some(took);
        self.pki.load_error = None;
        self.pki.set_rows(rows);
        let h = self.tree_height();
        self.pki.scroll_into_view(h);
        if damaged > 0 {
            self.say(
                Level::Warn,
                format!("{damaged} damaged entities skipped; `chainsmith list` names them"),
            );
        }
        if std::mem::take(&mut self.list_queued) {
            return self.request_list();
        }
        self.pki.want_report().map(Command::LoadReport)
    }

    /// A key was generated and the certificate issued (or not).
    fn on_created(&mut self, result: Result<crate::ops::Created, String>) -> Option<Command> {
        let Some(Dialog::New(form)) = &mut self.dialog else {
            // The form was closed while the key was generated: say how it ended.
            match &result {
                Ok(c) => {
                    let names: Vec<&str> = c.entities.iter().map(|m| m.name.as_str()).collect();
                    self.say(Level::Ok, format!("created {}", names.join(", ")));
                }
                Err(e) => self.say(Level::Error, e.clone()),
            }
            return self.request_list();
        };
        form.busy = None;
        match result {
            Ok(created) => {
                let names: Vec<&str> = created.entities.iter().map(|m| m.name.as_str()).collect();
                let first = created
                    .entities
                    .first()
                    .map(|m| (m.kind.as_str(), m.name.clone()));
                let mut msg = match &first {
                    Some((kind, _)) if names.len() == 1 => {
                        format!("created {kind} {}", names[0])
                    }
                    _ => format!("created {} entities", names.len()),
                };
                for w in &created.warnings {
                    msg.push_str(&format!("; warning: {w}"));
                }
                self.pki.reselect = first.map(|(_, n)| n);
                self.pki.filter.clear();
                self.dialog = None;
                self.say(
                    if created.warnings.is_empty() {
                        Level::Ok
                    } else {
                        Level::Warn
                    },
                    msg,
                );
                self.request_list()
            }
            Err(e) => {
                form.error = Some(e);
                None
            }
        }
    }

    /// The verification certificate was made (or not).
    fn on_verified(
        &mut self,
        result: Result<(crate::ops::Created, String), String>,
    ) -> Option<Command> {
        let Some(Dialog::Verify(v)) = &mut self.dialog else {
            return None;
        };
        v.busy = false;
        match result {
            Ok((created, pem)) => {
                let entity = created
                    .entities
                    .first()
                    .map(|m| m.name.clone())
                    .unwrap_or_default();
                let path = created.file.clone().unwrap_or_default();
                let said = format!("verification certificate {}", path.display());
                v.result = Some(VerifyResult {
                    path,
                    entity,
                    pem,
                    scroll: 0,
                });
                self.say(Level::Ok, said);
                self.request_list()
            }
            Err(e) => {
                v.error = Some(e);
                None
            }
        }
    }

    /// An export, import, renew or revoke finished.
    fn on_form_done(&mut self, result: Result<Vec<String>, String>) -> Option<Command> {
        let Some(Dialog::Form(form)) = &mut self.dialog else {
            match result {
                Ok(lines) => self.say(Level::Ok, lines.join("; ")),
                Err(e) => self.say(Level::Error, e),
            }
            return self.request_list();
        };
        form.busy = None;
        // The status bar says how it ended too, so it outlives the dialog.
        let said = match (&result, &form.purpose) {
            (Ok(_), Purpose::Export { name }) => (
                Level::Ok,
                format!("exported {name}; the dialog lists the files written"),
            ),
            (Ok(lines), _) => (Level::Ok, lines.first().cloned().unwrap_or_default()),
            (Err(e), _) => (Level::Error, e.clone()),
        };
        match result {
            Ok(lines) => {
                form.result = Some(lines);
                self.say(said.0, said.1);
                self.request_list()
            }
            Err(e) => {
                form.error = Some(e);
                self.say(said.0, said.1);
                None
            }
        }
    }

    /// What the local hub did.
    fn on_hub(&mut self, a: super::hub::HubAction) -> Option<Command> {
        use super::hub::{HubAction as H, LogKind};
        // Every hub action leaves a line in the event log and in the status bar.
        let notes: Vec<(Level, String)> = match &a {
            H::Started { port } => {
                vec![(Level::Ok, format!("local hub running on 127.0.0.1:{port}"))]
            }
            H::Stopped => vec![(Level::Info, "local hub stopped".into())],
            H::Failed(e) => {
                vec![(Level::Error, format!("the local hub did not start: {e}"))]
            }
            // A registry that cannot be read is re-read every few seconds: say it once.
            H::Error(e) if self.hub.error.as_deref() != Some(e) => {
                vec![(Level::Error, e.clone())]
            }
            H::Done(m) => vec![(Level::Ok, m.clone())],
            H::Proved(Ok(steps)) => steps.iter().map(|s| (Level::Ok, s.clone())).collect(),
            H::Proved(Err(e)) => {
                vec![(Level::Error, format!("proof of possession failed: {e}"))]
            }
            H::DpsDone(Ok(steps)) => steps.iter().map(|s| (Level::Ok, s.clone())).collect(),
            H::DpsDone(Err(e)) => vec![(Level::Error, format!("DPS refused: {e}"))],
            _ => vec![],
        };
        let started = matches!(a, H::Started { .. });
        self.hub.apply(a);
        for (level, text) in notes {
            let kind = match level {
                Level::Ok => LogKind::Changed,
                Level::Error | Level::Warn => LogKind::Refused,
                Level::Info => LogKind::Info,
            };
            self.hub.note(self.now, kind, text.clone());
            self.say(level, text);
        }
        started.then_some(Command::HubRegistry)
    }

    /// A step of the connection test.
    fn on_connect(&mut self, a: super::connect::ConnectAction) -> Option<Command> {
        let was_running = self.connect.running;
        self.connect.apply(a);
        if was_running && !self.connect.running {
            let c = &self.connect;
            let device = c.device.clone().unwrap_or_default();
            match (&c.diagnosis, &c.summary) {
                (Some(d), _) => {
                    // The box on the tab has room for the whole diagnosis; one line here.
                    let first = d.lines().next().unwrap_or_default();
                    let msg = match first.split_once(" failed:") {
                        Some((what, _)) => {
                            format!("{device}: {what} failed; the Diagnosis box says why")
                        }
                        None => format!("{device}: {first}"),
                    };
                    self.say(Level::Error, msg);
                }
                (None, Some(sm)) => {
                    let level = if c.passed.as_deref() == Some(device.as_str()) {
                        Level::Ok
                    } else {
                        Level::Error
                    };
                    let sm = sm.trim_start_matches(['✓', '✗', ' ']).to_string();
                    self.say(level, format!("{device}: {sm}"));
                }
                (None, None) => self.say(Level::Info, format!("{device}: test ended")),
            }
        }
        None
    }

    /// Pasted text goes to the open form or the filter.
    fn on_paste(&mut self, text: String) -> Option<Command> {
        match &mut self.dialog {
            Some(Dialog::New(f)) => f.paste(&text),
            Some(Dialog::Form(f)) => f.paste(&text),
            Some(Dialog::Verify(v)) if v.result.is_none() => {
                v.code.push_str(text.trim());
                v.validate_inline();
            }
            _ if self.pki.filtering => {
                let h = self.tree_height();
                self.pki.paste_filter(&text, h);
            }
            _ => {}
        }
        None
    }

    fn key(&mut self, k: KeyEvent) -> Option<Command> {
        if k.kind != KeyEventKind::Press {
            return None;
        }
        if k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL) {
            self.quit = true;
            return None;
        }
        if self.too_small() {
            // Nothing is drawn but the "too small" notice: a key must not act unseen. q quits
            // at once (a running hub is stopped on the way out), as the notice says.
            if k.code == KeyCode::Char('q') {
                self.quit = true;
            }
            return None;
        }
        if self.help {
            let last = help_max_scroll(self.size);
            match k.code {
                KeyCode::Down | KeyCode::Char('j') => {
                    self.help_scroll = (self.help_scroll + 1).min(last)
                }
                KeyCode::Up | KeyCode::Char('k') => {
                    self.help_scroll = self.help_scroll.saturating_sub(1)
                }
                KeyCode::PageDown | KeyCode::Char(' ') => {
                    self.help_scroll = (self.help_scroll + help_page(self.size)).min(last)
                }
                KeyCode::PageUp => {
                    self.help_scroll = self.help_scroll.saturating_sub(help_page(self.size))
                }
                _ => self.help = false,
            }
            return None;
        }
        if self.dialog.is_some() {
            return self.dialog_key(k);
        }
        if self.focused_takes_every_key() {
            return self.tab_key(k);
        }
        match k.code {
            KeyCode::Char('q') => {
                if self.hub.running.is_some() || self.connect.running || self.fleet.running {
                    self.dialog = Some(Dialog::Message {
                        title: "Quit?".into(),
                        text: "The local hub or a connection test is running; press q again to stop it and quit.".into(),
                    });
                } else {
                    self.quit = true;
                }
                return None;
            }
            KeyCode::Char('?') => {
                self.help = true;
                self.help_scroll = 0;
                return None;
            }
            KeyCode::Char(c @ '1'..='4') => {
                self.tab = Tab::ALL[(c as u8 - b'1') as usize];
                return self.entered_tab();
            }
            KeyCode::Char('g') => {
                self.tab = Tab::Guide;
                return self.entered_tab();
            }
            _ => {}
        }
        self.tab_key(k)
    }

    /// The shown tab is typing into a filter or a list: its keys are text, even `q` and `1`.
    fn focused_takes_every_key(&self) -> bool {
        match self.tab {
            Tab::Pki => self.pki.takes_every_key(),
            Tab::Hub => self.hub.takes_every_key(),
            Tab::Connect => self.fleet.takes_every_key(),
            Tab::Guide => false,
        }
    }

    /// Hand a key to the shown tab (on the Connect tab: the Fleet view when shown, `f`
    /// switches), with what it needs to know of the others, and carry out its request.
    fn tab_key(&mut self, k: KeyEvent) -> Option<Command> {
        let request = match self.tab {
            Tab::Pki => {
                let cx = PkiKeyContext {
                    height: self.tree_height(),
                    now: self.now,
                    ws_root: &self.ws_root,
                };
                self.pki.key(k, &cx)
            }
            Tab::Hub => {
                let selected = self.pki.selected_row().map(|r| &r.meta);
                self.hub.key(k, selected)
            }
            Tab::Connect if !self.fleet.editing && k.code == KeyCode::Char('f') => {
                self.fleet.shown = !self.fleet.shown;
                None
            }
            Tab::Connect if self.fleet.editing || self.fleet.shown => {
                let cx = FleetKeyContext {
                    selected: self.pki.selected_row().map(|r| &r.meta),
                    target: &self.connect.target,
                    transport: self.connect.transport,
                    hub_port: self.hub.port,
                };
                self.fleet.key(k, &cx)
            }
            Tab::Connect => self.connect.key(k, self.hub.port),
            Tab::Guide => self.guide.key(k),
        };
        self.carry_out(request?)
    }

    /// Do what a tab asked beyond its own state; the command, if any, goes to the loop.
    fn carry_out(&mut self, request: Request) -> Option<Command> {
        match request {
            Request::Run(cmd) => Some(cmd),
            Request::Say(level, text) => {
                self.say(level, text);
                None
            }
            Request::SayAndRun(level, text, cmd) => {
                self.say(level, text);
                Some(cmd)
            }
            Request::Open(dialog) => {
                self.dialog = Some(dialog);
                None
            }
            Request::Test(device) => {
                // A running test keeps its device; the tab shows it.
                if !self.connect.running {
                    self.connect.device = Some(device);
                }
                self.tab = Tab::Connect;
                None
            }
        }
    }

    fn entered_tab(&mut self) -> Option<Command> {
        // The last action's line belonged to the tab left; the footer shows this tab's keys.
        self.status = None;
        if self.tab == Tab::Hub {
            self.hub.last_read = Some(self.now);
            return Some(Command::HubRegistry);
        }
        if self.tab == Tab::Guide {
            self.last_list = Some(self.now);
            return self.request_list();
        }
        None
    }

    /// A key while a dialog is open: the dialog takes it; the app does what it asks.
    fn dialog_key(&mut self, k: KeyEvent) -> Option<Command> {
        let reply = self.dialog.as_mut()?.key(k, &self.ws_root);
        match reply {
            DialogReply::Stay => None,
            DialogReply::Run(cmd) => Some(cmd),
            DialogReply::SayAndRun(level, text, cmd) => {
                self.say(level, text);
                Some(cmd)
            }
            close => {
                self.dialog = None;
                match close {
                    DialogReply::CloseAndPass => self.key(k),
                    DialogReply::CloseAndRun(cmd) => Some(cmd),
                    DialogReply::Quit => {
                        self.quit = true;
                        None
                    }
                    DialogReply::Target(target, transport) => {
                        self.connect.target = target;
                        self.connect.transport = transport;
                        None
                    }
                    DialogReply::HubPort(port) => {
                        self.hub.port = port;
                        None
                    }
                    _ => None,
                }
            }
        }
    }

    fn mouse(&mut self, m: MouseEvent) -> Option<Command> {
        if self.too_small() {
            return None;
        }
        let a = layout::areas(self.size);
        let inside = |r: ratatui::layout::Rect| {
            m.column >= r.x && m.column < r.x + r.width && m.row >= r.y && m.row < r.y + r.height
        };
        match m.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                if self.help {
                    self.help = false;
                    return None;
                }
                if self.dialog.is_some() {
                    return None;
                }
                if m.row == a.tabs.y {
                    if let Some((tab, _)) = layout::tab_ranges()
                        .into_iter()
                        .find(|(_, r)| r.contains(&m.column))
                    {
                        self.tab = tab;
                        return self.entered_tab();
                    }
                    return None;
                }
                match self.tab {
                    Tab::Pki if inside(a.tree) && m.row > a.tree.y => {
                        let request = self.pki.click_row((m.row - a.tree.y - 1) as usize);
                        return self.carry_out(request?);
                    }
                    Tab::Guide
                        if m.row > a.body.y
                            && m.column < a.body.x + super::guide::list_width(self.size.0) =>
                    {
                        self.guide.click_row((m.row - a.body.y - 1) as usize);
                    }
                    _ => {}
                }
                None
            }
            MouseEventKind::ScrollDown | MouseEventKind::ScrollUp => {
                let d: isize = if m.kind == MouseEventKind::ScrollDown {
                    3
                } else {
                    -3
                };
                if self.dialog.is_some() || self.tab != Tab::Pki {
                    return None;
                }
                if inside(a.tree) {
                    let h = self.tree_height();
                    self.pki.move_by(d, h);
                    return self.pki.want_report().map(Command::LoadReport);
                } else if inside(a.details) {
                    self.pki.detail_scroll = (self.pki.detail_scroll as isize + d).max(0) as u16;
                }
                None
            }
            _ => None,
        }
    }
}
