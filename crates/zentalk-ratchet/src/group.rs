//! Sender-key group sessions.
//!
//! Each member has its own sending chain (a symmetric ratchet: the same KDF_CK as the Double
//! Ratchet) and a fresh Ed25519 signing key per chain. A member hands its chain to the others
//! as a [`SenderKeyDistribution`], sent over the pairwise Double Ratchet sessions; each
//! recipient keeps one [`InboundGroupSession`] per member. Every [`GroupMessage`] is signed,
//! so members cannot forge each other's messages.
//!
//! Membership changes: when a member leaves (or is removed), every remaining member calls
//! [`OutboundGroupSession::rotate`] and sends the new distribution to the remaining members
//! only; the leaver's inbound sessions for the old chains cannot read anything sent after the
//! rotation (the new chains are fresh random keys it never receives). When a member joins, the
//! existing members send it their current distribution (it starts at the current index, so it
//! cannot read earlier messages).
//!
//! ```text
//! message key   = HMAC-SHA256(ck, 0x01), next ck = HMAC-SHA256(ck, 0x02)
//! key || nonce  = HKDF-SHA256(salt = 32 zero bytes, IKM = message key,
//!                             info = "ZentalkGroupMessageKeys", 44)
//! GroupMessage  = 0x11 || key id (u32 BE) || index (u32 BE) || ciphertext || tag (16)
//!                 || Ed25519 signature (64) over everything before it
//!                 (AEAD associated data = the 9 header bytes)
//! Distribution  = 0x12 || suite (1) || key id (u32 BE) || index (u32 BE) || chain key (32)
//!                 || Ed25519 signing public key (32)
//! ```

use core::fmt;
use std::collections::VecDeque;

use zentalk_crypto::{
    AeadSuite, CryptoRngCore, IdentityKeyPair, IdentityPublicKey, SIGNATURE_LEN, Signature, TAG_LEN,
};
use zeroize::Zeroizing;

use crate::GroupError;
use crate::kdf::{INFO_GROUP_MESSAGE, Key32, kdf_ck, message_keys};
use crate::message::{MAX_MESSAGE_LEN, MAX_PLAINTEXT_LEN, Reader, identity_key, suite_from_code};
use crate::{DecodeError, PickleError};

/// Type byte of a [`GroupMessage`].
pub const TYPE_GROUP_MESSAGE: u8 = 0x11;
/// Type byte of a [`SenderKeyDistribution`].
pub const TYPE_SENDER_KEY_DISTRIBUTION: u8 = 0x12;
/// Length of a group message header (type, key id, index).
pub const GROUP_HEADER_LEN: usize = 9;
/// Length of an encoded [`SenderKeyDistribution`].
pub const DISTRIBUTION_LEN: usize = 1 + 1 + 4 + 4 + 32 + 32;
/// Most message keys one group message may make an inbound session skip.
pub const MAX_GROUP_SKIP: u32 = 1000;
/// Most skipped message keys an inbound group session stores (oldest evicted first).
pub const MAX_GROUP_SKIPPED_KEYS: usize = 1000;

/// A signed group message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMessage {
    key_id: u32,
    index: u32,
    ciphertext: Vec<u8>,
    signature: Signature,
}

impl GroupMessage {
    /// The sender key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The message index in the sender's chain.
    pub fn index(&self) -> u32 {
        self.index
    }

    fn header(&self) -> [u8; GROUP_HEADER_LEN] {
        let mut h = [0u8; GROUP_HEADER_LEN];
        h[0] = TYPE_GROUP_MESSAGE;
        h[1..5].copy_from_slice(&self.key_id.to_be_bytes());
        h[5..].copy_from_slice(&self.index.to_be_bytes());
        h
    }

    fn signed_part(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(GROUP_HEADER_LEN + self.ciphertext.len() + SIGNATURE_LEN);
        v.extend_from_slice(&self.header());
        v.extend_from_slice(&self.ciphertext);
        v
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = self.signed_part();
        v.extend_from_slice(&self.signature.to_bytes());
        v
    }

