//! AWS IoT Core's side of the connection test: why it closed the connection, and what to do.
//!
//! AWS IoT Core gives no reason: an MQTT 3.1.1 CONNECT it refuses, a publish its policies deny
//! and an older connection whose client id a newer one takes are all just closed ("MQTT" in
//! the developer guide, <https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html>).
//! Against the workspace's running `aws serve` the test asks it ([`AwsWatch`] on its control
//! socket's `watch` stream) and says which of AWS's rules it was; against a real endpoint it
//! lists the likely causes in the order they are met ([`checklist`]), each with its fix.

use super::diagnose::{Diagnosis, Failure, FailureKind};
use super::identity::Identity;
use super::{AwsFix, ConnectRemedy, HubRefusal, HubView, Step};
use futures::future::BoxFuture;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Refusals kept per watch. A fleet's devices each add at most one before the run reports
/// them; a connection test's device one. Past this the oldest goes (a design limit: AWS has
/// no such list).
pub const MAX_WATCHED_REFUSALS: usize = 4096;
/// Telemetry message ids kept per device: the connection test sends at most this many and
/// asks which arrived (a design limit; the test's `--count` is checked by the faces).
pub const MAX_WATCHED_MESSAGES: usize = 100_000;
/// Devices whose telemetry a watch keeps ids of (the connection test watches one; others
/// publishing to the same service meanwhile are not kept past this).
pub const MAX_WATCHED_DEVICES: usize = 64;
/// How long a refusal is waited for after the device saw its connection closed: `aws serve`
/// sends the event just before it closes.
const REFUSAL_WAIT: Duration = Duration::from_secs(2);

#[derive(Default, Debug)]
struct Seen {
    refusals: std::collections::VecDeque<(String, HubRefusal)>,
    published: HashMap<String, HashSet<u32>>,
}

/// What a running `aws serve` said about the devices under test: refusals, policy denials,
/// takeovers and (for the connection test) the telemetry it received.
#[derive(Debug, Default)]
pub struct AwsWatch {
    seen: Mutex<Seen>,
    changed: Notify,
}

impl AwsWatch {
    /// Watch `client_id` (every client id when None) on the running `aws serve` whose control
    /// socket is `control`, with its published messages when `published`. None when no
    /// service answers there. Returns once the service streams (what happens after is seen).
    pub async fn running(
        control: &Path,
        client_id: Option<String>,
        published: bool,
    ) -> Option<Arc<AwsWatch>> {
        // Probe first: a stale socket file of a stopped service does not count.
        tokio::net::UnixStream::connect(control).await.ok()?;
        let watch = Arc::new(AwsWatch::default());
        let w = watch.clone();
        let path: PathBuf = control.to_path_buf();
        let (subscribed, ready) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let on_ready = move || {
                let _ = subscribed.send(());
            };
            let _ = chainsmith_aws::broker::control::watch(
                &path,
                client_id,
                published,
                on_ready,
                |v| {
                    w.ingest(&v);
                    true
                },
            )
            .await;
        });
        tokio::time::timeout(Duration::from_secs(5), ready)
            .await
            .ok()?
            .ok()?;
        Some(watch)
    }

    fn ingest(&self, v: &serde_json::Value) {
        let (Some(id), Some(kind)) = (v["client_id"].as_str(), v["kind"].as_str()) else {
            return;
        };
        let Ok(mut s) = self.seen.lock() else {
            return;
        };
        if kind == "published" {
            let mid = v["payload"]
                .as_str()
                .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
                .and_then(|p| p.get("messageId")?.as_u64())
                .and_then(|n| u32::try_from(n).ok());
            if s.published.len() >= MAX_WATCHED_DEVICES && !s.published.contains_key(id) {
                return;
            }
            let ids = s.published.entry(id.to_string()).or_default();
            if let Some(mid) = mid
                && ids.len() < MAX_WATCHED_MESSAGES
            {
                ids.insert(mid);
            }
        } else {
            if s.refusals.len() >= MAX_WATCHED_REFUSALS {
                s.refusals.pop_front();
            }
            s.refusals.push_back((
                id.to_string(),
                HubRefusal {
                    kind: kind.to_string(),
                    reason: v["reason"].as_str().unwrap_or_default().to_string(),
                },
            ));
        }
        drop(s);
        self.changed.notify_waiters();
    }

    /// The refusals seen for `client_id` so far (the first one is why it failed).
    fn first_refusal(&self, client_id: &str) -> Option<HubRefusal> {
        let s = self.seen.lock().ok()?;
        s.refusals
            .iter()
            .find(|(id, _)| id == client_id)
            .map(|(_, r)| r.clone())
    }
}

