//! Double Ratchet session behaviour: ordering, DH steps, limits and transactional decrypt.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::{pair, rng, wire};
use zentalk_ratchet::{
    AeadSuite, DecryptError, EncryptError, MAX_PLAINTEXT_LEN, MAX_SKIP, Message, MessageHeader,
    RatchetMessage, Role, SessionConfig,
};

fn configs() -> Vec<SessionConfig> {
    let mut v = Vec::new();
    for suite in [AeadSuite::Aes256Gcm, AeadSuite::ChaCha20Poly1305] {
        for header_encryption in [false, true] {
            v.push(SessionConfig {
                suite,
                header_encryption,
            });
        }
    }
    v
}

#[test]
fn conversation_in_every_configuration() {
    for (i, config) in configs().into_iter().enumerate() {
        let mut rng = rng(100 + i as u64);
        let (_, _, mut a, mut b) = pair(&mut rng, config);
        assert_eq!(a.session_id(), b.session_id());
        assert_eq!(a.role(), Role::Initiator);
        assert_eq!(b.role(), Role::Responder);
        assert_eq!(b.config(), config);
        for round in 0..5u8 {
            for k in 0..3u8 {
                let m = a.encrypt(&mut rng, &[round, k, 1]).unwrap();
                assert_eq!(b.decrypt(&wire(&m)).unwrap(), [round, k, 1]);
            }
            for k in 0..2u8 {
                let m = b.encrypt(&mut rng, &[round, k, 2]).unwrap();
                assert_eq!(a.decrypt(&wire(&m)).unwrap(), [round, k, 2]);
            }
        }
    }
}

#[test]
fn initiator_sends_prekey_messages_until_it_hears_back() {
    let mut rng = rng(1);
    let (_, _, mut a, mut b) = pair(&mut rng, SessionConfig::default());
    let m = a.encrypt(&mut rng, b"second").unwrap();
    assert!(matches!(m, Message::Prekey(_)));
    // The responder's session accepts the repeated prekey form.
    assert_eq!(b.decrypt(&wire(&m)).unwrap(), b"second");
    let r = b.encrypt(&mut rng, b"reply").unwrap();
    assert!(matches!(r, Message::Normal(_)));
    a.decrypt(&r).unwrap();
    assert!(matches!(
        a.encrypt(&mut rng, b"x").unwrap(),
        Message::Normal(_)
    ));
}

fn ratchet_key(m: &Message) -> [u8; 32] {
    match m.ratchet_message().header() {
        MessageHeader::Plain(h) => h.ratchet_key.to_bytes(),
        MessageHeader::Encrypted { .. } => panic!("plain header expected"),
    }
}

#[test]
fn dh_step_whenever_the_speaker_changes() {
    let mut rng = rng(2);
    let (_, _, mut a, mut b) = pair(&mut rng, SessionConfig::default());
    let mut seen = std::collections::HashSet::new();
    let mut last_a = None;
    for round in 0..6 {
        // Within one turn the key stays; each new turn brings a never-seen key.
        let m1 = a.encrypt(&mut rng, b"a1").unwrap();
        let m2 = a.encrypt(&mut rng, b"a2").unwrap();
        assert_eq!(ratchet_key(&m1), ratchet_key(&m2));
        if round > 0 {
            assert_ne!(Some(ratchet_key(&m1)), last_a);
        }
        last_a = Some(ratchet_key(&m1));
        assert!(seen.insert(ratchet_key(&m1)), "ratchet key reused");
        b.decrypt(&m1).unwrap();
        b.decrypt(&m2).unwrap();
        let r = b.encrypt(&mut rng, b"b").unwrap();
        assert!(seen.insert(ratchet_key(&r)), "ratchet key reused");
        a.decrypt(&r).unwrap();
    }
}

#[test]
fn out_of_order_within_and_across_chains() {
    for (i, config) in configs().into_iter().enumerate() {
        let mut rng = rng(200 + i as u64);
        let (_, _, mut a, mut b) = pair(&mut rng, config);
        let r = b.encrypt(&mut rng, b"r").unwrap();
        a.decrypt(&r).unwrap();
        let msgs: Vec<_> = (0..6u8)
            .map(|i| a.encrypt(&mut rng, &[i]).unwrap())
            .collect();
        // Deliver 5, 0, 3 first; then Bob replies; Alice's next chain arrives before the rest.
        for i in [5usize, 0, 3] {
            assert_eq!(b.decrypt(&wire(&msgs[i])).unwrap(), [i as u8]);
        }
        assert_eq!(b.skipped_key_count(), 3);
        let r2 = b.encrypt(&mut rng, b"r2").unwrap();
        a.decrypt(&r2).unwrap();
        let n = a.encrypt(&mut rng, b"next chain").unwrap();
        assert_eq!(b.decrypt(&wire(&n)).unwrap(), b"next chain");
        for i in [4usize, 1, 2] {
            assert_eq!(b.decrypt(&wire(&msgs[i])).unwrap(), [i as u8]);
        }
        assert_eq!(b.skipped_key_count(), 0);
        // Each of them only once.
        for m in &msgs {
            assert!(b.decrypt(m).is_err());
        }
    }
}

