//! Azure IoT Hub and the Device Provisioning Service, for chainsmith.
//!
//! The crate root holds Azure's wire vocabulary (below, and [`dps`] for DPS's), which both the
//! local cloud and the device side speak; [`hub`] is the embedded local IoT Hub + DPS that
//! answers as Azure does, on MQTT, AMQP and WebSockets.
//!
//! Azure IoT Hub's MQTT device protocol: the exact strings, in one place.
//!
//! Both faces of chainsmith's MQTT use this module: the embedded hub (`hub`) parses what a
//! device sends with it, the connection test (`mqtt`) builds what a device sends with it.
//! Formats follow Microsoft's "Communicate with an IoT hub using the MQTT protocol" page:
//!
//! | what                | topic                                                          |
//! |---------------------|----------------------------------------------------------------|
//! | username            | `{host}/{deviceId}/?api-version=2021-04-12[&DeviceClientType=…]` |
//! | telemetry           | `devices/{id}/messages/events/{url-encoded property bag}`      |
//! | cloud-to-device     | `devices/{id}/messages/devicebound/{property bag}` (filter `…/#`) |
//! | twin GET            | `$iothub/twin/GET/?$rid={rid}`                                 |
//! | twin reported PATCH | `$iothub/twin/PATCH/properties/reported/?$rid={rid}`           |
//! | twin response       | `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`         |
//! | twin desired push   | `$iothub/twin/PATCH/properties/desired/?$version={v}`          |
//! | method request      | `$iothub/methods/POST/{name}/?$rid={rid}`                      |
//! | method response     | `$iothub/methods/res/{status}/?$rid={rid}`                     |
//!
//! A `$rid` is whatever the device chose: the C SDK counts (`1`, `2`, …), the Python SDK
//! sends UUIDs. It is echoed back verbatim.

pub mod dps;

use thiserror::Error;

/// Said with every revocation: the hub will not notice a CRL (the PKI core says it too).
pub use chainsmith_pki::pki::HUB_DOES_NOT_CHECK_CRLS;

/// The api-version IoT Hub's current SDKs put in the username.
pub const API_VERSION: &str = "2021-04-12";
/// The TLS/MQTT port IoT Hub listens on.
pub const MQTT_PORT: u16 = 8883;
/// IoT Hub closes a connection idle for this long; a client keep-alive must be at most this.
pub(crate) const MAX_KEEP_ALIVE_SECS: u16 = 1767;
/// Largest device-to-cloud message IoT Hub accepts (256 KB).
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Largest MQTT packet accepted: a 256 KB message plus room for topic and header.
pub const MAX_PACKET: usize = MAX_MESSAGE_BYTES + 4096;
/// Deepest nesting of the JSON objects in a twin's tags, desired and reported properties:
/// "All JSON objects in tags, desired, and reported properties can have a maximum depth of 10"
/// (Microsoft Learn, "Understand and use device twins in IoT Hub", Tags and properties format).
pub(crate) const MAX_TWIN_DEPTH: usize = 10;
/// Largest reported (and desired) properties document: "IoT Hub enforces … a 32-KB size limit
/// each on the value of properties/desired and properties/reported" (same page, Twin size).
pub(crate) const MAX_TWIN_PROPERTIES_BYTES: usize = 32 * 1024;
/// Largest tags document: "IoT Hub enforces an 8-KB size limit on the value of tags" (same
/// page, Twin size).
pub const MAX_TWIN_TAGS_BYTES: usize = 8 * 1024;
/// Longest key in a twin's JSON objects: "All keys in JSON objects are UTF-8 encoded,
/// case-sensitive, and up-to 1 KB in length. Allowed characters exclude UNICODE control
/// characters (segments C0 and C1), and `.`, `$`, and SP" (same page, Tags and properties
/// format).
pub(crate) const MAX_TWIN_KEY_BYTES: usize = 1024;
/// Whether IoT Hub takes `key` as a key of a twin's JSON objects ([`MAX_TWIN_KEY_BYTES`]).
pub(crate) fn twin_key_allowed(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_TWIN_KEY_BYTES
        && !key
            .chars()
            .any(|c| c.is_control() || matches!(c, '.' | '$' | ' '))
}
/// Subscribe filters a device uses for twin responses.
pub const TWIN_RESPONSE_FILTER: &str = "$iothub/twin/res/#";
/// Subscribe filter for desired-property updates.
pub const TWIN_DESIRED_FILTER: &str = "$iothub/twin/PATCH/properties/desired/#";
/// Subscribe filter for direct-method requests.
pub const METHODS_FILTER: &str = "$iothub/methods/POST/#";

