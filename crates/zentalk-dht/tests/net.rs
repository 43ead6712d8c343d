//! Real sockets: 30 nodes on 127.0.0.1 bootstrap from one seed node, publish relay
//! descriptors and prekey bundles, and find every one of them; a forged record and a
//! replayed older version are refused by the nodes that hold the record.
#![cfg(feature = "net")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]

use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zentalk_crypto::IdentityKeyPair;
use zentalk_dht::message::{Decoded, Request, RequestMsg, Response, StoreStatus, encode_request};
use zentalk_dht::net::{DhtHandle, NetConfig, spawn};
use zentalk_dht::{
    Capabilities, Config, PrekeyLocator, Record, RelayDescriptor, decode_datagram, prekey_period,
    sign_prekey_bundle,
};

const NODES: usize = 30;

#[allow(
    clippy::disallowed_methods,
    reason = "integration test on real sockets and time"
)]
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn descriptor(id: &IdentityKeyPair, addr: SocketAddr, seq: u64) -> Record {
    RelayDescriptor {
        addrs: vec![addr],
        noise_static_key: [seq as u8; 32],
        onion_keys: vec![(1, [9u8; 32])],
        capabilities: Capabilities::MAILBOX | Capabilities::STORAGE,
    }
    .sign(id, seq, unix_ms() + 3_600_000)
    .unwrap()
}

/// Sends one STORE straight to `to` and returns the acknowledged status.
async fn raw_store(to: SocketAddr, record: Record, rng: &mut ChaCha20Rng) -> (StoreStatus, u64) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let msg = RequestMsg {
        id: 4242,
        sender: None,
        body: Request::Store { record },
    };
    let bytes = encode_request(&msg, rng).unwrap();
    sock.send_to(&bytes, to).await.unwrap();
    let mut buf = vec![0u8; 10_000];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("ack in time")
        .unwrap();
    match decode_datagram(&buf[..n]).unwrap() {
        Decoded::Response(u) => match u.msg.body {
            Response::StoreAck {
                status,
                stored_sequence,
            } => (status, stored_sequence),
            other => panic!("unexpected {other:?}"),
        },
        Decoded::Request(_) => panic!("expected a response"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_nodes_on_loopback() {
    let seed = 9001;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut nodes: Vec<(IdentityKeyPair, DhtHandle)> = Vec::new();
    for _ in 0..NODES {
        let id = IdentityKeyPair::generate(&mut rng);
        // Value lookups read every holder among the k closest (quorum k), so the highest
        // sequence number wins even where an older version survives on some node.
        let config = NetConfig {
            node: Config {
                value_quorum: 20,
                ..Config::default()
            },
            ..NetConfig::default()
        };
        let (h, _task) = spawn(id.duplicate(), "127.0.0.1:0".parse().unwrap(), config)
            .await
            .unwrap();
        nodes.push((id, h));
    }
    let seed_addr = nodes[0].1.local_addr();
    // Everyone bootstraps from the seed node, concurrently.
    let mut joins = Vec::new();
    for (_, h) in nodes.iter().skip(1) {
        let h = h.clone();
        joins.push(tokio::spawn(
            async move { h.bootstrap(vec![seed_addr]).await },
        ));
    }
    for j in joins {
        assert!(j.await.unwrap().unwrap() > 0, "seed {seed}");
    }
    // Let refresh lookups settle.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Every node publishes its relay descriptor; 10 users publish prekey bundles.
    let mut keys = Vec::new();
    for (id, h) in &nodes {
        let rec = descriptor(id, h.local_addr(), 1);
        keys.push(rec.key);
        assert!(h.publish(rec).await.unwrap() >= 10, "seed {seed}");
    }
    let period = prekey_period(unix_ms());
    let mut users = Vec::new();
    for u in 0..10 {
        let user = IdentityKeyPair::generate(&mut rng);
        let bundle = format!("bundle of user {u}");
        let rec = sign_prekey_bundle(
            &user,
            bundle.as_bytes(),
            period,
            1,
            unix_ms() + 3_600_000,
            &mut rng,
        )
        .unwrap();
        assert!(nodes[u].1.publish(rec).await.unwrap() >= 10, "seed {seed}");
        users.push((user, bundle));
    }

    // Every descriptor is found from another node and opens to the right relay.
    for (i, key) in keys.iter().enumerate() {
        let asker = &nodes[(i + 7) % NODES].1;
        let rec = asker
            .find_value(*key)
            .await
            .unwrap()
            .expect("descriptor found");
        let (pk, d) = RelayDescriptor::from_record(&rec, unix_ms()).unwrap();
        assert_eq!(pk, nodes[i].0.public_key());
        assert_eq!(d.addrs, vec![nodes[i].1.local_addr()]);
    }
    // Every prekey bundle is found by whoever knows the identity key.
    for (u, (user, bundle)) in users.iter().enumerate() {
        let loc = PrekeyLocator::new(&user.public_key(), period).unwrap();
        let rec = nodes[(u + 13) % NODES]
            .1
            .find_value(loc.key())
            .await
            .unwrap()
            .expect("bundle found");
        assert_eq!(loc.open(&rec, unix_ms()).unwrap(), bundle.as_bytes());
    }

    // Node 3 publishes version 2; find_node locates the holders.
    let (id3, h3) = &nodes[3];
    let v2 = descriptor(id3, h3.local_addr(), 2);
    assert!(h3.publish(v2).await.unwrap() >= 10);
    let holders = nodes[5].1.find_node(keys[3]).await.unwrap();
    assert!(!holders.is_empty());
    // A replayed version 1 is refused as stale by the holders.
    let v1 = descriptor(id3, h3.local_addr(), 1);
    let mut stale = 0;
    for c in holders.iter().take(5) {
        // A holder of version 2 refuses the replay and reports 2. (A node the version-2
        // publish missed may still hold version 1: readers take the highest sequence.)
        let (status, seq) = raw_store(c.addr, v1.clone(), &mut rng).await;
        assert_ne!(status, StoreStatus::Invalid);
        if status == StoreStatus::Stale && seq == 2 {
            stale += 1;
        }
    }
    assert!(
        stale >= 3,
        "seed {seed}: {stale} holders refused the replay"
    );
    // A forged version 3 (signed by an attacker for node 3's key) is refused as invalid.
    let attacker = IdentityKeyPair::generate(&mut rng);
    let mut forged = descriptor(&attacker, "203.0.113.1:1".parse().unwrap(), 3);
    forged.key = keys[3];
    for c in holders.iter().take(5) {
        let (status, seq) = raw_store(c.addr, forged.clone(), &mut rng).await;
        assert_eq!(status, StoreStatus::Invalid);
        assert_ne!(seq, 3);
    }
    // And a publish of it is refused locally.
    assert!(nodes[6].1.publish(forged).await.is_err());
    let rec = nodes[20].1.find_value(keys[3]).await.unwrap().unwrap();
    assert_eq!(rec.sequence, 2, "seed {seed}");
    assert_eq!(rec.signer, id3.public_key().to_bytes());
}
