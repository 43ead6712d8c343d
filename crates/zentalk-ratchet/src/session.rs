//! The Double Ratchet session (Signal's specification, sections 3 and 4, with the recommended
//! functions of section 5.2).
//!
//! One deviation in *scheduling* only, invisible on the wire: the second half of the DH
//! ratchet step (new ratchet key pair, new sending chain) runs when the session next encrypts
//! rather than when it receives. The keys and messages are exactly those of the specification;
//! decryption therefore needs no randomness and cannot fail halfway through a key generation.

use alloc_free::AadBuf;
use core::fmt;
use std::collections::VecDeque;

use zentalk_crypto::{
    AeadSuite, CryptoError, CryptoRngCore, IdentityPublicKey, NONCE_LEN, X25519PublicKey,
    X25519Secret,
};
use zeroize::{Zeroize, Zeroizing};

use crate::kdf::{INFO_MESSAGE, Key32, header_keys, kdf_ck, kdf_rk, kdf_rk_he, message_keys};
use crate::message::{
    ENCRYPTED_HEADER_LEN, HEADER_LEN, Header, MAX_PLAINTEXT_LEN, Message, MessageHeader,
    PrekeyMessage, RatchetMessage,
};
use crate::x3dh::{AD_LEN, InitiatorX3dh, ResponderX3dh};
use crate::{DecryptError, EncryptError, SessionCreationError};

/// Most message keys one message may make a chain skip (Signal's `MAX_SKIP`).
pub const MAX_SKIP: u32 = 1000;
/// Default bound on the skipped message keys a session stores; the oldest is evicted first.
pub const DEFAULT_MAX_SKIPPED_KEYS: usize = 1000;
/// Largest value [`Session::set_max_skipped_keys`] accepts (bounds a pickle's size too).
pub const MAX_SKIPPED_KEYS_LIMIT: usize = 20_000;

mod alloc_free {
    /// Associated data on the stack: AD (64) || header (40) or AD || nonce (12) || sealed (56).
    pub(super) struct AadBuf {
        buf: [u8; 64 + 12 + 56],
        len: usize,
    }

    impl AadBuf {
        pub(super) fn new(parts: &[&[u8]]) -> Self {
            let mut buf = [0u8; 64 + 12 + 56];
            let mut len = 0;
            for p in parts {
                let end = (len + p.len()).min(buf.len());
                buf[len..end].copy_from_slice(&p[..end - len]);
                len = end;
            }
            Self { buf, len }
        }

        pub(super) fn as_slice(&self) -> &[u8] {
            &self.buf[..self.len]
        }
    }
}

/// Options chosen by the initiator when it creates a session; the responder learns them from
/// the initial message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionConfig {
    /// The AEAD suite of every message (and encrypted header).
    pub suite: AeadSuite,
    /// Encrypt headers (Double Ratchet section 4), hiding ratchet keys and counters from
    /// relays at the cost of 28 bytes per message and trial decryption on receipt.
    pub header_encryption: bool,
}

/// Which side of X3DH this session was created on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Alice: fetched a bundle and sent the initial message.
    Initiator,
    /// Bob: published the bundle and received the initial message.
    Responder,
}

pub(crate) struct Chain {
    pub(crate) key: Key32,
    pub(crate) index: u32,
}

pub(crate) struct HeaderKeys {
    pub(crate) send: Option<Key32>,
    pub(crate) receive: Option<Key32>,
    pub(crate) next_send: Key32,
    pub(crate) next_receive: Key32,
}

/// A stored skipped message key. `chain` is the sender's ratchet public key, or in a
/// header-encrypted session the (secret) header key of its chain.
pub(crate) struct SkippedKey {
    pub(crate) chain: [u8; 32],
    pub(crate) index: u32,
    pub(crate) key: Key32,
}

impl Drop for SkippedKey {
    fn drop(&mut self) {
        self.chain.zeroize();
    }
}

