//! Frame encoding and decoding: round trips, streaming, and every error path.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bytes::{Bytes, BytesMut};
use prost::Message;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use zentalk_wire::proto::{self, ErrorCode};
use zentalk_wire::*;

fn id() -> MessageId {
    MessageId::from_bytes(*b"fedcba9876543210")
}

fn b(n: usize, v: u8) -> Bytes {
    Bytes::from(vec![v; n])
}

/// A raw header with every field under the test's control.
fn raw_header(magic: &[u8; 4], version: u8, code: u16, len: u32, reserved: [u8; 4]) -> Vec<u8> {
    let mut h = Vec::with_capacity(32);
    h.extend_from_slice(magic);
    h.push(version);
    h.push(0);
    h.extend_from_slice(&code.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(id().as_bytes());
    h.extend_from_slice(&reserved);
    h
}

fn good_header(code: u16, len: u32) -> Vec<u8> {
    raw_header(&MAGIC, VERSION, code, len, [0; 4])
}

/// Runs both decoders on `bytes` and checks they agree on the error; the streaming decoder must
/// leave the buffer untouched.
fn both_reject(bytes: &[u8]) -> WireError {
    let mut buf = BytesMut::from(bytes);
    let streamed = decode(&mut buf).unwrap_err();
    assert_eq!(&buf[..], bytes, "buffer changed on error");
    let exact = Frame::decode_exact(bytes).unwrap_err();
    assert_eq!(streamed, exact);
    assert!(streamed.is_fatal_to_stream());
    assert!(streamed.is_peer_fault());
    streamed
}

fn mailbox_put() -> proto::MailboxPut {
    proto::MailboxPut {
        mailbox_id: b(32, 1),
        message_id: b(16, 2),
        payload: b(1000, 3),
    }
}

// ---------------------------------------------------------------- round trips

#[test]
fn ping_round_trips_through_every_constructor() {
    let ping = proto::Ping { nonce: 7 };
    let a = Frame::new(id(), &ping).unwrap();
    let bytes = Frame::encode(&ping, id(), Flags::EMPTY).unwrap();
    assert_eq!(a.to_bytes(), bytes);
    assert_eq!(a.encoded_len(), bytes.len());
    let back = Frame::decode_exact(&bytes).unwrap();
    assert_eq!(back, a);
    assert_eq!(Frame::decode_exact_bytes(bytes.clone()).unwrap(), a);
    assert_eq!(back.decode_body::<proto::Ping>().unwrap(), ping);
    assert_eq!(back.header().body_len(), ping.encoded_len());
    assert_eq!(back.flags(), Flags::EMPTY);
}

#[test]
fn flags_and_id_are_carried_unchanged() {
    let f = Frame::with_flags(id(), Flags::from_bits(0xff), &proto::Pong { nonce: 1 }).unwrap();
    let back = Frame::decode_exact(&f.to_bytes()).unwrap();
    assert_eq!(back.flags().bits(), 0xff);
    assert_eq!(back.id(), id());
    assert_eq!(back.message_type(), MessageType::Pong);
}

#[test]
fn empty_body_is_a_valid_frame() {
    // A Ping with nonce 0 encodes to zero bytes: the frame is the header alone.
    let bytes = Frame::encode(&proto::Ping { nonce: 0 }, id(), Flags::EMPTY).unwrap();
    assert_eq!(bytes.len(), HEADER_LEN);
    let f = Frame::decode_exact(&bytes).unwrap();
    assert_eq!(f.decode_body::<proto::Ping>().unwrap().nonce, 0);
}

#[test]
fn onion_packet_is_raw_bytes_up_to_its_limit() {
    let packet = b(MAX_ONION_PACKET_LEN, 0xee);
    let f = Frame::onion_packet(id(), Flags::EMPTY, packet.clone()).unwrap();
    assert_eq!(f.message_type(), MessageType::OnionPacket);
    let bytes = f.to_bytes();
    assert_eq!(&bytes[HEADER_LEN..], &packet[..]);
    let back = Frame::decode_exact(&bytes).unwrap();
    assert_eq!(back.into_body(), packet);
}

#[test]
fn every_body_round_trips_with_its_type() {
    fn check<M: WireMessage + PartialEq + std::fmt::Debug>(m: M) {
        let bytes = Frame::encode(&m, id(), Flags::EMPTY).unwrap();
        let f = Frame::decode_exact(&bytes).unwrap();
        assert_eq!(f.message_type(), M::TYPE);
        assert_eq!(f.decode_body::<M>().unwrap(), m);
        assert!(bytes.len() - HEADER_LEN <= M::TYPE.max_body_len());
    }
    let item = proto::MailboxItem {
        seq: 9,
        message_id: b(16, 4),
        payload: b(MAX_MAILBOX_PAYLOAD_LEN, 5),
    };
    check(proto::Ping { nonce: u64::MAX });
    check(proto::Pong { nonce: u64::MAX });
    check(proto::Error {
        code: ErrorCode::RateLimited as i32,
        detail: "slow down".into(),
        in_reply_to: b(16, 1),
    });
    check(proto::Close {
        reason: proto::CloseReason::Shutdown as i32,
    });
    check(proto::MailboxChallenge {
        nonce: b(32, 1),
        relay_id: b(32, 2),
    });
    check(proto::MailboxAuth {
        mailbox_id: b(32, 1),
        mailbox_key: b(32, 2),
        nonce: b(32, 3),
        signature: b(64, 4),
    });
    check(proto::MailboxPut {
        payload: b(MAX_MAILBOX_PAYLOAD_LEN, 3),
        ..mailbox_put()
    });
    check(proto::MailboxPutAck {
        message_id: b(16, 1),
        status: proto::MailboxPutStatus::Stored as i32,
    });
    check(proto::MailboxFetch {
        mailbox_id: b(32, 1),
        after_seq: u64::MAX,
        max_items: 100,
    });
    check(proto::MailboxBatch {
        items: vec![item.clone(); 7],
        more: true,
    });
    check(proto::MailboxAck {
        mailbox_id: b(32, 1),
        up_to_seq: u64::MAX,
    });
    check(proto::MailboxPush {
        mailbox_id: b(32, 1),
        item: Some(item),
    });
    check(proto::DhtPing {
        request_id: 1,
        sender_id: b(32, 1),
    });
    check(proto::DhtFindNode {
        request_id: 1,
        sender_id: b(32, 1),
        target: b(32, 2),
    });
    check(proto::DhtFindValue {
        request_id: 1,
        sender_id: b(32, 1),
        key: b(32, 2),
    });
    check(proto::DhtPong::default());
    check(proto::DhtNodes::default());
    check(proto::DhtValue::default());
    check(proto::DhtStore::default());
    check(proto::DhtStoreAck::default());
    check(proto::PrekeyBundle {
        identity_key: b(32, 1),
        signed_prekey_id: 3,
        signed_prekey: b(32, 2),
        signed_prekey_signature: b(64, 3),
        one_time_prekey: Some(proto::OneTimePrekey {
            id: 4,
            key: b(32, 4),
        }),
    });
    check(proto::DeliveryReceipt {
        kind: proto::ReceiptKind::Read as i32,
        message_ids: vec![b(16, 1); MAX_RECEIPT_IDS],
    });
    check(proto::TransitReceipt {
        packet_hash: b(32, 1),
        relay_time: 1_700_000_040,
        relay_id: b(32, 2),
        signature: b(64, 3),
    });
    check(proto::TransitReceiptFetch {
        packet_hashes: vec![b(32, 1); MAX_RECEIPT_IDS],
    });
    check(proto::Presence {
        status: proto::PresenceStatus::Away as i32,
    });
    check(proto::Typing {
        conversation_id: b(32, 1),
        active: true,
    });
    check(proto::Typing {
        conversation_id: Bytes::new(),
        active: false,
    });
}

#[test]
fn decoded_bytes_fields_share_the_frame_buffer() {
    let bytes = Frame::encode(&mailbox_put(), id(), Flags::EMPTY).unwrap();
    let frame = Frame::decode_exact_bytes(bytes.clone()).unwrap();
    let put: proto::MailboxPut = frame.decode_body().unwrap();
    let range = bytes.as_ptr_range();
    assert!(range.contains(&put.payload.as_ptr()), "payload was copied");
}

// ---------------------------------------------------------------- streaming

#[test]
fn stream_yields_frames_in_order_and_waits_for_more() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let frames: Vec<Frame> = (0..5u64)
        .map(|n| Frame::new(MessageId::random(&mut rng), &proto::Ping { nonce: n }).unwrap())
        .collect();
    let mut wire = BytesMut::new();
    for f in &frames {
        f.encode_into(&mut wire);
    }
    // Byte by byte.
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for byte in wire.iter() {
        buf.extend_from_slice(&[*byte]);
        while let Some(f) = decode(&mut buf).unwrap() {
            out.push(f);
        }
    }
    assert_eq!(out, frames);
    assert!(buf.is_empty());
    assert_eq!(decode_eof(&mut buf), Ok(None));
    // All at once.
    let mut buf = wire.clone();
    let mut out = Vec::new();
    while let Some(f) = decode_eof(&mut buf).unwrap() {
        out.push(f);
    }
    assert_eq!(out, frames);
}

