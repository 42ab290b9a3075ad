//! What chainsmith's integration suite (`tests/suite`) and its benches (`benches/`) share, so
//! that a bench sets up its workspace, hub, broker and processes the way the tests do and
//! neither keeps its own copy.
//!
//! - [`workspace`]: CA requests and workspaces with a root (and devices) made in-process;
//! - [`hub_util`]: a workspace + hub store fixture, the in-process hub, and a raw MQTT 3.1.1
//!   client over TLS;
//! - [`broker`]: a real Mosquitto broker with mutual TLS, free ports, waiting for a listener;
//! - [`process`]: child processes that are killed with the test, a command that must succeed;
//! - [`figures`]: the benches' knobs and figures (environment numbers, percentiles, RSS);
//! - [`load`]: the broker benches' phases (handshakes, QoS 1 throughput, PUBACK latency) and
//!   their table beside Mosquitto's;
//! - [`der_edit`]: a tiny DER tree to alter one INTEGER of a real PKCS#12 file.
//!
//! Set-up failures panic with what failed: this crate is for tests and benches only.

pub mod broker;
pub mod der_edit;
pub mod figures;
pub mod hub_util;
pub mod load;
pub mod process;
pub mod workspace;
