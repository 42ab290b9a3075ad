//! `new root|intermediate|device|verification` and `sign-csr`.

use super::{CliResult, Global, print_json, warn};
use crate::ops::{self, CaRequest, Created, CsrRequest, DeviceRequest, ValidityArg};
use crate::pki::{Eku, KeyAlg, Target};
use crate::store::Slot;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct ValidityFlags {
    /// Days of validity (defaults: root 3650, intermediate 1825, device 365, verification 30).
    #[arg(long)]
    pub days: Option<u32>,
    /// Start of validity, RFC 3339 (e.g. 2020-01-01T00:00:00Z); for not-yet-valid fixtures.
    #[arg(long, value_name = "TIME")]
    pub not_before: Option<String>,
    /// End of validity, RFC 3339; a past time makes an expired fixture.
    #[arg(long, value_name = "TIME")]
    pub not_after: Option<String>,
}

impl From<&ValidityFlags> for ValidityArg {
    fn from(v: &ValidityFlags) -> Self {
        ValidityArg {
            days: v.days,
            not_before: v.not_before.clone(),
            not_after: v.not_after.clone(),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct CaArgs {
    /// Entity name in the workspace.
    pub name: String,
    /// Common name (default: NAME).
    #[arg(long, conflicts_with = "subject")]
    pub cn: Option<String>,
    /// Full subject, e.g. "CN=Contoso Root,O=Contoso,C=US".
    #[arg(long)]
    pub subject: Option<String>,
    /// Key algorithm: ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096, ed25519.
    #[arg(long, default_value = "ec-p256", value_parser = super::parse_key_alg)]
    pub key: KeyAlg,
    #[command(flatten)]
    pub validity: ValidityFlags,
    /// How many CA levels may follow below this one (roots: unconstrained by default).
    #[arg(long)]
    pub pathlen: Option<u8>,
    /// Replace an existing entity of the same name.
    #[arg(long)]
    pub force: bool,
}

#[derive(Subcommand, Debug)]
pub enum NewCommand {
    /// A self-signed root CA.
    Root(CaArgs),
    /// An intermediate CA under --issuer (any depth).
    Intermediate {
        #[command(flatten)]
        ca: CaArgs,
        /// The CA that signs it.
        #[arg(long)]
        issuer: String,
    },
    /// Device certificates with CN = device id; several ids and ranges like dev-{001..500}.
    Device(DeviceArgs),
    /// The proof-of-possession certificate for a hub's verification code.
    Verification {
        /// The CA being verified (root or intermediate).
        #[arg(long)]
        issuer: String,
        /// The code the hub shows; `-` reads it from standard input (`az … | chainsmith …`).
        #[arg(long)]
        code: String,
        /// Where to write the certificate.
        #[arg(long, default_value = "verification_cert.pem")]
        out: PathBuf,
        #[arg(long)]
        days: Option<u32>,
        /// Replace the --out file when it exists (a certificate for an earlier code).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Device ids (CN = id), or ranges like sensor-{0001..1000}.
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<String>,
    /// The CA that signs them.
    #[arg(
        long,
        required_unless_present = "self_signed",
        conflicts_with = "self_signed"
    )]
    pub issuer: Option<String>,
    /// Self-signed, for individual enrollment (the hub stores its thumbprint).
    #[arg(long)]
    pub self_signed: bool,
    /// Thumbprint slot of a self-signed device.
    #[arg(long, value_parser = parse_slot, requires = "self_signed")]
    pub slot: Option<Slot>,
    #[arg(long, default_value = "ec-p256", value_parser = super::parse_key_alg)]
    pub key: KeyAlg,
    #[command(flatten)]
    pub validity: ValidityFlags,
    /// client (what hubs need) or client,server (the seed's CSR profile).
    #[arg(long, default_value = "client")]
    pub eku: Eku,
    /// Subject alternative names: DNS:x, IP:1.2.3.4, URI:..., comma separated.
    #[arg(long, value_delimiter = ',')]
    pub san: Vec<String>,
    /// Whose device-id rules apply: hub, dps, central, generic.
    #[arg(long, default_value = "hub")]
    pub target: Target,
    /// Replace existing entities of the same names.
    #[arg(long)]
    pub force: bool,
}

fn parse_slot(s: &str) -> Result<Slot, String> {
    match s.to_ascii_lowercase().as_str() {
        "primary" => Ok(Slot::Primary),
        "secondary" => Ok(Slot::Secondary),
        _ => Err(format!("slot \"{s}\" must be primary or secondary")),
    }
}

#[derive(Args, Debug)]
pub struct SignCsrArgs {
    /// The CSR file (PEM or DER).
    pub file: PathBuf,
    #[arg(long)]
    pub issuer: String,
    /// Entity name (default: the CSR's CN).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub validity: ValidityFlags,
    #[arg(long, default_value = "client")]
    pub eku: Eku,
    #[arg(long, default_value = "hub")]
    pub target: Target,
    #[arg(long)]
    pub force: bool,
    /// subjectAltName to add (DNS:x, IP:1.2.3.4, URI:…, email:…), as on `new device`; may repeat.
    #[arg(long, value_name = "SAN")]
    pub san: Vec<String>,
    /// Copy the CSR's own DNS, IP and URI subjectAltNames (each checked first).
    #[arg(long)]
    pub keep_san: bool,
}

fn ca_request(a: &CaArgs, issuer: Option<String>) -> CaRequest {
    CaRequest {
        name: a.name.clone(),
        cn: a.cn.clone(),
        subject: a.subject.clone(),
        key: a.key,
        validity: (&a.validity).into(),
        pathlen: a.pathlen,
        issuer,
        force: a.force,
    }
}

pub fn run(global: &Global, cmd: NewCommand) -> CliResult {
    let ws = global.workspace()?;
    let created = match cmd {
        NewCommand::Root(a) => ops::new_ca(&ws, &ca_request(&a, None))?,
        NewCommand::Intermediate { ca, issuer } => {
            ops::new_ca(&ws, &ca_request(&ca, Some(issuer)))?
        }
        NewCommand::Device(d) => {
            let req = DeviceRequest {
                ids: d.ids,
                issuer: d.issuer,
                key: Some(d.key),
                validity: (&d.validity).into(),
                eku: d.eku,
                sans: d.san,
                target: d.target,
                slot: d.slot,
                force: d.force,
            };
            let bar = super::progress::WorkBar::new(global);
            ops::lifecycle::new_devices_or_slot_watched(&ws, &req, &bar)?
        }
        NewCommand::Verification {
            issuer,
            code,
            out,
            days,
            force,
        } => {
            let code = if code == "-" {
                code_from_stdin()?
            } else {
                code
            };
            ops::new_verification(&ws, &issuer, &code, &out, days, force)?
        }
    };
    print_created(global, &ws, &created);
    Ok(())
}

/// `--code -`: the first non-empty line of standard input, trimmed (a pipe from `az` or the
/// clipboard brings a newline, sometimes quotes).
fn code_from_stdin() -> anyhow::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut text)
        .map_err(|e| {
            anyhow::anyhow!("cannot read the verification code from standard input: {e}")
        })?;
    let code = text
        .lines()
        .map(|l| l.trim().trim_matches('"'))
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if code.is_empty() {
        anyhow::bail!(
            "--code - read nothing from standard input; pipe the code in (e.g. `echo CODE | chainsmith new verification --issuer CA --code -`)"
        );
    }
    Ok(code.to_string())
}

