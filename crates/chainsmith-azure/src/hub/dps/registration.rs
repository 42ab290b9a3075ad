//! DPS's decision for one register request: the enrollment a device's certificate matches,
//! the refusal in DPS's words when none does, and the device created in the hub registry.

use super::{DpsState, HubStore, IssueFn, MAX_PAYLOAD_BYTES, Registration};
use crate::azure::dps::{self as wire, code};
use crate::hub::auth::{self, HubTrust, Refusal};
use crate::hub::registry::{Auth, HubDevice, Registry, RegistryError, Result, pem_to_der};
use crate::pki::{self, Target};
use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why DPS refused a registration: the status of the response topic, DPS's error code, a
/// short kind and the exact reason (the error body's `message` and the hub log's line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{reason}")]
pub struct DpsRefusal {
    /// The status code of the response.
    pub status: u16,
    /// DPS's error code.
    pub error_code: u32,
    /// Why, as a value; serialised (and shown in logs and `--json`) as [`DpsRefusalKind::as_str`].
    pub kind: DpsRefusalKind,
    /// The reason, as the device gets it.
    pub reason: String,
}

/// Why DPS refused a registration, as a value; [`DpsRefusalKind::as_str`] is the short kind
/// logs, `--json` and the hub's refusal list show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DpsRefusalKind {
    /// DPS could not read or write its own state (`registry`).
    Registry,
    /// The register body is not DPS's JSON (`bad-request`).
    BadRequest,
    /// A CSR sent on an api-version without certificate management (`csr-api-version`).
    CsrApiVersion,
    /// A poll for an operation this connection never started or that has expired
    /// (`operation-not-found`).
    OperationNotFound,
    /// The registration id breaks DPS's rules for ids (`bad-registration-id`).
    BadRegistrationId,
    /// The register body names another registration than the connection (`registration-id-mismatch`).
    RegistrationIdMismatch,
    /// The register payload is deeper or larger than DPS takes (`payload-limit`).
    PayloadLimit,
    /// DPS holds the registration under another spelling (`registration-id-case`).
    RegistrationIdCase,
    /// A CSR sent for an enrollment with no issuing CA (`csr-not-enabled`).
    CsrNotEnabled,
    /// A CSR that is empty or not base64 DER (`bad-csr`).
    BadCsr,
    /// The certificate's CN is not the registration id (`cn-mismatch`).
    CnMismatch,
    /// The certificate's CN is the registration id in another case (`cn-case`).
    CnCase,
    /// A CA certificate presented as a device's (`ca-as-device`).
    CaAsDevice,
    /// The enrollment (group or individual) is disabled (`enrollment-disabled`).
    EnrollmentDisabled,
    /// The certificate is neither of an individual enrollment's (`thumbprint`).
    Thumbprint,
    /// The chain ends at a verified CA that no enrollment uses (`no-enrollment`).
    NoEnrollment,
    /// The hub's certificate check refused it; the kind is [`Refusal::kind`]'s.
    Certificate(&'static str),
    /// DPS would not sign the device's CSR; the kind is [`super::CsrRefusal::kind`].
    Csr(&'static str),
    /// The request failed the checks before any register or poll (ID scope, api-version, a
    /// client certificate); the kind is [`super::exchange::admit`]'s (`dps-id-scope`, …).
    Admission(&'static str),
    /// The request is more than DPS takes or comes too often: its body is over the size limit
    /// (`too-large`) or the hub holds all the DPS sessions it may (`dps-sessions-full`).
    Limit(&'static str),
    /// The custom allocation webhook failed; the kind is [`super::WebhookFailure::kind`].
    Webhook(&'static str),
}

impl DpsRefusalKind {
    /// The short kind: the strings DPS's logs and `--json` have always used.
    pub fn as_str(self) -> &'static str {
        match self {
            DpsRefusalKind::Registry => "registry",
            DpsRefusalKind::BadRequest => "bad-request",
            DpsRefusalKind::CsrApiVersion => "csr-api-version",
            DpsRefusalKind::OperationNotFound => "operation-not-found",
            DpsRefusalKind::BadRegistrationId => "bad-registration-id",
            DpsRefusalKind::RegistrationIdMismatch => "registration-id-mismatch",
            DpsRefusalKind::PayloadLimit => "payload-limit",
            DpsRefusalKind::RegistrationIdCase => "registration-id-case",
            DpsRefusalKind::CsrNotEnabled => "csr-not-enabled",
            DpsRefusalKind::BadCsr => "bad-csr",
            DpsRefusalKind::CnMismatch => "cn-mismatch",
            DpsRefusalKind::CnCase => "cn-case",
            DpsRefusalKind::CaAsDevice => "ca-as-device",
            DpsRefusalKind::EnrollmentDisabled => "enrollment-disabled",
            DpsRefusalKind::Thumbprint => "thumbprint",
            DpsRefusalKind::NoEnrollment => "no-enrollment",
            DpsRefusalKind::Certificate(kind)
            | DpsRefusalKind::Csr(kind)
            | DpsRefusalKind::Admission(kind)
            | DpsRefusalKind::Limit(kind)
            | DpsRefusalKind::Webhook(kind) => kind,
        }
    }
}

impl std::fmt::Display for DpsRefusalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The short kind in JSON, as it always was.
impl Serialize for DpsRefusalKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl DpsRefusal {
    /// A refusal with the response's status, DPS's error code, its kind and the reason.
    fn new(status: u16, error_code: u32, kind: DpsRefusalKind, reason: String) -> Self {
        DpsRefusal {
            status,
            error_code,
            kind,
            reason,
        }
    }
    fn unauthorized(r: Refusal) -> Self {
        Self::new(
            401,
            code::UNAUTHORIZED,
            DpsRefusalKind::Certificate(r.kind()),
            r.to_string(),
        )
    }
}

/// A successful registration: the registration state the device gets.
#[derive(Clone, Debug)]
pub struct Assigned {
    /// The registration state the device gets.
    pub state: wire::RegistrationState,
    /// `group NAME` or `individual REGID`.
    pub enrollment: String,
    /// Why the hub will still refuse the device, if it will ([`Registration::note`]).
    pub note: Option<String>,
}

/// A registration decided but not yet recorded: the enrollment it matched, what DPS will
/// report of its certificate, and the custom allocation webhook to ask first, if any.
#[derive(Debug)]
pub struct Decision {
    m: Match,
    x509: wire::X509RegistrationResult,
    /// The webhook's URL and the `AllocationRequest` to POST to it.
    webhook: Option<(String, Vec<u8>)>,
}

impl Decision {
    /// The custom allocation webhook's URL and the `AllocationRequest` body, when the
    /// enrollment has one: the caller POSTs it and hands the answer to
    /// [`HubStore::dps_complete`].
    pub fn webhook(&self) -> Option<(&str, &[u8])> {
        self.webhook
            .as_ref()
            .map(|(u, b)| (u.as_str(), b.as_slice()))
    }
}

impl HubStore {
    /// One register request from `registration_id`, whose TLS chain is `chain` (leaf first),
    /// for an enrollment without a custom allocation webhook: [`HubStore::dps_decide`] then
    /// [`HubStore::dps_complete`]. The running hub calls the webhook between the two.
    pub fn dps_register(
        &self,
        registration_id: &str,
        chain: &[Vec<u8>],
        req: &wire::RegisterRequest,
        assigned_hub: &str,
        now: OffsetDateTime,
        issue: &IssueFn<'_>,
    ) -> std::result::Result<Assigned, DpsRefusal> {
        let d = self.dps_decide(registration_id, chain, req, assigned_hub, now)?;
        if d.webhook.is_some() {
            return Err(DpsRefusal::new(
                500,
                code::INTERNAL,
                DpsRefusalKind::Registry,
                format!(
                    "registration {registration_id}: {} has a custom allocation webhook, which only the running hub calls",
                    d.m.enrollment
                ),
            ));
        }
        self.dps_complete(
            registration_id,
            chain,
            d,
            req,
            None,
            assigned_hub,
            now,
            issue,
        )
    }

    /// Decide one register request: the checks on the id, the body and the certificate, and
    /// the enrollment it matches (DPS's refusal when none does). Nothing is written.
    /// `linked_hub` is the hub DPS assigns to (and offers a webhook).
    pub fn dps_decide(
        &self,
        registration_id: &str,
        chain: &[Vec<u8>],
        req: &wire::RegisterRequest,
        linked_hub: &str,
        now: OffsetDateTime,
    ) -> std::result::Result<Decision, DpsRefusal> {
        let bad_request = |kind: DpsRefusalKind, why: String| {
            DpsRefusal::new(
                400,
                code::BAD_REQUEST,
                kind,
                format!("registration {registration_id}: {why}"),
            )
        };
        // The id becomes a hub device id and a file-name part: DPS's rules, checked here.
        if let Err(e) = pki::identity::check_device_id(registration_id, Target::Dps) {
            return Err(bad_request(
                DpsRefusalKind::BadRegistrationId,
                e.to_string(),
            ));
        }
        if !req.registration_id.eq_ignore_ascii_case(registration_id) {
            return Err(bad_request(
                DpsRefusalKind::RegistrationIdMismatch,
                format!(
                    "the register body names \"{}\" but the connection is for \"{registration_id}\"",
                    crate::text::escape_controls(&req.registration_id)
                ),
            ));
        }
        if let Some(p) = &req.payload
            && let Err(e) = crate::hub::state_file::check_document(
                "the payload",
                p,
                crate::azure::MAX_TWIN_DEPTH,
                MAX_PAYLOAD_BYTES,
            )
        {
            return Err(bad_request(DpsRefusalKind::PayloadLimit, e.to_string()));
        }
        let st = self.dps_load_file().map_err(internal)?;
        let m = decide(&st, registration_id, chain, linked_hub, now)?;
        // Registration ids are case-insensitive, so "Victim" is registration "victim"; taking it
        // would re-pin hub device "victim" to another certificate and lock its owner out. A
        // registration answers only to the spelling it was first made with.
        let earlier = self.dps_registration(registration_id).map_err(internal)?;
        if let Some(old) = &earlier
            && old.registration_id != registration_id
        {
            return Err(DpsRefusal::new(
                401,
                code::UNAUTHORIZED,
                DpsRefusalKind::RegistrationIdCase,
                format!(
                    "registration {registration_id}: DPS holds this registration as \"{}\" (registration ids are case-insensitive), assigned to hub device \"{}\"; a device registers with its id exactly as first registered, so that no case variant takes over another device",
                    old.registration_id, old.device_id
                ),
            ));
        }
        let x509 = wire::X509RegistrationResult {
            certificate_info: chain.first().and_then(|d| super::certificate_info(d)),
            enrollment_group_id: m.group_id.clone(),
            signing_certificate_info: m.signer.as_deref().and_then(super::certificate_info),
        };
        let webhook = m.allocation.allocation_webhook.clone().map(|url| {
            let mut context = serde_json::json!({
                "registrationId": registration_id,
                "x509": x509,
            });
            if let Some(old) = &earlier {
                context["currentIotHubHostName"] = old.assigned_hub.clone().into();
                context["currentDeviceId"] = old.device_id.clone().into();
            }
            if let Some(p) = &req.payload {
                context["payload"] = p.clone();
            }
            let body = serde_json::json!({
                m.enrollment_json.0: m.enrollment_json.1,
                "deviceRuntimeContext": context,
                "linkedHubs": [linked_hub],
            });
            (url, serde_json::to_vec(&body).expect("serialisable"))
        });
        Ok(Decision { m, x509, webhook })
    }

    /// Finish a decided registration: sign the CSR the request carries, then record the
    /// registration and create or update the device in the hub registry. `allocation` is the
    /// webhook's checked answer when the enrollment has one (its hub, initial twin and payload).
    #[allow(clippy::too_many_arguments)]
    pub fn dps_complete(
        &self,
        registration_id: &str,
        chain: &[Vec<u8>],
        d: Decision,
        req: &wire::RegisterRequest,
        allocation: Option<wire::AllocationResponse>,
        assigned_hub: &str,
        now: OffsetDateTime,
        issue: &IssueFn<'_>,
    ) -> std::result::Result<Assigned, DpsRefusal> {
        let m = &d.m;
        let bad_request = |kind: DpsRefusalKind, why: String| {
            DpsRefusal::new(
                400,
                code::BAD_REQUEST,
                kind,
                format!("registration {registration_id}: {why}"),
            )
        };
        let issued = match (&req.csr, &m.issue_from) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(bad_request(
                    DpsRefusalKind::CsrNotEnabled,
                    format!(
                        "the request carries a CSR but {} names no issuing CA; give the enrollment an issuing CA",
                        m.enrollment
                    ),
                ));
            }
            (Some(csr), Some(_)) if csr.trim().is_empty() => {
                return Err(bad_request(
                    DpsRefusalKind::BadCsr,
                    "csr is empty; send the base64 of a DER PKCS#10 request".into(),
                ));
            }
            (Some(csr), Some(ca)) => {
                use base64::Engine;
                let der = base64::engine::general_purpose::STANDARD
                    .decode(csr.trim())
                    .map_err(|e| {
                        bad_request(
                            DpsRefusalKind::BadCsr,
                            format!("csr is not base64 DER ({e})"),
                        )
                    })?;
                let chain = issue(ca, registration_id, &der).map_err(|r| {
                    DpsRefusal::new(
                        400,
                        code::BAD_REQUEST,
                        DpsRefusalKind::Csr(r.kind),
                        format!("registration {registration_id}: {}", r.reason),
                    )
                })?;
                Some(chain)
            }
        };
        let (hub, initial_twin, payload) = match allocation {
            Some(a) => (
                a.iot_hub_host_name
                    .unwrap_or_else(|| assigned_hub.to_string()),
                a.initial_twin.or_else(|| m.allocation.initial_twin.clone()),
                a.payload,
            ),
            None => (
                assigned_hub.to_string(),
                m.allocation.initial_twin.clone(),
                None,
            ),
        };
        let outcome = Outcome {
            hub,
            initial_twin,
            payload,
            x509: d.x509,
            issued,
        };
        self.assign(registration_id, chain, m, req, outcome, now)
            .map_err(internal)
    }

    /// Record a decided registration in DPS and the hub registry. As Azure's DPS does, the
    /// device is created (or updated) in the hub with the thumbprint of the certificate it will
    /// connect with (the issued one, or the one it registered with), whatever its enrollment:
    /// the hub's CA list is never touched (MicrosoftDocs/azure-docs#70976,
    /// azure-iot-sdk-csharp#3360), and the device's enabled status is the operator's alone:
    /// DPS's deprovisioning guide keeps the two switches apart (disable the enrollment to stop
    /// provisioning, disable the device in the hub to stop it talking), and no Azure document
    /// says a registration re-enables a disabled device, so it does not here.
    ///
    /// An initial twin (the webhook's, else the enrollment's) lands on the device's twin at its
    /// first assignment only, as DPS documents `initialTwin`: a device registering again keeps
    /// whatever its twin became.
    fn assign(
        &self,
        registration_id: &str,
        chain: &[Vec<u8>],
        m: &Match,
        req: &wire::RegisterRequest,
        outcome: Outcome,
        now: OffsetDateTime,
    ) -> Result<Assigned> {
        let Outcome {
            hub: assigned_hub,
            initial_twin,
            payload,
            x509,
            issued,
        } = outcome;
        let _lock = self.ws.lock()?;
        let earlier = self.dps_registration(registration_id)?;
        // Case variants of one registration id are one registration, one hub device: the
        // device id of the first, while the same enrollment matches.
        let device_id = match (&earlier, m.individual_device_id.as_deref()) {
            (_, Some(d)) => d.to_string(),
            (Some(old), None) if old.enrollment == m.enrollment => old.device_id.clone(),
            _ => registration_id.to_string(),
        };
        let connects_with = issued
            .as_ref()
            .and_then(|c| c.first())
            .or_else(|| chain.first())
            .map(|der| pki::thumbprints(der).1);
        let provisioned_by = format!("DPS, {}", m.enrollment);
        // The hub first: the device must be able to connect the moment DPS answers. Written
        // only when the device's entry changes: a device registering again with the same
        // certificate rewrote the whole registry each time (hostile pass: 2.6 MB a
        // registration with 20,000 devices).
        let registry = self.load()?;
        let current = registry.devices.iter().find(|d| d.id == device_id);
        let note = current.filter(|d| !d.enabled).map(|_| {
            format!(
                "device \"{device_id}\" is disabled in the hub, by its operator; DPS assigned it but does not enable it, so the hub refuses it until the operator enables it again"
            )
        });
        let unchanged = current.is_some_and(|d| {
            d.auth == Auth::SelfSigned
                && d.primary == connects_with
                && d.provisioned_by.as_deref() == Some(provisioned_by.as_str())
        });
        if !unchanged {
            self.modify_locked(|r| {
                match r.devices.iter_mut().find(|d| d.id == device_id) {
                    Some(d) => {
                        d.auth = Auth::SelfSigned;
                        d.primary = connects_with.clone();
                        d.provisioned_by = Some(provisioned_by.clone());
                    }
                    None => r.devices.push(HubDevice {
                        provisioned_by: Some(provisioned_by.clone()),
                        ..HubDevice::new(
                            &device_id,
                            Auth::SelfSigned,
                            connects_with.clone(),
                            None,
                            now,
                        )
                    }),
                }
                Ok(())
            })?;
        }
        if earlier.is_none()
            && let Some(t) = &initial_twin
        {
            self.apply_initial_twin_locked(&device_id, t)?;
        }
        let etag = {
            use base64::Engine;
            let mut b = [0u8; 16];
            aws_lc_rs::rand::fill(&mut b).expect("system random source");
            base64::engine::general_purpose::STANDARD.encode(format!("\"{}\"", hex::encode(b)))
        };
        let (created, substatus, first_id) = match &earlier {
            Some(old) => (
                old.created,
                wire::REPROVISIONED_TO_INITIAL,
                old.registration_id.clone(),
            ),
            None => (now, wire::INITIAL_ASSIGNMENT, registration_id.to_string()),
        };
        let rec = Registration {
            registration_id: first_id,
            device_id,
            assigned_hub,
            status: "assigned".into(),
            substatus: substatus.into(),
            created,
            updated: now,
            etag,
            payload: req.payload.clone(),
            enrollment: m.enrollment.clone(),
            note,
        };
        self.dps_write_registration(&rec)?;
        let b64 = |d: &Vec<u8>| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(d)
        };
        Ok(Assigned {
            state: wire::RegistrationState {
                registration_id: registration_id.to_string(),
                created_date_time_utc: Some(pki::issue::rfc3339(rec.created)),
                assigned_hub: Some(rec.assigned_hub.clone()),
                device_id: Some(rec.device_id.clone()),
                status: rec.status.clone(),
                substatus: Some(rec.substatus.clone()),
                last_updated_date_time_utc: Some(pki::issue::rfc3339(rec.updated)),
                etag: Some(rec.etag.clone()),
                payload,
                x509: Some(x509),
                issued_certificate_chain: issued.map(|c| c.iter().map(b64).collect()),
            },
            enrollment: rec.enrollment,
            note: rec.note,
        })
    }
}

