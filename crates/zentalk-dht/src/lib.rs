//! # zentalk-dht
//!
//! Layer 1 of ZenTalk: Kademlia discovery with signed, key-bound records.
//!
//! The core ([`Node`], [`RoutingTable`], [`ClosestPeersIter`], [`RecordStore`]) contains no
//! networking code and reads no clock: time is a `now` argument in milliseconds and
//! randomness a seed, so every run is reproducible. The [`sim`] module runs thousands of
//! nodes in one process on virtual time; the `net` module (feature `net`, on by default) is
//! a small tokio UDP driver around the same core.
//!
//! * 256-bit ids, XOR metric, k = 20 buckets with least-recently-seen eviction,
//!   ping-before-evict and a replacement cache; alpha = 3 iterative lookups, optionally over
//!   d disjoint paths (S/Kademlia).
//! * Every response is signed by the responder's identity key over the request it answers;
//!   only nodes that answered our own requests enter the routing table.
//! * Records are bound to their key: a relay descriptor under the relay's node id, a prekey
//!   bundle under a per-period blinded key; forged records and replays of older versions
//!   are refused.
//!
//! ```
//! use zentalk_crypto::IdentityKeyPair;
//! use zentalk_dht::{Capabilities, RelayDescriptor, sim::{Sim, SimConfig}};
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//!
//! // 50 nodes on virtual time, bootstrapped from the first one.
//! let mut sim = Sim::new(SimConfig { nodes: 50, seed: 7, ..SimConfig::default() }).unwrap();
//! sim.bootstrap_all();
//!
//! // A relay publishes its signed descriptor; another node finds it.
//! let mut rng = ChaCha20Rng::seed_from_u64(1);
//! let relay = IdentityKeyPair::generate(&mut rng);
//! let record = RelayDescriptor {
//!     addrs: vec!["192.0.2.7:4433".parse().unwrap()],
//!     noise_static_key: [1; 32],
//!     onion_keys: vec![(1, [2; 32])],
//!     capabilities: Capabilities::MAILBOX,
//! }
//! .sign(&relay, 1, sim.now() + 3_600_000)
//! .unwrap();
//! let key = record.key;
//! assert!(sim.publish(3, record).unwrap() > 0);
//! let found = sim.find_value(40, key).unwrap();
//! assert_eq!(found.map(|r| r.sequence), Some(1));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod error;
pub mod lookup;
pub mod message;
#[cfg(feature = "net")]
pub mod net;
pub mod node;
pub mod record;
pub mod routing;
pub mod sim;
pub mod store;

pub use error::{DhtError, MessageError, RecordError, StoreError};
pub use lookup::{ClosestPeersIter, DisjointPeersIter, IterState};
pub use message::{MAX_CONTACTS, MAX_DATAGRAM_LEN, decode_datagram};
pub use node::{Config, Event, Node, QueryId, QueryStats, Transmit};
pub use record::{
    Capabilities, MAX_PREKEY_BUNDLE, MAX_RECORD_PAYLOAD, MAX_RECORD_TTL_MS, PREKEY_PERIOD_MS,
    PrekeyLocator, REPUBLISH_INTERVAL_MS, Record, RecordKind, RelayDescriptor, prekey_period,
    sign_prekey_bundle,
};
pub use routing::{Contact, RoutingTable};
pub use store::{RecordStore, StoreLimits};

/// Fuzzing entry point shared by `fuzz/fuzz_targets/dht_message.rs` and the corpus replay
/// test: decodes `data` as a datagram, feeds it to a node (which answers and signs), and
/// checks that a decoded request re-encodes to the same message. Returns false if that
/// round trip property fails; never panics.
#[doc(hidden)]
pub fn fuzz_message(data: &[u8]) -> bool {
    use rand_core::SeedableRng;
    let decoded = message::decode_datagram(data);
    let identity = zentalk_crypto::IdentityKeyPair::from_seed(&[7u8; 32]);
    if let Ok(mut node) = Node::new(identity, Config::default(), [1u8; 32]) {
        let from = std::net::SocketAddr::from(([192, 0, 2, 1], 4000));
        let _ = node.handle_datagram(1_800_000_000_000, from, data);
        while node.poll_transmit().is_some() {}
    }
    if let Ok(message::Decoded::Request(m)) = decoded {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([0u8; 32]);
        return match message::encode_request(&m, &mut rng) {
            Ok(bytes) => matches!(
                message::decode_datagram(&bytes),
                Ok(message::Decoded::Request(again)) if again == m
            ),
            Err(_) => false,
        };
    }
    true
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
