//! Bounded record storage: one record per key (the highest valid sequence number), a cap on
//! the total, a cap per publisher (the source IP of the STORE) and a token-bucket STORE rate
//! limit per publisher.

use std::collections::HashMap;
use std::net::IpAddr;

use zentalk_crypto::NodeId;

use crate::error::StoreError;
use crate::record::Record;

/// Store limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Records held in total.
    pub max_records: usize,
    /// Records held per publisher (source IP).
    pub max_per_publisher: usize,
    /// STORE burst per publisher.
    pub store_burst: u32,
    /// STOREs refilled per publisher per second.
    pub stores_per_second: u32,
    /// Publishers tracked by the rate limiter (idle ones are forgotten first).
    pub max_tracked_publishers: usize,
}

/// Default total records per node.
pub const DEFAULT_MAX_RECORDS: usize = 65_536;
/// Default records per publisher.
pub const DEFAULT_MAX_PER_PUBLISHER: usize = 256;
/// Default STORE burst per publisher.
pub const DEFAULT_STORE_BURST: u32 = 64;
/// Default STORE refill rate per publisher (per second).
pub const DEFAULT_STORES_PER_SECOND: u32 = 8;
/// Default number of publishers the rate limiter tracks.
pub const DEFAULT_MAX_TRACKED_PUBLISHERS: usize = 8192;

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_records: DEFAULT_MAX_RECORDS,
            max_per_publisher: DEFAULT_MAX_PER_PUBLISHER,
            store_burst: DEFAULT_STORE_BURST,
            stores_per_second: DEFAULT_STORES_PER_SECOND,
            max_tracked_publishers: DEFAULT_MAX_TRACKED_PUBLISHERS,
        }
    }
}

#[derive(Debug, Clone)]
struct Stored {
    record: Record,
    publisher: IpAddr,
}

#[derive(Debug, Clone, Copy)]
struct TokenBucket {
    /// Tokens in thousandths.
    milli_tokens: u64,
    last_ms: u64,
}

/// Outcome of a successful [`RecordStore::put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// No record was held for the key.
    New,
    /// An older version was replaced.
    Replaced {
        /// Sequence number replaced.
        previous: u64,
    },
}

/// The records a node holds for others.
#[derive(Debug, Clone, Default)]
pub struct RecordStore {
    limits: StoreLimits,
    records: HashMap<NodeId, Stored>,
    per_publisher: HashMap<IpAddr, usize>,
    rate: HashMap<IpAddr, TokenBucket>,
}

