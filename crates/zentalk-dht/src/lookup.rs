//! Pure lookup iterators: which peer to ask next, given the answers so far.
//!
//! [`ClosestPeersIter`] follows rust-libp2p kad's `ClosestPeersIter` (iterative Kademlia: at
//! most `alpha` requests in flight; finished when the `num_results` closest peers known have
//! all answered or failed) but reads no clock: the node reports timeouts as failures.
//! [`DisjointPeersIter`] runs `d` such iterators over disjoint peer sets (S/Kademlia,
//! Baumgart and Mies 2007): each peer is queried by at most one path, and contacts a peer
//! returns go only to the path that asked it, so a malicious node can poison one path only.

use std::collections::{BTreeMap, HashMap};

use zentalk_crypto::NodeId;

use crate::routing::{Contact, distance};

/// At most this many candidates are remembered per path (the farthest uncontacted are
/// dropped first).
pub const MAX_ITER_PEERS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerState {
    NotContacted,
    Waiting,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
struct Peer {
    contact: Contact,
    state: PeerState,
    /// Hop depth: 1 for peers from our own table, parent + 1 otherwise.
    depth: u32,
}

/// What the iterator wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IterState {
    /// Send a request to this peer (at hop depth `depth`).
    Contact {
        /// The peer.
        contact: Contact,
        /// Its hop depth.
        depth: u32,
    },
    /// `alpha` requests are in flight (or nothing is left to ask while some are): wait.
    Waiting,
    /// The lookup is over.
    Finished,
}

/// Iterative closest-peers lookup (one path).
#[derive(Debug, Clone)]
pub struct ClosestPeersIter {
    target: NodeId,
    alpha: usize,
    num_results: usize,
    peers: BTreeMap<[u8; 32], Peer>,
    in_flight: usize,
    finished: bool,
}

impl ClosestPeersIter {
    /// Starts a lookup for `target` from `seeds` (taken from the local routing table).
    pub fn new(
        target: NodeId,
        seeds: impl IntoIterator<Item = Contact>,
        alpha: usize,
        num_results: usize,
    ) -> Self {
        let mut it = Self {
            target,
            alpha: alpha.max(1),
            num_results: num_results.max(1),
            peers: BTreeMap::new(),
            in_flight: 0,
            finished: false,
        };
        for c in seeds {
            it.add(c, 1);
        }
        it
    }

    /// The target.
    pub fn target(&self) -> &NodeId {
        &self.target
    }

    fn add(&mut self, contact: Contact, depth: u32) {
        let d = distance(&contact.id, &self.target);
        self.peers.entry(d).or_insert(Peer {
            contact,
            state: PeerState::NotContacted,
            depth,
        });
        while self.peers.len() > MAX_ITER_PEERS {
            let drop = self
                .peers
                .iter()
                .rev()
                .find(|(_, p)| p.state == PeerState::NotContacted)
                .map(|(d, _)| *d);
            match drop {
                Some(d) => {
                    self.peers.remove(&d);
                }
                None => break,
            }
        }
    }

    /// True if `id` is among the candidates (any state).
    pub fn knows(&self, id: &NodeId) -> bool {
        self.peers.contains_key(&distance(id, &self.target))
    }

    /// Marks `id` as skipped without a request (another path owns it).
    pub fn skip(&mut self, id: &NodeId) {
        if let Some(p) = self.peers.get_mut(&distance(id, &self.target))
            && p.state == PeerState::NotContacted
        {
            p.state = PeerState::Failed;
        }
    }

    /// The peer answered; `closer` are the contacts it returned. Returns false if the peer was
    /// not being waited for (late or unknown answer: ignored).
    pub fn on_success(&mut self, id: &NodeId, closer: impl IntoIterator<Item = Contact>) -> bool {
        let d = distance(id, &self.target);
        let depth = match self.peers.get_mut(&d) {
            Some(p) if p.state == PeerState::Waiting => {
                p.state = PeerState::Succeeded;
                p.depth
            }
            _ => return false,
        };
        self.in_flight = self.in_flight.saturating_sub(1);
        for c in closer {
            if !self.finished {
                self.add(c, depth + 1);
            }
        }
        true
    }

    /// The request to `id` failed (timeout, bad answer). Returns false if not waited for.
    pub fn on_failure(&mut self, id: &NodeId) -> bool {
        let d = distance(id, &self.target);
        match self.peers.get_mut(&d) {
            Some(p) if p.state == PeerState::Waiting => {
                p.state = PeerState::Failed;
                self.in_flight = self.in_flight.saturating_sub(1);
                true
            }
            _ => false,
        }
    }

