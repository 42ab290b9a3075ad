//! What an enrollment may add to a plain assignment: a custom allocation webhook (DPS POSTs an
//! `AllocationRequest` and takes the hub, the initial twin and a payload for the device from
//! the `AllocationResponse`) and an initial twin set on the device's twin at its first
//! assignment. Shapes from Microsoft Learn, "Understand custom allocation policies with Azure
//! IoT Hub Device Provisioning Service", and the DPS REST reference (`InitialTwin`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use crate::azure::dps::{self as wire, InitialTwin};
use crate::hub::registry::{RegistryError, Result, TwinRule, check_twin_document};

/// How long DPS waits for a custom allocation webhook's whole answer (connect, request,
/// reply). Azure documents no webhook timeout that we found (an Azure Function's HTTP trigger
/// may run up to 230 s behind Azure's load balancer, far past any device's patience); the
/// SDKs give up on a registration after about 30 s, so a webhook slower than this would fail
/// the device anyway.
pub const DPS_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest webhook reply read: an initial twin's tags ([`crate::azure::MAX_TWIN_TAGS_BYTES`],
/// 8 KB) and desired properties ([`crate::azure::MAX_TWIN_PROPERTIES_BYTES`], 32 KB), a
/// payload ([`super::MAX_PAYLOAD_BYTES`], 32 KB) and room for whitespace. Azure documents no
/// limit for the `AllocationResponse`.
pub const MAX_WEBHOOK_REPLY_BYTES: usize = 128 * 1024;

/// Longest webhook URL an enrollment keeps. Azure documents no limit for `webhookUrl`; an
/// Azure Function's URL with its key is under 300 characters.
pub const MAX_WEBHOOK_URL_BYTES: usize = 2048;

/// Largest `--initial-twin` file read: the tags and desired-properties limits (40 KB of
/// compact JSON) with room for a pretty-printed file's indentation.
pub const MAX_INITIAL_TWIN_FILE_BYTES: u64 = 160 * 1024;

/// The api-version DPS names in `customAllocationDefinition` (the service API it speaks).
const ALLOCATION_API_VERSION: &str = "2021-10-01";

/// An enrollment's custom allocation webhook and initial twin (both optional).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Allocation {
    /// `customAllocationDefinition.webhookUrl`: plain http on the loopback address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_webhook: Option<String>,
    /// `initialTwin`: tags and desired properties for the device's first assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<InitialTwin>,
}

impl Allocation {
    /// Hold both to their rules: the URL to [`check_webhook_url`], the twin to IoT Hub's.
    pub fn check(&self) -> Result<()> {
        if let Some(url) = &self.allocation_webhook {
            check_webhook_url(url)?;
        }
        if let Some(t) = &self.initial_twin {
            check_initial_twin(t).map_err(|why| RegistryError::InitialTwin {
                what: "the enrollment's initial twin".into(),
                why: why.to_string(),
            })?;
        }
        Ok(())
    }
}

/// Where a webhook URL connects: plain `http` on 127.0.0.1 or [::1] (the local DPS calls no
/// other machine, and carries no TLS client for one), no user info.
pub fn check_webhook_url(url: &str) -> Result<SocketAddr> {
    let bad = |why: &str| RegistryError::DpsWebhookUrl {
        url: url.chars().take(120).collect(),
        why: why.to_string(),
    };
    if url.len() > MAX_WEBHOOK_URL_BYTES {
        return Err(bad(&format!(
            "it is longer than {MAX_WEBHOOK_URL_BYTES} bytes"
        )));
    }
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| bad(&format!("it is not a URL ({e})")))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad(
            "the local DPS calls webhooks over plain http only; give http://127.0.0.1:PORT/PATH",
        ));
    }
    let authority = uri.authority().ok_or_else(|| bad("it has no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("it carries user info; put a key in the query instead"));
    }
    let ip = match authority.host() {
        "127.0.0.1" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        "[::1]" => IpAddr::V6(Ipv6Addr::LOCALHOST),
        _ => {
            return Err(bad(
                "the local DPS calls webhooks on this machine only: the host must be 127.0.0.1 or [::1]",
            ));
        }
    };
    Ok(SocketAddr::new(ip, authority.port_u16().unwrap_or(80)))
}

