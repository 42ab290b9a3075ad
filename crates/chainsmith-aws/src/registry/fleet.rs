//! Fleet provisioning by claim: the service functions the broker routes
//! `$aws/certificates/create-from-csr/json`, `$aws/certificates/create/json` and
//! `$aws/provisioning-templates/NAME/provision/json` to
//! (<https://docs.aws.amazon.com/iot/latest/developerguide/fleet-provision-api.html>). No MQTT
//! here. A new certificate is PENDING_ACTIVATION until `RegisterThing` sets the status its
//! template says, as that page documents; its ownership token is single use and expires after
//! [`OWNERSHIP_TOKEN_LIFETIME`].

use std::collections::BTreeMap;

use chainsmith_pki::pki::issue::{self, IssueSpec, Profile, Validity};
use chainsmith_pki::pki::{CaHandle, Eku, KeyAlg, csr, subject};
use time::OffsetDateTime;

use super::{Registry, RegistryError, Status, certificate_id, insert_certificate, random_hex};

/// How long a certificate ownership token is good for: one hour (the fleet provisioning MQTT
/// API page: "the token expires after one hour").
pub const OWNERSHIP_TOKEN_LIFETIME: time::Duration = time::Duration::hours(1);

/// The most ownership tokens outstanding at once. Chosen: one per certificate created in the
/// last hour; AWS documents no count, and its `CreateCertificateFromCsr` rate quota is far
/// below this many an hour for one account.
pub const MAX_OWNERSHIP_TOKENS: usize = 10_000;

/// How long certificates the service issues are valid. Chosen: AWS-issued client certificates
/// expire on 31 December 2049; a workspace CA rarely outlives ten years.
pub const ISSUED_CERTIFICATE_DAYS: u32 = 3650;

/// What `CreateCertificateFromCsr` and `CreateKeysAndCertificate` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCertificate {
    /// `certificateId`.
    pub certificate_id: String,
    /// `certificatePem`.
    pub certificate_pem: String,
    /// `privateKey` (CreateKeysAndCertificate only).
    pub private_key: Option<String>,
    /// `certificateOwnershipToken`.
    pub certificate_ownership_token: String,
}

/// What `RegisterThing` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registered {
    /// `thingName`.
    pub thing_name: Option<String>,
    /// `deviceConfiguration`.
    pub device_configuration: BTreeMap<String, String>,
}

/// A rejected request: `statusCode`, `errorCode` and `errorMessage` of the `/rejected` reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The CSR does not parse or its signature is wrong (the SDKs' INVALID_CSR, 400).
    #[error("the CSR is not valid: {0}")]
    InvalidCsr(String),
    /// The ownership token is unknown, used, expired, or for another certificate (403).
    #[error("the certificate ownership token is not valid: {0}")]
    InvalidToken(&'static str),
    /// No such template (404).
    #[error("the provisioning template {0} does not exist")]
    TemplateNotFound(String),
    /// Too many tokens outstanding (429).
    #[error(
        "too many certificates are waiting for RegisterThing; at most {MAX_OWNERSHIP_TOKENS} an hour"
    )]
    Throttled,
    /// The template does not render with these parameters, or the registry refuses (400).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The issuing CA cannot issue (500).
    #[error("the issuing CA cannot issue: {0}")]
    Issuing(String),
}

impl FleetError {
    /// The `statusCode` of the `/rejected` reply, as the SDKs' status list names them
    /// (400 invalid CSR or request, 403 forbidden, 404 not found, 429 too many requests,
    /// 500 internal error).
    pub fn status_code(&self) -> u16 {
        match self {
            FleetError::InvalidCsr(_) | FleetError::Registry(_) => 400,
            FleetError::InvalidToken(_) => 403,
            FleetError::TemplateNotFound(_) => 404,
            FleetError::Throttled => 429,
            FleetError::Issuing(_) => 500,
        }
    }
}

/// One outstanding ownership token.
pub(super) struct Token {
    certificate_id: String,
    expires: OffsetDateTime,
}