#[test]
fn stream_reserves_room_for_the_announced_body_only_after_checking_it() {
    let bytes = Frame::encode(&mailbox_put(), id(), Flags::EMPTY).unwrap();
    let mut buf = BytesMut::from(&bytes[..HEADER_LEN]);
    assert_eq!(decode(&mut buf), Ok(None));
    assert!(buf.capacity() >= bytes.len());
    assert_eq!(buf.len(), HEADER_LEN);
}

// ---------------------------------------------------------------- framing errors

#[test]
fn bad_magic() {
    let mut h = good_header(0x0002, 0);
    h[0] = b'X';
    assert_eq!(
        both_reject(&h),
        WireError::BadMagic {
            expected: *b"ZTAL",
            found: *b"XTAL"
        }
    );
    // Checked first: a header wrong everywhere reports the magic.
    let all_bad = raw_header(b"HTTP", 9, 0xffff, u32::MAX, [1; 4]);
    assert!(matches!(both_reject(&all_bad), WireError::BadMagic { .. }));
}

#[test]
fn unsupported_version() {
    for v in [0u8, 2, 255] {
        let h = raw_header(&MAGIC, v, 0xffff, u32::MAX, [1; 4]);
        assert_eq!(
            both_reject(&h),
            WireError::UnsupportedVersion {
                expected: 1,
                found: v
            }
        );
    }
    assert_eq!(
        WireError::UnsupportedVersion {
            expected: 1,
            found: 2
        }
        .error_code(),
        ErrorCode::UnsupportedVersion
    );
}

