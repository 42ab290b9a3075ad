//! Workspaces, CAs and certificates made in-process through the engine (`ops`, `pki`), as the
//! suite and the benches both set them up.

use std::path::Path;

use chainsmith_pki::ops::{self, CaRequest, DeviceRequest, ValidityArg};
use chainsmith_pki::pki::issue::{self, IssueSpec};
use chainsmith_pki::pki::{KeyAlg, Profile, Validity, subject};
use chainsmith_pki::store::Workspace;

/// An EC P-256 CA request with default validity: a root when `issuer` is None, its CN the name
/// when `cn` is None.
pub fn ca_req(name: &str, cn: Option<&str>, issuer: Option<&str>) -> CaRequest {
    CaRequest {
        name: name.into(),
        cn: cn.map(str::to_string),
        subject: None,
        key: KeyAlg::EcP256,
        validity: ValidityArg::default(),
        pathlen: None,
        issuer: issuer.map(str::to_string),
        force: false,
    }
}

/// Make the CA `name` (under `issuer`, or a root) in `ws` with every default.
pub fn new_ca(ws: &Workspace, name: &str, issuer: Option<&str>) {
    ops::new_ca(ws, &ca_req(name, None, issuer)).expect("new CA");
}

/// Make the devices `ids` (a name or a range pattern such as `d-{001..100}`) under `issuer`,
/// EC P-256, replacing any of the same name.
pub fn new_devices(ws: &Workspace, ids: &str, issuer: &str) {
    ops::new_devices(
        ws,
        &DeviceRequest {
            ids: vec![ids.to_string()],
            issuer: Some(issuer.to_string()),
            key: Some(KeyAlg::EcP256),
            force: true,
            ..Default::default()
        },
    )
    .expect("new devices");
}

/// A new workspace at `dir` holding the root CA `root`.
pub fn with_root(dir: &Path, root: &str) -> Workspace {
    let ws = Workspace::open_or_create(dir).expect("workspace");
    new_ca(&ws, root, None);
    ws
}

/// A self-signed EC P-256 device certificate for `CN=cn`, valid 30 days, outside any workspace
/// (what a PKCS#12 test wraps): (DER, PEM, its key).
pub fn self_signed_device(
    cn: &str,
) -> (Vec<u8>, String, openssl::pkey::PKey<openssl::pkey::Private>) {
    let spec = IssueSpec {
        subject: subject::cn_only(cn).expect("cn"),
        profile: Profile::Device {
            eku: Default::default(),
            sans: vec![],
        },
        validity: Validity::days(30),
    };
    let issued = issue::issue(&spec, KeyAlg::EcP256, None).expect("issue");
    let key_pem = issued.key_pem.expect("a new key");
    let key = openssl::pkey::PKey::private_key_from_pem(key_pem.as_bytes()).expect("key");
    (issued.cert_der, issued.cert_pem, key)
}
