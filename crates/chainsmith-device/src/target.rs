//! Target resolution: from what a face was told (`local`, `HOST[:PORT]`, `mqtts://…`, named
//! trust anchors) to where a device dials, which conventions it follows, which server
//! certificates it accepts, which round trips come back and what it can see inside the hub.
//! One function for the connection test and the fleet, in the CLI and the TUI alike.

use crate::hub::{Hub, HubConfig, HubHandle, HubStore};
use crate::mqtt::local::{HubSource, HubWatch, PrepareError};
use crate::mqtt::{ConnectionTest, Endpoint, Flavor, HubView, Identity, PeerKind, Transport};
use std::sync::Arc;

/// Where the device goes.
pub enum Destination<'a> {
    /// The workspace's local hub, from where the face keeps it.
    Local(HubSource<'a>),
    /// Another hub or broker, as the user wrote it (`HOST[:PORT]`, `mqtts://HOST[:PORT]`,
    /// `wss://HOST:PORT/PATH`).
    Remote(&'a str),
    /// The workspace's running local AWS IoT Core (`aws serve`), where `WS/aws/endpoint.json`
    /// says it answers.
    AwsLocal,
    /// A real AWS IoT Core endpoint, `PREFIX-ats.iot.REGION.amazonaws.com[:PORT]` (8883).
    Aws(&'a str),
}

/// How closely the test watches a running `hub serve`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HubWatching {
    /// Every telemetry message the hub records, and why it refused a device (the connection
    /// test checks each of its messages arrived).
    RecordsAndRefusals,
    /// Refusals only: a fleet's thousands of messages are not streamed back over the control
    /// socket and kept in memory for an hour.
    RefusalsOnly,
}

/// What a face was told about the target.
pub struct TargetSpec<'a> {
    /// Where to go.
    pub to: Destination<'a>,
    /// MQTT or AMQP, over TLS or WebSockets: picks the port and, for the local hub, its listener.
    pub transport: Transport,
    /// The conventions to follow; by default Azure's for a hub, the generic ones for a broker.
    pub flavor: Option<Flavor>,
    /// Trust anchors the user named (DER), e.g. with `--ca`; see [`Trust`] for what they change.
    pub anchors: Vec<Vec<u8>>,
    /// What to watch inside a running local hub.
    pub watching: HubWatching,
}

/// Which server certificates the device accepts.
///
/// The one rule (the four copies this replaces disagreed on remote targets: the CLI trusted
/// the system store alone, the TUI the system store and every workspace root):
/// - **the local hub**: its own server CA (`hub/tls/ca.pem`) and any named anchor, never the
///   system store: the hub's certificate is issued by that CA, and a public root vouching for
///   127.0.0.1 would be a mistake worth seeing.
/// - **another hub or broker, no anchors named**: the system store and the workspace's root
///   CAs. A test broker's certificate is most often issued from the workspace (the TUI has no
///   way to name an anchor, and the CLI should not need one for a CA it already holds).
/// - **anchors named**: they replace the defaults, as curl's `--cacert` does: the user said
///   whom the server is vouched for by, and a test that passes must pass for a device given
///   just those. An Azure hub keeps the system store besides: its certificate always chains
///   to a public root (DigiCert Global Root G2), whatever else is named.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// Trust anchors (DER).
    pub anchors: Vec<Vec<u8>>,
    /// Also the system trust store.
    pub system_roots: bool,
}

/// A resolved target: everything a device client needs besides its own identity.
pub struct Target {
    /// Where to dial.
    pub endpoint: Endpoint,
    /// Which conventions to follow (the cloud).
    pub flavor: Flavor,
    /// Which server certificates to accept.
    pub trust: Trust,
    /// How to reach it.
    pub transport: Transport,
    /// The WebSocket path of a `wss://HOST:PORT/PATH` broker.
    pub websocket_path: Option<String>,
    /// The local hub echoes every telemetry message back as a C2D message.
    pub echo: bool,
    /// The local hub, when the client can see inside it.
    pub hub: Option<Arc<dyn HubView>>,
    /// The local hub's files (its registry, for pre-flight findings) and the workspace's
    /// clock the findings are judged by; None for a remote target.
    pub registry: Option<(HubStore, crate::clock::Clock)>,
    /// The hub started in-process for this target, if one was: shut it down afterwards.
    pub started: Option<HubHandle>,
}

