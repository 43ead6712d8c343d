//! The 32-byte frame header, message ids and flags.

use core::fmt;

use zentalk_crypto::CryptoRngCore;

use crate::error::WireError;
use crate::reader::Reader;
use crate::types::MessageType;

/// The four bytes every frame starts with.
pub const MAGIC: [u8; 4] = *b"ZTAL";

/// The frame format version this implementation writes and the only one it reads.
pub const VERSION: u8 = 1;

/// Length of the frame header.
pub const HEADER_LEN: usize = 32;

/// Offset of the 4-byte magic `ZTAL`.
pub const OFFSET_MAGIC: usize = 0;
/// Offset of the 1-byte version.
pub const OFFSET_VERSION: usize = 4;
/// Offset of the 1-byte flags.
pub const OFFSET_FLAGS: usize = 5;
/// Offset of the 2-byte big-endian message type code.
pub const OFFSET_TYPE: usize = 6;
/// Offset of the 4-byte big-endian body length.
pub const OFFSET_BODY_LEN: usize = 8;
/// Offset of the 16-byte message id.
pub const OFFSET_MESSAGE_ID: usize = 12;
/// Offset of the 4 reserved bytes, which must be zero.
pub const OFFSET_RESERVED: usize = 28;

/// A 16-byte message id: random, with no clock, counter or sender in it.
///
/// Ids let a peer match answers to requests, drop duplicates and name a frame in an Error.
/// Because they are drawn from a CSPRNG, they reveal nothing about when or by whom a message
/// was made (the original system's ids embedded a timestamp).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId([u8; MessageId::LEN]);

impl MessageId {
    /// Length of a message id in bytes.
    pub const LEN: usize = 16;

    /// A fresh id of 16 bytes drawn from `rng`.
    pub fn random(rng: &mut impl CryptoRngCore) -> Self {
        let mut id = [0u8; Self::LEN];
        rng.fill_bytes(&mut id);
        MessageId(id)
    }

    /// The id with these bytes (for ids received in a body, and for tests).
    pub const fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        MessageId(bytes)
    }

    /// The id from a slice, or `None` unless it is exactly 16 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; Self::LEN]>::try_from(bytes).ok().map(MessageId)
    }

    /// The id's bytes.
    pub const fn to_bytes(self) -> [u8; Self::LEN] {
        self.0
    }

    /// The id's bytes, borrowed.
    pub const fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// The header's flags byte.
///
/// Version 1 assigns no flag: senders write 0 unless a later protocol chapter assigns a bit to
/// a message type. The decoder accepts any value and hands it to the layer above unchanged, so
/// a bit can be given a meaning that old receivers may safely ignore without a version change.
/// (A change old receivers must not ignore goes in the reserved bytes or a new version.)
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// No flag set.
    pub const EMPTY: Flags = Flags(0);

    /// Flags with these bits.
    pub const fn from_bits(bits: u8) -> Self {
        Flags(bits)
    }

    /// The flags byte.
    pub const fn bits(self) -> u8 {
        self.0
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags({:#04x})", self.0)
    }
}

/// A parsed and validated frame header.
///
/// Layout (all integers big-endian):
///
/// | offset | len | field                                   |
/// |-------:|----:|-----------------------------------------|
/// |      0 |   4 | magic `ZTAL` (5a 54 41 4c)              |
/// |      4 |   1 | version, 1                              |
/// |      5 |   1 | flags                                   |
/// |      6 |   2 | message type code                       |
/// |      8 |   4 | body length                             |
/// |     12 |  16 | message id                              |
/// |     28 |   4 | reserved, must be zero                  |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    ty: MessageType,
    flags: Flags,
    body_len: u32,
    id: MessageId,
}

impl Header {
    /// A header for a body of `body_len` bytes, checked against the type's limit.
    pub(crate) fn for_body(
        ty: MessageType,
        id: MessageId,
        flags: Flags,
        body_len: usize,
    ) -> Result<Self, WireError> {
        if ty.is_reserved() {
            return Err(WireError::EncodeReserved { ty });
        }
        let max = ty.max_body_len();
        match u32::try_from(body_len) {
            Ok(len) if body_len <= max => Ok(Header {
                ty,
                flags,
                body_len: len,
                id,
            }),
            _ => Err(WireError::EncodeTooLong {
                ty,
                max,
                found: body_len,
            }),
        }
    }

