//! The Hub tab: the local hub running in-process, its CAs, devices and a live event log.
//!
//! The hub runs in-process (`crate::hub::Hub::start`, started by the loop for
//! `Command::StartHub`); a task forwards its event channel as `Action::Hub(HubAction::Event)`,
//! and registry changes (add CA, verify, register, disable) come back as `HubAction::Registry`.

use super::command::Command;
use super::dialog::Dialog;
use super::forms::Form;
use super::help::FooterKey;
use super::request::Request;
use super::theme::Theme;
use crate::store::{Kind, Meta};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use std::collections::VecDeque;
use time::OffsetDateTime;

/// The keys the footer names on the Hub tab: (keys, what they do, the same in a word).
pub(crate) const FOOTER_KEYS: &[FooterKey] = &[
    ("s", "start/stop", "hub"),
    ("p", "port", "port"),
    ("v V", "prove hub/DPS", "prove"),
    ("a", "register", "add"),
    ("o", "on/off", "on/off"),
    ("G", "DPS group", "group"),
    ("e", "enroll", "enroll"),
    ("c", "cloud", "AWS"),
];

/// The keys the footer names while the Hub tab shows AWS (the Azure keys act on the local
/// IoT Hub, which is not shown then).
pub(crate) const AWS_FOOTER_KEYS: &[FooterKey] = &[("c", "cloud: Azure", "Azure")];

/// Which local cloud the Hub tab shows (`c` switches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cloud {
    /// The local IoT Hub and DPS.
    #[default]
    Azure,
    /// The local AWS IoT Core's registry and `aws serve`.
    Aws,
}

/// How many log lines the tab keeps; older ones are dropped and counted.
pub const LOG_CAP: usize = 1000;

/// Rows of the CA and device lists (the top band is this plus its borders): six devices on
/// an 80×24 terminal leave the DPS band and the event log their room; more scroll.
pub const LIST_ROWS: u16 = 6;

/// A CA as the Hub tab lists it (the registry's [`crate::hub::HubCa`], reduced to what is shown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaRow {
    /// The CA's name in the hub (its workspace name when added from the PKI tab).
    pub name: String,
    /// Proof of possession done: devices chaining to it may connect.
    pub verified: bool,
    /// The verification code to sign while unverified (None once verified).
    pub code: Option<String>,
}

/// A device as the Hub tab lists it (the registry's [`crate::hub::HubDevice`], reduced).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRow {
    /// The device id it connects as.
    pub id: String,
    /// Disabled devices are refused at their next connection (`o` toggles).
    pub enabled: bool,
    /// "X.509 CA signed" or "X.509 self-signed".
    pub auth: String,
}

/// What an event-log line is about; it picks the line's symbol and colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogKind {
    /// A device connected, or DPS assigned one (`→`).
    Connected,
    /// A connection or registration was refused, or let in with a revoked certificate (`✗`).
    Refused,
    /// A device sent telemetry (`↑`).
    Telemetry,
    /// A twin read or update (`⇅`).
    Twin,
    /// A cloud-to-device message sent or settled (`↓`).
    C2d,
    /// Anything else: listening, disconnects, method calls, notes (`·`).
    Info,
    /// Something the user did here (start, register, enable, proof): it succeeded.
    Changed,
}

/// One line of the Hub tab's event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// When it happened (shown as `HH:MM:SS`).
    pub at: OffsetDateTime,
    /// What it is about.
    pub kind: LogKind,
    /// The device or DPS registration id, escaped; empty for hub-wide lines.
    pub device: String,
    /// What happened, without the device prefix.
    pub text: String,
}

