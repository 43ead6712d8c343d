use core::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::{Address, CryptoError, X25519PublicKey, X25519Secret};

/// Length of an Ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// An Ed25519 identity key pair (users, relays and DHT nodes all have one).
///
/// The secret is boxed and zeroized on drop; `Debug` prints only the public key.
pub struct IdentityKeyPair {
    signing: Box<SigningKey>,
}

impl IdentityKeyPair {
    /// Generates a fresh identity from a cryptographic RNG.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// Imports an identity from its 32-byte Ed25519 seed (migration, interop tests).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            signing: Box::new(SigningKey::from_bytes(seed)),
        }
    }

    /// Exports the 32-byte seed, for encrypted storage only.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The public half.
    pub fn public_key(&self) -> IdentityPublicKey {
        IdentityPublicKey(self.signing.verifying_key())
    }

    /// Signs `message` (Ed25519, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }

    /// The X25519 form of this identity for X3DH: the clamped first half of SHA-512(seed),
    /// which is the scalar Ed25519 itself signs with. Its public key equals
    /// [`IdentityPublicKey::to_x25519`] (the birational map to Montgomery form).
    pub fn to_x25519(&self) -> X25519Secret {
        let mut scalar = self.signing.to_scalar_bytes();
        X25519Secret::from_bytes_mut(&mut scalar)
    }

    /// An explicit copy of the key pair.
    pub fn duplicate(&self) -> Self {
        Self::from_seed(&self.seed())
    }
}

impl fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.public_key())
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// An Ed25519 identity public key. Parsing checks that the bytes are a valid point.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityPublicKey(VerifyingKey);

impl IdentityPublicKey {
    /// Parses 32 bytes. Fails on bytes that are not a valid compressed Edwards point, and on
    /// small-order ("weak") keys, which could make signatures verify for many messages.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| CryptoError::InvalidPublicKey)?;
        if key.is_weak() {
            return Err(CryptoError::InvalidPublicKey);
        }
        Ok(Self(key))
    }

    /// Parses a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: &[u8; 32] = bytes.try_into().map_err(|_| CryptoError::InvalidLength {
            what: "identity public key",
            expected: 32,
            found: bytes.len(),
        })?;
        Self::from_bytes(arr)
    }

    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Borrows the raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Verifies an Ed25519 signature with the strict rules (no malleable signatures).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), CryptoError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| CryptoError::BadSignature)
    }

    /// The X25519 public key of this identity (Edwards to Montgomery birational map).
    pub fn to_x25519(&self) -> X25519PublicKey {
        X25519PublicKey::from_bytes(self.0.to_montgomery().to_bytes())
    }

    /// The user's address: BLAKE2b-256 of this key.
    pub fn address(&self) -> Address {
        Address::of(self)
    }
}

impl fmt::Debug for IdentityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IdentityPublicKey({})",
            data_encoding::HEXLOWER.encode(self.as_bytes())
        )
    }
}

/// An Ed25519 signature (64 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; SIGNATURE_LEN]);

impl Signature {
    /// Parses a slice of exactly 64 bytes (the signature is checked only by `verify`).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; SIGNATURE_LEN] =
            bytes.try_into().map_err(|_| CryptoError::InvalidLength {
                what: "signature",
                expected: SIGNATURE_LEN,
                found: bytes.len(),
            })?;
        Ok(Self(arr))
    }

    /// The raw 64 bytes.
    pub fn to_bytes(&self) -> [u8; SIGNATURE_LEN] {
        self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", data_encoding::HEXLOWER.encode(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn sign_verify_and_reject_tampering() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let id = IdentityKeyPair::generate(&mut rng);
        let sig = id.sign(b"msg");
        assert_eq!(id.public_key().verify(b"msg", &sig), Ok(()));
        assert_eq!(
            id.public_key().verify(b"msh", &sig),
            Err(CryptoError::BadSignature)
        );
        let mut bad = sig;
        bad.0[3] ^= 1;
        assert_eq!(
            id.public_key().verify(b"msg", &bad),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn x25519_form_matches_birational_map() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let id = IdentityKeyPair::generate(&mut rng);
        assert_eq!(id.to_x25519().public_key(), id.public_key().to_x25519());
        // And a DH with it agrees with a DH against the mapped public key.
        let other = X25519Secret::generate(&mut rng);
        let a = id.to_x25519().diffie_hellman(&other.public_key()).unwrap();
        let b = other.diffie_hellman(&id.public_key().to_x25519()).unwrap();
        assert_eq!(a.expose(), b.expose());
    }

    #[test]
    fn seed_round_trip() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let id = IdentityKeyPair::generate(&mut rng);
        let again = IdentityKeyPair::from_seed(&id.seed());
        assert_eq!(id.public_key(), again.public_key());
    }

    #[test]
    fn rejects_invalid_and_weak_public_keys() {
        // The identity point (small order) is rejected.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            IdentityPublicKey::from_bytes(&identity),
            Err(CryptoError::InvalidPublicKey)
        );
        assert!(matches!(
            IdentityPublicKey::from_slice(&[0u8; 31]),
            Err(CryptoError::InvalidLength {
                expected: 32,
                found: 31,
                ..
            })
        ));
    }
}
