//! AEAD suites: AES-256-GCM (the default) and ChaCha20-Poly1305, behind one enum with a wire
//! code, so a message or a stored column can say which suite sealed it.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;

use crate::{CryptoError, SecretBytes};

/// Nonce length of both suites.
pub const NONCE_LEN: usize = 12;
/// Authentication tag length of both suites.
pub const TAG_LEN: usize = 16;

/// A 256-bit AEAD key: boxed, zeroized on drop, redacted in `Debug`.
pub type AeadKey = SecretBytes<32>;

/// The AEAD suites ZenTalk speaks. The discriminant is the wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
#[non_exhaustive]
pub enum AeadSuite {
    /// AES-256-GCM (NIST SP 800-38D): the default, hardware-accelerated on most CPUs.
    #[default]
    Aes256Gcm = 1,
    /// ChaCha20-Poly1305 (RFC 8439): constant-time without AES hardware.
    ChaCha20Poly1305 = 2,
}

impl AeadSuite {
    /// The one-byte wire code.
    pub const fn wire_code(self) -> u8 {
        self as u8
    }

    /// Parses a wire code.
    pub const fn from_wire_code(code: u8) -> Result<Self, CryptoError> {
        match code {
            1 => Ok(Self::Aes256Gcm),
            2 => Ok(Self::ChaCha20Poly1305),
            other => Err(CryptoError::UnknownSuite(other)),
        }
    }

    /// Encrypts `buffer` in place and appends the 16-byte tag.
    pub fn seal_in_place(
        self,
        key: &AeadKey,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buffer: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let res =
            match self {
                Self::Aes256Gcm => {
                    Aes256Gcm::new(key.expose().into()).encrypt_in_place(nonce.into(), aad, buffer)
                }
                Self::ChaCha20Poly1305 => ChaCha20Poly1305::new(key.expose().into())
                    .encrypt_in_place(nonce.into(), aad, buffer),
            };
        res.map_err(|_| CryptoError::AeadFailure)
    }

    /// Authenticates and decrypts `buffer` (ciphertext || tag) in place. On failure the
    /// buffer's contents are unspecified and nothing was released.
    pub fn open_in_place(
        self,
        key: &AeadKey,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buffer: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        if buffer.len() < TAG_LEN {
            return Err(CryptoError::AeadFailure);
        }
        let res =
            match self {
                Self::Aes256Gcm => {
                    Aes256Gcm::new(key.expose().into()).decrypt_in_place(nonce.into(), aad, buffer)
                }
                Self::ChaCha20Poly1305 => ChaCha20Poly1305::new(key.expose().into())
                    .decrypt_in_place(nonce.into(), aad, buffer),
            };
        res.map_err(|_| CryptoError::AeadFailure)
    }

    /// Encrypts `plaintext`, returning ciphertext || tag.
    pub fn seal(
        self,
        key: &AeadKey,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
        buf.extend_from_slice(plaintext);
        self.seal_in_place(key, nonce, aad, &mut buf)?;
        Ok(buf)
    }

    /// Authenticates and decrypts ciphertext || tag.
    pub fn open(
        self,
        key: &AeadKey,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut buf = ciphertext.to_vec();
        self.open_in_place(key, nonce, aad, &mut buf)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AeadKey {
        let mut k = [7u8; 32];
        AeadKey::new(&mut k)
    }

    #[test]
    fn both_suites_round_trip_and_detect_tampering() {
        for suite in [AeadSuite::Aes256Gcm, AeadSuite::ChaCha20Poly1305] {
            let n = [1u8; NONCE_LEN];
            let ct = suite.seal(&key(), &n, b"ad", b"hello").unwrap();
            assert_eq!(ct.len(), 5 + TAG_LEN);
            assert_eq!(suite.open(&key(), &n, b"ad", &ct).unwrap(), b"hello");
            assert_eq!(
                suite.open(&key(), &n, b"AD", &ct),
                Err(CryptoError::AeadFailure)
            );
            let mut bad = ct.clone();
            bad[0] ^= 1;
            assert_eq!(
                suite.open(&key(), &n, b"ad", &bad),
                Err(CryptoError::AeadFailure)
            );
            assert_eq!(
                suite.open(&key(), &n, b"ad", &ct[..10]),
                Err(CryptoError::AeadFailure)
            );
            assert_eq!(
                suite.open(&key(), &n, b"ad", &[]),
                Err(CryptoError::AeadFailure)
            );
        }
    }

    #[test]
    fn wire_codes() {
        for suite in [AeadSuite::Aes256Gcm, AeadSuite::ChaCha20Poly1305] {
            assert_eq!(AeadSuite::from_wire_code(suite.wire_code()), Ok(suite));
        }
        assert_eq!(
            AeadSuite::from_wire_code(0),
            Err(CryptoError::UnknownSuite(0))
        );
        assert_eq!(AeadSuite::default(), AeadSuite::Aes256Gcm);
    }

    #[test]
    fn rfc8439_chacha20poly1305_vector() {
        // RFC 8439 section 2.8.2.
        let mut k: [u8; 32] =
            hex::decode("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
                .unwrap()
                .try_into()
                .unwrap();
        let key = AeadKey::new(&mut k);
        let nonce: [u8; 12] = hex::decode("070000004041424344454647")
            .unwrap()
            .try_into()
            .unwrap();
        let aad = hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap();
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let ct = AeadSuite::ChaCha20Poly1305
            .seal(&key, &nonce, &aad, pt)
            .unwrap();
        assert_eq!(
            hex::encode(&ct[pt.len()..]),
            "1ae10b594f09e26a7e902ecbd0600691"
        );
    }
}
