//! The long-term side of a user: identity key, signed prekeys and one-time prekeys.

use core::fmt;
use std::collections::{BTreeMap, VecDeque};

use zentalk_crypto::{
    CryptoRngCore, IdentityKeyPair, IdentityPublicKey, Signature, X25519PublicKey, X25519Secret,
};

use crate::SessionCreationError;
use crate::message::PrekeyMessage;
use crate::session::{Session, SessionConfig};
use crate::x3dh::{self, PrekeyBundle};

/// Most one-time prekeys an account holds; [`Account::generate_one_time_prekeys`] stops there.
pub const MAX_ONE_TIME_PREKEYS: usize = 1000;
/// Most retired signed prekeys kept for their grace period (the oldest is dropped first).
pub const MAX_RETIRED_SIGNED_PREKEYS: usize = 8;
/// Default grace period of a retired signed prekey, in seconds (seven days): initial
/// messages sent to it while it was current can still be accepted during that time.
pub const DEFAULT_SIGNED_PREKEY_GRACE_SECS: u64 = 7 * 24 * 60 * 60;
/// How many initial-message ephemeral keys an account remembers to refuse a replayed initial
/// message that used no one-time prekey (the oldest is forgotten first).
pub const MAX_REMEMBERED_BASE_KEYS: usize = 1000;

pub(crate) struct SignedPrekey {
    pub(crate) id: u32,
    pub(crate) secret: X25519Secret,
    pub(crate) signature: Signature,
}

pub(crate) struct RetiredSignedPrekey {
    pub(crate) prekey: SignedPrekey,
    pub(crate) retired_at: u64,
}

/// A user's account: an Ed25519 identity, a signed prekey (rotated with a grace period) and a
/// pool of one-time prekeys.
///
/// Call order: [`Account::new`] once; publish [`Account::prekey_bundle`]; on receiving an
/// initial message, [`Account::create_inbound_session`] (which deletes the one-time prekey it
/// used); to talk first, [`Account::create_outbound_session`] with the peer's bundle.
/// Periodically [`Account::rotate_signed_prekey`], [`Account::expire_signed_prekeys`] and
/// [`Account::generate_one_time_prekeys`]. Store it with [`Account::pickle`].
pub struct Account {
    pub(crate) identity: IdentityKeyPair,
    pub(crate) identity_x25519: X25519Secret,
    pub(crate) signed_prekey: SignedPrekey,
    pub(crate) retired_signed_prekeys: VecDeque<RetiredSignedPrekey>,
    pub(crate) one_time_prekeys: BTreeMap<u32, X25519Secret>,
    pub(crate) next_one_time_prekey_id: u32,
    pub(crate) used_base_keys: VecDeque<[u8; 32]>,
}

impl Account {
    /// A new account with a fresh identity and signed prekey (id 1), no one-time prekeys.
    pub fn new(rng: &mut impl CryptoRngCore) -> Self {
        let identity = IdentityKeyPair::generate(rng);
        Self::from_identity(rng, identity)
    }

    /// An account for an existing identity (imported from its seed with
    /// [`IdentityKeyPair::from_seed`]) with a fresh signed prekey.
    pub fn from_identity(rng: &mut impl CryptoRngCore, identity: IdentityKeyPair) -> Self {
        let spk = X25519Secret::generate(rng);
        Self::from_keys(identity, 1, spk)
    }

    /// An account from raw keys (migration and interop tests): identity, signed prekey id and
    /// secret.
    pub fn from_keys(
        identity: IdentityKeyPair,
        signed_prekey_id: u32,
        signed_prekey: X25519Secret,
    ) -> Self {
        let signature = identity.sign(signed_prekey.public_key().as_bytes());
        Self {
            identity_x25519: identity.to_x25519(),
            identity,
            signed_prekey: SignedPrekey {
                id: signed_prekey_id,
                secret: signed_prekey,
                signature,
            },
            retired_signed_prekeys: VecDeque::new(),
            one_time_prekeys: BTreeMap::new(),
            next_one_time_prekey_id: 1,
            used_base_keys: VecDeque::new(),
        }
    }

    /// The Ed25519 identity key pair.
    pub fn identity(&self) -> &IdentityKeyPair {
        &self.identity
    }

