//! Replays the `client_payload` fuzz corpus (tests/fuzz_corpus/client_payload) through the
//! decoders of bytes that reach a client from the network: `payload::open_outer` (what the
//! onion delivers), `Inner::from_bytes` (the ratchet plaintext, with the `MailboxAddr` of a
//! handover) and `ContactCard::from_bytes` (a card fetched from the DHT).
//!
//! This file is also the fuzz target's harness: fuzz/fuzz_targets/client_payload.rs includes it
//! as a module (`#[path = ...] mod harness;`), so the target and this replay run the very same
//! checks. Only the `#[cfg(test)]` part below is test-only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use zentalk_client::payload::{open_outer, seal_outer};
use zentalk_client::{Body, ContactCard, Inner, MailboxAddr};

/// A genuine contact card: the account of `ChaCha20Rng::seed_from_u64(7)` with one one-time
/// prekey, mailbox on relay `[1; 32]` with id `[2; 32]` (checked by
/// `genuine_card_is_what_its_seed_gives`). It is also a corpus input.
pub(crate) const GENUINE_CARD: &[u8] = include_bytes!("fuzz_corpus/client_payload/genuine_card");

/// The checks for one input. Nothing may panic; what decodes must re-encode to exactly the
/// input (every one of these encodings is canonical); and the genuine card with the input
/// written over part of it (at the offset its first byte names) decodes only if that changed
/// nothing.
pub(crate) fn harness(data: &[u8]) {
    if let Ok(rest) = open_outer(data) {
        assert_eq!(seal_outer(rest), data);
    }
    if let Ok(inner) = Inner::from_bytes(data) {
        assert_eq!(inner.to_bytes(), data);
        if let Body::MailboxHandover(addr) = &inner.body {
            assert_eq!(MailboxAddr::from_bytes(&addr.to_bytes()), *addr);
        }
    }
    if let Ok(card) = ContactCard::from_bytes(data) {
        assert_eq!(card.to_bytes(), data);
    }
    if let Some((&at, patch)) = data.split_first() {
        let mut card = GENUINE_CARD.to_vec();
        let at = usize::from(at) % card.len();
        let end = card.len().min(at + patch.len());
        let patch = &patch[..end - at];
        let unchanged = card[at..end] == *patch;
        card[at..end].copy_from_slice(patch);
        match ContactCard::from_bytes(&card) {
            Ok(decoded) => {
                assert!(unchanged, "a modified card was accepted");
                assert_eq!(decoded.to_bytes(), card);
            }
            Err(e) => assert!(!unchanged, "the genuine card was refused: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use zentalk_crypto::NodeId;
    use zentalk_onion::MailboxId;
    use zentalk_ratchet::Account;

    use super::*;

    const DIR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fuzz_corpus/client_payload"
    );

    #[test]
    fn corpus_replays() {
        let mut n = 0;
        let (mut outer, mut inner, mut cards) = (0, 0, 0);
        for entry in std::fs::read_dir(DIR).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            harness(&data);
            outer += usize::from(open_outer(&data).is_ok());
            inner += usize::from(Inner::from_bytes(&data).is_ok());
            cards += usize::from(ContactCard::from_bytes(&data).is_ok());
            n += 1;
        }
        // The kept corpus reaches past every length check: inputs that open, inner messages
        // that decode, and the genuine card.
        assert!(n >= 10, "corpus has only {n} inputs");
        assert!(
            outer > 0 && inner > 0 && cards > 0,
            "{outer} {inner} {cards}"
        );
    }

    #[test]
    fn genuine_card_is_what_its_seed_gives() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let mut account = Account::new(&mut rng);
        account.generate_one_time_prekeys(&mut rng, 1);
        let mailbox = MailboxAddr {
            relay: NodeId::from_bytes([1; 32]),
            mailbox: MailboxId::from_bytes([2; 32]),
        };
        let card = ContactCard::sign(account.identity(), account.prekey_bundle(), mailbox)
            .unwrap()
            .to_bytes();
        assert_eq!(card, GENUINE_CARD, "{}", hex::encode(&card));
        assert!(ContactCard::from_bytes(GENUINE_CARD).is_ok());
    }

    /// The harness can fail: a modified card that decoded, or a re-encoding that differs,
    /// would panic. Here: every single-byte patch of the genuine card is refused.
    #[test]
    fn every_patched_byte_of_the_genuine_card_is_refused() {
        for at in 0..GENUINE_CARD.len() {
            let mut card = GENUINE_CARD.to_vec();
            card[at] ^= 0x40;
            assert!(ContactCard::from_bytes(&card).is_err(), "byte {at}");
            let offset = u8::try_from(at % 256).unwrap();
            if usize::from(offset) == at {
                harness(&[&[offset][..], &[GENUINE_CARD[at] ^ 0x40][..]].concat());
            }
        }
    }
}
