//! Chain verification with OpenSSL's X509 store: the one verifier behind the hub's CONNECT
//! check, the connection test's pre-flight and `lint`.
//!
//! A device chain is judged exactly as `openssl verify` judges it with [`DEVICE_POLICY_ARGS`]:
//! every issuer a CA (basicConstraints CA:TRUE, critical as X509_STRICT demands), keyCertSign
//! where keyUsage is present, pathlen respected, every certificate inside its validity window at
//! the given time, the leaf's EKU allowing clientAuth when present, and security level 2 (no
//! RSA/DSA keys under 2048 bits, no MD5 or SHA-1 signatures).

use super::Result;
use ::time::OffsetDateTime;
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::{X509VerifyFlags, X509VerifyParam};
use openssl::x509::{X509, X509PurposeId, X509StoreContext, X509StoreContextRef};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use x509_parser::prelude::{FromDer, X509Certificate};

/// A chain check's verdict, as `openssl verify` gives it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ChainCheck {
    /// Whether the chain verifies.
    pub ok: bool,
    /// OpenSSL's words when it fails ("certificate has expired", ...).
    pub error: Option<String>,
    /// OpenSSL's numeric verify code (0 = ok), for scripts comparing with `openssl verify`.
    pub code: i32,
}

/// What the chain is checked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// No purpose check.
    Any,
    /// A TLS client certificate (devices).
    SslClient,
    /// A TLS server certificate.
    SslServer,
}

/// OpenSSL's security level for device chains. Level 1 (OpenSSL's TLS default) already
/// refuses MD5 and SHA-1 signatures but lets RSA-1024 through; IoT Hub wants RSA 2048 or more,
/// which is level 2 (112-bit security).
pub(crate) const DEVICE_AUTH_LEVEL: i32 = 2;

/// The `openssl verify` options that decide a device chain exactly as [`verify_device_chain`]
/// does (add `-attime T -CAfile ANCHORS -untrusted CHAIN LEAF`).
pub const DEVICE_POLICY_ARGS: &[&str] = &[
    "-x509_strict",
    "-auth_level",
    "2",
    "-purpose",
    "sslclient",
    "-partial_chain",
];

/// Trust anchors (the hub's verified CAs, root or intermediate) ready for OpenSSL.
///
/// OpenSSL reads the verification time from the store's parameters, so the store is built
/// for one second at a time and reused by every handshake within it: at thousands of
/// handshakes a second that is one build per second instead of one per connection.
pub struct TrustAnchors {
    certs: Vec<X509>,
    ders: Vec<Vec<u8>>,
    store: Mutex<Option<(i64, Arc<X509Store>)>>,
    /// Intermediates that were part of a verified chain, parsed: OpenSSL 3.0 takes ~0.3 ms to
    /// parse a certificate, and every device under a CA sends the same intermediates.
    parsed: Mutex<HashMap<Vec<u8>, X509>>,
}

/// At most this many parsed intermediates are kept (only ones from verified chains).
const PARSED_CACHE: usize = 64;

impl std::fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustAnchors")
            .field("count", &self.certs.len())
            .finish_non_exhaustive()
    }
}

impl TrustAnchors {
    /// Anchors from DER certificates; one that OpenSSL cannot read is an error naming it.
    pub fn new<I, D>(ders: I) -> Result<TrustAnchors>
    where
        I: IntoIterator<Item = D>,
        D: AsRef<[u8]>,
    {
        let mut certs = Vec::new();
        let mut out = Vec::new();
        for (i, d) in ders.into_iter().enumerate() {
            let c = X509::from_der(d.as_ref())
                .map_err(|e| super::Error::parse(format!("trust anchor {}", i + 1), e))?;
            certs.push(c);
            out.push(d.as_ref().to_vec());
        }
        Ok(TrustAnchors {
            certs,
            ders: out,
            store: Mutex::new(None),
            parsed: Mutex::new(HashMap::new()),
        })
    }

    /// The anchors' DER, in the order given.
    pub fn ders(&self) -> &[Vec<u8>] {
        &self.ders
    }

