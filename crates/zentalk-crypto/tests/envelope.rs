//! Sealed envelopes end to end: round trips, wrong keys, tampering of every byte of the
//! header, replays, truncation and trailing bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zentalk_crypto::envelope::{
    Envelope, HEADER_LEN, MAX_MESSAGE_LEN, MIN_ENCODED_LEN, PREFIX_LEN, ReplayConfig, ReplayWindow,
};
use zentalk_crypto::{AeadSuite, CryptoError, IdentityKeyPair, TAG_LEN, padding};

const NOW: u64 = 1_800_000_000;
const SUITES: [AeadSuite; 2] = [AeadSuite::Aes256Gcm, AeadSuite::ChaCha20Poly1305];

struct World {
    rng: ChaCha20Rng,
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    mallory: IdentityKeyPair,
}

fn world(seed: u64) -> World {
    println!("rng seed {seed}");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    World {
        alice: IdentityKeyPair::generate(&mut rng),
        bob: IdentityKeyPair::generate(&mut rng),
        mallory: IdentityKeyPair::generate(&mut rng),
        rng,
    }
}

fn seal(w: &mut World, suite: AeadSuite, msg: &[u8]) -> Vec<u8> {
    Envelope::seal(&mut w.rng, suite, &w.alice, &w.bob.public_key(), NOW, msg)
        .unwrap()
        .to_bytes()
}

#[test]
fn round_trip_both_suites() {
    let mut w = world(1);
    for suite in SUITES {
        let bytes = seal(&mut w, suite, b"hello bob");
        let env = Envelope::from_bytes(&bytes).unwrap();
        assert_eq!(env.header().suite, suite);
        assert_eq!(env.header().sender, w.alice.public_key().address());
        assert_eq!(env.header().recipient, w.bob.public_key().address());
        assert_eq!(env.header().timestamp, NOW);
        assert_eq!(env.to_bytes(), bytes);
        assert_eq!(
            env.open(&w.bob, &w.alice.public_key()).unwrap(),
            b"hello bob"
        );
        let mut window = ReplayWindow::default();
        assert_eq!(
            env.open_and_accept(&w.bob, &w.alice.public_key(), &mut window, NOW + 1)
                .unwrap(),
            b"hello bob"
        );
    }
}

#[test]
fn ids_are_unique_and_the_size_shows_only_the_bucket() {
    let mut w = world(2);
    let a = Envelope::from_bytes(&seal(&mut w, AeadSuite::Aes256Gcm, b"x")).unwrap();
    let b = Envelope::from_bytes(&seal(&mut w, AeadSuite::Aes256Gcm, b"x")).unwrap();
    assert_ne!(a.header().id, b.header().id);
    for len in [0, 1, 100, 255] {
        assert_eq!(
            seal(&mut w, AeadSuite::Aes256Gcm, &vec![7; len]).len(),
            MIN_ENCODED_LEN
        );
    }
    assert_eq!(
        seal(&mut w, AeadSuite::Aes256Gcm, &[7; 256]).len(),
        PREFIX_LEN + 512 + TAG_LEN
    );
}

#[test]
fn largest_message_and_one_byte_more() {
    let mut w = world(3);
    let big = vec![0x5a; MAX_MESSAGE_LEN];
    let bytes = seal(&mut w, AeadSuite::ChaCha20Poly1305, &big);
    assert_eq!(bytes.len(), PREFIX_LEN + padding::MAX_PADDED_LEN + TAG_LEN);
    let env = Envelope::from_bytes(&bytes).unwrap();
    assert_eq!(env.open(&w.bob, &w.alice.public_key()).unwrap(), big);
    let too_big = vec![0; MAX_MESSAGE_LEN + 1];
    assert!(matches!(
        Envelope::seal(
            &mut w.rng,
            AeadSuite::Aes256Gcm,
            &w.alice,
            &w.bob.public_key(),
            NOW,
            &too_big
        ),
        Err(CryptoError::TooLong { .. })
    ));
}

#[test]
fn only_the_recipient_opens() {
    let mut w = world(4);
    let bytes = seal(&mut w, AeadSuite::Aes256Gcm, b"for bob");
    let env = Envelope::from_bytes(&bytes).unwrap();
    // Mallory is not the recipient.
    assert_eq!(
        env.open(&w.mallory, &w.alice.public_key()),
        Err(CryptoError::WrongRecipient {
            expected: w.mallory.public_key().address(),
            found: w.bob.public_key().address(),
        })
    );
    // Rewriting the recipient key id to herself does not help her.
    let mut forged = bytes.clone();
    forged[34..66].copy_from_slice(w.mallory.public_key().address().as_bytes());
    let forged = Envelope::from_bytes(&forged).unwrap();
    assert_eq!(
        forged.open(&w.mallory, &w.alice.public_key()),
        Err(CryptoError::AeadFailure)
    );
}

