#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zentalk_ratchet::{Account, Message, Session, SessionConfig};

pub(crate) fn rng(seed: u64) -> ChaCha20Rng {
    eprintln!("rng seed {seed}");
    ChaCha20Rng::seed_from_u64(seed)
}

/// Alice and Bob with an established session (Bob has read Alice's first message).
pub(crate) fn pair(
    rng: &mut ChaCha20Rng,
    config: SessionConfig,
) -> (Account, Account, Session, Session) {
    let alice = Account::new(rng);
    let mut bob = Account::new(rng);
    bob.generate_one_time_prekeys(rng, 5);
    let mut a = alice
        .create_outbound_session(rng, &bob.prekey_bundle(), config)
        .unwrap();
    let m = a.encrypt(rng, b"hello").unwrap();
    let Message::Prekey(p) = Message::from_bytes(&m.to_bytes()).unwrap() else {
        panic!("first message must be a prekey message")
    };
    let (b, pt) = bob.create_inbound_session(&p).unwrap();
    assert_eq!(pt, b"hello");
    (alice, bob, a, b)
}

pub(crate) fn wire(m: &Message) -> Message {
    Message::from_bytes(&m.to_bytes()).unwrap()
}
