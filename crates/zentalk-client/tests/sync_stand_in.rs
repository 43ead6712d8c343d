//! Two clients talk through `net::sync_once` over real TCP and the real Noise link layer, to
//! four stand-in relays that follow the network contract (onion processing with
//! zentalk-onion, mailboxes with challenge/auth/batch/fetch/ack). Relay-to-relay forwarding
//! happens in memory here; the real relay (zentalk-relay) is being built concurrently.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::net::TcpListener;
use zentalk_client::net::sync_once;
use zentalk_client::{Client, ContactCard, Directory, Event, RelayEntry};
use zentalk_crypto::{IdentityPublicKey, NodeId, Signature, X25519Secret, hash::blake2b_256};
use zentalk_onion::{OnionRelay, Processed};
use zentalk_relay::Limits;
use zentalk_relay::link::accept;
use zentalk_wire::proto::{
    MailboxAck, MailboxAuth, MailboxBatch, MailboxChallenge, MailboxFetch, MailboxItem,
};
use zentalk_wire::{Frame, MessageId, MessageType};

const EPOCH: u32 = 1;

#[derive(Default)]
struct Shared {
    onion: HashMap<NodeId, OnionRelay>,
    /// mailbox id -> (seq, payload)
    mailboxes: HashMap<[u8; 32], Vec<(u64, Vec<u8>)>>,
    next_seq: u64,
    /// (relay, predecessor was a client link, successor was a mailbox)
    hops: Vec<(NodeId, bool, bool)>,
}

fn deliver(shared: &Mutex<Shared>, mut at: NodeId, mut bytes: Vec<u8>) {
    let mut s = shared.lock().unwrap();
    let mut from_client = true;
    loop {
        let relay = s.onion.get_mut(&at).unwrap();
        match relay.process(&bytes, EPOCH).unwrap() {
            Processed::Forward { next_hop, packet } => {
                s.hops.push((at, from_client, false));
                from_client = false;
                at = next_hop;
                bytes = packet.into_bytes().into_vec();
            }
            Processed::Deliver { mailbox, message } => {
                s.hops.push((at, from_client, true));
                s.next_seq += 1;
                let seq = s.next_seq;
                s.mailboxes
                    .entry(mailbox.to_bytes())
                    .or_default()
                    .push((seq, message));
                return;
            }
            Processed::Reply { .. } => panic!("no replies"),
        }
    }
}

