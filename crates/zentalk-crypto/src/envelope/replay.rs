//! The bounded replay window for envelopes.

use std::collections::{BTreeMap, BTreeSet};

use super::EnvelopeId;
use crate::{Address, CryptoError};

/// Default number of (sender, id) pairs remembered: 16 384 entries, about 3 MiB
/// (two ordered maps, roughly 150-200 bytes per entry).
pub const DEFAULT_MAX_ENTRIES: usize = 16_384;
/// The most entries a window may be configured to remember (262 144, about 50 MiB).
pub const MAX_ENTRIES_LIMIT: usize = 1 << 18;
/// Default maximum age of an envelope: 7 days, so mail that waited in an offline mailbox for
/// a week is still accepted.
pub const DEFAULT_MAX_AGE_SECS: u64 = 7 * 24 * 60 * 60;
/// The largest maximum age a window may be configured with: 30 days.
pub const MAX_AGE_LIMIT_SECS: u64 = 30 * 24 * 60 * 60;
/// Default tolerance for a sender's clock running ahead of ours: 5 minutes.
pub const DEFAULT_MAX_FUTURE_SKEW_SECS: u64 = 5 * 60;
/// The largest future skew a window may be configured with: 1 day.
pub const MAX_FUTURE_SKEW_LIMIT_SECS: u64 = 24 * 60 * 60;

/// Parameters of a [`ReplayWindow`]; every field is bounded by a `*_LIMIT` constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayConfig {
    /// How many (sender, id) pairs are remembered at most (1 ..= [`MAX_ENTRIES_LIMIT`]).
    pub max_entries: usize,
    /// Envelopes older than `now - max_age_secs` are refused (1 ..= [`MAX_AGE_LIMIT_SECS`]).
    pub max_age_secs: u64,
    /// Envelopes newer than `now + max_future_skew_secs` are refused
    /// (0 ..= [`MAX_FUTURE_SKEW_LIMIT_SECS`]).
    pub max_future_skew_secs: u64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_age_secs: DEFAULT_MAX_AGE_SECS,
            max_future_skew_secs: DEFAULT_MAX_FUTURE_SKEW_SECS,
        }
    }
}

/// Remembers the envelopes a recipient has accepted, and refuses duplicates, envelopes older
/// than the window and envelopes from too far in the future.
///
/// Entries are keyed by (sender key id, envelope id), so one sender cannot block another's
/// envelope by reusing its id. Memory is bounded by [`ReplayConfig::max_entries`]: when the
/// window is full the entry with the oldest timestamp is forgotten and the window's *floor*
/// rises to that timestamp; from then on any envelope at or below the floor is refused as
/// [`CryptoError::TooOld`]. So a forgotten envelope can never be accepted twice: a flood
/// costs old-but-legitimate envelopes (the sender must send again), never a replay. The same
/// rule covers entries dropped for age, which keeps the window safe even if the caller's
/// `now` goes backwards.
///
/// Call [`ReplayWindow::accept`] only after the envelope has authenticated (as
/// [`super::Envelope::open_and_accept`] does), so that unauthenticated traffic cannot fill
/// the window; [`ReplayWindow::check`] is the read-only pre-filter.
///
/// Times are seconds since the Unix epoch, passed in by the caller: the window reads no clock.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    config: ReplayConfig,
    by_key: BTreeMap<(Address, EnvelopeId), u64>,
    by_time: BTreeSet<(u64, Address, EnvelopeId)>,
    /// Highest timestamp of any forgotten entry.
    floor: Option<u64>,
}

