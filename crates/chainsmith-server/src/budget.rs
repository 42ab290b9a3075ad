//! What one peer may hold of the hub: a [`PeerBudget`] caps a kind of connection in total and
//! per peer address, so one address that holds its share locks out only itself. Every listener
//! charges the same budget in one place (the accept loop, [`crate::listener`]); a
//! [`BudgetPermit`] gives its slot back when dropped.
//!
//! Also here: raising the process's open-files limit at start, as servers do, since every
//! budget below is paid in file descriptors.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Connections between TCP accept and an accepted CONNECT or device link (TLS handshake
/// included) one peer address may hold. The hub's old global cap: a fleet run from one machine
/// (200 handshakes in flight by default, `fleet::run::Plan::in_flight`) never reaches it.
pub const MAX_UNAUTHENTICATED_PER_PEER: usize = 256;
/// Connections waiting to authenticate across all peers: four peers' worth, so it takes four
/// addresses holding everything they may to lock a fifth out (one takes none of its share).
/// At about 70 KB of TLS state and read buffer each, 1024 cost at most ~70 MB.
pub const MAX_UNAUTHENTICATED: usize = 4 * MAX_UNAUTHENTICATED_PER_PEER;
/// DPS sessions (a DPS CONNECT accepted, registering and polling) one peer may hold at once.
/// DPS accepts any certificate at CONNECT (enrollments are checked at register), so these are
/// as anonymous as a TCP socket; a fleet provisioning from one machine has at most 200 in
/// flight (`fleet::run::Plan::in_flight`).
pub const MAX_DPS_SESSIONS_PER_PEER: usize = 256;
/// DPS sessions across all peers: two peers' worth.
pub const MAX_DPS_SESSIONS: usize = 2 * MAX_DPS_SESSIONS_PER_PEER;
/// Below this hard open-files limit the hub warns at start: [`MAX_UNAUTHENTICATED`] and
/// [`MAX_DPS_SESSIONS`] alone may hold 1536 descriptors before a single device is connected.
pub const LOW_OPEN_FILES: u64 = 4096;

/// Who a slot is charged to: an IPv4 address, or an IPv6 /64 (one host's usual allocation, in
/// which an attacker picks source addresses at will). IPv4-mapped IPv6 counts as the IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerKey(IpAddr);

impl PeerKey {
    /// The key `ip` is charged under.
    pub fn of(ip: IpAddr) -> PeerKey {
        match ip {
            IpAddr::V4(_) => PeerKey(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => PeerKey(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    PeerKey(IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0]))
                }
            },
        }
    }
}

impl std::fmt::Display for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Which cap refused a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetFull {
    /// The peer holds its whole share.
    Peer,
    /// All peers together hold the whole budget.
    Total,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    /// Only peers holding at least one slot: at most `total` entries.
    by_peer: HashMap<PeerKey, usize>,
    /// Every slot held, oldest first, with a handle on its socket when the charger gave one
    /// (to evict it: [`PeerBudget::charge_evicting`]).
    slots: std::collections::BTreeMap<u64, (PeerKey, Option<std::os::fd::OwnedFd>)>,
    next: u64,
}

impl Held {
    fn take(&mut self, key: PeerKey, fd: Option<std::os::fd::OwnedFd>) -> u64 {
        self.total += 1;
        *self.by_peer.entry(key).or_default() += 1;
        self.next += 1;
        self.slots.insert(self.next, (key, fd));
        self.next
    }

    /// Give slot `id` back (nothing when it was evicted already).
    fn give_back(&mut self, id: u64) {
        let Some((key, _fd)) = self.slots.remove(&id) else {
            return;
        };
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_peer.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.by_peer.remove(&key);
            }
        }
    }

    /// Full, and `key` holds less than the peer holding most: end that peer's oldest slot
    /// that has a socket (shut down, so its task ends) and say so.
    fn evict_for(&mut self, key: PeerKey) -> Option<PeerKey> {
        let mine = self.by_peer.get(&key).copied().unwrap_or(0);
        let (&greedy, &most) = self.by_peer.iter().max_by_key(|(_, n)| **n)?;
        if most <= mine + 1 {
            return None;
        }
        let id = self
            .slots
            .iter()
            .find(|(_, (k, fd))| *k == greedy && fd.is_some())
            .map(|(id, _)| *id)?;
        if let Some((_, Some(fd))) = self.slots.get(&id) {
            let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Both);
        }
        self.give_back(id);
        Some(greedy)
    }
}

