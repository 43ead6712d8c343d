//! # zentalk-ratchet
//!
//! X3DH, the Double Ratchet and sender-key group sessions for ZenTalk, usable on their own by
//! any application (`cargo add zentalk-ratchet`).
//!
//! This crate contains no networking code, reads no clock and uses no global random number
//! generator: every function that needs randomness takes `&mut impl CryptoRngCore`, and time
//! (for signed-prekey rotation) is an argument. The construction follows Signal's X3DH and
//! Double Ratchet specifications with their recommended functions, byte for byte as written in
//! `docs/protocol/zentalk-ratchet.md`, so any faithful implementation interoperates.
//!
//! Secrets are boxed, zeroized on drop and redacted in `Debug`. Decryption is transactional:
//! a message that does not authenticate (forged, replayed, truncated, too far ahead) returns
//! a typed error and leaves the session exactly as it was.
//!
//! ```
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//! use zentalk_ratchet::{Account, Message, SessionConfig};
//!
//! let mut rng = ChaCha20Rng::from_entropy();
//! let alice = Account::new(&mut rng);
//! let mut bob = Account::new(&mut rng);
//! bob.generate_one_time_prekeys(&mut rng, 10);
//!
//! // Alice fetches Bob's bundle (from the DHT, say) and writes first.
//! let bundle = bob.prekey_bundle();
//! let mut a = alice.create_outbound_session(&mut rng, &bundle, SessionConfig::default())?;
//! let wire = a.encrypt(&mut rng, b"hi Bob")?.to_bytes();
//!
//! // Bob parses the bytes; the initial message creates his session.
//! let Message::Prekey(initial) = Message::from_bytes(&wire)? else { unreachable!() };
//! let (mut b, first) = bob.create_inbound_session(&initial)?;
//! assert_eq!(first, b"hi Bob");
//!
//! // Replies ratchet forward (a fresh DH step whenever the speaker changes).
//! let reply = b.encrypt(&mut rng, b"hi Alice")?;
//! assert_eq!(a.decrypt(&Message::from_bytes(&reply.to_bytes())?)?, b"hi Alice");
//! assert_eq!(a.session_id(), b.session_id());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod account;
mod error;
pub mod group;
mod kdf;
pub mod message;
pub mod pickle;
mod session;
pub mod x3dh;

#[cfg(test)]
mod tests;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

pub use account::{
    Account, DEFAULT_SIGNED_PREKEY_GRACE_SECS, MAX_ONE_TIME_PREKEYS, MAX_REMEMBERED_BASE_KEYS,
    MAX_RETIRED_SIGNED_PREKEYS,
};
pub use error::{
    DecodeError, DecryptError, EncryptError, GroupError, PickleError, SessionCreationError,
};
pub use message::{
    HEADER_LEN, Header, MAX_MESSAGE_LEN, MAX_PLAINTEXT_LEN, Message, MessageHeader, PrekeyMessage,
    RatchetMessage,
};
pub use session::{
    DEFAULT_MAX_SKIPPED_KEYS, MAX_SKIP, MAX_SKIPPED_KEYS_LIMIT, Role, Session, SessionConfig,
};
pub use x3dh::PrekeyBundle;
pub use zentalk_crypto::{AeadSuite, CryptoRngCore, IdentityKeyPair, IdentityPublicKey};