#[test]
fn only_the_sender_key_produces_it() {
    let mut w = world(5);
    // Mallory seals to Bob with her own key; Bob expects Alice.
    let from_mallory = Envelope::seal(
        &mut w.rng,
        AeadSuite::Aes256Gcm,
        &w.mallory,
        &w.bob.public_key(),
        NOW,
        b"I am alice",
    )
    .unwrap();
    assert_eq!(
        from_mallory.open(&w.bob, &w.alice.public_key()),
        Err(CryptoError::WrongSender {
            expected: w.alice.public_key().address(),
            found: w.mallory.public_key().address(),
        })
    );
    // She claims Alice's key id in the header: Bob looks up Alice's key and it fails.
    let mut claimed = from_mallory.to_bytes();
    claimed[2..34].copy_from_slice(w.alice.public_key().address().as_bytes());
    let claimed = Envelope::from_bytes(&claimed).unwrap();
    assert_eq!(claimed.header().sender, w.alice.public_key().address());
    assert_eq!(
        claimed.open(&w.bob, &w.alice.public_key()),
        Err(CryptoError::AeadFailure)
    );
    // And an honest Alice envelope opened against Mallory's key is refused.
    let honest = Envelope::from_bytes(&seal(&mut w, AeadSuite::Aes256Gcm, b"hi")).unwrap();
    assert!(matches!(
        honest.open(&w.bob, &w.mallory.public_key()),
        Err(CryptoError::WrongSender { .. })
    ));
}

/// What opening `bytes` as Bob expecting Alice gives, through parsing and opening.
fn try_open(w: &World, bytes: &[u8]) -> Result<Vec<u8>, CryptoError> {
    Envelope::from_bytes(bytes)?.open(&w.bob, &w.alice.public_key())
}

#[test]
fn every_header_byte_is_protected() {
    let mut w = world(6);
    for suite in SUITES {
        let bytes = seal(&mut w, suite, b"integrity");
        for offset in 0..PREFIX_LEN {
            for bit in [0x01u8, 0x80] {
                let mut t = bytes.clone();
                t[offset] ^= bit;
                let res = try_open(&w, &t);
                let ok = match offset {
                    0 => matches!(res, Err(CryptoError::UnsupportedVersion { .. })),
                    1 => matches!(
                        res,
                        Err(CryptoError::UnknownSuite(_) | CryptoError::AeadFailure)
                    ),
                    2..34 => matches!(res, Err(CryptoError::WrongSender { .. })),
                    34..66 => matches!(res, Err(CryptoError::WrongRecipient { .. })),
                    // Envelope id, timestamp and enc: bound by the key schedule.
                    66..122 => res == Err(CryptoError::AeadFailure),
                    // Ciphertext length: framing errors before any cryptography.
                    _ => matches!(
                        res,
                        Err(CryptoError::TooLong { .. }
                            | CryptoError::CiphertextNotBucket { .. }
                            | CryptoError::Truncated { .. }
                            | CryptoError::TrailingBytes { .. })
                    ),
                };
                assert!(ok, "suite {suite:?} offset {offset} bit {bit:#x}: {res:?}");
            }
        }
        // The other valid suite code is bound too.
        let mut t = bytes.clone();
        t[1] = if t[1] == 1 { 2 } else { 1 };
        assert_eq!(try_open(&w, &t), Err(CryptoError::AeadFailure));
        // Ciphertext bytes, including the tag.
        for offset in [PREFIX_LEN, PREFIX_LEN + 100, bytes.len() - 1] {
            let mut t = bytes.clone();
            t[offset] ^= 0x10;
            assert_eq!(try_open(&w, &t), Err(CryptoError::AeadFailure));
        }
    }
    assert_eq!(HEADER_LEN, 90);
}