    fn lock_parsed(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, X509>> {
        self.parsed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn device_store(&self, at: i64) -> Result<Arc<X509Store>> {
        let mut cached = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((t, s)) = cached.as_ref()
            && *t == at
        {
            return Ok(s.clone());
        }
        let s = Arc::new(build_store(&self.certs, &DEVICE_POLICY, Some(at))?);
        *cached = Some((at, s.clone()));
        Ok(s)
    }
}

struct Policy {
    purpose: Purpose,
    partial: bool,
    auth_level: Option<i32>,
}

/// What a device chain is held to (the hub, the pre-flight, `lint` of a device).
const DEVICE_POLICY: Policy = Policy {
    purpose: Purpose::SslClient,
    partial: true,
    auth_level: Some(DEVICE_AUTH_LEVEL),
};

fn build_store(anchors: &[X509], policy: &Policy, at: Option<i64>) -> Result<X509Store> {
    let mut store = X509StoreBuilder::new()?;
    for a in anchors {
        store.add_cert(a.clone())?;
    }
    let mut param = X509VerifyParam::new()?;
    let mut flags = X509VerifyFlags::X509_STRICT;
    if policy.partial {
        flags |= X509VerifyFlags::PARTIAL_CHAIN;
    }
    param.set_flags(flags)?;
    if let Some(level) = policy.auth_level {
        param.set_auth_level(level);
    }
    if let Some(t) = at {
        param.set_time(t as _);
    }
    match policy.purpose {
        Purpose::SslClient => param.set_purpose(X509PurposeId::SSL_CLIENT)?,
        Purpose::SslServer => param.set_purpose(X509PurposeId::SSL_SERVER)?,
        Purpose::Any => {}
    }
    store.set_param(&param)?;
    Ok(store.build())
}

/// What a refusal is about, from OpenSSL's verify code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChainErrorKind {
    /// The chain is empty or a certificate is not DER X.509.
    Malformed,
    /// A certificate past its window.
    Expired,
    /// A certificate before its window.
    NotYetValid,
    /// The certificate's issuer is neither sent nor an anchor.
    IssuerNotFound,
    /// A self-signed certificate that is not an anchor.
    UntrustedSelfSigned,
    /// An issuer without basicConstraints CA:TRUE (a device used as a CA).
    NotCa,
    /// An issuer whose keyUsage lacks keyCertSign.
    NoCertSign,
    /// A CA's path length is exceeded.
    PathLen,
    /// The leaf's (or a CA's) EKU does not allow clientAuth.
    Purpose,
    /// A key too weak for OpenSSL's security level.
    WeakKey,
    /// A signature digest too weak (SHA-1, MD5).
    WeakSignature,
    /// A signature that does not verify.
    BadSignature,
    /// Any other RFC 5280 rule OpenSSL's strict mode enforces (OpenSSL's words say which).
    Other,
}

impl ChainErrorKind {
    fn from_code(code: i32) -> ChainErrorKind {
        use ChainErrorKind::*;
        match code {
            9 => NotYetValid,
            10 => Expired,
            2 | 20 | 21 => IssuerNotFound,
            18 | 19 => UntrustedSelfSigned,
            // X509_V_ERR_INVALID_CA; INVALID_NON_CA is its proxy-certificate twin.
            79 | 37 => NotCa,
            32 => NoCertSign,
            25 => PathLen,
            26 => Purpose,
            66 | 67 => WeakKey,
            68 => WeakSignature,
            4 | 6 | 7 => BadSignature,
            _ => Other,
        }
    }
}

/// Why a chain did not verify: OpenSSL's code and words, and the certificate at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text} (\"{subject_cn}\", depth {depth})")]
pub struct ChainError {
    /// What the refusal is about.
    pub kind: ChainErrorKind,
    /// OpenSSL's verify code (`openssl verify` prints it as "error N").
    pub code: i32,
    /// OpenSSL's words for the code.
    pub text: String,
    /// Position of the certificate at fault in the chain OpenSSL built (0 = leaf).
    pub depth: u32,
    /// The certificate at fault (DER), when OpenSSL names one.
    pub cert: Option<Vec<u8>>,
    /// Its subject CN and its issuer's CN (the whole DN when there is no CN).
    pub subject_cn: String,
    /// The issuer's CN.
    pub issuer_cn: String,
}

impl ChainError {
    fn malformed(text: String) -> ChainError {
        ChainError {
            kind: ChainErrorKind::Malformed,
            code: -1,
            text,
            depth: 0,
            cert: None,
            subject_cn: String::new(),
            issuer_cn: String::new(),
        }
    }

    /// The certificate at fault is self-signed (subject = issuer, signed with its own key).
    pub fn cert_is_self_signed(&self) -> bool {
        self.cert
            .as_deref()
            .is_some_and(|d| super::inspect::signed_by(d, d))
    }
}

/// A chain that verified: leaf first, the trust anchor last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedChain {
    /// The chain, DER.
    pub chain: Vec<Vec<u8>>,
    /// Which of the anchors it ends at.
    pub anchor: usize,
}

/// The CN of a DER certificate's subject or issuer, or the whole DN when it has none.
pub(crate) fn cert_cn(der: &[u8], issuer: bool) -> String {
    let Ok((_, c)) = X509Certificate::from_der(der) else {
        return String::new();
    };
    let name = if issuer { c.issuer() } else { c.subject() };
    name.iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| name.to_string())
}

