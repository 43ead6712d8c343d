//! Arbitrary bytes into every zentalk-storage decoder of bytes read back from a store file:
//! sealed columns, the wrapped data key, stored Argon2 parameters, decrypted message bodies,
//! decrypted media shard lists, status and kind codes. Nothing may panic; arbitrary bytes never
//! open as a sealed value; what decodes re-encodes to exactly the input.
//!
//! The checks live in `zentalk_storage::client::fuzzing::stored_records`, which the crate's
//! corpus replay test (crates/zentalk-storage/tests/fuzz_corpus/storage_records/) also runs.
//!
//! Run: `cargo +nightly fuzz run storage_records`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| zentalk_storage::client::fuzzing::stored_records(data));
