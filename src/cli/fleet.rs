//! `fleet`: many devices at once (`run`), reports of shards combined (`merge`), and each
//! shard's certificates as a bundle for an orchestrator (`export-shards`).

use super::{CliResult, Failed, Global, read_ca};
use crate::fleet::{self, Figures, FleetEvent, Load, Plan, Report, Shard};
use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// Drive many devices at once, each with its own certificate, key and MQTT session.
    Run(RunArgs),
    /// Combine the reports of shards into one summary (histograms merged exactly).
    Merge(MergeArgs),
    /// Write each shard's device certificates and keys as a small workspace a pod can mount.
    ExportShards(ExportShardsArgs),
}

#[derive(Args, Debug)]
pub struct Selection {
    /// Workspace devices and ranges like sensor-{00001..10000}.
    pub devices: Vec<String>,
    /// Every device issued under this CA (directly or through intermediates).
    #[arg(long, value_name = "CA")]
    pub issuer: Option<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub select: Selection,
    /// `local` (the local hub), `aws-local` (the running `aws serve`), `aws` (a real AWS IoT
    /// Core: give --endpoint), HOST[:PORT] (an Azure IoT Hub) or mqtts://HOST:PORT (any broker).
    #[arg(long, default_value = "local", value_name = "TARGET")]
    pub to: String,
    /// With --to aws: the AWS IoT Core endpoint, PREFIX-ats.iot.REGION.amazonaws.com[:PORT].
    #[arg(long, value_name = "HOST[:PORT]")]
    pub endpoint: Option<String>,
    /// The transport: mqtt (MQTT over TLS, port 8883).
    #[arg(long, default_value = "mqtt")]
    pub transport: String,
    /// Trust anchor for the server certificate: a PEM file or a workspace CA (repeatable).
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<String>,
    /// New connections per second during ramp-up, e.g. 200/s.
    #[arg(long, default_value = "100/s", value_parser = parse_connect_rate)]
    pub connect_rate: f64,
    /// Telemetry per device, e.g. 1/s or 0.2/s, until --duration or Ctrl-C.
    #[arg(long, value_parser = parse_message_rate, conflicts_with = "messages")]
    pub rate: Option<f64>,
    /// Messages per device, each acknowledged before the next (default 5); the run ends when all are done.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub messages: Option<u32>,
    /// Stop after this long, e.g. 30s or 5m.
    #[arg(long, value_parser = parse_run_duration)]
    pub duration: Option<Duration>,
    /// MQTT QoS for telemetry: 0 or 1.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// 10 s after every device is up, drop all connections at once and reconnect them.
    #[arg(long)]
    pub storm: bool,
    /// Limit for every network step, acknowledgement and round trip.
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Write the report (JSON, with mergeable histograms) here.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Overwrite the --report file.
    #[arg(long)]
    pub force: bool,
    /// Run only the K-th of N equal slices of the devices, e.g. 2/8.
    #[arg(long, value_name = "K/N", conflicts_with = "shard_from_env")]
    pub shard: Option<Shard>,
    /// The shard from the environment: JOB_COMPLETION_INDEX (0-based, as a Kubernetes
    /// Indexed Job sets it) of CHAINSMITH_SHARDS shards.
    #[arg(long)]
    pub shard_from_env: bool,
    /// Provision each device through DPS first (its own certificate, polling until assigned,
    /// as `connect --dps`), then connect with the assigned device id; once per device.
    #[arg(long)]
    pub dps: bool,
    /// Register every selected device in the local hub first (CA-issued ones with --auth ca,
    /// self-signed ones with their thumbprints); devices it has already stay as they are.
    #[arg(long, conflicts_with = "dps")]
    pub register: bool,
    /// With --dps: the ID scope (default for --to local: the workspace's, `hub dps show`;
    /// required for other targets, which provision at global.azure-devices-provisioning.net).
    #[arg(long, requires = "dps", value_name = "SCOPE")]
    pub id_scope: Option<String>,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Reports written by `fleet run --report`.
    #[arg(required = true, value_name = "REPORT.json")]
    pub reports: Vec<PathBuf>,
    /// Also write the merged report here.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Overwrite the --report file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct ExportShardsArgs {
    #[command(flatten)]
    pub select: Selection,
    /// Directory for the bundles (shard-1 … shard-N).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Number of shards.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=fleet::select::MAX_SHARDS as i64))]
    pub shards: u32,
}

pub fn run(global: &Global, c: FleetCommand) -> CliResult {
    match c {
        FleetCommand::Run(a) => run_fleet(global, a),
        FleetCommand::Merge(a) => merge(global, a),
        FleetCommand::ExportShards(a) => export_shards(global, a),
    }
}

