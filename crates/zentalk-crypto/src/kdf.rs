//! HKDF-SHA256 helpers (RFC 5869).

use hkdf::Hkdf;
use sha2::Sha256;

use crate::CryptoError;

/// HKDF-SHA256 extract-and-expand into `out`. `salt = None` means a string of 32 zero bytes,
/// as RFC 5869 specifies. Fails only if `out` is longer than 255 * 32 bytes.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_long_output_is_an_error() {
        let mut out = vec![0u8; 255 * 32 + 1];
        assert_eq!(
            hkdf_sha256(None, b"ikm", b"", &mut out),
            Err(CryptoError::KdfLength(255 * 32 + 1))
        );
    }
}
