//! Which devices a fleet drives: names, ranges (`sensor-{00001..10000}`) and every device
//! under a CA, then the K-th of N equal slices of that list for a shard.

use super::FleetError;
use crate::store::{Kind, Workspace};
use std::collections::{HashMap, HashSet};

/// The most devices one fleet run takes (a range alone may name a million).
const MAX_DEVICES: usize = 1_000_000;
/// The most shards a fleet may be cut into.
pub const MAX_SHARDS: u32 = 10_000;

/// What a selection picked: the device names, and what `--issuer` left out.
#[derive(Debug, Default, PartialEq)]
pub struct Selected {
    /// The device names, in order.
    pub names: Vec<String>,
    /// Devices whose issuer chain names the CA but whose certificate was signed by an
    /// earlier certificate of it (or of a CA on the way): leftovers of a CA made again.
    pub stale: Vec<String>,
}

/// The device names: each pattern expanded (ranges), then every device issued under
/// `issuer` (directly or through intermediates) by its current certificate, sorted;
/// duplicates dropped, first kept.
pub fn select(
    ws: &Workspace,
    patterns: &[String],
    issuer: Option<&str>,
) -> Result<Selected, FleetError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for p in patterns {
        let ids = crate::pki::identity::expand_range(p)
            .map_err(|e| FleetError::Selection(e.to_string()))?;
        for id in ids {
            if out.len() >= MAX_DEVICES {
                return Err(too_many());
            }
            if seen.insert(id.clone()) {
                out.push(id);
            }
        }
    }
    let mut stale = Vec::new();
    if let Some(ca) = issuer {
        let under = under(ws, ca)?;
        stale = under.stale;
        for id in under.names {
            if out.len() >= MAX_DEVICES {
                return Err(too_many());
            }
            if seen.insert(id.clone()) {
                out.push(id);
            }
        }
    }
    if out.is_empty() {
        return Err(FleetError::Selection(
            "no devices selected: name devices, a range like sensor-{00001..10000}, or a CA whose devices to take".into(),
        ));
    }
    Ok(Selected { names: out, stale })
}

fn too_many() -> FleetError {
    FleetError::Selection(format!(
        "more than {MAX_DEVICES} devices selected; run shards of the fleet instead"
    ))
}

/// Every device with a key whose issuer chain reaches `ca` and whose certificate that CA's
/// current certificate issued (each link checked by signature), sorted by name. A device
/// issued by an earlier CA of the same name (made again with --force) would be refused by
/// the hub: it goes to [`Selected::stale`] instead.
pub fn under(ws: &Workspace, ca: &str) -> Result<Selected, FleetError> {
    use rayon::prelude::*;
    let (metas, _damaged) = ws.list().map_err(FleetError::Store)?;
    let Some(top) = metas.iter().find(|m| m.name == ca) else {
        // load names the close matches
        return Err(match ws.load(ca) {
            Err(e) => FleetError::Store(e),
            Ok(_) => FleetError::Selection(format!("no CA named \"{ca}\" in the workspace")),
        });
    };
    if !top.kind.is_ca() {
        return Err(FleetError::Selection(format!(
            "\"{ca}\" is a {} certificate, not a CA; name the CA whose devices to take",
            top.kind.as_str()
        )));
    }
    let issuer: HashMap<&str, &str> = metas
        .iter()
        .filter_map(|m| Some((m.name.as_str(), m.issuer.as_deref()?)))
        .collect();
    // The path from each device up to `ca`, device first; None when it does not get there.
    let path_to_ca = |name: &str| {
        let mut path = vec![name.to_string()];
        let mut at = name;
        for _ in 0..32 {
            match issuer.get(at) {
                Some(&i) if i == ca => {
                    path.push(i.to_string());
                    return Some(path);
                }
                Some(&i) => {
                    path.push(i.to_string());
                    at = i;
                }
                None => return None,
            }
        }
        None
    };
    let mut paths: Vec<Vec<String>> = metas
        .iter()
        .filter(|m| m.kind == Kind::Device && m.has_key)
        .filter_map(|m| path_to_ca(&m.name))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(FleetError::NoDevicesUnder(ca.to_string()));
    }
    // Each CA link once (the CAs are few), then each device against its issuer.
    let der = |name: &str| ws.load(name).map(|e| e.cert_der).ok();
    let mut link_current: HashMap<(String, String), bool> = HashMap::new();
    for p in &paths {
        for pair in p[1..].windows(2) {
            let key = (pair[0].clone(), pair[1].clone());
            link_current.entry(key).or_insert_with(|| {
                matches!((der(&pair[0]), der(&pair[1])), (Some(c), Some(i)) if crate::pki::inspect::signed_by(&c, &i))
            });
        }
    }
    let mut issuer_der: HashMap<&str, Option<Vec<u8>>> = HashMap::new();
    for p in &paths {
        issuer_der
            .entry(p[1].as_str())
            .or_insert_with(|| der(&p[1]));
    }
    let current: Vec<bool> = paths
        .par_iter()
        .map(|p| {
            let links = p[1..]
                .windows(2)
                .all(|w| link_current.get(&(w[0].clone(), w[1].clone())) == Some(&true));
            links
                && matches!((der(&p[0]), issuer_der.get(p[1].as_str())), (Some(c), Some(Some(i))) if crate::pki::inspect::signed_by(&c, i))
        })
        .collect();
    let mut picked = Selected::default();
    for (p, now) in paths.into_iter().zip(current) {
        let name = p.into_iter().next().unwrap_or_default();
        if now {
            picked.names.push(name);
        } else {
            picked.stale.push(name);
        }
    }
    if picked.names.is_empty() {
        return Err(FleetError::Selection(format!(
            "the {} device(s) under \"{ca}\" were all issued by an earlier certificate of it (or of a CA between): issue them again under the current one",
            picked.stale.len()
        )));
    }
    Ok(picked)
}