/// Well-known system properties in a property bag.
pub mod sys {
    /// Message id: the device's (telemetry) or the service's (C2D) id for a message.
    pub(crate) const MESSAGE_ID: &str = "$.mid";
    /// Correlation id: on a C2D answer, the message id it answers.
    pub(crate) const CORRELATION_ID: &str = "$.cid";
    /// User id: who sent the message (the service's name for the sender).
    pub(crate) const USER_ID: &str = "$.uid";
    /// Destination: on C2D, `/devices/{id}/messages/devicebound`.
    pub(crate) const TO: &str = "$.to";
    /// Content type of the body, e.g. `application/json` (IoT Hub routing reads it).
    pub const CONTENT_TYPE: &str = "$.ct";
    /// Content encoding of the body, e.g. `utf-8` (IoT Hub routing reads it).
    pub const CONTENT_ENCODING: &str = "$.ce";
    /// When the message expires (AMQP `absolute-expiry-time`; the SDKs' `expiryTimeUtc`).
    pub const EXPIRY_TIME: &str = "$.exp";
    /// When the device made the message (the annotation `iothub-creation-time-utc` over AMQP).
    pub const CREATION_TIME_UTC: &str = "$.ctime";
    /// The Plug and Play interface (the annotation `iothub-interface-id` over AMQP).
    pub const INTERFACE_ID: &str = "$.ifid";
    /// The AMQP `creation-time` property (no MQTT name; kept so it is not an application property).
    pub const AMQP_CREATION_TIME: &str = "$.creation_time";
    /// The AMQP `subject` property (no MQTT name).
    pub const AMQP_SUBJECT: &str = "$.subject";
    /// The AMQP `reply-to` property (no MQTT name).
    pub const AMQP_REPLY_TO: &str = "$.reply_to";
    /// The AMQP `group-id` property (no MQTT name).
    pub const AMQP_GROUP_ID: &str = "$.group_id";
    /// The AMQP `group-sequence` property (no MQTT name).
    pub const AMQP_GROUP_SEQUENCE: &str = "$.group_sequence";
    /// The AMQP `reply-to-group-id` property (no MQTT name).
    pub const AMQP_REPLY_TO_GROUP_ID: &str = "$.reply_to_group_id";
    /// Prefix of IoT Hub's own names (`iothub-creation-time-utc`, `iothub-interface-id`, …):
    /// message annotations over AMQP, system properties in what the hub delivers.
    pub const IOTHUB_PREFIX: &str = "iothub-";

    /// Each property-bag key with the name a service reader sees the system property under
    /// (`az iot hub monitor-events --properties all` shows the AMQP properties section by its
    /// field names, and IoT Hub's `iothub-*` names as they are). MQTT devices use the `$.`
    /// names (Node SDK `azure-iot-device-mqtt`, Python SDK `mqtt_topic_iothub.py`, .NET
    /// `MqttIotHubAdapter`); AMQP devices the properties section and `iothub-*` annotations
    /// ([`crate::amqp::telemetry_properties`] maps them to the same keys).
    pub const NAMES: &[(&str, &str)] = &[
        (MESSAGE_ID, "message_id"),
        (CORRELATION_ID, "correlation_id"),
        (USER_ID, "user_id"),
        (TO, "to"),
        (CONTENT_TYPE, "content_type"),
        (CONTENT_ENCODING, "content_encoding"),
        (EXPIRY_TIME, "absolute_expiry_time"),
        (CREATION_TIME_UTC, "iothub-creation-time-utc"),
        (INTERFACE_ID, "iothub-interface-id"),
        (AMQP_CREATION_TIME, "creation_time"),
        (AMQP_SUBJECT, "subject"),
        (AMQP_REPLY_TO, "reply_to"),
        (AMQP_GROUP_ID, "group_id"),
        (AMQP_GROUP_SEQUENCE, "group_sequence"),
        (AMQP_REPLY_TO_GROUP_ID, "reply_to_group_id"),
    ];

    /// The system-property name of a bag key, or None for an application property. A `$.`
    /// key outside [`NAMES`] is still a system property (IoT Hub reserves the prefix), shown
    /// by its key.
    pub fn name(key: &str) -> Option<&str> {
        if let Some((_, n)) = NAMES.iter().find(|(k, _)| *k == key) {
            return Some(n);
        }
        (key.starts_with("$.") || key.starts_with(IOTHUB_PREFIX)).then_some(key)
    }
}

