//! X3DH and account behaviour: bundle checks, prekey ids, replay of initial messages,
//! signed-prekey rotation with a grace period. Failures create no state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::rng;
use zentalk_crypto::{Signature, X25519PublicKey};
use zentalk_ratchet::{
    Account, DecodeError, MAX_ONE_TIME_PREKEYS, Message, PrekeyBundle, PrekeyMessage,
    SessionConfig, SessionCreationError,
};

fn initial(
    rng: &mut rand_chacha::ChaCha20Rng,
    alice: &Account,
    bundle: &PrekeyBundle,
    text: &[u8],
) -> PrekeyMessage {
    let mut s = alice
        .create_outbound_session(rng, bundle, SessionConfig::default())
        .unwrap();
    match s.encrypt(rng, text).unwrap() {
        Message::Prekey(p) => PrekeyMessage::from_bytes(&p.to_bytes()).unwrap(),
        Message::Normal(_) => panic!("expected an initial message"),
    }
}

#[test]
fn bundle_round_trips_and_verifies() {
    let mut rng = rng(20);
    let mut bob = Account::new(&mut rng);
    let b = bob.prekey_bundle();
    assert_eq!(b.one_time_prekey, None);
    assert_eq!(PrekeyBundle::from_bytes(&b.to_bytes()).unwrap(), b);
    bob.generate_one_time_prekeys(&mut rng, 3);
    let b = bob.prekey_bundle();
    assert_eq!(b.one_time_prekey.unwrap().0, 1);
    assert_eq!(PrekeyBundle::from_bytes(&b.to_bytes()).unwrap(), b);
    b.verify().unwrap();
    let bytes = b.to_bytes();
    assert!(matches!(
        PrekeyBundle::from_bytes(&bytes[..bytes.len() - 1]),
        Err(DecodeError::TooShort { .. })
    ));
    let mut long = bytes.clone();
    long.push(0);
    assert!(matches!(
        PrekeyBundle::from_bytes(&long),
        Err(DecodeError::TooLong { .. })
    ));
}

#[test]
fn bad_signature_creates_no_session() {
    let mut rng = rng(21);
    let alice = Account::new(&mut rng);
    let bob = Account::new(&mut rng);
    let mut b = bob.prekey_bundle();
    b.signed_prekey_signature = Signature([7u8; 64]);
    assert_eq!(
        alice
            .create_outbound_session(&mut rng, &b, SessionConfig::default())
            .unwrap_err(),
        SessionCreationError::BadSignedPrekeySignature
    );
    // A signed prekey swapped under a valid signature of another key.
    let mut b = bob.prekey_bundle();
    b.signed_prekey = X25519PublicKey::from_bytes([9u8; 32]);
    assert_eq!(
        alice
            .create_outbound_session(&mut rng, &b, SessionConfig::default())
            .unwrap_err(),
        SessionCreationError::BadSignedPrekeySignature
    );
}

#[test]
fn low_order_points_create_no_state() {
    let mut rng = rng(22);
    let alice = Account::new(&mut rng);
    let mut bob = Account::new(&mut rng);
    bob.generate_one_time_prekeys(&mut rng, 1);
    // A low-order one-time prekey in an otherwise valid bundle.
    let mut b = bob.prekey_bundle();
    b.one_time_prekey = Some((1, X25519PublicKey::from_bytes([0u8; 32])));
    assert_eq!(
        alice
            .create_outbound_session(&mut rng, &b, SessionConfig::default())
            .unwrap_err(),
        SessionCreationError::LowOrderPoint
    );
    // A low-order ephemeral key in an initial message: Bob refuses and keeps his prekey.
    let p = initial(&mut rng, &alice, &bob.prekey_bundle(), b"hi");
    let mut bytes = p.to_bytes();
    bytes[35..67].fill(0);
    let bad = PrekeyMessage::from_bytes(&bytes).unwrap();
    assert_eq!(
        bob.create_inbound_session(&bad).unwrap_err(),
        SessionCreationError::LowOrderPoint
    );
    assert_eq!(bob.one_time_prekeys().len(), 1);
    bob.create_inbound_session(&p).unwrap();
    assert_eq!(bob.one_time_prekeys().len(), 0);
}

