//! The relay side: epoch onion keys, the per-epoch replay filter, per-hop processing.

use std::collections::{BTreeMap, BTreeSet};

use crate::kem::{HopKem, X25519Kem};
use crate::packet::{Processed, unwrap_layer};
use crate::{EPOCH_GRACE, MAX_EPOCH_KEYS, OnionError, REPLAY_TAG_LEN};

/// A bounded set of replay tags for one key epoch.
///
/// Overflow policy: **refuse**. Once `capacity` tags are recorded, every new packet of this
/// epoch is refused with [`OnionError::ReplayFilterFull`] until the epoch ends and the filter
/// is dropped with its key. Forgetting old tags instead would let whoever floods the filter
/// replay any packet afterwards; refusing turns the same flood into a denial of service that
/// ends with the epoch and that link-level rate limits make expensive. Memory is at most
/// `capacity` tags of [`REPLAY_TAG_LEN`] bytes (plus B-tree overhead) per live epoch.
///
/// A B-tree rather than a hash set: no hash function for a packet sender to grind collisions
/// against, no random hasher keys, deterministic behaviour.
#[derive(Debug, Clone)]
pub struct ReplayFilter {
    tags: BTreeSet<[u8; REPLAY_TAG_LEN]>,
    capacity: usize,
}

impl ReplayFilter {
    /// An empty filter holding at most `capacity` tags.
    pub fn new(capacity: usize) -> Self {
        Self {
            tags: BTreeSet::new(),
            capacity,
        }
    }

    /// Records `tag`; refuses a tag already seen ([`OnionError::Replay`]) or a new tag when
    /// the filter is full ([`OnionError::ReplayFilterFull`]).
    pub fn check_and_insert(&mut self, tag: &[u8; REPLAY_TAG_LEN]) -> Result<(), OnionError> {
        if self.tags.contains(tag) {
            return Err(OnionError::Replay);
        }
        if self.tags.len() >= self.capacity {
            return Err(OnionError::ReplayFilterFull {
                capacity: self.capacity,
            });
        }
        self.tags.insert(*tag);
        Ok(())
    }

    /// Number of tags recorded.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    /// Whether no tag is recorded.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

struct EpochState<K: HopKem> {
    secret: K::SecretKey,
    replay: ReplayFilter,
}

/// A relay's onion state: one secret key and one replay filter per live key epoch.
///
/// Contains no networking code and reads no clock: the current epoch is an argument of
/// [`OnionRelay::process`]. Call order: [`OnionRelay::insert_epoch_key`] when an epoch key is
/// created (before its descriptor is published), [`OnionRelay::process`] for every incoming
/// packet; epochs older than `current_epoch - EPOCH_GRACE` are dropped, keys and replay tags
/// together, on every call to `process` (or explicitly with [`OnionRelay::retire_before`]).
pub struct OnionRelay<K: HopKem = X25519Kem> {
    epochs: BTreeMap<u32, EpochState<K>>,
    replay_capacity: usize,
}

impl<K: HopKem> core::fmt::Debug for OnionRelay<K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OnionRelay")
            .field("epochs", &self.epochs.keys().collect::<Vec<_>>())
            .field("replay_capacity", &self.replay_capacity)
            .field("secrets", &"[REDACTED]")
            .finish()
    }
}

impl OnionRelay<X25519Kem> {
    /// An X25519 relay with no key yet, whose replay filters hold at most `replay_capacity`
    /// tags per epoch ([`crate::DEFAULT_REPLAY_CAPACITY`] is a sensible value).
    pub fn new(replay_capacity: usize) -> Self {
        Self::for_kem(replay_capacity)
    }
}

impl<K: HopKem> OnionRelay<K> {
    /// A relay of the key-agreement scheme `K` (see [`OnionRelay::new`]).
    pub fn for_kem(replay_capacity: usize) -> Self {
        Self {
            epochs: BTreeMap::new(),
            replay_capacity,
        }
    }

    /// Installs the onion secret key of `epoch` (replacing one already installed for that
    /// epoch resets its replay filter). At most [`MAX_EPOCH_KEYS`] epochs are held.
    pub fn insert_epoch_key(&mut self, epoch: u32, secret: K::SecretKey) -> Result<(), OnionError> {
        if !self.epochs.contains_key(&epoch) && self.epochs.len() >= MAX_EPOCH_KEYS {
            return Err(OnionError::TooManyEpochKeys {
                max: MAX_EPOCH_KEYS,
            });
        }
        self.epochs.insert(
            epoch,
            EpochState {
                secret,
                replay: ReplayFilter::new(self.replay_capacity),
            },
        );
        Ok(())
    }

    /// Drops the keys and replay filters of every epoch before `epoch`.
    pub fn retire_before(&mut self, epoch: u32) {
        while let Some((&oldest, _)) = self.epochs.first_key_value() {
            if oldest >= epoch {
                break;
            }
            self.epochs.pop_first();
        }
    }

    /// The epochs whose keys are held, oldest first.
    pub fn epochs(&self) -> impl Iterator<Item = u32> + '_ {
        self.epochs.keys().copied()
    }

    /// The replay filter of `epoch`, if its key is held.
    pub fn replay_filter(&self, epoch: u32) -> Option<&ReplayFilter> {
        self.epochs.get(&epoch).map(|e| &e.replay)
    }

    /// Processes one incoming packet at `current_epoch`.
    ///
    /// The packet's epoch must lie in `current_epoch - EPOCH_GRACE ..= current_epoch` and its
    /// key must be held. The header MAC is checked before the replay filter is consulted, and
    /// the replay tag is recorded before anything is decrypted, so a packet is acted on at
    /// most once per epoch key. Never panics, whatever `packet` holds.
    pub fn process(
        &mut self,
        packet: &[u8],
        current_epoch: u32,
    ) -> Result<Processed<K>, OnionError> {
        self.retire_before(current_epoch.saturating_sub(EPOCH_GRACE));
        let expected = crate::Layout::of::<K>().packet_len;
        if packet.len() != expected {
            return Err(OnionError::InvalidLength {
                what: "onion packet",
                expected,
                found: packet.len(),
            });
        }
        let mut e = [0u8; 4];
        e.copy_from_slice(&packet[1..5]);
        let packet_epoch = u32::from_be_bytes(e);
        if packet_epoch > current_epoch {
            return Err(OnionError::EpochInFuture {
                packet_epoch,
                current_epoch,
            });
        }
        if packet_epoch < current_epoch.saturating_sub(EPOCH_GRACE) {
            return Err(OnionError::EpochExpired {
                packet_epoch,
                current_epoch,
            });
        }
        let state = self
            .epochs
            .get_mut(&packet_epoch)
            .ok_or(OnionError::UnknownEpoch {
                epoch: packet_epoch,
            })?;
        let EpochState { secret, replay } = state;
        unwrap_layer::<K>(secret, packet, |tag| replay.check_and_insert(tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_filter_refuses_duplicates_and_overflow() {
        let mut f = ReplayFilter::new(2);
        f.check_and_insert(&[1; 16]).unwrap();
        assert_eq!(f.check_and_insert(&[1; 16]), Err(OnionError::Replay));
        f.check_and_insert(&[2; 16]).unwrap();
        assert_eq!(
            f.check_and_insert(&[3; 16]),
            Err(OnionError::ReplayFilterFull { capacity: 2 })
        );
        // A replay is still recognised as a replay when full.
        assert_eq!(f.check_and_insert(&[2; 16]), Err(OnionError::Replay));
        assert_eq!(f.len(), 2);
    }
}