/// A string of IoT Hub's MQTT protocol (username, topic, property bag) that does not parse.
/// Each message quotes the value and shows the form IoT Hub expects.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AzureError {
    /// The CONNECT username is not `{host}/{deviceId}/?api-version=…`.
    #[error(
        "username {0:?} is not `{{host}}/{{deviceId}}/?api-version=...`; IoT Hub devices send e.g. `myhub.azure-devices.net/dev1/?api-version={API_VERSION}`"
    )]
    Username(String),
    /// A `%` not followed by two hex digits in a URL-encoded string.
    #[error("{what} {value:?} has a bad %-escape; encode '%' as %25")]
    Escape {
        /// Which part it was in (`property name`, `device id`, …).
        what: &'static str,
        /// The encoded string as received.
        value: String,
    },
    /// A URL-encoded string that decodes to bytes that are not UTF-8.
    #[error("{what} {value:?} is not UTF-8 after URL-decoding")]
    Utf8 {
        /// Which part it was in (`property name`, `device id`, …).
        what: &'static str,
        /// The encoded string as received.
        value: String,
    },
    /// A topic that does not have the shape its prefix promises.
    #[error("topic {topic:?} is not {expected}")]
    Topic {
        /// The topic as received.
        topic: String,
        /// The form IoT Hub uses, e.g. `$iothub/twin/res/{status}/?$rid={rid}`.
        expected: &'static str,
    },
    /// A `$rid` (request id) that is empty or has other characters than letters, digits, `-`.
    #[error("$rid {0:?} is empty or contains characters other than letters, digits and '-'")]
    Rid(String),
    /// The status segment of a twin or method response topic is not a number.
    #[error("status {0:?} in topic is not a number")]
    Status(String),
    /// The `$version` of a twin topic is not a number.
    #[error("$version {0:?} in topic is not a number")]
    Version(String),
}

// ---------------------------------------------------------------- URL encoding

/// Percent-encode a property name or value as IoT Hub expects (RFC 3986 unreserved chars kept).
pub fn url_encode(s: &str) -> String {
    /// What is escaped: everything but RFC 3986's unreserved characters.
    const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, ESCAPED).to_string()
}

/// Decode `%XX` escapes (and `+` as space, as form encoding does; the Python SDK never sends `+` raw).
pub(crate) fn url_decode(s: &str, what: &'static str) -> Result<String, AzureError> {
    percent_decode(&s.replace('+', " "), s, what)
}

/// Decode the `%XX` escapes of one URL path segment (RFC 3986: there `+` is itself, not a
/// space), as DPS's REST API reads `{registrationId}` and `{operationId}`.
pub fn path_decode(s: &str, what: &'static str) -> Result<String, AzureError> {
    percent_decode(s, s, what)
}

/// Decode `escaped`; `raw` is what the peer sent, for the error.
fn percent_decode(escaped: &str, raw: &str, what: &'static str) -> Result<String, AzureError> {
    // A `%` without two hex digits after it is refused: percent-encoding passes it through.
    let bytes = escaped.as_bytes();
    let escape_ok = |i: usize| {
        bytes
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    };
    if (0..bytes.len()).any(|i| bytes[i] == b'%' && !escape_ok(i)) {
        return Err(AzureError::Escape {
            what,
            value: raw.to_string(),
        });
    }
    percent_encoding::percent_decode_str(escaped)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| AzureError::Utf8 {
            what,
            value: raw.to_string(),
        })
}

// ---------------------------------------------------------------- property bags

/// An ordered property bag: system properties (`$.ct`, …) and application properties together.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Properties(pub Vec<(String, String)>);

impl Properties {
    /// An empty bag.
    pub fn new() -> Self {
        Self::default()
    }
    /// The bag with one more property appended (a builder; order is kept on the wire).
    pub fn with(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.0.push((k.into(), v.into()));
        self
    }
    /// The first value of `key` (system or application property), if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// `$.mid`: the message id.
    pub fn message_id(&self) -> Option<&str> {
        self.get(sys::MESSAGE_ID)
    }
    /// `$.ct`: the body's content type.
    pub fn content_type(&self) -> Option<&str> {
        self.get(sys::CONTENT_TYPE)
    }
    /// `$.ce`: the body's content encoding.
    pub fn content_encoding(&self) -> Option<&str> {
        self.get(sys::CONTENT_ENCODING)
    }
    /// Application properties: everything that is not a system property ([`sys::name`]).
    pub fn application(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .filter(|(k, _)| sys::name(k).is_none())
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
    /// System properties by the name a service reader sees them under ([`sys::NAMES`]):
    /// `message_id`, `to`, `iothub-interface-id`, …
    pub fn system(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .filter_map(|(k, v)| sys::name(k).map(|n| (n, v.as_str())))
    }
    /// Whether the bag has no property at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `k1=v1&k2=v2`, each name and value URL-encoded. A property with an empty value is `k=`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(&url_encode(k));
            out.push('=');
            out.push_str(&url_encode(v));
        }
        out
    }

    /// Parse a property bag; a trailing `/` or empty segments are ignored, a name without `=`
    /// has an empty value (IoT Hub accepts both).
    pub fn parse(bag: &str) -> Result<Self, AzureError> {
        let bag = bag.strip_suffix('/').unwrap_or(bag);
        let mut out = Vec::new();
        for part in bag.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            out.push((
                url_decode(k, "property name")?,
                url_decode(v, "property value")?,
            ));
        }
        Ok(Properties(out))
    }
}

// ---------------------------------------------------------------- username

