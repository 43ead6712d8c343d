//! The crate's error type.

/// Everything that can go wrong in the client SDK.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A contact card was shorter or longer than its format allows.
    #[error("contact card: expected {expected} bytes, found {found}")]
    CardLength {
        /// What the format requires.
        expected: usize,
        /// What was given.
        found: usize,
    },
    /// A contact card carried an unknown version byte.
    #[error("contact card version: expected {expected}, found {found}")]
    CardVersion {
        /// [`crate::CARD_VERSION`].
        expected: u8,
        /// What was given.
        found: u8,
    },
    /// A contact card's signature (or its prekey bundle's) did not verify.
    #[error("contact card signature does not verify")]
    CardSignature,
    /// A payload was shorter than its fixed part or longer than its limit.
    #[error("payload: at least {min} and at most {max} bytes, found {found}")]
    PayloadLength {
        /// Smallest legal length.
        min: usize,
        /// Largest legal length.
        max: usize,
        /// What was given.
        found: usize,
    },
    /// A payload carried an unknown version byte.
    #[error("payload version: expected {expected}, found {found}")]
    PayloadVersion {
        /// [`crate::PAYLOAD_VERSION`].
        expected: u8,
        /// What was given.
        found: u8,
    },
    /// An inner message carried an unknown kind.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// A message body did not match its kind's format.
    #[error("malformed {kind} body: {reason}")]
    MalformedBody {
        /// The kind's name.
        kind: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A text is longer than one packet carries.
    #[error("text too long: at most {max} bytes, found {found}")]
    TextTooLong {
        /// [`crate::MAX_TEXT_LEN`].
        max: usize,
        /// What was given.
        found: usize,
    },
    /// No contact with that address is known.
    #[error("unknown contact")]
    UnknownContact,
    /// No relay in the directory has that node id (or an onion key for the epoch).
    #[error("relay not in the directory (or no onion key for epoch {epoch})")]
    UnknownRelay {
        /// The epoch asked for.
        epoch: u32,
    },
    /// The ratchet refused to start a session.
    #[error("session: {0}")]
    Session(#[from] zentalk_ratchet::SessionCreationError),
    /// The ratchet refused to encrypt.
    #[error("encrypt: {0}")]
    Encrypt(#[from] zentalk_ratchet::EncryptError),
    /// The ratchet message bytes did not parse.
    #[error("ratchet message: {0}")]
    Decode(#[from] zentalk_ratchet::DecodeError),
    /// No session decrypted an incoming message.
    #[error("no session decrypts this message")]
    Undecryptable,
    /// The onion layer refused (route selection or packet building).
    #[error("onion: {0}")]
    Onion(#[from] zentalk_onion::OnionError),
    /// A DHT record could not be built or opened.
    #[error("dht record: {0}")]
    Record(#[from] zentalk_dht::RecordError),
    /// The local store failed.
    #[error("store: {0}")]
    Store(#[from] zentalk_storage::StoreError),
    /// A pickle (session, account or snapshot) did not open.
    #[error("pickle: {0}")]
    Pickle(#[from] zentalk_ratchet::PickleError),
    /// The saved client state is malformed.
    #[error("saved state is malformed: {0}")]
    Snapshot(&'static str),
    /// A key was malformed.
    #[error("key: {0}")]
    Crypto(#[from] zentalk_crypto::CryptoError),
}
