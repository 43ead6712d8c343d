//! Known-answer tests from public vectors kept as data files in `tests/vectors/`:
//! BLAKE2b (RFC 7693 and published BLAKE2b-256 values), HKDF-SHA256 (RFC 5869 test cases
//! 1-3) and HMAC-SHA256 (RFC 4231 test cases 1-7).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use blake2::{Blake2b512, Digest};
use serde::Deserialize;
use zentalk_crypto::{hash, kdf};

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

#[derive(Deserialize)]
struct Blake2bFile {
    cases: Vec<Blake2bCase>,
}

#[derive(Deserialize)]
struct Blake2bCase {
    input: String,
    digest: String,
    digest_len: usize,
}

#[test]
fn blake2b() {
    let file: Blake2bFile = serde_json::from_str(include_str!("vectors/blake2b.json")).unwrap();
    let (mut n256, mut n512) = (0, 0);
    for c in file.cases {
        let input = h(&c.input);
        match c.digest_len {
            32 => {
                assert_eq!(hex::encode(hash::blake2b_256(&input)), c.digest);
                // The multi-part form agrees, whatever the split.
                for cut in 0..=input.len() {
                    let (a, b) = input.split_at(cut);
                    assert_eq!(hex::encode(hash::blake2b_256_parts(&[a, b])), c.digest);
                }
                n256 += 1;
            }
            64 => {
                assert_eq!(hex::encode(Blake2b512::digest(&input)), c.digest);
                n512 += 1;
            }
            other => panic!("unexpected digest length {other}"),
        }
    }
    assert_eq!((n256, n512), (3, 1));
}

#[derive(Deserialize)]
struct HkdfFile {
    cases: Vec<HkdfCase>,
}

#[derive(Deserialize)]
struct HkdfCase {
    name: String,
    ikm: String,
    salt: String,
    info: String,
    length: usize,
    prk: String,
    okm: String,
}

#[test]
fn hkdf_sha256_rfc5869() {
    let file: HkdfFile =
        serde_json::from_str(include_str!("vectors/hkdf_sha256_rfc5869.json")).unwrap();
    assert_eq!(file.cases.len(), 3);
    for c in file.cases {
        let (ikm, salt, info) = (h(&c.ikm), h(&c.salt), h(&c.info));
        let mut okm = vec![0u8; c.length];
        kdf::hkdf_sha256(Some(&salt), &ikm, &info, &mut okm).unwrap();
        assert_eq!(hex::encode(&okm), c.okm, "{}", c.name);
        // PRK = HMAC-SHA256(salt, IKM) (RFC 5869 section 2.2).
        assert_eq!(
            hex::encode(hash::hmac_sha256(&salt, &ikm)),
            c.prk,
            "{}",
            c.name
        );
        // The salt keyed once, the separate extract and expand steps.
        let keyed = kdf::HkdfSha256Salt::new(Some(&salt));
        let prk = keyed.extract(&ikm);
        assert_eq!(hex::encode(*prk), c.prk, "{}", c.name);
        let mut again = vec![0u8; c.length];
        keyed.derive(&ikm, &info, &mut again).unwrap();
        assert_eq!(hex::encode(&again), c.okm, "{}", c.name);
        let mut expanded = vec![0u8; c.length];
        kdf::hkdf_sha256_expand(&prk, &info, &mut expanded).unwrap();
        assert_eq!(hex::encode(&expanded), c.okm, "{}", c.name);
        if salt.is_empty() {
            // An absent salt is HashLen zeros, which HMAC treats like an empty key.
            let mut again = vec![0u8; c.length];
            kdf::hkdf_sha256(None, &ikm, &info, &mut again).unwrap();
            assert_eq!(again, okm);
        }
    }
    // The fixed-size helper agrees with the slice helper (test case 1, first 32 bytes).
    let out: [u8; 32] = kdf::hkdf_sha256_array(
        Some(&h("000102030405060708090a0b0c")),
        &[0x0b; 22],
        &h("f0f1f2f3f4f5f6f7f8f9"),
    )
    .unwrap();
    assert_eq!(
        hex::encode(out),
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
    );
    // And so does the infallible compile-time-length form (all 42 bytes of test case 1).
    let fixed = kdf::hkdf_sha256_fixed::<42>(
        Some(&h("000102030405060708090a0b0c")),
        &[0x0b; 22],
        &h("f0f1f2f3f4f5f6f7f8f9"),
    );
    assert_eq!(
        hex::encode(*fixed),
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    );
}

#[derive(Deserialize)]
struct HmacFile {
    cases: Vec<HmacCase>,
}

#[derive(Deserialize)]
struct HmacCase {
    name: String,
    key: String,
    data: String,
    mac: String,
}

#[test]
fn hmac_sha256_rfc4231() {
    let file: HmacFile =
        serde_json::from_str(include_str!("vectors/hmac_sha256_rfc4231.json")).unwrap();
    assert_eq!(file.cases.len(), 7);
    for c in file.cases {
        let mac = hex::encode(hash::hmac_sha256(&h(&c.key), &h(&c.data)));
        // Test case 5 publishes a 128-bit truncation: compare that prefix.
        assert!(c.mac.len() == 64 || c.mac.len() == 32, "{}", c.name);
        assert_eq!(&mac[..c.mac.len()], c.mac, "{}", c.name);
        // The keyed-once form (cases 6 and 7 have 131-byte keys: the hashed-key path).
        let data = h(&c.data);
        let keyed = hash::KeyedHmacSha256::new(&h(&c.key));
        assert_eq!(hex::encode(keyed.mac(&data)), mac, "{}", c.name);
        let (a, b) = data.split_at(data.len() / 2);
        assert_eq!(hex::encode(keyed.mac_parts(&[a, b])), mac, "{}", c.name);
    }
}
