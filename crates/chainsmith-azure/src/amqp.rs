//! IoT Hub's device protocol over AMQP 1.0, in one place: the link addresses, link and message
//! properties and annotations the device SDKs use, and their translation to and from the MQTT
//! topics of [`crate::azure`] (the hub runs one device-protocol engine for every transport).
//!
//! Sources: the Node SDK (`azure-iot-common/dist/endpoint.js` for the addresses,
//! `azure-iot-device-amqp/dist/amqp_twin_client.js` and `amqp_device_method_client.js` for the
//! twin and method links, `azure-iot-amqp-base/dist/amqp_message.js` for the message mapping),
//! the C SDK's `iothubtransport_amqp_twin_messenger.c` / `_messenger.c`, and Microsoft's
//! "Communicate with your IoT hub by using the AMQP protocol".
//!
//! | link                   | address                               | device's role       |
//! |------------------------|---------------------------------------|---------------------|
//! | telemetry              | `/devices/{id}/messages/events`       | sender              |
//! | cloud-to-device        | `/devices/{id}/messages/devicebound`  | receiver            |
//! | twin                   | `/devices/{id}/twin`                  | sender and receiver |
//! | direct methods         | `/devices/{id}/methods/devicebound`   | sender and receiver |
//!
//! The C SDK prefixes the address with `amqps://{host}`; both forms are accepted. With X.509
//! the Node SDK (rhea) sends no SASL header at all and the C and .NET SDKs use SASL EXTERNAL
//! or ANONYMOUS: the TLS client certificate is the credential either way.

use crate::azure::{self, Properties};
use fe2o3_amqp::types::messaging::{
    Body, Data, MessageId, annotations::OwnedKey, message::Message,
};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Symbol, Value};

/// Largest AMQP frame the hub accepts and the device side offers; larger messages arrive in
/// several transfer frames.
pub const MAX_FRAME: u32 = 64 * 1024;
/// The port IoT Hub listens on for AMQP over TLS.
pub const AMQP_PORT: u16 = 5671;
/// The link property the twin and method links carry to pair their sender and receiver.
pub const CHANNEL_CORRELATION_ID: &str = "com.microsoft:channel-correlation-id";
/// The link property with the service API version the SDK speaks.
pub const API_VERSION_PROPERTY: &str = "com.microsoft:api-version";
/// Application property with the method name on a method request.
pub(crate) const METHOD_NAME: &str = "IoThub-methodname";
/// Application property with the status on a method response.
pub(crate) const METHOD_STATUS: &str = "IoThub-status";
/// Twin message annotation: the operation (`GET`, `PATCH`, `PUT`, `DELETE`).
pub const TWIN_OPERATION: &str = "operation";
/// Twin message annotation: the resource the operation acts on (see `RESOURCE_*`).
pub(crate) const TWIN_RESOURCE: &str = "resource";
/// Twin message annotation on an answer: the HTTP-like status (200, 204, 4xx).
pub const TWIN_STATUS: &str = "status";
/// Twin message annotation on an answer: the twin's version after the operation.
pub(crate) const TWIN_VERSION: &str = "version";
/// Twin resource: reported properties (PATCH).
pub(crate) const RESOURCE_REPORTED: &str = "/properties/reported";
/// Twin resource: the desired-updates subscription (PUT enables, DELETE disables).
pub(crate) const RESOURCE_DESIRED_NOTIFICATIONS: &str = "/notifications/twin/properties/desired";

/// What a link address names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// `/devices/{id}/messages/events`: device-to-cloud messages.
    Telemetry,
    /// `/devices/{id}/messages/devicebound`: cloud-to-device messages.
    C2d,
    /// `/devices/{id}/twin`: twin requests and answers.
    Twin,
    /// `/devices/{id}/methods/devicebound`: direct method calls and answers.
    Methods,
}

impl LinkKind {
    /// The link's name for messages, with its address suffix.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Telemetry => "telemetry (messages/events)",
            LinkKind::C2d => "cloud-to-device (messages/devicebound)",
            LinkKind::Twin => "twin",
            LinkKind::Methods => "direct methods (methods/devicebound)",
        }
    }

    /// Whether the device may attach as `sender` (true) or receiver (false) on this link.
    pub fn allows(self, device_sends: bool) -> bool {
        match self {
            LinkKind::Telemetry => device_sends,
            LinkKind::C2d => !device_sends,
            LinkKind::Twin | LinkKind::Methods => true,
        }
    }
}

