//! `list`, `show`, `inspect`, `lint`.

use super::{CliResult, Failed, Global, print_json};
use crate::ops;
use crate::pki::inspect::{CertView, FileReport, Item, inspect_bytes};
use crate::pki::lint::{self, Finding};
// Certificate text on a line of its own: a newline in a CN must not forge the next line.
use crate::text::escape_controls as one_line;
use clap::Args;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only what expires within WINDOW (e.g. 30d, 12h, 2w), expired included, soonest first.
    #[arg(long, value_name = "WINDOW")]
    pub expiring: Option<String>,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    pub name: String,
    /// Print the certificate PEM.
    #[arg(long, conflicts_with = "paths")]
    pub pem: bool,
    /// Print where the entity's files are.
    #[arg(long)]
    pub paths: bool,
    /// List the certificates this entity had before (renewals, rolled slots).
    #[arg(long, conflicts_with_all = ["pem", "paths"])]
    pub history: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    pub file: PathBuf,
    /// Password of a PKCS#12 file.
    #[arg(
        long,
        env = "CHAINSMITH_PFX_PASSWORD",
        hide_env_values = true,
        conflicts_with = "password_file"
    )]
    pub password: Option<String>,
    /// Read the PKCS#12 password from a file (its first line), keeping it out of argv.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct LintArgs {
    /// One entity (default: every entity in the workspace).
    pub name: Option<String>,
}

pub fn list(global: &Global, a: ListArgs) -> CliResult {
    // Looking does not create: a mistyped --workspace should not leave a new directory behind.
    let dir = global.workspace_dir();
    if !dir.exists() {
        if global.json {
            print_json(&serde_json::json!({ "workspace": dir, "entities": [], "damaged": [] }));
        } else {
            say!(
                "no workspace at {} yet; start with `chainsmith new root NAME` (or `chainsmith init`)",
                dir.display()
            );
        }
        return Ok(());
    }
    let ws = global.existing_workspace()?;
    if let Some(w) = &a.expiring {
        return super::lifecycle::list_expiring(global, &ws, w);
    }
    let (metas, damaged) = ws.list()?;
    let rows = ops::tree(metas, ws.now());
    if global.json {
        // Serialised straight from the rows: building a `serde_json::Value` of 100,000 maps
        // first doubled the time `list --json` takes.
        #[derive(serde::Serialize)]
        struct Listing<'a> {
            workspace: &'a std::path::Path,
            entities: &'a [ops::TreeRow],
            damaged: &'a [crate::store::Damaged],
        }
        print_json(&Listing {
            workspace: ws.root(),
            entities: &rows,
            damaged: &damaged,
        });
        return Ok(());
    }
    let mut out = String::with_capacity(rows.len() * 80);
    if rows.is_empty() {
        let _ = writeln!(
            out,
            "the workspace {} is empty; start with `chainsmith new root NAME`",
            ws.root().display()
        );
    }
    // As wide as the longest name: verification certificates carry a 48-character code.
    let width = rows
        .iter()
        .map(|r| r.depth * 2 + r.meta.name.chars().count())
        .max()
        .unwrap_or(0)
        .max("NAME".len());
    if !rows.is_empty() {
        let _ = writeln!(
            out,
            "{:<width$}  {:<12}  {:<9}  {:>7}  CN",
            "NAME", "KIND", "KEY", "DAYS"
        );
    }
    // No allocation per row: at 100,000 rows they were a fifth of `list`'s time.
    for r in &rows {
        let indent = r.depth * 2;
        let pad = width.saturating_sub(indent + r.meta.name.chars().count());
        let label = format_args!("{:indent$}{}{:pad$}", "", r.meta.name, "");
        let alg = r.meta.key_alg.map(|a| a.as_str()).unwrap_or("-");
        let mark = match r.status {
            "valid" => "",
            "revoked" => "  [REVOKED]",
            "expired" => "  [EXPIRED]",
            _ => "  [NOT YET VALID]",
        };
        let _ = writeln!(
            out,
            "{label}  {:<12}  {:<9}  {:>6}d  {:<24}{mark}",
            r.meta.kind.as_str(),
            alg,
            r.days_left,
            truncate(&one_line(&r.meta.cn), 24),
        );
    }
    for d in &damaged {
        let _ = writeln!(out, "damaged: {}: {}", d.path.display(), d.problem);
    }
    super::out(&out);
    Ok(())
}

fn truncate(s: &str, n: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(n) {
        None => s.into(),
        Some(_) => {
            let cut = s.char_indices().nth(n - 1).map_or(s.len(), |(i, _)| i);
            format!("{}…", &s[..cut]).into()
        }
    }
}