#[test]
fn replays_and_clock_limits() {
    let mut w = world(7);
    let config = ReplayConfig {
        max_entries: 16,
        max_age_secs: 3600,
        max_future_skew_secs: 120,
    };
    let mut window = ReplayWindow::new(config).unwrap();
    let env = Envelope::from_bytes(&seal(&mut w, AeadSuite::Aes256Gcm, b"once")).unwrap();
    let alice = w.alice.public_key();
    assert!(
        env.open_and_accept(&w.bob, &alice, &mut window, NOW)
            .is_ok()
    );
    assert_eq!(
        env.open_and_accept(&w.bob, &alice, &mut window, NOW + 10),
        Err(CryptoError::Replay)
    );
    // Sealed at NOW: too old an hour and a second later, too new if our clock is 121 s behind.
    let env2 = Envelope::from_bytes(&seal(&mut w, AeadSuite::Aes256Gcm, b"two")).unwrap();
    assert_eq!(
        env2.open_and_accept(&w.bob, &alice, &mut window, NOW + 3601),
        Err(CryptoError::TooOld {
            timestamp: NOW,
            oldest_accepted: NOW + 1
        })
    );
    assert_eq!(
        env2.open_and_accept(&w.bob, &alice, &mut window, NOW - 121),
        Err(CryptoError::TooFarInFuture {
            timestamp: NOW,
            latest_accepted: NOW - 1
        })
    );
    // A failed open leaves no trace in the window: a forgery with env2's header does not
    // block the real envelope.
    let mut forged = env2.to_bytes();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let forged = Envelope::from_bytes(&forged).unwrap();
    let before = window.len();
    assert_eq!(
        forged.open_and_accept(&w.bob, &alice, &mut window, NOW),
        Err(CryptoError::AeadFailure)
    );
    assert_eq!(window.len(), before);
    assert_eq!(
        env2.open_and_accept(&w.bob, &alice, &mut window, NOW)
            .unwrap(),
        b"two"
    );
}

#[test]
fn replay_window_memory_is_bounded_under_a_flood_of_valid_envelopes() {
    let mut w = world(8);
    let config = ReplayConfig {
        max_entries: 32,
        ..ReplayConfig::default()
    };
    let mut window = ReplayWindow::new(config).unwrap();
    let alice = w.alice.public_key();
    let mut seen = Vec::new();
    for i in 0..200u64 {
        let env = Envelope::seal(
            &mut w.rng,
            AeadSuite::ChaCha20Poly1305,
            &w.alice,
            &w.bob.public_key(),
            NOW + i,
            b"flood",
        )
        .unwrap();
        env.open_and_accept(&w.bob, &alice, &mut window, NOW + i)
            .unwrap();
        assert!(window.len() <= 32);
        seen.push(env);
    }
    for env in &seen {
        assert!(matches!(
            env.open_and_accept(&w.bob, &alice, &mut window, NOW + 200),
            Err(CryptoError::Replay | CryptoError::TooOld { .. })
        ));
    }
}

#[test]
fn truncation_and_trailing_bytes() {
    let mut w = world(9);
    let bytes = seal(&mut w, AeadSuite::Aes256Gcm, b"cut me");
    assert_eq!(
        Envelope::from_bytes(&[]),
        Err(CryptoError::Truncated {
            what: "envelope",
            expected: PREFIX_LEN,
            found: 0
        })
    );
    for len in 1..bytes.len() {
        let res = Envelope::from_bytes(&bytes[..len]);
        assert!(
            matches!(res, Err(CryptoError::Truncated { found, .. }) if found == len),
            "{len}: {res:?}"
        );
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(
        Envelope::from_bytes(&long),
        Err(CryptoError::TrailingBytes {
            what: "envelope",
            found: 1
        })
    );
    // A length field announcing more than the maximum, before anything is allocated.
    let mut huge = bytes[..PREFIX_LEN].to_vec();
    huge[122..126].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        Envelope::from_bytes(&huge),
        Err(CryptoError::TooLong { .. })
    ));
    // A length that is not a bucket plus the tag.
    let mut odd = bytes.clone();
    odd[122..126].copy_from_slice(&100u32.to_be_bytes());
    assert_eq!(
        Envelope::from_bytes(&odd),
        Err(CryptoError::CiphertextNotBucket { found: 100 })
    );
    let mut tiny = bytes.clone();
    tiny[122..126].copy_from_slice(&3u32.to_be_bytes());
    assert_eq!(
        Envelope::from_bytes(&tiny),
        Err(CryptoError::CiphertextNotBucket { found: 3 })
    );
    // An unknown version is reported as such even when the rest is short.
    assert!(matches!(
        Envelope::from_bytes(&[2]),
        Err(CryptoError::UnsupportedVersion {
            expected: 1,
            found: 2,
            ..
        })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn round_trips(seed in any::<u64>(), msg in proptest::collection::vec(any::<u8>(), 0..3000), chacha in any::<bool>()) {
        let mut w = world(seed);
        let suite = if chacha { AeadSuite::ChaCha20Poly1305 } else { AeadSuite::Aes256Gcm };
        let bytes = seal(&mut w, suite, &msg);
        prop_assert_eq!(bytes.len(), PREFIX_LEN + padding::bucket_len(msg.len()).unwrap() + TAG_LEN);
        prop_assert_eq!(try_open(&w, &bytes).unwrap(), msg);
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Envelope::from_bytes(&data);
        // Also with a valid version byte, to get past the first check.
        let mut v = data.clone();
        if let Some(b) = v.first_mut() {
            *b = 1;
        }
        let _ = Envelope::from_bytes(&v);
    }
}
