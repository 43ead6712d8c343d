//! Packet layout, packet creation and the per-hop unwrapping of one layer.

use core::fmt;
use core::marker::PhantomData;

use std::sync::Arc;

use zentalk_crypto::{CryptoRngCore, NodeId, SecretBytes, hash::ct_eq};

use crate::crypto::{HopKeys, lioness_decrypt, lioness_encrypt};
use crate::kem::{HopKem, X25519Kem};
use crate::{
    EPOCH_LEN, ID_LEN, LENGTH_PREFIX_LEN, MAC_LEN, MAX_HOPS, MAX_MESSAGE_LEN, OnionError,
    PAYLOAD_LEN, PAYLOAD_TAG_LEN, REPLAY_TAG_LEN,
};

/// Routing command byte: forward the packet to the relay named in the slot.
pub(crate) const CMD_FORWARD: u8 = 0x01;
/// Routing command byte: deliver the message to the mailbox named in the slot.
pub(crate) const CMD_DELIVER: u8 = 0x02;
/// Routing command byte: deliver a reply payload for the reply block named in the slot.
pub(crate) const CMD_REPLY: u8 = 0x03;

/// The byte layout of packets of one key-agreement scheme. Everything is a function of
/// [`HopKem::CIPHERTEXT_LEN`]; see `docs/protocol/zentalk-onion.md` for the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Bytes of one key-agreement ciphertext.
    pub ciphertext_len: usize,
    /// Bytes of the cleartext part of the header: version, epoch, ciphertext, MAC.
    pub prefix_len: usize,
    /// Bytes of one routing slot: command, 32-byte target, then the next hop's epoch,
    /// ciphertext and MAC.
    pub slot_len: usize,
    /// Bytes of the encrypted routing information ([`MAX_HOPS`] slots).
    pub routing_len: usize,
    /// Bytes of the whole header.
    pub header_len: usize,
    /// Bytes of a whole packet (header and payload), the same at every hop.
    pub packet_len: usize,
    /// Bytes of an encoded reply block.
    pub surb_len: usize,
}

impl Layout {
    /// The layout of the scheme `K`.
    pub const fn of<K: HopKem>() -> Self {
        Self::for_ciphertext_len(K::CIPHERTEXT_LEN)
    }

    /// The layout for a key-agreement ciphertext of `ct` bytes.
    pub const fn for_ciphertext_len(ct: usize) -> Self {
        let prefix_len = 1 + EPOCH_LEN + ct + MAC_LEN;
        let slot_len = 1 + ID_LEN + EPOCH_LEN + ct + MAC_LEN;
        let routing_len = MAX_HOPS * slot_len;
        let header_len = prefix_len + routing_len;
        Self {
            ciphertext_len: ct,
            prefix_len,
            slot_len,
            routing_len,
            header_len,
            packet_len: header_len + PAYLOAD_LEN,
            surb_len: 1 + ID_LEN + 32 + header_len,
        }
    }

    const fn ct_off(&self) -> usize {
        1 + EPOCH_LEN
    }

    const fn mac_off(&self) -> usize {
        1 + EPOCH_LEN + self.ciphertext_len
    }
}

macro_rules! id32 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps 32 bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub const fn to_bytes(&self) -> [u8; 32] {
                self.0
            }

            /// Borrows the raw bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(", stringify!($name))?;
                for b in &self.0 {
                    write!(f, "{b:02x}")?;
                }
                write!(f, ")")
            }
        }
    };
}

id32!(
    /// The 32-byte id of a mailbox at the final relay.
    MailboxId
);
id32!(
    /// The 32-byte id of a single-use reply block, chosen at random by its creator.
    SurbId
);

/// One relay on a route: its node id, its onion public key for `epoch`, and that epoch.
#[derive(Debug)]
pub struct Hop<K: HopKem = X25519Kem> {
    /// The relay's node id (where the previous hop forwards the packet).
    pub node: NodeId,
    /// The relay's onion public key for `epoch`.
    pub onion_key: K::PublicKey,
    /// The key epoch the packet names for this relay.
    pub epoch: u32,
}