#[test]
fn reserved_not_zero() {
    for r in [[0, 0, 0, 1], [0x80, 0, 0, 0], [0xff; 4]] {
        // Reported before the unknown type and the oversized length.
        let h = raw_header(&MAGIC, VERSION, 0xffff, u32::MAX, r);
        assert_eq!(both_reject(&h), WireError::ReservedNotZero { found: r });
    }
}

#[test]
fn unknown_type() {
    for code in [0x0000u16, 0x0006, 0x0100, 0x0309, 0xffff] {
        let h = good_header(code, u32::MAX);
        assert_eq!(both_reject(&h), WireError::UnknownType { found: code });
    }
    assert_eq!(
        WireError::UnknownType { found: 0 }.error_code(),
        ErrorCode::UnknownType
    );
}

#[test]
fn body_too_long_for_every_type_without_allocating() {
    for &ty in MessageType::ALL {
        let max = ty.max_body_len();
        for len in [max as u32 + 1, u32::MAX] {
            let h = good_header(ty.code(), len);
            let mut buf = BytesMut::with_capacity(HEADER_LEN);
            buf.extend_from_slice(&h);
            let cap = buf.capacity();
            let err = decode(&mut buf).unwrap_err();
            assert_eq!(
                err,
                WireError::BodyTooLong {
                    ty,
                    max,
                    found: len as usize
                },
                "{ty}"
            );
            assert_eq!(
                buf.capacity(),
                cap,
                "{ty}: decoder allocated for a rejected body"
            );
            assert_eq!(Frame::decode_exact(&h).unwrap_err(), err);
            assert_eq!(err.error_code(), ErrorCode::TooLong);
        }
        // Exactly the limit is accepted (the body is then awaited).
        let h = good_header(ty.code(), max as u32);
        assert_eq!(decode(&mut BytesMut::from(&h[..])), Ok(None), "{ty}");
    }
}

