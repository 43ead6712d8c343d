//! Replays the `crypto_envelope` fuzz corpus (`tests/fuzz_corpus/crypto_envelope/`) through
//! the same checks as `fuzz/fuzz_targets/crypto_envelope.rs`, so every input the fuzzer kept
//! is a regression test in an ordinary `cargo test`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use zentalk_crypto::{Envelope, IdentityKeyPair, padding};

#[test]
fn replay_crypto_envelope_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus/crypto_envelope");
    let alice = IdentityKeyPair::from_seed(&[1; 32]);
    let bob = IdentityKeyPair::from_seed(&[2; 32]);
    let (mut files, mut parsed, mut opened) = (0, 0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        files += 1;
        if let Ok(message) = padding::unpad(&data) {
            assert!(message.len() < data.len());
        }
        if let Ok(envelope) = Envelope::from_bytes(&data) {
            parsed += 1;
            assert_eq!(envelope.to_bytes(), data, "{}", path.display());
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let res = envelope.open(&bob, &alice.public_key());
            if name.starts_with("valid-") {
                res.unwrap();
                opened += 1;
            }
        }
    }
    // The hand-made seeds are there: three valid envelopes among them.
    assert!(files >= 7, "{files} corpus files");
    assert!(parsed >= 3);
    assert_eq!(opened, 3);
}
