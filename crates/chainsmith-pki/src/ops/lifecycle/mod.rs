//! Import, renew, self-signed slots, revoke, CRL and expiry: what happens to certificates
//! after they are made. The CLI's `import`, `renew`, `revoke`, `crl`, `list --expiring` and
//! `show --history` call these; so can the TUI.
//!
//! On disk, an entity keeps its past in its own directory:
//! ```text
//! entities/NAME/history/SERIAL/{cert.pem, meta.toml[, key.pem]}   every replaced certificate
//! entities/NAME/secondary/{cert.pem, key.pem, meta.toml}          the other thumbprint slot
//! ```
//! (`primary/` instead when the entity was made as the secondary slot first.)

mod cloud;
mod error;
mod expiry;
mod history;
mod import;
mod renew;
mod revoke;
mod slots;

pub use cloud::*;
pub use error::{
    CannotRenewError, Error, ExpiryWindowError, ImportInputError, PasswordNeeded, Result,
};
pub use expiry::*;
pub use history::*;
pub use import::*;
pub use renew::*;
pub use revoke::*;
pub use slots::*;

pub use super::NextStep;

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[test]
    fn windows_and_reasons() {
        assert_eq!(parse_window("30d").unwrap(), Duration::days(30));
        assert_eq!(parse_window("2w").unwrap(), Duration::days(14));
        assert_eq!(parse_window("12").unwrap(), Duration::days(12));
        assert!(parse_window("soon").is_err());
        assert!(parse_window("3x").unwrap_err().to_string().contains("unit"));
        assert_eq!(parse_reason("key-compromise").unwrap(), "keyCompromise");
        assert_eq!(parse_reason("Superseded").unwrap(), "superseded");
        assert!(
            parse_reason("bored")
                .unwrap_err()
                .to_string()
                .contains("keyCompromise")
        );
    }
}
