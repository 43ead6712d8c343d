//! Symmetric building blocks: the per-hop key schedule, the header stream cipher, the header
//! MAC and the Lioness wide-block cipher over the payload.

use blake2::{Blake2b, Digest, digest::consts::U32};
use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use zentalk_crypto::hash::hmac_sha256_parts;
use zentalk_crypto::{SecretBytes, kdf::hkdf_sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{MAC_LEN, OnionError, REPLAY_TAG_LEN};

/// HKDF salt of the per-hop key schedule.
pub(crate) const HOP_KDF_SALT: &[u8] = b"zentalk-onion/v1";
/// HKDF info of the per-hop key schedule.
pub(crate) const HOP_KDF_INFO: &[u8] = b"zentalk-onion/v1 hop keys";
/// HKDF info deriving the Lioness keys of a reply block from its 32-byte reply key.
pub(crate) const SURB_KDF_INFO: &[u8] = b"zentalk-onion/v1 reply key";
/// Domain label of the Lioness round hash.
const LIONESS_HASH_LABEL: &[u8] = b"zentalk-onion/v1 lioness";

/// Length of the Lioness key material: four 32-byte round keys.
pub(crate) const LIONESS_KEYS_LEN: usize = 128;
/// Length of the HKDF output of one hop.
const HOP_OKM_LEN: usize = 32 + 32 + LIONESS_KEYS_LEN + REPLAY_TAG_LEN;

/// Lioness round keys K1..K4 (zeroized on drop).
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct LionessKeys(Box<[u8; LIONESS_KEYS_LEN]>);

impl LionessKeys {
    /// Derives Lioness keys from a 32-byte reply key.
    pub(crate) fn from_reply_key(key: &[u8; 32]) -> Result<Self, OnionError> {
        let mut k = Box::new([0u8; LIONESS_KEYS_LEN]);
        hkdf_sha256(Some(HOP_KDF_SALT), key, SURB_KDF_INFO, k.as_mut_slice())
            .map_err(|_| OnionError::Kdf)?;
        Ok(Self(k))
    }

    fn round_key(&self, i: usize) -> [u8; 32] {
        let mut k = [0u8; 32];
        if let Some(src) = self.0.get(i * 32..i * 32 + 32) {
            k.copy_from_slice(src);
        }
        k
    }

    pub(crate) fn duplicate(&self) -> Self {
        Self(self.0.clone())
    }
}

/// Everything one hop derives from its KEM shared secret.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct HopKeys {
    /// ChaCha20 key of the routing-information keystream.
    pub(crate) header: [u8; 32],
    /// HMAC-SHA256 key of the header MAC.
    pub(crate) mac: [u8; 32],
    /// Lioness keys of the payload layer.
    pub(crate) payload: LionessKeys,
    /// Replay tag of this packet at this relay.
    pub(crate) replay_tag: [u8; REPLAY_TAG_LEN],
}

impl HopKeys {
    /// HKDF-SHA256(salt = "zentalk-onion/v1", ikm = shared secret, info = "... hop keys"),
    /// 208 bytes split as header key | MAC key | Lioness K1..K4 | replay tag.
    pub(crate) fn derive(shared: &SecretBytes<32>) -> Result<Self, OnionError> {
        let mut okm = SecretBytes::<HOP_OKM_LEN>::zeroed();
        hkdf_sha256(
            Some(HOP_KDF_SALT),
            shared.expose(),
            HOP_KDF_INFO,
            okm.expose_mut(),
        )
        .map_err(|_| OnionError::Kdf)?;
        let okm = okm.expose();
        let mut header = [0u8; 32];
        let mut mac = [0u8; 32];
        let mut payload = Box::new([0u8; LIONESS_KEYS_LEN]);
        let mut replay_tag = [0u8; REPLAY_TAG_LEN];
        header.copy_from_slice(&okm[..32]);
        mac.copy_from_slice(&okm[32..64]);
        payload.copy_from_slice(&okm[64..64 + LIONESS_KEYS_LEN]);
        replay_tag.copy_from_slice(&okm[64 + LIONESS_KEYS_LEN..]);
        Ok(Self {
            header,
            mac,
            payload: LionessKeys(payload),
            replay_tag,
        })
    }

