//! The device's identity for a connection test: its key, the certificate chain it sends, and
//! what we know about the CAs above it (from the workspace), for the pre-flight lint and for
//! naming the missing intermediate when a broker refuses the chain.

use crate::pki::inspect::{CertView, ValidityStatus};
use crate::pki::lint::{self, Finding, LintContext, Severity};
use crate::pki::{Target, inspect::signed_by};
use crate::store::{Kind, Meta, Workspace};
use std::path::Path;

/// A certificate of the identity, with the name a person knows it by.
#[derive(Clone, Debug)]
pub struct ChainCert {
    /// Workspace entity name, or the CN for certificates from files.
    pub name: String,
    /// The certificate, DER-encoded.
    pub der: Vec<u8>,
    /// Its parsed fields (subject, issuer, validity, extensions).
    pub view: CertView,
}

/// A device as a connection test presents it: id, the chain it sends, its key, and the CAs
/// above that chain the workspace knows.
#[derive(Clone)]
pub struct Identity {
    /// The MQTT client id (the device id).
    pub device_id: String,
    /// What the user named: a workspace device or a certificate file.
    pub source: String,
    /// What is sent in the TLS handshake: the leaf, then intermediates.
    pub sent: Vec<ChainCert>,
    /// CAs above the sent chain that the workspace knows, nearest first: intermediates that
    /// were not sent, then the root.
    pub above: Vec<ChainCert>,
    /// The leaf's private key (PEM).
    pub key_pem: String,
    /// Whose id rules the device was made for (hub, DPS, Central, broker), when the workspace
    /// recorded it; `None` for certificate files.
    pub target: Option<Target>,
    /// The workspace the identity was read from: a test that passes records the device
    /// there ([`super::record`]), so the guide ticks it whichever face ran the test.
    pub workspace: Option<std::path::PathBuf>,
}

impl Identity {
    /// The workspace device this identity was loaded from (`None` for `--cert/--key` files).
    pub(crate) fn workspace_name(&self) -> Option<&str> {
        self.source
            .strip_prefix("workspace device \"")
            .and_then(|s| s.strip_suffix('"'))
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("device_id", &self.device_id)
            .field("source", &self.source)
            .field(
                "sent",
                &self.sent.iter().map(|c| &c.name).collect::<Vec<_>>(),
            )
            .field(
                "above",
                &self.above.iter().map(|c| &c.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Why a device's identity could not be loaded for a connection test.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The workspace name is a CA or verification certificate, not a device (name, kind).
    #[error(
        "\"{0}\" is a {1} certificate, not a device; test a device certificate (issue one under a CA first)"
    )]
    NotADevice(String, &'static str),
    /// The device was signed from a CSR: its key never entered the workspace.
    #[error(
        "device \"{0}\" has no private key in the workspace (it was signed from a CSR); test it with the device's certificate and key files"
    )]
    NoKey(String),
    /// A certificate or key file given directly could not be read or holds nothing usable.
    #[error("{path}: {problem}")]
    File {
        /// The file as given.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Reading the workspace failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// A certificate or key did not parse.
    #[error(transparent)]
    Pki(#[from] crate::pki::Error),
}

impl IdentityError {
    /// A short machine-friendly name for `--json` errors.
    pub fn kind(&self) -> &'static str {
        match self {
            IdentityError::NotADevice(..) => "not-a-device",
            IdentityError::NoKey(_) => "no-key",
            IdentityError::File { .. } => "bad-file",
            IdentityError::Store(e) => e.kind(),
            IdentityError::Pki(e) => e.kind(),
        }
    }

    /// What would fix it, for a face to turn into its own hint.
    pub fn remedy(&self) -> Option<crate::error::Remedy> {
        use crate::error::Remedy;
        match self {
            IdentityError::NotADevice(..) => Some(Remedy::IssueDevices),
            IdentityError::NoKey(_) => Some(Remedy::DeviceFiles),
            IdentityError::File { .. } => None,
            IdentityError::Store(e) => e.remedy(),
            IdentityError::Pki(e) => e.remedy(),
        }
    }
}

impl crate::error::Classified for IdentityError {
    fn kind(&self) -> &'static str {
        IdentityError::kind(self)
    }
    fn remedy(&self) -> Option<crate::error::Remedy> {
        IdentityError::remedy(self)
    }
}

/// A certificate of the chain, its validity judged at `now` (the workspace's clock).
fn cert(name: &str, der: Vec<u8>, now: time::OffsetDateTime) -> Result<ChainCert, IdentityError> {
    let view = CertView::from_der_at(&der, now)?;
    Ok(ChainCert {
        name: name.to_string(),
        der,
        view,
    })
}

