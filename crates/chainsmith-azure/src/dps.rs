//! The Device Provisioning Service's device protocols, MQTT and the REST API over HTTPS: the
//! exact strings and JSON shapes.
//!
//! Sources: Microsoft's "Communicate with DPS using the MQTT protocol" page and the SDKs'
//! provisioning transports (azure-iot-sdk-python
//! `azure/iot/device/provisioning/pipeline/mqtt_topic_provisioning.py` and `constant.py`,
//! Node `azure-iot-provisioning-device-mqtt/dist/mqtt.js`):
//!
//! | what              | string                                                                  |
//! |-------------------|-------------------------------------------------------------------------|
//! | client id         | the registration id                                                     |
//! | username          | `{idScope}/registrations/{registrationId}/api-version=2019-03-31[&ClientVersion=…]` (no `?`) |
//! | subscribe         | `$dps/registrations/res/#`                                              |
//! | register          | `$dps/registrations/PUT/iotdps-register/?$rid={rid}`                    |
//! | poll              | `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}` |
//! | response          | `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}]`         |
//!
//! The SDKs read a response's status from the topic: below 300 is an answer (`202` +
//! `"status":"assigning"`, then `200` + `"status":"assigned"`), 300–428 a failure whose body is
//! DPS's error JSON, 429 and up "try again after `retry-after`".
//!
//! Over AMQP (5671, and AMQP over WebSockets on 443 at `/$iothub/websocket`; sources: Node
//! `azure-iot-provisioning-device-amqp/dist/amqp.js`, C `prov_transport_amqp_common.c`, .NET
//! `ProvisioningTransportHandlerAmqp.cs` and `ProvisioningErrorDetailsAmqp.cs`) the device
//! attaches a receiver and then a sender link at one address and sends requests whose
//! application properties say what they are:
//!
//! | what              | AMQP                                                                    |
//! |-------------------|-------------------------------------------------------------------------|
//! | link address      | `{idScope}/registrations/{registrationId}` (C: `amqps://{host}/` before it) |
//! | link property     | `com.microsoft:api-version` = `2019-03-31` (and `com.microsoft:client-version`) |
//! | register          | `iotdps-operation-type` = `iotdps-register`, body = the register JSON   |
//! | poll              | `iotdps-operation-type` = `iotdps-get-operationstatus`, `iotdps-operation-id` = {id} |
//! | request id        | the message's `correlation-id`, copied onto the answer                  |
//! | answer (< 300)    | a message on the receiver link, body = the JSON, `retry-after` = {s}     |
//! | refusal (≥ 300)   | the request's delivery rejected, error description = DPS's error JSON   |
//!
//! The SDKs read an answer's status from its JSON (`assigning`, `assigned`), never from an
//! application property (the C SDK names `iotdps-status` but does not read it), so none is
//! sent. A refusal's condition only decides whether the SDK tries again: Node retries
//! `amqp:internal-error` and `com.microsoft:device-container-throttled`, .NET reads the
//! status from the JSON's `errorCode` (see [`amqp_refusal_condition`]).
//!
//! Over HTTPS (Microsoft's REST reference "Runtime Registration - Register Device" and
//! "Operation Status Lookup"; Node `azure-iot-provisioning-device-http/dist/http.js`) the same
//! bodies travel as `PUT /{idScope}/registrations/{registrationId}/register?api-version=…` and
//! `GET /{idScope}/registrations/{registrationId}/operations/{operationId}?api-version=…`, with
//! the status in the status line and `retry-after` a response header; the SDKs read it the
//! same way (below 300 an answer, 429 and up "retry").

use serde::{Deserialize, Serialize};

use super::{AzureError, check_rid, path_decode, url_decode};

/// The filter every SDK subscribes to before registering.
pub const RESPONSE_FILTER: &str = "$dps/registrations/res/#";
/// The api-version the Python (`PROVISIONING_API_VERSION`) and Node
/// (`ProvisioningDeviceConstants.apiVersion`) SDKs send.
pub const API_VERSION: &str = "2019-03-31";
/// The api-version of the 2021 GA service API (the C and .NET SDKs' newer releases).
pub const API_VERSION_2021: &str = "2021-06-01";
/// The certificate-management preview: the register body may carry `csr` and the answer
/// `issuedCertificateChain`.
pub const API_VERSION_CSR: &str = "2025-07-01-preview";
/// The earlier certificate-issuance preview (Python SDK's preview branch,
/// `samples/cert-mgmt/certificate_issuance.py`): `clientCertificateCsr` → `issuedClientCertificate`.
const API_VERSION_CSR_2021: &str = "2021-11-01-preview";
/// api-versions the local DPS accepts in the username.
pub(crate) const API_VERSIONS: [&str; 4] = [
    API_VERSION,
    API_VERSION_2021,
    API_VERSION_CSR_2021,
    API_VERSION_CSR,
];
/// The global device endpoint the SDK samples pass as `provisioning_host`.
pub const GLOBAL_ENDPOINT: &str = "global.azure-devices-provisioning.net";
/// Seconds a device is told to wait before polling (real DPS says 3; the Python SDK waits its
/// own 2 s after the register answer and honours this only for polls).
pub const RETRY_AFTER_SECS: u32 = 1;

