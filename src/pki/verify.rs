//! Chain verification with OpenSSL's X509 store: an independent check of what rcgen made.

use super::Result;
use openssl::stack::Stack;
use openssl::x509::X509PurposeId;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::{X509VerifyFlags, X509VerifyParam};
use openssl::x509::{X509, X509StoreContext};
use serde::Serialize;

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ChainCheck {
    pub ok: bool,
    /// OpenSSL's words when it fails ("certificate has expired", ...).
    pub error: Option<String>,
    /// OpenSSL's numeric verify code (0 = ok), for scripts comparing with `openssl verify`.
    pub code: i32,
}

/// What the chain is checked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Any,
    SslClient,
    SslServer,
}

/// Verify `leaf` (DER) against `roots` (trusted, DER), with `intermediates` as untrusted
/// helpers, in X509_STRICT mode. `partial` trusts a non-self-signed anchor (a verified
/// intermediate on a hub). Dates are checked as of `at`.
pub fn verify_chain(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
    purpose: Purpose,
    partial: bool,
    at: ::time::OffsetDateTime,
) -> Result<ChainCheck> {
    let leaf = X509::from_der(leaf)?;
    let mut store = X509StoreBuilder::new()?;
    for r in roots {
        store.add_cert(X509::from_der(r)?)?;
    }
    let mut flags = X509VerifyFlags::X509_STRICT;
    if partial {
        flags |= X509VerifyFlags::PARTIAL_CHAIN;
    }
    store.set_flags(flags)?;
    // Validity windows are checked as of `at` (the workspace's clock), not OpenSSL's own now.
    let mut param = X509VerifyParam::new()?;
    param.set_time(at.unix_timestamp() as _);
    store.set_param(&param)?;
    match purpose {
        Purpose::SslClient => store.set_purpose(X509PurposeId::SSL_CLIENT)?,
        Purpose::SslServer => store.set_purpose(X509PurposeId::SSL_SERVER)?,
        Purpose::Any => {}
    }
    let store = store.build();
    let mut chain = Stack::new()?;
    for i in intermediates {
        chain.push(X509::from_der(i)?)?;
    }
    let mut ctx = X509StoreContext::new()?;
    let (ok, code, text) = ctx.init(&store, &leaf, &chain, |c| {
        let ok = c.verify_cert()?;
        let e = c.error();
        Ok((ok, e.as_raw(), e.error_string().to_string()))
    })?;
    Ok(ChainCheck {
        ok,
        error: (!ok).then_some(text),
        code,
    })
}
