//! `connect`: the connection test from the command line, steps printed live.

use super::{CliResult, Failed, Global, read_ca};
use crate::mqtt::{self, ConnectionTest, Event, Flavor, Identity, PeerKind};
use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

mod dps;
pub(crate) mod hint;

#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Workspace device: its key, leaf and intermediates (the chain is sent). Not needed with --cert/--key.
    #[arg(required_unless_present = "cert")]
    pub device: Option<String>,
    /// `local` (the local hub), `aws-local` (the running `aws serve`), `aws` (a real AWS IoT
    /// Core: give --endpoint), HOST[:PORT] (an Azure IoT Hub, port 8883) or mqtts://HOST:PORT (any broker).
    #[arg(long, default_value = "local", value_name = "TARGET")]
    pub to: String,
    /// With --to aws: the AWS IoT Core endpoint, PREFIX-ats.iot.REGION.amazonaws.com[:PORT]
    /// (`aws iot describe-endpoint --endpoint-type iot:Data-ATS`); trust it with --ca AmazonRootCA1.pem or the system store.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub endpoint: Option<String>,
    /// azure (IoT Hub topics, twin round trips) or generic (subscribe to own telemetry); default by target.
    #[arg(long)]
    pub flavor: Option<Flavor>,
    /// Extra trust anchor for the server certificate: a PEM/DER file or a workspace CA name (repeatable).
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<String>,
    /// Device certificate (or chain: leaf first, then intermediates) PEM file instead of a workspace device.
    #[arg(long, requires = "key", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The device's private key PEM file (with --cert).
    #[arg(long, requires = "cert", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Telemetry messages to send.
    #[arg(long, default_value_t = 5)]
    pub count: u32,
    /// Pause between messages, e.g. 1s, 250ms, 0.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// MQTT QoS for telemetry: 0 or 1.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// Limit for each network step and for each message's acknowledgement and round trips.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Only this TLS version: 1.2 or 1.3 (default: whichever the peer prefers).
    #[arg(long, value_name = "VERSION")]
    pub tls_version: Option<crate::mqtt::TlsVersion>,
    /// Do not connect when the pre-flight lint finds errors.
    #[arg(long)]
    pub strict: bool,
    /// mqtt (8883), mqtt-ws (MQTT over WebSockets, 443), amqp (5671) or amqp-ws (443).
    #[arg(long, default_value = "mqtt", value_name = "TRANSPORT")]
    pub transport: crate::mqtt::Transport,
    /// Provision through the local DPS first (showing its steps), then test the assigned hub.
    #[arg(long)]
    pub dps: bool,
    /// With --dps: the ID scope to register with (default: the workspace's, `hub dps show`).
    #[arg(long, requires = "dps", value_name = "SCOPE")]
    pub id_scope: Option<String>,
    /// With --dps: register with a CSR for a fresh key (api-version 2025-07-01-preview) and test
    /// the hub with the certificate DPS issues. DPS registers the device by that certificate's
    /// thumbprint (no `hub ca add` needed) and stores it as the workspace entity, so the
    /// certificate the device onboarded with, and its key, move to the entity's history
    /// (entities/DEVICE/history/SERIAL/); the output names both places. The issued chain and
    /// key are written to WS/hub/dps-issued/.
    #[arg(long, requires = "dps")]
    pub csr: bool,
}

