//! Replays the inputs `cargo +nightly fuzz run wire_frame` kept, with the fuzz target's own
//! harness (tests/fuzz_harness/wire_frame.rs: no panic, the stream decoder gives the same
//! frames whole and in random chunks) and byte by byte as well.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use zentalk_wire::{Frame, MessageType};

#[path = "fuzz_harness/wire_frame.rs"]
mod harness;

use harness::{feed, harness};

#[test]
fn wire_frame_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus/wire_frame");
    let mut n = 0;
    let mut types = std::collections::BTreeSet::new();
    let mut errors = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        // The fuzz target's checks (random chunk splits), then byte by byte as well.
        let (stream, whole) = harness(&data);
        assert_eq!(feed(&mut stream.chunks(1)), whole);
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
