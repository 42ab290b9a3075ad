//! `EntityName`: a name that may be joined under `entities/`.
//!
//! Every path to an entity is built from an `EntityName`, and the only way to get one is
//! [`EntityName::new`], which applies the rules names are created with. So a name typed on
//! the command line, read from a spec, a meta.toml's issuer or a hub registry cannot reach
//! outside the workspace (`../x`, `a/b`, `/abs`): there is no unchecked way to a path.

use crate::pki::identity::check_entity_name;
use std::fmt;

/// An entity name that has passed the name check.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityName(String);

impl EntityName {
    /// Check `name` against the creation rules (no separators, no leading dot, not empty, at
    /// most 128 bytes, no control characters).
    pub fn new(name: &str) -> crate::pki::Result<EntityName> {
        check_entity_name(name)?;
        Ok(EntityName(name.to_string()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for EntityName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_file_names() {
        for bad in [
            "", "..", ".", "../x", "a/b", "/etc", "a\\b", ".hidden", "a\nb", "x/..",
        ] {
            assert!(EntityName::new(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["root", "dev-001", "verify-i-75B8", "a..b", "x.y_z"] {
            assert_eq!(EntityName::new(good).unwrap().as_str(), good);
        }
    }
}
