//! The Fleet view on the Connect tab (`f`): many devices at once (the CA or device selected
//! on the PKI tab, or a typed range), with live counters, a connected-devices gauge, a
//! messages/s sparkline and the acknowledgement latency histogram.
//!
//! The run is `crate::fleet` on a tokio task; its figures arrive as [`FleetAction::Figures`]
//! a few times a second, so a frame only draws the last snapshot and never waits on 10,000
//! devices.

use super::command::Command;
use super::help::FooterKey;
use super::request::Request;
use super::target::ConnectTarget;
use super::theme::Level;
use super::theme::Theme;
use crate::fleet::{Figures, Report};
use crate::mqtt::Transport;
use crate::store::{Kind, Meta};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Borders, Gauge, Paragraph, Sparkline};

/// The keys the footer names on the Fleet view: (keys, what they do, the same in a word).
pub(crate) const FOOTER_KEYS: &[FooterKey] = &[
    ("r", "type devices", "devices"),
    ("Enter", "run", "run"),
    ("s", "stop", "stop"),
    ("f", "single test", "single"),
];

/// The longest device list typed with `r`, in bytes: room for a few dozen ids or ranges
/// (an IoT Hub device id is at most 128 characters); a longer selection is a CA's devices
/// (select the CA on the PKI tab) or `chainsmith fleet run`.
pub const RANGE_MAX: usize = 1024;

/// What the fleet engine reports to the app.
#[derive(Clone, Debug)]
pub enum FleetAction {
    /// The devices were loaded and the run began.
    Started {
        /// How many devices the run drives.
        devices: usize,
    },
    /// The run's figures now (counters, rates, latency buckets, failures by diagnosis).
    Figures(Box<Figures>),
    /// The run ended (finished or stopped with `s`): its report, or why it could not run.
    Ended(Result<Box<Report>, String>),
}

/// What the Fleet view shows and remembers.
#[derive(Clone, Debug, Default)]
pub struct FleetState {
    /// The Connect tab shows the fleet instead of the single test.
    pub shown: bool,
    /// A run is on: Enter is ignored, `s` stops it.
    pub running: bool,
    /// A typed range (`sensor-{00001..10000}`); empty: the PKI tab's selection.
    pub(crate) range: String,
    /// The range is being typed (`r`): keys go to it.
    pub(crate) editing: bool,
    /// What the last run drives, as the user knows it.
    pub(crate) label: String,
    /// The last figures of the current or last run.
    pub figures: Figures,
    /// The last run's outcome in one line, once it ended.
    pub(crate) summary: Option<String>,
    /// Why the last run could not run or failed.
    pub(crate) error: Option<String>,
}

/// What a key asks of the app.
#[derive(Debug, PartialEq, Eq)]
enum Intent {
    /// Enter: run the typed range, or the PKI tab's selection.
    Start,
    /// `s`: stop the running fleet.
    Stop,
}

/// What the Fleet view's keys need from the rest of the app.
pub(crate) struct FleetKeyContext<'a> {
    /// The entity selected on the PKI tab: a CA runs every device under it, a device itself.
    pub(crate) selected: Option<&'a Meta>,
    /// Where the devices connect: the Connect tab's target.
    pub(crate) target: &'a ConnectTarget,
    /// The Connect tab's protocol (the fleet speaks MQTT over TLS only, and says so).
    pub(crate) transport: Transport,
    /// The Hub tab's port, for the hub the run starts when none runs.
    pub(crate) hub_port: u16,
}

impl FleetState {
    /// The device list (`r`) is being typed: every key goes to it.
    pub(crate) fn takes_every_key(&self) -> bool {
        self.editing
    }

    /// A key in the Fleet view: Enter runs the typed range or the PKI selection (a CA: every
    /// device under it), `s` stops, `r` types a range.
    pub(crate) fn key(&mut self, k: KeyEvent, cx: &FleetKeyContext) -> Option<Request> {
        match self.intent(k)? {
            Intent::Stop => Some(Request::Run(Command::StopFleet)),
            Intent::Start => Some(self.start(cx)),
        }
    }