impl<K: HopKem> Clone for Hop<K> {
    fn clone(&self) -> Self {
        Self {
            node: self.node,
            onion_key: self.onion_key.clone(),
            epoch: self.epoch,
        }
    }
}

/// One hop of a route as the packet builder sees it: a relay, the epoch named for it, and a
/// way to encapsulate to its key. Implemented by [`Hop`] (plain key) and [`PreparedHop`]
/// (precomputed key, faster for repeated use); both give the same bytes for the same RNG.
pub trait RouteHop {
    /// The key-agreement scheme.
    type Kem: HopKem;
    /// The relay's node id.
    fn node(&self) -> NodeId;
    /// The key epoch named for this relay.
    fn epoch(&self) -> u32;
    /// Encapsulates to this relay's key (see [`HopKem::encapsulate`]).
    fn encapsulate<R: CryptoRngCore + ?Sized>(
        &self,
        rng: &mut R,
        ciphertext: &mut [u8],
    ) -> Result<SecretBytes<32>, OnionError>;
}

impl<K: HopKem> RouteHop for Hop<K> {
    type Kem = K;
    fn node(&self) -> NodeId {
        self.node
    }
    fn epoch(&self) -> u32 {
        self.epoch
    }
    fn encapsulate<R: CryptoRngCore + ?Sized>(
        &self,
        rng: &mut R,
        ciphertext: &mut [u8],
    ) -> Result<SecretBytes<32>, OnionError> {
        K::encapsulate(rng, &self.onion_key, &self.node, ciphertext)
    }
}

/// A [`Hop`] whose onion key has been prepared once ([`HopKem::prepare`]; for X25519 a
/// 30 KiB table built in about a millisecond) so that every later packet through this relay
/// in the epoch costs less to build. Cheap to clone (the prepared key is shared).
pub struct PreparedHop<K: HopKem = X25519Kem> {
    node: NodeId,
    epoch: u32,
    key: Arc<K::PreparedKey>,
}

impl<K: HopKem> PreparedHop<K> {
    /// Prepares `hop`'s key.
    pub fn prepare(hop: &Hop<K>) -> Result<Self, OnionError> {
        Ok(Self {
            node: hop.node,
            epoch: hop.epoch,
            key: Arc::new(K::prepare(&hop.onion_key, &hop.node)?),
        })
    }
}

impl<K: HopKem> Clone for PreparedHop<K> {
    fn clone(&self) -> Self {
        Self {
            node: self.node,
            epoch: self.epoch,
            key: Arc::clone(&self.key),
        }
    }
}

impl<K: HopKem> fmt::Debug for PreparedHop<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedHop")
            .field("node", &self.node)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl<K: HopKem> RouteHop for PreparedHop<K> {
    type Kem = K;
    fn node(&self) -> NodeId {
        self.node
    }
    fn epoch(&self) -> u32 {
        self.epoch
    }
    fn encapsulate<R: CryptoRngCore + ?Sized>(
        &self,
        rng: &mut R,
        ciphertext: &mut [u8],
    ) -> Result<SecretBytes<32>, OnionError> {
        K::encapsulate_prepared(rng, &self.key, &self.node, ciphertext)
    }
}

/// A packet of exactly [`Layout::packet_len`] bytes whose version byte is `K::VERSION`.
/// Nothing else about it is checked until a relay processes it.
pub struct OnionPacket<K: HopKem = X25519Kem> {
    bytes: Box<[u8]>,
    _kem: PhantomData<fn() -> K>,
}

impl<K: HopKem> OnionPacket<K> {
    /// The fixed packet length of this scheme.
    pub const LEN: usize = Layout::of::<K>().packet_len;

    /// Checks the length and version byte of a packet of scheme `K` and copies the bytes
    /// (see [`OnionPacket::from_bytes`] for X25519).
    pub fn parse(bytes: &[u8]) -> Result<Self, OnionError> {
        check_packet::<K>(bytes)?;
        Ok(Self::from_checked(bytes.into()))
    }

