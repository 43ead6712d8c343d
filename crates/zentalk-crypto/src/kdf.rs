//! HKDF-SHA256 helpers (RFC 5869).
//!
//! - [`hkdf_sha256`] / [`hkdf_sha256_array`]: extract-and-expand into a buffer of any length;
//!   they fail only for an output longer than [`HKDF_SHA256_MAX_LEN`].
//! - [`hkdf_sha256_fixed`]: the same into an array whose length is checked when the program is
//!   compiled, so it has no error path at all (a length over the limit does not compile).
//! - [`HkdfSha256Salt`]: a salt keyed once, for a salt that many derivations share (the Double
//!   Ratchet's message keys all use the same zero salt); [`hkdf_sha256_expand`] and
//!   [`hkdf_sha256_expand_fixed`]: HKDF-Expand alone from a pseudorandom key.
//!
//! The extract step is HMAC-SHA256(salt, IKM) ([`crate::hash::KeyedHmacSha256`]); the expand
//! step of the infallible forms is RFC 5869 section 2.3's loop over that HMAC,
//! `T(i) = HMAC(PRK, T(i-1) || info || i)`, written here so that a compile-time length needs no
//! error handling. Both are checked against RFC 5869 appendix A and against the `hkdf` crate
//! for every length up to the limit.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::hash::KeyedHmacSha256;

/// Largest HKDF-SHA256 output: 255 blocks of 32 bytes (RFC 5869 section 2.3).
pub const HKDF_SHA256_MAX_LEN: usize = 255 * 32;

/// The salt RFC 5869 uses when none is given: 32 zero bytes.
const ZERO_SALT: [u8; 32] = [0u8; 32];

/// HKDF-SHA256 extract-and-expand into `out`. `salt = None` means a string of 32 zero bytes,
/// as RFC 5869 specifies. Fails only if `out` is longer than [`HKDF_SHA256_MAX_LEN`] bytes.
pub fn hkdf_sha256(
    salt: Option<&[u8]>,
    ikm: &[u8],
    info: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    Hkdf::<Sha256>::new(salt, ikm)
        .expand(info, out)
        .map_err(|_| CryptoError::KdfLength(out.len()))
}

/// HKDF-SHA256 into a fixed-size array. `N` must be at most 8160.
pub fn hkdf_sha256_array<const N: usize>(
    salt: Option<&[u8]>,
    ikm: &[u8],
    info: &[u8],
) -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    hkdf_sha256(salt, ikm, info, &mut out)?;
    Ok(out)
}

/// HKDF-SHA256 extract-and-expand into an `N`-byte array, zeroized on drop. Infallible: `N`
/// above [`HKDF_SHA256_MAX_LEN`] is a compile-time error. Same output as [`hkdf_sha256`].
pub fn hkdf_sha256_fixed<const N: usize>(
    salt: Option<&[u8]>,
    ikm: &[u8],
    info: &[u8],
) -> Zeroizing<[u8; N]> {
    HkdfSha256Salt::new(salt).derive_fixed(ikm, info)
}

/// HKDF-Expand (RFC 5869 section 2.3) from a 32-byte pseudorandom key into `out`. Fails only
/// if `out` is longer than [`HKDF_SHA256_MAX_LEN`] bytes.
pub fn hkdf_sha256_expand(prk: &[u8; 32], info: &[u8], out: &mut [u8]) -> Result<(), CryptoError> {
    if out.len() > HKDF_SHA256_MAX_LEN {
        return Err(CryptoError::KdfLength(out.len()));
    }
    expand(&KeyedHmacSha256::new(prk), info, out);
    Ok(())
}

/// HKDF-Expand from a 32-byte pseudorandom key into an `N`-byte array, zeroized on drop.
/// Infallible: `N` above [`HKDF_SHA256_MAX_LEN`] is a compile-time error.
pub fn hkdf_sha256_expand_fixed<const N: usize>(prk: &[u8; 32], info: &[u8]) -> Zeroizing<[u8; N]> {
    const {
        assert!(
            N <= HKDF_SHA256_MAX_LEN,
            "HKDF-SHA256 gives at most 8160 bytes"
        )
    };
    let mut out = Zeroizing::new([0u8; N]);
    expand(&KeyedHmacSha256::new(prk), info, out.as_mut_slice());
    out
}

/// RFC 5869 section 2.3. The caller has checked `out.len() <= HKDF_SHA256_MAX_LEN`, so the
/// counter 1..=255 covers every block.
fn expand(prk: &KeyedHmacSha256, info: &[u8], out: &mut [u8]) {
    let mut previous = Zeroizing::new([0u8; 32]);
    let mut previous_len = 0;
    for (counter, block) in (1u8..=255).zip(out.chunks_mut(32)) {
        let t = Zeroizing::new(prk.mac_parts(&[&previous[..previous_len], info, &[counter]]));
        block.copy_from_slice(&t[..block.len()]);
        *previous = *t;
        previous_len = 32;
    }
}

