//! What a fleet run produced: counts, failures by diagnosis, and latency histograms that
//! serialize exactly (HDR V2, deflated, base64) so the reports of many shards merge into the
//! figures one process would have measured.

use super::FleetError;
use super::select::Shard;
use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Report format version; `merge` refuses others.
pub const FORMAT: u32 = 1;

/// A latency histogram in microseconds (1 µs to 1 hour, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid")
}

/// A histogram and its figures in milliseconds; `hdr` holds the exact histogram.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
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
    /// HDR histogram (V2 deflate encoding, base64), microseconds.
    pub hdr: String,
}

impl Latency {
    /// The figures and the serialized form of a microsecond histogram.
    pub(crate) fn of(h: &Histogram<u64>) -> Latency {
        let mut buf = Vec::new();
        let hdr = match V2DeflateSerializer::new().serialize(h, &mut buf) {
            Ok(_) => base64::engine::general_purpose::STANDARD.encode(&buf),
            Err(_) => String::new(),
        };
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            hdr,
        }
    }

    /// Decode `hdr` back into the histogram (empty when there is none).
    fn histogram(&self) -> Result<Histogram<u64>, String> {
        if self.hdr.is_empty() {
            return Ok(new_histogram());
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.hdr)
            .map_err(|e| format!("histogram is not base64: {e}"))?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("histogram does not decode: {e:?}"))?;
        Ok(h)
    }
}

/// One diagnosis kind: how many devices failed so, and one of them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FailureGroup {
    /// Devices that failed with this diagnosis.
    pub count: u64,
    /// One of them (a device id).
    pub example: String,
    /// The diagnosis's cause sentence, for the example.
    pub cause: String,
    /// The diagnosis's fix sentence, for the example.
    pub fix: String,
    /// The diagnosis's typed remedy, for a face to add its command or key (reports written
    /// before it existed have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remedy: Option<crate::mqtt::ConnectRemedy>,
    /// The kind of peer the devices failed against: the remedy's command depends on it
    /// (proving a CA to the local hub is one command; to another hub, a verification
    /// certificate for its code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<crate::mqtt::PeerKind>,
}

/// The reconnect storm: every connected device dropped and reconnected at once.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StormReport {
    /// Devices connected when the storm began.
    pub devices: u64,
    /// Of those, back connected.
    pub back: u64,
    /// Of those, given up on after retries.
    pub failed: u64,
    /// Of those, still retrying when the run stopped.
    #[serde(default)]
    pub still_reconnecting: u64,
    /// Attempts that failed and were retried.
    pub retries: u64,
    /// From the drop until the last device was back (or given up on).
    pub time_to_all_back_s: Option<f64>,
}

/// Telemetry counts over the whole run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Messages {
    /// Messages published.
    pub sent: u64,
    /// Acknowledged by PUBACK (QoS 1).
    pub acked: u64,
    /// QoS 1 messages with no PUBACK within the timeout.
    pub ack_lost: u64,
    /// Round trips that came back (echo or C2D).
    pub round_trips: u64,
    /// Round trips that did not come back within the timeout.
    pub round_trips_lost: u64,
}

/// The run's latency histograms.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Latencies {
    /// TCP connect + TLS handshake + CONNACK.
    pub handshake: Latency,
    /// PUBACK latency (QoS 1).
    pub ack: Latency,
    /// Telemetry to its echo (broker) or C2D echo (local hub).
    pub round_trip: Latency,
    /// DPS registration until assigned (`--dps`): TLS, CONNECT, register, polls.
    #[serde(default)]
    pub provision: Latency,
}