impl HubView for AwsWatch {
    fn refusal<'a>(&'a self, device_id: &'a str) -> BoxFuture<'a, Option<HubRefusal>> {
        let deadline = tokio::time::Instant::now() + REFUSAL_WAIT;
        Box::pin(super::local::wait_for(&self.changed, deadline, move || {
            self.first_refusal(device_id)
        }))
    }

    fn missing<'a>(
        &'a self,
        device_id: &'a str,
        ids: &'a [u32],
        wait: Duration,
    ) -> BoxFuture<'a, Vec<u32>> {
        Box::pin(super::local::wait_recorded(
            &self.changed,
            ids,
            wait,
            move || {
                self.seen
                    .lock()
                    .ok()
                    .map(|s| s.published.get(device_id).cloned())
            },
        ))
    }
}

/// Whether AWS IoT Core's silence could hide a refusal at this failure: the connection closed
/// (at CONNECT, or during the session on a denied publish or a takeover) or a subscription
/// refused.
pub(crate) fn asks_why(f: &Failure) -> bool {
    matches!(
        f.kind,
        FailureKind::Closed | FailureKind::SubscribeRefused(_) | FailureKind::Io(_)
    ) && f.step >= Step::MqttConnect
}

/// The certificate id AWS gives the device's certificate: lowercase hex SHA-256 of its DER.
fn certificate_id(der: &[u8]) -> String {
    crate::pki::thumbprints(der).1.to_ascii_lowercase()
}

/// The workspace name to give `chainsmith aws …` for the device (its file's CN otherwise).
fn device_name(id: &Identity) -> String {
    id.workspace_name()
        .map_or_else(|| id.leaf().name.clone(), str::to_string)
}

/// The CA that issued the device's certificate: its name and, when known, its certificate id.
fn issuer(id: &Identity) -> (String, Option<String>) {
    let cert = id.sent.get(1).or_else(|| id.above.first());
    (id.leaf_issuer_name(), cert.map(|c| certificate_id(&c.der)))
}

