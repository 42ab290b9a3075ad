//! Live figures: devices count into atomics and shared histograms; a ticker turns them into a
//! [`Figures`] snapshot on a watch channel, which a face reads whenever it draws (never waits).

use super::report::{FailureGroup, Latency, new_histogram};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What the devices update as they go.
#[derive(Debug)]
pub(crate) struct Live {
    pub connected: AtomicU64,
    pub connecting: AtomicU64,
    pub failed: AtomicU64,
    /// Devices that connected at least once.
    pub ever_connected: AtomicU64,
    pub handshakes: AtomicU64,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub ack_lost: AtomicU64,
    /// Of `ack_lost`, those in flight when the storm dropped their connection.
    pub ack_dropped_by_storm: AtomicU64,
    pub round_trips: AtomicU64,
    pub round_trips_lost: AtomicU64,
    pub storm_retries: AtomicU64,
    /// Devices assigned by DPS (`--dps`), once each.
    pub provisioned: AtomicU64,
    pub provision_us: Mutex<Histogram<u64>>,
    pub handshake_us: Mutex<Histogram<u64>>,
    pub ack_us: Mutex<Histogram<u64>>,
    pub round_trip_us: Mutex<Histogram<u64>>,
    pub failures: Mutex<BTreeMap<String, FailureGroup>>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            connected: AtomicU64::new(0),
            connecting: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            ever_connected: AtomicU64::new(0),
            handshakes: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            ack_lost: AtomicU64::new(0),
            ack_dropped_by_storm: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
            round_trips_lost: AtomicU64::new(0),
            storm_retries: AtomicU64::new(0),
            provisioned: AtomicU64::new(0),
            provision_us: Mutex::new(new_histogram()),
            handshake_us: Mutex::new(new_histogram()),
            ack_us: Mutex::new(new_histogram()),
            round_trip_us: Mutex::new(new_histogram()),
            failures: Mutex::new(BTreeMap::new()),
        }
    }
}

pub(crate) fn record(h: &Mutex<Histogram<u64>>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, 3_600_000_000);
    if let Ok(mut h) = h.lock() {
        let _ = h.record(us);
    }
}

impl Live {
    pub fn latency(h: &Mutex<Histogram<u64>>) -> Latency {
        match h.lock() {
            Ok(h) => Latency::of(&h),
            Err(_) => Latency::default(),
        }
    }

    /// The figures without the serialized histograms (cheap enough for every tick).
    fn quick(h: &Mutex<Histogram<u64>>) -> Percentiles {
        match h.lock() {
            Ok(h) => Percentiles::of(&h),
            Err(_) => Percentiles::default(),
        }
    }
}

/// p50/p90/p99/max in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest sample.
    pub max_ms: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// The phase a run is in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Devices are connecting, at the plan's connect rate.
    #[default]
    RampUp,
    /// Every device has connected or failed; telemetry flows.
    Steady,
    /// The reconnect storm: every connected device was dropped and reconnects at once.
    Storm,
    /// Stop was asked (or the duration ran out): devices disconnect.
    Stopping,
    /// Every device has stopped; the report is ready.
    Done,
}

impl Phase {
    /// The phase's name on screen and in JSON (`ramp-up`, `steady`, …).
    pub fn label(self) -> &'static str {
        match self {
            Phase::RampUp => "ramp-up",
            Phase::Steady => "steady",
            Phase::Storm => "storm",
            Phase::Stopping => "stopping",
            Phase::Done => "done",
        }
    }
}

/// A snapshot of a run, a few times a second.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Where the run is.
    pub phase: Phase,
    /// Seconds since the run started.
    pub elapsed_s: f64,
    /// Devices in the run.
    pub devices: u64,
    /// Devices connected now.
    pub connected: u64,
    /// Devices between dialling and CONNACK now.
    pub connecting: u64,
    /// Devices that gave up (their failure is in `failures`).
    pub failed: u64,
    /// Devices assigned by DPS so far (`--dps`).
    pub provisioned: u64,
    /// Completed connects (TCP, TLS, CONNACK) so far, reconnects included.
    pub handshakes: u64,
    /// Handshakes per second over the last tick.
    pub handshakes_per_s: f64,
    /// Telemetry messages published so far.
    pub sent: u64,
    /// Of those, acknowledged by PUBACK (QoS 1).
    pub acked: u64,
    /// Messages published per second over the last tick.
    pub messages_per_s: f64,
    /// PUBACK latency so far.
    pub ack: Percentiles,
    /// Round-trip latency so far (echo or C2D).
    pub round_trip: Percentiles,
    /// Failures by diagnosis kind: (kind, count, example device).
    pub failures: Vec<(String, u64, String)>,
    /// Messages per second over the last ticks, oldest first (for a sparkline).
    pub rate_history: Vec<u64>,
    /// Acknowledgement latency buckets for a bar chart: (upper bound ms, count).
    pub ack_buckets: Vec<(f64, u64)>,
}

/// How many ticks of history [`Figures::rate_history`] keeps.
const HISTORY: usize = 120;

/// Turns the live counters into snapshots, with rates over the last tick.
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    last: Option<(f64, u64, u64)>,
    history: std::collections::VecDeque<u64>,
}

impl Sampler {
    pub fn sample(&mut self, live: &Live, devices: u64, elapsed_s: f64, phase: Phase) -> Figures {
        let handshakes = live.handshakes.load(Relaxed);
        let sent = live.sent.load(Relaxed);
        let (hs_rate, msg_rate) = match self.last {
            Some((t, h, s)) if elapsed_s > t => (
                (handshakes - h) as f64 / (elapsed_s - t),
                (sent - s) as f64 / (elapsed_s - t),
            ),
            _ => (0.0, 0.0),
        };
        self.last = Some((elapsed_s, handshakes, sent));
        if self.history.len() >= HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(msg_rate.round() as u64);
        let failures = live
            .failures
            .lock()
            .map(|f| {
                f.iter()
                    .map(|(k, g)| (k.clone(), g.count, g.example.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let ack_buckets = live.ack_us.lock().map(|h| buckets(&h)).unwrap_or_default();
        Figures {
            phase,
            elapsed_s,
            devices,
            connected: live.connected.load(Relaxed),
            connecting: live.connecting.load(Relaxed),
            failed: live.failed.load(Relaxed),
            provisioned: live.provisioned.load(Relaxed),
            handshakes,
            handshakes_per_s: hs_rate,
            sent,
            acked: live.acked.load(Relaxed),
            messages_per_s: msg_rate,
            ack: Live::quick(&live.ack_us),
            round_trip: Live::quick(&live.round_trip_us),
            failures,
            rate_history: self.history.iter().copied().collect(),
            ack_buckets,
        }
    }
}

/// Counts in power-of-two millisecond buckets from 0.25 ms to 4 s (the last holds the rest).
fn buckets(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    let mut out = Vec::new();
    let mut lo = 0u64;
    let mut bound_us = 250u64;
    while bound_us <= 4_000_000 {
        let hi = if bound_us == 4_000_000 {
            u64::MAX
        } else {
            bound_us
        };
        let n = h.count_between(lo, hi.min(h.high()));
        out.push((bound_us as f64 / 1000.0, if h.is_empty() { 0 } else { n }));
        lo = bound_us + 1;
        bound_us *= 2;
    }
    out
}
