//! Forwarding throughput of one relay with Noise links, beside onion per-hop processing alone.
//!
//! * `onion_process`: `OnionRelay::process` on distinct pre-built packets, one thread: the
//!   per-hop ceiling of one core.
//! * `relay_forward`: clients send the same number of distinct packets over 1 (or 4) Noise links
//!   to relay A (in process, tokio with 2 worker threads); A peels its layer and forwards each
//!   over its pooled Noise link to a sink that only decrypts and counts frames. Time from the
//!   first send to the sink's last frame. The per-link rate limit is raised for the run.
//!
//! Run: `cargo bench -p zentalk-relay --bench forwarding --no-run`, then the printed binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::net::{TcpListener, TcpStream};
use zentalk_crypto::{NodeId, X25519Secret};
use zentalk_onion::{Hop, MailboxId, OnionRelay, build_packet};
use zentalk_relay::directory::PeerInfo;
use zentalk_relay::link;
use zentalk_relay::{Limits, Relay, RelayConfig, RelayKeys, StaticDirectory};
use zentalk_wire::{Flags, Frame, MessageId};

const PACKETS: usize = 6000;
const RUNS: usize = 3;

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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[allow(clippy::disallowed_methods, reason = "bench: wall-clock timing")]
fn now() -> Instant {
    Instant::now()
}

fn onion_process_rate(rng: &mut ChaCha20Rng, epoch: u32) -> f64 {
    let a = X25519Secret::generate(rng);
    let next = X25519Secret::generate(rng);
    let route: [Hop; 2] = [
        Hop {
            node: NodeId::from_bytes([1; 32]),
            onion_key: a.public_key(),
            epoch,
        },
        Hop {
            node: NodeId::from_bytes([2; 32]),
            onion_key: next.public_key(),
            epoch,
        },
    ];
    let packets: Vec<Vec<u8>> = (0..PACKETS)
        .map(|_| {
            build_packet(rng, &route, MailboxId::from_bytes([3; 32]), b"bench")
                .unwrap()
                .packet
                .as_bytes()
                .to_vec()
        })
        .collect();
    let mut relay = OnionRelay::new(PACKETS * 2);
    relay.insert_epoch_key(epoch, a).unwrap();
    let t = now();
    for p in &packets {
        std::hint::black_box(relay.process(p, epoch).unwrap());
    }
    PACKETS as f64 / t.elapsed().as_secs_f64()
}

async fn relay_forward_rate(rng: &mut ChaCha20Rng, epoch: u32, links: usize) -> f64 {
    let limits = Limits {
        rate_frames_per_sec: 10_000_000,
        rate_bytes_per_sec: 1 << 34,
        ..Limits::default()
    };
    // The sink: a Noise responder that counts frames.
    let sink_key = X25519Secret::generate(rng);
    let sink_node = NodeId::from_bytes([9; 32]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = listener.local_addr().unwrap();
    let dir = Arc::new(StaticDirectory::new());
    dir.insert(PeerInfo {
        node: sink_node,
        addr: sink_addr,
        noise_key: sink_key.public_key(),
        onion_keys: Vec::new(),
        capabilities: zentalk_dht::Capabilities::MAILBOX,
    });
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Instant>();
    let sink_limits = limits.clone();
    let sink_secret = sink_key.duplicate();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut r = ChaCha20Rng::seed_from_u64(5);
        let mut l = link::accept(stream, &sink_secret, &sink_limits, &mut r)
            .await
            .unwrap();
        let mut n = 0;
        while n < PACKETS {
            if l.recv().await.is_err() {
                return;
            }
            n += 1;
        }
        let _ = done_tx.send(now());
    });

    let tmp = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        mailbox_path: tmp.path().join("m.sqlite"),
        limits: limits.clone(),
        ..RelayConfig::default()
    };
    let keys = RelayKeys::generate(rng);
    let dyn_dir: Arc<dyn zentalk_relay::Directory> = dir.clone();
    let relay = Relay::bind_with_directory(config, keys, Some(dyn_dir))
        .await
        .unwrap();
    let info = relay.handle().peer_info();
    let metrics = relay.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(relay.run(async {
        let _ = stopped.await;
    }));
    let route: [Hop; 2] = [
        Hop {
            node: info.node,
            onion_key: info.onion_key(epoch).unwrap(),
            epoch,
        },
        Hop {
            node: sink_node,
            onion_key: X25519Secret::generate(rng).public_key(),
            epoch,
        },
    ];
    let frames: Vec<Frame> = (0..PACKETS)
        .map(|_| {
            let p = build_packet(rng, &route, MailboxId::from_bytes([3; 32]), b"bench").unwrap();
            Frame::onion_packet(
                MessageId::random(rng),
                Flags::EMPTY,
                zentalk_wire::bytes::Bytes::copy_from_slice(p.packet.as_bytes()),
            )
            .unwrap()
        })
        .collect();
    let mut clients = Vec::new();
    for _ in 0..links {
        let me = X25519Secret::generate(rng);
        let stream = TcpStream::connect(info.addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut client = link::connect(stream, &me, &info.noise_key, &limits, rng)
            .await
            .unwrap();
        let _challenge = client.recv().await.unwrap();
        clients.push(client);
    }
    let per_link = PACKETS.div_ceil(links);
    let mut chunks: Vec<Vec<Frame>> = frames.chunks(per_link).map(<[Frame]>::to_vec).collect();
    let t = now();
    let mut senders = Vec::new();
    for mut client in clients {
        let chunk = chunks.pop().unwrap_or_default();
        senders.push(tokio::spawn(async move {
            for f in &chunk {
                client.send(f).await.unwrap();
            }
            client
        }));
    }
    let Ok(Ok(end)) = tokio::time::timeout(Duration::from_secs(20), done_rx).await else {
        println!(
            "{links} links: sink did not get every packet: forwarded {}, dropped queue_full {}, dropped total {}",
            metrics.packets_forwarded(),
            metrics.packets_dropped("queue_full"),
            metrics.packets_dropped_total()
        );
        return 0.0;
    };
    for s in senders {
        let _ = s.await;
    }
    let _ = stop.send(());
    let _ = running.await;
    PACKETS as f64 / (end - t).as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(0xbe_4c);
    let epoch = current_epoch();
    let (mut onion, mut relay, mut relay4) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        onion.push(onion_process_rate(&mut rng, epoch));
        relay.push(rt.block_on(relay_forward_rate(&mut rng, epoch, 1)));
        relay4.push(rt.block_on(relay_forward_rate(&mut rng, epoch, 4)));
    }
    let (o, r, r4) = (median(onion), median(relay), median(relay4));
    println!("onion_process (1 core)               {o:>10.0} packets/s");
    println!(
        "relay_forward, 1 inbound link        {r:>10.0} packets/s  ratio {:.2}",
        r / o
    );
    println!(
        "relay_forward, 4 inbound links       {r4:>10.0} packets/s  ratio {:.2}",
        r4 / o
    );
}