fn parse_rate(s: &str, what: &str, lo: f64, hi: f64) -> Result<f64, String> {
    let t = s.trim();
    let (num, per) = match t.split_once('/') {
        Some((n, unit)) => (n.trim(), unit.trim()),
        None => (t, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("\"{s}\" is not a rate; write e.g. 10/s or 30/min"))?;
    let per_s = match per {
        "s" | "sec" => n,
        "m" | "min" => n / 60.0,
        _ => {
            return Err(format!(
                "\"{s}\": unit \"/{per}\" is not known; use /s or /min"
            ));
        }
    };
    if !per_s.is_finite() || per_s < lo || per_s > hi {
        return Err(format!(
            "{what} \"{s}\" is out of range ({lo} to {hi} per second)"
        ));
    }
    Ok(per_s)
}

fn parse_connect_rate(s: &str) -> Result<f64, String> {
    parse_rate(s, "connect rate", 0.01, 100_000.0)
}

fn parse_message_rate(s: &str) -> Result<f64, String> {
    parse_rate(s, "message rate", 0.001, 1_000.0)
}

fn parse_run_duration(s: &str) -> Result<Duration, String> {
    let d = super::connect::parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("duration \"{s}\" is zero; give e.g. 30s"));
    }
    Ok(d)
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = super::connect::parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(600) {
        return Err(format!("timeout \"{s}\" is out of range (100ms to 10m)"));
    }
    Ok(d)
}

/// The selected device names, sliced to the shard; says what `--issuer` left out and why.
fn selection(
    global: &Global,
    ws: &crate::store::Workspace,
    s: &Selection,
    shard: Option<Shard>,
) -> anyhow::Result<Vec<String>> {
    let picked = fleet::select(ws, &s.devices, s.issuer.as_deref())
        .map_err(|e| with_hint(e, "pass DEVICES… or --issuer CA"))?;
    if let (Some(ca), Some(first)) = (&s.issuer, picked.stale.first()) {
        super::warn(
            global,
            &[format!(
                "--issuer {ca}: left out {} device(s) issued by an earlier certificate of \"{ca}\" (or of a CA between), which the hub would refuse, e.g. {first}; `chainsmith new device {} --issuer {} --force` issues them again",
                picked.stale.len(),
                super::connect::hint::words(&picked.stale),
                super::connect::hint::word(ca)
            )],
        );
    }
    let names = picked.names;
    Ok(match shard {
        Some(sh) => sh.slice(&names).to_vec(),
        None => names,
    })
}

fn with_hint(e: fleet::FleetError, hint: &str) -> anyhow::Error {
    match e {
        fleet::FleetError::Selection(m) => anyhow!("{m} ({hint})"),
        other => other.into(),
    }
}

/// A --report target that is free (or --force): checked before the run, so an hour of
/// figures is not lost to a name clash at the end.
fn check_report_path(path: &Path, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        bail!(
            "--report {} exists; pass --force to overwrite it or give another file",
            path.display()
        );
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            bail!(
                "--report {}: the directory {} does not exist",
                path.display(),
                parent.display()
            );
        }
    }
    Ok(())
}

fn write_report(path: &Path, report: &Report, force: bool) -> anyhow::Result<()> {
    crate::store::write_user_file(path, report.to_json().as_bytes(), 0o644, force)
        .with_context(|| format!("writing the report {}", path.display()))
}

/// Where `--to` points, resolved by the engine as for `connect` (the same trust, the same
/// hub), and with --dps where and with which ID scope the devices provision.
async fn target(
    global: &Global,
    ws: &crate::store::Workspace,
    a: &RunArgs,
) -> anyhow::Result<(crate::target::Target, Option<fleet::DpsPlan>)> {
    use crate::target::{Destination, HubWatching, TargetSpec};
    let mut anchors = Vec::new();
    for c in &a.ca {
        anchors.extend(read_ca(global, c)?);
    }
    let to = super::connect::destination(&a.to, a.endpoint.as_deref())?;
    if a.dps && matches!(to, Destination::AwsLocal | Destination::Aws(_)) {
        bail!(
            "--dps provisions through Azure's DPS; AWS IoT Core devices are registered, not provisioned by DPS: drop --dps"
        );
    }
    let spec = TargetSpec {
        to,
        transport: crate::mqtt::Transport::Mqtt,
        flavor: None,
        anchors,
        watching: HubWatching::RefusalsOnly,
    };
    let t = crate::target::resolve(Some(ws), spec)
        .await
        .map_err(super::connect::target_error)?;
    let dps = match (a.dps, &t.registry) {
        (false, _) => None,
        // The local DPS answers at the hub's own listener.
        (true, Some((store, _))) => Some(fleet::DpsPlan {
            id_scope: match &a.id_scope {
                Some(s) => s.clone(),
                None => store.dps_id_scope()?,
            },
            host: t.endpoint.host.clone(),
            port: t.endpoint.port,
        }),
        (true, None) => a.id_scope.clone().map(|id_scope| fleet::DpsPlan {
            id_scope,
            host: AZURE_DPS_HOST.into(),
            port: crate::azure::MQTT_PORT,
        }),
    };
    Ok((t, dps))
}