/// A cap on a kind of connection, in total and per peer.
#[derive(Clone, Debug)]
pub struct PeerBudget {
    /// What is counted, for log lines ("connections waiting to authenticate").
    pub what: &'static str,
    /// Slots in total.
    pub total: usize,
    /// Slots one peer may hold.
    pub per_peer: usize,
    held: Arc<Mutex<Held>>,
}

impl PeerBudget {
    /// A budget of `total` slots, at most `per_peer` of them for one peer.
    pub fn new(what: &'static str, total: usize, per_peer: usize) -> PeerBudget {
        PeerBudget {
            what,
            total,
            per_peer,
            held: Arc::default(),
        }
    }

    /// Take a slot for `peer`, or say which cap is full.
    pub fn charge(&self, peer: IpAddr) -> Result<BudgetPermit, BudgetFull> {
        self.charge_evicting(peer, None).map(|(p, _)| p)
    }

    /// Take a slot for `peer` whose connection is `socket` (a duplicate of its descriptor).
    /// When the budget is full but `peer` holds less than the peer holding most, that peer's
    /// oldest connection is shut down to make room, so however many addresses an attacker
    /// uses to fill the budget, a peer holding little always gets in (the hostile pass locked
    /// every device out from four addresses); the evicted peer is returned for the log.
    pub fn charge_evicting(
        &self,
        peer: IpAddr,
        socket: Option<std::os::fd::OwnedFd>,
    ) -> Result<(BudgetPermit, Option<PeerKey>), BudgetFull> {
        let key = PeerKey::of(peer);
        let mut h = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let mine = h.by_peer.get(&key).copied().unwrap_or(0);
        if mine >= self.per_peer {
            return Err(BudgetFull::Peer);
        }
        let mut evicted = None;
        if h.total >= self.total {
            evicted = Some(h.evict_for(key).ok_or(BudgetFull::Total)?);
        }
        let id = h.take(key, socket);
        Ok((
            BudgetPermit {
                held: self.held.clone(),
                id,
            },
            evicted,
        ))
    }

    /// Slots held now.
    pub fn held(&self) -> usize {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    /// Peers holding a slot now.
    pub fn peers(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_peer
            .len()
    }

    /// The sentence for a refused slot.
    pub fn refusal(&self, full: BudgetFull, peer: IpAddr) -> BudgetRefusal {
        BudgetRefusal {
            full,
            peer,
            per_peer: self.per_peer,
            total: self.total,
            what: self.what,
        }
    }
}

/// A slot refused: which cap was full, for whom, and the budget's sizes; its text is the
/// sentence the peer and the hub's log get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetRefusal {
    /// Which cap was full.
    pub full: BudgetFull,
    /// Who asked.
    pub peer: IpAddr,
    /// The budget's cap per peer.
    pub per_peer: usize,
    /// The budget's cap in all.
    pub total: usize,
    /// What a slot is, in the plural ("connections waiting to authenticate").
    pub what: &'static str,
}

impl std::fmt::Display for BudgetRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let BudgetRefusal {
            peer,
            per_peer,
            total,
            what,
            ..
        } = self;
        match self.full {
            BudgetFull::Peer => write!(
                f,
                "{peer} already holds {per_peer} {what} (the hub's per-peer cap)"
            ),
            BudgetFull::Total => write!(
                f,
                "{total} {what} are held (the hub's cap, at most {per_peer} per peer)"
            ),
        }
    }
}

impl std::error::Error for BudgetRefusal {}

/// One slot of a [`PeerBudget`], given back when dropped.
#[derive(Debug)]
pub struct BudgetPermit {
    held: Arc<Mutex<Held>>,
    id: u64,
}

impl BudgetPermit {
    /// A duplicate of the socket this slot was charged with, to charge another budget with the
    /// same connection (a DPS session is first a connection waiting to authenticate).
    pub fn socket(&self) -> Option<std::os::fd::OwnedFd> {
        let h = self.held.lock().unwrap_or_else(|p| p.into_inner());
        h.slots
            .get(&self.id)
            .and_then(|(_, fd)| fd.as_ref())
            .and_then(|fd| fd.try_clone().ok())
    }
}

