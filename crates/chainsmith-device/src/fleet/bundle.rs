//! `export-shards`: each shard's devices as a small workspace a pod can mount: the devices'
//! certificates and keys, and the certificates (never the keys) of the CAs above them.

use super::{FleetError, Shard};
use crate::store::{NewEntity, Workspace};
use chainsmith_pki::progress::{Progress, Unwatched, total};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One written bundle.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Bundle {
    /// Which shard (K of N) the bundle holds.
    pub shard: Shard,
    /// The bundle's directory: a workspace of its own (`shard-K`).
    pub dir: PathBuf,
    /// How many devices were written into it.
    pub devices: usize,
}

/// The directory of shard K of N under `out`: `shard-K` (K counts from 1).
fn bundle_dir(out: &Path, shard: Shard) -> PathBuf {
    out.join(format!("shard-{}", shard.index))
}

/// Write `count` bundles of `names` (sliced as `fleet run --shard K/N` slices them).
/// Refuses a bundle directory that exists and is not empty.
pub fn export_shards(
    ws: &Workspace,
    names: &[String],
    out: &Path,
    count: u32,
) -> Result<Vec<Bundle>, FleetError> {
    export_shards_watched(ws, names, out, count, &Unwatched)
}

/// [`export_shards`], telling `progress` how far it has got: for each bundle, stage
/// "exporting" (one per device read from the workspace), then "writing" (one per entity).
pub fn export_shards_watched(
    ws: &Workspace,
    names: &[String],
    out: &Path,
    count: u32,
    progress: &dyn Progress,
) -> Result<Vec<Bundle>, FleetError> {
    let shards: Vec<Shard> = (1..=count)
        .map(|k| Shard::new(k, count).map_err(FleetError::from))
        .collect::<Result<_, _>>()?;
    for s in &shards {
        let dir = bundle_dir(out, *s);
        if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(FleetError::BundleDirNotEmpty(dir));
        }
    }
    crate::store::make_private_dir_all(out).map_err(FleetError::Store)?;
    let mut written = Vec::new();
    for s in shards {
        let slice = s.slice(names);
        let dir = bundle_dir(out, s);
        let bundle = Workspace::init(&dir).map_err(FleetError::Store)?;
        let mut batch = Vec::new();
        let mut cas = BTreeSet::new();
        progress.stage("exporting", total(slice.len()));
        for name in slice {
            let chain = crate::store::chain_of(ws, name).map_err(FleetError::Store)?;
            let leaf = &chain[0];
            if leaf.meta.kind != crate::store::Kind::Device || !leaf.meta.has_key {
                return Err(FleetError::Device {
                    device: name.clone(),
                    problem: "is not a device with a key in the workspace".into(),
                });
            }
            batch.push(NewEntity {
                meta: leaf.meta.clone(),
                cert_pem: leaf.cert_pem.clone(),
                key_pem: Some(leaf.read_key_pem().map_err(FleetError::Store)?),
                extra: vec![],
            });
            progress.done(1);
            for ca in &chain[1..] {
                if cas.insert(ca.meta.name.clone()) {
                    let mut meta = ca.meta.clone();
                    // The pod signs nothing: the CA's key stays in the workspace.
                    meta.has_key = false;
                    batch.push(NewEntity {
                        meta,
                        cert_pem: ca.cert_pem.clone(),
                        key_pem: None,
                        extra: vec![],
                    });
                }
            }
        }
        bundle
            .create_watched(&batch, progress)
            .map_err(FleetError::Store)?;
        written.push(Bundle {
            shard: s,
            dir,
            devices: slice.len(),
        });
    }
    Ok(written)
}
