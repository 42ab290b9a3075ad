//! The local AWS IoT Core's registry: the state under `WS/aws/registry.json` (registration
//! code, CAs, certificates, things, policies, provisioning templates) and AWS's rules over it
//! ([`Rules`]: admission, JITP and JITR, policy decisions).
//!
//! One JSON file, read through [`chainsmith_server::state_file::load`] (a damaged file is set
//! aside and the registry goes on, keeping the registration code when it can be read) and
//! written whole with [`chainsmith_pki::store::write_atomic`].
//!
//! Shared with a running server: every call first compares the file's modification time and
//! length with those it last read and reloads when they differ, so `chainsmith aws cert update
//! … --status REVOKED` in another process is seen by the next connection and the next
//! publish. Two processes writing at the same instant: the later write wins (the file is never
//! torn); the CLI's writes are one command each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use chainsmith_pki::clock::Clock;
use chainsmith_pki::pki::inspect::{CertView, signed_by};
use chainsmith_pki::pki::verify::{TrustAnchors, verify_device_chain};
use chainsmith_pki::store;

use crate::policy::{self, Context, MAX_POLICIES_PER_CERTIFICATE, PolicyDocument};
use crate::rules::{Action, Admitted, Refused, Rules};
use crate::template::{self, CertificateSpec, PolicySpec, Template};

/// The most CA certificates the registry holds. AWS's quota counts CAs per subject (10 with
/// the same subject per account and Region); the total here is chosen so the state file stays
/// small enough to rewrite on every change.
pub const MAX_CAS: usize = 1_000;

/// The most device certificates. Chosen, not AWS's (which has no documented count): each is
/// about 1 KB of PEM in the one state file rewritten on every change, so 10,000 keep it near
/// 10 MB.
pub const MAX_CERTIFICATES: usize = 10_000;

/// The most things. Chosen like [`MAX_CERTIFICATES`] (AWS documents no count).
pub const MAX_THINGS: usize = 10_000;

/// The most things attached to one certificate. Chosen: AWS documents no count for
/// non-exclusive attachment; a device certificate normally has one.
pub const MAX_THINGS_PER_CERTIFICATE: usize = 16;

/// The most named policies. AWS documents no count beyond its per-certificate quota; chosen so
/// that every document (≤ 2048 characters) fits in about 2 MB.
pub const MAX_POLICIES: usize = 1_000;

/// The most provisioning templates ("Maximum number of fleet provisioning templates per
/// customer: 256", AWS IoT Core quotas, <https://docs.aws.amazon.com/general/latest/gr/iot-core.html>).
pub const MAX_TEMPLATES: usize = 256;

/// A CA's or certificate's status, AWS's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// May connect / may sign connecting certificates.
    Active,
    /// Registered but switched off.
    Inactive,
    /// A certificate revoked by the owner (device certificates only).
    Revoked,
    /// JITR: registered by its first connection, waiting to be activated.
    PendingActivation,
}

impl Status {
    /// AWS's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "ACTIVE",
            Status::Inactive => "INACTIVE",
            Status::Revoked => "REVOKED",
            Status::PendingActivation => "PENDING_ACTIVATION",
        }
    }

    /// Read AWS's word.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "ACTIVE" => Some(Status::Active),
            "INACTIVE" => Some(Status::Inactive),
            "REVOKED" => Some(Status::Revoked),
            "PENDING_ACTIVATION" => Some(Status::PendingActivation),
            _ => None,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A registered CA certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRecord {
    /// Lowercase hex SHA-256 of the DER.
    pub id: String,
    /// The workspace entity it was registered from, when it was.
    pub name: Option<String>,
    /// ACTIVE or INACTIVE.
    pub status: Status,
    /// `--allow-auto-registration`: JITR/JITP for unknown certificates under it.
    pub auto_registration: bool,
    /// The provisioning template JITP renders, by name.
    pub template: Option<String>,
    /// The certificate, PEM.
    pub pem: String,
}

/// A registered device certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRecord {
    /// Lowercase hex SHA-256 of the DER.
    pub id: String,
    /// The workspace entity it was registered from, when it was.
    pub name: Option<String>,
    /// Its status.
    pub status: Status,
    /// The registered CA that signed it; `None` for a certificate the service issued itself.
    pub ca_id: Option<String>,
    /// The certificate, PEM.
    pub pem: String,
    /// Attached policies, by name (at most [`MAX_POLICIES_PER_CERTIFICATE`]).
    #[serde(default)]
    pub policies: Vec<String>,
    /// Attached things, by name (at most [`MAX_THINGS_PER_CERTIFICATE`]).
    #[serde(default)]
    pub things: Vec<String>,
}

