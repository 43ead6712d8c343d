//! Sealed envelopes: transport-agnostic authenticated encryption between two identities.
//!
//! An [`Envelope`] is HPKE (RFC 9180) in Auth mode, through [`crate::hpke_auth`], from the
//! X25519 form of the sender's identity key to the X25519 form of the recipient's. Only the
//! holder of the sender's identity secret can produce an envelope that opens under the
//! sender's public key; only the recipient's identity secret opens it.
//!
//! In the clear an envelope shows only what the recipient needs to pick the keys: the
//! sender's and recipient's key ids (their [`Address`]es, see below), a random 16-byte
//! envelope id, a timestamp and the AEAD suite. That header is bound into the HPKE key
//! schedule as `info`, so changing any byte of it makes the envelope fail to open. The
//! message is padded to a [`crate::padding`] bucket before encryption, so the size shows
//! only the bucket.
//!
//! **Key id.** The key id of an identity is its full 32-byte [`Address`]
//! (BLAKE2b-256 of the Ed25519 identity public key). The X25519 key an envelope uses is
//! derived from that identity key, so the address names it exactly; a truncated id would
//! save 32 bytes per envelope but make key lookup ambiguous by design.
//!
//! **Replay.** Each envelope carries a unique random id and the sender's timestamp (a `now`
//! argument: this crate reads no clock). The recipient keeps a [`ReplayWindow`] and uses
//! [`Envelope::open_and_accept`], which refuses duplicates, envelopes older than the window
//! and envelopes from too far in the future.
//!
//! # Byte format (version 1)
//!
//! | offset | length | field |
//! |-------:|-------:|-------|
//! | 0 | 1 | version, `0x01` |
//! | 1 | 1 | AEAD suite wire code (`0x01` AES-256-GCM, `0x02` ChaCha20-Poly1305) |
//! | 2 | 32 | sender key id (sender's [`Address`]) |
//! | 34 | 32 | recipient key id (recipient's [`Address`]) |
//! | 66 | 16 | envelope id (random) |
//! | 82 | 8 | timestamp, seconds since the Unix epoch, u64 big-endian |
//! | 90 | 32 | HPKE `enc` (ephemeral X25519 public key) |
//! | 122 | 4 | ciphertext length `n`, u32 big-endian |
//! | 126 | `n` | HPKE ciphertext of the padded message, tag included |
//!
//! Bytes 0..90 are the header; HPKE `info` = [`INFO_LABEL`] || header, and the AEAD
//! associated data is empty. `n` must be a padding bucket plus [`TAG_LEN`], at most
//! [`MAX_CIPHERTEXT_LEN`]; nothing may follow the ciphertext.
//!
//! ```
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//! use zentalk_crypto::envelope::{Envelope, ReplayWindow};
//! use zentalk_crypto::{AeadSuite, CryptoError, IdentityKeyPair};
//!
//! let mut rng = ChaCha20Rng::seed_from_u64(7);
//! let alice = IdentityKeyPair::generate(&mut rng);
//! let bob = IdentityKeyPair::generate(&mut rng);
//! let now = 1_800_000_000; // seconds since the Unix epoch, from the caller's clock
//!
//! let bytes = Envelope::seal(&mut rng, AeadSuite::default(), &alice, &bob.public_key(), now, b"hi")?
//!     .to_bytes();
//!
//! let mut window = ReplayWindow::default();
//! let envelope = Envelope::from_bytes(&bytes)?;
//! assert_eq!(envelope.header().sender, alice.public_key().address()); // look up the key by id
//! let message = envelope.open_and_accept(&bob, &alice.public_key(), &mut window, now + 3)?;
//! assert_eq!(message, b"hi");
//! // The same bytes again are a replay.
//! assert_eq!(
//!     envelope.open_and_accept(&bob, &alice.public_key(), &mut window, now + 4),
//!     Err(CryptoError::Replay)
//! );
//! # Ok::<(), CryptoError>(())
//! ```

mod replay;

use core::fmt;

use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

pub use replay::{
    DEFAULT_MAX_AGE_SECS, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_FUTURE_SKEW_SECS, MAX_AGE_LIMIT_SECS,
    MAX_ENTRIES_LIMIT, MAX_FUTURE_SKEW_LIMIT_SECS, ReplayConfig, ReplayWindow,
};

use crate::hpke_auth::{self, ENC_LEN};
use crate::{
    Address, AeadSuite, CryptoError, IdentityKeyPair, IdentityPublicKey, TAG_LEN, padding,
};

