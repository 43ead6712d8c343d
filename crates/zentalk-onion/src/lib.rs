//! # zentalk-onion
//!
//! Layer 1 of ZenTalk: fixed-size onion packets of the Sphinx family with **one key agreement
//! per hop and no blinding** (the layout of the Outfox format), a per-epoch replay filter,
//! single-use reply blocks (SURBs) and a route-selection helper.
//!
//! This crate contains no networking code, reads no clock and uses no global random number
//! generator: randomness is an argument (`&mut impl CryptoRngCore`) and so is the key epoch.
//! No input makes it panic; every failure is an [`OnionError`].
//!
//! * Every packet is [`PACKET_LEN`] = 2526 bytes at every hop, whatever the route length
//!   (1 to [`MAX_HOPS`]) and the message length (0 to [`MAX_MESSAGE_LEN`]).
//! * A relay does one X25519 agreement with its epoch onion key, checks the header MAC, records
//!   the replay tag, then removes one ChaCha20 layer from the routing information and one
//!   Lioness layer from the payload. It learns its predecessor (the link) and its successor
//!   (the routing command), nothing else.
//! * The key agreement sits behind [`HopKem`], so a hybrid X25519 + ML-KEM scheme can be added
//!   without changing the packet code.
//! * A sender that sends many packets through the same relays can [`PreparedHop::prepare`] their
//!   keys once per epoch: same packets, about a third less work to build.
//! * [`select_route`] picks distinct relays from a directory with a pluggable [`RelayWeight`],
//!   the mailbox relay last.
//!
//! The format is specified in `docs/protocol/zentalk-onion.md`.
//!
//! ```
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//! use zentalk_crypto::{NodeId, X25519Secret};
//! use zentalk_onion::{
//!     build_packet, Hop, MailboxId, OnionRelay, Processed, ReplyKeyStore, Surb,
//!     DEFAULT_MAX_PENDING_SURBS, DEFAULT_REPLAY_CAPACITY, PACKET_LEN,
//! };
//!
//! let mut rng = ChaCha20Rng::seed_from_u64(42);
//! let epoch = 7;
//! // Three relays, each with an onion key for the current epoch.
//! let mut relays = Vec::new();
//! let mut route = Vec::new();
//! for i in 0..3u8 {
//!     let secret = X25519Secret::generate(&mut rng);
//!     let node = NodeId::from_bytes([i + 1; 32]);
//!     route.push(Hop { node, onion_key: secret.public_key(), epoch });
//!     let mut relay = OnionRelay::new(DEFAULT_REPLAY_CAPACITY);
//!     relay.insert_epoch_key(epoch, secret).unwrap();
//!     relays.push((node, relay));
//! }
//! let mailbox = MailboxId::from_bytes([9; 32]);
//! let out = build_packet(&mut rng, &route, mailbox, b"hello").unwrap();
//!
//! // Peel it hop by hop: the packet has the same size at every hop.
//! let (mut next, mut bytes) = (out.first_hop, out.packet.into_bytes());
//! loop {
//!     assert_eq!(bytes.len(), PACKET_LEN);
//!     let (_, relay) = relays.iter_mut().find(|(n, _)| *n == next).unwrap();
//!     match relay.process(&bytes, epoch).unwrap() {
//!         Processed::Forward { next_hop, packet } => (next, bytes) = (next_hop, packet.into_bytes()),
//!         Processed::Deliver { mailbox: m, message } => {
//!             assert_eq!((m, message.as_slice()), (mailbox, &b"hello"[..]));
//!             break;
//!         }
//!         Processed::Reply { .. } => unreachable!(),
//!     }
//! }
//!
//! // A reply block: the recipient answers without learning the route back.
//! let mut store = ReplyKeyStore::new(DEFAULT_MAX_PENDING_SURBS);
//! let back: Vec<Hop> = route.iter().rev().cloned().collect();
//! let (_id, surb) = store.create_surb(&mut rng, &back).unwrap();
//! let surb = Surb::from_bytes(&surb.to_bytes()).unwrap(); // as the recipient receives it
//! let reply = surb.into_reply(b"hi back").unwrap();
//! # let (mut next, mut bytes) = (reply.first_hop, reply.packet.into_bytes());
//! # loop {
//! #     let (_, relay) = relays.iter_mut().find(|(n, _)| *n == next).unwrap();
//! #     match relay.process(&bytes, epoch).unwrap() {
//! #         Processed::Forward { next_hop, packet } => (next, bytes) = (next_hop, packet.into_bytes()),
//! #         Processed::Reply { surb_id, payload } => {
//! #             assert_eq!(store.open_reply(&surb_id, &payload).unwrap(), b"hi back");
//! #             break;
//! #         }
//! #         Processed::Deliver { .. } => unreachable!(),
//! #     }
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod crypto;
mod error;
pub mod kem;
mod packet;
mod relay;
mod route;
mod surb;