/// Cause and fix for a refusal the running `aws serve` named (`r.kind` as
/// `chainsmith_aws::rules::Refused::kind` and the `watch` stream name them).
pub(crate) fn local_refusal(r: &HubRefusal, id: &Identity) -> Diagnosis {
    let dev = device_name(id);
    let client = &id.device_id;
    let (ca, _) = issuer(id);
    let cert_id = certificate_id(&id.leaf().der);
    let device = || dev.clone();
    let (cause, fix, remedy) = match r.kind.as_str() {
        "certificate-not-registered" => (
            format!("the local AWS IoT Core has no certificate {cert_id} (\"{dev}\") registered"),
            "register the device's certificate and make it ACTIVE".to_string(),
            AwsFix::RegisterCertificate { device: device() },
        ),
        "certificate-pending-activation" => (
            format!("the certificate of \"{dev}\" is PENDING_ACTIVATION (registered just in time, not activated yet)"),
            "activate it, as a JITR Lambda would".into(),
            AwsFix::ActivateCertificate { device: device() },
        ),
        "certificate-revoked" => (
            format!("the certificate of \"{dev}\" is REVOKED"),
            "issue the device a new certificate and register that one (a revoked certificate is not used again)".into(),
            AwsFix::ReplaceCertificate { device: device() },
        ),
        k if k.starts_with("certificate-") => (
            format!("the certificate of \"{dev}\" is {}, not ACTIVE", k.trim_start_matches("certificate-").to_ascii_uppercase().replace('-', "_")),
            "set it ACTIVE".into(),
            AwsFix::ActivateCertificate { device: device() },
        ),
        "outside-validity" => (
            format!("the certificate of \"{dev}\" is expired or not yet valid: {}", r.reason),
            "renew the device's certificate and register the new one".into(),
            AwsFix::ReplaceCertificate { device: device() },
        ),
        "ca-not-registered" => (
            format!("the CA \"{ca}\" that issued \"{dev}\" is not registered with the local AWS IoT Core"),
            "register the CA with a verification certificate for the registration code".into(),
            AwsFix::RegisterCa { ca: ca.clone() },
        ),
        "ca-inactive" => (
            format!("the CA \"{ca}\" that issued \"{dev}\" is INACTIVE"),
            "set the CA ACTIVE".into(),
            AwsFix::ActivateCa { ca: ca.clone() },
        ),
        "connect-not-allowed" => (
            format!("no policy attached to the certificate of \"{dev}\" allows iot:Connect for client id \"{client}\""),
            format!("attach a policy that allows iot:Connect on arn:aws:iot:REGION:ACCOUNT:client/{client} (or client/${{iot:Connection.Thing.ThingName}} with a thing of that name attached)"),
            AwsFix::AttachPolicy { device: device() },
        ),
        "publish-denied" | "subscribe-denied" | "receive-denied" => {
            let action = match r.kind.as_str() {
                "publish-denied" => "iot:Publish on topic",
                "subscribe-denied" => "iot:Subscribe on topicfilter",
                _ => "iot:Receive on topic",
            };
            let what = super::super::dialect::aws_telemetry_topic(client);
            (
                format!("the policies of \"{dev}\" deny {action} {what} (AWS closes the connection of a denied publish)"),
                format!("allow iot:Publish and iot:Receive on arn:aws:iot:REGION:ACCOUNT:topic/{what} and iot:Subscribe on arn:aws:iot:REGION:ACCOUNT:topicfilter/{what} in a policy attached to the certificate, with no Deny matching them"),
                AwsFix::AttachPolicy { device: device() },
            )
        }
        "taken-over" => (
            format!("another connection with client id \"{client}\" took over: AWS IoT Core keeps one connection per client id and closes the older"),
            "give every connection its own client id, or stop the other device using this one".into(),
            AwsFix::OwnClientId,
        ),
        "just-provisioned" => (
            format!("the certificate of \"{dev}\" was just provisioned (JITP) by this connection; AWS closes it and the device connects again"),
            "run the test again".into(),
            AwsFix::ConnectAgain { device: device() },
        ),
        _ => (
            format!("the local AWS IoT Core refused \"{dev}\": {}", r.reason),
            "fix what it names".into(),
            AwsFix::ServiceLog,
        ),
    };
    let code = format!("aws-{}", r.kind);
    let mut d = Diagnosis::new(&code, cause, fix, r.reason.clone());
    d.remedy = Some(ConnectRemedy::Aws { fix: remedy });
    d
}

