//! Contact cards and relay descriptors through a real DHT on UDP 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zentalk_client::Client;
use zentalk_client::dht::{LookupError, directory_from_dht, fetch_card, publish_card};
use zentalk_crypto::{IdentityKeyPair, NodeId};
use zentalk_dht::net::{NetConfig, spawn};
use zentalk_dht::{Capabilities, RelayDescriptor};

#[allow(clippy::disallowed_methods, reason = "records expire in Unix time")]
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn cards_and_descriptors_round_trip_through_the_dht() {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let mut nodes = Vec::new();
    for i in 0..4 {
        let (h, _t) = spawn(
            IdentityKeyPair::generate(&mut rng),
            "127.0.0.1:0".parse().unwrap(),
            NetConfig::default(),
        )
        .await
        .unwrap();
        if i > 0 {
            h.bootstrap(vec![nodes_addr(&nodes)]).await.unwrap();
        }
        nodes.push(h);
    }
    let now = unix_ms();
    // A relay publishes its descriptor.
    let relay_id = IdentityKeyPair::generate(&mut rng);
    let node = NodeId::of(&relay_id.public_key());
    let d = RelayDescriptor {
        addrs: vec!["127.0.0.1:7000".parse().unwrap()],
        noise_static_key: [1; 32],
        onion_keys: vec![(5, [2; 32])],
        capabilities: Capabilities::MAILBOX,
    };
    nodes[1]
        .publish(d.sign(&relay_id, 1, now + 3_600_000).unwrap())
        .await
        .unwrap();
    let missing = NodeId::from_bytes([9; 32]);
    let dir = directory_from_dht(&nodes[2], &[node, missing], now).await;
    assert_eq!(dir.relays().len(), 1);
    let e = dir.get(&node).unwrap();
    assert_eq!(e.addr, d.addrs[0]);
    assert_eq!(e.noise_key, [1; 32]);
    assert_eq!(e.onion_keys, vec![(5, [2; 32])]);

    // Bob publishes his card; Alice finds it from his identity key.
    let mut bob = Client::new(&mut rng, node, vec![node]);
    assert!(
        publish_card(&nodes[3], &mut bob, &mut rng, now, 1)
            .await
            .unwrap()
            > 0
    );
    let card = fetch_card(&nodes[0], &bob.identity_key(), now)
        .await
        .unwrap();
    assert_eq!(card.mailbox, bob.contact_mailbox().addr());
    let stranger = IdentityKeyPair::generate(&mut rng).public_key();
    assert!(matches!(
        fetch_card(&nodes[0], &stranger, now).await,
        Err(LookupError::NotFound)
    ));
}

fn nodes_addr(nodes: &[zentalk_dht::net::DhtHandle]) -> std::net::SocketAddr {
    nodes[0].local_addr()
}
