//! # zentalk-crypto
//!
//! The lowest layer of ZenTalk: identity keys, X25519 agreement keys, addresses, AEAD suites,
//! key derivation and hashing helpers, length-hiding padding and sealed envelopes.
//!
//! This crate contains no networking code, reads no clock and uses no global random number
//! generator: every function that needs randomness takes `&mut impl CryptoRngCore`, and every
//! function that needs the time takes it as an argument. Every primitive comes from a well-kept
//! crate (dalek, RustCrypto, hpke); nothing here is hand-rolled.
//!
//! Secret types are boxed, zeroized on drop and print as `[REDACTED]` in `Debug`.
//!
//! ```
//! use zentalk_crypto::{Address, IdentityKeyPair};
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
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod address;
pub mod aead;
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
pub use envelope::{Envelope, EnvelopeHeader, EnvelopeId, ReplayConfig, ReplayWindow};
pub use error::CryptoError;
pub use identity::{IdentityKeyPair, IdentityPublicKey, SIGNATURE_LEN, Signature};
pub use secret::SecretBytes;
pub use x25519::{SharedSecret, X25519PublicKey, X25519Secret};

/// Re-exported so that callers name the same RNG traits this crate takes.
pub use rand_core::{CryptoRng, CryptoRngCore, RngCore};

/// Length in bytes of every public key, address and 32-byte secret in ZenTalk.
pub const KEY_LEN: usize = 32;
