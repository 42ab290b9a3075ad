//! `chainsmith aws …`: the local AWS IoT Core's registry (registration code, CAs, certificates,
//! things, policies, provisioning templates). A thin face over `chainsmith_aws::registry`:
//! CA and DEVICE are workspace entity names, resolved to their certificates here.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Subcommand;

mod live;
mod serve;

use super::{CliResult, Global, print_json};
use crate::aws::registry::{CaRecord, CertificateRecord, Registry, RegistryError, Status};
use crate::text::escape_controls;

/// `chainsmith aws …`.
#[derive(Subcommand, Debug)]
pub enum AwsCommand {
    /// This workspace's registration code: the CN a CA's verification certificate must carry
    /// (like `aws iot get-registration-code`).
    RegistrationCode,
    /// CA certificates: register with proof of possession, list, show, activate.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Device certificates: register, set status, list.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Things: create, attach to a certificate, list.
    #[command(subcommand)]
    Thing(ThingCommand),
    /// IoT policies: create from a document, attach to a certificate, list.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Provisioning templates (JITP, fleet provisioning).
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Run the local AWS IoT Core: MQTT 3.1.1 and 5 over TLS with X.509 client certificates on
    /// 8883, and with ALPN x-amzn-mqtt-ca on 443, deciding by this workspace's registry.
    Serve(serve::ServeArgs),
    /// Where devices connect and the PEM they must trust (like `aws iot describe-endpoint`).
    Endpoint,
    /// Publish a message through the running `aws serve` to the devices subscribed to TOPIC.
    Publish(live::PublishArgs),
    /// Stream what devices publish through the running `aws serve` (escaped; --json: one JSON
    /// line per message).
    Monitor(live::MonitorArgs),
    /// Device shadows, classic and named: get, update desired.
    #[command(subcommand)]
    Shadow(live::ShadowCommand),
}

/// The status words `--status` takes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[clap(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StatusArg {
    /// ACTIVE.
    Active,
    /// INACTIVE.
    Inactive,
    /// REVOKED (certificates only).
    Revoked,
}

impl From<StatusArg> for Status {
    fn from(s: StatusArg) -> Status {
        match s {
            StatusArg::Active => Status::Active,
            StatusArg::Inactive => Status::Inactive,
            StatusArg::Revoked => Status::Revoked,
        }
    }
}

/// `aws ca …`.
#[derive(Subcommand, Debug)]
pub enum CaCommand {
    /// Register a workspace CA: the verification certificate's CN must be the registration
    /// code and it must be signed by the CA's key.
    Register {
        /// The CA (workspace entity name).
        ca: String,
        /// The verification certificate (`chainsmith new verification --issuer CA --code CODE`).
        #[arg(long)]
        verification_cert: PathBuf,
        /// Register it ACTIVE (default INACTIVE, as AWS's).
        #[arg(long)]
        active: bool,
        /// Let unknown certificates under it register on first connection (JITR, or JITP with
        /// --template).
        #[arg(long)]
        auto_registration: bool,
        /// The provisioning template JITP renders: a registered template's name, or a file
        /// (registered under its file stem).
        #[arg(long)]
        template: Option<String>,
    },
    /// The registered CAs.
    List,
    /// One registered CA.
    Show {
        /// The CA (workspace entity name or certificate id).
        ca: String,
    },
    /// Set a CA's status.
    Update {
        /// The CA (workspace entity name or certificate id).
        ca: String,
        /// ACTIVE or INACTIVE.
        #[arg(long)]
        status: StatusArg,
    },
}

/// `aws cert …`.
#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Register a workspace device certificate (its CA must be registered).
    Register {
        /// The device (workspace entity name).
        device: String,
        /// Register it ACTIVE (default INACTIVE, as AWS's).
        #[arg(long)]
        active: bool,
    },
    /// Set a certificate's status.
    Update {
        /// The device (workspace entity name or certificate id).
        device: String,
        /// ACTIVE, INACTIVE or REVOKED.
        #[arg(long)]
        status: StatusArg,
    },
    /// The registered certificates.
    List,
}