pub fn sign_csr(global: &Global, a: SignCsrArgs) -> CliResult {
    let bytes = crate::store::read_input(&a.file)?;
    let ws = global.workspace()?;
    let created = ops::sign_csr(
        &ws,
        &bytes,
        &CsrRequest {
            issuer: a.issuer,
            name: a.name,
            validity: (&a.validity).into(),
            eku: a.eku,
            target: a.target,
            force: a.force,
            sans: a.san,
            keep_san: a.keep_san,
            cn_only: false,
        },
    )?;
    print_created(global, &ws, &created);
    Ok(())
}

fn print_created(global: &Global, ws: &crate::store::Workspace, c: &Created) {
    warn(global, &c.warnings);
    if !global.json && !global.quiet {
        for step in &c.next {
            complain!("hint: {}", super::lifecycle::next_command(step));
        }
    }
    if global.json {
        print_json(c);
        return;
    }
    let many = c.entities.len() > 20;
    for m in c.entities.iter().take(if many { 3 } else { usize::MAX }) {
        let issuer = m
            .issuer
            .as_deref()
            .map(|i| format!(" issued by {i}"))
            .unwrap_or_else(|| " self-signed".into());
        say!(
            "created {} {} (CN={}){issuer}, valid until {}",
            m.kind.as_str(),
            m.name,
            crate::text::escape_controls(&m.cn),
            crate::pki::issue::rfc3339(m.not_after)
        );
        if m.self_signed && m.kind == crate::store::Kind::Device {
            say!("  SHA-1 thumbprint    {}", m.sha1);
            say!("  SHA-256 thumbprint  {}", m.sha256);
        }
    }
    if many {
        say!(
            "... and {} more ({} in all) under {}",
            c.entities.len() - 3,
            c.entities.len(),
            ws.entities_dir().display()
        );
    } else if let Some(d) = c
        .entities
        .first()
        .filter(|_| c.file.is_none())
        .and_then(|m| ws.dir_of(&m.name).ok())
    {
        say!("files in {}", d.display());
    }
    if let Some(f) = &c.file {
        say!("verification certificate written to {}", f.display());
        say!("upload it to the hub to finish verifying the CA");
    }
}