/// Which of IoT Hub's twin rules an initial twin breaks.
#[derive(Debug)]
pub(crate) enum InitialTwinError {
    /// The tags break a rule (key, depth, 8 KB).
    Tags(TwinRule),
    /// The desired properties set `$version`, which is the twin's own.
    DesiredVersion,
    /// The desired properties break a rule (key, depth, 32 KB).
    Desired(TwinRule),
}

impl std::fmt::Display for InitialTwinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitialTwinError::Tags(r) => write!(f, "tags: {r}"),
            InitialTwinError::DesiredVersion => {
                f.write_str("properties.desired: key \"$version\" is the twin's own; leave it out")
            }
            InitialTwinError::Desired(r) => write!(f, "properties.desired: {r}"),
        }
    }
}

/// IoT Hub's twin rules for an initial twin: keys, depth, 8 KB of tags, 32 KB of desired
/// properties. The rule it breaks, when it breaks one.
pub(crate) fn check_initial_twin(t: &InitialTwin) -> std::result::Result<(), InitialTwinError> {
    if let Some(tags) = &t.tags {
        check_twin_document(
            "the tags",
            &serde_json::Value::Object(tags.clone()),
            crate::azure::MAX_TWIN_TAGS_BYTES,
        )
        .map_err(InitialTwinError::Tags)?;
    }
    if let Some(desired) = t.desired() {
        if desired.contains_key("$version") {
            return Err(InitialTwinError::DesiredVersion);
        }
        check_twin_document(
            "the desired properties",
            &serde_json::Value::Object(desired.clone()),
            crate::azure::MAX_TWIN_PROPERTIES_BYTES,
        )
        .map_err(InitialTwinError::Desired)?;
    }
    Ok(())
}

/// Read an initial twin file: a regular file of at most [`MAX_INITIAL_TWIN_FILE_BYTES`]
/// holding `{"tags":{…},"properties":{"desired":{…}}}` that keeps IoT Hub's twin rules.
pub fn read_initial_twin(path: &Path) -> Result<InitialTwin> {
    let bad = |why: String| RegistryError::InitialTwin {
        what: format!("initial twin file {}", path.display()),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot be read ({e})")))?;
    if !meta.is_file() {
        return Err(bad(
            "is not a regular file; give a JSON file like {\"tags\":{…},\"properties\":{\"desired\":{…}}}".into(),
        ));
    }
    if meta.len() > MAX_INITIAL_TWIN_FILE_BYTES {
        return Err(bad(format!(
            "is {} bytes, more than the {MAX_INITIAL_TWIN_FILE_BYTES} an initial twin can need (IoT Hub keeps 8 KB of tags and 32 KB of desired properties)",
            meta.len()
        )));
    }
    let mut text = Vec::new();
    {
        use std::io::Read;
        std::fs::File::open(path)
            .and_then(|f| {
                f.take(MAX_INITIAL_TWIN_FILE_BYTES + 1)
                    .read_to_end(&mut text)
            })
            .map_err(|e| bad(format!("cannot be read ({e})")))?;
    }
    if text.len() as u64 > MAX_INITIAL_TWIN_FILE_BYTES {
        return Err(bad(format!(
            "grew past {MAX_INITIAL_TWIN_FILE_BYTES} bytes while it was read"
        )));
    }
    // A Value first: its depth is then checked by the twin rules, with their message, rather
    // than refused by the parser's recursion limit in the shape's terms.
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| bad(format!("is not JSON ({e})")))?;
    let twin: InitialTwin = serde_json::from_value(value).map_err(|e| {
        bad(format!(
            "is not an initial twin ({e}); the shape is {{\"tags\":{{…}},\"properties\":{{\"desired\":{{…}}}}}}"
        ))
    })?;
    check_initial_twin(&twin).map_err(|why| bad(why.to_string()))?;
    Ok(twin)
}

/// `X509CertificateInfo` of a DER certificate, as DPS reports it.
pub fn certificate_info(der: &[u8]) -> Option<wire::X509CertificateInfo> {
    let (_, c) = X509Certificate::from_der(der).ok()?;
    let (sha1, sha256) = crate::pki::thumbprints(der);
    let time = |t: x509_parser::time::ASN1Time| crate::pki::issue::rfc3339(t.to_datetime());
    let serial = c.raw_serial();
    // The integer's bytes, without the sign byte DER adds before a high bit (as openssl prints).
    let first = serial
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(serial.len().saturating_sub(1));
    Some(wire::X509CertificateInfo {
        subject_name: distinguished_name(c.subject()),
        sha1_thumbprint: sha1,
        sha256_thumbprint: sha256,
        issuer_name: distinguished_name(c.issuer()),
        not_before_utc: time(c.validity().not_before),
        not_after_utc: time(c.validity().not_after),
        serial_number: crate::pki::hex_upper(&serial[first..]),
        version: i32::try_from(c.version().0).unwrap_or(2).saturating_add(1),
    })
}

