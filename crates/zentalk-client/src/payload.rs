//! The client payload: what travels inside the onion (opaque to relays).
//!
//! Outer layer (the onion's delivered message): `PAYLOAD_VERSION || ratchet message bytes`.
//! Inner layer (the ratchet plaintext):
//! `seq u64 BE || message id (16 random bytes, no clock) || kind u8 || body`.
//! A `seq` of 0 marks an unsequenced control message (receipts, typing, presence); every
//! other message carries the next number of its conversation, starting at 1, so the receiver
//! delivers in order, exactly once, and sees gaps. See `docs/protocol/zentalk-client.md`.

use crate::ClientError;
use crate::mailbox::MailboxAddr;

/// Version byte of the outer payload.
pub const PAYLOAD_VERSION: u8 = 1;
/// Length of a message id.
pub const MESSAGE_ID_LEN: usize = 16;
/// Length of the inner fixed part: seq, id, kind.
pub const INNER_HEADER_LEN: usize = 8 + MESSAGE_ID_LEN + 1;
/// Largest inner body. With the ratchet's prekey-message overhead the outer payload stays
/// within `zentalk_onion::MAX_MESSAGE_LEN` (tested).
pub const MAX_BODY_LEN: usize = 1800;
/// Largest text a message carries (UTF-8 bytes).
pub const MAX_TEXT_LEN: usize = MAX_BODY_LEN;
/// Most message ids one receipt carries.
pub const MAX_RECEIPT_IDS: usize = 64;

/// A 16-byte random message id.
pub type MessageId = [u8; MESSAGE_ID_LEN];

/// What an inner message is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Body {
    /// A text message (sequenced).
    Text(String),
    /// The sender stored these messages (unsequenced).
    DeliveryReceipt(Vec<MessageId>),
    /// The sender's user read these messages (unsequenced).
    ReadReceipt(Vec<MessageId>),
    /// The sender is (true) or stopped (false) typing (unsequenced).
    Typing(bool),
    /// The sender is online (true) or going offline (false) (unsequenced).
    Presence(bool),
    /// From now on, write to me at this mailbox (sequenced).
    MailboxHandover(MailboxAddr),
    /// The sender started a fresh session (sequenced).
    SessionReset,
}

impl Body {
    /// Wire code of the kind.
    pub fn kind(&self) -> u8 {
        match self {
            Body::Text(_) => 1,
            Body::DeliveryReceipt(_) => 2,
            Body::ReadReceipt(_) => 3,
            Body::Typing(_) => 4,
            Body::Presence(_) => 5,
            Body::MailboxHandover(_) => 6,
            Body::SessionReset => 7,
        }
    }

