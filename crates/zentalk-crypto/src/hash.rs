//! Hashing and MAC helpers (BLAKE2b-256, HMAC-SHA256).
//!
//! Nothing here can fail: HMAC is defined for keys of any length (RFC 2104 section 2: a key
//! longer than the 64-byte block is hashed first, a shorter one is padded with zeros), so
//! [`KeyedHmacSha256::new`] builds that 64-byte block itself and keys HMAC through the
//! fixed-size [`KeyInit::new`] constructor, which has no error path at all. There is no
//! fallback output anywhere in this module.

use core::fmt;

use blake2::{Blake2b, Digest, digest::consts::U32};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

type Blake2b256 = Blake2b<U32>;
type HmacSha256 = Hmac<Sha256>;

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

/// HMAC-SHA256 (RFC 2104) of `data` under `key`. Keys of every length are accepted.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    KeyedHmacSha256::new(key).finish(&[data])
}

/// HMAC-SHA256 under `key` of the concatenation of `parts`.
pub fn hmac_sha256_parts(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    KeyedHmacSha256::new(key).finish(parts)
}

/// An HMAC-SHA256 key schedule computed once, for a key that MACs several messages.
///
/// Keying HMAC costs two SHA-256 compressions (the inner and outer padded key blocks); a
/// `KeyedHmacSha256` pays them once and every [`KeyedHmacSha256::mac`] starts from a copy of
/// that state. Outputs are exactly those of [`hmac_sha256`] under the same key (tested against
/// RFC 4231). Used for the Double Ratchet chain step (one key, inputs 0x01 and 0x02), for an
/// HKDF salt reused for many extractions ([`crate::kdf::HkdfSha256Salt`]) and for HKDF-Expand.
///
/// The state is derived from the key, so treat it as secret: `Debug` is redacted. It lives on
/// the stack and is not zeroized on drop (RustCrypto's `hmac` 0.12 state offers no
/// zeroization); keep it short-lived, or only build it from a public key such as a constant
/// salt.
#[derive(Clone)]
pub struct KeyedHmacSha256(HmacSha256);

impl KeyedHmacSha256 {
    /// Keys HMAC-SHA256 with `key`, of any length (RFC 2104: hashed with SHA-256 if longer
    /// than 64 bytes, then padded with zeros to 64 bytes).
    pub fn new(key: &[u8]) -> Self {
        // The fixed-size key HMAC's `KeyInit::new` takes: exactly one SHA-256 block (64 bytes).
        let mut block = hmac::digest::Key::<HmacSha256>::default();
        if let Some(prefix) = block.get_mut(..key.len()) {
            prefix.copy_from_slice(key);
        } else {
            let mut hashed: [u8; 32] = Sha256::digest(key).into();
            for (b, h) in block.iter_mut().zip(hashed.iter()) {
                *b = *h;
            }
            hashed.zeroize();
        }
        let mac = <HmacSha256 as KeyInit>::new(&block);
        block.as_mut_slice().zeroize();
        Self(mac)
    }

    /// HMAC-SHA256 of `data` under this key.
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        self.clone().finish(&[data])
    }

    /// HMAC-SHA256 under this key of the concatenation of `parts`.
    pub fn mac_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.clone().finish(parts)
    }

    fn finish(mut self, parts: &[&[u8]]) -> [u8; 32] {
        for p in parts {
            self.0.update(p);
        }
        self.0.finalize().into_bytes().into()
    }
}

impl fmt::Debug for KeyedHmacSha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyedHmacSha256([REDACTED])")
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
        assert_eq!(
            hmac_sha256_parts(b"k", &[b"ab", b"", b"c"]),
            hmac_sha256(b"k", b"abc")
        );
        let keyed = KeyedHmacSha256::new(b"k");
        assert_eq!(keyed.mac_parts(&[b"a", b"bc"]), keyed.mac(b"abc"));
    }

    /// Every key length around the block boundary (63, 64, 65: padded, exact, hashed) and the
    /// empty key give the same output as the `hmac` crate's own slice constructor.
    #[test]
    fn every_key_length_matches_the_hmac_crate() {
        for len in 0..=130usize {
            let key: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let mut reference = <HmacSha256 as Mac>::new_from_slice(&key).unwrap();
            reference.update(b"message");
            let expected: [u8; 32] = reference.finalize().into_bytes().into();
            assert_eq!(hmac_sha256(&key, b"message"), expected, "key length {len}");
            let keyed = KeyedHmacSha256::new(&key);
            assert_eq!(keyed.mac(b"message"), expected, "key length {len}");
            // Reusable: the state is copied, not consumed.
            assert_eq!(keyed.mac(b"message"), expected, "key length {len}");
        }
    }

    #[test]
    fn debug_is_redacted() {
        let keyed = KeyedHmacSha256::new(&[0xab; 32]);
        let shown = format!("{keyed:?}");
        assert_eq!(shown, "KeyedHmacSha256([REDACTED])");
        assert!(!shown.to_lowercase().contains("abab"));
    }
}
