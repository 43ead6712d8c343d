//! Encrypted, versioned pickles: how accounts, sessions and group sessions are stored.
//!
//! Live state is never `Serialize`; `pickle` turns it into a versioned serde structure,
//! encodes it with postcard and seals it with AES-256-GCM under a caller-provided 32-byte key:
//!
//! ```text
//! pickle = version (1 byte, 1) || kind (1 byte) || nonce (12 random bytes)
//!          || AES-256-GCM(key, nonce, aad = "ZentalkPickle" || version || kind,
//!                         postcard(PickleV1 of that kind)) (ciphertext || tag)
//! kind   = 1 account, 2 session, 3 outbound group session, 4 inbound group session
//! ```
//!
//! Every released version stays readable: the v1 layouts are documented field by field in
//! `docs/protocol/zentalk-ratchet.md` and a v1 pickle of each kind is committed under
//! `tests/fixtures/` and loaded by the test-suite.

use serde::{Deserialize, Serialize};
use zentalk_crypto::{AeadKey, AeadSuite, CryptoRngCore, NONCE_LEN, TAG_LEN};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::PickleError;

/// The pickle format version this library writes (and the newest it reads).
pub const PICKLE_VERSION: u8 = 1;
/// Kind byte of an [`crate::Account`] pickle.
pub const KIND_ACCOUNT: u8 = 1;
/// Kind byte of a [`crate::Session`] pickle.
pub const KIND_SESSION: u8 = 2;
/// Kind byte of a [`crate::group::OutboundGroupSession`] pickle.
pub const KIND_OUTBOUND_GROUP: u8 = 3;
/// Kind byte of a [`crate::group::InboundGroupSession`] pickle.
pub const KIND_INBOUND_GROUP: u8 = 4;
/// Largest pickle accepted (a session with [`crate::MAX_SKIPPED_KEYS_LIMIT`] stored keys fits).
pub const MAX_PICKLE_LEN: usize = 4 << 20;
/// Fixed overhead of a pickle: version, kind, nonce and tag.
pub const PICKLE_OVERHEAD: usize = 2 + NONCE_LEN + TAG_LEN;

const AAD_PREFIX: &[u8] = b"ZentalkPickle";

/// A 32-byte pickle key, boxed and zeroized on drop.
fn pickle_key(key: &[u8; 32]) -> AeadKey {
    let mut k = AeadKey::zeroed();
    k.expose_mut().copy_from_slice(key);
    k
}

fn aad(version: u8, kind: u8) -> [u8; 15] {
    let mut a = [0u8; 15];
    a[..13].copy_from_slice(AAD_PREFIX);
    a[13] = version;
    a[14] = kind;
    a
}

pub(crate) fn seal<T: Serialize>(
    rng: &mut impl CryptoRngCore,
    key: &[u8; 32],
    kind: u8,
    value: &T,
) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let mut out = Vec::with_capacity(PICKLE_OVERHEAD);
    out.push(PICKLE_VERSION);
    out.push(kind);
    out.extend_from_slice(&nonce);
    // Serializing plain structs of integers and byte arrays into a Vec cannot fail, and
    // AES-256-GCM refuses only bodies longer than 64 GiB. Neither failure can happen; if one
    // did, the pickle ends after its nonce: never any plaintext, and `open` refuses it
    // (`PickleError::TooShort`) instead of restoring a wrong state.
    let Ok(plain) = postcard::to_allocvec(value).map(Zeroizing::new) else {
        return out;
    };
    let mut body = Vec::with_capacity(plain.len() + TAG_LEN);
    body.extend_from_slice(&plain);
    match AeadSuite::Aes256Gcm.seal_in_place(
        &pickle_key(key),
        &nonce,
        &aad(PICKLE_VERSION, kind),
        &mut body,
    ) {
        Ok(()) => out.extend_from_slice(&body),
        Err(_) => body.zeroize(),
    }
    out
}

