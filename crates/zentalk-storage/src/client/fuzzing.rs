//! Entry point for the `storage_records` fuzz target (`fuzz/fuzz_targets/storage_records.rs`)
//! and its corpus replay test. Not a stable API: hidden from the documentation.
//!
//! It feeds one input to every decoder of this crate that reads bytes back from a store file:
//! the sealed-column format (`version || suite || nonce || ciphertext || tag`), the wrapped
//! data key, the Argon2 parameters read from `store_meta`, the decrypted message body
//! (`id || sender || flags || [reply-to] || [media] || content`), the decrypted shard list of
//! a media record, and the status and conversation-kind codes. Nothing may panic; arbitrary
//! bytes must never open as a sealed value; whatever decodes must re-encode to exactly the
//! input; a value sealed for one row opens there and nowhere else.

use zentalk_crypto::AeadKey;

use super::crypt::{self, COLUMN_OVERHEAD, KdfParams, Keys, SALT_LEN};
use super::messages::{self, MessageStatus};
use super::records::{self, ConversationKind};
use crate::StoreError;

/// Runs every stored-bytes decoder on `data`; panics (a fuzzing finding) if one misbehaves.
#[allow(
    clippy::panic,
    reason = "a fuzz harness reports a finding by panicking"
)]
pub fn stored_records(data: &[u8]) {
    let Ok(keys) = Keys::new(AeadKey::new(&mut [0x5a; 32])) else {
        panic!("key derivation failed");
    };

    // Arbitrary bytes as a sealed column: never opens (that would be a forgery); the error
    // says why, by length first.
    match keys.open("messages", "body_enc", &1i64.to_be_bytes(), data) {
        Ok(_) => panic!("arbitrary bytes opened as a sealed column"),
        Err(StoreError::TruncatedCiphertext {
            expected, found, ..
        }) => {
            assert!(data.len() < COLUMN_OVERHEAD && expected == COLUMN_OVERHEAD);
            assert_eq!(found, data.len());
        }
        Err(StoreError::Malformed { .. } | StoreError::Tampered { .. }) => {
            assert!(data.len() >= COLUMN_OVERHEAD);
        }
        Err(other) => panic!("unexpected column error {other:?}"),
    }
    // The input as a plaintext: opens in its own row only, and not once truncated.
    let Ok(sealed) = keys.seal("media", "shards_enc", b"row-a", data) else {
        panic!("sealing failed");
    };
    assert_eq!(sealed.len(), data.len() + COLUMN_OVERHEAD);
    match keys.open("media", "shards_enc", b"row-a", &sealed) {
        Ok(v) => assert_eq!(v, data),
        Err(e) => panic!("sealed value did not open: {e:?}"),
    }
    assert!(keys.open("media", "shards_enc", b"row-b", &sealed).is_err());
    assert!(keys.open("media", "key_enc", b"row-a", &sealed).is_err());
    assert!(
        keys.open("media", "shards_enc", b"row-a", &sealed[..sealed.len() - 1])
            .is_err()
    );

    // The wrapped data key: wrong length is Corrupt, right length fails authentication.
    let params = KdfParams::TEST;
    match crypt::unwrap_data_key(keys.data_key(), data, &[1; SALT_LEN], params) {
        Ok(_) => panic!("arbitrary bytes unwrapped as a data key"),
        Err(StoreError::Corrupt { .. }) => assert_ne!(data.len(), crypt::WRAPPED_KEY_LEN),
        Err(StoreError::WrongPassword) => assert_eq!(data.len(), crypt::WRAPPED_KEY_LEN),
        Err(other) => panic!("unexpected unwrap error {other:?}"),
    }

    // Argon2 parameters as read from a file (m, t, p as u32 BE from the first 12 bytes).
    let word = |i: usize| {
        let mut w = [0u8; 4];
        for (j, b) in w.iter_mut().enumerate() {
            *b = data.get(i * 4 + j).copied().unwrap_or(0);
        }
        u32::from_be_bytes(w)
    };
    let p = KdfParams {
        m_kib: word(0),
        t: word(1),
        p: word(2),
    };
    if p.validate().is_ok() {
        assert!((1..=KdfParams::MAX_P).contains(&p.p) && (1..=KdfParams::MAX_T).contains(&p.t));
        assert!(p.m_kib >= 8 * p.p && p.m_kib <= KdfParams::MAX_M_KIB);
    }

    // A decrypted message body: decodes only to what re-encodes to the same bytes.
    if let Ok(b) = messages::decode_body(data.to_vec()) {
        let again = messages::encode_body(
            &b.id,
            &b.sender,
            b.reply_to.as_ref(),
            b.media.as_ref(),
            &b.content,
        );
        assert_eq!(again, data, "message body did not re-encode to its input");
    }

    // A decrypted shard list: same.
    if let Ok(shards) = records::decode_shards(data) {
        match records::encode_shards(&shards) {
            Ok(again) => assert_eq!(again, data, "shard list did not re-encode to its input"),
            Err(e) => panic!("decoded shard list does not encode: {e:?}"),
        }
    }

    // Codes read from integer columns.
    let code = i64::from_be_bytes({
        let mut w = [0u8; 8];
        for (j, b) in w.iter_mut().enumerate() {
            *b = data.get(j).copied().unwrap_or(0);
        }
        w
    });
    if let Ok(s) = MessageStatus::from_code(code) {
        assert_eq!(s.code(), code);
    }
    if let Ok(k) = ConversationKind::from_code(code) {
        assert_eq!(k.code(), code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays the fuzz corpus kept in `tests/fuzz_corpus/storage_records/` (inputs found by
    /// `cargo +nightly fuzz run storage_records`), plus a few hand-made edge cases.
    #[test]
    fn corpus_replays_without_findings() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fuzz_corpus/storage_records");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            stored_records(&std::fs::read(&path).unwrap());
            n += 1;
        }
        assert!(n >= 10, "corpus at {} has only {n} inputs", dir.display());
        for edge in [
            &[][..],
            &[0u8; COLUMN_OVERHEAD - 1][..],
            &[1u8; COLUMN_OVERHEAD][..],
            &[0u8; 49][..],
            &[0xff; 60][..],
            &[0, 0, 0, 1, 0, 0, 0, 0][..],
        ] {
            stored_records(edge);
        }
    }

    /// The harness can fail: a body that decodes is checked against its input.
    #[test]
    fn harness_checks_round_trips() {
        let body = messages::encode_body(
            &super::super::MessageId([1; 16]),
            &zentalk_crypto::Address::from_bytes([2; 32]),
            None,
            None,
            b"content",
        );
        stored_records(&body);
        let decoded = messages::decode_body(body.clone()).unwrap();
        assert_eq!(decoded.content, b"content");
        let shards = records::encode_shards(&[b"a".to_vec(), b"bc".to_vec()]).unwrap();
        stored_records(&shards);
        assert_eq!(records::decode_shards(&shards).unwrap().len(), 2);
    }
}
