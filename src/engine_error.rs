//! [`EngineError`]: every engine crate's error enum, as the faces see it.
//!
//! The faces hold errors as `anyhow` chains (the CLI adds context on the way up); an engine
//! error sits somewhere in that chain. [`EngineError::find`] is the one place that recognises
//! one, and the faces `match` on what it returns, so a kind, a remedy or a field (a store's
//! `Raced` names, a missing issuer's name) is read from one enum, never from a ladder of
//! `downcast_ref` calls of a face's own. Every error enum the engine crates classify (each
//! `impl Classified for …`) is listed once below; the suite's `engine_errors` checks the list
//! against the crates' sources, so a new error enum cannot silently lose its `--json` kind.

use crate::error::{Classified, Remedy};

/// The list: a variant per engine error type. Adding a type here is all a face needs.
macro_rules! engine_errors {
    ($($(#[$doc:meta])* $variant:ident => $ty:ty,)*) => {
        /// An engine error found in an error chain, borrowed, by the crate and module it comes
        /// from. Outer errors delegate `kind()` and `remedy()` to the errors they wrap.
        #[derive(Clone, Copy, Debug)]
        pub enum EngineError<'a> {
            $($(#[$doc])* $variant(&'a $ty),)*
        }

        impl<'a> EngineError<'a> {
            /// The engine error this link of a chain is, if it is one.
            pub fn find(e: &'a (dyn std::error::Error + 'static)) -> Option<Self> {
                $(if let Some(x) = e.downcast_ref::<$ty>() {
                    return Some(EngineError::$variant(x));
                })*
                None
            }

            /// The error as the trait every engine error enum implements.
            pub fn classified(self) -> &'a dyn Classified {
                match self {
                    $(EngineError::$variant(x) => x,)*
                }
            }

            /// The Rust names of the listed types (`std::any::type_name`), for the check that
            /// every classified engine error is listed.
            pub fn type_names() -> Vec<&'static str> {
                vec![$(std::any::type_name::<$ty>(),)*]
            }
        }
    };
}

engine_errors! {
    /// Certificates: keys, profiles, CSRs, PKCS#12, subjects, ids.
    Pki => crate::pki::Error,
    /// The workspace on disk.
    Store => crate::store::Error,
    /// Writing files for SDKs.
    Export => crate::export::Error,
    /// Import, renew, revoke, CRL, expiry.
    Lifecycle => crate::ops::lifecycle::Error,
    /// Applying a fixture spec (its manifest).
    Fixtures => crate::fixtures::apply::Error,
    /// The local hub's registry and DPS state.
    Registry => crate::hub::RegistryError,
    /// Starting or running the local hub.
    Hub => crate::hub::HubError,
    /// Talking to a running hub over its control channel.
    Control => crate::hub::control::ControlError,
    /// The hub's refusal of a device's certificate.
    Refusal => crate::hub::Refusal,
    /// The system trust store check for a sample's hub CA.
    SystemTrust => crate::hub::system_trust::SystemTrustError,
    /// Getting a connection test ready against the local hub.
    Prepare => crate::mqtt::local::PrepareError,
    /// A device's identity for a connection test.
    Identity => crate::mqtt::identity::IdentityError,
    /// Fleet runs.
    Fleet => crate::fleet::FleetError,
}

impl<'a> EngineError<'a> {
    /// A short machine-friendly name for `--json` errors.
    pub fn kind(self) -> &'static str {
        self.classified().kind()
    }

    /// What would fix it, for a face to turn into its own hint.
    pub fn remedy(self) -> Option<Remedy> {
        self.classified().remedy()
    }

    /// The workspace error this is or wraps transparently (a lifecycle or export error is
    /// its store error's message, so the store error is no source of its in the chain).
    pub fn store(self) -> Option<&'a crate::store::Error> {
        match self {
            EngineError::Store(s)
            | EngineError::Lifecycle(crate::ops::lifecycle::Error::Store(s))
            | EngineError::Export(crate::export::Error::Store(s)) => Some(s),
            _ => None,
        }
    }

    /// The first engine error in an `anyhow` chain, outermost first.
    pub fn in_chain(e: &'a anyhow::Error) -> Option<Self> {
        e.chain().find_map(EngineError::find)
    }
}
