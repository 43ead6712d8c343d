//! Arbitrary bytes into zentalk-wire's decoders: the one-shot `Frame::decode_exact`, the
//! streaming `decode` over the whole buffer, and the streaming decoder fed the same bytes in
//! chunks whose sizes the first input byte chooses. None may panic, and the chunked stream must
//! give exactly the frames and the outcome of the whole one.
//!
//! The harness is shared with the corpus replay test: both include
//! crates/zentalk-wire/tests/fuzz_harness/wire_frame.rs.
//!
//! Run: `cargo +nightly fuzz run wire_frame`. Found inputs are kept in
//! crates/zentalk-wire/tests/fuzz_corpus/wire_frame/ and replayed by its tests.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/zentalk-wire/tests/fuzz_harness/wire_frame.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::harness(data);
});
