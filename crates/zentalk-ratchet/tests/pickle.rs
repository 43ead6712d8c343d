//! Encrypted pickles: round trips, typed errors, and the committed v1 fixtures that every
//! later version must still load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::path::PathBuf;

use common::{pair, rng, wire};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zentalk_ratchet::pickle::{KIND_ACCOUNT, KIND_SESSION, PICKLE_VERSION};
use zentalk_ratchet::{Account, Message, PickleError, Session, SessionConfig};

const KEY: [u8; 32] = [0x42; 32];

#[test]
fn restored_sessions_continue_exactly() {
    for header_encryption in [false, true] {
        let mut rng = rng(60);
        let config = SessionConfig {
            header_encryption,
            ..Default::default()
        };
        let (_, _, mut a, mut b) = pair(&mut rng, config);
        let r = b.encrypt(&mut rng, b"r").unwrap();
        a.decrypt(&r).unwrap();
        let skipped = a.encrypt(&mut rng, b"skipped").unwrap();
        let m = a.encrypt(&mut rng, b"m").unwrap();
        b.decrypt(&m).unwrap();
        // Pickle both mid-conversation (Bob has one skipped key stored).
        let mut a = Session::from_pickle(&a.pickle(&mut rng, &KEY), &KEY).unwrap();
        let mut b = Session::from_pickle(&b.pickle(&mut rng, &KEY), &KEY).unwrap();
        assert_eq!(a.session_id(), b.session_id());
        assert_eq!(b.skipped_key_count(), 1);
        assert_eq!(b.decrypt(&wire(&skipped)).unwrap(), b"skipped");
        for i in 0..3u8 {
            let m = b.encrypt(&mut rng, &[i]).unwrap();
            assert_eq!(a.decrypt(&wire(&m)).unwrap(), [i]);
            let m = a.encrypt(&mut rng, &[i, i]).unwrap();
            assert_eq!(b.decrypt(&wire(&m)).unwrap(), [i, i]);
        }
    }
}

#[test]
fn a_pickled_initiator_still_sends_initial_messages() {
    let mut rng = rng(61);
    let alice = Account::new(&mut rng);
    let bob = Account::new(&mut rng);
    let a = alice
        .create_outbound_session(&mut rng, &bob.prekey_bundle(), SessionConfig::default())
        .unwrap();
    let mut a = Session::from_pickle(&a.pickle(&mut rng, &KEY), &KEY).unwrap();
    let Message::Prekey(p) = a.encrypt(&mut rng, b"hi").unwrap() else {
        panic!("expected an initial message")
    };
    let mut bob = Account::from_pickle(&bob.pickle(&mut rng, &KEY), &KEY).unwrap();
    assert_eq!(bob.create_inbound_session(&p).unwrap().1, b"hi");
}

#[test]
fn account_round_trip_keeps_prekeys_and_replay_memory() {
    let mut rng = rng(62);
    let alice = Account::new(&mut rng);
    let mut bob = Account::new(&mut rng);
    bob.generate_one_time_prekeys(&mut rng, 3);
    bob.rotate_signed_prekey(&mut rng, 10);
    let mut s = alice
        .create_outbound_session(&mut rng, &bob.prekey_bundle(), SessionConfig::default())
        .unwrap();
    let Message::Prekey(p) = s.encrypt(&mut rng, b"x").unwrap() else {
        panic!()
    };
    bob.create_inbound_session(&p).unwrap();
    let mut restored = Account::from_pickle(&bob.pickle(&mut rng, &KEY), &KEY).unwrap();
    assert_eq!(restored.identity_key(), bob.identity_key());
    assert_eq!(restored.prekey_bundle(), bob.prekey_bundle());
    assert_eq!(restored.one_time_prekeys(), bob.one_time_prekeys());
    assert_eq!(restored.retired_signed_prekey_ids(), vec![1]);
    assert!(restored.create_inbound_session(&p).is_err());
}