/// Device ids written short for a command line: runs of consecutive numbers with the same
/// prefix become a range (`sensor-{001..399}`, as `new device` and `hub device add` expand
/// them), other ids stay as they are; sorted.
pub fn compress_ids(ids: &[String]) -> Vec<String> {
    // (prefix, number, digits as written) for ids ending in a number a range can give back.
    let split = |id: &str| {
        let digits = id.len() - id.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (prefix, num) = id.split_at(id.len() - digits);
        let n: u64 = num.parse().ok()?;
        (!id.contains(['{', '}']) && digits <= 18).then(|| (prefix.to_string(), n, num.to_string()))
    };
    let mut numbered: Vec<(String, u64, String)> = Vec::new();
    let mut plain: Vec<String> = Vec::new();
    for id in ids {
        match split(id) {
            Some(t) => numbered.push(t),
            None => plain.push(id.clone()),
        }
    }
    numbered.sort_by(|a, b| (&a.0, a.1, &a.2).cmp(&(&b.0, b.1, &b.2)));
    numbered.dedup();
    let mut out = plain;
    let mut i = 0;
    while i < numbered.len() {
        let (prefix, _, first) = &numbered[i];
        // expand_range keeps the first bound's width when it has leading zeros.
        let width = if first.len() > 1 && first.starts_with('0') {
            first.len()
        } else {
            0
        };
        let mut j = i;
        while j + 1 < numbered.len() {
            let (p, n, written) = &numbered[j + 1];
            if p != prefix || *n != numbered[j].1 + 1 || *written != format!("{n:0width$}") {
                break;
            }
            j += 1;
        }
        if j - i >= 2 {
            out.push(format!("{prefix}{{{first}..{}}}", numbered[j].2));
        } else {
            out.extend(numbered[i..=j].iter().map(|(p, _, w)| format!("{p}{w}")));
        }
        i = j + 1;
    }
    out.sort();
    out
}

/// The K-th of N equal, contiguous slices of a device list (K counts from 1).
///
/// A shard read back from a report goes through [`Shard::new`] too: a hand-edited `0/0`
/// would otherwise reach [`Shard::range`]'s arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "ShardFields")]
pub struct Shard {
    /// K: which slice, 1..=`count`.
    pub index: u32,
    /// N: how many slices, 1..=[`MAX_SHARDS`].
    pub count: u32,
}

/// A shard as a report file spells it, before its range check.
#[derive(serde::Deserialize)]
struct ShardFields {
    index: u32,
    count: u32,
}

impl TryFrom<ShardFields> for Shard {
    type Error = ShardError;
    fn try_from(f: ShardFields) -> Result<Shard, ShardError> {
        Shard::new(f.index, f.count)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A shard that does not exist or is not spelt K/N; each message names the value and the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Not `K/N` with two numbers.
    #[error("shard \"{0}\" is not K/N; write e.g. 2/8 for the second of 8 shards")]
    NotKOfN(String),
    /// N is 0 or more than [`MAX_SHARDS`].
    #[error("shard count {0} is out of range; use 1 to {MAX_SHARDS}")]
    Count(u32),
    /// K is 0 or more than N.
    #[error("shard {index} of {count} does not exist; shards count from 1 to {count}")]
    Index {
        /// K as given.
        index: u32,
        /// N.
        count: u32,
    },
    /// The orchestrator's `JOB_COMPLETION_INDEX` is not a number.
    #[error("JOB_COMPLETION_INDEX \"{0}\" is not a number from 0")]
    JobIndex(String),
    /// `CHAINSMITH_SHARDS` is not set and no count was given.
    #[error("CHAINSMITH_SHARDS is not set; set it to the Job's completions (the shard count)")]
    NoShardCount,
    /// `CHAINSMITH_SHARDS` is not a number.
    #[error("CHAINSMITH_SHARDS \"{0}\" is not a number from 1 to {MAX_SHARDS}")]
    ShardCount(String),
}

impl From<ShardError> for FleetError {
    fn from(e: ShardError) -> Self {
        FleetError::Selection(e.to_string())
    }
}

impl std::str::FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let bad = || ShardError::NotKOfN(s.to_string());
        let (k, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let k: u32 = k.trim().parse().map_err(|_| bad())?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        Shard::new(k, n)
    }
}

