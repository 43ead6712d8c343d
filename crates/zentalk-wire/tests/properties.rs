//! Property tests: any frame round-trips through every decoder however the stream is split,
//! and no input makes a decoder panic. proptest prints the failing case and persists its seed.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use zentalk_wire::*;

fn any_frame() -> impl Strategy<Value = Frame> {
    (
        // Reserved types are never encoded (`WireError::EncodeReserved`).
        proptest::sample::select(
            MessageType::ALL
                .iter()
                .copied()
                .filter(|ty| !ty.is_reserved())
                .collect::<Vec<_>>(),
        ),
        any::<u8>(),
        any::<[u8; 16]>(),
        proptest::collection::vec(any::<u8>(), 0..3000),
    )
        .prop_map(|(ty, flags, id, mut body)| {
            body.truncate(ty.max_body_len());
            Frame::from_raw(
                ty,
                MessageId::from_bytes(id),
                Flags::from_bits(flags),
                Bytes::from(body),
            )
            .unwrap()
        })
}

/// Decodes `wire` fed in chunks of the given sizes (cycled), returning the frames.
fn decode_chunked(wire: &[u8], sizes: &[usize]) -> Result<Vec<Frame>, WireError> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = wire;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        i += 1;
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some(f) = decode(&mut buf)? {
            out.push(f);
        }
    }
    assert_eq!(decode_eof(&mut buf)?, None);
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn frame_round_trips(frame in any_frame()) {
        let bytes = frame.to_bytes();
        prop_assert_eq!(bytes.len(), frame.encoded_len());
        prop_assert_eq!(&Frame::decode_exact(&bytes).unwrap(), &frame);
        prop_assert_eq!(&Frame::decode_exact_bytes(bytes.clone()).unwrap(), &frame);
        let header = Header::decode(&bytes).unwrap();
        let encoded = header.encode();
        prop_assert_eq!(&encoded[..], &bytes[..HEADER_LEN]);
    }

    #[test]
    fn stream_split_anywhere_gives_the_same_frames(
        frames in proptest::collection::vec(any_frame(), 1..6),
        sizes in proptest::collection::vec(1usize..700, 1..8),
    ) {
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode_into(&mut wire);
        }
        prop_assert_eq!(decode_chunked(&wire, &sizes).unwrap(), frames);
    }

    #[test]
    fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), magic in any::<bool>()) {
        let mut data = data;
        if magic && data.len() >= 5 {
            data[..4].copy_from_slice(&MAGIC);
            data[4] = VERSION;
        }
        let exact = Frame::decode_exact(&data);
        let mut buf = BytesMut::from(&data[..]);
        match decode(&mut buf) {
            Ok(Some(f)) => { let _ = Body::decode(&f); }
            Ok(None) => prop_assert!(data.len() < HEADER_LEN || exact.is_err()),
            Err(e) => prop_assert_eq!(Err(e), exact),
        }
    }

    #[test]
    fn ping_body_round_trips(nonce in any::<u64>(), id in any::<[u8; 16]>()) {
        let ping = proto::Ping { nonce };
        let bytes = Frame::encode(&ping, MessageId::from_bytes(id), Flags::EMPTY).unwrap();
        let frame = Frame::decode_exact(&bytes).unwrap();
        prop_assert_eq!(frame.decode_body::<proto::Ping>().unwrap(), ping);
    }
}
