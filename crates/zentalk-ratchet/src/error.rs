//! Per-operation error enums. Peer misbehaviour (a forged or malformed message), caller misuse
//! (encrypting before a session can send) and limits (too many skipped messages) are distinct
//! variants, so a driver can decide whether to drop a message, warn the user or close a session.

use thiserror::Error;
use zentalk_crypto::CryptoError;

/// A byte string could not be parsed as a ZenTalk ratchet encoding. Parsing never panics and
/// never allocates before the length is checked.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before a field was complete.
    #[error("{what} is truncated: expected at least {expected} bytes, found {found}")]
    TooShort {
        /// What was being parsed.
        what: &'static str,
        /// Minimum length in bytes.
        expected: usize,
        /// Length that was found.
        found: usize,
    },
    /// The input is longer than the limit for its kind.
    #[error("{what} is too long: at most {max} bytes, found {found}")]
    TooLong {
        /// What was being parsed.
        what: &'static str,
        /// The limit in bytes.
        max: usize,
        /// Length that was found.
        found: usize,
    },
    /// Bytes were left after a complete encoding.
    #[error("{what} has {found} trailing bytes")]
    TrailingBytes {
        /// What was being parsed.
        what: &'static str,
        /// Number of bytes left over.
        found: usize,
    },
    /// The type byte is not one this context accepts.
    #[error("unexpected message type: expected {expected}, found {found:#04x}")]
    UnexpectedType {
        /// What was acceptable here.
        expected: &'static str,
        /// The type byte found.
        found: u8,
    },
    /// An AEAD suite code this version does not know.
    #[error("unknown AEAD suite code {found}")]
    UnknownSuite {
        /// The code found.
        found: u8,
    },
    /// Flag bits this version does not define were set.
    #[error("unknown flag bits: allowed {allowed:#04x}, found {found:#04x}")]
    UnknownFlags {
        /// Mask of the defined bits.
        allowed: u8,
        /// The flag byte found.
        found: u8,
    },
    /// 32 bytes that are not a valid Ed25519 identity key.
    #[error("invalid Ed25519 identity key in {what}")]
    InvalidIdentityKey {
        /// Which field.
        what: &'static str,
    },
}

/// Errors creating a session with X3DH (either side). None of them changes any state: a
/// failed inbound session leaves the account's prekeys untouched.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionCreationError {
    /// The signed prekey's signature does not verify under the bundle's identity key. Checked
    /// before any Diffie-Hellman.
    #[error("the signed prekey signature does not verify")]
    BadSignedPrekeySignature,
    /// A peer key was a low-order X25519 point (the agreement would be all zeros).
    #[error("a peer X25519 key is a low-order point")]
    LowOrderPoint,
    /// The initial message names a signed prekey this account does not have (or no longer has,
    /// after its grace period).
    #[error("unknown signed prekey id {found} (current {current})")]
    UnknownSignedPrekey {
        /// The account's current signed prekey id.
        current: u32,
        /// The id the message named.
        found: u32,
    },
    /// The initial message names a one-time prekey this account does not have (never issued,
    /// or already used).
    #[error("unknown or already used one-time prekey id {found}")]
    UnknownOneTimePrekey {
        /// The id the message named.
        found: u32,
    },
    /// This exact initial message (same ephemeral key) was already accepted once.
    #[error("this initial message was already used to create a session")]
    ReplayedInitialMessage,
    /// The first ratchet message inside the initial message did not decrypt.
    #[error("the first message did not decrypt: {0}")]
    FirstMessage(#[from] DecryptError),
    /// The initial message could not be parsed.
    #[error("malformed initial message: {0}")]
    Decode(#[from] DecodeError),
}

/// Errors from [`crate::Session::encrypt`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncryptError {
    /// The plaintext is longer than [`crate::MAX_PLAINTEXT_LEN`].
    #[error("plaintext too long: at most {max} bytes, found {found}")]
    PlaintextTooLong {
        /// The limit.
        max: usize,
        /// The length given.
        found: usize,
    },
    /// The sending chain reached its last index (2^32 - 1 messages without a reply).
    #[error("the sending chain is exhausted; wait for a reply")]
    ChainExhausted,
    /// The peer's ratchet key is a low-order point.
    #[error("the peer's ratchet key is a low-order point")]
    LowOrderPoint,
    /// This session has no peer ratchet key to step with yet (cannot happen for sessions
    /// created through [`crate::Account`]).
    #[error("the session cannot send before it knows the peer's ratchet key")]
    NoPeerRatchetKey,
    /// An underlying primitive failed (should not happen with valid keys).
    #[error("cryptographic failure: {0}")]
    Crypto(CryptoError),
}