    /// Stops the lookup now (e.g. a value was found).
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// True once finished.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The next step; call repeatedly until it returns `Waiting` or `Finished`.
    pub fn next_step(&mut self) -> IterState {
        if self.finished {
            return IterState::Finished;
        }
        let mut successes = 0usize;
        let mut waiting = 0usize;
        let mut pick: Option<[u8; 32]> = None;
        for (d, p) in self.peers.iter() {
            match p.state {
                PeerState::Succeeded => {
                    successes += 1;
                    if successes >= self.num_results {
                        break;
                    }
                }
                PeerState::Waiting => waiting += 1,
                PeerState::Failed => {}
                PeerState::NotContacted => {
                    if self.in_flight < self.alpha {
                        pick = Some(*d);
                    }
                    break;
                }
            }
        }
        if let Some(d) = pick
            && let Some(p) = self.peers.get_mut(&d)
        {
            p.state = PeerState::Waiting;
            self.in_flight += 1;
            return IterState::Contact {
                contact: p.contact,
                depth: p.depth,
            };
        }
        if successes >= self.num_results || (waiting == 0 && self.in_flight == 0) {
            // Either the closest `num_results` all answered, or nothing is left to ask.
            if self.in_flight == 0 || successes >= self.num_results {
                self.finished = true;
                return IterState::Finished;
            }
        }
        IterState::Waiting
    }

    /// The closest peers that answered, closest first (at most `num_results`).
    pub fn results(&self) -> Vec<Contact> {
        self.peers
            .values()
            .filter(|p| p.state == PeerState::Succeeded)
            .take(self.num_results)
            .map(|p| p.contact)
            .collect()
    }
}

/// S/Kademlia lookup over `d` disjoint paths.
#[derive(Debug, Clone)]
pub struct DisjointPeersIter {
    paths: Vec<ClosestPeersIter>,
    /// Which path contacted (claimed) a peer.
    owner: HashMap<NodeId, usize>,
    next_path: usize,
    num_results: usize,
    target: NodeId,
}

impl DisjointPeersIter {
    /// Splits `seeds` round-robin over `d` paths (closest first), each with `alpha` in flight.
    pub fn new(
        target: NodeId,
        seeds: impl IntoIterator<Item = Contact>,
        alpha: usize,
        num_results: usize,
        d: usize,
    ) -> Self {
        let d = d.max(1);
        let mut seeds: Vec<Contact> = seeds.into_iter().collect();
        seeds.sort_by_key(|c| distance(&c.id, &target));
        let mut per: Vec<Vec<Contact>> = vec![Vec::new(); d];
        for (i, c) in seeds.into_iter().enumerate() {
            if let Some(v) = per.get_mut(i % d) {
                v.push(c);
            }
        }
        Self {
            paths: per
                .into_iter()
                .map(|s| ClosestPeersIter::new(target, s, alpha, num_results))
                .collect(),
            owner: HashMap::new(),
            next_path: 0,
            num_results,
            target,
        }
    }

    /// Number of paths.
    pub fn paths(&self) -> usize {
        self.paths.len()
    }

    /// The next step: a peer to contact on some path, `Waiting` or `Finished` (all paths).
    pub fn next_step(&mut self) -> (usize, IterState) {
        let n = self.paths.len();
        let mut any_waiting = false;
        for off in 0..n {
            let i = (self.next_path + off) % n;
            while let Some(path) = self.paths.get_mut(i) {
                match path.next_step() {
                    IterState::Contact { contact, depth } => {
                        if let Some(&o) = self.owner.get(&contact.id)
                            && o != i
                        {
                            // Another path already owns this peer: keep paths disjoint.
                            path.on_failure(&contact.id);
                            continue;
                        }
                        self.owner.insert(contact.id, i);
                        self.next_path = (i + 1) % n;
                        return (i, IterState::Contact { contact, depth });
                    }
                    IterState::Waiting => {
                        any_waiting = true;
                        break;
                    }
                    IterState::Finished => break,
                }
            }
        }
        if any_waiting {
            (0, IterState::Waiting)
        } else {
            (0, IterState::Finished)
        }
    }

    /// Path `path` got an answer from `id`. Contacts already claimed by another path are
    /// skipped in this one.
    pub fn on_success(&mut self, path: usize, id: &NodeId, closer: Vec<Contact>) -> bool {
        let owner = &self.owner;
        let filtered: Vec<Contact> = closer
            .into_iter()
            .filter(|c| owner.get(&c.id).is_none_or(|&o| o == path))
            .collect();
        self.paths
            .get_mut(path)
            .is_some_and(|p| p.on_success(id, filtered))
    }

    /// Path `path`'s request to `id` failed.
    pub fn on_failure(&mut self, path: usize, id: &NodeId) -> bool {
        self.paths.get_mut(path).is_some_and(|p| p.on_failure(id))
    }