    /// The Ed25519 identity public key.
    pub fn identity_key(&self) -> IdentityPublicKey {
        self.identity.public_key()
    }

    /// Id of the current signed prekey.
    pub fn signed_prekey_id(&self) -> u32 {
        self.signed_prekey.id
    }

    /// Ids of the retired signed prekeys still accepted.
    pub fn retired_signed_prekey_ids(&self) -> Vec<u32> {
        self.retired_signed_prekeys
            .iter()
            .map(|r| r.prekey.id)
            .collect()
    }

    /// Adds up to `count` one-time prekeys (never beyond [`MAX_ONE_TIME_PREKEYS`]) and
    /// returns how many were added. Publish them with [`Account::one_time_prekeys`].
    pub fn generate_one_time_prekeys(
        &mut self,
        rng: &mut impl CryptoRngCore,
        count: usize,
    ) -> usize {
        let room = MAX_ONE_TIME_PREKEYS.saturating_sub(self.one_time_prekeys.len());
        let n = count.min(room);
        for _ in 0..n {
            let id = self.next_one_time_prekey_id;
            self.next_one_time_prekey_id = self.next_one_time_prekey_id.wrapping_add(1).max(1);
            self.one_time_prekeys
                .insert(id, X25519Secret::generate(rng));
        }
        n
    }

    /// Tops the pool up to `target` one-time prekeys; returns how many were added.
    pub fn refill_one_time_prekeys(
        &mut self,
        rng: &mut impl CryptoRngCore,
        target: usize,
    ) -> usize {
        let missing = target.saturating_sub(self.one_time_prekeys.len());
        self.generate_one_time_prekeys(rng, missing)
    }

    /// The unused one-time prekeys (id, public key), lowest id first.
    pub fn one_time_prekeys(&self) -> Vec<(u32, X25519PublicKey)> {
        self.one_time_prekeys
            .iter()
            .map(|(id, k)| (*id, k.public_key()))
            .collect()
    }

    /// The bundle to publish: identity key, signed prekey with id and signature, and the
    /// lowest-id unused one-time prekey if any.
    pub fn prekey_bundle(&self) -> PrekeyBundle {
        PrekeyBundle {
            identity_key: self.identity.public_key(),
            signed_prekey_id: self.signed_prekey.id,
            signed_prekey: self.signed_prekey.secret.public_key(),
            signed_prekey_signature: self.signed_prekey.signature,
            one_time_prekey: self
                .one_time_prekeys
                .iter()
                .next()
                .map(|(id, k)| (*id, k.public_key())),
        }
    }

    /// Replaces the signed prekey with a fresh one (id + 1). The old one is retired at `now`
    /// (seconds, any epoch the caller uses consistently) and still accepted until
    /// [`Account::expire_signed_prekeys`] removes it, so initial messages already in flight
    /// can be read. Returns the new id.
    pub fn rotate_signed_prekey(&mut self, rng: &mut impl CryptoRngCore, now: u64) -> u32 {
        let secret = X25519Secret::generate(rng);
        let id = self.signed_prekey.id.wrapping_add(1);
        let signature = self.identity.sign(secret.public_key().as_bytes());
        let old = core::mem::replace(
            &mut self.signed_prekey,
            SignedPrekey {
                id,
                secret,
                signature,
            },
        );
        self.retired_signed_prekeys.push_back(RetiredSignedPrekey {
            prekey: old,
            retired_at: now,
        });
        while self.retired_signed_prekeys.len() > MAX_RETIRED_SIGNED_PREKEYS {
            self.retired_signed_prekeys.pop_front();
        }
        id
    }

    /// Deletes retired signed prekeys whose grace period (`grace` seconds after retirement)
    /// has passed at `now`. Returns how many were deleted.
    pub fn expire_signed_prekeys(&mut self, now: u64, grace: u64) -> usize {
        let before = self.retired_signed_prekeys.len();
        self.retired_signed_prekeys
            .retain(|r| r.retired_at.saturating_add(grace) > now);
        before - self.retired_signed_prekeys.len()
    }

