//! Message types, their 16-bit codes and the per-type body limits.

use core::fmt;

use crate::header::HEADER_LEN;

/// Largest Noise transport message (the Noise specification's 65535-byte limit).
pub const NOISE_MAX_MESSAGE_LEN: usize = 65_535;

/// Length of the Noise AEAD tag (ChaCha20-Poly1305) that every Noise transport message carries.
pub const NOISE_TAG_LEN: usize = 16;

/// Largest frame, header included: one frame must fit in one Noise transport message, which
/// holds at most 65535 bytes of which 16 are the AEAD tag.
pub const MAX_FRAME_LEN: usize = NOISE_MAX_MESSAGE_LEN - NOISE_TAG_LEN;

/// Largest body of any type: [`MAX_FRAME_LEN`] minus the 32-byte header.
pub const MAX_BODY_LEN: usize = MAX_FRAME_LEN - HEADER_LEN;

/// Largest onion packet body the wire layer accepts.
///
/// The onion crate's packet size must be <= this limit; the wire layer checks only this upper
/// bound (the onion layer rejects any packet that is not exactly its one fixed size).
pub const MAX_ONION_PACKET_LEN: usize = 8 * 1024;

/// Largest end-to-end encrypted item a mailbox stores (`payload` of MailboxPut and
/// MailboxItem). An item is what an onion packet delivers, so it is no larger than a packet.
pub const MAX_MAILBOX_PAYLOAD_LEN: usize = MAX_ONION_PACKET_LEN;

/// Bytes allowed around a mailbox payload in MailboxPut and MailboxPush (ids, sequence
/// number, protobuf tags and lengths; the actual overhead is under 80 bytes).
pub const MAILBOX_ENVELOPE_LEN: usize = 128;

/// Largest number of ids in one DeliveryReceipt or TransitReceiptFetch.
pub const MAX_RECEIPT_IDS: usize = 64;

/// Largest DHT request (DhtPing, DhtFindNode, DhtFindValue) and small DHT response (DhtPong,
/// DhtStoreAck) body.
pub const MAX_DHT_SMALL_LEN: usize = 512;

/// Largest DhtNodes body (up to k = 20 contacts and the responder's signature).
pub const MAX_DHT_NODES_LEN: usize = 4 * 1024;

/// Largest DhtValue and DhtStore body (one signed record, plus closer contacts in DhtValue).
pub const MAX_DHT_RECORD_LEN: usize = 8 * 1024;

/// A code in the frame header's message type field that no [`MessageType`] has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("unknown message type code {0:#06x}")]
pub struct UnknownMessageType(pub u16);

macro_rules! message_types {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, max $max:expr; )*) => {
        /// Every message type of the protocol, with its 16-bit code in the frame header.
        ///
        /// Codes are grouped by range: link `0x00xx`, onion `0x01xx`, mailbox `0x02xx`, DHT
        /// `0x03xx`, prekey bundles `0x04xx`, receipts `0x05xx`, presence `0x06xx`. No code has
        /// a low byte of zero, so an all-zero header never names a type.
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum MessageType {
            $( $(#[$doc])* $name = $code, )*
        }

        impl MessageType {
            /// Every message type, in code order.
            pub const ALL: &'static [MessageType] = &[ $( MessageType::$name, )* ];

            /// The 16-bit code written in the frame header.
            pub const fn code(self) -> u16 {
                self as u16
            }

            /// The largest body this type may carry; the decoder rejects a longer one before
            /// reading or allocating it.
            pub const fn max_body_len(self) -> usize {
                match self { $( MessageType::$name => $max, )* }
            }

            /// The type's name as it appears in the protocol documentation.
            pub const fn name(self) -> &'static str {
                match self { $( MessageType::$name => stringify!($name), )* }
            }
        }

        impl TryFrom<u16> for MessageType {
            type Error = UnknownMessageType;

            fn try_from(code: u16) -> Result<Self, UnknownMessageType> {
                match code {
                    $( $code => Ok(MessageType::$name), )*
                    other => Err(UnknownMessageType(other)),
                }
            }
        }
    };
}

