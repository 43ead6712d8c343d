//! Real processes: four `zentalk-relayd` children on 127.0.0.1 (a DHT seed and relays A, B,
//! C). A packet built for A -> B -> C crosses them, the relays finding each other through the
//! DHT; then relay C is killed with SIGKILL and restarted, and every item it had pushed to the
//! connected owner (pushed only after the item was durably stored) is still there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::net::TcpStream;
use zentalk_crypto::hash::blake2b_256;
use zentalk_crypto::{IdentityKeyPair, NodeId, X25519PublicKey, X25519Secret};
use zentalk_dht::RelayDescriptor;
use zentalk_onion::{Hop, MailboxId, build_packet};
use zentalk_relay::epoch::epoch_at;
use zentalk_relay::link::{self, Link};
use zentalk_relay::service::mailbox_auth_message;
use zentalk_relay::{Limits, RelayKeys};
use zentalk_wire::bytes::Bytes;
use zentalk_wire::proto;
use zentalk_wire::{Flags, Frame, MessageId, MessageType, WireMessage};

const BIN: &str = env!("CARGO_BIN_EXE_zentalk-relayd");
const SEED: u64 = 0x0065_3265_7465_7374;

struct Daemon {
    child: Child,
    addr: SocketAddr,
    dht: SocketAddr,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn init(dir: &Path, seeds: &[SocketAddr]) -> RelayKeys {
    let out = Command::new(BIN)
        .args(["init", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    std::fs::write(
        dir.join("e2e.toml"),
        format!(
            "listen_addr = \"127.0.0.1:0\"\nmetrics_addr = \"127.0.0.1:0\"\n\
             dht_listen_addr = \"127.0.0.1:0\"\ndht_bootstrap = [{}]\n",
            seeds.join(", ")
        ),
    )
    .unwrap();
    RelayKeys::load_file(&dir.join("relay.key")).unwrap()
}

fn start(dir: &Path) -> Daemon {
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(dir.join("e2e.toml"))
        .args(["--log-level", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut addr, mut dht) = (None, None);
    while addr.is_none() || dht.is_none() {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("daemon exited: {:?}", child.try_wait()))
            .unwrap();
        if let Some(a) = line.strip_prefix("listening on ") {
            addr = Some(a.parse().unwrap());
        } else if let Some(a) = line.strip_prefix("dht on ") {
            dht = Some(a.parse().unwrap());
        }
    }
    Daemon {
        child,
        addr: addr.unwrap(),
        dht: dht.unwrap(),
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "test: packets are built for the real epoch"
)]
fn current_epoch() -> u32 {
    epoch_at(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

async fn connect(
    addr: SocketAddr,
    key: &X25519PublicKey,
    rng: &mut ChaCha20Rng,
) -> (Link<TcpStream>, proto::MailboxChallenge) {
    let me = X25519Secret::generate(rng);
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut l = link::connect(stream, &me, key, &Limits::default(), rng)
        .await
        .unwrap();
    let c = recv(&mut l).await.decode_body().unwrap();
    (l, c)
}

async fn recv(l: &mut Link<TcpStream>) -> Frame {
    tokio::time::timeout(Duration::from_secs(10), l.recv())
        .await
        .expect("a frame within 10 s")
        .unwrap()
}

async fn send<M: WireMessage>(l: &mut Link<TcpStream>, rng: &mut ChaCha20Rng, m: &M) {
    l.send(&Frame::new(MessageId::random(rng), m).unwrap())
        .await
        .unwrap();
}

async fn send_packet(l: &mut Link<TcpStream>, rng: &mut ChaCha20Rng, p: &[u8]) {
    let f = Frame::onion_packet(
        MessageId::random(rng),
        Flags::EMPTY,
        Bytes::copy_from_slice(p),
    )
    .unwrap();
    l.send(&f).await.unwrap();
}

async fn open_mailbox(
    addr: SocketAddr,
    relay: &RelayKeys,
    owner: &IdentityKeyPair,
    rng: &mut ChaCha20Rng,
) -> (Link<TcpStream>, Vec<proto::MailboxItem>) {
    let (mut l, challenge) = connect(addr, &relay.noise_public(), rng).await;
    let public = owner.public_key();
    let id = blake2b_256(public.as_bytes());
    let nonce: [u8; 32] = challenge.nonce.as_ref().try_into().unwrap();
    let sig = owner.sign(&mailbox_auth_message(&relay.node_id(), &nonce, &id));
    let auth = proto::MailboxAuth {
        mailbox_id: Bytes::copy_from_slice(&id),
        mailbox_key: Bytes::copy_from_slice(public.as_bytes()),
        nonce: challenge.nonce.clone(),
        signature: Bytes::copy_from_slice(&sig.to_bytes()),
    };
    send(&mut l, rng, &auth).await;
    let mut batch: proto::MailboxBatch = recv(&mut l).await.decode_body().unwrap();
    let mut items = std::mem::take(&mut batch.items);
    while batch.more {
        let after = items.last().map_or(0, |i| i.seq);
        send(
            &mut l,
            rng,
            &proto::MailboxFetch {
                mailbox_id: Bytes::copy_from_slice(&id),
                after_seq: after,
                max_items: 100,
            },
        )
        .await;
        batch = recv(&mut l).await.decode_body().unwrap();
        items.append(&mut batch.items);
    }
    (l, items)
}

async fn hop(dht: &zentalk_dht::net::DhtHandle, node: NodeId, epoch: u32) -> Hop {
    for _ in 0..100 {
        if let Ok(Some(record)) = dht.find_value(node).await {
            #[allow(
                clippy::disallowed_methods,
                reason = "test: record expiry is wall-clock"
            )]
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let (_, d) = RelayDescriptor::from_record(&record, now_ms).unwrap();
            let key = d
                .onion_keys
                .iter()
                .find(|(e, _)| *e == u64::from(epoch))
                .unwrap()
                .1;
            return Hop {
                node,
                onion_key: X25519PublicKey::from_bytes(key),
                epoch,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("descriptor of {node} not found in the DHT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relayd_processes_forward_and_kill9_loses_no_stored_item() {
    println!("seed {SEED:#x}");
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let _seed_keys = init(dirs[0].path(), &[]);
    let seed = start(dirs[0].path());
    let keys: Vec<RelayKeys> = (1..4).map(|i| init(dirs[i].path(), &[seed.dht])).collect();
    let a = start(dirs[1].path());
    let _b = start(dirs[2].path());
    let mut c = start(dirs[3].path());

    let (dht, _task) = zentalk_dht::net::spawn(
        IdentityKeyPair::generate(&mut rng),
        "127.0.0.1:0".parse().unwrap(),
        zentalk_dht::net::NetConfig::default(),
    )
    .await
    .unwrap();
    dht.bootstrap(vec![seed.dht]).await.unwrap();
    let epoch = current_epoch();
    let mut route = Vec::new();
    for k in &keys {
        route.push(hop(&dht, k.node_id(), epoch).await);
    }
    let owner = IdentityKeyPair::generate(&mut rng);
    let mailbox = MailboxId::from_bytes(blake2b_256(owner.public_key().as_bytes()));

    // A -> B -> C, retried with fresh packets while the relays still look each other up.
    let (mut sender, _) = connect(a.addr, &keys[0].noise_public(), &mut rng).await;
    let (mut owner_link, first) = open_mailbox(c.addr, &keys[2], &owner, &mut rng).await;
    assert!(first.is_empty());
    let mut arrived = None;
    for attempt in 0..40u8 {
        let p = build_packet(&mut rng, &route, mailbox, &[b'r', attempt]).unwrap();
        send_packet(&mut sender, &mut rng, p.packet.as_bytes()).await;
        if let Ok(Ok(f)) = tokio::time::timeout(Duration::from_millis(500), owner_link.recv()).await
        {
            assert_eq!(f.message_type(), MessageType::MailboxPush);
            arrived = Some(f.decode_body::<proto::MailboxPush>().unwrap().item.unwrap());
            break;
        }
    }
    let arrived = arrived.expect("a packet crossed three relayd processes");
    assert_eq!(arrived.payload[0], b'r');

    // Straight to C: 30 messages; every push means "durably stored". Kill -9 midway.
    let (mut direct, _) = connect(c.addr, &keys[2].noise_public(), &mut rng).await;
    let c_hop = [route[2].clone()];
    for i in 0..30u8 {
        let p = build_packet(&mut rng, &c_hop, mailbox, &[b'k', i]).unwrap();
        send_packet(&mut direct, &mut rng, p.packet.as_bytes()).await;
    }
    let mut pushed = vec![arrived.clone()];
    while pushed.len() < 11 {
        let f = recv(&mut owner_link).await;
        pushed.push(f.decode_body::<proto::MailboxPush>().unwrap().item.unwrap());
    }
    c.child.kill().unwrap(); // SIGKILL
    c.child.wait().unwrap();
    drop(owner_link);

    c = start(dirs[3].path());
    let (_l, after) = open_mailbox(c.addr, &keys[2], &owner, &mut rng).await;
    for item in &pushed {
        assert!(
            after
                .iter()
                .any(|i| i.message_id == item.message_id && i.payload == item.payload),
            "pushed item {:?} lost by kill -9",
            item.payload
        );
    }
    println!(
        "{} items pushed before kill -9, {} found after restart",
        pushed.len(),
        after.len()
    );
}
