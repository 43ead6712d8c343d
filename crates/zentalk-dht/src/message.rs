//! Typed DHT messages, their protobuf form (`zentalk_wire::proto::Dht*`) inside wire frames,
//! and response authentication.
//!
//! **Authentication.** Every response carries the responder's Ed25519 identity key and a
//! signature over `BLAKE2b-256("zentalk-dht-response-v1" || kind || BLAKE2b-256(canonical
//! request body) || canonical response body with the signature field empty)`. The request
//! body holds a fresh random 64-bit request id, so a response is bound to the exact request
//! it answers: it cannot be replayed to another request, moved to another target, or produced
//! by anyone but the holder of the key whose BLAKE2b-256 is the responder's node id. The
//! requester checks that this id is the one it asked (when it knew it). Requests are not
//! signed: a requester is only added to a routing table after the receiver pings it and gets
//! such a signed answer.

use std::net::SocketAddr;

use bytes::Bytes;
use prost::Message;
use zentalk_crypto::hash::{blake2b_256, blake2b_256_parts};
use zentalk_crypto::{CryptoRngCore, IdentityKeyPair, IdentityPublicKey, NodeId, Signature};
use zentalk_wire::{
    Frame, HEADER_LEN, MAX_DHT_RECORD_LEN, MessageId, MessageType, WireMessage, proto,
};

use crate::error::MessageError;
use crate::record::{Record, addr_from_proto, addr_to_proto};
use crate::routing::Contact;

/// Largest datagram accepted or sent: one frame header plus the largest DHT body.
pub const MAX_DATAGRAM_LEN: usize = HEADER_LEN + MAX_DHT_RECORD_LEN;
/// Most contacts in one answer (k).
pub const MAX_CONTACTS: usize = 20;

const RESPONSE_DOMAIN: &[u8] = b"zentalk-dht-response-v1";

/// A request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Liveness and identity probe.
    Ping,
    /// Closest contacts to `target`.
    FindNode {
        /// Target id.
        target: NodeId,
    },
    /// The record under `key`, or closer contacts.
    FindValue {
        /// Storage key.
        key: NodeId,
    },
    /// Store a record.
    Store {
        /// The record.
        record: Record,
    },
}

/// Outcome of a STORE as reported to the publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStatus {
    /// Stored.
    Stored,
    /// The same or a newer version is held.
    Stale,
    /// The record is invalid.
    Invalid,
    /// A storage or rate limit refused it.
    Limited,
}

/// A response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Answer to [`Request::Ping`].
    Pong {
        /// The requester's address as seen by the responder.
        observed: SocketAddr,
    },
    /// Answer to [`Request::FindNode`].
    Nodes {
        /// Up to k contacts.
        contacts: Vec<Contact>,
    },
    /// Answer to [`Request::FindValue`].
    Value {
        /// The record, if held.
        record: Option<Record>,
        /// Closer contacts otherwise.
        closer: Vec<Contact>,
    },
    /// Answer to [`Request::Store`].
    StoreAck {
        /// Outcome.
        status: StoreStatus,
        /// Sequence held after the request.
        stored_sequence: u64,
    },
}

impl Response {
    /// True if this response kind answers `req`'s kind.
    pub fn answers(&self, req: &Request) -> bool {
        matches!(
            (req, self),
            (Request::Ping, Response::Pong { .. })
                | (Request::FindNode { .. }, Response::Nodes { .. })
                | (Request::FindValue { .. }, Response::Value { .. })
                | (Request::Store { .. }, Response::StoreAck { .. })
        )
    }
}

/// A request with its id and optional sender id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestMsg {
    /// Random request id.
    pub id: u64,
    /// The requester's node id if it wants to be added to routing tables.
    pub sender: Option<NodeId>,
    /// Body.
    pub body: Request,
}

/// A response with the id of the request it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseMsg {
    /// Request id echoed.
    pub id: u64,
    /// Body.
    pub body: Response,
}

fn id_bytes(id: &NodeId) -> Bytes {
    Bytes::copy_from_slice(id.as_bytes())
}

fn opt_sender(s: &Option<NodeId>) -> Bytes {
    s.as_ref().map(id_bytes).unwrap_or_default()
}

