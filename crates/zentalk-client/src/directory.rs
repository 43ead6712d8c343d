//! The relay directory a client routes through, and onion wrapping.

use std::net::SocketAddr;

use zentalk_crypto::{CryptoRngCore, IdentityPublicKey, NodeId, X25519PublicKey};
use zentalk_dht::RelayDescriptor;
use zentalk_onion::{Hop, OutgoingPacket, UniformWeight, build_packet, select_route};

use crate::ClientError;
use crate::mailbox::MailboxAddr;

/// Relays on every route: two chosen from the directory, then the recipient's mailbox relay.
pub const ROUTE_LEN: usize = 3;

/// What a client knows about one relay (from its signed DHT descriptor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayEntry {
    /// Node id (BLAKE2b-256 of the relay identity key).
    pub node: NodeId,
    /// Where it accepts links.
    pub addr: SocketAddr,
    /// Its Noise static public key (the XK responder key).
    pub noise_key: [u8; 32],
    /// Onion public keys per epoch.
    pub onion_keys: Vec<(u64, [u8; 32])>,
}

impl RelayEntry {
    /// From a validated descriptor and the identity that signed it. `None` without an address.
    pub fn from_descriptor(identity: &IdentityPublicKey, d: &RelayDescriptor) -> Option<Self> {
        Some(Self {
            node: NodeId::of(identity),
            addr: *d.addrs.first()?,
            noise_key: d.noise_static_key,
            onion_keys: d.onion_keys.clone(),
        })
    }

    fn hop(&self, epoch: u32) -> Option<Hop> {
        let key = self
            .onion_keys
            .iter()
            .find(|(e, _)| *e == u64::from(epoch))?
            .1;
        Some(Hop {
            node: self.node,
            onion_key: X25519PublicKey::from_bytes(key),
            epoch,
        })
    }
}

/// The relays a client knows.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    relays: Vec<RelayEntry>,
}

impl Directory {
    /// A directory of `relays` (later entries with a known node id replace earlier ones).
    pub fn new(relays: Vec<RelayEntry>) -> Self {
        let mut d = Self::default();
        for r in relays {
            d.insert(r);
        }
        d
    }

    /// Adds or replaces a relay.
    pub fn insert(&mut self, relay: RelayEntry) {
        self.relays.retain(|r| r.node != relay.node);
        self.relays.push(relay);
    }

    /// The relay with `node`.
    pub fn get(&self, node: &NodeId) -> Option<&RelayEntry> {
        self.relays.iter().find(|r| r.node == *node)
    }

    /// All relays.
    pub fn relays(&self) -> &[RelayEntry] {
        &self.relays
    }

    /// A route of [`ROUTE_LEN`] distinct relays ending at `dest`'s relay, for `epoch`.
    pub fn route(
        &self,
        rng: &mut impl CryptoRngCore,
        dest: &MailboxAddr,
        epoch: u32,
    ) -> Result<Vec<Hop>, ClientError> {
        let last = self
            .get(&dest.relay)
            .and_then(|r| r.hop(epoch))
            .ok_or(ClientError::UnknownRelay { epoch })?;
        let hops: Vec<Hop> = self.relays.iter().filter_map(|r| r.hop(epoch)).collect();
        Ok(select_route(rng, &hops, ROUTE_LEN, &last, &UniformWeight)?)
    }

    /// Wraps `payload` for mailbox `dest` into a fixed-size onion packet through a fresh
    /// route. Returns the packet and the route (node ids, first hop first).
    pub fn wrap(
        &self,
        rng: &mut impl CryptoRngCore,
        dest: &MailboxAddr,
        epoch: u32,
        payload: &[u8],
    ) -> Result<(OutgoingPacket, Vec<NodeId>), ClientError> {
        let route = self.route(rng, dest, epoch)?;
        let packet = build_packet(rng, &route, dest.mailbox, payload)?;
        Ok((packet, route.iter().map(|h| h.node).collect()))
    }
}
