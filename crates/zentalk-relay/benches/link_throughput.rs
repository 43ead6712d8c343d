//! Noise link throughput over loopback TCP: 2 KiB frames sent one way through a
//! `zentalk_relay::Link`, against the same transfer done by hand with `snow` (same Noise
//! pattern, same u16 length prefix, no zentalk-wire framing, no buffering of ours) as the
//! peer baseline, and plaintext TCP as the ceiling.
//!
//! Each iteration pipelines `iters` messages, then a barrier message that the receiver answers,
//! so the time covers sending, receiving, decrypting and decoding all of them.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use zentalk_crypto::X25519Secret;
use zentalk_relay::{Limits, link};
use zentalk_wire::proto::{Ping, Pong};
use zentalk_wire::{Flags, Frame, MessageId, MessageType};

const FRAME_LEN: usize = 2048;
const BODY_LEN: usize = FRAME_LEN - zentalk_wire::HEADER_LEN;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

fn bench_link(group: &mut Group<'_>) {
    let rt = runtime();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let server_key = X25519Secret::generate(&mut rng);
    let client_key = X25519Secret::generate(&mut rng);
    let (mut client, server) = rt.block_on(async {
        let (c, s) = tcp_pair().await;
        let limits = Limits::default();
        let server = link::accept(s, &server_key, &limits, &mut rng);
        let client = link::connect(c, &client_key, &server_key.public_key(), &limits, &mut rng);
        let (c, s) = tokio::join!(client, server);
        (c.unwrap(), s.unwrap())
    });
    rt.spawn(async move {
        let mut server = server;
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        while let Ok(frame) = server.recv().await {
            if frame.message_type() == MessageType::Ping {
                let ping: Ping = frame.decode_body().unwrap();
                let pong =
                    Frame::new(MessageId::random(&mut rng), &Pong { nonce: ping.nonce }).unwrap();
                server.send(&pong).await.unwrap();
            }
        }
    });
    let data = Frame::onion_packet(
        MessageId::from_bytes([3; 16]),
        Flags::EMPTY,
        Bytes::from(vec![0x5a; BODY_LEN]),
    )
    .unwrap();
    assert_eq!(data.encoded_len(), FRAME_LEN);
    let ping = Frame::new(MessageId::from_bytes([4; 16]), &Ping { nonce: 1 }).unwrap();
    group.bench_function("zentalk_relay::Link (Noise XK, 1 frame per message)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = tokio::time::Instant::now();
                for _ in 0..iters {
                    client.send(&data).await.unwrap();
                }
                client.send(&ping).await.unwrap();
                let pong = client.recv().await.unwrap();
                assert_eq!(pong.message_type(), MessageType::Pong);
                start.elapsed()
            })
        });
    });
}

/// A snow resolver with a seeded RNG (the workspace builds snow without getrandom).
struct Seeded(std::sync::Mutex<Option<[u8; 32]>>);

struct SnowRng(ChaCha20Rng);

impl snow::types::Random for SnowRng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        rand_core::RngCore::fill_bytes(&mut self.0, dest);
        Ok(())
    }
}

impl CryptoResolver for Seeded {
    fn resolve_rng(&self) -> Option<Box<dyn snow::types::Random>> {
        let seed = self.0.lock().ok()?.take()?;
        Some(Box::new(SnowRng(ChaCha20Rng::from_seed(seed))))
    }
    fn resolve_dh(&self, c: &snow::params::DHChoice) -> Option<Box<dyn snow::types::Dh>> {
        DefaultResolver.resolve_dh(c)
    }
    fn resolve_hash(&self, c: &snow::params::HashChoice) -> Option<Box<dyn snow::types::Hash>> {
        DefaultResolver.resolve_hash(c)
    }
    fn resolve_cipher(
        &self,
        c: &snow::params::CipherChoice,
    ) -> Option<Box<dyn snow::types::Cipher>> {
        DefaultResolver.resolve_cipher(c)
    }
}

