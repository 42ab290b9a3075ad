//! How far a long batch has got, for a face to draw: `new device` over a range, `apply`, the
//! exports of many entities, a fleet's shard bundles. The engine never draws; it names the
//! stage and counts what is done, and the face decides whether and how to show it (the CLI's
//! bar, nothing at all in a script).

/// Told as a batch goes: each stage once with its size, then each item as it is done. Called
/// from every core at once (the batches run on rayon), hence `Sync`.
pub trait Progress: Sync {
    /// A stage of `total` items begins: "issuing", "writing", "exporting".
    fn stage(&self, what: &'static str, total: u64);
    /// `n` more items of the current stage are done.
    fn done(&self, n: u64);
}

/// No one is watching: what the functions without a `_watched` suffix report to.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unwatched;

impl Progress for Unwatched {
    fn stage(&self, _what: &'static str, _total: u64) {}
    fn done(&self, _n: u64) {}
}

/// The total of a stage, as a [`Progress`] takes it.
pub fn total(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