const REGISTER_PREFIX: &str = "$dps/registrations/PUT/iotdps-register/?";
const STATUS_PREFIX: &str = "$dps/registrations/GET/iotdps-get-operationstatus/?";
const RESPONSE_PREFIX: &str = "$dps/registrations/res/";

/// The application property naming a request's operation ([`OPERATION_REGISTER`] or
/// [`OPERATION_STATUS`]).
pub const OPERATION_TYPE_PROPERTY: &str = "iotdps-operation-type";
/// The application property with the operation id a poll asks about.
pub const OPERATION_ID_PROPERTY: &str = "iotdps-operation-id";
/// The application property on an answer with the seconds to wait before polling.
pub const RETRY_AFTER_PROPERTY: &str = "retry-after";
/// `iotdps-operation-type` of a register request.
pub const OPERATION_REGISTER: &str = "iotdps-register";
/// `iotdps-operation-type` of a poll.
pub const OPERATION_STATUS: &str = "iotdps-get-operationstatus";

/// `{idScope}/registrations/{registrationId}`: the address of both DPS links.
pub fn link_address(id_scope: &str, registration_id: &str) -> String {
    format!("{id_scope}/registrations/{registration_id}")
}

/// The path of a link address without the C SDK's `amqps://{host}` and a leading `/`.
fn link_path(address: &str) -> &str {
    let path = match address.strip_prefix("amqps://") {
        Some(rest) => rest.find('/').map(|i| &rest[i..]).unwrap_or(""),
        None => address,
    };
    path.strip_prefix('/').unwrap_or(path)
}

/// Whether a link address is DPS's (`{idScope}/registrations/…`) rather than one of IoT
/// Hub's device addresses (`/devices/{id}/…`, which wins for a device named `registrations`).
pub fn is_link_address(address: &str) -> bool {
    let mut segments = link_path(address).split('/');
    let first = segments.next();
    first != Some("devices") && segments.next() == Some("registrations")
}

/// A DPS link address that is not `{idScope}/registrations/{registrationId}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkAddressError {
    /// Missing or extra segments, or an empty scope or registration id.
    #[error(
        "link address \"{}\" is not DPS's {{idScope}}/registrations/{{registrationId}}; the SDKs attach e.g. 0ne00A1B2C3/registrations/my-device",
        crate::text::escape_controls(.0)
    )]
    Shape(String),
    /// The registration id's %-escapes are broken.
    #[error(transparent)]
    Encoding(#[from] AzureError),
}

/// Parse a DPS link address: `(id scope, registration id)`.
pub fn parse_link_address(address: &str) -> Result<(String, String), LinkAddressError> {
    let bad = || LinkAddressError::Shape(address.to_string());
    let mut it = link_path(address).split('/');
    let (Some(scope), Some("registrations"), Some(reg), None) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(bad());
    };
    if scope.is_empty() || reg.is_empty() {
        return Err(bad());
    }
    Ok((scope.to_string(), url_decode(reg, "registration id")?))
}

/// What a device sends on its DPS sender link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmqpRequest {
    /// `iotdps-register`: start a registration (the body is the register JSON).
    Register,
    /// `iotdps-get-operationstatus`: poll a registration that was answered 202.
    Status {
        /// `iotdps-operation-id`: the `operationId` of the 202 answer being polled.
        operation_id: String,
    },
}

/// A DPS request over AMQP whose application properties DPS would not take.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmqpRequestError {
    /// No `iotdps-operation-type` application property.
    #[error(
        "the message has no {OPERATION_TYPE_PROPERTY} application property; set it to {OPERATION_REGISTER} or {OPERATION_STATUS}"
    )]
    NoOperationType,
    /// An operation DPS does not serve to X.509 devices.
    #[error(
        "{OPERATION_TYPE_PROPERTY} \"{}\" is not an operation the local DPS serves; send {OPERATION_REGISTER} or {OPERATION_STATUS}",
        crate::text::escape_controls(.0)
    )]
    UnknownOperation(String),
    /// A poll without the operation it asks about.
    #[error(
        "{OPERATION_STATUS} without an {OPERATION_ID_PROPERTY} application property; send the operationId of the register answer"
    )]
    NoOperationId,
}

