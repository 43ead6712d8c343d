//! Known-answer vectors: fixed relay keys and a fixed RNG seed give fixed packet bytes and
//! fixed per-hop outputs. The data lives in `tests/vectors/x25519_v1.txt`; regenerate it
//! (only when the format changes on purpose) with
//! `ZENTALK_ONION_WRITE_VECTORS=1 cargo test -p zentalk-onion --test vectors`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zentalk_crypto::{NodeId, X25519Secret};
use zentalk_onion::{
    Hop, MailboxId, OnionRelay, Processed, ReplyKeyStore, ReplyPayload, Surb, build_packet,
};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/x25519_v1.txt");
const EPOCH: u32 = 0x0102_0304;

fn relay_secret(i: u8) -> [u8; 32] {
    let mut s = [0u8; 32];
    for (j, b) in s.iter_mut().enumerate() {
        *b = (j as u8).wrapping_mul(7).wrapping_add(i.wrapping_mul(0x31));
    }
    s
}

/// Builds everything from the fixed inputs and returns the named values in order.
fn compute() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: &[u8]| out.push((k.to_string(), hex::encode(v)));
    let seed = [0x5Eu8; 32];
    put("rng_seed_chacha20", &seed);
    put("epoch_be", &EPOCH.to_be_bytes());
    let mut route = Vec::new();
    let mut relays = Vec::new();
    for i in 0..3u8 {
        let secret = X25519Secret::from_bytes(&relay_secret(i));
        let node = NodeId::from_bytes([0xB0 + i; 32]);
        put(&format!("relay{i}_node"), node.as_bytes());
        put(&format!("relay{i}_onion_secret"), &relay_secret(i));
        put(
            &format!("relay{i}_onion_public"),
            secret.public_key().as_bytes(),
        );
        route.push(Hop {
            node,
            onion_key: secret.public_key(),
            epoch: EPOCH,
        });
        let mut r = OnionRelay::new(16);
        r.insert_epoch_key(EPOCH, secret).unwrap();
        relays.push((node, r));
    }
    let mailbox = MailboxId::from_bytes([0x4D; 32]);
    let message = b"known answer: three hops, X25519 format v1".to_vec();
    put("mailbox", mailbox.as_bytes());
    put("message", &message);

    let mut rng = ChaCha20Rng::from_seed(seed);
    let pkt = build_packet(&mut rng, &route, mailbox, &message).unwrap();
    put("packet_hop0", pkt.packet.as_bytes());
    let (mut node, mut bytes) = (pkt.first_hop, pkt.packet.into_bytes());
    let mut hop = 0;
    loop {
        let relay = &mut relays.iter_mut().find(|(n, _)| *n == node).unwrap().1;
        match relay.process(&bytes, EPOCH).unwrap() {
            Processed::Forward { next_hop, packet } => {
                hop += 1;
                put(
                    &format!("next_hop_after_hop{}", hop - 1),
                    next_hop.as_bytes(),
                );
                put(&format!("packet_hop{hop}"), packet.as_bytes());
                node = next_hop;
                bytes = packet.into_bytes();
            }
            Processed::Deliver { mailbox, message } => {
                put("delivered_mailbox", mailbox.as_bytes());
                put("delivered_message", &message);
                break;
            }
            Processed::Reply { .. } => panic!("unexpected reply"),
        }
    }

    // A reply block back over relays 2, 1, 0 (fresh relay state: new replay filters).
    let mut relays: Vec<(NodeId, OnionRelay)> = (0..3u8)
        .map(|i| {
            let mut r = OnionRelay::new(16);
            r.insert_epoch_key(EPOCH, X25519Secret::from_bytes(&relay_secret(i)))
                .unwrap();
            (NodeId::from_bytes([0xB0 + i; 32]), r)
        })
        .collect();
    let back: Vec<Hop> = route.iter().rev().cloned().collect();
    let mut store = ReplyKeyStore::new(4);
    let (id, surb) = store.create_surb(&mut rng, &back).unwrap();
    put("surb_id", id.as_bytes());
    put("surb", &surb.to_bytes());
    let reply_text = b"known answer: the reply".to_vec();
    put("reply_message", &reply_text);
    let reply = surb.into_reply(&reply_text).unwrap();
    put("reply_packet_hop0", reply.packet.as_bytes());
    let (mut node, mut bytes) = (reply.first_hop, reply.packet.into_bytes());
    loop {
        let relay = &mut relays.iter_mut().find(|(n, _)| *n == node).unwrap().1;
        match relay.process(&bytes, EPOCH).unwrap() {
            Processed::Forward { next_hop, packet } => {
                node = next_hop;
                bytes = packet.into_bytes();
            }
            Processed::Reply { surb_id, payload } => {
                assert_eq!(surb_id, id);
                put("reply_payload_at_last_hop", payload.as_bytes());
                let opened = store.open_reply(&surb_id, &payload).unwrap();
                put("reply_opened", &opened);
                break;
            }
            Processed::Deliver { .. } => panic!("unexpected delivery"),
        }
    }
    out
}

fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once(" = ").expect("key = value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn known_answer_vectors_match() {
    let computed = compute();
    if std::env::var_os("ZENTALK_ONION_WRITE_VECTORS").is_some() {
        let mut text = String::from(
            "# zentalk-onion known-answer vectors, X25519 format v1 (hex).\n\
             # Relay secrets, node ids and the ChaCha20Rng seed are fixed; the sender draws its\n\
             # randomness from ChaCha20Rng::from_seed(rng_seed_chacha20) in the order documented\n\
             # in docs/protocol/zentalk-onion.md (packet first, then the reply block).\n",
        );
        for (k, v) in &computed {
            writeln!(text, "{k} = {v}").unwrap();
        }
        std::fs::write(PATH, text).unwrap();
    }
    let stored = parse(&std::fs::read_to_string(PATH).unwrap());
    assert_eq!(stored.len(), computed.len(), "same set of values");
    for (k, v) in &computed {
        assert_eq!(stored.get(k), Some(v), "vector {k} differs");
    }
}

/// The stored packets are processed directly (independently of the sender's RNG) and give
/// the stored outputs: a check a second implementation of the relay can run alone.
#[test]
fn stored_packets_process_to_stored_outputs() {
    let v = parse(&std::fs::read_to_string(PATH).unwrap());
    let h = |k: &str| hex::decode(&v[k]).unwrap();
    for hop in 0..3u8 {
        let mut relay = OnionRelay::new(4);
        let secret: [u8; 32] = h(&format!("relay{hop}_onion_secret")).try_into().unwrap();
        relay
            .insert_epoch_key(EPOCH, X25519Secret::from_bytes(&secret))
            .unwrap();
        let input = h(&format!("packet_hop{hop}"));
        match relay.process(&input, EPOCH).unwrap() {
            Processed::Forward { next_hop, packet } => {
                assert_eq!(
                    next_hop.as_bytes().as_slice(),
                    h(&format!("next_hop_after_hop{hop}"))
                );
                assert_eq!(packet.as_bytes(), h(&format!("packet_hop{}", hop + 1)));
            }
            Processed::Deliver { mailbox, message } => {
                assert_eq!(hop, 2);
                assert_eq!(mailbox.as_bytes().as_slice(), h("delivered_mailbox"));
                assert_eq!(message, h("delivered_message"));
                assert_eq!(message, h("message"));
            }
            Processed::Reply { .. } => panic!(),
        }
    }
    let surb = Surb::from_bytes(&h("surb")).unwrap();
    assert_eq!(surb.first_hop().as_bytes()[0], 0xB2);
    let payload = ReplyPayload::from_bytes(&h("reply_payload_at_last_hop")).unwrap();
    assert_eq!(payload.as_bytes().len(), 2048);
    assert_eq!(h("reply_opened"), h("reply_message"));
}
