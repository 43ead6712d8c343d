//! Randomized conversations: both parties send bursts, the network reorders, drops and
//! replays messages. Every first delivery decrypts to what was sent, every replay is refused,
//! and the sessions keep working. Seeds are printed so a failure can be replayed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use common::{pair, rng};
use rand_core::RngCore;
use zentalk_ratchet::{AeadSuite, Message, SessionConfig};

fn run(seed: u64, config: SessionConfig) {
    let mut rng = rng(seed);
    let (_, _, a, b) = pair(&mut rng, config);
    let mut sessions = [a, b];
    // In flight: (recipient, bytes, plaintext, already delivered).
    let mut flight: Vec<(usize, Vec<u8>, Vec<u8>, bool)> = Vec::new();
    let mut counter = 0u32;
    for _ in 0..120 {
        match rng.next_u32() % 4 {
            0 | 1 => {
                let from = (rng.next_u32() % 2) as usize;
                for _ in 0..=(rng.next_u32() % 4) {
                    counter += 1;
                    let pt = counter.to_be_bytes().to_vec();
                    let m = sessions[from].encrypt(&mut rng, &pt).unwrap();
                    flight.push((1 - from, m.to_bytes(), pt, false));
                }
            }
            2 if !flight.is_empty() => {
                let i = (rng.next_u32() as usize) % flight.len();
                let (to, bytes, pt, delivered) = &mut flight[i];
                let m = Message::from_bytes(bytes).unwrap();
                let res = sessions[*to].decrypt(&m);
                if *delivered {
                    assert!(res.is_err(), "seed {seed}: replay accepted");
                } else {
                    assert_eq!(&res.unwrap(), pt, "seed {seed}: wrong plaintext");
                    *delivered = true;
                }
            }
            _ if !flight.is_empty() => {
                // Drop one message for good (never delivered).
                let i = (rng.next_u32() as usize) % flight.len();
                if !flight[i].3 {
                    flight.remove(i);
                }
            }
            _ => {}
        }
    }
    // Deliver everything left, in random order.
    while !flight.is_empty() {
        let i = (rng.next_u32() as usize) % flight.len();
        let (to, bytes, pt, delivered) = flight.remove(i);
        let res = sessions[to].decrypt(&Message::from_bytes(&bytes).unwrap());
        if delivered {
            assert!(res.is_err(), "seed {seed}: replay accepted");
        } else {
            assert_eq!(res.unwrap(), pt, "seed {seed}: wrong plaintext");
        }
    }
    // Still working both ways.
    for from in [0usize, 1] {
        let m = sessions[from].encrypt(&mut rng, b"end").unwrap();
        assert_eq!(
            sessions[1 - from].decrypt(&m).unwrap(),
            b"end",
            "seed {seed}"
        );
    }
}

#[test]
fn random_reordering_drops_and_replays() {
    let base = std::env::var("ZENTALK_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0000u64);
    eprintln!("base seed {base} (set ZENTALK_TEST_SEED to replay)");
    for i in 0..12u64 {
        for suite in [AeadSuite::Aes256Gcm, AeadSuite::ChaCha20Poly1305] {
            for header_encryption in [false, true] {
                run(
                    base + i,
                    SessionConfig {
                        suite,
                        header_encryption,
                    },
                );
            }
        }
    }
}
