//! `import`, `renew`, `revoke`, `crl`: thin faces over `crate::ops::lifecycle`.

use super::export::resolve_password;
use super::{CliResult, Global, print_json};
use crate::ops::lifecycle::{self, ImportRequest, RenewRequest};
use crate::pki::KeyAlg;
use crate::pki::issue::rfc3339;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Certificate and key files (PEM or DER), or one PKCS#12 file.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Entity name in the workspace.
    #[arg(long)]
    pub name: String,
    /// Password of a PKCS#12 file or an encrypted key (or CHAINSMITH_PFX_PASSWORD).
    #[arg(long, value_name = "P", conflicts_with = "password_file")]
    pub password: Option<String>,
    /// Read the password from the first line of FILE.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Replace an existing entity of the same name.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct RenewArgs {
    pub name: String,
    /// Days of validity (default: the profile's).
    #[arg(long)]
    pub days: Option<u32>,
    /// A fresh key instead of the current one.
    #[arg(long)]
    pub rekey: bool,
    /// Algorithm of the fresh key (implies --rekey; default: the current one's).
    #[arg(long, value_parser = super::parse_key_alg)]
    pub key: Option<KeyAlg>,
    /// For a CA: upload the new certificate to the local hub beside the earlier ones
    /// (unverified: prove possession with the code it prints).
    #[arg(long)]
    pub upload_to_hub: bool,
    /// With --upload-to-hub: mark it verified on upload (as the portal's checkbox does).
    #[arg(long, requires = "upload_to_hub")]
    pub verified: bool,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    pub name: String,
    /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged,
    /// superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise.
    #[arg(long, default_value = "unspecified")]
    pub reason: String,
    /// Disable every local-hub device whose credential is this certificate (by CN for
    /// CA-authenticated devices, by thumbprint for self-signed ones); a running hub drops it.
    #[arg(long)]
    pub disable_on_hub: bool,
}

#[derive(Args, Debug)]
pub struct CrlArgs {
    /// The CA whose revoked certificates to list (it signs the CRL).
    pub ca: String,
    /// Write the PEM CRL here (default: standard output).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Days until nextUpdate (default 30).
    #[arg(long)]
    pub days: Option<u32>,
    /// Replace the --out file when it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn import(global: &Global, a: ImportArgs) -> CliResult {
    let ws = global.workspace()?;
    let password = resolve_password(a.password.as_deref(), a.password_file.as_deref())?;
    let r = lifecycle::import(
        &ws,
        &ImportRequest {
            files: a.files,
            name: a.name,
            password,
            force: a.force,
        },
    )?;
    if global.json {
        print_json(&r);
        return Ok(());
    }
    let m = &r.meta;
    say!(
        "imported {} {} (CN={}){}, valid until {}",
        m.kind.as_str(),
        m.name,
        crate::text::escape_controls(&m.cn),
        if r.trust_only {
            " as trust-only"
        } else {
            " with its private key"
        },
        rfc3339(m.not_after)
    );
    for n in &r.notes {
        say!("note: {n}");
    }
    Ok(())
}

pub fn renew(global: &Global, a: RenewArgs) -> CliResult {
    let ws = global.workspace()?;
    let r = lifecycle::renew(
        &ws,
        &RenewRequest {
            name: a.name,
            days: a.days,
            rekey: a.rekey,
            key: a.key,
            upload_to_hub: a.upload_to_hub,
            verified: a.verified,
        },
        &crate::hub::HubStore::new(ws.clone()),
    )?;
    if global.json {
        print_json(&r);
        return Ok(());
    }
    say!(
        "renewed {} ({}): serial {} → {}, valid until {}{}",
        r.new.name,
        r.new.kind.as_str(),
        r.old.serial,
        r.new.serial,
        rfc3339(r.new.not_after),
        if r.rekeyed { ", new key" } else { ", same key" }
    );
    say!(
        "the old certificate is kept in history: `chainsmith show {} --history`",
        r.new.name
    );
    for n in &r.notes {
        say!("note: {n}");
    }
    for step in &r.next {
        say!("next: {}", next_command(step));
    }
    Ok(())
}

pub fn revoke(global: &Global, a: RevokeArgs) -> CliResult {
    let ws = global.workspace()?;
    let r = lifecycle::revoke(
        &ws,
        &lifecycle::RevokeRequest {
            name: a.name,
            reason: a.reason,
            disable_on_hub: a.disable_on_hub,
        },
        &crate::hub::HubStore::new(ws.clone()),
    )?;
    if global.json {
        print_json(&r);
    } else {
        say!("{}", r.message);
        for step in &r.next {
            say!("next: {}", next_command(step));
        }
    }
    Ok(())
}

