//! Replays the fuzz corpus of `fuzz/fuzz_targets/dht_message.rs`, plus one valid datagram of
//! every DHT message kind (written to the corpus directory when
//! `ZENTALK_WRITE_DHT_CORPUS=1`, to seed fuzzing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zentalk_crypto::{IdentityKeyPair, NodeId};
use zentalk_dht::message::{
    Request, RequestMsg, Response, ResponseMsg, StoreStatus, encode_request, encode_response,
};
use zentalk_dht::{Capabilities, Contact, RelayDescriptor, fuzz_message, sign_prekey_bundle};

fn valid_datagrams() -> Vec<Vec<u8>> {
    let mut rng = ChaCha20Rng::seed_from_u64(77);
    let id = IdentityKeyPair::generate(&mut rng);
    let now = 1_800_000_000_000u64;
    let relay = RelayDescriptor {
        addrs: vec!["192.0.2.5:443".parse().unwrap()],
        noise_static_key: [1; 32],
        onion_keys: vec![(3, [2; 32])],
        capabilities: Capabilities::MAILBOX,
    }
    .sign(&id, 4, now + 1000)
    .unwrap();
    let prekey =
        sign_prekey_bundle(&id, b"bundle", now / 86_400_000, 1, now + 1000, &mut rng).unwrap();
    let target = NodeId::from_bytes([9; 32]);
    let mut out = Vec::new();
    for body in [
        Request::Ping,
        Request::FindNode { target },
        Request::FindValue { key: relay.key },
        Request::Store {
            record: relay.clone(),
        },
        Request::Store {
            record: prekey.clone(),
        },
    ] {
        let m = RequestMsg {
            id: 1,
            sender: Some(target),
            body,
        };
        out.push(encode_request(&m, &mut rng).unwrap());
    }
    let c = Contact {
        id: target,
        addr: "198.51.100.1:9".parse().unwrap(),
    };
    for body in [
        Response::Pong {
            observed: "198.51.100.2:7".parse().unwrap(),
        },
        Response::Nodes {
            contacts: vec![c; 3],
        },
        Response::Value {
            record: Some(relay),
            closer: vec![],
        },
        Response::StoreAck {
            status: StoreStatus::Stored,
            stored_sequence: 4,
        },
    ] {
        let m = ResponseMsg { id: 1, body };
        out.push(encode_response(&m, &[0; 32], &id, &mut rng).unwrap());
    }
    out
}

#[test]
fn valid_datagrams_and_their_mutations() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus/dht_message");
    for (i, d) in valid_datagrams().iter().enumerate() {
        assert!(fuzz_message(d));
        // Truncations and single-byte flips never panic.
        for cut in [0, 1, 31, 32, d.len() / 2, d.len() - 1] {
            assert!(fuzz_message(&d[..cut]));
        }
        for pos in (0..d.len()).step_by(7) {
            let mut m = d.clone();
            m[pos] ^= 0xa5;
            assert!(fuzz_message(&m));
        }
        if std::env::var_os("ZENTALK_WRITE_DHT_CORPUS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("valid-{i}")), d).unwrap();
        }
    }
}

#[test]
fn corpus_replays() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus/dht_message");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        assert!(fuzz_message(&data), "{}", path.display());
        n += 1;
    }
    assert!(n > 0, "empty corpus at {}", dir.display());
}
