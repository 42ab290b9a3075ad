//! Watching the local hub during a test: which messages it recorded, and why it refused a
//! device. Fed by the hub's event channel when the hub runs in-process, or, for a running
//! `hub serve`, by its control socket: the monitor stream (telemetry) and the `refusals` op
//! (the hub's own refusal sentence).

use super::{HubRefusal, HubView};
use crate::hub::{HubEvent, HubHandle, HubStatus};
use futures::future::BoxFuture;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
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
pub(crate) struct HubWatch {
    seen: Mutex<Seen>,
    changed: Notify,
    /// Whether refusals arrive as events (in-process).
    sees_refusals: bool,
    /// A running `hub serve` that answers `{"op":"refusals"}`: its control socket and the
    /// last refusal seq before this test, so older refusals do not count.
    ask: Option<(PathBuf, u64)>,
}

impl HubWatch {
    /// Watch an in-process hub through its event channel.
    pub(crate) fn in_process(hub: &HubHandle) -> Arc<HubWatch> {
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

    /// Watch a running `hub serve` through its control socket, with its status (address,
    /// port, echo) when it answers `{"op":"status"}`. None: no hub answers on `control`.
    /// A hub too old for `status` gives `Some((watch, None))`: telemetry only, no refusals.
    pub async fn running(control: &Path) -> Option<(Arc<HubWatch>, Option<HubStatus>)> {
        // Probe first: a stale socket file of a stopped hub does not count.
        tokio::net::UnixStream::connect(control).await.ok()?;
        let status = match crate::hub::control::status(control).await {
            Ok(s) => Some(s),
            Err(crate::hub::control::ControlError::Hub(_)) => None,
            Err(_) => return None,
        };
        let watch = Arc::new(HubWatch {
            ask: status
                .as_ref()
                .map(|s| (control.to_path_buf(), s.last_refusal)),
            ..Default::default()
        });
        let w = watch.clone();
        let path = control.to_path_buf();
        let (subscribed, ready) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let on_ready = move || {
                let _ = subscribed.send(());
            };
            let _ = crate::hub::control::monitor(&path, None, on_ready, |v| {
                if let Ok(e) = serde_json::from_value::<TelemetryLine>(v) {
                    w.record(&e.device, &e.payload);
                }
                true
            })
            .await;
        });
        // The device publishes only once the hub streams its telemetry to us: a message sent
        // before that would be counted as lost. A hub older than `status` never says so; one
        // that does not say so in time (it broke) is not waited for longer.
        if status.is_some() {
            let _ = tokio::time::timeout(Duration::from_secs(5), ready).await;
        }
        Some((watch, status))
    }

    /// Ask the running hub why it refused `device_id` since the test began (polls briefly:
    /// the hub records the reason before it sends CONNACK 5, so the first ask normally hits).
    async fn ask_refusal(control: &Path, since: u64, device_id: &str) -> Option<HubRefusal> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            if let Ok(list) = crate::hub::control::refusals(control, None, since).await {
                let hit = list
                    .iter()
                    .rev()
                    .find(|r| r.device.as_deref().is_none_or(|d| d == device_id));
                if let Some(r) = hit {
                    return Some(HubRefusal {
                        kind: r.kind.clone(),
                        reason: r.reason.clone(),
                    });
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

/// What `found` finds, waiting until `deadline` for it, woken by `changed`.
pub(crate) async fn wait_for<T>(
    changed: &Notify,
    deadline: tokio::time::Instant,
    found: impl Fn() -> Option<T>,
) -> Option<T> {
    loop {
        let notified = changed.notified();
        if let Some(t) = found() {
            return Some(t);
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return None;
        }
    }
}

/// Which of `ids` are not among the message ids `recorded` reads (None: unreadable, all
/// missing), waiting up to `wait` for them, woken by `changed`: the local hub's and the local
/// AWS IoT Core's watches alike.
pub(crate) async fn wait_recorded(
    changed: &Notify,
    ids: &[u32],
    wait: Duration,
    recorded: impl Fn() -> Option<Option<HashSet<u32>>>,
) -> Vec<u32> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let notified = changed.notified();
        let missing: Vec<u32> = match recorded() {
            Some(got) => ids
                .iter()
                .copied()
                .filter(|i| !got.as_ref().is_some_and(|g| g.contains(i)))
                .collect(),
            None => ids.to_vec(),
        };
        if missing.is_empty() || tokio::time::timeout_at(deadline, notified).await.is_err() {
            return missing;
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
            if let Some((control, since)) = &self.ask {
                return Self::ask_refusal(control, *since, device_id).await;
            }
            if !self.sees_refusals {
                return None;
            }
            // The hub reports the refusal just after it writes the CONNACK: wait for it briefly.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            wait_for(&self.changed, deadline, || {
                let s = self.seen.lock().ok()?;
                s.refusals
                    .iter()
                    .rev()
                    .find(|(d, _)| d.as_deref().is_none_or(|d| d == device_id))
                    .map(|(_, r)| r.clone())
            })
            .await
        })
    }

    fn missing<'a>(
        &'a self,
        device_id: &'a str,
        ids: &'a [u32],
        wait: Duration,
    ) -> BoxFuture<'a, Vec<u32>> {
        Box::pin(wait_recorded(&self.changed, ids, wait, move || {
            self.seen
                .lock()
                .ok()
                .map(|s| s.telemetry.get(device_id).cloned())
        }))
    }
}