fn contact_to_proto(c: &Contact) -> proto::DhtContact {
    proto::DhtContact {
        node_id: id_bytes(&c.id),
        addr: Some(addr_to_proto(&c.addr)),
    }
}

fn contacts_from_proto(v: &[proto::DhtContact]) -> Result<Vec<Contact>, MessageError> {
    if v.len() > MAX_CONTACTS {
        return Err(MessageError::TooManyContacts {
            limit: MAX_CONTACTS,
            found: v.len(),
        });
    }
    v.iter()
        .map(|c| {
            let id = node_id("contact node id", &c.node_id)?;
            let addr = c
                .addr
                .as_ref()
                .ok_or(MessageError::Missing("contact addr"))?;
            Ok(Contact {
                id,
                addr: addr_from_proto(addr).ok_or(MessageError::BadAddr)?,
            })
        })
        .collect()
}

fn node_id(what: &'static str, b: &[u8]) -> Result<NodeId, MessageError> {
    let arr: [u8; 32] = b.try_into().map_err(|_| MessageError::BadLength {
        what,
        expected: 32,
        found: b.len(),
    })?;
    Ok(NodeId::from_bytes(arr))
}

fn sender_from(b: &[u8]) -> Result<Option<NodeId>, MessageError> {
    if b.is_empty() {
        Ok(None)
    } else {
        node_id("sender id", b).map(Some)
    }
}

/// The protobuf form of a request.
#[derive(Debug, Clone, PartialEq)]
enum ProtoRequest {
    Ping(proto::DhtPing),
    FindNode(proto::DhtFindNode),
    FindValue(proto::DhtFindValue),
    Store(proto::DhtStore),
}

impl ProtoRequest {
    fn of(m: &RequestMsg) -> Self {
        let sender_id = opt_sender(&m.sender);
        match &m.body {
            Request::Ping => ProtoRequest::Ping(proto::DhtPing {
                request_id: m.id,
                sender_id,
            }),
            Request::FindNode { target } => ProtoRequest::FindNode(proto::DhtFindNode {
                request_id: m.id,
                sender_id,
                target: id_bytes(target),
            }),
            Request::FindValue { key } => ProtoRequest::FindValue(proto::DhtFindValue {
                request_id: m.id,
                sender_id,
                key: id_bytes(key),
            }),
            Request::Store { record } => ProtoRequest::Store(proto::DhtStore {
                request_id: m.id,
                sender_id,
                record: Some(record.to_proto()),
            }),
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            ProtoRequest::Ping(p) => p.encode_to_vec(),
            ProtoRequest::FindNode(p) => p.encode_to_vec(),
            ProtoRequest::FindValue(p) => p.encode_to_vec(),
            ProtoRequest::Store(p) => p.encode_to_vec(),
        }
    }

    fn frame(&self, mid: MessageId) -> Result<Frame, MessageError> {
        let r = match self {
            ProtoRequest::Ping(p) => Frame::new(mid, p),
            ProtoRequest::FindNode(p) => Frame::new(mid, p),
            ProtoRequest::FindValue(p) => Frame::new(mid, p),
            ProtoRequest::Store(p) => Frame::new(mid, p),
        };
        r.map_err(|e| MessageError::Wire(e.to_string()))
    }
}

/// Digest of a request's canonical protobuf encoding, covered by the response signature.
pub fn request_digest(m: &RequestMsg) -> [u8; 32] {
    blake2b_256(&ProtoRequest::of(m).encode())
}

