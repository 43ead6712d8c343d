//! Sender-key groups: signatures, ordering window, transactional decrypt, rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::{pair, rng, wire};
use zentalk_ratchet::group::{
    GroupMessage, InboundGroupSession, MAX_GROUP_SKIP, OutboundGroupSession, SenderKeyDistribution,
};
use zentalk_ratchet::{AeadSuite, DecodeError, GroupError, SessionConfig};

fn via_bytes(d: &SenderKeyDistribution) -> SenderKeyDistribution {
    SenderKeyDistribution::from_bytes(&d.to_bytes()).unwrap()
}

#[test]
fn members_read_each_others_messages_in_any_order() {
    for suite in [AeadSuite::Aes256Gcm, AeadSuite::ChaCha20Poly1305] {
        let mut rng = rng(40);
        let mut alice = OutboundGroupSession::new(&mut rng, suite);
        let mut bob_view = InboundGroupSession::new(&via_bytes(&alice.distribution()));
        let msgs: Vec<_> = (0..10u8)
            .map(|i| alice.encrypt(&[i; 100]).unwrap())
            .collect();
        for i in [3usize, 0, 9, 1, 2, 8, 4, 5, 6, 7] {
            let m = GroupMessage::from_bytes(&msgs[i].to_bytes()).unwrap();
            assert_eq!(bob_view.decrypt(&m).unwrap(), vec![i as u8; 100]);
        }
        assert_eq!(bob_view.skipped_key_count(), 0);
        for m in &msgs {
            assert!(matches!(
                bob_view.decrypt(m),
                Err(GroupError::DuplicateOrExpired { .. })
            ));
        }
    }
}

#[test]
fn distribution_travels_over_a_pairwise_session() {
    let mut rng = rng(41);
    let (_, _, mut a, mut b) = pair(&mut rng, SessionConfig::default());
    let mut group = OutboundGroupSession::new(&mut rng, AeadSuite::default());
    let m = a
        .encrypt(&mut rng, &group.distribution().to_bytes())
        .unwrap();
    let dist = SenderKeyDistribution::from_bytes(&b.decrypt(&wire(&m)).unwrap()).unwrap();
    let mut inbound = InboundGroupSession::new(&dist);
    let gm = group.encrypt(b"to the group").unwrap();
    assert_eq!(inbound.decrypt(&gm).unwrap(), b"to the group");
    assert!(format!("{dist:?}").contains("REDACTED"));
}

#[test]
fn forged_tampered_and_truncated_messages_change_nothing() {
    let mut rng = rng(42);
    let mut alice = OutboundGroupSession::new(&mut rng, AeadSuite::default());
    let mut view = InboundGroupSession::new(&alice.distribution());
    let m = alice.encrypt(b"genuine").unwrap().to_bytes();
    for pos in 1..m.len() {
        let mut bad = m.clone();
        bad[pos] ^= 1;
        if let Ok(g) = GroupMessage::from_bytes(&bad) {
            assert!(view.decrypt(&g).is_err(), "tampering at {pos} accepted");
        }
    }
    for len in 0..m.len() {
        if let Ok(g) = GroupMessage::from_bytes(&m[..len]) {
            assert!(view.decrypt(&g).is_err());
        }
    }
    assert!(matches!(
        GroupMessage::from_bytes(&m[..20]),
        Err(DecodeError::TooShort { .. })
    ));
    // A member holding the chain key but not the signing key cannot forge.
    let mut mallory = OutboundGroupSession::new(&mut rng, AeadSuite::default());
    let forged = mallory.encrypt(b"forged").unwrap();
    assert!(matches!(
        view.decrypt(&forged),
        Err(GroupError::UnknownSenderKey { .. })
    ));
    let mut forged_bytes = forged.to_bytes();
    forged_bytes[1..5].copy_from_slice(&alice.key_id().to_be_bytes());
    let forged = GroupMessage::from_bytes(&forged_bytes).unwrap();
    assert_eq!(view.decrypt(&forged), Err(GroupError::BadSignature));
    // The session is unchanged: the genuine message still opens.
    assert_eq!(
        view.decrypt(&GroupMessage::from_bytes(&m).unwrap())
            .unwrap(),
        b"genuine"
    );
}

