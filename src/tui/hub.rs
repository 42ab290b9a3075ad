//! The Hub tab: the local hub running in-process, its CAs, devices and a live event log.
//!
//! The hub engine (`Hub::start` and its event channel) lives on another branch. This module
//! holds the state and actions it will feed, so plugging it in means: send `Action::Hub(..)`
//! from a task that reads the hub's event channel, and run `HubCommand`s against `Hub`.
//! Until then the tab says so instead of showing invented data.

use super::app::App;
use super::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use std::collections::VecDeque;
use time::OffsetDateTime;

/// Whether this build has the local hub engine.
pub const AVAILABLE: bool = false;
/// Why the tab is empty, in the user's words.
pub const UNAVAILABLE: &str = "The local hub is not available in this build: its engine (the `hub` branch) is not merged yet. Use a real IoT Hub with the verification certificate from the PKI tab (v), or Mosquitto for a connection test.";

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
    /// The registry as it is now (after add CA / verify / register / disable).
    Registry {
        cas: Vec<HubCa>,
        devices: Vec<HubDevice>,
    },
    Event(LogLine),
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
}

impl HubState {
    pub fn new() -> Self {
        HubState {
            port: 8883,
            ..Default::default()
        }
    }

    pub fn apply(&mut self, a: HubAction) {
        match a {
            HubAction::Started { port } => {
                self.running = Some(port);
                self.error = None;
            }
            HubAction::Stopped => self.running = None,
            HubAction::Failed(e) => {
                self.running = None;
                self.error = Some(e);
            }
            HubAction::Registry { cas, devices } => {
                self.cas = cas;
                self.devices = devices;
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
    let status = match hub.running {
        Some(p) => Line::from(vec![
            Span::styled("● ", t.ok()),
            Span::raw(format!("running on 127.0.0.1:{p}")),
        ]),
        None => Line::from(vec![Span::styled("○ ", t.dim()), Span::raw("stopped")]),
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
    if !AVAILABLE {
        lines.push(Line::styled("⚠ not available in this build", t.warn()));
        lines.push(Line::raw(UNAVAILABLE));
    }
    if let Some(e) = &hub.error {
        lines.push(Line::styled(format!("✗ {e}"), t.bad()));
    }
    let height = log_area.height.saturating_sub(2) as usize;
    let skip = hub
        .log
        .len()
        .saturating_sub(height.saturating_sub(lines.len()));
    for l in hub.log.iter().skip(skip) {
        let (sym, style) = match l.kind {
            LogKind::Connected => ("→", t.ok()),
            LogKind::Refused => ("✗", t.bad()),
            LogKind::Telemetry => ("↑", t.accent()),
            LogKind::Twin => ("⇅", t.accent()),
            LogKind::C2d => ("↓", t.accent()),
            LogKind::Info => ("·", t.dim()),
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{sym} "), style),
            Span::raw(format!("{} {} {}", super::clock(l.at), l.device, l.text)),
        ]));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block(t, "Event log")),
        log_area,
    );
}

fn block(t: Theme, title: &str) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {title} "), t.title()))
}
