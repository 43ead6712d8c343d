use thiserror::Error;

use crate::Address;

/// Errors from the cryptographic layer.
///
/// Peer misbehaviour (a bad signature, a low-order point, a forged ciphertext) and caller
/// misuse (a wrong length) are different variants, so a driver can decide what to do.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// A byte string had the wrong length.
    #[error("invalid length for {what}: expected {expected}, found {found}")]
    InvalidLength {
        /// What was being parsed.
        what: &'static str,
        /// Expected length in bytes.
        expected: usize,
        /// Length that was found.
        found: usize,
    },
    /// 32 bytes that are not a valid Ed25519 public key.
    #[error("invalid Ed25519 public key")]
    InvalidPublicKey,
    /// A signature did not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// An X25519 key agreement produced the all-zero output (low-order point).
    #[error("X25519 agreement with a low-order point")]
    LowOrderPoint,
    /// An X25519 public key that is a point on the quadratic twist, not on Curve25519. No
    /// honest key is; refused where the key's Edwards form is needed
    /// ([`PreparedX25519PublicKey`](crate::PreparedX25519PublicKey)).
    #[error("X25519 public key is on the twist, not on the curve")]
    TwistPoint,
    /// An AEAD ciphertext failed to authenticate (wrong key, wrong associated data, tampering).
    #[error("AEAD authentication failed")]
    AeadFailure,
    /// An AEAD suite code that this version does not know.
    #[error("unknown AEAD suite code {0}")]
    UnknownSuite(u8),
    /// A KDF was asked for more output than it can give.
    #[error("KDF output length {0} is invalid")]
    KdfLength(usize),
    /// A textual address or id could not be parsed.
    #[error("cannot parse {what}: {reason}")]
    Parse {
        /// What was being parsed.
        what: &'static str,
        /// Why it failed.
        reason: &'static str,
    },
    /// An input is longer than a named limit (`max` is that limit).
    #[error("{what} too long: at most {max} bytes, found {found}")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// The limit in bytes.
        max: usize,
        /// Length that was found.
        found: usize,
    },
    /// An encoding ended before the structure it announces was complete.
    #[error("{what} truncated: needed {expected} bytes, found {found}")]
    Truncated {
        /// What was being decoded.
        what: &'static str,
        /// Bytes needed.
        expected: usize,
        /// Bytes available.
        found: usize,
    },
    /// Bytes left over after a complete structure.
    #[error("{found} trailing bytes after {what}")]
    TrailingBytes {
        /// What was being decoded.
        what: &'static str,
        /// Number of extra bytes.
        found: usize,
    },
    /// A version byte this implementation does not speak.
    #[error("unsupported {what} version {found} (expected {expected})")]
    UnsupportedVersion {
        /// What carried the version.
        what: &'static str,
        /// The version this implementation speaks.
        expected: u8,
        /// The version that was found.
        found: u8,
    },
    /// A padded buffer whose length is not one of the padding buckets.
    #[error("padded length {found} is not a padding bucket")]
    PaddingNotBucket {
        /// Length that was found.
        found: usize,
    },
    /// A padded buffer that is all zeros: the 0x80 end marker is missing.
    #[error("padding end marker 0x80 missing")]
    PaddingMarkerMissing,
    /// The last non-zero byte of a padded buffer is not the 0x80 end marker.
    #[error("padding end marker must be 0x80, found {found:#04x}")]
    PaddingBadMarker {
        /// The byte found where the marker should be.
        found: u8,
    },
    /// An envelope ciphertext whose length is not a padding bucket plus the AEAD tag.
    #[error("envelope ciphertext length {found} is not a padding bucket plus the tag")]
    CiphertextNotBucket {
        /// Ciphertext length that was found.
        found: usize,
    },
    /// An envelope addressed to someone else.
    #[error("envelope is for {found}, not for {expected}")]
    WrongRecipient {
        /// The opener's own address.
        expected: Address,
        /// The recipient key id the envelope carries.
        found: Address,
    },
    /// An envelope whose sender key id is not the key the caller supplied to open it with.
    #[error("envelope claims sender {found}, but the sender key supplied is {expected}")]
    WrongSender {
        /// Address of the sender key supplied by the caller.
        expected: Address,
        /// The sender key id the envelope carries.
        found: Address,
    },
    /// An envelope (sender, id) pair that the replay window has already accepted.
    #[error("replayed envelope")]
    Replay,
    /// A timestamp older than the replay window accepts.
    #[error("timestamp {timestamp} too old: the oldest accepted is {oldest_accepted}")]
    TooOld {
        /// The envelope's timestamp.
        timestamp: u64,
        /// The oldest timestamp the window accepts at this `now`.
        oldest_accepted: u64,
    },
    /// A timestamp further in the future than the allowed clock skew.
    #[error(
        "timestamp {timestamp} too far in the future: the latest accepted is {latest_accepted}"
    )]
    TooFarInFuture {
        /// The envelope's timestamp.
        timestamp: u64,
        /// The latest timestamp the window accepts at this `now`.
        latest_accepted: u64,
    },
    /// A configuration value out of its allowed range (caller misuse).
    #[error("invalid configuration: {what} {reason}")]
    InvalidConfig {
        /// The parameter.
        what: &'static str,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// An HPKE failure that is neither an authentication failure nor a low-order point
    /// (for instance the sequence number limit); not reachable through single-shot use.
    #[error("HPKE failure: {0}")]
    Hpke(&'static str),
}