/// An HKDF-SHA256 salt keyed once (HKDF-Extract is HMAC keyed with the salt), for a salt that
/// many derivations share. The derivations are those of [`hkdf_sha256`] with the same salt.
///
/// Build it only from a public salt (a constant, a zero string): its state is not zeroized on
/// drop (see [`KeyedHmacSha256`]).
#[derive(Clone, Debug)]
pub struct HkdfSha256Salt(KeyedHmacSha256);

impl HkdfSha256Salt {
    /// Keys the extract step with `salt`; `None` means 32 zero bytes, as RFC 5869 specifies.
    pub fn new(salt: Option<&[u8]>) -> Self {
        Self(KeyedHmacSha256::new(salt.unwrap_or(&ZERO_SALT)))
    }

    /// HKDF-Extract: the pseudorandom key HMAC-SHA256(salt, `ikm`), zeroized on drop.
    pub fn extract(&self, ikm: &[u8]) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.mac(ikm))
    }

    /// Extract-and-expand into an `N`-byte array, zeroized on drop. Infallible: `N` above
    /// [`HKDF_SHA256_MAX_LEN`] is a compile-time error.
    pub fn derive_fixed<const N: usize>(&self, ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; N]> {
        hkdf_sha256_expand_fixed(&self.extract(ikm), info)
    }

    /// Extract-and-expand into `out`. Fails only if `out` is longer than
    /// [`HKDF_SHA256_MAX_LEN`] bytes.
    pub fn derive(&self, ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), CryptoError> {
        hkdf_sha256_expand(&self.extract(ikm), info, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_long_output_is_an_error() {
        let mut out = vec![0u8; HKDF_SHA256_MAX_LEN + 1];
        assert_eq!(
            hkdf_sha256(None, b"ikm", b"", &mut out),
            Err(CryptoError::KdfLength(255 * 32 + 1))
        );
        assert_eq!(
            hkdf_sha256_expand(&[7; 32], b"", &mut out),
            Err(CryptoError::KdfLength(255 * 32 + 1))
        );
        assert_eq!(
            HkdfSha256Salt::new(None).derive(b"ikm", b"", &mut out),
            Err(CryptoError::KdfLength(255 * 32 + 1))
        );
    }

    /// Every length from 0 to the limit, with and without a salt: the expand loop written here
    /// equals the `hkdf` crate byte for byte.
    #[test]
    fn every_length_matches_the_hkdf_crate() {
        let mut reference = vec![0u8; HKDF_SHA256_MAX_LEN];
        let mut ours = vec![0u8; HKDF_SHA256_MAX_LEN];
        for salt in [None, Some(&b"salt"[..]), Some(&[0u8; 32][..])] {
            let keyed = HkdfSha256Salt::new(salt);
            for len in (0..=200).chain([1000, 8159, HKDF_SHA256_MAX_LEN]) {
                hkdf_sha256(salt, b"input key", b"info", &mut reference[..len]).unwrap();
                keyed
                    .derive(b"input key", b"info", &mut ours[..len])
                    .unwrap();
                assert_eq!(ours[..len], reference[..len], "salt {salt:?}, length {len}");
            }
        }
        let fixed: Zeroizing<[u8; HKDF_SHA256_MAX_LEN]> =
            hkdf_sha256_fixed(Some(b"salt"), b"input key", b"info");
        hkdf_sha256(Some(b"salt"), b"input key", b"info", &mut reference).unwrap();
        assert_eq!(fixed[..], reference[..]);
        let short: Zeroizing<[u8; 44]> = hkdf_sha256_fixed(None, b"ikm", b"x");
        assert_eq!(
            short[..],
            hkdf_sha256_array::<44>(None, b"ikm", b"x").unwrap()[..]
        );
    }

    #[test]
    fn extract_is_hmac_keyed_with_the_salt() {
        let prk = HkdfSha256Salt::new(Some(b"salt")).extract(b"ikm");
        assert_eq!(*prk, crate::hash::hmac_sha256(b"salt", b"ikm"));
        let zero = HkdfSha256Salt::new(None).extract(b"ikm");
        assert_eq!(*zero, crate::hash::hmac_sha256(&[0u8; 32], b"ikm"));
        // An empty salt is padded with zeros by HMAC, so it equals the absent salt.
        assert_eq!(*HkdfSha256Salt::new(Some(b"")).extract(b"ikm"), *zero);
        let mut out = [0u8; 50];
        hkdf_sha256_expand(&prk, b"info", &mut out).unwrap();
        let fixed: Zeroizing<[u8; 50]> = hkdf_sha256_expand_fixed(&prk, b"info");
        assert_eq!(out, *fixed);
    }
}