/// A thing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThingRecord {
    /// Its attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// Everything `WS/aws/registry.json` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// 64 lowercase hex, made once per workspace.
    pub registration_code: String,
    /// CAs by id.
    #[serde(default)]
    pub cas: BTreeMap<String, CaRecord>,
    /// Certificates by id.
    #[serde(default)]
    pub certificates: BTreeMap<String, CertificateRecord>,
    /// Things by name.
    #[serde(default)]
    pub things: BTreeMap<String, ThingRecord>,
    /// Policy documents by name (the text as given).
    #[serde(default)]
    pub policies: BTreeMap<String, String>,
    /// Provisioning templates by name (the body as given).
    #[serde(default)]
    pub templates: BTreeMap<String, String>,
}

/// Why a registry operation is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Reading or writing the state file.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The verification certificate's CN is not the registration code.
    #[error(
        "the verification certificate's CN is {found:?}, not this workspace's registration code {code}"
    )]
    VerificationWrongCn {
        /// What its CN is.
        found: String,
        /// The code.
        code: String,
    },
    /// The verification certificate is not signed by the CA's key.
    #[error(
        "the verification certificate is not signed by the key of the CA being registered ({ca_id})"
    )]
    VerificationWrongKey {
        /// The CA's id.
        ca_id: String,
    },
    /// A certificate does not parse.
    #[error("{what} is not a certificate: {why}")]
    NotACertificate {
        /// Which.
        what: &'static str,
        /// What the parser said.
        why: String,
    },
    /// The CA given is not a CA certificate.
    #[error("the certificate {id} is not a CA certificate (no basicConstraints CA:TRUE)")]
    NotACa {
        /// Its id.
        id: String,
    },
    /// Already there.
    #[error("{what} {id} is already registered")]
    Exists {
        /// `CA`, `certificate`, `thing`, `policy`, `template`.
        what: &'static str,
        /// Its id or name.
        id: String,
    },
    /// Not there.
    #[error("{what} {id} is not registered")]
    Unknown {
        /// `CA`, `certificate`, `thing`, `policy`, `template`.
        what: &'static str,
        /// Its id or name.
        id: String,
    },
    /// A device certificate whose signer is not a registered CA.
    #[error("no registered CA signed the certificate {id}")]
    NoRegisteredCa {
        /// The certificate's id.
        id: String,
    },
    /// A collection is full.
    #[error("the registry holds at most {limit} {what}")]
    Full {
        /// What.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A status change AWS does not allow.
    #[error("{what} cannot be set to {status}")]
    BadStatus {
        /// What.
        what: &'static str,
        /// The status asked for.
        status: Status,
    },
    /// A thing name AWS would refuse.
    #[error("the thing name {name:?} is not valid: AWS takes 1 to 128 of a-z A-Z 0-9 : _ -")]
    ThingName {
        /// The name.
        name: String,
    },
    /// A policy or template name AWS would refuse.
    #[error(
        "the {what} name {name:?} is not valid: AWS takes 1 to 128 of a-z A-Z 0-9 _ + = , . @ -"
    )]
    Name {
        /// `policy` or `template`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A policy document is refused.
    #[error("policy {name}: {source}")]
    Policy {
        /// The policy's name.
        name: String,
        /// Why.
        source: policy::PolicyError,
    },
    /// A template is refused.
    #[error("template {name}: {source}")]
    Template {
        /// The template's name.
        name: String,
        /// Why.
        source: template::TemplateError,
    },
}

/// A registry result.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// The id AWS gives a certificate: lowercase hex SHA-256 of its DER.
pub fn certificate_id(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref())
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut b).expect("system random source");
    hex::encode(b)
}

fn der_to_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

fn pem_to_der(text: &str) -> Option<Vec<u8>> {
    chainsmith_pki::pki::pem_to_der(text)
}

/// AWS's thing-name rule (CreateThing: `[a-zA-Z0-9:_-]+`, 1 to 128).
pub fn valid_thing_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= template::MAX_THING_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'))
}

/// AWS's policy- and template-name rule (CreatePolicy: `[\w+=,.@-]+`, 1 to 128).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

struct Loaded {
    state: State,
    /// The file's modification time and length when it was last read or written.
    stamp: Option<(SystemTime, u64)>,
    /// `state`'s policy documents, parsed once per change of the state rather than on every
    /// publish (a QoS 1 publish re-parsed its policies and cloned the whole registry:
    /// 0.04x Mosquitto's rate in `benches/aws.rs`). A document that no longer parses (a hand
    /// edit) is absent: it allows nothing.
    parsed: BTreeMap<String, PolicyDocument>,
}

