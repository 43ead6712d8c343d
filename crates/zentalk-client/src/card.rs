//! Contact cards: what a user publishes so others can write to them.
//!
//! A card is the ratchet prekey bundle plus the user's *contact mailbox* (relay node id and
//! mailbox id), signed by the identity key. It is stored in the DHT encrypted under the
//! blinded prekey key derived from the identity (zentalk-dht `sign_prekey_bundle`), so a DHT
//! node learns neither whose card it holds nor which mailbox it names.
//!
//! Layout (`docs/protocol/zentalk-client.md`):
//! `version (1) || bundle_len u16 BE || bundle || relay (32) || mailbox (32) || signature (64)`,
//! the signature by the identity key over `CARD_CONTEXT || every byte before it`.

use zentalk_crypto::{IdentityKeyPair, SIGNATURE_LEN, Signature};
use zentalk_ratchet::PrekeyBundle;
use zentalk_ratchet::x3dh::{BUNDLE_LEN_WITH_OTK, BUNDLE_LEN_WITHOUT_OTK};

use crate::ClientError;
use crate::mailbox::MailboxAddr;

/// Version byte of the card format.
pub const CARD_VERSION: u8 = 1;
/// Domain separation of the card signature.
pub const CARD_CONTEXT: &[u8] = b"zentalk-contact-card-v1";
/// Smallest encoded card.
pub const MIN_CARD_LEN: usize = 1 + 2 + BUNDLE_LEN_WITHOUT_OTK + MailboxAddr::LEN + SIGNATURE_LEN;
/// Largest encoded card.
pub const MAX_CARD_LEN: usize = 1 + 2 + BUNDLE_LEN_WITH_OTK + MailboxAddr::LEN + SIGNATURE_LEN;

/// A verified contact card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactCard {
    /// The ratchet prekey bundle (carries the identity key).
    pub bundle: PrekeyBundle,
    /// The contact mailbox that receives first messages.
    pub mailbox: MailboxAddr,
    signature: Signature,
}

fn signed_part(bundle: &[u8], mailbox: &MailboxAddr) -> Result<Vec<u8>, ClientError> {
    let len = u16::try_from(bundle.len()).map_err(|_| ClientError::CardLength {
        expected: MAX_CARD_LEN,
        found: bundle.len(),
    })?;
    let mut out = Vec::with_capacity(MAX_CARD_LEN);
    out.push(CARD_VERSION);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bundle);
    out.extend_from_slice(&mailbox.to_bytes());
    Ok(out)
}

fn to_sign(part: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CARD_CONTEXT.len() + part.len());
    m.extend_from_slice(CARD_CONTEXT);
    m.extend_from_slice(part);
    m
}

impl ContactCard {
    /// Signs a card for `bundle` and `mailbox` with `identity` (the bundle's identity).
    pub fn sign(
        identity: &IdentityKeyPair,
        bundle: PrekeyBundle,
        mailbox: MailboxAddr,
    ) -> Result<Self, ClientError> {
        if bundle.identity_key != identity.public_key() {
            return Err(ClientError::CardSignature);
        }
        let part = signed_part(&bundle.to_bytes(), &mailbox)?;
        let signature = identity.sign(&to_sign(&part));
        Ok(Self {
            bundle,
            mailbox,
            signature,
        })
    }

    /// Encodes the card.
    pub fn to_bytes(&self) -> Vec<u8> {
        let bundle = self.bundle.to_bytes();
        let mut out = Vec::with_capacity(MAX_CARD_LEN);
        out.push(CARD_VERSION);
        // The bundle is at most BUNDLE_LEN_WITH_OTK bytes, well below u16::MAX.
        out.extend_from_slice(
            &u16::try_from(bundle.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(&bundle);
        out.extend_from_slice(&self.mailbox.to_bytes());
        out.extend_from_slice(&self.signature.to_bytes());
        out
    }

    /// Decodes a card and verifies both signatures (the card's and the signed prekey's).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ClientError> {
        if bytes.len() < MIN_CARD_LEN || bytes.len() > MAX_CARD_LEN {
            return Err(ClientError::CardLength {
                expected: MIN_CARD_LEN,
                found: bytes.len(),
            });
        }
        if bytes[0] != CARD_VERSION {
            return Err(ClientError::CardVersion {
                expected: CARD_VERSION,
                found: bytes[0],
            });
        }
        let blen = usize::from(u16::from_be_bytes([bytes[1], bytes[2]]));
        let expected = 3 + blen + MailboxAddr::LEN + SIGNATURE_LEN;
        if expected != bytes.len() {
            return Err(ClientError::CardLength {
                expected,
                found: bytes.len(),
            });
        }
        let (part, sig) = bytes.split_at(bytes.len() - SIGNATURE_LEN);
        let bundle = PrekeyBundle::from_bytes(&part[3..3 + blen])?;
        let mut mb = [0u8; MailboxAddr::LEN];
        mb.copy_from_slice(&part[3 + blen..]);
        let mailbox = MailboxAddr::from_bytes(&mb);
        let signature = Signature::from_slice(sig)?;
        bundle
            .identity_key
            .verify(&to_sign(part), &signature)
            .map_err(|_| ClientError::CardSignature)?;
        bundle.verify().map_err(|_| ClientError::CardSignature)?;
        Ok(Self {
            bundle,
            mailbox,
            signature,
        })
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

    fn card(seed: u64) -> (ContactCard, Vec<u8>) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut acc = Account::new(&mut rng);
        acc.generate_one_time_prekeys(&mut rng, 1);
        let mb = MailboxAddr {
            relay: NodeId::from_bytes([1; 32]),
            mailbox: MailboxId::from_bytes([2; 32]),
        };
        let c = ContactCard::sign(acc.identity(), acc.prekey_bundle(), mb).unwrap();
        let b = c.to_bytes();
        (c, b)
    }

    #[test]
    fn round_trip() {
        let (c, b) = card(1);
        assert_eq!(ContactCard::from_bytes(&b).unwrap(), c);
        assert!(b.len() <= MAX_CARD_LEN && b.len() >= MIN_CARD_LEN);
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let (_, b) = card(2);
        for i in 0..b.len() {
            let mut t = b.clone();
            t[i] ^= 0x01;
            assert!(ContactCard::from_bytes(&t).is_err(), "byte {i}");
        }
    }

    #[test]
    fn lengths_and_version_are_checked() {
        let (_, b) = card(3);
        assert!(matches!(
            ContactCard::from_bytes(&b[..b.len() - 1]),
            Err(ClientError::CardLength { .. })
        ));
        assert!(matches!(
            ContactCard::from_bytes(&[]),
            Err(ClientError::CardLength { .. })
        ));
        let mut t = b.clone();
        t[0] = 9;
        assert!(matches!(
            ContactCard::from_bytes(&t),
            Err(ClientError::CardVersion {
                expected: 1,
                found: 9
            })
        ));
    }

    #[test]
    fn someone_elses_bundle_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let a = Account::new(&mut rng);
        let b = Account::new(&mut rng);
        let mb = MailboxAddr {
            relay: NodeId::from_bytes([1; 32]),
            mailbox: MailboxId::from_bytes([2; 32]),
        };
        assert!(matches!(
            ContactCard::sign(a.identity(), b.prekey_bundle(), mb),
            Err(ClientError::CardSignature)
        ));
    }
}