/// Classify a request by its `iotdps-operation-type` and `iotdps-operation-id` properties.
pub fn parse_amqp_request(
    operation_type: Option<&str>,
    operation_id: Option<&str>,
) -> Result<AmqpRequest, AmqpRequestError> {
    match operation_type {
        None => Err(AmqpRequestError::NoOperationType),
        Some(OPERATION_REGISTER) => Ok(AmqpRequest::Register),
        Some(OPERATION_STATUS) => match operation_id {
            Some(id) if !id.is_empty() => Ok(AmqpRequest::Status {
                operation_id: id.to_string(),
            }),
            _ => Err(AmqpRequestError::NoOperationId),
        },
        Some(other) => Err(AmqpRequestError::UnknownOperation(other.to_string())),
    }
}

/// The AMQP error condition a refused request's delivery is rejected with, by DPS status:
/// the conditions the Node SDK's `translateError` knows, so it retries exactly what DPS says
/// to retry (429 and 5xx).
pub fn amqp_refusal_condition(status: u16) -> &'static str {
    match status {
        400 => "com.microsoft:argument-error",
        401 | 403 => "amqp:unauthorized-access",
        404 => "amqp:not-found",
        429 => "com.microsoft:device-container-throttled",
        _ => "amqp:internal-error",
    }
}

/// A parsed DPS MQTT username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Username {
    /// The DPS instance's ID scope, e.g. `0ne00000A0A`.
    pub id_scope: String,
    /// The device's registration id (also its MQTT client id).
    pub registration_id: String,
    /// `api-version`, when given (`2019-03-31`; the certificate previews use later ones).
    pub api_version: Option<String>,
    /// Every query parameter, decoded, in order (`api-version`, `ClientVersion`, …).
    pub params: Vec<(String, String)>,
}

/// `{idScope}/registrations/{registrationId}/api-version={api}`.
pub fn username(id_scope: &str, registration_id: &str, api_version: &str) -> String {
    format!("{id_scope}/registrations/{registration_id}/api-version={api_version}")
}

/// Whether a CONNECT username is DPS's (its second segment is `registrations` and it has no
/// `?`), as opposed to IoT Hub's `{host}/{deviceId}/?api-version=…`.
pub(crate) fn is_dps_username(s: &str) -> bool {
    !s.contains('?') && s.split('/').nth(1) == Some("registrations")
}

/// Parse `{idScope}/registrations/{registrationId}/api-version=…&ClientVersion=…`.
pub(crate) fn parse_username(s: &str) -> Result<Username, AzureError> {
    let bad = || AzureError::Username(s.to_string());
    let mut it = s.splitn(4, '/');
    let (Some(scope), Some("registrations"), Some(reg), Some(query)) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(bad());
    };
    if scope.is_empty() || reg.is_empty() || query.contains('/') {
        return Err(bad());
    }
    let (params, api_version) = crate::username_query(query)?;
    Ok(Username {
        id_scope: scope.to_string(),
        registration_id: url_decode(reg, "registration id")?,
        api_version,
        params,
    })
}

/// `$dps/registrations/PUT/iotdps-register/?$rid={rid}`.
pub fn register_topic(rid: &str) -> String {
    format!("{REGISTER_PREFIX}$rid={rid}")
}

/// `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}`.
pub fn status_topic(rid: &str, operation_id: &str) -> String {
    format!("{STATUS_PREFIX}$rid={rid}&operationId={operation_id}")
}

/// `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}]`.
pub(crate) fn response_topic(status: u16, rid: &str, retry_after: Option<u32>) -> String {
    match retry_after {
        Some(s) => format!("{RESPONSE_PREFIX}{status}/?$rid={rid}&retry-after={s}"),
        None => format!("{RESPONSE_PREFIX}{status}/?$rid={rid}"),
    }
}

/// What a device publishes to DPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `$dps/registrations/PUT/iotdps-register/?$rid=…`: start a registration.
    Register {
        /// The request id the answer must carry back.
        rid: String,
    },
    /// `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=…&operationId=…`: poll a
    /// registration that was answered 202.
    Status {
        /// The request id the answer must carry back.
        rid: String,
        /// The `operationId` of the 202 answer being polled.
        operation_id: String,
    },
}