#[test]
fn unknown_prekey_ids_create_no_state() {
    let mut rng = rng(23);
    let alice = Account::new(&mut rng);
    let mut bob = Account::new(&mut rng);
    bob.generate_one_time_prekeys(&mut rng, 2);
    let mut b = bob.prekey_bundle();
    b.one_time_prekey = Some((99, bob.one_time_prekeys()[0].1));
    let p = initial(&mut rng, &alice, &b, b"hi");
    assert_eq!(
        bob.create_inbound_session(&p).unwrap_err(),
        SessionCreationError::UnknownOneTimePrekey { found: 99 }
    );
    let mut b = bob.prekey_bundle();
    b.signed_prekey_id = 42;
    let p = initial(&mut rng, &alice, &b, b"hi");
    assert_eq!(
        bob.create_inbound_session(&p).unwrap_err(),
        SessionCreationError::UnknownSignedPrekey {
            current: 1,
            found: 42
        }
    );
    assert_eq!(bob.one_time_prekeys().len(), 2);
}

#[test]
fn tampered_first_message_creates_no_state() {
    let mut rng = rng(24);
    let alice = Account::new(&mut rng);
    let mut bob = Account::new(&mut rng);
    bob.generate_one_time_prekeys(&mut rng, 1);
    let p = initial(&mut rng, &alice, &bob.prekey_bundle(), b"hi");
    let mut bytes = p.to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let bad = PrekeyMessage::from_bytes(&bytes).unwrap();
    assert!(matches!(
        bob.create_inbound_session(&bad),
        Err(SessionCreationError::FirstMessage(_))
    ));
    // Another identity key claimed: different SK, the first message does not open.
    let eve = Account::new(&mut rng);
    let mut bytes = p.to_bytes();
    bytes[3..35].copy_from_slice(eve.identity_key().as_bytes());
    let bad = PrekeyMessage::from_bytes(&bytes).unwrap();
    assert!(matches!(
        bob.create_inbound_session(&bad),
        Err(SessionCreationError::FirstMessage(_))
    ));
    assert_eq!(bob.one_time_prekeys().len(), 1);
    let (_, pt) = bob.create_inbound_session(&p).unwrap();
    assert_eq!(pt, b"hi");
}

#[test]
fn initial_message_decrypts_once_not_twice() {
    let mut rng = rng(25);
    let alice = Account::new(&mut rng);
    let mut bob = Account::new(&mut rng);
    bob.generate_one_time_prekeys(&mut rng, 1);
    // With a one-time prekey: deleted on use.
    let p = initial(&mut rng, &alice, &bob.prekey_bundle(), b"once");
    let (mut session, _) = bob.create_inbound_session(&p).unwrap();
    assert_eq!(
        bob.create_inbound_session(&p).unwrap_err(),
        SessionCreationError::UnknownOneTimePrekey { found: 1 }
    );
    // Nor through the session it created.
    assert!(session.decrypt(&Message::Prekey(p)).is_err());
    // Without a one-time prekey: the ephemeral key is remembered.
    let p = initial(&mut rng, &alice, &bob.prekey_bundle(), b"once");
    assert_eq!(p.one_time_prekey_id(), None);
    bob.create_inbound_session(&p).unwrap();
    assert_eq!(
        bob.create_inbound_session(&p).unwrap_err(),
        SessionCreationError::ReplayedInitialMessage
    );
}

#[test]
fn signed_prekey_rotation_honours_the_grace_period() {
    let mut rng = rng(26);
    let alice = Account::new(&mut rng);
    let mut bob = Account::new(&mut rng);
    let old_bundle = bob.prekey_bundle();
    let in_flight = initial(&mut rng, &alice, &old_bundle, b"in flight");
    let in_flight2 = initial(&mut rng, &alice, &old_bundle, b"in flight 2");
    assert_eq!(bob.rotate_signed_prekey(&mut rng, 1_000), 2);
    assert_eq!(bob.prekey_bundle().signed_prekey_id, 2);
    assert_ne!(bob.prekey_bundle().signed_prekey, old_bundle.signed_prekey);
    bob.prekey_bundle().verify().unwrap();
    // Within the grace period the old prekey still works.
    assert_eq!(bob.expire_signed_prekeys(1_000 + 99, 100), 0);
    let (_, pt) = bob.create_inbound_session(&in_flight).unwrap();
    assert_eq!(pt, b"in flight");
    // After it, it is gone.
    assert_eq!(bob.expire_signed_prekeys(1_000 + 100, 100), 1);
    assert_eq!(
        bob.create_inbound_session(&in_flight2).unwrap_err(),
        SessionCreationError::UnknownSignedPrekey {
            current: 2,
            found: 1
        }
    );
    // The new one works.
    let p = initial(&mut rng, &alice, &bob.prekey_bundle(), b"new");
    bob.create_inbound_session(&p).unwrap();
}

