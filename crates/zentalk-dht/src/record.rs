//! Signed records bound to the key they are stored under.
//!
//! * A **relay descriptor** is signed by the relay's identity key and stored under the relay's
//!   node id, BLAKE2b-256(identity key): a storing node checks `key == BLAKE2b-256(signer)`.
//! * A **prekey bundle** is stored under a per-period *blinded* key, as Tor v3 onion-service
//!   descriptors are. For identity key `A` and period `p`: `h = SHA-512("zentalk-prekey-blind-v1"
//!   || A || p) mod l`, blinded key `A' = h·A`, storage key `K = BLAKE2b-256(
//!   "zentalk-prekey-index-v1" || A' || p)`. The owner signs with the blinded secret `h·a`; the
//!   bundle bytes are encrypted under `BLAKE2b-256("zentalk-prekey-enc-v1" || A || p)`. A
//!   storing node verifies the signature under `A'` and `K = H(A', p)` but never sees `A`: it
//!   cannot tell whose bundle it holds nor link two periods of one user. Whoever knows `A`
//!   (and so the address `H(A)`) derives `A'`, `K` and the decryption key.
//!
//! Every record is refused unless its signature verifies under its signer key *and* the
//! storage key is the one derived from that signer key, so nobody can write under another's
//! key; among valid versions the higher sequence number wins (see [`crate::store`]).

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use prost::Message;
use zentalk_crypto::hash::{blake2b_256, blake2b_256_parts};
use zentalk_crypto::{
    AeadKey, AeadSuite, BlindingFactor, CryptoRngCore, IdentityKeyPair, IdentityPublicKey,
    NONCE_LEN, NodeId, Signature, TAG_LEN,
};
use zentalk_wire::proto;

use crate::error::RecordError;

/// Largest record payload accepted (bytes).
pub const MAX_RECORD_PAYLOAD: usize = 1024;
/// Largest prekey bundle (plaintext) that fits a record: payload minus nonce and tag.
pub const MAX_PREKEY_BUNDLE: usize = MAX_RECORD_PAYLOAD - NONCE_LEN - TAG_LEN;
/// A record may not expire later than this after the time it is stored (36 hours).
pub const MAX_RECORD_TTL_MS: u64 = 36 * 3600 * 1000;
/// Recommended TTL of a relay descriptor (24 hours).
pub const RELAY_DESCRIPTOR_TTL_MS: u64 = 24 * 3600 * 1000;
/// Length of a prekey blinding period (24 hours).
pub const PREKEY_PERIOD_MS: u64 = 24 * 3600 * 1000;
/// A prekey record may outlive its period by this much (clock skew, lookups at the boundary).
pub const PREKEY_PERIOD_OVERLAP_MS: u64 = 3600 * 1000;
/// Owners republish their records this often (1 hour).
pub const REPUBLISH_INTERVAL_MS: u64 = 3600 * 1000;
/// Most addresses in a relay descriptor.
pub const MAX_RELAY_ADDRS: usize = 4;
/// Most onion keys (epochs) in a relay descriptor.
pub const MAX_ONION_KEYS: usize = 4;

const RECORD_DOMAIN: &[u8] = b"zentalk-dht-record-v1";
const BLIND_DOMAIN: &[u8] = b"zentalk-prekey-blind-v1";
const BLIND_NONCE_DOMAIN: &[u8] = b"zentalk-prekey-blind-nonce-v1";
const INDEX_DOMAIN: &[u8] = b"zentalk-prekey-index-v1";
const ENC_DOMAIN: &[u8] = b"zentalk-prekey-enc-v1";

/// Kind of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A relay descriptor under the relay's node id.
    RelayDescriptor,
    /// A prekey bundle under a blinded per-period key.
    PrekeyBundle,
}

impl RecordKind {
    fn code(self) -> u8 {
        match self {
            RecordKind::RelayDescriptor => 1,
            RecordKind::PrekeyBundle => 2,
        }
    }

    pub(crate) fn to_proto(self) -> proto::DhtRecordKind {
        match self {
            RecordKind::RelayDescriptor => proto::DhtRecordKind::RelayDescriptor,
            RecordKind::PrekeyBundle => proto::DhtRecordKind::PrekeyBundle,
        }
    }

