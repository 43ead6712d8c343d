//! Hashing and MAC helpers (BLAKE2b-256, HMAC-SHA256).

use blake2::{Blake2b, Digest, digest::consts::U32};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type Blake2b256 = Blake2b<U32>;

/// BLAKE2b with a 32-byte output (RFC 7693), unkeyed.
pub fn blake2b_256(data: &[u8]) -> [u8; 32] {
    Blake2b256::digest(data).into()
}

/// BLAKE2b-256 over several parts, as if concatenated.
pub fn blake2b_256_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2b256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-SHA256 (RFC 2104) of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; the fallback is
    // unreachable but keeps this function free of panics.
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0u8; 32],
    }
}

/// Constant-time equality of two byte strings (lengths are not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn parts_equal_concatenation() {
        assert_eq!(blake2b_256_parts(&[b"ab", b"c"]), blake2b_256(b"abc"));
    }
}