message_types! {
    /// Reserved: never emitted, refused when received (see [`MessageType::is_reserved`]). Was
    /// meant to wrap the Noise XK handshake messages; the link layer sends those unframed.
    LinkHandshake = 0x0001, max 1024;
    /// Liveness probe (body `Ping`).
    Ping = 0x0002, max 64;
    /// Answer to a Ping (body `Pong`).
    Pong = 0x0003, max 64;
    /// Error report with a code (body `Error`).
    Error = 0x0004, max 1024;
    /// Orderly close of the link (body `Close`).
    Close = 0x0005, max 64;
    /// A fixed-size onion packet: raw bytes, not protobuf.
    OnionPacket = 0x0101, max MAX_ONION_PACKET_LEN;
    /// Relay -> client: nonce to sign to open a mailbox (body `MailboxChallenge`).
    MailboxChallenge = 0x0201, max 128;
    /// Client -> relay: signed answer to the challenge (body `MailboxAuth`).
    MailboxAuth = 0x0202, max 256;
    /// Deposit an item into a mailbox (body `MailboxPut`).
    MailboxPut = 0x0203, max MAX_MAILBOX_PAYLOAD_LEN + MAILBOX_ENVELOPE_LEN;
    /// Outcome of a MailboxPut (body `MailboxPutAck`).
    MailboxPutAck = 0x0204, max 64;
    /// Ask for stored items after a cursor (body `MailboxFetch`).
    MailboxFetch = 0x0205, max 128;
    /// Stored items answering a MailboxFetch (body `MailboxBatch`).
    MailboxBatch = 0x0206, max MAX_BODY_LEN;
    /// Let the relay delete items up to a cursor (body `MailboxAck`).
    MailboxAck = 0x0207, max 128;
    /// Relay pushes a newly arrived item to its connected owner (body `MailboxPush`).
    MailboxPush = 0x0208, max MAX_MAILBOX_PAYLOAD_LEN + MAILBOX_ENVELOPE_LEN;
    /// DHT liveness and identity probe (body `DhtPing`, defined by zentalk-dht).
    DhtPing = 0x0301, max MAX_DHT_SMALL_LEN;
    /// Answer to DhtPing (body `DhtPong`).
    DhtPong = 0x0302, max MAX_DHT_SMALL_LEN;
    /// Ask for the contacts closest to a target (body `DhtFindNode`).
    DhtFindNode = 0x0303, max MAX_DHT_SMALL_LEN;
    /// Contacts answering DhtFindNode (body `DhtNodes`).
    DhtNodes = 0x0304, max MAX_DHT_NODES_LEN;
    /// Ask for the record under a key (body `DhtFindValue`).
    DhtFindValue = 0x0305, max MAX_DHT_SMALL_LEN;
    /// Record or closer contacts answering DhtFindValue (body `DhtValue`).
    DhtValue = 0x0306, max MAX_DHT_RECORD_LEN;
    /// Store a signed record (body `DhtStore`).
    DhtStore = 0x0307, max MAX_DHT_RECORD_LEN;
    /// Outcome of a DhtStore (body `DhtStoreAck`).
    DhtStoreAck = 0x0308, max MAX_DHT_SMALL_LEN;
    /// An X3DH prekey bundle (body `PrekeyBundle`).
    PrekeyBundle = 0x0401, max 512;
    /// End-to-end delivery or read receipt (body `DeliveryReceipt`).
    DeliveryReceipt = 0x0501, max 2048;
    /// A relay's signed hash-only transit receipt (body `TransitReceipt`).
    TransitReceipt = 0x0502, max 256;
    /// Ask a relay for transit receipts by packet hash (body `TransitReceiptFetch`).
    TransitReceiptFetch = 0x0503, max 4096;
    /// End-to-end presence status (body `Presence`).
    Presence = 0x0601, max 64;
    /// End-to-end typing indicator (body `Typing`).
    Typing = 0x0602, max 64;
}

