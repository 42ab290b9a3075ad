//! The app's state and `update`: every key, mouse event and background result goes through
//! [`App::update`], which changes state and returns the side effect for the loop to run.
//! No terminal, no disk, no network here, so all of it is testable with plain values.

use super::action::{Action, Command};
use super::connect::ConnectState;
use super::dialog::{
    Dialog, FormOutcome, NewForm, NewKind, VerifyDialog, VerifyResult, verification_out,
};
use super::fleet::FleetState;
use super::forms::{Form, Outcome, Purpose};
use super::guide::GuideState;
use super::hub::HubState;
use super::pki::PkiState;
use super::theme::Theme;
use super::ui;
use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use std::path::PathBuf;
use time::OffsetDateTime;

/// The four screens along the top row, chosen with `1`–`4` or a click.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    /// `1`: the certificate tree and the selected entity's details.
    Pki,
    /// `2`: the in-process local hub, its registry, DPS and event log.
    Hub,
    /// `3`: the connection test of one device (or the Fleet view, `f`).
    Connect,
    /// `4`: the guided workshop, each step checked against the workspace.
    Guide,
}

impl Tab {
    /// The tabs in the order of the top row and of the keys `1`–`4`.
    pub(crate) const ALL: [Tab; 4] = [Tab::Pki, Tab::Hub, Tab::Connect, Tab::Guide];
    /// The title on the top row, with its key: "1 PKI".
    pub(crate) fn title(self) -> &'static str {
        match self {
            Tab::Pki => "1 PKI",
            Tab::Hub => "2 Hub",
            Tab::Connect => "3 Connect",
            Tab::Guide => "4 Guide",
        }
    }
}

/// How the status line marks its message (a symbol as well as a colour).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Something is under way or worth knowing (`·`).
    Info,
    /// What the user asked for was done (`✓`).
    Ok,
    /// Not done, and why: nothing selected, a job already running (`!`).
    Warn,
    /// An engine call failed; the message says what to do (`✗`).
    Error,
}

/// Every key, for the help overlay and the docs: (where it works, the keys, what they do).
pub const KEYMAP: &[(&str, &str, &str)] = &[
    (
        "anywhere",
        "1 2 3 4",
        "tab: PKI, Hub, Connect, Guide (or click it)",
    ),
    ("anywhere", "g  ?", "guided workshop (tab 4), this help"),
    (
        "anywhere",
        "q  Ctrl-C",
        "quit (q asks while a hub or test runs)",
    ),
    (
        "PKI",
        "↑ ↓ j k PgUp PgDn",
        "move / page in the tree (Home End, wheel, click)",
    ),
    ("PKI", "J K", "scroll the details (wheel over them too)"),
    ("PKI", "/", "filter by name or CN (Enter keeps, Esc clears)"),
    ("PKI", "n", "new root / intermediate / device / self-signed"),
    ("PKI", "v", "verification certificate for a hub's code"),
    (
        "PKI",
        "d  c",
        "delete (asks first), connection test of a device",
    ),
    (
        "PKI",
        "e",
        "export: formats, PFX password (masked), directory",
    ),
    (
        "PKI",
        "i  r  x",
        "import, renew, revoke (Azure ignores CRLs)",
    ),
    (
        "forms",
        "Tab ↑ ↓ ← → Space",
        "field, choice, toggle a format",
    ),
    ("forms", "Enter  Esc", "run / cancel"),
    (
        "verify",
        "y",
        "copy the PEM (OSC 52); the file path is shown",
    ),
    (
        "Hub",
        "s  p  a  o",
        "hub start/stop, port; register the device, on/off",
    ),
    (
        "Hub",
        "v  V",
        "prove the PKI-selected CA to the hub / to DPS",
    ),
    (
        "Hub",
        "G  e",
        "DPS group from the PKI CA, enroll the PKI device",
    ),
    (
        "Hub",
        "↑ ↓ PgUp PgDn  /",
        "scroll the device list, filter it by id",
    ),
    (
        "Connect",
        "Enter  t  f",
        "run the test, type the target, fleet view",
    ),
    (
        "Fleet",
        "r Enter  s  f",
        "type devices and run them, stop, single test",
    ),
    ("Guide", "↑ ↓  J K", "pick a step, scroll its text"),
    (
        "Guide",
        "y  Y  t",
        "copy the step's commands (OSC 52), switch track",
    ),
];