pub use error::OnionError;
pub use kem::{HopKem, PreparedX25519Key, X25519Kem};
pub use packet::{
    Hop, Layout, MailboxId, OnionPacket, OutgoingPacket, PreparedHop, Processed, ReplyPayload,
    RouteHop, SurbId, build_packet,
};
pub use relay::{OnionRelay, ReplayFilter};
pub use route::{RelayWeight, UniformWeight, select_route};
pub use surb::{ReplyKeyStore, Surb};

/// Maximum number of hops of a route (slots in the header).
pub const MAX_HOPS: usize = 5;
/// Length of the truncated HMAC-SHA256 header MAC.
pub const MAC_LEN: usize = 16;
/// Length of a node id, mailbox id or reply block id in a routing slot.
pub const ID_LEN: usize = 32;
/// Length of the big-endian epoch number in the header.
pub const EPOCH_LEN: usize = 4;
/// Length of the Lioness-encrypted payload, the same for every packet.
pub const PAYLOAD_LEN: usize = 2048;
/// Length of the all-zero integrity tag at the start of the plaintext payload.
pub const PAYLOAD_TAG_LEN: usize = 16;
/// Length of the big-endian message length that follows the tag.
pub const LENGTH_PREFIX_LEN: usize = 2;
/// Largest message one packet carries: 2030 bytes.
pub const MAX_MESSAGE_LEN: usize = PAYLOAD_LEN - PAYLOAD_TAG_LEN - LENGTH_PREFIX_LEN;
/// Length of a replay tag.
pub const REPLAY_TAG_LEN: usize = 16;
/// A relay accepts packets for its current epoch and the `EPOCH_GRACE` epochs before it.
pub const EPOCH_GRACE: u32 = 1;
/// Most epoch keys a relay holds at once ([`OnionRelay::insert_epoch_key`]).
pub const MAX_EPOCH_KEYS: usize = 4;
/// A sensible replay-filter capacity per epoch: 2^20 tags (about 40 MiB with B-tree overhead).
pub const DEFAULT_REPLAY_CAPACITY: usize = 1 << 20;
/// A sensible number of outstanding reply blocks per client.
pub const DEFAULT_MAX_PENDING_SURBS: usize = 4096;

/// Layout of the X25519 format (version 1).
pub const X25519_LAYOUT: Layout = Layout::of::<X25519Kem>();
/// Header length of the X25519 format: 478 bytes.
pub const HEADER_LEN: usize = X25519_LAYOUT.header_len;
/// Packet length of the X25519 format at every hop: 2526 bytes.
pub const PACKET_LEN: usize = X25519_LAYOUT.packet_len;
/// Encoded length of an X25519 reply block: 543 bytes.
pub const SURB_LEN: usize = X25519_LAYOUT.surb_len;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_the_documented_ones() {
        assert_eq!(X25519_LAYOUT.slot_len, 85);
        assert_eq!(X25519_LAYOUT.prefix_len, 53);
        assert_eq!(HEADER_LEN, 478);
        assert_eq!(PACKET_LEN, 2526);
        assert_eq!(SURB_LEN, 543);
        assert_eq!(MAX_MESSAGE_LEN, 2030);
        // Must fit an 8 KiB wire frame body.
        const { assert!(PACKET_LEN <= 8 * 1024) };
    }
}
