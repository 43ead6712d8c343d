//! Single-use reply blocks (SURBs) and the creator's reply key store.
//!
//! The creator builds a header for a route that ends at its own mailbox relay with the
//! command "deliver reply `surb_id`", keeps every hop's payload keys in a [`ReplyKeyStore`]
//! under that id, and hands the recipient a [`Surb`]: the first hop, the header and a fresh
//! 32-byte reply key. The recipient encrypts its answer under the reply key, sends the packet
//! to the first hop and learns nothing of the route (the header is the fixed size for any
//! route) or of the creator. Each hop removes a Lioness layer as for any packet; the
//! creator undoes the layers with the stored keys and removes the entry: a second reply
//! through the same block is refused by the store ([`OnionError::UnknownSurb`]) and, earlier,
//! by the first relay's replay filter ([`OnionError::Replay`]).

use core::fmt;
use core::marker::PhantomData;
use std::collections::BTreeMap;

use zentalk_crypto::{CryptoRngCore, NodeId, SecretBytes};

use crate::crypto::{LionessKeys, lioness_decrypt, lioness_encrypt};
use crate::kem::{HopKem, X25519Kem};
use crate::packet::{
    FinalCommand, Layout, OutgoingPacket, ReplyPayload, RouteHop, SurbId, assemble, build_header,
    decode_payload, encode_payload,
};
use crate::{ID_LEN, OnionError};

/// A single-use reply block, as handed to a recipient (inside a message).
///
/// Encoding ([`Layout::surb_len`] bytes, 543 for X25519): version (1) || first hop node id
/// (32) || reply key (32) || header ([`Layout::header_len`]). The reply key is secret
/// between creator and recipient: `Debug` does not print it.
pub struct Surb<K: HopKem = X25519Kem> {
    first_hop: NodeId,
    reply_key: SecretBytes<32>,
    header: Box<[u8]>,
    _kem: PhantomData<fn() -> K>,
}

impl<K: HopKem> fmt::Debug for Surb<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Surb")
            .field("first_hop", &self.first_hop)
            .field("reply_key", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

impl<K: HopKem> Surb<K> {
    /// The encoded length of a reply block of this scheme.
    pub const LEN: usize = Layout::of::<K>().surb_len;

    /// The relay the reply must be sent to.
    pub fn first_hop(&self) -> NodeId {
        self.first_hop
    }

    /// Encodes the block (see the type's documentation for the layout).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.push(K::VERSION);
        out.extend_from_slice(self.first_hop.as_bytes());
        out.extend_from_slice(self.reply_key.expose());
        out.extend_from_slice(&self.header);
        out
    }

    /// Parses an encoded block of scheme `K` (see [`Surb::from_bytes`]).
    pub fn parse(bytes: &[u8]) -> Result<Self, OnionError> {
        if bytes.len() != Self::LEN {
            return Err(OnionError::InvalidLength {
                what: "reply block",
                expected: Self::LEN,
                found: bytes.len(),
            });
        }
        let header_off = 1 + ID_LEN + 32;
        for &v in [bytes[0], bytes[header_off]].iter() {
            if v != K::VERSION {
                return Err(OnionError::UnsupportedVersion {
                    expected: K::VERSION,
                    found: v,
                });
            }
        }
        let first_hop = NodeId::from_bytes(array32(&bytes[1..1 + ID_LEN]));
        let mut key = array32(&bytes[1 + ID_LEN..header_off]);
        Ok(Self {
            first_hop,
            reply_key: SecretBytes::new(&mut key),
            header: bytes[header_off..].into(),
            _kem: PhantomData,
        })
    }

    /// Uses the block (consumed) to send `message` back to its creator.
    pub fn into_reply(self, message: &[u8]) -> Result<OutgoingPacket<K>, OnionError> {
        let mut payload = encode_payload(message)?;
        let keys = LionessKeys::from_reply_key(self.reply_key.expose())?;
        lioness_encrypt(&keys, &mut payload);
        Ok(assemble(self.first_hop, &self.header, &payload))
    }
}

