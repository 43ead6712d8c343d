//! The link between a protobuf body and its [`MessageType`], and the checks every body passes
//! after prost decodes it.

use crate::error::WireError;
use crate::header::MessageId;
use crate::proto;
use crate::types::{MAX_MAILBOX_PAYLOAD_LEN, MAX_RECEIPT_IDS, MessageType};

/// Length of mailbox ids, node ids, public keys, nonces and packet hashes.
pub const ID_LEN: usize = 32;

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

mod private {
    pub trait Sealed {}
}

/// A protobuf body with its fixed [`MessageType`].
///
/// Implemented for every generated body in [`crate::proto`] that is a frame body (nested
/// helper messages such as `MailboxItem` are not). Sealed: the type table and the bodies live
/// together in this crate, so one Rust type always means one code.
pub trait WireMessage: prost::Message + Default + private::Sealed {
    /// The message type written in the header of frames carrying this body.
    const TYPE: MessageType;

    /// Checks what protobuf cannot express: fixed field lengths, list sizes, required nested
    /// messages, value ranges. [`Frame::decode_body`](crate::Frame::decode_body) runs it after
    /// prost decodes the body, so a caller only ever sees bodies that pass.
    ///
    /// The DHT bodies (owned by zentalk-dht) are checked by zentalk-dht, so theirs accepts all.
    fn validate(&self) -> Result<(), WireError>;
}

fn exact(ty: MessageType, field: &'static str, value: &[u8], len: usize) -> Result<(), WireError> {
    if value.len() == len {
        Ok(())
    } else {
        Err(WireError::FieldLength {
            ty,
            field,
            expected: len,
            found: value.len(),
        })
    }
}

fn empty_or(
    ty: MessageType,
    field: &'static str,
    value: &[u8],
    len: usize,
) -> Result<(), WireError> {
    if value.is_empty() {
        Ok(())
    } else {
        exact(ty, field, value, len)
    }
}

fn at_most(ty: MessageType, field: &'static str, len: usize, max: usize) -> Result<(), WireError> {
    if len <= max {
        Ok(())
    } else {
        Err(WireError::FieldTooLong {
            ty,
            field,
            max,
            found: len,
        })
    }
}

fn list(
    ty: MessageType,
    field: &'static str,
    items: &[bytes::Bytes],
    each_len: usize,
) -> Result<(), WireError> {
    if items.len() > MAX_RECEIPT_IDS {
        return Err(WireError::TooManyItems {
            ty,
            field,
            max: MAX_RECEIPT_IDS,
            found: items.len(),
        });
    }
    items
        .iter()
        .try_for_each(|item| exact(ty, field, item, each_len))
}

fn item(ty: MessageType, it: &proto::MailboxItem) -> Result<(), WireError> {
    exact(ty, "item.message_id", &it.message_id, MessageId::LEN)?;
    at_most(
        ty,
        "item.payload",
        it.payload.len(),
        MAX_MAILBOX_PAYLOAD_LEN,
    )
}

macro_rules! wire_message {
    ($name:ident, |$m:ident, $ty:ident| $body:block) => {
        impl private::Sealed for proto::$name {}
        impl WireMessage for proto::$name {
            const TYPE: MessageType = MessageType::$name;
            fn validate(&self) -> Result<(), WireError> {
                let $m = self;
                let $ty = Self::TYPE;
                $body
            }
        }
    };
}

// Link.
wire_message!(LinkHandshake, |m, ty| {
    if !(1..=3).contains(&m.step) {
        return Err(WireError::FieldOutOfRange {
            ty,
            field: "step",
            found: u64::from(m.step),
        });
    }
    Ok(())
});
wire_message!(Ping, |_m, _ty| { Ok(()) });
wire_message!(Pong, |_m, _ty| { Ok(()) });
wire_message!(Error, |m, ty| {
    empty_or(ty, "in_reply_to", &m.in_reply_to, MessageId::LEN)
});
wire_message!(Close, |_m, _ty| { Ok(()) });

