//! Forwarding, delivery, mailbox access and store-nothing mode over real TCP on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use zentalk_crypto::hash::blake2b_256;
use zentalk_crypto::{IdentityKeyPair, IdentityPublicKey, NodeId, Signature, X25519Secret};
use zentalk_onion::{Hop, MailboxId, build_packet};
use zentalk_relay::epoch::epoch_at;
use zentalk_relay::link::{self, Link};
use zentalk_relay::service::{TRANSIT_RECEIPT_CONTEXT, mailbox_auth_message, message_id_for};
use zentalk_relay::{
    Limits, Peer, Relay, RelayConfig, RelayHandle, RelayKeys, ShutdownReport, StaticDirectory,
};
use zentalk_wire::proto::{self, ErrorCode};
use zentalk_wire::{Flags, Frame, MessageId, MessageType, WireMessage};

const SEED: u64 = 0x006e_6574_776f_726b;

struct Node {
    handle: RelayHandle,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<ShutdownReport>,
    _dir: tempfile::TempDir,
}

async fn start(seed: u64, directory: &Arc<StaticDirectory>, store_nothing: bool) -> Node {
    start_at(
        seed,
        directory,
        store_nothing,
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
}

async fn start_at(
    seed: u64,
    directory: &Arc<StaticDirectory>,
    store_nothing: bool,
    listen_addr: std::net::SocketAddr,
) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        listen_addr,
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        mailbox_path: dir.path().join("mailbox.sqlite"),
        store_nothing,
        demo_observe: true,
        shutdown_grace: Duration::from_secs(2),
        ..RelayConfig::default()
    };
    let keys = RelayKeys::generate(&mut ChaCha20Rng::seed_from_u64(seed));
    let dyn_dir: Arc<dyn zentalk_relay::Directory> = directory.clone();
    let relay = Relay::bind_with_directory(config, keys, Some(dyn_dir))
        .await
        .unwrap();
    let handle = relay.handle();
    directory.insert(handle.peer_info());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        relay
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap()
    });
    Node {
        handle,
        stop,
        task,
        _dir: dir,
    }
}

impl Node {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "test: packets are built for the real epoch"
)]
fn current_epoch() -> u32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    epoch_at(secs)
}

