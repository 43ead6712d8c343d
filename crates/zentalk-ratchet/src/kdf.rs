//! The exact key derivations of the construction (see `docs/protocol/zentalk-ratchet.md`).
//!
//! Only the construction's constants and how it splits outputs live here; the primitives and
//! their fast forms (an HMAC key schedule shared by the two chain-step MACs, an HKDF salt keyed
//! once) are zentalk-crypto's, and none of them has an error path: every output length below is
//! fixed at compile time.

use std::sync::LazyLock;

use zentalk_crypto::hash::KeyedHmacSha256;
use zentalk_crypto::kdf::{HkdfSha256Salt, hkdf_sha256_fixed};
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

/// The `i`-th 32-byte key of a KDF output.
fn key_at<const N: usize>(okm: &Zeroizing<[u8; N]>, i: usize) -> Key32 {
    let mut k = Key32::zeroed();
    k.expose_mut().copy_from_slice(&okm[32 * i..32 * (i + 1)]);
    k
}

/// KDF_RK: HKDF-SHA256(salt = rk, IKM = dh_out, info = "ZentalkRatchetRoot", 64) -> (rk, ck).
pub(crate) fn kdf_rk(rk: &Key32, dh_out: &[u8; 32]) -> (Key32, Key32) {
    let okm = hkdf_sha256_fixed::<64>(Some(rk.expose()), dh_out, INFO_ROOT);
    (key_at(&okm, 0), key_at(&okm, 1))
}

/// KDF_RK_HE: HKDF-SHA256(salt = rk, IKM = dh_out, info = "ZentalkRatchetRootHE", 96)
/// -> (rk, ck, next header key).
pub(crate) fn kdf_rk_he(rk: &Key32, dh_out: &[u8; 32]) -> (Key32, Key32, Key32) {
    let okm = hkdf_sha256_fixed::<96>(Some(rk.expose()), dh_out, INFO_ROOT_HE);
    (key_at(&okm, 0), key_at(&okm, 1), key_at(&okm, 2))
}

/// Initial header keys of a header-encrypted session:
/// HKDF-SHA256(salt = 32 zero bytes, IKM = SK, info = "ZentalkHeaderKeys", 64) -> (HKa, NHKb).
pub(crate) fn header_keys(sk: &Key32) -> (Key32, Key32) {
    let okm = ZERO_SALT_HKDF.derive_fixed::<64>(sk.expose(), INFO_HEADER_KEYS);
    (key_at(&okm, 0), key_at(&okm, 1))
}

/// X3DH's SK: HKDF-SHA256(salt = 32 zero bytes, IKM = F || DH1 || .. , info = "ZentalkX3DH", 32).
pub(crate) fn x3dh_sk(ikm: &[u8]) -> Key32 {
    let okm = ZERO_SALT_HKDF.derive_fixed::<32>(ikm, INFO_X3DH);
    key_at(&okm, 0)
}

/// KDF_CK: message key = HMAC-SHA256(ck, 0x01), next chain key = HMAC-SHA256(ck, 0x02).
/// Returns (message key, next chain key) on the stack, zeroized on drop. Both MACs share one
/// key schedule (the same outputs as two one-shot HMACs, two SHA-256 compressions fewer).
pub(crate) fn kdf_ck(ck: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let keyed = KeyedHmacSha256::new(ck);
    (
        Zeroizing::new(keyed.mac(&[0x01])),
        Zeroizing::new(keyed.mac(&[0x02])),
    )
}

/// HKDF-SHA256 with the 32-zero-byte salt of X3DH, header keys and message keys, keyed once
/// (a public constant, so its unzeroized state is no secret).
static ZERO_SALT_HKDF: LazyLock<HkdfSha256Salt> =
    LazyLock::new(|| HkdfSha256Salt::new(Some(&ZERO_SALT)));

/// ENCRYPT's key schedule: HKDF-SHA256(salt = 32 zero bytes, IKM = mk, info, 44)
/// -> AEAD key (32) || nonce (12).
pub(crate) fn message_keys(mk: &[u8; 32], info: &[u8]) -> (AeadKey, [u8; NONCE_LEN]) {
    let okm = ZERO_SALT_HKDF.derive_fixed::<44>(mk, info);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&okm[32..]);
    (key_at(&okm, 0), nonce)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zentalk_crypto::hash::hmac_sha256;
    use zentalk_crypto::kdf::hkdf_sha256;

    fn one_shot<const N: usize>(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; N] {
        let mut out = [0u8; N];
        hkdf_sha256(Some(salt), ikm, info, &mut out).unwrap();
        out
    }

    fn joined(keys: &[&Key32]) -> Vec<u8> {
        keys.iter().flat_map(|k| k.expose().to_vec()).collect()
    }

    /// Every derivation equals its one-shot definition in the protocol chapter.
    #[test]
    fn fast_paths_equal_the_one_shot_definitions() {
        for seed in 0u8..20 {
            let ck = [seed.wrapping_mul(37); 32];
            let (mk, next) = kdf_ck(&ck);
            assert_eq!(*mk, hmac_sha256(&ck, &[0x01]));
            assert_eq!(*next, hmac_sha256(&ck, &[0x02]));
            let expect: [u8; 44] = one_shot(&ZERO_SALT, mk.as_ref(), INFO_MESSAGE);
            let (key, nonce) = message_keys(&mk, INFO_MESSAGE);
            assert_eq!(key.expose()[..], expect[..32]);
            assert_eq!(nonce[..], expect[32..]);

            let rk = Key32::new(&mut [seed; 32]);
            let dh = [seed.wrapping_add(1); 32];
            let (r, c) = kdf_rk(&rk, &dh);
            let expect: [u8; 64] = one_shot(rk.expose(), &dh, INFO_ROOT);
            assert_eq!(joined(&[&r, &c]), expect);
            let (r, c, n) = kdf_rk_he(&rk, &dh);
            let expect: [u8; 96] = one_shot(rk.expose(), &dh, INFO_ROOT_HE);
            assert_eq!(joined(&[&r, &c, &n]), expect);
            let (a, b) = header_keys(&rk);
            let expect: [u8; 64] = one_shot(&ZERO_SALT, rk.expose(), INFO_HEADER_KEYS);
            assert_eq!(joined(&[&a, &b]), expect);
            let ikm = [seed; 128];
            let expect: [u8; 32] = one_shot(&ZERO_SALT, &ikm, INFO_X3DH);
            assert_eq!(*x3dh_sk(&ikm).expose(), expect);
        }
    }
}