impl Loaded {
    fn set(&mut self, state: State) {
        self.parsed = state
            .policies
            .iter()
            .filter_map(|(name, text)| Some((name.clone(), policy::parse(text).ok()?)))
            .collect();
        self.state = state;
    }

    /// The certificate's attached policies that parse.
    fn policies_of<'a>(
        &'a self,
        c: &'a CertificateRecord,
    ) -> impl Iterator<Item = &'a PolicyDocument> {
        c.policies.iter().filter_map(|n| self.parsed.get(n))
    }
}

/// The registry of one workspace, shared by every connection of a running server.
pub struct Registry {
    path: PathBuf,
    /// Behind a lock so a test can move a running server's time (a token's hour).
    clock: std::sync::RwLock<Clock>,
    loaded: Mutex<Loaded>,
    /// What was set aside when a damaged state file was read.
    notes: Mutex<Vec<String>>,
    /// Outstanding certificate ownership tokens (fleet provisioning), in memory only: a token
    /// lives for one hour and for the connection's server, as the device retries from the
    /// start after a restart anyway.
    tokens: Mutex<BTreeMap<String, fleet::Token>>,
    /// Where the certificates fleet provisioning issues come from.
    issuer: Mutex<fleet::IssuerState>,
    /// [`MAX_OWNERSHIP_TOKENS`], lowered by unit tests to reach it.
    token_limit: usize,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// The registry under `aws_dir` (`WS/aws/`), made with a fresh registration code when it
    /// does not exist yet.
    pub fn open(aws_dir: &Path, clock: Clock) -> Result<Registry> {
        store::make_private_dir_all(aws_dir)?;
        let r = Registry {
            path: aws_dir.join("registry.json"),
            clock: std::sync::RwLock::new(clock),
            loaded: Mutex::new(Loaded {
                state: State::default(),
                stamp: None,
                parsed: BTreeMap::new(),
            }),
            notes: Mutex::new(Vec::new()),
            tokens: Mutex::new(BTreeMap::new()),
            issuer: Mutex::new(fleet::IssuerState::default()),
            token_limit: MAX_OWNERSHIP_TOKENS,
        };
        // Make the code once: the first open writes it.
        r.modify(|s| {
            if s.registration_code.is_empty() {
                s.registration_code = random_hex(32);
            }
            Ok(())
        })?;
        Ok(r)
    }

    /// Measure time by `clock` from now on (a server passes its running clock; a test moves a
    /// fixed one past a token's hour, also while a broker shares the registry).
    pub fn set_clock(&self, clock: Clock) {
        *self.clock.write().unwrap_or_else(|p| p.into_inner()) = clock;
    }

    /// The time by the registry's clock.
    fn now(&self) -> time::OffsetDateTime {
        self.clock.read().unwrap_or_else(|p| p.into_inner()).now()
    }

