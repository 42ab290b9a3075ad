//! What the engine's errors share: a [`Remedy`], the fix an error's message already states in
//! domain words, as a typed value so that each face can add its own hint (the CLI names the
//! flag, the TUI the field or key); and [`kind_of`] / [`remedy_of`], which find them on any
//! engine error, so a face needs no ladder of its own.

use std::error::Error as StdError;

/// The fix for an engine error, as a face can act on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remedy {
    /// Replace the entities (or the slot) that already exist.
    Replace,
    /// Overwrite the files that already exist, or write elsewhere.
    Overwrite,
    /// Give the password of the PKCS#12 file or key (or a correct one).
    Password,
    /// Pick another issuing CA.
    Issuer,
    /// Give the new CA another path length.
    Pathlen,
    /// Give the certificate a common name.
    CommonName,
    /// Give a validity window that is not empty and not over-determined.
    Validity,
    /// Give the CRL a validity of at least one day.
    CrlDays,
    /// Use another workspace directory.
    Workspace,
    /// Write into another (existing) directory.
    OutDir,
    /// Name the entity explicitly.
    Name,
    /// Write one format only when writing to standard output.
    OneFormat,
    /// Renew with a new key.
    Rekey,
    /// Sign a certificate request (made on the device) instead.
    SignCsr,
    /// Bring the issuing CA into the workspace with its key first.
    ImportIssuer,
    /// Export the certificates only (PEM), since there is no key.
    CertificatesOnly,
}

/// The `--json` kind of an engine error found anywhere in `e` (itself or a source).
pub fn kind_of(e: &(dyn StdError + 'static)) -> Option<&'static str> {
    walk(e, |e| {
        if let Some(x) = e.downcast_ref::<crate::hub::RegistryError>() {
            return Some(x.kind());
        }
        if let Some(x) = e.downcast_ref::<crate::fixtures::apply::Error>() {
            return Some(x.kind());
        }
        if let Some(x) = e.downcast_ref::<crate::ops::lifecycle::Error>() {
            return Some(x.kind());
        }
        if let Some(x) = e.downcast_ref::<crate::export::Error>() {
            return Some(x.kind());
        }
        if let Some(x) = e.downcast_ref::<crate::store::Error>() {
            return Some(x.kind());
        }
        e.downcast_ref::<crate::pki::Error>()
            .map(crate::pki::Error::kind)
    })
}

/// The remedy of an engine error found anywhere in `e` (itself or a source).
pub fn remedy_of(e: &(dyn StdError + 'static)) -> Option<Remedy> {
    walk(e, |e| {
        if let Some(x) = e.downcast_ref::<crate::fixtures::apply::Error>() {
            return x.remedy();
        }
        if let Some(x) = e.downcast_ref::<crate::ops::lifecycle::Error>() {
            return x.remedy();
        }
        if let Some(x) = e.downcast_ref::<crate::export::Error>() {
            return x.remedy();
        }
        if let Some(x) = e.downcast_ref::<crate::store::Error>() {
            return x.remedy();
        }
        e.downcast_ref::<crate::pki::Error>()
            .and_then(crate::pki::Error::remedy)
    })
}

/// The first answer `f` gives for `e` or one of its sources.
fn walk<T>(
    e: &(dyn StdError + 'static),
    f: impl Fn(&(dyn StdError + 'static)) -> Option<T>,
) -> Option<T> {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(t) = f(e) {
            return Some(t);
        }
        cur = e.source();
    }
    None
}
