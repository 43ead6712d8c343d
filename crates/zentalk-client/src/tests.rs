//! Conversation tests over an in-memory network of real onion relays (the onion processing of
//! `zentalk-onion`; links and mailbox storage replaced by maps).

use std::collections::{HashMap, HashSet};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zentalk_crypto::{Address, NodeId, X25519Secret};
use zentalk_onion::{DEFAULT_REPLAY_CAPACITY, MailboxId, OnionRelay, PACKET_LEN, Processed};

use crate::{Client, ClientError, ContactCard, Directory, Event, ROUTE_LEN, RelayEntry};

const EPOCH: u32 = 5;

struct Net {
    rng: ChaCha20Rng,
    relays: Vec<(NodeId, OnionRelay)>,
    dir: Directory,
    /// mailbox -> stored payloads (what the mailbox relay keeps).
    mailboxes: HashMap<MailboxId, Vec<Vec<u8>>>,
    /// Every route used (node ids) and mailbox delivered to, as relays saw it.
    routes: Vec<(Vec<NodeId>, MailboxId)>,
}

impl Net {
    fn new(seed: u64) -> Self {
        println!("seed {seed}");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut relays = Vec::new();
        let mut entries = Vec::new();
        for i in 0..5u8 {
            let node = NodeId::from_bytes([i + 1; 32]);
            let secret = X25519Secret::generate(&mut rng);
            entries.push(RelayEntry {
                node,
                addr: "127.0.0.1:1".parse().unwrap(),
                noise_key: [0; 32],
                onion_keys: vec![(u64::from(EPOCH), secret.public_key().to_bytes())],
            });
            let mut r = OnionRelay::new(DEFAULT_REPLAY_CAPACITY);
            r.insert_epoch_key(EPOCH, secret).unwrap();
            relays.push((node, r));
        }
        Self {
            rng,
            relays,
            dir: Directory::new(entries),
            mailboxes: HashMap::new(),
            routes: Vec::new(),
        }
    }

    fn client(&mut self, contact_relay: u8) -> Client {
        let nodes: Vec<NodeId> = self.relays.iter().map(|(n, _)| *n).collect();
        Client::new(
            &mut self.rng,
            NodeId::from_bytes([contact_relay; 32]),
            nodes,
        )
    }

    /// Sends everything `c` has queued through three onion relays into the mailbox maps.
    fn flush(&mut self, c: &mut Client) {
        while let Some(out) = c.poll_outgoing() {
            let (packet, route) = self
                .dir
                .wrap(&mut self.rng, &out.dest, EPOCH, &out.payload)
                .unwrap();
            assert_eq!(route.len(), ROUTE_LEN);
            assert_eq!(route.last(), Some(&out.dest.relay));
            assert_eq!(route.iter().collect::<HashSet<_>>().len(), ROUTE_LEN);
            let (mut next, mut bytes) = (packet.first_hop, packet.packet.into_bytes());
            loop {
                assert_eq!(bytes.len(), PACKET_LEN);
                let (_, relay) = self.relays.iter_mut().find(|(n, _)| *n == next).unwrap();
                match relay.process(&bytes, EPOCH).unwrap() {
                    Processed::Forward { next_hop, packet } => {
                        (next, bytes) = (next_hop, packet.into_bytes());
                    }
                    Processed::Deliver { mailbox, message } => {
                        assert_eq!(next, out.dest.relay);
                        assert_eq!(message, out.payload);
                        self.routes.push((route.clone(), mailbox));
                        self.mailboxes.entry(mailbox).or_default().push(message);
                        break;
                    }
                    Processed::Reply { .. } => panic!("no reply blocks here"),
                }
            }
        }
    }

    /// `c` fetches (and empties) all its mailboxes.
    fn fetch(&mut self, c: &mut Client, now: u64) {
        let ids: Vec<MailboxId> = c.mailboxes().iter().map(|m| m.id()).collect();
        for id in ids {
            for p in self.mailboxes.remove(&id).unwrap_or_default() {
                c.handle_delivery(&mut self.rng, &id, &p, now).unwrap();
            }
        }
    }