    /// `WS/aws/registry.json`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was set aside when a damaged state file was read (one line each).
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().expect("notes").clone()
    }

    fn stamp(&self) -> Option<(SystemTime, u64)> {
        let m = std::fs::metadata(&self.path).ok()?;
        Some((m.modified().ok()?, m.len()))
    }

    /// Reload when the file changed since it was last read here.
    fn fresh<'a>(&self, loaded: &'a mut Loaded) -> Result<&'a mut State> {
        let now = self.stamp();
        if now.is_none() || now != loaded.stamp {
            let salvage = |bytes: &[u8]| {
                // Keep the registration code if it can be found: CAs registered with it stay
                // provable.
                let code = salvage_code(bytes).unwrap_or_default();
                let kept = if code.is_empty() {
                    "an empty registry".to_string()
                } else {
                    "an empty registry with the same registration code".to_string()
                };
                (
                    State {
                        registration_code: code,
                        ..State::default()
                    },
                    kept,
                )
            };
            match chainsmith_server::state_file::load(&self.path, salvage)? {
                None => loaded.set(State::default()),
                Some((state, note)) => {
                    loaded.set(state);
                    if let Some(n) = note {
                        self.notes.lock().expect("notes").push(n.to_string());
                    }
                }
            }
            loaded.stamp = self.stamp();
        }
        Ok(&mut loaded.state)
    }

    /// Read the state as it is now.
    pub fn snapshot(&self) -> Result<State> {
        let mut loaded = self.loaded.lock().expect("registry");
        Ok(self.fresh(&mut loaded)?.clone())
    }

    /// Change the state and write it, only when `f` succeeds.
    fn modify<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut loaded = self.loaded.lock().expect("registry");
        let mut state = self.fresh(&mut loaded)?.clone();
        let out = f(&mut state)?;
        if state != loaded.state || loaded.stamp.is_none() {
            let text = serde_json::to_vec_pretty(&state).expect("serialisable");
            store::write_atomic(&self.path, &text, 0o600)?;
            loaded.set(state);
            loaded.stamp = self.stamp();
        }
        Ok(out)
    }

    /// The registration code (`get-registration-code`).
    pub fn registration_code(&self) -> Result<String> {
        Ok(self.snapshot()?.registration_code)
    }

    /// `register-ca-certificate`: the verification certificate's CN must be the registration
    /// code and its signature the CA's key
    /// (<https://docs.aws.amazon.com/iot/latest/developerguide/register-CA-cert.html>).
    pub fn register_ca(
        &self,
        name: Option<&str>,
        ca_der: &[u8],
        verification_der: &[u8],
        active: bool,
        auto_registration: bool,
        template: Option<&str>,
    ) -> Result<CaRecord> {
        let view = CertView::from_der(ca_der).map_err(|e| RegistryError::NotACertificate {
            what: "the CA certificate",
            why: e.to_string(),
        })?;
        let id = certificate_id(ca_der);
        if !view.is_ca {
            return Err(RegistryError::NotACa { id });
        }
        let proof =
            CertView::from_der(verification_der).map_err(|e| RegistryError::NotACertificate {
                what: "the verification certificate",
                why: e.to_string(),
            })?;
        self.modify(|s| {
            let cn = proof.cn.clone().unwrap_or_default();
            if cn != s.registration_code {
                return Err(RegistryError::VerificationWrongCn {
                    found: cn,
                    code: s.registration_code.clone(),
                });
            }
            if !signed_by(verification_der, ca_der) {
                return Err(RegistryError::VerificationWrongKey { ca_id: id.clone() });
            }
            if s.cas.contains_key(&id) {
                return Err(RegistryError::Exists {
                    what: "CA",
                    id: id.clone(),
                });
            }
            if s.cas.len() >= MAX_CAS {
                return Err(RegistryError::Full {
                    what: "CAs",
                    limit: MAX_CAS,
                });
            }
            if let Some(t) = template {
                if !s.templates.contains_key(t) {
                    return Err(RegistryError::Unknown {
                        what: "template",
                        id: t.to_string(),
                    });
                }
            }
            let record = CaRecord {
                id: id.clone(),
                name: name.map(str::to_string),
                status: if active {
                    Status::Active
                } else {
                    Status::Inactive
                },
                auto_registration,
                template: template.map(str::to_string),
                pem: der_to_pem(ca_der),
            };
            s.cas.insert(id.clone(), record.clone());
            Ok(record)
        })
    }

    /// `update-ca-certificate --new-status`.
    pub fn update_ca(&self, id: &str, status: Status) -> Result<CaRecord> {
        if !matches!(status, Status::Active | Status::Inactive) {
            return Err(RegistryError::BadStatus {
                what: "a CA",
                status,
            });
        }
        self.modify(|s| {
            let ca = s.cas.get_mut(id).ok_or_else(|| RegistryError::Unknown {
                what: "CA",
                id: id.to_string(),
            })?;
            ca.status = status;
            Ok(ca.clone())
        })
    }

    /// `register-certificate`: its signer must be a registered CA.
    pub fn register_certificate(
        &self,
        name: Option<&str>,
        der: &[u8],
        active: bool,
    ) -> Result<CertificateRecord> {
        CertView::from_der(der).map_err(|e| RegistryError::NotACertificate {
            what: "the device certificate",
            why: e.to_string(),
        })?;
        let id = certificate_id(der);
        self.modify(|s| {
            if s.certificates.contains_key(&id) {
                return Err(RegistryError::Exists {
                    what: "certificate",
                    id: id.clone(),
                });
            }
            let ca_id = s
                .cas
                .values()
                .find(|ca| pem_to_der(&ca.pem).is_some_and(|ca_der| signed_by(der, &ca_der)))
                .map(|ca| ca.id.clone())
                .ok_or_else(|| RegistryError::NoRegisteredCa { id: id.clone() })?;
            insert_certificate(
                s,
                &id,
                name,
                Some(ca_id),
                der,
                if active {
                    Status::Active
                } else {
                    Status::Inactive
                },
            )
        })
    }

    /// `update-certificate --new-status`.
    pub fn update_certificate(&self, id: &str, status: Status) -> Result<CertificateRecord> {
        if status == Status::PendingActivation {
            return Err(RegistryError::BadStatus {
                what: "a certificate",
                status,
            });
        }
        self.modify(|s| {
            let c = s
                .certificates
                .get_mut(id)
                .ok_or_else(|| RegistryError::Unknown {
                    what: "certificate",
                    id: id.to_string(),
                })?;
            c.status = status;
            Ok(c.clone())
        })
    }

    /// `create-thing`.
    pub fn create_thing(&self, name: &str) -> Result<()> {
        if !valid_thing_name(name) {
            return Err(RegistryError::ThingName {
                name: name.to_string(),
            });
        }
        self.modify(|s| {
            if s.things.contains_key(name) {
                return Err(RegistryError::Exists {
                    what: "thing",
                    id: name.to_string(),
                });
            }
            if s.things.len() >= MAX_THINGS {
                return Err(RegistryError::Full {
                    what: "things",
                    limit: MAX_THINGS,
                });
            }
            s.things.insert(name.to_string(), ThingRecord::default());
            Ok(())
        })
    }

    /// `attach-thing-principal`.
    pub fn attach_thing(&self, thing: &str, certificate_id: &str) -> Result<()> {
        self.modify(|s| attach_thing(s, thing, certificate_id))
    }

    /// `create-policy`: the document is parsed (and held to AWS's quota) before it is kept.
    pub fn create_policy(&self, name: &str, document: &str) -> Result<()> {
        if !valid_name(name) {
            return Err(RegistryError::Name {
                what: "policy",
                name: name.to_string(),
            });
        }
        policy::parse(document).map_err(|source| RegistryError::Policy {
            name: name.to_string(),
            source,
        })?;
        self.modify(|s| insert_policy(s, name, document))
    }

    /// `attach-policy --target CERT-ARN`: at most [`MAX_POLICIES_PER_CERTIFICATE`].
    pub fn attach_policy(&self, name: &str, certificate_id: &str) -> Result<()> {
        self.modify(|s| attach_policy(s, name, certificate_id))
    }

    /// `create-provisioning-template`: the body is parsed (and held to AWS's quota) first.
    pub fn create_template(&self, name: &str, body: &str) -> Result<()> {
        if !valid_name(name) {
            return Err(RegistryError::Name {
                what: "template",
                name: name.to_string(),
            });
        }
        Template::parse(body).map_err(|source| RegistryError::Template {
            name: name.to_string(),
            source,
        })?;
        self.modify(|s| {
            if s.templates.contains_key(name) {
                return Err(RegistryError::Exists {
                    what: "template",
                    id: name.to_string(),
                });
            }
            if s.templates.len() >= MAX_TEMPLATES {
                return Err(RegistryError::Full {
                    what: "templates",
                    limit: MAX_TEMPLATES,
                });
            }
            s.templates.insert(name.to_string(), body.to_string());
            Ok(())
        })
    }

    /// The leaf's registered CA, by signature: the presented chain is verified against every
    /// registered CA with the PKI core's chain check at the registry's clock.
    fn signing_ca(&self, s: &State, chain: &[Vec<u8>]) -> Option<String> {
        let cas: Vec<(&String, Vec<u8>)> = s
            .cas
            .values()
            .filter_map(|ca| Some((&ca.id, pem_to_der(&ca.pem)?)))
            .collect();
        let anchors = TrustAnchors::new(cas.iter().map(|(_, d)| d)).ok()?;
        let verified = verify_device_chain(&anchors, chain, self.now()).ok()?;
        cas.get(verified.anchor).map(|(id, _)| (*id).clone())
    }

    /// JITP: register the presented certificate under its CA, then provision what the CA's
    /// template says with the certificate's fields
    /// (<https://docs.aws.amazon.com/iot/latest/developerguide/jit-provisioning.html>).
    fn provision_jitp(
        s: &mut State,
        template_name: &str,
        ca_id: &str,
        leaf: &[u8],
        id: &str,
    ) -> Result<()> {
        insert_certificate(s, id, None, Some(ca_id.to_string()), leaf, Status::Active)?;
        Registry::provision(s, template_name, &jitp_parameters(leaf, id), id).map(|_| ())
    }

    /// Render `template_name` with `params` and provision what it says for the registered
    /// certificate `id`: its status (the template's `Status` when it names this certificate,
    /// else ACTIVE), the thing, the policies. `s` is only kept when this succeeds.
    fn provision(
        s: &mut State,
        template_name: &str,
        params: &BTreeMap<String, String>,
        id: &str,
    ) -> Result<template::Provision> {
        let body =
            s.templates
                .get(template_name)
                .cloned()
                .ok_or_else(|| RegistryError::Unknown {
                    what: "template",
                    id: template_name.to_string(),
                })?;
        let template_error = |source| RegistryError::Template {
            name: template_name.into(),
            source,
        };
        let p = Template::parse(&body)
            .and_then(|t| t.render(params))
            .map_err(template_error)?;
        let pem = s
            .certificates
            .get(id)
            .map(|c| c.pem.clone())
            .unwrap_or_default();
        let status = match &p.certificate {
            Some((CertificateSpec::Id(cid), status)) if cid == id => Status::parse(status),
            Some((CertificateSpec::Pem(given), status))
                if pem_to_der(given).is_some() && pem_to_der(given) == pem_to_der(&pem) =>
            {
                Status::parse(status)
            }
            _ => None,
        };
        if let Some(c) = s.certificates.get_mut(id) {
            c.status = status.unwrap_or(Status::Active);
        }
        if let Some(thing) = &p.thing {
            if !s.things.contains_key(&thing.name) && s.things.len() >= MAX_THINGS {
                return Err(RegistryError::Full {
                    what: "things",
                    limit: MAX_THINGS,
                });
            }
            s.things.entry(thing.name.clone()).or_default().attributes = thing.attributes.clone();
            attach_thing(s, &thing.name, id)?;
        }
        for spec in &p.policies {
            let name = match spec {
                PolicySpec::Named(name) => name.clone(),
                PolicySpec::Document(doc) => {
                    policy::parse(doc).map_err(|source| RegistryError::Policy {
                        name: "(from the template)".into(),
                        source,
                    })?;
                    // A template's inline policy is named after its document, so every device
                    // under the template shares one when it renders alike.
                    let name = format!("JITP-{}", &certificate_id(doc.as_bytes())[..16]);
                    if !s.policies.contains_key(&name) {
                        insert_policy(s, &name, doc)?;
                    }
                    name
                }
            };
            attach_policy(s, &name, id)?;
        }
        Ok(p)
    }
}

