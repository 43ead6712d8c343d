use thiserror::Error;
use zentalk_crypto::NodeId;

/// Every error this crate returns.
///
/// The variants fall in three groups so that a driver can decide what to do:
///
/// * **the packet is bad** (drop it, maybe count it against the link): [`InvalidLength`],
///   [`UnsupportedVersion`], [`EpochExpired`], [`EpochInFuture`], [`UnknownEpoch`],
///   [`InvalidHopKey`], [`MacMismatch`], [`Replay`], [`InvalidCommand`], [`PayloadTampered`],
///   [`InvalidMessageLength`], [`UnknownSurb`];
/// * **a bound was reached** (drop, and let the operator know): [`ReplayFilterFull`],
///   [`TooManyEpochKeys`], [`SurbStoreFull`];
/// * **the caller asked for something impossible**: [`MessageTooLong`],
///   [`InvalidRouteLength`], [`RepeatedRelay`], [`InvalidRelayKey`], [`NotEnoughRelays`],
///   [`Kdf`].
///
/// [`InvalidLength`]: OnionError::InvalidLength
/// [`UnsupportedVersion`]: OnionError::UnsupportedVersion
/// [`EpochExpired`]: OnionError::EpochExpired
/// [`EpochInFuture`]: OnionError::EpochInFuture
/// [`UnknownEpoch`]: OnionError::UnknownEpoch
/// [`InvalidHopKey`]: OnionError::InvalidHopKey
/// [`MacMismatch`]: OnionError::MacMismatch
/// [`Replay`]: OnionError::Replay
/// [`InvalidCommand`]: OnionError::InvalidCommand
/// [`PayloadTampered`]: OnionError::PayloadTampered
/// [`InvalidMessageLength`]: OnionError::InvalidMessageLength
/// [`UnknownSurb`]: OnionError::UnknownSurb
/// [`ReplayFilterFull`]: OnionError::ReplayFilterFull
/// [`TooManyEpochKeys`]: OnionError::TooManyEpochKeys
/// [`SurbStoreFull`]: OnionError::SurbStoreFull
/// [`MessageTooLong`]: OnionError::MessageTooLong
/// [`InvalidRouteLength`]: OnionError::InvalidRouteLength
/// [`RepeatedRelay`]: OnionError::RepeatedRelay
/// [`InvalidRelayKey`]: OnionError::InvalidRelayKey
/// [`NotEnoughRelays`]: OnionError::NotEnoughRelays
/// [`Kdf`]: OnionError::Kdf
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnionError {
    /// A packet, reply block or reply payload does not have its one fixed length.
    #[error("invalid length for {what}: expected {expected} bytes, found {found}")]
    InvalidLength {
        /// What was being parsed.
        what: &'static str,
        /// The fixed length.
        expected: usize,
        /// The length received.
        found: usize,
    },
    /// The version byte names a format (key-agreement scheme) this relay does not speak.
    #[error("unsupported onion format version: expected {expected}, found {found}")]
    UnsupportedVersion {
        /// The version this relay or parser speaks.
        expected: u8,
        /// The version found.
        found: u8,
    },
    /// The packet names an epoch older than the relay accepts ([`crate::EPOCH_GRACE`]).
    #[error("packet for expired epoch {packet_epoch} (current epoch {current_epoch})")]
    EpochExpired {
        /// Epoch named by the packet.
        packet_epoch: u32,
        /// The relay's current epoch.
        current_epoch: u32,
    },
    /// The packet names an epoch later than the relay's current one.
    #[error("packet for future epoch {packet_epoch} (current epoch {current_epoch})")]
    EpochInFuture {
        /// Epoch named by the packet.
        packet_epoch: u32,
        /// The relay's current epoch.
        current_epoch: u32,
    },
    /// The epoch is acceptable but this relay holds no onion key for it.
    #[error("no onion key for epoch {epoch}")]
    UnknownEpoch {
        /// Epoch named by the packet.
        epoch: u32,
    },
    /// The relay already holds [`crate::MAX_EPOCH_KEYS`] epoch keys.
    #[error("too many epoch keys (at most {max})")]
    TooManyEpochKeys {
        /// The bound.
        max: usize,
    },
    /// The per-hop key-agreement ciphertext was refused (for X25519: a low-order point).
    #[error("invalid per-hop key agreement ciphertext")]
    InvalidHopKey,
    /// The caller supplied a relay onion key that key agreement refuses (low-order point).
    #[error("invalid relay onion key for {node}")]
    InvalidRelayKey {
        /// The relay whose key was refused.
        node: NodeId,
    },
    /// The header MAC did not verify: the header was modified or was not made for this relay.
    #[error("header MAC mismatch")]
    MacMismatch,
    /// This relay has already processed this packet in this epoch.
    #[error("replayed packet")]
    Replay,
    /// The replay filter of this epoch holds its capacity; new packets are refused until the
    /// epoch ends (fail closed: see the protocol chapter).
    #[error("replay filter full ({capacity} tags); packet refused")]
    ReplayFilterFull {
        /// The capacity of the filter.
        capacity: usize,
    },
    /// The routing command byte, authenticated by the MAC, is not one this version knows.
    #[error("unknown routing command {found:#04x}")]
    InvalidCommand {
        /// The byte found.
        found: u8,
    },
    /// The payload's integrity tag is wrong after the last layer: the payload was modified
    /// somewhere on the route (the wide-block cipher turned it into noise).
    #[error("payload tampered with")]
    PayloadTampered,
    /// The authenticated payload carries a message length larger than the payload allows.
    #[error("invalid message length {found} (at most {max})")]
    InvalidMessageLength {
        /// The bound, [`crate::MAX_MESSAGE_LEN`].
        max: usize,
        /// The length found.
        found: usize,
    },
    /// The caller's message does not fit in one packet.
    #[error("message too long: {found} bytes, at most {max}")]
    MessageTooLong {
        /// The bound, [`crate::MAX_MESSAGE_LEN`].
        max: usize,
        /// The length given.
        found: usize,
    },
    /// A route must have between 1 and [`crate::MAX_HOPS`] hops.
    #[error("invalid route length {found} (1 to {max} hops)")]
    InvalidRouteLength {
        /// The bound, [`crate::MAX_HOPS`].
        max: usize,
        /// The length given.
        found: usize,
    },
    /// The same relay appears twice in a route.
    #[error("relay {node} appears twice in the route")]
    RepeatedRelay {
        /// The repeated relay.
        node: NodeId,
    },
    /// The directory has too few distinct relays with a non-zero weight for the route asked.
    #[error("not enough relays: need {needed}, {available} available")]
    NotEnoughRelays {
        /// Relays needed besides the mailbox relay.
        needed: usize,
        /// Distinct eligible relays available.
        available: usize,
    },
    /// The reply block id is not (or no longer) in the reply key store: unknown, or already
    /// used once.
    #[error("unknown or already used reply block")]
    UnknownSurb,
    /// The reply key store holds its capacity of pending reply blocks.
    #[error("reply key store full ({capacity} pending reply blocks)")]
    SurbStoreFull {
        /// The capacity of the store.
        capacity: usize,
    },
    /// Key derivation failed (an internal bound; cannot happen with the fixed sizes here).
    #[error("key derivation failed")]
    Kdf,
}
