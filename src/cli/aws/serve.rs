//! `chainsmith aws serve` and `aws endpoint`: the local AWS IoT Core on the workspace's
//! registry, and where devices find it.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use super::super::hub::{LogFormat, runtime, usage};
use super::super::{CliResult, Global, log_out, print_json};
use crate::aws::broker::endpoint::{ALPN_PORT, Endpoint, MQTT_PORT};
use crate::aws::broker::{self, BrokerConfig, BrokerError};
use crate::aws::registry::Registry;
use crate::store::Workspace;

/// `aws serve`'s flags.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// MQTT over TLS with client certificates (AWS IoT Core's 8883).
    #[arg(long, default_value_t = MQTT_PORT)]
    pub port: u16,
    /// MQTT over TLS for clients offering ALPN `x-amzn-mqtt-ca`, as AWS serves on 443; 0 turns
    /// it off. Default: 443 when it may be bound, else a free port (printed).
    #[arg(long = "alpn-port")]
    pub alpn_port: Option<u16>,
    /// An extra DNS name or IP for the server certificate (and the endpoint's address).
    #[arg(long)]
    pub hostname: Option<String>,
    /// The workspace CA that signs the certificates fleet provisioning issues
    /// (CreateCertificateFromCsr, CreateKeysAndCertificate). Default: chainsmith's own
    /// AWS-like issuer, kept in WS/aws/issuer/ and made on first need.
    #[arg(long = "issuing-ca", value_name = "CA")]
    pub issuing_ca: Option<String>,
    /// The log on standard output: one line per event, JSON lines, or off.
    #[arg(long, value_enum, default_value = "text")]
    pub log: LogFormat,
}

