//! Single-shot HPKE (RFC 9180) in Auth mode, the construction under [`crate::envelope`].
//!
//! Suite: DHKEM(X25519, HKDF-SHA256) (KEM id 0x0020), HKDF-SHA256 (KDF id 0x0001), and the
//! AEAD chosen by [`AeadSuite`]: AES-256-GCM (HPKE AEAD id 0x0002) or ChaCha20-Poly1305
//! (0x0003). Auth mode (mode 0x02) mixes a DH between the sender's static key and the
//! recipient's key into the KEM shared secret, so only the holder of the sender's static
//! X25519 secret can produce a ciphertext that opens under the sender's public key, and only
//! the recipient's secret opens it. The implementation is the `hpke` crate; this module only
//! maps our key types and errors onto it. [`seal`] and [`open`] are checked against the RFC's
//! published vectors in `tests/hpke_rfc9180.rs`.
//!
//! Single-shot means one message per key schedule (sequence number 0), so the HPKE message
//! limit can never be reached.

use hpke::{
    Deserializable, HpkeError, OpModeR, OpModeS, Serializable,
    aead::{Aead as HpkeAead, AesGcm256, ChaCha20Poly1305},
    kdf::HkdfSha256,
    kem::X25519HkdfSha256,
};
use rand_core::CryptoRngCore;

use crate::{AeadSuite, CryptoError, X25519PublicKey, X25519Secret};

/// Length of the encapsulated key `enc` (the ephemeral X25519 public key).
pub const ENC_LEN: usize = 32;
/// HPKE mode identifier of Auth mode.
pub const MODE_AUTH: u8 = 0x02;
/// HPKE KEM identifier of DHKEM(X25519, HKDF-SHA256).
pub const KEM_ID: u16 = 0x0020;
/// HPKE KDF identifier of HKDF-SHA256.
pub const KDF_ID: u16 = 0x0001;

type Kem = X25519HkdfSha256;
type KemPrivate = <Kem as hpke::Kem>::PrivateKey;
type KemPublic = <Kem as hpke::Kem>::PublicKey;

/// The HPKE AEAD identifier of a suite (RFC 9180 section 7.3).
pub const fn aead_id(suite: AeadSuite) -> u16 {
    match suite {
        AeadSuite::Aes256Gcm => <AesGcm256 as HpkeAead>::AEAD_ID,
        AeadSuite::ChaCha20Poly1305 => <ChaCha20Poly1305 as HpkeAead>::AEAD_ID,
    }
}

fn map_err(e: HpkeError) -> CryptoError {
    match e {
        HpkeError::OpenError => CryptoError::AeadFailure,
        // DHKEM refuses an all-zero DH output, i.e. a low-order public key or enc.
        HpkeError::EncapError | HpkeError::DecapError => CryptoError::LowOrderPoint,
        HpkeError::IncorrectInputLength(expected, found) => CryptoError::InvalidLength {
            what: "HPKE input",
            expected,
            found,
        },
        HpkeError::MessageLimitReached => CryptoError::Hpke("message limit reached"),
        HpkeError::SealError => CryptoError::Hpke("seal failed"),
        HpkeError::KdfOutputTooLong => CryptoError::Hpke("KDF output too long"),
        HpkeError::ValidationError => CryptoError::Hpke("validation failed"),
    }
}

fn private_key(secret: &X25519Secret) -> Result<KemPrivate, CryptoError> {
    let bytes = secret.to_secret_bytes();
    KemPrivate::from_bytes(bytes.expose()).map_err(map_err)
}

fn public_key(public: &X25519PublicKey) -> Result<KemPublic, CryptoError> {
    KemPublic::from_bytes(public.as_bytes()).map_err(map_err)
}

fn enc_bytes(enc: &<Kem as hpke::Kem>::EncappedKey) -> Result<[u8; ENC_LEN], CryptoError> {
    let bytes = enc.to_bytes();
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::InvalidLength {
            what: "HPKE enc",
            expected: ENC_LEN,
            found: bytes.len(),
        })
}

/// Seals `plaintext` from `sender` to `recipient` (HPKE `SealAuth`, RFC 9180 section 6.1).
///
/// Returns the encapsulated key and ciphertext || tag. `info` is bound into the key
/// schedule, `aad` into the AEAD; both must be given again to [`open`]. The ephemeral key is
/// the RFC's `DeriveKeyPair` of 32 bytes drawn from `rng`.
///
/// Errors: [`CryptoError::LowOrderPoint`] if `recipient` is a low-order point.
pub fn seal(
    rng: &mut impl CryptoRngCore,
    suite: AeadSuite,
    sender: &X25519Secret,
    recipient: &X25519PublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; ENC_LEN], Vec<u8>), CryptoError> {
    let mode = OpModeS::<Kem>::Auth((private_key(sender)?, public_key(&sender.public_key())?));
    let pk_r = public_key(recipient)?;
    let (enc, ct) = match suite {
        AeadSuite::Aes256Gcm => hpke::single_shot_seal::<AesGcm256, HkdfSha256, Kem, _>(
            &mode, &pk_r, info, plaintext, aad, rng,
        ),
        AeadSuite::ChaCha20Poly1305 => {
            hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem, _>(
                &mode, &pk_r, info, plaintext, aad, rng,
            )
        }
    }
    .map_err(map_err)?;
    Ok((enc_bytes(&enc)?, ct))
}