fn snow_pair() -> (snow::TransportState, snow::TransportState) {
    let params: snow::params::NoiseParams = link::NOISE_PATTERN.parse().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let s_key = X25519Secret::generate(&mut rng);
    let c_key = X25519Secret::generate(&mut rng);
    let s_secret = s_key.to_secret_bytes();
    let c_secret = c_key.to_secret_bytes();
    let mut init =
        snow::Builder::with_resolver(params.clone(), Box::new(Seeded(Some([6; 32]).into())))
            .prologue(link::PROLOGUE)
            .unwrap()
            .local_private_key(c_secret.expose())
            .unwrap()
            .remote_public_key(s_key.public_key().as_bytes())
            .unwrap()
            .build_initiator()
            .unwrap();
    let mut resp = snow::Builder::with_resolver(params, Box::new(Seeded(Some([7; 32]).into())))
        .prologue(link::PROLOGUE)
        .unwrap()
        .local_private_key(s_secret.expose())
        .unwrap()
        .build_responder()
        .unwrap();
    let (mut a, mut b) = ([0u8; 128], [0u8; 128]);
    let n = init.write_message(&[], &mut a).unwrap();
    resp.read_message(&a[..n], &mut b).unwrap();
    let n = resp.write_message(&[], &mut a).unwrap();
    init.read_message(&a[..n], &mut b).unwrap();
    let n = init.write_message(&[], &mut a).unwrap();
    resp.read_message(&a[..n], &mut b).unwrap();
    (
        init.into_transport_mode().unwrap(),
        resp.into_transport_mode().unwrap(),
    )
}

fn bench_raw_snow(group: &mut Group<'_>) {
    let rt = runtime();
    let (mut tx_state, mut rx_state) = snow_pair();
    let (mut client, mut server) = rt.block_on(tcp_pair());
    // Receiver: length-prefixed messages; a 1-byte plaintext is the barrier, answered by 1 byte.
    rt.spawn(async move {
        let mut msg = vec![0u8; 65535];
        let mut plain = vec![0u8; 65535];
        loop {
            let mut len = [0u8; 2];
            if server.read_exact(&mut len).await.is_err() {
                return;
            }
            let len = usize::from(u16::from_be_bytes(len));
            server.read_exact(&mut msg[..len]).await.unwrap();
            let n = rx_state.read_message(&msg[..len], &mut plain).unwrap();
            if n == 1 {
                server.write_all(&[1]).await.unwrap();
            }
        }
    });
    let payload = vec![0x5a; FRAME_LEN];
    let mut out = vec![0u8; 2 + FRAME_LEN + 16];
    group.bench_function("snow by hand (same pattern and prefix, no framing)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = tokio::time::Instant::now();
                for _ in 0..iters {
                    let n = tx_state.write_message(&payload, &mut out[2..]).unwrap();
                    out[..2].copy_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
                    client.write_all(&out[..2 + n]).await.unwrap();
                }
                let n = tx_state.write_message(&[0], &mut out[2..]).unwrap();
                out[..2].copy_from_slice(&u16::try_from(n).unwrap().to_be_bytes());
                client.write_all(&out[..2 + n]).await.unwrap();
                let mut ack = [0u8; 1];
                client.read_exact(&mut ack).await.unwrap();
                start.elapsed()
            })
        });
    });
}

fn bench_plain_tcp(group: &mut Group<'_>) {
    let rt = runtime();
    let (mut client, mut server) = rt.block_on(tcp_pair());
    rt.spawn(async move {
        let mut msg = vec![0u8; 65535];
        loop {
            let mut len = [0u8; 2];
            if server.read_exact(&mut len).await.is_err() {
                return;
            }
            let len = usize::from(u16::from_be_bytes(len));
            server.read_exact(&mut msg[..len]).await.unwrap();
            if len == 1 {
                server.write_all(&[1]).await.unwrap();
            }
        }
    });
    let mut out = vec![0x5a; 2 + FRAME_LEN];
    out[..2].copy_from_slice(&u16::try_from(FRAME_LEN).unwrap().to_be_bytes());
    group.bench_function("plaintext TCP (same prefix, no crypto)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = tokio::time::Instant::now();
                for _ in 0..iters {
                    client.write_all(&out).await.unwrap();
                }
                client.write_all(&[0, 1, 0]).await.unwrap();
                let mut ack = [0u8; 1];
                client.read_exact(&mut ack).await.unwrap();
                start.elapsed()
            })
        });
    });
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("link_2KiB_frames_loopback");
    group.throughput(Throughput::Bytes(FRAME_LEN as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    bench_link(&mut group);
    bench_raw_snow(&mut group);
    bench_plain_tcp(&mut group);
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