impl Drop for BudgetPermit {
    fn drop(&mut self) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .give_back(self.id);
    }
}

/// The open-files limit at start, and what the hub made of it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit before the hub touched it (None: unlimited).
    pub before: Option<u64>,
    /// The soft limit now.
    pub soft: Option<u64>,
    /// The hard limit (the most the soft limit may be raised to without privileges).
    pub hard: Option<u64>,
}

impl OpenFiles {
    /// Whether the hard limit is below [`LOW_OPEN_FILES`].
    pub fn low(&self) -> bool {
        self.hard.is_some_and(|h| h < LOW_OPEN_FILES)
    }
}

/// Raise this process's soft open-files limit (RLIMIT_NOFILE) to its hard limit, as servers
/// do: the soft default (often 1024) is below what the budgets above may hold.
pub fn raise_open_files() -> OpenFiles {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let was = getrlimit(Resource::Nofile);
    let mut now = was;
    if was.current != was.maximum {
        now.current = was.maximum;
        if setrlimit(Resource::Nofile, now).is_err() {
            now = getrlimit(Resource::Nofile);
        }
    }
    OpenFiles {
        before: was.current,
        soft: now.current,
        hard: now.maximum,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_at_its_share_is_refused_and_others_are_not() {
        let b = PeerBudget::new("slots", 3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let c: IpAddr = [10, 0, 0, 2].into();
        let p1 = b.charge(a).unwrap();
        let _p2 = b.charge(a).unwrap();
        assert_eq!(b.charge(a).unwrap_err(), BudgetFull::Peer);
        let _p3 = b.charge(c).unwrap();
        assert_eq!(b.charge(c).unwrap_err(), BudgetFull::Total);
        drop(p1);
        assert_eq!(b.held(), 2);
        assert!(b.charge(a).is_ok());
    }

    #[test]
    fn a_full_budget_evicts_the_greediest_peers_oldest_socket_for_a_newcomer() {
        use std::os::fd::AsFd;
        let b = PeerBudget::new("slots", 4, 4);
        let (greedy, other, newcomer): (IpAddr, IpAddr, IpAddr) = (
            [10, 0, 0, 1].into(),
            [10, 0, 0, 2].into(),
            [10, 0, 0, 3].into(),
        );
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut held = Vec::new();
        let mut clients = Vec::new();
        for peer in [greedy, greedy, greedy, other] {
            let c = std::net::TcpStream::connect(addr).unwrap();
            let (s, _) = l.accept().unwrap();
            let fd = s.as_fd().try_clone_to_owned().unwrap();
            held.push((b.charge_evicting(peer, Some(fd)).unwrap().0, s));
            clients.push(c);
        }
        assert_eq!(b.held(), 4);
        // The newcomer gets in; the greedy peer's oldest socket is shut down.
        let (_p, evicted) = b.charge_evicting(newcomer, None).unwrap();
        assert_eq!(evicted, Some(PeerKey::of(greedy)));
        let mut buf = [0u8; 1];
        use std::io::Read;
        assert_eq!(
            held[0].1.read(&mut buf).unwrap(),
            0,
            "the oldest was shut down"
        );
        assert_eq!(b.held(), 4);
        // Now each holds no more than one above another: nobody is evicted, the cap holds.
        drop(held.remove(0));
        assert_eq!(b.held(), 4, "an evicted slot is not given back twice");
        assert_eq!(
            b.charge_evicting(other, None).unwrap_err(),
            BudgetFull::Total
        );
    }

    #[test]
    fn the_map_forgets_a_peer_that_holds_nothing() {
        let b = PeerBudget::new("slots", 10, 10);
        let p = b.charge([10, 0, 0, 1].into()).unwrap();
        assert_eq!(b.peers(), 1);
        drop(p);
        assert_eq!((b.held(), b.peers()), (0, 0));
    }

    #[test]
    fn ipv6_is_charged_per_64_and_mapped_ipv4_as_ipv4() {
        let x: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(PeerKey::of(x), PeerKey::of(y));
        let m: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(PeerKey::of(m), PeerKey::of([10, 0, 0, 1].into()));
    }
}
