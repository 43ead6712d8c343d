//! Helpers shared by the integration tests: a relay on 127.0.0.1 and a Noise client.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use zentalk_crypto::{X25519PublicKey, X25519Secret};
use zentalk_relay::link::{self, Link};
use zentalk_relay::{Limits, Metrics, Relay, RelayConfig, RelayKeys, ShutdownReport};
use zentalk_wire::proto::{Ping, Pong};
use zentalk_wire::{Frame, MessageId, MessageType};

pub const SEED: u64 = 0x0072_656c_6179;

pub struct Running {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub noise_public: X25519PublicKey,
    pub metrics: Arc<Metrics>,
    pub stop: oneshot::Sender<()>,
    pub handle: tokio::task::JoinHandle<ShutdownReport>,
}

pub fn local_config(limits: Limits) -> RelayConfig {
    // Each relay's mailbox in its own temporary directory (kept: the relay outlives this call).
    let dir = tempfile::tempdir().unwrap().keep();
    RelayConfig {
        mailbox_path: dir.join("mailbox.sqlite"),
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        shutdown_grace: Duration::from_secs(2),
        limits,
        ..RelayConfig::default()
    }
}

pub async fn start_with(config: RelayConfig, keys: RelayKeys) -> Running {
    let relay = Relay::bind_with_keys(config, keys).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    Running {
        addr: relay.local_addr().unwrap(),
        metrics_addr: relay.metrics_addr().unwrap(),
        noise_public: relay.noise_public(),
        metrics: relay.metrics(),
        stop,
        handle: tokio::spawn(async move {
            relay
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap()
        }),
    }
}

pub async fn start(limits: Limits) -> Running {
    println!("seed {SEED:#x}");
    let keys = RelayKeys::generate(&mut ChaCha20Rng::seed_from_u64(SEED));
    start_with(local_config(limits), keys).await
}

pub async fn client(relay: &Running, seed: u64) -> Link<TcpStream> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let me = X25519Secret::generate(&mut rng);
    let stream = TcpStream::connect(relay.addr).await.unwrap();
    let mut link = link::connect(
        stream,
        &me,
        &relay.noise_public,
        &Limits::default(),
        &mut rng,
    )
    .await
    .unwrap();
    // Every link starts with a mailbox challenge from the relay.
    let challenge = link.recv().await.unwrap();
    assert_eq!(challenge.message_type(), MessageType::MailboxChallenge);
    link
}

pub async fn ping(link: &mut Link<TcpStream>, nonce: u64) {
    let id = MessageId::from_bytes(nonce.to_le_bytes().repeat(2).try_into().unwrap());
    link.send(&Frame::new(id, &Ping { nonce }).unwrap())
        .await
        .unwrap();
    let mut answer = link.recv().await.unwrap();
    // A link's first frame from the relay is its mailbox challenge.
    if answer.message_type() == MessageType::MailboxChallenge {
        answer = link.recv().await.unwrap();
    }
    assert_eq!(answer.message_type(), MessageType::Pong);
    assert_eq!(answer.decode_body::<Pong>().unwrap().nonce, nonce);
}

pub async fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    wait_for_secs(what, 2, cond).await;
}

pub async fn wait_for_secs(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    for _ in 0..secs * 100 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// GET /metrics with a plain HTTP/1.1 request.
pub async fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("text/plain; version=0.0.4"), "{out}");
    out
}
