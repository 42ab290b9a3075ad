//! The seam between the local AWS IoT Core's broker (the wire: TLS, MQTT, sessions, shadows)
//! and AWS's rules (the registry of CAs, certificates, things and policies; provisioning).
//! The broker asks; [`Rules`] decides. The registry implements it; the broker never reads the
//! registry's files, and the registry never sees a socket.

/// What a connection asks to do, as IoT policies name it (`iot:Connect`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// `iot:Connect`, on `client/CLIENT-ID`.
    Connect,
    /// `iot:Publish`, on `topic/TOPIC`.
    Publish,
    /// `iot:Subscribe`, on `topicfilter/FILTER`.
    Subscribe,
    /// `iot:Receive`, on `topic/TOPIC`, checked before each delivery.
    Receive,
}

/// A connection AWS's rules let in: who it is, for every later decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// The MQTT client id of the CONNECT.
    pub client_id: String,
    /// Lowercase hex SHA-256 of the client certificate's DER, as AWS names certificates.
    pub certificate_id: String,
    /// The thing attached to the certificate whose name equals the client id, if any: what
    /// `${iot:Connection.Thing.ThingName}` and `…IsAttached` read.
    pub thing_name: Option<String>,
}

/// Why a connection is refused. AWS only closes the connection; the local service says which
/// of these it was in its log and to the connection test.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No certificate with this id, and no auto-registering CA above it.
    #[error("the certificate {certificate_id} is not registered")]
    CertificateNotRegistered {
        /// Lowercase hex SHA-256 of the DER.
        certificate_id: String,
    },
    /// Registered, but INACTIVE, REVOKED or PENDING_ACTIVATION.
    #[error("the certificate {certificate_id} is {status}, not ACTIVE")]
    CertificateNotActive {
        /// Lowercase hex SHA-256 of the DER.
        certificate_id: String,
        /// AWS's status word.
        status: String,
    },
    /// Registered and ACTIVE, but expired or not yet valid at the CONNECT.
    #[error(
        "the certificate {certificate_id} is not valid now (valid from {not_before} to {not_after})"
    )]
    OutsideValidity {
        /// Lowercase hex SHA-256 of the DER.
        certificate_id: String,
        /// Its notBefore, RFC 3339.
        not_before: String,
        /// Its notAfter, RFC 3339.
        not_after: String,
    },
    /// The issuer is not a registered CA.
    #[error("the certificate's CA {ca_certificate_id} is not registered")]
    CaNotRegistered {
        /// The CA certificate's id, or its subject when it was not presented.
        ca_certificate_id: String,
    },
    /// The issuer is registered but INACTIVE.
    #[error("the certificate's CA {ca_certificate_id} is INACTIVE")]
    CaInactive {
        /// The CA certificate's id.
        ca_certificate_id: String,
    },
    /// JITP: the certificate was provisioned by this connection; AWS closes it and the device
    /// retries.
    #[error(
        "the certificate {certificate_id} was just provisioned under CA {ca_certificate_id} (JITP); the device connects again"
    )]
    JustProvisioned {
        /// The new certificate's id.
        certificate_id: String,
        /// The auto-registering CA's id.
        ca_certificate_id: String,
    },
    /// JITP: the CA's template could not provision this certificate (a template that does
    /// not render with its fields, a full registry); AWS closes the connection and reports it
    /// in its logs.
    #[error("the certificate {certificate_id} could not be JIT-provisioned: {what}")]
    ProvisioningFailed {
        /// The certificate's id.
        certificate_id: String,
        /// Why.
        what: String,
    },
    /// No attached policy allows `iot:Connect` on `client/CLIENT-ID`.
    #[error("no policy attached to the certificate allows iot:Connect for client id {client_id}")]
    ConnectNotAllowed {
        /// The CONNECT's client id.
        client_id: String,
    },
    /// The presented chain does not parse.
    #[error("the client certificate or its chain cannot be read: {what}")]
    Unreadable {
        /// What the parser said.
        what: String,
    },
}

