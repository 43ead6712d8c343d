//! Arbitrary bytes into per-hop processing: never a panic, always a typed error unless the
//! input is an untouched valid packet for the fixed relay key (the seed corpus in
//! crates/zentalk-onion/tests/fuzz_corpus/onion_process holds the known-answer packets).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zentalk_crypto::X25519Secret;
use zentalk_onion::{OnionRelay, PACKET_LEN, Processed};

/// The relay-0 key and epoch of tests/vectors/x25519_v1.txt.
const EPOCH: u32 = 0x0102_0304;

fn relay_secret() -> [u8; 32] {
    let mut s = [0u8; 32];
    for (j, b) in s.iter_mut().enumerate() {
        *b = (j as u8).wrapping_mul(7);
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let mut relay = OnionRelay::new(4);
    if relay
        .insert_epoch_key(EPOCH, X25519Secret::from_bytes(&relay_secret()))
        .is_err()
    {
        return;
    }
    match relay.process(data, EPOCH) {
        Ok(Processed::Forward { packet, .. }) => {
            assert_eq!(packet.len(), PACKET_LEN);
            // The same bytes again are a replay.
            assert!(relay.process(data, EPOCH).is_err());
        }
        Ok(_) => {}
        Err(e) => {
            let _ = e.to_string();
        }
    }
    // The same bytes at other epochs: typed errors, no panic.
    for current in [0, EPOCH + 1, EPOCH + 5, u32::MAX] {
        let _ = relay.process(data, current);
    }
});