/// What one fleet run (or a merge of several) measured: the JSON file `fleet --report` writes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Report format version ([`FORMAT`]).
    pub format: u32,
    /// `host:port` the fleet connected to.
    pub target: String,
    /// `azure` or `generic`.
    pub flavor: String,
    /// The QoS telemetry was published with (0 or 1).
    pub qos: u8,
    /// The shards this report covers (empty: one unsharded run).
    pub shards: Vec<Shard>,
    /// How many runs were merged into it.
    pub runs: u32,
    /// Devices in the run(s).
    pub devices: u64,
    /// Devices that connected at least once.
    pub connected: u64,
    /// Devices that ended failed.
    pub failed: u64,
    /// Devices assigned by DPS (`--dps`; each provisions once, not again on a storm).
    #[serde(default)]
    pub provisioned: u64,
    /// Successful handshakes (reconnects included).
    pub handshakes: u64,
    /// Telemetry counts.
    pub messages: Messages,
    /// How the run ended: `completed`, `duration` or `interrupted`.
    pub stopped: String,
    /// The run's length in seconds (the longest shard's, merged).
    pub elapsed_s: f64,
    /// Until every device had connected or failed.
    pub ramp_up_s: Option<f64>,
    /// Handshakes per second during ramp-up.
    pub handshakes_per_s_ramp: Option<f64>,
    /// Between ramp-up and the storm (or the stop).
    pub messages_per_s: f64,
    /// Failed devices grouped by diagnosis kind.
    pub failures: BTreeMap<String, FailureGroup>,
    /// Latency histograms.
    pub latency: Latencies,
    /// The reconnect storm's outcome, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storm: Option<StormReport>,
}

impl Report {
    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    /// Read a report; `name` (its file) is named in the error when it is not a report of
    /// this [`FORMAT`].
    pub fn from_json(name: &str, text: &str) -> Result<Report, FleetError> {
        let r: Report = serde_json::from_str(text)
            .map_err(|e| FleetError::Report(format!("{name} is not a fleet report: {e}")))?;
        if r.format != FORMAT {
            return Err(FleetError::Report(format!(
                "{name} is fleet report format {}, this chainsmith reads format {FORMAT}",
                r.format
            )));
        }
        Ok(r)
    }
}

