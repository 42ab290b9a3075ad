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

/// The histograms' lowest value: 1 µs.
const HDR_LOW: u64 = 1;
/// The histograms' highest value: 1 hour in µs (a latency longer than that is a hang).
const HDR_HIGH: u64 = 3_600_000_000;
/// The histograms' precision: 3 significant digits.
const HDR_DIGITS: u8 = 3;

/// The most bytes of counts a report's histogram may declare (the HDR V2 payload length). A
/// histogram of [`new_histogram`]'s bounds has 23,552 counts of at most 9 bytes each (212 KB,
/// `a_full_histogram_fits_the_payload_limit`); a header claiming more (4 GiB) is refused
/// before anything is allocated for it.
pub(crate) const MAX_HDR_PAYLOAD: u32 = 1 << 20;

/// The most bytes `fleet merge` reads of one report file. A report holds four histograms of
/// at most [`MAX_HDR_PAYLOAD`] bytes (less once deflated and in base64), its failure groups
/// and a few figures: 16 MiB is far above any report `fleet run` writes and small enough to
/// read whole. A file that never ends (a FIFO, `/dev/zero`) stops here.
pub(crate) const MAX_REPORT_BYTES: u64 = 16 << 20;

/// The largest figure (seconds, or events per second) a report may hold. No run lasts 1e12 s
/// (31,700 years) nor measures 1e12 handshakes or messages a second; a hand-edited `1e308`
/// above it is refused, not summed to infinity.
pub(crate) const MAX_FIGURE: f64 = 1e12;

/// A latency histogram in microseconds (1 µs to 1 hour, 3 significant digits).
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(HDR_LOW, HDR_HIGH, HDR_DIGITS).expect("static bounds are valid")
}

/// Check an HDR V2 histogram's header (inside its deflate wrapper when it has one) before
/// the decoder allocates what the header asks for: the bounds must be [`new_histogram`]'s and
/// the counts at most [`MAX_HDR_PAYLOAD`] bytes.
fn check_hdr_header(bytes: &[u8]) -> Result<(), HistogramError> {
    use std::io::Read as _;
    // HdrHistogram's V2 cookies (its base cookies with the word-size bits 0x10).
    const V2: u32 = 0x1c84_9313;
    const V2_DEFLATE: u32 = 0x1c84_9314;
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let mut header = [0u8; 40];
    match bytes.get(..4).map(be32) {
        Some(V2) if bytes.len() >= 40 => header.copy_from_slice(&bytes[..40]),
        Some(V2_DEFLATE) if bytes.len() >= 8 => {
            flate2::read::ZlibDecoder::new(&bytes[8..])
                .read_exact(&mut header)
                .map_err(HistogramError::Inflate)?;
        }
        _ => return Err(HistogramError::NotV2),
    }
    if be32(&header[..4]) != V2 {
        return Err(HistogramError::NotV2Inside);
    }
    let payload = be32(&header[4..8]);
    let digits = be32(&header[12..16]);
    let be64 = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
    let (low, high) = (be64(&header[16..24]), be64(&header[24..32]));
    if (low, high, digits) != (HDR_LOW, HDR_HIGH, u32::from(HDR_DIGITS)) {
        return Err(HistogramError::Bounds { low, high, digits });
    }
    if payload > MAX_HDR_PAYLOAD {
        return Err(HistogramError::Payload(payload));
    }
    Ok(())
}

