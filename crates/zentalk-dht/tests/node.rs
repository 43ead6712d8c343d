//! The node's authentication rules, driven through datagrams exactly as the UDP driver does:
//! an inbound requester enters the routing table only after answering our ping under the id
//! it claimed; answers from the wrong key, the wrong address or of the wrong kind are
//! refused; limits and timeouts behave.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zentalk_crypto::{IdentityKeyPair, NodeId};
use zentalk_dht::message::{
    Decoded, Request, RequestMsg, Response, ResponseMsg, StoreStatus, decode_datagram,
    encode_request, encode_response, request_digest,
};
use zentalk_dht::{Capabilities, Config, DhtError, Event, MessageError, Node, RelayDescriptor};

const NOW: u64 = 1_800_000_000_000;

fn node(seed: u8) -> (IdentityKeyPair, Node) {
    let id = IdentityKeyPair::from_seed(&[seed; 32]);
    let n = Node::new(id.duplicate(), Config::default(), [seed; 32]).unwrap();
    (id, n)
}

fn addr(p: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p))
}

/// Takes the single request the node sent, decoded.
fn sent_request(n: &mut Node) -> (SocketAddr, RequestMsg) {
    let t = n.poll_transmit().expect("a datagram");
    match decode_datagram(&t.payload).unwrap() {
        Decoded::Request(r) => (t.to, r),
        Decoded::Response(_) => panic!("expected a request"),
    }
}

fn answer(from: &IdentityKeyPair, req: &RequestMsg, body: Response) -> Vec<u8> {
    let mut rng = ChaCha20Rng::seed_from_u64(req.id);
    encode_response(
        &ResponseMsg { id: req.id, body },
        &request_digest(req),
        from,
        &mut rng,
    )
    .unwrap()
}

/// Bootstraps `a` from `seed` at `addr(3000)`: answers its ping and returns the self-lookup
/// request it sends next. Afterwards `seed` is in `a`'s routing table.
fn bootstrap_via(a: &mut Node, seed: &IdentityKeyPair) -> RequestMsg {
    a.bootstrap(NOW, &[addr(3000)]).unwrap();
    let (_, ping) = sent_request(a);
    a.handle_datagram(
        NOW,
        addr(3000),
        &answer(seed, &ping, Response::Pong { observed: addr(1) }),
    )
    .unwrap();
    sent_request(a).1
}

/// A relay descriptor record signed by `relay`.
fn descriptor(relay: &IdentityKeyPair, seq: u64, expires_at_ms: u64) -> zentalk_dht::Record {
    RelayDescriptor {
        addrs: vec![addr(1)],
        noise_static_key: [1; 32],
        onion_keys: vec![(1, [2; 32])],
        capabilities: Capabilities::STORAGE,
    }
    .sign(relay, seq, expires_at_ms)
    .unwrap()
}

