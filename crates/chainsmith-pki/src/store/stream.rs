//! Making and writing a large batch at once: rayon's threads make entities (keys, signatures)
//! while one writer lands each as soon as it is made.
//!
//! Why: `new device` over a range used to make the whole batch in memory and only then write
//! it, so a batch held every key, certificate and meta at once (73 MB at 20,000 P-256
//! devices, growing with the range) and nothing reached the disk until the last signature.
//! Streamed, the same batch peaks at 50 MB (what is left is the list of what was made, for
//! the report and the index), entities land while keys are still being made, and the
//! makers and the writer share the two cores. CPU per certificate stayed where it was
//! (docs/internals/speed.md): most of it is the kernel creating three files and a directory
//! and the key and signature themselves.

use super::{BatchDirs, Meta, NewEntity, Result, Workspace, io_error};
use crate::progress::{Progress, total};
use rayon::prelude::*;
use std::sync::mpsc;

/// Entities handed from a maker to the writer at once: one wake-up of the writer per this
/// many, not per entity (a futex call each, which under load cost more than it saved).
const HANDOFF: usize = 32;

/// Entities made but not yet written that the hand-over holds (plus one chunk of [`HANDOFF`]
/// per maker thread being made and one being written): enough that the makers never wait on a
/// writer that is merely between two files, small enough that a batch's memory stays flat.
pub const STREAM_DEPTH: usize = 256;

impl Workspace {
    /// Make one entity per item with `make` and add each to the workspace as it is made.
    ///
    /// The guarantees are those of [`Workspace::create`] (each entity whole or not at all; a
    /// name taken meanwhile is reported and the rest still land; one sync at the end), and
    /// the first item is made before anything is written, so a request that cannot be made at
    /// all (a bad profile, a CA that cannot sign) leaves the workspace as it was. A later
    /// failure to make one stops the making; what landed before it stays, is indexed, and the
    /// failure is returned. Progress: stage "issuing" (one per entity made and written), then
    /// "syncing" (the index and the disk).
    pub fn create_streamed<I: Sync>(
        &self,
        items: &[I],
        make: impl Fn(&I) -> Result<NewEntity> + Sync,
        progress: &dyn Progress,
    ) -> Result<Vec<Meta>> {
        let Some((first, rest)) = items.split_first() else {
            return Ok(Vec::new());
        };
        let first = make(first)?;
        progress.stage("issuing", total(items.len()));
        let dirs = BatchDirs::open(&self.root)?;
        let (tx, rx) = mpsc::sync_channel::<Vec<NewEntity>>(STREAM_DEPTH / HANDOFF);
        let mut outcomes = Vec::with_capacity(items.len());
        let mut metas = Vec::with_capacity(items.len());
        let mut write = |e: NewEntity| {
            outcomes.push(self.land_new(&dirs, &e));
            metas.push(e.meta);
            progress.done(1);
        };
        write(first);
        let make = &make;
        let root = self.root.as_path();
        let made = std::thread::scope(|s| {
            let makers = s.spawn(move || {
                rest.par_chunks(HANDOFF).try_for_each_with(tx, |tx, chunk| {
                    let made = chunk.iter().map(make).collect::<Result<Vec<_>>>()?;
                    tx.send(made).map_err(|_| {
                        // Only when the writer below has stopped, which it does by panicking.
                        io_error(
                            "handing a new entity to the writer of",
                            root,
                            std::io::Error::other("the writer stopped"),
                        )
                    })
                })
            });
            rx.into_iter().flatten().for_each(&mut write);
            makers.join()
        });
        progress.stage("syncing", 1);
        let made = match made {
            Ok(made) => made,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let settled = self.settle_new(outcomes, || metas.iter().map(|m| m.name.clone()));
        progress.done(1);
        made.and(settled).map(|()| metas)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::ops::device_entity;
    use crate::pki::{Eku, KeyAlg, Profile, Target, Validity};
    use crate::progress::Unwatched;
    use crate::store::Error;
    use time::macros::datetime;

    const CREATED: time::OffsetDateTime = datetime!(2026-03-01 12:00:00 UTC);

    fn workspace() -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::init(&dir.path().join("ws"))
            .unwrap()
            .with_clock(Clock::Fixed(CREATED));
        (dir, ws)
    }

    fn device(id: &str) -> Result<NewEntity> {
        let profile = Profile::Device {
            eku: Eku::Client,
            sans: vec![],
        };
        device_entity(
            id,
            None,
            KeyAlg::EcP256,
            &profile,
            Validity::days_from(CREATED, 30),
            Target::Hub,
            None,
            CREATED,
        )
    }

    fn refused(why: &str) -> Error {
        io_error(
            "making",
            std::path::Path::new("x"),
            std::io::Error::other(why.to_string()),
        )
    }

    fn staging_left(ws: &Workspace) -> usize {
        std::fs::read_dir(ws.root().join(super::super::STAGING))
            .unwrap()
            .count()
    }

    #[test]
    fn a_batch_larger_than_the_stream_lands_whole_and_indexed() {
        let (_d, ws) = workspace();
        let ids: Vec<String> = (0..STREAM_DEPTH * 3 + 7)
            .map(|i| format!("d-{i}"))
            .collect();
        let made = ws
            .create_streamed(&ids, |id| device(id), &Unwatched)
            .unwrap();
        let names: Vec<&str> = made.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names.len(), ids.len());
        let (listed, damaged) = ws.list().unwrap();
        assert!(damaged.is_empty(), "{damaged:?}");
        assert_eq!(listed.len(), ids.len());
        for id in &ids {
            assert!(names.contains(&id.as_str()), "{id} not reported");
            let dir = ws.load(id).unwrap().dir;
            assert!(
                dir.join(super::super::KEY_FILE).is_file(),
                "{id} has no key"
            );
        }
        assert!(ws.root().join(super::super::INDEX_FILE).is_file());
        assert_eq!(staging_left(&ws), 0);
    }