/// A parsed IoT Hub MQTT username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Username {
    /// The hub host name the device dialled, e.g. `myhub.azure-devices.net`.
    pub host: String,
    /// The device id (or `deviceId/moduleId` for a module), URL-decoded.
    pub device_id: String,
    /// `api-version`, when given.
    pub api_version: Option<String>,
    /// Every query parameter, decoded, in order (including `api-version`, `DeviceClientType`, …).
    pub params: Vec<(String, String)>,
}

/// `{host}/{deviceId}/?api-version=2021-04-12`.
pub fn username(host: &str, device_id: &str) -> String {
    format!("{host}/{device_id}/?api-version={API_VERSION}")
}

/// Parse `{host}/{deviceId}/?api-version=...[&DeviceClientType=...]`. Also accepts the older
/// form without the `/` before `?`, and a missing query (IoT Hub then uses a default version).
pub(crate) fn parse_username(s: &str) -> Result<Username, AzureError> {
    let bad = || AzureError::Username(s.to_string());
    let (path, query) = match s.split_once('?') {
        Some((p, q)) => (p, q),
        None => (s, ""),
    };
    let path = path.strip_suffix('/').unwrap_or(path);
    let (host, device_id) = path.split_once('/').ok_or_else(bad)?;
    if host.is_empty() || device_id.is_empty() || device_id.contains('/') && !is_module(device_id) {
        return Err(bad());
    }
    let (params, api_version) = username_query(query)?;
    Ok(Username {
        host: host.to_string(),
        device_id: device_id.to_string(),
        api_version,
        params,
    })
}

/// A user name's query parameters, decoded, in their order.
pub(crate) type QueryParams = Vec<(String, String)>;

/// The decoded `k=v` pairs of a user name's query (IoT Hub's and DPS's alike), and the
/// `api-version` among them.
pub(crate) fn username_query(query: &str) -> Result<(QueryParams, Option<String>), AzureError> {
    let mut params = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        params.push((
            url_decode(k, "username parameter")?,
            url_decode(v, "username parameter")?,
        ));
    }
    let api_version = params
        .iter()
        .find(|(k, _)| k == "api-version")
        .map(|(_, v)| v.clone());
    Ok((params, api_version))
}

fn is_module(id: &str) -> bool {
    let mut it = id.split('/');
    matches!((it.next(), it.next(), it.next()), (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty())
}

// ---------------------------------------------------------------- $rid and query strings

/// A request id: a decimal number (C SDK) or a UUID (Python SDK), echoed back verbatim.
pub(crate) fn check_rid(rid: &str) -> Result<&str, AzureError> {
    if rid.is_empty()
        || rid.len() > 128
        || !rid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(AzureError::Rid(rid.to_string()));
    }
    Ok(rid)
}

fn query_params(q: &str) -> Vec<(&str, &str)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect()
}

fn query_get<'a>(q: &'a str, key: &str) -> Option<&'a str> {
    query_params(q)
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn rid_of(topic: &str, q: &str, expected: &'static str) -> Result<String, AzureError> {
    let rid = query_get(q, "$rid").ok_or_else(|| AzureError::Topic {
        topic: topic.to_string(),
        expected,
    })?;
    Ok(check_rid(rid)?.to_string())
}

fn version_of(q: &str) -> Result<Option<u64>, AzureError> {
    match query_get(q, "$version") {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| AzureError::Version(v.to_string())),
    }
}

fn status_of(s: &str) -> Result<u16, AzureError> {
    s.parse().map_err(|_| AzureError::Status(s.to_string()))
}

// ---------------------------------------------------------------- telemetry and C2D

/// `devices/{id}/messages/events/{bag}`.
pub fn telemetry_topic(device_id: &str, props: &Properties) -> String {
    format!("devices/{device_id}/messages/events/{}", props.encode())
}

/// Parse a telemetry topic into (device id, property bag).
pub fn parse_telemetry_topic(topic: &str) -> Result<(String, Properties), AzureError> {
    const EXP: &str = "devices/{id}/messages/events/{property bag}";
    let rest = topic
        .strip_prefix("devices/")
        .ok_or_else(|| AzureError::Topic {
            topic: topic.to_string(),
            expected: EXP,
        })?;
    let (id, bag) = rest
        .split_once("/messages/events")
        .ok_or_else(|| AzureError::Topic {
            topic: topic.to_string(),
            expected: EXP,
        })?;
    if id.is_empty() || !(bag.is_empty() || bag.starts_with('/')) {
        return Err(AzureError::Topic {
            topic: topic.to_string(),
            expected: EXP,
        });
    }
    let bag = &bag[bag.len().min(1)..];
    if bag.starts_with('/') {
        return Err(AzureError::Topic {
            topic: topic.to_string(),
            expected: EXP,
        });
    }
    Ok((id.to_string(), Properties::parse(bag)?))
}

