//! Frames (and non-frames) arriving on an established relay link, after the Noise handshake,
//! into the relay's own frame handling (`RelayHandle::serve_stream` over `tokio::io::duplex`).
//! Nothing may panic or hang, and the link must close with a typed reason (an Error frame
//! naming it where the relay reports one).
//!
//! The harness is the corpus replay test's own code: this target includes
//! crates/zentalk-relay/tests/fuzz_corpus.rs as a module, so the two cannot drift apart.
//!
//! Run: `cargo +nightly fuzz run relay_link crates/zentalk-relay/tests/fuzz_corpus/relay_link`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/zentalk-relay/tests/fuzz_corpus.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::harness(data));
