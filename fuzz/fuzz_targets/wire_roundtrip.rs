//! Round trip of arbitrary frames: a frame built from the input (type, flags, id, body cut to
//! the type's limit) encodes and decodes to itself, one-shot and streamed in two pieces; and a
//! body that decodes re-encodes to a frame that decodes to the same message. A reserved type
//! is refused by the encoder.
//!
//! Run: `cargo +nightly fuzz run wire_roundtrip`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zentalk_wire::bytes::{Bytes, BytesMut};
use zentalk_wire::{Body, Flags, Frame, HEADER_LEN, MessageId, MessageType, WireError, decode};

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = data.split_at_checked(20) else {
        return;
    };
    let ty = MessageType::ALL
        [usize::from(u16::from_be_bytes([head[0], head[1]])) % MessageType::ALL.len()];
    let flags = Flags::from_bits(head[2]);
    let split = usize::from(head[3]);
    let id = MessageId::from_slice(&head[4..20]).expect("16 bytes");
    let body = &body[..body.len().min(ty.max_body_len())];

    let raw = Frame::from_raw(ty, id, flags, Bytes::copy_from_slice(body));
    if ty.is_reserved() {
        // Reserved types are never encoded.
        assert_eq!(raw, Err(WireError::EncodeReserved { ty }));
        return;
    }
    let frame = raw.expect("within limit");
    let bytes = frame.to_bytes();
    assert_eq!(bytes.len(), HEADER_LEN + body.len());
    assert_eq!(Frame::decode_exact(&bytes).as_ref(), Ok(&frame));

    let mut buf = BytesMut::from(&bytes[..split.min(bytes.len())]);
    if buf.len() < bytes.len() {
        assert_eq!(decode(&mut buf), Ok(None));
        buf.extend_from_slice(&bytes[split..]);
    }
    assert_eq!(decode(&mut buf), Ok(Some(frame.clone())));
    assert!(buf.is_empty());

    if let Ok(msg) = Body::decode(&frame) {
        assert_eq!(msg.message_type(), ty);
        // Re-encoding can grow a body (a negative enum value read from a 5-byte varint is
        // written back in 10), so it may exceed the limit; anything else must round-trip.
        match msg.to_frame(id, flags) {
            Ok(again) => {
                let back = Frame::decode_exact(&again.to_bytes()).expect("re-encoded frame");
                assert_eq!(Body::decode(&back).expect("re-encoded body"), msg);
            }
            Err(WireError::EncodeTooLong { .. }) => {}
            Err(e) => panic!("re-encoding failed: {e}"),
        }
    }
});