impl ReplayWindow {
    /// A window with the given parameters, checked against the `*_LIMIT` constants.
    pub fn new(config: ReplayConfig) -> Result<Self, CryptoError> {
        if config.max_entries == 0 || config.max_entries > MAX_ENTRIES_LIMIT {
            return Err(CryptoError::InvalidConfig {
                what: "max_entries",
                reason: "must be between 1 and MAX_ENTRIES_LIMIT",
            });
        }
        if config.max_age_secs == 0 || config.max_age_secs > MAX_AGE_LIMIT_SECS {
            return Err(CryptoError::InvalidConfig {
                what: "max_age_secs",
                reason: "must be between 1 and MAX_AGE_LIMIT_SECS",
            });
        }
        if config.max_future_skew_secs > MAX_FUTURE_SKEW_LIMIT_SECS {
            return Err(CryptoError::InvalidConfig {
                what: "max_future_skew_secs",
                reason: "must be at most MAX_FUTURE_SKEW_LIMIT_SECS",
            });
        }
        Ok(Self {
            config,
            ..Self::default()
        })
    }

    /// The window's parameters.
    pub fn config(&self) -> &ReplayConfig {
        &self.config
    }

    /// Number of remembered entries (never more than `max_entries`).
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The oldest timestamp accepted at `now`.
    pub fn oldest_accepted(&self, now: u64) -> u64 {
        let by_age = now.saturating_sub(self.config.max_age_secs);
        match self.floor {
            Some(floor) => by_age.max(floor.saturating_add(1)),
            None => by_age,
        }
    }

    /// The latest timestamp accepted at `now`.
    pub fn latest_accepted(&self, now: u64) -> u64 {
        now.saturating_add(self.config.max_future_skew_secs)
    }

    /// Checks an envelope without recording it: [`CryptoError::TooFarInFuture`],
    /// [`CryptoError::TooOld`] or [`CryptoError::Replay`] if [`ReplayWindow::accept`] would
    /// refuse it.
    pub fn check(
        &self,
        sender: &Address,
        id: &EnvelopeId,
        timestamp: u64,
        now: u64,
    ) -> Result<(), CryptoError> {
        let latest_accepted = self.latest_accepted(now);
        if timestamp > latest_accepted {
            return Err(CryptoError::TooFarInFuture {
                timestamp,
                latest_accepted,
            });
        }
        let oldest_accepted = self.oldest_accepted(now);
        if timestamp < oldest_accepted {
            return Err(CryptoError::TooOld {
                timestamp,
                oldest_accepted,
            });
        }
        if self.by_key.contains_key(&(*sender, *id)) {
            return Err(CryptoError::Replay);
        }
        Ok(())
    }

    /// Checks an authenticated envelope and records it. Also forgets entries that have aged
    /// out, and the oldest entries beyond `max_entries`.
    pub fn accept(
        &mut self,
        sender: &Address,
        id: &EnvelopeId,
        timestamp: u64,
        now: u64,
    ) -> Result<(), CryptoError> {
        self.check(sender, id, timestamp, now)?;
        self.by_key.insert((*sender, *id), timestamp);
        self.by_time.insert((timestamp, *sender, *id));
        let by_age = now.saturating_sub(self.config.max_age_secs);
        while let Some(&(oldest, _, _)) = self.by_time.first() {
            if oldest < by_age || self.by_key.len() > self.config.max_entries {
                self.forget_oldest();
            } else {
                break;
            }
        }
        Ok(())
    }