/// The registration code in a damaged state file's bytes, when its field is still whole
/// (a file cut short or with junk after it still holds it near the top).
fn salvage_code(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let after = &text[text.find("\"registration_code\"")? + "\"registration_code\"".len()..];
    let value = after
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let code = value.get(..64)?;
    (code
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        && value[64..].starts_with('"'))
    .then(|| code.to_string())
}

/// The parameters JITP fills from the device certificate (the JITP page's list).
fn jitp_parameters(leaf: &[u8], id: &str) -> BTreeMap<String, String> {
    use x509_parser::prelude::*;
    let mut out = BTreeMap::new();
    out.insert("AWS::IoT::Certificate::Id".to_string(), id.to_string());
    let Ok((_, cert)) = X509Certificate::from_der(leaf) else {
        return out;
    };
    let subject = cert.subject();
    let fields = [
        ("Country", &x509_parser::oid_registry::OID_X509_COUNTRY_NAME),
        (
            "Organization",
            &x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME,
        ),
        (
            "OrganizationalUnit",
            &x509_parser::oid_registry::OID_X509_ORGANIZATIONAL_UNIT,
        ),
        (
            "DistinguishedNameQualifier",
            &x509_parser::oid_registry::OID_X509_DN_QUALIFIER,
        ),
        (
            "StateName",
            &x509_parser::oid_registry::OID_X509_STATE_OR_PROVINCE_NAME,
        ),
        (
            "CommonName",
            &x509_parser::oid_registry::OID_X509_COMMON_NAME,
        ),
    ];
    for (field, oid) in fields {
        if let Some(v) = subject
            .iter_by_oid(oid)
            .next()
            .and_then(|a| a.as_str().ok())
        {
            out.insert(format!("AWS::IoT::Certificate::{field}"), v.to_string());
        }
    }
    out.insert(
        "AWS::IoT::Certificate::SerialNumber".to_string(),
        cert.raw_serial_as_string().replace(':', ""),
    );
    out
}

