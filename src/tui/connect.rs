//! The Connect tab: pick a device and a target, run the connection test, watch its steps,
//! round trips and diagnosis live.
//!
//! `Command::RunTest` starts `crate::mqtt::run` in a tokio task (with the in-process local hub
//! when the target is the local hub); its events come back as `ConnectAction::Engine` and fill
//! the state below. One test at a time.

use super::app::App;
use super::theme::Theme;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline, Wrap};
use std::time::Duration;

pub const AVAILABLE: bool = true;
/// Messages a test from the TUI sends.
pub const COUNT: u32 = 5;
/// Log lines kept.
pub const LOG_CAP: usize = 500;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    LocalHub,
    AzureHub(String),
    Broker(String),
}

impl Target {
    /// What the user typed: `local`, an IoT Hub host (`HOST[:PORT]`) or `mqtts://HOST:PORT`;
    /// checked with the same parser as `connect --to`.
    pub fn parse(s: &str) -> Result<Target, String> {
        let s = s.trim();
        if s.is_empty() || s == "local" {
            return Ok(Target::LocalHub);
        }
        let e = crate::mqtt::Endpoint::parse(s)?;
        Ok(match e.peer {
            crate::mqtt::PeerKind::Broker => Target::Broker(s.to_string()),
            _ => Target::AzureHub(s.to_string()),
        })
    }

    /// The `--to` value for the same target.
    pub fn to_arg(&self) -> String {
        match self {
            Target::LocalHub => "local".into(),
            Target::AzureHub(h) | Target::Broker(h) => h.clone(),
        }
    }

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
    /// An event of the connection test engine.
    Engine(Box<crate::mqtt::Event>),
    /// The test task ended; Err when it could not start (no device, hub failed...).
    Ended(Result<(), String>),
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
    /// TLS version, suite and server certificate of the last handshake.
    pub tls: Vec<String>,
    pub rt_seen: u64,
    pub lost: u64,
    pub summary: Option<String>,
    /// The device of the last test that passed (the guide's "connect" step).
    pub passed: Option<String>,
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
            tls: vec![],
            rt_seen: 0,
            lost: 0,
            summary: None,
            passed: None,
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
            ConnectAction::Engine(e) => self.engine(*e),
            ConnectAction::Ended(r) => {
                self.running = false;
                if let Err(e) = r {
                    self.diagnosis = Some(e);
                }
            }
        }
        if self.log.len() > LOG_CAP {
            let extra = self.log.len() - LOG_CAP;
            self.log.drain(..extra);
        }
    }

    /// Clear the last run's results for a new test.
    pub fn begin(&mut self) {
        let (device, target, passed) = (
            self.device.clone(),
            self.target.clone(),
            self.passed.clone(),
        );
        *self = ConnectState {
            device,
            target,
            passed,
            running: true,
            ..Default::default()
        };
    }

    fn step(&mut self, name: &str, ok: bool, ms: f64, detail: String) {
        self.apply(ConnectAction::Step(Step {
            name: name.into(),
            state: if ok { StepState::Ok } else { StepState::Failed },
            took: Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0)),
            detail,
        }));
    }

    fn engine(&mut self, e: crate::mqtt::Event) {
        use crate::mqtt::Event as E;
        match e {
            E::Start {
                device,
                endpoint,
                count,
                qos,
                ..
            } => self.log.push(format!(
                "connect {device} → {endpoint}, {count} message(s), QoS {qos}"
            )),
            E::Lint { findings } => {
                let errors = findings
                    .iter()
                    .filter(|f| f.severity == crate::pki::lint::Severity::Error)
                    .count();
                self.apply(ConnectAction::Step(Step {
                    name: "pre-flight lint".into(),
                    state: if errors == 0 {
                        StepState::Ok
                    } else {
                        StepState::Failed
                    },
                    took: None,
                    detail: if findings.is_empty() {
                        "no findings".into()
                    } else {
                        format!("{} finding(s)", findings.len())
                    },
                }));
                for f in findings {
                    self.log.push(format!(
                        "! {} {}: {}",
                        f.severity.as_str(),
                        f.code,
                        f.message
                    ));
                }
            }
            E::Resolved { ms, addresses } => self.step("resolve", true, ms, addresses.join(", ")),
            E::TcpConnected { ms, address } => self.step("TCP connect", true, ms, address),
            E::TlsEstablished { ms, facts } => {
                self.step(
                    "TLS handshake",
                    true,
                    ms,
                    format!("{}, {}", facts.version, facts.cipher_suite),
                );
                self.tls = vec![format!("{} {}", facts.version, facts.cipher_suite)];
                if let Some(s) = &facts.server_cert {
                    self.tls.push(format!(
                        "server {} ({}), until {}",
                        crate::text::escape_controls(&s.subject),
                        if facts.server_verified {
                            "verified"
                        } else {
                            "NOT verified"
                        },
                        s.not_after
                    ));
                }
                if !facts.client_chain_sent.is_empty() {
                    self.tls
                        .push(format!("sent {}", facts.client_chain_sent.join(" ← ")));
                }
            }
            E::Connack {
                ms, code, meaning, ..
            } => self.step("MQTT CONNECT", code == 0, ms, format!("CONNACK {meaning}")),
            E::Subscribed { ms, topics } => {
                let ok = topics.iter().all(|t| t.granted.is_some());
                self.step("subscribe", ok, ms, format!("{} topic(s)", topics.len()));
            }
            E::Published {
                message_id,
                payload,
                ack_ms,
                ..
            } => {
                self.sent += 1;
                let ack = match ack_ms {
                    Some(ms) => {
                        self.acked += 1;
                        format!("PUBACK {ms:.1} ms")
                    }
                    None => "sent (QoS 0)".into(),
                };
                let payload = crate::text::escape_controls(&payload);
                self.log.push(format!("↑ #{message_id} {ack} {payload}"));
            }
            E::AckMissing { message_id } => {
                self.lost += 1;
                self.log.push(format!("✗ #{message_id} no PUBACK"));
            }
            E::RoundTrip {
                message_id,
                kind,
                ms,
                ..
            } => {
                self.rt_seen += 1;
                self.round_trips.push((ms * 1000.0).round() as u64);
                self.log.push(format!(
                    "↓ #{message_id} {} round trip {ms:.1} ms",
                    kind.as_str()
                ));
            }
            E::RoundTripMissing { message_id, kind } => {
                self.lost += 1;
                self.log.push(format!(
                    "✗ #{message_id} {} round trip missing",
                    kind.as_str()
                ));
            }
            E::HubRecorded { recorded, missing } => self.log.push(if missing.is_empty() {
                format!("✓ local hub recorded all {recorded} message(s)")
            } else {
                format!("✗ local hub recorded {recorded}; missing {missing:?}")
            }),
            E::Disconnected { ms } => self.step("disconnect", true, ms, "clean".into()),
            E::Failed { step, diagnosis } => {
                self.apply(ConnectAction::Step(Step {
                    name: step.label().into(),
                    state: StepState::Failed,
                    took: None,
                    detail: diagnosis.code.clone(),
                }));
                self.diagnosis = Some(format!(
                    "{} failed: {}\nfix: {}",
                    step.label(),
                    diagnosis.cause,
                    diagnosis.fix
                ));
            }
            E::Summary(s) => {
                self.summary = Some(format!(
                    "{} {} sent, {} acknowledged, {}/{} round trips, {} lost",
                    if s.ok { "✓" } else { "✗" },
                    s.sent,
                    s.acked,
                    s.round_trips_seen,
                    s.round_trips_expected,
                    s.lost
                ));
                if s.ok {
                    self.passed = self.device.clone();
                }
                self.running = false;
            }
        }
    }
}