/// Combine the reports of separate runs (the shards of one fleet, run side by side): counts
/// and rates add, histograms merge exactly and their percentiles are recomputed, times are
/// the longest shard's.
pub fn merge(reports: &[(String, Report)]) -> Result<Report, FleetError> {
    let Some((_, first)) = reports.first() else {
        return Err(FleetError::Report("no reports to merge".into()));
    };
    let mut out = Report {
        format: FORMAT,
        target: first.target.clone(),
        flavor: first.flavor.clone(),
        qos: first.qos,
        stopped: "completed".into(),
        ..Default::default()
    };
    let (mut hs, mut ack, mut rt) = (new_histogram(), new_histogram(), new_histogram());
    let mut prov = new_histogram();
    let (mut hs_rate, mut msg_rate, mut any_ramp) = (0.0, 0.0, false);
    let mut seen_shards = std::collections::HashSet::new();
    for (name, r) in reports {
        for s in &r.shards {
            if !seen_shards.insert(*s) {
                return Err(FleetError::Report(format!(
                    "{name}: shard {s} is in more than one report; merge each shard once"
                )));
            }
        }
        let add = |h: &mut Histogram<u64>, l: &Latency, what: &str| {
            let other = l
                .histogram()
                .map_err(|e| FleetError::Report(format!("{name}: {what} {e}")))?;
            h.add(&other)
                .map_err(|e| FleetError::Report(format!("{name}: {what} histogram: {e:?}")))
        };
        add(&mut hs, &r.latency.handshake, "handshake")?;
        add(&mut ack, &r.latency.ack, "ack")?;
        add(&mut rt, &r.latency.round_trip, "round-trip")?;
        add(&mut prov, &r.latency.provision, "provisioning")?;
        out.shards.extend(r.shards.iter().copied());
        out.runs += r.runs.max(1);
        out.devices += r.devices;
        out.connected += r.connected;
        out.failed += r.failed;
        out.provisioned += r.provisioned;
        out.handshakes += r.handshakes;
        out.messages.sent += r.messages.sent;
        out.messages.acked += r.messages.acked;
        out.messages.ack_lost += r.messages.ack_lost;
        out.messages.round_trips += r.messages.round_trips;
        out.messages.round_trips_lost += r.messages.round_trips_lost;
        out.elapsed_s = out.elapsed_s.max(r.elapsed_s);
        if let Some(t) = r.ramp_up_s {
            out.ramp_up_s = Some(out.ramp_up_s.unwrap_or(0.0).max(t));
        }
        // Shards run side by side: their rates add up.
        if let Some(h) = r.handshakes_per_s_ramp {
            hs_rate += h;
            any_ramp = true;
        }
        msg_rate += r.messages_per_s;
        if r.stopped != "completed" {
            out.stopped = r.stopped.clone();
        }
        for (k, g) in &r.failures {
            let e = out
                .failures
                .entry(k.clone())
                .or_insert_with(|| FailureGroup {
                    count: 0,
                    ..g.clone()
                });
            e.count += g.count;
        }
        if let Some(s) = &r.storm {
            let o = out.storm.get_or_insert_with(StormReport::default);
            o.devices += s.devices;
            o.back += s.back;
            o.failed += s.failed;
            o.still_reconnecting += s.still_reconnecting;
            o.retries += s.retries;
            o.time_to_all_back_s = match (o.time_to_all_back_s, s.time_to_all_back_s) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }
    out.shards.sort_by_key(|s| (s.count, s.index));
    out.latency = Latencies {
        handshake: Latency::of(&hs),
        ack: Latency::of(&ack),
        round_trip: Latency::of(&rt),
        provision: Latency::of(&prov),
    };
    out.handshakes_per_s_ramp = any_ramp.then_some(hs_rate);
    out.messages_per_s = msg_rate;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(shard: u32, values: &[u64], failed: u64) -> Report {
        let mut h = new_histogram();
        for v in values {
            h.record(*v).unwrap();
        }
        let mut failures = BTreeMap::new();
        if failed > 0 {
            failures.insert(
                "disabled".to_string(),
                FailureGroup {
                    count: failed,
                    example: format!("dev-{shard}"),
                    cause: "c".into(),
                    fix: "f".into(),
                    remedy: None,
                    peer: None,
                },
            );
        }
        Report {
            format: FORMAT,
            shards: vec![Shard::new(shard, 2).unwrap()],
            runs: 1,
            devices: values.len() as u64 + failed,
            connected: values.len() as u64,
            failed,
            provisioned: values.len() as u64,
            latency: Latencies {
                ack: Latency::of(&h),
                provision: Latency::of(&h),
                ..Default::default()
            },
            failures,
            stopped: "completed".into(),
            ..Default::default()
        }
    }

    #[test]
    fn merged_histograms_equal_one_histogram_of_everything() {
        let a: Vec<u64> = (1..=1000).map(|i| i * 7).collect();
        let b: Vec<u64> = (1..=500).map(|i| i * 131).collect();
        let text = report(1, &a, 3).to_json();
        let back = Report::from_json("a.json", &text).unwrap();
        let m = merge(&[("a".into(), back), ("b".into(), report(2, &b, 2))]).unwrap();
        let mut all = new_histogram();
        for v in a.iter().chain(&b) {
            all.record(*v).unwrap();
        }
        assert_eq!(m.latency.ack, Latency::of(&all));
        assert_eq!(m.latency.provision, Latency::of(&all));
        assert_eq!(m.provisioned, 1500);
        assert_eq!(m.failures["disabled"].count, 5);
        assert_eq!(m.failures["disabled"].example, "dev-1");
        assert_eq!((m.devices, m.connected, m.failed), (1505, 1500, 5));
        let again = merge(&[
            ("a".into(), report(1, &a, 0)),
            ("a2".into(), report(1, &a, 0)),
        ]);
        assert!(
            again
                .unwrap_err()
                .to_string()
                .contains("more than one report")
        );
    }
}
