//! A relay and a client in one process, on 127.0.0.1: the client opens a Noise XK link to the
//! relay, pings it, the relay's Prometheus metrics are scraped, and the relay shuts down
//! gracefully. Run with `cargo run --example relay_ping`.
//!
//! To run the relay as a daemon instead: `zentalk-relayd init` then `zentalk-relayd run`
//! (see docs/running-a-relay.md).
#![allow(
    clippy::disallowed_types,
    reason = "an example: the OS RNG is the right source"
)]

use std::time::Duration;

use rand_core::OsRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zentalk_crypto::X25519Secret;
use zentalk_relay::{Limits, Relay, RelayConfig, RelayKeys, link};
use zentalk_wire::proto::{Close, CloseReason, Ping, Pong};
use zentalk_wire::{Frame, MessageId};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = RelayConfig {
        listen_addr: "127.0.0.1:0".parse()?,
        metrics_addr: "127.0.0.1:0".parse()?,
        shutdown_grace: Duration::from_secs(1),
        ..RelayConfig::default()
    };
    let keys = RelayKeys::generate(&mut OsRng);
    println!("relay node id: {}", keys.node_id().to_hex());
    let relay = Relay::bind_with_keys(config, keys).await?;
    let (addr, metrics_addr, relay_key) = (
        relay.local_addr()?,
        relay.metrics_addr()?,
        relay.noise_public(),
    );
    println!("relay listening on {addr}, metrics on http://{metrics_addr}/metrics");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(relay.run(async {
        let _ = stopped.await;
    }));

    // The client knows the relay's Noise static key in advance (Noise XK).
    let me = X25519Secret::generate(&mut OsRng);
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut link = link::connect(stream, &me, &relay_key, &Limits::default(), &mut OsRng).await?;
    println!("link established (Noise_XK_25519_ChaChaPoly_BLAKE2s)");
    // The relay opens every link with a mailbox challenge; this client opens no mailbox.
    let _challenge = link.recv().await?;
    for nonce in 1..=3 {
        let sent = tokio::time::Instant::now();
        link.send(&Frame::new(MessageId::random(&mut OsRng), &Ping { nonce })?)
            .await?;
        let pong: Pong = link.recv().await?.decode_body()?;
        println!(
            "ping {nonce} -> pong {} in {:?}",
            pong.nonce,
            sent.elapsed()
        );
    }

    let mut http = TcpStream::connect(metrics_addr).await?;
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    http.read_to_string(&mut response).await?;
    println!("metrics (excerpt):");
    for line in response.lines().filter(|l| {
        l.starts_with("zentalk_relay_links_open")
            || l.starts_with("zentalk_relay_frames_received_total")
            || l.starts_with("zentalk_relay_frames_sent_total")
    }) {
        println!("  {line}");
    }

    let _ = stop.send(());
    let close: Close = link.recv().await?.decode_body()?;
    println!(
        "relay closed the link: {:?}",
        CloseReason::try_from(close.reason).unwrap_or(CloseReason::Unspecified)
    );
    let report = running.await??;
    println!(
        "relay stopped: {} link(s) closed gracefully, {} cut",
        report.links_closed_gracefully, report.links_cut
    );
    Ok(())
}
