//! A running relay over real TCP on 127.0.0.1: ping/pong, limits, hostile peers, metrics
//! and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zentalk_crypto::X25519Secret;
use zentalk_relay::link;
use zentalk_relay::{Limits, Relay, RelayConfig, RelayKeys};
use zentalk_wire::proto::{Close, CloseReason, Error as ErrorBody, ErrorCode};
use zentalk_wire::{Flags, Frame, MessageId, MessageType};

#[tokio::test]
async fn ping_pong_metrics_and_graceful_shutdown() {
    let relay = start(Limits::default()).await;
    let mut a = client(&relay, 1).await;
    let mut b = client(&relay, 2).await;
    for n in 0..3 {
        ping(&mut a, n).await;
        ping(&mut b, 10 + n).await;
    }
    assert_eq!(relay.metrics.links_open(), 2);
    assert_eq!(relay.metrics.frames_received(), 6);
    // Six pongs and each link's opening mailbox challenge.
    assert_eq!(relay.metrics.frames_sent(), 8);
    let text = scrape(relay.metrics_addr).await;
    assert!(text.contains("zentalk_relay_links_open 2\n"), "{text}");
    assert!(
        text.contains("zentalk_relay_frames_received_total 6\n"),
        "{text}"
    );
    assert!(
        text.contains("zentalk_relay_handshakes_completed_total 2\n"),
        "{text}"
    );

    // Shutdown: both links get Close(shutdown), then the stream ends; run returns.
    relay.stop.send(()).unwrap();
    for link in [&mut a, &mut b] {
        let close = link.recv().await.unwrap();
        assert_eq!(close.message_type(), MessageType::Close);
        assert_eq!(
            close.decode_body::<Close>().unwrap().reason,
            CloseReason::Shutdown as i32
        );
        assert!(matches!(
            link.recv().await.unwrap_err(),
            zentalk_relay::LinkError::Closed
        ));
    }
    let report = relay.handle.await.unwrap();
    assert_eq!(report.links_closed_gracefully, 2);
    assert_eq!(report.links_cut, 0);
    assert_eq!(relay.metrics.links_closed("shutdown"), 2);
    // No longer accepting.
    assert!(TcpStream::connect(relay.addr).await.is_err());
}

