//! chainsmith: a workbench for test PKI in IoT.
//!
//! The engine lives in modules that know nothing about terminals: [`pki`] makes and checks
//! certificates, [`store`] keeps them in a workspace on disk. The CLI ([`cli`]) is a thin
//! face over them; the TUI will be another.

pub mod azure;
pub mod cli;
pub mod export;
pub mod fixtures;
pub mod hub;
pub mod mqtt;
pub mod ops;
pub mod pki;
pub mod store;
pub mod text;
pub mod tui;
