//! Arbitrary bytes into the envelope parser and the padding remover: neither may panic, a
//! parsed envelope re-encodes to exactly its input, and opening one (with fixed keys that
//! match the seed corpus in crates/zentalk-crypto/tests/fuzz_corpus/crypto_envelope) fails
//! cleanly unless it is an untouched valid envelope.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use zentalk_crypto::{Envelope, IdentityKeyPair, padding};

fn keys() -> &'static (IdentityKeyPair, IdentityKeyPair) {
    static KEYS: OnceLock<(IdentityKeyPair, IdentityKeyPair)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            IdentityKeyPair::from_seed(&[1; 32]),
            IdentityKeyPair::from_seed(&[2; 32]),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = padding::unpad(data) {
        assert!(message.len() < data.len());
    }
    if let Ok(envelope) = Envelope::from_bytes(data) {
        assert_eq!(envelope.to_bytes(), data);
        let (alice, bob) = keys();
        let _ = envelope.open(bob, &alice.public_key());
    }
});
