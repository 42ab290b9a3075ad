//! chainsmith's PKI core: everything about certificates that needs no network, no async
//! runtime and no terminal.
//!
//! [`pki`] makes and checks certificates (keys, CSRs, inspection, lint, chain checks, PKCS#12),
//! [`store`] keeps them in a workspace on disk, [`ops`] runs the workflows over both (new,
//! renew, revoke, import, verification certificates), [`export`] writes the files SDKs want,
//! [`fixtures`] builds whole test PKIs from a spec, [`clock`] is the one notion of "now",
//! [`progress`] is how a long batch tells a face how far it has got,
//! [`text`] makes what came from a certificate, file or peer safe for a terminal and
//! [`error`] is what every engine error offers a face (a `kind()` and a [`error::Remedy`]).
//!
//! The local clouds sit above this crate: an operation that reaches one (a revocation the hub
//! must refuse, a renewed CA to upload) takes an [`ops::lifecycle::LocalCloud`], which each
//! cloud's crate implements. Every public item is documented (`missing_docs`).
//!
//! Engine errors speak domain words: they say what is wrong and what would fix it, never a
//! flag or a key; the CLI adds the flag (`--force`) and the TUI the field or key.

pub mod clock;
pub mod error;
pub mod export;
pub mod fixtures;
pub mod ops;
pub mod pki;
pub mod progress;
pub mod store;
pub mod text;