/// The likely causes when a real AWS IoT Core closes the connection, most likely first, each
/// with the `aws iot` command that fixes it ("Troubleshooting AWS IoT" in the developer
/// guide, <https://docs.aws.amazon.com/iot/latest/developerguide/iot_troubleshooting.html>).
pub(crate) fn checklist(id: &Identity, step: Step) -> String {
    let client = &id.device_id;
    let cert_id = certificate_id(&id.leaf().der);
    let (ca, ca_id) = issuer(id);
    let ca_id = ca_id.unwrap_or_else(|| "CA_CERTIFICATE_ID".into());
    let topic = super::super::dialect::aws_telemetry_topic(client);
    let connect = [
        format!(
            "the certificate {cert_id} is not registered in this account and region: `aws iot register-certificate --certificate-pem file://cert.pem --ca-certificate-pem file://ca.pem --set-as-active` (or `aws iot register-certificate-without-ca --certificate-pem file://cert.pem --status ACTIVE`)"
        ),
        format!(
            "the certificate is INACTIVE, REVOKED or PENDING_ACTIVATION: `aws iot describe-certificate --certificate-id {cert_id}`, then `aws iot update-certificate --certificate-id {cert_id} --new-status ACTIVE` (a revoked one is replaced by a new certificate)"
        ),
        format!(
            "the CA \"{ca}\" is not registered or INACTIVE: `aws iot register-ca-certificate --ca-certificate file://ca.pem --verification-cert file://verification.pem --set-as-active` (the verification certificate's CN is `aws iot get-registration-code`), or `aws iot update-ca-certificate --certificate-id {ca_id} --new-status ACTIVE`"
        ),
        format!(
            "no policy attached to the certificate allows iot:Connect for client id \"{client}\": `aws iot attach-policy --policy-name POLICY --target arn:aws:iot:REGION:ACCOUNT:cert/{cert_id}` with a policy allowing iot:Connect on arn:aws:iot:REGION:ACCOUNT:client/{client}"
        ),
    ];
    let session = [
        format!(
            "a policy denies publishing or subscribing to {topic}: allow iot:Publish and iot:Receive on arn:aws:iot:REGION:ACCOUNT:topic/{topic} and iot:Subscribe on topicfilter/{topic} (`aws iot create-policy-version --policy-name POLICY --policy-document file://policy.json --set-as-default`)"
        ),
        format!(
            "another connection with client id \"{client}\" took over (AWS keeps one per client id): give each connection its own client id"
        ),
    ];
    let list: Vec<&String> = if step <= Step::MqttConnect {
        connect.iter().collect()
    } else {
        session.iter().collect()
    };
    let numbered: Vec<String> = list
        .iter()
        .enumerate()
        .map(|(i, c)| format!("({}) {c}", i + 1))
        .collect();
    format!(
        "AWS IoT Core gives no reason; the likely causes, in order: {}",
        numbered.join("; ")
    )
}

/// AWS IoT Core closes without a reason: the running local service's (asked through `watch`)
/// or, from a real endpoint, the likely causes. None: not AWS, or a failure the generic
/// diagnosis explains (TLS, DNS, timeouts). The connection test and the fleet alike.
pub(crate) async fn explain(
    watch: Option<&dyn HubView>,
    f: &Failure,
    id: &Identity,
    endpoint: &super::Endpoint,
) -> Option<Diagnosis> {
    let peer = endpoint.peer;
    if !peer.is_aws() || !asks_why(f) {
        return None;
    }
    let refusal = match watch {
        Some(w) => w.refusal(&id.device_id).await,
        None => None,
    };
    diagnose(
        f,
        refusal.as_ref(),
        id,
        &endpoint.display(),
        peer == super::PeerKind::AwsLocal,
    )
}

/// AWS's diagnosis of a failure the generic one cannot explain, when AWS is the peer: the
/// running local service's reason, or the list of likely causes from a real endpoint.
fn diagnose(
    f: &Failure,
    refusal: Option<&HubRefusal>,
    id: &Identity,
    at: &str,
    local: bool,
) -> Option<Diagnosis> {
    if !asks_why(f) {
        return None;
    }
    if let Some(r) = refusal {
        return Some(local_refusal(r, id));
    }
    let when = if f.step <= Step::MqttConnect {
        "before CONNACK"
    } else {
        "during the session"
    };
    let cause = match &f.kind {
        FailureKind::SubscribeRefused(t) => format!("{at} refused the subscription to \"{t}\""),
        _ => format!("{at} closed the connection {when} without giving a reason"),
    };
    let (fix, remedy) = if local {
        (
            "the running local AWS IoT Core did not say why: its log names the rule".into(),
            Some(ConnectRemedy::Aws {
                fix: AwsFix::ServiceLog,
            }),
        )
    } else {
        (checklist(id, f.step), None)
    };
    let mut d = Diagnosis::new("aws-closed", cause, fix, String::new());
    d.remedy = remedy;
    Some(d)
}