impl Identity {
    /// A workspace device: its key, the leaf and every intermediate up to (not including) the root.
    pub fn from_workspace(ws: &Workspace, name: &str) -> Result<Identity, IdentityError> {
        let chain = crate::store::chain_of(ws, name)?;
        let leaf = &chain[0];
        if leaf.meta.kind != Kind::Device {
            return Err(IdentityError::NotADevice(
                name.to_string(),
                leaf.meta.kind.as_str(),
            ));
        }
        if !leaf.meta.has_key {
            return Err(IdentityError::NoKey(name.to_string()));
        }
        let key_pem = leaf.read_key_pem()?;
        let now = ws.now();
        let mut sent = vec![cert(name, leaf.cert_der.clone(), now)?];
        let mut above = Vec::new();
        for e in &chain[1..] {
            if e.meta.self_signed {
                above.push(cert(&e.meta.name, e.cert_der.clone(), now)?);
            } else {
                sent.push(cert(&e.meta.name, e.cert_der.clone(), now)?);
            }
        }
        Ok(Identity {
            device_id: name.to_string(),
            source: format!("workspace device \"{name}\""),
            sent,
            above,
            key_pem,
            target: leaf.meta.target,
            workspace: Some(ws.root().to_path_buf()),
        })
    }

    /// Certificate (chain) and key files; the workspace, when there is one, names the CAs above.
    pub fn from_files(
        cert_path: &Path,
        key_path: &Path,
        ws: Option<&Workspace>,
    ) -> Result<Identity, IdentityError> {
        let file_err = |p: &Path, problem: String| IdentityError::File {
            path: p.display().to_string(),
            problem,
        };
        let text = crate::store::read_input(cert_path)
            .map_err(|e| file_err(cert_path, format!("cannot read the certificate file: {e}")))?;
        let ders: Vec<Vec<u8>> = match pem::parse_many(&text) {
            Ok(blocks) if !blocks.is_empty() => blocks
                .into_iter()
                .filter(|b| b.tag() == "CERTIFICATE")
                .map(|b| b.into_contents())
                .collect(),
            _ => vec![text.clone()],
        };
        if ders.is_empty() {
            return Err(file_err(
                cert_path,
                "holds no CERTIFICATE block; give the device's certificate (or chain) PEM".into(),
            ));
        }
        // Validity is judged by the workspace's clock; without a workspace, by the default one.
        let now = ws
            .map_or(crate::clock::Clock::default(), Workspace::clock)
            .now();
        let mut sent = Vec::new();
        for der in ders {
            let view = CertView::from_der_at(&der, now)
                .map_err(|e| file_err(cert_path, format!("is not a certificate: {e}")))?;
            let name = view.cn.clone().unwrap_or_else(|| view.subject.clone());
            sent.push(ChainCert { name, der, view });
        }
        let key_pem = crate::store::read_input_text(key_path)
            .map_err(|e| file_err(key_path, format!("cannot read the key file: {e}")))?;
        let key = openssl::pkey::PKey::private_key_from_pem(key_pem.as_bytes()).map_err(|_| {
            file_err(
                key_path,
                "is not a PEM private key (PKCS#8, SEC1 or PKCS#1)".into(),
            )
        })?;
        let leaf_pub = openssl::x509::X509::from_der(&sent[0].der)
            .and_then(|c| c.public_key())
            .map_err(crate::pki::Error::from)?;
        if !key.public_eq(&leaf_pub) {
            return Err(file_err(
                key_path,
                format!(
                    "does not belong to the certificate \"{}\" in {}; pass the key made with it",
                    sent[0].name,
                    cert_path.display()
                ),
            ));
        }
        let Some(device_id) = sent[0].view.cn.clone() else {
            return Err(file_err(
                cert_path,
                "the leaf certificate has no CN; the CN is the device id".into(),
            ));
        };
        // Name the certificates and find what lies above them in the workspace.
        let metas: Vec<Meta> = ws
            .and_then(|w| w.list().ok())
            .map(|(m, _)| m)
            .unwrap_or_default();
        let find = |subject: &str, issuer_of: &[u8]| {
            metas
                .iter()
                .filter(|m| m.kind.is_ca() && m.subject == subject)
                .find_map(|m| {
                    let e = ws?.load(&m.name).ok()?;
                    signed_by(issuer_of, &e.cert_der).then_some(e)
                })
        };
        for c in sent.iter_mut().skip(1) {
            if let Some(m) = metas.iter().find(|m| m.sha256 == c.view.sha256) {
                c.name = m.name.clone();
            }
        }
        let mut above = Vec::new();
        let mut top = sent.last().expect("one certificate at least").clone();
        while !top.view.self_signed && above.len() < 16 {
            let Some(e) = find(&top.view.issuer, &top.der) else {
                break;
            };
            let c = cert(&e.meta.name, e.cert_der, now)?;
            above.push(c.clone());
            top = c;
        }
        Ok(Identity {
            device_id,
            source: cert_path.display().to_string(),
            sent,
            above,
            key_pem,
            target: None,
            workspace: ws.map(|w| w.root().to_path_buf()),
        })
    }

