//! The `relay_link` fuzz harness and the replay of its corpus.
//!
//! Input: what a peer sends on an **established** link (the Noise handshake is done for it, as
//! a real initiator over an in-memory `tokio::io::duplex` stream) into the relay's own frame
//! handling (`RelayHandle::serve_stream`, the code that serves accepted TCP connections). The
//! input is a sequence of records `kind (1 byte) || len (u16 BE) || len bytes`:
//!
//! * kind % 4 = 0 or 1: the bytes, encrypted as one Noise transport message (any plaintext:
//!   not necessarily a frame);
//! * kind % 4 = 2: the bytes written raw to the stream, outside Noise (garbage, short or
//!   oversized length prefixes, truncated messages);
//! * kind % 4 = 3: a frame of message type `u16 BE` (first two bytes) with the rest as its
//!   body, so every type's body decoder is reached.
//!
//! After the records the peer closes its side. Checks: nothing panics; the link ends within
//! 10 s; it ends with the peer's Close or one of the typed errors of peer input (closed,
//! truncated, frame too large, message too short, decrypt failed, malformed frame); when the
//! error is one the relay reports (`FrameTooLarge`, `MessageTooShort`, `Frame`), the last frame
//! the peer received is an `Error` whose detail is that error's reason; every frame the relay
//! sent decodes and is of a type a relay sends.
//!
//! The fuzz target `fuzz/fuzz_targets/relay_link.rs` includes this file as a module, so the
//! two cannot drift apart. Run: `cargo +nightly fuzz run relay_link`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::io::AsyncWriteExt;
use zentalk_crypto::X25519Secret;
use zentalk_relay::link;
use zentalk_relay::{Limits, LinkEnd, LinkError, Relay, RelayConfig, RelayHandle, RelayKeys};
use zentalk_wire::{Flags, Frame, MessageId, MessageType};

/// Most records read from one input.
pub const MAX_RECORDS: usize = 64;

struct Fixture {
    rt: tokio::runtime::Runtime,
    handle: RelayHandle,
    _relay: Relay,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = RelayConfig {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            mailbox_path: dir.path().join("mailbox.sqlite"),
            ..RelayConfig::default()
        };
        let keys = RelayKeys::generate(&mut ChaCha20Rng::seed_from_u64(0x66_757a));
        let relay = rt.block_on(Relay::bind_with_keys(config, keys)).unwrap();
        let handle = relay.handle();
        Fixture {
            rt,
            handle,
            _relay: relay,
            _dir: dir,
        }
    })
}

/// One record of the input.
enum Record<'a> {
    Encrypted(&'a [u8]),
    Raw(&'a [u8]),
    Typed(u16, &'a [u8]),
}

fn records(mut data: &[u8]) -> Vec<Record<'_>> {
    let mut out = Vec::new();
    while data.len() >= 3 && out.len() < MAX_RECORDS {
        let kind = data[0];
        let len = usize::from(u16::from_be_bytes([data[1], data[2]])).min(data.len() - 3);
        let bytes = &data[3..3 + len];
        data = &data[3 + len..];
        out.push(match kind % 4 {
            0 | 1 => Record::Encrypted(bytes),
            2 => Record::Raw(bytes),
            _ if bytes.len() >= 2 => {
                Record::Typed(u16::from_be_bytes([bytes[0], bytes[1]]), &bytes[2..])
            }
            _ => Record::Encrypted(bytes),
        });
    }
    out
}

/// Frame types a relay sends on a link.
fn relay_sends(ty: MessageType) -> bool {
    matches!(
        ty,
        MessageType::MailboxChallenge
            | MessageType::Pong
            | MessageType::Error
            | MessageType::Close
            | MessageType::MailboxBatch
            | MessageType::MailboxPush
            | MessageType::TransitReceipt
    )
}

/// Runs one input (see the module documentation).
pub fn harness(data: &[u8]) {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let f = fixture();
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    f.rt.block_on(async {
        let mut rng = ChaCha20Rng::seed_from_u64(n);
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let serving = tokio::spawn(f.handle.serve_stream(theirs));
        let me = X25519Secret::generate(&mut rng);
        let info = f.handle.peer_info();
        let mut peer = link::connect(ours, &me, &info.noise_key, &Limits::default(), &mut rng)
            .await
            .expect("handshake with the relay");
        for record in records(data) {
            let sent = match record {
                Record::Encrypted(b) => peer.send_unchecked(b).await,
                Record::Raw(b) => peer.get_mut().write_all(b).await.map_err(LinkError::Io),
                Record::Typed(code, body) => {
                    let ty = MessageType::try_from(code).unwrap_or(MessageType::Ping);
                    match Frame::from_raw(
                        ty,
                        MessageId::random(&mut rng),
                        Flags::EMPTY,
                        zentalk_wire::bytes::Bytes::copy_from_slice(body),
                    ) {
                        Ok(frame) => peer.send(&frame).await,
                        Err(_) => peer.send_unchecked(body).await,
                    }
                }
            };
            // The relay may already have closed the link: later records cannot arrive.
            if sent.is_err() {
                break;
            }
        }
        let _ = peer.get_mut().shutdown().await;
        let end = tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .expect("the link ends within 10 s")
            .expect("serving the link does not panic");
        let mut received = Vec::new();
        while let Ok(Ok(frame)) = tokio::time::timeout(Duration::from_secs(1), peer.recv()).await {
            assert!(
                relay_sends(frame.message_type()),
                "relay sent {:?}",
                frame.message_type()
            );
            received.push(frame);
        }
        assert!(
            received
                .first()
                .is_some_and(|f| f.message_type() == MessageType::MailboxChallenge),
            "the relay opens with a challenge"
        );
        match &end {
            LinkEnd::PeerClosed => {}
            LinkEnd::Error(
                e @ (LinkError::FrameTooLarge { .. }
                | LinkError::MessageTooShort { .. }
                | LinkError::Frame(_)),
            ) => {
                let last = received.last().expect("an Error frame before closing");
                assert_eq!(last.message_type(), MessageType::Error, "{e:?}");
                let body: zentalk_wire::proto::Error = last.decode_body().unwrap();
                assert_eq!(body.detail, e.reason());
            }
            LinkEnd::Error(
                LinkError::Closed | LinkError::Truncated { .. } | LinkError::Decrypt,
            ) => {}
            other => panic!("link ended with {other:?}"),
        }
    });
}

#[test]
fn corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_corpus/relay_link");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        println!("{}", path.display());
        harness(&data);
        n += 1;
    }
    assert!(n >= 8, "corpus has {n} inputs");
}

#[test]
fn hand_written_inputs_close_with_their_typed_reasons() {
    // Garbage outside Noise: decrypt failure.
    let mut garbage = vec![2, 0, 20, 0, 18];
    garbage.extend([0xab; 18]);
    harness(&garbage);
    // An encrypted message that is not a frame: malformed frame, reported with an Error.
    harness(&[0, 0, 5, b'h', b'e', b'l', b'l', b'o']);
    // A length prefix above the frame limit: frame too large, reported.
    harness(&[2, 0, 2, 0xff, 0xff]);
    // A Ping with a garbage body, then Close: the link stays up for the Ping, then closes.
    let ping = MessageType::Ping.code().to_be_bytes();
    let close = MessageType::Close.code().to_be_bytes();
    harness(&[
        3, 0, 5, ping[0], ping[1], 0xff, 0xff, 0xff, 3, 0, 2, close[0], close[1],
    ]);
    // Nothing at all: the peer just closes.
    harness(&[]);
}