/// Everything the TUI shows and remembers: each tab's state, the open dialog, the status
/// line. [`App::update`] is the only thing that changes it; [`super::ui::render`] draws it.
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
        Some(Command::OpenList)
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
        ui::areas(self.size).tree.height.saturating_sub(2) as usize
    }

    fn say(&mut self, level: Level, text: impl Into<String>) {
        self.status = Some((level, text.into()));
    }

    /// Below the minimum size only the "terminal too small" notice is drawn.
    fn too_small(&self) -> bool {
        self.size.0 < ui::MIN_WIDTH || self.size.1 < ui::MIN_HEIGHT
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
        }
    }

    fn selected_device(&self) -> Option<String> {
        self.pki
            .selected_row()
            .filter(|r| r.meta.kind == crate::store::Kind::Device)
            .map(|r| r.meta.name.clone())
    }

    /// The Fleet view's keys: Enter runs the typed range or the PKI selection (a CA: every
    /// device under it), s stops, r types a range.
    fn fleet_key(&mut self, k: KeyEvent) -> Option<Command> {
        use super::fleet::Intent;
        match self.fleet.key(k)? {
            Intent::Stop => Some(Command::StopFleet),
            Intent::Start => {
                let typed = self.fleet.patterns();
                let (patterns, issuer, label) = if !typed.is_empty() {
                    let label = typed.join(" ");
                    (typed, None, label)
                } else {
                    match self.pki.selected_row().map(|r| &r.meta) {
                        Some(m) if m.kind.is_ca() => (
                            vec![],
                            Some(m.name.clone()),
                            format!("every device under {}", m.name),
                        ),
                        Some(m) if m.kind == crate::store::Kind::Device => {
                            (vec![m.name.clone()], None, m.name.clone())
                        }
                        _ => {
                            self.say(
                                Level::Warn,
                                "select a CA or a device on the PKI tab, or press r and type a range",
                            );
                            return None;
                        }
                    }
                };
                // The fleet engine speaks MQTT over TLS only (RunFleet carries no transport):
                // a Protocol chosen for the single test must not look as if it applied.
                match self.connect.transport {
                    crate::mqtt::Transport::Mqtt => {
                        self.say(Level::Info, format!("fleet: starting {label}…"))
                    }
                    other => self.say(
                        Level::Warn,
                        format!(
                            "fleet: starting {label}; the fleet runs over MQTT (TLS), \
                             the Protocol field ({}) applies to the single test",
                            other.as_str()
                        ),
                    ),
                }
                self.fleet.begin(label);
                Some(Command::RunFleet {
                    patterns,
                    issuer,
                    target: self.connect.target.clone(),
                    hub_port: self.hub.port,
                })
            }
        }
    }

    fn start_test(&mut self) -> Option<Command> {
        if self.connect.running {
            self.say(Level::Warn, "a test is running; one at a time");
            return None;
        }
        let Some(device) = self.connect.device.clone() else {
            self.say(
                Level::Warn,
                "select a device on the PKI tab and press c first",
            );
            return None;
        };
        self.connect.begin();
        self.say(
            Level::Info,
            format!("testing {device} against {}…", self.connect.target.label()),
        );
        Some(Command::RunTest {
            device,
            target: self.connect.target.clone(),
            transport: self.connect.transport,
            hub_port: self.hub.port,
        })
    }

    fn submit_form(&mut self) -> Option<Command> {
        let Some(Dialog::Form(form)) = &mut self.dialog else {
            return None;
        };
        let cmd = match &form.purpose {
            Purpose::Export { name } => match form.export_options() {
                Ok(opts) => Command::Export {
                    name: name.clone(),
                    opts,
                },
                Err(e) => {
                    form.error = Some(e);
                    return None;
                }
            },
            Purpose::Import => match form.import_request() {
                Ok(r) => Command::Import(r),
                Err(e) => {
                    form.error = Some(e);
                    return None;
                }
            },
            Purpose::Renew { name } => {
                let days = form.value("Days").trim();
                let days = if days.is_empty() {
                    None
                } else {
                    match days.parse::<u32>() {
                        Ok(d) if d > 0 => Some(d),
                        _ => {
                            form.error = Some(format!(
                                "days \"{days}\" is not a whole number above 0; leave it empty for the profile's default"
                            ));
                            return None;
                        }
                    }
                };
                Command::Renew(crate::ops::lifecycle::RenewRequest {
                    name: name.clone(),
                    days,
                    rekey: form.choice("Key") == 1,
                    key: None,
                    ..Default::default()
                })
            }
            Purpose::Revoke { name } => {
                let choice = |i: usize| match form.fields.get(i).map(|f| &f.kind) {
                    Some(super::forms::FieldKind::Choice(o, i)) => Some(o[*i]),
                    _ => None,
                };
                let reason = choice(0).unwrap_or("unspecified").to_string();
                let disable_on_hub = choice(1).is_some_and(|c| c.starts_with("disable"));
                Command::Revoke {
                    name: name.clone(),
                    reason,
                    disable_on_hub,
                }
            }
            Purpose::Target => match super::connect::ConnectTarget::parse(form.value("Target")) {
                Ok(t) => {
                    self.connect.target = t;
                    self.connect.transport = crate::mqtt::Transport::ALL[form
                        .choice("Protocol")
                        .min(crate::mqtt::Transport::ALL.len() - 1)];
                    self.dialog = None;
                    return None;
                }
                Err(e) => {
                    form.error = Some(e);
                    return None;
                }
            },
            Purpose::HubPort => match form.value("Port").trim().parse::<u16>() {
                Ok(p) => {
                    self.hub.port = p;
                    self.dialog = None;
                    return None;
                }
                Err(_) => {
                    form.error = Some(format!(
                        "port \"{}\" is not a number from 0 to 65535",
                        form.value("Port").trim()
                    ));
                    return None;
                }
            },
        };
        form.busy = Some(match &cmd {
            Command::Export { name, .. } => format!("exporting {name}"),
            Command::Import(r) => format!("importing {}", r.name),
            Command::Renew(r) => format!("renewing {}", r.name),
            _ => "revoking".into(),
        });
        form.error = None;
        Some(cmd)
    }

    fn hub_key(&mut self, k: KeyEvent) -> Option<Command> {
        let page = super::hub::LIST_ROWS as isize;
        match k.code {
            KeyCode::Up | KeyCode::Char('k') => self.hub.scroll_devices(-1),
            KeyCode::Down | KeyCode::Char('j') => self.hub.scroll_devices(1),
            KeyCode::PageUp => self.hub.scroll_devices(-page),
            KeyCode::PageDown => self.hub.scroll_devices(page),
            KeyCode::Home => self.hub.scroll_devices(isize::MIN / 2),
            KeyCode::End => self.hub.scroll_devices(isize::MAX / 2),
            KeyCode::Char('/') => self.hub.filtering = true,
            KeyCode::Esc if !self.hub.device_filter.is_empty() => {
                self.hub.device_filter.clear();
                self.hub.device_offset = 0;
            }
            _ => return self.hub_action_key(k),
        }
        None
    }

    fn hub_action_key(&mut self, k: KeyEvent) -> Option<Command> {
        match k.code {
            KeyCode::Char('s') => {
                if self.hub.pending {
                    return None;
                }
                self.hub.pending = true;
                if self.hub.running.is_some() {
                    Some(Command::StopHub)
                } else {
                    Some(Command::StartHub {
                        port: self.hub.port,
                    })
                }
            }
            KeyCode::Char('p') => {
                self.dialog = Some(Dialog::Form(Form::hub_port(self.hub.port)));
                None
            }
            KeyCode::Char('v') => {
                let ca = self
                    .pki
                    .selected_row()
                    .filter(|r| r.meta.kind.is_ca() && r.meta.has_key)
                    .map(|r| r.meta.name.clone());
                match ca {
                    Some(ca) if !self.hub.proving => {
                        self.hub.proving = true;
                        self.hub.proof.clear();
                        Some(Command::HubProve { ca })
                    }
                    Some(_) => None,
                    None => {
                        self.say(
                            Level::Warn,
                            "v proves a CA to the hub: select a root or intermediate (with its key) on the PKI tab first",
                        );
                        None
                    }
                }
            }
            KeyCode::Char('V') | KeyCode::Char('G') => {
                let group = k.code == KeyCode::Char('G');
                let ca = self
                    .pki
                    .selected_row()
                    .filter(|r| r.meta.kind.is_ca() && r.meta.has_key)
                    .map(|r| r.meta.name.clone());
                match ca {
                    Some(_) if self.hub.dps_busy => None,
                    Some(ca) => {
                        self.hub.dps_busy = true;
                        Some(if group {
                            Command::DpsGroup { ca }
                        } else {
                            Command::DpsProve { ca }
                        })
                    }
                    None => {
                        self.say(
                            Level::Warn,
                            if group {
                                "G adds a DPS enrollment group: select a root or intermediate (with its key) on the PKI tab first"
                            } else {
                                "V proves a CA to DPS: select a root or intermediate (with its key) on the PKI tab first"
                            },
                        );
                        None
                    }
                }
            }
            KeyCode::Char('e') => match self.selected_device() {
                Some(_) if self.hub.dps_busy => None,
                Some(device) => {
                    self.hub.dps_busy = true;
                    Some(Command::DpsEnroll { device })
                }
                None => {
                    self.say(
                        Level::Warn,
                        "e enrolls a device in DPS: select one on the PKI tab first",
                    );
                    None
                }
            },
            KeyCode::Char('a') => match self.selected_device() {
                Some(device) => Some(Command::HubRegister { device }),
                None => {
                    self.say(
                        Level::Warn,
                        "a registers a device: select one on the PKI tab first",
                    );
                    None
                }
            },
            KeyCode::Char('o') => {
                let dev = self.selected_device();
                match dev.and_then(|d| self.hub.devices.iter().find(|x| x.id == d)) {
                    Some(d) => Some(Command::HubEnable {
                        device: d.id.clone(),
                        enabled: !d.enabled,
                    }),
                    None => {
                        self.say(
                            Level::Warn,
                            "o turns a registered device on/off: select it on the PKI tab (register it with a)",
                        );
                        None
                    }
                }
            }
            _ => None,
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
                self.help_scroll = self.help_scroll.min(ui::help_max_scroll(self.size));
                let hgt = self.tree_height();
                self.pki.scroll_into_view(hgt);
                None
            }
            Action::Listed {
                rows,
                damaged,
                took,
                cached,
            } => self.on_listed(rows, damaged, took, cached),
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

    /// The workspace was read (or its cache, while the real read runs).
    fn on_listed(
        &mut self,
        rows: Vec<crate::ops::TreeRow>,
        damaged: usize,
        took: std::time::Duration,
        cached: bool,
    ) -> Option<Command> {
        self.pki.cached = cached;
        if cached {
            // The real read is still running: show the cache, keep waiting for it.
            self.pki.set_rows(rows);
            let h = self.tree_height();
            self.pki.scroll_into_view(h);
            return None;
        }
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
                self.pki.filter.push_str(text.trim());
                self.pki.apply_filter();
                let h = self.tree_height();
                self.pki.scroll_into_view(h);
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
            let last = ui::help_max_scroll(self.size);
            match k.code {
                KeyCode::Down | KeyCode::Char('j') => {
                    self.help_scroll = (self.help_scroll + 1).min(last)
                }
                KeyCode::Up | KeyCode::Char('k') => {
                    self.help_scroll = self.help_scroll.saturating_sub(1)
                }
                KeyCode::PageDown | KeyCode::Char(' ') => {
                    self.help_scroll = (self.help_scroll + ui::help_page(self.size)).min(last)
                }
                KeyCode::PageUp => {
                    self.help_scroll = self.help_scroll.saturating_sub(ui::help_page(self.size))
                }
                _ => self.help = false,
            }
            return None;
        }
        if self.dialog.is_some() {
            return self.dialog_key(k);
        }
        if self.pki.filtering && self.tab == Tab::Pki {
            return self.filter_key(k);
        }
        if self.hub.filtering && self.tab == Tab::Hub {
            self.hub.filter_key(k);
            return None;
        }
        if self.fleet.editing && self.tab == Tab::Connect {
            return self.fleet_key(k);
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
        match self.tab {
            Tab::Pki => self.pki_key(k),
            Tab::Hub => self.hub_key(k),
            Tab::Connect if k.code == KeyCode::Char('f') && !self.fleet.editing => {
                self.fleet.shown = !self.fleet.shown;
                None
            }
            Tab::Connect if self.fleet.shown => self.fleet_key(k),
            Tab::Connect => match k.code {
                KeyCode::Char('t') => {
                    let transport = crate::mqtt::Transport::ALL
                        .iter()
                        .position(|t| *t == self.connect.transport)
                        .unwrap_or(0);
                    let form = Form::target(&self.connect.target.to_arg(), transport);
                    self.dialog = Some(Dialog::Form(form));
                    None
                }
                KeyCode::Enter | KeyCode::Char('s') => self.start_test(),
                _ => None,
            },
            Tab::Guide => {
                match k.code {
                    KeyCode::Up | KeyCode::Char('k') => {
                        self.guide.selected = self.guide.selected.saturating_sub(1);
                        self.guide.scroll = 0;
                        self.guide.picked = true;
                    }
                    KeyCode::Down | KeyCode::Char('j') => {
                        let n = self.guide.track.steps().len();
                        self.guide.selected = (self.guide.selected + 1).min(n - 1);
                        self.guide.scroll = 0;
                        self.guide.picked = true;
                    }
                    // The other tutorial: its steps start from the first.
                    KeyCode::Char('t') => {
                        self.guide.track = self.guide.track.other();
                        self.guide.selected = 0;
                        self.guide.scroll = 0;
                        self.guide.picked = false;
                        self.say(
                            Level::Ok,
                            format!("guide: the {} track", self.guide.track.title()),
                        );
                    }
                    KeyCode::Char('J') => self.guide.scroll = self.guide.scroll.saturating_add(1),
                    KeyCode::Char('K') => self.guide.scroll = self.guide.scroll.saturating_sub(1),
                    // Copy the step's commands whole: what the pane shows wraps to its width.
                    KeyCode::Char(c @ ('y' | 'Y')) => {
                        let steps = self.guide.track.steps();
                        let n = self.guide.selected.min(steps.len() - 1);
                        let l = steps[n].lesson();
                        let (what, section) = if c == 'y' {
                            (self.guide.track.tool(), l.openssl)
                        } else {
                            ("Azure CLI", l.az)
                        };
                        self.say(
                            Level::Ok,
                            format!(
                                "step {}'s {what} commands sent to the clipboard (OSC 52)",
                                n + 1
                            ),
                        );
                        return Some(Command::Copy(super::guide::section_text(section)));
                    }
                    _ => {}
                }
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

    fn filter_key(&mut self, k: KeyEvent) -> Option<Command> {
        match k.code {
            KeyCode::Esc => {
                self.pki.filtering = false;
                self.pki.filter.clear();
                self.pki.apply_filter();
                // Esc undoes the filter: the selection goes back where it was before `/`.
                if let Some(name) = self.pki.before_filter.take() {
                    self.pki.select_name(&name);
                }
            }
            KeyCode::Enter => {
                self.pki.filtering = false;
                self.pki.before_filter = None;
            }
            KeyCode::Backspace => {
                self.pki.filter.pop();
            }
            KeyCode::Char(c) => self.pki.filter.push(c),
            KeyCode::Up | KeyCode::Down => {
                self.pki.filtering = false;
                return self.pki_key(k);
            }
            _ => return None,
        }
        self.pki.apply_filter();
        let h = self.tree_height();
        self.pki.scroll_into_view(h);
        self.pki.want_report().map(Command::LoadReport)
    }

    fn pki_key(&mut self, k: KeyEvent) -> Option<Command> {
        let h = self.tree_height();
        let page = h.max(1) as isize;
        match k.code {
            KeyCode::Up | KeyCode::Char('k') => self.pki.move_by(-1, h),
            KeyCode::Down | KeyCode::Char('j') => self.pki.move_by(1, h),
            KeyCode::PageUp => self.pki.move_by(-page, h),
            KeyCode::PageDown => self.pki.move_by(page, h),
            KeyCode::Home => self.pki.move_by(isize::MIN / 2, h),
            KeyCode::End => self.pki.move_by(isize::MAX / 2, h),
            KeyCode::Char('J') => self.pki.detail_scroll = self.pki.detail_scroll.saturating_add(1),
            KeyCode::Char('K') => self.pki.detail_scroll = self.pki.detail_scroll.saturating_sub(1),
            KeyCode::Char('/') => {
                self.pki.filtering = true;
                self.pki.before_filter = self.pki.selected_name();
                return None;
            }
            KeyCode::Esc if !self.pki.filter.is_empty() => {
                self.pki.filter.clear();
                self.pki.apply_filter();
            }
            KeyCode::Char('n') => {
                let cas = self.issuing_cas();
                let sel = self
                    .pki
                    .selected_row()
                    .filter(|r| r.meta.kind.is_ca())
                    .map(|r| r.meta.name.clone());
                let kind = if cas.is_empty() {
                    NewKind::Root
                } else if sel.is_some() {
                    NewKind::Device
                } else {
                    NewKind::Root
                };
                self.dialog = Some(Dialog::New(NewForm::new(
                    kind,
                    cas,
                    sel.as_deref(),
                    self.now,
                )));
                return None;
            }
            KeyCode::Char('v') => {
                match self.pki.selected_row() {
                    Some(r) if r.meta.kind.is_ca() && r.meta.has_key => {
                        self.dialog = Some(Dialog::Verify(VerifyDialog::new(r.meta.name.clone())));
                    }
                    Some(r) => {
                        let msg = format!(
                            "v makes a verification certificate for a CA; \"{}\" is a {}{}: select a root or intermediate with its key",
                            r.meta.name,
                            r.meta.kind.as_str(),
                            if r.meta.kind.is_ca() {
                                " without its private key"
                            } else {
                                ""
                            }
                        );
                        self.say(Level::Warn, msg);
                    }
                    None => self.say(Level::Warn, "select a CA first (make one with n)"),
                }
                return None;
            }
            KeyCode::Char('d') => {
                if let Some(name) = self.pki.selected_name() {
                    let children = self.pki.children_of(&name);
                    self.dialog = Some(Dialog::ConfirmDelete { name, children });
                }
                return None;
            }
            KeyCode::Char('c') => {
                match self.pki.selected_row() {
                    Some(r) if r.meta.kind == crate::store::Kind::Device => {
                        if !self.connect.running {
                            self.connect.device = Some(r.meta.name.clone());
                        }
                        self.tab = Tab::Connect;
                    }
                    _ => self.say(Level::Warn, "c connects a device: select a device first"),
                }
                return None;
            }
            KeyCode::Char('i') => {
                self.dialog = Some(Dialog::Form(Form::import()));
                return None;
            }
            KeyCode::Char(c @ ('e' | 'r' | 'x')) => {
                match self.pki.selected_name() {
                    Some(name) => {
                        self.dialog = Some(Dialog::Form(match c {
                            'e' => Form::export(&name, &self.ws_root),
                            'r' => Form::renew(&name),
                            _ => Form::revoke(&name),
                        }))
                    }
                    None => self.say(Level::Warn, "select a certificate first"),
                }
                return None;
            }
            _ => return None,
        }
        self.pki.want_report().map(Command::LoadReport)
    }

    /// CAs that can issue: roots and intermediates with their key.
    fn issuing_cas(&self) -> Vec<String> {
        self.pki
            .rows
            .iter()
            .filter(|r| r.meta.kind.is_ca() && r.meta.has_key)
            .map(|r| r.meta.name.clone())
            .collect()
    }

    fn dialog_key(&mut self, k: KeyEvent) -> Option<Command> {
        let dialog = self.dialog.as_mut()?;
        match dialog {
            Dialog::New(form) => match form.key(k) {
                FormOutcome::Stay => None,
                FormOutcome::Cancel => {
                    // Closing while a key is generated is fine: the result still lands in the workspace.
                    self.dialog = None;
                    None
                }
                FormOutcome::Submit(req) => {
                    form.busy = Some(req.describe());
                    form.error = None;
                    Some(Command::Create(req))
                }
            },
            Dialog::Verify(v) => {
                if let Some(res) = &mut v.result {
                    match k.code {
                        KeyCode::Char('y') => {
                            let pem = res.pem.clone();
                            let path = res.path.display().to_string();
                            self.say(
                                Level::Ok,
                                format!("PEM sent to the clipboard (OSC 52); the file is {path}"),
                            );
                            return Some(Command::Copy(pem));
                        }
                        KeyCode::Down | KeyCode::Char('j') => {
                            res.scroll = res.scroll.saturating_add(1)
                        }
                        KeyCode::Up | KeyCode::Char('k') => {
                            res.scroll = res.scroll.saturating_sub(1)
                        }
                        KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') => self.dialog = None,
                        _ => {}
                    }
                    return None;
                }
                match k.code {
                    KeyCode::Esc => self.dialog = None,
                    KeyCode::Enter if !v.busy => {
                        let code = v.code.trim().to_string();
                        match crate::pki::identity::check_verification_code(&code) {
                            Ok(()) => {
                                v.busy = true;
                                v.error = None;
                                let out = verification_out(&self.ws_root, &v.issuer);
                                return Some(Command::MakeVerification {
                                    issuer: v.issuer.clone(),
                                    code,
                                    out,
                                });
                            }
                            Err(e) => v.error = Some(super::forms::error_text(&e)),
                        }
                    }
                    KeyCode::Backspace => {
                        v.code.pop();
                        v.validate_inline();
                    }
                    KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                        v.code.push(c);
                        v.validate_inline();
                    }
                    _ => {}
                }
                None
            }
            Dialog::Form(form) => match form.key(k) {
                Outcome::Stay => None,
                Outcome::Cancel => {
                    self.dialog = None;
                    None
                }
                // A result is a notice, not a question: the key that closes it still acts,
                // except the keys that only mean "close" (Esc, Enter).
                Outcome::Dismiss => {
                    self.dialog = None;
                    if matches!(k.code, KeyCode::Esc | KeyCode::Enter) {
                        None
                    } else {
                        self.key(k)
                    }
                }
                Outcome::Submit => self.submit_form(),
            },
            Dialog::ConfirmDelete { name, .. } => match k.code {
                KeyCode::Char('y') => {
                    let name = name.clone();
                    self.dialog = None;
                    Some(Command::Delete(name))
                }
                KeyCode::Char('n') | KeyCode::Esc => {
                    self.dialog = None;
                    None
                }
                _ => None,
            },
            Dialog::Message { title, .. } => {
                if title == "Quit?" && k.code == KeyCode::Char('q') {
                    self.quit = true;
                }
                self.dialog = None;
                None
            }
        }
    }

    fn mouse(&mut self, m: MouseEvent) -> Option<Command> {
        if self.too_small() {
            return None;
        }
        let a = ui::areas(self.size);
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
                    if let Some((tab, _)) = ui::tab_ranges()
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
                        let pos = self.pki.offset + (m.row - a.tree.y - 1) as usize;
                        if pos < self.pki.visible.len() {
                            self.pki.selected = pos;
                            self.pki.detail_scroll = 0;
                            return self.pki.want_report().map(Command::LoadReport);
                        }
                    }
                    Tab::Guide if m.row > a.body.y => {
                        let pos = (m.row - a.body.y - 1) as usize;
                        if pos < self.guide.track.steps().len()
                            && m.column < a.body.x + super::guide::list_width(self.size.0)
                        {
                            self.guide.selected = pos;
                            self.guide.scroll = 0;
                            self.guide.picked = true;
                        }
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