#[test]
fn lost_tail_of_previous_chain_is_skipped_through_pn() {
    let mut rng = rng(3);
    let (_, _, mut a, mut b) = pair(&mut rng, SessionConfig::default());
    let r = b.encrypt(&mut rng, b"r").unwrap();
    a.decrypt(&r).unwrap();
    let lost: Vec<_> = (0..3)
        .map(|_| a.encrypt(&mut rng, b"lost").unwrap())
        .collect();
    let r = b.encrypt(&mut rng, b"r").unwrap();
    // Bob's second message in his chain, Alice has not replied: same chain for Alice to read.
    a.decrypt(&r).unwrap();
    let m = a.encrypt(&mut rng, b"new chain").unwrap();
    assert_eq!(b.decrypt(&m).unwrap(), b"new chain");
    assert_eq!(b.skipped_key_count(), 3);
    for m in lost.iter().rev() {
        assert_eq!(b.decrypt(m).unwrap(), b"lost");
    }
}

fn assert_still_works(
    rng: &mut rand_chacha::ChaCha20Rng,
    a: &mut zentalk_ratchet::Session,
    b: &mut zentalk_ratchet::Session,
) {
    let m = a.encrypt(rng, b"still works").unwrap();
    assert_eq!(b.decrypt(&wire(&m)).unwrap(), b"still works");
    let r = b.encrypt(rng, b"and back").unwrap();
    assert_eq!(a.decrypt(&wire(&r)).unwrap(), b"and back");
}

#[test]
fn replay_is_refused_and_the_session_keeps_working() {
    for (i, config) in configs().into_iter().enumerate() {
        let mut rng = rng(300 + i as u64);
        let (_, _, mut a, mut b) = pair(&mut rng, config);
        let m = a.encrypt(&mut rng, b"once").unwrap();
        b.decrypt(&m).unwrap();
        assert!(matches!(
            b.decrypt(&m),
            Err(DecryptError::DuplicateOrExpired { index: 1 })
        ));
        // Replay of an earlier chain after a DH step.
        let r = b.encrypt(&mut rng, b"r").unwrap();
        a.decrypt(&r).unwrap();
        let m2 = a.encrypt(&mut rng, b"m2").unwrap();
        b.decrypt(&m2).unwrap();
        let err = b.decrypt(&m).unwrap_err();
        assert!(
            matches!(
                err,
                DecryptError::DuplicateOrExpired { .. } | DecryptError::HeaderAuthentication
            ),
            "{err:?}"
        );
        assert!(a.decrypt(&r).is_err());
        assert_still_works(&mut rng, &mut a, &mut b);
    }
}

#[test]
fn forgery_is_refused_and_the_session_keeps_working() {
    for (i, config) in configs().into_iter().enumerate() {
        let mut rng = rng(400 + i as u64);
        let (_, _, mut a, mut b) = pair(&mut rng, config);
        let r = b.encrypt(&mut rng, b"r").unwrap();
        a.decrypt(&r).unwrap();
        let m = a.encrypt(&mut rng, b"genuine message").unwrap().to_bytes();
        // Flip every byte position in turn (type byte excluded).
        for pos in 1..m.len() {
            let mut bad = m.clone();
            bad[pos] ^= 0x40;
            if let Ok(msg) = Message::from_bytes(&bad) {
                assert!(b.decrypt(&msg).is_err(), "forgery at {pos} accepted");
            }
        }
        // A fully made-up message with a fresh ratchet key.
        let forged = RatchetMessage::from_bytes(&{
            let mut v = vec![if config.header_encryption { 3 } else { 1 }];
            v.extend_from_slice(&[9u8; 100]);
            v
        })
        .unwrap();
        let err = b.decrypt_ratchet(&forged).unwrap_err();
        assert!(
            matches!(
                err,
                DecryptError::TooFarAhead { .. } | DecryptError::HeaderAuthentication
            ),
            "{err:?}"
        );
        assert_eq!(
            b.decrypt(&Message::from_bytes(&m).unwrap()).unwrap(),
            b"genuine message"
        );
        assert_still_works(&mut rng, &mut a, &mut b);
    }
}

