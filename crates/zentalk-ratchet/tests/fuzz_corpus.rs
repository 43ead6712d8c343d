//! Replays the `ratchet_decrypt` fuzz corpus (tests/fuzz_corpus/ratchet_decrypt) with the same
//! harness as fuzz/fuzz_targets/ratchet_decrypt.rs: parsers never panic, nothing forged
//! decrypts, and the live session still decrypts the genuine messages afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use zentalk_ratchet::group::{GroupMessage, SenderKeyDistribution};
use zentalk_ratchet::{Message, PrekeyBundle, PrekeyMessage, RatchetMessage, Session};

const SESSION: &[u8] = include_bytes!("fixtures/session.v1.pickle");
const MESSAGES: &[u8] = include_bytes!("fixtures/messages.v1.bin");
const SESSION_HE: &[u8] = include_bytes!("fixtures/session_he.v1.pickle");
const MESSAGES_HE: &[u8] = include_bytes!("fixtures/messages_he.v1.bin");
const KEY: [u8; 32] = *b"zentalk-ratchet pickle fixture!!";

fn split(all: &'static [u8]) -> Vec<&'static [u8]> {
    let mut out = Vec::new();
    let mut rest = all;
    while rest.len() >= 4 {
        let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        out.push(&rest[4..4 + n]);
        rest = &rest[4 + n..];
    }
    out
}

/// Feeds `data` to a live session restored from `pickle`; then the genuine messages it waits
/// for must still decrypt (except one the input itself was, if it was genuine).
fn harness_on(pickle: &[u8], genuine: [(&[u8], &[u8]); 2], data: &[u8]) {
    let mut session = Session::from_pickle(pickle, &KEY).expect("fixture loads");
    let mut consumed = None;
    if let Ok(message) = Message::from_bytes(data)
        && let Ok(plaintext) = session.decrypt(&message)
    {
        // Only a genuine message can decrypt.
        consumed = Some(
            genuine
                .iter()
                .position(|(_, p)| *p == plaintext.as_slice())
                .expect("a forged message decrypted"),
        );
    }
    for (i, (bytes, plaintext)) in genuine.iter().enumerate() {
        if consumed != Some(i) {
            let m = Message::from_bytes(bytes).expect("genuine message parses");
            assert_eq!(
                session.decrypt(&m).expect("session still works"),
                *plaintext
            );
        }
    }
}

fn harness(data: &[u8]) {
    let _ = PrekeyBundle::from_bytes(data);
    let _ = PrekeyMessage::from_bytes(data);
    let _ = RatchetMessage::from_bytes(data);
    let _ = GroupMessage::from_bytes(data);
    let _ = SenderKeyDistribution::from_bytes(data);
    let plain = split(MESSAGES);
    harness_on(
        SESSION,
        [(plain[1], b"skipped"), (plain[2], b"the next message")],
        data,
    );
    let he = split(MESSAGES_HE);
    harness_on(
        SESSION_HE,
        [(he[0], b"skipped"), (he[1], b"the next message")],
        data,
    );
}

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