fn query(q: &str) -> impl Iterator<Item = (&str, &str)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Classify a device PUBLISH topic. Anything else is not DPS's protocol.
pub(crate) fn parse_request(topic: &str) -> Result<Request, AzureError> {
    let expected = "$dps/registrations/PUT/iotdps-register/?$rid={rid} or $dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={id}";
    let bad = || AzureError::Topic {
        topic: topic.to_string(),
        expected,
    };
    let get = |q: &str, key: &str| {
        query(q)
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    };
    if let Some(q) = topic.strip_prefix(REGISTER_PREFIX) {
        let rid = get(q, "$rid").ok_or_else(bad)?;
        return Ok(Request::Register {
            rid: check_rid(&rid)?.to_string(),
        });
    }
    if let Some(q) = topic.strip_prefix(STATUS_PREFIX) {
        let rid = get(q, "$rid").ok_or_else(bad)?;
        let op = get(q, "operationId").ok_or_else(bad)?;
        let operation_id = url_decode(&op, "operationId")?;
        return Ok(Request::Status {
            rid: check_rid(&rid)?.to_string(),
            operation_id,
        });
    }
    Err(bad())
}

/// A parsed response topic: (status, rid, retry-after seconds).
pub fn parse_response_topic(topic: &str) -> Result<(u16, String, Option<u32>), AzureError> {
    let bad = || AzureError::Topic {
        topic: topic.to_string(),
        expected: "$dps/registrations/res/{status}/?$rid={rid}",
    };
    let rest = topic.strip_prefix(RESPONSE_PREFIX).ok_or_else(bad)?;
    let (status, q) = rest.split_once("/?").ok_or_else(bad)?;
    let status = status
        .parse()
        .map_err(|_| AzureError::Status(status.to_string()))?;
    let mut rid = None;
    let mut retry = None;
    for (k, v) in query(q) {
        match k {
            "$rid" => rid = Some(v.to_string()),
            "retry-after" => retry = v.parse().ok(),
            _ => {}
        }
    }
    Ok((status, rid.ok_or_else(bad)?, retry))
}

// ---------------------------------------------------------------- the REST API

/// What a REST request asks of DPS, by its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestCall {
    /// `PUT …/registrations/{registrationId}/register`: start a registration.
    Register,
    /// `GET …/registrations/{registrationId}/operations/{operationId}`: poll one.
    Status {
        /// The `operationId` of the 202 answer being polled, decoded.
        operation_id: String,
    },
}

/// A DPS REST request's path and query, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestRequest {
    /// The DPS instance's ID scope (the first path segment).
    pub id_scope: String,
    /// The registration id of the path, percent-decoded.
    pub registration_id: String,
    /// The `api-version` query parameter, when given.
    pub api_version: Option<String>,
    /// Register or poll.
    pub call: RestCall,
}

/// `/{idScope}/registrations/{registrationId}/register?api-version={api}`.
pub fn register_path(id_scope: &str, registration_id: &str, api_version: &str) -> String {
    let regid = crate::url_encode(registration_id);
    format!("/{id_scope}/registrations/{regid}/register?api-version={api_version}")
}

/// `/{idScope}/registrations/{registrationId}/operations/{operationId}?api-version={api}`.
pub fn operation_path(
    id_scope: &str,
    registration_id: &str,
    operation_id: &str,
    api_version: &str,
) -> String {
    let (regid, op) = (
        crate::url_encode(registration_id),
        crate::url_encode(operation_id),
    );
    format!("/{id_scope}/registrations/{regid}/operations/{op}?api-version={api_version}")
}

/// Classify a request path (and its query): `None` when it is not one of DPS's device paths
/// (`/{idScope}/registrations/{registrationId}/register` or
/// `…/operations/{operationId}`); an error when it is, but an escape in it does not decode.
pub fn parse_rest_path(path: &str, q: Option<&str>) -> Option<Result<RestRequest, AzureError>> {
    let mut it = path.split('/');
    let (Some(""), Some(scope), Some("registrations"), Some(reg)) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return None;
    };
    let call = match (it.next(), it.next(), it.next()) {
        (Some("register"), None, _) => None,
        (Some("operations"), Some(op), None) if !op.is_empty() => Some(op),
        _ => return None,
    };
    if scope.is_empty() || reg.is_empty() {
        return None;
    }
    Some((|| {
        let call = match call {
            None => RestCall::Register,
            Some(op) => RestCall::Status {
                operation_id: path_decode(op, "operationId")?,
            },
        };
        let mut api_version = None;
        for (k, v) in query(q.unwrap_or("")) {
            if url_decode(k, "query parameter")? == "api-version" {
                api_version = Some(url_decode(v, "api-version")?);
            }
        }
        Ok(RestRequest {
            id_scope: scope.to_string(),
            registration_id: path_decode(reg, "registration id")?,
            api_version,
            call,
        })
    })())
}

// ---------------------------------------------------------------- JSON bodies