/// `1s`, `250ms`, `2m`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], t[i..].trim()),
        None => (t, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("\"{s}\" is not a duration; write e.g. 500ms, 2s or 1m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "sec" => n,
        "m" | "min" => n * 60.0,
        _ => {
            return Err(format!(
                "\"{s}\": unit \"{unit}\" is not known; use ms, s or m"
            ));
        }
    };
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("\"{s}\" is out of range (0 to 24 hours)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `chainsmith connect`: build the identity and the target (the local hub through the engine's
/// `mqtt::local::prepare`), run the test, print it; exit 1 when anything did not come back.
pub fn run(global: &Global, a: ConnectArgs) -> CliResult {
    let identity = match (&a.cert, &a.key) {
        (Some(cert), Some(key)) => {
            let ws = global.existing_workspace().ok();
            Identity::from_files(cert, key, ws.as_ref())?
        }
        _ => {
            let device = a.device.as_deref().ok_or_else(|| {
                anyhow!("name a workspace device, or pass --cert FILE --key FILE")
            })?;
            let ws = global.existing_workspace()?;
            Identity::from_workspace(&ws, device)?
        }
    };
    let mut extra_ca = Vec::new();
    for c in &a.ca {
        extra_ca.extend(read_ca(global, c)?);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if a.dps && a.transport != crate::mqtt::Transport::Mqtt {
        bail!(
            "--dps: the local DPS answers over MQTT; provision with --transport mqtt (the default)"
        );
    }
    if a.dps && a.to != "local" {
        bail!(
            "--dps provisions through the local DPS; drop --to {} (or use --to local)",
            a.to
        );
    }
    let (to_arg, endpoint_arg) = (a.to.clone(), a.endpoint.clone());
    let to = destination(&to_arg, endpoint_arg.as_deref())?;
    let ok = runtime.block_on(async move {
        use crate::target::{Destination, HubWatching, TargetSpec};
        // The local hub and the local AWS IoT Core live in the workspace; another target only
        // takes its root CAs.
        let ws = if matches!(to, Destination::Local(_) | Destination::AwsLocal) {
            Some(global.existing_workspace()?)
        } else {
            global.existing_workspace().ok()
        };
        let spec = TargetSpec {
            to,
            transport: a.transport,
            flavor: a.flavor,
            anchors: extra_ca,
            watching: HubWatching::RecordsAndRefusals,
        };
        let mut target = crate::target::resolve(ws.as_ref(), spec)
            .await
            .map_err(target_error)?;
        let started = target.started.take();
        let mut test = target.connection_test(identity)?;
        if let (true, Some(ws)) = (a.dps, &ws) {
            // Provision at the same listener first; the hub test then runs as the assigned
            // device (with the issued certificate after --csr), its pre-flight re-read.
            let store = crate::hub::HubStore::open(ws.root())?;
            let identity = test.identity.clone();
            let anchors = test.extra_ca.clone();
            test.identity = dps::provision(
                global.json,
                ws,
                &store,
                &test.endpoint,
                identity,
                anchors,
                &a,
            )
            .await?;
            test.preflight_extra = target.preflight(&test.identity)?;
        }
        test.count = a.count;
        test.interval = a.interval;
        test.qos = a.qos;
        test.timeout = a.timeout;
        test.strict = a.strict;
        test.tls_version = a.tls_version;
        let ok = drive(global.json, test).await;
        if let Some(hub) = started {
            hub.shutdown().await;
        }
        anyhow::Ok(ok)
    })?;
    if ok { Ok(()) } else { Err(Failed(1).into()) }
}

/// A target that does not resolve, with the CLI's words: the flag, the command that starts
/// what is missing.
pub(crate) fn target_error(e: crate::mqtt::local::PrepareError) -> anyhow::Error {
    use crate::mqtt::local::PrepareError as P;
    match e {
        P::Target(m) => anyhow!("--to {m}"),
        e @ P::AwsNotRunning(_) => anyhow!("{e}: `chainsmith aws serve`"),
        e @ P::AwsTransport(_) => anyhow!("{e}: use --transport mqtt"),
        e => e.into(),
    }
}

/// Where `--to` (and `--endpoint`, for `--to aws`) send the device.
pub(crate) fn destination<'a>(
    to: &'a str,
    endpoint: Option<&'a str>,
) -> anyhow::Result<crate::target::Destination<'a>> {
    use crate::target::Destination;
    Ok(match (to, endpoint) {
        ("local", None) => Destination::Local(crate::mqtt::local::HubSource::RunningOrStart),
        ("aws-local", None) => Destination::AwsLocal,
        ("aws", Some(e)) => Destination::Aws(e),
        ("aws", None) => bail!(
            "--to aws needs --endpoint PREFIX-ats.iot.REGION.amazonaws.com (`aws iot describe-endpoint --endpoint-type iot:Data-ATS` prints it)"
        ),
        (_, Some(_)) => bail!("--endpoint goes with --to aws; drop it, or use --to aws"),
        (to, None) => Destination::Remote(to),
    })
}

/// Run the test and print its events as they come; true when everything came back.
pub async fn drive(json: bool, test: ConnectionTest) -> bool {
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let printer = Printer {
        peer: test.endpoint.peer,
        transport: test.transport,
    };
    let task = tokio::spawn(mqtt::run(test, tx));
    while let Some(event) = rx.recv().await {
        if json {
            printer.print_json(&event);
        } else {
            printer.print(&event);
        }
    }
    match task.await {
        Ok(summary) => summary.ok,
        Err(e) => {
            complain!("error: the connection test stopped unexpectedly: {e}");
            false
        }
    }
}

/// A `failed` event with the CLI's hint after the engine's fields (the diagnosis is flattened
/// into the event, so `hint` sits beside `fix`).
#[derive(serde::Serialize)]
struct WithHint<'a> {
    #[serde(flatten)]
    event: &'a Event,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

/// The `lint` event with each finding's hint.
#[derive(serde::Serialize)]
struct LintLine<'a> {
    event: &'static str,
    findings: Vec<FindingLine<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    remedies: &'a [crate::mqtt::diagnose::FindingRemedy],
}

