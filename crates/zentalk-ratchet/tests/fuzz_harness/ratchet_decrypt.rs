//! The one harness of the `ratchet_decrypt` fuzz target, shared by the target
//! (fuzz/fuzz_targets/ratchet_decrypt.rs) and the corpus replay test
//! (crates/zentalk-ratchet/tests/fuzz_corpus.rs), both of which include this file with
//! `#[path = ...] mod harness;`, so the two cannot drift apart.
//!
//! Arbitrary bytes go into zentalk-ratchet's message parsers and into `Session::decrypt` of two
//! live sessions (the committed v1 fixtures of a plain and a header-encrypted session, so no
//! RNG is needed). Nothing forged may decrypt, nothing may panic, and afterwards each session
//! must still decrypt the genuine messages it was waiting for (a skipped one and the next one).

use zentalk_ratchet::group::{GroupMessage, SenderKeyDistribution};
use zentalk_ratchet::{Message, PrekeyBundle, PrekeyMessage, RatchetMessage, Session};

pub(crate) const SESSION: &[u8] = include_bytes!("../fixtures/session.v1.pickle");
pub(crate) const MESSAGES: &[u8] = include_bytes!("../fixtures/messages.v1.bin");
pub(crate) const SESSION_HE: &[u8] = include_bytes!("../fixtures/session_he.v1.pickle");
pub(crate) const MESSAGES_HE: &[u8] = include_bytes!("../fixtures/messages_he.v1.bin");
pub(crate) const KEY: [u8; 32] = *b"zentalk-ratchet pickle fixture!!";

/// A fixture's messages (each u32 BE length-prefixed): initial, skipped, next.
pub(crate) fn split(all: &'static [u8]) -> Vec<&'static [u8]> {
    let mut out = Vec::new();
    let mut rest = all;
    while rest.len() >= 4 {
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
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

/// The whole check for one input.
pub(crate) fn harness(data: &[u8]) {
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
