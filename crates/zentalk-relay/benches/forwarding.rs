//! Forwarding throughput of one relay with Noise links, beside onion per-hop processing alone,
//! measured side by side in the same process and run (rounds alternate the contenders, so
//! they see the same machine load).
//!
//! * `onion_process x1`: `OnionRelay::process` on distinct pre-built packets, one thread: the
//!   per-hop ceiling of one core.
//! * `onion_process x2`: the same on two threads at once, each with its own `OnionRelay` and
//!   half of the packets: what per-hop processing allows on two cores, measured.
//! * `relay_forward`: a real relay (`Relay::run`, tokio with 2 worker threads) receives the
//!   packets over 1 (or 4) inbound Noise links on 127.0.0.1, peels its layer and forwards each
//!   over its pooled Noise link to a sink. Time from the first byte sent to the sink's last
//!   packet; every packet must arrive. The per-link rate limit is raised for the run.
//!
//! The load generator is kept as cheap as it can be so that the two cores go to the relay:
//! clients encrypt their frames with their real Noise sessions **before** the clock starts and
//! then write the ciphertext in large chunks; the sink counts length-prefixed Noise messages
//! while the clock runs and decrypts and checks every one of them (each must be an
//! `OnionPacket` frame of the packet length) after it stops. Clients and sink run on their own
//! single-threaded runtime.
//!
//! Ratios printed: relay / (2 x onion_process x1) (the goal is >= 0.8) and relay /
//! onion_process x2.
//!
//! Run: `cargo bench -p zentalk-relay --bench forwarding --no-run`, then the printed binary
//! with `--bench`. `FORWARDING_PACKETS` and `FORWARDING_ROUNDS` change the sizes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use zentalk_crypto::{NodeId, X25519Secret};
use zentalk_onion::{Hop, MailboxId, OnionRelay, build_packet};
use zentalk_relay::directory::PeerInfo;
use zentalk_relay::link;
use zentalk_relay::{Limits, Relay, RelayConfig, RelayKeys, StaticDirectory};
use zentalk_wire::{Flags, Frame, MessageId, MessageType};

