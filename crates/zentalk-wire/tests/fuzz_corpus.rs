//! Replays the inputs `cargo +nightly fuzz run wire_frame` kept, with the same checks as the
//! fuzz target: no panic, and the stream decoder gives the same frames whole and byte by byte.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use bytes::BytesMut;
use zentalk_wire::{Body, Frame, MessageType, WireError, decode, decode_eof};

fn feed<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Frame>, Result<(), WireError>) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => return (frames, Err(e)),
            }
        }
    }
    let end = decode_eof(&mut buf).map(|rest| assert!(rest.is_none()));
    (frames, end)
}

#[test]
fn wire_frame_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus/wire_frame");
    let mut n = 0;
    let mut types = std::collections::BTreeSet::new();
    let mut errors = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        let stream = data.get(1..).unwrap_or_default();
        let exact = Frame::decode_exact(stream);
        let whole = feed([stream]);
        for frame in &whole.0 {
            let _ = Body::decode(frame);
        }
        if let Ok(frame) = &exact {
            assert_eq!(whole.0.as_slice(), std::slice::from_ref(frame));
        }
        assert_eq!(feed(stream.chunks(1)), whole);
        types.extend(whole.0.iter().map(Frame::message_type));
        if let Err(e) = &whole.1 {
            errors.insert(
                format!("{e:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap()
                    .to_owned(),
            );
        }
        n += 1;
    }
    assert!(n >= 30, "corpus has only {n} inputs");
    // The kept corpus was chosen to reach every type and every framing error; keep it so.
    assert_eq!(
        types.len(),
        MessageType::ALL.len(),
        "types reached: {types:?}"
    );
    let expected = [
        "BadMagic",
        "BodyTooLong",
        "ReservedNotZero",
        "Truncated",
        "UnknownType",
        "UnsupportedVersion",
    ];
    assert_eq!(errors.into_iter().collect::<Vec<_>>(), expected);
}