/// Run the local AWS IoT Core until SIGINT or SIGTERM.
pub fn serve(global: &Global, ws: &Workspace, registry: Registry, a: ServeArgs) -> CliResult {
    // A fixed CHAINSMITH_NOW starts the service's clock there and lets it run on.
    registry.set_clock(ws.clock().running());
    // A second service on the workspace would take the control socket over and remove it
    // when it stops, leaving `aws publish`, `monitor` and `shadow` without the first one.
    let control_path = crate::aws::broker::control::socket_path(ws);
    if std::os::unix::net::UnixStream::connect(&control_path).is_ok() {
        return Err(usage(
            "aws-running",
            format!(
                "an aws serve is already running for the workspace {} (control socket {}); stop it first or use another --workspace",
                crate::text::escape_controls(&ws.root().display().to_string()),
                crate::text::escape_controls(&control_path.display().to_string())
            ),
        ));
    }
    set_issuer(ws, &registry, a.issuing_ca.as_deref())?;
    let json = a.log == LogFormat::Json || global.json;
    let quiet = a.log == LogFormat::Off;
    let rt = runtime()?;
    rt.block_on(async move {
        let rules: Arc<dyn crate::aws::rules::Rules> = Arc::new(registry);
        let mut config = BrokerConfig {
            ip: a.bind,
            port: a.port,
            alpn_port: match a.alpn_port {
                Some(0) => None,
                Some(p) => Some(p),
                None => Some(ALPN_PORT),
            },
            hostname: a.hostname.clone(),
        };
        // 443 needs root or CAP_NET_BIND_SERVICE and may be taken (by `hub serve`): the
        // default falls back to a free port with a note; a port the user gave is never
        // replaced.
        let handle = loop {
            match broker::start(ws, rules.clone(), config.clone()).await {
                Err(BrokerError::Bind { addr, source })
                    if a.alpn_port.is_none() && addr.port() == ALPN_PORT =>
                {
                    complain!(
                        "note: cannot listen on port {ALPN_PORT} ({source}); ALPN x-amzn-mqtt-ca on a free port instead (the SDKs dial {ALPN_PORT} when asked for ALPN: free it, run as root or with CAP_NET_BIND_SERVICE, run them in their own network namespace, or pass --alpn-port)"
                    );
                    config.alpn_port = Some(0);
                }
                r => break r.map_err(|e| {
                    let hint = match &e {
                        BrokerError::Bind { .. } => "\nhint: another server holds the port: stop it, or pass --port / --alpn-port",
                        BrokerError::Tls(_) => "",
                    };
                    anyhow::anyhow!("{}{hint}", crate::text::escape_controls(&e.to_string()))
                })?,
            }
        };
        let host = a.hostname.clone().unwrap_or_else(|| "localhost".into());
        let endpoint = Endpoint::of_listeners(ws, &host, handle.mqtt, handle.alpn);
        endpoint
            .save(ws)
            .context("recording the endpoint for `aws endpoint`")?;
        let say_line = |line: String| {
            if json {
                log_out(&serde_json::json!({ "event": line }).to_string(), true);
            } else {
                log_out(&line, false);
            }
        };
        // One line per listener, then where the trust is.
        say_line(format!("listening for MQTT over TLS on {}", handle.mqtt));
        if let Some(alpn) = handle.alpn {
            say_line(format!(
                "listening for MQTT over TLS with ALPN x-amzn-mqtt-ca on {alpn}"
            ));
        }
        say_line(format!("trust: {}", endpoint.trust.display()));
        // The CLI's `aws publish`, `aws monitor` and `aws shadow` reach devices through this.
        let ctl = tokio::spawn(crate::aws::broker::control::serve(
            handle.control(),
            control_path.clone(),
        ));
        // Listening: what parsed the arguments and read the workspace runs no more; its code
        // pages are given back, as `hub serve` does (chainsmith_server::memory).
        let _ = chainsmith_server::memory::page_out_startup_code();
        let mut events = handle.events();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(e) if !quiet => say_line(e.line()),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        if !quiet {
                            say_line(format!("({n} events not shown: the log fell behind)"));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        ctl.abort();
        let _ = std::fs::remove_file(&control_path);
        handle.stop().await;
        Ok(())
    })
}

/// Where fleet provisioning's certificates come from: the workspace CA named (checked now, so
/// a missing name or a non-CA stops the start with the reason), else the own issuer, made
/// on first need.
fn set_issuer(ws: &Workspace, registry: &Registry, name: Option<&str>) -> CliResult {
    match name {
        Some(name) => {
            let ca = crate::ops::load_ca(ws, name).map_err(|e| {
                anyhow::anyhow!(
                    "--issuing-ca {}: {}\nhint: name a CA of this workspace that holds its key (chainsmith list), or leave --issuing-ca out to use chainsmith's own AWS-like issuer",
                    crate::text::escape_controls(name),
                    crate::text::escape_controls(&e.to_string())
                )
            })?;
            let ca = std::sync::Mutex::new(Some(ca));
            registry.set_issuer(Box::new(move || {
                ca.lock()
                    .map_err(|_| "the issuing CA is unavailable".to_string())?
                    .take()
                    .ok_or_else(|| "the issuing CA was already taken".to_string())
            }));
        }
        None => {
            let ws = ws.clone();
            registry.set_issuer(Box::new(move || {
                crate::aws::broker::tls::own_issuer(&ws)
                    .ensure_ca(&ws)
                    .map_err(|e| e.to_string())
            }));
        }
    }
    Ok(())
}

/// `aws endpoint`: host:port and the trust PEM's absolute path.
pub fn endpoint(global: &Global, ws: &Workspace) -> CliResult {
    let e = Endpoint::load(ws);
    if global.json {
        print_json(&serde_json::to_value(&e).unwrap_or_default());
    } else {
        say!("{}", crate::text::escape_controls(&e.address()));
        if let Some(p) = e.alpn_port {
            say!(
                "{}:{p} (ALPN x-amzn-mqtt-ca)",
                crate::text::escape_controls(&e.endpoint_address)
            );
        }
        say!(
            "trust: {}",
            crate::text::escape_controls(&e.trust.display().to_string())
        );
    }
    Ok(())
}