#[test]
fn truncated_header_and_body() {
    let bytes = Frame::encode(&mailbox_put(), id(), Flags::EMPTY).unwrap();
    for cut in [0, 1, 4, 31] {
        assert_eq!(
            Frame::decode_exact(&bytes[..cut]),
            Err(WireError::Truncated {
                needed: HEADER_LEN,
                found: cut
            })
        );
        assert_eq!(decode(&mut BytesMut::from(&bytes[..cut])), Ok(None));
    }
    for cut in [32, 33, bytes.len() - 1] {
        let err = Frame::decode_exact(&bytes[..cut]).unwrap_err();
        assert_eq!(
            err,
            WireError::Truncated {
                needed: bytes.len(),
                found: cut
            }
        );
        assert!(err.is_fatal_to_stream());
        assert_eq!(
            Frame::decode_exact_bytes(bytes.slice(..cut)).unwrap_err(),
            err
        );
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert_eq!(decode(&mut buf), Ok(None));
        assert_eq!(decode_eof(&mut buf), Err(err));
    }
    // A stream that ends inside a header.
    let mut buf = BytesMut::from(&bytes[..5]);
    assert_eq!(
        decode_eof(&mut buf),
        Err(WireError::Truncated {
            needed: HEADER_LEN,
            found: 5
        })
    );
    // A stream that ends inside a bad header reports the header's error.
    let mut buf = BytesMut::from(&good_header(0xffff, 0)[..]);
    assert_eq!(
        decode_eof(&mut buf),
        Err(WireError::UnknownType { found: 0xffff })
    );
}

#[test]
fn trailing_bytes() {
    let mut bytes = Frame::encode(&proto::Ping { nonce: 1 }, id(), Flags::EMPTY)
        .unwrap()
        .to_vec();
    let len = bytes.len();
    bytes.push(0);
    assert_eq!(
        Frame::decode_exact(&bytes),
        Err(WireError::TrailingBytes { n: 1 })
    );
    bytes.extend_from_slice(&bytes.clone());
    assert_eq!(
        Frame::decode_exact_bytes(Bytes::from(bytes.clone())),
        Err(WireError::TrailingBytes { n: len + 2 })
    );
    assert!(WireError::TrailingBytes { n: 1 }.is_fatal_to_stream());
    // The streaming decoder treats the extra bytes as the start of the next frame.
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(decode(&mut buf).unwrap().is_some());
    assert_eq!(buf.len(), len + 2);
}

// ---------------------------------------------------------------- body errors

fn frame_of<M: WireMessage>(m: &M) -> Frame {
    Frame::new(id(), m).unwrap()
}

fn body_err<M: WireMessage + std::fmt::Debug>(m: &M) -> WireError {
    let err = frame_of(m).decode_body::<M>().unwrap_err();
    assert!(!err.is_fatal_to_stream());
    assert!(err.is_peer_fault());
    assert_eq!(err.error_code(), ErrorCode::ProtocolViolation);
    err
}