impl Shard {
    /// Shard `index` of `count`, range-checked (K from 1 to N, N from 1 to [`MAX_SHARDS`]).
    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        if count == 0 || count > MAX_SHARDS {
            return Err(ShardError::Count(count));
        }
        if index == 0 || index > count {
            return Err(ShardError::Index { index, count });
        }
        Ok(Shard { index, count })
    }

    /// The shard an orchestrator names: `JOB_COMPLETION_INDEX` (0-based, as a Kubernetes
    /// Indexed Job sets it) and the shard count (`CHAINSMITH_SHARDS`, or `count` when given).
    pub fn from_env(
        get: impl Fn(&str) -> Option<String>,
        count: Option<u32>,
    ) -> Result<Shard, FleetError> {
        let index = get("JOB_COMPLETION_INDEX").ok_or(FleetError::NoShardIndex)?;
        Ok(Self::from_index(index, get, count)?)
    }

    /// [`Shard::from_env`] once the index is known.
    fn from_index(
        index: String,
        get: impl Fn(&str) -> Option<String>,
        count: Option<u32>,
    ) -> Result<Shard, ShardError> {
        let index: u32 = index
            .trim()
            .parse()
            .map_err(|_| ShardError::JobIndex(index.clone()))?;
        let count = match count {
            Some(c) => c,
            None => {
                let c = get("CHAINSMITH_SHARDS").ok_or(ShardError::NoShardCount)?;
                c.trim()
                    .parse()
                    .map_err(|_| ShardError::ShardCount(c.clone()))?
            }
        };
        Shard::new(index.saturating_add(1), count)
    }

    /// This shard's slice: items `[len*(K-1)/N, len*K/N)`, so the slices cover the list
    /// exactly once and differ in length by at most one.
    pub fn range(&self, len: usize) -> std::ops::Range<usize> {
        let at = |k: u32| (len as u128 * k as u128 / self.count as u128) as usize;
        at(self.index - 1)..at(self.index)
    }

    /// The items of this shard (see [`Shard::range`]).
    pub fn slice<'a, T>(&self, items: &'a [T]) -> &'a [T] {
        &items[self.range(items.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_ids_expand_to_the_same_ids() {
        let ids: Vec<String> = (2..=399)
            .map(|i| format!("sensor-{i:03}"))
            .chain(
                [
                    "gw", "d-9", "d-10", "d-11", "x-1", "x-3", "e-098", "e-099", "e-100",
                ]
                .map(String::from),
            )
            .collect();
        let short = compress_ids(&ids);
        assert_eq!(
            short,
            [
                "d-{9..11}",
                "e-{098..100}",
                "gw",
                "sensor-{002..399}",
                "x-1",
                "x-3"
            ]
        );
        let mut back: Vec<String> = short
            .iter()
            .flat_map(|p| crate::pki::identity::expand_range(p).unwrap())
            .collect();
        let mut want = ids.clone();
        back.sort();
        want.sort();
        assert_eq!(back, want);
    }

    #[test]
    fn shards_cover_the_list_exactly_once() {
        for len in [0usize, 1, 7, 100, 10_001] {
            for n in [1u32, 2, 3, 8, 13] {
                let mut next = 0;
                for k in 1..=n {
                    let r = Shard::new(k, n).unwrap().range(len);
                    assert_eq!(r.start, next);
                    assert!(r.len() <= len / n as usize + 1);
                    next = r.end;
                }
                assert_eq!(next, len);
            }
        }
    }

    #[test]
    fn shard_parsing_checks_ranges() {
        assert_eq!(
            "2/8".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 8 }
        );
        assert!(
            "0/8"
                .parse::<Shard>()
                .unwrap_err()
                .to_string()
                .contains("count from 1")
        );
        assert!(
            "9/8"
                .parse::<Shard>()
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
        assert!(
            "1/0"
                .parse::<Shard>()
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        assert!(
            "1/99999"
                .parse::<Shard>()
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
        assert!(
            "x".parse::<Shard>()
                .unwrap_err()
                .to_string()
                .contains("K/N")
        );
        // A report's shard is range-checked as it is read, like one typed on the command line.
        let read = |json: &str| serde_json::from_str::<Shard>(json).map_err(|e| e.to_string());
        assert_eq!(
            read(r#"{"index":2,"count":8}"#),
            Ok(Shard { index: 2, count: 8 })
        );
        assert!(
            read(r#"{"index":0,"count":0}"#)
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            read(r#"{"index":9,"count":8}"#)
                .unwrap_err()
                .contains("does not exist")
        );
        let env = |k: &str| match k {
            "JOB_COMPLETION_INDEX" => Some("3".to_string()),
            "CHAINSMITH_SHARDS" => Some("4".to_string()),
            _ => None,
        };
        assert_eq!(
            Shard::from_env(env, None).unwrap(),
            Shard { index: 4, count: 4 }
        );
        assert!(Shard::from_env(env, Some(3)).is_err());
        assert!(
            Shard::from_env(|_| None, None)
                .unwrap_err()
                .to_string()
                .contains("JOB_COMPLETION_INDEX")
        );
    }
}
