//! Replays the `ratchet_decrypt` fuzz corpus (tests/fuzz_corpus/ratchet_decrypt) with the
//! harness of fuzz/fuzz_targets/ratchet_decrypt.rs, the very same file
//! (tests/fuzz_harness/ratchet_decrypt.rs): parsers never panic, nothing forged decrypts, and
//! the live session still decrypts the genuine messages afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "fuzz_harness/ratchet_decrypt.rs"]
mod harness;

use harness::{MESSAGES, MESSAGES_HE, harness, split};

#[test]
fn corpus_replays() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus/ratchet_decrypt");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        harness(&data);
        n += 1;
    }
    assert!(n >= 3, "corpus missing");
}

#[test]
fn genuine_messages_and_their_mutations() {
    for m in split(MESSAGES).into_iter().chain(split(MESSAGES_HE)) {
        harness(m);
        for len in 0..m.len() {
            harness(&m[..len]);
        }
        let mut bad = m.to_vec();
        for pos in 0..bad.len() {
            bad[pos] ^= 0x80;
            harness(&bad);
            bad[pos] ^= 0x80;
        }
    }
}