#[test]
fn type_mismatch() {
    let f = frame_of(&proto::Ping { nonce: 1 });
    assert_eq!(
        f.decode_body::<proto::Pong>(),
        Err(WireError::TypeMismatch {
            expected: MessageType::Pong,
            found: MessageType::Ping
        })
    );
    let onion = Frame::onion_packet(id(), Flags::EMPTY, b(100, 1)).unwrap();
    assert!(matches!(
        onion.decode_body::<proto::MailboxPut>(),
        Err(WireError::TypeMismatch {
            found: MessageType::OnionPacket,
            ..
        })
    ));
}

#[test]
fn malformed_protobuf() {
    for body in [
        &[0xffu8][..],
        &[0x08, 0x80],
        &[0x1a, 0x05, 1, 2],
        &[0x00],
        &[0x0f],
    ] {
        let f = Frame::from_raw(
            MessageType::MailboxPut,
            id(),
            Flags::EMPTY,
            Bytes::copy_from_slice(body),
        )
        .unwrap();
        let err = f.decode_body::<proto::MailboxPut>().unwrap_err();
        assert!(
            matches!(
                err,
                WireError::Protobuf {
                    ty: MessageType::MailboxPut,
                    ..
                }
            ),
            "{body:?}: {err}"
        );
        assert!(std::error::Error::source(&err).is_some());
        assert!(!err.is_fatal_to_stream());
    }
    // Deep nesting hits prost's recursion limit instead of the stack.
    let mut body = Vec::new();
    for _ in 0..200 {
        let inner = body;
        body = vec![0x12];
        prost::encoding::encode_varint(inner.len() as u64, &mut body);
        body.extend_from_slice(&inner);
    }
    let f = Frame::from_raw(
        MessageType::MailboxPush,
        id(),
        Flags::EMPTY,
        Bytes::from(body),
    )
    .unwrap();
    assert!(f.decode_body::<proto::MailboxPush>().is_err());
}

#[test]
fn field_length() {
    let e = body_err(&proto::MailboxPut {
        mailbox_id: b(31, 1),
        ..mailbox_put()
    });
    assert_eq!(
        e,
        WireError::FieldLength {
            ty: MessageType::MailboxPut,
            field: "mailbox_id",
            expected: 32,
            found: 31
        }
    );
    let e = body_err(&proto::MailboxPut {
        message_id: b(17, 1),
        ..mailbox_put()
    });
    assert!(matches!(
        e,
        WireError::FieldLength {
            field: "message_id",
            expected: 16,
            found: 17,
            ..
        }
    ));
    let e = body_err(&proto::Error {
        in_reply_to: b(3, 1),
        ..Default::default()
    });
    assert!(matches!(
        e,
        WireError::FieldLength {
            field: "in_reply_to",
            ..
        }
    ));
    let e = body_err(&proto::MailboxAuth {
        mailbox_id: b(32, 1),
        mailbox_key: b(32, 2),
        nonce: b(32, 3),
        signature: b(63, 4),
    });
    assert!(matches!(
        e,
        WireError::FieldLength {
            field: "signature",
            expected: 64,
            found: 63,
            ..
        }
    ));
    let e = body_err(&proto::MailboxChallenge {
        nonce: b(32, 1),
        relay_id: Bytes::new(),
    });
    assert!(matches!(
        e,
        WireError::FieldLength {
            field: "relay_id",
            found: 0,
            ..
        }
    ));
    let e = body_err(&proto::PrekeyBundle {
        identity_key: b(32, 1),
        signed_prekey_id: 1,
        signed_prekey: b(32, 2),
        signed_prekey_signature: b(64, 3),
        one_time_prekey: Some(proto::OneTimePrekey {
            id: 1,
            key: b(33, 1),
        }),
    });
    assert!(matches!(
        e,
        WireError::FieldLength {
            field: "one_time_prekey.key",
            ..
        }
    ));
    let e = body_err(&proto::TransitReceipt {
        packet_hash: b(32, 1),
        relay_time: 0,
        relay_id: b(32, 1),
        signature: b(1, 1),
    });
    assert!(matches!(
        e,
        WireError::FieldLength {
            field: "signature",
            ..
        }
    ));
    let e = body_err(&proto::DeliveryReceipt {
        kind: 1,
        message_ids: vec![b(16, 1), b(15, 1)],
    });
    assert!(matches!(
        e,
        WireError::FieldLength {
            field: "message_ids",
            ..
        }
    ));
    let e = body_err(&proto::Typing {
        conversation_id: b(16, 1),
        active: true,
    });
    assert!(matches!(
        e,
        WireError::FieldLength {
            field: "conversation_id",
            ..
        }
    ));
    let e = body_err(&proto::MailboxBatch {
        items: vec![proto::MailboxItem {
            seq: 1,
            message_id: b(2, 1),
            payload: Bytes::new(),
        }],
        more: false,
    });
    assert!(matches!(
        e,
        WireError::FieldLength {
            field: "item.message_id",
            ..
        }
    ));
    for e in [
        body_err(&proto::MailboxPutAck {
            message_id: Bytes::new(),
            status: 1,
        }),
        body_err(&proto::MailboxFetch::default()),
        body_err(&proto::MailboxAck::default()),
    ] {
        assert!(matches!(e, WireError::FieldLength { .. }));
    }
}

