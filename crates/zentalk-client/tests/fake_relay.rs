//! The network side against a stand-in relay that speaks the contract over real TCP and the
//! real Noise link layer (zentalk_relay::link::accept). The real relay's mailbox service is
//! being built concurrently; this checks the client half of the protocol.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::net::TcpListener;
use zentalk_client::net::{Incoming, MailboxLink, NetError, send_packet};
use zentalk_client::{Directory, MailboxKey, RelayEntry};
use zentalk_crypto::{IdentityPublicKey, NodeId, Signature, X25519Secret, hash::blake2b_256};
use zentalk_onion::{DEFAULT_REPLAY_CAPACITY, OnionRelay, PACKET_LEN, Processed};
use zentalk_relay::Limits;
use zentalk_relay::link::accept;
use zentalk_wire::proto::{
    Error as ErrBody, MailboxAck, MailboxAuth, MailboxBatch, MailboxChallenge, MailboxItem,
    MailboxPush,
};
use zentalk_wire::{Frame, MessageId, MessageType};

const RELAY_ID: [u8; 32] = [5; 32];

/// Serves one link: a mailbox session (challenge, auth check, batch, one push, ack) or an
/// onion packet. Returns what it saw.
async fn serve_one(
    listener: &TcpListener,
    noise: &X25519Secret,
    onion: &mut OnionRelay,
    challenge_relay_id: [u8; 32],
) -> String {
    let mut rng = ChaCha20Rng::seed_from_u64(77);
    let (stream, _) = listener.accept().await.unwrap();
    let mut link = accept(stream, noise, &Limits::default(), &mut rng)
        .await
        .unwrap();
    let ch = MailboxChallenge {
        nonce: Bytes::from(vec![9u8; 32]),
        relay_id: Bytes::copy_from_slice(&challenge_relay_id),
    };
    link.send(&Frame::new(MessageId::random(&mut rng), &ch).unwrap())
        .await
        .unwrap();
    let f = link.recv().await.unwrap();
    match f.message_type() {
        MessageType::OnionPacket => {
            assert_eq!(f.body().len(), PACKET_LEN);
            match onion.process(f.body(), 1).unwrap() {
                Processed::Deliver { message, .. } => String::from_utf8(message).unwrap(),
                _ => panic!("expected delivery at a one-hop route"),
            }
        }
        MessageType::MailboxAuth => {
            let a: MailboxAuth = f.decode_body().unwrap();
            let key = IdentityPublicKey::from_slice(&a.mailbox_key).unwrap();
            let mut msg = b"zentalk-mailbox-auth-v1".to_vec();
            msg.extend_from_slice(&RELAY_ID);
            msg.extend_from_slice(&a.nonce);
            msg.extend_from_slice(&a.mailbox_id);
            let ok = blake2b_256(key.as_bytes())[..] == a.mailbox_id[..]
                && a.nonce[..] == [9u8; 32]
                && key
                    .verify(&msg, &Signature::from_slice(&a.signature).unwrap())
                    .is_ok();
            if !ok {
                let e = ErrBody {
                    code: 6,
                    detail: "unauthorized".into(),
                    in_reply_to: Bytes::new(),
                };
                link.send(&Frame::new(MessageId::random(&mut rng), &e).unwrap())
                    .await
                    .unwrap();
                return "refused".into();
            }
            let item = |seq: u64| MailboxItem {
                seq,
                message_id: Bytes::from(vec![seq as u8; 16]),
                payload: Bytes::from(format!("item {seq}")),
            };
            let batch = MailboxBatch {
                items: vec![item(1), item(2)],
                more: false,
            };
            link.send(&Frame::new(MessageId::random(&mut rng), &batch).unwrap())
                .await
                .unwrap();
            let push = MailboxPush {
                mailbox_id: a.mailbox_id.clone(),
                item: Some(item(3)),
            };
            link.send(&Frame::new(MessageId::random(&mut rng), &push).unwrap())
                .await
                .unwrap();
            let f = link.recv().await.unwrap();
            let ack: MailboxAck = f.decode_body().unwrap();
            assert_eq!(ack.mailbox_id, a.mailbox_id);
            format!("acked {}", ack.up_to_seq)
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn mailbox_session_and_packet_send_over_noise() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let noise = X25519Secret::generate(&mut rng);
    let onion_key = X25519Secret::generate(&mut rng);
    let entry = RelayEntry {
        node: NodeId::from_bytes(RELAY_ID),
        addr: listener.local_addr().unwrap(),
        noise_key: noise.public_key().to_bytes(),
        onion_keys: vec![(1, onion_key.public_key().to_bytes())],
    };
    let mut onion = OnionRelay::new(DEFAULT_REPLAY_CAPACITY / 1024);
    onion.insert_epoch_key(1, onion_key).unwrap();

    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        // The third challenge names another relay id: a signature over it does not verify
        // for this relay (the relay id is signed precisely so that it cannot be reused).
        for id in [RELAY_ID, RELAY_ID, [6; 32]] {
            seen.push(serve_one(&listener, &noise, &mut onion, id).await);
        }
        seen
    });

    // 1. The owner opens its mailbox: first page, then a push, then an ack.
    let key = MailboxKey::generate(&mut rng, entry.node);
    let (mut mb, first) = MailboxLink::open(&entry, &key, &Limits::default(), &mut rng)
        .await
        .unwrap();
    let Incoming::Batch { items, more } = first else {
        panic!("expected a batch")
    };
    assert_eq!(items.iter().map(|i| i.seq).collect::<Vec<_>>(), [1, 2]);
    assert!(!more);
    let Incoming::Push(item) = mb.next().await.unwrap() else {
        panic!("expected a push")
    };
    assert_eq!(&item.payload[..], b"item 3");
    mb.ack(3, &mut rng).await.unwrap();

    // 2. A one-hop onion packet to this relay's mailbox.
    let dir = Directory::new(vec![entry.clone()]);
    let dest = key.addr();
    let route = dir.relays()[0].clone();
    let out = zentalk_onion::build_packet(
        &mut rng,
        &[zentalk_onion::Hop {
            node: route.node,
            onion_key: zentalk_crypto::X25519PublicKey::from_bytes(route.onion_keys[0].1),
            epoch: 1,
        }],
        dest.mailbox,
        b"through the link",
    )
    .unwrap();
    send_packet(&entry, out, &Limits::default(), &mut rng)
        .await
        .unwrap();

    // 3. A refusal arrives as NetError::Refused.
    let key2 = MailboxKey::generate(&mut rng, entry.node);
    let r = MailboxLink::open(&entry, &key2, &Limits::default(), &mut rng).await;
    assert!(matches!(r, Err(NetError::Refused { code: 6, .. })), "{r:?}");

    let seen = server.await.unwrap();
    assert_eq!(seen, ["acked 3", "through the link", "refused"]);
}