    /// The device's own certificate (the first one sent).
    pub fn leaf(&self) -> &ChainCert {
        &self.sent[0]
    }

    /// Intermediates the workspace knows above the sent chain that were not sent.
    pub(crate) fn missing_intermediates(&self) -> Vec<&ChainCert> {
        self.above.iter().filter(|c| !c.view.self_signed).collect()
    }

    /// The root the chain leads to, when known.
    pub fn root(&self) -> Option<&ChainCert> {
        self.above
            .iter()
            .chain(self.sent.iter().skip(1))
            .find(|c| c.view.self_signed)
    }

    /// The name of the CA that issued the leaf (workspace name when known, else its DN).
    pub(crate) fn leaf_issuer_name(&self) -> String {
        self.sent
            .get(1)
            .or_else(|| self.above.first())
            .map(|c| c.name.clone())
            .unwrap_or_else(|| cn_of(&self.leaf().view.issuer))
    }

    /// The pre-flight lint: the leaf's own findings, then what is wrong with the chain sent.
    pub fn preflight(&self) -> Vec<Finding> {
        let issuers: Vec<CertView> = self.sent[1..]
            .iter()
            .chain(self.above.iter())
            .map(|c| c.view.clone())
            .collect();
        let ctx = LintContext {
            device_id: Some(&self.device_id),
            target: self.target,
            issuers: &issuers,
        };
        let mut out = lint::lint(&self.leaf().view, &ctx);
        for c in self.sent[1..].iter().chain(self.above.iter()) {
            match c.view.status {
                ValidityStatus::Expired => out.push(Finding {
                    severity: Severity::Error,
                    code: "issuer-expired",
                    message: format!("CA \"{}\" in the chain expired on {}; renew it and re-issue what it signed", c.name, c.view.not_after),
                }),
                ValidityStatus::NotYetValid => out.push(Finding {
                    severity: Severity::Error,
                    code: "issuer-not-yet-valid",
                    message: format!("CA \"{}\" in the chain is not valid until {}", c.name, c.view.not_before),
                }),
                ValidityStatus::Valid => {}
            }
        }
        for pair in self.sent.windows(2) {
            if !signed_by(&pair[0].der, &pair[1].der) {
                out.push(Finding {
                    severity: Severity::Error,
                    code: "chain-order",
                    message: format!("\"{}\" is not signed by \"{}\", the next certificate in the chain sent; order the file leaf first, then its issuer, and so on", pair[0].name, pair[1].name),
                });
            }
        }
        if let Some(f) = self.chain_verdict() {
            out.push(f);
        }
        let missing = self.missing_intermediates();
        if !missing.is_empty() {
            let names: Vec<String> = missing.iter().map(|c| format!("\"{}\"", c.name)).collect();
            out.push(Finding {
                severity: Severity::Warning,
                code: "chain-incomplete",
                message: format!(
                    "the chain sent stops at \"{}\" without the intermediate {}; a hub or broker that trusts only the root will refuse it: send the full chain (leaf, then intermediates)",
                    self.sent.last().map(|c| c.name.as_str()).unwrap_or(""),
                    names.join(", ")
                ),
            });
        } else if !self.sent.last().is_some_and(|c| c.view.self_signed) && self.above.is_empty() {
            out.push(Finding {
                severity: Severity::Info,
                code: "chain-top-unknown",
                message: format!(
                    "the issuer of \"{}\" ({}) is not in the workspace; the peer must trust it (or the chain must include the intermediates up to the CA it trusts)",
                    self.sent.last().map(|c| c.name.as_str()).unwrap_or(""),
                    self.sent.last().map(|c| c.view.issuer.as_str()).unwrap_or("")
                ),
            });
        }
        out.sort_by_key(|f| f.severity);
        out
    }
}