/// What the hub engine reports.
#[derive(Clone, Debug)]
pub enum HubAction {
    /// The hub listens (started by `s`, or by a connection test).
    Started {
        /// The port it listens on (a free one when the chosen port was 0 or taken).
        port: u16,
    },
    /// The hub stopped (`s` again, or on quit).
    Stopped,
    /// The hub could not start: why (a port in use, an unreadable registry).
    Failed(String),
    /// Something went wrong that does not stop the hub (a registry change refused).
    Error(String),
    /// The registry as it is now (after add CA / verify / register / disable).
    Registry {
        /// The hub's CAs, in registry order.
        cas: Vec<CaRow>,
        /// The hub's devices, in registry order.
        devices: Vec<DeviceRow>,
    },
    /// One event from the running hub (a connection, a message, a refusal).
    Event(LogLine),
    /// Several events at once (a burst read from the channel in one go).
    Events(Vec<LogLine>),
    /// The proof-of-possession flow (`v` on the Hub tab) finished: what it did, or why not.
    Proved(Result<Vec<String>, String>),
    /// A registry change asked for on this tab (register, enable, disable) was made.
    Done(String),
    /// DPS's state as it is now (ID scope, certificates, enrollments, registrations).
    Dps(Box<crate::hub::dps::DpsState>),
    /// A DPS change asked for on this tab (group from a CA, individual enrollment, proof of
    /// possession) finished: the steps it took, or why not.
    DpsDone(Result<Vec<String>, String>),
    /// The local AWS IoT Core as it is now (registry, `aws serve`), or why it could not be read.
    Aws(Result<Box<super::hub_aws::AwsView>, String>),
}

/// The TUI's view of a registry.
pub(crate) fn from_registry(r: &crate::hub::Registry) -> (Vec<CaRow>, Vec<DeviceRow>) {
    let cas = r
        .cas
        .iter()
        .map(|c| CaRow {
            name: c.name.clone(),
            verified: c.verified,
            code: (!c.verified).then(|| c.code.clone()),
        })
        .collect();
    let devices = r
        .devices
        .iter()
        .map(|d| DeviceRow {
            id: d.id.clone(),
            enabled: d.enabled,
            auth: match d.auth {
                crate::hub::Auth::Ca => "X.509 CA signed".into(),
                crate::hub::Auth::SelfSigned => "X.509 self-signed".into(),
            },
        })
        .collect();
    (cas, devices)
}

/// One hub event as a log line (kind, device, text).
pub fn log_line(e: &crate::hub::HubEvent, at: OffsetDateTime) -> LogLine {
    use crate::hub::HubEvent as E;
    let (kind, device) = match e {
        E::Listening { .. } | E::ListeningFor { .. } | E::OpenFiles { .. } => {
            (LogKind::Info, String::new())
        }
        E::Accepted { device, .. } => (LogKind::Connected, device.clone()),
        E::Refused { device, .. } => (LogKind::Refused, device.clone().unwrap_or_default()),
        E::Dropped { .. } | E::StateSetAside { .. } => (LogKind::Refused, String::new()),
        E::Disconnected { device, .. } => (LogKind::Info, device.clone()),
        // Let in, as IoT Hub would, but worth the eye: shown as a refusal-coloured line.
        E::RevokedCertificate { device, .. } => (LogKind::Refused, device.clone()),
        E::Telemetry { device, .. } => (LogKind::Telemetry, device.clone()),
        E::TwinGet { device, .. }
        | E::TwinReported { device, .. }
        | E::TwinDesired { device, .. } => (LogKind::Twin, device.clone()),
        E::C2d { device, .. } | E::C2dSettled { device, .. } => (LogKind::C2d, device.clone()),
        E::MethodCall { device, .. } | E::MethodResponse { device, .. } => {
            (LogKind::Info, device.clone())
        }
        E::DpsRefused {
            registration_id, ..
        } => (LogKind::Refused, registration_id.clone()),
        E::DpsAssigned {
            registration_id, ..
        } => (LogKind::Connected, registration_id.clone()),
        E::DpsConnected {
            registration_id, ..
        }
        | E::DpsRegistering {
            registration_id, ..
        }
        | E::DpsDisconnected {
            registration_id, ..
        } => (LogKind::Info, registration_id.clone()),
    };
    // The client id is the peer's choice; e.line() is escaped the same way.
    let device = crate::text::escape_controls(&device).into_owned();
    let mut line = e.line();
    // The engine says the fix in words; the Hub tab adds its key.
    if matches!(e, E::RevokedCertificate { .. }) {
        line.push_str(" (o on the Hub tab turns it off)");
    }
    let text = if let Some(rest) = line.strip_prefix(&format!("device {device}: ")) {
        rest.to_string()
    } else if let Some(rest) = line.strip_prefix(&format!("dps {device}: ")) {
        // DPS events say so: the registration id is already in the device column.
        format!("DPS {rest}")
    } else {
        line
    };
    LogLine {
        at,
        kind,
        device,
        text,
    }
}

