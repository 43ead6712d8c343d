//! Replays the fuzz corpora (`tests/fuzz_corpus/<target>/`) through the same checks as the
//! cargo-fuzz targets `onion_process` and `onion_surb`, so every input the fuzzer found
//! interesting stays a regression test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use zentalk_crypto::X25519Secret;
use zentalk_onion::{
    OnionError, OnionRelay, PACKET_LEN, PAYLOAD_LEN, Processed, ReplyKeyStore, ReplyPayload, Surb,
    SurbId,
};

const EPOCH: u32 = 0x0102_0304;

fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {dir:?}");
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

fn relay_secret() -> [u8; 32] {
    let mut s = [0u8; 32];
    for (j, b) in s.iter_mut().enumerate() {
        *b = (j as u8).wrapping_mul(7);
    }
    s
}

#[test]
fn onion_process_corpus() {
    let mut accepted = Vec::new();
    for (name, data) in corpus("onion_process") {
        let mut relay = OnionRelay::new(4);
        relay
            .insert_epoch_key(EPOCH, X25519Secret::from_bytes(&relay_secret()))
            .unwrap();
        match relay.process(&data, EPOCH) {
            Ok(Processed::Forward { packet, .. }) => {
                assert_eq!(packet.len(), PACKET_LEN);
                assert_eq!(relay.process(&data, EPOCH).unwrap_err(), OnionError::Replay);
                accepted.push(name.clone());
            }
            Ok(other) => panic!("{name}: relay 0 is never the last hop: {other:?}"),
            Err(e) => {
                assert!(!e.to_string().is_empty(), "{name}");
            }
        }
        for current in [0, EPOCH + 1, EPOCH + 5, u32::MAX] {
            let _ = relay.process(&data, current);
        }
    }
    // Only the known-answer packet passes the MAC; a payload change is invisible to an
    // intermediate hop (Lioness turns it into noise that the last hop refuses).
    assert_eq!(accepted, ["flipped_payload", "kat_packet_hop0"]);
}

#[test]
fn onion_surb_corpus() {
    let mut parsed = Vec::new();
    for (name, data) in corpus("onion_surb") {
        if let Ok(surb) = Surb::from_bytes(&data) {
            assert_eq!(surb.to_bytes(), data, "{name}");
            assert!(surb.into_reply(b"fuzz").is_ok());
            assert_eq!((data.len(), data[0], data[65]), (543, 1, 1), "{name}");
            parsed.push(name.clone());
        }
        match ReplyPayload::from_bytes(&data) {
            Ok(payload) => {
                let mut store = ReplyKeyStore::new(1);
                let mut id = [0u8; 32];
                id.copy_from_slice(&data[..32]);
                assert_eq!(
                    store
                        .open_reply(&SurbId::from_bytes(id), &payload)
                        .unwrap_err(),
                    OnionError::UnknownSurb
                );
            }
            Err(_) => assert_ne!(data.len(), PAYLOAD_LEN, "{name}"),
        }
    }
    // Any 543 bytes with the version byte at offsets 0 and 65 parse (the recipient cannot
    // check more); the known-answer block must be among them.
    assert!(parsed.iter().any(|n| n == "kat_surb"), "{parsed:?}");
}