/// A DN most specific first (`CN=dev, O=Org, C=US`), as DPS and .NET print one.
fn distinguished_name(name: &X509Name<'_>) -> String {
    let mut rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|a| {
                    let key = x509_parser::objects::oid2abbrev(
                        a.attr_type(),
                        x509_parser::objects::oid_registry(),
                    )
                    .map(str::to_string)
                    .unwrap_or_else(|_| a.attr_type().to_id_string());
                    let value = a
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|_| format!("#{}", hex::encode(a.attr_value().data)));
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.reverse();
    rdns.join(", ")
}

/// The `enrollmentGroup` or `individualEnrollment` object of an `AllocationRequest`: the
/// enrollment as DPS's service API shows it.
pub(super) fn enrollment_json(
    id_field: (&str, &str),
    device_id: Option<&str>,
    edge: bool,
    allocation: &Allocation,
    linked_hub: &str,
    added: time::OffsetDateTime,
) -> serde_json::Value {
    let mut e = serde_json::json!({
        id_field.0: id_field.1,
        "attestation": { "type": "x509" },
        "capabilities": { "iotEdge": edge },
        "provisioningStatus": "enabled",
        "allocationPolicy": "custom",
        "iotHubs": [linked_hub],
        "customAllocationDefinition": {
            "webhookUrl": allocation.allocation_webhook,
            "apiVersion": ALLOCATION_API_VERSION,
        },
        "createdDateTimeUtc": crate::pki::issue::rfc3339(added),
    });
    if let Some(d) = device_id {
        e["deviceId"] = d.into();
    }
    if let Some(t) = &allocation.initial_twin {
        e["initialTwin"] = serde_json::to_value(t).unwrap_or_default();
    }
    e
}

/// Why a custom allocation failed: a short kind for logs and `--json`, and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookFailure {
    /// `webhook-timeout`, `webhook-unreachable`, `webhook-status`, `webhook-too-large`,
    /// `webhook-not-json`, `webhook-unknown-hub`, `webhook-bad-twin`, `webhook-payload-limit`.
    pub kind: &'static str,
    /// What went wrong, naming the webhook, and the fix.
    pub why: String,
}

fn fail(kind: &'static str, why: String) -> WebhookFailure {
    WebhookFailure { kind, why }
}

/// Ends the connection task when the call is over or abandoned (a timeout drops the call).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// POST `body` to the webhook: its status and at most [`MAX_WEBHOOK_REPLY_BYTES`] of reply,
/// all within `timeout`.
pub(in crate::hub) async fn post(
    url: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> std::result::Result<(u16, bytes::Bytes), WebhookFailure> {
    let shown = crate::text::escape_controls(url).into_owned();
    let addr = check_webhook_url(url).map_err(|e| fail("webhook-unreachable", e.to_string()))?;
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| fail("webhook-unreachable", format!("{shown}: {e}")))?;
    let unreachable = |e: &dyn std::fmt::Display| {
        fail(
            "webhook-unreachable",
            format!("the webhook {shown} could not be called ({e}); is it running?"),
        )
    };
    let call = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| unreachable(&e))?;
        let _conn = AbortOnDrop(tokio::spawn(conn).abort_handle());
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let host = uri.authority().map_or("127.0.0.1", |a| a.as_str());
        let req = hyper::Request::post(path)
            .header(hyper::header::HOST, host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .map_err(|e| unreachable(&e))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(&e))?;
        let status = resp.status().as_u16();
        use http_body_util::BodyExt;
        let reply = http_body_util::Limited::new(resp.into_body(), MAX_WEBHOOK_REPLY_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    fail(
                        "webhook-too-large",
                        format!(
                            "the webhook {shown} answered more than {MAX_WEBHOOK_REPLY_BYTES} bytes; an AllocationResponse is an IoT hub name, an initial twin and a payload"
                        ),
                    )
                } else {
                    unreachable(&e)
                }
            })?
            .to_bytes();
        Ok((status, reply))
    };
    tokio::time::timeout(timeout, call).await.map_err(|_| {
        fail(
            "webhook-timeout",
            format!(
                "the webhook {shown} did not answer within {} s",
                timeout.as_secs_f32()
            ),
        )
    })?
}

