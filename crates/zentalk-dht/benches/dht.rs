//! Per-message CPU cost of the DHT: a node answering a FIND_NODE datagram (decode, routing
//! table query, encode, Ed25519 signature), a requester checking a signed DhtNodes answer
//! (decode, re-encode, Ed25519 verification), and the bare Ed25519 sign / verify they
//! contain (the floor any authenticated answer pays).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use zentalk_crypto::{IdentityKeyPair, NodeId, Signature};
use zentalk_dht::message::{
    Decoded, Request, RequestMsg, Response, ResponseMsg, decode_datagram, encode_request,
    encode_response, request_digest,
};
use zentalk_dht::routing::RoutingTable;
use zentalk_dht::{Config, Contact, Node};

fn contacts(rng: &mut ChaCha20Rng, n: usize) -> Vec<Contact> {
    (0..n)
        .map(|i| {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            Contact {
                id: NodeId::from_bytes(b),
                addr: SocketAddr::from(([10, 0, (i / 256) as u8, (i % 256) as u8], 7000)),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let id = IdentityKeyPair::generate(&mut rng);
    let target = NodeId::from_bytes([0x42; 32]);
    let req = RequestMsg {
        id: 7,
        sender: None,
        body: Request::FindNode { target },
    };
    let req_bytes = encode_request(&req, &mut rng).unwrap();

    // A node whose table is full of verified contacts is built through the public API by
    // answering its bootstrap pings; simpler here: a table alone for `closest`, and a node
    // with an empty table for the codec + signature path.
    let local = NodeId::of(&id.public_key());
    let mut table = RoutingTable::new(local, 20, 20);
    for c in contacts(&mut rng, 2000) {
        table.insert_verified(c, 0);
    }
    c.bench_function("routing_table_closest_20", |b| {
        b.iter(|| table.closest(std::hint::black_box(&target), 20))
    });

    let mut node = Node::new(id.duplicate(), Config::default(), [3; 32]).unwrap();
    let from = SocketAddr::from(([127, 0, 0, 1], 9000));
    c.bench_function("answer_find_node_datagram", |b| {
        b.iter(|| {
            node.handle_datagram(1, from, std::hint::black_box(&req_bytes))
                .unwrap();
            node.poll_transmit().unwrap()
        })
    });

    let resp = ResponseMsg {
        id: 7,
        body: Response::Nodes {
            contacts: contacts(&mut rng, 20),
        },
    };
    let digest = request_digest(&req);
    let resp_bytes = encode_response(&resp, &digest, &id, &mut rng).unwrap();
    c.bench_function("check_signed_nodes_answer_20_contacts", |b| {
        b.iter(
            || match decode_datagram(std::hint::black_box(&resp_bytes)).unwrap() {
                Decoded::Response(u) => u.verify(&digest).unwrap(),
                Decoded::Request(_) => unreachable!(),
            },
        )
    });

    let msg = [0x5au8; 32];
    let sig: Signature = id.sign(&msg);
    let pk = id.public_key();
    c.bench_function("ed25519_sign_floor", |b| {
        b.iter(|| id.sign(std::hint::black_box(&msg)))
    });
    c.bench_function("ed25519_verify_floor", |b| {
        b.iter(|| pk.verify(std::hint::black_box(&msg), &sig).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