    /// Parses the encoding (the signature is checked by [`InboundGroupSession::decrypt`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "group message", MAX_MESSAGE_LEN)?;
        let ty = r.u8()?;
        if ty != TYPE_GROUP_MESSAGE {
            return Err(DecodeError::UnexpectedType {
                expected: "group message (0x11)",
                found: ty,
            });
        }
        let key_id = r.u32()?;
        let index = r.u32()?;
        let body_len = r
            .remaining()
            .checked_sub(SIGNATURE_LEN)
            .filter(|n| *n >= TAG_LEN);
        let Some(body_len) = body_len else {
            return Err(DecodeError::TooShort {
                what: "group message",
                expected: GROUP_HEADER_LEN + TAG_LEN + SIGNATURE_LEN,
                found: bytes.len(),
            });
        };
        let ciphertext = r.take(body_len)?.to_vec();
        let signature = Signature(r.array()?);
        r.finish()?;
        Ok(Self {
            key_id,
            index,
            ciphertext,
            signature,
        })
    }
}

/// A member's sending chain as handed to the other members: secret, so send it only inside a
/// pairwise session. `Debug` is redacted.
pub struct SenderKeyDistribution {
    suite: AeadSuite,
    key_id: u32,
    index: u32,
    chain_key: Key32,
    signing_key: IdentityPublicKey,
}

impl SenderKeyDistribution {
    /// The sender key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The index the recipient will start decrypting from.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The chain's Ed25519 signing public key.
    pub fn signing_key(&self) -> IdentityPublicKey {
        self.signing_key
    }

    /// The encoding (contains the chain key: zeroized on drop).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(DISTRIBUTION_LEN));
        v.push(TYPE_SENDER_KEY_DISTRIBUTION);
        v.push(self.suite.wire_code());
        v.extend_from_slice(&self.key_id.to_be_bytes());
        v.extend_from_slice(&self.index.to_be_bytes());
        v.extend_from_slice(self.chain_key.expose());
        v.extend_from_slice(self.signing_key.as_bytes());
        v
    }

    /// Parses the encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "sender key distribution", DISTRIBUTION_LEN)?;
        let ty = r.u8()?;
        if ty != TYPE_SENDER_KEY_DISTRIBUTION {
            return Err(DecodeError::UnexpectedType {
                expected: "sender key distribution (0x12)",
                found: ty,
            });
        }
        let suite = suite_from_code(r.u8()?)?;
        let key_id = r.u32()?;
        let index = r.u32()?;
        let mut chain_key = Key32::zeroed();
        chain_key.expose_mut().copy_from_slice(r.take(32)?);
        let signing_key = identity_key(&r.array()?, "sender key signing key")?;
        r.finish()?;
        Ok(Self {
            suite,
            key_id,
            index,
            chain_key,
            signing_key,
        })
    }
}

impl fmt::Debug for SenderKeyDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderKeyDistribution")
            .field("key_id", &self.key_id)
            .field("index", &self.index)
            .field("chain_key", &"[REDACTED]")
            .finish()
    }
}

/// This member's sending side of a group.
pub struct OutboundGroupSession {
    pub(crate) suite: AeadSuite,
    pub(crate) key_id: u32,
    pub(crate) chain: Key32,
    pub(crate) index: u32,
    pub(crate) signing: IdentityKeyPair,
}

impl OutboundGroupSession {
    /// A fresh chain with a random key id, chain key and signing key.
    pub fn new(rng: &mut impl CryptoRngCore, suite: AeadSuite) -> Self {
        Self {
            suite,
            key_id: rng.next_u32(),
            chain: Key32::random(rng),
            index: 0,
            signing: IdentityKeyPair::generate(rng),
        }
    }

    /// The sender key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Index of the next message.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The current chain state, to send to each (remaining or new) member over a pairwise
    /// session. Recipients can decrypt from the current index on.
    pub fn distribution(&self) -> SenderKeyDistribution {
        SenderKeyDistribution {
            suite: self.suite,
            key_id: self.key_id,
            index: self.index,
            chain_key: self.chain.duplicate(),
            signing_key: self.signing.public_key(),
        }
    }

    /// Replaces the chain by a fresh one (membership change) and returns its distribution,
    /// to be sent to the current members only.
    pub fn rotate(&mut self, rng: &mut impl CryptoRngCore) -> SenderKeyDistribution {
        let mut next = Self::new(rng, self.suite);
        while next.key_id == self.key_id {
            next.key_id = rng.next_u32();
        }
        *self = next;
        self.distribution()
    }