    /// Runs both clients until quiet.
    fn settle(&mut self, a: &mut Client, b: &mut Client, now: u64) {
        for _ in 0..8 {
            self.flush(a);
            self.flush(b);
            self.fetch(a, now);
            self.fetch(b, now);
        }
    }
}

fn texts(c: &mut Client) -> Vec<(u64, String)> {
    let mut v = Vec::new();
    while let Some(e) = c.poll_event() {
        if let Event::Message { seq, text, .. } = e {
            v.push((seq, text));
        }
    }
    v
}

fn events(c: &mut Client) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn introduce(net: &mut Net, from: &mut Client, to: &mut Client) -> Address {
    let card = to.contact_card(&mut net.rng).unwrap();
    let card = ContactCard::from_bytes(&card.to_bytes()).unwrap();
    from.add_contact(&card)
}

#[test]
fn both_directions_in_order_exactly_once() {
    let mut net = Net::new(1);
    let mut alice = net.client(1);
    let mut bob = net.client(2);
    let b = introduce(&mut net, &mut alice, &mut bob);
    for i in 0..5 {
        alice
            .send_text(&mut net.rng, &b, &format!("a{i}"), 0)
            .unwrap();
    }
    net.settle(&mut alice, &mut bob, 0);
    // The handover takes sequence number 1, so texts are 2..=6.
    let got = texts(&mut bob);
    assert_eq!(
        got,
        (0..5).map(|i| (i + 2, format!("a{i}"))).collect::<Vec<_>>()
    );
    let a = alice.address();
    for i in 0..3 {
        bob.send_text(&mut net.rng, &a, &format!("b{i}"), 0)
            .unwrap();
    }
    net.settle(&mut alice, &mut bob, 0);
    let ev = events(&mut alice);
    let got: Vec<String> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Message { text, from, .. } => {
                assert_eq!(*from, b);
                Some(text.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(got, ["b0", "b1", "b2"]);
    // Alice saw delivery receipts for her handover and five texts.
    let delivered = ev
        .iter()
        .filter(|e| matches!(e, Event::Delivered { .. }))
        .count();
    assert_eq!(delivered, 6);
    assert!(alice.contacts().iter().all(|c| c.unacknowledged == 0));
    // Nothing is retried once acknowledged.
    alice.handle_timeout(&mut net.rng, 1_000_000).unwrap();
    assert!(alice.poll_outgoing().is_none());
}

#[test]
fn offline_recipient_gets_everything_later() {
    let mut net = Net::new(2);
    let mut alice = net.client(1);
    let mut bob = net.client(2);
    let b = introduce(&mut net, &mut alice, &mut bob);
    alice.send_text(&mut net.rng, &b, "first", 0).unwrap();
    net.settle(&mut alice, &mut bob, 0);
    assert_eq!(texts(&mut bob), [(2, "first".to_owned())]);
    // Bob goes offline: Alice's packets pile up in his mailbox.
    for i in 0..4 {
        alice
            .send_text(&mut net.rng, &b, &format!("while away {i}"), 10)
            .unwrap();
    }
    net.flush(&mut alice);
    let bob_mailbox = alice.contacts()[0].send_to.unwrap().mailbox;
    assert_eq!(net.mailboxes.get(&bob_mailbox).map(Vec::len), Some(4));
    // Retries while Bob is away are stored once more each; he must still see them once.
    alice
        .handle_timeout(&mut net.rng, 10 + crate::RETRY_INITIAL_MS)
        .unwrap();
    net.flush(&mut alice);
    assert_eq!(net.mailboxes.get(&bob_mailbox).map(Vec::len), Some(8));
    net.settle(&mut alice, &mut bob, 20_000);
    let got: Vec<String> = texts(&mut bob).into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        got,
        (0..4)
            .map(|i| format!("while away {i}"))
            .collect::<Vec<_>>()
    );
}

#[test]
fn lost_packet_is_retried_and_gap_shown_meanwhile() {
    let mut net = Net::new(3);
    let mut alice = net.client(1);
    let mut bob = net.client(2);
    let b = introduce(&mut net, &mut alice, &mut bob);
    alice.send_text(&mut net.rng, &b, "one", 0).unwrap();
    net.settle(&mut alice, &mut bob, 0);
    texts(&mut bob);
    alice.send_text(&mut net.rng, &b, "two", 100).unwrap();
    // The first transmission of "two" is lost.
    let two = alice.poll_outgoing().unwrap();
    alice.send_text(&mut net.rng, &b, "three", 100).unwrap();
    net.settle(&mut alice, &mut bob, 200);
    let ev = events(&mut bob);
    assert!(
        ev.contains(&Event::GapDetected {
            from: alice.address(),
            first: 3,
            last: 3
        }),
        "{ev:?}"
    );
    assert!(
        !ev.iter().any(|e| matches!(e, Event::Message { .. })),
        "three must wait for two"
    );
    // The retry (same ciphertext, same id) fills the gap.
    alice
        .handle_timeout(&mut net.rng, 100 + crate::RETRY_INITIAL_MS)
        .unwrap();
    net.settle(&mut alice, &mut bob, 3000);
    assert_eq!(
        texts(&mut bob),
        [(3, "two".to_owned()), (4, "three".to_owned())]
    );
    // A replayed copy of an old payload changes nothing.
    let ids: Vec<MailboxId> = bob.mailboxes().iter().map(|m| m.id()).collect();
    for id in &ids {
        let _ = bob.handle_delivery(&mut net.rng, id, &two.payload, 4000);
    }
    assert!(texts(&mut bob).is_empty());
}

#[test]
fn a_gap_that_never_fills_is_reported_lost_then_skipped() {
    let mut net = Net::new(4);
    let mut alice = net.client(1);
    let mut bob = net.client(2);
    let b = introduce(&mut net, &mut alice, &mut bob);
    alice.send_text(&mut net.rng, &b, "one", 0).unwrap();
    net.settle(&mut alice, &mut bob, 0);
    texts(&mut bob);
    alice.send_text(&mut net.rng, &b, "two", 0).unwrap();
    let _lost = alice.poll_outgoing().unwrap(); // never sent, and Alice is gone for good
    alice.send_text(&mut net.rng, &b, "three", 0).unwrap();
    net.flush(&mut alice);
    net.fetch(&mut bob, 1000);
    assert!(texts(&mut bob).is_empty());
    assert_eq!(bob.poll_timeout(), Some(1000 + crate::GAP_TIMEOUT_MS));
    bob.handle_timeout(&mut net.rng, 1000 + crate::GAP_TIMEOUT_MS)
        .unwrap();
    let ev = events(&mut bob);
    let a = alice.address();
    let lost = ev.iter().position(|e| {
        *e == Event::MessagesLost {
            from: a,
            first: 3,
            last: 3,
        }
    });
    let three = ev
        .iter()
        .position(|e| matches!(e, Event::Message { seq: 4, .. }));
    assert!(lost.is_some() && three.is_some() && lost < three, "{ev:?}");
}

/// A text whose gap was reported lost (the reorder buffer overflowed) that arrives late is
/// shown then, once, and survives a snapshot; it is not acknowledged and dropped.
#[test]
fn a_text_reported_lost_that_arrives_late_is_shown_once() {
    let mut net = Net::new(9);
    let mut alice = net.client(1);
    let mut bob = net.client(2);
    let b = introduce(&mut net, &mut alice, &mut bob);
    alice.send_text(&mut net.rng, &b, "one", 0).unwrap();
    net.settle(&mut alice, &mut bob, 0);
    assert_eq!(texts(&mut bob).len(), 1);
    alice.send_text(&mut net.rng, &b, "late", 0).unwrap();
    let held = alice.poll_outgoing().unwrap();
    // More texts than the reorder buffer holds arrive before the held one.
    for i in 0..=crate::MAX_REORDER {
        alice
            .send_text(&mut net.rng, &b, &format!("n{i}"), 0)
            .unwrap();
    }
    net.flush(&mut alice);
    net.fetch(&mut bob, 10);
    let ev = events(&mut bob);
    let a = alice.address();
    assert!(
        ev.contains(&Event::MessagesLost {
            from: a,
            first: 3,
            last: 3
        }),
        "{ev:?}"
    );
    let shown = ev
        .iter()
        .filter(|e| matches!(e, Event::Message { .. }))
        .count();
    assert_eq!(shown, crate::MAX_REORDER + 1);
    // Bob's state is saved and restored before the late text arrives.
    let key = [7u8; 32];
    let snap = bob.snapshot(&mut net.rng, &key).unwrap();
    let mut bob = Client::restore(&snap, &key).unwrap();
    let id = held.dest.mailbox;
    bob.handle_delivery(&mut net.rng, &id, &held.payload, 20)
        .unwrap();
    assert_eq!(texts(&mut bob), vec![(3, "late".to_string())]);
    // The same text again (a retry) is not shown twice.
    let _ = bob.handle_delivery(&mut net.rng, &id, &held.payload, 30);
    assert!(texts(&mut bob).is_empty());
}

#[test]
fn two_contacts_write_to_mailboxes_that_share_nothing() {
    let mut net = Net::new(5);
    let mut alice = net.client(1);
    let mut carol = net.client(3);
    let mut bob = net.client(2);
    let b1 = introduce(&mut net, &mut alice, &mut bob);
    let b2 = introduce(&mut net, &mut carol, &mut bob);
    alice.send_text(&mut net.rng, &b1, "from alice", 0).unwrap();
    carol.send_text(&mut net.rng, &b2, "from carol", 0).unwrap();
    net.settle(&mut alice, &mut bob, 0);
    net.settle(&mut carol, &mut bob, 0);
    assert_eq!(texts(&mut bob).len(), 2);
    net.routes.clear();
    alice.send_text(&mut net.rng, &b1, "later a", 0).unwrap();
    carol.send_text(&mut net.rng, &b2, "later c", 0).unwrap();
    net.flush(&mut alice);
    net.flush(&mut carol);
    let (ra, rc) = (&net.routes[0], &net.routes[1]);
    let contact = bob.contact_mailbox().id();
    // Later messages go to two fresh mailboxes, neither the published contact mailbox.
    assert_ne!(ra.1, rc.1);
    assert_ne!(ra.1, contact);
    assert_ne!(rc.1, contact);
    // Each mailbox id is the hash of its own fresh key, not of Bob's identity key.
    let keys: HashSet<[u8; 32]> = bob
        .mailboxes()
        .iter()
        .map(|m| m.public_key().to_bytes())
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(!keys.contains(&bob.identity_key().to_bytes()));
    // What a relay could compare: mailbox ids and packet bytes. Packets are fixed size and
    // the payloads differ entirely (the ratchet ciphertexts of two sessions).
    let pa = net.mailboxes[&ra.1].last().unwrap().clone();
    let pc = net.mailboxes[&rc.1].last().unwrap().clone();
    assert_ne!(pa, pc);
    assert!(pa[1..].windows(16).all(|w| !pc.windows(16).any(|x| x == w)));
}

#[test]
fn card_travels_through_a_blinded_dht_record() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let mut bob = Client::new(&mut rng, NodeId::from_bytes([2; 32]), vec![]);
    let now = 1_700_000_000_000;
    let record = bob.card_record(&mut rng, now, 1).unwrap();
    let locator = zentalk_dht::record::PrekeyLocator::new(
        &bob.identity_key(),
        zentalk_dht::record::prekey_period(now),
    )
    .unwrap();
    assert_eq!(record.key, locator.key());
    // The record is signed by the blinded key, not the identity key.
    assert_ne!(record.signer, bob.identity_key().to_bytes());
    let card = ContactCard::from_bytes(&locator.open(&record, now).unwrap()).unwrap();
    assert_eq!(card.mailbox, bob.contact_mailbox().addr());
    assert_eq!(card.bundle.identity_key, bob.identity_key());
}

