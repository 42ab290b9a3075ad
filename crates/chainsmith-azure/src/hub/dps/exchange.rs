//! One device's requests to DPS, whatever carried them: a register or an operation poll in,
//! a status, a `retry-after` and DPS's JSON body out. The transports (MQTT in `mqtt.rs`; AMQP
//! and HTTPS beside it) only parse their framing and write the [`DpsAnswer`] back in theirs,
//! so a device gets the same decision, the same body and the same log line on every one.

use std::net::SocketAddr;
use std::sync::Arc;

use super::issuing::issue_from_csr;
use super::{DpsRefusal, DpsRefusalKind};
use crate::azure::dps::{self as wire, code};
use crate::hub::events::{HubEvent, clip};
use crate::hub::registry::RegistryError;
use crate::hub::shared::Shared;

/// DPS's answer to one request: what every transport sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::hub) struct DpsAnswer {
    /// 202 (assigning), 200 (an operation's state) or an error status.
    pub status: u16,
    /// Seconds the device should wait before polling, on a 202.
    pub retry_after: Option<u32>,
    /// DPS's JSON: an `OperationResponse`, or the error body on a refusal.
    pub body: Vec<u8>,
}

/// Why a connection may not speak to DPS at all, before any request: a short kind and the
/// reason (CONNACK 5 on MQTT, a closed link on AMQP, 401 on HTTPS).
pub(in crate::hub) type Unadmitted = (&'static str, String);

/// The checks every transport makes before a device's first request: the ID scope is this
/// DPS's, the api-version one the local DPS speaks, and a client certificate was sent.
/// `scope` is this DPS's ID scope, or why it could not be read.
pub(in crate::hub) fn admit(
    id_scope: &str,
    registration_id: &str,
    api_version: &str,
    chain: &[Vec<u8>],
    scope: Result<String, RegistryError>,
) -> Result<(), Unadmitted> {
    let scope = scope.map_err(|e| ("registry", format!("DPS state unreadable: {e}")))?;
    if id_scope != scope {
        return Err((
            "dps-id-scope",
            format!(
                "registration {registration_id}: ID scope \"{id_scope}\" is not this DPS's (\"{scope}\")"
            ),
        ));
    }
    if !wire::API_VERSIONS.contains(&api_version) {
        return Err((
            "dps-api-version",
            format!(
                "registration {registration_id}: api-version \"{api_version}\" is not one the local DPS speaks ({})",
                wire::API_VERSIONS.join(", ")
            ),
        ));
    }
    if chain.is_empty() {
        return Err((
            "no-certificate",
            format!(
                "registration {registration_id}: no client certificate was sent in the TLS handshake; X.509 attestation needs the device's certificate"
            ),
        ));
    }
    Ok(())
}

/// This DPS's ID scope: the one the hub was started with, or the workspace's.
pub(in crate::hub) async fn id_scope(sh: &Shared) -> Result<String, RegistryError> {
    match &sh.id_scope {
        Some(s) => Ok(s.clone()),
        None => {
            let store = sh.store.clone();
            tokio::task::spawn_blocking(move || store.dps_id_scope())
                .await
                .unwrap_or_else(|_| Ok(String::new()))
        }
    }
}

/// A device admitted to DPS: who it is and what it proved in the TLS handshake.
pub(in crate::hub) struct Registrant {
    /// The hub's shared state.
    pub sh: Arc<Shared>,
    /// The registration id the connection (MQTT username, AMQP link, HTTPS path) names.
    pub registration_id: String,
    /// The api-version the device speaks.
    pub api_version: String,
    /// Where it connects from.
    pub peer: SocketAddr,
    /// The certificate chain it sent in the TLS handshake, leaf first.
    pub chain: Vec<Vec<u8>>,
}

impl Registrant {
    /// Answer a register request: 202 with an operation id to poll, or DPS's refusal.
    pub async fn register(&self, body: &[u8]) -> DpsAnswer {
        let req: wire::RegisterRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            // The SDKs always send a body; a device that sends none means itself.
            Err(_) if body.iter().all(u8::is_ascii_whitespace) => wire::RegisterRequest {
                registration_id: self.registration_id.clone(),
                ..Default::default()
            },
            Err(e) => {
                return self.refuse(DpsRefusal {
                    status: 400,
                    error_code: code::BAD_REQUEST,
                    kind: DpsRefusalKind::BadRequest,
                    reason: format!(
                        "registration {}: the register body is not DPS's JSON ({e}); send {{\"registrationId\":\"{}\"}}",
                        self.registration_id, self.registration_id
                    ),
                });
            }
        };
        if req.csr.is_some() && !self.api_version.ends_with("-preview") {
            return self.refuse(DpsRefusal {
                status: 400,
                error_code: code::BAD_REQUEST,
                kind: DpsRefusalKind::CsrApiVersion,
                reason: format!(
                    "registration {}: a CSR needs api-version {} (the certificate-management preview); this connection uses {}",
                    self.registration_id,
                    wire::API_VERSION_CSR,
                    self.api_version
                ),
            });
        }
        let assigned = match self.decide_and_assign(req).await {
            Ok(a) => a,
            Err(r) => return self.refuse(r),
        };
        let sh = &self.sh;
        let operation_id = wire::new_operation_id();
        let issued = assigned.state.issued_certificate_chain.is_some();
        let done = wire::OperationResponse {
            operation_id: operation_id.clone(),
            status: "assigned".into(),
            registration_state: Some(assigned.state.clone()),
        };
        sh.dps_ops.lock().expect("dps ops").insert(
            operation_id.clone(),
            self.registration_id.clone(),
            self.certificate(),
            serde_json::to_vec(&done).expect("serialisable"),
        );
        let assigning = wire::OperationResponse {
            operation_id: operation_id.clone(),
            status: "assigning".into(),
            registration_state: None,
        };
        sh.emit(HubEvent::DpsRegistering {
            registration_id: self.registration_id.clone(),
            operation_id,
        });
        let st = assigned.state;
        sh.emit(HubEvent::DpsAssigned {
            registration_id: st.registration_id,
            device_id: st.device_id.unwrap_or_default(),
            assigned_hub: st.assigned_hub.unwrap_or_default(),
            substatus: st.substatus.unwrap_or_default(),
            enrollment: assigned.enrollment,
            issued,
            note: assigned.note,
        });
        DpsAnswer {
            status: 202,
            retry_after: Some(wire::RETRY_AFTER_SECS),
            body: serde_json::to_vec(&assigning).expect("serialisable"),
        }
    }

    /// Decide (on the blocking pool: DPS reads its state and checks chains there), ask the
    /// enrollment's custom allocation webhook on the runtime when it has one, then record the
    /// assignment (blocking pool again).
    async fn decide_and_assign(
        &self,
        req: wire::RegisterRequest,
    ) -> Result<super::Assigned, DpsRefusal> {
        let sh = &self.sh;
        let hub = sh
            .config
            .hostname
            .clone()
            .unwrap_or_else(|| "localhost".into());
        let now = sh.config.clock.now();
        let cut_short = || DpsRefusal {
            status: 500,
            error_code: code::INTERNAL,
            kind: DpsRefusalKind::Registry,
            reason: format!(
                "registration {}: the registration was cut short inside the local DPS (a bug to report)",
                self.registration_id
            ),
        };
        let (store, regid, chain) = (
            sh.store.clone(),
            self.registration_id.clone(),
            self.chain.clone(),
        );
        let (decision, req) = {
            let hub = hub.clone();
            tokio::task::spawn_blocking(move || {
                let d = store.dps_decide(&regid, &chain, &req, &hub, now);
                (d, req)
            })
            .await
            .map_err(|_| cut_short())?
        };
        let decision = decision?;
        let allocation = match decision.webhook() {
            None => None,
            Some((url, body)) => Some(self.allocate(url, body.to_vec(), &hub).await?),
        };
        let (store, regid, chain) = (
            sh.store.clone(),
            self.registration_id.clone(),
            self.chain.clone(),
        );
        let signer = sh.config.csr_signer.clone();
        tokio::task::spawn_blocking(move || {
            let issue = |ca: &str, regid: &str, csr: &[u8]| {
                issue_from_csr(&store, signer.as_ref(), ca, regid, csr)
            };
            store.dps_complete(
                &regid, &chain, decision, &req, allocation, &hub, now, &issue,
            )
        })
        .await
        .map_err(|_| cut_short())?
    }

    /// POST the `AllocationRequest` to the enrollment's webhook and take its answer, or DPS's
    /// refusal (400, "custom allocation failed") naming what went wrong.
    async fn allocate(
        &self,
        url: &str,
        body: Vec<u8>,
        linked_hub: &str,
    ) -> Result<wire::AllocationResponse, DpsRefusal> {
        let timeout = self.sh.config.dps_webhook_timeout;
        let answer = match super::allocation::post(url, body, timeout).await {
            Ok((status, reply)) => super::allocation::read_reply(url, status, &reply, linked_hub),
            Err(f) => Err(f),
        };
        answer.map_err(|f| DpsRefusal {
            status: 400,
            error_code: code::CUSTOM_ALLOCATION_FAILED,
            kind: DpsRefusalKind::Webhook(f.kind),
            reason: format!(
                "registration {}: custom allocation failed: {}",
                self.registration_id, f.why
            ),
        })
    }

    /// The SHA-256 thumbprint of the certificate this device sent (empty without one): the
    /// owner of the operations it starts, and the only one answered when it polls them.
    fn certificate(&self) -> String {
        self.chain
            .first()
            .map(|leaf| crate::pki::thumbprints(leaf).1)
            .unwrap_or_default()
    }

    /// Answer a poll: 200 with the operation's state, or 404 when this device (this
    /// registration id with the certificate that registered) never started it or it has
    /// expired. Another certificate is told the same 404, so it learns nothing of the id.
    pub(crate) fn operation_status(&self, operation_id: &str) -> DpsAnswer {
        let answer = self.sh.dps_ops.lock().expect("dps ops").answer(
            operation_id,
            &self.registration_id,
            &self.certificate(),
        );
        match answer {
            Some(body) => DpsAnswer {
                status: 200,
                retry_after: None,
                body,
            },
            None => self.refuse(DpsRefusal {
                status: 404,
                error_code: code::OPERATION_NOT_FOUND,
                kind: DpsRefusalKind::OperationNotFound,
                reason: format!(
                    "registration {}: no operation \"{operation_id}\" (register first)",
                    self.registration_id
                ),
            }),
        }
    }

    /// DPS's error answer, and the exact reason in the hub's refusals and events, cut to
    /// [`MAX_EVENT_TEXT`](crate::hub::events::MAX_EVENT_TEXT): a reason quotes what the device
    /// or a webhook sent (an operation id, a property, a hub name), and a 256 KB one made each
    /// refusal a 0.5–1 MB log line, event and refusal record, and a rejection's description
    /// larger than the device's AMQP frame (hostile pass).
    pub fn refuse(&self, mut r: DpsRefusal) -> DpsAnswer {
        r.reason = clip(&r.reason);
        let tracking_id = wire::new_operation_id()
            .trim_start_matches("4.")
            .replace('.', "-");
        let body = wire::ErrorBody {
            error_code: r.error_code,
            tracking_id,
            message: r.reason.clone(),
            timestamp_utc: crate::pki::issue::rfc3339(self.sh.config.clock.now()),
        };
        // Refused ids are as long as the path, username or link address that carried them.
        let registration_id = clip(&self.registration_id);
        let who = Some(registration_id.clone());
        self.sh
            .remember_refusal(self.peer, who, r.kind.as_str(), r.reason.clone());
        self.sh.emit(HubEvent::DpsRefused {
            registration_id,
            peer: self.peer,
            status: r.status,
            error_code: r.error_code,
            kind: r.kind.to_string(),
            reason: r.reason,
        });
        DpsAnswer {
            status: r.status,
            retry_after: None,
            body: serde_json::to_vec(&body).expect("serialisable"),
        }
    }
}
