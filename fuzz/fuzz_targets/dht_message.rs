//! Arbitrary bytes into zentalk-dht: datagram decoding (wire frame, protobuf body, field
//! checks, response authentication) and a node handling the datagram (answering, storing,
//! signing). Nothing may panic, and a decoded request must re-encode to the same message.
//!
//! Run: `cargo +nightly fuzz run dht_message`. Found inputs are kept in
//! crates/zentalk-dht/tests/fuzz_corpus/dht_message/ and replayed by its tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert!(zentalk_dht::fuzz_message(data));
});
