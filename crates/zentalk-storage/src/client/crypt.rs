//! Key hierarchy and column encryption of the client store.
//!
//! ```text
//! password --Argon2id(salt, m, t, p)--> password key (32 B)
//! password key --AEAD wrap (AD = WRAP_AD || salt || params)--> wrapped data key (in store_meta)
//! data key --HKDF-SHA256(info = "zentalk-storage/v1/columns")--> column key
//! data key --HKDF-SHA256(info = "zentalk-storage/v1/blind-index")--> blind-index key
//! column ciphertext = version (1) || suite (1) || nonce (12) || AEAD(column key, nonce, AD, value)
//! AD = "zentalk-storage/v1/column" || len(table) || table || len(column) || column || row key
//! ```

use std::sync::Mutex;

use argon2::{Algorithm, Argon2, Params, Version};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use zentalk_crypto::{AeadKey, AeadSuite, NONCE_LEN, SecretBytes, TAG_LEN, hash, kdf};

use crate::StoreError;

/// Version byte that starts every encrypted column.
pub const COLUMN_FORMAT_VERSION: u8 = 1;
/// Bytes an encrypted column adds to its plaintext: version, suite, nonce and tag.
pub const COLUMN_OVERHEAD: usize = 2 + NONCE_LEN + TAG_LEN;
/// Salt length for Argon2id.
pub const SALT_LEN: usize = 16;
/// Length of a blind index (truncated HMAC-SHA256).
pub const BLIND_INDEX_LEN: usize = 16;

const WRAP_AD: &[u8] = b"zentalk-storage/v1/wrapped-data-key";
const COLUMN_AD: &[u8] = b"zentalk-storage/v1/column";
const INFO_COLUMNS: &[u8] = b"zentalk-storage/v1/columns";
const INFO_INDEX: &[u8] = b"zentalk-storage/v1/blind-index";

/// Argon2id cost parameters. Stored in the file beside the salt, so a store opens with the
/// parameters it was created (or last re-keyed) with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations (time cost).
    pub t: u32,
    /// Lanes (parallelism).
    pub p: u32,
}

impl KdfParams {
    /// Production parameters: 64 MiB, 3 passes, 1 lane (about 0.1-0.3 s on a laptop core),
    /// above OWASP's 2023 Argon2id minimum (19 MiB, t = 2, p = 1).
    pub const PRODUCTION: KdfParams = KdfParams {
        m_kib: 64 * 1024,
        t: 3,
        p: 1,
    };
    /// Cheap parameters for tests only (64 KiB, 1 pass): never use for real data.
    pub const TEST: KdfParams = KdfParams {
        m_kib: 64,
        t: 1,
        p: 1,
    };
    /// Largest accepted memory cost (4 GiB): a file cannot make `open` allocate more.
    pub const MAX_M_KIB: u32 = 4 * 1024 * 1024;
    /// Largest accepted time cost.
    pub const MAX_T: u32 = 64;
    /// Largest accepted parallelism.
    pub const MAX_P: u32 = 16;

    /// Checks the parameters against the accepted ranges.
    pub fn validate(&self) -> Result<(), StoreError> {
        check("p", self.p, 1, Self::MAX_P)?;
        check("t", self.t, 1, Self::MAX_T)?;
        check("m_kib", self.m_kib, 8 * self.p, Self::MAX_M_KIB)?;
        Ok(())
    }

    fn encode(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..4].copy_from_slice(&self.m_kib.to_be_bytes());
        out[4..8].copy_from_slice(&self.t.to_be_bytes());
        out[8..].copy_from_slice(&self.p.to_be_bytes());
        out
    }
}

fn check(name: &'static str, found: u32, min: u32, max: u32) -> Result<(), StoreError> {
    if found < min || found > max {
        return Err(StoreError::KdfParams {
            name,
            min,
            max,
            found,
        });
    }
    Ok(())
}

