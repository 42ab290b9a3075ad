//! Fleet provisioning by claim: the service functions the broker routes
//! `$aws/certificates/create-from-csr/json`, `$aws/certificates/create/json` and
//! `$aws/provisioning-templates/NAME/provision/json` to
//! (<https://docs.aws.amazon.com/iot/latest/developerguide/fleet-provision-api.html>). No MQTT
//! here. A new certificate is PENDING_ACTIVATION until `RegisterThing` sets the status its
//! template says, as that page documents; its ownership token is single use and expires after
//! [`OWNERSHIP_TOKEN_LIFETIME`].

use std::collections::BTreeMap;
use std::sync::Arc;

use chainsmith_pki::pki::issue::{self, IssueSpec, Profile, Validity};
use chainsmith_pki::pki::{CaHandle, Eku, KeyAlg, csr, subject};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{Registry, RegistryError, Status, certificate_id, insert_certificate, random_hex};
use crate::rules::{Fleet, FleetRejection, FleetRequest};

/// The longest `certificateSigningRequest` taken: 4096 characters, the length constraint of
/// `certificateSigningRequest` in the `CreateCertificateFromCsr` API reference
/// (<https://docs.aws.amazon.com/iot/latest/apireference/API_CreateCertificateFromCsr.html>).
pub const MAX_CSR_CHARS: usize = 4096;

/// The most `parameters` a `RegisterThing` request may carry. AWS documents no count; chosen
/// far above any template's (a template body is at most 10,240 characters, the
/// `RegisterThing` API reference's `templateBody` constraint).
pub const MAX_PARAMETERS: usize = 64;

/// The longest parameter key (2048) and value (4096), the `parameters` constraints of the
/// `RegisterThing` API reference
/// (<https://docs.aws.amazon.com/iot/latest/apireference/API_RegisterThing.html>).
pub const MAX_PARAMETER_KEY_CHARS: usize = 2048;
/// See [`MAX_PARAMETER_KEY_CHARS`].
pub const MAX_PARAMETER_VALUE_CHARS: usize = 4096;

/// Where the certificates the service issues come from: a CA named once (`aws serve
/// --issuing-ca`), or made on first need (chainsmith's own AWS-like issuer).
pub type IssuerSource = Box<dyn Fn() -> Result<CaHandle, String> + Send + Sync>;

/// The issuer, made at most once.
#[derive(Default)]
pub(super) struct IssuerState {
    source: Option<IssuerSource>,
    made: Option<Arc<CaHandle>>,
}

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
    /// The ownership token is unknown, used, expired, or for another certificate (400
    /// `InvalidCertificateOwnershipToken`, as AWS answers: aws-iot-device-sdk-js-v2 issue 69).
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
    /// The request's JSON is not what the API takes (400).
    #[error("the request is not valid: {0}")]
    InvalidRequest(String),
    /// The template does not render with these parameters, or the registry refuses (400).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The issuing CA cannot issue (500).
    #[error("the issuing CA cannot issue: {0}")]
    Issuing(String),
}

impl FleetError {
    /// The `statusCode` of the `/rejected` reply, as the SDKs' status list names them
    /// (400 invalid CSR or request, 404 not found, 429 too many requests, 500 internal error).
    pub fn status_code(&self) -> u16 {
        match self {
            FleetError::InvalidCsr(_)
            | FleetError::InvalidToken(_)
            | FleetError::InvalidRequest(_)
            | FleetError::Registry(_) => 400,
            FleetError::TemplateNotFound(_) => 404,
            FleetError::Throttled => 429,
            FleetError::Issuing(_) => 500,
        }
    }

    /// The `errorCode` of the `/rejected` reply. `InvalidCertificateOwnershipToken` is what
    /// AWS answers (seen in aws-iot-device-sdk-js-v2 issue 69); the others follow the names
    /// of AWS IoT's API exceptions (`InvalidRequestException`, `ResourceNotFoundException`,
    /// `ThrottlingException`, `InternalFailureException`) without the suffix, as AWS does
    /// not list the provisioning MQTT API's codes.
    pub fn error_code(&self) -> &'static str {
        match self {
            FleetError::InvalidCsr(_) => "InvalidCsr",
            FleetError::InvalidToken(_) => "InvalidCertificateOwnershipToken",
            FleetError::InvalidRequest(_) => "InvalidRequest",
            FleetError::Registry(_) => "InvalidParameters",
            FleetError::TemplateNotFound(_) => "ResourceNotFound",
            FleetError::Throttled => "Throttling",
            FleetError::Issuing(_) => "InternalFailure",
        }
    }
}

/// An ownership token of the last hour, spent or not.
pub(super) struct Token {
    certificate_id: String,
    expires: OffsetDateTime,
    /// RegisterThing took it (a token is single use).
    spent: bool,
}

