//! DPS's device protocol over AMQP (5671, and AMQP over WebSockets on 443): the hub's AMQP
//! listener ([`crate::hub::amqp`]) hands every link attached at
//! `{idScope}/registrations/{registrationId}` here. The first such link admits the connection
//! to DPS (ID scope, api-version, a client certificate: [`exchange::admit`]) and charges it to
//! the DPS session budget as an MQTT DPS CONNECT is; the device then attaches a receiver link
//! (answers) and a sender link (requests) at that address. Requests are answered by
//! [`Registrant`] exactly as over MQTT; only the framing is AMQP's
//! (see [`crate::azure::dps`]'s table).

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use fe2o3_amqp::acceptor::LinkEndpoint;
use fe2o3_amqp::types::definitions::{AmqpError, Error as AmqpErr, ErrorCondition, Fields};
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Body, Data, MessageId, Properties, message::Message,
};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Symbol, Value};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::exchange::{self, DpsAnswer, Registrant};
use super::{DpsRefusal, DpsRefusalKind};
use crate::azure::amqp as proto;
use crate::azure::dps::{self as wire, code};
use crate::hub::budget::BudgetPermit;
use crate::hub::events::{HubEvent, clip};
use crate::hub::shared::{Shared, over_cap};

/// Links one DPS connection may hold at once; the next attach is refused with
/// `amqp:resource-limit-exceeded`. Azure documents no limit; a device needs two (a receiver
/// for answers, a sender for requests), and four leave room for an SDK that attaches a link
/// again before the hub has seen the old one go. The connection's own cap
/// (`MAX_LINKS_PER_CONNECTION`) still applies.
pub const MAX_DPS_LINKS: usize = 4;

/// Requests a device may have sent and not yet had settled: the link credit the hub grants
/// on the device's sender link, so a device cannot queue more. A registration is one register
/// and a few polls, one at a time; DPS documents no limit.
pub const MAX_DPS_REQUESTS_IN_FLIGHT: u32 = 4;

/// Answers waiting for the device to take them on its receiver link (to give it credit). When
/// full, the hub stops reading requests until the device takes one, so a device that never
/// gives credit holds at most this many answers until its session's lifetime ends.
pub const MAX_DPS_ANSWERS_QUEUED: usize = 4;

/// Requests one DPS session answers; the next are refused 429 without being decided. A
/// registration is one register and a few polls (the SDKs poll every `retry-after`, 1 s here,
/// and give up in minutes); the HTTPS listener's cap per connection is the same
/// ([`crate::hub::https::MAX_REQUESTS_PER_CONNECTION`]). Without it one connection could
/// register again and again for its whole lifetime (hostile pass).
pub const MAX_DPS_REQUESTS_PER_SESSION: usize = crate::hub::https::MAX_REQUESTS_PER_CONNECTION;

type Out = Message<Data>;

/// One connection's DPS session: the registrant its first DPS link named, and where the
/// answers go.
pub(in crate::hub) struct DpsAmqpSession {
    device: Registrant,
    id_scope: String,
    /// The device's latest receiver link, once attached.
    answers: Mutex<Option<mpsc::Sender<Out>>>,
    /// DPS links attached now ([`MAX_DPS_LINKS`]).
    links: Arc<AtomicUsize>,
    /// This session's slot in the hub's DPS session budget, given back when it ends.
    budget: Mutex<Option<BudgetPermit>>,
    /// The task that closes the connection when the session's lifetime is up.
    lifetime: AbortHandle,
    /// Requests answered so far ([`MAX_DPS_REQUESTS_PER_SESSION`]).
    requests: AtomicUsize,
}

/// A DPS link that may attach: its share of [`MAX_DPS_LINKS`] and, for the link the hub
/// sends answers on, where they come from.
pub(in crate::hub) struct DpsLink {
    session: Arc<DpsAmqpSession>,
    answers: Option<mpsc::Receiver<Out>>,
    links: Arc<AtomicUsize>,
}

