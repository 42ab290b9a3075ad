//! chainsmith: a workbench for test PKI in IoT, and its two faces.
//!
//! The engine is in library crates whose names say the domain: `chainsmith-pki` (certificates,
//! the workspace, export, fixtures), `chainsmith-azure` (Azure's vocabulary and the local IoT
//! Hub + DPS) and `chainsmith-device` (the connection test, DPS provisioning, the fleet). This
//! crate is the faces on top: the CLI ([`cli`]) and the TUI ([`tui`]); neither holds domain
//! logic. The engine modules are re-exported under their old names, so `chainsmith::pki` and
//! `chainsmith::hub` are what they always were.
//!
//! Rule of thumb: if two faces would write the same sequence of engine calls, that sequence is
//! an engine function, and both faces call it.

pub use chainsmith_aws as aws;
pub use chainsmith_azure::{self as azure, hub};
pub use chainsmith_device::{dps_client, fleet, mqtt, provision, target};
pub use chainsmith_pki::{clock, error, export, fixtures, ops, pki, progress, store, text};

pub mod cli;
mod engine_error;
pub mod tui;

pub use engine_error::EngineError;