/// What the initiator repeats in every message until it hears back.
#[derive(Clone, Copy)]
pub(crate) struct PendingPrekey {
    pub(crate) identity_key: IdentityPublicKey,
    pub(crate) base_key: X25519PublicKey,
    pub(crate) signed_prekey_id: u32,
    pub(crate) one_time_prekey_id: Option<u32>,
}

/// A Double Ratchet session with one peer.
///
/// Methods: [`Session::encrypt`] and [`Session::decrypt`], in any order the application
/// likes; both are transactional (a failed call leaves the session unchanged). Sessions are
/// not `Serialize`: store them with [`Session::pickle`].
pub struct Session {
    pub(crate) role: Role,
    pub(crate) config: SessionConfig,
    pub(crate) ad: [u8; AD_LEN],
    pub(crate) their_identity: IdentityPublicKey,
    pub(crate) session_id: [u8; 32],
    pub(crate) base_key: X25519PublicKey,
    pub(crate) root: Key32,
    pub(crate) our_ratchet: X25519Secret,
    pub(crate) their_ratchet: Option<X25519PublicKey>,
    pub(crate) previous_their_ratchet: Option<X25519PublicKey>,
    pub(crate) sending: Option<Chain>,
    pub(crate) receiving: Option<Chain>,
    pub(crate) previous_counter: u32,
    pub(crate) header_keys: Option<HeaderKeys>,
    pub(crate) skipped: VecDeque<SkippedKey>,
    pub(crate) max_skipped_keys: usize,
    pub(crate) pending_prekey: Option<PendingPrekey>,
}

/// State changes a successful decryption commits.
struct Candidate {
    new_chain: Option<NewChain>,
    receiving_key: Zeroizing<[u8; 32]>,
    skipped: Vec<SkippedKey>,
}

struct NewChain {
    root: Key32,
    their_ratchet: X25519PublicKey,
    next_receive_header_key: Option<Key32>,
}

impl Session {
    /// Creates the initiator's session from its X3DH output (RatchetInitAlice). The
    /// `ratchet_key` is Alice's first ratchet key pair: fresh, never the X3DH ephemeral.
    pub fn new_outbound(
        x3dh: InitiatorX3dh,
        ratchet_key: X25519Secret,
        config: SessionConfig,
    ) -> Result<Self, SessionCreationError> {
        let dh = ratchet_key
            .diffie_hellman(&x3dh.their_signed_prekey)
            .map_err(|_| SessionCreationError::LowOrderPoint)?;
        let sk = &x3dh.shared.sk;
        let (root, chain, header_keys) = if config.header_encryption {
            let (hka, nhkb) = header_keys(sk);
            let (root, chain, next_send) = kdf_rk_he(sk, dh.expose());
            let hk = HeaderKeys {
                send: Some(hka),
                receive: None,
                next_send,
                next_receive: nhkb,
            };
            (root, chain, Some(hk))
        } else {
            let (root, chain) = kdf_rk(sk, dh.expose());
            (root, chain, None)
        };
        Ok(Self {
            role: Role::Initiator,
            config,
            ad: x3dh.shared.ad,
            their_identity: x3dh.their_identity_key,
            session_id: x3dh.shared.session_id,
            base_key: x3dh.base_key,
            root,
            our_ratchet: ratchet_key,
            their_ratchet: Some(x3dh.their_signed_prekey),
            previous_their_ratchet: None,
            sending: Some(Chain {
                key: chain,
                index: 0,
            }),
            receiving: None,
            previous_counter: 0,
            header_keys,
            skipped: VecDeque::new(),
            max_skipped_keys: DEFAULT_MAX_SKIPPED_KEYS,
            pending_prekey: Some(PendingPrekey {
                identity_key: x3dh.identity_key,
                base_key: x3dh.base_key,
                signed_prekey_id: x3dh.signed_prekey_id,
                one_time_prekey_id: x3dh.one_time_prekey_id,
            }),
        })
    }

