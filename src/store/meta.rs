//! `meta.toml`: the small record beside each entity's `cert.pem` and `key.pem`.

use crate::pki::{KeyAlg, Target};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Root,
    Intermediate,
    Device,
    Verification,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Root => "root",
            Kind::Intermediate => "intermediate",
            Kind::Device => "device",
            Kind::Verification => "verification",
        }
    }
    pub fn is_ca(self) -> bool {
        matches!(self, Kind::Root | Kind::Intermediate)
    }
}

/// Primary or secondary thumbprint slot of a self-signed device (for rolling).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    Primary,
    Secondary,
}

impl Slot {
    /// The subdirectory of a self-signed device that holds this slot when the entity itself
    /// holds the other.
    pub fn dir_name(self) -> &'static str {
        match self {
            Slot::Primary => "primary",
            Slot::Secondary => "secondary",
        }
    }

    pub fn other(self) -> Slot {
        match self {
            Slot::Primary => Slot::Secondary,
            Slot::Secondary => Slot::Primary,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Format version of this file.
    pub format: u32,
    pub name: String,
    pub kind: Kind,
    pub cn: String,
    pub subject: String,
    /// Entity name of the issuing CA; None for self-signed certificates and trust anchors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_alg: Option<KeyAlg>,
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub sha1: String,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pathlen: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// False for trust-only CAs and signed CSRs (the key stays on the device).
    pub has_key: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub self_signed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<Slot>,
    /// For verification certificates: the hub's code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Set by `chainsmith apply`: a hash of the spec entry that made this entity, so a second
    /// apply compares instead of re-issuing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash: Option<String>,
    /// Set by `chainsmith apply` on negative fixtures: the failure this certificate is made
    /// to provoke (`expired`, `weak_key`, ...). Such certificates are broken on purpose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixture: Option<String>,
}

impl Meta {
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("meta serialises")
    }

    /// Days left until notAfter (negative once expired).
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_seconds().div_euclid(86_400)
    }

    /// "valid", "expired", "not yet valid" or "revoked".
    pub fn status(&self, now: OffsetDateTime) -> &'static str {
        if self.revoked.is_some() {
            "revoked"
        } else if now > self.not_after {
            "expired"
        } else if now < self.not_before {
            "not yet valid"
        } else {
            "valid"
        }
    }
}