/// A Noise link to `relay`, and the relay's first frame (its mailbox challenge).
async fn connect(
    relay: &RelayHandle,
    rng: &mut ChaCha20Rng,
) -> (Link<TcpStream>, proto::MailboxChallenge) {
    let info = relay.peer_info();
    let me = X25519Secret::generate(rng);
    let stream = TcpStream::connect(info.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut link = link::connect(stream, &me, &info.noise_key, &Limits::default(), rng)
        .await
        .unwrap();
    let challenge: proto::MailboxChallenge = recv(&mut link).await.decode_body().unwrap();
    assert_eq!(challenge.relay_id.as_ref(), relay.node_id().as_bytes());
    assert_eq!(challenge.nonce.len(), 32);
    (link, challenge)
}

async fn recv(link: &mut Link<TcpStream>) -> Frame {
    tokio::time::timeout(Duration::from_secs(5), link.recv())
        .await
        .expect("a frame within 5 s")
        .unwrap()
}

async fn send<M: WireMessage>(link: &mut Link<TcpStream>, rng: &mut ChaCha20Rng, m: &M) {
    link.send(&Frame::new(MessageId::random(rng), m).unwrap())
        .await
        .unwrap();
}

async fn send_packet(link: &mut Link<TcpStream>, rng: &mut ChaCha20Rng, packet: &[u8]) {
    let f = Frame::onion_packet(
        MessageId::random(rng),
        Flags::EMPTY,
        bytes::Bytes::copy_from_slice(packet),
    )
    .unwrap();
    link.send(&f).await.unwrap();
}

/// A ping/pong round trip: everything the relay sent before it has arrived.
async fn sync(link: &mut Link<TcpStream>, rng: &mut ChaCha20Rng) -> Vec<Frame> {
    let nonce = rng.next_u64();
    send(link, rng, &proto::Ping { nonce }).await;
    let mut before = Vec::new();
    loop {
        let f = recv(link).await;
        if f.message_type() == MessageType::Pong {
            assert_eq!(f.decode_body::<proto::Pong>().unwrap().nonce, nonce);
            return before;
        }
        before.push(f);
    }
}

fn auth(key: &IdentityKeyPair, relay: NodeId, nonce: &[u8]) -> proto::MailboxAuth {
    let public = key.public_key();
    let mailbox_id = blake2b_256(public.as_bytes());
    let nonce: [u8; 32] = nonce.try_into().unwrap();
    let signature = key.sign(&mailbox_auth_message(&relay, &nonce, &mailbox_id));
    proto::MailboxAuth {
        mailbox_id: bytes::Bytes::copy_from_slice(&mailbox_id),
        mailbox_key: bytes::Bytes::copy_from_slice(public.as_bytes()),
        nonce: bytes::Bytes::copy_from_slice(&nonce),
        signature: bytes::Bytes::copy_from_slice(&signature.to_bytes()),
    }
}

fn mailbox_of(key: &IdentityKeyPair) -> MailboxId {
    MailboxId::from_bytes(blake2b_256(key.public_key().as_bytes()))
}

/// Builds a packet through `route` (relay handles) to `mailbox`.
fn packet(
    rng: &mut ChaCha20Rng,
    route: &[&RelayHandle],
    mailbox: MailboxId,
    msg: &[u8],
) -> Vec<u8> {
    let epoch = current_epoch();
    let hops: Vec<Hop> = route
        .iter()
        .map(|r| {
            let info = r.peer_info();
            Hop {
                node: info.node,
                onion_key: info.onion_key(epoch).unwrap(),
                epoch,
            }
        })
        .collect();
    let out = build_packet(rng, &hops, mailbox, msg).unwrap();
    assert_eq!(out.first_hop, route[0].node_id());
    out.packet.as_bytes().to_vec()
}

/// Authenticates and returns the first batch.
async fn open_mailbox(
    relay: &RelayHandle,
    key: &IdentityKeyPair,
    rng: &mut ChaCha20Rng,
) -> (Link<TcpStream>, proto::MailboxBatch) {
    let (mut link, challenge) = connect(relay, rng).await;
    send(
        &mut link,
        rng,
        &auth(key, relay.node_id(), &challenge.nonce),
    )
    .await;
    let batch: proto::MailboxBatch = recv(&mut link).await.decode_body().unwrap();
    (link, batch)
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn expect_error(f: &Frame, code: ErrorCode) {
    assert_eq!(f.message_type(), MessageType::Error, "{f:?}");
    let e: proto::Error = f.decode_body().unwrap();
    assert_eq!(e.code, code as i32, "{e:?}");
}

#[tokio::test]
async fn offline_owner_finds_everything_then_gets_pushes_fetches_and_acks() {
    println!("seed {SEED:#x}");
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    let dir = Arc::new(StaticDirectory::new());
    let r = start(SEED + 1, &dir, false).await;
    let owner = IdentityKeyPair::generate(&mut rng);
    let mailbox = mailbox_of(&owner);

    // The owner is offline: two messages arrive (one sent twice: stored once).
    let (mut sender, _) = connect(&r.handle, &mut rng).await;
    let p1 = packet(&mut rng, &[&r.handle], mailbox, b"first");
    let p1_again = packet(&mut rng, &[&r.handle], mailbox, b"first");
    let p2 = packet(&mut rng, &[&r.handle], mailbox, b"second");
    for p in [&p1, &p1_again, &p2] {
        send_packet(&mut sender, &mut rng, p).await;
    }
    let m = r.handle.metrics();
    wait_until("two deliveries", || {
        m.packets_delivered() == 2 && m.packets_duplicate() == 1
    })
    .await;
    // The very same packet again is a replay.
    send_packet(&mut sender, &mut rng, &p1).await;
    wait_until("replay drop", || m.packets_dropped("replay") == 1).await;

    // The owner connects: the first batch has both, in order, with the contract's ids.
    let (mut link, batch) = open_mailbox(&r.handle, &owner, &mut rng).await;
    let payloads: Vec<&[u8]> = batch.items.iter().map(|i| i.payload.as_ref()).collect();
    assert_eq!(payloads, vec![&b"first"[..], &b"second"[..]]);
    assert!(!batch.more);
    assert_eq!(
        batch.items[0].message_id.as_ref(),
        &message_id_for(b"first").0
    );
    assert!(batch.items[0].seq < batch.items[1].seq);

    // Online: a new arrival is pushed.
    let p3 = packet(&mut rng, &[&r.handle], mailbox, b"third");
    send_packet(&mut sender, &mut rng, &p3).await;
    let push: proto::MailboxPush = recv(&mut link).await.decode_body().unwrap();
    assert_eq!(push.mailbox_id.as_ref(), mailbox.as_bytes());
    let third = push.item.unwrap();
    assert_eq!(third.payload.as_ref(), b"third");

    // Ack the first two; a fetch from the start returns only the third.
    send(
        &mut link,
        &mut rng,
        &proto::MailboxAck {
            mailbox_id: bytes::Bytes::copy_from_slice(mailbox.as_bytes()),
            up_to_seq: batch.items[1].seq,
        },
    )
    .await;
    send(
        &mut link,
        &mut rng,
        &proto::MailboxFetch {
            mailbox_id: bytes::Bytes::copy_from_slice(mailbox.as_bytes()),
            after_seq: 0,
            max_items: 0,
        },
    )
    .await;
    let batch: proto::MailboxBatch = recv(&mut link).await.decode_body().unwrap();
    assert_eq!(batch.items.len(), 1);
    assert_eq!(batch.items[0], third);
    // Paging: max_items = 1 after seq 0 says there is no more.
    assert_eq!(m.mailbox_depth(), 1);
    let obs = r.handle.observations();
    assert!(obs.iter().all(|o| o.predecessor == Peer::ClientLink));
    assert!(matches!(obs[0].successor, Peer::Mailbox(p) if p == mailbox.as_bytes()[..4]));
    r.stop().await;
}

#[tokio::test]
async fn impostors_get_nothing_and_change_nothing() {
    println!("seed {:#x}", SEED + 10);
    let mut rng = ChaCha20Rng::seed_from_u64(SEED + 10);
    let dir = Arc::new(StaticDirectory::new());
    let r = start(SEED + 11, &dir, false).await;
    let other = start(SEED + 12, &dir, false).await;
    let owner = IdentityKeyPair::generate(&mut rng);
    let mailbox = mailbox_of(&owner);
    let (mut sender, _) = connect(&r.handle, &mut rng).await;
    let p = packet(&mut rng, &[&r.handle], mailbox, b"secret");
    send_packet(&mut sender, &mut rng, &p).await;
    let m = r.handle.metrics();
    wait_until("delivery", || m.packets_delivered() == 1).await;
    let id = bytes::Bytes::copy_from_slice(mailbox.as_bytes());
    let fetch = proto::MailboxFetch {
        mailbox_id: id.clone(),
        after_seq: 0,
        max_items: 0,
    };
    let ack = proto::MailboxAck {
        mailbox_id: id.clone(),
        up_to_seq: u64::MAX,
    };

    // Fetch and ack before any auth.
    let (mut link, challenge) = connect(&r.handle, &mut rng).await;
    send(&mut link, &mut rng, &fetch).await;
    expect_error(&recv(&mut link).await, ErrorCode::Unauthorized);
    send(&mut link, &mut rng, &ack).await;
    expect_error(&recv(&mut link).await, ErrorCode::Unauthorized);

    // Wrong key: the impostor's own key with the victim's mailbox id.
    let impostor = IdentityKeyPair::generate(&mut rng);
    let mut a = auth(&impostor, r.handle.node_id(), &challenge.nonce);
    a.mailbox_id = id.clone();
    send(&mut link, &mut rng, &a).await;
    expect_error(&recv(&mut link).await, ErrorCode::Unauthorized);
    let fresh: proto::MailboxChallenge = recv(&mut link).await.decode_body().unwrap();
    assert_ne!(fresh.nonce, challenge.nonce);

    // The victim's key, signed by someone else.
    let mut a = auth(&impostor, r.handle.node_id(), &fresh.nonce);
    a.mailbox_id = id.clone();
    a.mailbox_key = bytes::Bytes::copy_from_slice(owner.public_key().as_bytes());
    send(&mut link, &mut rng, &a).await;
    expect_error(&recv(&mut link).await, ErrorCode::Unauthorized);
    let fresh: proto::MailboxChallenge = recv(&mut link).await.decode_body().unwrap();

    // A genuine signature made for another relay.
    let a = auth(&owner, other.handle.node_id(), &fresh.nonce);
    send(&mut link, &mut rng, &a).await;
    expect_error(&recv(&mut link).await, ErrorCode::Unauthorized);
    let _fresh: proto::MailboxChallenge = recv(&mut link).await.decode_body().unwrap();

    // A genuine signature replayed from another link's (used) challenge.
    let (mut owner_link, owner_challenge) = connect(&r.handle, &mut rng).await;
    let genuine = auth(&owner, r.handle.node_id(), &owner_challenge.nonce);
    send(&mut owner_link, &mut rng, &genuine).await;
    let _batch: proto::MailboxBatch = recv(&mut owner_link).await.decode_body().unwrap();
    send(&mut link, &mut rng, &genuine).await;
    expect_error(&recv(&mut link).await, ErrorCode::Unauthorized);
    let _ = recv(&mut link).await; // its fresh challenge
    // ... and replayed on the owner's own link, whose challenge is spent.
    send(&mut owner_link, &mut rng, &genuine).await;
    expect_error(&recv(&mut owner_link).await, ErrorCode::Unauthorized);

    // Still nothing for the impostor, and nothing pushed to it either.
    send(&mut link, &mut rng, &fetch).await;
    expect_error(&recv(&mut link).await, ErrorCode::Unauthorized);
    let p2 = packet(&mut rng, &[&r.handle], mailbox, b"secret 2");
    send_packet(&mut sender, &mut rng, &p2).await;
    wait_until("delivery", || m.packets_delivered() == 2).await;
    assert!(sync(&mut link, &mut rng).await.is_empty());

    // Nothing changed: a fresh owner link sees both items.
    let (_l, batch) = open_mailbox(&r.handle, &owner, &mut rng).await;
    let payloads: Vec<&[u8]> = batch.items.iter().map(|i| i.payload.as_ref()).collect();
    assert_eq!(payloads, vec![&b"secret"[..], &b"secret 2"[..]]);
    assert!(m.mailbox_auth_failures_total() >= 7);
    r.stop().await;
    other.stop().await;
}

#[tokio::test]
async fn three_relays_forward_to_the_mailbox_and_each_sees_only_its_neighbours() {
    println!("seed {:#x}", SEED + 20);
    let mut rng = ChaCha20Rng::seed_from_u64(SEED + 20);
    let dir = Arc::new(StaticDirectory::new());
    let a = start(SEED + 21, &dir, false).await;
    let b = start(SEED + 22, &dir, false).await;
    let c = start(SEED + 23, &dir, false).await;
    let owner = IdentityKeyPair::generate(&mut rng);
    let mailbox = mailbox_of(&owner);
    let p = packet(
        &mut rng,
        &[&a.handle, &b.handle, &c.handle],
        mailbox,
        b"via three",
    );
    let (mut sender, _) = connect(&a.handle, &mut rng).await;
    send_packet(&mut sender, &mut rng, &p).await;
    let cm = c.handle.metrics();
    wait_until("delivery at C", || cm.packets_delivered() == 1).await;
    let (_l, batch) = open_mailbox(&c.handle, &owner, &mut rng).await;
    assert_eq!(batch.items.len(), 1);
    assert_eq!(batch.items[0].payload.as_ref(), b"via three");

    let (ao, bo, co) = (
        a.handle.observations(),
        b.handle.observations(),
        c.handle.observations(),
    );
    assert_eq!(ao.len(), 1);
    assert_eq!(ao[0].predecessor, Peer::ClientLink);
    assert_eq!(ao[0].successor, Peer::Relay(b.handle.node_id()));
    assert_eq!(bo[0].predecessor, Peer::Relay(a.handle.node_id()));
    assert_eq!(bo[0].successor, Peer::Relay(c.handle.node_id()));
    assert_eq!(co[0].predecessor, Peer::Relay(b.handle.node_id()));
    assert!(matches!(co[0].successor, Peer::Mailbox(_)));
    for o in [&ao[0], &bo[0], &co[0]] {
        assert_eq!(o.packet_len, zentalk_onion::PACKET_LEN);
    }
    assert_eq!(a.handle.metrics().packets_forwarded(), 1);
    assert_eq!(b.handle.metrics().packets_forwarded(), 1);

    // The same packet again is dropped at A as a replay; nothing new reaches C.
    send_packet(&mut sender, &mut rng, &p).await;
    let am = a.handle.metrics();
    wait_until("replay at A", || am.packets_dropped("replay") == 1).await;
    sync(&mut sender, &mut rng).await;
    assert_eq!(am.packets_forwarded(), 1);
    assert_eq!(cm.packets_delivered(), 1);
    // A tampered packet fails A's MAC check.
    let mut bad = packet(&mut rng, &[&a.handle, &b.handle, &c.handle], mailbox, b"x");
    bad[100] ^= 1;
    send_packet(&mut sender, &mut rng, &bad).await;
    wait_until("mac drop at A", || am.packets_dropped("mac") == 1).await;
    // A packet for an expired epoch.
    let mut old = p.clone();
    old[1..5].copy_from_slice(&(current_epoch() - 5).to_be_bytes());
    send_packet(&mut sender, &mut rng, &old).await;
    wait_until("expired drop at A", || {
        am.packets_dropped("epoch_expired") == 1
    })
    .await;
    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test]
async fn forwarding_reconnects_after_the_next_relay_restarts_its_link() {
    println!("seed {:#x}", SEED + 30);
    let mut rng = ChaCha20Rng::seed_from_u64(SEED + 30);
    let dir = Arc::new(StaticDirectory::new());
    let a = start(SEED + 31, &dir, false).await;
    let c = start(SEED + 33, &dir, false).await;
    let owner = IdentityKeyPair::generate(&mut rng);
    let mailbox = mailbox_of(&owner);
    let (mut sender, _) = connect(&a.handle, &mut rng).await;
    let cm = c.handle.metrics();
    for i in 0..20u8 {
        let p = packet(&mut rng, &[&a.handle, &c.handle], mailbox, &[i; 40]);
        send_packet(&mut sender, &mut rng, &p).await;
    }
    wait_until("20 deliveries at C", || cm.packets_delivered() == 20).await;
    // One pooled link from A to C carried them all.
    assert_eq!(cm.handshakes_completed(), 1);
    a.stop().await;
    c.stop().await;
}

#[tokio::test]
async fn pooled_link_notices_the_next_relay_going_away_and_redials_after_its_restart() {
    println!("seed {:#x}", SEED + 35);
    let mut rng = ChaCha20Rng::seed_from_u64(SEED + 35);
    let dir = Arc::new(StaticDirectory::new());
    let a = start(SEED + 36, &dir, false).await;
    let c = start(SEED + 37, &dir, false).await;
    let c_addr = c.handle.peer_info().addr;
    let owner = IdentityKeyPair::generate(&mut rng);
    let mailbox = mailbox_of(&owner);
    let (mut sender, _) = connect(&a.handle, &mut rng).await;
    let am = a.handle.metrics();
    let p = packet(&mut rng, &[&a.handle, &c.handle], mailbox, b"before");
    send_packet(&mut sender, &mut rng, &p).await;
    let cm = c.handle.metrics();
    wait_until("delivery at C", || cm.packets_delivered() == 1).await;
    assert_eq!(am.peer_links_opened(), 1);
    assert_eq!(am.peer_links_lost(), 0);

    // C stops (it sends Close on every link, then its sockets close): A's pooled link reads
    // that at once and drops the link, without waiting for a write to fail.
    c.stop().await;
    wait_until("A noticing C went away", || am.peer_links_lost() == 1).await;

    // C comes back on the same address with the same keys (onion keys are per process, so
    // the directory gets its new descriptor); the next packet goes over a new link.
    let c2 = start_at(SEED + 37, &dir, false, c_addr).await;
    let p = packet(&mut rng, &[&a.handle, &c2.handle], mailbox, b"after");
    send_packet(&mut sender, &mut rng, &p).await;
    let c2m = c2.handle.metrics();
    wait_until("delivery at the restarted C", || {
        c2m.packets_delivered() == 1
    })
    .await;
    assert_eq!(am.peer_links_opened(), 2);
    assert_eq!(am.packets_forwarded(), 2);
    assert_eq!(am.packets_dropped_total(), 0);
    let (_l, batch) = open_mailbox(&c2.handle, &owner, &mut rng).await;
    assert_eq!(batch.items.len(), 1);
    assert_eq!(batch.items[0].payload.as_ref(), b"after");

    // A peer that dies without a word (its task aborted, sockets dropped) is noticed too.
    c2.task.abort();
    let _ = c2.task.await;
    wait_until("A noticing the abort", || am.peer_links_lost() == 2).await;
    a.stop().await;
}

#[tokio::test]
async fn pooled_link_answers_pings() {
    println!("seed {:#x}", SEED + 38);
    let mut rng = ChaCha20Rng::seed_from_u64(SEED + 38);
    let dir = Arc::new(StaticDirectory::new());
    let a = start(SEED + 39, &dir, false).await;
    // A stand-in next hop: a bare Noise responder that pings A's pooled link.
    let key = X25519Secret::generate(&mut rng);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = NodeId::from_bytes([0x42; 32]);
    dir.insert(zentalk_relay::PeerInfo {
        node,
        addr: listener.local_addr().unwrap(),
        noise_key: key.public_key(),
        onion_keys: vec![(
            current_epoch(),
            X25519Secret::generate(&mut rng).public_key(),
        )],
        capabilities: zentalk_dht::Capabilities::MAILBOX,
    });
    let hops: [Hop; 2] = [
        Hop {
            node: a.handle.node_id(),
            onion_key: a.handle.peer_info().onion_key(current_epoch()).unwrap(),
            epoch: current_epoch(),
        },
        Hop {
            node,
            onion_key: X25519Secret::generate(&mut rng).public_key(),
            epoch: current_epoch(),
        },
    ];
    let p = build_packet(&mut rng, &hops, MailboxId::from_bytes([1; 32]), b"x").unwrap();
    let (mut sender, _) = connect(&a.handle, &mut rng).await;
    send_packet(&mut sender, &mut rng, p.packet.as_bytes()).await;
    let (stream, _) = listener.accept().await.unwrap();
    let mut pooled = link::accept(stream, &key, &Limits::default(), &mut rng)
        .await
        .unwrap();
    let first = recv(&mut pooled).await;
    assert_eq!(first.message_type(), MessageType::OnionPacket);
    send(&mut pooled, &mut rng, &proto::Ping { nonce: 77 }).await;
    let pong: proto::Pong = recv(&mut pooled).await.decode_body().unwrap();
    assert_eq!(pong.nonce, 77);
    a.stop().await;
}

#[tokio::test]
async fn store_nothing_relay_keeps_only_a_transit_receipt() {
    println!("seed {:#x}", SEED + 40);
    let mut rng = ChaCha20Rng::seed_from_u64(SEED + 40);
    let dir = Arc::new(StaticDirectory::new());
    let a = start(SEED + 41, &dir, true).await;
    let c = start(SEED + 43, &dir, false).await;
    assert!(
        a.handle
            .peer_info()
            .capabilities
            .contains(zentalk_dht::Capabilities::STORE_NOTHING)
    );
    let owner = IdentityKeyPair::generate(&mut rng);
    let mailbox = mailbox_of(&owner);
    let p = packet(&mut rng, &[&a.handle, &c.handle], mailbox, b"no trace");
    let (mut sender, challenge) = connect(&a.handle, &mut rng).await;
    send_packet(&mut sender, &mut rng, &p).await;
    let cm = c.handle.metrics();
    wait_until("delivery at C", || cm.packets_delivered() == 1).await;

    // The sender fetches its receipt by the packet's hash; an unknown hash gets nothing.
    let hash = blake2b_256(&p);
    send(
        &mut sender,
        &mut rng,
        &proto::TransitReceiptFetch {
            packet_hashes: vec![
                bytes::Bytes::copy_from_slice(&[7u8; 32]),
                bytes::Bytes::copy_from_slice(&hash),
            ],
        },
    )
    .await;
    let frames = sync(&mut sender, &mut rng).await;
    assert_eq!(frames.len(), 1);
    let receipt: proto::TransitReceipt = frames[0].decode_body().unwrap();
    assert_eq!(receipt.packet_hash.as_ref(), &hash);
    assert_eq!(receipt.relay_id.as_ref(), a.handle.node_id().as_bytes());
    assert_eq!(receipt.relay_time % 60, 0);
    let mut msg = TRANSIT_RECEIPT_CONTEXT.to_vec();
    msg.extend_from_slice(&hash);
    msg.extend_from_slice(&receipt.relay_time.to_be_bytes());
    msg.extend_from_slice(a.handle.node_id().as_bytes());
    let relay_key: IdentityPublicKey = a.handle.identity_public();
    relay_key
        .verify(&msg, &Signature::from_slice(&receipt.signature).unwrap())
        .unwrap();

    // No mailbox at a store-nothing relay: auth refused, deliveries dropped.
    send(
        &mut sender,
        &mut rng,
        &auth(&owner, a.handle.node_id(), &challenge.nonce),
    )
    .await;
    expect_error(&recv(&mut sender).await, ErrorCode::Unauthorized);
    let direct = packet(&mut rng, &[&a.handle], mailbox, b"to a");
    send_packet(&mut sender, &mut rng, &direct).await;
    let am = a.handle.metrics();
    wait_until("no_mailbox drop", || am.packets_dropped("no_mailbox") == 1).await;
    assert_eq!(am.packets_delivered(), 0);
    a.stop().await;
    c.stop().await;
}

async fn start_dht(seed: u64, seeds: Vec<std::net::SocketAddr>) -> (Node, std::net::SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        mailbox_path: dir.path().join("mailbox.sqlite"),
        dht_listen_addr: Some("127.0.0.1:0".parse().unwrap()),
        dht_bootstrap: seeds,
        demo_observe: true,
        shutdown_grace: Duration::from_secs(2),
        ..RelayConfig::default()
    };
    let keys = RelayKeys::generate(&mut ChaCha20Rng::seed_from_u64(seed));
    let relay = Relay::bind_with_keys(config, keys).await.unwrap();
    let dht_addr = relay.dht_addr().unwrap();
    let handle = relay.handle();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        relay
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap()
    });
    (
        Node {
            handle,
            stop,
            task,
            _dir: dir,
        },
        dht_addr,
    )
}