#[test]
fn field_too_long() {
    // The frame limit leaves room for a payload one byte over the field limit.
    let put = proto::MailboxPut {
        payload: b(MAX_MAILBOX_PAYLOAD_LEN + 1, 1),
        ..mailbox_put()
    };
    assert_eq!(
        body_err(&put),
        WireError::FieldTooLong {
            ty: MessageType::MailboxPut,
            field: "payload",
            max: MAX_MAILBOX_PAYLOAD_LEN,
            found: MAX_MAILBOX_PAYLOAD_LEN + 1
        }
    );
    let item = proto::MailboxItem {
        seq: 1,
        message_id: b(16, 1),
        payload: b(MAX_MAILBOX_PAYLOAD_LEN + 1, 1),
    };
    let e = body_err(&proto::MailboxPush {
        mailbox_id: b(32, 1),
        item: Some(item),
    });
    assert!(matches!(
        e,
        WireError::FieldTooLong {
            field: "item.payload",
            ..
        }
    ));
}

#[test]
fn too_many_items() {
    let e = body_err(&proto::DeliveryReceipt {
        kind: 1,
        message_ids: vec![b(16, 1); MAX_RECEIPT_IDS + 1],
    });
    assert_eq!(
        e,
        WireError::TooManyItems {
            ty: MessageType::DeliveryReceipt,
            field: "message_ids",
            max: MAX_RECEIPT_IDS,
            found: MAX_RECEIPT_IDS + 1
        }
    );
    let e = body_err(&proto::TransitReceiptFetch {
        packet_hashes: vec![b(32, 1); MAX_RECEIPT_IDS + 1],
    });
    assert!(matches!(
        e,
        WireError::TooManyItems {
            field: "packet_hashes",
            ..
        }
    ));
}

#[test]
fn missing_field() {
    let e = body_err(&proto::MailboxPush {
        mailbox_id: b(32, 1),
        item: None,
    });
    assert_eq!(
        e,
        WireError::MissingField {
            ty: MessageType::MailboxPush,
            field: "item"
        }
    );
}

#[test]
fn field_out_of_range() {
    // Only the reserved LinkHandshake body has a ranged field; its check stays in place (a
    // received frame never reaches it: decoding refuses the reserved type first).
    for step in [0u32, 4, u32::MAX] {
        let m = proto::LinkHandshake {
            step,
            noise: b(48, 1),
        };
        assert_eq!(
            m.validate(),
            Err(WireError::FieldOutOfRange {
                ty: MessageType::LinkHandshake,
                field: "step",
                found: step.into()
            })
        );
    }
    assert_eq!(
        proto::LinkHandshake {
            step: 2,
            noise: b(48, 1)
        }
        .validate(),
        Ok(())
    );
}