#[test]
fn truncation_is_refused_and_the_session_keeps_working() {
    for (i, config) in configs().into_iter().enumerate() {
        let mut rng = rng(500 + i as u64);
        let (_, _, mut a, mut b) = pair(&mut rng, config);
        let m = a.encrypt(&mut rng, b"a message to cut").unwrap().to_bytes();
        for len in 0..m.len() {
            match Message::from_bytes(&m[..len]) {
                Err(_) => {}
                Ok(msg) => assert!(b.decrypt(&msg).is_err(), "truncation to {len} accepted"),
            }
        }
        assert_eq!(
            b.decrypt(&Message::from_bytes(&m).unwrap()).unwrap(),
            b"a message to cut"
        );
        assert_still_works(&mut rng, &mut a, &mut b);
    }
}

#[test]
fn too_far_ahead_is_refused_and_changes_nothing() {
    for (i, config) in configs().into_iter().enumerate() {
        let mut rng = rng(600 + i as u64);
        let (_, _, mut a, mut b) = pair(&mut rng, config);
        // Skip exactly MAX_SKIP in the current chain: allowed.
        let r = b.encrypt(&mut rng, b"r").unwrap();
        a.decrypt(&r).unwrap();
        let mut last = None;
        for _ in 0..=MAX_SKIP {
            last = Some(a.encrypt(&mut rng, b"x").unwrap());
        }
        b.decrypt(last.as_ref().unwrap()).unwrap();
        assert_eq!(b.skipped_key_count(), MAX_SKIP as usize);
        // One more than MAX_SKIP ahead: refused, nothing stored.
        for _ in 0..=MAX_SKIP {
            last = Some(a.encrypt(&mut rng, b"x").unwrap());
        }
        let far = a.encrypt(&mut rng, b"far").unwrap();
        let before = b.skipped_key_count();
        let err = b.decrypt(&far).unwrap_err();
        assert!(
            matches!(err, DecryptError::TooFarAhead { max: MAX_SKIP, found } if found == u64::from(MAX_SKIP) + 1),
            "{err:?}"
        );
        assert_eq!(b.skipped_key_count(), before);
        b.decrypt(last.as_ref().unwrap()).unwrap();
        assert_still_works(&mut rng, &mut a, &mut b);
    }
}

#[test]
fn skipped_key_store_is_bounded_oldest_evicted_first() {
    let mut rng = rng(7);
    let (_, _, mut a, mut b) = pair(&mut rng, SessionConfig::default());
    b.set_max_skipped_keys(10);
    let r = b.encrypt(&mut rng, b"r").unwrap();
    a.decrypt(&r).unwrap();
    let msgs: Vec<_> = (0..15)
        .map(|_| a.encrypt(&mut rng, b"m").unwrap())
        .collect();
    // 11 would be skipped at once: more than the store holds.
    assert!(matches!(
        b.decrypt(&msgs[11]),
        Err(DecryptError::TooManySkippedKeys { max: 10, found: 11 })
    ));
    assert_eq!(b.skipped_key_count(), 0);
    b.decrypt(&msgs[8]).unwrap(); // stores 0..8
    b.decrypt(&msgs[14]).unwrap(); // stores 9..14: 13 keys, the 3 oldest (0, 1, 2) evicted
    assert_eq!(b.skipped_key_count(), 10);
    for m in &msgs[..3] {
        assert!(matches!(
            b.decrypt(m),
            Err(DecryptError::DuplicateOrExpired { .. })
        ));
    }
    for i in [3usize, 7, 9, 13] {
        b.decrypt(&msgs[i]).unwrap();
    }
    assert_still_works(&mut rng, &mut a, &mut b);
}

#[test]
fn header_encryption_mismatch_and_plaintext_limit() {
    let mut rng = rng(8);
    let (_, _, mut a, mut b) = pair(&mut rng, SessionConfig::default());
    let (_, _, mut ha, _) = pair(
        &mut rng,
        SessionConfig {
            header_encryption: true,
            ..Default::default()
        },
    );
    let m = ha.encrypt(&mut rng, b"he").unwrap();
    assert!(matches!(
        b.decrypt_ratchet(m.ratchet_message()),
        Err(DecryptError::HeaderEncryptionMismatch { .. })
    ));
    let big = vec![0u8; MAX_PLAINTEXT_LEN + 1];
    assert!(matches!(
        a.encrypt(&mut rng, &big),
        Err(EncryptError::PlaintextTooLong { max: MAX_PLAINTEXT_LEN, found }) if found == MAX_PLAINTEXT_LEN + 1
    ));
    // A prekey message from another session is refused.
    let (_, _, mut other, _) = pair(&mut rng, SessionConfig::default());
    let pm = other.encrypt(&mut rng, b"x").unwrap();
    assert!(matches!(b.decrypt(&pm), Err(DecryptError::SessionMismatch)));
    assert_still_works(&mut rng, &mut a, &mut b);
}

