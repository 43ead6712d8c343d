//! Ed25519 key blinding, the construction of Tor's v3 onion-service descriptors
//! (rend-spec-v3, appendix A.2): a public blinding factor `h` turns an identity key `A` into
//! `A' = h·A`, and the holder of the secret scalar `a` signs for `A'` with `a' = h·a`.
//! Signatures under `A'` are ordinary Ed25519 signatures ([`IdentityPublicKey::verify`]);
//! without `A` and `h`, `A'` cannot be linked to `A` or to the same key blinded by another
//! factor.
//!
//! Signing goes through ed25519-dalek's `hazmat::raw_sign` with an expanded key whose scalar is
//! `h·a` and whose nonce prefix is `SHA-512(nonce_domain || prefix || h)[..32]`, so a blinded
//! signature never reuses the identity's own deterministic nonces.

use core::fmt;

use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign};
use sha2::{Digest, Sha512};

use crate::{CryptoError, IdentityKeyPair, IdentityPublicKey, Signature};

/// A public blinding factor: a scalar derived by hashing (never secret, but never zero in
/// practice: a zero factor is refused where it would matter, by [`IdentityPublicKey::blind`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BlindingFactor(Scalar);

impl BlindingFactor {
    /// `h = SHA-512(domain || parts...) mod l`.
    pub fn derive(domain: &[u8], parts: &[&[u8]]) -> Self {
        let mut hasher = Sha512::new();
        hasher.update(domain);
        for p in parts {
            hasher.update(p);
        }
        let wide: [u8; 64] = hasher.finalize().into();
        Self(Scalar::from_bytes_mod_order_wide(&wide))
    }

    /// The canonical 32-byte little-endian encoding of the scalar.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
}

impl fmt::Debug for BlindingFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BlindingFactor({})",
            data_encoding::HEXLOWER.encode(self.0.as_bytes())
        )
    }
}

impl IdentityPublicKey {
    /// The blinded public key `h·A`. Fails if the result is of small order (which only a zero
    /// or pathological factor could produce).
    pub fn blind(&self, factor: &BlindingFactor) -> Result<IdentityPublicKey, CryptoError> {
        let point = CompressedEdwardsY(self.to_bytes())
            .decompress()
            .ok_or(CryptoError::InvalidPublicKey)?;
        let blinded = factor.0 * point;
        if blinded.is_small_order() {
            return Err(CryptoError::InvalidPublicKey);
        }
        IdentityPublicKey::from_bytes(&blinded.compress().to_bytes())
    }
}

/// A blinded signing key: boxed, zeroized on drop (ed25519-dalek's `ExpandedSecretKey`
/// zeroizes itself), redacted in `Debug`.
pub struct BlindedKeyPair {
    secret: Box<ExpandedSecretKey>,
    public: IdentityPublicKey,
    verifying: VerifyingKey,
}

impl IdentityKeyPair {
    /// Blinds this identity with `factor`. `nonce_domain` separates the deterministic signing
    /// nonces of the blinded key from those of the identity itself and of other uses.
    pub fn blind(
        &self,
        factor: &BlindingFactor,
        nonce_domain: &[u8],
    ) -> Result<BlindedKeyPair, CryptoError> {
        let public = self.public_key().blind(factor)?;
        let verifying = VerifyingKey::from_bytes(public.as_bytes())
            .map_err(|_| CryptoError::InvalidPublicKey)?;
        let expanded = ExpandedSecretKey::from(&*self.seed());
        let mut prefix_hash = Sha512::new();
        prefix_hash.update(nonce_domain);
        prefix_hash.update(expanded.hash_prefix);
        prefix_hash.update(factor.0.as_bytes());
        let wide = zeroize::Zeroizing::new(<[u8; 64]>::from(prefix_hash.finalize()));
        let mut hash_prefix = [0u8; 32];
        hash_prefix.copy_from_slice(&wide[..32]);
        let secret = Box::new(ExpandedSecretKey {
            scalar: factor.0 * expanded.scalar,
            hash_prefix,
        });
        zeroize::Zeroize::zeroize(&mut hash_prefix);
        Ok(BlindedKeyPair {
            secret,
            public,
            verifying,
        })
    }
}

impl BlindedKeyPair {
    /// The blinded public key `h·A`.
    pub fn public_key(&self) -> IdentityPublicKey {
        self.public
    }

    /// An Ed25519 signature under the blinded key.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(raw_sign::<Sha512>(&self.secret, message, &self.verifying).to_bytes())
    }
}

impl fmt::Debug for BlindedKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlindedKeyPair")
            .field("public", &self.public)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn blinded_signatures_verify_under_the_blinded_key_only() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let id = IdentityKeyPair::generate(&mut rng);
        let factor = BlindingFactor::derive(b"test-blind", &[b"period-1"]);
        let blinded = id.blind(&factor, b"test-nonce").unwrap();
        assert_eq!(
            blinded.public_key(),
            id.public_key().blind(&factor).unwrap()
        );
        assert_ne!(blinded.public_key(), id.public_key());
        let sig = blinded.sign(b"record");
        assert_eq!(blinded.public_key().verify(b"record", &sig), Ok(()));
        assert_eq!(
            blinded.public_key().verify(b"recorD", &sig),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            id.public_key().verify(b"record", &sig),
            Err(CryptoError::BadSignature)
        );
        // Another period gives an unrelated key.
        let other = BlindingFactor::derive(b"test-blind", &[b"period-2"]);
        assert_ne!(id.public_key().blind(&other).unwrap(), blinded.public_key());
    }

    #[test]
    fn zero_factor_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(22);
        let id = IdentityKeyPair::generate(&mut rng);
        let zero = BlindingFactor(Scalar::ZERO);
        assert_eq!(
            id.public_key().blind(&zero),
            Err(CryptoError::InvalidPublicKey)
        );
        assert!(id.blind(&zero, b"n").is_err());
    }

    #[test]
    fn debug_is_redacted() {
        let mut rng = ChaCha20Rng::seed_from_u64(23);
        let id = IdentityKeyPair::generate(&mut rng);
        let factor = BlindingFactor::derive(b"d", &[]);
        let blinded = id.blind(&factor, b"n").unwrap();
        let dbg = format!("{blinded:?}");
        assert!(dbg.contains("[REDACTED]"));
        assert!(!dbg.contains(&data_encoding::HEXLOWER.encode(blinded.secret.scalar.as_bytes())));
    }
}
