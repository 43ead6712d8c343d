//! The Kademlia routing table: 256 k-buckets over the XOR metric, least-recently-seen order,
//! ping-before-evict and a bounded replacement cache per bucket.
//!
//! Only *verified* contacts may be inserted: the node calls [`RoutingTable::insert_verified`]
//! when a node has answered one of its own requests with a valid signature by the key whose
//! hash is the node id. Contacts learned from other nodes' answers never come here directly.

use std::net::SocketAddr;

use zentalk_crypto::NodeId;

/// A DHT node: its id and where it is reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Contact {
    /// BLAKE2b-256 of the node's identity key.
    pub id: NodeId,
    /// UDP address.
    pub addr: SocketAddr,
}

/// XOR distance between two ids (big-endian 256-bit number).
#[inline]
pub fn distance(a: &NodeId, b: &NodeId) -> [u8; 32] {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut d = [0u8; 32];
    for ((d, x), y) in d.iter_mut().zip(a).zip(b) {
        *d = x ^ y;
    }
    d
}

/// Bucket index of `other` as seen from `local`: 255 minus the number of leading zero bits of
/// the distance, or `None` for `local` itself.
pub fn bucket_index(local: &NodeId, other: &NodeId) -> Option<usize> {
    let d = distance(local, other);
    let mut zeros = 0usize;
    for byte in d {
        if byte == 0 {
            zeros += 8;
        } else {
            zeros += byte.leading_zeros() as usize;
            return Some(255 - zeros);
        }
    }
    None
}

#[derive(Debug, Clone)]
struct Entry {
    contact: Contact,
    last_seen: u64,
    failures: u8,
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    /// Front = least recently seen.
    entries: Vec<Entry>,
    /// Back = most recently seen candidate.
    replacements: Vec<Contact>,
    /// The least-recently-seen entry being pinged before a possible eviction.
    pinging: Option<NodeId>,
}

/// Result of [`RoutingTable::insert_verified`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The contact was new and is now in its bucket.
    Inserted,
    /// The contact was already present; it moved to the most-recently-seen end (address
    /// updated).
    Refreshed,
    /// The bucket is full: the contact waits in the replacement cache, and the caller must
    /// ping `ping` (the least-recently-seen entry) and report with
    /// [`RoutingTable::on_evict_ping`].
    PingBeforeEvict {
        /// The entry to ping.
        ping: Contact,
    },
    /// The bucket is full and an eviction ping is already running: the contact waits in the
    /// replacement cache.
    Queued,
    /// The contact is the local node.
    SelfId,
}

/// Entries failing this many requests in a row are dropped when a replacement is waiting.
pub const MAX_FAILURES_WITH_REPLACEMENT: u8 = 2;
/// Entries failing this many requests in a row are dropped even without a replacement.
pub const MAX_FAILURES: u8 = 5;

/// The routing table of one node.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    local: NodeId,
    k: usize,
    replacement_cache: usize,
    buckets: Vec<Bucket>,
    len: usize,
}

impl RoutingTable {
    /// An empty table for `local` with bucket size `k` and `replacement_cache` candidates per
    /// bucket.
    pub fn new(local: NodeId, k: usize, replacement_cache: usize) -> Self {
        Self {
            local,
            k: k.max(1),
            replacement_cache,
            buckets: vec![Bucket::default(); 256],
            len: 0,
        }
    }

    /// The local id.
    pub fn local_id(&self) -> &NodeId {
        &self.local
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True if `id` is in the table.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.get(id).is_some()
    }

    /// The contact stored for `id`.
    pub fn get(&self, id: &NodeId) -> Option<Contact> {
        let b = bucket_index(&self.local, id)?;
        self.buckets
            .get(b)?
            .entries
            .iter()
            .find(|e| e.contact.id == *id)
            .map(|e| e.contact)
    }

    /// Number of entries in bucket `index` (0..256).
    pub fn bucket_len(&self, index: usize) -> usize {
        self.buckets.get(index).map_or(0, |b| b.entries.len())
    }