/// Resolve what a face was told into a [`Target`]. The local hub needs the workspace; a remote
/// target uses it (when there is one) for its root CAs. A hub started here runs on the
/// workspace's clock.
pub async fn resolve(
    ws: Option<&crate::store::Workspace>,
    spec: TargetSpec<'_>,
) -> Result<Target, PrepareError> {
    let TargetSpec {
        to,
        transport,
        flavor,
        anchors,
        watching,
    } = spec;
    match to {
        Destination::Remote(to) => {
            let endpoint = Endpoint::parse_for(to, transport).map_err(PrepareError::Target)?;
            let broker = endpoint.peer == PeerKind::Broker;
            let trust = if anchors.is_empty() {
                Trust {
                    anchors: ws.map(workspace_roots).unwrap_or_default(),
                    system_roots: true,
                }
            } else {
                Trust {
                    anchors,
                    system_roots: !broker,
                }
            };
            Ok(Target {
                flavor: flavor.unwrap_or(if broker {
                    Flavor::Generic
                } else {
                    Flavor::Azure
                }),
                endpoint,
                trust,
                transport,
                websocket_path: Endpoint::websocket_path(to),
                echo: false,
                hub: None,
                registry: None,
                started: None,
            })
        }
        Destination::AwsLocal => {
            let ws = ws.ok_or(PrepareError::NoWorkspace)?;
            let mut target = aws_local(ws, transport, watching).await?;
            target.flavor = flavor.unwrap_or(Flavor::Aws);
            target.trust.anchors.extend(anchors);
            Ok(target)
        }
        Destination::Aws(to) => {
            if transport != Transport::Mqtt {
                return Err(PrepareError::AwsTransport(transport.as_str()));
            }
            let mut endpoint = Endpoint::parse_for(to, transport).map_err(PrepareError::Target)?;
            endpoint.peer = PeerKind::AwsIot;
            let system_roots = anchors.is_empty();
            Ok(Target {
                endpoint,
                flavor: flavor.unwrap_or(Flavor::Aws),
                trust: Trust {
                    anchors,
                    system_roots,
                },
                transport,
                websocket_path: None,
                echo: false,
                hub: None,
                registry: None,
                started: None,
            })
        }
        Destination::Local(source) => {
            let ws = ws.ok_or(PrepareError::NoWorkspace)?;
            let mut target = local(ws, source, transport, watching).await?;
            target.flavor = flavor.unwrap_or(Flavor::Azure);
            target.trust.anchors.extend(anchors);
            Ok(target)
        }
    }
}

/// The root CAs of the workspace (DER); an entity that cannot be read is not trusted.
fn workspace_roots(ws: &crate::store::Workspace) -> Vec<Vec<u8>> {
    let Ok((metas, _)) = ws.list() else {
        return vec![];
    };
    metas
        .iter()
        .filter(|m| m.kind == crate::store::Kind::Root)
        .filter_map(|m| ws.load(&m.name).ok())
        .map(|e| e.cert_der)
        .collect()
}