#[test]
fn inbound_requester_enters_table_only_after_proving_its_id() {
    let (_, mut a) = node(1);
    let b = IdentityKeyPair::from_seed(&[2; 32]);
    let b_id = NodeId::of(&b.public_key());
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    // B asks A something, claiming its id.
    let req = RequestMsg {
        id: 10,
        sender: Some(b_id),
        body: Request::FindNode { target: b_id },
    };
    a.handle_datagram(NOW, addr(2000), &encode_request(&req, &mut rng).unwrap())
        .unwrap();
    // A answers (signed), then pings B to verify it; B is not in the table yet.
    let t = a.poll_transmit().unwrap();
    assert!(matches!(
        decode_datagram(&t.payload).unwrap(),
        Decoded::Response(_)
    ));
    let (to, ping) = sent_request(&mut a);
    assert_eq!(to, addr(2000));
    assert_eq!(ping.body, Request::Ping);
    assert!(a.routing_table().is_empty());
    // An impostor answers the ping from B's address with its own key: refused.
    let impostor = IdentityKeyPair::from_seed(&[9; 32]);
    let forged = answer(&impostor, &ping, Response::Pong { observed: addr(1) });
    assert_eq!(
        a.handle_datagram(NOW, addr(2000), &forged),
        Err(MessageError::WrongResponder)
    );
    assert!(a.routing_table().is_empty());

    // Same again, this time B answers for itself.
    let req = RequestMsg {
        id: 11,
        sender: Some(b_id),
        body: Request::Ping,
    };
    a.handle_datagram(NOW, addr(2000), &encode_request(&req, &mut rng).unwrap())
        .unwrap();
    let _pong = a.poll_transmit().unwrap();
    let (_, ping) = sent_request(&mut a);
    // From another address: unsolicited.
    let good = answer(&b, &ping, Response::Pong { observed: addr(1) });
    assert_eq!(
        a.handle_datagram(NOW, addr(2001), &good),
        Err(MessageError::Unsolicited(ping.id))
    );
    // A response signed over another request: bad auth, and the request stays pending.
    let other = RequestMsg {
        id: ping.id,
        sender: None,
        body: Request::FindNode { target: b_id },
    };
    let mut r2 = ChaCha20Rng::seed_from_u64(1);
    let wrong_digest = encode_response(
        &ResponseMsg {
            id: ping.id,
            body: Response::Pong { observed: addr(1) },
        },
        &request_digest(&other),
        &b,
        &mut r2,
    )
    .unwrap();
    assert_eq!(
        a.handle_datagram(NOW, addr(2000), &wrong_digest),
        Err(MessageError::BadAuth)
    );
    // The genuine answer from the right address: B enters the table.
    a.handle_datagram(NOW, addr(2000), &good).unwrap();
    assert_eq!(
        a.routing_table().get(&b_id).map(|c| c.addr),
        Some(addr(2000))
    );
    // Replaying it is unsolicited now.
    assert_eq!(
        a.handle_datagram(NOW, addr(2000), &good),
        Err(MessageError::Unsolicited(ping.id))
    );
}

#[test]
fn bootstrap_learns_seed_id_and_wrong_kind_is_refused() {
    let (_, mut a) = node(4);
    let seed = IdentityKeyPair::from_seed(&[5; 32]);
    let q = a.bootstrap(NOW, &[addr(3000)]).unwrap();
    let (to, ping) = sent_request(&mut a);
    assert_eq!(to, addr(3000));
    // A Nodes answer to a Ping is the wrong kind.
    let wrong = answer(&seed, &ping, Response::Nodes { contacts: vec![] });
    assert_eq!(
        a.handle_datagram(NOW, addr(3000), &wrong),
        Err(MessageError::WrongResponseKind)
    );
    // The bootstrap ping failed: no peers.
    assert_eq!(
        a.poll_event(),
        Some(Event::Bootstrapped { query: q, peers: 0 })
    );
    // Try again; the seed answers properly and is learned; the self-lookup starts.
    let q = a.bootstrap(NOW, &[addr(3000)]).unwrap();
    let (_, ping) = sent_request(&mut a);
    a.handle_datagram(
        NOW,
        addr(3000),
        &answer(&seed, &ping, Response::Pong { observed: addr(1) }),
    )
    .unwrap();
    assert!(a.routing_table().contains(&NodeId::of(&seed.public_key())));
    let (_, find) = sent_request(&mut a);
    assert_eq!(find.body, Request::FindNode { target: a.id() });
    // The seed names another node: a lookup candidate, not a routing-table entry.
    let other = NodeId::from_bytes([0xee; 32]);
    let listed = zentalk_dht::Contact {
        id: other,
        addr: addr(3001),
    };
    a.handle_datagram(
        NOW,
        addr(3000),
        &answer(
            &seed,
            &find,
            Response::Nodes {
                contacts: vec![listed],
            },
        ),
    )
    .unwrap();
    assert!(!a.routing_table().contains(&other));
    let (to, next) = sent_request(&mut a);
    assert_eq!(
        (to, next.body.clone()),
        (addr(3001), Request::FindNode { target: a.id() })
    );
    // It never answers: still not in the table after the lookup ends.
    a.handle_timeout(NOW + 1000);
    let _retry = sent_request(&mut a);
    a.handle_timeout(NOW + 2000);
    assert!(!a.routing_table().contains(&other));
    assert_eq!(
        a.poll_event(),
        Some(Event::Bootstrapped { query: q, peers: 1 })
    );
}