#[derive(serde::Serialize)]
struct FindingLine<'a> {
    #[serde(flatten)]
    finding: &'a crate::pki::lint::Finding,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<String>,
}

/// Prints the events, adding the CLI's hint to every remedy the engine gives.
struct Printer {
    /// Where the test went: a hint for the local hub differs from one for another hub.
    peer: PeerKind,
    /// MQTT or AMQP: the acknowledgement and the close are named as the protocol names them.
    transport: mqtt::Transport,
}

/// One step's line, its name padded to the widest step name so every timing lines up.
fn line(ok: bool, label: &str, ms: f64, rest: &str) {
    let mark = if ok { "✓" } else { "✗" };
    let w = mqtt::Step::LABEL_WIDTH;
    say!("{mark} {label:<w$} {ms:>9.1} ms  {rest}");
}

impl Printer {
    /// Print the event as one JSON line, with a `hint` (the command for its remedy) beside the
    /// diagnosis's `fix` and beside each pre-flight finding that has a remedy. Serialised
    /// through structs, not a `serde_json::Value`, so the keys keep the engine's order.
    fn print_json(&self, e: &Event) {
        match e {
            Event::Failed { diagnosis, .. } => super::print_json_line(&WithHint {
                event: e,
                hint: diagnosis.remedy.as_ref().map(|r| hint::hint(r, self.peer)),
            }),
            Event::Lint { findings, remedies } => super::print_json_line(&LintLine {
                event: "lint",
                findings: findings
                    .iter()
                    .map(|f| FindingLine {
                        finding: f,
                        hint: remedies
                            .iter()
                            .find(|r| r.code == f.code)
                            .map(|r| hint::hint(&r.remedy, self.peer)),
                    })
                    .collect(),
                remedies,
            }),
            e => super::print_json_line(e),
        }
    }

    fn print(&self, e: &Event) {
        use crate::mqtt::RoundTripKind;
        match e {
            Event::Start {
                device,
                endpoint,
                peer,
                transport,
                flavor,
                count,
                qos,
            } => print_start(device, endpoint, peer, transport, flavor, *count, *qos),
            Event::Lint { findings, remedies } => {
                if findings.is_empty() {
                    say!("✓ pre-flight lint: no findings");
                } else {
                    say!("! pre-flight lint:");
                    for f in findings {
                        say!("    {} {}: {}", f.severity.as_str(), f.code, f.message);
                        if let Some(r) = remedies.iter().find(|r| r.code == f.code) {
                            say!("      hint: {}", hint::hint(&r.remedy, self.peer));
                        }
                    }
                }
            }
            Event::StepDone { step, ms, detail } => line(true, step.label(), *ms, detail),
            Event::Resolved { ms, addresses } => line(true, "resolve", *ms, &addresses.join(", ")),
            Event::TcpConnected { ms, address } => line(true, "TCP connect", *ms, address),
            Event::TlsEstablished { ms, facts } => print_tls(*ms, facts),
            Event::Connack {
                ms,
                code,
                meaning,
                username,
            } => {
                let who = if username.is_empty() {
                    String::new()
                } else {
                    format!(" (username {username})")
                };
                line(
                    *code == 0,
                    "MQTT CONNECT",
                    *ms,
                    &format!("CONNACK {meaning}{who}"),
                );
            }
            Event::Subscribed { ms, topics } => {
                let t: Vec<String> = topics
                    .iter()
                    .map(|t| match t.granted {
                        Some(q) => format!("{} (QoS {q})", t.topic),
                        None => format!("{} (REFUSED)", t.topic),
                    })
                    .collect();
                line(
                    topics.iter().all(|t| t.granted.is_some()),
                    "subscribe",
                    *ms,
                    &t.join(", "),
                );
            }
            Event::Published {
                message_id,
                payload,
                temperature_alert,
                ack_ms,
                ..
            } => {
                let ack = match ack_ms {
                    Some(ms) => format!("{} {ms:.2} ms", self.transport.ack_name()),
                    None => "sent (QoS 0)".to_string(),
                };
                say!(
                    "  message {message_id:<4} {ack}  {payload}  temperatureAlert={temperature_alert}"
                );
            }
            Event::AckMissing { message_id } => {
                say!(
                    "✗ message {message_id:<4} no {} within the timeout",
                    self.transport.ack_name()
                )
            }
            Event::RoundTrip {
                message_id,
                kind,
                ms,
                detail,
            } => {
                let what = match kind {
                    RoundTripKind::Echo => "echo (own telemetry received)",
                    RoundTripKind::Twin => "twin GET -> response",
                    RoundTripKind::C2d => "C2D echo",
                };
                say!("  message {message_id:<4} round trip {ms:.2} ms  {what}, {detail}");
            }
            Event::RoundTripMissing { message_id, kind } => say!(
                "✗ message {message_id:<4} {} round trip did not come back within the timeout",
                kind.as_str()
            ),
            Event::HubRecorded { recorded, missing } => {
                if missing.is_empty() {
                    say!("✓ local hub recorded all {recorded} message(s)");
                } else {
                    say!(
                        "✗ local hub recorded {recorded} message(s); missing message ids {missing:?}"
                    );
                }
            }
            Event::Disconnected { ms } => line(
                true,
                "disconnect",
                *ms,
                &format!("clean ({} + TLS close_notify)", self.transport.close_name()),
            ),
            Event::Failed { step, diagnosis } => {
                say!("✗ {} failed", step.label());
                say!("    cause: {}", diagnosis.cause);
                say!("    fix:   {}", diagnosis.fix);
                if let Some(r) = &diagnosis.remedy {
                    say!("    hint:  {}", hint::hint(r, self.peer));
                }
                if !diagnosis.detail.is_empty() {
                    say!("    ({})", diagnosis.detail);
                }
            }
            Event::Summary(s) => print_summary(s, self.transport),
        }
    }
}

