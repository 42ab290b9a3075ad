//! DPS's REST API on the hub's 443 listener, as the SDKs' HTTP transports speak it
//! (`azure-iot-provisioning-device-http`, the C SDK's `prov_transport_http_client`):
//! `PUT /{idScope}/registrations/{registrationId}/register?api-version=…` answers 202 with an
//! operation to poll, `GET …/operations/{operationId}?api-version=…` its state. The 443
//! listener's HTTP server ([`crate::hub::https`]) routes the paths [`wire::parse_rest_path`]
//! recognises here; the decision and the bodies are [`exchange`]'s, the same as over MQTT.
//!
//! X.509 attestation only: the device's certificate is the one on the TLS session, checked on
//! every request. A connection's first DPS request charges the hub's DPS session budget, as a
//! DPS CONNECT does over MQTT, and holds the slot until the connection closes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::exchange::{self, DpsAnswer, Registrant};
use super::{DpsRefusal, DpsRefusalKind, MAX_PAYLOAD_BYTES};
use crate::azure::dps::{self as wire, RestCall, RestRequest, code};
use crate::hub::budget::{BudgetPermit, BudgetRefusal};
use crate::hub::events::HubEvent;
use crate::hub::shared::{CONNECT_TIMEOUT, Shared};

/// Room beside the payload for the rest of a register body: the `csr` (a base64 PKCS#10; an
/// RSA-4096 key's is about 2.3 KB, the certificate-management preview takes RSA and ECC keys)
/// and the JSON around it. DPS documents no request size limit that we found.
pub const CSR_HEADROOM_BYTES: usize = 16 * 1024;
/// Largest request body DPS's REST API takes: the payload limit
/// ([`MAX_PAYLOAD_BYTES`], 32 KB) plus [`CSR_HEADROOM_BYTES`]. A larger one is answered 413
/// and the connection closed, unread.
pub const MAX_BODY_BYTES: usize = MAX_PAYLOAD_BYTES + CSR_HEADROOM_BYTES;

/// The `Content-Type` of DPS's answers, as the SDKs send their requests.
const JSON: &str = "application/json; charset=utf-8";

/// What one HTTPS connection holds of DPS: its session slot, from its first DPS request on.
#[derive(Default)]
pub(in crate::hub) struct DpsLink {
    session: Mutex<Option<Session>>,
}

/// An HTTPS connection's DPS session: its budget slot and the registration it first named.
struct Session {
    /// Given back when the connection closes.
    _slot: BudgetPermit,
    registration_id: String,
}

impl DpsLink {
    /// The connection ended (`reason`): give its DPS slot back and say so, when it had one
    /// (returned).
    pub fn end(&self, sh: &Shared, reason: String) -> bool {
        let session = self
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(s) = session {
            sh.emit(HubEvent::DpsDisconnected {
                registration_id: s.registration_id,
                reason,
            });
            return true;
        }
        false
    }

    /// Hold a DPS session slot for this connection (charged once, at its first admitted
    /// request; the pre-authentication slot is given back then, as after a DPS CONNECT), or
    /// the sentence saying which budget is full.
    fn hold(
        &self,
        sh: &Shared,
        peer: SocketAddr,
        pre_auth: &Mutex<Option<BudgetPermit>>,
        device: &Registrant,
    ) -> Result<(), BudgetRefusal> {
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        if session.is_some() {
            return Ok(());
        }
        let mut pre_auth = pre_auth.lock().unwrap_or_else(PoisonError::into_inner);
        // The socket lets the budget shut this connection down for a peer holding less.
        let socket = pre_auth.as_ref().and_then(BudgetPermit::socket);
        let (slot, _) = sh
            .dps_sessions
            .charge_evicting(peer.ip(), socket)
            .map_err(|full| sh.dps_sessions.refusal(full, peer.ip()))?;
        pre_auth.take();
        *session = Some(Session {
            _slot: slot,
            registration_id: device.registration_id.clone(),
        });
        sh.emit(HubEvent::DpsConnected {
            registration_id: device.registration_id.clone(),
            peer,
            api_version: device.api_version.clone(),
        });
        Ok(())
    }
}

/// One HTTPS connection, as a DPS request sees it.
pub(in crate::hub) struct DpsConn<'a> {
    /// The hub's shared state.
    pub sh: &'a Arc<Shared>,
    /// Where the connection comes from.
    pub peer: SocketAddr,
    /// The client's certificate chain from the TLS handshake (leaf first; empty without one).
    pub chain: &'a [Vec<u8>],
    /// The connection's pre-authentication slot, until DPS or an upgrade takes it.
    pub pre_auth: &'a Mutex<Option<BudgetPermit>>,
    /// Its DPS session.
    pub link: &'a DpsLink,
}