/// What the Hub tab shows and remembers.
#[derive(Clone, Debug, Default)]
pub struct HubState {
    /// The port the hub listens on while it runs; None while stopped.
    pub running: Option<u16>,
    /// The port `s` starts the hub on (`p` changes it; 8883 like IoT Hub, 0 for a free one).
    pub port: u16,
    /// The registry's CAs, as last read.
    pub cas: Vec<CaRow>,
    /// The registry's devices, as last read.
    pub devices: Vec<DeviceRow>,
    /// The newest [`LOG_CAP`] event-log lines, oldest first.
    pub log: VecDeque<LogLine>,
    /// How many older lines were dropped to keep the log at [`LOG_CAP`].
    pub dropped: u64,
    /// The last failure on this tab (start, registry change, DPS), until the next success.
    pub error: Option<String>,
    /// A start or stop is on its way.
    pub(crate) pending: bool,
    /// The proof-of-possession flow is running.
    pub proving: bool,
    /// The last proof of possession's steps.
    pub proof: Vec<String>,
    /// DPS beside the hub, as last read (None before the first read).
    pub dps: Option<crate::hub::dps::DpsState>,
    /// A DPS change (G, e, V) is running.
    pub dps_busy: bool,
    /// First device of the (filtered) device list shown (↑↓ PgUp PgDn Home End).
    pub(crate) device_offset: usize,
    /// The device filter (`/`): a case-insensitive part of a device id.
    pub(crate) device_filter: String,
    /// The device filter is being typed: keys go to it.
    pub(crate) filtering: bool,
    /// When the registry was last asked for (re-read every few seconds while the tab is shown,
    /// so `chainsmith hub ...` changes from another terminal show up).
    pub(crate) last_read: Option<OffsetDateTime>,
    /// Which cloud the tab shows (`c`).
    pub cloud: Cloud,
    /// The local AWS IoT Core as last read (None before the first read).
    pub aws: Option<super::hub_aws::AwsView>,
    /// Why the AWS registry could not be read, until it reads again.
    pub aws_error: Option<String>,
}

impl HubState {
    /// A stopped hub that `s` starts on port 8883, the port IoT Hub devices dial.
    pub(crate) fn new() -> Self {
        HubState {
            port: 8883,
            ..Default::default()
        }
    }

    /// The devices that pass the filter, in registry order.
    pub(crate) fn shown_devices(&self) -> Vec<&DeviceRow> {
        let needle = self.device_filter.to_lowercase();
        self.devices
            .iter()
            .filter(|d| needle.is_empty() || d.id.to_lowercase().contains(&needle))
            .collect()
    }

    /// Scroll the device list by `delta` rows, keeping a full pane where the list allows.
    pub(crate) fn scroll_devices(&mut self, delta: isize) {
        let last = self
            .shown_devices()
            .len()
            .saturating_sub(LIST_ROWS as usize);
        self.device_offset = (self.device_offset as isize)
            .saturating_add(delta)
            .clamp(0, last as isize) as usize;
    }

    /// A key while the device filter is typed: Enter keeps it, Esc clears it.
    fn filter_key(&mut self, k: KeyEvent) {
        match k.code {
            KeyCode::Esc => {
                self.filtering = false;
                self.device_filter.clear();
            }
            KeyCode::Enter => self.filtering = false,
            KeyCode::Backspace => {
                self.device_filter.pop();
            }
            KeyCode::Char(c) if !c.is_control() => self.device_filter.push(c),
            _ => {}
        }
        self.device_offset = 0;
    }