/// The filter a device subscribes to for cloud-to-device messages.
pub fn c2d_filter(device_id: &str) -> String {
    format!("devices/{device_id}/messages/devicebound/#")
}

/// `devices/{id}/messages/devicebound/{bag}`.
pub(crate) fn c2d_topic(device_id: &str, props: &Properties) -> String {
    format!(
        "devices/{device_id}/messages/devicebound/{}",
        props.encode()
    )
}

/// Parse a C2D topic into (device id, property bag).
pub fn parse_c2d_topic(topic: &str) -> Result<(String, Properties), AzureError> {
    const EXP: &str = "devices/{id}/messages/devicebound/{property bag}";
    let err = || AzureError::Topic {
        topic: topic.to_string(),
        expected: EXP,
    };
    let rest = topic.strip_prefix("devices/").ok_or_else(err)?;
    let (id, bag) = rest.split_once("/messages/devicebound").ok_or_else(err)?;
    if id.is_empty() {
        return Err(err());
    }
    let bag = bag.strip_prefix('/').unwrap_or(bag);
    Ok((id.to_string(), Properties::parse(bag)?))
}

// ---------------------------------------------------------------- twin

/// `$iothub/twin/GET/?$rid={rid}`: a device asks for its whole twin (published empty).
pub fn twin_get_topic(rid: &str) -> String {
    format!("$iothub/twin/GET/?$rid={rid}")
}

/// `$iothub/twin/PATCH/properties/reported/?$rid={rid}`: a device updates reported
/// properties (the body is a JSON merge patch; the hub answers 204).
pub fn twin_patch_reported_topic(rid: &str) -> String {
    format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}")
}

/// `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`.
pub(crate) fn twin_response_topic(status: u16, rid: &str, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("$iothub/twin/res/{status}/?$rid={rid}&$version={v}"),
        None => format!("$iothub/twin/res/{status}/?$rid={rid}"),
    }
}

/// `$iothub/twin/PATCH/properties/desired/?$version={v}`.
pub fn twin_desired_topic(version: u64) -> String {
    format!("$iothub/twin/PATCH/properties/desired/?$version={version}")
}

/// The hub's answer to a twin request, from its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinResponse {
    /// HTTP-like status: 200 for a GET, 204 for a reported PATCH, 4xx for a refusal.
    pub status: u16,
    /// The request id of the request it answers.
    pub rid: String,
    /// `$version`: the reported properties' version after a PATCH (absent on a GET answer).
    pub version: Option<u64>,
}

/// Parse `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`.
pub fn parse_twin_response(topic: &str) -> Result<TwinResponse, AzureError> {
    const EXP: &str = "$iothub/twin/res/{status}/?$rid={rid}";
    let err = || AzureError::Topic {
        topic: topic.to_string(),
        expected: EXP,
    };
    let rest = topic.strip_prefix("$iothub/twin/res/").ok_or_else(err)?;
    let (status, q) = rest.split_once("/?").ok_or_else(err)?;
    Ok(TwinResponse {
        status: status_of(status)?,
        rid: rid_of(topic, q, EXP)?,
        version: version_of(q)?,
    })
}

/// The version in a desired-properties push.
pub(crate) fn parse_twin_desired_topic(topic: &str) -> Result<u64, AzureError> {
    const EXP: &str = "$iothub/twin/PATCH/properties/desired/?$version={n}";
    let err = || AzureError::Topic {
        topic: topic.to_string(),
        expected: EXP,
    };
    let q = topic
        .strip_prefix("$iothub/twin/PATCH/properties/desired/?")
        .ok_or_else(err)?;
    version_of(q)?.ok_or_else(err)
}

// ---------------------------------------------------------------- direct methods

/// `$iothub/methods/POST/{name}/?$rid={rid}`: the hub calls a direct method on a device.
pub(crate) fn method_request_topic(name: &str, rid: &str) -> String {
    format!("$iothub/methods/POST/{name}/?$rid={rid}")
}

/// `$iothub/methods/res/{status}/?$rid={rid}`: the device's answer to a method call (the
/// status is the device's choice, HTTP-like).
pub(crate) fn method_response_topic(status: u16, rid: &str) -> String {
    format!("$iothub/methods/res/{status}/?$rid={rid}")
}

/// (method name, rid) of a method request.
pub fn parse_method_request(topic: &str) -> Result<(String, String), AzureError> {
    const EXP: &str = "$iothub/methods/POST/{name}/?$rid={rid}";
    let err = || AzureError::Topic {
        topic: topic.to_string(),
        expected: EXP,
    };
    let rest = topic
        .strip_prefix("$iothub/methods/POST/")
        .ok_or_else(err)?;
    let (name, q) = rest.split_once("/?").ok_or_else(err)?;
    if name.is_empty() || name.contains('/') {
        return Err(err());
    }
    Ok((name.to_string(), rid_of(topic, q, EXP)?))
}