fn insert_certificate(
    s: &mut State,
    id: &str,
    name: Option<&str>,
    ca_id: Option<String>,
    der: &[u8],
    status: Status,
) -> Result<CertificateRecord> {
    if s.certificates.len() >= MAX_CERTIFICATES {
        return Err(RegistryError::Full {
            what: "certificates",
            limit: MAX_CERTIFICATES,
        });
    }
    let record = CertificateRecord {
        id: id.to_string(),
        name: name.map(str::to_string),
        status,
        ca_id,
        pem: der_to_pem(der),
        policies: Vec::new(),
        things: Vec::new(),
    };
    s.certificates.insert(id.to_string(), record.clone());
    Ok(record)
}

fn insert_policy(s: &mut State, name: &str, document: &str) -> Result<()> {
    if s.policies.contains_key(name) {
        return Err(RegistryError::Exists {
            what: "policy",
            id: name.to_string(),
        });
    }
    if s.policies.len() >= MAX_POLICIES {
        return Err(RegistryError::Full {
            what: "policies",
            limit: MAX_POLICIES,
        });
    }
    s.policies.insert(name.to_string(), document.to_string());
    Ok(())
}

fn attach_thing(s: &mut State, thing: &str, certificate_id: &str) -> Result<()> {
    let known = s.things.contains_key(thing);
    attach(
        s,
        "thing",
        thing,
        known,
        certificate_id,
        MAX_THINGS_PER_CERTIFICATE,
        |c| &mut c.things,
    )
}