impl Refused {
    /// A stable name for the refusal, which the connection test matches on to say what to do:
    /// `certificate-not-registered`, `certificate-inactive`, `certificate-revoked`,
    /// `certificate-pending-activation` (or `certificate-` and another status word),
    /// `outside-validity`, `ca-not-registered`, `ca-inactive`, `just-provisioned`, `provisioning-failed`,
    /// `connect-not-allowed`, `unreadable`.
    pub fn kind(&self) -> String {
        match self {
            Refused::CertificateNotRegistered { .. } => "certificate-not-registered".into(),
            Refused::CertificateNotActive { status, .. } => {
                format!(
                    "certificate-{}",
                    status.to_ascii_lowercase().replace('_', "-")
                )
            }
            Refused::OutsideValidity { .. } => "outside-validity".into(),
            Refused::CaNotRegistered { .. } => "ca-not-registered".into(),
            Refused::CaInactive { .. } => "ca-inactive".into(),
            Refused::JustProvisioned { .. } => "just-provisioned".into(),
            Refused::ProvisioningFailed { .. } => "provisioning-failed".into(),
            Refused::ConnectNotAllowed { .. } => "connect-not-allowed".into(),
            Refused::Unreadable { .. } => "unreadable".into(),
        }
    }
}

/// AWS's rules, asked by the broker at each decision. Implementations are shared by every
/// connection (interior mutability where a decision changes state, as JITP does).
pub trait Rules: Send + Sync + 'static {
    /// Decide a TLS client after its CONNECT: `chain` is the DER the client presented, leaf
    /// first (JITP devices send their CA's certificate after the leaf).
    fn admit(&self, chain: &[Vec<u8>], client_id: &str) -> Result<Admitted, Refused>;

    /// May this connection, as its policies stand now, do `action` on `resource` (a topic
    /// name for Publish and Receive, a topic filter for Subscribe, the client id for Connect)?
    fn allows(&self, who: &Admitted, action: Action, resource: &str) -> bool;

    /// Is this connection's certificate (and its CA) still ACTIVE? Asked every
    /// [`crate::broker::limits::ADMISSION_RECHECK`] while it is connected: AWS's
    /// UpdateCertificate, "Within a few minutes of updating a certificate from an ACTIVE
    /// state to any other state, AWS IoT disconnects all devices that used that certificate
    /// to connect." Rules that never change say yes.
    fn still_admitted(&self, _who: &Admitted) -> bool {
        true
    }

    /// The fleet provisioning service, when these rules offer one (the registry does); without
    /// it, the provisioning topics are ordinary topics.
    fn fleet(&self) -> Option<&dyn Fleet> {
        None
    }
}

/// A request of the device provisioning MQTT API (fleet provisioning by claim), named by the
/// topic it was published to
/// (<https://docs.aws.amazon.com/iot/latest/developerguide/fleet-provision-api.html>).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FleetRequest {
    /// `$aws/certificates/create-from-csr/json`.
    CreateCertificateFromCsr,
    /// `$aws/certificates/create/json`.
    CreateKeysAndCertificate,
    /// `$aws/provisioning-templates/NAME/provision/json`.
    RegisterThing {
        /// The template's name, from the topic.
        template: String,
    },
}

/// A `/rejected` reply's fields (the SDKs' `ErrorResponse`: `statusCode`, `errorCode`,
/// `errorMessage`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetRejection {
    /// `statusCode`.
    pub status_code: u16,
    /// `errorCode`.
    pub error_code: &'static str,
    /// `errorMessage`.
    pub error_message: String,
}

/// The fleet provisioning service, asked by the broker for each request a device publishes
/// (after its policy allowed the publish). Answers the `/accepted` payload or the rejection.
pub trait Fleet: Send + Sync + 'static {
    /// Answer `request` with its JSON `body` (already parsed).
    fn handle(
        &self,
        request: &FleetRequest,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, FleetRejection>;
}
