//! The driver against the real thing, in one process: a UDP DHT on 127.0.0.1, five
//! zentalk-relay relays (TCP + Noise, SQLite mailboxes, onion forwarding, descriptors
//! published in and found through the DHT) and clients whose engine state and history live in
//! encrypted SQLite stores in a temp directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::{
    Net, PATIENCE, add, dht_node, event, event_until, new_store, reopen, restart_driver, seeded,
    shutdown_all, start_driver,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use tokio::sync::broadcast;
use zentalk_client::driver::{HistoryMessage, MessageStatus};
use zentalk_client::{
    Client, DriverConfig, DriverError, DriverEvent, DriverHandle, DriverOptions, start_subscribed,
    start_with,
};
use zentalk_crypto::{Address, NodeId};
use zentalk_relay::Limits;

/// The common options, and a relay found down stays so for 30 s.
fn options(rng: &mut ChaCha20Rng) -> DriverOptions {
    DriverOptions {
        relay_down_for: Duration::from_secs(30),
        ..common::options(rng)
    }
}

/// Collects the texts of `Message` events from `from` until `n` arrived.
async fn texts(rx: &mut broadcast::Receiver<DriverEvent>, from: Address, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(DriverEvent::Message { from: f, text, .. })) if f == from => got.push(text),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("events: {e}"),
            Err(_) => panic!("only {} of {n} texts arrived: {got:?}", got.len()),
        }
    }
    got
}

/// Waits until `pending()` is 0 (every message acknowledged by its peer).
async fn settled(d: &DriverHandle) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while d.pending().await.unwrap() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "still pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Appends to `got` every text from `from` announced until `quiet` passes without one.
async fn no_more_texts_after(
    rx: &mut broadcast::Receiver<DriverEvent>,
    from: Address,
    got: &mut Vec<String>,
    quiet: Duration,
) {
    while let Ok(r) = tokio::time::timeout(quiet, rx.recv()).await {
        match r {
            Ok(DriverEvent::Message { from: f, text, .. }) if f == from => got.push(text),
            Ok(_) => {}
            Err(e) => panic!("events: {e}"),
        }
    }
}

/// Every further text from `from` within `quiet` is a duplicate or an extra: none may come.
async fn no_more_texts(rx: &mut broadcast::Receiver<DriverEvent>, from: Address, quiet: Duration) {
    let deadline = tokio::time::Instant::now() + quiet;
    while let Ok(r) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if let Ok(DriverEvent::Message { from: f, text, .. }) = r {
            assert_ne!(f, from, "unexpected or duplicate text {text:?}");
        }
    }
}

async fn history(d: &DriverHandle, peer: Address) -> Vec<HistoryMessage> {
    d.messages(peer, None, 500).await.unwrap()
}

