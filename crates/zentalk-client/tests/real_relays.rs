//! Two clients through five real zentalk-relay relays in one process (TCP + Noise on
//! 127.0.0.1, temp SQLite mailboxes, onion forwarding between relays, demo observation log):
//! messages arrive complete, in order, exactly once, both ways; an offline recipient gets
//! everything later; no relay saw both the sending client and the mailbox.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zentalk_client::net::sync_once;
use zentalk_client::{Client, ContactCard, Directory, Event, RelayEntry};
use zentalk_crypto::NodeId;
use zentalk_relay::epoch::epoch_at;
use zentalk_relay::service::Peer;
use zentalk_relay::{Limits, Relay, RelayConfig, RelayHandle, RelayKeys, StaticDirectory};

#[allow(
    clippy::disallowed_methods,
    reason = "packets are built for the real epoch"
)]
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn texts(c: &mut Client) -> Vec<String> {
    std::iter::from_fn(|| c.poll_event())
        .filter_map(|e| match e {
            Event::Message { text, .. } => Some(text),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_through_five_real_relays() {
    let seed = 77;
    println!("seed {seed}");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let static_dir = Arc::new(StaticDirectory::new());
    let mut handles: Vec<RelayHandle> = Vec::new();
    let mut temps = Vec::new();
    let mut stops = Vec::new();
    for i in 0..5u64 {
        let tmp = tempfile::tempdir().unwrap();
        let config = RelayConfig {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            mailbox_path: tmp.path().join("mailbox.sqlite"),
            demo_observe: true,
            shutdown_grace: Duration::from_secs(1),
            ..RelayConfig::default()
        };
        let keys = RelayKeys::generate(&mut ChaCha20Rng::seed_from_u64(seed + i));
        let dyn_dir: Arc<dyn zentalk_relay::Directory> = static_dir.clone();
        let relay = Relay::bind_with_directory(config, keys, Some(dyn_dir))
            .await
            .unwrap();
        let h = relay.handle();
        static_dir.insert(h.peer_info());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = relay
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        });
        handles.push(h);
        temps.push(tmp);
        stops.push(stop);
    }
    let entries: Vec<RelayEntry> = handles
        .iter()
        .map(|h| {
            let p = h.peer_info();
            RelayEntry {
                node: p.node,
                addr: p.addr,
                noise_key: p.noise_key.to_bytes(),
                onion_keys: p
                    .onion_keys
                    .iter()
                    .map(|(e, k)| (u64::from(*e), k.to_bytes()))
                    .collect(),
            }
        })
        .collect();
    let dir = Directory::new(entries);
    let nodes: Vec<NodeId> = handles.iter().map(RelayHandle::node_id).collect();
    let epoch = epoch_at(now_secs());
    let limits = Limits::default();
    let mut alice = Client::new(&mut rng, nodes[0], nodes.clone());
    let mut bob = Client::new(&mut rng, nodes[1], nodes.clone());
    let card = ContactCard::from_bytes(&bob.contact_card(&mut rng).unwrap().to_bytes()).unwrap();
    let b = alice.add_contact(&card);
    let a = alice.address();

    // Deliveries cross relay-to-relay links asynchronously: sync in rounds until the
    // expected texts arrived (bounded: 100 rounds of about 20 ms, so a loaded machine is
    // given time and a real loss still fails the test).
    async fn until_texts(
        x: &mut Client,
        y: &mut Client,
        want: usize,
        net: (&Directory, u32, &Limits),
        rng: &mut ChaCha20Rng,
        now: u64,
    ) -> Vec<String> {
        let (dir, epoch, limits) = net;
        let mut got = Vec::new();
        for _ in 0..100 {
            sync_once(x, dir, epoch, limits, rng, now).await.unwrap();
            sync_once(y, dir, epoch, limits, rng, now).await.unwrap();
            got.extend(texts(y));
            let settled = x.contacts().iter().all(|c| c.unacknowledged == 0)
                && y.contacts().iter().all(|c| c.unacknowledged == 0);
            if got.len() >= want && settled {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        got
    }
    let n = (&dir, epoch, &limits);

    for i in 0..3 {
        alice.send_text(&mut rng, &b, &format!("a{i}"), 0).unwrap();
    }
    let got = until_texts(&mut alice, &mut bob, 3, n, &mut rng, 0).await;
    assert_eq!(got, ["a0", "a1", "a2"]);
    bob.send_text(&mut rng, &a, "b0", 0).unwrap();
    bob.send_text(&mut rng, &a, "b1", 0).unwrap();
    let got = until_texts(&mut bob, &mut alice, 2, n, &mut rng, 0).await;
    assert_eq!(got, ["b0", "b1"]);

    // Bob offline while Alice writes; then he syncs and finds everything, once, in order.
    for i in 3..6 {
        alice.send_text(&mut rng, &b, &format!("a{i}"), 10).unwrap();
    }
    let r = sync_once(&mut alice, &dir, epoch, &limits, &mut rng, 10)
        .await
        .unwrap();
    assert_eq!(r.send_failures, 0);
    let got = until_texts(&mut alice, &mut bob, 3, n, &mut rng, 20).await;
    assert_eq!(got, ["a3", "a4", "a5"]);
    assert!(alice.contacts().iter().all(|c| c.unacknowledged == 0));
    assert!(bob.contacts().iter().all(|c| c.unacknowledged == 0));

    // What the relays saw: fixed-size packets, and no relay saw both the client link and a
    // mailbox for the same packet.
    let mut total = 0;
    for h in &handles {
        for o in h.observations() {
            total += 1;
            assert_eq!(o.packet_len, zentalk_onion::PACKET_LEN);
            let from_client = matches!(o.predecessor, Peer::ClientLink);
            let to_mailbox = matches!(o.successor, Peer::Mailbox(_));
            assert!(!(from_client && to_mailbox), "{o:?}");
        }
    }
    assert!(total > 0);
    for s in stops {
        let _ = s.send(());
    }
}