#[test]
fn timeouts_retry_once_then_fail_and_evict() {
    let (_, mut a) = node(6);
    let seed = IdentityKeyPair::from_seed(&[7; 32]);
    let find = bootstrap_via(&mut a, &seed);
    let deadline = a.poll_timeout().unwrap();
    assert_eq!(deadline, NOW + 1000);
    a.handle_timeout(deadline);
    // Retried with the same request id.
    let (_, again) = sent_request(&mut a);
    assert_eq!(again, find);
    a.handle_timeout(deadline + 1000);
    assert!(a.poll_transmit().is_none());
    // The lookup ended with nothing; the bootstrap reports the table size.
    match a.poll_event() {
        Some(Event::Bootstrapped { peers, .. }) => assert_eq!(peers, 1),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(a.pending_requests(), 0);
}

#[test]
fn store_answers_carry_status() {
    let (_, mut a) = node(8);
    let relay = IdentityKeyPair::from_seed(&[10; 32]);
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let rec = |seq| descriptor(&relay, seq, NOW + 10_000);
    let store = store_via_datagram;
    assert_eq!(store(&mut a, rec(2), &mut rng), (StoreStatus::Stored, 2));
    assert_eq!(store(&mut a, rec(1), &mut rng), (StoreStatus::Stale, 2));
    let mut forged = rec(3);
    forged.signature[5] ^= 1;
    assert_eq!(store(&mut a, forged, &mut rng), (StoreStatus::Invalid, 2));
    // Rate limit: the default burst is 64 STOREs per source.
    let mut limited = false;
    for _ in 0..70 {
        if store(&mut a, rec(1), &mut rng).0 == StoreStatus::Limited {
            limited = true;
        }
    }
    assert!(limited);
}

/// Stores `record` in `a` through a STORE datagram, as a peer would; returns the verified
/// ack's status and stored sequence.
fn store_via_datagram(
    a: &mut Node,
    record: zentalk_dht::Record,
    rng: &mut ChaCha20Rng,
) -> (StoreStatus, u64) {
    let req = RequestMsg {
        id: 1,
        sender: None,
        body: Request::Store { record },
    };
    a.handle_datagram(NOW, addr(4000), &encode_request(&req, rng).unwrap())
        .unwrap();
    let t = a.poll_transmit().unwrap();
    assert!(a.poll_transmit().is_none());
    let Decoded::Response(u) = decode_datagram(&t.payload).unwrap() else {
        panic!("expected a response")
    };
    u.verify(&request_digest(&req)).unwrap();
    match u.msg.body {
        Response::StoreAck {
            status,
            stored_sequence,
        } => (status, stored_sequence),
        other => panic!("{other:?}"),
    }
}

#[test]
fn find_value_answers_from_the_nodes_own_store_without_the_network() {
    let relay = IdentityKeyPair::from_seed(&[21; 32]);
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let expires = NOW + 10_000;
    let record = descriptor(&relay, 4, expires);
    let key = record.key;
    for quorum in [1, 3] {
        let cfg = Config {
            value_quorum: quorum,
            ..Config::default()
        };
        // An empty routing table: before, this was `NoPeers` although the node holds the value.
        let mut a = Node::new(IdentityKeyPair::from_seed(&[20; 32]), cfg, [20; 32]).unwrap();
        assert_eq!(
            store_via_datagram(&mut a, record.clone(), &mut rng).0,
            StoreStatus::Stored
        );
        let q = a.find_value(NOW + 1, key).unwrap();
        assert!(a.poll_transmit().is_none(), "quorum {quorum}: nothing sent");
        match a.poll_event() {
            Some(Event::ValueFound {
                query,
                key: k,
                record: Some(found),
                stats,
            }) => {
                assert_eq!((query, k), (q, key));
                assert_eq!(found, record);
                assert_eq!((stats.requests, stats.hops), (0, 0));
                assert_eq!((stats.started_ms, stats.finished_ms), (NOW + 1, NOW + 1));
            }
            other => panic!("quorum {quorum}: unexpected {other:?}"),
        }
        assert_eq!(a.running_queries(), 0);
        // Another key, or the same one once expired, goes to the network (none here).
        assert_eq!(
            a.find_value(NOW, NodeId::from_bytes([9; 32])),
            Err(DhtError::NoPeers)
        );
        assert_eq!(a.find_value(expires, key), Err(DhtError::NoPeers));
        assert!(a.poll_event().is_none());
    }
}

#[test]
fn find_value_with_a_local_record_still_asks_peers_when_the_quorum_needs_them() {
    let relay = IdentityKeyPair::from_seed(&[23; 32]);
    let mut rng = ChaCha20Rng::seed_from_u64(23);
    let record = descriptor(&relay, 1, NOW + 10_000);
    let key = record.key;
    let cfg = Config {
        value_quorum: 2,
        ..Config::default()
    };
    let mut a = Node::new(IdentityKeyPair::from_seed(&[22; 32]), cfg, [22; 32]).unwrap();
    // One peer in the table: a bootstrap seed that answers the ping and the self-lookup.
    let seed = IdentityKeyPair::from_seed(&[24; 32]);
    let find = bootstrap_via(&mut a, &seed);
    a.handle_datagram(
        NOW,
        addr(3000),
        &answer(&seed, &find, Response::Nodes { contacts: vec![] }),
    )
    .unwrap();
    while a.poll_event().is_some() {}
    while a.poll_transmit().is_some() {}
    assert_eq!(
        store_via_datagram(&mut a, record.clone(), &mut rng).0,
        StoreStatus::Stored
    );
    // Quorum 2: the local record is one answer; the peer is asked for the second.
    let q = a.find_value(NOW, key).unwrap();
    let (to, req) = sent_request(&mut a);
    assert_eq!(to, addr(3000));
    assert_eq!(req.body, Request::FindValue { key });
    a.handle_datagram(
        NOW,
        addr(3000),
        &answer(
            &seed,
            &req,
            Response::Value {
                record: None,
                closer: vec![],
            },
        ),
    )
    .unwrap();
    // The peer had nothing: the local record is the answer.
    match a.poll_event() {
        Some(Event::ValueFound {
            query,
            record: Some(found),
            stats,
            ..
        }) => {
            assert_eq!(query, q);
            assert_eq!(found, record);
            assert_eq!(stats.requests, 1);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn commands_are_bounded_and_config_checked() {
    let (_, mut a) = node(12);
    assert_eq!(
        a.find_node(NOW, NodeId::from_bytes([0; 32])),
        Err(DhtError::NoPeers)
    );
    let bad = Config {
        k: 21,
        ..Config::default()
    };
    assert!(Node::new(IdentityKeyPair::from_seed(&[1; 32]), bad, [0; 32]).is_err());
    let cfg = Config {
        max_queries: 1,
        ..Config::default()
    };
    let mut b = Node::new(IdentityKeyPair::from_seed(&[1; 32]), cfg, [0; 32]).unwrap();
    b.bootstrap(NOW, &[addr(1)]).unwrap();
    assert_eq!(
        b.bootstrap(NOW, &[addr(1)]),
        Err(DhtError::TooManyQueries { limit: 1 })
    );
    // Garbage is refused without effect.
    assert!(a.handle_datagram(NOW, addr(1), b"not a frame").is_err());
    assert!(a.poll_transmit().is_none());
}

#[test]
fn debug_shows_no_secret_or_rng_state() {
    let (_, a) = node(13);
    let dbg = format!("{a:?}");
    let seed_hex: String = [13u8; 32].iter().map(|b| format!("{b:02x}")).collect();
    assert!(!dbg.contains(&seed_hex), "{dbg}");
    assert!(!dbg.contains("results"), "{dbg}");
    assert!(dbg.contains("routing_table"));
}
