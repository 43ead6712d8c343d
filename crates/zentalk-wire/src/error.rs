//! The one error type of this crate.

use crate::header::{MAGIC, VERSION};
use crate::proto::ErrorCode;
use crate::types::MessageType;

/// Everything that can go wrong encoding or decoding a frame or its body.
///
/// Three kinds of variant, so a driver can decide what to do:
/// - **Framing errors** from a peer ([`BadMagic`](Self::BadMagic) to
///   [`TrailingBytes`](Self::TrailingBytes)): the byte stream cannot be resynchronised, so a
///   link must be closed ([`WireError::is_fatal_to_stream`] is true).
/// - **Body errors** from a peer ([`TypeMismatch`](Self::TypeMismatch) to
///   [`ReservedType`](Self::ReservedType)): the frame boundary is intact, so the driver may
///   drop the one frame, answer with an Error frame and keep the link.
/// - **Caller misuse** ([`EncodeReserved`](Self::EncodeReserved),
///   [`EncodeTooLong`](Self::EncodeTooLong)): this side tried to build a frame the protocol
///   forbids; nothing was sent.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The first four bytes were not `ZTAL`.
    #[error("bad magic: expected {expected:02x?}, found {found:02x?}")]
    BadMagic {
        /// Always [`MAGIC`].
        expected: [u8; 4],
        /// The four bytes received.
        found: [u8; 4],
    },
    /// The version byte names a version this implementation does not speak.
    #[error("unsupported frame version {found} (this implementation speaks {expected})")]
    UnsupportedVersion {
        /// Always [`VERSION`].
        expected: u8,
        /// The version byte received.
        found: u8,
    },
    /// The four reserved header bytes were not all zero.
    #[error("reserved header bytes are not zero: {found:02x?}")]
    ReservedNotZero {
        /// The four bytes received.
        found: [u8; 4],
    },
    /// The message type code is not one this implementation knows.
    #[error("unknown message type code {found:#06x}")]
    UnknownType {
        /// The code received.
        found: u16,
    },
    /// The header announced a body longer than its type allows; nothing was allocated for it.
    #[error("{ty} body of {found} bytes exceeds its limit of {max}")]
    BodyTooLong {
        /// The frame's type.
        ty: MessageType,
        /// The type's limit, [`MessageType::max_body_len`].
        max: usize,
        /// The length the header announced.
        found: usize,
    },
    /// The input ended inside a frame (one-shot decoding, or a stream closed mid-frame).
    #[error("truncated frame: needed {needed} bytes, found {found}")]
    Truncated {
        /// Bytes the frame needs (header, or header plus announced body).
        needed: usize,
        /// Bytes that were present.
        found: usize,
    },
    /// One-shot decoding found bytes after the end of the frame.
    #[error("{n} trailing bytes after the frame")]
    TrailingBytes {
        /// How many bytes followed the frame.
        n: usize,
    },
    /// The body was decoded as a type other than the one the header names.
    #[error("frame type mismatch: expected {expected}, found {found}")]
    TypeMismatch {
        /// The type the caller asked for.
        expected: MessageType,
        /// The type in the header.
        found: MessageType,
    },
    /// The body is not valid protobuf for its type.
    #[error("malformed {ty} body: {source}")]
    Protobuf {
        /// The frame's type.
        ty: MessageType,
        /// What prost reported.
        #[source]
        source: prost::DecodeError,
    },
    /// A fixed-size field has the wrong length.
    #[error("{ty} field `{field}` must be {expected} bytes, found {found}")]
    FieldLength {
        /// The frame's type.
        ty: MessageType,
        /// The field, as named in the .proto file (nested fields as `item.payload`).
        field: &'static str,
        /// The required length.
        expected: usize,
        /// The length received.
        found: usize,
    },
    /// A variable-size field is longer than its limit.
    #[error("{ty} field `{field}` is {found} bytes, limit {max}")]
    FieldTooLong {
        /// The frame's type.
        ty: MessageType,
        /// The field, as named in the .proto file.
        field: &'static str,
        /// The limit.
        max: usize,
        /// The length received.
        found: usize,
    },
    /// A repeated field has more entries than its limit.
    #[error("{ty} field `{field}` has {found} entries, limit {max}")]
    TooManyItems {
        /// The frame's type.
        ty: MessageType,
        /// The field, as named in the .proto file.
        field: &'static str,
        /// The limit.
        max: usize,
        /// The number of entries received.
        found: usize,
    },
    /// A field that must be present is absent.
    #[error("{ty} field `{field}` is missing")]
    MissingField {
        /// The frame's type.
        ty: MessageType,
        /// The field, as named in the .proto file.
        field: &'static str,
    },
    /// A numeric field is outside its legal range.
    #[error("{ty} field `{field}` has illegal value {found}")]
    FieldOutOfRange {
        /// The frame's type.
        ty: MessageType,
        /// The field, as named in the .proto file.
        field: &'static str,
        /// The value received.
        found: u64,
    },
    /// The peer sent a frame of a reserved type ([`MessageType::is_reserved`]). The header was
    /// valid and the body within its limit, so the frame boundary is intact: drop the frame,
    /// answer `ERROR_CODE_NOT_SUPPORTED`, keep the link. The body was not parsed.
    #[error("{ty} is a reserved message type: not supported")]
    ReservedType {
        /// The reserved type in the header.
        ty: MessageType,
    },
    /// Caller misuse: this side tried to build a frame of a reserved type
    /// ([`MessageType::is_reserved`]). Nothing was encoded.
    #[error("cannot send {ty}: reserved message type")]
    EncodeReserved {
        /// The reserved type.
        ty: MessageType,
    },
    /// Caller misuse: the body to send is longer than its type allows. Nothing was encoded.
    #[error("cannot send {ty} body of {found} bytes: limit {max}")]
    EncodeTooLong {
        /// The type being sent.
        ty: MessageType,
        /// The type's limit, [`MessageType::max_body_len`].
        max: usize,
        /// The body's length.
        found: usize,
    },
}

impl WireError {
    pub(crate) const fn bad_magic(found: [u8; 4]) -> Self {
        WireError::BadMagic {
            expected: MAGIC,
            found,
        }
    }

    pub(crate) const fn unsupported_version(found: u8) -> Self {
        WireError::UnsupportedVersion {
            expected: VERSION,
            found,
        }
    }

    /// True if the error leaves a byte stream unusable: the next frame's start is unknown, so
    /// the link must be closed. False for errors confined to one frame's body, and for caller
    /// misuse.
    pub fn is_fatal_to_stream(&self) -> bool {
        matches!(
            self,
            WireError::BadMagic { .. }
                | WireError::UnsupportedVersion { .. }
                | WireError::ReservedNotZero { .. }
                | WireError::UnknownType { .. }
                | WireError::BodyTooLong { .. }
                | WireError::Truncated { .. }
                | WireError::TrailingBytes { .. }
        )
    }

    /// True if the peer caused the error (as opposed to this side misusing the API).
    pub fn is_peer_fault(&self) -> bool {
        !matches!(
            self,
            WireError::EncodeTooLong { .. } | WireError::EncodeReserved { .. }
        )
    }

    /// The code to put in an Error frame answering the peer that caused this error.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            WireError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            WireError::UnknownType { .. } => ErrorCode::UnknownType,
            WireError::BodyTooLong { .. } => ErrorCode::TooLong,
            WireError::ReservedType { .. } => ErrorCode::NotSupported,
            WireError::EncodeTooLong { .. } | WireError::EncodeReserved { .. } => {
                ErrorCode::Internal
            }
            _ => ErrorCode::ProtocolViolation,
        }
    }
}