#[test]
fn wrong_key_tampering_version_and_kind_are_typed_errors() {
    let mut rng = rng(63);
    let (alice, _, a, _) = pair(&mut rng, SessionConfig::default());
    let p = a.pickle(&mut rng, &KEY);
    assert_eq!(p[0], PICKLE_VERSION);
    assert_eq!(p[1], KIND_SESSION);
    assert_eq!(
        Session::from_pickle(&p, &[0x43; 32]).unwrap_err(),
        PickleError::WrongKeyOrTampered
    );
    for pos in [2usize, 14, p.len() / 2, p.len() - 1] {
        let mut bad = p.clone();
        bad[pos] ^= 1;
        assert_eq!(
            Session::from_pickle(&bad, &KEY).unwrap_err(),
            PickleError::WrongKeyOrTampered
        );
    }
    let mut bad = p.clone();
    bad[0] = 9;
    assert_eq!(
        Session::from_pickle(&bad, &KEY).unwrap_err(),
        PickleError::UnsupportedVersion {
            expected: 1,
            found: 9
        }
    );
    assert_eq!(
        Account::from_pickle(&p, &KEY).unwrap_err(),
        PickleError::WrongKind {
            expected: KIND_ACCOUNT,
            found: KIND_SESSION
        }
    );
    // The kind is bound into the AEAD: relabelling a session pickle as an account fails.
    let mut relabel = p.clone();
    relabel[1] = KIND_ACCOUNT;
    assert_eq!(
        Account::from_pickle(&relabel, &KEY).unwrap_err(),
        PickleError::WrongKeyOrTampered
    );
    assert!(matches!(
        Session::from_pickle(&p[..10], &KEY),
        Err(PickleError::TooShort { .. })
    ));
    assert!(matches!(
        Session::from_pickle(
            &vec![1u8; zentalk_ratchet::pickle::MAX_PICKLE_LEN + 1],
            &KEY
        ),
        Err(PickleError::TooLong { .. })
    ));
    let ap = alice.pickle(&mut rng, &KEY);
    assert_eq!(ap[1], KIND_ACCOUNT);
}

// ---- v1 fixtures -------------------------------------------------------------------------

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

const FIXTURE_KEY: [u8; 32] = *b"zentalk-ratchet pickle fixture!!";

/// The deterministic conversation behind the fixtures: seeded RNG, fixed order. Returns the
/// account pickle, the session pickle and three messages: an initial message for the
/// restored account, a message the pickled session skipped, and the next message.
fn fixture_material() -> (Vec<u8>, Vec<u8>, [Vec<u8>; 3]) {
    let mut rng = ChaCha20Rng::seed_from_u64(0x7069636b6c65);
    let alice = Account::new(&mut rng);
    let mut bob = Account::new(&mut rng);
    bob.generate_one_time_prekeys(&mut rng, 4);
    let mut a = alice
        .create_outbound_session(&mut rng, &bob.prekey_bundle(), SessionConfig::default())
        .unwrap();
    let Message::Prekey(p) = a.encrypt(&mut rng, b"first").unwrap() else {
        panic!()
    };
    let (mut b, _) = bob.create_inbound_session(&p).unwrap();
    let r = b.encrypt(&mut rng, b"reply").unwrap();
    a.decrypt(&r).unwrap();
    let skipped = a.encrypt(&mut rng, b"skipped").unwrap();
    let m = a.encrypt(&mut rng, b"third").unwrap();
    b.decrypt(&m).unwrap();
    let next = a.encrypt(&mut rng, b"the next message").unwrap();
    let mut a2 = alice
        .create_outbound_session(&mut rng, &bob.prekey_bundle(), SessionConfig::default())
        .unwrap();
    let initial = a2.encrypt(&mut rng, b"to the restored account").unwrap();
    (
        bob.pickle(&mut rng, &FIXTURE_KEY),
        b.pickle(&mut rng, &FIXTURE_KEY),
        [initial.to_bytes(), skipped.to_bytes(), next.to_bytes()],
    )
}

/// The header-encrypted (ChaCha20-Poly1305) counterpart: the responder's session pickle, a
/// message it skipped (from an earlier chain) and the next message.
fn fixture_material_he() -> (Vec<u8>, [Vec<u8>; 2]) {
    let mut rng = ChaCha20Rng::seed_from_u64(0x6865_6164_6572);
    let alice = Account::new(&mut rng);
    let mut bob = Account::new(&mut rng);
    let config = SessionConfig {
        suite: zentalk_ratchet::AeadSuite::ChaCha20Poly1305,
        header_encryption: true,
    };
    let mut a = alice
        .create_outbound_session(&mut rng, &bob.prekey_bundle(), config)
        .unwrap();
    let Message::Prekey(p) = a.encrypt(&mut rng, b"first").unwrap() else {
        panic!()
    };
    let (mut b, _) = bob.create_inbound_session(&p).unwrap();
    let r = b.encrypt(&mut rng, b"reply").unwrap();
    a.decrypt(&r).unwrap();
    let skipped = a.encrypt(&mut rng, b"skipped").unwrap();
    let m = a.encrypt(&mut rng, b"third").unwrap();
    b.decrypt(&m).unwrap();
    let r = b.encrypt(&mut rng, b"reply 2").unwrap();
    a.decrypt(&r).unwrap();
    let next = a.encrypt(&mut rng, b"the next message").unwrap();
    (
        b.pickle(&mut rng, &FIXTURE_KEY),
        [skipped.to_bytes(), next.to_bytes()],
    )
}