/// Polls the history of `d` with `peer` every 20 ms until `done` holds of it, within
/// [`PATIENCE`] (else fails with `what` and the history); returns it.
async fn history_when(
    d: &DriverHandle,
    peer: Address,
    what: &str,
    done: impl Fn(&[HistoryMessage]) -> bool,
) -> Vec<HistoryMessage> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let h = history(d, peer).await;
        if done(&h) {
            return h;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {h:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Alice (home relay 0) and Bob (home relay 1), their mailboxes on `keep`, started in that
/// order on new stores `alice.db` in `dir` and `bob_path`.
async fn alice_and_bob(
    net: &Net,
    dir: &Path,
    bob_path: &Path,
    keep: &[NodeId],
    rng: &mut ChaCha20Rng,
    opts: impl Fn(&mut ChaCha20Rng) -> DriverOptions,
) -> (DriverHandle, DriverHandle) {
    let n = &net.nodes;
    let alice_client = Client::new(rng, n[0], keep.to_vec());
    let alice = start_driver(net, alice_client, &dir.join("alice.db"), rng, &opts).await;
    let bob_client = Client::new(rng, n[1], keep.to_vec());
    let bob = start_driver(net, bob_client, bob_path, rng, &opts).await;
    (alice, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_drivers_exchange_by_push_with_history_unread_and_receipts() {
    let mut rng = seeded(7001);
    let net = Net::start(5, &mut rng).await;
    let tmp = tempfile::tempdir().unwrap();
    let n = &net.nodes;
    let alice_client = Client::new(&mut rng, n[0], n.clone());
    let bob_client = Client::new(&mut rng, n[1], n.clone());
    let alice = start_driver(
        &net,
        alice_client,
        &tmp.path().join("alice.db"),
        &mut rng,
        options,
    )
    .await;
    let bob = start_driver(
        &net,
        bob_client,
        &tmp.path().join("bob.db"),
        &mut rng,
        options,
    )
    .await;
    let mut alice_rx = alice.subscribe();
    let mut bob_rx = bob.subscribe();

    // Unknown peer: refused until added.
    assert!(matches!(
        alice.send_text(bob.address(), "x".into()).await,
        Err(DriverError::UnknownContact)
    ));
    let b = add(&alice, &bob).await;
    assert_eq!(b, bob.address());
    let a = alice.address();

    let sent: Vec<String> = (0..6).map(|i| format!("alice {i}")).collect();
    for t in &sent {
        alice.send_text(b, t.clone()).await.unwrap();
    }
    assert_eq!(texts(&mut bob_rx, a, 6).await, sent);
    let replies: Vec<String> = (0..4).map(|i| format!("bob {i}")).collect();
    for t in &replies {
        bob.send_text(a, t.clone()).await.unwrap();
    }
    assert_eq!(texts(&mut alice_rx, b, 4).await, replies);
    settled(&alice).await;
    settled(&bob).await;
    no_more_texts(&mut bob_rx, a, Duration::from_millis(300)).await;
    no_more_texts(&mut alice_rx, b, Duration::from_millis(100)).await;

    // History on both sides: every text once, newest first, with statuses and sequence
    // numbers; outgoing ones delivered.
    let h = history(&alice, b).await;
    assert_eq!(h.len(), 10);
    let mut chrono: Vec<&HistoryMessage> = h.iter().rev().collect();
    chrono.sort_by_key(|m| (m.outgoing, m.seq));
    let out: Vec<&str> = chrono
        .iter()
        .filter(|m| m.outgoing)
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(out, sent.iter().map(String::as_str).collect::<Vec<_>>());
    for m in h.iter().filter(|m| m.outgoing) {
        assert_eq!(m.status, MessageStatus::Delivered, "{m:?}");
        assert!(m.seq >= 1);
    }
    let incoming: Vec<u64> = h.iter().filter(|m| !m.outgoing).map(|m| m.seq).collect();
    assert_eq!(incoming.len(), 4);
    assert!(h.iter().filter(|m| !m.outgoing).all(|m| !m.read));

    // Pages of 4 with cursors: 4 + 4 + 2, no overlap, same order as one big page.
    let p1 = alice.messages(b, None, 4).await.unwrap();
    let p2 = alice.messages(b, Some(p1[3].cursor), 4).await.unwrap();
    let p3 = alice.messages(b, Some(p2[3].cursor), 4).await.unwrap();
    assert_eq!((p1.len(), p2.len(), p3.len()), (4, 4, 2));
    let joined: Vec<_> = p1.iter().chain(&p2).chain(&p3).map(|m| m.id).collect();
    assert_eq!(joined, h.iter().map(|m| m.id).collect::<Vec<_>>());
    assert!(matches!(
        alice.messages(b, None, 0).await,
        Err(DriverError::PageLimit { .. })
    ));

    // Unread counts, then mark read: the count drops to 0 and Bob sees read receipts.
    let convs = alice.conversations().await.unwrap();
    assert_eq!(convs.len(), 1);
    assert_eq!(convs[0].peer, b);
    assert_eq!(convs[0].unread, 4);
    assert_eq!(convs[0].last_text.as_deref(), Some("bob 3"));
    let bob_convs = bob.conversations().await.unwrap();
    assert_eq!(bob_convs[0].unread, 6);
    alice.mark_read(b).await.unwrap();
    assert_eq!(alice.conversations().await.unwrap()[0].unread, 0);
    history_when(&bob, a, "no read receipts", |bh| {
        bh.iter()
            .filter(|m| m.outgoing)
            .all(|m| m.status == MessageStatus::Read)
    })
    .await;

    // Typing reaches the peer as an event.
    alice.set_typing(b, true).await.unwrap();
    let typing = event(&mut bob_rx, "no typing event", |e| match e {
        DriverEvent::Typing { from, typing } => Some((from, typing)),
        _ => None,
    })
    .await;
    assert_eq!(typing, (a, true));

    // Concurrent senders (their calls share saves): every text arrives once, in the order the
    // engine numbered them.
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..20 {
        let alice = alice.clone();
        calls.spawn(async move { alice.send_text(b, format!("c{i}")).await.unwrap() });
    }
    while let Some(r) = calls.join_next().await {
        r.unwrap();
    }
    let got = texts(&mut bob_rx, a, 20).await;
    let mut by_seq: Vec<HistoryMessage> = history(&alice, b)
        .await
        .into_iter()
        .filter(|m| m.outgoing && m.text.starts_with('c'))
        .collect();
    by_seq.sort_by_key(|m| m.seq);
    let expected: Vec<String> = by_seq.into_iter().map(|m| m.text).collect();
    assert_eq!(got, expected);
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 20);
    settled(&alice).await;

    // Presence goes to every contact with a session.
    assert_eq!(alice.set_presence(true).await.unwrap(), 1);
    let presence = event(&mut bob_rx, "no presence event", |e| match e {
        DriverEvent::Presence { from, online } => Some((from, online)),
        _ => None,
    })
    .await;
    assert_eq!(presence, (a, true));

    // Events serialize with string ids and addresses (what the local API sends as JSON).
    let text = serialized_text(&DriverEvent::Sent {
        to: b,
        id: [0xab; 16],
    });
    assert!(
        text.contains(&b.to_string()) && text.contains(&"ab".repeat(16)),
        "{text}"
    );

    alice.shutdown().await.unwrap();
    bob.shutdown().await.unwrap();
    assert!(matches!(alice.pending().await, Err(DriverError::Stopped)));
    net.shutdown().await;
}

/// The event through its `Serialize` impl (postcard: strings appear verbatim in the bytes).
fn serialized_text(e: &DriverEvent) -> String {
    String::from_utf8_lossy(&postcard::to_allocvec(e).unwrap()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_driver_finds_everything_sent_while_it_was_down() {
    let mut rng = seeded(7002);
    let net = Net::start(5, &mut rng).await;
    let tmp = tempfile::tempdir().unwrap();
    let n = &net.nodes;
    let bob_path = tmp.path().join("bob.db");
    let (alice, bob) = alice_and_bob(&net, tmp.path(), &bob_path, n, &mut rng, options).await;
    let mut bob_rx = bob.subscribe();
    let b = add(&alice, &bob).await;
    let a = alice.address();
    alice.send_text(b, "before 0".into()).await.unwrap();
    alice.send_text(b, "before 1".into()).await.unwrap();
    assert_eq!(texts(&mut bob_rx, a, 2).await, ["before 0", "before 1"]);
    settled(&alice).await;
    bob.shutdown().await.unwrap();

    // Bob is gone: Alice writes; her messages wait in Bob's mailbox (unacknowledged, so
    // her driver keeps retrying them).
    let during: Vec<String> = (0..4).map(|i| format!("during {i}")).collect();
    for t in &during {
        alice.send_text(b, t.clone()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(alice.pending().await.unwrap(), 4);

    // Bob comes back from his store alone (no other state) and finds everything, once.
    let (store, client) = reopen(&bob_path).await;
    assert_eq!(client.address(), b);
    let (bob, mut bob_rx) =
        start_subscribed(client, store, net.config(&mut rng).await, options(&mut rng))
            .await
            .unwrap();
    assert_eq!(texts(&mut bob_rx, a, 4).await, during);
    let h = history_when(&bob, a, "history", |h| {
        h.iter().filter(|m| !m.outgoing).count() >= 6
    })
    .await;
    let incoming: Vec<&str> = h
        .iter()
        .rev()
        .filter(|m| !m.outgoing)
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(
        incoming,
        [
            "before 0", "before 1", "during 0", "during 1", "during 2", "during 3"
        ]
    );
    settled(&alice).await;
    no_more_texts(&mut bob_rx, a, Duration::from_millis(800)).await;
    assert_eq!(history(&bob, a).await.len(), 6);
    assert_eq!(bob.conversations().await.unwrap()[0].unread, 6);
    // And the restarted Bob can still answer in the same session.
    bob.send_text(a, "back".into()).await.unwrap();
    settled(&bob).await;
    shutdown_all(&[&alice, &bob], net).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_stopped_mid_run_messages_take_other_routes_exactly_once() {
    let mut rng = seeded(7003);
    let mut net = Net::start(5, &mut rng).await;
    let tmp = tempfile::tempdir().unwrap();
    let n = net.nodes.clone();
    // Mailboxes only on relays 0 and 1; relays 2..4 only forward.
    let keep = vec![n[0], n[1]];
    let bob_path = tmp.path().join("bob.db");
    let (alice, bob) = alice_and_bob(&net, tmp.path(), &bob_path, &keep, &mut rng, options).await;
    let mut alice_rx = alice.subscribe();
    let mut bob_rx = bob.subscribe();
    let b = add(&alice, &bob).await;
    let a = alice.address();
    alice.send_text(b, "m0".into()).await.unwrap();
    assert_eq!(texts(&mut bob_rx, a, 1).await, ["m0"]);
    settled(&alice).await;

    // Relay 4 stops; its descriptor stays in the DHT, so routes still name it until the
    // driver finds it down.
    net.stop_relay(4).await;
    let stopped = n[4];
    let sent: Vec<String> = (1..=20).map(|i| format!("m{i}")).collect();
    for t in &sent {
        alice.send_text(b, t.clone()).await.unwrap();
    }
    assert_eq!(texts(&mut bob_rx, a, 20).await, sent);
    settled(&alice).await;
    no_more_texts(&mut bob_rx, a, Duration::from_millis(500)).await;
    let mut downs: HashMap<NodeId, usize> = HashMap::new();
    while let Ok(e) = alice_rx.try_recv() {
        if let DriverEvent::RelayDown { relay, .. } = e {
            *downs.entry(relay).or_default() += 1;
        }
    }
    assert_eq!(downs.keys().collect::<Vec<_>>(), [&stopped], "{downs:?}");
    let h = history(&bob, a).await;
    assert_eq!(h.len(), 21);
    shutdown_all(&[&alice, &bob], net).await;
}

/// Sends `texts` while the receiver's driver runs in its own runtime, drops that runtime
/// abruptly (every task cut at its next await, nothing flushed: what `kill -9` leaves), then
/// restarts the receiver from its store. Every text is in the history exactly once, in order,
/// and no text is announced twice across the crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_killed_mid_stream_loses_nothing_and_sees_nothing_twice() {
    let mut rng = seeded(7004);
    let net = Net::start(5, &mut rng).await;
    let tmp = tempfile::tempdir().unwrap();
    let n = net.nodes.clone();
    let bob_path = tmp.path().join("bob.db");
    let alice = start_driver(
        &net,
        Client::new(&mut rng, n[0], n.clone()),
        &tmp.path().join("alice.db"),
        &mut rng,
        options,
    )
    .await;
    let a = alice.address();
    // Bob's driver in a runtime of its own, on its own thread.
    let mut bob_rt = Some(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap(),
    );
    let bob_client = Client::new(&mut rng, n[1], n.clone());
    let (bob_config, bob_options) = (net.config(&mut rng).await, options(&mut rng));
    let bob_store = new_store(&bob_path).await;
    let (bob, mut bob_rx) = bob_rt
        .as_ref()
        .unwrap()
        .spawn(async move {
            start_subscribed(bob_client, bob_store, bob_config, bob_options)
                .await
                .unwrap()
        })
        .await
        .unwrap();
    let b = add(&alice, &bob).await;
    let sent: Vec<String> = (0..30).map(|i| format!("t{i}")).collect();
    let mut before = Vec::new();
    for (i, t) in sent.iter().enumerate() {
        alice.send_text(b, t.clone()).await.unwrap();
        if i == 9 {
            // Let some arrive, then kill Bob while the rest are in flight.
            before = texts(&mut bob_rx, a, 5).await;
            bob_rt.take().unwrap().shutdown_background();
        }
    }
    // Whatever Bob announced before dying is in his history (events go out after saving).
    while let Ok(e) = bob_rx.try_recv() {
        if let DriverEvent::Message { text, .. } = e {
            before.push(text);
        }
    }
    drop(bob);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (bob, mut bob_rx) = restart_driver(&net, &bob_path, &mut rng, options).await;
    // The history, which is what survives a crash, ends up with every text once, in order.
    let h = history_when(&bob, a, "history", |h| h.len() >= sent.len()).await;
    let incoming: Vec<String> = h.into_iter().rev().map(|m| m.text).collect();
    assert_eq!(incoming, sent);
    settled(&alice).await;
    // Events are announcements, not the record: a text saved just before the kill may never
    // be announced (the restarted engine knows it), but none is announced twice or out of
    // order.
    no_more_texts_after(&mut bob_rx, a, &mut before, Duration::from_millis(500)).await;
    let mut expected = sent.iter();
    for t in &before {
        assert!(
            expected.any(|s| s == t),
            "{t} twice or out of order in {before:?}"
        );
    }
    assert!(before.len() >= 5);
    shutdown_all(&[&alice, &bob], net).await;
}

/// Without held links (what `zentalk inbox` does): nothing arrives until `sync_now`, which
/// fetches, saves, acknowledges and sends the receipts; the card is republished on schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_mode_sync_now_and_card_republication() {
    let mut rng = seeded(7005);
    let mut net = Net::start(5, &mut rng).await;
    let tmp = tempfile::tempdir().unwrap();
    let n = net.nodes.clone();
    let alice = start_driver(
        &net,
        Client::new(&mut rng, n[0], n.clone()),
        &tmp.path().join("alice.db"),
        &mut rng,
        options,
    )
    .await;
    let mut bob_config = net.config(&mut rng).await;
    bob_config.hold_mailbox_links = false;
    let (bob, mut bob_rx) = start_subscribed(
        Client::new(&mut rng, n[1], n.clone()),
        new_store(&tmp.path().join("bob.db")).await,
        bob_config,
        DriverOptions {
            card_republish: Duration::from_millis(300),
            ..options(&mut rng)
        },
    )
    .await
    .unwrap();
    let b = add(&alice, &bob).await;
    let a = alice.address();
    for i in 0..3 {
        alice.send_text(b, format!("f{i}")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(history(&bob, a).await.is_empty(), "nothing without a sync");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut fetched = 0;
    loop {
        let r = bob.sync_now().await.unwrap();
        fetched += r.fetched;
        if history(&bob, a).await.len() == 3 && alice.pending().await.unwrap() == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "sync never settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fetched >= 3);
    assert_eq!(texts(&mut bob_rx, a, 3).await, ["f0", "f1", "f2"]);
    // Acknowledged: a further sync fetches nothing new from the contact mailbox.
    let r = bob.sync_now().await.unwrap();
    assert_eq!(r.refused, 0);
    assert!(history(&bob, a).await.len() == 3);
    let mut published = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while published < 2 {
        let stored_on = event_until(&mut bob_rx, deadline, "card not republished", |e| match e {
            DriverEvent::CardPublished { stored_on } => Some(stored_on),
            _ => None,
        })
        .await;
        assert!(stored_on > 0);
        published += 1;
    }
    // The relay of Bob's contact mailbox is gone: the sync still answers, counting it.
    net.stop_relay(1).await;
    let r = bob.sync_now().await.unwrap();
    assert!(r.mailboxes_unreachable >= 1, "{r:?}");
    shutdown_all(&[&alice, &bob], net).await;
}

/// The relay keeping Bob's mailboxes restarts (same keys and port, fresh onion keys): Bob's
/// link goes down and comes back by itself, the directory refresh picks up the new
/// descriptor, and Alice's retries arrive exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_relay_restart_link_reconnects_and_retries_arrive_once() {
    let mut rng = seeded(7006);
    let mut net = Net::start(5, &mut rng).await;
    let tmp = tempfile::tempdir().unwrap();
    let n = net.nodes.clone();
    let fast = |cfg: DriverConfig| DriverConfig {
        directory_refresh: Duration::from_millis(300),
        ..cfg
    };
    let alice = start_with(
        Client::new(&mut rng, n[0], vec![n[0]]),
        new_store(&tmp.path().join("alice.db")).await,
        fast(net.config(&mut rng).await),
        options(&mut rng),
    )
    .await
    .unwrap();
    let (bob, mut bob_rx) = start_subscribed(
        Client::new(&mut rng, n[1], vec![n[1]]),
        new_store(&tmp.path().join("bob.db")).await,
        fast(net.config(&mut rng).await),
        options(&mut rng),
    )
    .await
    .unwrap();
    let b = add(&alice, &bob).await;
    let a = alice.address();
    alice.send_text(b, "r0".into()).await.unwrap();
    assert_eq!(texts(&mut bob_rx, a, 1).await, ["r0"]);
    settled(&alice).await;

    net.stop_relay(1).await;
    let sent = ["r1", "r2", "r3"];
    for t in sent {
        alice.send_text(b, t.into()).await.unwrap();
    }
    // Down long enough for a new descriptor sequence (Unix seconds) and a few retries.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    net.restart_relay(1).await;
    let mut got = Vec::new();
    let (mut down, mut up) = (false, false);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got.len() < 3 {
        match tokio::time::timeout_at(deadline, bob_rx.recv()).await {
            Ok(Ok(DriverEvent::Message { from, text, .. })) if from == a => got.push(text),
            Ok(Ok(DriverEvent::LinkDown { relay, .. })) if relay == n[1] => down = true,
            Ok(Ok(DriverEvent::LinkUp { relay })) if relay == n[1] && down => up = true,
            Ok(Ok(_)) => {}
            other => panic!("after restart: {other:?}, got {got:?}"),
        }
    }
    assert_eq!(got, sent);
    assert!(down && up, "link state events: down {down}, up {up}");
    settled(&alice).await;
    no_more_texts(&mut bob_rx, a, Duration::from_millis(500)).await;
    assert_eq!(history(&bob, a).await.len(), 4);
    shutdown_all(&[&alice, &bob], net).await;
}

#[tokio::test]
async fn options_are_checked_and_the_seed_is_not_printed() {
    let mut rng = ChaCha20Rng::seed_from_u64(7007);
    let dht = dht_node(&mut rng).await;
    let tmp = tempfile::tempdir().unwrap();
    let relay = NodeId::from_bytes([3; 32]);
    let config = DriverConfig {
        dht,
        limits: Limits::default(),
        relays: vec![relay],
        directory_refresh: Duration::from_secs(30),
        hold_mailbox_links: false,
    };
    for bad in [
        DriverOptions {
            send_attempts: 0,
            ..DriverOptions::default()
        },
        DriverOptions {
            command_capacity: 0,
            ..DriverOptions::default()
        },
    ] {
        let r = start_with(
            Client::new(&mut rng, relay, vec![]),
            new_store(&tmp.path().join(format!("s{}.db", bad.send_attempts))).await,
            config.clone(),
            bad,
        )
        .await;
        assert!(matches!(r, Err(DriverError::Option { .. })), "{r:?}");
    }
    let o = DriverOptions {
        rng_seed: Some([0x5a; 32]),
        ..DriverOptions::default()
    };
    let dbg = format!("{o:?}");
    assert!(!dbg.contains("90") && !dbg.contains("5a"), "{dbg}");

    // A driver with no relay in the directory still answers; a text cannot be routed and
    // says so, and the history shows it `failed` (the engine keeps retrying it).
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let peer_client = Client::new(&mut rng, relay, vec![]);
    let card = zentalk_client::ContactCard::from_bytes(&{
        let mut p = peer_client;
        p.contact_card(&mut rng).unwrap().to_bytes()
    })
    .unwrap();
    let mut me = Client::new(&mut rng, relay, vec![]);
    let peer = me.add_contact(&card);
    let (d, mut rx) = start_subscribed(
        me,
        new_store(&tmp.path().join("lonely.db")).await,
        config,
        DriverOptions {
            rng_seed: Some(seed),
            publish_card: false,
            // An injected clock: the history takes its times from it.
            clock: std::sync::Arc::new(|| 1_700_000_000_123u64),
            ..DriverOptions::default()
        },
    )
    .await
    .unwrap();
    let id = d.send_text(peer, "into the void".into()).await.unwrap();
    loop {
        match tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .unwrap()
            .unwrap()
        {
            DriverEvent::SendFailed {
                id: Some(failed), ..
            } if failed == id => break,
            DriverEvent::MailboxCreated { .. } | DriverEvent::SendFailed { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    let h = history(&d, peer).await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].status, MessageStatus::Failed);
    assert_eq!(h[0].sent_ms, 1_700_000_000_123);
    // The text and the mailbox handover that opened the conversation.
    assert_eq!(d.pending().await.unwrap(), 2);
    assert!(matches!(
        d.messages(peer, None, 501).await,
        Err(DriverError::PageLimit {
            max: 500,
            found: 501
        })
    ));
    let stranger = Address::from_bytes([9; 32]);
    assert!(matches!(
        d.set_typing(stranger, true).await,
        Err(DriverError::UnknownContact)
    ));
    assert!(d.messages(stranger, None, 10).await.unwrap().is_empty());
    d.mark_read(stranger).await.unwrap();
    d.shutdown().await.unwrap();
    assert!(matches!(d.shutdown().await, Err(DriverError::Stopped)));
}

fn copy_store(from: &Path, to: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut f = from.as_os_str().to_owned();
        f.push(suffix);
        let mut t = to.as_os_str().to_owned();
        t.push(suffix);
        if std::path::Path::new(&f).exists() {
            std::fs::copy(&f, &t).unwrap();
        }
    }
}

/// Bob restores a stale copy of his store (his session is behind Alice's). Alice's next
/// messages do not decrypt; Bob's driver, which has no card of Alice (she wrote first),
/// fetches it from the DHT by itself and repairs the session once; Alice re-encrypts what
/// Bob has not acknowledged, and the conversation goes on. What the stale copy never saw is
/// reported lost, not skipped silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_store_restored_session_repairs_through_the_dht_card() {
    let mut rng = seeded(7008);
    let net = Net::start(5, &mut rng).await;
    let tmp = tempfile::tempdir().unwrap();
    let n = net.nodes.clone();
    let bob_path = tmp.path().join("bob.db");
    let backup = tmp.path().join("bob-backup.db");
    let opts = |rng: &mut ChaCha20Rng| DriverOptions {
        gap_timeout: Duration::from_millis(500),
        ..options(rng)
    };
    let (alice, mut alice_rx) = start_subscribed(
        Client::new(&mut rng, n[0], n.clone()),
        new_store(&tmp.path().join("alice.db")).await,
        net.config(&mut rng).await,
        opts(&mut rng),
    )
    .await
    .unwrap();
    let bob = start_driver(
        &net,
        Client::new(&mut rng, n[1], n.clone()),
        &bob_path,
        &mut rng,
        opts,
    )
    .await;
    let mut bob_rx = bob.subscribe();
    let b = add(&alice, &bob).await;
    let a = alice.address();
    alice.send_text(b, "s0".into()).await.unwrap();
    assert_eq!(texts(&mut bob_rx, a, 1).await, ["s0"]);
    bob.send_text(a, "r0".into()).await.unwrap();
    assert_eq!(texts(&mut alice_rx, b, 1).await, ["r0"]);
    settled(&alice).await;
    settled(&bob).await;
    bob.shutdown().await.unwrap();
    copy_store(&bob_path, &backup);

    // The conversation goes on from the live store: several ratchet steps both ways.
    let (bob, mut bob_rx) = restart_driver(&net, &bob_path, &mut rng, opts).await;
    for i in 0..2 {
        alice.send_text(b, format!("a{i}")).await.unwrap();
        assert_eq!(texts(&mut bob_rx, a, 1).await, [format!("a{i}")]);
        bob.send_text(a, format!("b{i}")).await.unwrap();
        assert_eq!(texts(&mut alice_rx, b, 1).await, [format!("b{i}")]);
    }
    settled(&alice).await;
    settled(&bob).await;
    bob.shutdown().await.unwrap();

    // Bob restores the stale copy.
    let (bob, mut bob_rx) = restart_driver(&net, &backup, &mut rng, opts).await;
    let after: Vec<String> = (0..3).map(|i| format!("after {i}")).collect();
    for t in &after {
        alice.send_text(b, t.clone()).await.unwrap();
    }
    let (mut needs_card, mut repair, mut lost) = (0, 0, false);
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got.len() < after.len() {
        match tokio::time::timeout_at(deadline, bob_rx.recv()).await {
            Ok(Ok(DriverEvent::Message { from, text, .. })) if from == a => got.push(text),
            Ok(Ok(DriverEvent::RepairNeedsCard { address })) if address == a => needs_card += 1,
            Ok(Ok(DriverEvent::SessionRepairStarted { with })) if with == a => repair += 1,
            Ok(Ok(DriverEvent::MessagesLost { from, .. })) if from == a => lost = true,
            Ok(Ok(_)) => {}
            other => panic!("bob after restore: {other:?}, got {got:?}"),
        }
    }
    assert_eq!(got, after);
    assert_eq!((needs_card, repair), (1, 1));
    assert!(lost, "what the stale copy never saw is reported lost");
    event(&mut alice_rx, "alice never saw the reset", |e| match e {
        DriverEvent::SessionReset { from } if from == b => Some(()),
        _ => None,
    })
    .await;
    bob.send_text(a, "recovered".into()).await.unwrap();
    assert_eq!(texts(&mut alice_rx, b, 1).await, ["recovered"]);
    settled(&alice).await;
    settled(&bob).await;
    // One repair only.
    no_more_texts(&mut bob_rx, a, Duration::from_millis(500)).await;
    shutdown_all(&[&alice, &bob], net).await;
}