/// The opening line: which device goes where, how, and how many messages.
fn print_start(
    device: &str,
    endpoint: &str,
    peer: &PeerKind,
    transport: &mqtt::Transport,
    flavor: &Flavor,
    count: u32,
    qos: u8,
) {
    let peer = match peer {
        PeerKind::LocalHub => "local hub",
        PeerKind::AzureHub => "Azure IoT Hub",
        PeerKind::Broker => "MQTT broker",
        PeerKind::AwsLocal => "local AWS IoT Core",
        PeerKind::AwsIot => "AWS IoT Core",
    };
    let flavor = flavor.as_str();
    let transport = transport.as_str();
    say!(
        "connect {device} -> {endpoint} ({peer}, {transport}, {flavor} flavor, {count} message(s), QoS {qos})"
    );
}

/// The TLS handshake's line and what each side showed the other.
fn print_tls(ms: f64, facts: &mqtt::TlsFacts) {
    line(
        true,
        "TLS handshake",
        ms,
        &format!("{}, {}", facts.version, facts.cipher_suite),
    );
    if let Some(s) = &facts.server_cert {
        say!(
            "    server: {} issued by {}, valid until {}{}",
            crate::text::escape_controls(&s.subject),
            crate::text::escape_controls(&s.issuer),
            s.not_after,
            if facts.server_verified {
                ", verified"
            } else {
                ", NOT verified"
            }
        );
    }
    if facts.client_cert_requested {
        say!(
            "    client chain sent: {}",
            facts.client_chain_sent.join("  <-  ")
        );
        if !facts.acceptable_cas.is_empty() {
            say!(
                "    server accepts client certificates from: {}",
                crate::text::escape_controls(&facts.acceptable_cas.join("; "))
            );
        }
    } else {
        say!("    the server did not ask for a client certificate");
    }
}

/// The closing summary and the latency figures.
fn print_summary(s: &mqtt::Summary, transport: mqtt::Transport) {
    say!(
        "{} summary: {} sent, {} acknowledged, {}/{} round trips, {} lost, {:.0} ms in all",
        if s.ok { "✓" } else { "✗" },
        s.sent,
        s.acked,
        s.round_trips_seen,
        s.round_trips_expected,
        s.lost,
        s.total_ms
    );
    if let Some(l) = &s.ack_latency {
        let label = format!("{} latency:", transport.ack_name());
        say!("    {label:<19} {l}");
    }
    if let Some(l) = &s.round_trip_latency {
        say!("    round-trip latency: {l}");
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3h").unwrap_err().contains("unit"));
    }
}