/// Why a report's `hdr` is not a histogram `fleet merge` takes.
#[derive(Debug, thiserror::Error)]
enum HistogramError {
    /// The text is not base64.
    #[error("histogram is not base64: {0}")]
    NotBase64(#[source] base64::DecodeError),
    /// The deflate wrapper does not inflate to a 40-byte header.
    #[error("histogram does not inflate: {0}")]
    Inflate(#[source] std::io::Error),
    /// Neither HDR V2 cookie, or too short for its header.
    #[error("histogram is not HDR V2 (cookie or length wrong)")]
    NotV2,
    /// The deflate wrapper holds something other than an HDR V2 histogram.
    #[error("histogram is not HDR V2 inside its deflate wrapper")]
    NotV2Inside,
    /// Bounds or precision other than [`new_histogram`]'s (low, high in µs; digits).
    #[error(
        "histogram has bounds {low}..{high} µs at {digits} digits; a fleet run writes {HDR_LOW}..{HDR_HIGH} at {HDR_DIGITS}"
    )]
    Bounds { low: u64, high: u64, digits: u32 },
    /// The header claims more bytes of counts than [`MAX_HDR_PAYLOAD`].
    #[error(
        "histogram claims {0} bytes of counts, more than the {MAX_HDR_PAYLOAD} any fleet histogram takes"
    )]
    Payload(u32),
    /// The decoder refused the counts (its reason, as it debug-prints it).
    #[error("histogram does not decode: {0:?}")]
    Decode(hdrhistogram::serialization::DeserializeError),
    /// The counts sum past `u64::MAX` (the decoder saturates there).
    #[error("histogram's counts overflow")]
    Overflow,
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
    fn histogram(&self) -> Result<Histogram<u64>, HistogramError> {
        if self.hdr.is_empty() {
            return Ok(new_histogram());
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.hdr)
            .map_err(HistogramError::NotBase64)?;
        check_hdr_header(&bytes)?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(HistogramError::Decode)?;
        // The decoder saturates a total that overflows: no real histogram reaches it.
        if h.len() == u64::MAX {
            return Err(HistogramError::Overflow);
        }
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
    /// Every device of the group, as ids and ranges (`sensor-{002..400}`,
    /// [`compress_ids`](super::select::compress_ids)), so one command fixes the whole group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
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
    /// Of `ack_lost`, those in flight when the reconnect storm dropped their connection on
    /// purpose: the only acknowledgements a run may miss.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub storm_dropped: u64,
    /// Round trips that came back (echo or C2D).
    pub round_trips: u64,
    /// Round trips that did not come back within the timeout.
    pub round_trips_lost: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
    /// `azure`, `aws` or `generic`.
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

    /// What the run owes: with QoS 1 every message sent must be acknowledged, except those
    /// the reconnect storm dropped in flight. `None` when nothing is owed; else the sentence
    /// a face prints before it exits non-zero.
    pub fn unacknowledged(&self) -> Option<String> {
        let m = &self.messages;
        let owed = m.sent.saturating_sub(m.storm_dropped);
        if self.qos == 0 || m.acked >= owed {
            return None;
        }
        Some(format!(
            "{} of {} message(s) sent with QoS 1 acknowledged: {} got no PUBACK within the timeout from {}",
            m.acked,
            m.sent,
            owed - m.acked,
            self.target
        ))
    }

    /// Read a report; `name` (its file) is named in the error when it is not a report of
    /// this [`FORMAT`] or holds a figure no run measures (see [`MAX_FIGURE`]).
    pub(crate) fn from_json(name: &str, text: &str) -> Result<Report, FleetError> {
        let r: Report = serde_json::from_str(text)
            .map_err(|e| FleetError::Report(format!("{name} is not a fleet report: {e}")))?;
        if r.format != FORMAT {
            return Err(FleetError::Report(format!(
                "{name} is fleet report format {}, this chainsmith reads format {FORMAT}",
                r.format
            )));
        }
        let storm_s = r.storm.as_ref().and_then(|s| s.time_to_all_back_s);
        for (field, v) in [
            ("elapsed_s", Some(r.elapsed_s)),
            ("ramp_up_s", r.ramp_up_s),
            ("handshakes_per_s_ramp", r.handshakes_per_s_ramp),
            ("messages_per_s", Some(r.messages_per_s)),
            ("storm.time_to_all_back_s", storm_s),
        ] {
            if let Some(v) = v.filter(|v| !(0.0..=MAX_FIGURE).contains(v)) {
                return Err(FleetError::Report(format!(
                    "{name}: {field} is {v:e}, not a figure a run measures (0 to {MAX_FIGURE:e}); the report was edited or damaged, run the shard again"
                )));
            }
        }
        // The failure groups are the failed devices grouped: their counts add up to `failed`,
        // and each lists at most as many ids or ranges as it counts devices.
        let mut grouped: u64 = 0;
        for (k, g) in &r.failures {
            grouped = grouped.saturating_add(g.count);
            if g.devices.len() as u64 > g.count {
                return Err(FleetError::Report(format!(
                    "{name}: failures.{k} lists {} devices for a count of {}; the report was edited or damaged, run the shard again",
                    g.devices.len(),
                    g.count
                )));
            }
        }
        if grouped != r.failed {
            return Err(FleetError::Report(format!(
                "{name}: its failure groups count {grouped} devices but failed is {}; the report was edited or damaged, run the shard again",
                r.failed
            )));
        }
        Ok(r)
    }

    /// Read a report file, at most [`MAX_REPORT_BYTES`] of it (a FIFO or `/dev/zero` ends
    /// there with an error naming the file).
    pub fn read(path: &std::path::Path) -> Result<Report, FleetError> {
        use std::io::Read as _;
        let name = path.display().to_string();
        let io =
            |e: std::io::Error| FleetError::Report(format!("cannot read the report {name}: {e}"));
        // Only a regular file: opening a FIFO with no writer would wait forever.
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            return Err(FleetError::Report(format!(
                "{name} is not a regular file; give the report file a fleet run wrote"
            )));
        }
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(io)?
            .take(MAX_REPORT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_REPORT_BYTES {
            return Err(FleetError::Report(format!(
                "{name} is larger than {} MiB, which no fleet report is; give the report file a fleet run wrote",
                MAX_REPORT_BYTES >> 20
            )));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            FleetError::Report(format!("{name} is not a fleet report: not UTF-8 ({e})"))
        })?;
        Report::from_json(&name, &text)
    }
}