/// Where the local hub of a connection test comes from.
pub enum HubSource<'a> {
    /// A running `hub serve` whose control socket answers (dialled on the address, port and
    /// echo setting its `status` reports); else the same hub started in-process, with C2D
    /// echo, for the length of the test (the CLI's `connect --to local`).
    RunningOrStart,
    /// A hub already running in this process, echoing telemetry as C2D (the TUI's Hub tab).
    InProcess(&'a HubHandle),
}

/// A connection test set up against the local hub, and the hub started for it (stop it when
/// the test is over).
pub struct Prepared {
    /// The test, ready for [`super::run`].
    pub test: super::ConnectionTest,
    /// The hub started in-process for this test, if one was; shut it down afterwards.
    pub started: Option<HubHandle>,
}

/// Why a connection test against the local hub could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// Reading the hub's registry or TLS files failed.
    #[error(transparent)]
    Registry(#[from] crate::hub::RegistryError),
    /// No hub was running and starting one in-process failed (e.g. its port is taken).
    #[error("starting the local hub in-process: {0}")]
    Start(crate::hub::HubError),
    /// The hub's server CA, which the device must trust, could not be read.
    #[error("reading the local hub's trust anchor {path}: {detail}")]
    Trust {
        /// The CA file.
        path: PathBuf,
        /// What went wrong reading it.
        detail: String,
    },
    /// The running hub was started without the transport the test asked for.
    #[error("the running local hub does not listen for {0}")]
    TransportOff(&'static str),
    /// The target as written is not a hub or broker address (the parser's sentence).
    #[error(transparent)]
    Target(crate::mqtt::EndpointError),
    /// The local hub was asked for without a workspace to find it in.
    #[error(
        "the local hub lives in a workspace, and none is open; open one, or name another target"
    )]
    NoWorkspace,
    /// `--to aws-local` with no `aws serve` answering on the workspace's control socket.
    #[error(
        "no local AWS IoT Core is running for this workspace (nothing answers on {0}); start it first"
    )]
    AwsNotRunning(PathBuf),
    /// AWS IoT Core was asked for over a transport the test does not speak to it.
    #[error(
        "AWS IoT Core is tested over MQTT on 8883; {0} is not one of its device transports here"
    )]
    AwsTransport(&'static str),
}

impl PrepareError {
    /// A short machine-friendly name for `--json` errors.
    pub fn kind(&self) -> &'static str {
        match self {
            PrepareError::Registry(e) => e.kind(),
            PrepareError::Start(e) => e.kind(),
            PrepareError::Trust { .. } => "hub-trust",
            PrepareError::TransportOff(_) => "transport-off",
            PrepareError::Target(_) => "target",
            PrepareError::NoWorkspace => "no-workspace",
            PrepareError::AwsNotRunning(_) => "aws-not-running",
            PrepareError::AwsTransport(_) => "transport",
        }
    }

    /// What would fix it, for a face to turn into its own hint.
    pub fn remedy(&self) -> Option<crate::error::Remedy> {
        match self {
            PrepareError::Registry(e) => e.remedy(),
            PrepareError::Start(e) => e.remedy(),
            PrepareError::Trust { .. }
            | PrepareError::Target(_)
            | PrepareError::NoWorkspace
            | PrepareError::AwsNotRunning(_)
            | PrepareError::AwsTransport(_) => None,
            PrepareError::TransportOff(_) => Some(crate::error::Remedy::HubTransport),
        }
    }
}

