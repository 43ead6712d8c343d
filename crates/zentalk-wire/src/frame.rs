//! Frames: a header and a body, built from a typed message and taken apart again.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::WireError;
use crate::header::{Flags, HEADER_LEN, Header, MessageId};
use crate::message::WireMessage;
use crate::types::MessageType;

/// One frame: a validated [`Header`] and a body whose length matches it.
///
/// The body is a [`Bytes`] view: frames produced by the decoders share the receive buffer
/// instead of copying it, and protobuf `bytes` fields decoded from it are views too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    header: Header,
    body: Bytes,
}

impl Frame {
    /// A frame carrying `msg`, with no flags.
    pub fn new<M: WireMessage>(id: MessageId, msg: &M) -> Result<Self, WireError> {
        Self::with_flags(id, Flags::EMPTY, msg)
    }

    /// A frame carrying `msg` with the given flags.
    pub fn with_flags<M: WireMessage>(
        id: MessageId,
        flags: Flags,
        msg: &M,
    ) -> Result<Self, WireError> {
        let header = Header::for_body(M::TYPE, id, flags, msg.encoded_len())?;
        Ok(Frame {
            header,
            body: Bytes::from(msg.encode_to_vec()),
        })
    }

    /// A frame of any type from an already encoded body, checked against the type's limit.
    /// For relaying frames unchanged and for raw bodies; prefer [`Frame::new`] for protobuf.
    pub fn from_raw(
        ty: MessageType,
        id: MessageId,
        flags: Flags,
        body: Bytes,
    ) -> Result<Self, WireError> {
        let header = Header::for_body(ty, id, flags, body.len())?;
        Ok(Frame { header, body })
    }

    /// A [`MessageType::OnionPacket`] frame: the packet's raw bytes, not protobuf. The wire layer
    /// checks only the upper bound [`MAX_ONION_PACKET_LEN`](crate::MAX_ONION_PACKET_LEN).
    pub fn onion_packet(id: MessageId, flags: Flags, packet: Bytes) -> Result<Self, WireError> {
        Self::from_raw(MessageType::OnionPacket, id, flags, packet)
    }

    /// Encodes `msg` straight into one complete frame (header and body in one allocation).
    pub fn encode<M: WireMessage>(
        msg: &M,
        id: MessageId,
        flags: Flags,
    ) -> Result<Bytes, WireError> {
        let body_len = msg.encoded_len();
        let header = Header::for_body(M::TYPE, id, flags, body_len)?;
        let mut out = BytesMut::with_capacity(HEADER_LEN + body_len);
        out.put_slice(&header.encode());
        // Cannot fail: `out` has room for exactly `encoded_len` more bytes.
        msg.encode_raw(&mut out);
        Ok(out.freeze())
    }

    /// A frame from a decoded header and a body of exactly `header.body_len()` bytes.
    pub(crate) fn from_parts(header: Header, body: Bytes) -> Self {
        debug_assert_eq!(header.body_len(), body.len());
        Frame { header, body }
    }

    /// The header.
    pub const fn header(&self) -> &Header {
        &self.header
    }

    /// The message type.
    pub const fn message_type(&self) -> MessageType {
        self.header.message_type()
    }

    /// The message id.
    pub const fn id(&self) -> MessageId {
        self.header.id()
    }

    /// The flags.
    pub const fn flags(&self) -> Flags {
        self.header.flags()
    }

    /// The body: protobuf for every type but [`MessageType::OnionPacket`], whose body is the
    /// raw packet.
    pub const fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body, taking the frame apart.
    pub fn into_body(self) -> Bytes {
        self.body
    }

    /// The frame's length on the wire.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// Appends the frame's bytes to `dst`.
    pub fn encode_into(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        dst.put_slice(&self.header.encode());
        dst.put_slice(&self.body);
    }

    /// The frame's bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out.freeze()
    }

    /// Decodes the body as `M`: checks the header's type is `M::TYPE` and is not reserved
    /// ([`WireError::ReservedType`]), decodes the protobuf (without copying `bytes` fields) and
    /// runs [`WireMessage::validate`].
    pub fn decode_body<M: WireMessage>(&self) -> Result<M, WireError> {
        if self.message_type() != M::TYPE {
            return Err(WireError::TypeMismatch {
                expected: M::TYPE,
                found: self.message_type(),
            });
        }
        if M::TYPE.is_reserved() {
            return Err(WireError::ReservedType { ty: M::TYPE });
        }
        let msg = M::decode(self.body.clone()).map_err(|source| WireError::Protobuf {
            ty: M::TYPE,
            source,
        })?;
        msg.validate()?;
        Ok(msg)
    }

    /// Decodes a buffer holding exactly one frame, as a UDP datagram or a Noise transport
    /// message does. Rejects a short buffer ([`WireError::Truncated`]) and bytes after the frame
    /// ([`WireError::TrailingBytes`]). Copies the body once; see [`Frame::decode_exact_bytes`]
    /// to avoid that.
    pub fn decode_exact(bytes: &[u8]) -> Result<Self, WireError> {
        let header = Self::exact_header(bytes)?;
        let body = bytes
            .get(HEADER_LEN..header.frame_len())
            .unwrap_or_default();
        Ok(Frame {
            header,
            body: Bytes::copy_from_slice(body),
        })
    }

    /// As [`Frame::decode_exact`], but the body is a view of `bytes`, not a copy.
    pub fn decode_exact_bytes(bytes: Bytes) -> Result<Self, WireError> {
        let header = Self::exact_header(&bytes)?;
        Ok(Frame {
            header,
            body: bytes.slice(HEADER_LEN..header.frame_len()),
        })
    }

    fn exact_header(bytes: &[u8]) -> Result<Header, WireError> {
        let header = Header::decode(bytes)?;
        let needed = header.frame_len();
        match bytes.len() {
            n if n < needed => Err(WireError::Truncated { needed, found: n }),
            n if n > needed => Err(WireError::TrailingBytes { n: n - needed }),
            _ => Ok(header),
        }
    }
}