/// Errors from [`crate::Session::decrypt`]. Whatever the error, the session is unchanged and
/// keeps working: decryption commits state only after the AEAD has authenticated the message.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecryptError {
    /// The message could not be parsed.
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    /// The message failed to authenticate: forged, tampered, truncated or for another session.
    #[error("message authentication failed")]
    Authentication,
    /// No header key opened the encrypted header (header-encrypted sessions).
    #[error("no header key opened the message header")]
    HeaderAuthentication,
    /// The message's index is already used: a replay, or a key evicted or never stored.
    #[error("message {index} was already decrypted or its key has expired")]
    DuplicateOrExpired {
        /// The message index in its chain.
        index: u32,
    },
    /// The message is more than [`crate::MAX_SKIP`] messages ahead in its chain.
    #[error("message is too far ahead: at most {max} skipped, found {found}")]
    TooFarAhead {
        /// [`crate::MAX_SKIP`].
        max: u32,
        /// How many message keys it would skip.
        found: u64,
    },
    /// Decrypting would store more skipped keys than the session's limit allows in one step.
    #[error("too many skipped message keys: at most {max}, found {found}")]
    TooManySkippedKeys {
        /// The session's limit.
        max: usize,
        /// How many keys this message would store.
        found: usize,
    },
    /// The peer's new ratchet key is a low-order point.
    #[error("the peer's ratchet key is a low-order point")]
    LowOrderPoint,
    /// The message uses a ratchet key that cannot start a receiving chain here.
    #[error("unexpected ratchet key")]
    UnexpectedRatchetKey,
    /// A header-encrypted message for a session without header encryption, or the reverse.
    #[error("header encryption mismatch: session expects {expected}, message is {found}")]
    HeaderEncryptionMismatch {
        /// What the session uses.
        expected: &'static str,
        /// What the message is.
        found: &'static str,
    },
    /// An initial (prekey) message that does not belong to this session.
    #[error("initial message belongs to another session")]
    SessionMismatch,
}

/// Errors restoring a pickle.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PickleError {
    /// The pickle is shorter than its fixed header and tag.
    #[error("pickle is truncated: expected at least {expected} bytes, found {found}")]
    TooShort {
        /// Minimum length.
        expected: usize,
        /// Length found.
        found: usize,
    },
    /// The pickle is longer than [`crate::pickle::MAX_PICKLE_LEN`].
    #[error("pickle too long: at most {max} bytes, found {found}")]
    TooLong {
        /// The limit.
        max: usize,
        /// Length found.
        found: usize,
    },
    /// A format version this library cannot read.
    #[error("unsupported pickle version: expected {expected}, found {found}")]
    UnsupportedVersion {
        /// The newest version this library reads.
        expected: u8,
        /// The version byte found.
        found: u8,
    },
    /// A pickle of another kind (for example a session pickle given to `Account::from_pickle`).
    #[error("wrong pickle kind: expected {expected}, found {found}")]
    WrongKind {
        /// The kind asked for.
        expected: u8,
        /// The kind byte found.
        found: u8,
    },
    /// Wrong pickle key, or the pickle was tampered with.
    #[error("wrong pickle key or tampered pickle")]
    WrongKeyOrTampered,
    /// The decrypted contents are not a valid pickle of this version.
    #[error("invalid pickle contents: {0}")]
    Invalid(&'static str),
}

/// Errors from sender-key group sessions.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupError {
    /// The message or distribution could not be parsed.
    #[error("malformed group message: {0}")]
    Decode(#[from] DecodeError),
    /// The message was sent under another sender key (another member, or a rotated chain).
    #[error("unknown sender key: expected id {expected:#010x}, found {found:#010x}")]
    UnknownSenderKey {
        /// This inbound session's key id.
        expected: u32,
        /// The message's key id.
        found: u32,
    },
    /// The message's Ed25519 signature does not verify under the sender's signing key.
    #[error("group message signature does not verify")]
    BadSignature,
    /// The AEAD did not authenticate (should not happen when the signature verified, unless
    /// the sender is malicious).
    #[error("group message authentication failed")]
    Authentication,
    /// The message index is earlier than this session can decrypt, or already decrypted.
    #[error("group message {index} was already decrypted or its key has expired")]
    DuplicateOrExpired {
        /// The message index.
        index: u32,
    },
    /// The message is more than [`crate::group::MAX_GROUP_SKIP`] messages ahead.
    #[error("group message too far ahead: at most {max} skipped, found {found}")]
    TooFarAhead {
        /// The limit.
        max: u32,
        /// How many keys it would skip.
        found: u64,
    },
    /// The plaintext is longer than [`crate::MAX_PLAINTEXT_LEN`].
    #[error("plaintext too long: at most {max} bytes, found {found}")]
    PlaintextTooLong {
        /// The limit.
        max: usize,
        /// The length given.
        found: usize,
    },
    /// The sending chain reached its last index; rotate the session.
    #[error("the group sending chain is exhausted; rotate")]
    ChainExhausted,
    /// An underlying primitive failed.
    #[error("cryptographic failure: {0}")]
    Crypto(CryptoError),
}
