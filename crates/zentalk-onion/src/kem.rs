//! Per-hop key agreement, behind the [`HopKem`] trait.
//!
//! The packet code only ever calls [`HopKem::encapsulate`] (sender, once per hop) and
//! [`HopKem::decapsulate`] (relay, once per packet) and treats the ciphertext as
//! [`HopKem::CIPHERTEXT_LEN`] opaque bytes, so a hybrid X25519 + ML-KEM scheme can be added
//! as a second implementation without touching the header, payload or SURB code: only the
//! layout (computed from `CIPHERTEXT_LEN`) and the version byte change.

use zentalk_crypto::{
    CryptoRngCore, NodeId, SecretBytes, X25519PublicKey, X25519Secret, hash::blake2b_256_parts,
};

use crate::OnionError;

/// A key-encapsulation mechanism used once per hop.
///
/// The shared secret it returns must already be bound to the ciphertext and the recipient's
/// public key (as in HPKE's DHKEM), because the packet code feeds it straight into the
/// per-hop key schedule.
pub trait HopKem {
    /// Version byte written at the start of every packet and reply block of this scheme.
    const VERSION: u8;
    /// Bytes the encapsulation adds to the header per hop.
    const CIPHERTEXT_LEN: usize;
    /// A relay's onion public key for one epoch.
    type PublicKey: Clone + core::fmt::Debug;
    /// A relay's onion secret key for one epoch.
    type SecretKey;

    /// Encapsulates to `public`: writes the ciphertext into `ciphertext` (exactly
    /// `CIPHERTEXT_LEN` bytes) and returns the 32-byte shared secret. `node` only names the
    /// relay in the error if its key is refused.
    fn encapsulate<R: CryptoRngCore + ?Sized>(
        rng: &mut R,
        public: &Self::PublicKey,
        node: &NodeId,
        ciphertext: &mut [u8],
    ) -> Result<SecretBytes<32>, OnionError>;

    /// Recovers the shared secret from a ciphertext of `CIPHERTEXT_LEN` bytes.
    fn decapsulate(
        secret: &Self::SecretKey,
        ciphertext: &[u8],
    ) -> Result<SecretBytes<32>, OnionError>;
}

/// X25519 as a KEM: the ciphertext is a fresh ephemeral public key (32 bytes), the shared
/// secret is `BLAKE2b-256("zentalk-onion/x25519-kem" || DH || ephemeral || relay key)`.
///
/// One X25519 scalar multiplication per hop on the relay side, no blinding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct X25519Kem;

const X25519_KEM_LABEL: &[u8] = b"zentalk-onion/x25519-kem";

fn bind(dh: &[u8; 32], ephemeral: &[u8], relay: &[u8; 32]) -> SecretBytes<32> {
    let mut out = blake2b_256_parts(&[X25519_KEM_LABEL, dh, ephemeral, relay]);
    SecretBytes::new(&mut out)
}

impl HopKem for X25519Kem {
    const VERSION: u8 = 1;
    const CIPHERTEXT_LEN: usize = 32;
    type PublicKey = X25519PublicKey;
    type SecretKey = X25519Secret;

    fn encapsulate<R: CryptoRngCore + ?Sized>(
        rng: &mut R,
        public: &X25519PublicKey,
        node: &NodeId,
        ciphertext: &mut [u8],
    ) -> Result<SecretBytes<32>, OnionError> {
        let mut seed = SecretBytes::<32>::zeroed();
        rng.fill_bytes(seed.expose_mut());
        let ephemeral = X25519Secret::from_bytes(seed.expose());
        let dh = ephemeral
            .diffie_hellman(public)
            .map_err(|_| OnionError::InvalidRelayKey { node: *node })?;
        let ct = ephemeral.public_key().to_bytes();
        let found = ciphertext.len();
        let out = ciphertext.get_mut(..32).ok_or(OnionError::InvalidLength {
            what: "KEM ciphertext buffer",
            expected: 32,
            found,
        })?;
        out.copy_from_slice(&ct);
        Ok(bind(dh.expose(), &ct, public.as_bytes()))
    }

    fn decapsulate(
        secret: &X25519Secret,
        ciphertext: &[u8],
    ) -> Result<SecretBytes<32>, OnionError> {
        let peer =
            X25519PublicKey::from_slice(ciphertext).map_err(|_| OnionError::InvalidLength {
                what: "KEM ciphertext",
                expected: 32,
                found: ciphertext.len(),
            })?;
        let dh = secret
            .diffie_hellman(&peer)
            .map_err(|_| OnionError::InvalidHopKey)?;
        Ok(bind(
            dh.expose(),
            ciphertext,
            secret.public_key().as_bytes(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn encapsulate_decapsulate_agree() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let relay = X25519Secret::generate(&mut rng);
        let mut ct = [0u8; 32];
        let node = NodeId::from_bytes([1; 32]);
        let a = X25519Kem::encapsulate(&mut rng, &relay.public_key(), &node, &mut ct).unwrap();
        let b = X25519Kem::decapsulate(&relay, &ct).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn low_order_points_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let relay = X25519Secret::generate(&mut rng);
        assert_eq!(
            X25519Kem::decapsulate(&relay, &[0u8; 32]),
            Err(OnionError::InvalidHopKey)
        );
        let mut ct = [0u8; 32];
        let node = NodeId::from_bytes([9; 32]);
        assert_eq!(
            X25519Kem::encapsulate(
                &mut rng,
                &X25519PublicKey::from_bytes([0; 32]),
                &node,
                &mut ct
            ),
            Err(OnionError::InvalidRelayKey { node })
        );
        assert!(matches!(
            X25519Kem::decapsulate(&relay, &[1u8; 31]),
            Err(OnionError::InvalidLength { .. })
        ));
    }
}