// Mailbox.
wire_message!(MailboxChallenge, |m, ty| {
    exact(ty, "nonce", &m.nonce, ID_LEN)?;
    exact(ty, "relay_id", &m.relay_id, ID_LEN)
});
wire_message!(MailboxAuth, |m, ty| {
    exact(ty, "mailbox_id", &m.mailbox_id, ID_LEN)?;
    exact(ty, "mailbox_key", &m.mailbox_key, ID_LEN)?;
    exact(ty, "nonce", &m.nonce, ID_LEN)?;
    exact(ty, "signature", &m.signature, SIGNATURE_LEN)
});
wire_message!(MailboxPut, |m, ty| {
    exact(ty, "mailbox_id", &m.mailbox_id, ID_LEN)?;
    exact(ty, "message_id", &m.message_id, MessageId::LEN)?;
    at_most(ty, "payload", m.payload.len(), MAX_MAILBOX_PAYLOAD_LEN)
});
wire_message!(MailboxPutAck, |m, ty| {
    exact(ty, "message_id", &m.message_id, MessageId::LEN)
});
wire_message!(MailboxFetch, |m, ty| {
    exact(ty, "mailbox_id", &m.mailbox_id, ID_LEN)
});
wire_message!(MailboxBatch, |m, ty| {
    m.items.iter().try_for_each(|it| item(ty, it))
});
wire_message!(MailboxAck, |m, ty| {
    exact(ty, "mailbox_id", &m.mailbox_id, ID_LEN)
});
wire_message!(MailboxPush, |m, ty| {
    exact(ty, "mailbox_id", &m.mailbox_id, ID_LEN)?;
    match &m.item {
        Some(it) => item(ty, it),
        None => Err(WireError::MissingField { ty, field: "item" }),
    }
});

// DHT: bodies defined and validated by zentalk-dht (proto/dht.proto).
wire_message!(DhtPing, |_m, _ty| { Ok(()) });
wire_message!(DhtPong, |_m, _ty| { Ok(()) });
wire_message!(DhtFindNode, |_m, _ty| { Ok(()) });
wire_message!(DhtNodes, |_m, _ty| { Ok(()) });
wire_message!(DhtFindValue, |_m, _ty| { Ok(()) });
wire_message!(DhtValue, |_m, _ty| { Ok(()) });
wire_message!(DhtStore, |_m, _ty| { Ok(()) });
wire_message!(DhtStoreAck, |_m, _ty| { Ok(()) });

// Prekey bundles.
wire_message!(PrekeyBundle, |m, ty| {
    exact(ty, "identity_key", &m.identity_key, ID_LEN)?;
    exact(ty, "signed_prekey", &m.signed_prekey, ID_LEN)?;
    exact(
        ty,
        "signed_prekey_signature",
        &m.signed_prekey_signature,
        SIGNATURE_LEN,
    )?;
    match &m.one_time_prekey {
        Some(otk) => exact(ty, "one_time_prekey.key", &otk.key, ID_LEN),
        None => Ok(()),
    }
});

// Receipts.
wire_message!(DeliveryReceipt, |m, ty| {
    list(ty, "message_ids", &m.message_ids, MessageId::LEN)
});
wire_message!(TransitReceipt, |m, ty| {
    exact(ty, "packet_hash", &m.packet_hash, ID_LEN)?;
    exact(ty, "relay_id", &m.relay_id, ID_LEN)?;
    exact(ty, "signature", &m.signature, SIGNATURE_LEN)
});
wire_message!(TransitReceiptFetch, |m, ty| {
    list(ty, "packet_hashes", &m.packet_hashes, ID_LEN)
});

// Presence.
wire_message!(Presence, |_m, _ty| { Ok(()) });
wire_message!(Typing, |m, ty| {
    empty_or(ty, "conversation_id", &m.conversation_id, ID_LEN)
});