/// Azure's global DPS endpoint, where devices provision when the target is not the local hub.
const AZURE_DPS_HOST: &str = "global.azure-devices-provisioning.net";

fn run_fleet(global: &Global, a: RunArgs) -> CliResult {
    if a.dps {
        match &a.id_scope {
            Some(s) => {
                crate::azure::dps::check_id_scope(s).map_err(|e| anyhow!("--id-scope: {e}"))?
            }
            None if a.to != "local" => bail!(
                "--dps with --to {} needs --id-scope SCOPE (the DPS instance's ID scope, e.g. 0ne00ABCDEF); only the local hub has a default (`hub dps show`)",
                crate::text::escape_controls(&a.to)
            ),
            None => {}
        }
    }
    if a.register && a.to != "local" {
        bail!(
            "--register registers devices in the local hub only, and --to {} is another hub or broker; register the devices there with its own tools (for Azure: `az iot hub device-identity create`), or drop --register",
            crate::text::escape_controls(&a.to)
        );
    }
    if a.transport != "mqtt" {
        bail!(
            "--transport {} is not available in fleet mode yet; use --transport mqtt (MQTT over TLS)",
            a.transport
        );
    }
    let shard = if a.shard_from_env {
        Some(Shard::from_env(|k| std::env::var(k).ok(), None).context("--shard-from-env")?)
    } else {
        a.shard
    };
    if let Some(p) = &a.report {
        check_report_path(p, a.force)?;
    }
    let ws = global.existing_workspace()?;
    let names = selection(global, &ws, &a.select, shard)?;
    if a.register {
        // Registering is the one step the run leaves behind: every name must be a device of
        // this workspace first (a range mistyped without braces is a name nobody has).
        if let Some(missing) = names.iter().find(|n| !ws.exists(n)) {
            bail!(
                "no device \"{}\" in the workspace, so nothing was registered; name existing devices, a range like sensor-{{00001..10000}}, or --issuer CA",
                crate::text::escape_controls(missing)
            );
        }
        let store = crate::hub::HubStore::open(ws.root())?;
        let r = fleet::register_in_local_hub(&store, &names)?;
        if global.json {
            super::print_json_line(
                &serde_json::json!({"event": "registered", "added": r.added, "kept": r.kept}),
            );
        } else {
            say!(
                "registered {} device(s) in the local hub ({} were registered already and stay as they are)",
                r.added,
                r.kept
            );
        }
    }
    fleet::raise_open_files(names.len() as u64)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let json = global.json;
    let report = runtime.block_on(async {
        let (t, dps) = target(global, &ws, &a).await?;
        let devices = {
            let (ca, sys) = (t.trust.anchors.clone(), t.trust.system_roots);
            let ws = ws.clone();
            tokio::task::spawn_blocking(move || fleet::load_devices(&ws, &names, &ca, sys))
                .await
                .context("loading the devices")??
        };
        let mut plan = Plan::new(devices, t.endpoint.clone(), t.flavor);
        plan.connect_rate = a.connect_rate;
        plan.load = match (a.rate, a.messages) {
            (Some(r), _) => Load::Rate(r),
            (None, Some(m)) => Load::Messages(m),
            (None, None) => Load::Messages(5),
        };
        plan.duration = a.duration;
        plan.qos = a.qos;
        plan.storm = a.storm;
        plan.timeout = a.timeout;
        plan.round_trip = t.fleet_round_trip();
        plan.hub = t.hub.clone();
        plan.shard = shard;
        plan.dps = dps;
        // Set up: what parsed the arguments and read the workspace runs no more; its code
        // pages are given back before the devices start (chainsmith_server::memory).
        let _ = chainsmith_server::memory::page_out_startup_code();
        let report = watch_run(json, fleet::start(plan)).await;
        if let Some(h) = t.started {
            h.shutdown().await;
        }
        anyhow::Ok(report)
    })?;
    if let Some(p) = &a.report {
        write_report(p, &report, a.force)?;
    }
    if json {
        super::print_json_line(&serde_json::json!({"event": "summary", "report": report}));
    } else {
        print_summary(&report);
        if let Some(p) = &a.report {
            say!("report written to {}", p.display());
        }
    }
    match report.stopped.as_str() {
        "interrupted" => Err(Failed(130).into()),
        _ if report.failed > 0 || report.unacknowledged().is_some() => Err(Failed(1).into()),
        _ => Ok(()),
    }
}