#[test]
fn low_order_ratchet_key_is_refused() {
    let mut rng = rng(9);
    let (_, _, mut a, mut b) = pair(&mut rng, SessionConfig::default());
    let m = a.encrypt(&mut rng, b"x").unwrap().to_bytes();
    let mut bad = m.clone();
    // Replace the ratchet key (after the prekey prefix) by the all-zero point.
    let Message::Prekey(p) = Message::from_bytes(&m).unwrap() else {
        panic!()
    };
    let inner = p.message().to_bytes();
    let off = m.len() - inner.len() + 1;
    bad[off..off + 32].fill(0);
    let msg = Message::from_bytes(&bad).unwrap();
    assert!(matches!(b.decrypt(&msg), Err(DecryptError::LowOrderPoint)));
    assert_still_works(&mut rng, &mut a, &mut b);
}

#[test]
fn debug_output_is_redacted() {
    let mut rng = rng(10);
    let (alice, _, a, _) = pair(&mut rng, SessionConfig::default());
    let d = format!("{a:?} {alice:?}");
    assert!(d.contains("REDACTED"));
    let seed = hex::encode(*alice.identity().seed());
    assert!(!d.contains(&seed));
    assert!(!d.contains(&format!("{:?}", alice.identity().seed().as_slice())));
}

#[test]
fn header_encryption_hides_keys_and_counters() {
    let mut rng = rng(11);
    let config = SessionConfig {
        header_encryption: true,
        ..Default::default()
    };
    let (_, _, mut a, mut b) = pair(&mut rng, config);
    let r = b.encrypt(&mut rng, b"r").unwrap();
    a.decrypt(&r).unwrap();
    let ratchet = a.ratchet_public_key();
    let m1 = a.encrypt(&mut rng, b"same length").unwrap();
    let m2 = a.encrypt(&mut rng, b"same length").unwrap();
    assert_eq!(m1.to_bytes()[0], 0x03);
    // After the DH step the key that the header carries is a fresh one; neither it, nor any
    // earlier ratchet key, appears in the bytes a relay sees.
    let new_ratchet = a.ratchet_public_key();
    assert_ne!(ratchet, new_ratchet);
    for m in [&m1, &m2] {
        let bytes = m.to_bytes();
        for key in [ratchet, new_ratchet] {
            assert!(!bytes.windows(32).any(|w| w == key.as_bytes()));
        }
        // The counters 0 and 1 do not appear as a 4-byte big-endian run after the nonce.
        assert_eq!(bytes.len(), 1 + 12 + 56 + 11 + 16);
    }
    // Two messages of one chain share no header bytes in the clear.
    let (h1, h2) = (&m1.to_bytes()[1..69], &m2.to_bytes()[1..69]);
    assert_ne!(h1, h2);
    assert_eq!(b.decrypt(&m2).unwrap(), b"same length");
    assert_eq!(b.decrypt(&m1).unwrap(), b"same length");
}

#[test]
fn header_encryption_skipped_keys_across_chains() {
    let mut rng = rng(12);
    let config = SessionConfig {
        header_encryption: true,
        suite: AeadSuite::ChaCha20Poly1305,
    };
    let (_, _, mut a, mut b) = pair(&mut rng, config);
    // Three chains with a gap in each; deliver the gaps last.
    let mut held = Vec::new();
    for round in 0..3u8 {
        held.push((a.encrypt(&mut rng, &[round, 0]).unwrap(), [round, 0]));
        let m = a.encrypt(&mut rng, &[round, 1]).unwrap();
        assert_eq!(b.decrypt(&m).unwrap(), [round, 1]);
        let r = b.encrypt(&mut rng, b"r").unwrap();
        a.decrypt(&r).unwrap();
    }
    assert_eq!(b.skipped_key_count(), 3);
    for (m, pt) in held.iter().rev() {
        assert_eq!(b.decrypt(m).unwrap(), pt);
    }
    // A header sealed under a key nobody has is a typed error.
    let m = a.encrypt(&mut rng, b"x").unwrap();
    let mut bytes = m.to_bytes();
    bytes[20] ^= 1;
    assert_eq!(
        b.decrypt(&Message::from_bytes(&bytes).unwrap()),
        Err(DecryptError::HeaderAuthentication)
    );
    assert_eq!(b.decrypt(&m).unwrap(), b"x");
}