/// `total += more`, refused when it overflows (a hand-edited count) instead of wrapping.
fn add_count(total: &mut u64, more: u64, name: &str, field: &str) -> Result<(), FleetError> {
    *total = total.checked_add(more).ok_or_else(|| {
        FleetError::Report(format!(
            "{name}: {field} {more} overflows the merged count; the report was edited or damaged, run the shard again"
        ))
    })?;
    Ok(())
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
    let mut seen_reports: Vec<(&str, &Report)> = Vec::new();
    for (name, r) in reports {
        for s in &r.shards {
            if !seen_shards.insert(*s) {
                return Err(FleetError::Report(format!(
                    "{name}: shard {s} is in more than one report; merge each shard once"
                )));
            }
        }
        // The same run given twice (or a copy of it) would count its devices twice.
        if let Some((other, _)) = seen_reports.iter().find(|(_, o)| *o == r) {
            return Err(FleetError::Report(format!(
                "{name} is the same report as {other}; merge each run once"
            )));
        }
        seen_reports.push((name, r));
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
        for (h, what) in [
            (&hs, "handshake"),
            (&ack, "ack"),
            (&rt, "round-trip"),
            (&prov, "provisioning"),
        ] {
            if h.len() == u64::MAX {
                return Err(FleetError::Report(format!(
                    "{name}: the merged {what} histogram's counts overflow; the report was edited or damaged, run the shard again"
                )));
            }
        }
        out.shards.extend(r.shards.iter().copied());
        out.runs = out.runs.checked_add(r.runs.max(1)).ok_or_else(|| {
            FleetError::Report(format!(
                "{name}: runs {} overflows the merged count",
                r.runs
            ))
        })?;
        let (m, o) = (&r.messages, &mut out.messages);
        for (total, more, field) in [
            (&mut out.devices, r.devices, "devices"),
            (&mut out.connected, r.connected, "connected"),
            (&mut out.failed, r.failed, "failed"),
            (&mut out.provisioned, r.provisioned, "provisioned"),
            (&mut out.handshakes, r.handshakes, "handshakes"),
            (&mut o.sent, m.sent, "messages.sent"),
            (&mut o.acked, m.acked, "messages.acked"),
            (&mut o.ack_lost, m.ack_lost, "messages.ack_lost"),
            (
                &mut o.storm_dropped,
                m.storm_dropped,
                "messages.storm_dropped",
            ),
            (&mut o.round_trips, m.round_trips, "messages.round_trips"),
            (
                &mut o.round_trips_lost,
                m.round_trips_lost,
                "messages.round_trips_lost",
            ),
        ] {
            add_count(total, more, name, field)?;
        }
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
                    devices: Vec::new(),
                    ..g.clone()
                });
            add_count(&mut e.count, g.count, name, &format!("failures.{k}.count"))?;
            e.devices.extend(g.devices.iter().cloned());
        }
        if let Some(s) = &r.storm {
            let o = out.storm.get_or_insert_with(StormReport::default);
            for (total, more, field) in [
                (&mut o.devices, s.devices, "storm.devices"),
                (&mut o.back, s.back, "storm.back"),
                (&mut o.failed, s.failed, "storm.failed"),
                (
                    &mut o.still_reconnecting,
                    s.still_reconnecting,
                    "storm.still_reconnecting",
                ),
                (&mut o.retries, s.retries, "storm.retries"),
            ] {
                add_count(total, more, name, field)?;
            }
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
                    devices: vec![format!("dev-{shard}")],
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

    /// Each way a report's histogram is refused is its own variant, checked before the decoder
    /// allocates, with the sentence `fleet merge` always printed.
    #[test]
    fn bad_histograms_are_refused_by_kind() {
        let mut v2 = Vec::new();
        hdrhistogram::serialization::V2Serializer::new()
            .serialize(&new_histogram(), &mut v2)
            .unwrap();
        let latency = |bytes: &[u8]| Latency {
            hdr: base64::engine::general_purpose::STANDARD.encode(bytes),
            ..Latency::default()
        };
        let mut huge = v2.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        let e = latency(&huge).histogram().unwrap_err();
        assert!(matches!(e, HistogramError::Payload(u32::MAX)), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "histogram claims 4294967295 bytes of counts, more than the {MAX_HDR_PAYLOAD} any fleet histogram takes"
            )
        );
        let mut other_bounds = v2.clone();
        other_bounds[16..24].copy_from_slice(&2u64.to_be_bytes());
        let e = latency(&other_bounds).histogram().unwrap_err();
        assert!(
            matches!(
                e,
                HistogramError::Bounds {
                    low: 2,
                    high: HDR_HIGH,
                    ..
                }
            ),
            "{e}"
        );
        let e = latency(b"not hdr").histogram().unwrap_err();
        assert!(matches!(e, HistogramError::NotV2), "{e}");
        let e = Latency {
            hdr: "*".into(),
            ..Latency::default()
        }
        .histogram()
        .unwrap_err();
        assert!(
            e.to_string().starts_with("histogram is not base64: "),
            "{e}"
        );
    }

    #[test]
    fn a_full_histogram_fits_the_payload_limit() {
        let mut h = new_histogram();
        // One value in every bucket: the most counts a histogram of these bounds holds.
        let mut v = HDR_LOW;
        while v <= HDR_HIGH {
            h.record_n(v, 1 << 40).unwrap();
            v = h.next_non_equivalent(v);
        }
        let mut buf = Vec::new();
        hdrhistogram::serialization::V2Serializer::new()
            .serialize(&h, &mut buf)
            .unwrap();
        assert!(buf.len() < MAX_HDR_PAYLOAD as usize, "{}", buf.len());
        let l = Latency::of(&h);
        assert_eq!(l.histogram().unwrap(), h);
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
        assert_eq!(m.failures["disabled"].devices, ["dev-1", "dev-2"]);
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

    /// Found by the hostile pass: the same unsharded run given twice counted twice; failure
    /// groups that do not add up to `failed`; a FIFO with no writer blocked `fleet merge`.
    #[test]
    fn merge_refuses_a_run_twice_groups_that_do_not_add_up_and_fifos() {
        let mut one = report(1, &[5, 6], 0);
        one.shards.clear();
        let twice = merge(&[("r.json".into(), one.clone()), ("copy.json".into(), one)]);
        assert!(
            twice
                .unwrap_err()
                .to_string()
                .contains("the same report as r.json"),
            "merged twice"
        );
        let mut bad = report(1, &[5], 2);
        bad.failed = 0;
        let e = Report::from_json("bad.json", &bad.to_json()).unwrap_err();
        assert!(
            e.to_string().contains("count 2 devices but failed is 0"),
            "{e}"
        );
        let mut many = report(1, &[5], 1);
        many.failures.get_mut("disabled").unwrap().devices = vec!["a".into(), "b".into()];
        let e = Report::from_json("many.json", &many.to_json()).unwrap_err();
        assert!(
            e.to_string().contains("lists 2 devices for a count of 1"),
            "{e}"
        );

        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let e = Report::read(&fifo).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