    /// Creates the responder's session from its X3DH output (RatchetInitBob): its first
    /// ratchet key pair is the signed prekey. It must then decrypt the initial message's
    /// ratchet message, which [`crate::Account::create_inbound_session`] does.
    pub fn new_inbound(
        x3dh: ResponderX3dh,
        signed_prekey: X25519Secret,
        config: SessionConfig,
    ) -> Self {
        let header_keys = config.header_encryption.then(|| {
            let (hka, nhkb) = header_keys(&x3dh.shared.sk);
            HeaderKeys {
                send: None,
                receive: None,
                next_send: nhkb,
                next_receive: hka,
            }
        });
        Self {
            role: Role::Responder,
            config,
            ad: x3dh.shared.ad,
            their_identity: x3dh.their_identity_key,
            session_id: x3dh.shared.session_id,
            base_key: x3dh.base_key,
            root: x3dh.shared.sk,
            our_ratchet: signed_prekey,
            their_ratchet: None,
            previous_their_ratchet: None,
            sending: None,
            receiving: None,
            previous_counter: 0,
            header_keys,
            skipped: VecDeque::new(),
            max_skipped_keys: DEFAULT_MAX_SKIPPED_KEYS,
            pending_prekey: None,
        }
    }

    /// A stable identifier both sides compute alike:
    /// BLAKE2b-256("ZentalkSessionId" || AD || EK_A).
    pub fn session_id(&self) -> [u8; 32] {
        self.session_id
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The session's options (suite, header encryption).
    pub fn config(&self) -> SessionConfig {
        self.config
    }

    /// The X3DH associated data: IK_A || IK_B.
    pub fn associated_data(&self) -> &[u8; AD_LEN] {
        &self.ad
    }

    /// The peer's Ed25519 identity key.
    pub fn their_identity_key(&self) -> IdentityPublicKey {
        self.their_identity
    }

    /// The initiator's X3DH ephemeral key (EK_A), which identifies the session's initial
    /// messages.
    pub fn base_key(&self) -> X25519PublicKey {
        self.base_key
    }

    /// Whether `message` is an initial message of this session (same initiator identity and
    /// ephemeral key), so the application can route a late or repeated initial message to
    /// the session it already created instead of to [`crate::Account::create_inbound_session`].
    pub fn matches_prekey_message(&self, message: &PrekeyMessage) -> bool {
        self.role == Role::Responder
            && message.base_key == self.base_key
            && message.identity_key == self.their_identity
            && message.suite == self.config.suite
    }

    /// Our current ratchet public key (what the next message's header will carry, unless a
    /// DH step is due).
    pub fn ratchet_public_key(&self) -> X25519PublicKey {
        self.our_ratchet.public_key()
    }

    /// Whether this session has decrypted a message from the peer (until then the initiator
    /// sends initial messages).
    pub fn has_received_message(&self) -> bool {
        self.receiving.is_some()
    }

    /// Number of skipped message keys stored.
    pub fn skipped_key_count(&self) -> usize {
        self.skipped.len()
    }

    /// The bound on stored skipped message keys.
    pub fn max_skipped_keys(&self) -> usize {
        self.max_skipped_keys
    }

    /// Changes the bound on stored skipped message keys (clamped to
    /// [`MAX_SKIPPED_KEYS_LIMIT`]); the oldest keys are evicted if the store is over the bound.
    pub fn set_max_skipped_keys(&mut self, max: usize) {
        self.max_skipped_keys = max.min(MAX_SKIPPED_KEYS_LIMIT);
        while self.skipped.len() > self.max_skipped_keys {
            self.skipped.pop_front();
        }
    }

    /// Encrypts `plaintext`. Draws randomness only for a DH ratchet step (the first message
    /// after the speaker changed) and for the nonce of an encrypted header.
    pub fn encrypt(
        &mut self,
        rng: &mut impl CryptoRngCore,
        plaintext: &[u8],
    ) -> Result<Message, EncryptError> {
        let new_ratchet = self.sending.is_none().then(|| X25519Secret::generate(rng));
        let mut nonce = [0u8; NONCE_LEN];
        if self.header_keys.is_some() {
            rng.fill_bytes(&mut nonce);
        }
        self.encrypt_inner(new_ratchet, nonce, plaintext)
    }

    /// Deterministic encryption with an explicit next ratchet key and header nonce, for
    /// known-answer vectors only.
    #[cfg(any(test, feature = "test-vectors"))]
    #[doc(hidden)]
    pub fn encrypt_with_secrets(
        &mut self,
        new_ratchet: X25519Secret,
        header_nonce: [u8; NONCE_LEN],
        plaintext: &[u8],
    ) -> Result<Message, EncryptError> {
        let new_ratchet = self.sending.is_none().then_some(new_ratchet);
        self.encrypt_inner(new_ratchet, header_nonce, plaintext)
    }

    fn encrypt_inner(
        &mut self,
        new_ratchet: Option<X25519Secret>,
        header_nonce: [u8; NONCE_LEN],
        plaintext: &[u8],
    ) -> Result<Message, EncryptError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(EncryptError::PlaintextTooLong {
                max: MAX_PLAINTEXT_LEN,
                found: plaintext.len(),
            });
        }
        if let Some(new_ratchet) = new_ratchet {
            self.sending_step(new_ratchet)?;
        }
        let Some(chain) = self.sending.as_mut() else {
            return Err(EncryptError::NoPeerRatchetKey);
        };
        if chain.index == u32::MAX {
            return Err(EncryptError::ChainExhausted);
        }
        let (mk, next) = kdf_ck(chain.key.expose());
        let header = Header {
            ratchet_key: self.our_ratchet.public_key(),
            previous_chain_length: self.previous_counter,
            index: chain.index,
        };
        let (key, nonce) = message_keys(&mk, INFO_MESSAGE);
        let suite = self.config.suite;
        let header_bytes = header.to_bytes();
        let message = match self.header_keys.as_ref().and_then(|h| h.send.as_ref()) {
            None => {
                let aad = AadBuf::new(&[&self.ad, &header_bytes]);
                let ciphertext = suite
                    .seal(&key, &nonce, aad.as_slice(), plaintext)
                    .map_err(EncryptError::Crypto)?;
                RatchetMessage {
                    header: MessageHeader::Plain(header),
                    ciphertext,
                }
            }
            Some(hk) => {
                let sealed_vec = suite
                    .seal(hk, &header_nonce, &self.ad, &header_bytes)
                    .map_err(EncryptError::Crypto)?;
                // AEAD output is always header + tag; a mismatch would be a primitive failure.
                let sealed: [u8; ENCRYPTED_HEADER_LEN] = sealed_vec
                    .as_slice()
                    .try_into()
                    .map_err(|_| EncryptError::Crypto(CryptoError::AeadFailure))?;
                let aad = AadBuf::new(&[&self.ad, &header_nonce, &sealed]);
                let ciphertext = suite
                    .seal(&key, &nonce, aad.as_slice(), plaintext)
                    .map_err(EncryptError::Crypto)?;
                RatchetMessage {
                    header: MessageHeader::Encrypted {
                        nonce: header_nonce,
                        sealed,
                    },
                    ciphertext,
                }
            }
        };
        *chain.key.expose_mut() = *next;
        chain.index += 1;
        Ok(match self.pending_prekey {
            Some(p) => Message::Prekey(PrekeyMessage {
                suite,
                identity_key: p.identity_key,
                base_key: p.base_key,
                signed_prekey_id: p.signed_prekey_id,
                one_time_prekey_id: p.one_time_prekey_id,
                message,
            }),
            None => Message::Normal(message),
        })
    }

    /// The sending half of the DH ratchet: new key pair, new sending chain.
    fn sending_step(&mut self, new_ratchet: X25519Secret) -> Result<(), EncryptError> {
        let their = self.their_ratchet.ok_or(EncryptError::NoPeerRatchetKey)?;
        let dh = new_ratchet
            .diffie_hellman(&their)
            .map_err(|_| EncryptError::LowOrderPoint)?;
        let chain = match self.header_keys.as_mut() {
            Some(hk) => {
                let (root, chain, next_send) = kdf_rk_he(&self.root, dh.expose());
                hk.send = Some(core::mem::replace(&mut hk.next_send, next_send));
                self.root = root;
                chain
            }
            None => {
                let (root, chain) = kdf_rk(&self.root, dh.expose());
                self.root = root;
                chain
            }
        };
        self.our_ratchet = new_ratchet;
        self.sending = Some(Chain {
            key: chain,
            index: 0,
        });
        Ok(())
    }

    /// Decrypts a message. On any error the session is unchanged and keeps working.
    pub fn decrypt(&mut self, message: &Message) -> Result<Vec<u8>, DecryptError> {
        match message {
            Message::Normal(m) => self.decrypt_ratchet(m),
            Message::Prekey(m) => {
                if !self.matches_prekey_message(m) {
                    return Err(DecryptError::SessionMismatch);
                }
                self.decrypt_ratchet(&m.message)
            }
        }
    }

    /// Decrypts the ratchet message part of a message.
    pub fn decrypt_ratchet(&mut self, message: &RatchetMessage) -> Result<Vec<u8>, DecryptError> {
        let suite = self.config.suite;
        let (header, aad, he_chain) = match (&message.header, &self.header_keys) {
            (MessageHeader::Plain(h), None) => {
                let hb = h.to_bytes();
                (*h, AadBuf::new(&[&self.ad, &hb]), None)
            }
            (MessageHeader::Encrypted { nonce, sealed }, Some(hk)) => {
                let aad = AadBuf::new(&[&self.ad, nonce, sealed]);
                let open = |key: &Key32| -> Option<Header> {
                    let mut buf = sealed.to_vec();
                    suite.open_in_place(key, nonce, &self.ad, &mut buf).ok()?;
                    let arr: [u8; HEADER_LEN] = buf.as_slice().try_into().ok()?;
                    Some(Header::from_bytes(&arr))
                };
                if let Some(h) = hk.receive.as_ref().and_then(&open) {
                    (h, aad, Some(HeChain::Current))
                } else if let Some(h) = open(&hk.next_receive) {
                    (h, aad, Some(HeChain::Next))
                } else {
                    // An older chain whose skipped keys are still stored.
                    let mut tried: Vec<&[u8; 32]> = Vec::new();
                    let mut found = None;
                    for s in &self.skipped {
                        if tried.contains(&&s.chain) {
                            continue;
                        }
                        tried.push(&s.chain);
                        let mut k = Key32::zeroed();
                        *k.expose_mut() = s.chain;
                        if let Some(h) = open(&k) {
                            found = Some((h, s.chain));
                            break;
                        }
                    }
                    match found {
                        Some((h, chain)) => (h, aad, Some(HeChain::Old(chain))),
                        None => return Err(DecryptError::HeaderAuthentication),
                    }
                }
            }
            (MessageHeader::Plain(_), Some(_)) => {
                return Err(DecryptError::HeaderEncryptionMismatch {
                    expected: "encrypted header",
                    found: "plain header",
                });
            }
            (MessageHeader::Encrypted { .. }, None) => {
                return Err(DecryptError::HeaderEncryptionMismatch {
                    expected: "plain header",
                    found: "encrypted header",
                });
            }
        };
        let aad = aad.as_slice();

        // Which chain is this? Current receiving chain, a new one, or an older one.
        enum Which {
            Current,
            New,
            Old([u8; 32]),
        }
        let which = match he_chain {
            Some(HeChain::Current) => Which::Current,
            Some(HeChain::Next) => Which::New,
            Some(HeChain::Old(c)) => Which::Old(c),
            None => {
                let key = Some(header.ratchet_key);
                if key == self.their_ratchet && self.receiving.is_some() {
                    Which::Current
                } else if key == self.their_ratchet {
                    return Err(DecryptError::UnexpectedRatchetKey);
                } else if key == self.previous_their_ratchet
                    || self
                        .skipped
                        .iter()
                        .any(|s| s.chain == *header.ratchet_key.as_bytes())
                {
                    Which::Old(header.ratchet_key.to_bytes())
                } else {
                    Which::New
                }
            }
        };

        match which {
            Which::Old(chain) => {
                self.decrypt_skipped(&chain, header.index, aad, &message.ciphertext)
            }
            Which::Current => {
                let current_id = self.current_chain_id();
                let Some(recv) = self.receiving.as_ref() else {
                    return Err(DecryptError::UnexpectedRatchetKey);
                };
                if header.index < recv.index {
                    return self.decrypt_skipped(
                        &current_id,
                        header.index,
                        aad,
                        &message.ciphertext,
                    );
                }
                let mut skipped = Vec::new();
                let key = self.advance(
                    recv.key.expose(),
                    recv.index,
                    header.index,
                    current_id,
                    &mut skipped,
                )?;
                let candidate = Candidate {
                    new_chain: None,
                    receiving_key: key,
                    skipped,
                };
                self.open_and_commit(candidate, &header, aad, &message.ciphertext)
            }
            Which::New => {
                // Cheap limit checks before any scalar multiplication.
                let pending_old = match &self.receiving {
                    Some(r) => u64::from(header.previous_chain_length.saturating_sub(r.index)),
                    None => 0,
                };
                if pending_old > u64::from(MAX_SKIP) || header.index > MAX_SKIP {
                    return Err(DecryptError::TooFarAhead {
                        max: MAX_SKIP,
                        found: pending_old.max(u64::from(header.index)),
                    });
                }
                let total = pending_old as usize + header.index as usize;
                if total > self.max_skipped_keys {
                    return Err(DecryptError::TooManySkippedKeys {
                        max: self.max_skipped_keys,
                        found: total,
                    });
                }
                let mut skipped = Vec::new();
                if let Some(r) = &self.receiving {
                    let id = self.current_chain_id();
                    let _ = self.advance(
                        r.key.expose(),
                        r.index,
                        header.previous_chain_length.max(r.index),
                        id,
                        &mut skipped,
                    )?;
                }
                let dh = self
                    .our_ratchet
                    .diffie_hellman(&header.ratchet_key)
                    .map_err(|_| DecryptError::LowOrderPoint)?;
                let (root, chain, next_hk) = match &self.header_keys {
                    Some(_) => {
                        let (root, chain, nhk) = kdf_rk_he(&self.root, dh.expose());
                        (root, chain, Some(nhk))
                    }
                    None => {
                        let (root, chain) = kdf_rk(&self.root, dh.expose());
                        (root, chain, None)
                    }
                };
                let new_id = match &self.header_keys {
                    Some(hk) => *hk.next_receive.expose(),
                    None => header.ratchet_key.to_bytes(),
                };
                let key = self.advance(chain.expose(), 0, header.index, new_id, &mut skipped)?;
                let candidate = Candidate {
                    new_chain: Some(NewChain {
                        root,
                        their_ratchet: header.ratchet_key,
                        next_receive_header_key: next_hk,
                    }),
                    receiving_key: key,
                    skipped,
                };
                self.open_and_commit(candidate, &header, aad, &message.ciphertext)
            }
        }
    }

    /// Identifier of the current receiving chain in the skipped-key store.
    fn current_chain_id(&self) -> [u8; 32] {
        match (&self.header_keys, self.their_ratchet) {
            (Some(hk), _) => hk.receive.as_ref().map(|k| *k.expose()).unwrap_or([0; 32]),
            (None, Some(k)) => k.to_bytes(),
            (None, None) => [0; 32],
        }
    }

    /// Derives keys from index `from` up to `until` (exclusive) into `skipped`, checking the
    /// limits; returns the chain key at index `until`.
    fn advance(
        &self,
        ck: &[u8; 32],
        from: u32,
        until: u32,
        chain: [u8; 32],
        skipped: &mut Vec<SkippedKey>,
    ) -> Result<Zeroizing<[u8; 32]>, DecryptError> {
        let count = until.saturating_sub(from);
        if count > MAX_SKIP {
            return Err(DecryptError::TooFarAhead {
                max: MAX_SKIP,
                found: u64::from(count),
            });
        }
        let total = skipped.len() + count as usize;
        if total > self.max_skipped_keys {
            return Err(DecryptError::TooManySkippedKeys {
                max: self.max_skipped_keys,
                found: total,
            });
        }
        let mut ck = Zeroizing::new(*ck);
        for index in from..until {
            let (mut mk, next) = kdf_ck(&ck);
            skipped.push(SkippedKey {
                chain,
                index,
                key: Key32::new(&mut mk),
            });
            *ck = *next;
        }
        Ok(ck)
    }

    fn open_and_commit(
        &mut self,
        candidate: Candidate,
        header: &Header,
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, DecryptError> {
        let (mk, next) = kdf_ck(&candidate.receiving_key);
        let (key, nonce) = message_keys(&mk, INFO_MESSAGE);
        let mut buf = ciphertext.to_vec();
        self.config
            .suite
            .open_in_place(&key, &nonce, aad, &mut buf)
            .map_err(|_| DecryptError::Authentication)?;

        // Authenticated: commit.
        if let Some(nc) = candidate.new_chain {
            if let Some(hk) = self.header_keys.as_mut()
                && let Some(nhk) = nc.next_receive_header_key
            {
                hk.receive = Some(core::mem::replace(&mut hk.next_receive, nhk));
            }
            self.root = nc.root;
            self.previous_their_ratchet = self.their_ratchet.replace(nc.their_ratchet);
            self.previous_counter = self.sending.as_ref().map_or(0, |c| c.index);
            self.sending = None;
            self.receiving = Some(Chain {
                key: Key32::zeroed(),
                index: 0,
            });
        }
        if let Some(recv) = self.receiving.as_mut() {
            *recv.key.expose_mut() = *next;
            recv.index = header.index.saturating_add(1);
        }
        self.skipped.extend(candidate.skipped);
        while self.skipped.len() > self.max_skipped_keys {
            self.skipped.pop_front();
        }
        self.pending_prekey = None;
        Ok(buf)
    }

    fn decrypt_skipped(
        &mut self,
        chain: &[u8; 32],
        index: u32,
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, DecryptError> {
        let Some(pos) = self
            .skipped
            .iter()
            .position(|s| s.index == index && s.chain == *chain)
        else {
            return Err(DecryptError::DuplicateOrExpired { index });
        };
        let (key, nonce) = match self.skipped.get(pos) {
            Some(s) => message_keys(s.key.expose(), INFO_MESSAGE),
            None => return Err(DecryptError::DuplicateOrExpired { index }),
        };
        let mut buf = ciphertext.to_vec();
        self.config
            .suite
            .open_in_place(&key, &nonce, aad, &mut buf)
            .map_err(|_| DecryptError::Authentication)?;
        self.skipped.remove(pos);
        self.pending_prekey = None;
        Ok(buf)
    }
}

enum HeChain {
    Current,
    Next,
    Old([u8; 32]),
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("session_id", &HexId(&self.session_id))
            .field("config", &self.config)
            .field("sending_index", &self.sending.as_ref().map(|c| c.index))
            .field("receiving_index", &self.receiving.as_ref().map(|c| c.index))
            .field("skipped_keys", &self.skipped.len())
            .field("secrets", &"[REDACTED]")
            .finish()
    }
}

struct HexId<'a>(&'a [u8; 32]);

impl fmt::Debug for HexId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
