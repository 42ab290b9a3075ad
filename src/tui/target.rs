//! Where a connection test or a fleet goes, as the user typed it on the Connect tab.

/// Where the Connect tab's test goes, as the user chose it with `t` (the CLI's `--to`).
/// Not `pki::Target`, which is whose identity rules a certificate follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectTarget {
    /// The local hub of this workspace, started in-process for the test.
    LocalHub,
    /// An Azure IoT Hub, as typed (`HOST[:PORT]`).
    AzureHub(String),
    /// Any MQTT broker, as typed (`mqtts://HOST:PORT`).
    Broker(String),
}

impl ConnectTarget {
    /// What the user typed: `local`, an IoT Hub host (`HOST[:PORT]`) or `mqtts://HOST:PORT`;
    /// checked with the same parser as `connect --to`.
    pub fn parse(s: &str) -> Result<ConnectTarget, String> {
        let s = s.trim();
        if s.is_empty() || s == "local" {
            return Ok(ConnectTarget::LocalHub);
        }
        let e = crate::mqtt::Endpoint::parse(s).map_err(|e| e.to_string())?;
        Ok(match e.peer {
            crate::mqtt::PeerKind::Broker => ConnectTarget::Broker(s.to_string()),
            _ => ConnectTarget::AzureHub(s.to_string()),
        })
    }

    /// The `--to` value for the same target.
    pub fn to_arg(&self) -> String {
        match self {
            ConnectTarget::LocalHub => "local".into(),
            ConnectTarget::AzureHub(h) | ConnectTarget::Broker(h) => h.clone(),
        }
    }

    /// The target as the header shows it.
    pub fn label(&self) -> String {
        match self {
            ConnectTarget::LocalHub => "local hub (in-process)".into(),
            ConnectTarget::AzureHub(h) => format!("Azure IoT Hub {h}"),
            ConnectTarget::Broker(u) => format!("broker {u}"),
        }
    }
}
