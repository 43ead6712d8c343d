//! Wire encodings of ratchet messages. All integers are big-endian; every decoder checks the
//! total length against [`MAX_MESSAGE_LEN`] before it allocates, never panics and rejects
//! trailing bytes. The formats are specified in `docs/protocol/zentalk-ratchet.md`.
//!
//! ```text
//! Message (plain header)       0x01 || header (40) || ciphertext || tag (16)
//! Message (encrypted header)   0x03 || header nonce (12) || encrypted header (40 + 16)
//!                                   || ciphertext || tag (16)
//! Initial (prekey) message     0x02 || suite (1) || flags (1) || IK_A (32) || EK_A (32)
//!                                   || signed prekey id (4) || [one-time prekey id (4)]
//!                                   || Message (either form above, with its type byte)
//! header                       ratchet public key (32) || PN (4) || N (4)
//! ```

use zentalk_crypto::{AeadSuite, IdentityPublicKey, NONCE_LEN, TAG_LEN, X25519PublicKey};

use crate::DecodeError;

/// Type byte of a [`RatchetMessage`] with a plaintext header.
pub const TYPE_MESSAGE: u8 = 0x01;
/// Type byte of a [`PrekeyMessage`] (the initial message of a session).
pub const TYPE_PREKEY_MESSAGE: u8 = 0x02;
/// Type byte of a [`RatchetMessage`] with an encrypted header.
pub const TYPE_HEADER_ENCRYPTED_MESSAGE: u8 = 0x03;

/// Length of a ratchet header: public key (32) || PN (u32 BE) || N (u32 BE).
pub const HEADER_LEN: usize = 40;
/// Length of an encrypted header: header || tag.
pub const ENCRYPTED_HEADER_LEN: usize = HEADER_LEN + TAG_LEN;
/// Largest plaintext a session or group session encrypts (1 MiB).
pub const MAX_PLAINTEXT_LEN: usize = 1 << 20;
/// Largest encoded message any decoder accepts: the largest plaintext plus every header.
pub const MAX_MESSAGE_LEN: usize = MAX_PLAINTEXT_LEN + 512;

/// Flag bit of a [`PrekeyMessage`]: a one-time prekey id follows the signed prekey id.
pub const FLAG_ONE_TIME_PREKEY: u8 = 0x01;
/// Flag bit of a [`PrekeyMessage`]: the session uses header encryption.
pub const FLAG_HEADER_ENCRYPTION: u8 = 0x02;
const KNOWN_FLAGS: u8 = FLAG_ONE_TIME_PREKEY | FLAG_HEADER_ENCRYPTION;

/// A bounds-checked reader over a byte slice (the only decoder in this crate).
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str, max: usize) -> Result<Self, DecodeError> {
        if buf.len() > max {
            return Err(DecodeError::TooLong {
                what,
                max,
                found: buf.len(),
            });
        }
        Ok(Self { buf, what })
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::TooShort {
                what: self.what,
                expected: n,
                found: self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array::<4>()?))
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what: self.what,
                found: self.buf.len(),
            })
        }
    }
}

pub(crate) fn identity_key(
    bytes: &[u8; 32],
    what: &'static str,
) -> Result<IdentityPublicKey, DecodeError> {
    IdentityPublicKey::from_bytes(bytes).map_err(|_| DecodeError::InvalidIdentityKey { what })
}

pub(crate) fn suite_from_code(code: u8) -> Result<AeadSuite, DecodeError> {
    AeadSuite::from_wire_code(code).map_err(|_| DecodeError::UnknownSuite { found: code })
}

/// The Double Ratchet header: the sender's current ratchet public key, the length of its
/// previous sending chain (PN) and this message's index in the current chain (N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The sender's ratchet public key.
    pub ratchet_key: X25519PublicKey,
    /// Number of messages in the sender's previous sending chain (PN).
    pub previous_chain_length: u32,
    /// Index of this message in the current sending chain (N).
    pub index: u32,
}