/// What a device attached or sent on its AMQP links that IoT Hub would not take. Each message
/// quotes the value (escaped) and says what IoT Hub expects; the hub sends it back as the AMQP
/// error's description.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum LinkError {
    /// A link address that is not one of IoT Hub's device addresses.
    #[error(
        "link address \"{}\" is not one of IoT Hub's device addresses (/devices/{{id}}/messages/events, /messages/devicebound, /twin, /methods/devicebound)",
        crate::text::escape_controls(.0)
    )]
    NotADeviceAddress(String),
    /// A module's link address: the local hub serves devices only.
    #[error(
        "link address \"{}\" names a module; the local hub serves devices only",
        crate::text::escape_controls(.0)
    )]
    ModuleAddress(String),
    /// The device id in the address, or the request's correlation id, breaks IoT Hub's encoding
    /// rules (the device id's %-escapes, a `$rid`'s characters).
    #[error(transparent)]
    Encoding(#[from] azure::AzureError),
    /// A twin request or method response without the correlation id its answer is matched by.
    #[error("{0} without a correlation-id")]
    NoCorrelationId(&'static str),
    /// A twin request without the `operation` annotation.
    #[error("twin request without the `operation` annotation")]
    NoTwinOperation,
    /// A twin operation and resource IoT Hub does not serve.
    #[error(
        "twin operation {} on {} is not one IoT Hub knows",
        crate::text::escape_controls(.operation),
        crate::text::escape_controls(.resource.as_deref().unwrap_or("no resource"))
    )]
    UnknownTwinOperation {
        /// The `operation` annotation, as sent.
        operation: String,
        /// The `resource` annotation, if any.
        resource: Option<String>,
    },
    /// A method response without its numeric status.
    #[error("method response without a numeric `{METHOD_STATUS}`")]
    NoMethodStatus,
    /// A message from the device on the link only the hub sends on.
    #[error("the device sent on its cloud-to-device link")]
    SentOnCloudToDevice,
}

/// Parse a link address: `(device id, kind)`, or the reason it is not one of IoT Hub's.
pub(crate) fn parse_address(address: &str) -> Result<(String, LinkKind), LinkError> {
    let path = match address.strip_prefix("amqps://") {
        Some(rest) => rest.find('/').map(|i| &rest[i..]).unwrap_or(""),
        None => address,
    };
    let bad = || LinkError::NotADeviceAddress(address.to_string());
    let rest = path.strip_prefix("/devices/").ok_or_else(bad)?;
    let (id, tail) = rest.split_once('/').ok_or_else(bad)?;
    let kind = match tail {
        "messages/events" => LinkKind::Telemetry,
        "messages/devicebound" => LinkKind::C2d,
        "twin" => LinkKind::Twin,
        "methods/devicebound" => LinkKind::Methods,
        t if t.starts_with("modules/") => {
            return Err(LinkError::ModuleAddress(address.to_string()));
        }
        _ => return Err(bad()),
    };
    let id = azure::url_decode(id, "device id")?;
    if id.is_empty() {
        return Err(bad());
    }
    Ok((id, kind))
}

/// The text of an AMQP value as IoT Hub puts it in a property bag.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Symbol(s) => s.as_str().to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Ubyte(n) => n.to_string(),
        Value::Ushort(n) => n.to_string(),
        Value::Uint(n) => n.to_string(),
        Value::Ulong(n) => n.to_string(),
        Value::Byte(n) => n.to_string(),
        Value::Short(n) => n.to_string(),
        Value::Int(n) => n.to_string(),
        Value::Long(n) => n.to_string(),
        Value::Timestamp(t) => t.milliseconds().to_string(),
        other => format!("{other:?}"),
    }
}