    pub(crate) fn from_i32(v: i32) -> Result<Self, RecordError> {
        match v {
            1 => Ok(RecordKind::RelayDescriptor),
            2 => Ok(RecordKind::PrekeyBundle),
            other => Err(RecordError::UnknownKind(other)),
        }
    }
}

/// A signed DHT record (see the module doc for the bindings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Kind.
    pub kind: RecordKind,
    /// Storage key.
    pub key: NodeId,
    /// Ed25519 key that signed the record (identity, or blinded identity).
    pub signer: [u8; 32],
    /// Version; higher wins.
    pub sequence: u64,
    /// Unix ms after which the record is dead.
    pub expires_at_ms: u64,
    /// Prekey blinding period (0 for relay descriptors).
    pub period: u64,
    /// Kind-specific payload.
    pub payload: Bytes,
    /// Ed25519 signature over [`Record::signed_bytes`].
    pub signature: [u8; 64],
}

impl Record {
    /// The exact bytes the signature covers:
    /// `"zentalk-dht-record-v1" || kind u8 || key || signer || sequence u64 BE ||
    /// expires_at_ms u64 BE || period u64 BE || payload length u32 BE || payload`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(
            self.kind,
            &self.key,
            &self.signer,
            self.sequence,
            self.expires_at_ms,
            self.period,
            &self.payload,
        )
    }

    /// Checks everything a storing node can check: lengths, expiry window, key binding and
    /// signature. `now_ms` is Unix time in milliseconds.
    pub fn validate(&self, now_ms: u64) -> Result<(), RecordError> {
        if self.payload.len() > MAX_RECORD_PAYLOAD {
            return Err(RecordError::PayloadTooLarge {
                limit: MAX_RECORD_PAYLOAD,
                found: self.payload.len(),
            });
        }
        if self.expires_at_ms <= now_ms {
            return Err(RecordError::Expired {
                expires_at_ms: self.expires_at_ms,
                now_ms,
            });
        }
        let max = now_ms.saturating_add(MAX_RECORD_TTL_MS);
        if self.expires_at_ms > max {
            return Err(RecordError::TtlTooLong {
                expires_at_ms: self.expires_at_ms,
                max_ms: max,
            });
        }
        match self.kind {
            RecordKind::RelayDescriptor => {
                if self.period != 0 {
                    return Err(RecordError::BadPeriod { found: self.period });
                }
                if self.key.as_bytes() != &blake2b_256(&self.signer) {
                    return Err(RecordError::KeyNotBound);
                }
                RelayDescriptor::decode_payload(&self.payload)?;
            }
            RecordKind::PrekeyBundle => {
                let end = period_end_ms(self.period)
                    .ok_or(RecordError::BadPeriod { found: self.period })?;
                if self.expires_at_ms > end.saturating_add(PREKEY_PERIOD_OVERLAP_MS) {
                    return Err(RecordError::BadPeriod { found: self.period });
                }
                if self.key.as_bytes() != &prekey_index(&self.signer, self.period) {
                    return Err(RecordError::KeyNotBound);
                }
                if self.payload.len() < NONCE_LEN + TAG_LEN {
                    return Err(RecordError::BadLength {
                        what: "prekey payload",
                        expected: NONCE_LEN + TAG_LEN,
                        found: self.payload.len(),
                    });
                }
            }
        }
        let pk =
            IdentityPublicKey::from_bytes(&self.signer).map_err(|_| RecordError::BadSignerKey)?;
        pk.verify(&self.signed_bytes(), &Signature(self.signature))
            .map_err(|_| RecordError::BadSignature)
    }

    pub(crate) fn to_proto(&self) -> proto::DhtRecord {
        proto::DhtRecord {
            kind: self.kind.to_proto() as i32,
            key: Bytes::copy_from_slice(self.key.as_bytes()),
            signer_key: Bytes::copy_from_slice(&self.signer),
            sequence: self.sequence,
            expires_at_ms: self.expires_at_ms,
            period: self.period,
            payload: self.payload.clone(),
            signature: Bytes::copy_from_slice(&self.signature),
        }
    }

    /// Parses a record from its protobuf form (lengths only; call [`Record::validate`]).
    pub(crate) fn from_proto(p: &proto::DhtRecord) -> Result<Self, RecordError> {
        if p.payload.len() > MAX_RECORD_PAYLOAD {
            return Err(RecordError::PayloadTooLarge {
                limit: MAX_RECORD_PAYLOAD,
                found: p.payload.len(),
            });
        }
        Ok(Self {
            kind: RecordKind::from_i32(p.kind)?,
            key: NodeId::from_bytes(fixed::<32>("record key", &p.key)?),
            signer: fixed::<32>("signer key", &p.signer_key)?,
            sequence: p.sequence,
            expires_at_ms: p.expires_at_ms,
            period: p.period,
            payload: p.payload.clone(),
            signature: fixed::<64>("record signature", &p.signature)?,
        })
    }
}