/// (status, rid) of a method response.
fn parse_method_response(topic: &str) -> Result<(u16, String), AzureError> {
    const EXP: &str = "$iothub/methods/res/{status}/?$rid={rid}";
    let err = || AzureError::Topic {
        topic: topic.to_string(),
        expected: EXP,
    };
    let rest = topic.strip_prefix("$iothub/methods/res/").ok_or_else(err)?;
    let (status, q) = rest.split_once("/?").ok_or_else(err)?;
    Ok((status_of(status)?, rid_of(topic, q, EXP)?))
}

// ---------------------------------------------------------------- what a device may do

/// Something a device published, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DevicePublish {
    /// `devices/{id}/messages/events/{bag}`: telemetry, with its property bag.
    Telemetry(Properties),
    /// `$iothub/twin/GET/?$rid=…`: the device asks for its twin.
    TwinGet {
        /// The request id the answer must carry back.
        rid: String,
    },
    /// `$iothub/twin/PATCH/properties/reported/?$rid=…`: a reported-properties patch.
    TwinPatchReported {
        /// The request id the answer must carry back.
        rid: String,
    },
    /// `$iothub/methods/res/{status}/?$rid=…`: the answer to a direct method.
    MethodResponse {
        /// The status the device answered (HTTP-like).
        status: u16,
        /// The request id of the call it answers.
        rid: String,
    },
}

/// Why a device's PUBLISH or SUBSCRIBE is refused (IoT Hub disconnects it).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub(crate) enum NamespaceError {
    /// A topic or filter that belongs to another device or to no device topic at all.
    #[error("topic {topic:?} is outside device {device:?}'s namespace")]
    Foreign {
        /// The topic or filter as sent.
        topic: String,
        /// The device that sent it.
        device: String,
    },
    /// A topic in the device's namespace that does not parse.
    #[error("{0}")]
    Malformed(#[from] AzureError),
}

/// Classify a topic `device_id` published to; anything else is outside its namespace.
pub(crate) fn classify_publish(
    device_id: &str,
    topic: &str,
) -> Result<DevicePublish, NamespaceError> {
    let foreign = || NamespaceError::Foreign {
        topic: topic.to_string(),
        device: device_id.to_string(),
    };
    if let Some(rest) = topic.strip_prefix("devices/") {
        let (id, props) = parse_telemetry_topic(topic).map_err(|_| foreign())?;
        if id != device_id || !rest.starts_with(device_id) {
            return Err(foreign());
        }
        return Ok(DevicePublish::Telemetry(props));
    }
    if let Some(q) = topic.strip_prefix("$iothub/twin/GET/?") {
        return Ok(DevicePublish::TwinGet {
            rid: rid_of(topic, q, "$iothub/twin/GET/?$rid={rid}")?,
        });
    }
    if let Some(q) = topic.strip_prefix("$iothub/twin/PATCH/properties/reported/?") {
        return Ok(DevicePublish::TwinPatchReported {
            rid: rid_of(
                topic,
                q,
                "$iothub/twin/PATCH/properties/reported/?$rid={rid}",
            )?,
        });
    }
    if topic.starts_with("$iothub/methods/res/") {
        let (status, rid) = parse_method_response(topic)?;
        return Ok(DevicePublish::MethodResponse { status, rid });
    }
    Err(foreign())
}

/// What a subscribe filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceSubscription {
    /// `devices/{id}/messages/devicebound/#`: cloud-to-device messages.
    C2d,
    /// `$iothub/twin/res/#`: answers to twin requests.
    TwinResponses,
    /// `$iothub/twin/PATCH/properties/desired/#`: desired-property pushes.
    TwinDesired,
    /// `$iothub/methods/POST/#`: direct method calls.
    Methods,
}

/// Check a device's subscribe filter: only its C2D topic and the `$iothub` twin/method topics.
pub(crate) fn classify_subscribe(
    device_id: &str,
    filter: &str,
) -> Result<DeviceSubscription, NamespaceError> {
    let c2d = format!("devices/{device_id}/messages/devicebound/");
    if filter.starts_with(&c2d) || filter == c2d.trim_end_matches('/') {
        return Ok(DeviceSubscription::C2d);
    }
    if filter.starts_with("$iothub/twin/res/") {
        return Ok(DeviceSubscription::TwinResponses);
    }
    if filter.starts_with("$iothub/twin/PATCH/properties/desired/") {
        return Ok(DeviceSubscription::TwinDesired);
    }
    if filter.starts_with("$iothub/methods/POST/") {
        return Ok(DeviceSubscription::Methods);
    }
    Err(NamespaceError::Foreign {
        topic: filter.to_string(),
        device: device_id.to_string(),
    })
}

/// MQTT topic-filter matching, shared with every local cloud's broker.
pub(crate) use chainsmith_server::topic::filter_matches;

#[cfg(test)]
mod tests {

