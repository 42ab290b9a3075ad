//! The Fleet view on the Connect tab (`f`): many devices at once (the CA or device selected
//! on the PKI tab, or a typed range), with live counters, a connected-devices gauge, a
//! messages/s sparkline and the acknowledgement latency histogram.
//!
//! The run is `crate::fleet` on a tokio task; its figures arrive as [`FleetAction::Figures`]
//! a few times a second, so a frame only draws the last snapshot and never waits on 10,000
//! devices.

use super::theme::Theme;
use crate::fleet::{Figures, Report};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Borders, Gauge, Paragraph, Sparkline};

/// Telemetry messages per second per device in a run from the TUI (until `s` stops it).
const RATE: f64 = 1.0;
/// New connections per second during ramp-up.
const CONNECT_RATE: f64 = 500.0;

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
pub(crate) enum Intent {
    /// Enter: run the typed range, or the PKI tab's selection.
    Start,
    /// `s`: stop the running fleet.
    Stop,
}

impl FleetState {
    /// A key in the Fleet view: the range being typed takes it, else Enter, `s` and `r`.
    pub(crate) fn key(&mut self, k: KeyEvent) -> Option<Intent> {
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
pub(crate) fn render(f: &mut Frame, area: Rect, s: &FleetState, target: &str, t: Theme) {
    let fig = &s.figures;
    // The outcome line is wrapped whole (an error says what to do at its end): the header
    // grows by its rows, the charts give way.
    let outcome: Vec<Line> = match (&s.error, &s.summary) {
        (Some(e), _) => super::ui::wrap_whole_words(&esc(e), area.width.saturating_sub(2).into())
            .into_iter()
            .map(|l| Line::styled(l, t.bad()))
            .collect(),
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
            Span::raw(esc(target)),
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

/// Run a fleet from the TUI: the devices, the target (the Hub tab's hub for `local`, started
/// when stopped, on a free port when the Hub tab's is taken), figures forwarded as actions
/// until the run ends ([`Engines::stop_fleet`](super::Engines::stop_fleet) stops it).
pub async fn run(
    ws_root: std::path::PathBuf,
    engines: super::Engines,
    patterns: Vec<String>,
    issuer: Option<String>,
    target: super::connect::ConnectTarget,
    hub_port: u16,
    tx: tokio::sync::mpsc::UnboundedSender<super::Action>,
) -> Result<Box<Report>, String> {
    use crate::fleet::{Load, Plan};
    use crate::target::{Destination, HubWatching, TargetSpec};
    let ws = crate::store::Workspace::open(&ws_root)
        .map_err(|e| super::forms::error_text(&e))?
        .with_clock(engines.clock);
    let spec = |to| TargetSpec {
        to,
        transport: crate::mqtt::Transport::Mqtt,
        flavor: None,
        anchors: vec![],
        watching: HubWatching::RefusalsOnly,
    };
    let target = match &target {
        super::connect::ConnectTarget::LocalHub => {
            let h = super::local_hub(&engines, &ws_root, hub_port, &tx).await?;
            let source = crate::mqtt::local::HubSource::InProcess(&h);
            crate::target::resolve(Some(&ws), spec(Destination::Local(source))).await
        }
        super::connect::ConnectTarget::AzureHub(to) | super::connect::ConnectTarget::Broker(to) => {
            crate::target::resolve(Some(&ws), spec(Destination::Remote(to))).await
        }
    }
    .map_err(|e| super::forms::error_text(&e))?;
    let (extra_ca, system_roots) = (target.trust.anchors.clone(), target.trust.system_roots);
    let devices = tokio::task::spawn_blocking(move || {
        let names = crate::fleet::select(&ws, &patterns, issuer.as_deref())?.names;
        crate::fleet::raise_open_files(names.len() as u64)?;
        crate::fleet::load_devices(&ws, &names, &extra_ca, system_roots)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| super::forms::error_text(&e))?;
    let _ = tx.send(super::Action::Fleet(FleetAction::Started {
        devices: devices.len(),
    }));
    let mut plan = Plan::new(devices, target.endpoint.clone(), target.flavor);
    plan.connect_rate = CONNECT_RATE;
    plan.load = Load::Rate(RATE);
    plan.round_trip = target.fleet_round_trip();
    plan.hub = target.hub.clone();
    let run = crate::fleet::start(plan);
    *engines.fleet.lock().await = Some(run.control());
    let mut figures = run.figures.clone();
    while figures.changed().await.is_ok() {
        let f = figures.borrow_and_update().clone();
        let done = f.phase == crate::fleet::Phase::Done;
        let _ = tx.send(super::Action::Fleet(FleetAction::Figures(Box::new(f))));
        if done {
            break;
        }
    }
    let report = run.finish().await;
    *engines.fleet.lock().await = None;
    Ok(Box::new(report))
}