impl Drop for DpsLink {
    fn drop(&mut self) {
        self.links.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A refused attach: the AMQP condition and the reason the device gets.
pub(in crate::hub) type Refused = (AmqpError, String);

/// What the hub's AMQP connection knows when a device attaches its first DPS link.
pub(in crate::hub) struct DpsAttach<'a> {
    /// The hub's shared state.
    pub sh: &'a Arc<Shared>,
    /// Where the connection comes from.
    pub peer: SocketAddr,
    /// The certificate chain from the TLS handshake, leaf first.
    pub chain: &'a [Vec<u8>],
    /// The link's address.
    pub address: &'a str,
    /// The Attach's properties (`com.microsoft:api-version`).
    pub properties: Option<&'a Fields>,
    /// The connection's socket, so a full budget can evict it as it does an MQTT DPS session.
    pub socket: Option<OwnedFd>,
    /// Closes the connection with a reason (the session's lifetime is up).
    pub close: mpsc::Sender<String>,
}

/// Admit a connection to DPS at its first DPS link: the address, ID scope, api-version and
/// certificate checks of every transport, then a slot in the DPS session budget.
pub(in crate::hub) async fn admit(a: DpsAttach<'_>) -> Result<Arc<DpsAmqpSession>, Refused> {
    let (id_scope, registration_id) =
        wire::parse_link_address(a.address).map_err(|e| (AmqpError::NotFound, e.to_string()))?;
    // The SDKs send the api-version as a link property; one that sends none speaks the
    // version every SDK does.
    let api_version = a
        .properties
        .and_then(|p| {
            p.iter()
                .find(|(k, _)| k.as_str() == proto::API_VERSION_PROPERTY)
        })
        .map(|(_, v)| proto::value_text(v))
        .unwrap_or_else(|| wire::API_VERSION.to_string());
    let scope = exchange::id_scope(a.sh).await;
    let sh = a.sh;
    if let Err((kind, reason)) =
        exchange::admit(&id_scope, &registration_id, &api_version, a.chain, scope)
    {
        let reason = clip(&crate::text::escape_controls(&reason));
        let who = Some(registration_id);
        sh.remember_refusal(a.peer, who.clone(), kind, reason.clone());
        sh.emit(HubEvent::Refused {
            peer: a.peer,
            device: who,
            kind: kind.to_string(),
            reason: reason.clone(),
        });
        return Err((AmqpError::UnauthorizedAccess, reason));
    }
    // DPS takes any certificate at attach, so its sessions are budgeted as MQTT's are (see
    // dps/mqtt.rs): per peer, in total (evicting the peer holding most), and in time.
    let budget = match sh.dps_sessions.charge_evicting(a.peer.ip(), a.socket) {
        Ok((slot, _)) => slot,
        Err(full) => {
            let why = sh.dps_sessions.refusal(full, a.peer.ip()).to_string();
            over_cap(sh, a.peer, format!("{why}; AMQP link refused"));
            return Err((AmqpError::ResourceLimitExceeded, why));
        }
    };
    let lifetime = sh.config.dps_session_lifetime;
    let close = a.close;
    let lifetime = tokio::spawn(async move {
        tokio::time::sleep(lifetime).await;
        let _ = close
            .send(format!(
                "the DPS session was open for {} s, the hub's limit for one registration; closed",
                lifetime.as_secs_f64()
            ))
            .await;
    })
    .abort_handle();
    sh.emit(HubEvent::DpsConnected {
        registration_id: registration_id.clone(),
        peer: a.peer,
        api_version: api_version.clone(),
    });
    Ok(Arc::new(DpsAmqpSession {
        device: Registrant {
            sh: sh.clone(),
            registration_id,
            api_version,
            peer: a.peer,
            chain: a.chain.to_vec(),
        },
        id_scope,
        answers: Mutex::new(None),
        links: Arc::default(),
        budget: Mutex::new(Some(budget)),
        lifetime,
        requests: AtomicUsize::new(0),
    }))
}

impl DpsAmqpSession {
    /// The registration id this connection registers.
    pub fn registration_id(&self) -> &str {
        &self.device.registration_id
    }