/// DPS's answer when it cannot read or write its own state.
fn internal(e: RegistryError) -> DpsRefusal {
    DpsRefusal::new(
        500,
        500000,
        DpsRefusalKind::Registry,
        format!("DPS could not read or write its state ({e}); the device may register again"),
    )
}

/// What a registration is assigned: the hub, the initial twin for a first assignment, the
/// payload for the device, what DPS reports of its certificate, and the chain issued from a
/// CSR.
struct Outcome {
    hub: String,
    initial_twin: Option<wire::InitialTwin>,
    payload: Option<serde_json::Value>,
    x509: wire::X509RegistrationResult,
    issued: Option<Vec<Vec<u8>>>,
}

/// An enrollment a device matched.
#[derive(Debug)]
struct Match {
    enrollment: String,
    /// The hub device id an individual enrollment names (else the registration id, or the
    /// device id of an earlier registration of the same id in another case).
    individual_device_id: Option<String>,
    issue_from: Option<String>,
    /// The group's id, for `registrationState.x509.enrollmentGroupId`.
    group_id: Option<String>,
    /// The certificate that signed the device's (a group's verified chain), DER.
    signer: Option<Vec<u8>>,
    /// The enrollment's webhook and initial twin.
    allocation: super::Allocation,
    /// `("enrollmentGroup" | "individualEnrollment", the enrollment as DPS shows it)`, for an
    /// `AllocationRequest`.
    enrollment_json: (&'static str, serde_json::Value),
}

fn cn_of(der: &[u8]) -> Option<String> {
    let (_, c) = X509Certificate::from_der(der).ok()?;
    c.subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string)
}

