//! Arbitrary bytes into zentalk-ratchet's message parsers and into `Session::decrypt` of a
//! live session (two, in fact: the committed v1 fixtures of a plain and a header-encrypted
//! session, so no RNG is needed). Nothing forged may decrypt, nothing may panic, and afterwards
//! the session must still decrypt the genuine messages it was waiting for (a skipped one and
//! the next one).
//!
//! The harness is shared with the corpus replay test (crates/zentalk-ratchet/tests/
//! fuzz_corpus.rs): both include crates/zentalk-ratchet/tests/fuzz_harness/ratchet_decrypt.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/zentalk-ratchet/tests/fuzz_harness/ratchet_decrypt.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::harness(data));