    fn forget_oldest(&mut self) {
        if let Some((ts, sender, id)) = self.by_time.pop_first() {
            self.by_key.remove(&(sender, id));
            self.floor = Some(self.floor.map_or(ts, |f| f.max(ts)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn id(n: u64) -> EnvelopeId {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&n.to_be_bytes());
        EnvelopeId::from_bytes(b)
    }

    fn small(max_entries: usize) -> ReplayWindow {
        ReplayWindow::new(ReplayConfig {
            max_entries,
            max_age_secs: 600,
            max_future_skew_secs: 60,
        })
        .unwrap()
    }

    #[test]
    fn duplicates_old_and_future_are_refused() {
        let alice = Address::from_bytes([1; 32]);
        let bob = Address::from_bytes([2; 32]);
        let mut w = small(8);
        assert_eq!(w.accept(&alice, &id(1), NOW, NOW), Ok(()));
        assert_eq!(w.accept(&alice, &id(1), NOW, NOW), Err(CryptoError::Replay));
        assert_eq!(
            w.check(&alice, &id(1), NOW, NOW + 5),
            Err(CryptoError::Replay)
        );
        // The same id from another sender is a different envelope.
        assert_eq!(w.accept(&bob, &id(1), NOW, NOW), Ok(()));
        // Edges of the window are inclusive.
        assert_eq!(w.accept(&alice, &id(2), NOW - 600, NOW), Ok(()));
        assert_eq!(w.accept(&alice, &id(3), NOW + 60, NOW), Ok(()));
        assert_eq!(
            w.accept(&alice, &id(4), NOW - 601, NOW),
            Err(CryptoError::TooOld {
                timestamp: NOW - 601,
                oldest_accepted: NOW - 600
            })
        );
        assert_eq!(
            w.accept(&alice, &id(5), NOW + 61, NOW),
            Err(CryptoError::TooFarInFuture {
                timestamp: NOW + 61,
                latest_accepted: NOW + 60
            })
        );
        assert_eq!(w.len(), 4);
    }

    #[test]
    fn aged_out_entries_are_forgotten_but_still_refused() {
        let alice = Address::from_bytes([1; 32]);
        let mut w = small(8);
        w.accept(&alice, &id(1), NOW, NOW).unwrap();
        // Much later: accepting a new envelope drops the aged-out one.
        w.accept(&alice, &id(2), NOW + 1000, NOW + 1000).unwrap();
        assert_eq!(w.len(), 1);
        // Even if the caller's clock jumps back, the forgotten envelope is refused.
        assert!(matches!(
            w.accept(&alice, &id(1), NOW, NOW),
            Err(CryptoError::TooOld { .. })
        ));
    }

    #[test]
    fn memory_is_bounded_under_a_flood_and_no_replay_slips_through() {
        let alice = Address::from_bytes([1; 32]);
        let max = 64;
        let mut w = small(max);
        let mut accepted = Vec::new();
        for n in 0..(20 * max as u64) {
            // Timestamps jitter around `now`, inside the window.
            let ts = NOW - (n * 7919) % 500;
            if w.accept(&alice, &id(n), ts, NOW).is_ok() {
                accepted.push((n, ts));
            }
            assert!(w.len() <= max);
            assert!(w.by_time.len() == w.by_key.len());
        }
        assert!(
            accepted.len() > max,
            "the window keeps accepting fresh envelopes"
        );
        for (n, ts) in accepted {
            let res = w.accept(&alice, &id(n), ts, NOW);
            assert!(
                matches!(res, Err(CryptoError::Replay | CryptoError::TooOld { .. })),
                "replay of {n} at {ts} was {res:?}"
            );
        }
    }

    #[test]
    fn config_is_bounded() {
        let ok = ReplayConfig::default();
        assert!(ReplayWindow::new(ok).is_ok());
        for bad in [
            ReplayConfig {
                max_entries: 0,
                ..ok
            },
            ReplayConfig {
                max_entries: MAX_ENTRIES_LIMIT + 1,
                ..ok
            },
            ReplayConfig {
                max_age_secs: 0,
                ..ok
            },
            ReplayConfig {
                max_age_secs: MAX_AGE_LIMIT_SECS + 1,
                ..ok
            },
            ReplayConfig {
                max_future_skew_secs: MAX_FUTURE_SKEW_LIMIT_SECS + 1,
                ..ok
            },
        ] {
            assert!(matches!(
                ReplayWindow::new(bad),
                Err(CryptoError::InvalidConfig { .. })
            ));
        }
    }

    #[test]
    fn saturating_arithmetic_at_the_edges_of_time() {
        let alice = Address::from_bytes([1; 32]);
        let mut w = small(4);
        assert_eq!(w.accept(&alice, &id(1), 0, 0), Ok(()));
        assert_eq!(w.accept(&alice, &id(2), u64::MAX, u64::MAX), Ok(()));
    }
}
