//! What an export starts from and builds up, shared by the plan of every format and layout:
//! the entity with its chain and key ([`Source`]) and the files planned so far ([`Files`]).

use super::{Error, ExportOptions, ExportReport, PfxProfile, Result, pfx};
use crate::store::{self, Entity, Slot, Workspace, chain_of};
use openssl::pkey::{PKey, Private};
use openssl::symm::Cipher;
use std::path::PathBuf;

pub(super) struct Planned {
    pub(super) path: PathBuf,
    pub(super) bytes: Vec<u8>,
    pub(super) mode: u32,
    pub(super) what: String,
}

/// Everything an export needs from the workspace, loaded once.
pub(super) struct Source {
    pub(super) leaf: Entity,
    /// Issuers, nearest first, including the root when the chain reaches one.
    pub(super) issuers: Vec<Entity>,
    pub(super) key: Option<PKey<Private>>,
}

impl Source {
    pub(super) fn load(ws: &Workspace, name: &str, slot: Option<Slot>) -> Result<Source> {
        let mut chain = chain_of(ws, name)?;
        let mut leaf = chain.remove(0);
        if let Some(slot) = slot.filter(|s| leaf.meta.slot.unwrap_or(Slot::Primary) != *s) {
            leaf = slot_entity(&leaf, slot)?;
        }
        let key = if leaf.meta.has_key {
            let pem = leaf.read_key_pem()?;
            Some(
                PKey::private_key_from_pem(pem.as_bytes()).map_err(|source| {
                    Error::UnreadableKey {
                        name: name.to_string(),
                        path: leaf.key_path(),
                        source,
                    }
                })?,
            )
        } else {
            None
        };
        Ok(Source {
            leaf,
            issuers: chain,
            key,
        })
    }

    pub(super) fn name(&self) -> &str {
        &self.leaf.meta.name
    }

    /// The root at the top of the chain, if the chain reaches a self-signed CA.
    pub(super) fn root(&self) -> Option<&Entity> {
        match self.issuers.last() {
            Some(top) if top.meta.self_signed => Some(top),
            Some(_) => None,
            None if self.leaf.meta.kind.is_ca() && self.leaf.meta.self_signed => Some(&self.leaf),
            None => None,
        }
    }

    /// Issuers below the root: what a device sends after its leaf.
    pub(super) fn intermediates(&self) -> Vec<&Entity> {
        let root_name = self.root().map(|r| r.meta.name.clone());
        self.issuers
            .iter()
            .filter(|e| Some(&e.meta.name) != root_name.as_ref())
            .collect()
    }

    pub(super) fn chain_pem(&self) -> String {
        let mut s = self.leaf.cert_pem.clone();
        for e in self.intermediates() {
            s.push_str(&e.cert_pem);
        }
        s
    }

    pub(super) fn fullchain_pem(&self) -> String {
        let mut s = self.leaf.cert_pem.clone();
        for e in &self.issuers {
            s.push_str(&e.cert_pem);
        }
        s
    }

    pub(super) fn need_key(&self, what: &str) -> Result<&PKey<Private>> {
        self.key.as_ref().ok_or_else(|| Error::NoKey {
            name: self.name().to_string(),
            what: what.to_string(),
        })
    }

    pub(super) fn key_pem(&self, key_password: Option<&str>) -> Result<Vec<u8>> {
        let key = self.need_key("a key file")?;
        Ok(match key_password {
            Some(pw) => {
                key.private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), pw.as_bytes())?
            }
            None => key.private_key_to_pem_pkcs8()?,
        })
    }

    pub(super) fn key_der(&self, key_password: Option<&str>) -> Result<Vec<u8>> {
        let key = self.need_key("a key file")?;
        Ok(match key_password {
            Some(pw) => {
                key.private_key_to_pkcs8_passphrase(Cipher::aes_256_cbc(), pw.as_bytes())?
            }
            None => key.private_key_to_pkcs8()?,
        })
    }

    pub(super) fn pfx(
        &self,
        profile: PfxProfile,
        password: &str,
        include_chain: bool,
    ) -> Result<Vec<u8>> {
        let key = self.need_key("a PFX")?;
        let chain: Vec<Vec<u8>> = if include_chain {
            self.issuers.iter().map(|e| e.cert_der.clone()).collect()
        } else {
            vec![]
        };
        pfx::build(
            profile,
            password,
            self.name(),
            &self.leaf.cert_der,
            key,
            &chain,
        )
    }
}

pub(super) fn key_what(key_password: Option<&str>) -> String {
    if key_password.is_some() {
        "private key (encrypted PKCS#8, AES-256-CBC)".into()
    } else {
        "private key (PKCS#8)".into()
    }
}

/// The files of one export, each path once (formats share some: pem and edge both write the
/// chain and key).
/// One export being planned: what is exported and how, the notes for the user, and the files
/// so far; each format adds its files (`plan.rs`: [`Plan::pem`], [`Plan::der`], [`Plan::pfx`]; `layouts.rs`:
/// [`Plan::azure`], [`Plan::edge`]).
pub(super) struct Plan<'a> {
    pub(super) src: &'a Source,
    pub(super) opts: &'a ExportOptions,
    pub(super) report: &'a mut ExportReport,
    pub(super) files: Files,
}

pub(super) struct Files {
    pub(super) dir: PathBuf,
    pub(super) list: Vec<Planned>,
}

impl Files {
    pub(super) fn add(&mut self, file: String, bytes: Vec<u8>, mode: u32, what: &str) {
        let path = self.dir.join(file);
        if !self.list.iter().any(|p| p.path == path) {
            self.list.push(Planned {
                path,
                bytes,
                mode,
                what: what.to_string(),
            });
        }
    }
}

/// The certificate in the other thumbprint slot of a self-signed device, as an entity.
pub(super) fn slot_entity(main: &Entity, slot: Slot) -> Result<Entity> {
    let sub = match slot {
        Slot::Primary => "primary",
        Slot::Secondary => "secondary",
    };
    let dir = main.dir.join(sub);
    let meta_path = dir.join(store::META_FILE);
    if !meta_path.exists() {
        return Err(Error::NoSlot {
            name: main.meta.name.clone(),
            slot: sub,
        });
    }
    Ok(Entity::read_dir(dir)?)
}