impl Header {
    /// The 40-byte encoding: key || PN (u32 BE) || N (u32 BE).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..32].copy_from_slice(self.ratchet_key.as_bytes());
        out[32..36].copy_from_slice(&self.previous_chain_length.to_be_bytes());
        out[36..].copy_from_slice(&self.index.to_be_bytes());
        out
    }

    /// Parses the 40-byte encoding (any 40 bytes parse).
    pub fn from_bytes(bytes: &[u8; HEADER_LEN]) -> Self {
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[..32]);
        let mut pn = [0u8; 4];
        pn.copy_from_slice(&bytes[32..36]);
        let mut n = [0u8; 4];
        n.copy_from_slice(&bytes[36..]);
        Self {
            ratchet_key: X25519PublicKey::from_bytes(key),
            previous_chain_length: u32::from_be_bytes(pn),
            index: u32::from_be_bytes(n),
        }
    }
}

/// The header part of a [`RatchetMessage`]: plaintext, or encrypted (Double Ratchet section 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageHeader {
    /// A plaintext 40-byte header.
    Plain(Header),
    /// An encrypted header: a random 12-byte nonce and the sealed 40-byte header with its tag.
    Encrypted {
        /// The AEAD nonce of the header.
        nonce: [u8; NONCE_LEN],
        /// The sealed header (40 bytes) and its tag (16 bytes).
        sealed: [u8; ENCRYPTED_HEADER_LEN],
    },
}

/// A Double Ratchet message: a header and the AEAD ciphertext (with its tag) of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatchetMessage {
    pub(crate) header: MessageHeader,
    pub(crate) ciphertext: Vec<u8>,
}

impl RatchetMessage {
    /// The header (plaintext or encrypted).
    pub fn header(&self) -> &MessageHeader {
        &self.header
    }

    /// The body's ciphertext followed by its 16-byte tag.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// Length of the encoding.
    pub fn encoded_len(&self) -> usize {
        1 + match self.header {
            MessageHeader::Plain(_) => HEADER_LEN,
            MessageHeader::Encrypted { .. } => NONCE_LEN + ENCRYPTED_HEADER_LEN,
        } + self.ciphertext.len()
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match &self.header {
            MessageHeader::Plain(h) => {
                out.push(TYPE_MESSAGE);
                out.extend_from_slice(&h.to_bytes());
            }
            MessageHeader::Encrypted { nonce, sealed } => {
                out.push(TYPE_HEADER_ENCRYPTED_MESSAGE);
                out.extend_from_slice(nonce);
                out.extend_from_slice(sealed);
            }
        }
        out.extend_from_slice(&self.ciphertext);
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Parses a message (type 0x01 or 0x03). The ciphertext must hold at least a tag.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "ratchet message", MAX_MESSAGE_LEN)?;
        Self::read(&mut r)
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let header = match r.u8()? {
            TYPE_MESSAGE => MessageHeader::Plain(Header::from_bytes(&r.array()?)),
            TYPE_HEADER_ENCRYPTED_MESSAGE => MessageHeader::Encrypted {
                nonce: r.array()?,
                sealed: r.array()?,
            },
            found => {
                return Err(DecodeError::UnexpectedType {
                    expected: "ratchet message (0x01 or 0x03)",
                    found,
                });
            }
        };
        if r.remaining() < TAG_LEN {
            return Err(DecodeError::TooShort {
                what: "ratchet message ciphertext",
                expected: TAG_LEN,
                found: r.remaining(),
            });
        }
        let ciphertext = r.rest().to_vec();
        Ok(Self { header, ciphertext })
    }
}

/// The initial message of a session: what the responder needs to run X3DH, followed by the
/// first ratchet message. The initiator sends this form until it has received a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrekeyMessage {
    pub(crate) suite: AeadSuite,
    pub(crate) identity_key: IdentityPublicKey,
    pub(crate) base_key: X25519PublicKey,
    pub(crate) signed_prekey_id: u32,
    pub(crate) one_time_prekey_id: Option<u32>,
    pub(crate) message: RatchetMessage,
}