impl MessageType {
    /// Every reserved type: its code stays assigned so it is never reused with another
    /// meaning, but no frame of it is ever sent. Encoding one is refused
    /// ([`WireError::EncodeReserved`](crate::WireError::EncodeReserved)); decoding the body
    /// of a received one is a body error
    /// ([`WireError::ReservedType`](crate::WireError::ReservedType)) that the receiver answers
    /// with `ERROR_CODE_NOT_SUPPORTED`, keeping the link.
    pub const RESERVED: &'static [MessageType] = &[MessageType::LinkHandshake];

    /// True for a reserved type (see [`MessageType::RESERVED`]).
    pub const fn is_reserved(self) -> bool {
        matches!(self, MessageType::LinkHandshake)
    }

    /// True for every type whose body is protobuf; false for [`MessageType::OnionPacket`],
    /// whose body is raw bytes.
    pub const fn is_protobuf(self) -> bool {
        !matches!(self, MessageType::OnionPacket)
    }
}

/// The largest body a frame of type `ty` may carry (see [`MessageType::max_body_len`]).
pub const fn max_body_len(ty: MessageType) -> usize {
    ty.max_body_len()
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:#06x})", self.name(), self.code())
    }
}

impl From<MessageType> for u16 {
    fn from(ty: MessageType) -> u16 {
        ty.code()
    }
}

// Every per-type limit fits the global one, and the global one fits a Noise message.
const _: () = {
    let mut i = 0;
    while i < MessageType::ALL.len() {
        assert!(MessageType::ALL[i].max_body_len() <= MAX_BODY_LEN);
        assert!(MessageType::ALL[i].code() & 0xff != 0);
        i += 1;
    }
    assert!(MAX_FRAME_LEN + NOISE_TAG_LEN <= NOISE_MAX_MESSAGE_LEN);
    assert!(MAX_FRAME_LEN <= u32::MAX as usize);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &ty in MessageType::ALL {
            assert!(seen.insert(ty.code()), "duplicate code {ty}");
            assert_eq!(MessageType::try_from(ty.code()), Ok(ty));
            assert_eq!(u16::from(ty), ty.code());
            assert!(ty.max_body_len() <= MAX_BODY_LEN);
            assert_eq!(max_body_len(ty), ty.max_body_len());
        }
        assert_eq!(MessageType::ALL.len(), 28);
    }

    #[test]
    fn unknown_codes_are_typed_errors() {
        for code in [
            0x0000, 0x0006, 0x0100, 0x0102, 0x0209, 0x0309, 0x0402, 0x0504, 0x0603, 0xffff,
        ] {
            assert_eq!(MessageType::try_from(code), Err(UnknownMessageType(code)));
        }
        let known = (0..=u16::MAX)
            .filter(|c| MessageType::try_from(*c).is_ok())
            .count();
        assert_eq!(known, MessageType::ALL.len());
    }

    #[test]
    fn ranges_group_the_types() {
        assert_eq!(MessageType::Close.code() >> 8, 0x00);
        assert_eq!(MessageType::OnionPacket.code() >> 8, 0x01);
        assert_eq!(MessageType::MailboxPush.code() >> 8, 0x02);
        assert_eq!(MessageType::DhtStoreAck.code() >> 8, 0x03);
        assert_eq!(MessageType::PrekeyBundle.code() >> 8, 0x04);
        assert_eq!(MessageType::TransitReceiptFetch.code() >> 8, 0x05);
        assert_eq!(MessageType::Typing.code() >> 8, 0x06);
        assert!(!MessageType::OnionPacket.is_protobuf());
        for &ty in MessageType::ALL {
            assert_eq!(
                ty.is_reserved(),
                MessageType::RESERVED.contains(&ty),
                "{ty}"
            );
        }
        assert_eq!(MessageType::RESERVED, &[MessageType::LinkHandshake]);
        assert!(MessageType::Ping.is_protobuf());
        assert_eq!(MessageType::Ping.to_string(), "Ping (0x0002)");
        assert_eq!(MAX_FRAME_LEN, 65_519);
        assert_eq!(MAX_BODY_LEN, 65_487);
    }
}
