//! The hub's server CA in the operating system's trust store, for samples that never pass a
//! server certificate and trust only the system's CAs (the IoT Central sample, for one).
//!
//! Debian's way: a PEM file named `*.crt` under `/usr/local/share/ca-certificates/`, then
//! `update-ca-certificates`, which links it into `/etc/ssl/certs/` and rebuilds
//! `/etc/ssl/certs/ca-certificates.crt` (the bundle OpenSSL, Python and Node read). Each
//! workspace's hub has its own CA, so the file name carries the CA's fingerprint: two
//! workspaces can be installed side by side and each removes only its own.
//!
//! [`SystemTrust::under`] points every path below another root (a container image's file
//! tree, a chroot, or a test's temporary directory); the real `update-ca-certificates` runs
//! either way, with its directory options set.

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

use super::registry::{HubStore, RegistryError};
use crate::error::{Classified, Remedy};

/// Where a Debian-style trust store keeps its files.
#[derive(Debug, Clone)]
pub struct SystemTrust {
    /// Local CA certificates (`/usr/local/share/ca-certificates`).
    pub local_dir: PathBuf,
    /// Hashed links and the bundle (`/etc/ssl/certs`).
    pub etc_dir: PathBuf,
    /// The distribution's CA certificates (`/usr/share/ca-certificates`).
    pub certs_dir: PathBuf,
    /// Which distribution CAs are enabled (`/etc/ca-certificates.conf`).
    pub certs_conf: PathBuf,
    /// Hooks run after an update (`/etc/ca-certificates/update.d`).
    pub hooks_dir: PathBuf,
}

/// What an install or uninstall did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrustChange {
    /// The certificate file in the local CA directory.
    pub file: PathBuf,
    /// The bundle clients read, rebuilt by `update-ca-certificates`.
    pub bundle: PathBuf,
    /// False when the store already was as asked (installed twice, or removed when absent).
    pub changed: bool,
}

/// Why the system trust store could not be changed, with the way out in domain words.
#[derive(Debug, Error)]
pub enum SystemTrustError {
    /// The hub's files could not be read.
    #[error(transparent)]
    Hub(#[from] RegistryError),
    /// The store's directories are not writable (they belong to root).
    #[error(
        "cannot write {dir}: {source}; the system trust store belongs to root: do it again as root (sudo), or give your sample the hub's CA file instead"
    )]
    NotWritable {
        /// The directory.
        dir: PathBuf,
        /// The error writing there.
        #[source]
        source: std::io::Error,
    },
    /// `update-ca-certificates` is missing (not Debian or Ubuntu).
    #[error(
        "update-ca-certificates was not found or could not run ({0}); this works on Debian and Ubuntu (package ca-certificates); elsewhere give your sample the hub's CA file instead"
    )]
    NoUpdateTool(std::io::Error),
    /// `update-ca-certificates` ran and failed.
    #[error("update-ca-certificates failed ({status}): {stderr}")]
    UpdateFailed {
        /// Its exit status.
        status: String,
        /// What it printed on standard error.
        stderr: String,
    },
}

impl SystemTrustError {
    /// A short machine-friendly name for `--json` errors.
    pub fn kind(&self) -> &'static str {
        match self {
            SystemTrustError::Hub(e) => e.kind(),
            SystemTrustError::NotWritable { .. } => "permission",
            SystemTrustError::NoUpdateTool(_) => "unsupported",
            SystemTrustError::UpdateFailed { .. } => "system-trust",
        }
    }

    /// What would fix it, for a face to turn into its own hint.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            SystemTrustError::Hub(e) => e.remedy(),
            SystemTrustError::NotWritable { .. } | SystemTrustError::NoUpdateTool(_) => {
                Some(Remedy::HubCaFile)
            }
            SystemTrustError::UpdateFailed { .. } => None,
        }
    }
}

impl Classified for SystemTrustError {
    fn kind(&self) -> &'static str {
        SystemTrustError::kind(self)
    }
    fn remedy(&self) -> Option<Remedy> {
        SystemTrustError::remedy(self)
    }
}

type Result<T> = std::result::Result<T, SystemTrustError>;

impl Default for SystemTrust {
    fn default() -> Self {
        SystemTrust::under(Path::new("/"))
    }
}

impl SystemTrust {
    /// The Debian layout below `root` (`/` for the running system).
    pub fn under(root: &Path) -> SystemTrust {
        SystemTrust {
            local_dir: root.join("usr/local/share/ca-certificates"),
            etc_dir: root.join("etc/ssl/certs"),
            certs_dir: root.join("usr/share/ca-certificates"),
            certs_conf: root.join("etc/ca-certificates.conf"),
            hooks_dir: root.join("etc/ca-certificates/update.d"),
        }
    }