impl PrekeyMessage {
    /// The AEAD suite the session uses.
    pub fn suite(&self) -> AeadSuite {
        self.suite
    }
    /// The initiator's Ed25519 identity key.
    pub fn identity_key(&self) -> IdentityPublicKey {
        self.identity_key
    }
    /// The initiator's X3DH ephemeral public key (EK_A).
    pub fn base_key(&self) -> X25519PublicKey {
        self.base_key
    }
    /// Id of the responder's signed prekey that was used.
    pub fn signed_prekey_id(&self) -> u32 {
        self.signed_prekey_id
    }
    /// Id of the responder's one-time prekey that was used, if any.
    pub fn one_time_prekey_id(&self) -> Option<u32> {
        self.one_time_prekey_id
    }
    /// Whether the session uses header encryption.
    pub fn header_encryption(&self) -> bool {
        matches!(self.message.header, MessageHeader::Encrypted { .. })
    }
    /// The first ratchet message.
    pub fn message(&self) -> &RatchetMessage {
        &self.message
    }

    /// The encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(75 + 4 + self.message.encoded_len());
        out.push(TYPE_PREKEY_MESSAGE);
        out.push(self.suite.wire_code());
        let mut flags = 0;
        if self.one_time_prekey_id.is_some() {
            flags |= FLAG_ONE_TIME_PREKEY;
        }
        if self.header_encryption() {
            flags |= FLAG_HEADER_ENCRYPTION;
        }
        out.push(flags);
        out.extend_from_slice(self.identity_key.as_bytes());
        out.extend_from_slice(self.base_key.as_bytes());
        out.extend_from_slice(&self.signed_prekey_id.to_be_bytes());
        if let Some(id) = self.one_time_prekey_id {
            out.extend_from_slice(&id.to_be_bytes());
        }
        self.message.encode_into(&mut out);
        out
    }

    /// Parses an initial message (type 0x02).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "initial message", MAX_MESSAGE_LEN)?;
        match r.u8()? {
            TYPE_PREKEY_MESSAGE => Self::read_body(&mut r),
            found => Err(DecodeError::UnexpectedType {
                expected: "initial message (0x02)",
                found,
            }),
        }
    }

    fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let suite = suite_from_code(r.u8()?)?;
        let flags = r.u8()?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(DecodeError::UnknownFlags {
                allowed: KNOWN_FLAGS,
                found: flags,
            });
        }
        let identity_key = identity_key(&r.array()?, "initial message identity key")?;
        let base_key = X25519PublicKey::from_bytes(r.array()?);
        let signed_prekey_id = r.u32()?;
        let one_time_prekey_id = if flags & FLAG_ONE_TIME_PREKEY != 0 {
            Some(r.u32()?)
        } else {
            None
        };
        let message = RatchetMessage::read(r)?;
        let he = flags & FLAG_HEADER_ENCRYPTION != 0;
        if he != matches!(message.header, MessageHeader::Encrypted { .. }) {
            return Err(DecodeError::UnexpectedType {
                expected: if he {
                    "header-encrypted message (0x03) as the flags say"
                } else {
                    "plain-header message (0x01) as the flags say"
                },
                found: if he {
                    TYPE_MESSAGE
                } else {
                    TYPE_HEADER_ENCRYPTED_MESSAGE
                },
            });
        }
        Ok(Self {
            suite,
            identity_key,
            base_key,
            signed_prekey_id,
            one_time_prekey_id,
            message,
        })
    }
}

/// Any message a [`crate::Session`] produces or consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "short-lived values; boxing would cost an allocation per initial message"
)]
pub enum Message {
    /// The initial form, sent until the initiator has received a reply.
    Prekey(PrekeyMessage),
    /// An ordinary ratchet message.
    Normal(RatchetMessage),
}

impl Message {
    /// The encoding (the first byte tells the form).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::Prekey(m) => m.to_bytes(),
            Self::Normal(m) => m.to_bytes(),
        }
    }

    /// Parses either form from its type byte.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.first() {
            Some(&TYPE_PREKEY_MESSAGE) => PrekeyMessage::from_bytes(bytes).map(Self::Prekey),
            _ => RatchetMessage::from_bytes(bytes).map(Self::Normal),
        }
    }

    /// The ratchet message (inside the initial message for the prekey form).
    pub fn ratchet_message(&self) -> &RatchetMessage {
        match self {
            Self::Prekey(m) => &m.message,
            Self::Normal(m) => m,
        }
    }
}
