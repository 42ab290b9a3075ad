//! chainsmith: a workbench for test PKI in IoT.
//!
//! The engine lives in modules that know nothing about terminals: [`pki`] makes and checks
//! certificates, [`store`] keeps them in a workspace on disk, [`ops`] runs the workflows over
//! both, [`export`] writes the files SDKs want, [`fixtures`] builds whole test PKIs, [`hub`] is
//! the embedded IoT Hub (and DPS), [`mqtt`] the connection test, [`fleet`] many devices at
//! once, [`azure`] every Azure string, [`clock`] the one notion of "now" and [`error`] what
//! every engine error offers a face (a `kind()` and a [`error::Remedy`]). Two faces sit on top:
//! the CLI ([`cli`]) and the TUI ([`tui`]); neither holds domain logic. Every public item is
//! documented (`missing_docs` in Cargo.toml's `[lints]`, an error under CI's clippy).
//!
//! Engine errors speak domain words: they say what is wrong and what would fix it, never a
//! flag or a key; the CLI adds the flag (`--force`) and the TUI the field or key.
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