    /// True if inserting `id` would succeed immediately or start an eviction check (used to
    /// decide whether verifying an inbound requester is worth a ping).
    pub fn wants(&self, id: &NodeId) -> bool {
        match bucket_index(&self.local, id).and_then(|b| self.buckets.get(b)) {
            None => false,
            Some(bucket) => {
                !bucket.entries.iter().any(|e| e.contact.id == *id)
                    && (bucket.entries.len() < self.k || bucket.pinging.is_none())
            }
        }
    }

    /// Inserts or refreshes a contact that has proven its id (see the module doc).
    pub fn insert_verified(&mut self, contact: Contact, now: u64) -> InsertOutcome {
        let Some(b) = bucket_index(&self.local, &contact.id) else {
            return InsertOutcome::SelfId;
        };
        let k = self.k;
        let cache = self.replacement_cache;
        let Some(bucket) = self.buckets.get_mut(b) else {
            return InsertOutcome::SelfId;
        };
        if let Some(pos) = bucket
            .entries
            .iter()
            .position(|e| e.contact.id == contact.id)
        {
            let mut e = bucket.entries.remove(pos);
            e.contact = contact;
            e.last_seen = now;
            e.failures = 0;
            bucket.entries.push(e);
            return InsertOutcome::Refreshed;
        }
        if bucket.entries.len() < k {
            bucket.entries.push(Entry {
                contact,
                last_seen: now,
                failures: 0,
            });
            bucket.replacements.retain(|c| c.id != contact.id);
            self.len += 1;
            return InsertOutcome::Inserted;
        }
        // Full: remember the candidate, most recent at the back.
        bucket.replacements.retain(|c| c.id != contact.id);
        if cache > 0 {
            if bucket.replacements.len() >= cache {
                bucket.replacements.remove(0);
            }
            bucket.replacements.push(contact);
        }
        if bucket.pinging.is_some() {
            return InsertOutcome::Queued;
        }
        match bucket.entries.first() {
            Some(lrs) => {
                let ping = lrs.contact;
                bucket.pinging = Some(ping.id);
                InsertOutcome::PingBeforeEvict { ping }
            }
            None => InsertOutcome::Queued,
        }
    }

    /// Reports the result of an eviction ping started by [`InsertOutcome::PingBeforeEvict`].
    /// Alive: the entry moves to the most-recently-seen end and the candidate stays cached.
    /// Dead: the entry is evicted and the most recent replacement takes its place.
    pub fn on_evict_ping(&mut self, id: &NodeId, alive: bool, now: u64) {
        let Some(bucket) = bucket_index(&self.local, id).and_then(|b| self.buckets.get_mut(b))
        else {
            return;
        };
        if bucket.pinging == Some(*id) {
            bucket.pinging = None;
        }
        let Some(pos) = bucket.entries.iter().position(|e| e.contact.id == *id) else {
            return;
        };
        if alive {
            let mut e = bucket.entries.remove(pos);
            e.last_seen = now;
            e.failures = 0;
            bucket.entries.push(e);
        } else {
            bucket.entries.remove(pos);
            self.len -= 1;
            if let Some(rep) = bucket.replacements.pop() {
                bucket.entries.push(Entry {
                    contact: rep,
                    last_seen: now,
                    failures: 0,
                });
                self.len += 1;
            }
        }
    }

    /// Records a failed request to `id`. The entry is dropped (and the best replacement
    /// promoted) after [`MAX_FAILURES_WITH_REPLACEMENT`] failures if a replacement waits, or
    /// after [`MAX_FAILURES`] otherwise. Returns true if the entry was removed.
    pub fn on_failure(&mut self, id: &NodeId, now: u64) -> bool {
        let Some(bucket) = bucket_index(&self.local, id).and_then(|b| self.buckets.get_mut(b))
        else {
            return false;
        };
        let Some(pos) = bucket.entries.iter().position(|e| e.contact.id == *id) else {
            return false;
        };
        let failures = match bucket.entries.get_mut(pos) {
            Some(e) => {
                e.failures = e.failures.saturating_add(1);
                e.failures
            }
            None => return false,
        };
        let has_rep = !bucket.replacements.is_empty();
        if (has_rep && failures >= MAX_FAILURES_WITH_REPLACEMENT) || failures >= MAX_FAILURES {
            bucket.entries.remove(pos);
            self.len -= 1;
            if bucket.pinging == Some(*id) {
                bucket.pinging = None;
            }
            if let Some(rep) = bucket.replacements.pop() {
                bucket.entries.push(Entry {
                    contact: rep,
                    last_seen: now,
                    failures: 0,
                });
                self.len += 1;
            }
            return true;
        }
        false
    }