#[test]
fn errors_for_unknown_contacts_and_long_texts() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut a = Client::new(&mut rng, NodeId::from_bytes([2; 32]), vec![]);
    let nobody = Address::from_bytes([9; 32]);
    assert!(matches!(
        a.send_text(&mut rng, &nobody, "x", 0),
        Err(ClientError::UnknownContact)
    ));
    assert!(matches!(
        a.send_text(&mut rng, &nobody, &"x".repeat(crate::MAX_TEXT_LEN + 1), 0),
        Err(ClientError::TextTooLong { .. })
    ));
    let mb = a.contact_mailbox().id();
    assert!(a.handle_delivery(&mut rng, &mb, &[], 0).is_err());
    assert!(a.handle_delivery(&mut rng, &mb, &[1, 2, 3], 0).is_err());
    assert!(matches!(
        a.handle_delivery(&mut rng, &MailboxId::from_bytes([0; 32]), &[1], 0),
        Err(ClientError::UnknownContact)
    ));
}

#[test]
fn mailbox_key_debug_is_redacted() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let m = crate::MailboxKey::generate(&mut rng, NodeId::from_bytes([1; 32]));
    let d = format!("{m:?}");
    assert!(!d.contains(&hex(&m.seed()[..])), "{d}");
    assert!(d.contains("redacted"));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn state_survives_the_encrypted_store() {
    use zentalk_storage::client::{ClientStore, KdfParams};
    let mut net = Net::new(9);
    let mut alice = net.client(1);
    let mut bob = net.client(2);
    let b = introduce(&mut net, &mut alice, &mut bob);
    alice.send_text(&mut net.rng, &b, "before", 0).unwrap();
    net.settle(&mut alice, &mut bob, 0);
    assert_eq!(texts(&mut bob).len(), 1);
    // An unacknowledged message at save time is still retried after the restore.
    alice.send_text(&mut net.rng, &b, "in flight", 0).unwrap();
    let in_flight = alice.poll_outgoing().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.db");
    let store = ClientStore::create(&path, b"pw", KdfParams::TEST)
        .await
        .unwrap();
    alice.save(&store, &mut net.rng, 1).await.unwrap();
    store.close().await;
    let raw = std::fs::read(&path).unwrap();
    assert!(!raw.windows(9).any(|w| w == b"in flight"));
    assert!(ClientStore::open(&path, b"wrong").await.is_err());
    let store = ClientStore::open(&path, b"pw").await.unwrap();
    let mut alice2 = Client::load(&store).await.unwrap().unwrap();
    assert_eq!(alice2.address(), alice.address());
    assert_eq!(alice2.contacts(), alice.contacts());
    alice2
        .handle_timeout(&mut net.rng, crate::RETRY_INITIAL_MS)
        .unwrap();
    let retry = alice2.poll_outgoing().unwrap();
    assert_eq!(retry.payload, in_flight.payload);
    bob.handle_delivery(&mut net.rng, &retry.dest.mailbox, &retry.payload, 5)
        .unwrap();
    alice2.send_text(&mut net.rng, &b, "after", 10).unwrap();
    net.settle(&mut alice2, &mut bob, 10);
    let got: Vec<String> = texts(&mut bob).into_iter().map(|(_, t)| t).collect();
    assert_eq!(got, ["in flight", "after"]);
    // Snapshots refuse garbage and a wrong pickle key.
    assert!(matches!(
        Client::restore(&[1, 2, 3], &[0; 32]),
        Err(ClientError::Snapshot(_))
    ));
    let snap = alice2.snapshot(&mut net.rng, &[1; 32]).unwrap();
    assert!(Client::restore(&snap, &[2; 32]).is_err());
    assert!(Client::restore(&snap, &[1; 32]).is_ok());
}