pub fn show(global: &Global, a: ShowArgs) -> CliResult {
    let ws = global.existing_workspace()?;
    let report = ops::report(&ws, &a.name)?;
    if a.pem {
        let chain = crate::store::chain_of(&ws, &a.name)?;
        super::out_pem(&chain[0].cert_pem);
        return Ok(());
    }
    if a.paths {
        if global.json {
            print_json(&report.paths);
        } else {
            say!("cert  {}", report.paths.cert.display());
            if let Some(k) = &report.paths.key {
                say!("key   {}", k.display());
            }
            say!("meta  {}", report.paths.meta.display());
            say!("dir   {}", report.paths.dir.display());
        }
        return Ok(());
    }
    if a.history {
        return super::lifecycle::show_history(global, &ws, &a.name);
    }
    let slots = ops::lifecycle::slots(&ws, &a.name)?;
    if global.json {
        let mut v = serde_json::to_value(&report)?;
        if !slots.is_empty() {
            v["slots"] = serde_json::to_value(&slots)?;
        }
        print_json(&v);
        return Ok(());
    }
    let m = &report.meta;
    let mut o = String::new();
    let via = m
        .issuer
        .as_deref()
        .map(|i| format!("issued by {i}"))
        .unwrap_or_else(|| "self-signed".into());
    let _ = writeln!(o, "{} ({}, {via})", m.name, m.kind.as_str());
    render_cert(&mut o, &report.certificate);
    let chain = report.chain.join(" → ");
    match &report.chain_check.error {
        None => {
            let _ = writeln!(o, "  Chain        {chain}: verifies (OpenSSL, X509_STRICT)");
        }
        Some(e) => {
            let _ = writeln!(o, "  Chain        {chain}: DOES NOT VERIFY: {e}");
        }
    }
    if let Some(code) = &m.code {
        let _ = writeln!(o, "  Code         {code}");
    }
    if let Some(r) = &m.revoked {
        let _ = writeln!(
            o,
            "  Revoked      {} ({})",
            crate::pki::issue::rfc3339(r.at),
            r.reason
        );
    }
    super::lifecycle::render_slots(&mut o, &slots);
    render_findings(&mut o, &report.lint);
    let _ = writeln!(o, "  Files        {}", report.paths.cert.display());
    if let Some(k) = &report.paths.key {
        let _ = writeln!(o, "               {}", k.display());
    }
    super::out(&o);
    Ok(())
}

/// The text view of one certificate, shared by `show` and `inspect`.
pub(crate) fn render_cert(o: &mut String, v: &CertView) {
    let _ = writeln!(o, "  Subject      {}", one_line(&v.subject));
    let _ = writeln!(o, "  Issuer       {}", one_line(&v.issuer));
    let _ = writeln!(o, "  Serial       {}", v.serial);
    let left = match v.status {
        crate::pki::inspect::ValidityStatus::Expired => {
            format!("EXPIRED {} days ago", -v.days_left)
        }
        crate::pki::inspect::ValidityStatus::NotYetValid => "NOT YET VALID".to_string(),
        crate::pki::inspect::ValidityStatus::Valid => format!("{} days left", v.days_left),
    };
    let _ = writeln!(
        o,
        "  Valid        {} → {} ({left})",
        v.not_before, v.not_after
    );
    let _ = writeln!(o, "  Key          {}", v.key.algorithm);
    let _ = writeln!(o, "  Signature    {}", v.signature_algorithm);
    let _ = writeln!(o, "  Extensions");
    for e in &v.extensions {
        let crit = if e.critical { " (critical)" } else { "" };
        let _ = writeln!(o, "    {}{crit}: {}", e.name, one_line(&e.value));
    }
    let _ = writeln!(o, "  SHA-1        {}", v.sha1);
    let _ = writeln!(o, "  SHA-256      {}", v.sha256);
}

pub(crate) fn render_findings(o: &mut String, findings: &[Finding]) {
    if findings.is_empty() {
        let _ = writeln!(o, "  Lint         no findings");
    } else {
        let _ = writeln!(o, "  Lint");
        for f in findings {
            let _ = writeln!(o, "    {}: {} [{}]", f.severity.as_str(), f.message, f.code);
        }
    }
}