/// The envelope format version this crate writes and reads.
pub const VERSION: u8 = 0x01;
/// Length of an envelope id.
pub const ID_LEN: usize = 16;
/// Length of the header (version, suite, key ids, envelope id, timestamp): bytes 0..90.
pub const HEADER_LEN: usize = 1 + 1 + 32 + 32 + ID_LEN + 8;
/// Length of everything before the ciphertext: header, `enc`, ciphertext length.
pub const PREFIX_LEN: usize = HEADER_LEN + ENC_LEN + 4;
/// The longest message an envelope carries (the padding limit).
pub const MAX_MESSAGE_LEN: usize = padding::MAX_MESSAGE_LEN;
/// The longest ciphertext: the largest padding bucket plus the tag.
pub const MAX_CIPHERTEXT_LEN: usize = padding::MAX_PADDED_LEN + TAG_LEN;
/// The longest encoded envelope.
pub const MAX_ENCODED_LEN: usize = PREFIX_LEN + MAX_CIPHERTEXT_LEN;
/// The shortest encoded envelope (an empty message in the smallest bucket).
pub const MIN_ENCODED_LEN: usize = PREFIX_LEN + padding::MIN_BUCKET + TAG_LEN;
/// Domain-separation label prefixed to the header in the HPKE `info`.
pub const INFO_LABEL: &[u8] = b"zentalk/envelope/v1";

const WHAT: &str = "envelope";

/// A random 16-byte envelope id. It carries no clock and no counter.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvelopeId([u8; ID_LEN]);

impl EnvelopeId {
    /// A fresh random id.
    pub fn random(rng: &mut impl CryptoRngCore) -> Self {
        let mut b = [0u8; ID_LEN];
        rng.fill_bytes(&mut b);
        Self(b)
    }

    /// Wraps 16 bytes.
    pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn to_bytes(&self) -> [u8; ID_LEN] {
        self.0
    }

    /// Borrows the raw bytes.
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }
}

impl fmt::Debug for EnvelopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnvelopeId({})", data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl fmt::Display for EnvelopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

/// The clear part of an envelope: everything an observer sees except `enc` and the
/// ciphertext. All of it is authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// The AEAD suite of the HPKE context.
    pub suite: AeadSuite,
    /// The sender's key id.
    pub sender: Address,
    /// The recipient's key id.
    pub recipient: Address,
    /// Random id, unique per envelope.
    pub id: EnvelopeId,
    /// The sender's clock when sealing, in seconds since the Unix epoch.
    pub timestamp: u64,
}

impl EnvelopeHeader {
    /// The 90-byte encoding (bytes 0..90 of the envelope).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = VERSION;
        out[1] = self.suite.wire_code();
        out[2..34].copy_from_slice(self.sender.as_bytes());
        out[34..66].copy_from_slice(self.recipient.as_bytes());
        out[66..82].copy_from_slice(&self.id.0);
        out[82..90].copy_from_slice(&self.timestamp.to_be_bytes());
        out
    }

    /// The HPKE `info`: [`INFO_LABEL`] || header.
    fn info(&self) -> Vec<u8> {
        let mut info = Vec::with_capacity(INFO_LABEL.len() + HEADER_LEN);
        info.extend_from_slice(INFO_LABEL);
        info.extend_from_slice(&self.to_bytes());
        info
    }
}

/// A sealed envelope. Build one with [`Envelope::seal`] or parse one with
/// [`Envelope::from_bytes`]; open it with [`Envelope::open_and_accept`].
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    header: EnvelopeHeader,
    enc: [u8; ENC_LEN],
    ciphertext: Vec<u8>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("header", &self.header)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// A bounds-checked reader over the envelope bytes; never panics.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn array<const N: usize>(&mut self, total: usize) -> Result<[u8; N], CryptoError> {
        let (head, tail) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(CryptoError::Truncated {
                what: WHAT,
                expected: PREFIX_LEN,
                found: total,
            })?;
        self.0 = tail;
        Ok(*head)
    }
}

impl Envelope {
    /// Seals `message` from `sender` to `recipient` at time `now` (seconds since the Unix
    /// epoch). Draws the envelope id and the HPKE ephemeral key from `rng`.
    ///
    /// Errors: [`CryptoError::TooLong`] above [`MAX_MESSAGE_LEN`].
    pub fn seal(
        rng: &mut impl CryptoRngCore,
        suite: AeadSuite,
        sender: &IdentityKeyPair,
        recipient: &IdentityPublicKey,
        now: u64,
        message: &[u8],
    ) -> Result<Self, CryptoError> {
        let padded = Zeroizing::new(padding::pad(message)?);
        let header = EnvelopeHeader {
            suite,
            sender: sender.public_key().address(),
            recipient: recipient.address(),
            id: EnvelopeId::random(rng),
            timestamp: now,
        };
        let (enc, ciphertext) = hpke_auth::seal(
            rng,
            suite,
            &sender.to_x25519(),
            &recipient.to_x25519(),
            &header.info(),
            &[],
            &padded,
        )?;
        Ok(Self {
            header,
            enc,
            ciphertext,
        })
    }