async fn serve(
    listener: TcpListener,
    node: NodeId,
    noise: X25519Secret,
    shared: Arc<Mutex<Shared>>,
) {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        let Ok(mut link) = accept(stream, &noise, &Limits::default(), &mut rng).await else {
            continue;
        };
        let mut nonce = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rng, &mut nonce);
        let ch = MailboxChallenge {
            nonce: Bytes::copy_from_slice(&nonce),
            relay_id: Bytes::copy_from_slice(node.as_bytes()),
        };
        if link
            .send(&Frame::new(MessageId::random(&mut rng), &ch).unwrap())
            .await
            .is_err()
        {
            continue;
        }
        let mut authed: Option<[u8; 32]> = None;
        while let Ok(f) = link.recv().await {
            let batch = |s: &Shared, id: &[u8; 32], after: u64| MailboxBatch {
                items: s
                    .mailboxes
                    .get(id)
                    .map(|v| {
                        v.iter()
                            .filter(|(q, _)| *q > after)
                            .map(|(q, p)| MailboxItem {
                                seq: *q,
                                message_id: Bytes::copy_from_slice(&blake2b_256(p)[..16]),
                                payload: Bytes::copy_from_slice(p),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                more: false,
            };
            match f.message_type() {
                MessageType::OnionPacket => deliver(&shared, node, f.body().to_vec()),
                MessageType::MailboxAuth => {
                    let a: MailboxAuth = f.decode_body().unwrap();
                    let key = IdentityPublicKey::from_slice(&a.mailbox_key).unwrap();
                    let mut msg = b"zentalk-mailbox-auth-v1".to_vec();
                    msg.extend_from_slice(node.as_bytes());
                    msg.extend_from_slice(&nonce);
                    msg.extend_from_slice(&a.mailbox_id);
                    assert_eq!(blake2b_256(key.as_bytes())[..], a.mailbox_id[..]);
                    key.verify(&msg, &Signature::from_slice(&a.signature).unwrap())
                        .unwrap();
                    let id: [u8; 32] = a.mailbox_id.as_ref().try_into().unwrap();
                    authed = Some(id);
                    let b = batch(&shared.lock().unwrap(), &id, 0);
                    link.send(&Frame::new(MessageId::random(&mut rng), &b).unwrap())
                        .await
                        .unwrap();
                }
                MessageType::MailboxFetch => {
                    let q: MailboxFetch = f.decode_body().unwrap();
                    let id = authed.unwrap();
                    let b = batch(&shared.lock().unwrap(), &id, q.after_seq);
                    link.send(&Frame::new(MessageId::random(&mut rng), &b).unwrap())
                        .await
                        .unwrap();
                }
                MessageType::MailboxAck => {
                    let a: MailboxAck = f.decode_body().unwrap();
                    let id = authed.unwrap();
                    assert_eq!(&a.mailbox_id[..], &id[..]);
                    if let Some(v) = shared.lock().unwrap().mailboxes.get_mut(&id) {
                        v.retain(|(q, _)| *q > a.up_to_seq);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
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
async fn two_clients_over_tcp_noise_and_three_hops() {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut entries = Vec::new();
    for i in 0..4u8 {
        let node = NodeId::from_bytes([i + 1; 32]);
        let noise = X25519Secret::generate(&mut rng);
        let onion = X25519Secret::generate(&mut rng);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        entries.push(RelayEntry {
            node,
            addr: listener.local_addr().unwrap(),
            noise_key: noise.public_key().to_bytes(),
            onion_keys: vec![(u64::from(EPOCH), onion.public_key().to_bytes())],
        });
        let mut r = OnionRelay::new(1 << 10);
        r.insert_epoch_key(EPOCH, onion).unwrap();
        shared.lock().unwrap().onion.insert(node, r);
        tokio::spawn(serve(listener, node, noise, shared.clone()));
    }
    let dir = Directory::new(entries.clone());
    let nodes: Vec<NodeId> = entries.iter().map(|e| e.node).collect();
    let limits = Limits::default();
    let mut alice = Client::new(&mut rng, nodes[0], nodes.clone());
    let mut bob = Client::new(&mut rng, nodes[1], nodes.clone());
    let card = ContactCard::from_bytes(&bob.contact_card(&mut rng).unwrap().to_bytes()).unwrap();
    let b = alice.add_contact(&card);
    let a = alice.address();

    for i in 0..3 {
        alice.send_text(&mut rng, &b, &format!("a{i}"), 0).unwrap();
    }
    for _ in 0..3 {
        sync_once(&mut alice, &dir, EPOCH, &limits, &mut rng, 0)
            .await
            .unwrap();
        sync_once(&mut bob, &dir, EPOCH, &limits, &mut rng, 0)
            .await
            .unwrap();
    }
    assert_eq!(texts(&mut bob), ["a0", "a1", "a2"]);
    bob.send_text(&mut rng, &a, "b0", 0).unwrap();
    for _ in 0..3 {
        sync_once(&mut bob, &dir, EPOCH, &limits, &mut rng, 0)
            .await
            .unwrap();
        sync_once(&mut alice, &dir, EPOCH, &limits, &mut rng, 0)
            .await
            .unwrap();
    }
    assert_eq!(texts(&mut alice), ["b0"]);

    // Bob offline: Alice keeps sending; Bob's next sync finds everything, once, in order.
    for i in 3..6 {
        alice.send_text(&mut rng, &b, &format!("a{i}"), 10).unwrap();
    }
    let r = sync_once(&mut alice, &dir, EPOCH, &limits, &mut rng, 10)
        .await
        .unwrap();
    assert_eq!(r.send_failures, 0);
    let r = sync_once(&mut bob, &dir, EPOCH, &limits, &mut rng, 20)
        .await
        .unwrap();
    assert_eq!(r.fetched, 3);
    assert_eq!(r.refused, 0);
    assert_eq!(texts(&mut bob), ["a3", "a4", "a5"]);
    for _ in 0..2 {
        sync_once(&mut alice, &dir, EPOCH, &limits, &mut rng, 30)
            .await
            .unwrap();
        sync_once(&mut bob, &dir, EPOCH, &limits, &mut rng, 30)
            .await
            .unwrap();
    }
    assert!(alice.contacts().iter().all(|c| c.unacknowledged == 0));
    assert!(bob.contacts().iter().all(|c| c.unacknowledged == 0));

    // Every packet crossed three relays and no relay saw both the client link and the mailbox.
    let s = shared.lock().unwrap();
    assert!(
        s.hops
            .iter()
            .all(|(_, from_client, to_mailbox)| !(*from_client && *to_mailbox))
    );
    let delivered = s.hops.iter().filter(|h| h.2).count();
    assert_eq!(s.hops.len(), 3 * delivered);
    // Everything was acknowledged and deleted.
    assert!(s.mailboxes.values().all(Vec::is_empty));
}
