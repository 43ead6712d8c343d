//! Arbitrary bytes into the zentalk-client decoders of bytes that come from the network:
//! `payload::open_outer` (the onion's delivered message), `Inner::from_bytes` (the ratchet
//! plaintext: sequence number, id, kind, body, including the `MailboxAddr` of a handover) and
//! `ContactCard::from_bytes` (a card fetched from the DHT). Nothing may panic; what decodes
//! must re-encode to exactly the input; and a genuine card with the input written over part of
//! it decodes only if the input changed nothing.
//!
//! The harness is the corpus replay test's own code: this target includes
//! crates/zentalk-client/tests/fuzz_corpus.rs as a module, so the two cannot drift apart.
//!
//! Run: `cargo +nightly fuzz run client_payload`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/zentalk-client/tests/fuzz_corpus.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::harness(data));