/// Print events and progress until the run ends; Ctrl-C stops the run cleanly.
async fn watch_run(json: bool, mut run: fleet::FleetRun) -> Report {
    let control = run.control();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            control.stop();
        }
    });
    // `--quiet` draws no live line either (its `say!` lines print nothing already).
    let line = super::progress::ProgressLine::new(json || super::quiet());
    let mut figures = run.figures.clone();
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut events_open = true;
    loop {
        tokio::select! {
            e = run.events.recv(), if events_open => match e {
                Some(e) => line.above(|| print_event(json, &e)),
                None => events_open = false,
            },
            _ = every.tick() => {
                let f = figures.borrow_and_update().clone();
                if json {
                    super::print_json_line(&progress_json(&f));
                } else {
                    line.set(&progress_line(&f));
                }
                if f.phase == fleet::Phase::Done {
                    break;
                }
            }
        }
    }
    ctrl_c.abort();
    drop(line);
    while let Ok(e) = run.events.try_recv() {
        print_event(json, &e);
    }
    run.finish().await
}

fn progress_json(f: &Figures) -> serde_json::Value {
    serde_json::json!({
        "event": "progress",
        "phase": f.phase,
        "elapsed_s": f.elapsed_s,
        "connected": f.connected,
        "connecting": f.connecting,
        "failed": f.failed,
        "provisioned": f.provisioned,
        "handshakes_per_s": f.handshakes_per_s,
        "messages_per_s": f.messages_per_s,
        "sent": f.sent,
        "acked": f.acked,
        "ack": f.ack,
        "round_trip": f.round_trip,
    })
}

/// One line for a terminal.
pub fn progress_line(f: &Figures) -> String {
    let provisioned = if f.provisioned > 0 {
        format!("  provisioned {}", f.provisioned)
    } else {
        String::new()
    };
    format!(
        "{:>6.1}s {:<8} connected {}/{}  connecting {}  failed {}{provisioned}  {:.0} handshakes/s  {:.0} msg/s  ack p50 {:.2} p99 {:.2} ms",
        f.elapsed_s,
        f.phase.label(),
        f.connected,
        f.devices,
        f.connecting,
        f.failed,
        f.handshakes_per_s,
        f.messages_per_s,
        f.ack.p50_ms,
        f.ack.p99_ms
    )
}

fn print_event(json: bool, e: &FleetEvent) {
    if json {
        super::print_json_line(e);
        return;
    }
    match e {
        FleetEvent::Start {
            devices,
            target,
            qos,
            shard,
            ..
        } => say!(
            "fleet: {devices} device(s) -> {target}, QoS {qos}{}",
            shard
                .as_ref()
                .map(|s| format!(", shard {s}"))
                .unwrap_or_default()
        ),
        FleetEvent::RampedUp {
            s,
            connected,
            failed,
        } => {
            say!("ramp-up done in {s:.1} s: {connected} connected, {failed} failed")
        }
        FleetEvent::DeviceFailed { .. } => {} // grouped in the summary
        FleetEvent::StormBegin { devices } => {
            say!("storm: dropping {devices} connection(s) at once")
        }
        FleetEvent::StormEnd { s, back, failed } => {
            say!("storm: all back in {s:.1} s ({back} back, {failed} failed)")
        }
        FleetEvent::Stopping { reason } => say!("stopping ({reason})"),
    }
}