#[tokio::test]
async fn hostile_peers_lose_only_their_own_link() {
    let limits = Limits {
        max_frame_len: 4096,
        handshake_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let relay = start(limits).await;
    let mut good = client(&relay, 3).await;
    ping(&mut good, 1).await;

    // 1. Garbage instead of a handshake.
    let mut garbage = TcpStream::connect(relay.addr).await.unwrap();
    garbage.write_all(&[0x00, 48]).await.unwrap();
    garbage.write_all(&[0xde; 48]).await.unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(garbage.read(&mut buf).await.unwrap_or(0), 0);

    // 2. Half a handshake: the relay gives up after the handshake timeout.
    let mut half = TcpStream::connect(relay.addr).await.unwrap();
    half.write_all(&[0x00, 48, 1, 2, 3]).await.unwrap();
    assert_eq!(half.read(&mut buf).await.unwrap_or(0), 0);

    // 3. A wrong static key.
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let me = X25519Secret::generate(&mut rng);
    let wrong = X25519Secret::generate(&mut rng).public_key();
    let stream = TcpStream::connect(relay.addr).await.unwrap();
    assert!(
        link::connect(stream, &me, &wrong, &Limits::default(), &mut rng)
            .await
            .is_err()
    );

    // 4. An oversized frame after a good handshake: Error(TOO_LONG), then the link closes.
    let mut big = client(&relay, 5).await;
    let frame = Frame::onion_packet(
        MessageId::from_bytes([5; 16]),
        Flags::EMPTY,
        bytes::Bytes::from(vec![0; 5000]),
    )
    .unwrap();
    big.send(&frame).await.unwrap();
    let err = big.recv().await.unwrap();
    assert_eq!(err.message_type(), MessageType::Error);
    assert_eq!(
        err.decode_body::<ErrorBody>().unwrap().code,
        ErrorCode::TooLong as i32
    );
    assert!(big.recv().await.is_err());

    // 5. A garbage transport message after a good handshake: the link closes.
    let mut tampered = client(&relay, 6).await;
    ping(&mut tampered, 2).await;
    let mut raw = vec![0x00, 64];
    raw.extend([0xaa; 64]);
    tampered.get_mut().write_all(&raw).await.unwrap();
    assert!(tampered.recv().await.is_err());

    wait_for("handshake failures", || {
        relay.metrics.handshake_failures_total() >= 3
    })
    .await;
    assert_eq!(relay.metrics.handshake_failures("handshake_failed"), 2);
    assert_eq!(relay.metrics.handshake_failures("handshake_timeout"), 1);
    wait_for("oversized frame counted", || {
        relay.metrics.frames_dropped("frame_too_large") == 1
    })
    .await;

    // The good link never noticed.
    for n in 10..20 {
        ping(&mut good, n).await;
    }
    assert_eq!(relay.metrics.frames_dropped("decrypt_failed"), 1);
    assert_eq!(relay.metrics.links_closed("decrypt_failed"), 1);
    let text = scrape(relay.metrics_addr).await;
    assert!(
        text.contains("zentalk_relay_handshake_failures_total{reason=\"handshake_failed\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("zentalk_relay_frames_dropped_total{reason=\"frame_too_large\"} 1\n"),
        "{text}"
    );
    relay.stop.send(()).unwrap();
    relay.handle.await.unwrap();
}

#[tokio::test]
async fn unsupported_and_malformed_bodies_are_answered_and_the_link_stays() {
    let relay = start(Limits::default()).await;
    let mut c = client(&relay, 7).await;
    let id = MessageId::from_bytes([9; 16]);
    // An onion packet of the wrong length is dropped and counted; the link stays.
    let onion = Frame::onion_packet(id, Flags::EMPTY, bytes::Bytes::from(vec![1; 1024])).unwrap();
    c.send(&onion).await.unwrap();
    // A type this relay does not serve (deposits go through onion packets) gets an Error.
    let put = Frame::from_raw(
        MessageType::MailboxPut,
        id,
        Flags::EMPTY,
        bytes::Bytes::from_static(&[0x0a, 0x00]),
    )
    .unwrap();
    c.send(&put).await.unwrap();
    let answer = c.recv().await.unwrap();
    let body = answer.decode_body::<ErrorBody>().unwrap();
    assert_eq!(body.code, ErrorCode::UnknownType as i32);
    assert_eq!(body.in_reply_to.as_ref(), id.as_bytes());

    // A Ping whose body is not protobuf.
    let bad = Frame::from_raw(
        MessageType::Ping,
        id,
        Flags::EMPTY,
        bytes::Bytes::from_static(&[0xff, 0xff, 0xff]),
    )
    .unwrap();
    c.send(&bad).await.unwrap();
    let answer = c.recv().await.unwrap();
    assert_eq!(answer.message_type(), MessageType::Error);
    ping(&mut c, 77).await;
    assert_eq!(relay.metrics.frames_dropped("unsupported_type"), 1);
    assert_eq!(relay.metrics.packets_dropped("bad_length"), 1);
    assert_eq!(relay.metrics.frames_dropped("malformed_body"), 1);

    // A Close from the peer ends the link cleanly.
    c.send(
        &Frame::new(
            id,
            &Close {
                reason: CloseReason::Normal as i32,
            },
        )
        .unwrap(),
    )
    .await
    .unwrap();
    assert!(c.recv().await.is_err());
    wait_for("peer close", || {
        relay.metrics.links_closed("peer_close") == 1
    })
    .await;
    relay.stop.send(()).unwrap();
    relay.handle.await.unwrap();
}

#[tokio::test]
async fn connection_caps_per_ip_and_total() {
    let limits = Limits {
        max_connections: 3,
        max_connections_per_ip: 2,
        ..Limits::default()
    };
    let relay = start(limits).await;
    let mut a = client(&relay, 8).await;
    let _b = client(&relay, 9).await;
    // The third connection from 127.0.0.1 is closed right after accept.
    let mut third = TcpStream::connect(relay.addr).await.unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(third.read(&mut buf).await.unwrap_or(0), 0);
    assert_eq!(
        relay.metrics.connections_refused("max_connections_per_ip"),
        1
    );
    ping(&mut a, 1).await;

    // From another loopback address, the total cap (3) applies after one more.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let _c = other.connect(relay.addr).await.unwrap();
    let fourth = tokio::net::TcpSocket::new_v4().unwrap();
    fourth.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let mut fourth = fourth.connect(relay.addr).await.unwrap();
    assert_eq!(fourth.read(&mut buf).await.unwrap_or(0), 0);
    assert_eq!(relay.metrics.connections_refused("max_connections"), 1);

    // Slots come back when links close.
    drop(a);
    wait_for("slot released", || relay.metrics.links_open() == 1).await;
    let mut again = client(&relay, 10).await;
    ping(&mut again, 2).await;
    relay.stop.send(()).unwrap();
    relay.handle.await.unwrap();
}

#[tokio::test]
async fn idle_links_are_closed_with_a_reason() {
    let limits = Limits {
        idle_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let relay = start(limits).await;
    let mut c = client(&relay, 11).await;
    ping(&mut c, 1).await;
    let close = c.recv().await.unwrap();
    assert_eq!(
        close.decode_body::<Close>().unwrap().reason,
        CloseReason::Idle as i32
    );
    assert!(c.recv().await.is_err());
    wait_for("idle close", || {
        relay.metrics.links_closed("idle_timeout") == 1
    })
    .await;
    relay.stop.send(()).unwrap();
    relay.handle.await.unwrap();
}

#[tokio::test]
async fn per_link_rate_is_enforced_by_pausing_reads() {
    let limits = Limits {
        rate_frames_per_sec: 100,
        ..Limits::default()
    };
    let relay = start(limits).await;
    let mut fast = client(&relay, 12).await;
    let mut other = client(&relay, 13).await;
    let started = tokio::time::Instant::now();
    // 100 frames of burst, then 50 more at 100/s: at least 0.4 s.
    for n in 0..150 {
        ping(&mut fast, n).await;
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(relay.metrics.rate_limit_pauses() >= 40);
    // Another link has its own bucket: its first ping is answered at once.
    let t = tokio::time::Instant::now();
    ping(&mut other, 1).await;
    assert!(t.elapsed() < Duration::from_millis(200));
    relay.stop.send(()).unwrap();
    relay.handle.await.unwrap();
}

#[tokio::test]
async fn grace_period_cuts_links_stuck_in_a_handshake_no_longer() {
    // A connection mid-handshake when shutdown starts is abandoned, not waited for.
    let relay = start(Limits::default()).await;
    let mut half = TcpStream::connect(relay.addr).await.unwrap();
    half.write_all(&[0x00, 48, 1]).await.unwrap();
    wait_for("accept", || relay.metrics.connections_accepted() == 1).await;
    let t = tokio::time::Instant::now();
    relay.stop.send(()).unwrap();
    let report = relay.handle.await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(report.links_cut, 0);
    assert_eq!(relay.metrics.handshake_failures("shutdown"), 1);
}

#[tokio::test]
async fn bind_reports_errors() {
    let limits = Limits {
        max_connections: 0,
        ..Limits::default()
    };
    let keys = RelayKeys::generate(&mut ChaCha20Rng::seed_from_u64(SEED));
    let err = Relay::bind_with_keys(local_config(limits), keys.duplicate())
        .await
        .unwrap_err();
    assert!(matches!(err, zentalk_relay::RelayError::Limits(_)), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = RelayConfig {
        listen_addr: taken.local_addr().unwrap(),
        ..local_config(Limits::default())
    };
    let err = Relay::bind_with_keys(config, keys).await.unwrap_err();
    assert!(
        matches!(err, zentalk_relay::RelayError::Bind { what: "links", .. }),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = RelayConfig {
        key_file: dir.path().join("missing.key"),
        ..local_config(Limits::default())
    };
    let err = Relay::bind(config).await.unwrap_err();
    assert!(matches!(err, zentalk_relay::RelayError::Keys(_)), "{err}");
}

#[tokio::test]
async fn bind_loads_the_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.key");
    let keys = RelayKeys::generate(&mut ChaCha20Rng::seed_from_u64(SEED + 1));
    keys.create_file(&path).unwrap();
    let config = RelayConfig {
        key_file: path,
        ..local_config(Limits::default())
    };
    let relay = Relay::bind(config).await.unwrap();
    assert_eq!(relay.noise_public(), keys.noise_public());
}

#[tokio::test]
async fn a_peer_that_sends_but_never_reads_loses_its_link() {
    let limits = Limits {
        send_timeout: Duration::from_millis(200),
        rate_frames_per_sec: 1_000_000,
        ..Limits::default()
    };
    let relay = start(limits).await;
    let mut good = client(&relay, 20).await;
    // A small receive buffer, never read: the relay's Pongs back up behind it.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(relay.addr).await.unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let me = X25519Secret::generate(&mut rng);
    let mut stubborn = link::connect(
        stream,
        &me,
        &relay.noise_public,
        &Limits::default(),
        &mut rng,
    )
    .await
    .unwrap();
    let writer = tokio::spawn(async move {
        for nonce in 0..200_000u64 {
            let frame = Frame::new(
                MessageId::from_bytes([2; 16]),
                &zentalk_wire::proto::Ping { nonce },
            )
            .unwrap();
            if stubborn.send(&frame).await.is_err() {
                break;
            }
        }
    });
    wait_for_secs("send timeout", 10, || {
        relay.metrics.links_closed("send_timeout") == 1
    })
    .await;
    writer.abort();
    ping(&mut good, 1).await;
    relay.stop.send(()).unwrap();
    relay.handle.await.unwrap();
}