/// AWS's key rule for a CSR: "an RSA key with a length of at least 2048 bits or an ECC key
/// from NIST P-256, NIST P-384, or NIST P-521 curves" ("X.509 client certificates",
/// <https://docs.aws.amazon.com/iot/latest/developerguide/x509-client-certs.html>).
fn check_csr_key(spki_der: &[u8]) -> Result<(), FleetError> {
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::PublicKey;
    let bad = |what: String| {
        Err(FleetError::InvalidCsr(format!(
            "{what}; AWS IoT takes RSA keys of at least 2048 bits or EC keys on P-256, P-384 or P-521"
        )))
    };
    let Ok((_, spki)) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der) else {
        return bad("its public key does not parse".into());
    };
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) if rsa.key_size() >= 2048 => Ok(()),
        Ok(PublicKey::RSA(rsa)) => bad(format!("its RSA key has {} bits", rsa.key_size())),
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                "1.2.840.10045.3.1.7" | "1.3.132.0.34" | "1.3.132.0.35" => Ok(()),
                other => bad(format!("its EC key is on curve {other}")),
            }
        }
        _ => bad(format!(
            "its key is of algorithm {}",
            spki.algorithm.algorithm.to_id_string()
        )),
    }
}

impl Registry {
    /// Take certificates fleet provisioning issues from `source` (asked once, on first need).
    pub fn set_issuer(&self, source: IssuerSource) {
        *self.issuer.lock().expect("issuer") = IssuerState {
            source: Some(source),
            made: None,
        };
    }

    fn issuer(&self) -> Result<Arc<CaHandle>, FleetError> {
        let mut state = self.issuer.lock().expect("issuer");
        if let Some(made) = &state.made {
            return Ok(made.clone());
        }
        let Some(source) = &state.source else {
            return Err(FleetError::Issuing(
                "this service has no issuing CA (aws serve names one)".into(),
            ));
        };
        let made = Arc::new(source().map_err(FleetError::Issuing)?);
        state.made = Some(made.clone());
        Ok(made)
    }

    /// `CreateCertificateFromCsr`: a certificate for the CSR's key, signed by `issuer` (the
    /// workspace CA the user named), PENDING_ACTIVATION.
    pub fn create_certificate_from_csr(
        &self,
        issuer: &CaHandle,
        csr_pem: &str,
    ) -> Result<NewCertificate, FleetError> {
        if csr_pem.len() > MAX_CSR_CHARS {
            return Err(FleetError::InvalidCsr(format!(
                "it is {} characters; AWS takes at most {MAX_CSR_CHARS}",
                csr_pem.len()
            )));
        }
        let parsed = csr::parse_csr(csr_pem.as_bytes())
            .map_err(|e| FleetError::InvalidCsr(e.to_string()))?;
        check_csr_key(&parsed.spki_der)?;
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
            validity: Validity::days_from(self.now(), ISSUED_CERTIFICATE_DAYS),
        })
    }

    fn keep_new(
        &self,
        der: Vec<u8>,
        pem: String,
        private_key: Option<String>,
    ) -> Result<NewCertificate, FleetError> {
        let now = self.now();
        let mut tokens = self.tokens.lock().expect("tokens");
        // "If the certificate created by CreateCertificateFromCsr isn't activated and isn't
        // attached to a policy or a thing by the time the token expires, the certificate is
        // deleted" (the Device provisioning MQTT API page): a claim device cannot fill the
        // registry with certificates it never registers.
        let abandoned: Vec<String> = tokens
            .values()
            .filter(|t| t.expires <= now)
            .map(|t| t.certificate_id.clone())
            .collect();
        tokens.retain(|_, t| t.expires > now);
        if tokens.len() >= self.token_limit {
            return Err(FleetError::Throttled);
        }
        let id = certificate_id(&der);
        self.modify(|s| {
            for gone in &abandoned {
                if s.certificates.get(gone).is_some_and(|c| {
                    c.status == Status::PendingActivation
                        && c.policies.is_empty()
                        && c.things.is_empty()
                }) {
                    s.certificates.remove(gone);
                }
            }
            insert_certificate(s, &id, None, None, &der, Status::PendingActivation).map(|_| ())
        })?;
        let token = random_hex(32);
        tokens.insert(
            token.clone(),
            Token {
                certificate_id: id.clone(),
                expires: now + OWNERSHIP_TOKEN_LIFETIME,
                spent: false,
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
        let now = self.now();
        // A template name that does not exist is refused before the token is spent, so the
        // device can ask again with the right name.
        if !self.snapshot()?.templates.contains_key(template_name) {
            return Err(FleetError::TemplateNotFound(template_name.to_string()));
        }
        // Single use: the token is spent whatever happens next (kept until its hour is over,
        // so an abandoned certificate is still deleted then).
        let certificate_id = {
            let mut tokens = self.tokens.lock().expect("tokens");
            match tokens.get_mut(ownership_token) {
                None => return Err(FleetError::InvalidToken("unknown")),
                Some(t) if t.spent => return Err(FleetError::InvalidToken("already used")),
                Some(t) if t.expires <= now => {
                    return Err(FleetError::InvalidToken("expired (tokens last one hour)"));
                }
                Some(t) => {
                    t.spent = true;
                    t.certificate_id.clone()
                }
            }
        };
        let mut params = params.clone();
        params.insert("AWS::IoT::Certificate::Id".into(), certificate_id.clone());
        let provision =
            self.modify(|s| Registry::provision(s, template_name, &params, &certificate_id))?;
        Ok(Registered {
            thing_name: provision.thing.map(|t| t.name),
            device_configuration: provision.device_configuration,
        })
    }
}

/// A request body's string field, if there.
fn text_field<'a>(body: &'a Value, name: &str) -> Result<Option<&'a str>, FleetError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(FleetError::InvalidRequest(format!(
            "{name} is not a string"
        ))),
    }
}