    /// The authenticated clear header (trust it only after a successful open).
    pub fn header(&self) -> &EnvelopeHeader {
        &self.header
    }

    /// Length of [`Envelope::to_bytes`].
    pub fn encoded_len(&self) -> usize {
        PREFIX_LEN + self.ciphertext.len()
    }

    /// The byte encoding (see the module documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&self.header.to_bytes());
        out.extend_from_slice(&self.enc);
        // A ciphertext is at most MAX_CIPHERTEXT_LEN, far below u32::MAX, whether sealed here
        // or parsed; saturating keeps this free of panics regardless.
        let len = u32::try_from(self.ciphertext.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses an envelope. Checks, before allocating anything: the version, the length of
    /// the fixed part, the suite code, and that the ciphertext length is a padding bucket
    /// plus the tag, at most [`MAX_CIPHERTEXT_LEN`] and exactly what remains. Does no
    /// cryptography; the header is authenticated only by opening.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let total = bytes.len();
        let Some(&version) = bytes.first() else {
            return Err(CryptoError::Truncated {
                what: WHAT,
                expected: PREFIX_LEN,
                found: 0,
            });
        };
        if version != VERSION {
            return Err(CryptoError::UnsupportedVersion {
                what: WHAT,
                expected: VERSION,
                found: version,
            });
        }
        if total < PREFIX_LEN {
            return Err(CryptoError::Truncated {
                what: WHAT,
                expected: PREFIX_LEN,
                found: total,
            });
        }
        let mut r = Reader(bytes);
        let [_version, suite] = r.array::<2>(total)?;
        let suite = AeadSuite::from_wire_code(suite)?;
        let sender = Address::from_bytes(r.array::<32>(total)?);
        let recipient = Address::from_bytes(r.array::<32>(total)?);
        let id = EnvelopeId(r.array::<ID_LEN>(total)?);
        let timestamp = u64::from_be_bytes(r.array::<8>(total)?);
        let enc = r.array::<ENC_LEN>(total)?;
        let ct_len = u32::from_be_bytes(r.array::<4>(total)?);
        let ct_len = usize::try_from(ct_len).unwrap_or(usize::MAX);
        if ct_len > MAX_CIPHERTEXT_LEN {
            return Err(CryptoError::TooLong {
                what: "envelope ciphertext",
                max: MAX_CIPHERTEXT_LEN,
                found: ct_len,
            });
        }
        if ct_len < TAG_LEN || !padding::is_bucket(ct_len - TAG_LEN) {
            return Err(CryptoError::CiphertextNotBucket { found: ct_len });
        }
        let rest = r.0;
        if rest.len() < ct_len {
            return Err(CryptoError::Truncated {
                what: WHAT,
                expected: PREFIX_LEN + ct_len,
                found: total,
            });
        }
        if rest.len() > ct_len {
            return Err(CryptoError::TrailingBytes {
                what: WHAT,
                found: rest.len() - ct_len,
            });
        }
        Ok(Self {
            header: EnvelopeHeader {
                suite,
                sender,
                recipient,
                id,
                timestamp,
            },
            enc,
            ciphertext: rest.to_vec(),
        })
    }

    /// Opens the envelope as `recipient`, expecting it from `sender` (the key the caller
    /// looked up for [`EnvelopeHeader::sender`]). Does not check replay: use
    /// [`Envelope::open_and_accept`] for messages from the network.
    ///
    /// Errors: [`CryptoError::WrongRecipient`] or [`CryptoError::WrongSender`] when the key
    /// ids do not match the keys given; [`CryptoError::AeadFailure`] for anything forged or
    /// tampered with; [`CryptoError::LowOrderPoint`] for a low-order `enc`; a padding error
    /// only if the authenticated sender padded wrongly.
    pub fn open(
        &self,
        recipient: &IdentityKeyPair,
        sender: &IdentityPublicKey,
    ) -> Result<Vec<u8>, CryptoError> {
        let me = recipient.public_key().address();
        if self.header.recipient != me {
            return Err(CryptoError::WrongRecipient {
                expected: me,
                found: self.header.recipient,
            });
        }
        let claimed = sender.address();
        if self.header.sender != claimed {
            return Err(CryptoError::WrongSender {
                expected: claimed,
                found: self.header.sender,
            });
        }
        self.open_unchecked(recipient, sender)
    }

    /// The cryptographic part of [`Envelope::open`], without the key id comparison, so tests
    /// can show that the header is bound by the cryptography and not only by that check.
    fn open_unchecked(
        &self,
        recipient: &IdentityKeyPair,
        sender: &IdentityPublicKey,
    ) -> Result<Vec<u8>, CryptoError> {
        let padded = Zeroizing::new(hpke_auth::open(
            self.header.suite,
            &recipient.to_x25519(),
            &sender.to_x25519(),
            &self.enc,
            &self.header.info(),
            &[],
            &self.ciphertext,
        )?);
        Ok(padding::unpad(&padded)?.to_vec())
    }

