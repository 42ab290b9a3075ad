//! `meta.toml`: the small record beside each entity's `cert.pem` and `key.pem`.

use crate::pki::{KeyAlg, Target};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What an entity is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A self-signed CA.
    Root,
    /// A CA under another CA.
    Intermediate,
    /// A device certificate (a leaf).
    Device,
    /// A proof-of-possession certificate for a hub's verification code.
    Verification,
}

impl Kind {
    /// The name `list`, `--json` and meta.toml use.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Root => "root",
            Kind::Intermediate => "intermediate",
            Kind::Device => "device",
            Kind::Verification => "verification",
        }
    }
    /// Whether it can issue (root or intermediate).
    pub fn is_ca(self) -> bool {
        matches!(self, Kind::Root | Kind::Intermediate)
    }
}

/// Primary or secondary thumbprint slot of a self-signed device (for rolling).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// The first thumbprint slot.
    Primary,
    /// The second thumbprint slot, for rolling.
    Secondary,
}

impl Slot {
    /// The subdirectory of a self-signed device that holds this slot when the entity itself
    /// holds the other.
    pub(crate) fn dir_name(self) -> &'static str {
        match self {
            Slot::Primary => "primary",
            Slot::Secondary => "secondary",
        }
    }

    /// The slot that is not this one.
    pub fn other(self) -> Slot {
        match self {
            Slot::Primary => Slot::Secondary,
            Slot::Secondary => Slot::Primary,
        }
    }
}

/// When and why a certificate was revoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// When it was revoked.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The RFC 5280 reason name, e.g. keyCompromise.
    pub reason: String,
}

/// What meta.toml records about an entity's current certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Format version of this file.
    pub format: u32,
    /// The entity name (the device id for devices).
    pub name: String,
    /// What the entity is.
    pub kind: Kind,
    /// The certificate's CN.
    pub cn: String,
    /// The certificate's whole subject, one line.
    pub subject: String,
    /// Entity name of the issuing CA; None for self-signed certificates and trust anchors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The key's algorithm, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_alg: Option<KeyAlg>,
    /// The serial number, upper-case hex.
    pub serial: String,
    /// Start of the validity window.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of the validity window.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// SHA-1 thumbprint, upper-case hex (what the hub stores for self-signed devices).
    pub sha1: String,
    /// SHA-256 thumbprint, upper-case hex.
    pub sha256: String,
    /// A CA's path length constraint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pathlen: Option<u32>,
    /// Whose identity rules the name was checked against (devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// False for trust-only CAs and signed CSRs (the key stays on the device).
    pub has_key: bool,
    /// The certificate is its own issuer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub self_signed: bool,
    /// The thumbprint slot the entity itself holds (self-signed devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<Slot>,
    /// For verification certificates: the hub's code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Set once the certificate is revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
    /// When chainsmith made or imported it.
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
    /// meta.toml's text.
    pub(crate) fn to_toml(&self) -> String {
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