    /// A line in the event log for something the user did (not an event of the hub itself).
    pub(crate) fn note(&mut self, at: OffsetDateTime, kind: LogKind, text: String) {
        self.apply(HubAction::Event(LogLine {
            at,
            kind,
            device: String::new(),
            text,
        }));
    }

    /// Take in what the hub engine reported.
    pub(crate) fn apply(&mut self, a: HubAction) {
        match a {
            HubAction::Started { port } => {
                self.running = Some(port);
                self.pending = false;
                self.error = None;
            }
            HubAction::Stopped => {
                self.running = None;
                self.pending = false;
            }
            HubAction::Failed(e) => {
                self.running = None;
                self.pending = false;
                self.error = Some(e);
            }
            HubAction::Error(e) => self.error = Some(e),
            HubAction::Events(lines) => {
                for l in lines {
                    self.apply(HubAction::Event(l));
                }
            }
            HubAction::Done(_) => self.error = None,
            HubAction::Aws(Ok(v)) => {
                self.aws = Some(*v);
                self.aws_error = None;
            }
            HubAction::Aws(Err(e)) => self.aws_error = Some(e),
            HubAction::Dps(st) => self.dps = Some(*st),
            HubAction::DpsDone(r) => {
                self.dps_busy = false;
                match r {
                    Ok(_) => self.error = None,
                    Err(e) => self.error = Some(e),
                }
            }
            HubAction::Proved(r) => {
                self.proving = false;
                match r {
                    Ok(steps) => {
                        self.proof = steps;
                        self.error = None;
                    }
                    Err(e) => self.error = Some(e),
                }
            }
            HubAction::Registry { cas, devices } => {
                self.cas = cas;
                self.devices = devices;
                self.error = None;
                // A re-read may have fewer devices: keep the list's view inside it.
                self.scroll_devices(0);
            }
            HubAction::Event(line) => {
                if self.log.len() == LOG_CAP {
                    self.log.pop_front();
                    self.dropped += 1;
                }
                self.log.push_back(line);
            }
        }
    }
}

impl HubState {
    /// The device filter (`/`) is being typed: every key goes to it.
    pub(crate) fn takes_every_key(&self) -> bool {
        self.filtering
    }

    /// A key on the Hub tab: the device filter while it is typed, the device list's scrolling,
    /// and the keys that act on the hub for the entity `selected` on the PKI tab.
    pub(crate) fn key(&mut self, k: KeyEvent, selected: Option<&Meta>) -> Option<Request> {
        if self.filtering {
            self.filter_key(k);
            return None;
        }
        let page = LIST_ROWS as isize;
        match k.code {
            KeyCode::Up | KeyCode::Char('k') => self.scroll_devices(-1),
            KeyCode::Down | KeyCode::Char('j') => self.scroll_devices(1),
            KeyCode::PageUp => self.scroll_devices(-page),
            KeyCode::PageDown => self.scroll_devices(page),
            KeyCode::Home => self.scroll_devices(isize::MIN / 2),
            KeyCode::End => self.scroll_devices(isize::MAX / 2),
            KeyCode::Char('c') => {
                self.cloud = match self.cloud {
                    Cloud::Azure => Cloud::Aws,
                    Cloud::Aws => Cloud::Azure,
                };
                // Read now rather than on the next refresh.
                return Some(Request::Run(Command::HubRegistry));
            }
            _ if self.cloud == Cloud::Aws => {}
            KeyCode::Char('/') => self.filtering = true,
            KeyCode::Esc if !self.device_filter.is_empty() => {
                self.device_filter.clear();
                self.device_offset = 0;
            }
            _ => return self.action_key(k, selected),
        }
        None
    }

