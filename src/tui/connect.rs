//! The Connect tab: pick a device and a target, run the connection test, watch its steps,
//! round trips and diagnosis live.
//!
//! The connection-test engine (an async test emitting events) lives on another branch. The
//! state below is what its events fill in; until it is merged the tab shows the chosen device
//! and target and says the test is not available in this build.

use super::app::App;
use super::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline, Wrap};
use std::time::Duration;

pub const AVAILABLE: bool = false;
pub const UNAVAILABLE: &str = "The connection test is not available in this build: its engine (the `connect` branch) is not merged yet. Meanwhile `mosquitto_pub --cert DEVICE/cert.pem --key DEVICE/key.pem --cafile ROOT/cert.pem` tests a device against a broker.";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    LocalHub,
    AzureHub(String),
    Broker(String),
}

impl Target {
    pub fn label(&self) -> String {
        match self {
            Target::LocalHub => "local hub (in-process)".into(),
            Target::AzureHub(h) => format!("Azure IoT Hub {h}"),
            Target::Broker(u) => format!("broker {u}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepState {
    Running,
    Ok,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub state: StepState,
    pub took: Option<Duration>,
    pub detail: String,
}

/// What the connection test engine reports.
#[derive(Clone, Debug)]
pub enum ConnectAction {
    Step(Step),
    Message(String),
    RoundTrip(Duration),
    Diagnosis(String),
    Finished,
}

#[derive(Clone, Debug)]
pub struct ConnectState {
    pub device: Option<String>,
    pub target: Target,
    pub running: bool,
    pub steps: Vec<Step>,
    pub log: Vec<String>,
    pub round_trips: Vec<u64>,
    pub sent: u64,
    pub acked: u64,
    pub diagnosis: Option<String>,
}

impl Default for ConnectState {
    fn default() -> Self {
        ConnectState {
            device: None,
            target: Target::LocalHub,
            running: false,
            steps: vec![],
            log: vec![],
            round_trips: vec![],
            sent: 0,
            acked: 0,
            diagnosis: None,
        }
    }
}

impl ConnectState {
    pub fn apply(&mut self, a: ConnectAction) {
        match a {
            ConnectAction::Step(s) => match self.steps.iter_mut().find(|x| x.name == s.name) {
                Some(x) => *x = s,
                None => self.steps.push(s),
            },
            ConnectAction::Message(m) => {
                self.sent += 1;
                self.log.push(m);
            }
            ConnectAction::RoundTrip(d) => {
                self.acked += 1;
                self.round_trips.push(d.as_micros() as u64);
            }
            ConnectAction::Diagnosis(d) => self.diagnosis = Some(d),
            ConnectAction::Finished => self.running = false,
        }
    }
}

pub fn render(f: &mut Frame, area: Rect, app: &App) {
    let t = app.theme;
    let c = &app.connect;
    let [head, body, chart] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Min(3),
        Constraint::Length(5),
    ])
    .areas(area);
    let device = c
        .device
        .clone()
        .unwrap_or_else(|| "none: select a device on the PKI tab and press c".into());
    let head_lines = vec![
        Line::from(vec![Span::styled("Device  ", t.title()), Span::raw(device)]),
        Line::from(vec![
            Span::styled("Target  ", t.title()),
            Span::raw(c.target.label()),
        ]),
        Line::from(vec![
            Span::styled("Counts  ", t.title()),
            Span::raw(format!("{} sent, {} acknowledged", c.sent, c.acked)),
        ]),
    ];
    f.render_widget(
        Paragraph::new(head_lines).block(block(t, "Connection test")),
        head,
    );
    let mut lines = Vec::new();
    if !AVAILABLE {
        lines.push(Line::styled("⚠ not available in this build", t.warn()));
        lines.push(Line::raw(UNAVAILABLE));
    }
    for s in &c.steps {
        let (sym, style) = match s.state {
            StepState::Running => ("…", t.warn()),
            StepState::Ok => ("✓", t.ok()),
            StepState::Failed => ("✗", t.bad()),
        };
        let took = s
            .took
            .map(|d| format!(" {} ms", d.as_millis()))
            .unwrap_or_default();
        lines.push(Line::from(vec![
            Span::styled(format!("{sym} "), style),
            Span::raw(format!("{}{took}  {}", s.name, s.detail)),
        ]));
    }
    if let Some(d) = &c.diagnosis {
        lines.push(Line::styled(format!("✗ diagnosis: {d}"), t.bad()));
    }
    for m in c.log.iter().rev().take(body.height as usize).rev() {
        lines.push(Line::raw(m.clone()));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block(t, "Steps and messages")),
        body,
    );
    f.render_widget(
        Sparkline::default()
            .data(&c.round_trips)
            .block(block(t, "Round trips (µs)")),
        chart,
    );
}

fn block(t: Theme, title: &str) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {title} "), t.title()))
}