fn attach_policy(s: &mut State, name: &str, certificate_id: &str) -> Result<()> {
    let known = s.policies.contains_key(name);
    attach(
        s,
        "policy",
        name,
        known,
        certificate_id,
        MAX_POLICIES_PER_CERTIFICATE,
        |c| &mut c.policies,
    )
}

/// Attach the `what` named `name` (which must be `known`) to a certificate, once, at most
/// `limit` per certificate.
fn attach(
    s: &mut State,
    what: &'static str,
    name: &str,
    known: bool,
    certificate_id: &str,
    limit: usize,
    list: impl FnOnce(&mut CertificateRecord) -> &mut Vec<String>,
) -> Result<()> {
    if !known {
        return Err(RegistryError::Unknown {
            what,
            id: name.to_string(),
        });
    }
    let c = s
        .certificates
        .get_mut(certificate_id)
        .ok_or_else(|| RegistryError::Unknown {
            what: "certificate",
            id: certificate_id.to_string(),
        })?;
    let list = list(c);
    if !list.iter().any(|x| x == name) {
        if list.len() >= limit {
            return Err(RegistryError::Full {
                what: if what == "policy" {
                    "policies per certificate (AWS's quota)"
                } else {
                    "things per certificate"
                },
                limit,
            });
        }
        list.push(name.to_string());
    }
    Ok(())
}

/// The thing attached to the certificate whose name is the client id: what AWS's thing policy
/// variables read (<https://docs.aws.amazon.com/iot/latest/developerguide/thing-policy-variables.html>).
fn connected_thing(c: &CertificateRecord, client_id: &str) -> Option<String> {
    c.things.iter().find(|t| *t == client_id).cloned()
}