    /// The keys that change the hub, its registry or DPS.
    fn action_key(&mut self, k: KeyEvent, selected: Option<&Meta>) -> Option<Request> {
        let ca = selected
            .filter(|m| m.kind.is_ca() && m.has_key)
            .map(|m| m.name.clone());
        let device = selected
            .filter(|m| m.kind == Kind::Device)
            .map(|m| m.name.clone());
        match k.code {
            KeyCode::Char('s') => {
                if self.pending {
                    return None;
                }
                self.pending = true;
                Some(Request::Run(if self.running.is_some() {
                    Command::StopHub
                } else {
                    Command::StartHub { port: self.port }
                }))
            }
            KeyCode::Char('p') => Some(Request::Open(Dialog::Form(Form::hub_port(self.port)))),
            KeyCode::Char('v') => match ca {
                Some(ca) if !self.proving => {
                    self.proving = true;
                    self.proof.clear();
                    Some(Request::Run(Command::HubProve { ca }))
                }
                Some(_) => None,
                None => Some(Request::warn(
                    "v proves a CA to the hub: select a root or intermediate (with its key) on the PKI tab first",
                )),
            },
            KeyCode::Char(c @ ('V' | 'G')) => match ca {
                Some(_) if self.dps_busy => None,
                Some(ca) => {
                    self.dps_busy = true;
                    Some(Request::Run(if c == 'G' {
                        Command::DpsGroup { ca }
                    } else {
                        Command::DpsProve { ca }
                    }))
                }
                None => Some(Request::warn(if c == 'G' {
                    "G adds a DPS enrollment group: select a root or intermediate (with its key) on the PKI tab first"
                } else {
                    "V proves a CA to DPS: select a root or intermediate (with its key) on the PKI tab first"
                })),
            },
            KeyCode::Char('e') => match device {
                Some(_) if self.dps_busy => None,
                Some(device) => {
                    self.dps_busy = true;
                    Some(Request::Run(Command::DpsEnroll { device }))
                }
                None => Some(Request::warn(
                    "e enrolls a device in DPS: select one on the PKI tab first",
                )),
            },
            KeyCode::Char('a') => Some(match device {
                Some(device) => Request::Run(Command::HubRegister { device }),
                None => Request::warn("a registers a device: select one on the PKI tab first"),
            }),
            KeyCode::Char('o') => Some(
                match device.and_then(|d| self.devices.iter().find(|x| x.id == d)) {
                    Some(d) => Request::Run(Command::HubEnable {
                        device: d.id.clone(),
                        enabled: !d.enabled,
                    }),
                    None => Request::warn(
                        "o turns a registered device on/off: select it on the PKI tab (register it with a)",
                    ),
                },
            ),
            _ => None,
        }
    }
}

