//! Length-hiding padding to size buckets.
//!
//! A message is padded to the smallest bucket that holds it plus one byte, so an observer of
//! the ciphertext learns only the bucket, never the exact length. The buckets are the powers
//! of two from [`MIN_BUCKET`] (256 B) to [`LARGE_BUCKET_STEP`] (64 KiB), listed in
//! [`POW2_BUCKETS`], then every multiple of 64 KiB up to [`MAX_PADDED_LEN`] (1 MiB). Powers of
//! two cost at most 2x in size for small messages, where the exact length says the most
//! (a "yes" from a paragraph); above 64 KiB a fixed 64 KiB step keeps the overhead under 100%
//! and falling, at the price of finer buckets for large payloads.
//!
//! The padding itself is ISO/IEC 7816-4 (the "bit padding" of ISO/IEC 9797-1 method 2): the
//! byte [`MARKER`] (0x80) and then zeros up to the bucket length. It is unambiguous (the last
//! non-zero byte is the marker) and needs no length field. [`unpad`] scans the whole buffer in
//! constant time with respect to where the marker is, so the message length does not leak
//! through timing either.
//!
//! ```
//! use zentalk_crypto::padding::{pad, unpad};
//!
//! let padded = pad(b"hello").unwrap();
//! assert_eq!(padded.len(), 256);
//! assert_eq!(unpad(&padded).unwrap(), b"hello");
//! ```

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use crate::CryptoError;

/// The smallest bucket: every padded message is at least this long.
pub const MIN_BUCKET: usize = 256;
/// The power-of-two buckets, smallest first: 256 B, 512 B, 1 KiB ... 64 KiB.
pub const POW2_BUCKETS: [usize; 9] = [
    256,
    512,
    1024,
    2048,
    4096,
    8192,
    16 * 1024,
    32 * 1024,
    64 * 1024,
];
/// Above the largest power-of-two bucket, buckets are the multiples of this step (64 KiB).
pub const LARGE_BUCKET_STEP: usize = 64 * 1024;
/// The largest bucket (1 MiB = 16 steps of 64 KiB): no padded buffer is longer.
pub const MAX_PADDED_LEN: usize = 1024 * 1024;
/// The longest message [`pad`] accepts: the largest bucket minus the marker byte.
pub const MAX_MESSAGE_LEN: usize = MAX_PADDED_LEN - 1;
/// The ISO/IEC 7816-4 end-of-message marker.
pub const MARKER: u8 = 0x80;

/// The bucket a message of `message_len` bytes is padded to: the smallest bucket of at least
/// `message_len + 1` bytes. Fails with [`CryptoError::TooLong`] above [`MAX_MESSAGE_LEN`].
pub fn bucket_len(message_len: usize) -> Result<usize, CryptoError> {
    if message_len > MAX_MESSAGE_LEN {
        return Err(CryptoError::TooLong {
            what: "padded message",
            max: MAX_MESSAGE_LEN,
            found: message_len,
        });
    }
    let needed = message_len + 1;
    if needed <= LARGE_BUCKET_STEP {
        Ok(needed.next_power_of_two().max(MIN_BUCKET))
    } else {
        Ok(needed.div_ceil(LARGE_BUCKET_STEP) * LARGE_BUCKET_STEP)
    }
}

/// Whether `len` is one of the buckets.
pub const fn is_bucket(len: usize) -> bool {
    if len < MIN_BUCKET || len > MAX_PADDED_LEN {
        false
    } else if len <= LARGE_BUCKET_STEP {
        len.is_power_of_two()
    } else {
        len.is_multiple_of(LARGE_BUCKET_STEP)
    }
}

/// Pads `message` to its bucket: `message || 0x80 || 0x00 ...`.
///
/// Fails with [`CryptoError::TooLong`] if the message is longer than [`MAX_MESSAGE_LEN`].
pub fn pad(message: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let len = bucket_len(message.len())?;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(message);
    out.push(MARKER);
    out.resize(len, 0);
    Ok(out)
}