/// Opens a ciphertext sealed by [`seal`] (HPKE `OpenAuth`): `recipient` is our secret,
/// `sender` the public key we expect the message to come from.
///
/// Errors: [`CryptoError::AeadFailure`] for a wrong key, wrong sender, wrong `info` or `aad`,
/// or any tampering; [`CryptoError::LowOrderPoint`] for a low-order `enc` or sender key.
pub fn open(
    suite: AeadSuite,
    recipient: &X25519Secret,
    sender: &X25519PublicKey,
    enc: &[u8; ENC_LEN],
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mode = OpModeR::<Kem>::Auth(public_key(sender)?);
    let sk_r = private_key(recipient)?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(map_err)?;
    match suite {
        AeadSuite::Aes256Gcm => hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(
            &mode, &sk_r, &enc, info, ciphertext, aad,
        ),
        AeadSuite::ChaCha20Poly1305 => hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &mode, &sk_r, &enc, info, ciphertext, aad,
        ),
    }
    .map_err(map_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const SUITES: [AeadSuite; 2] = [AeadSuite::Aes256Gcm, AeadSuite::ChaCha20Poly1305];

    #[test]
    fn round_trip_and_authentication() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let alice = X25519Secret::generate(&mut rng);
        let bob = X25519Secret::generate(&mut rng);
        let eve = X25519Secret::generate(&mut rng);
        for suite in SUITES {
            let (enc, ct) = seal(
                &mut rng,
                suite,
                &alice,
                &bob.public_key(),
                b"info",
                b"aad",
                b"hi",
            )
            .unwrap();
            let ok = open(suite, &bob, &alice.public_key(), &enc, b"info", b"aad", &ct);
            assert_eq!(ok.unwrap(), b"hi");
            // Wrong sender key, wrong recipient, wrong info, wrong aad, wrong suite.
            for res in [
                open(suite, &bob, &eve.public_key(), &enc, b"info", b"aad", &ct),
                open(suite, &eve, &alice.public_key(), &enc, b"info", b"aad", &ct),
                open(suite, &bob, &alice.public_key(), &enc, b"infO", b"aad", &ct),
                open(suite, &bob, &alice.public_key(), &enc, b"info", b"aaD", &ct),
                open(
                    suite,
                    &bob,
                    &alice.public_key(),
                    &enc,
                    b"info",
                    b"aad",
                    &ct[1..],
                ),
            ] {
                assert_eq!(res, Err(CryptoError::AeadFailure));
            }
            let other = if suite == AeadSuite::Aes256Gcm {
                AeadSuite::ChaCha20Poly1305
            } else {
                AeadSuite::Aes256Gcm
            };
            assert_eq!(
                open(other, &bob, &alice.public_key(), &enc, b"info", b"aad", &ct),
                Err(CryptoError::AeadFailure)
            );
        }
    }

    #[test]
    fn low_order_points_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let alice = X25519Secret::generate(&mut rng);
        let bob = X25519Secret::generate(&mut rng);
        let zero = X25519PublicKey::from_bytes([0; 32]);
        assert_eq!(
            seal(
                &mut rng,
                AeadSuite::Aes256Gcm,
                &alice,
                &zero,
                b"",
                b"",
                b"x"
            ),
            Err(CryptoError::LowOrderPoint)
        );
        let (_, ct) = seal(
            &mut rng,
            AeadSuite::Aes256Gcm,
            &alice,
            &bob.public_key(),
            b"",
            b"",
            b"x",
        )
        .unwrap();
        assert_eq!(
            open(
                AeadSuite::Aes256Gcm,
                &bob,
                &alice.public_key(),
                &[0; 32],
                b"",
                b"",
                &ct
            ),
            Err(CryptoError::LowOrderPoint)
        );
    }

    #[test]
    fn ids() {
        assert_eq!(aead_id(AeadSuite::Aes256Gcm), 0x0002);
        assert_eq!(aead_id(AeadSuite::ChaCha20Poly1305), 0x0003);
        assert_eq!(<Kem as hpke::Kem>::KEM_ID, KEM_ID);
        assert_eq!(<HkdfSha256 as hpke::kdf::Kdf>::KDF_ID, KDF_ID);
    }
}