/// The Hub tab: hub state and CAs, devices, DPS, and the newest event-log lines that fit.
pub(crate) fn render(f: &mut Frame, area: Rect, hub: &HubState, t: Theme) {
    if hub.cloud == Cloud::Aws {
        return super::hub_aws::render(f, area, hub.aws.as_ref(), hub.aws_error.as_deref(), t);
    }
    // An empty DPS takes one line, so the event log keeps its room on small screens.
    let dps_empty = hub.dps.as_ref().is_none_or(|d| {
        d.cas.is_empty()
            && d.groups.is_empty()
            && d.individuals.is_empty()
            && d.registrations.is_empty()
    }) && !hub.dps_busy;
    let [top, dps_area, log_area] = Layout::vertical([
        Constraint::Length(LIST_ROWS + 2),
        Constraint::Length(if dps_empty { 3 } else { 9 }),
        Constraint::Min(3),
    ])
    .areas(area);
    render_dps(f, dps_area, hub, t);
    let [cas_area, dev_area] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    let status = match (hub.running, hub.pending) {
        (_, true) => Line::from(vec![
            Span::styled("… ", t.warn()),
            Span::raw(if hub.running.is_some() {
                "stopping"
            } else {
                "starting"
            }),
        ]),
        (Some(p), false) => Line::from(vec![
            Span::styled("● ", t.ok()),
            Span::raw(format!("running on 127.0.0.1:{p}")),
        ]),
        (None, false) => Line::from(vec![
            Span::styled("○ ", t.dim()),
            Span::raw(format!("stopped · s starts on port {}", hub.port)),
        ]),
    };
    let mut ca_lines = vec![status];
    for ca in &hub.cas {
        let (sym, style) = if ca.verified {
            ("✓ Verified  ", t.ok())
        } else {
            ("? Unverified", t.warn())
        };
        let code = ca
            .code
            .as_deref()
            .map(|c| format!("  code {c}"))
            .unwrap_or_default();
        ca_lines.push(Line::from(vec![
            Span::styled(sym, style),
            Span::raw(format!(" {}{code}", esc(&ca.name))),
        ]));
    }
    f.render_widget(
        Paragraph::new(ca_lines).block(block(t, "Hub · CAs")),
        cas_area,
    );
    let shown = hub.shown_devices();
    let offset = hub
        .device_offset
        .min(shown.len().saturating_sub(LIST_ROWS as usize));
    let mut dev_lines: Vec<Line> = shown
        .iter()
        .skip(offset)
        .take(LIST_ROWS as usize)
        .map(|d| {
            let (sym, style) = if d.enabled {
                ("✓ enabled ", t.ok())
            } else {
                ("⊘ disabled", t.bad())
            };
            Line::from(vec![
                Span::styled(sym, style),
                Span::raw(format!(" {}  {}", esc(&d.id), d.auth)),
            ])
        })
        .collect();
    if shown.is_empty() && !hub.devices.is_empty() {
        dev_lines.push(Line::styled(
            format!("no device id contains \"{}\"", esc(&hub.device_filter)),
            t.dim(),
        ));
    }
    f.render_widget(
        Paragraph::new(dev_lines).block(block(t, &devices_title(hub, shown.len(), offset))),
        dev_area,
    );
    let mut lines: Vec<Line> = Vec::new();
    if hub.proving {
        lines.push(Line::styled(
            "… proof of possession: add CA → code → verification certificate → verify",
            t.warn(),
        ));
    }
    // The newest events that fit, counting the rows wrapped lines take (only the visible
    // tail is formatted, so a 1,000-line log costs no more than a screenful).
    let height = log_area.height.saturating_sub(2) as usize;
    let width = log_area.width.saturating_sub(2).max(1) as usize;
    let rows = |l: &Line| l.width().max(1).div_ceil(width);
    let mut left = height.saturating_sub(lines.iter().map(rows).sum());
    let mut tail = Vec::new();
    for l in hub.log.iter().rev() {
        let (sym, style) = match l.kind {
            LogKind::Connected => ("→", t.ok()),
            LogKind::Refused => ("✗", t.bad()),
            LogKind::Telemetry => ("↑", t.accent()),
            LogKind::Twin => ("⇅", t.accent()),
            LogKind::C2d => ("↓", t.accent()),
            LogKind::Info => ("·", t.dim()),
            LogKind::Changed => ("✓", t.ok()),
        };
        let line = Line::from(vec![
            Span::styled(format!("{sym} "), style),
            Span::raw(if l.device.is_empty() {
                format!("{} {}", super::widgets::clock(l.at), l.text)
            } else {
                format!("{} {}: {}", super::widgets::clock(l.at), l.device, l.text)
            }),
        ]);
        let r = rows(&line);
        if r > left {
            break;
        }
        left -= r;
        tail.push(line);
    }
    lines.extend(tail.into_iter().rev());
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block(
                t,
                &if hub.dropped > 0 {
                    format!("Event log ({} older dropped)", hub.dropped)
                } else {
                    "Event log".to_string()
                },
            )),
        log_area,
    );
}

/// The device list's title: how many there are, which rows show, and the filter.
fn devices_title(hub: &HubState, shown: usize, offset: usize) -> String {
    let rows = LIST_ROWS as usize;
    let range = if shown > rows {
        format!(
            " · {}–{} of {shown}",
            offset + 1,
            (offset + rows).min(shown)
        )
    } else {
        format!(" · {shown}")
    };
    if hub.filtering || !hub.device_filter.is_empty() {
        format!(
            "Devices /{}{}{range} (of {})",
            esc(&hub.device_filter),
            if hub.filtering { "▏" } else { "" },
            hub.devices.len()
        )
    } else if shown > rows {
        // The list's own keys, where they matter: the footer keeps the hub's.
        format!("Devices{range} · ↑↓ /")
    } else {
        format!("Devices{range}")
    }
}