    /// Whether another link may attach at `address`: the same registration, within
    /// [`MAX_DPS_LINKS`]. A link the hub sends on becomes the one answers go to, before its
    /// Attach is answered (the device sends its register the moment it sees its links); the
    /// one before it is closed, as its device has moved on.
    pub fn attach(self: &Arc<Self>, address: &str, device_sends: bool) -> Result<DpsLink, Refused> {
        let (scope, regid) =
            wire::parse_link_address(address).map_err(|e| (AmqpError::NotFound, e.to_string()))?;
        if scope != self.id_scope || regid != self.device.registration_id {
            return Err((
                AmqpError::UnauthorizedAccess,
                format!(
                    "this connection registers \"{}\" with DPS; a link at \"{}\" is not allowed on it",
                    crate::text::escape_controls(&wire::link_address(
                        &self.id_scope,
                        &self.device.registration_id
                    )),
                    crate::text::escape_controls(address)
                ),
            ));
        }
        self.links
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_DPS_LINKS).then_some(n + 1)
            })
            .map_err(|_| {
                (
                    AmqpError::ResourceLimitExceeded,
                    format!(
                        "this DPS session already has {MAX_DPS_LINKS} links attached, the hub's cap (a device needs a receiver and a sender); detach one first"
                    ),
                )
            })?;
        let answers = (!device_sends).then(|| {
            let (tx, rx) = mpsc::channel(MAX_DPS_ANSWERS_QUEUED);
            if let Ok(mut a) = self.answers.lock() {
                *a = Some(tx);
            }
            rx
        });
        Ok(DpsLink {
            session: self.clone(),
            answers,
            links: self.links.clone(),
        })
    }

    /// The connection ended: stop the answer links, give the budget slot back, log why.
    pub fn closed(&self, reason: String) {
        self.lifetime.abort();
        if let Ok(mut a) = self.answers.lock() {
            a.take();
        }
        if let Ok(mut b) = self.budget.lock() {
            b.take();
        }
        self.device.sh.emit(HubEvent::DpsDisconnected {
            registration_id: self.device.registration_id.clone(),
            reason,
        });
    }

    fn answer_route(&self) -> Option<mpsc::Sender<Out>> {
        self.answers.lock().ok()?.clone()
    }

    fn bad_request(&self, reason: String) -> DpsAnswer {
        self.device.refuse(DpsRefusal {
            status: 400,
            error_code: code::BAD_REQUEST,
            kind: DpsRefusalKind::BadRequest,
            reason: format!("registration {}: {reason}", self.device.registration_id),
        })
    }

    /// DPS's answer to one request message.
    async fn answer(&self, m: &Message<Body<Value>>) -> DpsAnswer {
        let n = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        if n > MAX_DPS_REQUESTS_PER_SESSION {
            return self.device.refuse(DpsRefusal {
                status: 429,
                error_code: code::THROTTLED,
                kind: DpsRefusalKind::Limit("dps-requests-full"),
                reason: format!(
                    "registration {}: {MAX_DPS_REQUESTS_PER_SESSION} requests on one DPS session, the hub's cap; connect again to register",
                    self.device.registration_id
                ),
            });
        }
        let property = |key: &str| {
            m.application_properties
                .as_ref()?
                .0
                .iter()
                .find(|(k, _)| k.as_str() == key)
                .map(|(_, v)| simple_text(v))
        };
        let op_type = property(wire::OPERATION_TYPE_PROPERTY);
        let op_id = property(wire::OPERATION_ID_PROPERTY);
        match wire::parse_amqp_request(op_type.as_deref(), op_id.as_deref()) {
            Ok(wire::AmqpRequest::Register) => {
                self.device.register(&proto::body_bytes(&m.body)).await
            }
            Ok(wire::AmqpRequest::Status { operation_id }) => {
                self.device.operation_status(&operation_id)
            }
            Err(e) => self.bad_request(e.to_string()),
        }
    }
}

/// Longest application property value DPS reads: an operation type or id is under 100
/// characters (DPS documents no limit); a longer one can match nothing, and cut here the
/// refusal quoting it stays short and still says what was wrong.
const MAX_PROPERTY_TEXT: usize = 256;

