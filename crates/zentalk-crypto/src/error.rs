use thiserror::Error;

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
}