    /// Encrypts and signs a message.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<GroupMessage, GroupError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(GroupError::PlaintextTooLong {
                max: MAX_PLAINTEXT_LEN,
                found: plaintext.len(),
            });
        }
        if self.index == u32::MAX {
            return Err(GroupError::ChainExhausted);
        }
        let (mk, next) = kdf_ck(self.chain.expose());
        let (key, nonce) = message_keys(&mk, INFO_GROUP_MESSAGE);
        let mut msg = GroupMessage {
            key_id: self.key_id,
            index: self.index,
            ciphertext: Vec::new(),
            signature: Signature([0u8; SIGNATURE_LEN]),
        };
        msg.ciphertext = self
            .suite
            .seal(&key, &nonce, &msg.header(), plaintext)
            .map_err(GroupError::Crypto)?;
        msg.signature = self.signing.sign(&msg.signed_part());
        *self.chain.expose_mut() = *next;
        self.index += 1;
        Ok(msg)
    }

    /// Encrypts this session's state under `key` (see [`crate::pickle`]).
    pub fn pickle(&self, rng: &mut impl CryptoRngCore, key: &[u8; 32]) -> Vec<u8> {
        let p = OutboundGroupPickleV1 {
            suite: self.suite.wire_code(),
            key_id: self.key_id,
            chain_key: *self.chain.expose(),
            index: self.index,
            signing_seed: *self.signing.seed(),
        };
        crate::pickle::seal(rng, key, crate::pickle::KIND_OUTBOUND_GROUP, &p)
    }

    /// Restores a session from [`OutboundGroupSession::pickle`] output.
    pub fn from_pickle(bytes: &[u8], key: &[u8; 32]) -> Result<Self, PickleError> {
        let p: OutboundGroupPickleV1 =
            crate::pickle::open(bytes, key, crate::pickle::KIND_OUTBOUND_GROUP)?;
        let mut chain = Key32::zeroed();
        chain.expose_mut().copy_from_slice(&p.chain_key);
        Ok(Self {
            suite: AeadSuite::from_wire_code(p.suite).map_err(|_| PickleError::Invalid("suite"))?,
            key_id: p.key_id,
            chain,
            index: p.index,
            signing: IdentityKeyPair::from_seed(&p.signing_seed),
        })
    }
}

impl fmt::Debug for OutboundGroupSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundGroupSession")
            .field("key_id", &self.key_id)
            .field("index", &self.index)
            .field("secrets", &"[REDACTED]")
            .finish()
    }
}

/// Another member's chain, as received in its [`SenderKeyDistribution`].
pub struct InboundGroupSession {
    suite: AeadSuite,
    key_id: u32,
    signing_key: IdentityPublicKey,
    chain: Key32,
    index: u32,
    skipped: VecDeque<(u32, Key32)>,
}

impl InboundGroupSession {
    /// Creates the session from a distribution message.
    pub fn new(distribution: &SenderKeyDistribution) -> Self {
        Self {
            suite: distribution.suite,
            key_id: distribution.key_id,
            signing_key: distribution.signing_key,
            chain: distribution.chain_key.duplicate(),
            index: distribution.index,
            skipped: VecDeque::new(),
        }
    }

    /// The sender key id this session decrypts.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Number of stored skipped message keys.
    pub fn skipped_key_count(&self) -> usize {
        self.skipped.len()
    }

