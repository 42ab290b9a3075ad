//! The Hub tab: the local hub running in-process, its CAs, devices and a live event log.
//!
//! The hub runs in-process (`crate::hub::Hub::start`, started by the loop for
//! `Command::StartHub`); a task forwards its event channel as `Action::Hub(HubAction::Event)`,
//! and registry changes (add CA, verify, register, disable) come back as `HubAction::Registry`.

use super::app::App;
use super::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use std::collections::VecDeque;
use time::OffsetDateTime;

/// Whether this build has the local hub engine.
pub const AVAILABLE: bool = true;

/// How many log lines the tab keeps; older ones are dropped and counted.
pub const LOG_CAP: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubCa {
    pub name: String,
    pub verified: bool,
    pub code: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubDevice {
    pub id: String,
    pub enabled: bool,
    /// "X.509 CA signed" or "X.509 self-signed".
    pub auth: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogKind {
    Connected,
    Refused,
    Telemetry,
    Twin,
    C2d,
    Info,
    /// Something the user did here (start, register, enable, proof): it succeeded.
    Changed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub at: OffsetDateTime,
    pub kind: LogKind,
    pub device: String,
    pub text: String,
}

/// What the hub engine reports.
#[derive(Clone, Debug)]
pub enum HubAction {
    Started {
        port: u16,
    },
    Stopped,
    Failed(String),
    /// Something went wrong that does not stop the hub (a registry change refused).
    Error(String),
    /// The registry as it is now (after add CA / verify / register / disable).
    Registry {
        cas: Vec<HubCa>,
        devices: Vec<HubDevice>,
    },
    Event(LogLine),
    /// Several events at once (a burst read from the channel in one go).
    Events(Vec<LogLine>),
    /// The proof-of-possession flow (`v` on the Hub tab) finished: what it did, or why not.
    Proved(Result<Vec<String>, String>),
    /// A registry change asked for on this tab (register, enable, disable) was made.
    Done(String),
}

/// The TUI's view of a registry.
pub fn from_registry(r: &crate::hub::Registry) -> (Vec<HubCa>, Vec<HubDevice>) {
    let cas = r
        .cas
        .iter()
        .map(|c| HubCa {
            name: c.name.clone(),
            verified: c.verified,
            code: (!c.verified).then(|| c.code.clone()),
        })
        .collect();
    let devices = r
        .devices
        .iter()
        .map(|d| HubDevice {
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
        E::Listening { .. } => (LogKind::Info, String::new()),
        E::Accepted { device, .. } => (LogKind::Connected, device.clone()),
        E::Refused { device, .. } => (LogKind::Refused, device.clone().unwrap_or_default()),
        E::Dropped { .. } => (LogKind::Refused, String::new()),
        E::Disconnected { device, .. } => (LogKind::Info, device.clone()),
        // Let in, as IoT Hub would, but worth the eye: shown as a refusal-coloured line.
        E::RevokedCertificate { device, .. } => (LogKind::Refused, device.clone()),
        E::Telemetry { device, .. } => (LogKind::Telemetry, device.clone()),
        E::TwinGet { device, .. }
        | E::TwinReported { device, .. }
        | E::TwinDesired { device, .. } => (LogKind::Twin, device.clone()),
        E::C2d { device, .. } => (LogKind::C2d, device.clone()),
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
    let line = e.line();
    let text = line
        .strip_prefix(&format!("device {device}: "))
        .map(str::to_string)
        .unwrap_or(line);
    LogLine {
        at,
        kind,
        device,
        text,
    }
}

#[derive(Clone, Debug, Default)]
pub struct HubState {
    pub running: Option<u16>,
    pub port: u16,
    pub cas: Vec<HubCa>,
    pub devices: Vec<HubDevice>,
    pub log: VecDeque<LogLine>,
    pub dropped: u64,
    pub error: Option<String>,
    /// A start or stop is on its way.
    pub pending: bool,
    /// The proof-of-possession flow is running.
    pub proving: bool,
    /// The last proof of possession's steps.
    pub proof: Vec<String>,
    /// When the registry was last asked for (re-read every few seconds while the tab is shown,
    /// so `chainsmith hub ...` changes from another terminal show up).
    pub last_read: Option<OffsetDateTime>,
}

impl HubState {
    pub fn new() -> Self {
        HubState {
            port: 8883,
            ..Default::default()
        }
    }

    /// A line in the event log for something the user did (not an event of the hub itself).
    pub fn note(&mut self, at: OffsetDateTime, kind: LogKind, text: String) {
        self.apply(HubAction::Event(LogLine {
            at,
            kind,
            device: String::new(),
            text,
        }));
    }

    pub fn apply(&mut self, a: HubAction) {
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

pub fn render(f: &mut Frame, area: Rect, app: &App) {
    let t = app.theme;
    let hub = &app.hub;
    let [top, log_area] = Layout::vertical([Constraint::Length(8), Constraint::Min(3)]).areas(area);
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
            Span::raw(format!(" {}{code}", ca.name)),
        ]));
    }
    f.render_widget(
        Paragraph::new(ca_lines).block(block(t, "Hub · CAs")),
        cas_area,
    );
    let dev_lines: Vec<Line> = hub
        .devices
        .iter()
        .map(|d| {
            let (sym, style) = if d.enabled {
                ("✓ enabled ", t.ok())
            } else {
                ("⊘ disabled", t.bad())
            };
            Line::from(vec![
                Span::styled(sym, style),
                Span::raw(format!(" {}  {}", d.id, d.auth)),
            ])
        })
        .collect();
    f.render_widget(
        Paragraph::new(dev_lines).block(block(t, "Devices")),
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
                format!("{} {}", super::clock(l.at), l.text)
            } else {
                format!("{} {}: {}", super::clock(l.at), l.device, l.text)
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

fn block(t: Theme, title: &str) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {title} "), t.title()))
}