/// The CLI's command (or flags) for a step an engine call leaves to the user.
pub(crate) fn next_command(step: &lifecycle::NextStep) -> String {
    use lifecycle::NextStep as N;
    match step {
        N::PublishCrl { ca } => format!("`chainsmith crl {ca} --out {ca}.crl.pem`"),
        N::Rekey { name } => format!("`chainsmith renew {name} --rekey`"),
        N::RemoveHubCa { name } => format!("`chainsmith hub ca remove {name}`"),
        N::DisableOnHub { name } => format!(
            "`chainsmith revoke {name} --disable-on-hub` or `chainsmith hub device disable ID`"
        ),
        N::CsrSans => "--keep-san copies the CSR's names, --san NAME sets them".to_string(),
        N::UploadCa { name } => {
            format!("`chainsmith hub ca add {name}`, or renew with --upload-to-hub")
        }
        N::ProveCa { name, code } => format!(
            "`chainsmith new verification --issuer {name} --code {code}` ; `chainsmith hub ca verify {name} --cert FILE` (or `chainsmith hub ca prove {name}`)"
        ),
        N::KeepKey { name } => format!("`chainsmith renew {name}` keeps the key instead"),
        N::Show { name } => format!("`chainsmith show {name}` lists them"),
    }
}

pub fn crl(global: &Global, a: CrlArgs) -> CliResult {
    let ws = global.workspace()?;
    let c = lifecycle::crl(&ws, &a.ca, a.days)?;
    if let Some(out) = &a.out {
        crate::store::write_user_file(out, c.pem.as_bytes(), 0o644, a.force)?;
    }
    if global.json {
        let mut v = serde_json::to_value(&c)?;
        if a.out.is_none() {
            v["pem"] = serde_json::Value::String(c.pem.clone());
        }
        print_json(&v);
        return Ok(());
    }
    match &a.out {
        Some(out) => {
            say!(
                "CRL of {} written to {} (number {}, next update {}), {} revoked:",
                c.issuer,
                out.display(),
                c.number,
                rfc3339(c.next_update),
                c.revoked.len()
            );
            for r in &c.revoked {
                say!(
                    "  {}  serial {}  {}  {}",
                    r.name,
                    r.serial,
                    r.reason,
                    rfc3339(r.at)
                );
            }
            say!("note: {}", c.note);
        }
        None => {
            super::out_pem(&c.pem);
            complain!("note: {} revoked; {}", c.revoked.len(), c.note);
        }
    }
    Ok(())
}

/// `list --expiring WINDOW`: what ends within the window; stdout stays empty when nothing does.
pub fn list_expiring(global: &Global, ws: &crate::store::Workspace, window: &str) -> CliResult {
    let d = lifecycle::parse_window(window)?;
    let rows = lifecycle::expiring(ws, d, ws.now())?;
    if global.json {
        print_json(&serde_json::json!({ "window": window, "entities": rows }));
        return Ok(());
    }
    if rows.is_empty() {
        complain!("nothing expires within {window}");
        return Ok(());
    }
    let width = rows
        .iter()
        .map(|r| r.meta.name.chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    for r in &rows {
        let when = if r.status == "expired" {
            format!("EXPIRED {}d ago", -r.days_left)
        } else {
            format!("{}d left", r.days_left)
        };
        say!(
            "{:<width$}  {:<12}  {}  {when}",
            r.meta.name,
            r.meta.kind.as_str(),
            rfc3339(r.meta.not_after)
        );
    }
    Ok(())
}

/// `show NAME --history`: the current certificate and every one it replaced.
pub fn show_history(global: &Global, ws: &crate::store::Workspace, name: &str) -> CliResult {
    let current = ws.load(name)?.meta;
    let past = lifecycle::history(ws, name)?;
    if global.json {
        print_json(&serde_json::json!({ "name": name, "current": current, "history": past }));
        return Ok(());
    }
    say!(
        "{name}: {} certificate(s) before the current one",
        past.len()
    );
    let line = |label: &str, m: &crate::store::Meta| {
        let revoked = m
            .revoked
            .as_ref()
            .map(|r| format!("  [REVOKED {}]", r.reason))
            .unwrap_or_default();
        let slot = m
            .slot
            .map(|s| format!("  {s:?} slot").to_lowercase())
            .unwrap_or_default();
        say!(
            "  {label:<8} serial {}  {} → {}  SHA-256 {}{slot}{revoked}",
            m.serial,
            rfc3339(m.not_before),
            rfc3339(m.not_after),
            m.sha256
        );
    };
    for m in &past {
        line("old", m);
    }
    line("current", &current);
    Ok(())
}

pub(crate) fn render_slots(o: &mut String, slots: &[lifecycle::SlotView]) {
    use std::fmt::Write as _;
    if slots.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "  Thumbprint slots (update one in the hub while the other keeps working)"
    );
    for s in slots {
        let label = match s.slot {
            crate::store::Slot::Primary => "primary",
            crate::store::Slot::Secondary => "secondary",
        };
        let _ = writeln!(
            o,
            "    {label:<10} SHA-1 {}  until {}",
            s.sha1,
            rfc3339(s.not_after)
        );
        let _ = writeln!(o, "    {:<10} SHA-256 {}", "", s.sha256);
    }
    if slots.len() == 1 {
        let _ = writeln!(
            o,
            "    (other slot empty: `chainsmith new device ID --self-signed --slot ...` fills it)"
        );
    }
}