pub fn render(f: &mut Frame, area: Rect, app: &App) {
    let t = app.theme;
    let c = &app.connect;
    let diag_h = if c.diagnosis.is_some() { 5 } else { 0 };
    let [head, body, diag, chart] = Layout::vertical([
        Constraint::Length(5 + c.tls.len().min(2) as u16),
        Constraint::Min(3),
        Constraint::Length(diag_h),
        Constraint::Length(4),
    ])
    .areas(area);
    let device = c
        .device
        .clone()
        .unwrap_or_else(|| "none: select a device on the PKI tab and press c".into());
    let state = if c.running {
        Span::styled(
            format!(
                "  {} running",
                super::theme::SPINNER[app.spinner % super::theme::SPINNER.len()]
            ),
            t.warn(),
        )
    } else {
        Span::styled("  Enter start · t target", t.dim())
    };
    let mut head_lines = vec![
        Line::from(vec![
            Span::styled("Device  ", t.title()),
            Span::raw(device),
            state,
        ]),
        Line::from(vec![
            Span::styled("Target  ", t.title()),
            Span::raw(c.target.label()),
        ]),
    ];
    for (i, l) in c.tls.iter().take(2).enumerate() {
        head_lines.push(Line::from(vec![
            Span::styled(if i == 0 { "TLS     " } else { "        " }, t.title()),
            Span::raw(l.clone()),
        ]));
    }
    head_lines.push(Line::from(vec![
        Span::styled("Counts  ", t.title()),
        Span::raw(format!(
            "{} sent, {} acknowledged, {} round trips, {} lost",
            c.sent, c.acked, c.rt_seen, c.lost
        )),
    ]));
    f.render_widget(
        Paragraph::new(head_lines).block(block(t, "Connection test")),
        head,
    );
    let [steps_area, log_area] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(body);
    let mut lines = Vec::new();
    for s in &c.steps {
        let (sym, style) = match s.state {
            StepState::Running => ("…", t.warn()),
            StepState::Ok => ("✓", t.ok()),
            StepState::Failed => ("✗", t.bad()),
        };
        let took = s
            .took
            .map(|d| format!(" {:.1} ms", d.as_secs_f64() * 1000.0))
            .unwrap_or_default();
        lines.push(Line::from(vec![
            Span::styled(format!("{sym} "), style),
            Span::raw(format!("{}{took}  {}", s.name, s.detail)),
        ]));
    }
    if let Some(sm) = &c.summary {
        lines.push(Line::raw(sm.clone()));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block(t, "Steps")),
        steps_area,
    );
    let shown = log_area.height.saturating_sub(2) as usize;
    let log: Vec<Line> = c
        .log
        .iter()
        .skip(c.log.len().saturating_sub(shown))
        .map(|m| Line::raw(m.clone()))
        .collect();
    f.render_widget(Paragraph::new(log).block(block(t, "Messages")), log_area);
    if let Some(d) = &c.diagnosis {
        f.render_widget(
            Paragraph::new(
                d.lines()
                    .map(|l| Line::styled(l.to_string(), t.bad()))
                    .collect::<Vec<_>>(),
            )
            .wrap(Wrap { trim: false })
            .block(block(t, "Diagnosis")),
            diag,
        );
    }
    let last = c
        .round_trips
        .last()
        .map(|us| format!(" last {:.1} ms", *us as f64 / 1000.0))
        .unwrap_or_default();
    let width = chart.width.saturating_sub(2) as usize;
    let data = &c.round_trips[c.round_trips.len().saturating_sub(width)..];
    f.render_widget(
        Sparkline::default()
            .data(data)
            .style(t.accent())
            .block(block(t, &format!("Round trips{last}"))),
        chart,
    );
}

fn block(t: Theme, title: &str) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {title} "), t.title()))
}
