//! The Connect tab: pick a device and a target, run the connection test, watch its steps,
//! round trips and diagnosis live.
//!
//! `Command::RunTest` starts `crate::mqtt::run` in a tokio task (with the in-process local hub
//! when the target is the local hub); its events come back as `ConnectAction::Engine` and fill
//! the state below. One test at a time.
//!
//! The engine's diagnosis says its fix in domain words and gives it typed
//! ([`crate::mqtt::ConnectRemedy`]); this tab adds the key that applies it ([`key_hint`])
//! where the TUI has one, and otherwise shows the domain words alone.

use super::command::Command;
use super::dialog::Dialog;
use super::forms::Form;
use super::help::FooterKey;
use super::request::Request;
pub use super::target::ConnectTarget;
use super::theme::Level;
use super::theme::Theme;
use crate::mqtt::ConnectRemedy;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline, Wrap};
use std::time::Duration;

/// The keys the footer names on the Connect tab's single test: (keys, what they do, the same
/// in a word).
pub(crate) const FOOTER_KEYS: &[FooterKey] = &[
    ("Enter", "run", "run"),
    ("t", "target", "target"),
    ("f", "fleet", "fleet"),
];

/// Messages a test from the TUI sends.
pub const COUNT: u32 = 5;
/// Log lines kept.
pub const LOG_CAP: usize = 500;

/// Where a step of the test stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepState {
    /// Started, no answer yet.
    Running,
    /// Went through.
    Ok,
    /// Failed: the diagnosis says why.
    Failed,
}

/// One row of the Steps panel: a step of the test (the engine's [`crate::mqtt::Step`], or the
/// pre-flight lint) as it stands, with its time and what it showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRow {
    /// The step's label; a row of the same name is replaced, not added.
    pub name: String,
    /// Running, done or failed.
    pub state: StepState,
    /// How long it took, when it is over and was timed.
    pub took: Option<Duration>,
    /// One line of what it showed (addresses, TLS version, CONNACK, the diagnosis code).
    pub detail: String,
}

/// What the connection test engine reports.
#[derive(Clone, Debug)]
pub enum ConnectAction {
    /// A step started, finished or failed.
    Step(StepRow),
    /// A telemetry message went out (its log line).
    Message(String),
    /// A message's round trip came back in this time.
    RoundTrip(Duration),
    /// Why the test failed, as the Diagnosis box shows it.
    Diagnosis(String),
    /// The test is over.
    Finished,
    /// An event of the connection test engine.
    Engine(Box<crate::mqtt::Event>),
    /// The test task ended; Err when it could not start (no device, hub failed...).
    Ended(Result<(), String>),
}

/// The TUI's key for a remedy it has one for, naming what to select; `None` when the TUI has
/// no key for it (the domain words of the diagnosis are then the whole fix). The hub keys act on
/// the local hub only, so they are offered when the test went there.
pub fn key_hint(remedy: &ConnectRemedy, target: &ConnectTarget) -> Option<String> {
    use ConnectRemedy as R;
    let local = *target == ConnectTarget::LocalHub;
    Some(match remedy {
        R::EnableDevice { device } if local => {
            format!("press o on the Hub tab with \"{device}\" selected on the PKI tab to enable it")
        }
        R::RegisterDevice { device, .. } if local => format!(
            "press a on the Hub tab with \"{device}\" selected on the PKI tab to register it"
        ),
        R::ProveCa { ca } | R::UploadCa { ca } if local => {
            format!(
                "select \"{ca}\" on the PKI tab and press v on the Hub tab to prove it to the hub"
            )
        }
        R::StartHub if local => "press s on the Hub tab to start the hub".into(),
        R::Renew {
            name,
            then_update_hub,
        } => format!(
            "select \"{name}\" on the PKI tab and press r to renew it{}",
            if then_update_hub.is_some() {
                ", then register its new thumbprint with the hub"
            } else {
                ""
            }
        ),
        R::IssueDevice { device, .. } => {
            format!("press n on the PKI tab to issue \"{device}\" again under a CA")
        }
        _ => return None,
    })
}

