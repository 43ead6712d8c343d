//! Route selection: distinct relays drawn from a directory with a pluggable weighting, the
//! last one being the recipient's mailbox relay.

use zentalk_crypto::{CryptoRngCore, NodeId};

use crate::kem::{HopKem, X25519Kem};
use crate::packet::Hop;
use crate::{MAX_HOPS, OnionError};

/// How likely a relay is to be picked, relative to the others. A weight of 0 excludes it.
pub trait RelayWeight<K: HopKem = X25519Kem> {
    /// The relay's weight.
    fn weight(&self, relay: &Hop<K>) -> u64;
}

/// Every relay equally likely.
#[derive(Debug, Clone, Copy, Default)]
pub struct UniformWeight;

impl<K: HopKem> RelayWeight<K> for UniformWeight {
    fn weight(&self, _relay: &Hop<K>) -> u64 {
        1
    }
}

impl<K: HopKem, F: Fn(&Hop<K>) -> u64> RelayWeight<K> for F {
    fn weight(&self, relay: &Hop<K>) -> u64 {
        self(relay)
    }
}

/// A uniform integer in `0..bound` (`bound > 0`), by rejection sampling (no modulo bias).
fn uniform_below<R: CryptoRngCore + ?Sized>(rng: &mut R, bound: u128) -> u128 {
    if bound <= 1 {
        return 0;
    }
    let zone = u128::MAX - (u128::MAX % bound);
    loop {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        let v = u128::from_le_bytes(b);
        if v < zone {
            return v % bound;
        }
    }
}

/// Picks a route of `hops` relays (1 to [`MAX_HOPS`]): `hops - 1` distinct relays drawn from
/// `directory` without replacement, in proportion to `weighting`, followed by
/// `mailbox_relay`. No relay appears twice (so no two adjacent hops are equal): directory
/// entries with the mailbox relay's node id, repeated node ids and zero weights are skipped.
pub fn select_route<K: HopKem, W: RelayWeight<K> + ?Sized>(
    rng: &mut impl CryptoRngCore,
    directory: &[Hop<K>],
    hops: usize,
    mailbox_relay: &Hop<K>,
    weighting: &W,
) -> Result<Vec<Hop<K>>, OnionError> {
    if hops == 0 || hops > MAX_HOPS {
        return Err(OnionError::InvalidRouteLength {
            max: MAX_HOPS,
            found: hops,
        });
    }
    // Eligible candidates: first entry per node id, not the mailbox relay, weight > 0.
    let mut seen: Vec<NodeId> = vec![mailbox_relay.node];
    let mut candidates: Vec<(&Hop<K>, u64)> = Vec::new();
    for relay in directory {
        if seen.contains(&relay.node) {
            continue;
        }
        seen.push(relay.node);
        let w = weighting.weight(relay);
        if w > 0 {
            candidates.push((relay, w));
        }
    }
    let needed = hops - 1;
    if candidates.len() < needed {
        return Err(OnionError::NotEnoughRelays {
            needed,
            available: candidates.len(),
        });
    }
    let mut route = Vec::with_capacity(hops);
    for _ in 0..needed {
        let total: u128 = candidates.iter().map(|(_, w)| u128::from(*w)).sum();
        let mut pick = uniform_below(rng, total);
        let mut index = candidates.len() - 1;
        for (i, (_, w)) in candidates.iter().enumerate() {
            let w = u128::from(*w);
            if pick < w {
                index = i;
                break;
            }
            pick -= w;
        }
        let (relay, _) = candidates.swap_remove(index);
        route.push(relay.clone());
    }
    route.push(mailbox_relay.clone());
    Ok(route)
}