    fn start(&mut self, cx: &FleetKeyContext) -> Request {
        let typed = self.patterns();
        let (patterns, issuer, label) = if !typed.is_empty() {
            let label = typed.join(" ");
            (typed, None, label)
        } else {
            match cx.selected {
                Some(m) if m.kind.is_ca() => (
                    vec![],
                    Some(m.name.clone()),
                    format!("every device under {}", m.name),
                ),
                Some(m) if m.kind == Kind::Device => (vec![m.name.clone()], None, m.name.clone()),
                _ => {
                    return Request::warn(
                        "select a CA or a device on the PKI tab, or press r and type a range",
                    );
                }
            }
        };
        // The fleet engine speaks MQTT over TLS only (RunFleet carries no transport): a
        // Protocol chosen for the single test must not look as if it applied.
        let (level, said) = match cx.transport {
            Transport::Mqtt => (Level::Info, format!("fleet: starting {label}…")),
            other => (
                Level::Warn,
                format!(
                    "fleet: starting {label}; the fleet runs over MQTT (TLS), \
                     the Protocol field ({}) applies to the single test",
                    other.as_str()
                ),
            ),
        };
        self.begin(label);
        Request::SayAndRun(
            level,
            said,
            Command::RunFleet {
                patterns,
                issuer,
                target: cx.target.clone(),
                hub_port: cx.hub_port,
            },
        )
    }

    /// What a key means in the Fleet view: the range being typed takes it, else Enter, `s`
    /// and `r`.
    fn intent(&mut self, k: KeyEvent) -> Option<Intent> {
        if self.editing {
            match k.code {
                // Enter keeps what was typed and runs it: one key, as the footer says.
                KeyCode::Enter => {
                    self.editing = false;
                    return (!self.running).then_some(Intent::Start);
                }
                KeyCode::Esc => self.editing = false,
                KeyCode::Backspace => {
                    self.range.pop();
                }
                KeyCode::Char(c) if !c.is_control() && self.range.len() < RANGE_MAX => {
                    self.range.push(c)
                }
                _ => {}
            }
            return None;
        }
        match k.code {
            KeyCode::Enter if !self.running => Some(Intent::Start),
            KeyCode::Char('s') if self.running => Some(Intent::Stop),
            KeyCode::Char('r') if !self.running => {
                self.editing = true;
                None
            }
            _ => None,
        }
    }

    /// Take in what the fleet engine reported.
    pub(crate) fn apply(&mut self, a: FleetAction) {
        match a {
            FleetAction::Started { devices } => {
                self.figures.devices = devices as u64;
            }
            FleetAction::Figures(f) => self.figures = *f,
            FleetAction::Ended(r) => {
                self.running = false;
                match r {
                    Ok(r) => {
                        self.summary = Some(format!(
                            "{} device(s): {} connected, {} failed; {} messages, {} acknowledged ({})",
                            r.devices,
                            r.connected,
                            r.failed,
                            r.messages.sent,
                            r.messages.acked,
                            r.stopped
                        ))
                    }
                    Err(e) => self.error = Some(e),
                }
            }
        }
    }

    /// The typed device list as the fleet engine takes it: ids and ranges separated by
    /// spaces are several (`dev-1 dev-2 sensor-{01..10}`), as on the command line.
    pub(crate) fn patterns(&self) -> Vec<String> {
        self.range.split_whitespace().map(str::to_string).collect()
    }

    /// A run of `label` (what the user picked) starts: the last run's figures and outcome go.
    pub fn begin(&mut self, label: String) {
        self.running = true;
        self.label = label;
        self.figures = Figures::default();
        self.summary = None;
        self.error = None;
    }
}

fn esc(s: &str) -> String {
    crate::text::escape_controls(s).into_owned()
}

