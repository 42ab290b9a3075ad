//! `chainsmith aws publish`, `aws monitor` and `aws shadow get|update`: faces over the
//! control channel of a running `aws serve` (`chainsmith_aws::broker::control`). A shadow is
//! read and updated through the running service so connected devices get their delta; with
//! no service running, directly on the files under WS/aws/shadows.

use anyhow::anyhow;
use clap::{Args, Subcommand};

use super::super::hub::runtime;
use super::super::{CliResult, Global, print_json, print_json_line};
use crate::aws::broker::control::{self, ControlError, Request};
use crate::aws::broker::shadow::{ShadowError, ShadowId, Shadows};
use crate::store::Workspace;
use crate::text::{escape_controls, escape_json};

/// `aws publish`'s arguments.
#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The topic name.
    pub topic: String,
    /// The message (text).
    pub message: String,
    /// QoS 0 or 1 (AWS IoT Core has no QoS 2).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
}

/// `aws monitor`'s arguments.
#[derive(Args, Debug)]
pub struct MonitorArgs {
    /// Only topics matching this MQTT filter (`+` and `#` wildcards).
    #[arg(long)]
    pub topic: Option<String>,
}

/// `aws shadow …`.
#[derive(Subcommand, Debug)]
pub enum ShadowCommand {
    /// A thing's shadow document: state (desired, reported, delta), metadata, version.
    Get {
        /// The thing's name.
        thing: String,
        /// A named shadow (default: the classic shadow).
        #[arg(long)]
        name: Option<String>,
    },
    /// Update a shadow's desired state; a connected device gets its delta.
    Update {
        /// The thing's name.
        thing: String,
        /// A named shadow (default: the classic shadow).
        #[arg(long)]
        name: Option<String>,
        /// The desired state, a JSON object (`null` for a key deletes it).
        #[arg(long)]
        desired: String,
    },
}

fn not_running(e: &ControlError) -> bool {
    matches!(e, ControlError::NotRunning(_))
}

fn hinted_control(e: ControlError) -> anyhow::Error {
    let hint = if not_running(&e) {
        "\nhint: start it with `chainsmith aws serve` (in another terminal)"
    } else {
        ""
    };
    anyhow!("{}{hint}", escape_controls(&e.to_string()))
}

/// `aws publish`.
pub fn publish(global: &Global, ws: &Workspace, a: PublishArgs) -> CliResult {
    let req = Request::Publish {
        topic: a.topic.clone(),
        message: a.message,
        qos: a.qos,
    };
    let v = runtime()?
        .block_on(control::call(&control::socket_path(ws), &req))
        .map_err(hinted_control)?;
    let queued = v["queued"].as_u64().unwrap_or(0);
    if global.json {
        print_json(&serde_json::json!({ "topic": a.topic, "queued": queued }));
    } else {
        say!(
            "published on {} (queued for {queued} connection{})",
            escape_controls(&a.topic),
            if queued == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// `aws monitor`: one line per message a device publishes, escaped.
pub fn monitor(global: &Global, ws: &Workspace, a: MonitorArgs) -> CliResult {
    let json = global.json;
    // On stderr once the service has subscribed: a script waiting for it sees every message.
    let ready = || complain!("Monitoring what devices publish, use ctrl-c to stop...");
    runtime()?
        .block_on(control::monitor(
            &control::socket_path(ws),
            a.topic,
            ready,
            |v| {
                if let Some(n) = v.get("lagged") {
                    complain!("({n} messages not shown: the monitor fell behind)");
                } else if json {
                    print_json_line(&v);
                } else {
                    let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
                    say!(
                        "{} {}: {}",
                        escape_controls(&text("client_id")),
                        escape_controls(&text("topic")),
                        escape_controls(&text("payload"))
                    );
                }
                true
            },
        ))
        .map_err(hinted_control)?;
    Ok(())
}

fn shadow_hint(e: &ShadowError) -> &'static str {
    match e {
        ShadowError::NotFound(_) => {
            "\nhint: a shadow exists once a device or `chainsmith aws shadow update` writes it"
        }
        ShadowError::NotAnObject(_) | ShadowError::InvalidJson => {
            "\nhint: give --desired a JSON object, e.g. --desired '{\"color\": \"green\"}'"
        }
        ShadowError::InvalidThingName(_) | ShadowError::InvalidShadowName(_) => {
            "\nhint: AWS allows a-z A-Z 0-9 : _ - in thing and shadow names"
        }
        _ => "",
    }
}

fn shadow_failed(e: ShadowError) -> anyhow::Error {
    anyhow!(
        "{} (AWS answers {}){}",
        escape_controls(&e.detail()),
        e.code(),
        shadow_hint(&e)
    )
}

/// `aws shadow get|update`.
pub fn shadow(global: &Global, ws: &Workspace, c: ShadowCommand) -> CliResult {
    let path = control::socket_path(ws);
    let rt = runtime()?;
    let doc = match c {
        ShadowCommand::Get { thing, name } => {
            let id = ShadowId::new(&thing, name.as_deref()).map_err(shadow_failed)?;
            let req = Request::ShadowGet { thing, name };
            match rt.block_on(control::call(&path, &req)) {
                Err(e) if not_running(&e) => Shadows::new(ws)
                    .get(&id)
                    .map(|(doc, note)| {
                        if let Some(n) = note {
                            complain!("warning: {}", escape_controls(&n.to_string()));
                        }
                        doc
                    })
                    .map_err(shadow_failed)?,
                r => r.map_err(hinted_control)?,
            }
        }
        ShadowCommand::Update {
            thing,
            name,
            desired,
        } => {
            let id = ShadowId::new(&thing, name.as_deref()).map_err(shadow_failed)?;
            let desired: serde_json::Value = serde_json::from_str(&desired).map_err(|e| {
                anyhow!(
                    "--desired is not JSON ({})\nhint: give a JSON object, e.g. --desired '{{\"color\": \"green\"}}'",
                    escape_controls(&e.to_string())
                )
            })?;
            let req = Request::ShadowUpdate {
                thing,
                name,
                desired: desired.clone(),
            };
            match rt.block_on(control::call(&path, &req)) {
                Err(e) if not_running(&e) => {
                    complain!(
                        "note: no aws serve is running: the shadow file is updated; devices get the delta when they next get their shadow"
                    );
                    control::shadow_update_offline(ws, &id, desired).map_err(shadow_failed)?
                }
                r => r.map_err(hinted_control)?,
            }
        }
    };
    if global.json {
        print_json(&doc);
    } else {
        let pretty = serde_json::to_string_pretty(&doc).unwrap_or_default();
        say!("{}", escape_json(&pretty));
    }
    Ok(())
}