    /// Removes `id` if present.
    pub fn remove(&mut self, id: &NodeId) -> bool {
        let Some(bucket) = bucket_index(&self.local, id).and_then(|b| self.buckets.get_mut(b))
        else {
            return false;
        };
        let before = bucket.entries.len();
        bucket.entries.retain(|e| e.contact.id != *id);
        bucket.replacements.retain(|c| c.id != *id);
        let removed = bucket.entries.len() != before;
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Up to `n` entries closest to `target`, closest first. Visits buckets in increasing
    /// distance order (see [`buckets_by_distance`]) and stops once `n` entries are gathered,
    /// so the cost is about `n` entries, not the table size.
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<Contact> {
        let mut out: Vec<Contact> = Vec::with_capacity(n + self.k);
        let mut tmp: Vec<([u8; 32], Contact)> = Vec::with_capacity(self.k);
        let d = distance(&self.local, target);
        let t = bucket_index(&self.local, target);
        let mut order: Vec<usize> = self
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.entries.is_empty())
            .map(|(i, _)| i)
            .collect();
        order.sort_unstable_by_key(|&j| order_key(&d, t, j));
        for b in order {
            if out.len() >= n {
                break;
            }
            let Some(bucket) = self.buckets.get(b) else {
                continue;
            };
            if bucket.entries.is_empty() {
                continue;
            }
            tmp.clear();
            tmp.extend(
                bucket
                    .entries
                    .iter()
                    .map(|e| (distance(&e.contact.id, target), e.contact)),
            );
            tmp.sort_unstable_by_key(|a| a.0);
            out.extend(tmp.iter().map(|(_, c)| *c));
        }
        out.truncate(n);
        out
    }

    /// Every entry (bucket order).
    pub fn iter(&self) -> impl Iterator<Item = Contact> + '_ {
        self.buckets
            .iter()
            .flat_map(|b| b.entries.iter().map(|e| e.contact))
    }

    /// Indices of non-empty buckets.
    pub fn non_empty_buckets(&self) -> impl Iterator<Item = usize> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.entries.is_empty())
            .map(|(i, _)| i)
    }

    /// When the entry was last seen (ms).
    pub fn last_seen(&self, id: &NodeId) -> Option<u64> {
        let b = bucket_index(&self.local, id)?;
        self.buckets
            .get(b)?
            .entries
            .iter()
            .find(|e| e.contact.id == *id)
            .map(|e| e.last_seen)
    }
}

fn bit(d: &[u8; 32], j: usize) -> bool {
    d.get(31 - j / 8)
        .is_some_and(|byte| (byte >> (j % 8)) & 1 == 1)
}

/// Bucket indices ordered so that every entry of an earlier bucket is closer to `target` than
/// every entry of a later one: the target's own bucket `t`, then the buckets below `t` whose
/// bit of `distance(local, target)` is set (descending), then those whose bit is clear
/// (ascending), then the buckets above `t` (ascending).
pub fn buckets_by_distance(local: &NodeId, target: &NodeId) -> Vec<usize> {
    let d = distance(local, target);
    let t = bucket_index(local, target);
    let mut order: Vec<usize> = (0..256).collect();
    order.sort_unstable_by_key(|&j| order_key(&d, t, j));
    order
}

/// Sort key of bucket `j` for a target at distance `d` from us, in bucket `t`.
fn order_key(d: &[u8; 32], t: Option<usize>, j: usize) -> (u8, usize) {
    match t {
        None => (0, j),
        Some(t) if j == t => (0, 0),
        Some(t) if j < t && bit(d, j) => (1, 255 - j),
        Some(t) if j < t => (2, j),
        Some(_) => (3, j),
    }
}

