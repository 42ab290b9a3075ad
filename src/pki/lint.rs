//! Lint: the mistakes that make devices fail to connect, found before they connect.

use super::identity::{MAX_CN, Target, check_device_id};
use super::inspect::{CertView, Validity};
use serde::Serialize;

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// A stable identifier scripts can match on.
    pub code: &'static str,
    pub message: String,
}

/// What we know about the certificate beyond its bytes.
#[derive(Clone, Debug, Default)]
pub struct LintContext<'a> {
    /// The certificate is meant to be a device leaf with this id (its CN must match).
    pub device_id: Option<&'a str>,
    /// Whose identity rules apply; None for CAs.
    pub target: Option<Target>,
    /// Issuers from the direct parent up to the root.
    pub issuers: &'a [CertView],
}

/// All findings for one certificate, errors first.
pub fn lint(cert: &CertView, ctx: &LintContext<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut push = |severity, code, message: String| {
        out.push(Finding {
            severity,
            code,
            message,
        })
    };
    let name = cert.cn.clone().unwrap_or_else(|| cert.subject.clone());

    match cert.status {
        Validity::Expired => push(
            Severity::Error,
            "expired",
            format!(
                "\"{name}\" expired {} days ago ({}); renew it",
                -cert.days_left, cert.not_after
            ),
        ),
        Validity::NotYetValid => push(
            Severity::Error,
            "not-yet-valid",
            format!(
                "\"{name}\" is not valid until {}; check the clocks or re-issue it",
                cert.not_before
            ),
        ),
        Validity::Valid if cert.days_left < 30 => push(
            Severity::Warning,
            "expires-soon",
            format!(
                "\"{name}\" expires in {} days ({})",
                cert.days_left, cert.not_after
            ),
        ),
        Validity::Valid => {}
    }
    if let Some(cn) = &cert.cn {
        if cn.chars().count() > MAX_CN {
            push(
                Severity::Error,
                "cn-too-long",
                format!("CN \"{cn}\" is longer than {MAX_CN} characters (RFC 5280)"),
            );
        }
    } else {
        push(
            Severity::Warning,
            "no-cn",
            format!(
                "subject \"{}\" has no CN: hubs identify devices by it",
                cert.subject
            ),
        );
    }
    if cert.key.algorithm.starts_with("RSA") && cert.key.bits < 2048 {
        push(
            Severity::Error,
            "weak-key",
            format!(
                "\"{name}\" has an RSA {}-bit key; hubs and OpenSSL 3 refuse keys under 2048 bits",
                cert.key.bits
            ),
        );
    }
    if cert.uses_sha1_signature() {
        push(
            Severity::Error,
            "sha1-signature",
            format!(
                "\"{name}\" is signed with {}: SHA-1 signatures are rejected by current TLS stacks",
                cert.signature_algorithm
            ),
        );
    }

    if cert.is_ca {
        if !cert.key_cert_sign {
            push(
                Severity::Error,
                "ca-without-keycertsign",
                format!(
                    "CA \"{name}\" lacks keyUsage keyCertSign, so nothing it signs will verify"
                ),
            );
        }
    } else {
        if !cert.basic_constraints_present {
            push(
                Severity::Warning,
                "no-basic-constraints",
                format!("\"{name}\" has no basicConstraints; mark leaves CA:FALSE (critical)"),
            );
        }
        match cert.eku_client_auth {
            Some(true) => {}
            Some(false) => push(
                Severity::Error,
                "no-client-auth",
                format!(
                    "\"{name}\" has an EKU without clientAuth: a hub will refuse it as a TLS client certificate"
                ),
            ),
            None => push(
                Severity::Warning,
                "no-eku",
                format!("\"{name}\" has no extendedKeyUsage; DPS and some brokers want clientAuth"),
            ),
        }
    }
    if let Some(id) = ctx.device_id {
        if cert.is_ca {
            push(
                Severity::Error,
                "device-is-ca",
                format!(
                    "device \"{id}\" has a CA:TRUE certificate; device certificates must be CA:FALSE"
                ),
            );
        }
        match &cert.cn {
            Some(cn) if cn != id => push(
                Severity::Error,
                "cn-mismatch",
                format!(
                    "CN \"{cn}\" is not the device id \"{id}\"; the hub matches them exactly (case-sensitive)"
                ),
            ),
            _ => {}
        }
    }
    if let (Some(target), Some(cn), false) = (ctx.target, &cert.cn, cert.is_ca) {
        match check_device_id(cn, target) {
            Ok(warnings) => warnings
                .into_iter()
                .for_each(|w| push(Severity::Warning, "device-id-rule", w)),
            Err(e) => push(Severity::Error, "device-id-rule", e.to_string()),
        }
        if cert.key.key_alg == Some(super::KeyAlg::Ed25519) && target != Target::Generic {
            push(
                Severity::Warning,
                "ed25519-on-azure",
                format!(
                    "\"{name}\" uses Ed25519, which Azure IoT Hub and DPS do not document; use ec-p256"
                ),
            );
        }
    }

    // Path length: the CA at distance k above the leaf has k-1 CAs below it (not counting
    // the leaf when the certificate is not a CA itself).
    let below_first = usize::from(cert.is_ca);
    for (k, issuer) in ctx.issuers.iter().enumerate() {
        let cas_below = k + below_first;
        if let Some(p) = issuer.pathlen {
            if cas_below > p as usize {
                let iname = issuer.cn.clone().unwrap_or_default();
                push(
                    Severity::Error,
                    "pathlen-exceeded",
                    format!(
                        "CA \"{iname}\" has pathlen {p} but {cas_below} CA level(s) sit below it on the way to \"{name}\"; re-issue \"{iname}\" with --pathlen {cas_below}"
                    ),
                );
            }
        }
        if !issuer.is_ca {
            push(
                Severity::Error,
                "issuer-not-ca",
                format!("issuer \"{}\" is not a CA", issuer.subject),
            );
        }
    }
    if let Some(parent) = ctx.issuers.first() {
        if parent.not_after_t < cert.not_after_t {
            push(
                Severity::Warning,
                "outlives-issuer",
                format!(
                    "\"{name}\" is valid until {} but its issuer \"{}\" expires earlier ({}); the chain stops verifying then",
                    cert.not_after,
                    parent.cn.clone().unwrap_or_default(),
                    parent.not_after
                ),
            );
        }
    }
    out.sort_by_key(|f| f.severity);
    out
}

pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}