fn fixed<const N: usize>(what: &'static str, b: &[u8]) -> Result<[u8; N], RecordError> {
    b.try_into().map_err(|_| RecordError::BadLength {
        what,
        expected: N,
        found: b.len(),
    })
}

fn signed_bytes(
    kind: RecordKind,
    key: &NodeId,
    signer: &[u8; 32],
    sequence: u64,
    expires_at_ms: u64,
    period: u64,
    payload: &[u8],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(RECORD_DOMAIN.len() + 1 + 64 + 24 + 4 + payload.len());
    m.extend_from_slice(RECORD_DOMAIN);
    m.push(kind.code());
    m.extend_from_slice(key.as_bytes());
    m.extend_from_slice(signer);
    m.extend_from_slice(&sequence.to_be_bytes());
    m.extend_from_slice(&expires_at_ms.to_be_bytes());
    m.extend_from_slice(&period.to_be_bytes());
    m.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    m.extend_from_slice(payload);
    m
}

// ---------------------------------------------------------------------------------------
// Relay descriptors

/// Relay capability bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities(u32);

impl Capabilities {
    /// Holds offline mailboxes.
    pub const MAILBOX: Capabilities = Capabilities(1);
    /// Stores media shards.
    pub const STORAGE: Capabilities = Capabilities(2);
    /// Store-nothing mode: forwards only, keeps a hash-only transit receipt.
    pub const STORE_NOTHING: Capabilities = Capabilities(4);
    const ALL: u32 = 7;

    /// From raw bits; unknown bits and mailbox + store-nothing together are refused.
    pub fn from_bits(bits: u32) -> Result<Self, RecordError> {
        if bits & !Self::ALL != 0 {
            return Err(RecordError::BadDescriptor("unknown capability bits"));
        }
        let c = Capabilities(bits);
        if c.contains(Self::MAILBOX) && c.contains(Self::STORE_NOTHING) {
            return Err(RecordError::BadDescriptor(
                "mailbox and store-nothing together",
            ));
        }
        Ok(c)
    }

    /// Raw bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// True if every bit of `other` is set.
    pub fn contains(self, other: Capabilities) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Capabilities {
    type Output = Capabilities;
    fn bitor(self, rhs: Self) -> Self {
        Capabilities(self.0 | rhs.0)
    }
}

/// What a relay publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayDescriptor {
    /// Where it accepts links (1..=[`MAX_RELAY_ADDRS`]).
    pub addrs: Vec<SocketAddr>,
    /// Noise static X25519 public key.
    pub noise_static_key: [u8; 32],
    /// Onion public keys per epoch (1..=[`MAX_ONION_KEYS`]).
    pub onion_keys: Vec<(u64, [u8; 32])>,
    /// Capabilities.
    pub capabilities: Capabilities,
}

pub(crate) fn addr_to_proto(a: &SocketAddr) -> proto::DhtAddr {
    let ip = match a.ip() {
        IpAddr::V4(v4) => Bytes::copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => Bytes::copy_from_slice(&v6.octets()),
    };
    proto::DhtAddr {
        ip,
        port: u32::from(a.port()),
    }
}