impl Identity {
    /// The hub's chain check with the root the workspace knows as the anchor, over what is
    /// sent plus the intermediates the workspace knows: finds a device used as an issuer, a
    /// CA without keyCertSign, pathlen, EKU and weak crypto before any peer is asked. Validity
    /// and a missing intermediate have their own findings above, so they are not repeated.
    fn chain_verdict(&self) -> Option<Finding> {
        use crate::pki::verify::{ChainErrorKind, TrustAnchors, verify_device_chain};
        let root = self.root()?;
        let anchors = TrustAnchors::new([&root.der]).ok()?;
        let chain: Vec<Vec<u8>> = self
            .sent
            .iter()
            .chain(self.above.iter())
            .map(|c| c.der.clone())
            .collect();
        // Judged at an instant inside every window (the latest notBefore), so the verdict is
        // about the chain's structure only and needs no clock; validity has its own findings.
        let at = self
            .sent
            .iter()
            .chain(self.above.iter())
            .map(|c| c.view.not_before_t)
            .max()?;
        let e = verify_device_chain(&anchors, &chain, at).err()?;
        if matches!(
            e.kind,
            ChainErrorKind::Expired | ChainErrorKind::NotYetValid | ChainErrorKind::IssuerNotFound
        ) {
            return None;
        }
        Some(Finding {
            severity: Severity::Error,
            code: "chain-refused",
            message: format!(
                "the chain of \"{}\" does not verify to \"{}\" (as `openssl verify -x509_strict -purpose sslclient` judges it): {} at \"{}\"",
                self.leaf().name,
                root.name,
                e.text,
                e.subject_cn
            ),
        })
    }
}

/// A CA the target is known to trust (the local hub's registry).
#[derive(Clone, Debug)]
pub(crate) struct TrustedCa {
    /// The name the hub's registry knows the CA by.
    pub name: String,
    /// The CA certificate, DER-encoded.
    pub der: Vec<u8>,
    /// Proof of possession done (IoT Hub refuses chains to unverified CAs).
    pub verified: bool,
}

impl Identity {
    /// Pre-flight against what the target trusts: the chain sent must reach a trusted,
    /// verified CA, with every intermediate below that CA sent.
    pub(crate) fn against_trusted(&self, trusted: &[TrustedCa], target: &str) -> Vec<Finding> {
        let mut out = Vec::new();
        if self.leaf().view.self_signed {
            return out;
        }
        let matches = |c: &ChainCert| trusted.iter().find(|t| t.der == c.der);
        // The sent certificates above the leaf, then what the workspace knows above them.
        let sent_cas = self.sent[1..].iter().map(|c| (c, true));
        let above = self.above.iter().map(|c| (c, false));
        let mut unsent_below: Vec<&ChainCert> = Vec::new();
        for (c, was_sent) in sent_cas.chain(above) {
            if let Some(t) = matches(c) {
                if !unsent_below.is_empty() {
                    let names: Vec<String> = unsent_below
                        .iter()
                        .map(|c| format!("\"{}\"", c.name))
                        .collect();
                    out.push(Finding {
                        severity: Severity::Error,
                        code: "chain-short-of-trusted-ca",
                        message: format!("{target} trusts \"{}\", but {} between it and \"{}\" is not sent; send the chain up to \"{}\"", t.name, names.join(", "), self.leaf().name, t.name),
                    });
                }
                if !t.verified {
                    out.push(Finding {
                        severity: Severity::Error,
                        code: "ca-unverified",
                        message: format!("{target} has \"{}\" but it is not verified; IoT Hub refuses devices under an unverified CA: prove possession with a verification certificate", t.name),
                    });
                }
                return out;
            }
            if !was_sent && !c.view.self_signed {
                unsent_below.push(c);
            }
        }
        let names: Vec<String> = self.sent[1..]
            .iter()
            .chain(self.above.iter())
            .map(|c| format!("\"{}\"", c.name))
            .collect();
        out.push(Finding {
            severity: Severity::Error,
            code: "ca-not-trusted",
            message: if names.is_empty() {
                format!("{target} trusts none of the CAs above \"{}\" (issuer {}); register its CA", self.leaf().name, self.leaf().view.issuer)
            } else {
                format!("{target} trusts none of the CAs above \"{}\" ({}); register and verify one of them", self.leaf().name, names.join(", "))
            },
        });
        out
    }
}

/// The CN of a distinguished name as x509-parser prints it ("CN=Contoso Root, O=Contoso"),
/// or the whole name when it has none.
pub fn cn_of(dn: &str) -> String {
    dn.split(", ")
        .find_map(|part| part.strip_prefix("CN="))
        .map(str::to_string)
        .unwrap_or_else(|| dn.to_string())
}