/// The register body: `{"registrationId":…,"payload":{…}}`; with the certificate-management
/// preview also `"csr"` (2025-07-01-preview) or `"clientCertificateCsr"` (2021-11-01-preview),
/// base64 DER PKCS#10.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// `registrationId`: the username's registration id again (DPS compares without case)
    /// and the certificate's CN.
    pub registration_id: String,
    /// `payload`: custom JSON the device sends; DPS hands it to custom allocation and echoes
    /// it in `registrationState.payload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// `csr` (or `clientCertificateCsr`): base64 DER PKCS#10 request for a certificate to be
    /// issued at registration (certificate-management preview).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "clientCertificateCsr"
    )]
    pub csr: Option<String>,
}

/// `registrationState` of an operation answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationState {
    /// `registrationId`: the registration this state belongs to.
    pub registration_id: String,
    /// `createdDateTimeUtc`: when the registration id first registered (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<String>,
    /// `assignedHub`: the IoT hub host name the device must connect to now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_hub: Option<String>,
    /// `deviceId`: the device id DPS created in that hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// `status`: `assigned`, `assigning`, `failed` or `disabled`.
    pub status: String,
    /// `substatus`: why this assignment ([`INITIAL_ASSIGNMENT`], [`REPROVISIONED_TO_INITIAL`], …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substatus: Option<String>,
    /// `lastUpdatedDateTimeUtc`: when this state last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_date_time_utc: Option<String>,
    /// `etag`: the version of this registration record, opaque to the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// `payload`: what a custom allocation webhook returned for the device ("Any object");
    /// absent when no webhook ran or it returned none (the device's own payload is not echoed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// `x509`: the certificate the device attested with and, for a group, the group's id
    /// (`X509RegistrationResult` of the DPS device REST reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<X509RegistrationResult>,
    /// Base64 DER certificates, leaf first (2025-07-01-preview; the 2021 preview's
    /// `issuedClientCertificate` is read as the same).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "issuedClientCertificate"
    )]
    pub issued_certificate_chain: Option<Vec<String>>,
}

/// `registrationState.x509` (DPS device REST reference, `X509RegistrationResult`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509RegistrationResult {
    /// `certificateInfo`: the device's own certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_info: Option<X509CertificateInfo>,
    /// `enrollmentGroupId`: the group that matched; absent for an individual enrollment (the
    /// reference has no individual-enrollment field: the registration id names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<String>,
    /// `signingCertificateInfo`: the certificate that signed the device's (a group's devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_certificate_info: Option<X509CertificateInfo>,
}

/// `X509CertificateInfo` of the DPS REST reference: every field required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509CertificateInfo {
    /// `subjectName`: the subject DN, most specific first (`CN=…, O=…`), as DPS shows it.
    pub subject_name: String,
    /// `sha1Thumbprint`: upper-case hex of the DER's SHA-1.
    pub sha1_thumbprint: String,
    /// `sha256Thumbprint`: upper-case hex of the DER's SHA-256.
    pub sha256_thumbprint: String,
    /// `issuerName`: the issuer DN, most specific first.
    pub issuer_name: String,
    /// `notBeforeUtc`: RFC 3339.
    pub not_before_utc: String,
    /// `notAfterUtc`: RFC 3339.
    pub not_after_utc: String,
    /// `serialNumber`: upper-case hex.
    pub serial_number: String,
    /// `version`: the X.509 version as people count it (3 for v3).
    pub version: i32,
}

/// An enrollment's `initialTwin`: `{"tags":{…},"properties":{"desired":{…}}}` (DPS service
/// REST reference, `InitialTwin`); also what a custom allocation webhook may return.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitialTwin {
    /// `tags`: the twin's tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<serde_json::Map<String, serde_json::Value>>,
    /// `properties`: only `desired` (a device reports its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<InitialTwinProperties>,
}

/// `InitialTwinProperties`: the desired properties.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitialTwinProperties {
    /// `desired`: the desired properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<serde_json::Map<String, serde_json::Value>>,
}

impl InitialTwin {
    /// The desired properties, if any.
    pub fn desired(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.properties.as_ref().and_then(|p| p.desired.as_ref())
    }
}

/// What a custom allocation webhook answers (`AllocationResponse`, Microsoft Learn,
/// "Understand custom allocation policies with Azure IoT Hub Device Provisioning Service").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationResponse {
    /// `iotHubHostName`: one of the request's `linkedHubs` (the page's table spells it
    /// `iotHubHostname`, its examples `iotHubHostName`: both are read).
    #[serde(default, alias = "iotHubHostname")]
    pub iot_hub_host_name: Option<String>,
    /// `initialTwin`: replaces the enrollment's.
    #[serde(default)]
    pub initial_twin: Option<InitialTwin>,
    /// `payload`: handed to the device in `registrationState.payload`.
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
}