    /// Starts a session with the owner of `bundle` (X3DH as initiator). Fails without any
    /// side effect if the signed prekey's signature is bad or a key is a low-order point.
    pub fn create_outbound_session(
        &self,
        rng: &mut impl CryptoRngCore,
        bundle: &PrekeyBundle,
        config: SessionConfig,
    ) -> Result<Session, SessionCreationError> {
        let x3dh = x3dh::initiate(rng, &self.identity, &self.identity_x25519, bundle)?;
        Session::new_outbound(x3dh, X25519Secret::generate(rng), config)
    }

    /// Deterministic [`Account::create_outbound_session`] with explicit ephemeral and ratchet
    /// secrets, for known-answer vectors only.
    #[cfg(any(test, feature = "test-vectors"))]
    #[doc(hidden)]
    pub fn create_outbound_session_with_secrets(
        &self,
        bundle: &PrekeyBundle,
        ephemeral: X25519Secret,
        ratchet: X25519Secret,
        config: SessionConfig,
    ) -> Result<(Session, [u8; 32]), SessionCreationError> {
        let x3dh = x3dh::initiate_with_ephemeral(
            &self.identity,
            &self.identity_x25519,
            bundle,
            ephemeral,
        )?;
        let sk = x3dh.shared_secret_for_tests();
        Ok((Session::new_outbound(x3dh, ratchet, config)?, sk))
    }

    /// Imports a one-time prekey from its raw secret (migration, interop tests). Returns
    /// `false`, changing nothing, if the id is taken or the pool holds
    /// [`MAX_ONE_TIME_PREKEYS`] already. Later generated ids continue after the largest one.
    pub fn import_one_time_prekey(&mut self, id: u32, secret: X25519Secret) -> bool {
        if self.one_time_prekeys.len() >= MAX_ONE_TIME_PREKEYS
            || self.one_time_prekeys.contains_key(&id)
        {
            return false;
        }
        self.one_time_prekeys.insert(id, secret);
        if id >= self.next_one_time_prekey_id {
            self.next_one_time_prekey_id = id.wrapping_add(1).max(1);
        }
        true
    }

    /// Accepts an initial message (X3DH as responder): returns the new session and the first
    /// message's plaintext. Transactional: on any error the account is unchanged. On success
    /// the one-time prekey used is deleted and the ephemeral key remembered, so the same
    /// initial message cannot create a second session.
    pub fn create_inbound_session(
        &mut self,
        message: &PrekeyMessage,
    ) -> Result<(Session, Vec<u8>), SessionCreationError> {
        let spk = if message.signed_prekey_id == self.signed_prekey.id {
            &self.signed_prekey
        } else {
            match self
                .retired_signed_prekeys
                .iter()
                .find(|r| r.prekey.id == message.signed_prekey_id)
            {
                Some(r) => &r.prekey,
                None => {
                    return Err(SessionCreationError::UnknownSignedPrekey {
                        current: self.signed_prekey.id,
                        found: message.signed_prekey_id,
                    });
                }
            }
        };
        let opk = match message.one_time_prekey_id {
            Some(id) => Some(
                self.one_time_prekeys
                    .get(&id)
                    .ok_or(SessionCreationError::UnknownOneTimePrekey { found: id })?,
            ),
            None => None,
        };
        let base = message.base_key.to_bytes();
        if self.used_base_keys.contains(&base) {
            return Err(SessionCreationError::ReplayedInitialMessage);
        }
        let x3dh = x3dh::respond(
            &self.identity.public_key(),
            &self.identity_x25519,
            &spk.secret,
            opk,
            &message.identity_key,
            &message.base_key,
        )?;
        let config = SessionConfig {
            suite: message.suite,
            header_encryption: message.header_encryption(),
        };
        let mut session = Session::new_inbound(x3dh, spk.secret.duplicate(), config);
        let plaintext = session.decrypt_ratchet(&message.message)?;
        // Authenticated: commit.
        if let Some(id) = message.one_time_prekey_id {
            self.one_time_prekeys.remove(&id);
        }
        self.used_base_keys.push_back(base);
        while self.used_base_keys.len() > MAX_REMEMBERED_BASE_KEYS {
            self.used_base_keys.pop_front();
        }
        Ok((session, plaintext))
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("identity_key", &self.identity.public_key())
            .field("signed_prekey_id", &self.signed_prekey.id)
            .field("one_time_prekeys", &self.one_time_prekeys.len())
            .field("secrets", &"[REDACTED]")
            .finish()
    }
}