/// A random id whose bucket index relative to `local` is `index` (for bucket refresh).
pub fn random_id_in_bucket(
    local: &NodeId,
    index: usize,
    rng: &mut impl rand_core::RngCore,
) -> NodeId {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    let index = index.min(255);
    // Distance must have its highest set bit at position `index` (counting from LSB).
    let bit_from_msb = 255 - index;
    let byte = bit_from_msb / 8;
    let bit = 7 - (bit_from_msb % 8);
    let mut d = bytes;
    for b in d.iter_mut().take(byte) {
        *b = 0;
    }
    if let Some(b) = d.get_mut(byte) {
        let mask_high: u8 = if bit == 7 { 0 } else { 0xffu8 << (bit + 1) };
        *b &= !mask_high;
        *b |= 1 << bit;
    }
    let l = local.as_bytes();
    let mut out = [0u8; 32];
    for i in 0..32 {
        out[i] = l[i] ^ d[i];
    }
    NodeId::from_bytes(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{RngCore, SeedableRng};

    fn id_with_prefix(local: &NodeId, index: usize, rng: &mut ChaCha20Rng) -> NodeId {
        random_id_in_bucket(local, index, rng)
    }

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1000 + i))
    }

    #[test]
    fn bucket_index_matches_leading_zeros() {
        let a = NodeId::from_bytes([0u8; 32]);
        let mut b = [0u8; 32];
        b[31] = 1;
        assert_eq!(bucket_index(&a, &NodeId::from_bytes(b)), Some(0));
        let mut c = [0u8; 32];
        c[0] = 0x80;
        assert_eq!(bucket_index(&a, &NodeId::from_bytes(c)), Some(255));
        assert_eq!(bucket_index(&a, &a), None);
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for i in [0usize, 7, 8, 100, 254, 255] {
            let id = random_id_in_bucket(&a, i, &mut rng);
            assert_eq!(bucket_index(&a, &id), Some(i));
        }
    }

    #[test]
    fn full_bucket_pings_lrs_then_evicts_dead_and_promotes_replacement() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let local = NodeId::from_bytes([7u8; 32]);
        let mut t = RoutingTable::new(local, 3, 2);
        let ids: Vec<NodeId> = (0..5)
            .map(|_| id_with_prefix(&local, 200, &mut rng))
            .collect();
        for (i, id) in ids.iter().take(3).enumerate() {
            let c = Contact {
                id: *id,
                addr: addr(i as u16),
            };
            assert_eq!(t.insert_verified(c, i as u64), InsertOutcome::Inserted);
        }
        let c3 = Contact {
            id: ids[3],
            addr: addr(3),
        };
        let out = t.insert_verified(c3, 10);
        assert_eq!(
            out,
            InsertOutcome::PingBeforeEvict {
                ping: Contact {
                    id: ids[0],
                    addr: addr(0)
                }
            }
        );
        // A second candidate only queues while the ping runs.
        let c4 = Contact {
            id: ids[4],
            addr: addr(4),
        };
        assert_eq!(t.insert_verified(c4, 11), InsertOutcome::Queued);
        // LRS is alive: it stays, moved to MRS; nothing evicted.
        t.on_evict_ping(&ids[0], true, 12);
        assert!(t.contains(&ids[0]) && !t.contains(&ids[3]) && !t.contains(&ids[4]));
        assert_eq!(t.len(), 3);
        // Next candidate pings the new LRS (ids[1]); it is dead: evicted, newest replacement in.
        let out = t.insert_verified(c3, 13);
        assert_eq!(
            out,
            InsertOutcome::PingBeforeEvict {
                ping: Contact {
                    id: ids[1],
                    addr: addr(1)
                }
            }
        );
        t.on_evict_ping(&ids[1], false, 14);
        assert!(!t.contains(&ids[1]));
        assert!(t.contains(&ids[3]));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn refresh_moves_to_back_and_updates_address() {
        let local = NodeId::from_bytes([1u8; 32]);
        let mut t = RoutingTable::new(local, 20, 4);
        let id = NodeId::from_bytes([2u8; 32]);
        t.insert_verified(Contact { id, addr: addr(1) }, 1);
        assert_eq!(
            t.insert_verified(Contact { id, addr: addr(2) }, 5),
            InsertOutcome::Refreshed
        );
        assert_eq!(t.get(&id).map(|c| c.addr), Some(addr(2)));
        assert_eq!(t.last_seen(&id), Some(5));
        assert_eq!(
            t.insert_verified(
                Contact {
                    id: local,
                    addr: addr(3)
                },
                5
            ),
            InsertOutcome::SelfId
        );
    }

    #[test]
    fn failures_drop_entries() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let local = NodeId::from_bytes([9u8; 32]);
        let mut t = RoutingTable::new(local, 20, 4);
        let id = id_with_prefix(&local, 250, &mut rng);
        t.insert_verified(Contact { id, addr: addr(1) }, 0);
        for _ in 0..MAX_FAILURES - 1 {
            assert!(!t.on_failure(&id, 1));
        }
        assert!(t.on_failure(&id, 1));
        assert!(t.is_empty());
    }

    #[test]
    fn closest_is_sorted_by_xor_distance() {
        let seed = 4;
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let local = NodeId::from_bytes([0u8; 32]);
        let mut t = RoutingTable::new(local, 20, 0);
        let mut all = Vec::new();
        for i in 0..300u16 {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            let id = NodeId::from_bytes(b);
            if t.insert_verified(Contact { id, addr: addr(i) }, 0) == InsertOutcome::Inserted {
                all.push(id);
            }
        }
        let target = NodeId::from_bytes([0x55u8; 32]);
        let got = t.closest(&target, 10);
        all.sort_by_key(|id| distance(id, &target));
        let want: Vec<NodeId> = all.into_iter().take(10).collect();
        assert_eq!(
            got.iter().map(|c| c.id).collect::<Vec<_>>(),
            want,
            "seed {seed}"
        );
    }

    #[test]
    fn closest_matches_brute_force_for_near_and_far_targets() {
        let seed = 5;
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut lb = [0u8; 32];
        rng.fill_bytes(&mut lb);
        let local = NodeId::from_bytes(lb);
        let mut t = RoutingTable::new(local, 4, 0);
        let mut all = Vec::new();
        for i in 0..2000u16 {
            // Ids spread over many buckets, not only the top few.
            let b = (rng.next_u32() % 256) as usize;
            let id = random_id_in_bucket(&local, b, &mut rng);
            if t.insert_verified(Contact { id, addr: addr(i) }, 0) == InsertOutcome::Inserted {
                all.push(id);
            }
        }
        for j in 0..60 {
            let target = if j % 2 == 0 {
                random_id_in_bucket(&local, (rng.next_u32() % 256) as usize, &mut rng)
            } else {
                let mut b = [0u8; 32];
                rng.fill_bytes(&mut b);
                NodeId::from_bytes(b)
            };
            let n = 1 + (j % 25);
            let got: Vec<NodeId> = t.closest(&target, n).iter().map(|c| c.id).collect();
            let mut want = all.clone();
            want.sort_by_key(|id| distance(id, &target));
            want.truncate(n);
            assert_eq!(got, want, "seed {seed}, target {j}");
        }
        assert_eq!(t.closest(&local, 3).len(), 3);
    }

    #[test]
    fn bucket_order_is_by_distance() {
        let seed = 6;
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let local = NodeId::from_bytes([0x3cu8; 32]);
        for _ in 0..20 {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            let target = NodeId::from_bytes(b);
            let order = buckets_by_distance(&local, &target);
            assert_eq!(order.len(), 256);
            // One sample id per bucket: their distances to the target must increase.
            let ds: Vec<[u8; 32]> = order
                .iter()
                .map(|&j| distance(&random_id_in_bucket(&local, j, &mut rng), &target))
                .collect();
            assert!(ds.windows(2).all(|w| w[0] < w[1]), "seed {seed}");
        }
    }
}