#[test]
fn restored_stale_state_repairs_the_session_once() {
    let mut net = Net::new(10);
    let mut alice = net.client(1);
    let mut bob = net.client(2);
    let b = introduce(&mut net, &mut alice, &mut bob);
    let a = alice.address();
    alice.send_text(&mut net.rng, &b, "hello", 0).unwrap();
    net.settle(&mut alice, &mut bob, 0);
    // Alice backs up here.
    let backup = alice.snapshot(&mut net.rng, &[3; 32]).unwrap();
    // The conversation goes on (several ratchet steps both ways).
    for i in 0..3 {
        bob.send_text(&mut net.rng, &a, &format!("b{i}"), 0)
            .unwrap();
        net.settle(&mut alice, &mut bob, 0);
        alice
            .send_text(&mut net.rng, &b, &format!("a{i}"), 0)
            .unwrap();
        net.settle(&mut alice, &mut bob, 0);
    }
    events(&mut alice);
    events(&mut bob);
    // Alice restores the stale backup: her session is behind Bob's.
    let mut alice = Client::restore(&backup, &[3; 32]).unwrap();
    for i in 0..3 {
        bob.send_text(&mut net.rng, &a, &format!("after restore {i}"), 100)
            .unwrap();
    }
    net.flush(&mut bob);
    let ids: Vec<MailboxId> = alice.mailboxes().iter().map(|m| m.id()).collect();
    let mut failures = 0;
    for id in &ids {
        for p in net.mailboxes.remove(id).unwrap_or_default() {
            if alice.handle_delivery(&mut net.rng, id, &p, 100).is_err() {
                failures += 1;
            }
        }
    }
    assert_eq!(failures, 3);
    let ev = events(&mut alice);
    let started = ev
        .iter()
        .filter(|e| matches!(e, Event::SessionRepairStarted { with } if *with == b))
        .count();
    assert_eq!(started, 1, "{ev:?}");
    // Bob gets the reset, re-encrypts what Alice has not acknowledged; both sides recover.
    net.settle(&mut alice, &mut bob, 200);
    let bev = events(&mut bob);
    assert!(bev.contains(&Event::SessionReset { from: a }), "{bev:?}");
    // Bob's messages that the restored backup never saw show up as a gap, then as lost;
    // never silently skipped. After that the three messages sent after the restore arrive.
    let ev = events(&mut alice);
    assert!(
        ev.iter().any(|e| matches!(e, Event::GapDetected { .. })),
        "{ev:?}"
    );
    alice
        .handle_timeout(&mut net.rng, 200 + crate::GAP_TIMEOUT_MS)
        .unwrap();
    let ev = events(&mut alice);
    assert!(
        ev.iter().any(|e| matches!(e, Event::MessagesLost { .. })),
        "{ev:?}"
    );
    let got: Vec<String> = ev
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { text, .. } => Some(text),
            _ => None,
        })
        .collect();
    for i in 0..3 {
        assert!(got.contains(&format!("after restore {i}")), "{got:?}");
    }
    alice.send_text(&mut net.rng, &b, "recovered", 300).unwrap();
    net.settle(&mut alice, &mut bob, 300);
    let got: Vec<String> = texts(&mut bob).into_iter().map(|(_, t)| t).collect();
    assert_eq!(got, ["recovered"]);
    // No second repair: nothing more is pending and further timeouts send nothing new.
    alice.handle_timeout(&mut net.rng, 10_000_000).unwrap();
    bob.handle_timeout(&mut net.rng, 10_000_000).unwrap();
    let ev = events(&mut alice);
    assert!(
        !ev.iter()
            .any(|e| matches!(e, Event::SessionRepairStarted { .. }))
    );
}