/// The 202 and 200 answers: `{"operationId","status","registrationState"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationResponse {
    /// `operationId`: what the device polls with while the answer is `assigning`.
    pub operation_id: String,
    /// `status`: `assigning` (202: poll again after `retry-after`) or `assigned` (200).
    pub status: String,
    /// `registrationState`: the outcome, present once assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_state: Option<RegistrationState>,
}

/// Substatus of a first assignment.
pub const INITIAL_ASSIGNMENT: &str = "initialAssignment";
/// Substatus when a device registers again and keeps its data.
pub const REPROVISIONED_TO_INITIAL: &str = "reprovisionedToInitialAssignment";

/// DPS's error body: `{"errorCode":401002,"trackingId":…,"message":…,"timestampUtc":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// `errorCode`: HTTP status × 1000 + a detail (see [`code`]).
    pub error_code: u32,
    /// `trackingId`: an id to quote in a support request (a fresh one per error).
    pub tracking_id: String,
    /// `message`: the service's sentence (the local DPS says exactly what was wrong).
    pub message: String,
    /// `timestampUtc`: when the error happened (RFC 3339).
    pub timestamp_utc: String,
}

/// Error codes as DPS sends them: the HTTP status times 1000 plus a detail. Only codes seen in
/// DPS answers are used: 401002 (attestation failed: "Unauthorized", the code the SDKs'
/// issue threads show for a refused X.509 or key), 404201/404202 (resource not found; the
/// azure-docs issue #57082 reports both), 400004 (argument invalid). DPS publishes no 403
/// detail code; the local DPS keeps 403's detail at 000 and the topic status says 403.
pub mod code {
    /// 400004: an argument is invalid (a malformed request or body).
    pub(crate) const BAD_REQUEST: u32 = 400004;
    /// 401002: attestation failed (no enrollment accepts this certificate).
    pub(crate) const UNAUTHORIZED: u32 = 401002;
    /// 403000: forbidden (a disabled enrollment or registration).
    pub(crate) const FORBIDDEN: u32 = 403000;
    /// 404202: the polled operation id is unknown.
    pub(crate) const OPERATION_NOT_FOUND: u32 = 404202;
    /// 413000: the request body is larger than the service takes (the local DPS's detail
    /// code, as for 403).
    pub const TOO_LARGE: u32 = 413000;
    /// 429001: throttled, try again after `retry-after` (IoT Hub's `ThrottlingException`
    /// code, which DPS's throttling answers share).
    pub const THROTTLED: u32 = 429001;
    /// 400209: custom allocation failed (the webhook could not be reached, timed out, or
    /// answered something DPS could not use): what DPS answered a device when the webhook
    /// answered 401 ("Custom allocation failed with status code: 401").
    pub const CUSTOM_ALLOCATION_FAILED: u32 = 400209;
    /// 500000: the service failed inside (a bug in the local DPS, never the device's fault).
    pub(crate) const INTERNAL: u32 = 500000;
}

// ---------------------------------------------------------------- names

/// A fresh ID scope shaped like DPS's: `0ne` and 8 upper-case hex digits.
pub(crate) fn new_id_scope() -> String {
    let mut b = [0u8; 4];
    aws_lc_rs::rand::fill(&mut b).expect("system random source");
    format!("0ne{}", crate::pki::hex_upper(&b))
}

/// An ID scope DPS would not have: its value is in the message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ID scope {0:?} is not 1–32 letters and digits; DPS's look like 0ne00A1B2C3")]
pub struct IdScopeError(pub String);

/// Whether `s` is a usable ID scope: 1–32 letters and digits (DPS's own are `0ne` + 8 hex).
pub fn check_id_scope(s: &str) -> Result<(), IdScopeError> {
    if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(IdScopeError(s.to_string()));
    }
    Ok(())
}

