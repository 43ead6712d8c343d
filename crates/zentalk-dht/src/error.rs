//! Error types. Peer misbehaviour (a bad message, a forged record) and caller misuse are
//! distinct variants so a driver can decide whether to drop a datagram or ban a peer.

use thiserror::Error;

/// Why a record was refused (on STORE, or when a lookup receives one).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record kind is unknown or unspecified.
    #[error("unknown record kind {0}")]
    UnknownKind(i32),
    /// A fixed-length field had the wrong length.
    #[error("{what}: expected {expected} bytes, found {found}")]
    BadLength {
        /// Which field.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Found length.
        found: usize,
    },
    /// The payload is larger than [`crate::MAX_RECORD_PAYLOAD`].
    #[error("record payload of {found} bytes exceeds the limit of {limit}")]
    PayloadTooLarge {
        /// Limit.
        limit: usize,
        /// Found.
        found: usize,
    },
    /// The signer key is not a valid Ed25519 point.
    #[error("signer key is not a valid Ed25519 public key")]
    BadSignerKey,
    /// The storage key is not the one derived from the signer key (and period).
    #[error("record key is not bound to its signer key")]
    KeyNotBound,
    /// The signature does not verify under the signer key.
    #[error("record signature does not verify")]
    BadSignature,
    /// The record has expired.
    #[error("record expired at {expires_at_ms} ms (now {now_ms} ms)")]
    Expired {
        /// Expiry.
        expires_at_ms: u64,
        /// Now.
        now_ms: u64,
    },
    /// The expiry lies further in the future than [`crate::MAX_RECORD_TTL_MS`] allows.
    #[error("record expiry {expires_at_ms} ms lies beyond the maximum {max_ms} ms")]
    TtlTooLong {
        /// Expiry found.
        expires_at_ms: u64,
        /// Latest acceptable expiry.
        max_ms: u64,
    },
    /// A relay descriptor payload is malformed.
    #[error("malformed relay descriptor: {0}")]
    BadDescriptor(&'static str),
    /// The period field is inconsistent with the record kind or expiry.
    #[error("bad period {found} for this record")]
    BadPeriod {
        /// Found period.
        found: u64,
    },
    /// A prekey bundle could not be decrypted (wrong identity or period, or tampered).
    #[error("prekey bundle does not decrypt under this identity and period")]
    Decrypt,
    /// The record was signed for a different key than the one requested.
    #[error("record key does not match the requested key")]
    WrongKey,
}

/// Why a STORE was refused by the record store.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record itself is invalid.
    #[error("invalid record: {0}")]
    Invalid(#[from] RecordError),
    /// The same or a newer version is already stored.
    #[error("stale record: stored sequence {stored}, offered {offered}")]
    Stale {
        /// Sequence held.
        stored: u64,
        /// Sequence offered.
        offered: u64,
    },
    /// The node holds its maximum number of records.
    #[error("record store full ({limit} records)")]
    StoreFull {
        /// Limit.
        limit: usize,
    },
    /// This publisher holds its maximum number of records here.
    #[error("publisher limit reached ({limit} records)")]
    PublisherFull {
        /// Limit.
        limit: usize,
    },
    /// The publisher sent STOREs faster than the rate limit.
    #[error("store rate limit exceeded")]
    RateLimited,
}

/// Why a datagram or message was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The datagram exceeds [`crate::MAX_DATAGRAM_LEN`].
    #[error("datagram of {found} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Limit.
        limit: usize,
        /// Found.
        found: usize,
    },
    /// The wire frame could not be decoded.
    #[error("wire frame: {0}")]
    Wire(String),
    /// The frame carries a message type that is not a DHT message.
    #[error("not a DHT message type")]
    NotDht,
    /// A required field is missing.
    #[error("missing field {0}")]
    Missing(&'static str),
    /// A field had the wrong length.
    #[error("{what}: expected {expected} bytes, found {found}")]
    BadLength {
        /// Which field.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Found length.
        found: usize,
    },
    /// Too many contacts in one answer.
    #[error("{found} contacts exceed the limit of {limit}")]
    TooManyContacts {
        /// Limit.
        limit: usize,
        /// Found.
        found: usize,
    },
    /// A socket address is malformed (ip length or port 0).
    #[error("malformed socket address")]
    BadAddr,
    /// An enum field holds an unknown value.
    #[error("unknown {what} value {value}")]
    UnknownEnum {
        /// Which enum.
        what: &'static str,
        /// Value found.
        value: i32,
    },
    /// A record inside the message is invalid.
    #[error("record: {0}")]
    Record(#[from] RecordError),
    /// The response answers no request we have outstanding (or came from another address).
    #[error("unsolicited response (request id {0})")]
    Unsolicited(u64),
    /// The response signature does not verify, or the responder key is not the expected id.
    #[error("response authentication failed")]
    BadAuth,
    /// The response is signed by a different node than the one asked.
    #[error("response from an unexpected node")]
    WrongResponder,
    /// The response kind does not answer the request kind.
    #[error("response does not match the request kind")]
    WrongResponseKind,
}

/// Caller misuse of the node API.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DhtError {
    /// Too many queries are running ([`crate::Config::max_queries`]).
    #[error("too many concurrent queries (limit {limit})")]
    TooManyQueries {
        /// Limit.
        limit: usize,
    },
    /// The routing table is empty: bootstrap first.
    #[error("routing table is empty")]
    NoPeers,
    /// An invalid record was given to publish.
    #[error("invalid record: {0}")]
    Record(#[from] RecordError),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
}
