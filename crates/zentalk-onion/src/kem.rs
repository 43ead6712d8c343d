//! Per-hop key agreement, behind the [`HopKem`] trait.
//!
//! The packet code only ever calls [`HopKem::encapsulate`] (sender, once per hop) and
//! [`HopKem::decapsulate`] (relay, once per packet) and treats the ciphertext as
//! [`HopKem::CIPHERTEXT_LEN`] opaque bytes, so a hybrid X25519 + ML-KEM scheme can be added
//! as a second implementation without touching the header, payload or SURB code: only the
//! layout (computed from `CIPHERTEXT_LEN`) and the version byte change.

use zentalk_crypto::{
    CryptoError, CryptoRngCore, NodeId, SecretBytes, SharedSecret, X25519PublicKey, X25519Secret,
    hash::blake2b_256_parts,
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

    /// Sender-side precomputation for one relay key, reused for every packet sent through
    /// that relay in the key's epoch (see [`crate::PreparedHop`]).
    type PreparedKey;

    /// Prepares `public` (may be expensive). Refuses a key encapsulation would refuse.
    fn prepare(public: &Self::PublicKey, node: &NodeId) -> Result<Self::PreparedKey, OnionError>;

    /// [`HopKem::encapsulate`] with a prepared key: same randomness drawn, same ciphertext
    /// and shared secret, less work.
    fn encapsulate_prepared<R: CryptoRngCore + ?Sized>(
        rng: &mut R,
        prepared: &Self::PreparedKey,
        node: &NodeId,
        ciphertext: &mut [u8],
    ) -> Result<SecretBytes<32>, OnionError>;
}

/// An X25519 relay key prepared for fast encapsulation: zentalk-crypto's
/// [`PreparedX25519PublicKey`](zentalk_crypto::PreparedX25519PublicKey), a constant-time
/// fixed-base table of the key's Edwards form (about 30 KiB), so the sender's agreement costs a
/// table pass instead of a Montgomery ladder, bit for bit the same X25519 output. Kept under
/// this name for the users of `zentalk_onion::PreparedX25519Key`.
pub use zentalk_crypto::PreparedX25519PublicKey as PreparedX25519Key;

/// X25519 as a KEM: the ciphertext is a fresh ephemeral public key (32 bytes), the shared
/// secret is `BLAKE2b-256("zentalk-onion/x25519-kem" || DH || ephemeral || relay key)`.
///
/// One X25519 scalar multiplication per hop on the relay side, no blinding. Every agreement is
/// zentalk-crypto's [`X25519Secret::diffie_hellman_edwards`] (the X25519 function computed on
/// the Edwards form, faster on CPUs with AVX2) or, for a prepared relay key, the prepared
/// table; both refuse low-order points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct X25519Kem;

const X25519_KEM_LABEL: &[u8] = b"zentalk-onion/x25519-kem";

fn bind(dh: &SharedSecret, ephemeral: &[u8], relay: &[u8; 32]) -> SecretBytes<32> {
    let mut out = blake2b_256_parts(&[X25519_KEM_LABEL, dh.expose(), ephemeral, relay]);
    SecretBytes::new(&mut out)
}

/// The ephemeral secret of one encapsulation: 32 bytes drawn from `rng`, as before the move
/// to zentalk-crypto, so seeded runs and the vectors are unchanged.
fn ephemeral<R: CryptoRngCore + ?Sized>(rng: &mut R) -> X25519Secret {
    let mut seed = SecretBytes::<32>::zeroed();
    rng.fill_bytes(seed.expose_mut());
    X25519Secret::from_bytes(seed.expose())
}

/// One encapsulation to `public`: draws the ephemeral secret, agrees with `dh` (the plain or
/// the prepared form of the same X25519 function), writes the ephemeral public key into the
/// caller's ciphertext buffer and binds the shared secret.
fn encapsulate_with<R: CryptoRngCore + ?Sized>(
    rng: &mut R,
    public: &X25519PublicKey,
    node: &NodeId,
    ciphertext: &mut [u8],
    dh: impl FnOnce(&X25519Secret) -> Result<SharedSecret, CryptoError>,
) -> Result<SecretBytes<32>, OnionError> {
    let ephemeral = ephemeral(rng);
    let dh = dh(&ephemeral).map_err(|_| OnionError::InvalidRelayKey { node: *node })?;
    let ct = ephemeral.public_key().to_bytes();
    let found = ciphertext.len();
    let out = ciphertext.get_mut(..32).ok_or(OnionError::InvalidLength {
        what: "KEM ciphertext buffer",
        expected: 32,
        found,
    })?;
    out.copy_from_slice(&ct);
    Ok(bind(&dh, &ct, public.as_bytes()))
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
        encapsulate_with(rng, public, node, ciphertext, |e| {
            e.diffie_hellman_edwards(public)
        })
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
            .diffie_hellman_edwards(&peer)
            .map_err(|_| OnionError::InvalidHopKey)?;
        Ok(bind(&dh, ciphertext, secret.public_key().as_bytes()))
    }

    type PreparedKey = PreparedX25519Key;

    /// Refuses small-order keys and points on the twist (no Edwards form); honest keys are
    /// neither.
    fn prepare(public: &X25519PublicKey, node: &NodeId) -> Result<PreparedX25519Key, OnionError> {
        PreparedX25519Key::new(public).map_err(|_| OnionError::InvalidRelayKey { node: *node })
    }

    fn encapsulate_prepared<R: CryptoRngCore + ?Sized>(
        rng: &mut R,
        prepared: &PreparedX25519Key,
        node: &NodeId,
        ciphertext: &mut [u8],
    ) -> Result<SecretBytes<32>, OnionError> {
        let public = prepared.public_key();
        encapsulate_with(rng, &public, node, ciphertext, |e| {
            prepared.diffie_hellman(e)
        })
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
    fn prepared_encapsulation_equals_the_ladder() {
        let node = NodeId::from_bytes([3; 32]);
        for seed in 0..20u64 {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let relay = X25519Secret::generate(&mut rng);
            let prepared = X25519Kem::prepare(&relay.public_key(), &node).unwrap();
            let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
            let mut r1 = ChaCha20Rng::seed_from_u64(1000 + seed);
            let mut r2 = ChaCha20Rng::seed_from_u64(1000 + seed);
            let s1 = X25519Kem::encapsulate(&mut r1, &relay.public_key(), &node, &mut a).unwrap();
            let s2 = X25519Kem::encapsulate_prepared(&mut r2, &prepared, &node, &mut b).unwrap();
            assert_eq!((a, &s1), (b, &s2));
            assert_eq!(X25519Kem::decapsulate(&relay, &b).unwrap(), s2);
        }
    }

    #[test]
    fn preparing_low_order_keys_is_refused() {
        let node = NodeId::from_bytes([4; 32]);
        let mut one = [0u8; 32];
        one[0] = 1;
        for bad in [[0u8; 32], one] {
            assert!(matches!(
                X25519Kem::prepare(&X25519PublicKey::from_bytes(bad), &node),
                Err(OnionError::InvalidRelayKey { .. })
            ));
        }
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