/// The Fleet view: devices and target, counters, the connected gauge, the messages/s
/// sparkline, the PUBACK latency histogram and failures by diagnosis.
pub(crate) fn render(
    f: &mut Frame,
    area: Rect,
    s: &FleetState,
    target: &ConnectTarget,
    transport: Transport,
    t: Theme,
) {
    // The fleet speaks MQTT over TLS only: say so where another Protocol is chosen.
    let target = match transport {
        Transport::Mqtt => target.label(),
        other => format!(
            "{} over mqtt (the fleet's only protocol; {} is for the single test)",
            target.label(),
            other.as_str()
        ),
    };
    let fig = &s.figures;
    // The outcome line is wrapped whole (an error says what to do at its end): the header
    // grows by its rows, the charts give way.
    let outcome: Vec<Line> = match (&s.error, &s.summary) {
        (Some(e), _) => {
            super::widgets::wrap_whole_words(&esc(e), area.width.saturating_sub(2).into())
                .into_iter()
                .map(|l| Line::styled(l, t.bad()))
                .collect()
        }
        (None, Some(sm)) => vec![Line::styled(esc(sm), t.ok())],
        (None, None) => vec![],
    };
    let head_h = (4 + 2 + outcome.len() as u16).min(area.height.saturating_sub(3 + 6 + 4).max(6));
    let [head, gauge, mid, fails] = Layout::vertical([
        Constraint::Length(head_h),
        Constraint::Length(3),
        Constraint::Min(6),
        Constraint::Length(4),
    ])
    .areas(area);
    let state = if s.running {
        Span::styled(format!("running · {}", fig.phase.label()), t.warn())
    } else if s.error.is_some() {
        Span::styled("failed", t.bad())
    } else if s.summary.is_some() {
        Span::styled("done", t.ok())
    } else {
        Span::styled("ready", t.dim())
    };
    let devices = if s.editing {
        format!("{}▏", esc(&s.range))
    } else if !s.range.is_empty() {
        esc(&s.range)
    } else if !s.label.is_empty() {
        esc(&s.label)
    } else {
        "the PKI tab's selection (a CA: every device under it), or r to type a range".into()
    };
    let mut lines = vec![
        Line::from(vec![Span::styled("Devices  ", t.dim()), Span::raw(devices)]),
        Line::from(vec![
            Span::styled("Target   ", t.dim()),
            Span::raw(esc(&target)),
            Span::raw("   "),
            state,
        ]),
        Line::from(format!(
            "connected {}  connecting {}  failed {}  ·  {:.0} s",
            fig.connected, fig.connecting, fig.failed, fig.elapsed_s
        )),
        Line::from(format!(
            "{:.0} handshakes/s  ·  {:.0} msg/s  ·  {} sent, {} acked",
            fig.handshakes_per_s, fig.messages_per_s, fig.sent, fig.acked
        )),
    ];
    lines.extend(outcome);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Fleet · r devices · Enter run · s stop · f single test "),
        ),
        head,
    );
    let ratio = if fig.devices == 0 {
        0.0
    } else {
        (fig.connected as f64 / fig.devices as f64).clamp(0.0, 1.0)
    };
    f.render_widget(
        Gauge::default()
            .block(Block::default().borders(Borders::ALL).title(" Connected "))
            .gauge_style(t.ok())
            .ratio(ratio)
            .label(format!("{}/{}", fig.connected, fig.devices)),
        gauge,
    );
    let [spark, hist] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(mid);
    f.render_widget(
        Sparkline::default()
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" Messages/s (now {:.0}) ", fig.messages_per_s)),
            )
            .data(&fig.rate_history)
            .style(t.accent()),
        spark,
    );
    let (labelled, bar_width) = histogram_bars(&fig.ack_buckets);
    let bars: Vec<Bar> = labelled
        .into_iter()
        .map(|(label, n)| {
            Bar::default()
                .value(n)
                .text_value(String::new())
                .label(Line::from(label))
        })
        .collect();
    f.render_widget(
        BarChart::default()
            .block(Block::default().borders(Borders::ALL).title(format!(
                " PUBACK ms  p50 {:.2} p90 {:.2} p99 {:.2} max {:.2} ",
                fig.ack.p50_ms, fig.ack.p90_ms, fig.ack.p99_ms, fig.ack.max_ms
            )))
            .bar_width(bar_width)
            .bar_gap(1)
            .data(BarGroup::default().bars(&bars)),
        hist,
    );
    let fl: Vec<Line> = if fig.failures.is_empty() {
        vec![Line::styled("no failures", t.dim())]
    } else {
        fig.failures
            .iter()
            .map(|(k, n, ex)| {
                Line::from(vec![
                    Span::styled(format!("✗ {}", esc(k)), t.bad()),
                    Span::raw(format!(": {n} device(s), e.g. {}", esc(ex))),
                ])
            })
            .collect()
    };
    f.render_widget(
        Paragraph::new(fl).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Failures by diagnosis "),
        ),
        fails,
    );
}

/// The latency histogram's bars: the buckets from the first to the last that holds a
/// message (a run's latencies span a few of the 14), each labelled with its upper bound in
/// ms, and the bar width that shows the widest label whole: a label cut to the bar's width
/// ran into the next ("102 204" for 1024 and 2048).
pub(crate) fn histogram_bars(buckets: &[(f64, u64)]) -> (Vec<(String, u64)>, u16) {
    let first = buckets.iter().position(|(_, n)| *n > 0).unwrap_or(0);
    let last = buckets
        .iter()
        .rposition(|(_, n)| *n > 0)
        .unwrap_or(buckets.len().saturating_sub(1));
    let bars: Vec<(String, u64)> = buckets
        .iter()
        .take(last + 1)
        .skip(first)
        .map(|(ms, n)| {
            let label = if *ms < 1.0 {
                format!("{ms}")
            } else {
                format!("{ms:.0}")
            };
            (label, *n)
        })
        .collect();
    let width = bars
        .iter()
        .map(|(l, _)| l.chars().count() as u16)
        .max()
        .unwrap_or(3)
        .max(3);
    (bars, width)
}
