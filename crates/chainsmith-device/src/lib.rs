//! The device side of chainsmith: what a device does against a hub, local or real.
//!
//! [`mqtt`] is the connection test (dial, TLS, MQTT or AMQP, over TCP or WebSockets) with its
//! diagnosis of every failure; [`dps_client`] speaks DPS and [`provision`] provisions a device
//! through it; [`fleet`] runs many devices at once; [`target`] resolves where a device goes
//! and what it trusts there, for all of them. The faces drive these with progress callbacks; nothing here draws.

mod dial;
pub mod dialect;
pub mod dps_client;
pub mod fleet;
pub mod mqtt;
pub mod provision;
pub mod target;

// The engine crates under their domain names, as this crate's modules name them.
pub(crate) use chainsmith_azure::{self as azure, hub};
pub(crate) use chainsmith_pki::{clock, error, pki, store, text};