/// A registered certificate outside its validity window at `now`: AWS IoT Core refuses an
/// expired or not yet valid client certificate in the TLS handshake, whatever its registry
/// status ("X.509 client certificates",
/// <https://docs.aws.amazon.com/iot/latest/developerguide/x509-client-certs.html>).
fn outside_validity(leaf: &[u8], id: &str, now: ::time::OffsetDateTime) -> Option<Refused> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let v = cert.validity();
    let (from, to) = (v.not_before.to_datetime(), v.not_after.to_datetime());
    if from <= now && now <= to {
        return None;
    }
    let rfc = |t: ::time::OffsetDateTime| {
        t.format(&::time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    Some(Refused::OutsideValidity {
        certificate_id: id.to_string(),
        not_before: rfc(from),
        not_after: rfc(to),
    })
}

impl Rules for Registry {
    /// AWS's admission: the certificate must be registered and ACTIVE, its CA (when it has
    /// one) registered and ACTIVE, and an attached policy must allow `iot:Connect`
    /// (<https://docs.aws.amazon.com/iot/latest/developerguide/x509-client-certs.html>,
    /// <https://docs.aws.amazon.com/iot/latest/developerguide/connect-policy.html>). An
    /// unknown certificate under an ACTIVE auto-registering CA is JIT-registered: provisioned
    /// by the CA's template (JITP) or left PENDING_ACTIVATION (JITR), and this connection is
    /// refused either way, as AWS closes it and the device retries
    /// (<https://docs.aws.amazon.com/iot/latest/developerguide/jit-provisioning.html>,
    /// <https://docs.aws.amazon.com/iot/latest/developerguide/auto-register-device-cert.html>).
    fn admit(&self, chain: &[Vec<u8>], client_id: &str) -> Result<Admitted, Refused> {
        let Some(leaf) = chain.first() else {
            return Err(Refused::Unreadable {
                what: "no client certificate".into(),
            });
        };
        if let Err(e) = CertView::from_der(leaf) {
            return Err(Refused::Unreadable {
                what: e.to_string(),
            });
        }
        let id = certificate_id(leaf);
        let unreadable = |e: RegistryError| Refused::Unreadable {
            what: e.to_string(),
        };
        let mut loaded = self.loaded.lock().expect("registry");
        self.fresh(&mut loaded).map_err(unreadable)?;
        let Some(cert) = loaded.state.certificates.get(&id) else {
            // JIT registration writes the registry: not under this lock.
            let state = loaded.state.clone();
            drop(loaded);
            return self.admit_unknown(&state, chain, &id);
        };
        let state = &loaded.state;
        if let Some(ca_id) = &cert.ca_id {
            match state.cas.get(ca_id) {
                None => {
                    return Err(Refused::CaNotRegistered {
                        ca_certificate_id: ca_id.clone(),
                    });
                }
                Some(ca) if ca.status != Status::Active => {
                    return Err(Refused::CaInactive {
                        ca_certificate_id: ca_id.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        if cert.status != Status::Active {
            return Err(Refused::CertificateNotActive {
                certificate_id: id,
                status: cert.status.to_string(),
            });
        }
        if let Some(refused) = outside_validity(leaf, &id, self.now()) {
            return Err(refused);
        }
        let who = Admitted {
            client_id: client_id.to_string(),
            certificate_id: id,
            thing_name: connected_thing(cert, client_id),
        };
        let policies = loaded.policies_of(cert);
        if !policy::evaluate(policies, &Context::of(&who), Action::Connect, client_id).allowed() {
            return Err(Refused::ConnectNotAllowed {
                client_id: client_id.to_string(),
            });
        }
        Ok(who)
    }

    /// The certificate's attached policies, as they stand in the file now (a detach or a new
    /// Deny in another process applies to the next publish).
    fn allows(&self, who: &Admitted, action: Action, resource: &str) -> bool {
        let mut loaded = self.loaded.lock().expect("registry");
        if self.fresh(&mut loaded).is_err() {
            return false;
        }
        let Some(cert) = loaded.state.certificates.get(&who.certificate_id) else {
            return false;
        };
        policy::evaluate(
            loaded.policies_of(cert),
            &Context::of(who),
            action,
            resource,
        )
        .allowed()
    }

    /// The certificate is still registered and ACTIVE, and so is its CA (when it has one).
    fn still_admitted(&self, who: &Admitted) -> bool {
        let mut loaded = self.loaded.lock().expect("registry");
        let Ok(state) = self.fresh(&mut loaded) else {
            return true;
        };
        let Some(cert) = state.certificates.get(&who.certificate_id) else {
            return false;
        };
        let ca_active = cert.ca_id.as_ref().is_none_or(|ca| {
            state
                .cas
                .get(ca)
                .is_some_and(|c| c.status == Status::Active)
        });
        cert.status == Status::Active && ca_active
    }

    fn fleet(&self) -> Option<&dyn crate::rules::Fleet> {
        Some(self)
    }
}

impl Registry {
    fn admit_unknown(
        &self,
        state: &State,
        chain: &[Vec<u8>],
        id: &str,
    ) -> Result<Admitted, Refused> {
        let Some(ca_id) = self.signing_ca(state, chain) else {
            // Name the CA the device presented when it did, as AWS's CA ids go.
            let ca_certificate_id = chain.get(1).map_or_else(
                || {
                    CertView::from_der(&chain[0])
                        .map(|v| v.issuer)
                        .unwrap_or_default()
                },
                |d| certificate_id(d),
            );
            return Err(Refused::CaNotRegistered { ca_certificate_id });
        };
        let ca = &state.cas[&ca_id];
        if ca.status != Status::Active {
            return Err(Refused::CaInactive {
                ca_certificate_id: ca_id,
            });
        }
        if !ca.auto_registration {
            return Err(Refused::CertificateNotRegistered {
                certificate_id: id.to_string(),
            });
        }
        let leaf = &chain[0];
        let outcome = self.modify(|s| {
            if s.certificates.contains_key(id) {
                // Another connection registered it meanwhile: this one retries like it.
                return Ok(None);
            }
            match ca.template.as_deref() {
                Some(t) => Registry::provision_jitp(s, t, &ca_id, leaf, id).map(|()| Some(true)),
                None => insert_certificate(
                    s,
                    id,
                    None,
                    Some(ca_id.clone()),
                    leaf,
                    Status::PendingActivation,
                )
                .map(|_| Some(false)),
            }
        });
        match outcome {
            Ok(Some(false)) => Err(Refused::CertificateNotActive {
                certificate_id: id.to_string(),
                status: Status::PendingActivation.to_string(),
            }),
            Ok(_) => Err(Refused::JustProvisioned {
                certificate_id: id.to_string(),
                ca_certificate_id: ca_id,
            }),
            Err(e) => Err(Refused::ProvisioningFailed {
                certificate_id: id.to_string(),
                what: e.to_string(),
            }),
        }
    }
}

mod fleet;

pub use fleet::{
    FleetError, ISSUED_CERTIFICATE_DAYS, IssuerSource, MAX_CSR_CHARS, MAX_OWNERSHIP_TOKENS,
    MAX_PARAMETER_KEY_CHARS, MAX_PARAMETER_VALUE_CHARS, MAX_PARAMETERS, NewCertificate,
    OWNERSHIP_TOKEN_LIFETIME, Registered,
};

#[cfg(test)]
mod tests;