/// The Connect tab's state: what to test, and what the last (or running) test showed.
#[derive(Clone, Debug)]
pub struct ConnectState {
    /// The workspace device to test (chosen on the PKI tab with `c`).
    pub device: Option<String>,
    /// Where to test it.
    pub target: ConnectTarget,
    /// How: MQTT or AMQP, each plain or over WebSockets.
    pub transport: crate::mqtt::Transport,
    /// The last summary per transport, in the order first run: compared when there are several.
    pub compare: Vec<(crate::mqtt::Transport, String)>,
    /// A test is in flight (one at a time).
    pub running: bool,
    /// The steps so far, in the order they started.
    pub steps: Vec<StepRow>,
    /// The message log, newest last, at most [`LOG_CAP`] lines.
    pub log: Vec<String>,
    /// Each round trip in microseconds, for the sparkline.
    pub round_trips: Vec<u64>,
    /// Telemetry messages sent.
    pub sent: u64,
    /// Telemetry messages acknowledged.
    pub acked: u64,
    /// Why the test failed: cause, fix and the key that applies it.
    pub diagnosis: Option<String>,
    /// TLS version, suite and server certificate of the last handshake.
    pub tls: Vec<String>,
    /// Round trips that came back.
    pub rt_seen: u64,
    /// Acknowledgements and round trips that did not come back in time.
    pub lost: u64,
    /// The last test's summary line.
    pub summary: Option<String>,
    /// The device of the last test that passed (the guide's "connect" step).
    pub passed: Option<String>,
}