    /// The bundle `update-ca-certificates` writes.
    pub fn bundle(&self) -> PathBuf {
        self.etc_dir.join("ca-certificates.crt")
    }

    /// The file this workspace's hub CA has (or would have) in the local CA directory.
    pub fn file_for(&self, hub: &HubStore) -> Result<PathBuf> {
        hub.ensure_tls_ca()?;
        let pem = std::fs::read(hub.trust_path()).map_err(|e| {
            RegistryError::Store(crate::store::io_error("read", &hub.trust_path(), e))
        })?;
        Ok(self
            .local_dir
            .join(format!("chainsmith-local-hub-{}.crt", fingerprint(&pem))))
    }

    /// Whether this workspace's hub CA is in the store.
    pub fn is_installed(&self, hub: &HubStore) -> Result<bool> {
        Ok(self.file_for(hub)?.exists())
    }

    /// Add the hub's CA and rebuild the bundle.
    pub fn install(&self, hub: &HubStore) -> Result<TrustChange> {
        let file = self.file_for(hub)?;
        let changed = !file.exists();
        if changed {
            let pem = std::fs::read(hub.trust_path()).map_err(|e| {
                RegistryError::Store(crate::store::io_error("read", &hub.trust_path(), e))
            })?;
            let not_writable = |source| SystemTrustError::NotWritable {
                dir: self.local_dir.clone(),
                source,
            };
            std::fs::create_dir_all(&self.local_dir).map_err(not_writable)?;
            // A public certificate: world-readable is what the store expects (0644).
            std::fs::write(&file, pem).map_err(not_writable)?;
        }
        self.update(false)?;
        Ok(TrustChange {
            file,
            bundle: self.bundle(),
            changed,
        })
    }

    /// Remove the hub's CA and rebuild the bundle.
    pub fn uninstall(&self, hub: &HubStore) -> Result<TrustChange> {
        let file = self.file_for(hub)?;
        let changed = file.exists();
        if changed {
            std::fs::remove_file(&file).map_err(|source| SystemTrustError::NotWritable {
                dir: self.local_dir.clone(),
                source,
            })?;
        }
        // --fresh also drops the link left dangling in /etc/ssl/certs (Debian's advice).
        self.update(true)?;
        self.drop_from_bundle(hub)?;
        Ok(TrustChange {
            file,
            bundle: self.bundle(),
            changed,
        })
    }

    /// update-ca-certificates leaves the old bundle in place when no certificate is left at all
    /// (an image without the distribution's CAs): take the hub's CA out of it by hand then.
    fn drop_from_bundle(&self, hub: &HubStore) -> Result<()> {
        let bundle = self.bundle();
        let (Ok(text), Ok(ours)) = (
            std::fs::read_to_string(&bundle),
            std::fs::read_to_string(hub.trust_path()),
        ) else {
            return Ok(());
        };
        let ours = ours.trim();
        if ours.is_empty() || !text.contains(ours) {
            return Ok(());
        }
        let kept = text.replacen(ours, "", 1);
        let tmp = bundle.with_extension("crt.chainsmith");
        let not_writable = |source| SystemTrustError::NotWritable {
            dir: self.etc_dir.clone(),
            source,
        };
        std::fs::write(&tmp, kept.trim_start()).map_err(not_writable)?;
        std::fs::rename(&tmp, &bundle).map_err(not_writable)
    }

    fn update(&self, fresh: bool) -> Result<()> {
        for dir in [&self.etc_dir, &self.certs_dir, &self.hooks_dir] {
            std::fs::create_dir_all(dir).map_err(|source| SystemTrustError::NotWritable {
                dir: dir.clone(),
                source,
            })?;
        }
        let mut cmd = Command::new(update_tool());
        if fresh {
            cmd.arg("--fresh");
        }
        let out = cmd
            .arg("--certsconf")
            .arg(&self.certs_conf)
            .arg("--certsdir")
            .arg(&self.certs_dir)
            .arg("--localcertsdir")
            .arg(&self.local_dir)
            .arg("--etccertsdir")
            .arg(&self.etc_dir)
            .arg("--hooksdir")
            .arg(&self.hooks_dir)
            .output()
            .map_err(SystemTrustError::NoUpdateTool)?;
        if !out.status.success() {
            return Err(SystemTrustError::UpdateFailed {
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
}

/// `update-ca-certificates` lives in /usr/sbin, which a user's PATH often lacks.
fn update_tool() -> PathBuf {
    let sbin = Path::new("/usr/sbin/update-ca-certificates");
    if sbin.exists() {
        sbin.to_path_buf()
    } else {
        PathBuf::from("update-ca-certificates")
    }
}

/// The first 16 hex digits of the SHA-256 of the CA's PEM: stable for one CA, distinct between
/// workspaces.
fn fingerprint(pem: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, pem);
    hex::encode(&d.as_ref()[..8])
}