/// DPS beside the hub: its ID scope, its own CA list, the enrollments and the registrations.
/// Every name comes from `dps.json` (a file another tool may have written): escaped.
fn render_dps(f: &mut Frame, area: Rect, hub: &HubState, t: Theme) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let enabled = |on: bool| {
        if on {
            Span::styled("✓ enabled ", t.ok())
        } else {
            Span::styled("⊘ disabled", t.bad())
        }
    };
    let mut lines = Vec::new();
    if hub.dps_busy {
        lines.push(Line::styled("… DPS is working", t.warn()));
    }
    let title = match &hub.dps {
        Some(st) if !st.id_scope.is_empty() => format!("DPS · ID scope {}", esc(&st.id_scope)),
        _ => "DPS · ID scope made on first use".to_string(),
    };
    let empty = crate::hub::dps::DpsState::default();
    let st = hub.dps.as_ref().unwrap_or(&empty);
    for ca in &st.cas {
        let (sym, style) = if ca.verified {
            ("✓ Verified  ", t.ok())
        } else {
            ("? Unverified", t.warn())
        };
        let code = if ca.verified {
            String::new()
        } else {
            format!("  code {}", esc(&ca.code))
        };
        lines.push(Line::from(vec![
            Span::styled(sym, style),
            Span::raw(format!(" CA {}{code}", esc(&ca.name))),
        ]));
    }
    for g in &st.groups {
        let secondary = g
            .secondary
            .as_deref()
            .map(|s| format!(" / {}", esc(s)))
            .unwrap_or_default();
        lines.push(Line::from(vec![
            enabled(g.settings.enabled),
            Span::raw(format!(
                " group {}  CA {}{secondary}{}",
                esc(&g.name),
                esc(&g.primary),
                if g.settings.edge { "  edge" } else { "" }
            )),
        ]));
    }
    for i in &st.individuals {
        let short = |tp: &Option<String>| {
            tp.as_deref()
                .map(|x| esc(&x.chars().take(8).collect::<String>()).into_owned() + "…")
        };
        let prints: Vec<String> = [short(&i.primary), short(&i.secondary)]
            .into_iter()
            .flatten()
            .collect();
        let device = if i.device_id().eq_ignore_ascii_case(&i.registration_id) {
            String::new()
        } else {
            format!(" → {}", esc(i.device_id()))
        };
        lines.push(Line::from(vec![
            enabled(i.settings.enabled),
            Span::raw(format!(
                " individual {}{device}  {}",
                esc(&i.registration_id),
                if prints.is_empty() {
                    "issued from CSR".to_string()
                } else {
                    format!("thumbprint {}", prints.join(" / "))
                }
            )),
        ]));
    }
    if st.cas.is_empty() && st.groups.is_empty() && st.individuals.is_empty() {
        lines.push(Line::styled(
            "no DPS enrollment yet · G adds a group",
            t.dim(),
        ));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block(t, &title)),
        left,
    );
    let regs: Vec<Line> = if st.registrations.is_empty() {
        vec![Line::styled("no device has registered yet", t.dim())]
    } else {
        st.registrations
            .iter()
            .flat_map(|r| {
                let style = if r.status == "assigned" {
                    t.ok()
                } else {
                    t.warn()
                };
                [
                    Line::from(vec![
                        Span::styled(format!("{} ", esc(&r.status)), style),
                        Span::raw(format!(
                            "{} → {}",
                            esc(&r.registration_id),
                            esc(&r.device_id)
                        )),
                    ]),
                    Line::styled(
                        format!(
                            "  {} · {} {}",
                            esc(&r.substatus),
                            r.updated.date(),
                            super::widgets::clock(r.updated)
                        ),
                        t.dim(),
                    ),
                ]
            })
            .collect()
    };
    f.render_widget(
        Paragraph::new(regs)
            .wrap(Wrap { trim: false })
            .block(block(t, "DPS registrations")),
        right,
    );
}

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    crate::text::escape_controls(s)
}

fn block(t: Theme, title: &str) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {title} "), t.title()))
}
