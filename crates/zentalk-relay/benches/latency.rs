//! End-to-end latency through three relays at a fixed rate on loopback.
//!
//! Three relays (`Relay::run`, in process, on one tokio runtime with 2 worker threads named
//! `relay-worker`) listen on 127.0.0.1 with real TCP and Noise links; a directory tells each
//! where the others are. A mailbox owner holds an authenticated link to the last relay (C)
//! and receives `MailboxPush` frames; a sender holds a link to the first relay (A) and sends
//! pre-built 3-hop onion packets (A -> B -> C -> the owner's mailbox) paced at `LATENCY_RATE`
//! per second (default 1,000) for `LATENCY_SECS` seconds (default 10), after 200 warm-up
//! packets that are not counted. Each payload carries its index; latency = time the
//! sender started writing the packet -> time the owner decoded its push. Every counted packet
//! must arrive. The owner acknowledges every 256 items, as a client would.
//!
//! At C a packet is pushed only after `MailboxBackend::put` returned, i.e. after the item is
//! durable (SQLite WAL with `synchronous = FULL`; the put waits for the group commit that
//! carries it, one fsync shared by every put waiting at that moment). `LATENCY_MAILBOX_DIR`
//! chooses where C's database lives (default: the system temporary directory); run it once on
//! the real disk and once on tmpfs (`/dev/shm`) to separate the relays' own latency from the
//! disk's fsync latency.
//!
//! Run: `cargo bench -p zentalk-relay --bench latency --no-run`, then the printed binary with
//! `--bench`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::net::TcpStream;
use tokio::time::Instant;
use zentalk_crypto::hash::blake2b_256;
use zentalk_crypto::{IdentityKeyPair, X25519Secret};
use zentalk_onion::{Hop, MailboxId, build_packet};
use zentalk_relay::link::{self, Link};
use zentalk_relay::service::mailbox_auth_message;
use zentalk_relay::{Limits, Relay, RelayConfig, RelayHandle, RelayKeys, StaticDirectory};
use zentalk_wire::proto;
use zentalk_wire::{Flags, Frame, MessageId, MessageType};