fn length_prefixed(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.extend_from_slice(&(m.len() as u32).to_be_bytes());
        out.extend_from_slice(m);
    }
    out
}

fn split_length_prefixed(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    while !rest.is_empty() {
        let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        parts.push(&rest[4..4 + n]);
        rest = &rest[4 + n..];
    }
    parts
}

#[test]
fn v1_header_encrypted_session_fixture_still_loads() {
    let dir = fixtures();
    if std::env::var_os("ZENTALK_WRITE_FIXTURES").is_some() {
        let (session, messages) = fixture_material_he();
        std::fs::write(dir.join("session_he.v1.pickle"), session).unwrap();
        std::fs::write(dir.join("messages_he.v1.bin"), length_prefixed(&messages)).unwrap();
    }
    let session = std::fs::read(dir.join("session_he.v1.pickle")).unwrap();
    let messages = std::fs::read(dir.join("messages_he.v1.bin")).unwrap();
    let parts = split_length_prefixed(&messages);
    assert_eq!(parts.len(), 2);
    assert_eq!(session[0], 1, "fixture must stay a v1 pickle");
    let mut b = Session::from_pickle(&session, &FIXTURE_KEY).unwrap();
    assert!(b.config().header_encryption);
    assert_eq!(b.skipped_key_count(), 1);
    assert_eq!(
        b.decrypt(&Message::from_bytes(parts[1]).unwrap()).unwrap(),
        b"the next message"
    );
    assert_eq!(
        b.decrypt(&Message::from_bytes(parts[0]).unwrap()).unwrap(),
        b"skipped"
    );
}

/// Regenerate with `ZENTALK_WRITE_FIXTURES=1 cargo test -p zentalk-ratchet --test pickle`
/// only when a NEW format version is added (as `*.v2.*`); v1 files are never rewritten.
#[test]
fn v1_fixtures_still_load_and_continue() {
    let dir = fixtures();
    if std::env::var_os("ZENTALK_WRITE_FIXTURES").is_some() {
        let (account, session, messages) = fixture_material();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("account.v1.pickle"), account).unwrap();
        std::fs::write(dir.join("session.v1.pickle"), session).unwrap();
        // messages.v1.bin: three messages, each prefixed by its length (u32 BE).
        let mut out = Vec::new();
        for m in &messages {
            out.extend_from_slice(&(m.len() as u32).to_be_bytes());
            out.extend_from_slice(m);
        }
        std::fs::write(dir.join("messages.v1.bin"), out).unwrap();
    }
    let account = std::fs::read(dir.join("account.v1.pickle")).unwrap();
    let session = std::fs::read(dir.join("session.v1.pickle")).unwrap();
    let messages = std::fs::read(dir.join("messages.v1.bin")).unwrap();
    let mut parts = Vec::new();
    let mut rest = &messages[..];
    while !rest.is_empty() {
        let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        parts.push(&rest[4..4 + n]);
        rest = &rest[4 + n..];
    }
    assert_eq!(parts.len(), 3);
    assert_eq!(account[0], 1, "fixture must stay a v1 pickle");
    assert_eq!(session[0], 1, "fixture must stay a v1 pickle");

    let mut bob = Account::from_pickle(&account, &FIXTURE_KEY).unwrap();
    let Message::Prekey(p) = Message::from_bytes(parts[0]).unwrap() else {
        panic!()
    };
    assert_eq!(
        bob.create_inbound_session(&p).unwrap().1,
        b"to the restored account"
    );

    let mut b = Session::from_pickle(&session, &FIXTURE_KEY).unwrap();
    assert_eq!(b.skipped_key_count(), 1);
    assert_eq!(
        b.decrypt(&Message::from_bytes(parts[2]).unwrap()).unwrap(),
        b"the next message"
    );
    assert_eq!(
        b.decrypt(&Message::from_bytes(parts[1]).unwrap()).unwrap(),
        b"skipped"
    );
}
