//! Per-hop key agreement, behind the [`HopKem`] trait.
//!
//! The packet code only ever calls [`HopKem::encapsulate`] (sender, once per hop) and
//! [`HopKem::decapsulate`] (relay, once per packet) and treats the ciphertext as
//! [`HopKem::CIPHERTEXT_LEN`] opaque bytes, so a hybrid X25519 + ML-KEM scheme can be added
//! as a second implementation without touching the header, payload or SURB code: only the
//! layout (computed from `CIPHERTEXT_LEN`) and the version byte change.

use curve25519_dalek::edwards::EdwardsBasepointTable;
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::traits::{BasepointTable, IsIdentity};
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

/// An X25519 relay key prepared for fast encapsulation: a constant-time fixed-base table of
/// the key's Edwards form (32 x 8 precomputed multiples, about 30 KiB), so the sender's
/// agreement costs a table lookup-and-add pass instead of a Montgomery ladder. The result
/// is bit-for-bit the X25519 function: `u(clamp(e) * P)` does not depend on the sign of the
/// Edwards point chosen for `P`.
pub struct PreparedX25519Key {
    table: Box<EdwardsBasepointTable>,
    public: X25519PublicKey,
}

impl core::fmt::Debug for PreparedX25519Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PreparedX25519Key")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// X25519 as a KEM: the ciphertext is a fresh ephemeral public key (32 bytes), the shared
/// secret is `BLAKE2b-256("zentalk-onion/x25519-kem" || DH || ephemeral || relay key)`.
///
/// One X25519 scalar multiplication per hop on the relay side, no blinding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct X25519Kem;

const X25519_KEM_LABEL: &[u8] = b"zentalk-onion/x25519-kem";

/// The X25519 function `u(clamp(scalar) * P)` for `P` with u-coordinate `u`, refusing an
/// all-zero result (low-order `P`).
///
/// Computed on the Edwards form of `P` (a constant-time variable-base multiplication, which
/// curve25519-dalek runs on its AVX2 backend when the CPU has it: about 20% faster than the
/// Montgomery ladder here); the result does not depend on the sign chosen for the Edwards
/// point. A `u` with no Edwards form (a point on the twist, never an honest key) falls back to
/// the ladder of `ladder_secret`, so the function is exactly X25519 for every input.
fn x25519(
    scalar: &[u8; 32],
    u: &[u8; 32],
    ladder_secret: &X25519Secret,
    peer: &X25519PublicKey,
) -> Option<SecretBytes<32>> {
    match MontgomeryPoint(*u).to_edwards(0) {
        Some(point) => {
            let mut out = point.mul_clamped(*scalar).to_montgomery().to_bytes();
            let out = SecretBytes::new(&mut out);
            if zentalk_crypto::hash::ct_eq(out.expose(), &[0u8; 32]) {
                None
            } else {
                Some(out)
            }
        }
        None => ladder_secret
            .diffie_hellman(peer)
            .ok()
            .map(|s| SecretBytes::new(&mut s.expose().to_owned())),
    }
}

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
        let dh = x25519(seed.expose(), public.as_bytes(), &ephemeral, public)
            .ok_or(OnionError::InvalidRelayKey { node: *node })?;
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
        let scalar = secret.to_secret_bytes();
        let dh = x25519(scalar.expose(), peer.as_bytes(), secret, &peer)
            .ok_or(OnionError::InvalidHopKey)?;
        Ok(bind(
            dh.expose(),
            ciphertext,
            secret.public_key().as_bytes(),
        ))
    }

    type PreparedKey = PreparedX25519Key;

    fn prepare(public: &X25519PublicKey, node: &NodeId) -> Result<PreparedX25519Key, OnionError> {
        let refuse = OnionError::InvalidRelayKey { node: *node };
        // Points on the twist have no Edwards form; honest keys never are. Small-order points
        // (and points with only a small-order component) are refused as by the ladder path.
        let point = MontgomeryPoint(public.to_bytes())
            .to_edwards(0)
            .ok_or(refuse.clone())?;
        if point.mul_by_cofactor().is_identity() {
            return Err(refuse);
        }
        Ok(PreparedX25519Key {
            table: Box::new(EdwardsBasepointTable::create(&point)),
            public: *public,
        })
    }

    fn encapsulate_prepared<R: CryptoRngCore + ?Sized>(
        rng: &mut R,
        prepared: &PreparedX25519Key,
        node: &NodeId,
        ciphertext: &mut [u8],
    ) -> Result<SecretBytes<32>, OnionError> {
        let mut seed = SecretBytes::<32>::zeroed();
        rng.fill_bytes(seed.expose_mut());
        let ephemeral = X25519Secret::from_bytes(seed.expose());
        let mut dh = prepared
            .table
            .mul_base_clamped(*seed.expose())
            .to_montgomery()
            .to_bytes();
        let dh_secret = SecretBytes::new(&mut dh);
        if zentalk_crypto::hash::ct_eq(dh_secret.expose(), &[0u8; 32]) {
            return Err(OnionError::InvalidRelayKey { node: *node });
        }
        let ct = ephemeral.public_key().to_bytes();
        let found = ciphertext.len();
        let out = ciphertext.get_mut(..32).ok_or(OnionError::InvalidLength {
            what: "KEM ciphertext buffer",
            expected: 32,
            found,
        })?;
        out.copy_from_slice(&ct);
        Ok(bind(dh_secret.expose(), &ct, prepared.public.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{RngCore, SeedableRng};

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
    fn edwards_path_equals_the_ladder_for_every_kind_of_point() {
        let mut rng = ChaCha20Rng::seed_from_u64(77);
        for i in 0..200u32 {
            let a = X25519Secret::generate(&mut rng);
            // Honest keys, and arbitrary 32-byte strings (about half are on the twist).
            let peer = if i % 2 == 0 {
                X25519Secret::generate(&mut rng).public_key()
            } else {
                let mut b = [0u8; 32];
                rng.fill_bytes(&mut b);
                X25519PublicKey::from_bytes(b)
            };
            let scalar = a.to_secret_bytes();
            let fast = x25519(scalar.expose(), peer.as_bytes(), &a, &peer);
            let ladder = a.diffie_hellman(&peer).ok();
            assert_eq!(
                fast.as_ref().map(|s| *s.expose()),
                ladder.as_ref().map(|s| *s.expose()),
                "peer {peer:?}"
            );
        }
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