/// Verify a device's chain as sent in TLS (leaf first; the rest are untrusted helpers in any
/// order, extras ignored) against `anchors` at time `at`, with the device policy.
pub fn verify_device_chain(
    anchors: &TrustAnchors,
    chain: &[Vec<u8>],
    at: OffsetDateTime,
) -> Result<VerifiedChain, ChainError> {
    let Some(leaf) = chain.first() else {
        return Err(ChainError::malformed("no certificate".into()));
    };
    let parse = |d: &[u8]| {
        X509::from_der(d).map_err(|e| ChainError::malformed(format!("not DER X.509: {e}")))
    };
    let leaf = parse(leaf)?;
    let mut untrusted = Stack::new().map_err(|e| ChainError::malformed(e.to_string()))?;
    for d in &chain[1..] {
        let known = anchors.lock_parsed().get(d).cloned();
        let x = match known {
            Some(x) => x,
            None => parse(d)?,
        };
        untrusted
            .push(x)
            .map_err(|e| ChainError::malformed(e.to_string()))?;
    }
    let store = anchors
        .device_store(at.unix_timestamp())
        .map_err(|e| ChainError::malformed(e.to_string()))?;
    let built = run(&store, &leaf, &untrusted).map_err(|e| ChainError::malformed(e.to_string()))?;
    let built = built?;
    let mut parsed = anchors.lock_parsed();
    for (d, x) in chain[1..].iter().zip(untrusted.iter()) {
        if parsed.len() < PARSED_CACHE && !parsed.contains_key(d) && built.contains(d) {
            parsed.insert(d.clone(), x.to_owned());
        }
    }
    drop(parsed);
    let top = built.last().cloned().unwrap_or_default();
    let anchor = anchors.ders.iter().position(|a| *a == top).unwrap_or(0);
    Ok(VerifiedChain {
        chain: built,
        anchor,
    })
}

/// One verification: Ok(Ok(chain built, DER, leaf first)) or Ok(Err(why)).
fn run(
    store: &X509Store,
    leaf: &X509,
    untrusted: &Stack<X509>,
) -> Result<Result<Vec<Vec<u8>>, ChainError>> {
    let mut ctx = X509StoreContext::new()?;
    Ok(ctx.init(store, leaf, untrusted, |c| {
        if c.verify_cert()? {
            return Ok(Ok(built_chain(c)));
        }
        let e = c.error();
        let cert = c.current_cert().and_then(|x| x.to_der().ok());
        let (subject_cn, issuer_cn) = cert
            .as_deref()
            .map(|d| (cert_cn(d, false), cert_cn(d, true)))
            .unwrap_or_default();
        Ok(Err(ChainError {
            kind: ChainErrorKind::from_code(e.as_raw()),
            code: e.as_raw(),
            text: e.error_string().to_string(),
            depth: c.error_depth(),
            cert,
            subject_cn,
            issuer_cn,
        }))
    })?)
}

fn built_chain(c: &X509StoreContextRef) -> Vec<Vec<u8>> {
    c.chain()
        .map(|s| s.iter().filter_map(|x| x.to_der().ok()).collect())
        .unwrap_or_default()
}

/// Verify `leaf` (DER) against `roots` (trusted, DER), with `intermediates` as untrusted
/// helpers, in X509_STRICT mode, with validity windows checked as of `at` (the workspace's
/// clock). `partial` trusts a non-self-signed anchor (a verified intermediate on a hub). For
/// [`Purpose::SslClient`] this is the device policy of [`verify_device_chain`], so `lint`
/// judges a device as the hub does.
pub(crate) fn verify_chain(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
    purpose: Purpose,
    partial: bool,
    at: ::time::OffsetDateTime,
) -> Result<ChainCheck> {
    let leaf = X509::from_der(leaf)?;
    let roots: Vec<X509> = roots
        .iter()
        .map(|r| X509::from_der(r))
        .collect::<Result<_, _>>()?;
    let policy = Policy {
        purpose,
        partial,
        auth_level: (purpose == Purpose::SslClient).then_some(DEVICE_AUTH_LEVEL),
    };
    let store = build_store(&roots, &policy, Some(at.unix_timestamp()))?;
    let mut chain = Stack::new()?;
    for i in intermediates {
        chain.push(X509::from_der(i)?)?;
    }
    Ok(match run(&store, &leaf, &chain)? {
        Ok(_) => ChainCheck {
            ok: true,
            error: None,
            code: 0,
        },
        Err(e) => ChainCheck {
            ok: false,
            error: Some(e.text),
            code: e.code,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One store per second of verification time, whatever the number of handshakes in it.
    #[test]
    fn the_store_is_built_once_per_second() {
        let anchors = TrustAnchors::new(std::iter::empty::<Vec<u8>>()).unwrap();
        let a = anchors.device_store(1_906_502_400).unwrap();
        let b = anchors.device_store(1_906_502_400).unwrap();
        let c = anchors.device_store(1_906_502_401).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn an_empty_or_garbage_chain_is_malformed() {
        let anchors = TrustAnchors::new(std::iter::empty::<Vec<u8>>()).unwrap();
        let at = OffsetDateTime::UNIX_EPOCH;
        let e = verify_device_chain(&anchors, &[], at).unwrap_err();
        assert_eq!(e.kind, ChainErrorKind::Malformed);
        let e = verify_device_chain(&anchors, &[b"junk".to_vec()], at).unwrap_err();
        assert_eq!(e.kind, ChainErrorKind::Malformed);
    }
}