    #[test]
    fn twin_keys_follow_iot_hubs_rules() {
        for bad in ["a.b", "a b", "$x", "\u{1}", "\u{85}", ""] {
            assert!(!twin_key_allowed(bad), "{bad:?}");
        }
        assert!(!twin_key_allowed(&"k".repeat(MAX_TWIN_KEY_BYTES + 1)));
        assert!(twin_key_allowed(&"k".repeat(MAX_TWIN_KEY_BYTES)));
        assert!(twin_key_allowed("temperature_1"));
    }

    use super::*;

    #[test]
    fn username_build_and_parse() {
        let u = username("myhub.azure-devices.net", "dev1");
        assert_eq!(u, "myhub.azure-devices.net/dev1/?api-version=2021-04-12");
        let p = parse_username(&u).unwrap();
        assert_eq!(p.host, "myhub.azure-devices.net");
        assert_eq!(p.device_id, "dev1");
        assert_eq!(p.api_version.as_deref(), Some("2021-04-12"));
    }

    #[test]
    fn username_with_sdk_parameters() {
        // What the Python SDK 2.x sends.
        let s = "localhost/sensor-7/?api-version=2019-10-01&DeviceClientType=py-azure-iot-device%2F2.14.0%28native%3BLinux%3Bx86_64%29";
        let p = parse_username(s).unwrap();
        assert_eq!(p.device_id, "sensor-7");
        assert_eq!(p.api_version.as_deref(), Some("2019-10-01"));
        assert_eq!(
            p.params[1],
            (
                "DeviceClientType".to_string(),
                "py-azure-iot-device/2.14.0(native;Linux;x86_64)".to_string()
            )
        );
        // Older form without the slash before `?`, and module identities.
        assert_eq!(
            parse_username("h/d?api-version=2018-06-30")
                .unwrap()
                .device_id,
            "d"
        );
        assert_eq!(
            parse_username("h/d/m/?api-version=x").unwrap().device_id,
            "d/m"
        );
    }

    #[test]
    fn username_rejects_garbage() {
        for bad in [
            "",
            "justhost",
            "/dev1/?api-version=1",
            "h//?api-version=1",
            "h/a/b/c/?x",
        ] {
            assert!(parse_username(bad).is_err(), "{bad:?}");
        }
        let e = parse_username("nohost").unwrap_err().to_string();
        assert!(e.contains("api-version"), "{e}");
    }

    #[test]
    fn telemetry_topic_with_system_and_custom_properties() {
        let props = Properties::new()
            .with("temperatureAlert", "true")
            .with("$.ct", "application/json")
            .with("$.ce", "utf-8");
        let t = telemetry_topic("dev1", &props);
        // The exact example from Microsoft's MQTT page.
        assert_eq!(
            t,
            "devices/dev1/messages/events/temperatureAlert=true&%24.ct=application%2Fjson&%24.ce=utf-8"
        );
        let (id, back) = parse_telemetry_topic(&t).unwrap();
        assert_eq!(id, "dev1");
        assert_eq!(back, props);
        assert_eq!(back.content_type(), Some("application/json"));
        assert_eq!(back.content_encoding(), Some("utf-8"));
        assert_eq!(
            back.application().collect::<Vec<_>>(),
            vec![("temperatureAlert", "true")]
        );
    }

    #[test]
    fn telemetry_topic_decodes_raw_and_encoded_forms() {
        // Devices may also send `$` and `/` unencoded in values, and no bag at all.
        let (_, p) =
            parse_telemetry_topic("devices/d/messages/events/$.ct=application%2Fjson&a%20b=c%26d")
                .unwrap();
        assert_eq!(p.get("$.ct"), Some("application/json"));
        assert_eq!(p.get("a b"), Some("c&d"));
        let (id, p) = parse_telemetry_topic("devices/d/messages/events/").unwrap();
        assert_eq!(id, "d");
        assert!(p.is_empty());
        let (_, p) = parse_telemetry_topic("devices/d/messages/events").unwrap();
        assert!(p.is_empty());
        assert!(parse_telemetry_topic("devices/d/messages/events/a=%zz").is_err());
        assert!(parse_telemetry_topic("devices/d/messages/eventsX").is_err());
        assert!(parse_telemetry_topic("other/d/messages/events/").is_err());
    }

    #[test]
    fn url_encoding_round_trips_everything() {
        let s = "ü é/&=?#+ %$.~-_";
        assert_eq!(url_decode(&url_encode(s), "x").unwrap(), s);
        assert_eq!(url_encode("a b/c"), "a%20b%2Fc");
        assert!(url_decode("%4", "x").is_err());
        assert!(url_decode("%ff", "x").is_err()); // not UTF-8
    }

