#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zentalk_crypto::{NodeId, X25519Secret};
use zentalk_onion::{Hop, OnionError, OnionRelay, Processed};

pub const EPOCH: u32 = 100;

/// A seeded RNG; the seed is printed so a failing run can be replayed.
pub fn rng(seed: u64) -> ChaCha20Rng {
    println!("rng seed = {seed}");
    ChaCha20Rng::seed_from_u64(seed)
}

/// Every (relay, packet bytes) seen on the way, and the final outcome.
pub type Trace = (Vec<(NodeId, Box<[u8]>)>, Result<Processed, OnionError>);

pub struct Net {
    pub relays: Vec<(NodeId, OnionRelay)>,
    pub secrets: Vec<X25519Secret>,
    pub directory: Vec<Hop>,
}

impl Net {
    pub fn new(rng: &mut ChaCha20Rng, n: usize, replay_capacity: usize) -> Self {
        let mut relays = Vec::new();
        let mut secrets = Vec::new();
        let mut directory = Vec::new();
        for i in 0..n {
            let secret = X25519Secret::generate(rng);
            let mut id = [0u8; 32];
            id[0] = 0xA0;
            id[31] = i as u8;
            let node = NodeId::from_bytes(id);
            directory.push(Hop {
                node,
                onion_key: secret.public_key(),
                epoch: EPOCH,
            });
            let mut relay = OnionRelay::new(replay_capacity);
            relay.insert_epoch_key(EPOCH, secret.duplicate()).unwrap();
            relays.push((node, relay));
            secrets.push(secret);
        }
        Self {
            relays,
            secrets,
            directory,
        }
    }

    pub fn relay(&mut self, node: NodeId) -> &mut OnionRelay {
        &mut self.relays.iter_mut().find(|(n, _)| *n == node).unwrap().1
    }

    pub fn route(&self, indices: &[usize]) -> Vec<Hop> {
        indices.iter().map(|&i| self.directory[i].clone()).collect()
    }

    /// Runs a packet to its end; returns every packet seen on the way (as bytes) and the
    /// final outcome.
    pub fn run(&mut self, first: NodeId, packet: Box<[u8]>) -> Trace {
        let mut seen = vec![(first, packet.clone())];
        let (mut node, mut bytes) = (first, packet);
        loop {
            match self.relay(node).process(&bytes, EPOCH) {
                Ok(Processed::Forward { next_hop, packet }) => {
                    node = next_hop;
                    bytes = packet.into_bytes();
                    seen.push((node, bytes.clone()));
                }
                other => return (seen, other),
            }
        }
    }
}