/// `aws thing …`.
#[derive(Subcommand, Debug)]
pub enum ThingCommand {
    /// Create a thing.
    Create {
        /// Its name (1 to 128 of a-z A-Z 0-9 : _ -).
        name: String,
    },
    /// Attach a thing to a device's certificate.
    Attach {
        /// The thing.
        name: String,
        /// The device (workspace entity name or certificate id).
        #[arg(long)]
        cert: String,
    },
    /// The things.
    List,
}

/// `aws policy …`.
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Create a policy from a JSON document.
    Create {
        /// Its name.
        name: String,
        /// The policy document (JSON).
        #[arg(long)]
        document: PathBuf,
    },
    /// Attach a policy to a device's certificate (at most 10 per certificate, AWS's quota).
    Attach {
        /// The policy.
        name: String,
        /// The device (workspace entity name or certificate id).
        #[arg(long)]
        cert: String,
    },
    /// The policies.
    List,
}

/// `aws template …`.
#[derive(Subcommand, Debug)]
pub enum TemplateCommand {
    /// Create a provisioning template from a JSON file.
    Create {
        /// Its name.
        name: String,
        /// The template body (JSON, at most 10 KB).
        #[arg(long)]
        file: PathBuf,
    },
}

/// Run `chainsmith aws …`.
pub fn run(global: &Global, c: AwsCommand) -> CliResult {
    let ws = global.workspace()?;
    let open = || -> anyhow::Result<Registry> {
        let registry = Registry::open(&ws.root().join("aws"), ws.clock()).map_err(hinted)?;
        for note in registry.notes() {
            complain!("warning: {note}");
        }
        Ok(registry)
    };
    let ctx = |registry| Ctx {
        global,
        ws: &ws,
        registry,
    };
    match c {
        AwsCommand::RegistrationCode => {
            let code = open()?.registration_code().map_err(hinted)?;
            if global.json {
                print_json(&serde_json::json!({ "registrationCode": code }));
            } else {
                say!("{code}");
            }
            Ok(())
        }
        AwsCommand::Ca(c) => ctx(&open()?).ca(c),
        AwsCommand::Cert(c) => ctx(&open()?).cert(c),
        AwsCommand::Thing(c) => ctx(&open()?).thing(c),
        AwsCommand::Policy(c) => ctx(&open()?).policy(c),
        AwsCommand::Template(c) => ctx(&open()?).template(c),
        AwsCommand::Serve(a) => serve::serve(global, &ws, open()?, a),
        AwsCommand::Endpoint => serve::endpoint(global, &ws),
        AwsCommand::Publish(a) => live::publish(global, &ws, a),
        AwsCommand::Monitor(a) => live::monitor(global, &ws, a),
        AwsCommand::Shadow(c) => live::shadow(global, &ws, c),
    }
}

struct Ctx<'a> {
    global: &'a Global,
    ws: &'a crate::store::Workspace,
    registry: &'a Registry,
}

/// A registry error with what to do about it.
fn hinted(e: RegistryError) -> anyhow::Error {
    let hint = match &e {
        RegistryError::VerificationWrongCn { code, .. } => format!(
            "make the verification certificate with this code: chainsmith new verification --issuer CA --code {code}"
        ),
        RegistryError::VerificationWrongKey { .. } => {
            "make it with --issuer naming the CA you register, whose key must sign it".into()
        }
        RegistryError::NoRegisteredCa { .. } => {
            "register its CA first: chainsmith aws ca register CA --verification-cert FILE".into()
        }
        RegistryError::Unknown { what: "certificate", .. } => {
            "register it first: chainsmith aws cert register DEVICE".into()
        }
        RegistryError::Unknown { what: "thing", .. } => "create it first: chainsmith aws thing create NAME".into(),
        RegistryError::Unknown { what: "policy", .. } => {
            "create it first: chainsmith aws policy create NAME --document FILE".into()
        }
        RegistryError::Unknown { what: "template", .. } => {
            "create it first (chainsmith aws template create NAME --file FILE), or give --template a file".into()
        }
        _ => String::new(),
    };
    let message = escape_controls(&e.to_string()).into_owned();
    if hint.is_empty() {
        anyhow!(message)
    } else {
        anyhow!("{message}; {hint}")
    }
}

fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    crate::store::read_input_text(path).map_err(|e| anyhow!("reading the {what}: {e}"))
}

fn status_of(s: Status) -> &'static str {
    s.as_str()
}

impl Ctx<'_> {
    /// A workspace entity's certificate id, or the argument itself when it is a registered
    /// id (`ca show ID`, `cert update ID`).
    fn id_of(&self, name: &str, registered: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        if registered(name) {
            return Ok(name.to_string());
        }
        let entity = self.ws.load(name)?;
        Ok(crate::aws::registry::certificate_id(&entity.cert_der))
    }

    fn ca(&self, c: CaCommand) -> CliResult {
        match c {
            CaCommand::Register {
                ca,
                verification_cert,
                active,
                auto_registration,
                template,
            } => {
                let entity = self.ws.load(&ca)?;
                let bytes = crate::store::read_input(&verification_cert)
                    .map_err(|e| anyhow!("reading --verification-cert: {e}"))?;
                let text = String::from_utf8_lossy(&bytes);
                let der = if text.contains("-----BEGIN") {
                    crate::pki::pem_to_der(&text).ok_or_else(|| {
                        anyhow!(
                            "--verification-cert {} holds no readable PEM certificate",
                            verification_cert.display()
                        )
                    })?
                } else {
                    bytes.clone()
                };
                let template = match template {
                    None => None,
                    Some(t) => Some(self.template_name(&t)?),
                };
                let rec = self
                    .registry
                    .register_ca(
                        Some(&ca),
                        &entity.cert_der,
                        &der,
                        active,
                        auto_registration,
                        template.as_deref(),
                    )
                    .map_err(|e| {
                        // Name the workspace CA that did sign a verification certificate
                        // signed by another key.
                        let signer = matches!(e, RegistryError::VerificationWrongKey { .. })
                            .then(|| self.ws.signing_ca(&der))
                            .flatten()
                            .filter(|s| *s != ca);
                        match signer {
                            Some(other) => anyhow!(
                            "{}: it is signed by \"{}\", another workspace CA, not by \"{ca}\"; make it with --issuer {ca}",
                            escape_controls(&e.to_string()),
                            escape_controls(&other)
                        ),
                            None => hinted(e),
                        }
                    })?;
                if self.global.json {
                    print_json(&ca_json(&rec));
                } else {
                    say!(
                        "CA \"{ca}\" registered: {} {}",
                        rec.id,
                        status_of(rec.status)
                    );
                    if rec.auto_registration {
                        match &rec.template {
                            Some(t) => say!(
                                "auto-registration on: JITP with template {}",
                                escape_controls(t)
                            ),
                            None => say!(
                                "auto-registration on: JITR (new certificates wait PENDING_ACTIVATION)"
                            ),
                        }
                    }
                }
            }
            CaCommand::List => {
                let state = self.registry.snapshot().map_err(hinted)?;
                if self.global.json {
                    print_json(&state.cas.values().map(ca_json).collect::<Vec<_>>());
                } else if state.cas.is_empty() {
                    say!(
                        "no CAs registered; register one with `chainsmith aws ca register CA --verification-cert FILE`"
                    );
                } else {
                    for rec in state.cas.values() {
                        say!("{}", ca_line(rec));
                    }
                }
            }
            CaCommand::Show { ca } => {
                let state = self.registry.snapshot().map_err(hinted)?;
                let id = self.id_of(&ca, |x| state.cas.contains_key(x))?;
                let rec = state.cas.get(&id).ok_or_else(|| {
                    anyhow!(
                        "CA {} is not registered; register it with `chainsmith aws ca register`",
                        escape_controls(&ca)
                    )
                })?;
                if self.global.json {
                    print_json(&ca_json(rec));
                } else {
                    say!("{}", ca_line(rec));
                    let devices = state
                        .certificates
                        .values()
                        .filter(|c| c.ca_id.as_deref() == Some(&id))
                        .count();
                    say!("device certificates registered under it: {devices}");
                }
            }
            CaCommand::Update { ca, status } => {
                let state = self.registry.snapshot().map_err(hinted)?;
                let id = self.id_of(&ca, |x| state.cas.contains_key(x))?;
                let rec = self
                    .registry
                    .update_ca(&id, status.into())
                    .map_err(hinted)?;
                if self.global.json {
                    print_json(&ca_json(&rec));
                } else {
                    say!("CA {} is {}", rec.id, status_of(rec.status));
                }
            }
        }
        Ok(())
    }

    /// `--template NAME-or-FILE`: a registered template's name, else a file registered under
    /// its file stem.
    fn template_name(&self, value: &str) -> anyhow::Result<String> {
        let state = self.registry.snapshot().map_err(hinted)?;
        if state.templates.contains_key(value) {
            return Ok(value.to_string());
        }
        let path = Path::new(value);
        if !path.is_file() {
            return Err(anyhow!(
                "--template {}: no registered template and no file of that name; create one with `chainsmith aws template create NAME --file FILE`",
                escape_controls(value)
            ));
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let body = read_text(path, "template")?;
        match state.templates.get(&name) {
            Some(existing) if *existing == body => {}
            Some(_) => {
                return Err(anyhow!(
                    "a different template named {} is registered already; name this one with `chainsmith aws template create NAME --file FILE` and pass --template NAME",
                    escape_controls(&name)
                ));
            }
            None => self
                .registry
                .create_template(&name, &body)
                .map_err(hinted)?,
        }
        Ok(name)
    }

    fn cert(&self, c: CertCommand) -> CliResult {
        match c {
            CertCommand::Register { device, active } => {
                let entity = self.ws.load(&device)?;
                let rec = self
                    .registry
                    .register_certificate(Some(&device), &entity.cert_der, active)
                    .map_err(hinted)?;
                if self.global.json {
                    print_json(&cert_json(&rec));
                } else {
                    say!(
                        "certificate of \"{device}\" registered: {} {}",
                        rec.id,
                        status_of(rec.status)
                    );
                }
            }
            CertCommand::Update { device, status } => {
                let state = self.registry.snapshot().map_err(hinted)?;
                let id = self.id_of(&device, |x| state.certificates.contains_key(x))?;
                let rec = self
                    .registry
                    .update_certificate(&id, status.into())
                    .map_err(hinted)?;
                if self.global.json {
                    print_json(&cert_json(&rec));
                } else {
                    say!("certificate {} is {}", rec.id, status_of(rec.status));
                }
            }
            CertCommand::List => {
                let state = self.registry.snapshot().map_err(hinted)?;
                if self.global.json {
                    print_json(
                        &state
                            .certificates
                            .values()
                            .map(cert_json)
                            .collect::<Vec<_>>(),
                    );
                } else if state.certificates.is_empty() {
                    say!(
                        "no certificates registered; register one with `chainsmith aws cert register DEVICE`"
                    );
                } else {
                    for c in state.certificates.values() {
                        say!(
                            "{} {:<18} {:<24} policies: {}  things: {}",
                            c.id,
                            status_of(c.status),
                            escape_controls(c.name.as_deref().unwrap_or("-")),
                            escape_controls(&c.policies.join(",")),
                            escape_controls(&c.things.join(","))
                        );
                    }
                }
            }
        }
        Ok(())
    }

    fn thing(&self, c: ThingCommand) -> CliResult {
        match c {
            ThingCommand::Create { name } => {
                self.registry.create_thing(&name).map_err(hinted)?;
                if self.global.json {
                    print_json(&serde_json::json!({ "thingName": name }));
                } else {
                    say!("thing {} created", escape_controls(&name));
                }
            }
            ThingCommand::Attach { name, cert } => {
                self.attach("thing", "thingName", &name, &cert, Registry::attach_thing)?;
            }
            ThingCommand::List => {
                let state = self.registry.snapshot().map_err(hinted)?;
                let attached = |thing: &str| -> Vec<String> {
                    state
                        .certificates
                        .values()
                        .filter(|c| c.things.iter().any(|t| t == thing))
                        .map(|c| c.id.clone())
                        .collect()
                };
                if self.global.json {
                    let things: Vec<_> = state
                        .things
                        .iter()
                        .map(|(name, t)| {
                            serde_json::json!({ "thingName": name, "attributes": t.attributes, "certificates": attached(name) })
                        })
                        .collect();
                    print_json(&things);
                } else if state.things.is_empty() {
                    say!("no things; create one with `chainsmith aws thing create NAME`");
                } else {
                    for name in state.things.keys() {
                        say!(
                            "{:<32} certificates: {}",
                            escape_controls(name),
                            attached(name).join(",")
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// `thing attach` and `policy attach`: NAME to the certificate of `cert` (an entity name
    /// or a certificate id).
    fn attach(
        &self,
        what: &str,
        key: &str,
        name: &str,
        cert: &str,
        attach: impl Fn(&Registry, &str, &str) -> Result<(), RegistryError>,
    ) -> CliResult {
        let state = self.registry.snapshot().map_err(hinted)?;
        let id = self.id_of(cert, |x| state.certificates.contains_key(x))?;
        attach(self.registry, name, &id).map_err(hinted)?;
        if self.global.json {
            print_json(&serde_json::json!({ key: name, "certificateId": id }));
        } else {
            say!(
                "{what} {} attached to certificate {id}",
                escape_controls(name)
            );
        }
        Ok(())
    }

    fn policy(&self, c: PolicyCommand) -> CliResult {
        match c {
            PolicyCommand::Create { name, document } => {
                let text = read_text(&document, "policy document")?;
                self.registry.create_policy(&name, &text).map_err(hinted)?;
                if self.global.json {
                    print_json(&serde_json::json!({ "policyName": name }));
                } else {
                    say!("policy {} created", escape_controls(&name));
                }
            }
            PolicyCommand::Attach { name, cert } => {
                self.attach(
                    "policy",
                    "policyName",
                    &name,
                    &cert,
                    Registry::attach_policy,
                )?;
            }
            PolicyCommand::List => {
                let state = self.registry.snapshot().map_err(hinted)?;
                if self.global.json {
                    let list: Vec<_> = state
                        .policies
                        .iter()
                        .map(|(name, doc)| serde_json::json!({ "policyName": name, "policyDocument": doc }))
                        .collect();
                    print_json(&list);
                } else if state.policies.is_empty() {
                    say!(
                        "no policies; create one with `chainsmith aws policy create NAME --document FILE`"
                    );
                } else {
                    for name in state.policies.keys() {
                        let attached = state
                            .certificates
                            .values()
                            .filter(|c| c.policies.contains(name))
                            .count();
                        say!(
                            "{:<32} attached to {attached} certificate(s)",
                            escape_controls(name)
                        );
                    }
                }
            }
        }
        Ok(())
    }

    fn template(&self, c: TemplateCommand) -> CliResult {
        let TemplateCommand::Create { name, file } = c;
        let body = read_text(&file, "template")?;
        self.registry
            .create_template(&name, &body)
            .map_err(hinted)?;
        if self.global.json {
            print_json(&serde_json::json!({ "templateName": name }));
        } else {
            say!("template {} created", escape_controls(&name));
        }
        Ok(())
    }
}

fn ca_line(rec: &CaRecord) -> String {
    format!(
        "{} {:<8} {:<24} auto-registration: {}  template: {}",
        rec.id,
        status_of(rec.status),
        escape_controls(rec.name.as_deref().unwrap_or("-")),
        if rec.auto_registration { "on" } else { "off" },
        escape_controls(rec.template.as_deref().unwrap_or("-"))
    )
}

fn ca_json(rec: &CaRecord) -> serde_json::Value {
    serde_json::json!({
        "certificateId": rec.id, "name": rec.name, "status": status_of(rec.status),
        "autoRegistrationStatus": if rec.auto_registration { "ENABLE" } else { "DISABLE" },
        "template": rec.template,
    })
}

fn cert_json(rec: &CertificateRecord) -> serde_json::Value {
    serde_json::json!({
        "certificateId": rec.id, "name": rec.name, "status": status_of(rec.status),
        "caCertificateId": rec.ca_id, "policies": rec.policies, "things": rec.things,
    })
}