    fn from_checked(bytes: Box<[u8]>) -> Self {
        Self {
            bytes,
            _kem: PhantomData,
        }
    }

    /// The packet bytes, to put in a wire frame.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The packet bytes, by value.
    pub fn into_bytes(self) -> Box<[u8]> {
        self.bytes
    }

    /// The packet length, always [`Self::LEN`].
    #[allow(clippy::len_without_is_empty, reason = "a packet is never empty")]
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The key epoch named in the cleartext header.
    pub fn epoch(&self) -> u32 {
        read_epoch(&self.bytes)
    }
}

impl OnionPacket<X25519Kem> {
    /// Checks the length ([`crate::PACKET_LEN`]) and version byte and copies the bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OnionError> {
        Self::parse(bytes)
    }
}

impl<K: HopKem> Clone for OnionPacket<K> {
    fn clone(&self) -> Self {
        Self::from_checked(self.bytes.clone())
    }
}

impl<K: HopKem> fmt::Debug for OnionPacket<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnionPacket")
            .field("len", &self.bytes.len())
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

/// A packet ready to send, and the relay to send it to.
#[derive(Debug, Clone)]
pub struct OutgoingPacket<K: HopKem = X25519Kem> {
    /// The first relay of the route.
    pub first_hop: NodeId,
    /// The packet.
    pub packet: OnionPacket<K>,
}

/// The opaque payload a relay hands over with [`Processed::Reply`]; only the holder of the
/// reply block's keys can open it ([`crate::ReplyKeyStore::open_reply`]).
#[derive(Clone, PartialEq, Eq)]
pub struct ReplyPayload(Box<[u8; PAYLOAD_LEN]>);

impl ReplyPayload {
    /// Parses exactly [`PAYLOAD_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OnionError> {
        let arr: [u8; PAYLOAD_LEN] = bytes.try_into().map_err(|_| OnionError::InvalidLength {
            what: "reply payload",
            expected: PAYLOAD_LEN,
            found: bytes.len(),
        })?;
        Ok(Self(Box::new(arr)))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; PAYLOAD_LEN] {
        &self.0
    }
}

impl fmt::Debug for ReplyPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplyPayload({} bytes)", PAYLOAD_LEN)
    }
}

/// What a relay does with a packet after removing its layer.
#[derive(Debug)]
pub enum Processed<K: HopKem = X25519Kem> {
    /// Send `packet` (same length as the one received) to relay `next_hop`.
    Forward {
        /// The next relay.
        next_hop: NodeId,
        /// The re-encrypted packet.
        packet: OnionPacket<K>,
    },
    /// This relay is the last hop: store `message` in mailbox `mailbox`. The payload's
    /// integrity tag has been checked.
    Deliver {
        /// The mailbox.
        mailbox: MailboxId,
        /// The message (at most [`MAX_MESSAGE_LEN`] bytes).
        message: Vec<u8>,
    },
    /// This relay is the last hop of a reply: hand `payload` to the owner of reply block
    /// `surb_id` (the relay cannot read or check it).
    Reply {
        /// The reply block id.
        surb_id: SurbId,
        /// The still-encrypted payload.
        payload: ReplyPayload,
    },
}

/// What the last hop of a route is told to do.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FinalCommand {
    Mailbox(MailboxId),
    Reply(SurbId),
}

fn read_epoch(bytes: &[u8]) -> u32 {
    let mut e = [0u8; EPOCH_LEN];
    if let Some(src) = bytes.get(1..1 + EPOCH_LEN) {
        e.copy_from_slice(src);
    }
    u32::from_be_bytes(e)
}