/// Encodes a request as one wire frame (one datagram).
pub fn encode_request(
    m: &RequestMsg,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, MessageError> {
    Ok(ProtoRequest::of(m)
        .frame(MessageId::random(rng))?
        .to_bytes()
        .to_vec())
}

fn kind_code(r: &Response) -> u8 {
    match r {
        Response::Pong { .. } => 1,
        Response::Nodes { .. } => 2,
        Response::Value { .. } => 3,
        Response::StoreAck { .. } => 4,
    }
}

fn status_to_proto(s: StoreStatus) -> proto::DhtStoreStatus {
    match s {
        StoreStatus::Stored => proto::DhtStoreStatus::Stored,
        StoreStatus::Stale => proto::DhtStoreStatus::Stale,
        StoreStatus::Invalid => proto::DhtStoreStatus::Invalid,
        StoreStatus::Limited => proto::DhtStoreStatus::Limited,
    }
}

/// The protobuf form of a response with `auth` set to (key, signature).
fn response_proto(m: &ResponseMsg, key: &[u8; 32], sig: &[u8]) -> ProtoResponse {
    let auth = Some(proto::DhtAuth {
        identity_key: Bytes::copy_from_slice(key),
        signature: Bytes::copy_from_slice(sig),
    });
    match &m.body {
        Response::Pong { observed } => ProtoResponse::Pong(proto::DhtPong {
            request_id: m.id,
            observed_addr: Some(addr_to_proto(observed)),
            auth,
        }),
        Response::Nodes { contacts } => ProtoResponse::Nodes(proto::DhtNodes {
            request_id: m.id,
            contacts: contacts.iter().map(contact_to_proto).collect(),
            auth,
        }),
        Response::Value { record, closer } => ProtoResponse::Value(proto::DhtValue {
            request_id: m.id,
            record: record.as_ref().map(Record::to_proto),
            closer: closer.iter().map(contact_to_proto).collect(),
            auth,
        }),
        Response::StoreAck {
            status,
            stored_sequence,
        } => ProtoResponse::StoreAck(proto::DhtStoreAck {
            request_id: m.id,
            status: status_to_proto(*status) as i32,
            stored_sequence: *stored_sequence,
            auth,
        }),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum ProtoResponse {
    Pong(proto::DhtPong),
    Nodes(proto::DhtNodes),
    Value(proto::DhtValue),
    StoreAck(proto::DhtStoreAck),
}

impl ProtoResponse {
    fn encode(&self) -> Vec<u8> {
        match self {
            ProtoResponse::Pong(p) => p.encode_to_vec(),
            ProtoResponse::Nodes(p) => p.encode_to_vec(),
            ProtoResponse::Value(p) => p.encode_to_vec(),
            ProtoResponse::StoreAck(p) => p.encode_to_vec(),
        }
    }

    fn frame(&self, mid: MessageId) -> Result<Frame, MessageError> {
        let r = match self {
            ProtoResponse::Pong(p) => Frame::new(mid, p),
            ProtoResponse::Nodes(p) => Frame::new(mid, p),
            ProtoResponse::Value(p) => Frame::new(mid, p),
            ProtoResponse::StoreAck(p) => Frame::new(mid, p),
        };
        r.map_err(|e| MessageError::Wire(e.to_string()))
    }
}

fn auth_digest(kind: u8, req_digest: &[u8; 32], unsigned_body: &[u8]) -> [u8; 32] {
    blake2b_256_parts(&[RESPONSE_DOMAIN, &[kind], req_digest, unsigned_body])
}

/// Encodes and signs a response to the request whose digest is `req_digest`.
pub fn encode_response(
    m: &ResponseMsg,
    req_digest: &[u8; 32],
    identity: &IdentityKeyPair,
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, MessageError> {
    let key = identity.public_key().to_bytes();
    let unsigned = response_proto(m, &key, &[]).encode();
    let sig = identity
        .sign(&auth_digest(kind_code(&m.body), req_digest, &unsigned))
        .to_bytes();
    let signed = response_proto(m, &key, &sig);
    Ok(signed.frame(MessageId::random(rng))?.to_bytes().to_vec())
}

/// A decoded response whose signature has not been checked yet.
#[derive(Debug, Clone)]
pub struct UnverifiedResponse {
    /// The typed response.
    pub msg: ResponseMsg,
    identity_key: [u8; 32],
    signature: [u8; 64],
    unsigned: Vec<u8>,
}

impl UnverifiedResponse {
    /// Checks the signature against the digest of the request we sent; returns the
    /// authenticated responder id.
    pub fn verify(&self, req_digest: &[u8; 32]) -> Result<NodeId, MessageError> {
        let pk =
            IdentityPublicKey::from_bytes(&self.identity_key).map_err(|_| MessageError::BadAuth)?;
        let d = auth_digest(kind_code(&self.msg.body), req_digest, &self.unsigned);
        pk.verify(&d, &Signature(self.signature))
            .map_err(|_| MessageError::BadAuth)?;
        Ok(NodeId::of(&pk))
    }
}

/// A decoded datagram.
#[derive(Debug, Clone)]
pub enum Decoded {
    /// A request (unauthenticated by design; see the module doc).
    Request(RequestMsg),
    /// A response to verify with [`UnverifiedResponse::verify`].
    Response(UnverifiedResponse),
}

fn auth_of(a: &Option<proto::DhtAuth>) -> Result<([u8; 32], [u8; 64]), MessageError> {
    let a = a.as_ref().ok_or(MessageError::Missing("auth"))?;
    let key: [u8; 32] =
        a.identity_key
            .as_ref()
            .try_into()
            .map_err(|_| MessageError::BadLength {
                what: "auth identity key",
                expected: 32,
                found: a.identity_key.len(),
            })?;
    let sig: [u8; 64] = a
        .signature
        .as_ref()
        .try_into()
        .map_err(|_| MessageError::BadLength {
            what: "auth signature",
            expected: 64,
            found: a.signature.len(),
        })?;
    Ok((key, sig))
}

fn body<M: WireMessage>(f: &Frame) -> Result<M, MessageError> {
    f.decode_body::<M>()
        .map_err(|e| MessageError::Wire(e.to_string()))
}

fn unsigned_of(mut p: ProtoResponse) -> Vec<u8> {
    let clear = |a: &mut Option<proto::DhtAuth>| {
        if let Some(a) = a {
            a.signature = Bytes::new();
        }
    };
    match &mut p {
        ProtoResponse::Pong(x) => clear(&mut x.auth),
        ProtoResponse::Nodes(x) => clear(&mut x.auth),
        ProtoResponse::Value(x) => clear(&mut x.auth),
        ProtoResponse::StoreAck(x) => clear(&mut x.auth),
    }
    p.encode()
}

/// Decodes one datagram (one wire frame) into a typed DHT message. Bounded: the datagram
/// length is checked first, the frame layer checks the per-type body limit before prost
/// allocates, and every field is length-checked. Never panics.
pub fn decode_datagram(bytes: &[u8]) -> Result<Decoded, MessageError> {
    if bytes.len() > MAX_DATAGRAM_LEN {
        return Err(MessageError::TooLarge {
            limit: MAX_DATAGRAM_LEN,
            found: bytes.len(),
        });
    }
    let frame = Frame::decode_exact(bytes).map_err(|e| MessageError::Wire(e.to_string()))?;
    let req = |id: u64, sender: &[u8], body: Request| -> Result<Decoded, MessageError> {
        Ok(Decoded::Request(RequestMsg {
            id,
            sender: sender_from(sender)?,
            body,
        }))
    };
    match frame.message_type() {
        MessageType::DhtPing => {
            let p: proto::DhtPing = body(&frame)?;
            req(p.request_id, &p.sender_id, Request::Ping)
        }
        MessageType::DhtFindNode => {
            let p: proto::DhtFindNode = body(&frame)?;
            let target = node_id("target", &p.target)?;
            req(p.request_id, &p.sender_id, Request::FindNode { target })
        }
        MessageType::DhtFindValue => {
            let p: proto::DhtFindValue = body(&frame)?;
            let key = node_id("key", &p.key)?;
            req(p.request_id, &p.sender_id, Request::FindValue { key })
        }
        MessageType::DhtStore => {
            let p: proto::DhtStore = body(&frame)?;
            let record =
                Record::from_proto(p.record.as_ref().ok_or(MessageError::Missing("record"))?)?;
            req(p.request_id, &p.sender_id, Request::Store { record })
        }
        MessageType::DhtPong => {
            let p: proto::DhtPong = body(&frame)?;
            let (identity_key, signature) = auth_of(&p.auth)?;
            let observed = addr_from_proto(
                p.observed_addr
                    .as_ref()
                    .ok_or(MessageError::Missing("observed addr"))?,
            )
            .ok_or(MessageError::BadAddr)?;
            let msg = ResponseMsg {
                id: p.request_id,
                body: Response::Pong { observed },
            };
            Ok(Decoded::Response(UnverifiedResponse {
                msg,
                identity_key,
                signature,
                unsigned: unsigned_of(ProtoResponse::Pong(p)),
            }))
        }
        MessageType::DhtNodes => {
            let p: proto::DhtNodes = body(&frame)?;
            let (identity_key, signature) = auth_of(&p.auth)?;
            let contacts = contacts_from_proto(&p.contacts)?;
            let msg = ResponseMsg {
                id: p.request_id,
                body: Response::Nodes { contacts },
            };
            Ok(Decoded::Response(UnverifiedResponse {
                msg,
                identity_key,
                signature,
                unsigned: unsigned_of(ProtoResponse::Nodes(p)),
            }))
        }
        MessageType::DhtValue => {
            let p: proto::DhtValue = body(&frame)?;
            let (identity_key, signature) = auth_of(&p.auth)?;
            let record = p.record.as_ref().map(Record::from_proto).transpose()?;
            let closer = contacts_from_proto(&p.closer)?;
            let msg = ResponseMsg {
                id: p.request_id,
                body: Response::Value { record, closer },
            };
            Ok(Decoded::Response(UnverifiedResponse {
                msg,
                identity_key,
                signature,
                unsigned: unsigned_of(ProtoResponse::Value(p)),
            }))
        }
        MessageType::DhtStoreAck => {
            let p: proto::DhtStoreAck = body(&frame)?;
            let (identity_key, signature) = auth_of(&p.auth)?;
            let status = match p.status {
                1 => StoreStatus::Stored,
                2 => StoreStatus::Stale,
                3 => StoreStatus::Invalid,
                4 => StoreStatus::Limited,
                value => {
                    return Err(MessageError::UnknownEnum {
                        what: "store status",
                        value,
                    });
                }
            };
            let msg = ResponseMsg {
                id: p.request_id,
                body: Response::StoreAck {
                    status,
                    stored_sequence: p.stored_sequence,
                },
            };
            Ok(Decoded::Response(UnverifiedResponse {
                msg,
                identity_key,
                signature,
                unsigned: unsigned_of(ProtoResponse::StoreAck(p)),
            }))
        }
        _ => Err(MessageError::NotDht),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Capabilities, RelayDescriptor};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn contact(b: u8) -> Contact {
        Contact {
            id: NodeId::from_bytes([b; 32]),
            addr: SocketAddr::from(([10, 0, 0, b], 4000)),
        }
    }

    #[test]
    fn request_roundtrip() {
        let mut rng = ChaCha20Rng::seed_from_u64(30);
        let id = IdentityKeyPair::generate(&mut rng);
        let record = RelayDescriptor {
            addrs: vec!["[2001:db8::1]:443".parse().unwrap()],
            noise_static_key: [1u8; 32],
            onion_keys: vec![(1, [2u8; 32])],
            capabilities: Capabilities::MAILBOX,
        }
        .sign(&id, 1, 10)
        .unwrap();
        for body in [
            Request::Ping,
            Request::FindNode {
                target: NodeId::from_bytes([5u8; 32]),
            },
            Request::FindValue {
                key: NodeId::from_bytes([6u8; 32]),
            },
            Request::Store { record },
        ] {
            for sender in [None, Some(NodeId::from_bytes([9u8; 32]))] {
                let m = RequestMsg {
                    id: 77,
                    sender,
                    body: body.clone(),
                };
                let bytes = encode_request(&m, &mut rng).unwrap();
                match decode_datagram(&bytes).unwrap() {
                    Decoded::Request(got) => assert_eq!(got, m),
                    Decoded::Response(_) => panic!("expected a request"),
                }
            }
        }
    }

    #[test]
    fn response_signature_binds_request_and_responder() {
        let mut rng = ChaCha20Rng::seed_from_u64(31);
        let responder = IdentityKeyPair::generate(&mut rng);
        let req = RequestMsg {
            id: 5,
            sender: None,
            body: Request::FindNode {
                target: NodeId::from_bytes([1u8; 32]),
            },
        };
        let digest = request_digest(&req);
        let resp = ResponseMsg {
            id: 5,
            body: Response::Nodes {
                contacts: vec![contact(1), contact(2)],
            },
        };
        let bytes = encode_response(&resp, &digest, &responder, &mut rng).unwrap();
        let Decoded::Response(u) = decode_datagram(&bytes).unwrap() else {
            panic!("expected a response")
        };
        assert_eq!(u.msg, resp);
        assert_eq!(
            u.verify(&digest).unwrap(),
            NodeId::of(&responder.public_key())
        );
        // Same response presented for another request (other target): refused.
        let other = RequestMsg {
            id: 5,
            sender: None,
            body: Request::FindNode {
                target: NodeId::from_bytes([2u8; 32]),
            },
        };
        assert_eq!(
            u.verify(&request_digest(&other)),
            Err(MessageError::BadAuth)
        );
        // Any bit flipped in the body: refused (or undecodable).
        for i in HEADER_LEN..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            if let Ok(Decoded::Response(u)) = decode_datagram(&b) {
                assert!(u.verify(&digest).is_err() || u.msg == resp, "byte {i}");
            }
        }
        // Another key claiming the responder's identity cannot sign for it.
        let impostor = IdentityKeyPair::generate(&mut rng);
        let forged = encode_response(&resp, &digest, &impostor, &mut rng).unwrap();
        let Decoded::Response(f) = decode_datagram(&forged).unwrap() else {
            panic!()
        };
        assert_ne!(
            f.verify(&digest).unwrap(),
            NodeId::of(&responder.public_key())
        );
    }

    #[test]
    fn all_responses_roundtrip() {
        let mut rng = ChaCha20Rng::seed_from_u64(32);
        let responder = IdentityKeyPair::generate(&mut rng);
        let digest = [3u8; 32];
        for body in [
            Response::Pong {
                observed: "127.0.0.1:9".parse().unwrap(),
            },
            Response::Value {
                record: None,
                closer: vec![contact(3)],
            },
            Response::StoreAck {
                status: StoreStatus::Stale,
                stored_sequence: 4,
            },
        ] {
            let m = ResponseMsg { id: 1, body };
            let bytes = encode_response(&m, &digest, &responder, &mut rng).unwrap();
            let Decoded::Response(u) = decode_datagram(&bytes).unwrap() else {
                panic!()
            };
            assert_eq!(u.msg, m);
            u.verify(&digest).unwrap();
        }
    }

    #[test]
    fn malformed_inputs_are_errors() {
        assert!(decode_datagram(&[]).is_err());
        assert!(decode_datagram(&[0u8; 100]).is_err());
        assert!(matches!(
            decode_datagram(&vec![0u8; MAX_DATAGRAM_LEN + 1]),
            Err(MessageError::TooLarge { .. })
        ));
        let mut rng = ChaCha20Rng::seed_from_u64(33);
        // Too many contacts.
        let responder = IdentityKeyPair::generate(&mut rng);
        let m = ResponseMsg {
            id: 1,
            body: Response::Nodes {
                contacts: vec![contact(1); MAX_CONTACTS + 1],
            },
        };
        let bytes = encode_response(&m, &[0u8; 32], &responder, &mut rng).unwrap();
        assert!(matches!(
            decode_datagram(&bytes),
            Err(MessageError::TooManyContacts { .. })
        ));
        // Wrong-length target.
        let p = proto::DhtFindNode {
            request_id: 1,
            sender_id: Bytes::new(),
            target: Bytes::from_static(&[1, 2]),
        };
        let f = Frame::new(MessageId::random(&mut rng), &p)
            .unwrap()
            .to_bytes();
        assert!(matches!(
            decode_datagram(&f),
            Err(MessageError::BadLength { .. })
        ));
        // Response without auth.
        let p = proto::DhtPong {
            request_id: 1,
            observed_addr: None,
            auth: None,
        };
        let f = Frame::new(MessageId::random(&mut rng), &p)
            .unwrap()
            .to_bytes();
        assert_eq!(
            decode_datagram(&f).unwrap_err(),
            MessageError::Missing("auth")
        );
        // Non-DHT frame.
        let p = proto::Ping { nonce: 1 };
        let f = Frame::new(MessageId::random(&mut rng), &p)
            .unwrap()
            .to_bytes();
        assert_eq!(decode_datagram(&f).unwrap_err(), MessageError::NotDht);
    }
}