fn print_summary(r: &Report) {
    let shortfall = r.unacknowledged();
    let mark = if r.failed == 0 && shortfall.is_none() {
        "✓"
    } else {
        "✗"
    };
    say!(
        "{mark} {} device(s): {} connected, {} failed; {} handshake(s) in {:.1} s ({})",
        r.devices,
        r.connected,
        r.failed,
        r.handshakes,
        r.elapsed_s,
        r.stopped
    );
    if let (Some(t), Some(h)) = (r.ramp_up_s, r.handshakes_per_s_ramp) {
        say!("    ramp-up: {t:.1} s, {h:.0} handshakes/s");
    }
    let m = &r.messages;
    say!(
        "    messages: {} sent, {} acknowledged, {} without PUBACK; {} round trips, {} lost; {:.0} msg/s",
        m.sent,
        m.acked,
        m.ack_lost,
        m.round_trips,
        m.round_trips_lost,
        r.messages_per_s
    );
    if let Some(s) = &shortfall {
        say!("  ✗ {}", crate::text::escape_controls(s));
        say!(
            "      fix:   check that the broker acknowledges QoS 1 (a PUBACK per PUBLISH), or raise --timeout"
        );
    }
    if r.provisioned > 0 || r.latency.provision.count > 0 {
        say!("    provisioned through DPS: {}", r.provisioned);
    }
    for (name, l) in [
        ("provision", &r.latency.provision),
        ("handshake", &r.latency.handshake),
        ("PUBACK", &r.latency.ack),
        ("round trip", &r.latency.round_trip),
    ] {
        if l.count > 0 {
            say!(
                "    {name:<10} p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} samples)",
                l.p50_ms,
                l.p90_ms,
                l.p99_ms,
                l.max_ms,
                l.count
            );
        }
    }
    if let Some(s) = &r.storm {
        say!(
            "    storm: {} dropped, {} back, {} gave up, {} still reconnecting at the stop, {} retries, all back in {}",
            s.devices,
            s.back,
            s.failed,
            s.still_reconnecting,
            s.retries,
            s.time_to_all_back_s
                .map(|t| format!("{t:.1} s"))
                .unwrap_or_else(|| "— (not all came back)".into())
        );
    }
    for (kind, g) in &r.failures {
        say!("  ✗ {kind}: {} device(s), e.g. {}", g.count, g.example);
        // The cause can carry a peer's words (DPS's message).
        say!("      cause: {}", crate::text::escape_controls(&g.cause));
        say!("      fix:   {}", crate::text::escape_controls(&g.fix));
        if let Some(how) = dps_fix_commands(kind) {
            say!("             ({how})");
        }
        if let Some(remedy) = &g.remedy {
            let peer = g.peer.unwrap_or(crate::mqtt::PeerKind::Broker);
            let hint = super::connect::hint::group_hint(remedy, peer, &g.devices);
            say!("      hint:  {}", crate::text::escape_controls(&hint));
        }
    }
}

/// The commands for a DPS failure's fix (the engine says the fix in domain words).
fn dps_fix_commands(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "dps-unauthorized" => {
            "`chainsmith hub dps enroll ID --from DEVICE`, `chainsmith hub dps group add NAME --ca CA`, `chainsmith hub dps ca prove CA`"
        }
        "dps-forbidden" => "`chainsmith hub dps enable NAME`",
        "dps-not-found" => "`chainsmith hub dps show` prints the ID scope",
        "dps-connect-refused" => "check --id-scope against `chainsmith hub dps show`",
        "dps-timeout" => "raise --timeout",
        k if k.starts_with("dps-") => "`chainsmith connect DEVICE --dps` shows each step",
        _ => return None,
    })
}

fn merge(global: &Global, a: MergeArgs) -> CliResult {
    if let Some(p) = &a.report {
        check_report_path(p, a.force)?;
    }
    let mut reports = Vec::new();
    for p in &a.reports {
        reports.push((p.display().to_string(), Report::read(p)?));
    }
    let merged = fleet::merge(&reports)?;
    if let Some(p) = &a.report {
        write_report(p, &merged, a.force)?;
    }
    if global.json {
        super::print_json(&merged);
    } else {
        say!("merged {} report(s)", reports.len());
        print_summary(&merged);
    }
    Ok(())
}

fn export_shards(global: &Global, a: ExportShardsArgs) -> CliResult {
    let ws = global.existing_workspace()?;
    let names = selection(global, &ws, &a.select, None)?;
    let bar = super::progress::WorkBar::new(global);
    let bundles = fleet::bundle::export_shards_watched(&ws, &names, &a.out, a.shards, &bar)?;
    drop(bar);
    if global.json {
        super::print_json(&serde_json::json!({ "bundles": bundles }));
    } else {
        for b in &bundles {
            say!(
                "shard {}: {} device(s) in {}",
                b.shard,
                b.devices,
                b.dir.display()
            );
        }
        say!(
            "run one per pod: chainsmith --workspace {}/shard-$((JOB_COMPLETION_INDEX+1)) fleet run --issuer CA --to HUB --report report.json (see assets/fleet-job.yaml)",
            a.out.display()
        );
    }
    Ok(())
}