impl Registry {
    /// `CreateCertificateFromCsr`: a certificate for the CSR's key, signed by `issuer` (the
    /// workspace CA the user named), PENDING_ACTIVATION.
    pub fn create_certificate_from_csr(
        &self,
        issuer: &CaHandle,
        csr_pem: &str,
    ) -> Result<NewCertificate, FleetError> {
        let parsed = csr::parse_csr(csr_pem.as_bytes())
            .map_err(|e| FleetError::InvalidCsr(e.to_string()))?;
        let spec = self.issued_spec(parsed.cn.as_deref())?;
        let issued = issue::issue_for_public_key(&spec, &parsed.spki_der, issuer)
            .map_err(|e| FleetError::Issuing(e.to_string()))?;
        self.keep_new(issued.cert_der, issued.cert_pem, None)
    }

    /// `CreateKeysAndCertificate`: a fresh key and a certificate for it, signed by `issuer`.
    pub fn create_keys_and_certificate(
        &self,
        issuer: &CaHandle,
    ) -> Result<NewCertificate, FleetError> {
        let spec = self.issued_spec(None)?;
        let issued = issue::issue(&spec, KeyAlg::EcP256, Some(issuer))
            .map_err(|e| FleetError::Issuing(e.to_string()))?;
        self.keep_new(issued.cert_der, issued.cert_pem, issued.key_pem)
    }

    fn issued_spec(&self, cn: Option<&str>) -> Result<IssueSpec, FleetError> {
        // AWS's issued certificates carry the subject "AWS IoT Certificate"; a CSR's CN is kept.
        let subject = subject::cn_only(cn.unwrap_or("AWS IoT Certificate"))
            .map_err(|e| FleetError::InvalidCsr(e.to_string()))?;
        Ok(IssueSpec {
            subject,
            profile: Profile::Device {
                eku: Eku::Client,
                sans: Vec::new(),
            },
            validity: Validity::days_from(self.clock.now(), ISSUED_CERTIFICATE_DAYS),
        })
    }

    fn keep_new(
        &self,
        der: Vec<u8>,
        pem: String,
        private_key: Option<String>,
    ) -> Result<NewCertificate, FleetError> {
        let now = self.clock.now();
        let mut tokens = self.tokens.lock().expect("tokens");
        tokens.retain(|_, t| t.expires > now);
        if tokens.len() >= MAX_OWNERSHIP_TOKENS {
            return Err(FleetError::Throttled);
        }
        let id = certificate_id(&der);
        self.modify(|s| {
            insert_certificate(s, &id, None, None, &der, Status::PendingActivation).map(|_| ())
        })?;
        let token = random_hex(32);
        tokens.insert(
            token.clone(),
            Token {
                certificate_id: id.clone(),
                expires: now + OWNERSHIP_TOKEN_LIFETIME,
            },
        );
        Ok(NewCertificate {
            certificate_id: id,
            certificate_pem: pem,
            private_key,
            certificate_ownership_token: token,
        })
    }

    /// `RegisterThing`: spend the token, render the template with `params` and the
    /// certificate's id (`AWS::IoT::Certificate::Id`), and provision what it says.
    pub fn register_thing(
        &self,
        template_name: &str,
        params: &BTreeMap<String, String>,
        ownership_token: &str,
    ) -> Result<Registered, FleetError> {
        let now = self.clock.now();
        // Single use: the token is gone whatever happens next.
        let token = self.tokens.lock().expect("tokens").remove(ownership_token);
        let token = match token {
            None => return Err(FleetError::InvalidToken("unknown or already used")),
            Some(t) if t.expires <= now => {
                return Err(FleetError::InvalidToken("expired (tokens last one hour)"));
            }
            Some(t) => t,
        };
        let state = self.snapshot()?;
        if !state.templates.contains_key(template_name) {
            return Err(FleetError::TemplateNotFound(template_name.to_string()));
        }
        let mut params = params.clone();
        params.insert(
            "AWS::IoT::Certificate::Id".into(),
            token.certificate_id.clone(),
        );
        let provision =
            self.modify(|s| Registry::provision(s, template_name, &params, &token.certificate_id))?;
        Ok(Registered {
            thing_name: provision.thing.map(|t| t.name),
            device_configuration: provision.device_configuration,
        })
    }
}