/// The local hub: where it listens for the transport, its trust anchor, its echo and a watch.
async fn local(
    ws: &crate::store::Workspace,
    source: HubSource<'_>,
    transport: Transport,
    watching: HubWatching,
) -> Result<Target, PrepareError> {
    let store = HubStore::open(ws.root())?;
    use Transport as T;
    // The port of the transport's listener: MQTT, AMQP, or the WebSocket one.
    let of_handle = |h: &HubHandle| match transport {
        T::Mqtt => Some(h.addr),
        T::Amqp => h.amqp_addr,
        T::MqttWs | T::AmqpWs => h.websocket_addr,
    };
    let off = || {
        PrepareError::TransportOff(if transport.websocket() {
            "WebSockets"
        } else {
            "AMQP"
        })
    };
    let (addr, hub, started, echo): (std::net::SocketAddr, Arc<dyn HubView>, _, bool) = match source
    {
        HubSource::InProcess(h) => (
            of_handle(h).ok_or_else(off)?,
            HubWatch::in_process(h),
            None,
            true,
        ),
        HubSource::RunningOrStart => match running(&store, watching).await {
            Some((hub, status)) => {
                // Dial where the hub says it listens (loopback when it is bound to every
                // interface); a hub too old to answer `status` is assumed on 8883, without echo.
                let (ip, port, echo) = match &status {
                    Some(s) => (loopback_for(s.addr.ip()), Some(s.port), s.echo),
                    None => ([127, 0, 0, 1].into(), Some(crate::azure::MQTT_PORT), false),
                };
                let port = match transport {
                    T::Mqtt => port,
                    T::Amqp => status.as_ref().and_then(|s| s.amqp_port),
                    T::MqttWs | T::AmqpWs => status.as_ref().and_then(|s| s.websocket_port),
                };
                ((ip, port.ok_or_else(off)?).into(), hub, None, echo)
            }
            None => {
                let config = HubConfig {
                    csr_signer: Some(crate::hub::dps_csr_signer()),
                    port: 0,
                    echo: true,
                    amqp_port: transport.amqp().then_some(0),
                    websocket_port: transport.websocket().then_some(0),
                    clock: ws.clock().running(),
                    ..HubConfig::default()
                };
                let started = Hub::start(ws.root(), config)
                    .await
                    .map_err(PrepareError::Start)?;
                let addr = of_handle(&started).ok_or_else(off)?;
                (addr, HubWatch::in_process(&started), Some(started), true)
            }
        },
    };
    let anchors = read_pem_anchors(&store.trust_path())?;
    Ok(Target {
        endpoint: Endpoint {
            host: addr.ip().to_string(),
            port: addr.port(),
            peer: PeerKind::LocalHub,
        },
        flavor: Flavor::Azure,
        trust: Trust {
            anchors,
            system_roots: false,
        },
        transport,
        websocket_path: None,
        echo,
        hub: Some(hub),
        registry: Some((store, ws.clock())),
        started,
    })
}

/// The workspace's running `aws serve`: where its endpoint record says it answers, its TLS CA,
/// and a watch on its control socket for why it closes a connection.
async fn aws_local(
    ws: &crate::store::Workspace,
    transport: Transport,
    watching: HubWatching,
) -> Result<Target, PrepareError> {
    use chainsmith_aws::broker::{control, endpoint};
    if transport != Transport::Mqtt {
        return Err(PrepareError::AwsTransport(transport.as_str()));
    }
    let control = control::socket_path(ws);
    let published = watching == HubWatching::RecordsAndRefusals;
    let watch = crate::mqtt::aws::AwsWatch::running(&control, None, published)
        .await
        .ok_or_else(|| PrepareError::AwsNotRunning(control.clone()))?;
    let at = endpoint::Endpoint::load(ws);
    let anchors = read_pem_anchors(&at.trust)?;
    Ok(Target {
        endpoint: Endpoint {
            host: at.endpoint_address.clone(),
            port: at.port,
            peer: PeerKind::AwsLocal,
        },
        flavor: Flavor::Aws,
        trust: Trust {
            anchors,
            system_roots: false,
        },
        transport,
        websocket_path: None,
        echo: false,
        hub: Some(watch),
        registry: None,
        started: None,
    })
}

/// The certificates (DER) of a trust PEM file.
fn read_pem_anchors(path: &std::path::Path) -> Result<Vec<Vec<u8>>, PrepareError> {
    let text = std::fs::metadata(path)
        .map_err(|e| e.to_string())
        .and_then(|m| {
            if m.len() > MAX_TRUST_FILE_BYTES {
                Err(format!(
                    "{} bytes; a trust file is at most {MAX_TRUST_FILE_BYTES}",
                    m.len()
                ))
            } else {
                std::fs::read_to_string(path).map_err(|e| e.to_string())
            }
        });
    Ok(text
        .and_then(|t| pem::parse_many(t.as_bytes()).map_err(|e| e.to_string()))
        .map_err(|detail| PrepareError::Trust {
            path: path.to_path_buf(),
            detail,
        })?
        .into_iter()
        .map(|b| b.into_contents())
        .collect())
}

/// A trust PEM holds a few CA certificates of a few KB each; the local servers write one.
pub const MAX_TRUST_FILE_BYTES: u64 = 1 << 20;