fn check_packet<K: HopKem>(bytes: &[u8]) -> Result<(), OnionError> {
    let layout = Layout::of::<K>();
    if bytes.len() != layout.packet_len {
        return Err(OnionError::InvalidLength {
            what: "onion packet",
            expected: layout.packet_len,
            found: bytes.len(),
        });
    }
    match bytes.first() {
        Some(&v) if v == K::VERSION => Ok(()),
        Some(&v) => Err(OnionError::UnsupportedVersion {
            expected: K::VERSION,
            found: v,
        }),
        None => Err(OnionError::InvalidLength {
            what: "onion packet",
            expected: layout.packet_len,
            found: 0,
        }),
    }
}

fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

/// Checks the route: 1..=MAX_HOPS hops, no relay twice.
pub(crate) fn check_route<H: RouteHop>(route: &[H]) -> Result<(), OnionError> {
    if route.is_empty() || route.len() > MAX_HOPS {
        return Err(OnionError::InvalidRouteLength {
            max: MAX_HOPS,
            found: route.len(),
        });
    }
    for (i, hop) in route.iter().enumerate() {
        if route.iter().skip(i + 1).any(|h| h.node() == hop.node()) {
            return Err(OnionError::RepeatedRelay { node: hop.node() });
        }
    }
    Ok(())
}

/// Builds a header for `route` ending in `last`, and returns it with every hop's keys.
///
/// Randomness is drawn in this order (the known-answer vectors depend on it): for each hop in
/// route order, what `K::encapsulate` draws (X25519: 32 bytes of ephemeral secret); then the
/// unused tail of the last slot (`slot_len - 33` bytes); then the padding after the last slot
/// (`(MAX_HOPS - n) * slot_len` bytes).
pub(crate) fn build_header<H: RouteHop, R: CryptoRngCore + ?Sized>(
    rng: &mut R,
    route: &[H],
    last: FinalCommand,
) -> Result<(Vec<u8>, Vec<HopKeys>), OnionError> {
    check_route(route)?;
    let layout = Layout::of::<H::Kem>();
    let (s, r, ct_len) = (layout.slot_len, layout.routing_len, layout.ciphertext_len);
    let n = route.len();

    // 1. One encapsulation per hop.
    let mut cts = vec![0u8; n * ct_len];
    let mut keys = Vec::with_capacity(n);
    for (hop, ct) in route.iter().zip(cts.chunks_exact_mut(ct_len)) {
        let shared = hop.encapsulate(rng, ct)?;
        keys.push(HopKeys::derive(&shared)?);
    }

    // 2. Filler: what hops 0..n-2 append to the routing information, as the last hop sees it.
    let mut filler: Vec<u8> = Vec::with_capacity((n - 1) * s);
    let mut stream = vec![0u8; r + s];
    for k in keys.iter().take(n - 1) {
        filler.resize(filler.len() + s, 0);
        stream.fill(0);
        k.xor_header_stream(&mut stream);
        let from = r + s - filler.len();
        xor_into(&mut filler, &stream[from..]);
    }

    // 3. The last hop's routing information: its slot, random padding, the filler.
    let mut beta = vec![0u8; r];
    let last_plain_len = r - (n - 1) * s;
    {
        let (plain, tail) = beta.split_at_mut(last_plain_len);
        let (slot, padding) = plain.split_at_mut(s);
        let (cmd, id) = match last {
            FinalCommand::Mailbox(m) => (CMD_DELIVER, m.to_bytes()),
            FinalCommand::Reply(id) => (CMD_REPLY, id.to_bytes()),
        };
        slot[0] = cmd;
        slot[1..1 + ID_LEN].copy_from_slice(&id);
        rng.fill_bytes(&mut slot[1 + ID_LEN..]);
        rng.fill_bytes(padding);
        if let Some(k) = keys.last() {
            k.xor_header_stream(plain);
        }
        tail.copy_from_slice(&filler);
    }

    // 4. From the last hop back to the first: MAC, then wrap into the previous hop's slot.
    let mut header = vec![0u8; layout.header_len];
    let mac_off = layout.mac_off();
    let ct_off = layout.ct_off();
    for i in (0..n).rev() {
        let (hop, k) = (&route[i], &keys[i]);
        if i < n - 1 {
            // beta currently holds beta_{i+1} and header[1..prefix_len] holds hop i+1's
            // epoch, ciphertext and MAC: shift them into hop i's slot.
            let mut next = vec![0u8; r];
            next[0] = CMD_FORWARD;
            next[1..1 + ID_LEN].copy_from_slice(route[i + 1].node().as_bytes());
            next[1 + ID_LEN..s].copy_from_slice(&header[1..layout.prefix_len]);
            next[s..].copy_from_slice(&beta[..r - s]);
            k.xor_header_stream(&mut next);
            beta = next;
        }
        header[0] = H::Kem::VERSION;
        header[1..1 + EPOCH_LEN].copy_from_slice(&hop.epoch().to_be_bytes());
        header[ct_off..mac_off].copy_from_slice(&cts[i * ct_len..(i + 1) * ct_len]);
        header[layout.prefix_len..].copy_from_slice(&beta);
        let mac = k.header_mac(&[&header[..mac_off], &beta]);
        header[mac_off..layout.prefix_len].copy_from_slice(&mac);
    }
    Ok((header, keys))
}