    /// Opens the envelope and records it in `window` at time `now`: the receive path.
    ///
    /// The window is consulted first (a cheap, read-only filter: [`CryptoError::Replay`],
    /// [`CryptoError::TooOld`], [`CryptoError::TooFarInFuture`]), then the envelope is
    /// opened as by [`Envelope::open`], and only an envelope that authenticated is recorded,
    /// so forgeries cannot fill the window.
    pub fn open_and_accept(
        &self,
        recipient: &IdentityKeyPair,
        sender: &IdentityPublicKey,
        window: &mut ReplayWindow,
        now: u64,
    ) -> Result<Vec<u8>, CryptoError> {
        let h = &self.header;
        window.check(&h.sender, &h.id, h.timestamp, now)?;
        let message = self.open(recipient, sender)?;
        window.accept(&h.sender, &h.id, h.timestamp, now)?;
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const NOW: u64 = 1_800_000_000;

    struct Parties {
        rng: ChaCha20Rng,
        alice: IdentityKeyPair,
        bob: IdentityKeyPair,
        mallory: IdentityKeyPair,
    }

    fn parties(seed: u64) -> Parties {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let alice = IdentityKeyPair::generate(&mut rng);
        let bob = IdentityKeyPair::generate(&mut rng);
        let mallory = IdentityKeyPair::generate(&mut rng);
        Parties {
            rng,
            alice,
            bob,
            mallory,
        }
    }

    #[test]
    fn header_is_bound_by_the_cryptography() {
        let mut p = parties(21);
        let env = Envelope::seal(
            &mut p.rng,
            AeadSuite::Aes256Gcm,
            &p.alice,
            &p.bob.public_key(),
            NOW,
            b"bound",
        )
        .unwrap();
        assert_eq!(
            env.open_unchecked(&p.bob, &p.alice.public_key()).unwrap(),
            b"bound"
        );
        let h = env.header;
        let tampered = [
            EnvelopeHeader {
                suite: AeadSuite::ChaCha20Poly1305,
                ..h
            },
            EnvelopeHeader {
                sender: p.mallory.public_key().address(),
                ..h
            },
            EnvelopeHeader {
                recipient: p.mallory.public_key().address(),
                ..h
            },
            EnvelopeHeader {
                id: EnvelopeId::from_bytes([0; ID_LEN]),
                ..h
            },
            EnvelopeHeader {
                timestamp: NOW + 1,
                ..h
            },
        ];
        for header in tampered {
            let forged = Envelope {
                header,
                ..env.clone()
            };
            // Even skipping the key id check, the keys still open nothing.
            assert_eq!(
                forged.open_unchecked(&p.bob, &p.alice.public_key()),
                Err(CryptoError::AeadFailure),
                "{header:?}"
            );
        }
    }

    #[test]
    fn encoding_layout() {
        let mut p = parties(22);
        let env = Envelope::seal(
            &mut p.rng,
            AeadSuite::ChaCha20Poly1305,
            &p.alice,
            &p.bob.public_key(),
            0x0102_0304_0506_0708,
            b"",
        )
        .unwrap();
        let bytes = env.to_bytes();
        assert_eq!(bytes.len(), MIN_ENCODED_LEN);
        assert_eq!(bytes.len(), env.encoded_len());
        assert_eq!(bytes[0], VERSION);
        assert_eq!(bytes[1], 2);
        assert_eq!(&bytes[2..34], p.alice.public_key().address().as_bytes());
        assert_eq!(&bytes[34..66], p.bob.public_key().address().as_bytes());
        assert_eq!(&bytes[66..82], &env.header.id.to_bytes());
        assert_eq!(&bytes[82..90], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&bytes[90..122], &env.enc);
        assert_eq!(&bytes[122..126], &(256u32 + 16).to_be_bytes());
        assert_eq!(Envelope::from_bytes(&bytes).unwrap(), env);
        assert_eq!(HEADER_LEN, 90);
        assert_eq!(PREFIX_LEN, 126);
    }

    #[test]
    fn debug_shows_no_ciphertext() {
        let mut p = parties(23);
        let env = Envelope::seal(
            &mut p.rng,
            AeadSuite::Aes256Gcm,
            &p.alice,
            &p.bob.public_key(),
            NOW,
            b"x",
        )
        .unwrap();
        let dbg = format!("{env:?}");
        assert!(dbg.contains("ciphertext_len: 272"));
        assert!(!dbg.contains(&data_encoding::HEXLOWER.encode(&env.ciphertext[..8])));
    }
}