const WARMUP: usize = 200;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[allow(
    clippy::disallowed_methods,
    reason = "bench: packets are built for the real epoch"
)]
fn current_epoch() -> u32 {
    zentalk_relay::epoch::epoch_at(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
}

async fn start(
    rng: &mut ChaCha20Rng,
    dir: &Arc<StaticDirectory>,
    base: &std::path::Path,
    name: &str,
) -> (RelayHandle, tokio::sync::oneshot::Sender<()>) {
    let config = RelayConfig {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        mailbox_path: base.join(format!("{name}.sqlite")),
        ..RelayConfig::default()
    };
    let dyn_dir: Arc<dyn zentalk_relay::Directory> = dir.clone();
    let relay = Relay::bind_with_directory(config, RelayKeys::generate(rng), Some(dyn_dir))
        .await
        .unwrap();
    let handle = relay.handle();
    dir.insert(handle.peer_info());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(relay.run(async {
        let _ = stopped.await;
    }));
    (handle, stop)
}

async fn client_link(relay: &RelayHandle, rng: &mut ChaCha20Rng) -> (Link<TcpStream>, Frame) {
    let info = relay.peer_info();
    let stream = TcpStream::connect(info.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let me = X25519Secret::generate(rng);
    let mut l = link::connect(stream, &me, &info.noise_key, &Limits::default(), rng)
        .await
        .unwrap();
    let challenge = l.recv().await.unwrap();
    (l, challenge)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rate = env_u64("LATENCY_RATE", 1000).max(1);
    let secs = env_u64("LATENCY_SECS", 10).max(1);
    let counted = usize::try_from(rate * secs).unwrap();
    let ack_every = usize::try_from(env_u64("LATENCY_ACK_EVERY", 256)).unwrap();
    let total = WARMUP + counted;
    let base = std::env::var("LATENCY_MAILBOX_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let tmp = tempfile::tempdir_in(&base).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("relay-worker")
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(0x1a7e);
    let dir = Arc::new(StaticDirectory::new());
    let (relays, stops): (Vec<RelayHandle>, Vec<_>) = rt.block_on(async {
        let mut v = Vec::new();
        for name in ["a", "b", "c"] {
            v.push(start(&mut rng, &dir, tmp.path(), name).await);
        }
        v.into_iter().unzip()
    });
    let (a, b, c) = (&relays[0], &relays[1], &relays[2]);

    // Packets A -> B -> C -> the owner's mailbox, payload = index || padding.
    let owner = IdentityKeyPair::generate(&mut rng);
    let mailbox_id = blake2b_256(owner.public_key().as_bytes());
    let epoch = current_epoch();
    let hops: Vec<Hop> = [a, b, c]
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
    print!("building {total} packets ... ");
    let frames: Vec<Frame> = (0..total)
        .map(|i| {
            let mut msg = vec![0u8; 256];
            msg[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let p = build_packet(&mut rng, &hops, MailboxId::from_bytes(mailbox_id), &msg).unwrap();
            Frame::onion_packet(
                MessageId::random(&mut rng),
                Flags::EMPTY,
                zentalk_wire::bytes::Bytes::copy_from_slice(p.packet.as_bytes()),
            )
            .unwrap()
        })
        .collect();
    println!("done");

    let c_metrics = c.metrics();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let latencies = client_rt.block_on(async {
        // The owner: authenticated link to C.
        let (mut owner_link, challenge) = client_link(c, &mut rng).await;
        let challenge: proto::MailboxChallenge = challenge.decode_body().unwrap();
        let nonce: [u8; 32] = challenge.nonce.as_ref().try_into().unwrap();
        let signature = owner.sign(&mailbox_auth_message(&c.node_id(), &nonce, &mailbox_id));
        let auth = proto::MailboxAuth {
            mailbox_id: zentalk_wire::bytes::Bytes::copy_from_slice(&mailbox_id),
            mailbox_key: zentalk_wire::bytes::Bytes::copy_from_slice(owner.public_key().as_bytes()),
            nonce: zentalk_wire::bytes::Bytes::copy_from_slice(&nonce),
            signature: zentalk_wire::bytes::Bytes::copy_from_slice(&signature.to_bytes()),
        };
        owner_link
            .send(&Frame::new(MessageId::random(&mut rng), &auth).unwrap())
            .await
            .unwrap();
        let first = owner_link.recv().await.unwrap();
        assert_eq!(first.message_type(), MessageType::MailboxBatch);

        let (mut sender, _) = client_link(a, &mut rng).await;
        let t0 = Instant::now();
        let sent_tx = Arc::clone(&sent);
        let interval = Duration::from_nanos(1_000_000_000 / rate);
        let sending = tokio::spawn(async move {
            for (i, f) in frames.iter().enumerate() {
                tokio::time::sleep_until(t0 + interval * u32::try_from(i).unwrap()).await;
                let at = u64::try_from(t0.elapsed().as_nanos()).unwrap();
                sent_tx[i].store(at, Ordering::Relaxed);
                sender.send(f).await.unwrap();
            }
            sender
        });
        let mut latencies = Vec::with_capacity(counted);
        let mut got = 0usize;
        let mut ack_rng = ChaCha20Rng::seed_from_u64(7);
        let deadline = t0 + interval * u32::try_from(total).unwrap() + Duration::from_secs(10);
        while got < total {
            let frame = match tokio::time::timeout_at(deadline, owner_link.recv()).await {
                Ok(r) => r.unwrap(),
                Err(_) => panic!(
                    "only {got} of {total} pushes arrived; pushes skipped at C: {}",
                    c_metrics.pushes_skipped()
                ),
            };
            if frame.message_type() != MessageType::MailboxPush {
                continue;
            }
            let at = u64::try_from(t0.elapsed().as_nanos()).unwrap();
            let push: proto::MailboxPush = frame.decode_body().unwrap();
            let item = push.item.unwrap();
            let i =
                usize::try_from(u64::from_be_bytes(item.payload[..8].try_into().unwrap())).unwrap();
            got += 1;
            if i >= WARMUP {
                let s = sent[i].load(Ordering::Relaxed);
                latencies.push((at - s) as f64 / 1e6);
                if (at - s) > 10_000_000 && std::env::var("LATENCY_TRACE").is_ok() {
                    println!(
                        "packet {i} sent at {:.1} ms: {:.1} ms",
                        s as f64 / 1e6,
                        (at - s) as f64 / 1e6
                    );
                }
            }
            if ack_every > 0 && got.is_multiple_of(ack_every) {
                let ack = proto::MailboxAck {
                    mailbox_id: zentalk_wire::bytes::Bytes::copy_from_slice(&mailbox_id),
                    up_to_seq: item.seq,
                };
                owner_link
                    .send(&Frame::new(MessageId::random(&mut ack_rng), &ack).unwrap())
                    .await
                    .unwrap();
            }
        }
        let _sender = sending.await.unwrap();
        latencies
    });
    for s in stops {
        let _ = s.send(());
    }
    let mut sorted = latencies;
    sorted.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let fs = std::process::Command::new("df")
        .args(["--output=fstype"])
        .arg(tmp.path())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().nth(1).map(|l| l.trim().to_owned()))
        .unwrap_or_else(|| "?".to_owned());
    println!(
        "three relays, {rate} packets/s for {secs} s ({} counted after {WARMUP} warm-up), mailbox database on {} ({fs})",
        sorted.len(),
        base.display()
    );
    println!(
        "latency send -> MailboxPush received: p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        percentile(&sorted, 0.50),
        percentile(&sorted, 0.90),
        percentile(&sorted, 0.99),
        sorted[sorted.len() - 1]
    );
    let (p50, p99) = (percentile(&sorted, 0.50), percentile(&sorted, 0.99));
    println!(
        "goal p50 <= 2 ms: {}; p99 <= 10 ms: {}",
        if p50 <= 2.0 { "met" } else { "NOT met" },
        if p99 <= 10.0 { "met" } else { "NOT met" }
    );
    drop(rt);
    put_alone(&client_rt, tmp.path(), rate, secs);
}

/// What group commit costs a push: `MailboxBackend::put` alone on the same directory, paced
/// at the same rate, one put at a time as C issues them for one sender (each returns once its
/// item is durable).
fn put_alone(rt: &tokio::runtime::Runtime, dir: &std::path::Path, rate: u64, secs: u64) {
    use zentalk_storage::mailbox::{Mailbox, MailboxBackend, MailboxId, MessageId};
    let url = format!("sqlite://{}", dir.join("put-alone.sqlite").display());
    let mut durations = rt.block_on(async {
        let store = Mailbox::open(&url, zentalk_storage::mailbox::Limits::default())
            .await
            .unwrap();
        let interval = Duration::from_nanos(1_000_000_000 / rate);
        let n = u32::try_from(rate * secs).unwrap();
        let t0 = Instant::now();
        let mut out = Vec::new();
        for i in 0..n {
            tokio::time::sleep_until(t0 + interval * i).await;
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            let start = Instant::now();
            store
                .put(&MailboxId([7; 32]), &MessageId(id), &[0u8; 256], 1)
                .await
                .unwrap();
            out.push(start.elapsed().as_secs_f64() * 1e3);
            if i % 1000 == 999 {
                let _ = store
                    .ack_up_to(
                        &MailboxId([7; 32]),
                        zentalk_storage::mailbox::Cursor(u64::MAX),
                    )
                    .await;
            }
        }
        out
    });
    durations.sort_by(|x, y| x.partial_cmp(y).unwrap());
    println!(
        "mailbox put alone (durable, {rate}/s, same directory): p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        percentile(&durations, 0.50),
        percentile(&durations, 0.90),
        percentile(&durations, 0.99),
        durations[durations.len() - 1]
    );
}
