//! Where the local AWS IoT Core answers, as `aws iot describe-endpoint` tells it for AWS: `aws
//! serve` records its addresses in `WS/aws/endpoint.json` when it starts, and `aws endpoint`
//! and the connection test (`connect --to aws-local`) read them. The record outlives the
//! server, as AWS's endpoint outlives a device's connection; before the first `aws serve` the
//! defaults (localhost, AWS's ports) are the answer.

use std::net::SocketAddr;
use std::path::PathBuf;

use chainsmith_pki::store::{self, Workspace};
use serde::{Deserialize, Serialize};

use super::tls::{aws_dir, trust_path};

/// AWS IoT Core's MQTT port.
pub const MQTT_PORT: u16 = 8883;
/// AWS IoT Core's port for MQTT with ALPN `x-amzn-mqtt-ca`.
pub const ALPN_PORT: u16 = 443;
/// The endpoint record is a few hundred bytes; anything larger was not written by `aws serve`.
pub const MAX_ENDPOINT_FILE_BYTES: u64 = 4096;

/// The local AWS IoT Core's endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The host name devices dial (the server certificate names it).
    pub endpoint_address: String,
    /// MQTT over TLS.
    pub port: u16,
    /// MQTT over TLS with ALPN `x-amzn-mqtt-ca`, when served.
    pub alpn_port: Option<u16>,
    /// The absolute path of the PEM devices trust (the local server's TLS CA).
    pub trust: PathBuf,
}

/// `WS/aws/endpoint.json`.
pub fn endpoint_path(ws: &Workspace) -> PathBuf {
    aws_dir(ws).join("endpoint.json")
}

impl Endpoint {
    /// What `aws serve` listens on, as a device should dial it.
    pub fn of_listeners(
        ws: &Workspace,
        host: &str,
        mqtt: SocketAddr,
        alpn: Option<SocketAddr>,
    ) -> Endpoint {
        Endpoint {
            endpoint_address: host.to_string(),
            port: mqtt.port(),
            alpn_port: alpn.map(|a| a.port()),
            trust: absolute(trust_path(ws)),
        }
    }

    /// The recorded endpoint, or the defaults when none was recorded (or the record does not
    /// read: it is rewritten by the next `aws serve`).
    pub fn load(ws: &Workspace) -> Endpoint {
        let path = endpoint_path(ws);
        let recorded = std::fs::metadata(&path)
            .ok()
            .filter(|m| m.len() <= MAX_ENDPOINT_FILE_BYTES)
            .and_then(|_| std::fs::read(&path).ok())
            .and_then(|b| serde_json::from_slice::<Endpoint>(&b).ok());
        recorded.unwrap_or_else(|| Endpoint {
            endpoint_address: "localhost".into(),
            port: MQTT_PORT,
            alpn_port: Some(ALPN_PORT),
            trust: absolute(trust_path(ws)),
        })
    }

    /// Record it (atomically) for `aws endpoint` and the connection test.
    pub fn save(&self, ws: &Workspace) -> Result<(), store::Error> {
        let text = serde_json::to_vec_pretty(self).expect("serialisable");
        store::write_atomic(&endpoint_path(ws), &text, 0o644)
    }

    /// `host:port`, as `describe-endpoint` prints the address.
    pub fn address(&self) -> String {
        format!("{}:{}", self.endpoint_address, self.port)
    }
}

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}
