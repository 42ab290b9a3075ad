//! `chainsmith hub …`: the embedded local IoT Hub (registry, server, control).

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};

use super::{CliResult, Global, print_json, warn};
use crate::hub::control::{self, Request};
use crate::hub::{Auth, Hub, HubConfig, HubEvent, HubStore};

mod dps;

#[derive(Subcommand, Debug)]
pub enum HubCommand {
    /// CAs uploaded to the hub (as in the portal's "Certificates" page).
    #[command(subcommand)]
    Ca(CaCommand),
    /// Devices registered with the hub.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Show a device twin; --set-desired patches its desired properties.
    Twin(TwinArgs),
    /// Print the path of the PEM clients must trust to reach the hub; --install adds it to
    /// the system trust store (Debian's update-ca-certificates) for samples that pass none.
    Trust(TrustArgs),
    /// Run the hub in the foreground until Ctrl-C.
    Serve(ServeArgs),
    /// Stream telemetry received by the running hub (like `az iot hub monitor-events`).
    Monitor(MonitorArgs),
    /// Send a cloud-to-device message through the running hub.
    C2d(C2dArgs),
    /// Invoke a direct method on a device connected to the running hub.
    Method(MethodArgs),
    /// The local Device Provisioning Service, served by `hub serve` on the same port.
    #[command(subcommand)]
    Dps(dps::DpsCommand),
}