    #[test]
    fn a_first_item_that_cannot_be_made_writes_nothing() {
        let (_d, ws) = workspace();
        let err = ws
            .create_streamed(&["a", "b", "c"], |_| Err(refused("cannot")), &Unwatched)
            .unwrap_err();
        assert!(err.to_string().contains("cannot"), "{err}");
        assert!(ws.list().unwrap().0.is_empty());
        assert!(!ws.root().join(super::super::STAGING).exists() || staging_left(&ws) == 0);
    }

    #[test]
    fn a_later_failure_keeps_what_landed_indexed_and_says_why() {
        let (_d, ws) = workspace();
        let ids: Vec<String> = (0..40).map(|i| format!("d-{i}")).collect();
        let err = ws
            .create_streamed(
                &ids,
                |id| {
                    if id == "d-39" {
                        return Err(refused("no key for d-39"));
                    }
                    device(id)
                },
                &Unwatched,
            )
            .unwrap_err();
        assert!(err.to_string().contains("no key for d-39"), "{err}");
        let (listed, damaged) = ws.list().unwrap();
        assert!(damaged.is_empty(), "{damaged:?}");
        assert!(listed.iter().any(|m| m.name == "d-0"));
        assert!(listed.iter().all(|m| m.name != "d-39"));
        assert_eq!(staging_left(&ws), 0);
    }

    #[test]
    fn a_name_taken_meanwhile_is_reported_and_the_rest_land() {
        let (_d, ws) = workspace();
        ws.create(&[device("d-5").unwrap()]).unwrap();
        let ids: Vec<String> = (0..10).map(|i| format!("d-{i}")).collect();
        let err = ws
            .create_streamed(&ids, |id| device(id), &Unwatched)
            .unwrap_err();
        match err {
            Error::Raced { made, taken } => {
                assert_eq!(taken, vec!["d-5".to_string()]);
                assert_eq!(made.len(), 9, "{made:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ws.list().unwrap().0.len(), 10);
    }
}