impl Default for ConnectState {
    fn default() -> Self {
        ConnectState {
            device: None,
            target: ConnectTarget::LocalHub,
            transport: crate::mqtt::Transport::Mqtt,
            compare: vec![],
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
    /// A key on the Connect tab: `t` types the target, Enter (or `s`) runs the test; the test
    /// starts the Hub tab's hub on `hub_port` when the target is the local hub and none runs.
    pub(crate) fn key(&mut self, k: KeyEvent, hub_port: u16) -> Option<Request> {
        match k.code {
            KeyCode::Char('t') => {
                let transport = crate::mqtt::Transport::ALL
                    .iter()
                    .position(|t| *t == self.transport)
                    .unwrap_or(0);
                let form = Form::target(&self.target.to_arg(), transport);
                Some(Request::Open(Dialog::Form(form)))
            }
            KeyCode::Enter | KeyCode::Char('s') => Some(self.start_test(hub_port)),
            _ => None,
        }
    }

    fn start_test(&mut self, hub_port: u16) -> Request {
        if self.running {
            return Request::warn("a test is running; one at a time");
        }
        let Some(device) = self.device.clone() else {
            return Request::warn("select a device on the PKI tab and press c first");
        };
        self.begin();
        Request::SayAndRun(
            Level::Info,
            format!("testing {device} against {}…", self.target.label()),
            Command::RunTest {
                device,
                target: self.target.clone(),
                transport: self.transport,
                hub_port,
            },
        )
    }
}

impl ConnectState {
    /// Fold one report of the test into the state.
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
        let compare = std::mem::take(&mut self.compare);
        *self = ConnectState {
            device,
            target,
            transport: self.transport,
            compare,
            passed,
            running: true,
            ..Default::default()
        };
    }

    fn step(&mut self, name: &str, ok: bool, ms: f64, detail: String) {
        self.apply(ConnectAction::Step(StepRow {
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
            E::Lint { findings, remedies } => self.lint(findings, remedies),
            E::StepDone { step, ms, detail } => self.step(step.label(), true, ms, detail),
            E::Resolved { ms, addresses } => self.step("resolve", true, ms, addresses.join(", ")),
            E::TcpConnected { ms, address } => self.step("TCP connect", true, ms, address),
            E::TlsEstablished { ms, facts } => self.tls_established(ms, facts),
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
                        format!("{} {ms:.1} ms", self.transport.ack_name())
                    }
                    None => "sent (QoS 0)".into(),
                };
                let payload = crate::text::escape_controls(&payload);
                self.log.push(format!("↑ #{message_id} {ack} {payload}"));
            }
            E::AckMissing { message_id } => {
                self.lost += 1;
                self.log
                    .push(format!("✗ #{message_id} no {}", self.transport.ack_name()));
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
            E::Disconnected { ms } => self.step(
                "disconnect",
                true,
                ms,
                format!("clean ({})", self.transport.close_name()),
            ),
            E::Failed { step, diagnosis } => self.failed(step, diagnosis),
            E::Summary(s) => self.finished(s),
        }
    }

    /// The pre-flight lint as a step, its findings in the log, each with its key when the TUI
    /// has one.
    fn lint(
        &mut self,
        findings: Vec<crate::pki::lint::Finding>,
        remedies: Vec<crate::mqtt::diagnose::FindingRemedy>,
    ) {
        let errors = findings
            .iter()
            .filter(|f| f.severity == crate::pki::lint::Severity::Error)
            .count();
        self.apply(ConnectAction::Step(StepRow {
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
            let key = remedies
                .iter()
                .find(|r| r.code == f.code)
                .and_then(|r| key_hint(&r.remedy, &self.target));
            if let Some(key) = key {
                self.log.push(format!("  key: {key}"));
            }
        }
    }

    /// The handshake as a step, and the TLS facts the panel shows.
    fn tls_established(&mut self, ms: f64, facts: crate::mqtt::TlsFacts) {
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

    /// The failing step, and the diagnosis: cause, the engine's fix, and the key that applies
    /// it when the TUI has one.
    fn failed(&mut self, step: crate::mqtt::Step, diagnosis: crate::mqtt::Diagnosis) {
        self.apply(ConnectAction::Step(StepRow {
            name: step.label().into(),
            state: StepState::Failed,
            took: None,
            detail: diagnosis.code.clone(),
        }));
        let mut text = format!(
            "{} failed: {}\nfix: {}",
            step.label(),
            diagnosis.cause,
            diagnosis.fix
        );
        let key = diagnosis
            .remedy
            .as_ref()
            .and_then(|r| key_hint(r, &self.target));
        if let Some(key) = key {
            text.push_str(&format!("\nkey: {key}"));
        }
        self.diagnosis = Some(text);
    }

    /// The summary line, and this transport's row in the comparison; the run is over.
    fn finished(&mut self, s: crate::mqtt::Summary) {
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
        let line = format!(
            "{} {}/{} acked{}, {}/{} round trips{}, {:.0} ms",
            if s.ok { "✓" } else { "✗" },
            s.acked,
            s.sent,
            s.ack_latency
                .as_ref()
                .map(|l| format!(" (p50 {:.1} ms)", l.p50_ms))
                .unwrap_or_default(),
            s.round_trips_seen,
            s.round_trips_expected,
            s.round_trip_latency
                .as_ref()
                .map(|l| format!(" (p50 {:.1} ms)", l.p50_ms))
                .unwrap_or_default(),
            s.total_ms
        );
        match self.compare.iter_mut().find(|(t, _)| *t == self.transport) {
            Some(e) => e.1 = line,
            None => self.compare.push((self.transport, line)),
        }
        self.running = false;
    }
}

/// The newest lines that fit in `rows`, each wrapped to `width` with a hanging indent: the
/// end of a log (the failing step, the last message) is what must stay in view.
fn tail_wrapped<'a>(
    items: impl DoubleEndedIterator<Item = (String, ratatui::style::Style)>,
    width: usize,
    rows: usize,
) -> Vec<Line<'a>> {
    let mut out: Vec<Line> = Vec::new();
    for (text, style) in items.rev() {
        let mut wrapped = super::widgets::wrap_hanging(&text, width, 2);
        if out.len() + wrapped.len() > rows {
            // The newest line is shown even when cut, never left out.
            if out.is_empty() {
                wrapped.truncate(rows);
                out.extend(wrapped.into_iter().rev().map(|l| Line::styled(l, style)));
            }
            break;
        }
        for l in wrapped.into_iter().rev() {
            out.push(Line::styled(l, style));
        }
    }
    out.reverse();
    out
}

/// Draw the tab: header, steps beside the message log, the diagnosis, the round-trip chart.
/// `spinner` is the frame counter that animates a running test.
pub fn render(f: &mut Frame, area: Rect, c: &ConnectState, t: Theme, spinner: usize) {
    let inner_w = area.width.saturating_sub(2) as usize;
    // The diagnosis is shown whole, wrapped; the sparkline gives way to it when there is
    // nothing to chart, and the header shrinks before the steps do.
    let diag: Vec<String> = c
        .diagnosis
        .iter()
        .flat_map(|d| d.lines())
        .flat_map(|l| super::widgets::wrap_hanging(l, inner_w, 2))
        .collect();
    let chart_h = if c.diagnosis.is_some() && c.round_trips.is_empty() {
        0
    } else {
        4
    };
    let compared = if c.compare.len() > 1 {
        c.compare.len() as u16
    } else {
        0
    };
    let head_full = 5 + c.tls.len().min(2) as u16 + compared;
    // Room for the header's first line and the failing step, at the least.
    let (head_min, steps_min) = (3, 3);
    let diag_h = if diag.is_empty() {
        0
    } else {
        (diag.len() as u16 + 2).min(area.height.saturating_sub(chart_h + steps_min + head_min))
    };
    let head_h = head_full
        .min(area.height.saturating_sub(diag_h + chart_h + steps_min))
        .max(head_min);
    let [head, body, diag_area, chart] = Layout::vertical([
        Constraint::Length(head_h),
        Constraint::Min(3),
        Constraint::Length(diag_h),
        Constraint::Length(chart_h),
    ])
    .areas(area);
    let head_lines = header_lines(c, t, spinner);
    f.render_widget(
        Paragraph::new(head_lines).block(block(t, "Connection test")),
        head,
    );
    render_steps_and_log(f, body, c, t);
    if !diag.is_empty() {
        f.render_widget(
            Paragraph::new(
                diag.into_iter()
                    .map(|l| Line::styled(l, t.bad()))
                    .collect::<Vec<_>>(),
            )
            .wrap(Wrap { trim: false })
            .block(block(t, "Diagnosis")),
            diag_area,
        );
    }
    if chart_h > 0 {
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
}

/// The header: the device and its state, the target, the TLS facts, the counts, and one line per
/// transport when several ran.
fn header_lines(c: &ConnectState, t: Theme, spinner: usize) -> Vec<Line<'static>> {
    let device = c
        .device
        .clone()
        .unwrap_or_else(|| "none: select a device on the PKI tab and press c".into());
    let state = if c.running {
        Span::styled(
            format!(
                "  {} running",
                super::theme::SPINNER[spinner % super::theme::SPINNER.len()]
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
            Span::raw(match c.transport {
                crate::mqtt::Transport::Mqtt => c.target.label(),
                other => format!("{} over {}", c.target.label(), other.as_str()),
            }),
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
    // Several transports run: one line each, to compare.
    if c.compare.len() > 1 {
        for (i, (tr, l)) in c.compare.iter().enumerate() {
            head_lines.push(Line::from(vec![
                Span::styled(if i == 0 { "Compare " } else { "        " }, t.title()),
                Span::raw(format!("{:<8} {l}", tr.as_str())),
            ]));
        }
    }
    head_lines
}

/// The steps beside the message log; after a failure the steps get more of the width.
fn render_steps_and_log(f: &mut Frame, body: Rect, c: &ConnectState, t: Theme) {
    // After a failure the steps matter more than the messages.
    let failed = c.steps.iter().any(|s| s.state == StepState::Failed);
    let steps_pct = if failed { 60 } else { 45 };
    let [steps_area, log_area] = Layout::horizontal([
        Constraint::Percentage(steps_pct),
        Constraint::Percentage(100 - steps_pct),
    ])
    .areas(body);
    // Names padded to the widest shown, so the timings make a column ("AMQP link attach"
    // is longer than any MQTT step).
    let name_w = c
        .steps
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0);
    let pane_w = steps_area.width.saturating_sub(2) as usize;
    let step_line = |s: &StepRow, aligned: bool| {
        let (sym, style) = match s.state {
            StepState::Running => ("…", t.warn()),
            StepState::Ok => ("✓", t.ok()),
            StepState::Failed => ("✗", t.bad()),
        };
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let text = if aligned {
            let took = s
                .took
                .map(|d| format!(" {:>7.1} ms", ms(d)))
                .unwrap_or_else(|| " ".repeat(11));
            format!("{sym} {:<name_w$}{took}  {}", s.name, s.detail)
        } else {
            let took = s
                .took
                .map(|d| format!(" {:.1} ms", ms(d)))
                .unwrap_or_default();
            format!("{sym} {}{took}  {}", s.name, s.detail)
        };
        (text, style)
    };
    // Names and timings in columns where the pane has the rows for them; in a small pane the
    // columns would push details (the failing step's code) off the rows there are.
    let pane_rows = steps_area.height.saturating_sub(2) as usize;
    let aligned = c
        .steps
        .iter()
        .map(|s| super::widgets::wrap_hanging(&step_line(s, true).0, pane_w, 2).len())
        .sum::<usize>()
        + usize::from(c.summary.is_some())
        <= pane_rows;
    let mut steps: Vec<(String, ratatui::style::Style)> =
        c.steps.iter().map(|s| step_line(s, aligned)).collect();
    // After a failure the counts in the header say it all: the failing step keeps the last row.
    if let Some(sm) = c.summary.as_ref().filter(|_| !failed) {
        steps.push((sm.clone(), ratatui::style::Style::new()));
    }
    let rows = |r: Rect| r.height.saturating_sub(2) as usize;
    let width = |r: Rect| r.width.saturating_sub(2) as usize;
    f.render_widget(
        Paragraph::new(tail_wrapped(
            steps.into_iter(),
            width(steps_area),
            rows(steps_area),
        ))
        .wrap(Wrap { trim: false })
        .block(block(t, "Steps")),
        steps_area,
    );
    let log = tail_wrapped(
        c.log
            .iter()
            .skip(c.log.len().saturating_sub(rows(log_area)))
            .map(|m| (m.clone(), ratatui::style::Style::new())),
        width(log_area),
        rows(log_area),
    );
    f.render_widget(
        Paragraph::new(log)
            .wrap(Wrap { trim: false })
            .block(block(t, "Messages")),
        log_area,
    );
}

fn block(t: Theme, title: &str) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {title} "), t.title()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tab draws from its own state, theme and spinner frame alone (no `App`).
    #[test]
    fn renders_from_its_own_state_and_the_spinner_frame() {
        let c = ConnectState {
            device: Some("sensor-7".into()),
            running: true,
            ..Default::default()
        };
        let backend = ratatui::backend::TestBackend::new(80, 20);
        let mut term = ratatui::Terminal::new(backend).unwrap();
        term.draw(|f| render(f, f.area(), &c, Theme::plain(), 3))
            .unwrap();
        let screen: String = term
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(screen.contains("sensor-7"), "{screen}");
        assert!(
            screen.contains(&format!("{} running", super::super::theme::SPINNER[3])),
            "{screen}"
        );
    }
}