    /// Verifies and decrypts a message. Transactional: on any error nothing changes.
    pub fn decrypt(&mut self, message: &GroupMessage) -> Result<Vec<u8>, GroupError> {
        if message.key_id != self.key_id {
            return Err(GroupError::UnknownSenderKey {
                expected: self.key_id,
                found: message.key_id,
            });
        }
        self.signing_key
            .verify(&message.signed_part(), &message.signature)
            .map_err(|_| GroupError::BadSignature)?;
        let header = message.header();
        if message.index < self.index {
            let Some(pos) = self.skipped.iter().position(|(i, _)| *i == message.index) else {
                return Err(GroupError::DuplicateOrExpired {
                    index: message.index,
                });
            };
            let (key, nonce) = match self.skipped.get(pos) {
                Some((_, mk)) => message_keys(mk.expose(), INFO_GROUP_MESSAGE),
                None => {
                    return Err(GroupError::DuplicateOrExpired {
                        index: message.index,
                    });
                }
            };
            let pt = self
                .suite
                .open(&key, &nonce, &header, &message.ciphertext)
                .map_err(|_| GroupError::Authentication)?;
            self.skipped.remove(pos);
            return Ok(pt);
        }
        let gap = message.index - self.index;
        if gap > MAX_GROUP_SKIP {
            return Err(GroupError::TooFarAhead {
                max: MAX_GROUP_SKIP,
                found: u64::from(gap),
            });
        }
        let mut ck = Zeroizing::new(*self.chain.expose());
        let mut new_skipped = Vec::new();
        for i in self.index..message.index {
            let (mut mk, next) = kdf_ck(&ck);
            new_skipped.push((i, Key32::new(&mut mk)));
            *ck = *next;
        }
        let (mk, next) = kdf_ck(&ck);
        let (key, nonce) = message_keys(&mk, INFO_GROUP_MESSAGE);
        let pt = self
            .suite
            .open(&key, &nonce, &header, &message.ciphertext)
            .map_err(|_| GroupError::Authentication)?;
        // Authenticated: commit.
        *self.chain.expose_mut() = *next;
        self.index = message.index.saturating_add(1);
        self.skipped.extend(new_skipped);
        while self.skipped.len() > MAX_GROUP_SKIPPED_KEYS {
            self.skipped.pop_front();
        }
        Ok(pt)
    }

    /// Encrypts this session's state under `key` (see [`crate::pickle`]).
    pub fn pickle(&self, rng: &mut impl CryptoRngCore, key: &[u8; 32]) -> Vec<u8> {
        let p = InboundGroupPickleV1 {
            suite: self.suite.wire_code(),
            key_id: self.key_id,
            signing_key: self.signing_key.to_bytes(),
            chain_key: *self.chain.expose(),
            index: self.index,
            skipped: self
                .skipped
                .iter()
                .map(|(i, k)| GroupSkippedPickleV1 {
                    index: *i,
                    key: *k.expose(),
                })
                .collect(),
        };
        crate::pickle::seal(rng, key, crate::pickle::KIND_INBOUND_GROUP, &p)
    }

    /// Restores a session from [`InboundGroupSession::pickle`] output.
    pub fn from_pickle(bytes: &[u8], key: &[u8; 32]) -> Result<Self, PickleError> {
        let p: InboundGroupPickleV1 =
            crate::pickle::open(bytes, key, crate::pickle::KIND_INBOUND_GROUP)?;
        if p.skipped.len() > MAX_GROUP_SKIPPED_KEYS {
            return Err(PickleError::Invalid("skipped key limit"));
        }
        let k32 = |b: &[u8; 32]| {
            let mut k = Key32::zeroed();
            k.expose_mut().copy_from_slice(b);
            k
        };
        Ok(Self {
            suite: AeadSuite::from_wire_code(p.suite).map_err(|_| PickleError::Invalid("suite"))?,
            key_id: p.key_id,
            signing_key: IdentityPublicKey::from_bytes(&p.signing_key)
                .map_err(|_| PickleError::Invalid("signing key"))?,
            chain: k32(&p.chain_key),
            index: p.index,
            skipped: p.skipped.iter().map(|s| (s.index, k32(&s.key))).collect(),
        })
    }
}

impl fmt::Debug for InboundGroupSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundGroupSession")
            .field("key_id", &self.key_id)
            .field("index", &self.index)
            .field("skipped_keys", &self.skipped.len())
            .field("secrets", &"[REDACTED]")
            .finish()
    }
}

#[derive(serde::Serialize, serde::Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
struct OutboundGroupPickleV1 {
    suite: u8,
    key_id: u32,
    chain_key: [u8; 32],
    index: u32,
    signing_seed: [u8; 32],
}

#[derive(serde::Serialize, serde::Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
struct InboundGroupPickleV1 {
    suite: u8,
    key_id: u32,
    signing_key: [u8; 32],
    chain_key: [u8; 32],
    index: u32,
    skipped: Vec<GroupSkippedPickleV1>,
}

#[derive(serde::Serialize, serde::Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
struct GroupSkippedPickleV1 {
    index: u32,
    key: [u8; 32],
}