#[test]
fn read_receipts_typing_and_presence_travel_encrypted() {
    let mut net = Net::new(11);
    let mut alice = net.client(1);
    let mut bob = net.client(2);
    let b = introduce(&mut net, &mut alice, &mut bob);
    let a = alice.address();
    let id = alice.send_text(&mut net.rng, &b, "read me", 0).unwrap();
    net.settle(&mut alice, &mut bob, 0);
    events(&mut alice);
    events(&mut bob);
    bob.send_control(&mut net.rng, &a, crate::Body::Typing(true))
        .unwrap();
    bob.send_control(&mut net.rng, &a, crate::Body::ReadReceipt(vec![id]))
        .unwrap();
    bob.send_control(&mut net.rng, &a, crate::Body::Presence(false))
        .unwrap();
    net.settle(&mut alice, &mut bob, 0);
    let ev = events(&mut alice);
    assert!(
        ev.contains(&Event::Typing {
            from: b,
            typing: true
        }),
        "{ev:?}"
    );
    assert!(
        ev.contains(&Event::Read {
            by: b,
            ids: vec![id]
        }),
        "{ev:?}"
    );
    assert!(
        ev.contains(&Event::Presence {
            from: b,
            online: false
        }),
        "{ev:?}"
    );
    // Control messages are not sequenced and not retried.
    assert!(alice.contacts().iter().all(|c| c.unacknowledged == 0));
    bob.handle_timeout(&mut net.rng, 1_000_000).unwrap();
    assert!(bob.poll_outgoing().is_none());
    // A sequenced kind is refused as a control message.
    assert!(
        bob.send_control(&mut net.rng, &a, crate::Body::SessionReset)
            .is_err()
    );
}