    /// Stops every path.
    pub fn finish(&mut self) {
        for p in &mut self.paths {
            p.finish();
        }
    }

    /// Requests in flight over all paths.
    pub fn in_flight(&self) -> usize {
        self.paths.iter().map(|p| p.in_flight()).sum()
    }

    /// The closest answering peers over all paths, closest first.
    pub fn results(&self) -> Vec<Contact> {
        let mut all: Vec<Contact> = self.paths.iter().flat_map(|p| p.results()).collect();
        all.sort_by_key(|c| distance(&c.id, &self.target));
        all.dedup_by_key(|c| c.id);
        all.truncate(self.num_results);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn c(b: u8) -> Contact {
        let mut id = [0u8; 32];
        id[0] = b;
        Contact {
            id: NodeId::from_bytes(id),
            addr: SocketAddr::from(([127, 0, 0, 1], 1000 + u16::from(b))),
        }
    }

    #[test]
    fn respects_alpha_and_finishes_when_closest_answered() {
        let target = NodeId::from_bytes([0u8; 32]);
        let mut it = ClosestPeersIter::new(target, [c(40), c(50), c(60), c(70)], 2, 2);
        let first = it.next_step();
        let second = it.next_step();
        assert_eq!(
            first,
            IterState::Contact {
                contact: c(40),
                depth: 1
            }
        );
        assert_eq!(
            second,
            IterState::Contact {
                contact: c(50),
                depth: 1
            }
        );
        assert_eq!(it.next_step(), IterState::Waiting);
        // 40 returns two closer peers.
        assert!(it.on_success(&c(40).id, [c(10), c(20)]));
        assert_eq!(
            it.next_step(),
            IterState::Contact {
                contact: c(10),
                depth: 2
            }
        );
        assert_eq!(it.next_step(), IterState::Waiting);
        assert!(it.on_failure(&c(50).id));
        assert_eq!(
            it.next_step(),
            IterState::Contact {
                contact: c(20),
                depth: 2
            }
        );
        assert!(it.on_success(&c(10).id, []));
        assert!(it.on_success(&c(20).id, []));
        assert_eq!(it.next_step(), IterState::Finished);
        assert_eq!(it.results(), vec![c(10), c(20)]);
        // Late answers are ignored.
        assert!(!it.on_success(&c(50).id, [c(1)]));
    }

    #[test]
    fn finishes_when_everyone_failed() {
        let target = NodeId::from_bytes([0u8; 32]);
        let mut it = ClosestPeersIter::new(target, [c(1)], 3, 20);
        assert!(matches!(it.next_step(), IterState::Contact { .. }));
        it.on_failure(&c(1).id);
        assert_eq!(it.next_step(), IterState::Finished);
        assert!(it.results().is_empty());
        let mut empty = ClosestPeersIter::new(target, [], 3, 20);
        assert_eq!(empty.next_step(), IterState::Finished);
    }

    #[test]
    fn candidate_set_is_bounded() {
        let target = NodeId::from_bytes([0u8; 32]);
        let seeds: Vec<Contact> = (0..=255u8)
            .flat_map(|a| {
                (0..3u8).map(move |b| {
                    let mut id = [0u8; 32];
                    id[0] = a;
                    id[1] = b + 1;
                    Contact {
                        id: NodeId::from_bytes(id),
                        addr: SocketAddr::from(([127, 0, 0, 1], 1)),
                    }
                })
            })
            .collect();
        let it = ClosestPeersIter::new(target, seeds, 3, 20);
        assert_eq!(it.peers.len(), MAX_ITER_PEERS);
    }

    #[test]
    fn disjoint_paths_never_share_a_peer() {
        let target = NodeId::from_bytes([0u8; 32]);
        let mut it = DisjointPeersIter::new(target, [c(40), c(50), c(60)], 1, 3, 3);
        let mut contacted: HashMap<NodeId, usize> = HashMap::new();
        for _ in 0..3 {
            match it.next_step() {
                (p, IterState::Contact { contact, .. }) => {
                    contacted.insert(contact.id, p);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // Every path returns the same closer peer 5; only the first to report may contact it.
        let p40 = contacted[&c(40).id];
        let p50 = contacted[&c(50).id];
        assert_ne!(p40, p50);
        it.on_success(p40, &c(40).id, vec![c(5)]);
        it.on_success(p50, &c(50).id, vec![c(5)]);
        let mut fives = 0;
        while let (p, IterState::Contact { contact, .. }) = it.next_step() {
            if contact.id == c(5).id {
                fives += 1;
                assert_eq!(p, p40);
            }
            it.on_success(p, &contact.id, vec![]);
        }
        assert_eq!(fives, 1);
    }
}