/// An application property's value as text, cut to [`MAX_PROPERTY_TEXT`] bytes.
fn simple_text(v: &SimpleValue) -> String {
    let text = match v {
        SimpleValue::String(s) => s.as_str().into(),
        SimpleValue::Symbol(s) => s.as_str().into(),
        // A binary of 256 KB is a megabyte as Debug: cut before formatting.
        SimpleValue::Binary(b) => {
            let head = &b.as_slice()[..b.len().min(MAX_PROPERTY_TEXT)];
            std::borrow::Cow::Owned(format!("{head:?}"))
        }
        other => format!("{other:?}").into(),
    };
    if text.len() <= MAX_PROPERTY_TEXT {
        return text.into_owned();
    }
    let mut end = MAX_PROPERTY_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Serve one accepted DPS link until it or the connection ends.
pub(in crate::hub) async fn run_link(mut link: DpsLink, endpoint: LinkEndpoint) {
    match endpoint {
        LinkEndpoint::Receiver(r) => requests(&link.session, r).await,
        LinkEndpoint::Sender(s) => match link.answers.take() {
            Some(rx) => answers(s, rx).await,
            None => {
                let _ = s.close().await;
            }
        },
    }
}

/// The link the device sends requests on: each delivery is answered on the receiver link
/// (status below 300) or rejected with DPS's error JSON as the description.
async fn requests(session: &DpsAmqpSession, mut r: fe2o3_amqp::Receiver) {
    let _ = r.set_credit(MAX_DPS_REQUESTS_IN_FLIGHT).await;
    while let Ok(delivery) = r.recv::<Body<Value>>().await {
        let m = delivery.message();
        let answer = match session.answer_route() {
            Some(route) => {
                let answer = session.answer(m).await;
                if answer.status < 300 {
                    let correlation = m.properties.as_ref().and_then(|p| p.correlation_id.clone());
                    if r.accept(&delivery).await.is_err() {
                        break;
                    }
                    // Waits while the device takes no answers: its requests wait with it.
                    let _ = route.send(answer_message(correlation, &answer)).await;
                    continue;
                }
                answer
            }
            None => session.bad_request(format!(
                "no receiver link is attached at {}; attach one before sending requests, the answers go there",
                wire::link_address(&session.id_scope, session.registration_id())
            )),
        };
        if r.reject(&delivery, refusal_error(&answer)).await.is_err() {
            break;
        }
    }
    let _ = r.close().await;
}

/// The link the hub sends answers on, until the device detaches it or the session ends.
async fn answers(mut s: fe2o3_amqp::Sender, mut rx: mpsc::Receiver<Out>) {
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = s.on_detach() => return,
        };
        let Some(msg) = msg else { break };
        if s.send(msg).await.is_err() {
            return;
        }
    }
    let _ = s.close().await;
}

/// An answer below 300: the JSON in a data section, the request's correlation id, and
/// `retry-after` when DPS wants the device to wait.
fn answer_message(correlation: Option<MessageId>, answer: &DpsAnswer) -> Out {
    let mut app = ApplicationProperties::default();
    if let Some(s) = answer.retry_after {
        app.0
            .insert(wire::RETRY_AFTER_PROPERTY.into(), SimpleValue::Uint(s));
    }
    Message::builder()
        .properties(Properties {
            correlation_id: correlation,
            ..Properties::default()
        })
        .application_properties(app)
        .body(Data(Binary::from(answer.body.clone())))
        .build()
}

/// A refusal: DPS's error JSON as the description (what .NET parses), the condition by status
/// (what Node decides a retry by), `retry-after` in the info when DPS wants a retry.
fn refusal_error(answer: &DpsAnswer) -> AmqpErr {
    let condition =
        ErrorCondition::Custom(Symbol::from(wire::amqp_refusal_condition(answer.status)));
    let info = answer.retry_after.map(|s| {
        let mut f = Fields::default();
        f.insert(Symbol::from(wire::RETRY_AFTER_PROPERTY), Value::Uint(s));
        Box::new(f)
    });
    AmqpErr {
        condition,
        description: Some(String::from_utf8_lossy(&answer.body).into_owned()),
        info,
    }
}
