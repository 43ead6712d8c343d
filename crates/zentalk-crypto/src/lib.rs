//! # zentalk-crypto
//!
//! The lowest layer of ZenTalk: identity keys, X25519 agreement keys, addresses, AEAD suites,
//! key derivation and hashing helpers, length-hiding padding and sealed envelopes.
//!
//! This crate contains no networking code, reads no clock and uses no global random number
//! generator: every function that needs randomness takes `&mut impl CryptoRngCore`, and every
//! function that needs the time takes it as an argument. Every primitive comes from a well-kept
//! crate (dalek, RustCrypto, hpke); the only composition written here is RFC 5869's
//! HKDF-Expand loop over RustCrypto's HMAC, for output lengths fixed at compile time (checked
//! against the RFC vectors and the `hkdf` crate).
//!
//! Secret types are boxed, zeroized on drop and print as `[REDACTED]` in `Debug`.
//!
//! What is where:
//!
//! - [`IdentityKeyPair`] / [`IdentityPublicKey`]: Ed25519 identities and their X25519 form;
//!   [`Address`] / [`NodeId`]: BLAKE2b-256 of an identity key, in hex or base32.
//! - [`X25519Secret`] / [`X25519PublicKey`]: agreement keys that refuse low-order points;
//!   [`PreparedX25519PublicKey`]: a precomputed table for many agreements with one key.
//! - [`aead`]: [`AeadSuite`] (AES-256-GCM default, ChaCha20-Poly1305) with one-byte wire codes.
//! - [`kdf`] and [`hash`]: HKDF-SHA256 (also keyed once for a shared salt, and infallible for
//!   compile-time lengths), HMAC-SHA256 (also keyed once for many messages), BLAKE2b-256,
//!   constant-time equality.
//! - [`padding`]: ISO/IEC 7816-4 padding to size buckets (256 B .. 64 KiB by powers of two,
//!   then 64 KiB steps up to 1 MiB).
//! - [`hpke_auth`]: single-shot HPKE (RFC 9180) in Auth mode, checked against the RFC vectors.
//! - [`envelope`]: sealed [`Envelope`]s between two identities, with a bounded
//!   [`ReplayWindow`].
//!
//! ```
//! use zentalk_crypto::{Address, AeadSuite, Envelope, IdentityKeyPair, ReplayWindow};
//! use rand_core::OsRng;
//!
//! let alice = IdentityKeyPair::generate(&mut OsRng);
//! let signature = alice.sign(b"hello");
//! alice.public_key().verify(b"hello", &signature).unwrap();
//!
//! // An address is BLAKE2b-256 of the identity public key, shown in hex or base32.
//! let address: Address = alice.public_key().address();
//! let parsed: Address = address.to_base32().parse().unwrap();
//! assert_eq!(parsed, address);
//!
//! // A sealed envelope from Alice to Bob, at a time the caller supplies.
//! let bob = IdentityKeyPair::generate(&mut OsRng);
//! let now = 1_800_000_000;
//! let bytes = Envelope::seal(&mut OsRng, AeadSuite::default(), &alice, &bob.public_key(), now, b"hi")
//!     .unwrap()
//!     .to_bytes();
//! let mut window = ReplayWindow::default();
//! let envelope = Envelope::from_bytes(&bytes).unwrap();
//! let message = envelope
//!     .open_and_accept(&bob, &alice.public_key(), &mut window, now)
//!     .unwrap();
//! assert_eq!(message, b"hi");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod address;
pub mod aead;
pub mod blind;
pub mod envelope;
mod error;
pub mod hash;
pub mod hpke_auth;
mod identity;
pub mod kdf;
pub mod padding;
mod secret;
mod x25519;

pub use address::{Address, NodeId};
pub use aead::{AeadKey, AeadSuite, NONCE_LEN, TAG_LEN};
pub use blind::{BlindedKeyPair, BlindingFactor};
pub use envelope::{Envelope, EnvelopeHeader, EnvelopeId, ReplayConfig, ReplayWindow};
pub use error::CryptoError;
pub use identity::{IdentityKeyPair, IdentityPublicKey, SIGNATURE_LEN, Signature};
pub use secret::SecretBytes;
pub use x25519::{PreparedX25519PublicKey, SharedSecret, X25519PublicKey, X25519Secret};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

/// Re-exported so that callers name the same RNG traits this crate takes.
pub use rand_core::{CryptoRng, CryptoRngCore, RngCore};

/// Length in bytes of every public key, address and 32-byte secret in ZenTalk.
pub const KEY_LEN: usize = 32;