impl crate::error::Classified for PrepareError {
    fn kind(&self) -> &'static str {
        PrepareError::kind(self)
    }
    fn remedy(&self) -> Option<crate::error::Remedy> {
        PrepareError::remedy(self)
    }
}

/// Set up a connection test against the workspace's local hub: [`crate::target::resolve`]
/// with its defaults (the hub's trust anchor only, C2D echo when the hub echoes, a watch on
/// the hub's record and refusals) and the pre-flight findings from its registry, judged by
/// the workspace's clock.
pub async fn prepare(
    ws: &crate::store::Workspace,
    identity: super::Identity,
    flavor: super::Flavor,
    source: HubSource<'_>,
    transport: super::Transport,
) -> Result<Prepared, PrepareError> {
    use crate::target::{Destination, HubWatching, TargetSpec};
    let mut target = crate::target::resolve(
        Some(ws),
        TargetSpec {
            to: Destination::Local(source),
            transport,
            flavor: Some(flavor),
            anchors: vec![],
            watching: HubWatching::RecordsAndRefusals,
        },
    )
    .await?;
    let test = target.connection_test(identity)?;
    Ok(Prepared {
        test,
        started: target.started.take(),
    })
}

/// Pre-flight findings from the local hub's registry: the device is registered and enabled,
/// its thumbprint matches (self-signed), and its chain reaches a registered, verified CA, as
/// the hub judges it at `now` (the hub's clock).
pub fn hub_preflight(
    identity: &super::Identity,
    registry: &crate::hub::Registry,
    now: ::time::OffsetDateTime,
) -> Vec<crate::pki::lint::Finding> {
    use crate::hub::Auth;
    use crate::pki::lint::{Finding, Severity};
    let dev = &identity.device_id;
    let mut out = Vec::new();
    let Some(d) = registry.devices.iter().find(|d| &d.id == dev) else {
        out.push(Finding {
            severity: Severity::Error,
            code: "hub-device-unregistered",
            message: format!("device \"{dev}\" is not registered with the local hub; register it"),
        });
        return out;
    };
    if !d.enabled {
        out.push(Finding {
            severity: Severity::Error,
            code: "hub-device-disabled",
            message: format!("device \"{dev}\" is disabled in the local hub; enable it"),
        });
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
                    message: format!("the local hub knows device \"{dev}\" by thumbprints that are not this certificate's ({sha256}); {}", match identity.workspace_name() {
                        Some(name) => format!("take its slots from the workspace device \"{name}\""),
                        None => format!("register thumbprint {sha1} in its secondary slot"),
                    }),
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
            let walk = identity.against_trusted(&trusted, "the local hub");
            // The walk explains a chain that does not reach a verified CA; the hub's own
            // verifier finds everything else it would refuse (a device used as an issuer, a
            // CA without keyCertSign, pathlen, EKU, weak keys or digests).
            if !crate::pki::lint::has_errors(&walk) {
                let sent: Vec<Vec<u8>> = identity.sent.iter().map(|c| c.der.clone()).collect();
                let trust = crate::hub::auth::HubTrust::new(registry);
                if let Err(r) = trust.verify(dev, &sent, now) {
                    out.push(Finding {
                        severity: Severity::Error,
                        code: "hub-chain-refused",
                        message: format!("the local hub will refuse the chain: {r}"),
                    });
                }
            }
            out.extend(walk);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    /// A control socket at `path` that answers every request the way a hub from before
    /// `status` does (`bad request: unknown variant`), holding a monitor stream open.
    pub(crate) fn old_hub_control(path: &Path) {
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (r, mut w) = s.into_split();
                    let mut lines = BufReader::new(r).lines();
                    if let Ok(Some(line)) = lines.next_line().await {
                        if line.contains("monitor") {
                            // Hold the stream open, as a hub's monitor does.
                            let _ = lines.next_line().await;
                            return;
                        }
                        let _ = w
                            .write_all(b"{\"error\":\"bad request: unknown variant `status`\"}\n")
                            .await;
                    }
                });
            }
        });
    }

    /// A control socket that answers as a hub from before `status` does, and one where
    /// nothing listens.
    #[tokio::test]
    async fn older_or_absent_hub_gives_no_status_and_no_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        assert!(HubWatch::running(&path).await.is_none());
        old_hub_control(&path);
        let (watch, status) = HubWatch::running(&path).await.expect("a hub answers");
        assert!(status.is_none());
        assert!(watch.ask.is_none());
        assert_eq!(watch.refusal("d1").await, None);
    }
}