pub(crate) fn addr_from_proto(a: &proto::DhtAddr) -> Option<SocketAddr> {
    let port = u16::try_from(a.port).ok().filter(|p| *p != 0)?;
    let ip: IpAddr = match a.ip.len() {
        4 => {
            let b: [u8; 4] = a.ip.as_ref().try_into().ok()?;
            IpAddr::from(b)
        }
        16 => {
            let b: [u8; 16] = a.ip.as_ref().try_into().ok()?;
            IpAddr::from(b)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

impl RelayDescriptor {
    fn validate(&self) -> Result<(), RecordError> {
        if self.addrs.is_empty() || self.addrs.len() > MAX_RELAY_ADDRS {
            return Err(RecordError::BadDescriptor("address count out of range"));
        }
        if self.onion_keys.is_empty() || self.onion_keys.len() > MAX_ONION_KEYS {
            return Err(RecordError::BadDescriptor("onion key count out of range"));
        }
        Capabilities::from_bits(self.capabilities.bits())?;
        Ok(())
    }

    /// Encodes the payload (protobuf `DhtRelayDescriptor`).
    pub fn encode_payload(&self) -> Result<Bytes, RecordError> {
        self.validate()?;
        let p = proto::DhtRelayDescriptor {
            addrs: self.addrs.iter().map(addr_to_proto).collect(),
            noise_static_key: Bytes::copy_from_slice(&self.noise_static_key),
            onion_keys: self
                .onion_keys
                .iter()
                .map(|(epoch, k)| proto::DhtOnionKey {
                    epoch: *epoch,
                    public_key: Bytes::copy_from_slice(k),
                })
                .collect(),
            capabilities: self.capabilities.bits(),
        };
        let bytes = p.encode_to_vec();
        if bytes.len() > MAX_RECORD_PAYLOAD {
            return Err(RecordError::PayloadTooLarge {
                limit: MAX_RECORD_PAYLOAD,
                found: bytes.len(),
            });
        }
        Ok(Bytes::from(bytes))
    }

    /// Decodes and checks a payload.
    pub fn decode_payload(payload: &[u8]) -> Result<Self, RecordError> {
        if payload.len() > MAX_RECORD_PAYLOAD {
            return Err(RecordError::PayloadTooLarge {
                limit: MAX_RECORD_PAYLOAD,
                found: payload.len(),
            });
        }
        let p = proto::DhtRelayDescriptor::decode(payload)
            .map_err(|_| RecordError::BadDescriptor("not a DhtRelayDescriptor"))?;
        if p.addrs.len() > MAX_RELAY_ADDRS || p.onion_keys.len() > MAX_ONION_KEYS {
            return Err(RecordError::BadDescriptor("too many entries"));
        }
        let addrs = p
            .addrs
            .iter()
            .map(addr_from_proto)
            .collect::<Option<Vec<_>>>()
            .ok_or(RecordError::BadDescriptor("bad address"))?;
        let onion_keys = p
            .onion_keys
            .iter()
            .map(|k| Ok((k.epoch, fixed::<32>("onion key", &k.public_key)?)))
            .collect::<Result<Vec<_>, RecordError>>()?;
        let d = RelayDescriptor {
            addrs,
            noise_static_key: fixed::<32>("noise static key", &p.noise_static_key)?,
            onion_keys,
            capabilities: Capabilities::from_bits(p.capabilities)?,
        };
        d.validate()?;
        Ok(d)
    }

    /// Signs the descriptor as `identity`, stored under `NodeId::of(identity)`.
    pub fn sign(
        &self,
        identity: &IdentityKeyPair,
        sequence: u64,
        expires_at_ms: u64,
    ) -> Result<Record, RecordError> {
        let payload = self.encode_payload()?;
        let signer = identity.public_key().to_bytes();
        let key = NodeId::from_bytes(blake2b_256(&signer));
        let kind = RecordKind::RelayDescriptor;
        let msg = signed_bytes(kind, &key, &signer, sequence, expires_at_ms, 0, &payload);
        let signature = identity.sign(&msg).to_bytes();
        Ok(Record {
            kind,
            key,
            signer,
            sequence,
            expires_at_ms,
            period: 0,
            payload,
            signature,
        })
    }

    /// Opens a relay-descriptor record after validating it: the relay identity and its
    /// descriptor.
    pub fn from_record(
        record: &Record,
        now_ms: u64,
    ) -> Result<(IdentityPublicKey, RelayDescriptor), RecordError> {
        if record.kind != RecordKind::RelayDescriptor {
            return Err(RecordError::UnknownKind(i32::from(record.kind.code())));
        }
        record.validate(now_ms)?;
        let id =
            IdentityPublicKey::from_bytes(&record.signer).map_err(|_| RecordError::BadSignerKey)?;
        Ok((id, RelayDescriptor::decode_payload(&record.payload)?))
    }
}

// ---------------------------------------------------------------------------------------
// Prekey bundles under blinded keys

/// The blinding period containing `now_ms`.
pub fn prekey_period(now_ms: u64) -> u64 {
    now_ms / PREKEY_PERIOD_MS
}

fn period_end_ms(period: u64) -> Option<u64> {
    period.checked_add(1)?.checked_mul(PREKEY_PERIOD_MS)
}

fn blind_factor(identity: &[u8; 32], period: u64) -> BlindingFactor {
    BlindingFactor::derive(BLIND_DOMAIN, &[identity, &period.to_be_bytes()])
}

fn blinded_public(identity: &[u8; 32], period: u64) -> Result<[u8; 32], RecordError> {
    let key = IdentityPublicKey::from_bytes(identity).map_err(|_| RecordError::BadSignerKey)?;
    key.blind(&blind_factor(identity, period))
        .map(|k| k.to_bytes())
        .map_err(|_| RecordError::BadSignerKey)
}

fn prekey_index(blinded: &[u8; 32], period: u64) -> [u8; 32] {
    blake2b_256_parts(&[INDEX_DOMAIN, blinded, &period.to_be_bytes()])
}

fn prekey_aead_key(identity: &[u8; 32], period: u64) -> AeadKey {
    let mut k = blake2b_256_parts(&[ENC_DOMAIN, identity, &period.to_be_bytes()]);
    AeadKey::new(&mut k)
}

/// Ed25519 signature by the blinded secret `h·a` (Tor rend-spec-v3 appendix A.2 style): the
/// nonce prefix is re-derived from the identity prefix and `h` so it never repeats a nonce
/// of the unblinded key.
fn blinded_sign(
    identity: &IdentityKeyPair,
    period: u64,
    msg: &[u8],
) -> Result<([u8; 32], [u8; 64]), RecordError> {
    let factor = blind_factor(&identity.public_key().to_bytes(), period);
    let blinded = identity
        .blind(&factor, BLIND_NONCE_DOMAIN)
        .map_err(|_| RecordError::BadSignerKey)?;
    Ok((
        blinded.public_key().to_bytes(),
        blinded.sign(msg).to_bytes(),
    ))
}

/// Where a user's prekey bundle lives in one period, computed from the user's identity public
/// key (32 bytes, as short as the address it hashes to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrekeyLocator {
    identity: [u8; 32],
    period: u64,
    blinded: [u8; 32],
    key: NodeId,
}

impl PrekeyLocator {
    /// Derives the blinded key and storage key of `identity` for `period`.
    pub fn new(identity: &IdentityPublicKey, period: u64) -> Result<Self, RecordError> {
        let identity = identity.to_bytes();
        let blinded = blinded_public(&identity, period)?;
        Ok(Self {
            identity,
            period,
            blinded,
            key: NodeId::from_bytes(prekey_index(&blinded, period)),
        })
    }

    /// The DHT key to look up.
    pub fn key(&self) -> NodeId {
        self.key
    }

    /// The period.
    pub fn period(&self) -> u64 {
        self.period
    }

    /// The blinded public key that signs this period's record.
    pub fn blinded_key(&self) -> [u8; 32] {
        self.blinded
    }

    /// Validates a record found under [`PrekeyLocator::key`] and decrypts the bundle.
    pub fn open(&self, record: &Record, now_ms: u64) -> Result<Vec<u8>, RecordError> {
        if record.kind != RecordKind::PrekeyBundle {
            return Err(RecordError::UnknownKind(i32::from(record.kind.code())));
        }
        if record.key != self.key || record.signer != self.blinded || record.period != self.period {
            return Err(RecordError::WrongKey);
        }
        record.validate(now_ms)?;
        let (nonce, ct) = record.payload.split_at(NONCE_LEN.min(record.payload.len()));
        let nonce: [u8; NONCE_LEN] = fixed::<NONCE_LEN>("nonce", nonce)?;
        AeadSuite::ChaCha20Poly1305
            .open(
                &prekey_aead_key(&self.identity, self.period),
                &nonce,
                self.key.as_bytes(),
                ct,
            )
            .map_err(|_| RecordError::Decrypt)
    }
}

/// Builds the prekey-bundle record of `identity` for `period`: `bundle` encrypted for those
/// who know the identity key, signed by the period's blinded key. The expiry is clamped to
/// the end of the period plus [`PREKEY_PERIOD_OVERLAP_MS`].
pub fn sign_prekey_bundle(
    identity: &IdentityKeyPair,
    bundle: &[u8],
    period: u64,
    sequence: u64,
    expires_at_ms: u64,
    rng: &mut impl CryptoRngCore,
) -> Result<Record, RecordError> {
    if bundle.len() > MAX_PREKEY_BUNDLE {
        return Err(RecordError::PayloadTooLarge {
            limit: MAX_PREKEY_BUNDLE,
            found: bundle.len(),
        });
    }
    let end = period_end_ms(period).ok_or(RecordError::BadPeriod { found: period })?;
    let expires_at_ms = expires_at_ms.min(end.saturating_add(PREKEY_PERIOD_OVERLAP_MS));
    let locator = PrekeyLocator::new(&identity.public_key(), period)?;
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let ct = AeadSuite::ChaCha20Poly1305
        .seal(
            &prekey_aead_key(&locator.identity, period),
            &nonce,
            locator.key.as_bytes(),
            bundle,
        )
        .map_err(|_| RecordError::Decrypt)?;
    let mut payload = Vec::with_capacity(NONCE_LEN + ct.len());
    payload.extend_from_slice(&nonce);
    payload.extend_from_slice(&ct);
    let payload = Bytes::from(payload);
    let kind = RecordKind::PrekeyBundle;
    let msg = signed_bytes(
        kind,
        &locator.key,
        &locator.blinded,
        sequence,
        expires_at_ms,
        period,
        &payload,
    );
    let (signer, signature) = blinded_sign(identity, period, &msg)?;
    Ok(Record {
        kind,
        key: locator.key,
        signer,
        sequence,
        expires_at_ms,
        period,
        payload,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const NOW: u64 = 1_800_000_000_000;

    fn descriptor() -> RelayDescriptor {
        RelayDescriptor {
            addrs: vec!["192.0.2.1:4433".parse().unwrap()],
            noise_static_key: [3u8; 32],
            onion_keys: vec![(7, [4u8; 32]), (8, [5u8; 32])],
            capabilities: Capabilities::MAILBOX | Capabilities::STORAGE,
        }
    }

    #[test]
    fn relay_descriptor_roundtrip_and_binding() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let id = IdentityKeyPair::generate(&mut rng);
        let rec = descriptor().sign(&id, 1, NOW + 1000).unwrap();
        assert_eq!(rec.key, NodeId::of(&id.public_key()));
        rec.validate(NOW).unwrap();
        let (pk, d) = RelayDescriptor::from_record(&rec, NOW).unwrap();
        assert_eq!(pk, id.public_key());
        assert_eq!(d, descriptor());
        // Stored under someone else's id: refused.
        let mut moved = rec.clone();
        moved.key = NodeId::from_bytes([1u8; 32]);
        assert_eq!(moved.validate(NOW), Err(RecordError::KeyNotBound));
        // Re-signed by an attacker for the victim's key: key not bound to the attacker.
        let attacker = IdentityKeyPair::generate(&mut rng);
        let mut forged = rec.clone();
        forged.signature = attacker.sign(&forged.signed_bytes()).to_bytes();
        assert_eq!(forged.validate(NOW), Err(RecordError::BadSignature));
        forged.signer = attacker.public_key().to_bytes();
        forged.signature = attacker.sign(&forged.signed_bytes()).to_bytes();
        assert_eq!(forged.validate(NOW), Err(RecordError::KeyNotBound));
        // Tampered sequence number.
        let mut bumped = rec.clone();
        bumped.sequence = 99;
        assert_eq!(bumped.validate(NOW), Err(RecordError::BadSignature));
    }

    #[test]
    fn expiry_window_is_enforced() {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let id = IdentityKeyPair::generate(&mut rng);
        let rec = descriptor().sign(&id, 1, NOW).unwrap();
        assert!(matches!(
            rec.validate(NOW),
            Err(RecordError::Expired { .. })
        ));
        let rec = descriptor()
            .sign(&id, 1, NOW + MAX_RECORD_TTL_MS + 1)
            .unwrap();
        assert!(matches!(
            rec.validate(NOW),
            Err(RecordError::TtlTooLong { .. })
        ));
    }

    #[test]
    fn descriptor_limits() {
        let mut d = descriptor();
        d.addrs = vec![];
        assert!(d.encode_payload().is_err());
        let mut d = descriptor();
        d.onion_keys = vec![(1, [0u8; 32]); MAX_ONION_KEYS + 1];
        assert!(d.encode_payload().is_err());
        assert!(Capabilities::from_bits(8).is_err());
        assert!(Capabilities::from_bits(5).is_err());
        assert!(RelayDescriptor::decode_payload(&[0xff; 10]).is_err());
        assert!(RelayDescriptor::decode_payload(&[0u8; MAX_RECORD_PAYLOAD + 1]).is_err());
    }

    #[test]
    fn prekey_bundle_blinded_roundtrip() {
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let id = IdentityKeyPair::generate(&mut rng);
        let period = prekey_period(NOW);
        let rec =
            sign_prekey_bundle(&id, b"bundle bytes", period, 1, NOW + 3_600_000, &mut rng).unwrap();
        rec.validate(NOW).unwrap();
        // The storing node sees neither the identity key nor the address.
        let pk = id.public_key().to_bytes();
        assert_ne!(rec.signer, pk);
        assert_ne!(rec.key.as_bytes(), &blake2b_256(&pk));
        assert!(!rec.payload.windows(32).any(|w| w == pk));
        let loc = PrekeyLocator::new(&id.public_key(), period).unwrap();
        assert_eq!(loc.key(), rec.key);
        assert_eq!(loc.open(&rec, NOW).unwrap(), b"bundle bytes");
        // Next period: unlinkable key and signer.
        let loc2 = PrekeyLocator::new(&id.public_key(), period + 1).unwrap();
        assert_ne!(loc2.key(), loc.key());
        assert_ne!(loc2.blinded_key(), loc.blinded_key());
        // Someone else's locator refuses the record.
        let other = IdentityKeyPair::generate(&mut rng);
        let wrong = PrekeyLocator::new(&other.public_key(), period).unwrap();
        assert_eq!(wrong.open(&rec, NOW), Err(RecordError::WrongKey));
        // An attacker cannot write under the victim's key with its own blinded key.
        let forged = sign_prekey_bundle(&other, b"evil", period, 9, NOW + 1000, &mut rng).unwrap();
        let mut moved = forged.clone();
        moved.key = rec.key;
        assert_eq!(moved.validate(NOW), Err(RecordError::KeyNotBound));
        // Tampered ciphertext: signature fails; re-signed ciphertext tamper: decrypt fails.
        let mut t = rec.clone();
        let mut p = t.payload.to_vec();
        p[20] ^= 1;
        t.payload = Bytes::from(p);
        assert_eq!(t.validate(NOW), Err(RecordError::BadSignature));
    }

    #[test]
    fn blinded_signature_is_standard_ed25519() {
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let id = IdentityKeyPair::generate(&mut rng);
        let (pk, sig) = blinded_sign(&id, 5, b"hello").unwrap();
        assert_eq!(pk, blinded_public(&id.public_key().to_bytes(), 5).unwrap());
        let v = IdentityPublicKey::from_bytes(&pk).unwrap();
        v.verify(b"hello", &Signature(sig)).unwrap();
        assert!(v.verify(b"hellO", &Signature(sig)).is_err());
    }

    #[test]
    fn prekey_expiry_clamped_to_period() {
        let mut rng = ChaCha20Rng::seed_from_u64(14);
        let id = IdentityKeyPair::generate(&mut rng);
        let period = prekey_period(NOW);
        let rec =
            sign_prekey_bundle(&id, b"b", period, 1, NOW + MAX_RECORD_TTL_MS, &mut rng).unwrap();
        assert_eq!(
            rec.expires_at_ms,
            (period + 1) * PREKEY_PERIOD_MS + PREKEY_PERIOD_OVERLAP_MS
        );
        assert!(
            sign_prekey_bundle(&id, &[0u8; MAX_PREKEY_BUNDLE + 1], period, 1, NOW, &mut rng)
                .is_err()
        );
        assert!(PrekeyLocator::new(&id.public_key(), u64::MAX).is_ok());
        assert!(sign_prekey_bundle(&id, b"b", u64::MAX, 1, NOW + 1, &mut rng).is_err());
    }
}