fn env_usize(name: &str, default: usize) -> usize {
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

/// CPU time (user + system, all threads) this process has used, in seconds, from
/// `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_secs() -> f64 {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// utime + stime of one `/proc/.../stat` line, in seconds.
fn stat_cpu(stat: &str) -> f64 {
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

/// CPU time used so far by the relay's runtime threads (named `relay-worker`), in seconds.
fn relay_cpu_secs() -> f64 {
    let mut total = 0.0;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for task in dir.flatten() {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            if stat.contains("(relay-worker)") {
                total += stat_cpu(&stat);
            }
        }
    }
    total
}

/// A rate and the CPU time per packet it cost.
#[derive(Clone, Copy)]
struct Sample {
    rate: f64,
    /// Process CPU time per packet (for the relay runs: relay, clients and sink together).
    cpu_us: f64,
    /// The relay runtime's threads only (0 for onion_process).
    relay_cpu_us: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[allow(clippy::disallowed_methods, reason = "bench: wall-clock timing")]
fn now() -> Instant {
    Instant::now()
}

/// `n` distinct packets whose first hop is `first` (key `first_key`), then a second relay.
fn packets(
    rng: &mut ChaCha20Rng,
    epoch: u32,
    first: NodeId,
    first_key: zentalk_crypto::X25519PublicKey,
    second: NodeId,
    n: usize,
) -> Vec<Vec<u8>> {
    let route: [Hop; 2] = [
        Hop {
            node: first,
            onion_key: first_key,
            epoch,
        },
        Hop {
            node: second,
            onion_key: X25519Secret::generate(rng).public_key(),
            epoch,
        },
    ];
    (0..n)
        .map(|_| {
            build_packet(rng, &route, MailboxId::from_bytes([3; 32]), b"bench")
                .unwrap()
                .packet
                .as_bytes()
                .to_vec()
        })
        .collect()
}

/// `OnionRelay::process` rate on `threads` threads at once, each with its own relay state
/// (same key) and an equal share of `n` packets.
fn onion_process_rate(rng: &mut ChaCha20Rng, epoch: u32, n: usize, threads: usize) -> Sample {
    let key = X25519Secret::generate(rng);
    let all = packets(
        rng,
        epoch,
        NodeId::from_bytes([1; 32]),
        key.public_key(),
        NodeId::from_bytes([2; 32]),
        n,
    );
    let per = n.div_ceil(threads);
    let shares: Vec<Vec<Vec<u8>>> = all.chunks(per).map(<[Vec<u8>]>::to_vec).collect();
    let barrier = Arc::new(std::sync::Barrier::new(shares.len() + 1));
    let mut handles = Vec::new();
    for share in shares {
        let mut relay = OnionRelay::new(n * 2);
        relay.insert_epoch_key(epoch, key.duplicate()).unwrap();
        let barrier = Arc::clone(&barrier);
        handles.push(std::thread::spawn(move || {
            barrier.wait();
            for p in &share {
                std::hint::black_box(relay.process(p, epoch).unwrap());
            }
        }));
    }
    barrier.wait();
    let t = now();
    let c = cpu_secs();
    for h in handles {
        h.join().unwrap();
    }
    Sample {
        rate: n as f64 / t.elapsed().as_secs_f64(),
        cpu_us: (cpu_secs() - c) * 1e6 / n as f64,
        relay_cpu_us: 0.0,
    }
}

/// A TCP stream whose writes can be captured into memory (to encrypt frames ahead of time
/// with the link's real Noise session) and whose reads can be served from recorded bytes
/// (to decrypt and check what the sink counted, after the clock stopped).
struct Tap {
    inner: TcpStream,
    capture: Option<Vec<u8>>,
    /// Every byte read from `inner` through this stream, when set.
    record: Option<Vec<u8>>,
    replay: Option<(Vec<u8>, usize)>,
}

impl Tap {
    fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            capture: None,
            record: None,
            replay: None,
        }
    }
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some((bytes, pos)) = self.replay.as_mut() {
            let n = (bytes.len() - *pos).min(buf.remaining());
            buf.put_slice(&bytes[*pos..*pos + n]);
            *pos += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(rec) = self.record.as_mut() {
            rec.extend_from_slice(&buf.filled()[before..]);
        }
        r
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(c) = self.capture.as_mut() {
            c.extend_from_slice(buf);
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.capture.is_some() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The sink: accepts the relay's pooled link, counts `n` Noise messages as they arrive, then
/// (clock stopped) decrypts and checks each. Returns the time the last one arrived and the
/// process CPU time then.
async fn sink(
    listener: TcpListener,
    key: X25519Secret,
    limits: Limits,
    n: usize,
) -> (Instant, f64, f64) {
    let (stream, _) = listener.accept().await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut r = ChaCha20Rng::seed_from_u64(5);
    let mut tap = Tap::new(stream);
    tap.record = Some(Vec::with_capacity(n * 2600));
    let mut l = link::accept(tap, &key, &limits, &mut r).await.unwrap();
    // The handshake read messages 1 and 3 through the tap; the link may have buffered the
    // start of the transport messages too. Count from the end of message 3.
    let mut raw = l.get_mut().record.take().unwrap();
    let buffered_from = raw.len();
    let mut parsed =
        2 * link::LENGTH_PREFIX_LEN + link::HANDSHAKE_MSG1_LEN + link::HANDSHAKE_MSG3_LEN;
    let mut chunk = vec![0u8; 1 << 16];
    let mut count = 0usize;
    // Messages already complete in the recorded bytes.
    while raw.len() >= parsed + 2 {
        let len = usize::from(u16::from_be_bytes([raw[parsed], raw[parsed + 1]]));
        if raw.len() < parsed + 2 + len {
            break;
        }
        parsed += 2 + len;
        count += 1;
    }
    while count < n {
        let got = l.get_mut().inner.read(&mut chunk).await.unwrap();
        assert!(got > 0, "relay closed the link after {count} packets");
        raw.extend_from_slice(&chunk[..got]);
        while raw.len() >= parsed + 2 {
            let len = usize::from(u16::from_be_bytes([raw[parsed], raw[parsed + 1]]));
            if raw.len() < parsed + 2 + len {
                break;
            }
            parsed += 2 + len;
            count += 1;
        }
    }
    let end = (now(), cpu_secs(), relay_cpu_secs());
    l.get_mut().replay = Some((raw, buffered_from));
    for _ in 0..n {
        let frame = l.recv().await.unwrap();
        assert_eq!(frame.message_type(), MessageType::OnionPacket);
        assert_eq!(frame.body().len(), zentalk_onion::PACKET_LEN);
    }
    end
}

/// Forwarding rate of a real relay with `links` inbound links and `n` packets.
fn relay_forward_rate(
    rt: &Runtime,
    gen_rt: &Runtime,
    rng: &mut ChaCha20Rng,
    epoch: u32,
    n: usize,
    links: usize,
) -> Sample {
    let limits = Limits {
        rate_frames_per_sec: 10_000_000,
        rate_bytes_per_sec: 1 << 34,
        ..Limits::default()
    };
    let sink_key = X25519Secret::generate(rng);
    let sink_node = NodeId::from_bytes([9; 32]);
    let listener = gen_rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let dir = Arc::new(StaticDirectory::new());
    dir.insert(PeerInfo {
        node: sink_node,
        addr: listener.local_addr().unwrap(),
        noise_key: sink_key.public_key(),
        onion_keys: Vec::new(),
        capabilities: zentalk_dht::Capabilities::MAILBOX,
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
    let relay = rt
        .block_on(Relay::bind_with_directory(config, keys, Some(dyn_dir)))
        .unwrap();
    let info = relay.handle().peer_info();
    let metrics = relay.metrics();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = rt.spawn(relay.run(async {
        let _ = stopped.await;
    }));

    let all = packets(
        rng,
        epoch,
        info.node,
        info.onion_key(epoch).unwrap(),
        sink_node,
        n,
    );
    let frames: Vec<Frame> = all
        .into_iter()
        .map(|p| {
            Frame::onion_packet(
                MessageId::random(rng),
                Flags::EMPTY,
                zentalk_wire::bytes::Bytes::from(p),
            )
            .unwrap()
        })
        .collect();
    let per_link = n.div_ceil(links);
    let rate = gen_rt.block_on(async {
        let sink_task = tokio::spawn(sink(listener, sink_key, limits.clone(), n));
        // Open the links and encrypt each one's share ahead of time.
        let mut wires = Vec::new();
        for chunk in frames.chunks(per_link) {
            let me = X25519Secret::generate(rng);
            let stream = TcpStream::connect(info.addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut client = link::connect(Tap::new(stream), &me, &info.noise_key, &limits, rng)
                .await
                .unwrap();
            let _challenge = client.recv().await.unwrap();
            client.get_mut().capture = Some(Vec::with_capacity(chunk.len() * 2600));
            for f in chunk {
                client.send(f).await.unwrap();
            }
            let wire = client.get_mut().capture.take().unwrap();
            wires.push((client, wire));
        }
        let t = now();
        let c = cpu_secs();
        let rc = relay_cpu_secs();
        let mut senders = Vec::new();
        for (mut client, wire) in wires {
            senders.push(tokio::spawn(async move {
                client.get_mut().inner.write_all(&wire).await.unwrap();
                client
            }));
        }
        let end = match tokio::time::timeout(Duration::from_secs(60), sink_task).await {
            Ok(Ok(end)) => end,
            _ => {
                println!(
                    "{links} links: sink did not get every packet: forwarded {}, dropped {}, peer links opened {} lost {}",
                    metrics.packets_forwarded(),
                    metrics.packets_dropped_total(),
                    metrics.peer_links_opened(),
                    metrics.peer_links_lost()
                );
                return Sample {
                    rate: 0.0,
                    cpu_us: 0.0,
                    relay_cpu_us: 0.0,
                };
            }
        };
        let (end, cpu_end, relay_end) = end;
        let cpu = cpu_end - c;
        let relay_cpu = relay_end - rc;
        let mut clients = Vec::new();
        for s in senders {
            clients.push(s.await.unwrap());
        }
        drop(clients);
        Sample {
            rate: n as f64 / (end - t).as_secs_f64(),
            cpu_us: cpu * 1e6 / n as f64,
            relay_cpu_us: relay_cpu * 1e6 / n as f64,
        }
    });
    assert_eq!(
        metrics.packets_dropped_total(),
        0,
        "no packet may be dropped"
    );
    let _ = stop.send(());
    let _ = rt.block_on(running);
    rate
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var("FORWARDING_LOG").is_ok() {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .init();
    }
    let n = env_usize("FORWARDING_PACKETS", 8000);
    let rounds = env_usize("FORWARDING_ROUNDS", 5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("relay-worker")
        .enable_all()
        .build()
        .unwrap();
    let gen_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(0xbe_4c);
    let epoch = current_epoch();
    let mut all: [Vec<Sample>; 4] = Default::default();
    println!(
        "{n} packets per measurement, {rounds} rounds (round: x1, x2, relay 1 link, relay 4 links)"
    );
    for round in 0..rounds {
        all[0].push(onion_process_rate(&mut rng, epoch, n, 1));
        all[1].push(onion_process_rate(&mut rng, epoch, n, 2));
        all[2].push(relay_forward_rate(&rt, &gen_rt, &mut rng, epoch, n, 1));
        all[3].push(relay_forward_rate(&rt, &gen_rt, &mut rng, epoch, n, 4));
        println!(
            "round {round}: packets/s (CPU us/packet; relay threads only): x1 {:.0} ({:.1})  x2 {:.0} ({:.1})  relay1 {:.0} ({:.1}; {:.1})  relay4 {:.0} ({:.1}; {:.1})",
            all[0][round].rate,
            all[0][round].cpu_us,
            all[1][round].rate,
            all[1][round].cpu_us,
            all[2][round].rate,
            all[2][round].cpu_us,
            all[2][round].relay_cpu_us,
            all[3][round].rate,
            all[3][round].cpu_us,
            all[3][round].relay_cpu_us,
        );
    }
    let rate = |i: usize| median(all[i].iter().map(|s| s.rate).collect());
    let cpu = |i: usize| median(all[i].iter().map(|s| s.cpu_us).collect());
    let relay_cpu = |i: usize| median(all[i].iter().map(|s| s.relay_cpu_us).collect());
    let (o1, o2) = (rate(0), rate(1));
    let two = 2.0 * o1;
    println!("medians:");
    println!(
        "onion_process, 1 thread         {o1:>9.0} packets/s  {:>6.1} us CPU/packet",
        cpu(0)
    );
    println!(
        "onion_process, 2 threads        {o2:>9.0} packets/s  {:>6.1} us CPU/packet  ({:.2} x one thread)",
        cpu(1),
        o2 / o1
    );
    for (name, i) in [("1 inbound link ", 2), ("4 inbound links", 3)] {
        let r = rate(i);
        println!(
            "relay_forward, {name}  {r:>9.0} packets/s  {:>6.1} us CPU/packet ({:.1} in the relay's threads)  ratio to 2 x one thread {:.2}, to 2 threads measured {:.2}; relay CPU per packet {:.2} x onion_process",
            cpu(i),
            relay_cpu(i),
            r / two,
            r / o2,
            relay_cpu(i) / cpu(0)
        );
    }
}