/// The certificate a device registers with names it, and only it: one CN, equal to the
/// registration id exactly, and not a CA's.
fn check_device_certificate(
    registration_id: &str,
    chain: &[Vec<u8>],
) -> std::result::Result<(), DpsRefusal> {
    let who = format!("registration {registration_id}");
    let leaf = chain
        .first()
        .ok_or_else(|| DpsRefusal::unauthorized(Refusal::NoCertificate))?;
    let cn = cn_of(leaf).ok_or_else(|| {
        DpsRefusal::unauthorized(Refusal::BadCertificate {
            detail: "no readable subject CN".into(),
        })
    })?;
    if let Ok((_, c)) = X509Certificate::from_der(leaf) {
        auth::single_cn(registration_id, c.subject()).map_err(DpsRefusal::unauthorized)?;
    }
    if !cn.eq_ignore_ascii_case(registration_id) {
        return Err(DpsRefusal::new(
            401,
            code::UNAUTHORIZED,
            DpsRefusalKind::CnMismatch,
            format!(
                "{who}: certificate CN \"{}\" is not the registration id \"{registration_id}\"; DPS takes the registration id from the CN",
                crate::text::escape_controls(&cn)
            ),
        ));
    }
    // Registration ids are case-insensitive in DPS but device ids are not in the hub: a CN
    // "Victim" registering as "victim" would take over hub device "victim" (hostile pass), so
    // the CN must be the registration id exactly.
    if cn != registration_id {
        return Err(DpsRefusal::new(
            401,
            code::UNAUTHORIZED,
            DpsRefusalKind::CnCase,
            format!(
                "{who}: certificate CN \"{}\" differs from the registration id \"{registration_id}\" in case; the hub compares device ids case-sensitively, so a device registers with its CN exactly",
                crate::text::escape_controls(&cn)
            ),
        ));
    }
    // A CA's key never registers as a device, nor a device as a workspace CA's name.
    if X509Certificate::from_der(leaf).is_ok_and(|(_, c)| auth::is_ca_certificate(&c)) {
        return Err(DpsRefusal::new(
            401,
            code::UNAUTHORIZED,
            DpsRefusalKind::CaAsDevice,
            format!(
                "{who}: the certificate presented is a CA certificate (CA:TRUE or keyCertSign), not a device certificate; a device registers with a leaf issued under the enrollment's CA"
            ),
        ));
    }
    Ok(())
}