    /// Whether the kind takes a place in the conversation's sequence (and is retried until a
    /// delivery receipt arrives).
    pub fn is_sequenced(&self) -> bool {
        matches!(
            self,
            Body::Text(_) | Body::MailboxHandover(_) | Body::SessionReset
        )
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Body::Text(t) => out.extend_from_slice(t.as_bytes()),
            Body::DeliveryReceipt(ids) | Body::ReadReceipt(ids) => {
                for id in ids {
                    out.extend_from_slice(id);
                }
            }
            Body::Typing(b) | Body::Presence(b) => out.push(u8::from(*b)),
            Body::MailboxHandover(m) => out.extend_from_slice(&m.to_bytes()),
            Body::SessionReset => {}
        }
    }

    fn decode(kind: u8, b: &[u8]) -> Result<Self, ClientError> {
        let flag = |name: &'static str| match b {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(ClientError::MalformedBody {
                kind: name,
                reason: "expected one byte 0 or 1",
            }),
        };
        let ids = |name: &'static str| -> Result<Vec<MessageId>, ClientError> {
            if b.is_empty() || !b.len().is_multiple_of(MESSAGE_ID_LEN) {
                return Err(ClientError::MalformedBody {
                    kind: name,
                    reason: "not a non-empty list of 16-byte ids",
                });
            }
            if b.len() / MESSAGE_ID_LEN > MAX_RECEIPT_IDS {
                return Err(ClientError::MalformedBody {
                    kind: name,
                    reason: "more than MAX_RECEIPT_IDS ids",
                });
            }
            Ok(b.chunks_exact(MESSAGE_ID_LEN)
                .map(|c| {
                    let mut id = [0u8; MESSAGE_ID_LEN];
                    id.copy_from_slice(c);
                    id
                })
                .collect())
        };
        Ok(match kind {
            1 => Body::Text(String::from_utf8(b.to_vec()).map_err(|_| {
                ClientError::MalformedBody {
                    kind: "text",
                    reason: "not UTF-8",
                }
            })?),
            2 => Body::DeliveryReceipt(ids("delivery receipt")?),
            3 => Body::ReadReceipt(ids("read receipt")?),
            4 => Body::Typing(flag("typing")?),
            5 => Body::Presence(flag("presence")?),
            6 => {
                let a: &[u8; MailboxAddr::LEN] =
                    b.try_into().map_err(|_| ClientError::MalformedBody {
                        kind: "mailbox handover",
                        reason: "expected 64 bytes",
                    })?;
                Body::MailboxHandover(MailboxAddr::from_bytes(a))
            }
            7 if b.is_empty() => Body::SessionReset,
            7 => {
                return Err(ClientError::MalformedBody {
                    kind: "session reset",
                    reason: "expected an empty body",
                });
            }
            k => return Err(ClientError::UnknownKind(k)),
        })
    }
}

/// One inner message (the ratchet plaintext).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inner {
    /// Position in the conversation (from 1), or 0 for unsequenced control messages.
    pub seq: u64,
    /// Random message id; the same on every retry.
    pub id: MessageId,
    /// Kind and body.
    pub body: Body,
}

impl Inner {
    /// Encodes the inner message.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(INNER_HEADER_LEN + 64);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.id);
        out.push(self.body.kind());
        self.body.encode(&mut out);
        out
    }

    /// Decodes an inner message; sequenced kinds must have `seq > 0`, control kinds `seq = 0`.
    pub fn from_bytes(b: &[u8]) -> Result<Self, ClientError> {
        if b.len() < INNER_HEADER_LEN || b.len() > INNER_HEADER_LEN + MAX_BODY_LEN {
            return Err(ClientError::PayloadLength {
                min: INNER_HEADER_LEN,
                max: INNER_HEADER_LEN + MAX_BODY_LEN,
                found: b.len(),
            });
        }
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[..8]);
        let seq = u64::from_be_bytes(s);
        let mut id = [0u8; MESSAGE_ID_LEN];
        id.copy_from_slice(&b[8..24]);
        let body = Body::decode(b[24], &b[INNER_HEADER_LEN..])?;
        if body.is_sequenced() != (seq > 0) {
            return Err(ClientError::MalformedBody {
                kind: "inner",
                reason: "sequence number does not match the kind",
            });
        }
        Ok(Self { seq, id, body })
    }
}

/// Wraps ratchet message bytes into the outer payload.
pub fn seal_outer(ratchet_message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + ratchet_message.len());
    out.push(PAYLOAD_VERSION);
    out.extend_from_slice(ratchet_message);
    out
}