/// Argon2id(password, salt) with `params`. CPU- and memory-heavy: call from a blocking task.
pub(crate) fn derive_password_key(
    password: &[u8],
    salt: &[u8; SALT_LEN],
    params: KdfParams,
) -> Result<AeadKey, StoreError> {
    params.validate()?;
    let p = Params::new(params.m_kib, params.t, params.p, Some(32))
        .map_err(|e| StoreError::Kdf(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, p);
    let mut key = AeadKey::zeroed();
    argon
        .hash_password_into(password, salt, key.expose_mut())
        .map_err(|e| StoreError::Kdf(e.to_string()))?;
    Ok(key)
}

fn wrap_ad(salt: &[u8; SALT_LEN], params: KdfParams) -> Vec<u8> {
    let mut ad = Vec::with_capacity(WRAP_AD.len() + SALT_LEN + 12);
    ad.extend_from_slice(WRAP_AD);
    ad.extend_from_slice(salt);
    ad.extend_from_slice(&params.encode());
    ad
}

/// Seals the data key under the password key. Output: nonce || ciphertext || tag.
pub(crate) fn wrap_data_key(
    password_key: &AeadKey,
    data_key: &AeadKey,
    salt: &[u8; SALT_LEN],
    params: KdfParams,
    rng: &mut impl RngCore,
) -> Result<Vec<u8>, StoreError> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let ct = AeadSuite::Aes256Gcm.seal(
        password_key,
        &nonce,
        &wrap_ad(salt, params),
        data_key.expose(),
    )?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Length of a wrapped data key.
pub(crate) const WRAPPED_KEY_LEN: usize = NONCE_LEN + 32 + TAG_LEN;

/// Opens the wrapped data key. An authentication failure means a wrong password: the AEAD tag
/// is the key-check value.
pub(crate) fn unwrap_data_key(
    password_key: &AeadKey,
    wrapped: &[u8],
    salt: &[u8; SALT_LEN],
    params: KdfParams,
) -> Result<AeadKey, StoreError> {
    if wrapped.len() != WRAPPED_KEY_LEN {
        return Err(StoreError::Corrupt {
            reason: format!(
                "wrapped data key: expected {WRAPPED_KEY_LEN} bytes, found {}",
                wrapped.len()
            ),
        });
    }
    let (nonce, ct) = wrapped.split_at(NONCE_LEN);
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(nonce);
    let mut pt = zeroize::Zeroizing::new(
        AeadSuite::Aes256Gcm
            .open(password_key, &n, &wrap_ad(salt, params), ct)
            .map_err(|_| StoreError::WrongPassword)?,
    );
    let key = AeadKey::from_slice(&pt)?;
    zeroize::Zeroize::zeroize(&mut *pt);
    Ok(key)
}

/// The keys derived from the data key, and the nonce generator.
pub(crate) struct Keys {
    data_key: AeadKey,
    column_key: AeadKey,
    index_key: SecretBytes<32>,
    rng: Mutex<ChaCha20Rng>,
}

impl Keys {
    pub(crate) fn new(data_key: AeadKey) -> Result<Self, StoreError> {
        let mut column_key = AeadKey::zeroed();
        kdf::hkdf_sha256(
            None,
            data_key.expose(),
            INFO_COLUMNS,
            column_key.expose_mut(),
        )?;
        let mut index_key = SecretBytes::<32>::zeroed();
        kdf::hkdf_sha256(None, data_key.expose(), INFO_INDEX, index_key.expose_mut())?;
        Ok(Self {
            data_key,
            column_key,
            index_key,
            rng: Mutex::new({
                let mut seed = [0u8; 32];
                crate::os_fill(&mut seed);
                let rng = ChaCha20Rng::from_seed(seed);
                zeroize::Zeroize::zeroize(&mut seed);
                rng
            }),
        })
    }

    pub(crate) fn data_key(&self) -> &AeadKey {
        &self.data_key
    }

    /// Fills `buf` from the store's CSPRNG (ChaCha20 seeded from the OS).
    pub(crate) fn fill_random(&self, buf: &mut [u8]) {
        let mut rng = match self.rng.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        rng.fill_bytes(buf);
    }

    /// Keyed, deterministic index of a sensitive lookup value (HMAC-SHA256 truncated to 16 bytes).
    pub(crate) fn blind_index(&self, domain: &str, value: &[u8]) -> [u8; BLIND_INDEX_LEN] {
        let mut msg = Vec::with_capacity(domain.len() + 1 + value.len());
        msg.extend_from_slice(domain.as_bytes());
        msg.push(0);
        msg.extend_from_slice(value);
        let mac = hash::hmac_sha256(self.index_key.expose(), &msg);
        let mut out = [0u8; BLIND_INDEX_LEN];
        out.copy_from_slice(&mac[..BLIND_INDEX_LEN]);
        out
    }

    /// Encrypts one column value bound to its table, column and row.
    pub(crate) fn seal(
        &self,
        table: &'static str,
        column: &'static str,
        row: &[u8],
        value: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.fill_random(&mut nonce);
        let mut buf = Vec::with_capacity(value.len() + COLUMN_OVERHEAD);
        buf.push(COLUMN_FORMAT_VERSION);
        buf.push(AeadSuite::Aes256Gcm.wire_code());
        buf.extend_from_slice(&nonce);
        let mut body = Vec::with_capacity(value.len() + TAG_LEN);
        body.extend_from_slice(value);
        AeadSuite::Aes256Gcm.seal_in_place(
            &self.column_key,
            &nonce,
            &column_ad(table, column, row),
            &mut body,
        )?;
        buf.extend_from_slice(&body);
        Ok(buf)
    }

    /// Decrypts one column value; fails if it was moved from another table, column or row.
    pub(crate) fn open(
        &self,
        table: &'static str,
        column: &'static str,
        row: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        if sealed.len() < COLUMN_OVERHEAD {
            return Err(StoreError::TruncatedCiphertext {
                table,
                column,
                expected: COLUMN_OVERHEAD,
                found: sealed.len(),
            });
        }
        if sealed[0] != COLUMN_FORMAT_VERSION {
            return Err(StoreError::Malformed {
                table,
                column,
                reason: "unknown column format version",
            });
        }
        let suite = AeadSuite::from_wire_code(sealed[1]).map_err(|_| StoreError::Malformed {
            table,
            column,
            reason: "unknown AEAD suite",
        })?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[2..2 + NONCE_LEN]);
        let mut body = sealed[2 + NONCE_LEN..].to_vec();
        suite
            .open_in_place(
                &self.column_key,
                &nonce,
                &column_ad(table, column, row),
                &mut body,
            )
            .map_err(|_| StoreError::Tampered { table, column })?;
        Ok(body)
    }

    /// [`Keys::open`] for text columns.
    pub(crate) fn open_string(
        &self,
        table: &'static str,
        column: &'static str,
        row: &[u8],
        sealed: &[u8],
    ) -> Result<String, StoreError> {
        String::from_utf8(self.open(table, column, row, sealed)?).map_err(|_| {
            StoreError::Malformed {
                table,
                column,
                reason: "not UTF-8",
            }
        })
    }
}

