//! [`Body`]: any frame body, decoded by the type its header names.

use bytes::Bytes;

use crate::error::WireError;
use crate::frame::Frame;
use crate::header::{Flags, MessageId};
use crate::proto;
use crate::types::MessageType;

macro_rules! bodies {
    ($($name:ident),* $(,)?) => {
        /// Any frame body, decoded according to the message type in the header.
        ///
        /// For code that handles every type in one place (a relay's dispatch, the fuzz
        /// targets). A context that accepts only some messages should call
        /// [`Frame::decode_body`] for exactly those, so no other parser is reachable there.
        #[non_exhaustive]
        #[derive(Debug, Clone, PartialEq)]
        pub enum Body {
            /// A raw onion packet.
            OnionPacket(Bytes),
            $(
                #[doc = concat!("A `", stringify!($name), "` body.")]
                $name(proto::$name),
            )*
        }

        impl Body {
            /// Decodes `frame`'s body by the type in its header, with the same checks as
            /// [`Frame::decode_body`].
            pub fn decode(frame: &Frame) -> Result<Self, WireError> {
                match frame.message_type() {
                    MessageType::OnionPacket => Ok(Body::OnionPacket(frame.body().clone())),
                    $( MessageType::$name => frame.decode_body().map(Body::$name), )*
                }
            }

            /// The message type of this body.
            pub fn message_type(&self) -> MessageType {
                match self {
                    Body::OnionPacket(_) => MessageType::OnionPacket,
                    $( Body::$name(_) => MessageType::$name, )*
                }
            }

            /// A frame carrying this body.
            pub fn to_frame(&self, id: MessageId, flags: Flags) -> Result<Frame, WireError> {
                match self {
                    Body::OnionPacket(packet) => Frame::onion_packet(id, flags, packet.clone()),
                    $( Body::$name(m) => Frame::with_flags(id, flags, m), )*
                }
            }
        }
    };
}

bodies!(
    LinkHandshake,
    Ping,
    Pong,
    Error,
    Close,
    MailboxChallenge,
    MailboxAuth,
    MailboxPut,
    MailboxPutAck,
    MailboxFetch,
    MailboxBatch,
    MailboxAck,
    MailboxPush,
    DhtPing,
    DhtPong,
    DhtFindNode,
    DhtNodes,
    DhtFindValue,
    DhtValue,
    DhtStore,
    DhtStoreAck,
    PrekeyBundle,
    DeliveryReceipt,
    TransitReceipt,
    TransitReceiptFetch,
    Presence,
    Typing,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_dispatches_to_its_body() {
        let id = MessageId::from_bytes([3; 16]);
        for &ty in MessageType::ALL {
            // An empty body is valid protobuf for every type; validation may then refuse it,
            // but only with a body error naming the same type.
            if ty.is_reserved() {
                // Never encoded; a received one (a Ping frame with the type patched) is
                // refused by type, before its body is parsed.
                let mut bytes = Frame::from_raw(MessageType::Ping, id, Flags::EMPTY, Bytes::new())
                    .unwrap()
                    .to_bytes()
                    .to_vec();
                bytes[6..8].copy_from_slice(&ty.code().to_be_bytes());
                let frame = Frame::decode_exact(&bytes).unwrap();
                assert_eq!(Body::decode(&frame), Err(WireError::ReservedType { ty }));
                continue;
            }
            let frame = Frame::from_raw(ty, id, Flags::EMPTY, Bytes::new()).unwrap();
            match Body::decode(&frame) {
                Ok(body) => {
                    assert_eq!(body.message_type(), ty);
                    assert_eq!(body.to_frame(id, Flags::EMPTY).unwrap(), frame);
                }
                Err(e) => assert!(!e.is_fatal_to_stream(), "{ty}: {e}"),
            }
        }
    }
}