fn simple_text(v: &SimpleValue) -> String {
    match v {
        SimpleValue::String(s) => s.clone(),
        SimpleValue::Symbol(s) => s.as_str().to_string(),
        SimpleValue::Bool(b) => b.to_string(),
        SimpleValue::Ubyte(n) => n.to_string(),
        SimpleValue::Ushort(n) => n.to_string(),
        SimpleValue::Uint(n) => n.to_string(),
        SimpleValue::Ulong(n) => n.to_string(),
        SimpleValue::Byte(n) => n.to_string(),
        SimpleValue::Short(n) => n.to_string(),
        SimpleValue::Int(n) => n.to_string(),
        SimpleValue::Long(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

fn integer(v: &SimpleValue) -> Option<i64> {
    match v {
        SimpleValue::Int(n) => Some(i64::from(*n)),
        SimpleValue::Long(n) => Some(*n),
        SimpleValue::Uint(n) => Some(i64::from(*n)),
        SimpleValue::Short(n) => Some(i64::from(*n)),
        SimpleValue::Ushort(n) => Some(i64::from(*n)),
        SimpleValue::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// An AMQP message id (string, ulong, UUID or binary) as the text IoT Hub puts in `$.mid`.
pub fn id_text(id: &MessageId) -> String {
    match id {
        MessageId::String(s) => s.clone(),
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Uuid(u) => {
            let b: &[u8] = u.as_ref();
            uuid_text(b)
        }
        MessageId::Binary(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
    }
}

fn uuid_text(b: &[u8]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    if hex.len() != 32 {
        return hex;
    }
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The bytes of a message body (data sections joined; a string or binary value as is).
pub fn body_bytes(body: &Body<Value>) -> Vec<u8> {
    match body {
        Body::Data(batch) => batch.iter().flat_map(|d| d.0.iter().copied()).collect(),
        Body::Value(v) => match &v.0 {
            Value::Binary(b) => b.to_vec(),
            Value::String(s) => s.clone().into_bytes(),
            Value::Null => Vec::new(),
            other => value_text(other).into_bytes(),
        },
        Body::Sequence(_) | Body::Empty => Vec::new(),
    }
}

fn annotation<'m>(m: &'m Message<Body<Value>>, key: &str) -> Option<&'m Value> {
    m.message_annotations
        .as_ref()?
        .0
        .iter()
        .find(|(k, _)| matches!(k, OwnedKey::Symbol(s) if s.as_str() == key))
        .map(|(_, v)| v)
}

fn app_property<'m>(m: &'m Message<Body<Value>>, key: &str) -> Option<&'m SimpleValue> {
    m.application_properties
        .as_ref()?
        .0
        .iter()
        .find(|(k, _)| k.as_str() == key)
        .map(|(_, v)| v)
}

fn correlation(m: &Message<Body<Value>>) -> Option<String> {
    m.properties.as_ref()?.correlation_id.as_ref().map(id_text)
}

/// A telemetry message's property bag as MQTT carries it, so a message reads the same
/// whichever transport sent it: every field of the AMQP properties section becomes the system
/// property IoT Hub maps it to (`$.mid`, `$.cid`, `$.uid`, `$.to`, `$.ct`, `$.ce`, `$.exp`;
/// the fields MQTT has no name for get the [`azure::sys`] names of their own), the
/// annotations with an MQTT name (`iothub-creation-time-utc` → `$.ctime`,
/// `iothub-interface-id` → `$.ifid`) take it and the other annotations keep theirs (IoT Hub
/// stamps `iothub-*` as system properties); only the application properties section is
/// application properties.
pub fn telemetry_properties(m: &Message<Body<Value>>) -> Properties {
    use azure::sys;
    let mut p = Properties::new();
    let mut put = |k: &str, v: String| p.0.push((k.to_string(), v));
    if let Some(props) = &m.properties {
        let text = |s: &Option<String>| s.clone();
        let symbol = |s: &Option<Symbol>| s.as_ref().map(|s| s.as_str().to_string());
        let time = |t: &Option<fe2o3_amqp::types::primitives::Timestamp>| {
            t.as_ref().map(|t| t.milliseconds().to_string())
        };
        let fields = [
            (sys::MESSAGE_ID, props.message_id.as_ref().map(id_text)),
            (
                sys::USER_ID,
                props
                    .user_id
                    .as_ref()
                    .map(|u| String::from_utf8_lossy(u).into_owned()),
            ),
            (sys::TO, text(&props.to)),
            (sys::AMQP_SUBJECT, text(&props.subject)),
            (sys::AMQP_REPLY_TO, text(&props.reply_to)),
            (
                sys::CORRELATION_ID,
                props.correlation_id.as_ref().map(id_text),
            ),
            (sys::CONTENT_TYPE, symbol(&props.content_type)),
            (sys::CONTENT_ENCODING, symbol(&props.content_encoding)),
            (sys::EXPIRY_TIME, time(&props.absolute_expiry_time)),
            (sys::AMQP_CREATION_TIME, time(&props.creation_time)),
            (sys::AMQP_GROUP_ID, text(&props.group_id)),
            (
                sys::AMQP_GROUP_SEQUENCE,
                props.group_sequence.map(|n| n.to_string()),
            ),
            (sys::AMQP_REPLY_TO_GROUP_ID, text(&props.reply_to_group_id)),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                put(k, v);
            }
        }
    }
    if let Some(a) = &m.message_annotations {
        for (k, v) in a.0.iter() {
            if let OwnedKey::Symbol(k) = k {
                let key = match k.as_str() {
                    "iothub-creation-time-utc" => sys::CREATION_TIME_UTC,
                    "iothub-interface-id" => sys::INTERFACE_ID,
                    other => other,
                };
                put(key, value_text(v));
            }
        }
    }
    if let Some(a) = &m.application_properties {
        for (k, v) in a.0.iter() {
            put(k, simple_text(v));
        }
    }
    p
}

/// What a device sends on its twin link, as the MQTT topic of the same request (the
/// correlation id becomes the `$rid`).
pub(crate) fn twin_request_topic(m: &Message<Body<Value>>) -> Result<(String, TwinOp), LinkError> {
    let rid = correlation(m).ok_or(LinkError::NoCorrelationId("twin request"))?;
    azure::check_rid(&rid)?;
    let op = annotation(m, TWIN_OPERATION)
        .map(value_text)
        .ok_or(LinkError::NoTwinOperation)?;
    let resource = annotation(m, TWIN_RESOURCE).map(value_text);
    match (op.as_str(), resource.as_deref()) {
        ("GET", _) => Ok((azure::twin_get_topic(&rid), TwinOp::Get)),
        ("PATCH", Some(RESOURCE_REPORTED)) => Ok((
            azure::twin_patch_reported_topic(&rid),
            TwinOp::PatchReported,
        )),
        ("PUT", Some(RESOURCE_DESIRED_NOTIFICATIONS)) => Ok((rid, TwinOp::SubscribeDesired)),
        ("DELETE", Some(RESOURCE_DESIRED_NOTIFICATIONS)) => Ok((rid, TwinOp::UnsubscribeDesired)),
        (op, r) => Err(LinkError::UnknownTwinOperation {
            operation: op.to_string(),
            resource: r.map(str::to_string),
        }),
    }
}

/// What a twin request on the twin link asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TwinOp {
    /// `GET` with no resource: the whole twin.
    Get,
    /// `PATCH /properties/reported`: update reported properties.
    PatchReported,
    /// `PUT /notifications/twin/properties/desired`: push desired updates from now on.
    SubscribeDesired,
    /// `DELETE /notifications/twin/properties/desired`: stop pushing desired updates.
    UnsubscribeDesired,
}

/// A method response from the device, as the MQTT topic of the same answer.
pub(crate) fn method_response_topic(m: &Message<Body<Value>>) -> Result<String, LinkError> {
    let rid = correlation(m).ok_or(LinkError::NoCorrelationId("method response"))?;
    azure::check_rid(&rid)?;
    let status = app_property(m, METHOD_STATUS)
        .and_then(integer)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or(LinkError::NoMethodStatus)?;
    Ok(azure::method_response_topic(status, &rid))
}

type Out = Message<Data>;

fn data(body: Vec<u8>) -> Data {
    Data(Binary::from(body))
}

/// A cloud-to-device message from its MQTT topic's property bag.
pub(crate) fn c2d_message(props: &Properties, body: Vec<u8>) -> Out {
    use fe2o3_amqp::types::messaging::Properties as P;
    let mut p = P::default();
    let mut app = fe2o3_amqp::types::messaging::ApplicationProperties::default();
    for (k, v) in &props.0 {
        match k.as_str() {
            azure::sys::MESSAGE_ID => p.message_id = Some(MessageId::String(v.clone())),
            azure::sys::CORRELATION_ID => p.correlation_id = Some(MessageId::String(v.clone())),
            azure::sys::CONTENT_TYPE => p.content_type = Some(Symbol::from(v.as_str())),
            azure::sys::CONTENT_ENCODING => p.content_encoding = Some(Symbol::from(v.as_str())),
            azure::sys::TO => p.to = Some(v.clone()),
            _ => {
                app.0.insert(k.clone(), SimpleValue::String(v.clone()));
            }
        }
    }
    Message::builder()
        .properties(p)
        .application_properties(app)
        .body(data(body))
        .build()
}

fn annotations(pairs: Vec<(&str, Value)>) -> fe2o3_amqp::types::messaging::MessageAnnotations {
    let mut a = fe2o3_amqp::types::messaging::MessageAnnotations::default();
    for (k, v) in pairs {
        a.0.insert(OwnedKey::Symbol(Symbol::from(k)), v);
    }
    a
}

/// A twin response: the request's correlation id, `status` and `version` annotations.
pub(crate) fn twin_response(status: u16, rid: &str, version: Option<u64>, body: Vec<u8>) -> Out {
    use fe2o3_amqp::types::messaging::Properties as P;
    let mut ann = vec![(TWIN_STATUS, Value::Int(i32::from(status)))];
    if let Some(v) = version {
        ann.push((TWIN_VERSION, Value::Long(v as i64)));
    }
    let p = P {
        correlation_id: Some(MessageId::String(rid.to_string())),
        ..P::default()
    };
    Message::builder()
        .properties(p)
        .message_annotations(annotations(ann))
        .body(data(body))
        .build()
}

/// A desired-properties update pushed on the twin link (no correlation id: the SDK takes a
/// message without one as a patch).
pub(crate) fn twin_desired(version: u64, body: Vec<u8>) -> Out {
    Message::builder()
        .message_annotations(annotations(vec![(
            TWIN_VERSION,
            Value::Long(version as i64),
        )]))
        .body(data(body))
        .build()
}

/// A direct-method request: the method name as `IoThub-methodname`, the hub's request id
/// as the correlation id.
pub(crate) fn method_request(name: &str, rid: &str, body: Vec<u8>) -> Out {
    use fe2o3_amqp::types::messaging::Properties as P;
    let mut app = fe2o3_amqp::types::messaging::ApplicationProperties::default();
    app.0
        .insert(METHOD_NAME.into(), SimpleValue::String(name.to_string()));
    let p = P {
        correlation_id: Some(MessageId::String(rid.to_string())),
        ..P::default()
    };
    Message::builder()
        .properties(p)
        .application_properties(app)
        .body(data(body))
        .build()
}

/// The AMQP message for a PUBLISH the device-protocol engine sends, and the link it goes on.
pub fn outbound(device: &str, topic: &str, payload: Vec<u8>) -> Option<(LinkKind, Out)> {
    if let Ok((dev, props)) = azure::parse_c2d_topic(topic) {
        return (dev == device).then(|| (LinkKind::C2d, c2d_message(&props, payload)));
    }
    if let Ok(r) = azure::parse_twin_response(topic) {
        return Some((
            LinkKind::Twin,
            twin_response(r.status, &r.rid, r.version, payload),
        ));
    }
    if let Ok(v) = azure::parse_twin_desired_topic(topic) {
        return Some((LinkKind::Twin, twin_desired(v, payload)));
    }
    if let Ok((name, rid)) = azure::parse_method_request(topic) {
        return Some((LinkKind::Methods, method_request(&name, &rid, payload)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp::types::messaging::{AmqpValue, ApplicationProperties, Properties as P};

    #[test]
    fn addresses_of_every_sdk_parse_and_others_are_refused_with_the_reason() {
        assert_eq!(
            parse_address("/devices/dev1/messages/events").unwrap(),
            ("dev1".into(), LinkKind::Telemetry)
        );
        assert_eq!(
            parse_address("amqps://hub.azure-devices.net/devices/dev1/messages/devicebound")
                .unwrap(),
            ("dev1".into(), LinkKind::C2d)
        );
        assert_eq!(
            parse_address("/devices/a%2Bb/twin").unwrap(),
            ("a+b".into(), LinkKind::Twin)
        );
        assert_eq!(
            parse_address("/devices/d/methods/devicebound").unwrap().1,
            LinkKind::Methods
        );
        let module = parse_address("/devices/d/modules/m/twin").unwrap_err();
        assert_eq!(
            module,
            LinkError::ModuleAddress("/devices/d/modules/m/twin".into())
        );
        assert!(module.to_string().contains("module"));
        let cbs = parse_address("$cbs").unwrap_err();
        assert_eq!(cbs, LinkError::NotADeviceAddress("$cbs".into()));
        assert!(cbs.to_string().contains("not one of"));
        assert_eq!(
            parse_address("/devices//twin").unwrap_err(),
            LinkError::NotADeviceAddress("/devices//twin".into())
        );
        assert!(matches!(
            parse_address("/devices/a%zz/twin").unwrap_err(),
            LinkError::Encoding(azure::AzureError::Escape { .. })
        ));
        assert!(LinkKind::Telemetry.allows(true) && !LinkKind::Telemetry.allows(false));
        assert!(LinkKind::C2d.allows(false) && !LinkKind::C2d.allows(true));
    }

    fn msg(
        props: P,
        ann: Vec<(&str, Value)>,
        app: Vec<(&str, SimpleValue)>,
        body: &[u8],
    ) -> Message<Body<Value>> {
        let mut a = ApplicationProperties::default();
        for (k, v) in app {
            a.0.insert(k.to_string(), v);
        }
        Message {
            header: None,
            delivery_annotations: None,
            message_annotations: Some(annotations(ann)),
            properties: Some(props),
            application_properties: Some(a),
            body: Body::Data(vec![data(body.to_vec())].into()),
            footer: None,
        }
    }

    #[test]
    fn telemetry_amqp_properties_and_iothub_annotations_are_system_properties_only_the_application_section_is_application()
     {
        let p = P {
            message_id: Some(MessageId::String("m1".into())),
            correlation_id: Some(MessageId::Ulong(7)),
            to: Some("/devices/d/messages/events".into()),
            user_id: Some(Binary::from(b"u".to_vec())),
            subject: Some("s".into()),
            content_type: Some(Symbol::from("application/json")),
            content_encoding: Some(Symbol::from("utf-8")),
            absolute_expiry_time: Some(fe2o3_amqp::types::primitives::Timestamp::from(5)),
            creation_time: Some(fe2o3_amqp::types::primitives::Timestamp::from(4)),
            group_sequence: Some(3),
            ..P::default()
        };
        let m = msg(
            p,
            vec![
                ("iothub-creation-time-utc", Value::String("t".into())),
                ("iothub-interface-id", Value::String("dtmi:x;1".into())),
                ("iothub-other", Value::String("o".into())),
            ],
            vec![("temperatureAlert", SimpleValue::String("true".into()))],
            b"{}",
        );
        let props = telemetry_properties(&m);
        assert_eq!(props.get("$.mid"), Some("m1"));
        assert_eq!(props.get("$.cid"), Some("7"));
        assert_eq!(props.get("$.ct"), Some("application/json"));
        assert_eq!(props.get("$.ce"), Some("utf-8"));
        assert_eq!(props.get("$.ctime"), Some("t"));
        assert_eq!(props.get("$.ifid"), Some("dtmi:x;1"));
        assert_eq!(props.get("temperatureAlert"), Some("true"));
        // Only the application properties section is application properties.
        assert_eq!(
            props.application().collect::<Vec<_>>(),
            [("temperatureAlert", "true")]
        );
        let system: std::collections::BTreeMap<_, _> = props.system().collect();
        let expected = [
            ("message_id", "m1"),
            ("correlation_id", "7"),
            ("to", "/devices/d/messages/events"),
            ("user_id", "u"),
            ("subject", "s"),
            ("content_type", "application/json"),
            ("content_encoding", "utf-8"),
            ("absolute_expiry_time", "5"),
            ("creation_time", "4"),
            ("group_sequence", "3"),
            ("iothub-creation-time-utc", "t"),
            ("iothub-interface-id", "dtmi:x;1"),
            ("iothub-other", "o"),
        ];
        assert_eq!(system, expected.into_iter().collect());
        assert_eq!(body_bytes(&m.body), b"{}");
        let v: Body<Value> = Body::Value(AmqpValue(Value::String("x".into())));
        assert_eq!(body_bytes(&v), b"x");
    }

    #[test]
    fn twin_requests_become_the_mqtt_topics_with_the_correlation_id_as_rid() {
        let corr = |c: &str| P {
            correlation_id: Some(MessageId::String(c.into())),
            ..P::default()
        };
        let get = msg(
            corr("4f1c-77"),
            vec![(TWIN_OPERATION, Value::String("GET".into()))],
            vec![],
            b"",
        );
        assert_eq!(
            twin_request_topic(&get).unwrap(),
            ("$iothub/twin/GET/?$rid=4f1c-77".into(), TwinOp::Get)
        );
        let patch = msg(
            corr("r2"),
            vec![
                (TWIN_OPERATION, Value::String("PATCH".into())),
                (TWIN_RESOURCE, Value::String(RESOURCE_REPORTED.into())),
            ],
            vec![],
            b"{\"a\":1}",
        );
        assert_eq!(
            twin_request_topic(&patch).unwrap().0,
            "$iothub/twin/PATCH/properties/reported/?$rid=r2"
        );
        let put = msg(
            corr("r3"),
            vec![
                (TWIN_OPERATION, Value::String("PUT".into())),
                (
                    TWIN_RESOURCE,
                    Value::String(RESOURCE_DESIRED_NOTIFICATIONS.into()),
                ),
            ],
            vec![],
            b" ",
        );
        assert_eq!(
            twin_request_topic(&put).unwrap().1,
            TwinOp::SubscribeDesired
        );
        let none = msg(P::default(), vec![], vec![], b"");
        let refused = twin_request_topic(&none).unwrap_err();
        assert_eq!(refused, LinkError::NoCorrelationId("twin request"));
        assert_eq!(refused.to_string(), "twin request without a correlation-id");
        let bad_rid = msg(
            corr("a b"),
            vec![(TWIN_OPERATION, Value::String("GET".into()))],
            vec![],
            b"",
        );
        assert!(matches!(
            twin_request_topic(&bad_rid).unwrap_err(),
            LinkError::Encoding(azure::AzureError::Rid(_))
        ));
    }

    #[test]
    fn method_answers_and_requests_round_trip_through_the_mqtt_topics() {
        let resp = msg(
            P {
                correlation_id: Some(MessageId::String("17".into())),
                ..P::default()
            },
            vec![],
            vec![(METHOD_STATUS, SimpleValue::Int(200))],
            b"{}",
        );
        assert_eq!(
            method_response_topic(&resp).unwrap(),
            "$iothub/methods/res/200/?$rid=17"
        );
        let (kind, m) = outbound(
            "d",
            &azure::method_request_topic("reboot", "17"),
            b"{}".to_vec(),
        )
        .unwrap();
        assert_eq!(kind, LinkKind::Methods);
        let app = m.application_properties.unwrap();
        assert_eq!(
            app.0.get(METHOD_NAME),
            Some(&SimpleValue::String("reboot".into()))
        );
        assert_eq!(
            m.properties.unwrap().correlation_id,
            Some(MessageId::String("17".into()))
        );
    }

    #[test]
    fn hub_publishes_map_to_the_right_link() {
        let props = Properties::new()
            .with(azure::sys::MESSAGE_ID, "c2d-1")
            .with("k", "v");
        let (kind, m) = outbound("d", &azure::c2d_topic("d", &props), b"x".to_vec()).unwrap();
        assert_eq!(kind, LinkKind::C2d);
        assert_eq!(
            m.properties.unwrap().message_id,
            Some(MessageId::String("c2d-1".into()))
        );
        assert!(outbound("other", &azure::c2d_topic("d", &props), vec![]).is_none());
        let (kind, m) =
            outbound("d", &azure::twin_response_topic(204, "r", Some(3)), vec![]).unwrap();
        assert_eq!(kind, LinkKind::Twin);
        let ann = m.message_annotations.unwrap();
        assert_eq!(
            ann.0.get(&OwnedKey::Symbol(Symbol::from(TWIN_STATUS))),
            Some(&Value::Int(204))
        );
        assert_eq!(
            outbound("d", &azure::twin_desired_topic(4), vec![])
                .unwrap()
                .0,
            LinkKind::Twin
        );
    }
}