/// A valid LinkHandshake frame as a peer could send it, built byte by byte (this side refuses
/// to encode the reserved type itself).
fn received_link_handshake(m: &proto::LinkHandshake) -> Vec<u8> {
    let mut bytes = good_header(MessageType::LinkHandshake.code(), m.encoded_len() as u32);
    bytes.extend_from_slice(&m.encode_to_vec());
    bytes
}

#[test]
fn reserved_type_is_refused_when_received_and_keeps_the_link() {
    let m = proto::LinkHandshake {
        step: 1,
        noise: b(96, 1),
    };
    let bytes = received_link_handshake(&m);
    // The header is valid, so both decoders deliver the frame: the stream stays in sync.
    let f = Frame::decode_exact(&bytes).unwrap();
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(decode(&mut buf).unwrap().as_ref(), Some(&f));
    assert!(buf.is_empty());
    assert_eq!(f.message_type(), MessageType::LinkHandshake);
    // Its body is refused before parsing, typed and by every path.
    let expected = WireError::ReservedType {
        ty: MessageType::LinkHandshake,
    };
    assert_eq!(
        f.decode_body::<proto::LinkHandshake>(),
        Err(expected.clone())
    );
    assert_eq!(Body::decode(&f), Err(expected.clone()));
    // An unparsable body gets the same answer: it is never parsed.
    let mut garbage = good_header(MessageType::LinkHandshake.code(), 3);
    garbage.extend_from_slice(&[0xff, 0xff, 0xff]);
    let g = Frame::decode_exact(&garbage).unwrap();
    assert_eq!(
        g.decode_body::<proto::LinkHandshake>(),
        Err(expected.clone())
    );
    assert!(!expected.is_fatal_to_stream());
    assert!(expected.is_peer_fault());
    assert_eq!(expected.error_code(), ErrorCode::NotSupported);
    assert_eq!(
        expected.to_string(),
        "LinkHandshake (0x0001) is a reserved message type: not supported"
    );
    // Asking for another type still reports the mismatch first.
    assert!(matches!(
        f.decode_body::<proto::Ping>(),
        Err(WireError::TypeMismatch { .. })
    ));
}

#[test]
fn reserved_type_is_never_encoded() {
    let m = proto::LinkHandshake {
        step: 1,
        noise: b(96, 1),
    };
    let expected = WireError::EncodeReserved {
        ty: MessageType::LinkHandshake,
    };
    assert_eq!(Frame::new(id(), &m), Err(expected.clone()));
    assert_eq!(
        Frame::with_flags(id(), Flags::EMPTY, &m),
        Err(expected.clone())
    );
    assert_eq!(Frame::encode(&m, id(), Flags::EMPTY), Err(expected.clone()));
    assert_eq!(
        Frame::from_raw(
            MessageType::LinkHandshake,
            id(),
            Flags::EMPTY,
            Bytes::from(m.encode_to_vec())
        ),
        Err(expected.clone())
    );
    assert_eq!(
        Body::LinkHandshake(m).to_frame(id(), Flags::EMPTY),
        Err(expected.clone())
    );
    assert!(!expected.is_peer_fault());
    assert!(!expected.is_fatal_to_stream());
    assert_eq!(expected.error_code(), ErrorCode::Internal);
    // Every other type encodes.
    for &ty in MessageType::ALL {
        if !ty.is_reserved() {
            Frame::from_raw(ty, id(), Flags::EMPTY, Bytes::new()).unwrap();
        }
    }
}