/// A running `hub serve` (its control socket answers) watched as asked, with its status;
/// None when no hub runs.
async fn running(
    store: &HubStore,
    watching: HubWatching,
) -> Option<(Arc<dyn HubView>, Option<crate::hub::HubStatus>)> {
    let control = store.control_path();
    match watching {
        HubWatching::RecordsAndRefusals => {
            let (watch, status) = HubWatch::running(&control).await?;
            Some((watch, status))
        }
        HubWatching::RefusalsOnly => {
            // Probe first: a stale socket file of a stopped hub does not count.
            tokio::net::UnixStream::connect(&control).await.ok()?;
            let status = match crate::hub::control::status(&control).await {
                Ok(s) => Some(s),
                Err(crate::hub::control::ControlError::Hub(_)) => None,
                Err(_) => return None,
            };
            let view = crate::fleet::run::ControlRefusals {
                since: status.as_ref().map_or(0, |s| s.last_refusal),
                control,
            };
            Some((Arc::new(view), status))
        }
    }
}

/// The address to dial for a hub bound to `ip`: the loopback of the same family when it is
/// bound to every interface (`0.0.0.0`, `::`).
fn loopback_for(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        other => other,
    }
}

impl Target {
    /// The connection test of `identity` against this target, with the defaults of
    /// [`ConnectionTest::new`]: C2D round trips when the hub echoes (Azure flavor), and the
    /// local hub's pre-flight findings from its registry.
    pub fn connection_test(&self, identity: Identity) -> Result<ConnectionTest, PrepareError> {
        let preflight = self.preflight(&identity)?;
        let mut test = ConnectionTest::new(identity, self.endpoint.clone(), self.flavor);
        test.preflight_extra = preflight;
        test.extra_ca = self.trust.anchors.clone();
        test.system_roots = self.trust.system_roots;
        test.c2d_echo = self
            .flavor
            .dialect()
            .round_trips(false, self.echo)
            .contains(&crate::mqtt::RoundTripKind::C2d);
        test.hub = self.hub.clone();
        test.transport = self.transport;
        test.websocket_path = self.websocket_path.clone();
        Ok(test)
    }

    /// The local hub's pre-flight findings for `identity` from its registry as it is now
    /// (none for a remote target), judged by the workspace's clock.
    pub fn preflight(
        &self,
        identity: &Identity,
    ) -> Result<Vec<crate::pki::lint::Finding>, PrepareError> {
        Ok(match &self.registry {
            Some((store, clock)) => {
                crate::mqtt::local::hub_preflight(identity, &store.load()?, clock.now())
            }
            None => vec![],
        })
    }

    /// How a fleet times round trips here: C2D from an echoing local hub, its own telemetry
    /// from a broker or AWS IoT Core, none from an Azure hub (it echoes nothing).
    pub fn fleet_round_trip(&self) -> crate::fleet::RoundTrip {
        use crate::fleet::RoundTrip;
        if self.echo {
            RoundTrip::C2d
        } else if self.endpoint.peer == PeerKind::Broker || self.endpoint.peer.is_aws() {
            RoundTrip::Echo
        } else {
            RoundTrip::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `hub serve` too old to answer `status`: `connect` dialled it on 8883 while `fleet
    /// run` started a second hub in-process beside it on the same workspace. Now both dial it.
    #[tokio::test]
    async fn a_hub_too_old_for_status_is_dialled_by_connect_and_fleet_alike() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = crate::store::Workspace::init(&tmp.path().join("ws")).unwrap();
        // The hub's files (its server CA), then a control socket that answers as an old hub.
        let config = HubConfig {
            port: 0,
            ..HubConfig::default()
        };
        Hub::start(ws.root(), config)
            .await
            .unwrap()
            .shutdown()
            .await;
        let control = HubStore::open(ws.root()).unwrap().control_path();
        let _ = std::fs::remove_file(&control);
        crate::mqtt::local::tests::old_hub_control(&control);
        for watching in [HubWatching::RecordsAndRefusals, HubWatching::RefusalsOnly] {
            let spec = TargetSpec {
                to: Destination::Local(HubSource::RunningOrStart),
                transport: Transport::Mqtt,
                flavor: None,
                anchors: vec![],
                watching,
            };
            let t = resolve(Some(&ws), spec).await.unwrap();
            assert!(t.started.is_none(), "{watching:?} started a second hub");
            assert_eq!(t.endpoint.display(), "127.0.0.1:8883", "{watching:?}");
            assert!(!t.echo, "{watching:?}");
        }
    }
}