impl Surb<X25519Kem> {
    /// Parses an encoded X25519 block: exact length ([`crate::SURB_LEN`]), and the version
    /// byte both at the start and at the start of the embedded header. Nothing else can be
    /// checked by the recipient.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OnionError> {
        Self::parse(bytes)
    }
}

fn array32(b: &[u8]) -> [u8; 32] {
    let mut a = [0u8; 32];
    if b.len() == 32 {
        a.copy_from_slice(b);
    }
    a
}

/// What the creator keeps for one outstanding reply block (zeroized on drop).
struct PendingReply {
    reply_keys: LionessKeys,
    hop_keys: Vec<LionessKeys>,
}

/// The creator's store of outstanding reply blocks: at most `capacity` entries, each removed
/// on its first use, so each block opens at most one reply.
pub struct ReplyKeyStore {
    pending: BTreeMap<SurbId, PendingReply>,
    capacity: usize,
}

impl fmt::Debug for ReplyKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyKeyStore")
            .field("pending", &self.pending.len())
            .field("capacity", &self.capacity)
            .field("keys", &"[REDACTED]")
            .finish()
    }
}

impl ReplyKeyStore {
    /// An empty store for at most `capacity` outstanding blocks
    /// ([`crate::DEFAULT_MAX_PENDING_SURBS`] is a sensible value).
    pub fn new(capacity: usize) -> Self {
        Self {
            pending: BTreeMap::new(),
            capacity,
        }
    }

    /// Creates a reply block for `route`, which must end at the creator's own mailbox relay,
    /// and remembers its keys. Returns the block's id (also carried, encrypted, to the last
    /// hop) and the block to hand out.
    pub fn create_surb<H: RouteHop>(
        &mut self,
        rng: &mut impl CryptoRngCore,
        route: &[H],
    ) -> Result<(SurbId, Surb<H::Kem>), OnionError> {
        if self.pending.len() >= self.capacity {
            return Err(OnionError::SurbStoreFull {
                capacity: self.capacity,
            });
        }
        let mut id = [0u8; 32];
        rng.fill_bytes(&mut id);
        let id = SurbId::from_bytes(id);
        let reply_key = SecretBytes::<32>::random(rng);
        let (header, keys) = build_header(rng, route, FinalCommand::Reply(id))?;
        let first_hop =
            route
                .first()
                .map(RouteHop::node)
                .ok_or(OnionError::InvalidRouteLength {
                    max: crate::MAX_HOPS,
                    found: 0,
                })?;
        let pending = PendingReply {
            reply_keys: LionessKeys::from_reply_key(reply_key.expose())?,
            hop_keys: keys.iter().map(|k| k.payload.duplicate()).collect(),
        };
        self.pending.insert(id, pending);
        Ok((
            id,
            Surb {
                first_hop,
                reply_key,
                header: header.into_boxed_slice(),
                _kem: PhantomData,
            },
        ))
    }

    /// Opens the reply delivered for `surb_id` and forgets the block, whether or not the
    /// payload turns out intact: a block is used once. Unknown or already-used ids are
    /// refused with [`OnionError::UnknownSurb`]; a modified payload with
    /// [`OnionError::PayloadTampered`].
    pub fn open_reply(
        &mut self,
        surb_id: &SurbId,
        payload: &ReplyPayload,
    ) -> Result<Vec<u8>, OnionError> {
        let pending = self
            .pending
            .remove(surb_id)
            .ok_or(OnionError::UnknownSurb)?;
        let mut block = zeroize::Zeroizing::new(payload.as_bytes().to_vec());
        for k in pending.hop_keys.iter().rev() {
            lioness_encrypt(k, &mut block);
        }
        lioness_decrypt(&pending.reply_keys, &mut block);
        decode_payload(&block)
    }

    /// Forgets a block without a reply (for example when it expires). Returns whether it
    /// was pending.
    pub fn forget(&mut self, surb_id: &SurbId) -> bool {
        self.pending.remove(surb_id).is_some()
    }

    /// Number of outstanding blocks.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no block is outstanding.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}