/// The CAs of the hub (`hub ca`) and of DPS (`hub dps ca`): the same commands, each against
/// its own service's list.
#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Upload a workspace CA (root or intermediate); prints a verification code unless --verified.
    Add {
        name: String,
        /// Mark it verified on upload (self-attested; skips proof of possession).
        #[arg(long)]
        verified: bool,
    },
    /// Proof of possession: a certificate with CN = the service's code, signed by the CA.
    Verify {
        name: String,
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
    },
    /// Proof of possession in one step: add the CA if needed, make the verification certificate
    /// for the service's code (under WS/verification/), verify it. As the TUI's Hub tab does.
    Prove {
        name: String,
    },
    List,
    Remove {
        name: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AuthArg {
    Ca,
    SelfSigned,
}

/// A self-signed device's thumbprints, given (`--primary`, `--secondary`) or taken from a
/// workspace device (`--from`): what `hub device add` and `hub device update` both take.
#[derive(Args, Debug)]
pub struct ThumbprintArgs {
    /// SHA-1 or SHA-256 thumbprint (hex) for the primary slot.
    #[arg(long)]
    primary: Option<String>,
    /// SHA-1 or SHA-256 thumbprint (hex) for the secondary slot.
    #[arg(long)]
    secondary: Option<String>,
    /// Take the thumbprints from this workspace device: both slots when it holds two (on update,
    /// a slot it does not hold is cleared).
    #[arg(long, value_name = "NAME")]
    from: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Register devices: --auth ca (chain to a verified CA) or self-signed (thumbprints);
    /// several ids and ranges like sensor-{001..400}, as `new device` takes them.
    Add {
        /// Device ids, or ranges like sensor-{001..400} (several self-signed devices each
        /// take the thumbprints of the workspace device of their name).
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        #[arg(long, value_enum)]
        auth: AuthArg,
        #[command(flatten)]
        thumbprints: ThumbprintArgs,
    },
    /// Change a self-signed device's thumbprints: roll one slot with --primary or --secondary,
    /// or mirror a workspace device's slots with --from.
    Update {
        id: String,
        #[command(flatten)]
        thumbprints: ThumbprintArgs,
    },
    List,
    Show {
        id: String,
    },
    /// Let devices connect again: ids and ranges like sensor-{001..400}.
    Enable {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Refuse devices' connections: ids and ranges like sensor-{001..400}.
    Disable {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Remove devices and their twins: ids and ranges like sensor-{001..400}.
    Remove {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
}

/// Device ids and ranges (`sensor-{001..400}`) expanded as `new device` expands them (the
/// range size is checked there), each id once.
fn device_ids(patterns: &[String]) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in patterns {
        for id in crate::pki::identity::expand_range(p)? {
            if seen.insert(id.clone()) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

#[derive(Args, Debug)]
pub struct TwinArgs {
    pub id: String,
    /// A JSON object merged into the desired properties (null deletes a key).
    #[arg(long, value_name = "JSON")]
    pub set_desired: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
    /// No per-event log (benchmarks); `hub monitor` still works.
    Off,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    #[arg(long, default_value_t = 8883)]
    pub port: u16,
    /// Answer every telemetry message with a C2D message carrying its message id.
    #[arg(long)]
    pub echo: bool,
    /// An extra DNS name or IP for the server certificate.
    #[arg(long)]
    pub hostname: Option<String>,
    /// AMQP over TLS; 0 turns it off. Default: IoT Hub's 5671, or a free port (printed) when
    /// 5671 is taken.
    #[arg(long)]
    pub amqp_port: Option<u16>,
    /// MQTT and AMQP over WebSockets at /$iothub/websocket and DPS's REST API over HTTPS
    /// (IoT Hub's and DPS's 443); 0 turns it off. Default: 443 when the hub may bind it, else
    /// a free port (printed).
    #[arg(long = "ws-port")]
    pub websocket_port: Option<u16>,
    #[arg(long, value_enum, default_value = "text")]
    pub log: LogFormat,
    /// The ID scope DPS answers to, instead of the workspace's own (`hub dps show`).
    #[arg(long, value_name = "SCOPE")]
    pub id_scope: Option<String>,
}

#[derive(Args, Debug)]
pub struct MonitorArgs {
    #[arg(long)]
    pub device: Option<String>,
}

#[derive(Args, Debug)]
pub struct C2dArgs {
    pub id: String,
    pub message: String,
    /// Application property k=v (repeatable).
    #[arg(long = "prop", value_name = "K=V")]
    pub props: Vec<String>,
}

#[derive(Args, Debug)]
pub struct MethodArgs {
    pub id: String,
    pub name: String,
    #[arg(long, value_name = "JSON")]
    pub payload: Option<String>,
    /// Seconds to wait for the device's answer.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

/// A hub event as `hub serve` prints it: the engine's line, and the command for the fix the
/// line states in words.
pub fn hub_log_line(e: &HubEvent) -> String {
    let mut line = e.line();
    match e {
        HubEvent::RevokedCertificate { device, .. } => line.push_str(&format!(
            " (`chainsmith hub device disable {}`, or revoke with --disable-on-hub)",
            crate::text::escape_controls(device)
        )),
        HubEvent::Refused { kind, .. } if kind == "dps-id-scope" => {
            line.push_str(" (`chainsmith hub dps show` prints this DPS's)")
        }
        _ => {}
    }
    line
}

/// A refusal the running hub answered over the control channel, with its kind.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HubAnswer {
    pub kind: String,
    pub message: String,
}

/// The `--json` kind of a hub command's error: the running hub's answer or the CLI's own
/// usage kinds, else the engine error's ([`super::error_kind`]).
fn error_kind(e: &anyhow::Error) -> String {
    if let Some(a) = e.downcast_ref::<HubAnswer>() {
        return a.kind.clone();
    }
    if let Some(k) = e.downcast_ref::<UsageError>() {
        return k.0.into();
    }
    super::error_kind(e).into()
}

/// A mistake in the command line the hub commands catch themselves.
#[derive(Debug)]
struct UsageError(&'static str, String);
impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}
impl std::error::Error for UsageError {}

pub(super) fn usage(kind: &'static str, message: String) -> anyhow::Error {
    UsageError(kind, message).into()
}

pub fn run(global: &Global, c: HubCommand) -> CliResult {
    match run_command(global, c) {
        // With --json the hub prints its own error kinds (`cli::run` would say "error").
        Err(e) if global.json && e.downcast_ref::<super::Failed>().is_none() => {
            print_json(&serde_json::json!({ "error": {
                "kind": error_kind(&e),
                "message": super::hinted_message(&e),
            } }));
            Err(super::Failed(1).into())
        }
        r => r,
    }
}

fn run_command(global: &Global, c: HubCommand) -> CliResult {
    let store = HubStore::new(global.workspace()?);
    match c {
        HubCommand::Ca(c) => ca(global, &store, c),
        HubCommand::Device(c) => device(global, &store, c),
        HubCommand::Twin(a) => twin(global, &store, a),
        HubCommand::Dps(c) => dps::run(global, &store, c),
        HubCommand::Trust(a) => trust(global, &store, a),
        HubCommand::Serve(a) => serve(global, &store, a),
        HubCommand::Monitor(a) => monitor(global, &store, a),
        HubCommand::C2d(a) => {
            let mut props = Vec::new();
            for p in &a.props {
                let (k, v) = p.split_once('=').ok_or_else(|| {
                    usage(
                        "invalid",
                        format!("--prop {p:?} has no '='; write it as key=value"),
                    )
                })?;
                props.push((k.to_string(), v.to_string()));
            }
            let req = Request::C2d {
                device: a.id.clone(),
                body: a.message,
                props,
            };
            let v = one_request(&store, &req)?;
            if global.json {
                print_json(&v);
            } else if v["delivered"] == true {
                say!(
                    "sent to {}: message id {}",
                    a.id,
                    v["message_id"].as_str().unwrap_or("")
                );
            } else {
                say!(
                    "queued for {} (not connected or not subscribed to C2D; delivered when it subscribes): message id {}",
                    a.id,
                    v["message_id"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        HubCommand::Method(a) => {
            let payload = match &a.payload {
                Some(p) => serde_json::from_str(p).map_err(|e| {
                    usage(
                        "invalid-json",
                        format!(
                            "--payload {p:?} is not JSON ({e}); quote it like '{{\"delay\": 5}}'"
                        ),
                    )
                })?,
                None => serde_json::Value::Null,
            };
            let req = Request::Method {
                device: a.id.clone(),
                name: a.name.clone(),
                payload,
                timeout: a.timeout,
            };
            let v = one_request(&store, &req)?;
            if global.json {
                print_json(&v);
            } else {
                say!("status {}", v["status"]);
                say!("{}", v["payload"]);
            }
            Ok(())
        }
    }
}

/// The runtime a server or a request to one runs on.
pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn one_request(store: &HubStore, req: &Request) -> anyhow::Result<serde_json::Value> {
    let rt = runtime()?;
    let mut answer = None;
    rt.block_on(control::request(&store.control_path(), req, |v| {
        answer = Some(v);
        false
    }))?;
    let v =
        answer.ok_or_else(|| anyhow!("the hub closed the control channel without answering"))?;
    if let Some(e) = v.get("error") {
        return Err(HubAnswer {
            kind: v["kind"].as_str().unwrap_or("hub-error").to_string(),
            message: e.as_str().unwrap_or("hub error").to_string(),
        }
        .into());
    }
    Ok(v["ok"].clone())
}

fn ca(global: &Global, store: &HubStore, c: CaCommand) -> CliResult {
    match c {
        CaCommand::Add { name, verified } => {
            let ca = store.add_ca(&name, verified)?;
            if global.json {
                print_json(&ca_json(&ca));
            } else if verified {
                say!("CA \"{name}\" ({}) uploaded, verified", ca.cn);
            } else {
                say!("CA \"{name}\" ({}) uploaded, unverified", ca.cn);
                say!("verification code: {}", ca.code);
                say!(
                    "prove possession: chainsmith new verification --issuer {name} --code {} ; chainsmith hub ca verify {name} --cert FILE",
                    ca.code
                );
            }
        }
        CaCommand::Verify { name, cert } => {
            let bytes = crate::store::read_input(&cert)
                .map_err(|e| usage("io", format!("{e}; check the path")))?;
            let ca = store.verify_ca(&name, &bytes)?;
            if global.json {
                print_json(&ca_json(&ca));
            } else {
                say!("CA \"{name}\" is verified");
            }
        }
        CaCommand::Prove { name } => {
            let steps = crate::hub::hub_prove(store, &name)?;
            if global.json {
                print_json(&serde_json::json!({ "name": name, "steps": steps }));
            } else {
                for step in &steps {
                    say!("{}", crate::text::escape_controls(step));
                }
            }
        }
        CaCommand::List => {
            let reg = store.load()?;
            if global.json {
                print_json(&reg.cas.iter().map(ca_json).collect::<Vec<_>>());
            } else if reg.cas.is_empty() {
                say!("no CAs uploaded; add one with `chainsmith hub ca add NAME`");
            } else {
                for c in &reg.cas {
                    let state = if c.verified { "verified" } else { "unverified" };
                    let cn = crate::text::escape_controls(&c.cn);
                    say!(
                        "{:<24} {:<10} CN={cn}  SHA-256 {}  code {}",
                        c.name,
                        state,
                        c.thumbprint(),
                        c.code
                    );
                }
            }
        }
        CaCommand::Remove { name } => {
            store.remove_ca(&name)?;
            if !global.json {
                say!("CA \"{name}\" removed from the hub");
            } else {
                print_json(&serde_json::json!({ "removed": name }));
            }
        }
    }
    Ok(())
}

pub(super) fn ca_json(c: &crate::hub::HubCa) -> serde_json::Value {
    serde_json::json!({
        "name": c.name, "cn": c.cn, "verified": c.verified, "code": c.code,
        "sha256": c.thumbprint(),
        "added": crate::pki::issue::rfc3339(c.added),
    })
}

fn device(global: &Global, store: &HubStore, c: DeviceCommand) -> CliResult {
    let show = |d: &crate::hub::HubDevice| {
        if global.json {
            print_json(d);
        } else {
            say!("device {}", d.id);
            say!("  auth      {}", d.auth.as_str());
            say!("  enabled   {}", d.enabled);
            say!("  primary   {}", d.primary.as_deref().unwrap_or("-"));
            say!("  secondary {}", d.secondary.as_deref().unwrap_or("-"));
            if let Some(by) = &d.provisioned_by {
                say!("  created   by {by} (by its certificate's thumbprint, as Azure's DPS does)");
            }
        }
    };
    // Several devices: JSON lists them; text says how many and which, as ranges.
    let many = |devices: &[crate::hub::HubDevice], verb: &str| {
        if global.json {
            print_json(&devices);
        } else {
            let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
            say!(
                "{} devices {verb}: {}",
                ids.len(),
                super::connect::hint::words(&ids)
            );
        }
    };
    let switch = |ids: Vec<String>, enabled: bool| -> CliResult {
        let ids = device_ids(&ids)?;
        match ids.as_slice() {
            [id] => show(&store.set_enabled(id, enabled)?),
            _ => many(
                &store.set_enabled_all(&ids, enabled)?,
                if enabled { "enabled" } else { "disabled" },
            ),
        }
        Ok(())
    };
    match c {
        DeviceCommand::Add {
            ids,
            auth,
            thumbprints:
                ThumbprintArgs {
                    primary,
                    secondary,
                    from,
                },
        } => {
            let auth = match auth {
                AuthArg::Ca => Auth::Ca,
                AuthArg::SelfSigned => Auth::SelfSigned,
            };
            let ids = device_ids(&ids)?;
            if let [id] = ids.as_slice() {
                let (d, warnings) = store.add_device(
                    id,
                    auth,
                    primary.as_deref(),
                    secondary.as_deref(),
                    from.as_deref(),
                )?;
                warn(global, &warnings);
                show(&d);
                return Ok(());
            }
            if primary.is_some() || secondary.is_some() || from.is_some() {
                bail!(
                    "--primary, --secondary and --from give one device's thumbprints, and {} devices were named; add them one at a time, or leave the flags out to take each device's own thumbprints from the workspace",
                    ids.len()
                );
            }
            let all: Vec<(String, Auth)> = ids.into_iter().map(|id| (id, auth)).collect();
            let (added, warnings) = store.add_devices(&all, false)?;
            warn(global, &warnings);
            many(&added, "registered");
        }
        DeviceCommand::Update {
            id,
            thumbprints:
                ThumbprintArgs {
                    primary,
                    secondary,
                    from,
                },
        } => show(&store.update_device(
            &id,
            primary.as_deref(),
            secondary.as_deref(),
            from.as_deref(),
        )?),
        DeviceCommand::List => {
            let reg = store.load()?;
            if global.json {
                print_json(&reg.devices);
            } else if reg.devices.is_empty() {
                say!(
                    "no devices registered; add one with `chainsmith hub device add ID --auth ca`"
                );
            } else {
                for d in &reg.devices {
                    say!(
                        "{:<32} {:<12} {}",
                        d.id,
                        d.auth.as_str(),
                        if d.enabled { "enabled" } else { "disabled" }
                    );
                }
            }
        }
        DeviceCommand::Show { id } => show(&store.device(&id)?),
        DeviceCommand::Enable { ids } => switch(ids, true)?,
        DeviceCommand::Disable { ids } => switch(ids, false)?,
        DeviceCommand::Remove { ids } => {
            let ids = device_ids(&ids)?;
            store.remove_devices(&ids)?;
            match (global.json, ids.as_slice()) {
                (true, [id]) => print_json(&serde_json::json!({ "removed": id })),
                (true, _) => print_json(&serde_json::json!({ "removed": ids })),
                (false, [id]) => say!("device \"{id}\" removed from the hub"),
                (false, _) => say!(
                    "{} devices removed from the hub: {}",
                    ids.len(),
                    super::connect::hint::words(&ids)
                ),
            }
        }
    }
    Ok(())
}

fn twin(global: &Global, store: &HubStore, a: TwinArgs) -> CliResult {
    store.device(&a.id)?;
    if let Some(patch) = &a.set_desired {
        let patch: serde_json::Value = serde_json::from_str(patch).map_err(|e| {
            usage(
                "invalid-json",
                format!(
                    "--set-desired {patch:?} is not JSON ({e}); write e.g. '{{\"interval\": 5}}'"
                ),
            )
        })?;
        let req = Request::Desired {
            device: a.id.clone(),
            patch: patch.clone(),
        };
        // Through the running hub when there is one (it pushes the patch), else on disk.
        match one_request(store, &req) {
            Ok(_) => {}
            Err(e) if e.downcast_ref::<control::ControlError>().is_some() => {
                store.patch_desired(&a.id, &patch)?;
            }
            Err(e) => return Err(e),
        }
    }
    let t = store.load_twin(&a.id)?;
    if global.json {
        print_json(&t.service_document());
    } else {
        say!(
            "{}",
            serde_json::to_string_pretty(&t.service_document()).unwrap_or_default()
        );
    }
    Ok(())
}

fn serve(global: &Global, store: &HubStore, a: ServeArgs) -> CliResult {
    let rt = runtime()?;
    let json = a.log == LogFormat::Json || global.json;
    let quiet = a.log == LogFormat::Off;
    let root = store.ws.root().to_path_buf();
    let control_path = store.control_path();
    if std::os::unix::net::UnixStream::connect(&control_path).is_ok() {
        return Err(usage(
            "hub-running",
            format!(
                "a hub is already running for the workspace {} (control socket {}); stop it first or use another --workspace",
                root.display(),
                control_path.display()
            ),
        ));
    }
    if let Some(s) = &a.id_scope {
        crate::azure::dps::check_id_scope(s)
            .map_err(|e| usage("invalid", format!("--id-scope: {e}")))?;
    }
    let scope = match &a.id_scope {
        Some(s) => s.clone(),
        None => store.dps_id_scope()?,
    };
    rt.block_on(async move {
        let on = |p: u16| (p != 0).then_some(p);
        let amqp_default = crate::azure::amqp::AMQP_PORT;
        let ws_default = crate::azure::websocket::WS_PORT;
        let mut config = HubConfig {
            csr_signer: Some(crate::hub::dps_csr_signer()),
            bind: a.bind,
            port: a.port,
            echo: a.echo,
            hostname: a.hostname,
            amqp_port: on(a.amqp_port.unwrap_or(amqp_default)),
            websocket_port: on(a.websocket_port.unwrap_or(ws_default)),
            // A fixed CHAINSMITH_NOW starts the server's clock there and lets it run on.
            clock: store.ws.clock().running(),
            dps_session_lifetime: crate::hub::server::DPS_SESSION_LIFETIME,
            dps_webhook_timeout: crate::hub::dps::DPS_WEBHOOK_TIMEOUT,
        };
        // A default port that cannot be bound (443 needs root or CAP_NET_BIND_SERVICE; 5671 or
        // 443 may be taken by another hub): a free port instead, and a note. A port the user
        // gave is never replaced.
        let mut notes = Vec::new();
        let hub = loop {
            match Hub::start_with_scope(&root, config.clone(), a.id_scope.clone()).await {
                Err(crate::hub::HubError::Bind { addr, source })
                    if a.amqp_port.is_none()
                        && config.amqp_port == Some(amqp_default)
                        && addr.port() == amqp_default =>
                {
                    config.amqp_port = Some(0);
                    notes.push(("AMQP", amqp_default, source.to_string(), "--amqp-port"));
                }
                Err(crate::hub::HubError::Bind { addr, source })
                    if a.websocket_port.is_none()
                        && config.websocket_port == Some(ws_default)
                        && addr.port() == ws_default =>
                {
                    config.websocket_port = Some(0);
                    notes.push((
                        "MQTT and AMQP over WebSockets, DPS over HTTPS",
                        ws_default,
                        source.to_string(),
                        "--ws-port",
                    ));
                }
                r => break r?,
            }
        };
        for (what, port, why, flag) in notes {
            let now = if flag == "--amqp-port" {
                hub.amqp_addr
            } else {
                hub.websocket_addr
            };
            if let Some(now) = now {
                complain!(
                    "note: cannot listen on port {port} ({why}); {what} on port {} instead (the SDKs dial {port}: free it, run as root or with CAP_NET_BIND_SERVICE, run them in their own network namespace, or pass {flag})",
                    now.port()
                );
            }
        }
        // Listening: the code that parsed the arguments, read the workspace and issued the
        // server's certificate runs no more, and its pages are given back (issue 25; a kernel
        // without MADV_PAGEOUT keeps them, and the hub serves the same).
        let _ = chainsmith_server::memory::page_out_startup_code();
        let mut events = hub.events();
        let listeners = hub.listeners();
        let set_aside: Vec<String> = store
            .take_set_aside()
            .iter()
            .chain(&hub.set_aside)
            .map(ToString::to_string)
            .collect();
        let hub = std::sync::Arc::new(hub);
        let ctl = tokio::spawn(crate::hub::server::serve_control(hub.clone(), control_path.clone()));
        let print = move |e: &HubEvent| {
            if json {
                super::log_out(&serde_json::to_string(e).unwrap_or_default(), true);
            } else {
                super::log_out(&hub_log_line(e), false);
            }
        };
        // One line per listener (issue 22 item 7: only MQTT's was printed).
        for e in &listeners {
            print(e);
        }
        for note in set_aside {
            print(&HubEvent::StateSetAside { note });
        }
        let files = hub.open_files();
        let files = HubEvent::OpenFiles {
            before: files.before,
            soft: files.soft,
            hard: files.hard,
        };
        if hub.open_files().low() {
            complain!("{}", files.line());
        }
        print(&files);
        if !json {
            let trust = HubStore::open(&root)?.trust_path();
            super::log_out(&format!("trust: {}", trust.display()), false);
            super::log_out(
                &format!("DPS ID scope: {scope} (same address and port)"),
                false,
            );
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        if quiet {
            // No log, so no listener: the hub builds no event per message and wakes no log
            // task (a `hub monitor` subscribes through the control socket while it runs).
            drop(events);
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        } else {
            loop {
                tokio::select! {
                    e = events.recv() => match e {
                        Ok(e) => print(&e),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            complain!("warning: log fell behind, {n} events skipped");
                        }
                        Err(_) => break,
                    },
                    _ = tokio::signal::ctrl_c() => break,
                    _ = term.recv() => break,
                }
            }
        }
        ctl.abort();
        let _ = std::fs::remove_file(&control_path);
        if let Ok(hub) = std::sync::Arc::try_unwrap(hub) {
            hub.shutdown().await;
        }
        Ok::<(), anyhow::Error>(())
    })
}

fn monitor(global: &Global, store: &HubStore, a: MonitorArgs) -> CliResult {
    let rt = runtime()?;
    let json = global.json;
    // Printed once the hub has subscribed, in both modes (on stderr): a script that waits for
    // this line before it sends telemetry sees every message.
    let ready = || complain!("Starting event monitor, use ctrl-c to stop...");
    rt.block_on(control::monitor(
        &store.control_path(),
        a.device.clone(),
        ready,
        |v| {
            print_telemetry(&v, json);
            true
        },
    ))?;
    Ok(())
}

/// Print one telemetry event the way `az iot hub monitor-events --properties all` does.
fn print_telemetry(v: &serde_json::Value, json: bool) {
    // The same split for every transport: `Properties::system` names what IoT Hub treats as
    // system properties (an AMQP `to` or `absolute-expiry-time` included).
    let bag = crate::azure::Properties(
        v["properties"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        let text = |x: &serde_json::Value| x.as_str().unwrap_or("").to_string();
                        (text(&p[0]), text(&p[1]))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    );
    let text = |pairs: &mut dyn Iterator<Item = (&str, &str)>| {
        pairs
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
            .collect::<serde_json::Map<_, _>>()
    };
    let system = text(&mut bag.system());
    let app = text(&mut bag.application());
    let payload = v["payload"]
        .as_str()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .unwrap_or_else(|| v["payload"].clone());
    let ev = serde_json::json!({ "event": {
        "origin": v["device"],
        "module": "",
        "payload": payload,
        "annotations": { "iothub-connection-device-id": v["device"], "iothub-enqueuedtime": v["enqueued"] },
        "properties": { "system": system, "application": app },
    }});
    if json {
        super::print_json_line(&ev);
    } else {
        say!("{}", serde_json::to_string_pretty(&ev).unwrap_or_default());
    }
}

#[derive(Debug, clap::Args)]
pub struct TrustArgs {
    /// Add the hub's CA to the system trust store (/usr/local/share/ca-certificates, then
    /// update-ca-certificates), so samples that pass no server certificate connect. Needs root.
    #[arg(long, conflicts_with = "uninstall")]
    install: bool,
    /// Remove this workspace's hub CA from the system trust store again.
    #[arg(long)]
    uninstall: bool,
    /// Install into the trust store of another file tree (a container image, a chroot)
    /// instead of this system's.
    #[arg(long, value_name = "DIR")]
    system_root: Option<PathBuf>,
}

fn trust(global: &Global, store: &HubStore, a: TrustArgs) -> CliResult {
    use crate::hub::system_trust::SystemTrust;
    store.ensure_tls_ca()?;
    let path = store.trust_path();
    let system = match &a.system_root {
        Some(root) => SystemTrust::under(root),
        None => SystemTrust::default(),
    };
    let change = if a.install {
        Some(system.install(store)?)
    } else if a.uninstall {
        Some(system.uninstall(store)?)
    } else {
        None
    };
    let installed = system.is_installed(store)?;
    // Node.js trusts its own compiled-in roots, not the system store (Python's ssl, OpenSSL,
    // curl do read it): without one of these a Node sample fails with
    // UNABLE_TO_VERIFY_LEAF_SIGNATURE even after --install.
    let node_env = format!("NODE_EXTRA_CA_CERTS={}", path.display());
    // --use-openssl-ca reads OpenSSL's default store, which is the system's only in a
    // distribution's build of Node; SSL_CERT_FILE names the bundle for any build.
    let node_openssl = format!(
        "SSL_CERT_FILE={} node --use-openssl-ca",
        system.bundle().display()
    );
    let node_hint = format!(
        "Node.js does not read the system trust store: run Node samples with `{node_env}` (or with `{node_openssl}`)"
    );
    if global.json {
        print_json(&serde_json::json!({
            "trust": path,
            "system": { "installed": installed, "file": system.file_for(store)?, "bundle": system.bundle(),
                        "changed": change.as_ref().map(|c| c.changed) },
            "node": { "reads_system_store": false, "env": node_env,
                      "or": node_openssl, "hint": node_hint },
        }));
        return Ok(());
    }
    match (change, a.install) {
        (None, _) => say!("{}", path.display()),
        (Some(c), true) if c.changed => say!(
            "added the hub's CA to the system trust store: {}\nclients that use the system's CAs now trust the hub ({} rebuilt); undo with `chainsmith hub trust --uninstall`\n{node_hint}",
            c.file.display(),
            c.bundle.display()
        ),
        (Some(c), true) => say!(
            "the hub's CA is already in the system trust store ({}); bundle refreshed\n{node_hint}",
            c.file.display()
        ),
        (Some(c), false) if c.changed => say!(
            "removed the hub's CA from the system trust store ({}); {} rebuilt",
            c.file.display(),
            c.bundle.display()
        ),
        (Some(_), false) => {
            say!("the hub's CA was not in the system trust store; nothing to remove")
        }
    }
    Ok(())
}