/// Encodes a message as a plaintext payload: 16 zero bytes, u16 big-endian length, message,
/// zero padding to [`PAYLOAD_LEN`].
pub(crate) fn encode_payload(message: &[u8]) -> Result<Vec<u8>, OnionError> {
    if message.len() > MAX_MESSAGE_LEN {
        return Err(OnionError::MessageTooLong {
            max: MAX_MESSAGE_LEN,
            found: message.len(),
        });
    }
    let mut p = vec![0u8; PAYLOAD_LEN];
    let len = u16::try_from(message.len()).map_err(|_| OnionError::MessageTooLong {
        max: MAX_MESSAGE_LEN,
        found: message.len(),
    })?;
    p[PAYLOAD_TAG_LEN..PAYLOAD_TAG_LEN + LENGTH_PREFIX_LEN].copy_from_slice(&len.to_be_bytes());
    let start = PAYLOAD_TAG_LEN + LENGTH_PREFIX_LEN;
    p[start..start + message.len()].copy_from_slice(message);
    Ok(p)
}

/// Checks the zero tag (constant time) and extracts the message.
pub(crate) fn decode_payload(p: &[u8]) -> Result<Vec<u8>, OnionError> {
    let tag = p
        .get(..PAYLOAD_TAG_LEN)
        .ok_or(OnionError::PayloadTampered)?;
    if !ct_eq(tag, &[0u8; PAYLOAD_TAG_LEN]) {
        return Err(OnionError::PayloadTampered);
    }
    let start = PAYLOAD_TAG_LEN + LENGTH_PREFIX_LEN;
    let len_bytes: [u8; 2] = p
        .get(PAYLOAD_TAG_LEN..start)
        .and_then(|b| b.try_into().ok())
        .ok_or(OnionError::PayloadTampered)?;
    let len = usize::from(u16::from_be_bytes(len_bytes));
    if len > MAX_MESSAGE_LEN {
        return Err(OnionError::InvalidMessageLength {
            max: MAX_MESSAGE_LEN,
            found: len,
        });
    }
    p.get(start..start + len)
        .map(<[u8]>::to_vec)
        .ok_or(OnionError::InvalidMessageLength {
            max: MAX_MESSAGE_LEN,
            found: len,
        })
}