    /// Parses and validates the first [`HEADER_LEN`] bytes of `bytes`, in this order: magic,
    /// version, reserved bytes, type, body length against the type's limit. Bytes after the
    /// header are ignored; fewer than [`HEADER_LEN`] bytes give [`WireError::Truncated`].
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes);
        let short = |_| WireError::Truncated {
            needed: HEADER_LEN,
            found: bytes.len(),
        };
        let magic: [u8; 4] = r.take_array().map_err(short)?;
        let version = r.take_u8().map_err(short)?;
        let flags = r.take_u8().map_err(short)?;
        let code = r.take_u16().map_err(short)?;
        let body_len = r.take_u32().map_err(short)?;
        let id: [u8; MessageId::LEN] = r.take_array().map_err(short)?;
        let reserved: [u8; 4] = r.take_array().map_err(short)?;
        debug_assert_eq!(r.consumed(), HEADER_LEN);

        if magic != MAGIC {
            return Err(WireError::bad_magic(magic));
        }
        if version != VERSION {
            return Err(WireError::unsupported_version(version));
        }
        if reserved != [0; 4] {
            return Err(WireError::ReservedNotZero { found: reserved });
        }
        let ty = MessageType::try_from(code).map_err(|e| WireError::UnknownType { found: e.0 })?;
        let max = ty.max_body_len();
        let found = usize::try_from(body_len).unwrap_or(usize::MAX);
        if found > max {
            return Err(WireError::BodyTooLong { ty, max, found });
        }
        Ok(Header {
            ty,
            flags: Flags(flags),
            body_len,
            id: MessageId(id),
        })
    }

    /// The header's 32 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let fields: [(usize, &[u8]); 6] = [
            (OFFSET_MAGIC, &MAGIC),
            (OFFSET_VERSION, &[VERSION]),
            (OFFSET_FLAGS, &[self.flags.0]),
            (OFFSET_TYPE, &self.ty.code().to_be_bytes()),
            (OFFSET_BODY_LEN, &self.body_len.to_be_bytes()),
            (OFFSET_MESSAGE_ID, &self.id.0),
        ];
        for (offset, bytes) in fields {
            if let Some(dst) = out.get_mut(offset..offset + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
        // OFFSET_RESERVED..HEADER_LEN stays zero.
        out
    }

    /// The message type.
    pub const fn message_type(&self) -> MessageType {
        self.ty
    }

    /// The flags byte.
    pub const fn flags(&self) -> Flags {
        self.flags
    }

    /// The body length announced by the header (already checked against the type's limit).
    pub const fn body_len(&self) -> usize {
        self.body_len as usize
    }

    /// The message id.
    pub const fn id(&self) -> MessageId {
        self.id
    }

    /// Header plus body length: the frame's length on the wire.
    pub const fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            ty: MessageType::MailboxPut,
            flags: Flags::from_bits(0xa5),
            body_len: 0x0102,
            id: MessageId::from_bytes(*b"0123456789abcdef"),
        }
    }

    #[test]
    fn layout_is_exactly_as_documented() {
        let bytes = sample().encode();
        assert_eq!(&bytes[0..4], b"ZTAL");
        assert_eq!(bytes[4], 1);
        assert_eq!(bytes[5], 0xa5);
        assert_eq!(&bytes[6..8], &[0x02, 0x03]);
        assert_eq!(&bytes[8..12], &[0, 0, 0x01, 0x02]);
        assert_eq!(&bytes[12..28], b"0123456789abcdef");
        assert_eq!(&bytes[28..32], &[0, 0, 0, 0]);
        assert_eq!(OFFSET_RESERVED + 4, HEADER_LEN);
        assert_eq!(Header::decode(&bytes), Ok(sample()));
        assert_eq!(sample().frame_len(), 32 + 0x0102);
    }

    #[test]
    fn message_id_is_random_and_prints_hex() {
        use rand_chacha::ChaCha20Rng;
        use rand_chacha::rand_core::SeedableRng;
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let a = MessageId::random(&mut rng);
        let b = MessageId::random(&mut rng);
        assert_ne!(a, b);
        assert_eq!(MessageId::from_slice(a.as_bytes()), Some(a));
        assert_eq!(MessageId::from_slice(&[0u8; 15]), None);
        let id = MessageId::from_bytes([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(format!("{id:?}"), format!("MessageId({})", "ab".repeat(16)));
        assert_eq!(id.to_bytes(), [0xab; 16]);
    }
}