/// A fresh operation id, shaped like DPS's (`4.{16 hex}.{uuid}`).
pub(crate) fn new_operation_id() -> String {
    let mut b = [0u8; 24];
    aws_lc_rs::rand::fill(&mut b).expect("system random source");
    let h = hex::encode(b);
    format!(
        "4.{}.{}-{}-{}-{}-{}",
        &h[..16],
        &h[16..24],
        &h[24..28],
        &h[28..32],
        &h[32..36],
        &h[36..48]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_of_the_sdks_parse() {
        // Python: urlencode(quote_via=quote) of api-version and ClientVersion.
        let py = "0ne00TEST01/registrations/sample-device-01/api-version=2019-03-31&ClientVersion=azure-iot-device%2F2.14.0";
        assert!(is_dps_username(py));
        let u = parse_username(py).unwrap();
        assert_eq!(u.id_scope, "0ne00TEST01");
        assert_eq!(u.registration_id, "sample-device-01");
        assert_eq!(u.api_version.as_deref(), Some(API_VERSION));
        assert_eq!(u.params[1].1, "azure-iot-device/2.14.0");
        // Node: encodeURIComponent(userAgent).
        let node = "0ne00ABCDEF/registrations/dev1/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1";
        assert_eq!(parse_username(node).unwrap().registration_id, "dev1");
        assert_eq!(
            username("0ne00ABCDEF", "dev1", API_VERSION_CSR),
            "0ne00ABCDEF/registrations/dev1/api-version=2025-07-01-preview"
        );
        // IoT Hub's usernames are not DPS's.
        assert!(!is_dps_username(
            "myhub.azure-devices.net/dev1/?api-version=2021-04-12"
        ));
        assert!(parse_username("scope/devices/dev1/api-version=1").is_err());
        assert!(parse_username("scope/registrations/").is_err());
    }

    #[test]
    fn topics_match_the_documented_examples() {
        assert_eq!(RESPONSE_FILTER, "$dps/registrations/res/#");
        assert_eq!(
            register_topic("1"),
            "$dps/registrations/PUT/iotdps-register/?$rid=1"
        );
        assert_eq!(
            status_topic(
                "2",
                "4.0123456789abcdef.01234567-89ab-cdef-0123-456789abcdef"
            ),
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=4.0123456789abcdef.01234567-89ab-cdef-0123-456789abcdef"
        );
        assert_eq!(
            response_topic(202, "1", Some(3)),
            "$dps/registrations/res/202/?$rid=1&retry-after=3"
        );
        assert_eq!(
            response_topic(200, "2", None),
            "$dps/registrations/res/200/?$rid=2"
        );
        assert_eq!(
            parse_response_topic("$dps/registrations/res/202/?$rid=1&retry-after=3").unwrap(),
            (202, "1".to_string(), Some(3))
        );
        let uuid = "0b1e7e4c-8d2f-4c3a-9f3e-0d6c5b4a3f21";
        assert_eq!(
            parse_request(&register_topic(uuid)).unwrap(),
            Request::Register { rid: uuid.into() }
        );
        assert_eq!(
            parse_request(&status_topic("7", "4.ab.cd")).unwrap(),
            Request::Status {
                rid: "7".into(),
                operation_id: "4.ab.cd".into()
            }
        );
        assert!(parse_request("$dps/registrations/PUT/iotdps-register/").is_err());
        assert!(parse_request("devices/d/messages/events/").is_err());
    }

    #[test]
    fn bodies_have_the_documented_shapes() {
        let r: RegisterRequest = serde_json::from_str(
            r#"{"registrationId":"sample-device-01","payload":{"modelId":"dtmi:com:example:Thermostat;1"}}"#,
        )
        .unwrap();
        assert_eq!(r.registration_id, "sample-device-01");
        assert_eq!(
            r.payload.unwrap()["modelId"],
            "dtmi:com:example:Thermostat;1"
        );
        let old: RegisterRequest =
            serde_json::from_str(r#"{"registrationId":"d","clientCertificateCsr":"AAA"}"#).unwrap();
        assert_eq!(old.csr.as_deref(), Some("AAA"));

        let assigning = OperationResponse {
            operation_id: "4.x".into(),
            status: "assigning".into(),
            registration_state: None,
        };
        assert_eq!(
            serde_json::to_value(&assigning).unwrap(),
            serde_json::json!({"operationId":"4.x","status":"assigning"})
        );
        let assigned: OperationResponse = serde_json::from_str(
            r#"{"operationId":"4.x","status":"assigned","registrationState":{"registrationId":"d","createdDateTimeUtc":"2026-01-01T00:00:00Z","assignedHub":"localhost","deviceId":"d","status":"assigned","substatus":"initialAssignment","lastUpdatedDateTimeUtc":"2026-01-01T00:00:00Z","etag":"IjAwMCI=","payload":{"a":1}}}"#,
        )
        .unwrap();
        let s = assigned.registration_state.unwrap();
        assert_eq!(s.assigned_hub.as_deref(), Some("localhost"));
        assert_eq!(s.substatus.as_deref(), Some(INITIAL_ASSIGNMENT));
        let e = ErrorBody {
            error_code: code::UNAUTHORIZED,
            tracking_id: "t".into(),
            message: "m".into(),
            timestamp_utc: "2026-01-01T00:00:00Z".into(),
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"errorCode":401002,"trackingId":"t","message":"m","timestampUtc":"2026-01-01T00:00:00Z"})
        );
    }

    #[test]
    fn amqp_addresses_and_requests_of_the_sdks() {
        // Node and .NET: bare; C: amqps://{host}/ before it.
        for a in [
            "0ne00ABCDEF/registrations/dev1",
            "/0ne00ABCDEF/registrations/dev1",
            "amqps://global.azure-devices-provisioning.net/0ne00ABCDEF/registrations/dev1",
        ] {
            assert!(is_link_address(a), "{a}");
            assert_eq!(
                parse_link_address(a).unwrap(),
                ("0ne00ABCDEF".to_string(), "dev1".to_string())
            );
        }
        assert_eq!(
            link_address("0ne00ABCDEF", "dev1"),
            "0ne00ABCDEF/registrations/dev1"
        );
        // IoT Hub's addresses stay IoT Hub's, even for a device named `registrations`.
        assert!(!is_link_address("/devices/registrations/messages/events"));
        assert!(!is_link_address("/devices/dev1/twin"));
        for bad in [
            "0ne00ABCDEF/registrations/",
            "/registrations/dev1",
            "0ne00ABCDEF/registrations/dev1/extra",
        ] {
            assert!(parse_link_address(bad).is_err(), "{bad}");
        }
        assert!(parse_link_address("s/registrations/a%zz").is_err());
        assert_eq!(
            parse_amqp_request(Some("iotdps-register"), None).unwrap(),
            AmqpRequest::Register
        );
        assert_eq!(
            parse_amqp_request(Some("iotdps-get-operationstatus"), Some("4.ab.cd")).unwrap(),
            AmqpRequest::Status {
                operation_id: "4.ab.cd".into()
            }
        );
        assert_eq!(
            parse_amqp_request(None, None),
            Err(AmqpRequestError::NoOperationType)
        );
        assert_eq!(
            parse_amqp_request(Some("iotdps-get-operationstatus"), None),
            Err(AmqpRequestError::NoOperationId)
        );
        let e = parse_amqp_request(Some("iotdps-get-registration\n"), None).unwrap_err();
        assert!(e.to_string().contains("iotdps-get-registration\\n"), "{e}");
        assert_eq!(amqp_refusal_condition(403), "amqp:unauthorized-access");
        assert_eq!(
            amqp_refusal_condition(429),
            "com.microsoft:device-container-throttled"
        );
    }

    #[test]
    fn scopes_and_operation_ids() {
        let s = new_id_scope();
        assert_eq!(s.len(), 11);
        assert!(s.starts_with("0ne"));
        assert!(
            s[3..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        );
        assert!(check_id_scope(&s).is_ok());
        assert!(check_id_scope("0ne 1").is_err());
        assert!(check_id_scope("").is_err());
        let op = new_operation_id();
        assert!(op.starts_with("4."));
        assert!(check_rid(&op.replace('.', "-")).is_ok());
    }

    #[test]
    fn rest_paths_of_the_node_sdk_parse_and_others_are_not_dps() {
        // Node: '/' + idScope + '/registrations/' + registrationId + '/register?api-version=…'.
        let r = parse_rest_path(
            "/0ne00ABCDEF/registrations/dev-1/register",
            Some("api-version=2019-03-31"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            r,
            RestRequest {
                id_scope: "0ne00ABCDEF".into(),
                registration_id: "dev-1".into(),
                api_version: Some(API_VERSION.into()),
                call: RestCall::Register,
            }
        );
        let s = parse_rest_path(
            "/0ne00ABCDEF/registrations/a%2Bb+c/operations/4.ab.cd-ef",
            None,
        )
        .unwrap()
        .unwrap();
        // In a path, `+` is itself; `%2B` is `+` too.
        assert_eq!(s.registration_id, "a+b+c");
        assert_eq!(s.api_version, None);
        assert_eq!(
            s.call,
            RestCall::Status {
                operation_id: "4.ab.cd-ef".into()
            }
        );
        assert!(
            parse_rest_path("/s/registrations/%zz/register", None)
                .unwrap()
                .is_err()
        );
        assert!(
            parse_rest_path("/s/registrations/%ff/register", None)
                .unwrap()
                .is_err()
        );
        for other in [
            "/",
            "/$iothub/websocket",
            "/s/registrations//register",
            "/s/registrations/d/register/more",
            "/s/registrations/d/operations/",
            "/s/devices/d/register",
            "//registrations/d/register",
        ] {
            assert_eq!(parse_rest_path(other, None), None, "{other}");
        }
        let p = register_path("0ne00ABCDEF", "a b", API_VERSION);
        let (path, q) = p.split_once('?').unwrap();
        assert_eq!(
            parse_rest_path(path, Some(q))
                .unwrap()
                .unwrap()
                .registration_id,
            "a b"
        );
        let p = operation_path("s", "d", "4.x", API_VERSION_CSR);
        let (path, q) = p.split_once('?').unwrap();
        let r = parse_rest_path(path, Some(q)).unwrap().unwrap();
        assert_eq!(r.api_version.as_deref(), Some(API_VERSION_CSR));
    }
}