#[test]
fn not_supported_is_appended_without_renumbering() {
    // The .proto enum is append-only: every earlier value keeps its number.
    let expected = [
        (ErrorCode::Unspecified, 0),
        (ErrorCode::ProtocolViolation, 1),
        (ErrorCode::UnsupportedVersion, 2),
        (ErrorCode::UnknownType, 3),
        (ErrorCode::TooLong, 4),
        (ErrorCode::RateLimited, 5),
        (ErrorCode::Unauthorized, 6),
        (ErrorCode::NotFound, 7),
        (ErrorCode::Internal, 8),
        (ErrorCode::NotSupported, 9),
    ];
    for (code, value) in expected {
        assert_eq!(code as i32, value, "{code:?}");
        assert_eq!(ErrorCode::try_from(value), Ok(code));
    }
    assert_eq!(
        ErrorCode::NotSupported.as_str_name(),
        "ERROR_CODE_NOT_SUPPORTED"
    );
    // An Error frame carrying it round-trips.
    let e = proto::Error {
        code: ErrorCode::NotSupported as i32,
        detail: String::new(),
        in_reply_to: b(16, 7),
    };
    let f = Frame::new(id(), &e).unwrap();
    let back = Frame::decode_exact(&f.to_bytes()).unwrap();
    assert_eq!(
        back.decode_body::<proto::Error>().unwrap().code(),
        ErrorCode::NotSupported
    );
}

// ---------------------------------------------------------------- caller misuse

#[test]
fn encode_too_long() {
    let put = proto::MailboxPut {
        payload: b(MAX_MAILBOX_PAYLOAD_LEN + MAILBOX_ENVELOPE_LEN, 1),
        ..mailbox_put()
    };
    let len = put.encoded_len();
    let expected = WireError::EncodeTooLong {
        ty: MessageType::MailboxPut,
        max: MessageType::MailboxPut.max_body_len(),
        found: len,
    };
    assert_eq!(Frame::new(id(), &put), Err(expected.clone()));
    assert_eq!(
        Frame::encode(&put, id(), Flags::EMPTY),
        Err(expected.clone())
    );
    assert!(!expected.is_peer_fault());
    assert!(!expected.is_fatal_to_stream());
    assert_eq!(expected.error_code(), ErrorCode::Internal);
    assert_eq!(
        Frame::onion_packet(id(), Flags::EMPTY, b(MAX_ONION_PACKET_LEN + 1, 0)),
        Err(WireError::EncodeTooLong {
            ty: MessageType::OnionPacket,
            max: MAX_ONION_PACKET_LEN,
            found: MAX_ONION_PACKET_LEN + 1
        })
    );
    assert!(matches!(
        Frame::from_raw(MessageType::Ping, id(), Flags::EMPTY, b(65, 0)),
        Err(WireError::EncodeTooLong {
            max: 64,
            found: 65,
            ..
        })
    ));
}

#[test]
fn errors_display_expected_and_found() {
    let e = WireError::BodyTooLong {
        ty: MessageType::Ping,
        max: 64,
        found: 65,
    };
    assert_eq!(
        e.to_string(),
        "Ping (0x0002) body of 65 bytes exceeds its limit of 64"
    );
    let e = WireError::UnsupportedVersion {
        expected: 1,
        found: 2,
    };
    assert!(e.to_string().contains('2') && e.to_string().contains('1'));
}

// ---------------------------------------------------------------- never panics

#[test]
fn random_bytes_never_panic() {
    let seed = 0x5a5a_2026u64;
    println!("seed {seed:#x}");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    for _ in 0..2000 {
        let len = (rng.next_u32() % 200) as usize;
        let mut data = vec![0u8; len];
        rng.fill_bytes(&mut data);
        // Half the time, start with a valid magic and version so deeper checks run.
        if rng.next_u32() % 2 == 0 && len >= 5 {
            data[..4].copy_from_slice(&MAGIC);
            data[4] = VERSION;
            if len >= 32 {
                data[28..32].fill(0);
            }
        }
        let _ = Frame::decode_exact(&data);
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(f)) = decode(&mut buf) {
            let _ = f.decode_body::<proto::MailboxBatch>();
        }
        let _ = decode_eof(&mut buf);
    }
}