#[test]
fn window_is_bounded() {
    let mut rng = rng(43);
    let mut alice = OutboundGroupSession::new(&mut rng, AeadSuite::default());
    let mut view = InboundGroupSession::new(&alice.distribution());
    let mut last = None;
    for _ in 0..=MAX_GROUP_SKIP + 1 {
        last = Some(alice.encrypt(b"x").unwrap());
    }
    let err = view.decrypt(last.as_ref().unwrap()).unwrap_err();
    assert_eq!(
        err,
        GroupError::TooFarAhead {
            max: MAX_GROUP_SKIP,
            found: u64::from(MAX_GROUP_SKIP) + 1
        }
    );
    assert_eq!(view.skipped_key_count(), 0);
    // Within the window it works.
    let m = alice.encrypt(b"y").unwrap();
    assert!(view.decrypt(&m).is_err());
    let mut fresh = InboundGroupSession::new(&alice.distribution());
    let m = alice.encrypt(b"z").unwrap();
    assert_eq!(fresh.decrypt(&m).unwrap(), b"z");
}

#[test]
fn removed_member_cannot_read_after_rotation() {
    let mut rng = rng(44);
    let mut alice = OutboundGroupSession::new(&mut rng, AeadSuite::default());
    let mut bob = InboundGroupSession::new(&via_bytes(&alice.distribution()));
    let mut carol = InboundGroupSession::new(&via_bytes(&alice.distribution()));
    let m = alice.encrypt(b"before").unwrap();
    assert_eq!(bob.decrypt(&m).unwrap(), b"before");
    assert_eq!(carol.decrypt(&m).unwrap(), b"before");
    // Carol is removed: Alice rotates and sends the new chain to Bob only.
    let old_id = alice.key_id();
    let d = alice.rotate(&mut rng);
    assert_ne!(d.key_id(), old_id);
    bob = InboundGroupSession::new(&via_bytes(&d));
    let after = alice.encrypt(b"after").unwrap();
    assert_eq!(bob.decrypt(&after).unwrap(), b"after");
    assert!(matches!(
        carol.decrypt(&after),
        Err(GroupError::UnknownSenderKey { .. })
    ));
    // Even relabelled with the old key id, Carol's old chain neither verifies nor opens it.
    let mut relabelled = after.to_bytes();
    relabelled[1..5].copy_from_slice(&old_id.to_be_bytes());
    let relabelled = GroupMessage::from_bytes(&relabelled).unwrap();
    assert!(carol.decrypt(&relabelled).is_err());
}

#[test]
fn new_member_cannot_read_earlier_messages() {
    let mut rng = rng(45);
    let mut alice = OutboundGroupSession::new(&mut rng, AeadSuite::default());
    let early = alice.encrypt(b"early").unwrap();
    let mut dave = InboundGroupSession::new(&alice.distribution());
    assert_eq!(
        dave.decrypt(&early),
        Err(GroupError::DuplicateOrExpired { index: 0 })
    );
    let later = alice.encrypt(b"later").unwrap();
    assert_eq!(dave.decrypt(&later).unwrap(), b"later");
}

#[test]
fn group_pickles_round_trip() {
    let mut rng = rng(46);
    let key = [3u8; 32];
    let mut alice = OutboundGroupSession::new(&mut rng, AeadSuite::ChaCha20Poly1305);
    let mut view = InboundGroupSession::new(&alice.distribution());
    let m0 = alice.encrypt(b"0").unwrap();
    let m1 = alice.encrypt(b"1").unwrap();
    view.decrypt(&m1).unwrap();
    let mut alice = OutboundGroupSession::from_pickle(&alice.pickle(&mut rng, &key), &key).unwrap();
    let mut view = InboundGroupSession::from_pickle(&view.pickle(&mut rng, &key), &key).unwrap();
    assert_eq!(view.decrypt(&m0).unwrap(), b"0");
    assert_eq!(view.decrypt(&alice.encrypt(b"2").unwrap()).unwrap(), b"2");
    assert!(InboundGroupSession::from_pickle(&view.pickle(&mut rng, &key), &[4u8; 32]).is_err());
    assert!(!format!("{alice:?}{view:?}").contains(&hex::encode([3u8; 4])));
}

#[test]
fn distribution_parsing_is_typed() {
    let mut rng = rng(47);
    let alice = OutboundGroupSession::new(&mut rng, AeadSuite::default());
    let bytes = alice.distribution().to_bytes();
    assert!(matches!(
        SenderKeyDistribution::from_bytes(&bytes[..10]),
        Err(DecodeError::TooShort { .. })
    ));
    let mut bad = bytes.to_vec();
    bad[0] = 0x11;
    assert!(matches!(
        SenderKeyDistribution::from_bytes(&bad),
        Err(DecodeError::UnexpectedType { found: 0x11, .. })
    ));
    let mut bad = bytes.to_vec();
    bad[1] = 7;
    assert_eq!(
        SenderKeyDistribution::from_bytes(&bad).unwrap_err(),
        DecodeError::UnknownSuite { found: 7 }
    );
}