/// Checks the outer version byte and returns the ratchet message bytes.
pub fn open_outer(payload: &[u8]) -> Result<&[u8], ClientError> {
    match payload.split_first() {
        None => Err(ClientError::PayloadLength {
            min: 1,
            max: zentalk_onion::MAX_MESSAGE_LEN,
            found: 0,
        }),
        Some((&PAYLOAD_VERSION, rest)) => Ok(rest),
        Some((&v, _)) => Err(ClientError::PayloadVersion {
            expected: PAYLOAD_VERSION,
            found: v,
        }),
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use zentalk_crypto::NodeId;
    use zentalk_onion::MailboxId;
    use zentalk_ratchet::{Account, SessionConfig};

    use super::*;

    fn all() -> Vec<Inner> {
        let m = MailboxAddr {
            relay: NodeId::from_bytes([3; 32]),
            mailbox: MailboxId::from_bytes([4; 32]),
        };
        vec![
            Inner {
                seq: 1,
                id: [1; 16],
                body: Body::Text("héllo".into()),
            },
            Inner {
                seq: 0,
                id: [2; 16],
                body: Body::DeliveryReceipt(vec![[7; 16], [8; 16]]),
            },
            Inner {
                seq: 0,
                id: [3; 16],
                body: Body::ReadReceipt(vec![[7; 16]]),
            },
            Inner {
                seq: 0,
                id: [4; 16],
                body: Body::Typing(true),
            },
            Inner {
                seq: 0,
                id: [5; 16],
                body: Body::Presence(false),
            },
            Inner {
                seq: 9,
                id: [6; 16],
                body: Body::MailboxHandover(m),
            },
            Inner {
                seq: 10,
                id: [7; 16],
                body: Body::SessionReset,
            },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for i in all() {
            assert_eq!(Inner::from_bytes(&i.to_bytes()).unwrap(), i);
        }
    }

    #[test]
    fn malformed_inner_is_refused() {
        assert!(matches!(
            Inner::from_bytes(&[0; 3]),
            Err(ClientError::PayloadLength { .. })
        ));
        let mut b = all()[0].to_bytes();
        b[24] = 99;
        assert!(matches!(
            Inner::from_bytes(&b),
            Err(ClientError::UnknownKind(99))
        ));
        // A text with seq 0, a receipt with a seq.
        let mut t = all()[0].to_bytes();
        t[..8].copy_from_slice(&0u64.to_be_bytes());
        assert!(matches!(
            Inner::from_bytes(&t),
            Err(ClientError::MalformedBody { .. })
        ));
        let mut r = all()[1].to_bytes();
        r[..8].copy_from_slice(&5u64.to_be_bytes());
        assert!(matches!(
            Inner::from_bytes(&r),
            Err(ClientError::MalformedBody { .. })
        ));
        // Receipt with a partial id, typing with two bytes, handover too short, bad UTF-8.
        let mut p = all()[1].to_bytes();
        p.pop();
        assert!(Inner::from_bytes(&p).is_err());
        let mut ty = all()[3].to_bytes();
        ty.push(0);
        assert!(Inner::from_bytes(&ty).is_err());
        let mut h = all()[5].to_bytes();
        h.pop();
        assert!(Inner::from_bytes(&h).is_err());
        let mut u = all()[0].to_bytes();
        u.push(0xff);
        assert!(Inner::from_bytes(&u).is_err());
        let mut big = all()[0].to_bytes();
        big.resize(INNER_HEADER_LEN + MAX_BODY_LEN + 1, b'a');
        assert!(matches!(
            Inner::from_bytes(&big),
            Err(ClientError::PayloadLength { .. })
        ));
    }

    #[test]
    fn outer_version_is_checked() {
        assert_eq!(open_outer(&seal_outer(b"abc")).unwrap(), b"abc");
        assert!(matches!(
            open_outer(&[]),
            Err(ClientError::PayloadLength { .. })
        ));
        assert!(matches!(
            open_outer(&[2, 0]),
            Err(ClientError::PayloadVersion {
                expected: 1,
                found: 2
            })
        ));
    }

    #[test]
    fn largest_first_message_fits_one_onion_packet() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let alice = Account::new(&mut rng);
        let mut bob = Account::new(&mut rng);
        bob.generate_one_time_prekeys(&mut rng, 1);
        let mut s = alice
            .create_outbound_session(&mut rng, &bob.prekey_bundle(), SessionConfig::default())
            .unwrap();
        let inner = Inner {
            seq: 1,
            id: [0; 16],
            body: Body::Text("x".repeat(MAX_TEXT_LEN)),
        };
        let outer = seal_outer(&s.encrypt(&mut rng, &inner.to_bytes()).unwrap().to_bytes());
        assert!(
            outer.len() <= zentalk_onion::MAX_MESSAGE_LEN,
            "{}",
            outer.len()
        );
    }
}