/// Answer one request on a DPS path (`rest` as [`wire::parse_rest_path`] read it): 202, 200
/// or DPS's error body, with `Content-Type` and `Retry-After` as DPS sends them.
pub(in crate::hub) async fn answer(
    c: DpsConn<'_>,
    req: Request<Incoming>,
    rest: Result<RestRequest, crate::azure::AzureError>,
) -> Response<Full<Bytes>> {
    let wanted = match &rest {
        Ok(RestRequest {
            call: RestCall::Status { .. },
            ..
        }) => Some(Method::GET),
        Ok(_) => Some(Method::PUT),
        // An undecodable path is refused whatever the method.
        Err(_) => None,
    };
    if let Some(wanted) = wanted.filter(|m| req.method() != m) {
        return wrong_method(req.method(), &wanted);
    }
    // The registration id as sent, until the path decodes: the refusal names it.
    let raw_registration_id = req.uri().path().split('/').nth(3).unwrap_or("").to_string();
    let (rest, registration_id) = match rest {
        Ok(r) => {
            let id = r.registration_id.clone();
            (Ok(r), id)
        }
        Err(e) => (Err(e), raw_registration_id),
    };
    let device = Registrant {
        sh: c.sh.clone(),
        registration_id,
        api_version: rest
            .as_ref()
            .ok()
            .and_then(|r| r.api_version.clone())
            .unwrap_or_default(),
        peer: c.peer,
        chain: c.chain.to_vec(),
    };
    let rest = match rest {
        Ok(r) => r,
        Err(e) => return respond(device.refuse(bad_request(&device, e.to_string())), false),
    };
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(refusal) => return respond(device.refuse(refusal), true),
    };
    if let Err(e) =
        crate::pki::identity::check_device_id(&device.registration_id, crate::pki::Target::Dps)
    {
        let refusal = DpsRefusal {
            status: 400,
            error_code: code::BAD_REQUEST,
            kind: DpsRefusalKind::BadRegistrationId,
            reason: format!("registration {}: {e}", device.registration_id),
        };
        return respond(device.refuse(refusal), false);
    }
    let scope = exchange::id_scope(c.sh).await;
    if let Err((kind, reason)) = exchange::admit(
        &rest.id_scope,
        &device.registration_id,
        &device.api_version,
        c.chain,
        scope,
    ) {
        return respond(device.refuse(unadmitted(kind, reason)), false);
    }
    if let Err(why) = c.link.hold(c.sh, c.peer, c.pre_auth, &device) {
        let refusal = DpsRefusal {
            status: 429,
            error_code: code::THROTTLED,
            kind: DpsRefusalKind::Limit("dps-sessions-full"),
            reason: format!(
                "registration {}: {why}; try again later",
                device.registration_id
            ),
        };
        return respond(device.refuse(refusal), true);
    }
    let answer = match rest.call {
        RestCall::Register => device.register(&body).await,
        RestCall::Status { operation_id } => device.operation_status(&operation_id),
    };
    respond(answer, false)
}

/// The request body, read to its end within [`CONNECT_TIMEOUT`] and at most
/// [`MAX_BODY_BYTES`] long, or DPS's refusal (the connection then closes: the rest is unread).
async fn read_body(req: Request<Incoming>) -> Result<Bytes, DpsRefusal> {
    let too_large = || DpsRefusal {
        status: 413,
        error_code: code::TOO_LARGE,
        kind: DpsRefusalKind::Limit("too-large"),
        reason: format!(
            "the request body is over {} KiB, the most the local DPS takes (a payload of up to {} KiB and a CSR); send a smaller payload",
            MAX_BODY_BYTES / 1024,
            MAX_PAYLOAD_BYTES / 1024
        ),
    };
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let limited = Limited::new(req.into_body(), MAX_BODY_BYTES);
    match tokio::time::timeout(CONNECT_TIMEOUT, limited.collect()).await {
        Ok(Ok(body)) => Ok(body.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(DpsRefusal {
            status: 400,
            error_code: code::BAD_REQUEST,
            kind: DpsRefusalKind::BadRequest,
            reason: format!("the request body could not be read: {e}"),
        }),
        Err(_) => Err(DpsRefusal {
            status: 408,
            error_code: code::BAD_REQUEST,
            kind: DpsRefusalKind::Limit("body-timeout"),
            reason: format!(
                "the request body did not arrive within {} s; send it with the request",
                CONNECT_TIMEOUT.as_secs()
            ),
        }),
    }
}

/// A path that does not decode: 400 in DPS's words.
fn bad_request(device: &Registrant, why: String) -> DpsRefusal {
    DpsRefusal {
        status: 400,
        error_code: code::BAD_REQUEST,
        kind: DpsRefusalKind::BadRequest,
        reason: format!("registration {}: {why}", device.registration_id),
    }
}

/// A request [`exchange::admit`] refused: 401 as DPS answers an attestation it cannot take
/// (wrong ID scope, no client certificate), 400 for an api-version it does not speak.
fn unadmitted(kind: &'static str, reason: String) -> DpsRefusal {
    let (status, error_code) = match kind {
        "dps-api-version" => (400, code::BAD_REQUEST),
        "registry" => (500, code::INTERNAL),
        _ => (401, code::UNAUTHORIZED),
    };
    DpsRefusal {
        status,
        error_code,
        kind: DpsRefusalKind::Admission(kind),
        reason,
    }
}

/// DPS's answer as an HTTP response; `close` ends the connection after it.
fn respond(a: DpsAnswer, close: bool) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(a.body)));
    *resp.status_mut() =
        StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    // The SDKs wait `retry-after` seconds before the next poll (202) or retry (429).
    let retry_after = match a.status {
        429 => a.retry_after.or(Some(wire::RETRY_AFTER_SECS)),
        _ => a.retry_after,
    };
    if let Some(s) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A DPS path with the other method: 405 naming the one it takes.
fn wrong_method(got: &Method, wanted: &Method) -> Response<Full<Bytes>> {
    let line = format!(
        "{got} is not a DPS call here: DPS registers with PUT …/register and polls with GET …/operations/{{operationId}}\n"
    );
    let mut resp = Response::new(Full::new(Bytes::from(line)));
    *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(wanted.as_str()) {
        h.insert(header::ALLOW, v);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
