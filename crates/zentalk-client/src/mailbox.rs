//! Mailbox keys and addresses.

use std::fmt;

use zentalk_crypto::{IdentityKeyPair, IdentityPublicKey, NodeId, Signature, hash::blake2b_256};
use zentalk_onion::MailboxId;

/// Domain-separation prefix of the string a mailbox key signs to answer a relay's challenge
/// (`proto/mailbox.proto`, `MailboxAuth.signature`).
pub const MAILBOX_AUTH_CONTEXT: &[u8] = b"zentalk-mailbox-auth-v1";

/// Where a mailbox lives: the relay that keeps it and the mailbox id. This is all a sender
/// needs to address a packet to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxAddr {
    /// Node id of the relay that keeps the mailbox (the last hop of every route to it).
    pub relay: NodeId,
    /// The mailbox id: BLAKE2b-256 of the mailbox's Ed25519 public key.
    pub mailbox: MailboxId,
}

impl MailboxAddr {
    /// Encoded length: relay id || mailbox id.
    pub const LEN: usize = 64;

    /// `relay || mailbox`.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..32].copy_from_slice(self.relay.as_bytes());
        out[32..].copy_from_slice(self.mailbox.as_bytes());
        out
    }

    /// Inverse of [`MailboxAddr::to_bytes`].
    pub fn from_bytes(bytes: &[u8; Self::LEN]) -> Self {
        let mut relay = [0u8; 32];
        let mut mailbox = [0u8; 32];
        relay.copy_from_slice(&bytes[..32]);
        mailbox.copy_from_slice(&bytes[32..]);
        Self {
            relay: NodeId::from_bytes(relay),
            mailbox: MailboxId::from_bytes(mailbox),
        }
    }
}

/// A mailbox the client owns: its own Ed25519 key pair (never the identity key) and the relay
/// it lives on.
pub struct MailboxKey {
    key: IdentityKeyPair,
    relay: NodeId,
}

impl MailboxKey {
    /// A fresh mailbox key pair on `relay`.
    pub fn generate(rng: &mut impl zentalk_crypto::CryptoRngCore, relay: NodeId) -> Self {
        Self {
            key: IdentityKeyPair::generate(rng),
            relay,
        }
    }

    /// Rebuilds a mailbox key from its seed.
    pub fn from_seed(seed: &[u8; 32], relay: NodeId) -> Self {
        Self {
            key: IdentityKeyPair::from_seed(seed),
            relay,
        }
    }

    /// The secret seed (for the encrypted local store only).
    pub fn seed(&self) -> zeroize::Zeroizing<[u8; 32]> {
        self.key.seed()
    }

    /// The mailbox public key.
    pub fn public_key(&self) -> IdentityPublicKey {
        self.key.public_key()
    }

    /// The mailbox id: BLAKE2b-256 of the public key.
    pub fn id(&self) -> MailboxId {
        MailboxId::from_bytes(blake2b_256(self.key.public_key().as_bytes()))
    }

    /// The relay and mailbox id.
    pub fn addr(&self) -> MailboxAddr {
        MailboxAddr {
            relay: self.relay,
            mailbox: self.id(),
        }
    }

    /// Signs a relay's mailbox challenge: `MAILBOX_AUTH_CONTEXT || relay_id || nonce ||
    /// mailbox_id`.
    pub fn sign_challenge(&self, relay_id: &[u8; 32], nonce: &[u8; 32]) -> Signature {
        let mut msg = Vec::with_capacity(MAILBOX_AUTH_CONTEXT.len() + 96);
        msg.extend_from_slice(MAILBOX_AUTH_CONTEXT);
        msg.extend_from_slice(relay_id);
        msg.extend_from_slice(nonce);
        msg.extend_from_slice(self.id().as_bytes());
        self.key.sign(&msg)
    }
}

impl fmt::Debug for MailboxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailboxKey")
            .field("addr", &self.addr())
            .field("secret", &"<redacted>")
            .finish()
    }
}
