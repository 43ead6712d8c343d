//! Behaviour of packets, relays, reply blocks and route selection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{EPOCH, Net, rng};
use rand_core::RngCore;
use zentalk_crypto::{NodeId, X25519PublicKey, X25519Secret};
use zentalk_onion::{
    DEFAULT_REPLAY_CAPACITY, EPOCH_GRACE, HEADER_LEN, Hop, MAX_EPOCH_KEYS, MAX_HOPS,
    MAX_MESSAGE_LEN, MailboxId, OnionError, OnionPacket, OnionRelay, PACKET_LEN, PAYLOAD_LEN,
    Processed, ReplyKeyStore, ReplyPayload, SURB_LEN, Surb, UniformWeight, build_packet,
    select_route,
};

const MAILBOX: MailboxId = MailboxId::from_bytes([0x4D; 32]);

#[test]
fn round_trip_for_every_route_length_and_message_length() {
    let mut rng = rng(1);
    let mut net = Net::new(&mut rng, MAX_HOPS + 1, 1000);
    for hops in 1..=MAX_HOPS {
        for len in [0, 1, 100, MAX_MESSAGE_LEN] {
            let route: Vec<_> = net.route(&(0..hops).rev().collect::<Vec<_>>());
            let mut msg = vec![0u8; len];
            rng.fill_bytes(&mut msg);
            let out = build_packet(&mut rng, &route, MAILBOX, &msg).unwrap();
            assert_eq!(out.first_hop, route[0].node);
            let (seen, end) = net.run(out.first_hop, out.packet.into_bytes());
            assert_eq!(seen.len(), hops, "one packet per hop");
            for (i, (node, bytes)) in seen.iter().enumerate() {
                assert_eq!(*node, route[i].node, "hop {i} goes to the right relay");
                assert_eq!(bytes.len(), PACKET_LEN, "same size at hop {i}");
            }
            match end.unwrap() {
                Processed::Deliver { mailbox, message } => {
                    assert_eq!(mailbox, MAILBOX);
                    assert_eq!(message, msg);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// Bytes of `a` and `b` equal at the same position, outside the cleartext version and epoch.
fn equal_positions(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).skip(5).filter(|(x, y)| x == y).count()
}

#[test]
fn two_packets_for_the_same_route_share_no_bytes_but_framing() {
    let mut rng = rng(2);
    let mut net = Net::new(&mut rng, 3, 1000);
    let route = net.route(&[0, 1, 2]);
    let a = build_packet(&mut rng, &route, MAILBOX, b"same message").unwrap();
    let b = build_packet(&mut rng, &route, MAILBOX, b"same message").unwrap();
    let (sa, _) = net.run(a.first_hop, a.packet.into_bytes());
    let (sb, _) = net.run(b.first_hop, b.packet.into_bytes());
    for (hop, ((_, x), (_, y))) in sa.iter().zip(&sb).enumerate() {
        assert_eq!(x[..5], y[..5], "version and epoch are the only framing");
        // Random agreement is 1/256 per byte: about 10 of 2521 positions.
        let eq = equal_positions(x, y);
        assert!(eq < 40, "hop {hop}: {eq} equal positions");
    }
    // And no packet at one hop shares structure with any packet at another hop.
    for (_, x) in &sa {
        for (_, y) in &sb {
            assert!(equal_positions(x, y) < 40);
        }
    }
}

/// Chi-square statistic of the byte histogram of `data` against uniform (255 d.o.f.: mean
/// 255, standard deviation about 22.6).
fn chi_square(data: &[u8]) -> f64 {
    let mut counts = [0u64; 256];
    for b in data {
        counts[*b as usize] += 1;
    }
    let expected = data.len() as f64 / 256.0;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

#[test]
fn every_hop_sees_uniform_bytes_of_one_length_whatever_the_route_length() {
    let mut rng = rng(3);
    let mut net = Net::new(&mut rng, MAX_HOPS, 10_000);
    for hops in 1..=MAX_HOPS {
        // Collect, per position in the route, the packets the relay there receives.
        let mut per_hop: Vec<Vec<u8>> = vec![Vec::new(); hops];
        for _ in 0..40 {
            let route = net.route(&(0..hops).collect::<Vec<_>>());
            let out = build_packet(&mut rng, &route, MAILBOX, b"short").unwrap();
            let (seen, end) = net.run(out.first_hop, out.packet.into_bytes());
            assert!(matches!(end, Ok(Processed::Deliver { .. })));
            for (i, (_, bytes)) in seen.iter().enumerate() {
                assert_eq!(bytes.len(), PACKET_LEN);
                per_hop[i].extend_from_slice(&bytes[5..]);
            }
        }
        for (i, data) in per_hop.iter().enumerate() {
            let chi = chi_square(data);
            // 6 standard deviations above the mean: a zero-padded header or a readable
            // payload would be thousands.
            assert!(chi < 400.0, "route of {hops}, hop {i}: chi-square {chi}");
        }
    }
}

#[test]
fn a_relay_cannot_read_the_payload_or_later_layers() {
    let mut rng = rng(4);
    let mut net = Net::new(&mut rng, 3, 1000);
    let route = net.route(&[0, 1, 2]);
    let secret_text = b"attack at dawn, attack at dawn, attack at dawn".repeat(20);
    let out = build_packet(&mut rng, &route, MAILBOX, &secret_text).unwrap();
    let (seen, _) = net.run(out.first_hop, out.packet.into_bytes());
    for (_, bytes) in &seen {
        assert!(
            !bytes.windows(8).any(|w| w == &secret_text[..8]),
            "plaintext visible in transit"
        );
        assert!(!bytes.windows(32).any(|w| w == MAILBOX.as_bytes()));
        assert!(!bytes.windows(32).any(|w| w == route[2].node.as_bytes()));
    }
    // Relay 0, holding only its own key, cannot process what it forwarded (the next layer is
    // for relay 1): the MAC does not verify under its key.
    let mut eavesdropper = OnionRelay::new(10);
    eavesdropper
        .insert_epoch_key(EPOCH, net.secrets[0].duplicate())
        .unwrap();
    assert_eq!(
        eavesdropper.process(&seen[1].1, EPOCH).unwrap_err(),
        OnionError::MacMismatch
    );
    assert_eq!(
        eavesdropper.process(&seen[2].1, EPOCH).unwrap_err(),
        OnionError::MacMismatch
    );
}

#[test]
fn header_tampering_fails_the_mac_and_does_not_burn_the_replay_tag() {
    let mut rng = rng(5);
    let mut net = Net::new(&mut rng, 3, 1000);
    let route = net.route(&[0, 1, 2]);
    let out = build_packet(&mut rng, &route, MAILBOX, b"x").unwrap();
    let good = out.packet.into_bytes();
    // Every byte of the header after the version and epoch: ciphertext, MAC, routing info.
    for pos in (5..HEADER_LEN).step_by(7) {
        let mut bad = good.clone();
        bad[pos] ^= 0x01;
        let err = net.relay(out.first_hop).process(&bad, EPOCH).unwrap_err();
        assert!(
            matches!(err, OnionError::MacMismatch | OnionError::InvalidHopKey),
            "byte {pos}: {err:?}"
        );
    }
    // Changing the version byte is refused before any cryptography.
    let mut bad = good.clone();
    bad[0] = 2;
    assert_eq!(
        net.relay(out.first_hop).process(&bad, EPOCH).unwrap_err(),
        OnionError::UnsupportedVersion {
            expected: 1,
            found: 2
        }
    );
    // The original still goes through: failed copies did not record its tag.
    let (_, end) = net.run(out.first_hop, good);
    assert!(matches!(end, Ok(Processed::Deliver { .. })));
}

#[test]
fn epoch_in_the_header_is_authenticated() {
    let mut rng = rng(6);
    let mut net = Net::new(&mut rng, 1, 1000);
    let secret = X25519Secret::generate(&mut rng);
    net.relays[0].1.insert_epoch_key(EPOCH - 1, secret).unwrap();
    let route = net.route(&[0]);
    let out = build_packet(&mut rng, &route, MAILBOX, b"x").unwrap();
    let mut bad = out.packet.into_bytes();
    bad[1..5].copy_from_slice(&(EPOCH - 1).to_be_bytes());
    assert_eq!(
        net.relays[0].1.process(&bad, EPOCH).unwrap_err(),
        OnionError::MacMismatch
    );
}

#[test]
fn replayed_packets_are_dropped() {
    let mut rng = rng(7);
    let mut net = Net::new(&mut rng, 3, 1000);
    let route = net.route(&[0, 1, 2]);
    let out = build_packet(&mut rng, &route, MAILBOX, b"once").unwrap();
    let bytes = out.packet.into_bytes();
    let first = net.relay(out.first_hop).process(&bytes, EPOCH).unwrap();
    assert_eq!(
        net.relay(out.first_hop).process(&bytes, EPOCH).unwrap_err(),
        OnionError::Replay
    );
    // Also a replay of the forwarded copy at the second relay.
    let Processed::Forward { next_hop, packet } = first else {
        panic!("expected forward")
    };
    net.relay(next_hop)
        .process(packet.as_bytes(), EPOCH)
        .unwrap();
    assert_eq!(
        net.relay(next_hop)
            .process(packet.as_bytes(), EPOCH)
            .unwrap_err(),
        OnionError::Replay
    );
}

#[test]
fn replay_memory_stays_bounded_under_a_flood_of_distinct_packets() {
    let mut rng = rng(8);
    let capacity = 64;
    let mut net = Net::new(&mut rng, 2, capacity);
    let route = net.route(&[0, 1]);
    let mut refused = 0;
    for i in 0..200 {
        let out = build_packet(&mut rng, &route, MAILBOX, b"flood").unwrap();
        match net
            .relay(out.first_hop)
            .process(out.packet.as_bytes(), EPOCH)
        {
            Ok(_) => assert!(i < capacity),
            Err(OnionError::ReplayFilterFull { capacity: c }) => {
                assert_eq!(c, capacity);
                refused += 1;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
        let filter = net.relays[0].1.replay_filter(EPOCH).unwrap();
        assert!(filter.len() <= capacity);
    }
    assert_eq!(refused, 200 - capacity);
    // The next epoch starts with an empty filter, and the old one is dropped with its key
    // once the epoch is past the grace period.
    let relay = &mut net.relays[0].1;
    let next = X25519Secret::generate(&mut rng);
    let next_pub = next.public_key();
    relay.insert_epoch_key(EPOCH + 1, next).unwrap();
    let hop = Hop {
        node: net.directory[0].node,
        onion_key: next_pub,
        epoch: EPOCH + 1,
    };
    let route = [hop, net.directory[1].clone()];
    let out = build_packet(&mut rng, &route, MAILBOX, b"new epoch").unwrap();
    let relay = &mut net.relays[0].1;
    relay.process(out.packet.as_bytes(), EPOCH + 1).unwrap();
    assert_eq!(relay.replay_filter(EPOCH + 1).unwrap().len(), 1);
    relay.retire_before(EPOCH + 1);
    assert!(relay.replay_filter(EPOCH).is_none());
    assert_eq!(relay.epochs().collect::<Vec<_>>(), vec![EPOCH + 1]);
}

#[test]
fn wrong_epochs_are_typed_errors() {
    let mut rng = rng(9);
    let mut net = Net::new(&mut rng, 1, 1000);
    let route = net.route(&[0]);
    let pkt = |rng: &mut rand_chacha::ChaCha20Rng, epoch: u32| {
        let mut r = route.clone();
        r[0].epoch = epoch;
        build_packet(rng, &r, MAILBOX, b"e").unwrap().packet
    };
    let relay = &mut net.relays[0].1;
    // Expired: older than the grace period.
    let old = pkt(&mut rng, EPOCH);
    assert_eq!(
        relay
            .process(old.as_bytes(), EPOCH + EPOCH_GRACE + 1)
            .unwrap_err(),
        OnionError::EpochExpired {
            packet_epoch: EPOCH,
            current_epoch: EPOCH + EPOCH_GRACE + 1
        }
    );
    // Future epoch.
    let future = pkt(&mut rng, EPOCH + 5);
    assert_eq!(
        relay.process(future.as_bytes(), EPOCH + 2).unwrap_err(),
        OnionError::EpochInFuture {
            packet_epoch: EPOCH + 5,
            current_epoch: EPOCH + 2
        }
    );
    // Within the window but no key (the relay dropped epoch EPOCH above when it moved on).
    let within = pkt(&mut rng, EPOCH + 2);
    assert_eq!(
        relay.process(within.as_bytes(), EPOCH + 2).unwrap_err(),
        OnionError::UnknownEpoch { epoch: EPOCH + 2 }
    );
    assert!(relay.epochs().next().is_none(), "expired keys were dropped");
}

#[test]
fn grace_epoch_is_accepted() {
    let mut rng = rng(10);
    let mut net = Net::new(&mut rng, 1, 1000);
    let route = net.route(&[0]);
    let out = build_packet(&mut rng, &route, MAILBOX, b"late").unwrap();
    let end = net.relays[0]
        .1
        .process(out.packet.as_bytes(), EPOCH + EPOCH_GRACE)
        .unwrap();
    assert!(matches!(end, Processed::Deliver { .. }));
}

#[test]
fn too_many_epoch_keys_is_refused() {
    let mut rng = rng(11);
    let mut relay: OnionRelay = OnionRelay::new(10);
    for e in 0..MAX_EPOCH_KEYS as u32 {
        relay
            .insert_epoch_key(e, X25519Secret::generate(&mut rng))
            .unwrap();
    }
    assert_eq!(
        relay
            .insert_epoch_key(99, X25519Secret::generate(&mut rng))
            .unwrap_err(),
        OnionError::TooManyEpochKeys {
            max: MAX_EPOCH_KEYS
        }
    );
    // Replacing an existing epoch is allowed.
    relay
        .insert_epoch_key(0, X25519Secret::generate(&mut rng))
        .unwrap();
}

#[test]
fn tampered_payload_is_detected_at_the_end() {
    let mut rng = rng(12);
    let mut net = Net::new(&mut rng, 3, 1000);
    let route = net.route(&[0, 1, 2]);
    for pos in [HEADER_LEN, HEADER_LEN + 31, HEADER_LEN + 32, PACKET_LEN - 1] {
        let out = build_packet(&mut rng, &route, MAILBOX, b"integrity").unwrap();
        // Tamper between the first and second hop.
        let first = net
            .relay(out.first_hop)
            .process(out.packet.as_bytes(), EPOCH)
            .unwrap();
        let Processed::Forward { next_hop, packet } = first else {
            panic!()
        };
        let mut bytes = packet.into_bytes();
        bytes[pos] ^= 0x80;
        let (_, end) = net.run(next_hop, bytes);
        assert_eq!(end.unwrap_err(), OnionError::PayloadTampered, "byte {pos}");
    }
}

#[test]
fn malformed_input_of_every_length_is_a_typed_error() {
    let mut rng = rng(13);
    let mut net = Net::new(&mut rng, 1, 1000);
    let relay = &mut net.relays[0].1;
    for len in 0..=PACKET_LEN + 16 {
        let mut bytes = vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        if let Some(b) = bytes.first_mut() {
            *b = 1;
        }
        if len >= 5 {
            bytes[1..5].copy_from_slice(&EPOCH.to_be_bytes());
        }
        let err = relay.process(&bytes, EPOCH).unwrap_err();
        if len == PACKET_LEN {
            assert!(matches!(
                err,
                OnionError::MacMismatch | OnionError::InvalidHopKey
            ));
        } else {
            assert_eq!(
                err,
                OnionError::InvalidLength {
                    what: "onion packet",
                    expected: PACKET_LEN,
                    found: len
                }
            );
        }
        assert!(OnionPacket::from_bytes(&bytes).is_ok() == (len == PACKET_LEN));
    }
    // Random full-length packets, and low-order ephemeral keys.
    for _ in 0..200 {
        let mut bytes = vec![0u8; PACKET_LEN];
        rng.fill_bytes(&mut bytes);
        bytes[0] = 1;
        bytes[1..5].copy_from_slice(&EPOCH.to_be_bytes());
        assert!(relay.process(&bytes, EPOCH).is_err());
        bytes[5..37].fill(0);
        assert_eq!(
            relay.process(&bytes, EPOCH).unwrap_err(),
            OnionError::InvalidHopKey
        );
    }
}

#[test]
fn caller_errors_are_typed() {
    let mut rng = rng(14);
    let net = Net::new(&mut rng, MAX_HOPS + 1, 1000);
    let route = net.route(&[0, 1]);
    assert_eq!(
        build_packet(&mut rng, &route, MAILBOX, &vec![0; MAX_MESSAGE_LEN + 1]).unwrap_err(),
        OnionError::MessageTooLong {
            max: MAX_MESSAGE_LEN,
            found: MAX_MESSAGE_LEN + 1
        }
    );
    assert_eq!(
        build_packet::<Hop>(&mut rng, &[], MAILBOX, b"").unwrap_err(),
        OnionError::InvalidRouteLength {
            max: MAX_HOPS,
            found: 0
        }
    );
    let long = net.route(&[0, 1, 2, 3, 4, 5]);
    assert_eq!(
        build_packet(&mut rng, &long, MAILBOX, b"").unwrap_err(),
        OnionError::InvalidRouteLength {
            max: MAX_HOPS,
            found: 6
        }
    );
    let repeated = net.route(&[0, 1, 0]);
    assert_eq!(
        build_packet(&mut rng, &repeated, MAILBOX, b"").unwrap_err(),
        OnionError::RepeatedRelay {
            node: net.directory[0].node
        }
    );
    let mut bad_key = net.route(&[0, 1]);
    bad_key[1].onion_key = X25519PublicKey::from_bytes([0; 32]);
    assert_eq!(
        build_packet(&mut rng, &bad_key, MAILBOX, b"").unwrap_err(),
        OnionError::InvalidRelayKey {
            node: net.directory[1].node
        }
    );
}

// ---------------------------------------------------------------- reply blocks

fn surb_net(seed: u64) -> (rand_chacha::ChaCha20Rng, Net, Vec<Hop>) {
    let mut rng = rng(seed);
    let net = Net::new(&mut rng, 4, 1000);
    let back = net.route(&[3, 2, 1]);
    (rng, net, back)
}

#[test]
fn reply_block_round_trip_for_every_route_length() {
    let mut rng = rng(20);
    let mut net = Net::new(&mut rng, MAX_HOPS, 1000);
    let mut store = ReplyKeyStore::new(16);
    for hops in 1..=MAX_HOPS {
        let back = net.route(&(0..hops).collect::<Vec<_>>());
        let (id, surb) = store.create_surb(&mut rng, &back).unwrap();
        let encoded = surb.to_bytes();
        assert_eq!(encoded.len(), SURB_LEN, "one size whatever the route");
        let surb = Surb::from_bytes(&encoded).unwrap();
        assert_eq!(surb.first_hop(), back[0].node);
        let reply = surb.into_reply(b"the answer").unwrap();
        let (seen, end) = net.run(reply.first_hop, reply.packet.into_bytes());
        assert!(seen.iter().all(|(_, b)| b.len() == PACKET_LEN));
        let Processed::Reply { surb_id, payload } = end.unwrap() else {
            panic!("expected a reply")
        };
        assert_eq!(surb_id, id);
        assert_eq!(store.open_reply(&surb_id, &payload).unwrap(), b"the answer");
    }
    assert!(store.is_empty());
}

#[test]
fn a_reply_block_used_twice_is_refused_by_the_relay_and_by_the_store() {
    let (mut rng, mut net, back) = surb_net(21);
    let mut store = ReplyKeyStore::new(16);
    let (_, surb) = store.create_surb(&mut rng, &back).unwrap();
    let encoded = surb.to_bytes();
    let first = Surb::from_bytes(&encoded)
        .unwrap()
        .into_reply(b"one")
        .unwrap();
    let second = Surb::from_bytes(&encoded)
        .unwrap()
        .into_reply(b"two")
        .unwrap();
    let (_, end) = net.run(first.first_hop, first.packet.into_bytes());
    let Processed::Reply { surb_id, payload } = end.unwrap() else {
        panic!()
    };
    // The first relay recognises the header of the second use.
    assert_eq!(
        net.relay(second.first_hop)
            .process(second.packet.as_bytes(), EPOCH)
            .unwrap_err(),
        OnionError::Replay
    );
    assert_eq!(store.open_reply(&surb_id, &payload).unwrap(), b"one");
    // The store refuses a second opening (e.g. relays that lost their replay state).
    assert_eq!(
        store.open_reply(&surb_id, &payload).unwrap_err(),
        OnionError::UnknownSurb
    );
    let mut fresh_net = Net {
        relays: Vec::new(),
        secrets: Vec::new(),
        directory: Vec::new(),
    };
    for (node, secret) in net.relays.iter().map(|(n, _)| *n).zip(&net.secrets) {
        let mut r = OnionRelay::new(10);
        r.insert_epoch_key(EPOCH, secret.duplicate()).unwrap();
        fresh_net.relays.push((node, r));
    }
    let (_, end) = fresh_net.run(second.first_hop, second.packet.into_bytes());
    let Processed::Reply { surb_id, payload } = end.unwrap() else {
        panic!()
    };
    assert_eq!(
        store.open_reply(&surb_id, &payload).unwrap_err(),
        OnionError::UnknownSurb
    );
}

#[test]
fn tampered_reply_is_detected_and_unknown_ids_refused() {
    let (mut rng, mut net, back) = surb_net(22);
    let mut store = ReplyKeyStore::new(16);
    let (_, surb) = store.create_surb(&mut rng, &back).unwrap();
    let reply = surb.into_reply(b"r").unwrap();
    let mut bytes = reply.packet.into_bytes();
    bytes[PACKET_LEN - 100] ^= 4;
    let (_, end) = net.run(reply.first_hop, bytes);
    let Processed::Reply { surb_id, payload } = end.unwrap() else {
        panic!()
    };
    assert_eq!(
        store.open_reply(&surb_id, &payload).unwrap_err(),
        OnionError::PayloadTampered
    );
    let unknown = zentalk_onion::SurbId::from_bytes([7; 32]);
    assert_eq!(
        store.open_reply(&unknown, &payload).unwrap_err(),
        OnionError::UnknownSurb
    );
    assert!(matches!(
        ReplyPayload::from_bytes(&[0u8; PAYLOAD_LEN - 1]),
        Err(OnionError::InvalidLength { .. })
    ));
}

#[test]
fn reply_store_is_bounded_and_forgets() {
    let (mut rng, _net, back) = surb_net(23);
    let mut store = ReplyKeyStore::new(2);
    let (a, _) = store.create_surb(&mut rng, &back).unwrap();
    store.create_surb(&mut rng, &back).unwrap();
    assert_eq!(
        store.create_surb(&mut rng, &back).unwrap_err(),
        OnionError::SurbStoreFull { capacity: 2 }
    );
    assert!(store.forget(&a));
    assert!(!store.forget(&a));
    assert_eq!(store.len(), 1);
    store.create_surb(&mut rng, &back).unwrap();
}

#[test]
fn reply_block_parsing_rejects_every_wrong_length_and_version() {
    let (mut rng, _net, back) = surb_net(24);
    let mut store = ReplyKeyStore::new(2);
    let (_, surb) = store.create_surb(&mut rng, &back).unwrap();
    let good = surb.to_bytes();
    for len in 0..SURB_LEN + 8 {
        let mut b = vec![1u8; len];
        let n = len.min(good.len());
        b[..n].copy_from_slice(&good[..n]);
        let r = Surb::from_bytes(&b);
        if len == SURB_LEN {
            assert!(r.is_ok());
        } else {
            assert_eq!(
                r.unwrap_err(),
                OnionError::InvalidLength {
                    what: "reply block",
                    expected: SURB_LEN,
                    found: len
                }
            );
        }
    }
    for pos in [0, 65] {
        let mut b = good.clone();
        b[pos] = 9;
        assert_eq!(
            Surb::from_bytes(&b).unwrap_err(),
            OnionError::UnsupportedVersion {
                expected: 1,
                found: 9
            }
        );
    }
}

#[test]
fn debug_output_contains_no_key_bytes() {
    let (mut rng, net, back) = surb_net(25);
    let mut store = ReplyKeyStore::new(2);
    let (_, surb) = store.create_surb(&mut rng, &back).unwrap();
    let encoded = surb.to_bytes();
    let reply_key = &encoded[33..65];
    let hex_key = hex::encode(reply_key);
    for text in [
        format!("{surb:?}"),
        format!("{store:?}"),
        format!("{:?}", net.relays[0].1),
    ] {
        assert!(text.contains("REDACTED"), "{text}");
        assert!(!text.contains(&hex_key));
        assert!(!text.contains(&format!("{reply_key:?}")));
        for s in &net.secrets {
            let sk = s.to_secret_bytes();
            assert!(!text.contains(&hex::encode(sk.expose())));
            assert!(!text.contains(&format!("{:?}", sk.expose())));
        }
    }
}

// ---------------------------------------------------------------- route selection

#[test]
fn route_selection_picks_distinct_relays_and_ends_at_the_mailbox_relay() {
    let mut rng = rng(30);
    let net = Net::new(&mut rng, 8, 10);
    let mailbox_relay = net.directory[7].clone();
    // A directory that lists some relays twice and the mailbox relay too.
    let mut directory = net.directory.clone();
    directory.extend(net.directory[..3].iter().cloned());
    for _ in 0..200 {
        for hops in 1..=MAX_HOPS {
            let route =
                select_route(&mut rng, &directory, hops, &mailbox_relay, &UniformWeight).unwrap();
            assert_eq!(route.len(), hops);
            assert_eq!(route.last().unwrap().node, mailbox_relay.node);
            for (i, a) in route.iter().enumerate() {
                for b in &route[i + 1..] {
                    assert_ne!(a.node, b.node, "relay used twice");
                }
            }
        }
    }
}

#[test]
fn route_selection_follows_the_weighting() {
    let mut rng = rng(31);
    let net = Net::new(&mut rng, 4, 10);
    let mailbox_relay = net.directory[3].clone();
    let heavy = net.directory[0].node;
    let excluded = net.directory[2].node;
    let weight = |h: &Hop| -> u64 {
        if h.node == heavy {
            9
        } else if h.node == excluded {
            0
        } else {
            1
        }
    };
    let mut heavy_first = 0;
    for _ in 0..2000 {
        let route = select_route(&mut rng, &net.directory, 2, &mailbox_relay, &weight).unwrap();
        assert_ne!(route[0].node, excluded);
        if route[0].node == heavy {
            heavy_first += 1;
        }
    }
    // Expected 1800 of 2000 (9 / 10).
    assert!((1700..1900).contains(&heavy_first), "{heavy_first}");
    assert_eq!(
        select_route(&mut rng, &net.directory, 4, &mailbox_relay, &weight).unwrap_err(),
        OnionError::NotEnoughRelays {
            needed: 3,
            available: 2
        }
    );
    for hops in [0, MAX_HOPS + 1] {
        assert_eq!(
            select_route(
                &mut rng,
                &net.directory,
                hops,
                &mailbox_relay,
                &UniformWeight
            )
            .unwrap_err(),
            OnionError::InvalidRouteLength {
                max: MAX_HOPS,
                found: hops
            }
        );
    }
}

#[test]
fn selected_routes_carry_packets() {
    let mut rng = rng(32);
    let mut net = Net::new(&mut rng, 6, DEFAULT_REPLAY_CAPACITY);
    let mailbox_relay = net.directory[5].clone();
    let route = select_route(&mut rng, &net.directory, 3, &mailbox_relay, &UniformWeight).unwrap();
    let out = build_packet(&mut rng, &route, MAILBOX, b"via selected route").unwrap();
    let (seen, end) = net.run(out.first_hop, out.packet.into_bytes());
    assert_eq!(seen.last().unwrap().0, mailbox_relay.node);
    assert!(
        matches!(end, Ok(Processed::Deliver { message, .. }) if message == b"via selected route")
    );
    let _ = NodeId::from_bytes([0; 32]);
}

// ---------------------------------------------------------------- prepared relay keys

#[test]
fn prepared_hops_build_the_same_bytes_as_plain_hops() {
    use rand_core::SeedableRng;
    use zentalk_onion::PreparedHop;
    let mut rng = rng(40);
    let mut net = Net::new(&mut rng, 5, 1000);
    for hops in 1..=MAX_HOPS {
        let plain = net.route(&(0..hops).collect::<Vec<_>>());
        let prepared: Vec<PreparedHop> = plain
            .iter()
            .map(|h| PreparedHop::prepare(h).unwrap())
            .collect();
        let seed = 4000 + hops as u64;
        let a = build_packet(
            &mut rand_chacha::ChaCha20Rng::seed_from_u64(seed),
            &plain,
            MAILBOX,
            b"prepared",
        )
        .unwrap();
        let b = build_packet(
            &mut rand_chacha::ChaCha20Rng::seed_from_u64(seed),
            &prepared,
            MAILBOX,
            b"prepared",
        )
        .unwrap();
        assert_eq!(a.packet.as_bytes(), b.packet.as_bytes());
        let (_, end) = net.run(b.first_hop, b.packet.into_bytes());
        assert!(matches!(end, Ok(Processed::Deliver { message, .. }) if message == b"prepared"));
        // Reply blocks too.
        let mut store = ReplyKeyStore::new(4);
        let (id, surb) = store.create_surb(&mut rng, &prepared).unwrap();
        let reply = surb.into_reply(b"back").unwrap();
        let (_, end) = net.run(reply.first_hop, reply.packet.into_bytes());
        let Processed::Reply { surb_id, payload } = end.unwrap() else {
            panic!()
        };
        assert_eq!(surb_id, id);
        assert_eq!(store.open_reply(&surb_id, &payload).unwrap(), b"back");
    }
    // A low-order relay key cannot be prepared.
    let mut bad = net.directory[0].clone();
    bad.onion_key = X25519PublicKey::from_bytes([0; 32]);
    assert_eq!(
        PreparedHop::prepare(&bad).unwrap_err(),
        OnionError::InvalidRelayKey { node: bad.node }
    );
    assert!(!format!("{:?}", PreparedHop::prepare(&net.directory[1]).unwrap()).is_empty());
}

// ---------------------------------------------------------------- properties

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3000), epoch in any::<u32>()) {
            let mut relay = OnionRelay::new(4);
            relay.insert_epoch_key(epoch, X25519Secret::from_bytes(&[7; 32])).unwrap();
            prop_assert!(relay.process(&bytes, epoch).is_err());
            let _ = Surb::from_bytes(&bytes);
            let _ = ReplyPayload::from_bytes(&bytes);
            let _ = OnionPacket::from_bytes(&bytes);
        }

        #[test]
        fn any_message_round_trips(len in 0..=MAX_MESSAGE_LEN, hops in 1..=MAX_HOPS, seed in any::<u64>()) {
            let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(seed);
            let mut net = Net::new(&mut rng, hops, 4);
            let route = net.route(&(0..hops).collect::<Vec<_>>());
            let mut msg = vec![0u8; len];
            rand_core::RngCore::fill_bytes(&mut rng, &mut msg);
            let out = build_packet(&mut rng, &route, MAILBOX, &msg).unwrap();
            let (seen, end) = net.run(out.first_hop, out.packet.into_bytes());
            prop_assert!(seen.iter().all(|(_, b)| b.len() == PACKET_LEN));
            match end {
                Ok(Processed::Deliver { message, .. }) => prop_assert_eq!(message, msg),
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}