/// `RegisterThing`'s `parameters`: a map of strings within the API's limits.
fn parameters(body: &Value) -> Result<BTreeMap<String, String>, FleetError> {
    let Some(given) = body.get("parameters").filter(|v| !v.is_null()) else {
        return Ok(BTreeMap::new());
    };
    let Some(map) = given.as_object() else {
        return Err(FleetError::InvalidRequest(
            "parameters is not an object".into(),
        ));
    };
    if map.len() > MAX_PARAMETERS {
        return Err(FleetError::InvalidRequest(format!(
            "{} parameters; at most {MAX_PARAMETERS}",
            map.len()
        )));
    }
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let Some(v) = v.as_str() else {
            return Err(FleetError::InvalidRequest(format!(
                "parameter {k:?} is not a string"
            )));
        };
        if k.chars().count() > MAX_PARAMETER_KEY_CHARS
            || v.chars().count() > MAX_PARAMETER_VALUE_CHARS
        {
            return Err(FleetError::InvalidRequest(format!(
                "parameter {:?} is longer than AWS allows ({MAX_PARAMETER_KEY_CHARS} for a key, {MAX_PARAMETER_VALUE_CHARS} for a value)",
                k.chars().take(64).collect::<String>()
            )));
        }
        // The service fills AWS's own parameters; a device does not choose its certificate.
        if k.starts_with("AWS::") {
            return Err(FleetError::InvalidRequest(format!(
                "parameter {k:?} is AWS's own and filled by the service"
            )));
        }
        out.insert(k.clone(), v.to_string());
    }
    Ok(out)
}

fn new_certificate_json(n: NewCertificate) -> Value {
    let mut v = json!({
        "certificateId": n.certificate_id,
        "certificatePem": n.certificate_pem,
        "certificateOwnershipToken": n.certificate_ownership_token,
    });
    if let Some(key) = n.private_key {
        v["privateKey"] = Value::String(key);
    }
    v
}

impl Registry {
    fn answer(&self, request: &FleetRequest, body: &Value) -> Result<Value, FleetError> {
        match request {
            FleetRequest::CreateCertificateFromCsr => {
                let csr = text_field(body, "certificateSigningRequest")?.ok_or_else(|| {
                    FleetError::InvalidRequest("certificateSigningRequest is missing".into())
                })?;
                let issuer = self.issuer()?;
                Ok(new_certificate_json(
                    self.create_certificate_from_csr(&issuer, csr)?,
                ))
            }
            FleetRequest::CreateKeysAndCertificate => {
                let issuer = self.issuer()?;
                Ok(new_certificate_json(
                    self.create_keys_and_certificate(&issuer)?,
                ))
            }
            FleetRequest::RegisterThing { template } => {
                let token = text_field(body, "certificateOwnershipToken")?
                    .filter(|t| !t.is_empty())
                    .ok_or(FleetError::InvalidToken("missing or empty"))?;
                let params = parameters(body)?;
                let r = self.register_thing(template, &params, token)?;
                let mut v = json!({ "deviceConfiguration": r.device_configuration });
                if let Some(name) = r.thing_name {
                    v["thingName"] = Value::String(name);
                }
                Ok(v)
            }
        }
    }
}

impl Fleet for Registry {
    /// The device provisioning MQTT API's answers, as the SDKs' `iotidentity` clients read
    /// them (<https://docs.aws.amazon.com/iot/latest/developerguide/fleet-provision-api.html>).
    fn handle(&self, request: &FleetRequest, body: &Value) -> Result<Value, FleetRejection> {
        self.answer(request, body).map_err(|e| FleetRejection {
            status_code: e.status_code(),
            error_code: e.error_code(),
            error_message: e.to_string(),
        })
    }
}