pub(crate) fn open<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    key: &[u8; 32],
    kind: u8,
) -> Result<T, PickleError> {
    if bytes.len() > MAX_PICKLE_LEN {
        return Err(PickleError::TooLong {
            max: MAX_PICKLE_LEN,
            found: bytes.len(),
        });
    }
    if bytes.len() < PICKLE_OVERHEAD {
        return Err(PickleError::TooShort {
            expected: PICKLE_OVERHEAD,
            found: bytes.len(),
        });
    }
    let (version, found_kind) = (bytes[0], bytes[1]);
    if version != PICKLE_VERSION {
        return Err(PickleError::UnsupportedVersion {
            expected: PICKLE_VERSION,
            found: version,
        });
    }
    if found_kind != kind {
        return Err(PickleError::WrongKind {
            expected: kind,
            found: found_kind,
        });
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&bytes[2..2 + NONCE_LEN]);
    let mut body = Zeroizing::new(bytes[2 + NONCE_LEN..].to_vec());
    AeadSuite::Aes256Gcm
        .open_in_place(&pickle_key(key), &nonce, &aad(version, kind), &mut body)
        .map_err(|_| PickleError::WrongKeyOrTampered)?;
    let (value, rest) = postcard::take_from_bytes::<T>(&body)
        .map_err(|_| PickleError::Invalid("postcard decoding failed"))?;
    if !rest.is_empty() {
        return Err(PickleError::Invalid("trailing bytes"));
    }
    Ok(value)
}

