//! The embedded local IoT Hub: registry ([`registry`]), TLS ([`tls`]), IoT Hub's X.509
//! authentication rules ([`auth`]), the MQTT server ([`server`]), the local Device
//! Provisioning Service ([`dps`]: its state and decisions, one file per transport beside them)
//! and the local control channel a running `hub serve` offers other processes ([`control`]).
//!
//! The CLI, the TUI and the connection test run the same [`Hub`]:
//! ```no_run
//! # async fn f() -> Result<(), chainsmith_azure::hub::HubError> {
//! use chainsmith_azure::hub::{Hub, HubConfig};
//! let hub = Hub::start(std::path::Path::new("/tmp/ws"), HubConfig { port: 0, ..Default::default() }).await?;
//! let mut events = hub.events();
//! println!("listening on {}", hub.addr);
//! hub.shutdown().await;
//! # Ok(()) }
//! ```

mod amqp;
pub mod auth;
pub mod control;
mod device_session;
pub mod dps;
pub mod events;
mod https;
mod mqtt;
mod mqtt_packets;
pub mod prove;
pub mod registry;
pub mod server;
mod shared;
pub mod system_trust;
pub mod tls;
mod websocket;

// The shared local-cloud machinery, under the names the hub's modules use.
pub use chainsmith_server::{budget, memory, state_file};

pub use auth::Refusal;
pub use prove::{dps_csr_signer, dps_group_from_ca, dps_prove, hub_prove};
pub use registry::{Auth, HubCa, HubDevice, HubStore, Registry, RegistryError, Twin};
pub use server::{Hub, HubConfig, HubError, HubEvent, HubHandle, HubStatus, RefusalRecord};