#[tokio::test]
async fn relays_publish_descriptors_and_find_next_hops_in_the_dht() {
    println!("seed {:#x}", SEED + 50);
    let mut rng = ChaCha20Rng::seed_from_u64(SEED + 50);
    // A DHT seed node that is not a relay (as in `zentalk demo`): a node's own lookups do not
    // consult its own record store, so a relay would not find records stored only on itself.
    let (seed_dht, _seed_task) = zentalk_dht::net::spawn(
        IdentityKeyPair::generate(&mut rng),
        "127.0.0.1:0".parse().unwrap(),
        zentalk_dht::net::NetConfig::default(),
    )
    .await
    .unwrap();
    let seed_addr = seed_dht.local_addr();
    let (a, _) = start_dht(SEED + 51, vec![seed_addr]).await;
    let (b, _) = start_dht(SEED + 52, vec![seed_addr]).await;
    let (c, _) = start_dht(SEED + 53, vec![seed_addr]).await;
    let owner = IdentityKeyPair::generate(&mut rng);
    let mailbox = mailbox_of(&owner);
    let (mut sender, _) = connect(&a.handle, &mut rng).await;
    let cm = c.handle.metrics();
    // Publishing races the other relays' bootstrap: resend (fresh packets) until one arrives.
    let mut delivered = false;
    for _ in 0..40 {
        let p = packet(
            &mut rng,
            &[&a.handle, &b.handle, &c.handle],
            mailbox,
            b"dht",
        );
        send_packet(&mut sender, &mut rng, &p).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        if cm.packets_delivered() > 0 {
            delivered = true;
            break;
        }
    }
    let am = a.handle.metrics();
    let bm = b.handle.metrics();
    println!(
        "A: unknown {} unreachable {} fwd {}; B: unknown {} fwd {}",
        am.packets_dropped("unknown_next_hop"),
        am.packets_dropped("next_hop_unreachable"),
        am.packets_forwarded(),
        bm.packets_dropped("unknown_next_hop"),
        bm.packets_forwarded()
    );
    assert!(
        delivered,
        "no packet crossed A -> B -> C through the DHT directory"
    );
    let (_l, batch) = open_mailbox(&c.handle, &owner, &mut rng).await;
    assert_eq!(batch.items[0].payload.as_ref(), b"dht");
    // B learned its predecessor only from the DHT cache it filled when it looked C up, so
    // it may report A as a client link; it never names the mailbox.
    assert!(
        b.handle
            .observations()
            .iter()
            .all(|o| o.successor == Peer::Relay(c.handle.node_id()))
    );
    for n in [a, b, c] {
        n.stop().await;
    }
}