fn column_ad(table: &str, column: &str, row: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(COLUMN_AD.len() + 2 + table.len() + column.len() + row.len());
    ad.extend_from_slice(COLUMN_AD);
    // Table and column names are short compile-time constants (< 256 bytes).
    ad.push(u8::try_from(table.len()).unwrap_or(u8::MAX));
    ad.extend_from_slice(table.as_bytes());
    ad.push(u8::try_from(column.len()).unwrap_or(u8::MAX));
    ad.extend_from_slice(column.as_bytes());
    ad.extend_from_slice(row);
    ad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(5)
    }

    fn keys() -> Keys {
        let mut k = [9u8; 32];
        Keys::new(AeadKey::new(&mut k)).unwrap()
    }

    #[test]
    fn column_round_trip_and_binding() {
        let k = keys();
        let ct = k
            .seal("messages", "content", &7i64.to_be_bytes(), b"hi")
            .unwrap();
        assert_eq!(ct.len(), 2 + COLUMN_OVERHEAD);
        assert_eq!(
            k.open("messages", "content", &7i64.to_be_bytes(), &ct)
                .unwrap(),
            b"hi"
        );
        for (t, c, r) in [
            ("messages", "content", 8i64),
            ("messages", "sender", 7),
            ("contacts", "content", 7),
        ] {
            assert!(matches!(
                k.open(t, c, &r.to_be_bytes(), &ct),
                Err(StoreError::Tampered { .. })
            ));
        }
        assert!(matches!(
            k.open(
                "messages",
                "content",
                &7i64.to_be_bytes(),
                &ct[..COLUMN_OVERHEAD - 1]
            ),
            Err(StoreError::TruncatedCiphertext { found: 29, .. })
        ));
        let mut bad = ct.clone();
        bad[0] = 2;
        assert!(matches!(
            k.open("messages", "content", &7i64.to_be_bytes(), &bad),
            Err(StoreError::Malformed { .. })
        ));
    }

    #[test]
    fn wrap_detects_wrong_password_and_param_change() {
        let salt = [1u8; SALT_LEN];
        let pk = derive_password_key(b"pw", &salt, KdfParams::TEST).unwrap();
        let other = derive_password_key(b"pw2", &salt, KdfParams::TEST).unwrap();
        let dk = AeadKey::random(&mut rng());
        let w = wrap_data_key(&pk, &dk, &salt, KdfParams::TEST, &mut rng()).unwrap();
        assert_eq!(w.len(), WRAPPED_KEY_LEN);
        assert!(unwrap_data_key(&pk, &w, &salt, KdfParams::TEST).unwrap() == dk);
        assert!(matches!(
            unwrap_data_key(&other, &w, &salt, KdfParams::TEST),
            Err(StoreError::WrongPassword)
        ));
        let p2 = KdfParams {
            t: 2,
            ..KdfParams::TEST
        };
        assert!(matches!(
            unwrap_data_key(&pk, &w, &salt, p2),
            Err(StoreError::WrongPassword)
        ));
        assert!(matches!(
            unwrap_data_key(&pk, &w[1..], &salt, KdfParams::TEST),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn params_validated() {
        assert!(KdfParams::PRODUCTION.validate().is_ok());
        assert!(KdfParams::TEST.validate().is_ok());
        let huge = KdfParams {
            m_kib: u32::MAX,
            ..KdfParams::TEST
        };
        assert!(matches!(
            huge.validate(),
            Err(StoreError::KdfParams { name: "m_kib", .. })
        ));
        let zero_t = KdfParams {
            t: 0,
            ..KdfParams::TEST
        };
        assert!(matches!(
            zero_t.validate(),
            Err(StoreError::KdfParams { name: "t", .. })
        ));
    }

    #[test]
    fn debug_of_keys_redacted() {
        let dk = AeadKey::new(&mut [0xabu8; 32]);
        let s = format!("{dk:?}");
        assert!(!s.contains("ab") || s.contains("REDACTED"));
        assert!(!s.to_lowercase().contains("171"));
    }
}
