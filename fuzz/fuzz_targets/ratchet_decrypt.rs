//! Arbitrary bytes into zentalk-ratchet's message parsers and into `Session::decrypt` of a
//! live session (restored from the committed v1 fixture, so no RNG is needed). Nothing forged
//! may decrypt, nothing may panic, and afterwards the session must still decrypt the genuine
//! messages it was waiting for (a skipped one and the next one).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zentalk_ratchet::group::{GroupMessage, SenderKeyDistribution};
use zentalk_ratchet::{Message, PrekeyBundle, PrekeyMessage, RatchetMessage, Session};

const SESSION: &[u8] =
    include_bytes!("../../crates/zentalk-ratchet/tests/fixtures/session.v1.pickle");
const MESSAGES: &[u8] =
    include_bytes!("../../crates/zentalk-ratchet/tests/fixtures/messages.v1.bin");
const KEY: [u8; 32] = *b"zentalk-ratchet pickle fixture!!";

/// The fixture's messages: initial, skipped, next (each u32 BE length-prefixed).
fn messages() -> Vec<&'static [u8]> {
    let mut out = Vec::new();
    let mut rest = MESSAGES;
    while rest.len() >= 4 {
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        out.push(&rest[4..4 + n]);
        rest = &rest[4 + n..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let _ = PrekeyBundle::from_bytes(data);
    let _ = PrekeyMessage::from_bytes(data);
    let _ = RatchetMessage::from_bytes(data);
    let _ = GroupMessage::from_bytes(data);
    let _ = SenderKeyDistribution::from_bytes(data);

    let mut session = Session::from_pickle(SESSION, &KEY).expect("fixture loads");
    let genuine: [(&[u8], &[u8]); 2] = [
        (messages()[1], b"skipped"),
        (messages()[2], b"the next message"),
    ];
    let mut consumed = None;
    if let Ok(message) = Message::from_bytes(data) {
        if let Ok(plaintext) = session.decrypt(&message) {
            // Only a genuine message can decrypt.
            let i = genuine
                .iter()
                .position(|(_, p)| *p == plaintext.as_slice())
                .expect("a forged message decrypted");
            consumed = Some(i);
        }
    }
    for (i, (bytes, plaintext)) in genuine.iter().enumerate() {
        if consumed == Some(i) {
            continue;
        }
        let m = Message::from_bytes(bytes).expect("genuine message parses");
        assert_eq!(session.decrypt(&m).expect("session still works"), *plaintext);
    }
});