#[tokio::test]
async fn unknown_and_unreachable_next_hops_are_dropped_and_counted() {
    println!("seed {:#x}", SEED + 60);
    let mut rng = ChaCha20Rng::seed_from_u64(SEED + 60);
    let dir = Arc::new(StaticDirectory::new());
    let a = start(SEED + 61, &dir, false).await;
    let epoch = current_epoch();
    let a_info = a.handle.peer_info();
    let ghost_key = X25519Secret::generate(&mut rng);
    let a_hop: Hop = Hop {
        node: a_info.node,
        onion_key: a_info.onion_key(epoch).unwrap(),
        epoch,
    };
    let ghost = |node: NodeId| Hop {
        node,
        onion_key: ghost_key.public_key(),
        epoch,
    };
    let mailbox = MailboxId::from_bytes([5; 32]);
    let (mut sender, _) = connect(&a.handle, &mut rng).await;
    let am = a.handle.metrics();

    // A next hop no directory knows.
    let unknown = NodeId::from_bytes([0xee; 32]);
    let p = build_packet(&mut rng, &[a_hop.clone(), ghost(unknown)], mailbox, b"?").unwrap();
    send_packet(&mut sender, &mut rng, p.packet.as_bytes()).await;
    wait_until("unknown_next_hop", || {
        am.packets_dropped("unknown_next_hop") == 1
    })
    .await;

    // A next hop whose address accepts nothing.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = closed.local_addr().unwrap();
    drop(closed);
    let dead = NodeId::from_bytes([0xdd; 32]);
    dir.insert(zentalk_relay::PeerInfo {
        node: dead,
        addr: dead_addr,
        noise_key: X25519Secret::generate(&mut rng).public_key(),
        onion_keys: Vec::new(),
        capabilities: zentalk_dht::Capabilities::MAILBOX,
    });
    let p = build_packet(&mut rng, &[a_hop, ghost(dead)], mailbox, b"?").unwrap();
    send_packet(&mut sender, &mut rng, p.packet.as_bytes()).await;
    wait_until("next_hop_unreachable", || {
        am.packets_dropped("next_hop_unreachable") == 1
    })
    .await;
    assert_eq!(am.packets_forwarded(), 0);
    // The client's link is unaffected.
    sync(&mut sender, &mut rng).await;
    a.stop().await;
}