/// Builds a packet that carries `message` along `route` to mailbox `mailbox` at the last
/// relay of the route.
///
/// `route` is a slice of [`Hop`]s, or of [`PreparedHop`]s when the same relays carry many
/// packets (same bytes for the same RNG, less work). The route has 1 to [`MAX_HOPS`] distinct relays; the last one is the recipient's mailbox
/// relay. Every packet has the same length ([`crate::PACKET_LEN`] for X25519) whatever the
/// route length and message length.
pub fn build_packet<H: RouteHop>(
    rng: &mut impl CryptoRngCore,
    route: &[H],
    mailbox: MailboxId,
    message: &[u8],
) -> Result<OutgoingPacket<H::Kem>, OnionError> {
    let mut payload = encode_payload(message)?;
    let (header, keys) = build_header(rng, route, FinalCommand::Mailbox(mailbox))?;
    for k in keys.iter().rev() {
        lioness_encrypt(&k.payload, &mut payload);
    }
    let first_hop = route
        .first()
        .map(RouteHop::node)
        .ok_or(OnionError::InvalidRouteLength {
            max: MAX_HOPS,
            found: 0,
        })?;
    Ok(assemble(first_hop, &header, &payload))
}

pub(crate) fn assemble<K: HopKem>(
    first_hop: NodeId,
    header: &[u8],
    payload: &[u8],
) -> OutgoingPacket<K> {
    let mut bytes = Vec::with_capacity(header.len() + payload.len());
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(payload);
    OutgoingPacket {
        first_hop,
        packet: OnionPacket::from_checked(bytes.into_boxed_slice()),
    }
}

/// Removes one layer with the relay's epoch secret `secret`.
///
/// Order: length and version, key agreement, key schedule, MAC check, then `replay` (called
/// with this packet's tag only once the MAC has verified; it records the tag or refuses),
/// then the routing information and payload are decrypted.
pub(crate) fn unwrap_layer<K: HopKem>(
    secret: &K::SecretKey,
    bytes: &[u8],
    replay: impl FnOnce(&[u8; REPLAY_TAG_LEN]) -> Result<(), OnionError>,
) -> Result<Processed<K>, OnionError> {
    check_packet::<K>(bytes)?;
    let layout = Layout::of::<K>();
    let (s, r) = (layout.slot_len, layout.routing_len);
    let (header, payload) = bytes.split_at(layout.header_len);
    let mac_off = layout.mac_off();
    let shared = K::decapsulate(secret, &header[layout.ct_off()..mac_off])?;
    let keys = HopKeys::derive(&shared)?;
    let beta = &header[layout.prefix_len..];
    let mac = keys.header_mac(&[&header[..mac_off], beta]);
    if !ct_eq(&mac, &header[mac_off..layout.prefix_len]) {
        return Err(OnionError::MacMismatch);
    }
    replay(&keys.replay_tag)?;

    // Decrypt the routing information, extended by one slot of zeros.
    let mut routing = vec![0u8; r + s];
    routing[..r].copy_from_slice(beta);
    keys.xor_header_stream(&mut routing);
    let mut target = [0u8; ID_LEN];
    target.copy_from_slice(&routing[1..1 + ID_LEN]);
    let command = routing[0];
    match command {
        CMD_FORWARD => {
            let mut out = Vec::with_capacity(layout.packet_len);
            out.push(K::VERSION);
            out.extend_from_slice(&routing[1 + ID_LEN..s]);
            out.extend_from_slice(&routing[s..]);
            out.extend_from_slice(payload);
            lioness_decrypt(&keys.payload, &mut out[layout.header_len..]);
            Ok(Processed::Forward {
                next_hop: NodeId::from_bytes(target),
                packet: OnionPacket::from_checked(out.into_boxed_slice()),
            })
        }
        CMD_DELIVER => {
            let mut p = payload.to_vec();
            lioness_decrypt(&keys.payload, &mut p);
            let message = decode_payload(&p)?;
            Ok(Processed::Deliver {
                mailbox: MailboxId::from_bytes(target),
                message,
            })
        }
        CMD_REPLY => {
            let mut p = Box::new([0u8; PAYLOAD_LEN]);
            p.copy_from_slice(payload);
            lioness_decrypt(&keys.payload, p.as_mut_slice());
            Ok(Processed::Reply {
                surb_id: SurbId::from_bytes(target),
                payload: ReplyPayload(p),
            })
        }
        found => Err(OnionError::InvalidCommand { found }),
    }
}
