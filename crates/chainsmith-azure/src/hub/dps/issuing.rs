//! Certificate issuance: DPS signing a device's CSR with its enrollment's issuing CA.

use super::HubStore;
use crate::store::{self, Workspace};
use std::sync::Arc;

/// Why DPS will not sign a device's CSR: a short kind (`csr-subject`, `csr-key`, `csr-cn`,
/// `csr-name-taken`, …) and the reason the device gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrRefusal {
    /// A short kind, for logs and tests.
    pub kind: &'static str,
    /// The reason.
    pub reason: String,
}

/// Signs a CSR: (issuing CA, registration id, CSR DER) → the chain (DER, leaf first), or why not.
pub type IssueFn<'a> =
    dyn Fn(&str, &str, &[u8]) -> std::result::Result<Vec<Vec<u8>>, CsrRefusal> + 'a;

/// How the local DPS signs a device's CSR (certificate issuance): the workspace, the
/// enrollment's issuing CA, the registration id and the CSR (DER). Done means the certificate is
/// stored as workspace entity `registration_id`, its earlier one in the history. The engine's
/// `hub::dps_csr_signer()` is the one every face passes in [`crate::hub::HubConfig`]; the hub cannot
/// call `ops` itself (ops depends on the hub), and without a signer a CSR is refused.
#[derive(Clone)]
pub struct CsrSigner(pub Arc<SignCsr>);

/// The signing call inside a [`CsrSigner`]: (workspace, issuing CA, registration id, CSR DER)
/// → done, or the workspace's own error (a CSR it will not sign, a CA it cannot use), whose
/// message the device gets.
pub type SignCsr =
    dyn Fn(&Workspace, &str, &str, &[u8]) -> std::result::Result<(), store::Error> + Send + Sync;

impl std::fmt::Debug for CsrSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrSigner")
    }
}

/// Sign a device's CSR with workspace CA `ca` (chainsmith's device profile), keep the
/// certificate in the workspace as entity `registration_id` (the earlier one goes to its
/// history), and return the chain: leaf, then the issuers up to the root. The certificate's
/// subject is `CN = registration id`, built by the signer, never the CSR's; a CSR that asks for
/// another identity, a CN that differs even in case (the hub compares device ids
/// case-sensitively), a weak key, or a registration id naming a workspace CA is refused.
pub(crate) fn issue_from_csr(
    store: &HubStore,
    signer: Option<&super::CsrSigner>,
    ca: &str,
    registration_id: &str,
    csr: &[u8],
) -> Result<Vec<Vec<u8>>, CsrRefusal> {
    let refuse = |kind: &'static str, reason: String| Err(CsrRefusal { kind, reason });
    let parsed = match crate::pki::csr::parse_csr(csr) {
        Ok(p) => p,
        Err(e) => return refuse(e.kind(), e.to_string()),
    };
    match parsed.cn.as_deref() {
        Some(cn) if cn == registration_id => {}
        Some(cn) if cn.eq_ignore_ascii_case(registration_id) => {
            return refuse(
                "csr-cn",
                format!(
                    "the CSR's CN \"{cn}\" differs from the registration id \"{registration_id}\" in case; the hub compares device ids case-sensitively, so make the CSR with CN exactly \"{registration_id}\""
                ),
            );
        }
        other => {
            return refuse(
                "csr-cn",
                format!(
                    "the CSR's CN is {} but it must be the registration id \"{registration_id}\"",
                    other.map_or("missing".to_string(), |c| format!(
                        "\"{}\"",
                        crate::text::escape_controls(c)
                    ))
                ),
            );
        }
    }
    match store.ws.load(registration_id) {
        Ok(e) if e.meta.kind.is_ca() => {
            return refuse(
                "csr-name-taken",
                format!(
                    "registration id \"{registration_id}\" is the name of a CA in the workspace; DPS never replaces a CA with a device certificate: give the device another registration id"
                ),
            );
        }
        _ => {}
    }
    let Some(signer) = signer else {
        return refuse(
            "csr-no-issuer",
            "this hub was started without a certificate issuer, so it cannot sign CSRs; start it from chainsmith (the CLI or the TUI), which gives it one"
                .to_string(),
        );
    };
    if let Err(e) = (signer.0)(&store.ws, ca, registration_id, csr) {
        return refuse("bad-csr", e.to_string());
    }
    let mut chain = Vec::new();
    let mut next = Some(registration_id.to_string());
    while let Some(name) = next.take() {
        let e = match store.ws.load(&name) {
            Ok(e) => e,
            Err(e) => return refuse("registry", e.to_string()),
        };
        chain.push(e.cert_der.clone());
        next = e
            .meta
            .issuer
            .clone()
            .filter(|i| *i != name && chain.len() < 8);
    }
    Ok(chain)
}