    #[test]
    fn c2d_topics() {
        assert_eq!(c2d_filter("dev1"), "devices/dev1/messages/devicebound/#");
        let props = Properties::new().with("$.mid", "m-1").with("k", "v w");
        let t = c2d_topic("dev1", &props);
        assert_eq!(t, "devices/dev1/messages/devicebound/%24.mid=m-1&k=v%20w");
        assert!(filter_matches(&c2d_filter("dev1"), &t));
        let (id, p) = parse_c2d_topic(&t).unwrap();
        assert_eq!(id, "dev1");
        assert_eq!(p.message_id(), Some("m-1"));
    }

    #[test]
    fn twin_topics() {
        assert_eq!(twin_get_topic("1"), "$iothub/twin/GET/?$rid=1");
        assert_eq!(
            twin_patch_reported_topic("7"),
            "$iothub/twin/PATCH/properties/reported/?$rid=7"
        );
        assert_eq!(
            twin_response_topic(200, "1", None),
            "$iothub/twin/res/200/?$rid=1"
        );
        let t = twin_response_topic(204, "7", Some(5));
        assert_eq!(t, "$iothub/twin/res/204/?$rid=7&$version=5");
        assert_eq!(
            parse_twin_response(&t).unwrap(),
            TwinResponse {
                status: 204,
                rid: "7".into(),
                version: Some(5)
            }
        );
        assert!(filter_matches(TWIN_RESPONSE_FILTER, &t));
        let d = twin_desired_topic(12);
        assert_eq!(d, "$iothub/twin/PATCH/properties/desired/?$version=12");
        assert_eq!(parse_twin_desired_topic(&d).unwrap(), 12);
        assert!(filter_matches(TWIN_DESIRED_FILTER, &d));
        assert!(parse_twin_response("$iothub/twin/res/abc/?$rid=1").is_err());
        assert!(parse_twin_response("$iothub/twin/res/200/?$version=1").is_err());
    }

    #[test]
    fn method_topics() {
        let t = method_request_topic("reboot", "3");
        assert_eq!(t, "$iothub/methods/POST/reboot/?$rid=3");
        assert!(filter_matches(METHODS_FILTER, &t));
        assert_eq!(
            parse_method_request(&t).unwrap(),
            ("reboot".into(), "3".into())
        );
        let r = method_response_topic(200, "3");
        assert_eq!(r, "$iothub/methods/res/200/?$rid=3");
        assert_eq!(parse_method_response(&r).unwrap(), (200, "3".into()));
    }

    #[test]
    fn rid_is_a_number_or_a_uuid() {
        assert!(check_rid("42").is_ok());
        assert!(check_rid("2b1c9a8e-55f1-4f4e-9c3c-0c8f3c3c2a11").is_ok());
        for bad in ["", "a&b", "1/2", "x y"] {
            assert!(check_rid(bad).is_err(), "{bad:?}");
        }
        let uuid = "2b1c9a8e-55f1-4f4e-9c3c-0c8f3c3c2a11";
        assert_eq!(
            classify_publish("d", &twin_get_topic(uuid)).unwrap(),
            DevicePublish::TwinGet { rid: uuid.into() }
        );
    }

    #[test]
    fn namespace_rules() {
        use DevicePublish::*;
        assert!(matches!(
            classify_publish("dev1", "devices/dev1/messages/events/a=b"),
            Ok(Telemetry(_))
        ));
        assert_eq!(
            classify_publish("dev1", "$iothub/twin/PATCH/properties/reported/?$rid=9").unwrap(),
            TwinPatchReported { rid: "9".into() }
        );
        assert_eq!(
            classify_publish("dev1", "$iothub/methods/res/200/?$rid=4").unwrap(),
            MethodResponse {
                status: 200,
                rid: "4".into()
            }
        );
        for foreign in [
            "devices/dev2/messages/events/",
            "devices/dev1/messages/devicebound/x",
            "anything",
            "$iothub/twin/PATCH/properties/desired/?$version=1",
        ] {
            assert!(
                matches!(
                    classify_publish("dev1", foreign),
                    Err(NamespaceError::Foreign { .. })
                ),
                "{foreign}"
            );
        }
        assert_eq!(
            classify_subscribe("dev1", "devices/dev1/messages/devicebound/#").unwrap(),
            DeviceSubscription::C2d
        );
        assert_eq!(
            classify_subscribe("dev1", METHODS_FILTER).unwrap(),
            DeviceSubscription::Methods
        );
        assert!(classify_subscribe("dev1", "devices/dev2/messages/devicebound/#").is_err());
        assert!(classify_subscribe("dev1", "#").is_err());
    }

    #[test]
    fn filters() {
        assert!(filter_matches("a/+/c", "a/b/c"));
        assert!(!filter_matches("a/+/c", "a/b/d"));
        assert!(filter_matches("a/#", "a"));
        assert!(!filter_matches("a/b", "a/b/c"));
    }
}

pub mod amqp;
pub mod hub;
pub mod websocket;

// This crate's own vocabulary is its root; the PKI core under its domain names.
use crate as azure;
use chainsmith_pki::{clock, error, ops, pki, store, text};
