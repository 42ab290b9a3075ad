//! The local AWS IoT Core's TLS: its own CA in `WS/aws/tls/` (made on first use; its
//! certificate is the PEM devices trust, what `aws endpoint` prints, in the place of Amazon
//! Root CA 1), and a server certificate issued from it at every start, as the local IoT Hub
//! does (`chainsmith_server::local_tls`). On the ALPN port only clients offering
//! [`AWS_ALPN`] complete the handshake.

use std::path::PathBuf;

use chainsmith_pki::store::Workspace;
use chainsmith_server::local_tls::LocalTls;

/// The ALPN protocol AWS IoT Core serves MQTT with X.509 on port 443 ("Protocols, port
/// mappings, and authentication" in the AWS IoT developer guide:
/// <https://docs.aws.amazon.com/iot/latest/developerguide/protocols.html>).
pub const AWS_ALPN: &[u8] = b"x-amzn-mqtt-ca";

const CA_CN: &str = "chainsmith local AWS IoT Core TLS CA";

/// The CN of chainsmith's own AWS-like issuer.
const ISSUER_CN: &str = "chainsmith local AWS IoT issuer";

/// `WS/aws/`: everything of the local AWS IoT Core.
pub fn aws_dir(ws: &Workspace) -> PathBuf {
    ws.root().join("aws")
}

/// The local AWS IoT Core's TLS CA and server certificates.
pub fn local_tls(ws: &Workspace) -> LocalTls {
    LocalTls {
        dir: aws_dir(ws).join("tls"),
        ca_cn: CA_CN,
    }
}

/// The PEM devices trust to reach the local AWS IoT Core.
pub fn trust_path(ws: &Workspace) -> PathBuf {
    local_tls(ws).trust_path()
}

/// chainsmith's own AWS-like issuer in `WS/aws/issuer/`: the CA fleet provisioning signs
/// with when `aws serve` names no workspace CA, in the place of the Amazon CA that signs
/// AWS-issued certificates ("Device provisioning MQTT API": "AWS IoT provides client
/// certificates that are signed by the Amazon Root certificate authority"). Made on first
/// need, kept across restarts; the certificates it issues are registered by the service, so
/// the broker admits them without a registered CA, as AWS admits its own.
pub fn own_issuer(ws: &Workspace) -> LocalTls {
    LocalTls {
        dir: aws_dir(ws).join("issuer"),
        ca_cn: ISSUER_CN,
    }
}