#[test]
fn one_time_prekeys_refill_and_cap() {
    let mut rng = rng(27);
    let mut bob = Account::new(&mut rng);
    assert_eq!(bob.refill_one_time_prekeys(&mut rng, 10), 10);
    assert_eq!(bob.refill_one_time_prekeys(&mut rng, 10), 0);
    let ids: Vec<u32> = bob.one_time_prekeys().iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    assert_eq!(
        bob.generate_one_time_prekeys(&mut rng, 5000),
        MAX_ONE_TIME_PREKEYS - 10
    );
    assert_eq!(bob.one_time_prekeys().len(), MAX_ONE_TIME_PREKEYS);
}

#[test]
fn identity_import_from_seed() {
    let mut rng = rng(28);
    let seed = [5u8; 32];
    let a = Account::from_identity(&mut rng, zentalk_ratchet::IdentityKeyPair::from_seed(&seed));
    assert_eq!(*a.identity().seed(), seed);
}

#[test]
fn prekey_message_parsing_is_typed() {
    let mut rng = rng(29);
    let alice = Account::new(&mut rng);
    let mut bob = Account::new(&mut rng);
    bob.generate_one_time_prekeys(&mut rng, 1);
    let bytes = initial(&mut rng, &alice, &bob.prekey_bundle(), b"x").to_bytes();
    let mut bad = bytes.clone();
    bad[1] = 9;
    assert_eq!(
        PrekeyMessage::from_bytes(&bad).unwrap_err(),
        DecodeError::UnknownSuite { found: 9 }
    );
    let mut bad = bytes.clone();
    bad[2] = 0x80;
    assert!(matches!(
        PrekeyMessage::from_bytes(&bad),
        Err(DecodeError::UnknownFlags { found: 0x80, .. })
    ));
    let mut bad = bytes.clone();
    bad[2] |= 0x02; // claims header encryption, carries a plain header
    assert!(matches!(
        PrekeyMessage::from_bytes(&bad),
        Err(DecodeError::UnexpectedType { .. })
    ));
    let mut bad = bytes.clone();
    bad[0] = 0x01;
    assert!(matches!(
        PrekeyMessage::from_bytes(&bad),
        Err(DecodeError::UnexpectedType { found: 1, .. })
    ));
    assert!(matches!(
        PrekeyMessage::from_bytes(&bytes[..50]),
        Err(DecodeError::TooShort { .. })
    ));
    assert!(matches!(
        Message::from_bytes(&[]),
        Err(DecodeError::TooShort { .. })
    ));
    assert!(matches!(
        Message::from_bytes(&vec![1u8; zentalk_ratchet::MAX_MESSAGE_LEN + 1]),
        Err(DecodeError::TooLong { .. })
    ));
}

#[test]
fn initial_messages_arriving_out_of_order_reach_one_session() {
    let mut rng = rng(30);
    let alice = Account::new(&mut rng);
    let mut bob = Account::new(&mut rng);
    bob.generate_one_time_prekeys(&mut rng, 1);
    let mut a = alice
        .create_outbound_session(&mut rng, &bob.prekey_bundle(), SessionConfig::default())
        .unwrap();
    let Message::Prekey(m1) = a.encrypt(&mut rng, b"one").unwrap() else {
        panic!()
    };
    let Message::Prekey(m2) = a.encrypt(&mut rng, b"two").unwrap() else {
        panic!()
    };
    // The second arrives first and creates the session.
    let (mut b, pt) = bob.create_inbound_session(&m2).unwrap();
    assert_eq!(pt, b"two");
    // The first is routed to it: the account refuses a second session.
    assert!(b.matches_prekey_message(&m1));
    assert_eq!(b.base_key(), m1.base_key());
    assert!(bob.create_inbound_session(&m1).is_err());
    assert_eq!(b.decrypt(&Message::Prekey(m1.clone())).unwrap(), b"one");
    assert!(b.decrypt(&Message::Prekey(m1)).is_err());
    // Another initiator's message does not match.
    let carol = Account::new(&mut rng);
    let p = initial(&mut rng, &carol, &bob.prekey_bundle(), b"x");
    assert!(!b.matches_prekey_message(&p));
}