    /// XORs the routing-information keystream (ChaCha20, nonce 0) into `data`.
    pub(crate) fn xor_header_stream(&self, data: &mut [u8]) {
        xor_stream(&self.header, data);
    }

    /// HMAC-SHA256 over the concatenation of `parts`, truncated to [`MAC_LEN`] bytes.
    pub(crate) fn header_mac(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        let full = hmac_sha256_parts(&self.mac, parts);
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }
}

/// XORs the ChaCha20 keystream (key, nonce 0, counter 0) into `data`.
fn xor_stream(key: &[u8; 32], data: &mut [u8]) {
    let mut c = ChaCha20::new(key.into(), &[0u8; 12].into());
    c.apply_keystream(data);
}

fn round_hash(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut h = Blake2b::<U32>::new();
    h.update(LIONESS_HASH_LABEL);
    h.update(key);
    h.update(data);
    h.finalize().into()
}

fn xor32(a: &mut [u8], b: &[u8; 32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

fn stream_round(left: &[u8], key: &[u8; 32], right: &mut [u8]) {
    let mut k = [0u8; 32];
    k.copy_from_slice(left);
    xor32(&mut k, key);
    xor_stream(&k, right);
    k.zeroize();
}

/// Lioness (Anderson and Biham, 1996) over a block of at least 33 bytes, split as
/// L = first 32 bytes, R = the rest; S = ChaCha20, H = BLAKE2b-256 with a key prefix:
///
/// ```text
/// R ^= S(L ^ K1);  L ^= H(K2, R);  R ^= S(L ^ K3);  L ^= H(K4, R)
/// ```
pub(crate) fn lioness_encrypt(keys: &LionessKeys, block: &mut [u8]) {
    if block.len() <= 32 {
        return;
    }
    let (l, r) = block.split_at_mut(32);
    stream_round(l, &keys.round_key(0), r);
    xor32(l, &round_hash(&keys.round_key(1), r));
    stream_round(l, &keys.round_key(2), r);
    xor32(l, &round_hash(&keys.round_key(3), r));
}

/// The inverse of [`lioness_encrypt`].
pub(crate) fn lioness_decrypt(keys: &LionessKeys, block: &mut [u8]) {
    if block.len() <= 32 {
        return;
    }
    let (l, r) = block.split_at_mut(32);
    xor32(l, &round_hash(&keys.round_key(3), r));
    stream_round(l, &keys.round_key(2), r);
    xor32(l, &round_hash(&keys.round_key(1), r));
    stream_round(l, &keys.round_key(0), r);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(b: u8) -> LionessKeys {
        LionessKeys(Box::new([b; LIONESS_KEYS_LEN]))
    }

    #[test]
    fn lioness_round_trips() {
        let mut block: Vec<u8> = (0..2048u32).map(|i| (i % 251) as u8).collect();
        let orig = block.clone();
        lioness_encrypt(&keys(7), &mut block);
        assert_ne!(block, orig);
        lioness_decrypt(&keys(7), &mut block);
        assert_eq!(block, orig);
    }

    #[test]
    fn one_flipped_bit_changes_the_whole_block() {
        let mut block = vec![0u8; 2048];
        lioness_encrypt(&keys(3), &mut block);
        block[1000] ^= 1;
        lioness_decrypt(&keys(3), &mut block);
        // A stream cipher would leave 2047 zero bytes; Lioness leaves about 8 (1/256 each).
        let zeros = block.iter().filter(|b| **b == 0).count();
        assert!(zeros < 40, "{zeros} zero bytes survived");
    }
}
