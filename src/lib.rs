//! chainsmith: a workbench for test PKI in IoT.
//!
//! The engine lives in modules that know nothing about terminals: [`pki`] makes and checks
//! certificates, [`store`] keeps them in a workspace on disk, [`ops`] runs the workflows over
//! both, [`export`] writes the files SDKs want, [`fixtures`] builds whole test PKIs, [`hub`] is
//! the embedded IoT Hub, [`mqtt`] the connection test, [`azure`] every Azure string and
//! [`clock`] the one notion of "now". Two faces sit on top: the CLI ([`cli`]) and the TUI
//! ([`tui`]); neither holds domain logic.
//!
//! Rule of thumb: if two faces would write the same sequence of engine calls, that sequence is
//! an engine function, and both faces call it.

pub mod azure;
pub mod cli;
pub mod clock;
pub mod error;
pub mod export;
pub mod fixtures;
pub mod fleet;
pub mod hub;
pub mod mqtt;
pub mod ops;
pub mod pki;
pub mod store;
pub mod text;
pub mod tui;
