//! The exact key derivations of the construction (see `docs/protocol/zentalk-ratchet.md`).

use std::sync::LazyLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zentalk_crypto::hash::hmac_sha256;
use zentalk_crypto::kdf::hkdf_sha256;
use zentalk_crypto::{AeadKey, NONCE_LEN, SecretBytes};
use zeroize::Zeroizing;

/// HKDF info of the X3DH shared secret.
pub(crate) const INFO_X3DH: &[u8] = b"ZentalkX3DH";
/// HKDF info of the root chain.
pub(crate) const INFO_ROOT: &[u8] = b"ZentalkRatchetRoot";
/// HKDF info of the root chain in header-encrypted sessions (96 bytes: root, chain, next header key).
pub(crate) const INFO_ROOT_HE: &[u8] = b"ZentalkRatchetRootHE";
/// HKDF info of the initial header keys, derived from SK (64 bytes: HKa, NHKb).
pub(crate) const INFO_HEADER_KEYS: &[u8] = b"ZentalkHeaderKeys";
/// HKDF info of message key expansion (44 bytes: AEAD key, nonce).
pub(crate) const INFO_MESSAGE: &[u8] = b"ZentalkMessageKeys";
/// HKDF info of group (sender-key) message key expansion.
pub(crate) const INFO_GROUP_MESSAGE: &[u8] = b"ZentalkGroupMessageKeys";

pub(crate) const ZERO_SALT: [u8; 32] = [0u8; 32];

/// A 32-byte secret (root, chain, message or header key).
pub(crate) type Key32 = SecretBytes<32>;

fn key_from(bytes: &mut [u8]) -> Key32 {
    let mut k = Key32::zeroed();
    k.expose_mut().copy_from_slice(&bytes[..32]);
    zeroize::Zeroize::zeroize(bytes);
    k
}

/// KDF_RK: HKDF-SHA256(salt = rk, IKM = dh_out, info = "ZentalkRatchetRoot", 64) -> (rk, ck).
pub(crate) fn kdf_rk(rk: &Key32, dh_out: &[u8; 32]) -> (Key32, Key32) {
    let mut out = Zeroizing::new([0u8; 64]);
    // 64 bytes is always a valid HKDF-SHA256 output length.
    let _ = hkdf_sha256(Some(rk.expose()), dh_out, INFO_ROOT, out.as_mut());
    let (a, b) = out.split_at_mut(32);
    (key_from(a), key_from(b))
}

/// KDF_RK_HE: HKDF-SHA256(salt = rk, IKM = dh_out, info = "ZentalkRatchetRootHE", 96)
/// -> (rk, ck, next header key).
pub(crate) fn kdf_rk_he(rk: &Key32, dh_out: &[u8; 32]) -> (Key32, Key32, Key32) {
    let mut out = Zeroizing::new([0u8; 96]);
    let _ = hkdf_sha256(Some(rk.expose()), dh_out, INFO_ROOT_HE, out.as_mut());
    let (a, rest) = out.split_at_mut(32);
    let (b, c) = rest.split_at_mut(32);
    (key_from(a), key_from(b), key_from(c))
}

/// Initial header keys of a header-encrypted session:
/// HKDF-SHA256(salt = 32 zero bytes, IKM = SK, info = "ZentalkHeaderKeys", 64) -> (HKa, NHKb).
pub(crate) fn header_keys(sk: &Key32) -> (Key32, Key32) {
    let mut out = Zeroizing::new([0u8; 64]);
    let _ = hkdf_sha256(
        Some(&ZERO_SALT),
        sk.expose(),
        INFO_HEADER_KEYS,
        out.as_mut(),
    );
    let (a, b) = out.split_at_mut(32);
    (key_from(a), key_from(b))
}

type HmacSha256 = Hmac<Sha256>;

/// KDF_CK: message key = HMAC-SHA256(ck, 0x01), next chain key = HMAC-SHA256(ck, 0x02).
/// Returns (message key, next chain key) on the stack, zeroized on drop. Both MACs share one
/// key schedule (the same outputs as two one-shot HMACs, two SHA-256 compressions fewer).
pub(crate) fn kdf_ck(ck: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let Ok(keyed) = <HmacSha256 as Mac>::new_from_slice(ck) else {
        // Unreachable: HMAC takes keys of any length.
        return (
            Zeroizing::new(hmac_sha256(ck, &[0x01])),
            Zeroizing::new(hmac_sha256(ck, &[0x02])),
        );
    };
    let mut m1 = keyed.clone();
    m1.update(&[0x01]);
    let mut m2 = keyed;
    m2.update(&[0x02]);
    (
        Zeroizing::new(m1.finalize().into_bytes().into()),
        Zeroizing::new(m2.finalize().into_bytes().into()),
    )
}

/// HMAC-SHA256 keyed with 32 zero bytes (the HKDF-Extract salt of message keys), keyed once.
static ZERO_SALT_HMAC: LazyLock<Option<HmacSha256>> =
    LazyLock::new(|| <HmacSha256 as Mac>::new_from_slice(&ZERO_SALT).ok());

/// ENCRYPT's key schedule: HKDF-SHA256(salt = 32 zero bytes, IKM = mk, info, 44)
/// -> AEAD key (32) || nonce (12).
pub(crate) fn message_keys(mk: &[u8; 32], info: &[u8]) -> (AeadKey, [u8; NONCE_LEN]) {
    let mut out = Zeroizing::new([0u8; 44]);
    match ZERO_SALT_HMAC.as_ref() {
        Some(extract) => {
            // HKDF-Extract with the cached zero-salt key schedule, then HKDF-Expand.
            let mut mac = extract.clone();
            mac.update(mk);
            let prk = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
            if let Ok(hk) = hkdf::Hkdf::<Sha256>::from_prk(prk.as_ref()) {
                let _ = hk.expand(info, out.as_mut());
            }
        }
        None => {
            let _ = hkdf_sha256(Some(&ZERO_SALT), mk, info, out.as_mut());
        }
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&out[32..]);
    let key = key_from(&mut out[..32]);
    (key, nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_paths_equal_the_one_shot_definitions() {
        for seed in 0u8..20 {
            let ck = [seed.wrapping_mul(37); 32];
            let (mk, next) = kdf_ck(&ck);
            assert_eq!(*mk, hmac_sha256(&ck, &[0x01]));
            assert_eq!(*next, hmac_sha256(&ck, &[0x02]));
            let mut expect = [0u8; 44];
            hkdf_sha256(Some(&[0u8; 32]), mk.as_ref(), INFO_MESSAGE, &mut expect).unwrap();
            let (key, nonce) = message_keys(&mk, INFO_MESSAGE);
            assert_eq!(key.expose()[..], expect[..32]);
            assert_eq!(nonce[..], expect[32..]);
        }
    }
}