/// Removes the padding added by [`pad`], borrowing the message from `padded`.
///
/// Errors: [`CryptoError::PaddingNotBucket`] if the length is not a bucket,
/// [`CryptoError::PaddingMarkerMissing`] if the buffer is all zeros, and
/// [`CryptoError::PaddingBadMarker`] if the last non-zero byte is not 0x80. The scan for the
/// marker touches every byte whatever the message length.
pub fn unpad(padded: &[u8]) -> Result<&[u8], CryptoError> {
    if !is_bucket(padded.len()) {
        return Err(CryptoError::PaddingNotBucket {
            found: padded.len(),
        });
    }
    // Position of the last non-zero byte, found without data-dependent branches.
    let mut last_nonzero = 0u64;
    let mut found = Choice::from(0);
    for (i, byte) in padded.iter().enumerate() {
        let nonzero = !byte.ct_eq(&0);
        last_nonzero.conditional_assign(&(i as u64), nonzero);
        found |= nonzero;
    }
    if !bool::from(found) {
        return Err(CryptoError::PaddingMarkerMissing);
    }
    // `last_nonzero` < padded.len() <= MAX_PADDED_LEN, so it fits in usize.
    let pos = usize::try_from(last_nonzero).map_err(|_| CryptoError::PaddingMarkerMissing)?;
    match padded.get(pos) {
        Some(&MARKER) => Ok(&padded[..pos]),
        Some(&other) => Err(CryptoError::PaddingBadMarker { found: other }),
        None => Err(CryptoError::PaddingMarkerMissing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bucket_boundaries() {
        assert_eq!(bucket_len(0), Ok(256));
        assert_eq!(bucket_len(255), Ok(256));
        assert_eq!(bucket_len(256), Ok(512));
        assert_eq!(bucket_len(65_535), Ok(65_536));
        assert_eq!(bucket_len(65_536), Ok(131_072));
        assert_eq!(bucket_len(131_071), Ok(131_072));
        assert_eq!(bucket_len(131_072), Ok(196_608));
        assert_eq!(bucket_len(MAX_MESSAGE_LEN), Ok(MAX_PADDED_LEN));
        assert_eq!(
            bucket_len(MAX_MESSAGE_LEN + 1),
            Err(CryptoError::TooLong {
                what: "padded message",
                max: MAX_MESSAGE_LEN,
                found: MAX_MESSAGE_LEN + 1
            })
        );
        for b in POW2_BUCKETS {
            assert!(is_bucket(b));
            assert_eq!(bucket_len(b - 1), Ok(b));
        }
        assert_eq!(POW2_BUCKETS[0], MIN_BUCKET);
        assert_eq!(POW2_BUCKETS[POW2_BUCKETS.len() - 1], LARGE_BUCKET_STEP);
        for bad in [
            0,
            1,
            128,
            255,
            257,
            384,
            65_537,
            98_304,
            MAX_PADDED_LEN + LARGE_BUCKET_STEP,
        ] {
            assert!(!is_bucket(bad), "{bad}");
        }
        // The full bucket list: 9 powers of two and 15 multiples of 64 KiB above them.
        let all: Vec<usize> = (0..=MAX_PADDED_LEN).filter(|&n| is_bucket(n)).collect();
        assert_eq!(all.len(), 9 + 15);
    }

    #[test]
    fn too_long_message_is_refused() {
        let big = vec![1u8; MAX_MESSAGE_LEN + 1];
        assert!(matches!(pad(&big), Err(CryptoError::TooLong { .. })));
        let max = vec![1u8; MAX_MESSAGE_LEN];
        let padded = pad(&max).unwrap();
        assert_eq!(padded.len(), MAX_PADDED_LEN);
        assert_eq!(unpad(&padded).unwrap(), &max[..]);
    }

    #[test]
    fn malformed_padding_is_typed() {
        assert_eq!(
            unpad(&[0x80; 255]),
            Err(CryptoError::PaddingNotBucket { found: 255 })
        );
        assert_eq!(unpad(&[]), Err(CryptoError::PaddingNotBucket { found: 0 }));
        assert_eq!(unpad(&[0; 256]), Err(CryptoError::PaddingMarkerMissing));
        let mut bad = [0u8; 256];
        bad[10] = 0x81;
        assert_eq!(
            unpad(&bad),
            Err(CryptoError::PaddingBadMarker { found: 0x81 })
        );
        // A marker followed by a stray non-zero byte: the stray byte is the "marker".
        let mut stray = pad(b"abc").unwrap();
        stray[200] = 1;
        assert_eq!(
            unpad(&stray),
            Err(CryptoError::PaddingBadMarker { found: 1 })
        );
        // A message ending in 0x80 followed by all-zero padding is fine.
        let tricky = pad(&[0x80, 0x00, 0x80]).unwrap();
        assert_eq!(unpad(&tricky).unwrap(), &[0x80, 0x00, 0x80]);
        // An empty message is the marker alone.
        let empty = pad(b"").unwrap();
        assert_eq!(empty[0], MARKER);
        assert_eq!(unpad(&empty).unwrap(), b"");
    }

    proptest! {
        #[test]
        fn round_trip(msg in proptest::collection::vec(any::<u8>(), 0..70_000)) {
            let padded = pad(&msg).unwrap();
            prop_assert!(is_bucket(padded.len()));
            prop_assert!(padded.len() > msg.len());
            prop_assert_eq!(unpad(&padded).unwrap(), &msg[..]);
        }

        #[test]
        fn padded_length_depends_only_on_the_bucket(a in 0usize..300_000, b in 0usize..300_000) {
            let la = pad(&vec![0xA5; a]).unwrap().len();
            let lb = pad(&vec![0x00; b]).unwrap().len();
            prop_assert_eq!(la, bucket_len(a).unwrap());
            prop_assert_eq!(lb, bucket_len(b).unwrap());
            // Same bucket, same padded length; and the bucket is monotone in the length.
            prop_assert_eq!(la == lb, bucket_len(a) == bucket_len(b));
            if a <= b {
                prop_assert!(la <= lb);
            }
        }

        #[test]
        fn unpad_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let _ = unpad(&data);
        }
    }
}