/// v1 layout of a session pickle (field order is the postcard order).
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SessionPickleV1 {
    pub(crate) role: u8,
    pub(crate) suite: u8,
    pub(crate) header_encryption: bool,
    pub(crate) initiator_identity: [u8; 32],
    pub(crate) responder_identity: [u8; 32],
    pub(crate) session_id: [u8; 32],
    pub(crate) base_key: [u8; 32],
    pub(crate) root_key: [u8; 32],
    pub(crate) our_ratchet_secret: [u8; 32],
    pub(crate) their_ratchet: Option<[u8; 32]>,
    pub(crate) previous_their_ratchet: Option<[u8; 32]>,
    pub(crate) sending: Option<ChainPickleV1>,
    pub(crate) receiving: Option<ChainPickleV1>,
    pub(crate) previous_counter: u32,
    pub(crate) header_keys: Option<HeaderKeysPickleV1>,
    pub(crate) skipped: Vec<SkippedKeyPickleV1>,
    pub(crate) max_skipped_keys: u32,
    pub(crate) pending_prekey: Option<PendingPrekeyPickleV1>,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct ChainPickleV1 {
    pub(crate) key: [u8; 32],
    pub(crate) index: u32,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct HeaderKeysPickleV1 {
    pub(crate) send: Option<[u8; 32]>,
    pub(crate) receive: Option<[u8; 32]>,
    pub(crate) next_send: [u8; 32],
    pub(crate) next_receive: [u8; 32],
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SkippedKeyPickleV1 {
    pub(crate) chain: [u8; 32],
    pub(crate) index: u32,
    pub(crate) key: [u8; 32],
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct PendingPrekeyPickleV1 {
    pub(crate) identity_key: [u8; 32],
    pub(crate) base_key: [u8; 32],
    pub(crate) signed_prekey_id: u32,
    pub(crate) one_time_prekey_id: Option<u32>,
}

/// v1 layout of an account pickle. Signed-prekey signatures are not stored: Ed25519 is
/// deterministic, so they are recomputed on load.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct AccountPickleV1 {
    pub(crate) identity_seed: [u8; 32],
    pub(crate) signed_prekey_id: u32,
    pub(crate) signed_prekey_secret: [u8; 32],
    pub(crate) retired_signed_prekeys: Vec<RetiredPrekeyPickleV1>,
    pub(crate) one_time_prekeys: Vec<OneTimePrekeyPickleV1>,
    pub(crate) next_one_time_prekey_id: u32,
    pub(crate) used_base_keys: Vec<[u8; 32]>,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct RetiredPrekeyPickleV1 {
    pub(crate) id: u32,
    pub(crate) secret: [u8; 32],
    pub(crate) retired_at: u64,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct OneTimePrekeyPickleV1 {
    pub(crate) id: u32,
    pub(crate) secret: [u8; 32],
}

mod convert {
    use std::collections::{BTreeMap, VecDeque};

    use zentalk_crypto::{
        AeadSuite, CryptoRngCore, IdentityKeyPair, IdentityPublicKey, X25519PublicKey, X25519Secret,
    };

    use super::*;
    use crate::account::{
        Account, MAX_ONE_TIME_PREKEYS, MAX_REMEMBERED_BASE_KEYS, MAX_RETIRED_SIGNED_PREKEYS,
        RetiredSignedPrekey, SignedPrekey,
    };
    use crate::kdf::Key32;
    use crate::session::{
        Chain, HeaderKeys, MAX_SKIPPED_KEYS_LIMIT, PendingPrekey, Role, Session, SessionConfig,
        SkippedKey,
    };

    fn key32(b: &[u8; 32]) -> Key32 {
        let mut k = Key32::zeroed();
        k.expose_mut().copy_from_slice(b);
        k
    }

    fn chain_out(c: &Option<Chain>) -> Option<ChainPickleV1> {
        c.as_ref().map(|c| ChainPickleV1 {
            key: *c.key.expose(),
            index: c.index,
        })
    }

    fn chain_in(c: &Option<ChainPickleV1>) -> Option<Chain> {
        c.as_ref().map(|c| Chain {
            key: key32(&c.key),
            index: c.index,
        })
    }

    fn identity(b: &[u8; 32]) -> Result<IdentityPublicKey, PickleError> {
        IdentityPublicKey::from_bytes(b).map_err(|_| PickleError::Invalid("identity key"))
    }

    impl Session {
        /// Encrypts this session's state under `key` (see [`crate::pickle`]).
        pub fn pickle(&self, rng: &mut impl CryptoRngCore, key: &[u8; 32]) -> Vec<u8> {
            let mut initiator_identity = [0u8; 32];
            initiator_identity.copy_from_slice(&self.ad[..32]);
            let mut responder_identity = [0u8; 32];
            responder_identity.copy_from_slice(&self.ad[32..]);
            let p = SessionPickleV1 {
                role: match self.role {
                    Role::Initiator => 0,
                    Role::Responder => 1,
                },
                suite: self.config.suite.wire_code(),
                header_encryption: self.config.header_encryption,
                initiator_identity,
                responder_identity,
                session_id: self.session_id,
                base_key: self.base_key.to_bytes(),
                root_key: *self.root.expose(),
                our_ratchet_secret: *self.our_ratchet.to_secret_bytes().expose(),
                their_ratchet: self.their_ratchet.map(|k| k.to_bytes()),
                previous_their_ratchet: self.previous_their_ratchet.map(|k| k.to_bytes()),
                sending: chain_out(&self.sending),
                receiving: chain_out(&self.receiving),
                previous_counter: self.previous_counter,
                header_keys: self.header_keys.as_ref().map(|h| HeaderKeysPickleV1 {
                    send: h.send.as_ref().map(|k| *k.expose()),
                    receive: h.receive.as_ref().map(|k| *k.expose()),
                    next_send: *h.next_send.expose(),
                    next_receive: *h.next_receive.expose(),
                }),
                skipped: self
                    .skipped
                    .iter()
                    .map(|s| SkippedKeyPickleV1 {
                        chain: s.chain,
                        index: s.index,
                        key: *s.key.expose(),
                    })
                    .collect(),
                max_skipped_keys: u32::try_from(self.max_skipped_keys).unwrap_or(u32::MAX),
                pending_prekey: self.pending_prekey.map(|p| PendingPrekeyPickleV1 {
                    identity_key: p.identity_key.to_bytes(),
                    base_key: p.base_key.to_bytes(),
                    signed_prekey_id: p.signed_prekey_id,
                    one_time_prekey_id: p.one_time_prekey_id,
                }),
            };
            seal(rng, key, KIND_SESSION, &p)
        }

        /// Restores a session from [`Session::pickle`] output. A wrong key or any change to
        /// the bytes is [`PickleError::WrongKeyOrTampered`].
        pub fn from_pickle(bytes: &[u8], key: &[u8; 32]) -> Result<Self, PickleError> {
            let p: SessionPickleV1 = open(bytes, key, KIND_SESSION)?;
            let role = match p.role {
                0 => Role::Initiator,
                1 => Role::Responder,
                _ => return Err(PickleError::Invalid("role")),
            };
            let suite =
                AeadSuite::from_wire_code(p.suite).map_err(|_| PickleError::Invalid("suite"))?;
            let max_skipped_keys = p.max_skipped_keys as usize;
            if max_skipped_keys > MAX_SKIPPED_KEYS_LIMIT || p.skipped.len() > max_skipped_keys {
                return Err(PickleError::Invalid("skipped key limit"));
            }
            if p.header_encryption != p.header_keys.is_some() {
                return Err(PickleError::Invalid("header keys"));
            }
            let initiator = identity(&p.initiator_identity)?;
            let responder = identity(&p.responder_identity)?;
            let mut ad = [0u8; 64];
            ad[..32].copy_from_slice(&p.initiator_identity);
            ad[32..].copy_from_slice(&p.responder_identity);
            let pending_prekey = match &p.pending_prekey {
                Some(pp) => Some(PendingPrekey {
                    identity_key: identity(&pp.identity_key)?,
                    base_key: X25519PublicKey::from_bytes(pp.base_key),
                    signed_prekey_id: pp.signed_prekey_id,
                    one_time_prekey_id: pp.one_time_prekey_id,
                }),
                None => None,
            };
            Ok(Session {
                role,
                config: SessionConfig {
                    suite,
                    header_encryption: p.header_encryption,
                },
                ad,
                their_identity: match role {
                    Role::Initiator => responder,
                    Role::Responder => initiator,
                },
                session_id: p.session_id,
                base_key: X25519PublicKey::from_bytes(p.base_key),
                root: key32(&p.root_key),
                our_ratchet: X25519Secret::from_bytes(&p.our_ratchet_secret),
                their_ratchet: p.their_ratchet.map(X25519PublicKey::from_bytes),
                previous_their_ratchet: p.previous_their_ratchet.map(X25519PublicKey::from_bytes),
                sending: chain_in(&p.sending),
                receiving: chain_in(&p.receiving),
                previous_counter: p.previous_counter,
                header_keys: p.header_keys.as_ref().map(|h| HeaderKeys {
                    send: h.send.as_ref().map(key32),
                    receive: h.receive.as_ref().map(key32),
                    next_send: key32(&h.next_send),
                    next_receive: key32(&h.next_receive),
                }),
                skipped: p
                    .skipped
                    .iter()
                    .map(|s| SkippedKey {
                        chain: s.chain,
                        index: s.index,
                        key: key32(&s.key),
                    })
                    .collect::<VecDeque<_>>(),
                max_skipped_keys,
                pending_prekey,
            })
        }
    }

    impl Account {
        /// Encrypts this account's state under `key` (see [`crate::pickle`]).
        pub fn pickle(&self, rng: &mut impl CryptoRngCore, key: &[u8; 32]) -> Vec<u8> {
            let p = AccountPickleV1 {
                identity_seed: *self.identity.seed(),
                signed_prekey_id: self.signed_prekey.id,
                signed_prekey_secret: *self.signed_prekey.secret.to_secret_bytes().expose(),
                retired_signed_prekeys: self
                    .retired_signed_prekeys
                    .iter()
                    .map(|r| RetiredPrekeyPickleV1 {
                        id: r.prekey.id,
                        secret: *r.prekey.secret.to_secret_bytes().expose(),
                        retired_at: r.retired_at,
                    })
                    .collect(),
                one_time_prekeys: self
                    .one_time_prekeys
                    .iter()
                    .map(|(id, k)| OneTimePrekeyPickleV1 {
                        id: *id,
                        secret: *k.to_secret_bytes().expose(),
                    })
                    .collect(),
                next_one_time_prekey_id: self.next_one_time_prekey_id,
                used_base_keys: self.used_base_keys.iter().copied().collect(),
            };
            seal(rng, key, KIND_ACCOUNT, &p)
        }

        /// Restores an account from [`Account::pickle`] output.
        pub fn from_pickle(bytes: &[u8], key: &[u8; 32]) -> Result<Self, PickleError> {
            let p: AccountPickleV1 = open(bytes, key, KIND_ACCOUNT)?;
            if p.one_time_prekeys.len() > MAX_ONE_TIME_PREKEYS
                || p.retired_signed_prekeys.len() > MAX_RETIRED_SIGNED_PREKEYS
                || p.used_base_keys.len() > MAX_REMEMBERED_BASE_KEYS
            {
                return Err(PickleError::Invalid("account limits"));
            }
            let identity = IdentityKeyPair::from_seed(&p.identity_seed);
            let signed = |id: u32, secret: &[u8; 32]| {
                let secret = X25519Secret::from_bytes(secret);
                SignedPrekey {
                    id,
                    signature: identity.sign(secret.public_key().as_bytes()),
                    secret,
                }
            };
            let signed_prekey = signed(p.signed_prekey_id, &p.signed_prekey_secret);
            let retired_signed_prekeys = p
                .retired_signed_prekeys
                .iter()
                .map(|r| RetiredSignedPrekey {
                    prekey: signed(r.id, &r.secret),
                    retired_at: r.retired_at,
                })
                .collect();
            let one_time_prekeys: BTreeMap<u32, X25519Secret> = p
                .one_time_prekeys
                .iter()
                .map(|o| (o.id, X25519Secret::from_bytes(&o.secret)))
                .collect();
            Ok(Account {
                identity_x25519: identity.to_x25519(),
                signed_prekey,
                retired_signed_prekeys,
                one_time_prekeys,
                next_one_time_prekey_id: p.next_one_time_prekey_id,
                used_base_keys: p.used_base_keys.iter().copied().collect(),
                identity,
            })
        }
    }
}