/// DPS's decision for one device: an individual enrollment for the registration id wins;
/// else the group whose CA the chain ends at.
fn decide(
    st: &DpsState,
    registration_id: &str,
    chain: &[Vec<u8>],
    linked_hub: &str,
    now: OffsetDateTime,
) -> std::result::Result<Match, DpsRefusal> {
    let who = format!("registration {registration_id}");
    check_device_certificate(registration_id, chain)?;
    if let Some(ind) = st.individual(registration_id) {
        if !ind.settings.enabled {
            return Err(DpsRefusal::new(
                403,
                code::FORBIDDEN,
                DpsRefusalKind::EnrollmentDisabled,
                format!(
                    "{who}: individual enrollment \"{}\" is disabled",
                    ind.registration_id
                ),
            ));
        }
        // Only the validity window and the thumbprint: the certificate itself is enrolled.
        let reg = Registry {
            devices: vec![HubDevice::new(
                registration_id,
                Auth::SelfSigned,
                ind.primary.clone(),
                ind.secondary.clone(),
                ind.settings.added,
            )],
            ..Default::default()
        };
        let user = crate::azure::username("dps", registration_id);
        auth::authenticate(
            &reg,
            &HubTrust::new(&reg),
            registration_id,
            Some(&user),
            chain,
            now,
        )
        .map_err(|r| match r {
            Refusal::Thumbprint { sha1, .. } => DpsRefusal::new(
                401,
                code::UNAUTHORIZED,
                DpsRefusalKind::Thumbprint,
                format!(
                    "{who}: the certificate (SHA-1 {sha1}) is neither the primary nor the secondary certificate of individual enrollment \"{}\"",
                    ind.registration_id
                ),
            ),
            r => DpsRefusal::unauthorized(r),
        })?;
        return Ok(Match {
            enrollment: format!("individual {}", ind.registration_id),
            individual_device_id: Some(ind.device_id().to_string()),
            issue_from: ind.settings.issue_from.clone(),
            group_id: None,
            signer: None,
            allocation: ind.settings.allocation.clone(),
            enrollment_json: (
                "individualEnrollment",
                super::allocation::enrollment_json(
                    ("registrationId", &ind.registration_id),
                    ind.device_id.as_deref(),
                    ind.settings.edge,
                    &ind.settings.allocation,
                    linked_hub,
                    ind.settings.added,
                ),
            ),
        });
    }
    for g in &st.groups {
        let names: Vec<&str> = std::iter::once(g.primary.as_str())
            .chain(g.secondary.as_deref())
            .collect();
        let reg = st.as_registry(Some(&names));
        let Ok(verified) = HubTrust::new(&reg).verify(registration_id, chain, now) else {
            continue;
        };
        if !g.settings.enabled {
            return Err(DpsRefusal::new(
                403,
                code::FORBIDDEN,
                DpsRefusalKind::EnrollmentDisabled,
                format!("{who}: enrollment group \"{}\" is disabled", g.name),
            ));
        }
        return Ok(Match {
            enrollment: format!("group {}", g.name),
            individual_device_id: None,
            issue_from: g.settings.issue_from.clone(),
            group_id: Some(g.name.clone()),
            signer: verified.chain.get(1).cloned(),
            allocation: g.settings.allocation.clone(),
            enrollment_json: (
                "enrollmentGroup",
                super::allocation::enrollment_json(
                    ("enrollmentGroupId", &g.name),
                    None,
                    g.settings.edge,
                    &g.settings.allocation,
                    linked_hub,
                    g.settings.added,
                ),
            ),
        });
    }
    // No enrollment: say why in the chain check's own words against all of DPS's CAs.
    let all = st.as_registry(None);
    match HubTrust::new(&all).verify(registration_id, chain, now) {
        Err(r) => Err(DpsRefusal::unauthorized(r)),
        Ok(v) => {
            let anchor = v.chain.last().cloned().unwrap_or_default();
            let ca = all
                .cas
                .iter()
                .find(|c| pem_to_der(&c.cert_pem).is_some_and(|d| d == anchor))
                .map(|c| c.name.clone())
                .unwrap_or_default();
            Err(DpsRefusal::new(
                401,
                code::UNAUTHORIZED,
                DpsRefusalKind::NoEnrollment,
                format!(
                    "{who}: no enrollment: the chain ends at DPS's verified CA \"{ca}\" but no enrollment group uses it, and there is no individual enrollment \"{registration_id}\""
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DpsRefusalKind as K;

    /// The kinds are API (`--json`, the hub's refusal list, logs): each its old string, no two
    /// alike.
    #[test]
    fn refusal_kinds_keep_their_strings() {
        let all = [
            (K::Registry, "registry"),
            (K::BadRequest, "bad-request"),
            (K::CsrApiVersion, "csr-api-version"),
            (K::OperationNotFound, "operation-not-found"),
            (K::BadRegistrationId, "bad-registration-id"),
            (K::RegistrationIdMismatch, "registration-id-mismatch"),
            (K::PayloadLimit, "payload-limit"),
            (K::RegistrationIdCase, "registration-id-case"),
            (K::CsrNotEnabled, "csr-not-enabled"),
            (K::BadCsr, "bad-csr"),
            (K::CnMismatch, "cn-mismatch"),
            (K::CnCase, "cn-case"),
            (K::CaAsDevice, "ca-as-device"),
            (K::EnrollmentDisabled, "enrollment-disabled"),
            (K::Thumbprint, "thumbprint"),
            (K::NoEnrollment, "no-enrollment"),
            (K::Certificate("no-certificate"), "no-certificate"),
            (K::Csr("csr-subject"), "csr-subject"),
            (K::Webhook("webhook-timeout"), "webhook-timeout"),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (kind, text) in all {
            assert_eq!(kind.as_str(), text);
            assert_eq!(kind.to_string(), text);
            assert!(seen.insert(text), "{text} twice");
        }
    }
}
