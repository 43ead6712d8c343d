//! Log hygiene: at trace level, logs never contain a key, nor a client IP unless the
//! operator sets `log_client_ips = true`. Its own test binary, so that no other test's
//! tracing state shares the process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zentalk_crypto::X25519Secret;
use zentalk_relay::link;
use zentalk_relay::{Limits, RelayConfig, RelayKeys};
use zentalk_wire::{Flags, Frame, MessageId};

/// A `MakeWriter` that appends every log line to a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Runs a busy session (good link, hostile links, shutdown) under a trace-level subscriber
/// and returns the captured logs and every key in play.
fn logged_session(log_client_ips: bool) -> (String, Vec<[u8; 32]>) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    let keys = RelayKeys::generate(&mut ChaCha20Rng::seed_from_u64(SEED + 2));
    let mut secrets = vec![
        *keys.identity().seed(),
        *keys.noise_static().to_secret_bytes().expose(),
        keys.noise_public().to_bytes(),
        keys.identity().public_key().to_bytes(),
    ];
    let mut rng = ChaCha20Rng::seed_from_u64(SEED + 3);
    let client_key = X25519Secret::generate(&mut rng);
    secrets.push(*client_key.to_secret_bytes().expose());
    secrets.push(client_key.public_key().to_bytes());
    let _guard = tracing::subscriber::set_default(subscriber);
    // current_thread: every task runs on this thread, under the default subscriber above.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = RelayConfig {
            log_client_ips,
            ..local_config(Limits {
                max_frame_len: 1024,
                ..Limits::default()
            })
        };
        let relay = start_with(config, keys).await;
        let stream = TcpStream::connect(relay.addr).await.unwrap();
        let mut c = link::connect(
            stream,
            &client_key,
            &relay.noise_public,
            &Limits::default(),
            &mut rng,
        )
        .await
        .unwrap();
        ping(&mut c, 1).await;
        let mut garbage = TcpStream::connect(relay.addr).await.unwrap();
        garbage.write_all(&[0x00, 48]).await.unwrap();
        garbage.write_all(&[0x11; 48]).await.unwrap();
        let mut buf = [0u8; 8];
        let _ = garbage.read(&mut buf).await;
        let big = Frame::onion_packet(
            MessageId::from_bytes([1; 16]),
            Flags::EMPTY,
            bytes::Bytes::from(vec![0; 2048]),
        )
        .unwrap();
        let mut c2 = client(&relay, 99).await;
        c2.send(&big).await.unwrap();
        let _ = c2.recv().await;
        let _ = scrape(relay.metrics_addr).await;
        relay.stop.send(()).unwrap();
        relay.handle.await.unwrap();
    });
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    (logs, secrets)
}

#[test]
fn logs_contain_no_keys_and_no_client_ips_unless_asked() {
    let (logs, secrets) = logged_session(false);
    assert!(
        logs.contains("link established"),
        "logs were not captured: {logs}"
    );
    assert!(logs.contains("handshake failed"), "{logs}");
    assert!(!logs.contains("127.0.0.1"), "client IP in logs:\n{logs}");
    for key in &secrets {
        let hex = hex::encode(key);
        assert!(!logs.contains(&hex), "key {hex} in logs");
        let upper = hex.to_uppercase();
        assert!(!logs.contains(&upper), "key {upper} in logs");
        let debug = format!("{key:?}");
        assert!(
            !logs.contains(&debug[1..debug.len() - 1]),
            "key bytes in logs"
        );
    }
    // The positive control: with the operator's consent the same session logs the IP.
    let (logs, _) = logged_session(true);
    assert!(logs.contains("127.0.0.1"), "{logs}");
}
