//! Watching the local hub during a test: which messages it recorded, and why it refused a
//! device. Fed by the hub's event channel when the hub runs in-process, or by the control
//! socket's monitor stream of a running `hub serve` (telemetry only).

use super::{HubRefusal, HubView};
use crate::hub::{HubEvent, HubHandle};
use futures::future::BoxFuture;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Default, Debug)]
struct Seen {
    refusals: Vec<(Option<String>, HubRefusal)>,
    /// device -> message ids the hub recorded as telemetry.
    telemetry: HashMap<String, HashSet<u32>>,
}

/// What the local hub reported while the test ran.
#[derive(Debug, Default)]
pub struct HubWatch {
    seen: Mutex<Seen>,
    changed: Notify,
    /// Whether refusals are visible (in-process) or not (a running `hub serve`).
    sees_refusals: bool,
}

impl HubWatch {
    /// Watch an in-process hub through its event channel.
    pub fn in_process(hub: &HubHandle) -> Arc<HubWatch> {
        let watch = Arc::new(HubWatch {
            sees_refusals: true,
            ..Default::default()
        });
        let mut rx = hub.events();
        let w = watch.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) => w.ingest(&e),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
        });
        watch
    }

    /// Watch a running `hub serve` through its control socket (telemetry only).
    pub async fn running(control: &Path) -> Option<Arc<HubWatch>> {
        // Probe first: a stale socket file of a stopped hub does not count.
        tokio::net::UnixStream::connect(control).await.ok()?;
        let watch = Arc::new(HubWatch::default());
        let w = watch.clone();
        let path = control.to_path_buf();
        tokio::spawn(async move {
            let req = crate::hub::control::Request::Monitor { device: None };
            let _ = crate::hub::control::request(&path, &req, |v| {
                if let Ok(e) = serde_json::from_value::<TelemetryLine>(v) {
                    w.record(&e.device, &e.payload);
                }
                true
            })
            .await;
        });
        // Give the monitor a moment to subscribe before the device publishes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        Some(watch)
    }

    fn record(&self, device: &str, payload: &str) {
        let Some(mid) = serde_json::from_str::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v.get("messageId")?.as_u64())
            .and_then(|n| u32::try_from(n).ok())
        else {
            return;
        };
        if let Ok(mut s) = self.seen.lock() {
            s.telemetry
                .entry(device.to_string())
                .or_default()
                .insert(mid);
        }
        self.changed.notify_waiters();
    }

    fn ingest(&self, e: &HubEvent) {
        match e {
            HubEvent::Telemetry {
                device, payload, ..
            } => self.record(device, payload),
            HubEvent::Refused {
                device,
                kind,
                reason,
                ..
            } => {
                if let Ok(mut s) = self.seen.lock() {
                    s.refusals.push((
                        device.clone(),
                        HubRefusal {
                            kind: kind.clone(),
                            reason: reason.clone(),
                        },
                    ));
                }
                self.changed.notify_waiters();
            }
            _ => {}
        }
    }
}

#[derive(serde::Deserialize)]
struct TelemetryLine {
    device: String,
    payload: String,
}

impl HubView for HubWatch {
    fn refusal<'a>(&'a self, device_id: &'a str) -> BoxFuture<'a, Option<HubRefusal>> {
        Box::pin(async move {
            if !self.sees_refusals {
                return None;
            }
            // The hub reports the refusal just after it writes the CONNACK: wait for it briefly.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            loop {
                let notified = self.changed.notified();
                if let Ok(s) = self.seen.lock() {
                    let hit = s
                        .refusals
                        .iter()
                        .rev()
                        .find(|(d, _)| d.as_deref().is_none_or(|d| d == device_id));
                    if let Some((_, r)) = hit {
                        return Some(r.clone());
                    }
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return None;
                }
            }
        })
    }

    fn missing<'a>(
        &'a self,
        device_id: &'a str,
        ids: &'a [u32],
        wait: Duration,
    ) -> BoxFuture<'a, Vec<u32>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let notified = self.changed.notified();
                let missing: Vec<u32> = match self.seen.lock() {
                    Ok(s) => {
                        let got = s.telemetry.get(device_id);
                        ids.iter()
                            .copied()
                            .filter(|i| !got.is_some_and(|g| g.contains(i)))
                            .collect()
                    }
                    Err(_) => ids.to_vec(),
                };
                if missing.is_empty() || tokio::time::timeout_at(deadline, notified).await.is_err()
                {
                    return missing;
                }
            }
        })
    }
}

/// Pre-flight findings from the local hub's registry: the device is registered and enabled,
/// its thumbprint matches (self-signed), and its chain reaches a registered, verified CA.
pub fn hub_preflight(
    identity: &super::Identity,
    registry: &crate::hub::Registry,
) -> Vec<crate::pki::lint::Finding> {
    use crate::hub::Auth;
    use crate::pki::lint::{Finding, Severity};
    let dev = &identity.device_id;
    let mut out = Vec::new();
    let Some(d) = registry.devices.iter().find(|d| &d.id == dev) else {
        out.push(Finding {
            severity: Severity::Error,
            code: "hub-device-unregistered",
            message: format!("device \"{dev}\" is not registered with the local hub; `chainsmith hub device add {dev} --auth ca`"),
        });
        return out;
    };
    if !d.enabled {
        out.push(Finding { severity: Severity::Error, code: "hub-device-disabled", message: format!("device \"{dev}\" is disabled in the local hub; `chainsmith hub device enable {dev}`") });
    }
    match d.auth {
        Auth::SelfSigned => {
            let (sha1, sha256) = crate::pki::thumbprints(&identity.leaf().der);
            let known = [d.primary.as_deref(), d.secondary.as_deref()];
            if !known
                .iter()
                .flatten()
                .any(|t| t.eq_ignore_ascii_case(&sha1) || t.eq_ignore_ascii_case(&sha256))
            {
                out.push(Finding {
                    severity: Severity::Error,
                    code: "hub-thumbprint",
                    message: format!("the local hub knows device \"{dev}\" by thumbprints that are not this certificate's ({sha256}); `chainsmith hub device add {dev} --auth self-signed --from {dev}` after removing it"),
                });
            }
        }
        Auth::Ca => {
            let trusted: Vec<super::identity::TrustedCa> = registry
                .cas
                .iter()
                .filter_map(|c| {
                    let der = pem::parse(&c.cert_pem).ok()?.into_contents();
                    Some(super::identity::TrustedCa {
                        name: c.name.clone(),
                        der,
                        verified: c.verified,
                    })
                })
                .collect();
            out.extend(identity.against_trusted(&trusted, "the local hub"));
        }
    }
    out
}