/// The webhook's answer as DPS takes it: a 2xx whose body is an `AllocationResponse` naming
/// one of the linked hubs (here the local hub alone), with an initial twin and a payload that
/// keep IoT Hub's rules. The hub's name is returned in the linked hub's own spelling.
pub(in crate::hub) fn read_reply(
    url: &str,
    status: u16,
    reply: &[u8],
    linked_hub: &str,
) -> std::result::Result<wire::AllocationResponse, WebhookFailure> {
    let shown = crate::text::escape_controls(url).into_owned();
    if !(200..300).contains(&status) {
        return Err(fail(
            "webhook-status",
            format!(
                "the webhook {shown} answered HTTP {status}; custom allocation needs a 2xx with an AllocationResponse"
            ),
        ));
    }
    let excerpt = || {
        let text = String::from_utf8_lossy(&reply[..reply.len().min(60)]).into_owned();
        crate::text::escape_controls(&text).into_owned()
    };
    let mut r: wire::AllocationResponse = serde_json::from_slice(reply).map_err(|e| {
        fail(
            "webhook-not-json",
            format!(
                "the webhook {shown} answered something that is not an AllocationResponse ({e}): \"{}\"",
                excerpt()
            ),
        )
    })?;
    match r.iot_hub_host_name.as_deref() {
        Some(h) if h.eq_ignore_ascii_case(linked_hub) => {
            r.iot_hub_host_name = Some(linked_hub.to_string());
        }
        other => {
            let named = other.map_or("no iotHubHostName".to_string(), |h| {
                format!("\"{}\"", crate::text::escape_controls(h))
            });
            return Err(fail(
                "webhook-unknown-hub",
                format!(
                    "the webhook {shown} assigned the device to {named}, which is not one of DPS's linked hubs ([\"{linked_hub}\"]); answer with one of the request's linkedHubs"
                ),
            ));
        }
    }
    if let Some(t) = &r.initial_twin {
        check_initial_twin(t).map_err(|why| {
            fail(
                "webhook-bad-twin",
                format!("the webhook {shown} returned an initial twin IoT Hub would refuse: {why}"),
            )
        })?;
    }
    if let Some(p) = &r.payload
        && let Err(e) = crate::hub::state_file::check_document(
            "the webhook's payload",
            p,
            crate::azure::MAX_TWIN_DEPTH,
            super::MAX_PAYLOAD_BYTES,
        )
    {
        return Err(fail("webhook-payload-limit", format!("{shown}: {e}")));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_loopback_http() {
        assert_eq!(
            check_webhook_url("http://127.0.0.1:8080/api/alloc?code=k").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert!(check_webhook_url("http://[::1]/x").is_ok());
        for bad in [
            "https://127.0.0.1/x",
            "http://example.com/x",
            "http://localhost/x",
            "http://10.0.0.1/x",
            "http://user@127.0.0.1/x",
            "ftp://127.0.0.1/",
            "not a url",
        ] {
            assert!(check_webhook_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn replies_are_held_to_the_documented_shape() {
        let ok =
            br#"{"iotHubHostName":"LOCALHOST","payload":{"a":1},"initialTwin":{"tags":{"t":1}}}"#;
        let r = read_reply("http://127.0.0.1/", 200, ok, "localhost").unwrap();
        assert_eq!(r.iot_hub_host_name.as_deref(), Some("localhost"));
        let kind = |status, body: &[u8]| {
            read_reply("http://127.0.0.1/", status, body, "localhost")
                .unwrap_err()
                .kind
        };
        assert_eq!(kind(500, ok), "webhook-status");
        assert_eq!(kind(200, b"<html>"), "webhook-not-json");
        assert_eq!(
            kind(200, br#"{"iotHubHostName":"other.azure-devices.net"}"#),
            "webhook-unknown-hub"
        );
        assert_eq!(kind(200, b"{}"), "webhook-unknown-hub");
        assert_eq!(
            kind(
                200,
                br#"{"iotHubHostName":"localhost","initialTwin":{"tags":{"$bad":1}}}"#
            ),
            "webhook-bad-twin"
        );
    }
}