pub fn inspect(global: &Global, a: InspectArgs) -> CliResult {
    let bytes = crate::store::read_input(&a.file)?;
    let password = match &a.password_file {
        Some(f) => Some(
            crate::store::read_input_text(f)
                .map_err(|e| anyhow::anyhow!("cannot read the password file: {e}"))?
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
        ),
        None => a.password.clone(),
    };
    let report: FileReport = match inspect_bytes(&bytes, password.as_deref(), super::clock()?.now())
    {
        Ok(r) => r,
        Err(e) => {
            // A PFX that will not open: say whether the password or the algorithm is the cause.
            if let (Ok(algs), Some(pw)) = (crate::export::pfx::decode(&bytes), password.as_deref())
            {
                if let Err(pe) = crate::export::pfx::open(&bytes, pw, &a.file.display().to_string())
                {
                    anyhow::bail!("{pe}\n  Protection   {}", algs.summary());
                }
            }
            return Err(anyhow::Error::new(e).context(a.file.display().to_string()));
        }
    };
    let findings = crate::pki::lint::lint_certificates(&report);
    // For a PFX: which algorithms protect it, read from the file itself.
    let pfx_algs = (report.format == "PKCS#12")
        .then(|| crate::export::pfx::decode(&bytes).ok())
        .flatten();
    if global.json {
        print_json(
            &serde_json::json!({ "file": a.file, "format": report.format, "items": report.items, "lint": findings, "pkcs12": pfx_algs }),
        );
        return Ok(());
    }
    let mut o = String::new();
    let _ = writeln!(o, "{}: {}", a.file.display(), report.format);
    if let Some(p) = &pfx_algs {
        let _ = writeln!(o, "  Protection   {}", p.summary());
    }
    let mut ci = 0;
    for item in &report.items {
        match item {
            Item::Certificate {
                view,
                signed_by_next,
            } => {
                let _ = writeln!(
                    o,
                    "certificate {}{}",
                    ci + 1,
                    if view.is_ca { " (CA)" } else { "" }
                );
                render_cert(&mut o, view);
                if let Some(s) = signed_by_next {
                    let _ = writeln!(
                        o,
                        "  Signed by next certificate in file: {}",
                        if *s {
                            "yes"
                        } else {
                            "NO (chain out of order or broken)"
                        }
                    );
                }
                render_findings(&mut o, &findings[ci]);
                ci += 1;
            }
            Item::Csr {
                subject,
                key,
                signature_valid,
                requested_extensions,
                ..
            } => {
                let _ = writeln!(o, "certificate request");
                let _ = writeln!(o, "  Subject      {}", one_line(subject));
                let _ = writeln!(o, "  Key          {}", key.algorithm);
                let _ = writeln!(
                    o,
                    "  Signature    {}",
                    if *signature_valid { "valid" } else { "INVALID" }
                );
                if !requested_extensions.is_empty() {
                    let requests = requested_extensions.join(", ");
                    let _ = writeln!(o, "  Requests     {}", one_line(&requests));
                }
            }
            Item::PrivateKey {
                format,
                key,
                matches_certificate,
            } => {
                let _ = writeln!(o, "private key ({format}; contents not shown)");
                if let Some(k) = key {
                    let _ = writeln!(o, "  Key          {}", k.algorithm);
                }
                if let Some(m) = matches_certificate {
                    let _ = writeln!(o, "  Belongs to   certificate with SHA-256 {m}");
                }
            }
            Item::Crl {
                issuer,
                this_update,
                next_update,
                revoked_serials,
            } => {
                let _ = writeln!(o, "CRL");
                let _ = writeln!(o, "  Issuer       {}", one_line(issuer));
                let _ = writeln!(o, "  This update  {this_update}");
                if let Some(n) = next_update {
                    let _ = writeln!(o, "  Next update  {n}");
                }
                let _ = writeln!(o, "  Revoked      {} serial(s)", revoked_serials.len());
                for s in revoked_serials {
                    let _ = writeln!(o, "    {s}");
                }
            }
        }
    }
    super::out(&o);
    Ok(())
}

pub fn lint(global: &Global, a: LintArgs) -> CliResult {
    let ws = global.existing_workspace()?;
    let a_single_name = a.name.is_some();
    let names = match a.name {
        Some(n) => vec![n],
        None => ws.names()?,
    };
    let mut all = Vec::new();
    let mut errors = 0;
    for n in &names {
        // A damaged entity is one finding; the rest of the workspace is still linted.
        let r = match ops::report(&ws, n) {
            Ok(r) => r,
            Err(e) if a_single_name => return Err(e.into()),
            Err(e) => {
                errors += 1;
                all.push((
                    n.clone(),
                    vec![Finding {
                        severity: lint::Severity::Error,
                        code: "damaged",
                        message: e.to_string(),
                    }],
                ));
                continue;
            }
        };
        let mut findings = r.lint;
        if !r.chain_check.ok {
            findings.insert(
                0,
                Finding {
                    severity: lint::Severity::Error,
                    code: "chain",
                    message: format!(
                        "chain {} does not verify: {}",
                        r.chain.join(" → "),
                        r.chain_check.error.unwrap_or_default()
                    ),
                },
            );
        }
        errors += findings
            .iter()
            .filter(|f| f.severity == lint::Severity::Error)
            .count();
        all.push((n.clone(), findings));
    }
    if global.json {
        let v: Vec<_> = all
            .iter()
            .map(|(n, f)| serde_json::json!({ "name": n, "findings": f }))
            .collect();
        print_json(&serde_json::json!({ "entities": v, "errors": errors }));
    } else {
        for (n, findings) in &all {
            for f in findings {
                say!("{n}: {}: {} [{}]", f.severity.as_str(), f.message, f.code);
            }
        }
        say!("{} checked, {errors} error(s)", names.len());
    }
    if errors > 0 {
        return Err(Failed(1).into());
    }
    Ok(())
}