impl RecordStore {
    /// An empty store.
    pub fn new(limits: StoreLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Number of records held (some may have expired since the last purge).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Takes one STORE token for `publisher`; `Err(RateLimited)` if none is left.
    pub fn check_rate(&mut self, publisher: IpAddr, now_ms: u64) -> Result<(), StoreError> {
        let burst = u64::from(self.limits.store_burst) * 1000;
        if !self.rate.contains_key(&publisher)
            && self.rate.len() >= self.limits.max_tracked_publishers
        {
            // Forget publishers whose bucket has refilled: they are idle.
            let per_sec = u64::from(self.limits.stores_per_second);
            self.rate.retain(|_, b| {
                b.milli_tokens + now_ms.saturating_sub(b.last_ms).saturating_mul(per_sec) < burst
            });
            if self.rate.len() >= self.limits.max_tracked_publishers {
                return Err(StoreError::RateLimited);
            }
        }
        let b = self.rate.entry(publisher).or_insert(TokenBucket {
            milli_tokens: burst,
            last_ms: now_ms,
        });
        let elapsed = now_ms.saturating_sub(b.last_ms);
        b.milli_tokens = b
            .milli_tokens
            .saturating_add(elapsed.saturating_mul(u64::from(self.limits.stores_per_second)))
            .min(burst);
        b.last_ms = now_ms.max(b.last_ms);
        if b.milli_tokens < 1000 {
            return Err(StoreError::RateLimited);
        }
        b.milli_tokens -= 1000;
        Ok(())
    }

    /// Validates and stores `record` offered by `publisher`. The rate limit is checked
    /// separately by [`RecordStore::check_rate`] (the node does both).
    pub fn put(
        &mut self,
        record: Record,
        publisher: IpAddr,
        now_ms: u64,
    ) -> Result<PutOutcome, StoreError> {
        record.validate(now_ms)?;
        if let Some(old) = self.records.get(&record.key) {
            if old.record.expires_at_ms > now_ms && old.record.sequence >= record.sequence {
                return Err(StoreError::Stale {
                    stored: old.record.sequence,
                    offered: record.sequence,
                });
            }
        } else {
            if self.records.len() >= self.limits.max_records {
                self.purge_expired(now_ms);
            }
            if self.records.len() >= self.limits.max_records {
                return Err(StoreError::StoreFull {
                    limit: self.limits.max_records,
                });
            }
        }
        let count = self.per_publisher.get(&publisher).copied().unwrap_or(0);
        let same_publisher = self
            .records
            .get(&record.key)
            .is_some_and(|s| s.publisher == publisher);
        if !same_publisher && count >= self.limits.max_per_publisher {
            return Err(StoreError::PublisherFull {
                limit: self.limits.max_per_publisher,
            });
        }
        let key = record.key;
        let previous = self.records.insert(key, Stored { record, publisher });
        if let Some(prev) = &previous {
            self.dec_publisher(prev.publisher);
        }
        *self.per_publisher.entry(publisher).or_insert(0) += 1;
        Ok(match previous {
            Some(p) => PutOutcome::Replaced {
                previous: p.record.sequence,
            },
            None => PutOutcome::New,
        })
    }

    fn dec_publisher(&mut self, publisher: IpAddr) {
        if let Some(c) = self.per_publisher.get_mut(&publisher) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.per_publisher.remove(&publisher);
            }
        }
    }

    /// The live record under `key`.
    pub fn get(&self, key: &NodeId, now_ms: u64) -> Option<&Record> {
        self.records
            .get(key)
            .map(|s| &s.record)
            .filter(|r| r.expires_at_ms > now_ms)
    }

    /// Sequence number held under `key` (0 if none or expired).
    pub fn sequence(&self, key: &NodeId, now_ms: u64) -> u64 {
        self.get(key, now_ms).map_or(0, |r| r.sequence)
    }

    /// Drops every expired record.
    pub fn purge_expired(&mut self, now_ms: u64) {
        let expired: Vec<(NodeId, IpAddr)> = self
            .records
            .iter()
            .filter(|(_, s)| s.record.expires_at_ms <= now_ms)
            .map(|(k, s)| (*k, s.publisher))
            .collect();
        for (k, p) in expired {
            self.records.remove(&k);
            self.dec_publisher(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Capabilities, RelayDescriptor};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use zentalk_crypto::IdentityKeyPair;

    const NOW: u64 = 1_800_000_000_000;

    fn rec(id: &IdentityKeyPair, seq: u64, expires: u64) -> Record {
        RelayDescriptor {
            addrs: vec!["192.0.2.1:1".parse().unwrap()],
            noise_static_key: [1u8; 32],
            onion_keys: vec![(1, [2u8; 32])],
            capabilities: Capabilities::STORE_NOTHING,
        }
        .sign(id, seq, expires)
        .unwrap()
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn higher_sequence_wins_replay_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(20);
        let id = IdentityKeyPair::generate(&mut rng);
        let mut s = RecordStore::new(StoreLimits::default());
        assert_eq!(
            s.put(rec(&id, 2, NOW + 10), ip(1), NOW),
            Ok(PutOutcome::New)
        );
        assert_eq!(
            s.put(rec(&id, 1, NOW + 10), ip(2), NOW),
            Err(StoreError::Stale {
                stored: 2,
                offered: 1
            })
        );
        assert_eq!(
            s.put(rec(&id, 2, NOW + 10), ip(2), NOW),
            Err(StoreError::Stale {
                stored: 2,
                offered: 2
            })
        );
        assert_eq!(
            s.put(rec(&id, 3, NOW + 10), ip(2), NOW),
            Ok(PutOutcome::Replaced { previous: 2 })
        );
        assert_eq!(s.sequence(&NodeId::of(&id.public_key()), NOW), 3);
        // Once expired, the record is gone and an older version may be stored again only if
        // it is itself still valid.
        assert!(s.get(&NodeId::of(&id.public_key()), NOW + 10).is_none());
        assert!(s.put(rec(&id, 1, NOW + 10), ip(2), NOW + 10).is_err());
        assert_eq!(
            s.put(rec(&id, 1, NOW + 20), ip(2), NOW + 10),
            Ok(PutOutcome::Replaced { previous: 3 })
        );
        s.purge_expired(NOW + 20);
        assert!(s.is_empty());
    }

    #[test]
    fn forged_record_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let id = IdentityKeyPair::generate(&mut rng);
        let mut r = rec(&id, 1, NOW + 10);
        r.signature[0] ^= 1;
        let mut s = RecordStore::new(StoreLimits::default());
        assert!(matches!(s.put(r, ip(1), NOW), Err(StoreError::Invalid(_))));
        assert!(s.is_empty());
    }

    #[test]
    fn total_and_publisher_limits() {
        let mut rng = ChaCha20Rng::seed_from_u64(22);
        let limits = StoreLimits {
            max_records: 3,
            max_per_publisher: 2,
            ..StoreLimits::default()
        };
        let mut s = RecordStore::new(limits);
        let ids: Vec<IdentityKeyPair> = (0..4)
            .map(|_| IdentityKeyPair::generate(&mut rng))
            .collect();
        s.put(rec(&ids[0], 1, NOW + 10), ip(1), NOW).unwrap();
        s.put(rec(&ids[1], 1, NOW + 10), ip(1), NOW).unwrap();
        assert_eq!(
            s.put(rec(&ids[2], 1, NOW + 10), ip(1), NOW),
            Err(StoreError::PublisherFull { limit: 2 })
        );
        // Same publisher may still update its own records.
        s.put(rec(&ids[1], 2, NOW + 10), ip(1), NOW).unwrap();
        s.put(rec(&ids[2], 1, NOW + 10), ip(2), NOW).unwrap();
        assert_eq!(
            s.put(rec(&ids[3], 1, NOW + 10), ip(3), NOW),
            Err(StoreError::StoreFull { limit: 3 })
        );
        // Expired records make room.
        s.put(rec(&ids[3], 1, NOW + 30), ip(3), NOW + 10).unwrap();
    }

    #[test]
    fn rate_limit_refills() {
        let limits = StoreLimits {
            store_burst: 2,
            stores_per_second: 1,
            max_tracked_publishers: 1,
            ..StoreLimits::default()
        };
        let mut s = RecordStore::new(limits);
        assert!(s.check_rate(ip(1), 0).is_ok());
        assert!(s.check_rate(ip(1), 0).is_ok());
        assert_eq!(s.check_rate(ip(1), 0), Err(StoreError::RateLimited));
        assert!(s.check_rate(ip(1), 1000).is_ok());
        // Tracking table full with a busy publisher: a new one is refused...
        assert_eq!(s.check_rate(ip(2), 1000), Err(StoreError::RateLimited));
        // ...until the busy one has been idle long enough to be forgotten.
        assert!(s.check_rate(ip(2), 10_000).is_ok());
    }
}
