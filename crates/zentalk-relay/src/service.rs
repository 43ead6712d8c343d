//! What a relay does with packets and mailbox requests, shared by every link task.
//!
//! * Onion packets: a link hands each packet to `Shared::dispatch_packet`, which runs
//!   `Shared::handle_packet` as its own task (bounded per link and in total), so packets
//!   from one link are peeled on every worker thread at once. Peeling ([`OnionRelay::process`]
//!   at the current epoch) runs on one of [`ONION_SHARDS`] shards of the onion state, chosen
//!   by a keyed hash of the packet's key-agreement ciphertext; the packet then goes to the
//!   pooled relay-to-relay link of its next hop (written in batches) or into the mailbox
//!   store, with a push to a connected owner.
//! * Mailbox access: challenge, [`verify_auth`], fetch, ack (driven by the link task in
//!   `relay.rs`).
//! * Store-nothing mode: a hash-only transit receipt per forwarded packet.
//! * The demo observation log.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tracing::debug;
use zentalk_crypto::hash::blake2b_256;
use zentalk_crypto::{IdentityPublicKey, NodeId, Signature, X25519PublicKey};
use zentalk_onion::{OnionError, OnionRelay, Processed};
use zentalk_storage::MailboxError;
use zentalk_storage::mailbox::Mailbox;
use zentalk_storage::mailbox::{
    Cursor, Envelope, MailboxBackend, MailboxId as StoreMailboxId, MessageId as StoreMessageId,
    PutOutcome,
};
use zentalk_wire::proto;
use zentalk_wire::{Flags, Frame, MessageId, MessageType};

use crate::clock;
use crate::directory::Directory;
use crate::epoch::{self, OnionKeys};
use crate::keys::RelayKeys;
use crate::limits::Limits;
use crate::link;
use crate::metrics::Metrics;

/// Domain separation string of the mailbox-access signature (see `proto/mailbox.proto`):
/// the owner signs `MAILBOX_AUTH_CONTEXT || relay_id || nonce || mailbox_id`.
pub const MAILBOX_AUTH_CONTEXT: &[u8] = b"zentalk-mailbox-auth-v1";

/// Domain separation string of a transit receipt signature (see `proto/receipt.proto`).
pub const TRANSIT_RECEIPT_CONTEXT: &[u8] = b"zentalk-transit-receipt-v1";

/// Transit receipt times are rounded down to a multiple of this many seconds.
pub const TRANSIT_TIME_GRANULARITY_SECS: u64 = 60;

/// Length of a mailbox challenge nonce.
pub const CHALLENGE_NONCE_LEN: usize = 32;

/// Packets waiting for one peer relay's link; when it is full, forwarding waits up to
/// [`PEER_QUEUE_WAIT`] for room, then drops (reason `queue_full`).
pub const PEER_QUEUE_CAPACITY: usize = 1024;

/// How long forwarding waits for room in a full peer queue before dropping the packet
/// (`queue_full`). While it waits, the inbound link is not read (backpressure).
pub const PEER_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// Most relay-to-relay links kept open at once; a packet for a further peer is dropped
/// (reason `too_many_peers`).
pub const MAX_PEER_LINKS: usize = 4096;

/// A relay-to-relay link with nothing to send for this long is closed (well below the
/// receiving side's idle timeout, so a link is never written after the peer closed it).
pub const PEER_LINK_IDLE: Duration = Duration::from_secs(60);

/// Deliveries (mailbox writes) in flight at once; a link with a packet to deliver waits when
/// they are all taken.
pub const MAX_DELIVERIES_IN_FLIGHT: usize = 256;

/// Items queued for pushing to one connected owner; when full, pushes are skipped (the items
/// stay stored and a fetch returns them).
pub const PUSH_QUEUE_CAPACITY: usize = 64;

/// Items one MailboxBatch carries when the fetch asks for 0 ("relay chooses").
pub const DEFAULT_BATCH_ITEMS: u32 = 16;

/// Shards of the onion state (keys and replay filters). Each shard is an [`OnionRelay`]
/// behind its own mutex, holding every epoch key and `replay_capacity / ONION_SHARDS` replay
/// tags per epoch; a packet goes to the shard chosen by a keyed hash (BLAKE2b-256 under a
/// random per-process key) of its KEM ciphertext. A packet's replay tag is derived from a
/// shared secret that is bound to that ciphertext, so a replayed packet always reaches the
/// shard that saw it first, and the random key keeps a flooder from aiming at one shard.
pub const ONION_SHARDS: usize = 16;

/// Onion packets being processed at once, all links together; a link with a further packet
/// stops reading until one finishes (backpressure).
pub const MAX_PACKETS_IN_PROCESSING: usize = 64;

/// Onion packets of one link being processed at once (so one busy link cannot take every
/// slot of [`MAX_PACKETS_IN_PROCESSING`]).
pub const MAX_PACKETS_IN_PROCESSING_PER_LINK: usize = 16;

/// Most packets a pooled relay-to-relay link writes in one batch (one write, one flush).
pub const PEER_BATCH_MAX: usize = 32;

/// Most entries kept in the demo observation log (oldest dropped first).
pub const DEMO_OBSERVATION_CAP: usize = 4096;

/// Reasons a packet is dropped (the `reason` label of `zentalk_relay_packets_dropped_total`).
pub const PACKET_DROP_REASONS: &[&str] = &[
    "replay",
    "epoch_expired",
    "epoch_future",
    "unknown_epoch",
    "mac",
    "bad_length",
    "bad_version",
    "malformed",
    "replay_filter_full",
    "reply_unsupported",
    "no_mailbox",
    "mailbox_full",
    "storage",
    "unknown_next_hop",
    "next_hop_unreachable",
    "queue_full",
    "too_many_peers",
];

/// The metrics label for a processing error.
pub fn drop_reason(e: &OnionError) -> &'static str {
    match e {
        OnionError::Replay => "replay",
        OnionError::EpochExpired { .. } => "epoch_expired",
        OnionError::EpochInFuture { .. } => "epoch_future",
        OnionError::UnknownEpoch { .. } => "unknown_epoch",
        OnionError::MacMismatch => "mac",
        OnionError::InvalidLength { .. } => "bad_length",
        OnionError::UnsupportedVersion { .. } => "bad_version",
        OnionError::ReplayFilterFull { .. } => "replay_filter_full",
        _ => "malformed",
    }
}

/// Who handed a packet to a relay, or where it went, as the demo observation log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Peer {
    /// A link whose Noise key is not a known relay's (a client).
    ClientLink,
    /// A relay, by node id.
    Relay(NodeId),
    /// A mailbox at this relay, by the first 4 bytes of its id.
    Mailbox([u8; 4]),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::ClientLink => write!(f, "client link"),
            Peer::Relay(n) => write!(f, "relay {}", &n.to_hex()[..16]),
            Peer::Mailbox(p) => write!(f, "mailbox {}", hex::encode(p)),
        }
    }
}

/// One packet as the demo observation log saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Where it came from.
    pub predecessor: Peer,
    /// Where it went.
    pub successor: Peer,
    /// Its size in bytes (the same for every packet).
    pub packet_len: usize,
}

/// A mailbox owner's connected link, waiting for pushes.
struct Owner {
    link_id: u64,
    tx: mpsc::Sender<Envelope>,
}

/// State shared by the accept loop, every link task and the peer-link tasks.
pub(crate) struct Shared {
    pub(crate) keys: Arc<RelayKeys>,
    pub(crate) node_id: NodeId,
    pub(crate) limits: Limits,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) store: Arc<Mailbox>,
    pub(crate) store_nothing: bool,
    pub(crate) directory: Arc<dyn Directory>,
    onion: OnionShards,
    onion_keys: Mutex<OnionKeys>,
    processing: Arc<Semaphore>,
    peers: Mutex<HashMap<NodeId, mpsc::Sender<Bytes>>>,
    owners: Mutex<HashMap<StoreMailboxId, Vec<Owner>>>,
    observations: Option<Mutex<VecDeque<Observation>>>,
    deliveries: Arc<Semaphore>,
    ttl_ms: u64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("node_id", &self.node_id)
            .field("store_nothing", &self.store_nothing)
            .finish_non_exhaustive()
    }
}

impl Shared {
    #[allow(clippy::too_many_arguments, reason = "crate-internal constructor")]
    pub(crate) fn new(
        keys: Arc<RelayKeys>,
        limits: Limits,
        metrics: Arc<Metrics>,
        store: Arc<Mailbox>,
        store_nothing: bool,
        directory: Arc<dyn Directory>,
        demo_observe: bool,
        replay_capacity: usize,
        ttl_ms: u64,
        shard_key: [u8; 32],
    ) -> Self {
        Self {
            node_id: keys.node_id(),
            keys,
            limits,
            metrics,
            store,
            store_nothing,
            directory,
            onion: OnionShards::new(replay_capacity, shard_key),
            onion_keys: Mutex::new(OnionKeys::new()),
            processing: Arc::new(Semaphore::new(MAX_PACKETS_IN_PROCESSING)),
            peers: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
            observations: demo_observe.then(|| Mutex::new(VecDeque::new())),
            deliveries: Arc::new(Semaphore::new(MAX_DELIVERIES_IN_FLIGHT)),
            ttl_ms,
        }
    }

    /// Brings the onion keys up to date for `now_secs`; true if they changed.
    pub(crate) fn rotate_keys(
        &self,
        now_secs: u64,
        rng: &mut ChaCha20Rng,
    ) -> Result<bool, OnionError> {
        let mut keys = self
            .onion_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut guards: Vec<_> = self
            .onion
            .shards
            .iter()
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner))
            .collect();
        let mut shards: Vec<&mut OnionRelay> = guards.iter_mut().map(|g| &mut **g).collect();
        Ok(keys.rotate_shards(now_secs, rng, &mut shards)?.changed())
    }

    /// The semaphore bounding packets in processing (all links together).
    pub(crate) fn processing(&self) -> &Arc<Semaphore> {
        &self.processing
    }

    /// Hands one onion packet received on a link to its own task. Waits (so the link stops
    /// reading) while the link has [`MAX_PACKETS_IN_PROCESSING_PER_LINK`] packets in
    /// processing, or all links together [`MAX_PACKETS_IN_PROCESSING`]. `link_slots` is the
    /// link's own semaphore of `MAX_PACKETS_IN_PROCESSING_PER_LINK` permits.
    pub(crate) async fn dispatch_packet(
        self: &Arc<Self>,
        packet: Bytes,
        from: &Peer,
        link_slots: &Arc<Semaphore>,
    ) {
        let Ok(mine) = Arc::clone(link_slots).acquire_owned().await else {
            return;
        };
        let Ok(global) = Arc::clone(&self.processing).acquire_owned().await else {
            return;
        };
        let me = Arc::clone(self);
        let from = from.clone();
        tokio::spawn(async move {
            me.handle_packet(packet, &from).await;
            drop((mine, global));
        });
    }

    /// Closes every pooled relay-to-relay link (their tasks send what is queued, then end).
    pub(crate) fn close_peer_links(&self) {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The semaphore bounding deliveries in flight.
    pub(crate) fn deliveries(&self) -> &Arc<Semaphore> {
        &self.deliveries
    }

    /// The onion public keys held, oldest epoch first.
    pub(crate) fn onion_public_keys(&self) -> Vec<(u32, X25519PublicKey)> {
        self.onion_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .public_keys()
    }

    /// The demo observation log (empty unless `demo_observe` is on).
    pub(crate) fn observations(&self) -> Vec<Observation> {
        match &self.observations {
            Some(log) => log
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    }

    fn observe(&self, predecessor: &Peer, successor: Peer, packet_len: usize) {
        if let Some(log) = &self.observations {
            let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
            if log.len() >= DEMO_OBSERVATION_CAP {
                log.pop_front();
            }
            log.push_back(Observation {
                predecessor: predecessor.clone(),
                successor,
                packet_len,
            });
        }
    }

    /// Who is on the other end of a link with Noise key `remote`, for the observation log.
    pub(crate) fn predecessor(&self, remote: &X25519PublicKey) -> Peer {
        if self.observations.is_none() {
            return Peer::ClientLink;
        }
        self.directory
            .identify(remote)
            .map_or(Peer::ClientLink, Peer::Relay)
    }

    /// Processes one onion packet received on a link.
    pub(crate) async fn handle_packet(self: &Arc<Self>, packet: Bytes, from: &Peer) {
        let now_secs = clock::unix_secs();
        let epoch = epoch::epoch_at(now_secs);
        let processed = self.onion.process(&packet, epoch);
        match processed {
            Err(e) => {
                let reason = drop_reason(&e);
                self.metrics.packet_dropped(reason);
                debug!(reason, "onion packet dropped");
            }
            Ok(Processed::Forward {
                next_hop,
                packet: out,
            }) => {
                self.observe(from, Peer::Relay(next_hop), packet.len());
                if self.store_nothing {
                    let hash = blake2b_256(&packet);
                    if let Err(e) = self.store.record_transit(&hash, clock::unix_ms()).await {
                        debug!(error = %e, "transit receipt not recorded");
                    }
                }
                self.forward(next_hop, Bytes::from(out.into_bytes())).await;
            }
            Ok(Processed::Deliver { mailbox, message }) => {
                self.observe(
                    from,
                    Peer::Mailbox(prefix4(mailbox.as_bytes())),
                    packet.len(),
                );
                if self.store_nothing {
                    self.metrics.packet_dropped("no_mailbox");
                    return;
                }
                let Ok(permit) = Arc::clone(&self.deliveries).acquire_owned().await else {
                    return;
                };
                let me = Arc::clone(self);
                tokio::spawn(async move {
                    me.deliver(StoreMailboxId(mailbox.to_bytes()), message)
                        .await;
                    drop(permit);
                });
            }
            Ok(Processed::Reply { .. }) => {
                self.metrics.packet_dropped("reply_unsupported");
            }
        }
    }

    async fn deliver(&self, mailbox: StoreMailboxId, message: Vec<u8>) {
        let id = message_id_for(&message);
        let now_ms = clock::unix_ms();
        match self.store.put(&mailbox, &id, &message, now_ms).await {
            Ok(PutOutcome::Stored { seq }) => {
                self.metrics.packet_delivered();
                self.metrics.mailbox_stored();
                let ttl_ms = self.store_ttl_ms();
                self.push(
                    &mailbox,
                    Envelope {
                        seq,
                        message_id: id,
                        payload: message,
                        received_at_ms: now_ms,
                        expires_at_ms: now_ms.saturating_add(ttl_ms),
                    },
                );
            }
            Ok(_) => self.metrics.packet_delivered_duplicate(),
            Err(MailboxError::Full { .. }) => self.metrics.packet_dropped("mailbox_full"),
            Err(e) => {
                self.metrics.packet_dropped("storage");
                debug!(error = %e, "mailbox put failed");
            }
        }
    }

    fn store_ttl_ms(&self) -> u64 {
        self.ttl_ms
    }

    fn push(&self, mailbox: &StoreMailboxId, envelope: Envelope) {
        let owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = owners.get(mailbox) {
            for owner in list {
                if owner.tx.try_send(envelope.clone()).is_err() {
                    self.metrics.push_skipped();
                }
            }
        }
    }

    /// Registers link `link_id` as a connected, authenticated owner of `mailbox`.
    pub(crate) fn register_owner(
        &self,
        mailbox: StoreMailboxId,
        link_id: u64,
    ) -> mpsc::Receiver<Envelope> {
        let (tx, rx) = mpsc::channel(PUSH_QUEUE_CAPACITY);
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        owners
            .entry(mailbox)
            .or_default()
            .push(Owner { link_id, tx });
        rx
    }

    /// Forgets link `link_id` as an owner of `mailbox`.
    pub(crate) fn unregister_owner(&self, mailbox: &StoreMailboxId, link_id: u64) {
        let mut owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = owners.get_mut(mailbox) {
            list.retain(|o| o.link_id != link_id);
            if list.is_empty() {
                owners.remove(mailbox);
            }
        }
    }

    /// Queues `packet` for relay `next`, opening a pooled link to it if none is open. When
    /// that peer's queue is full the caller waits (backpressure on the inbound link) up to
    /// [`PEER_QUEUE_WAIT`], then the packet is dropped (`queue_full`).
    async fn forward(self: &Arc<Self>, next: NodeId, packet: Bytes) {
        let tx = {
            let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
            match peers.get(&next) {
                Some(tx) if !tx.is_closed() => tx.clone(),
                _ => {
                    peers.remove(&next);
                    return self.spawn_peer(&mut peers, next, packet);
                }
            }
        };
        match tokio::time::timeout(PEER_QUEUE_WAIT, tx.send(packet)).await {
            Ok(Ok(())) => {}
            Ok(Err(mpsc::error::SendError(p))) => {
                // The peer task ended between the lookup and the send: start a new one.
                let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
                peers.remove(&next);
                self.spawn_peer(&mut peers, next, p);
            }
            Err(_) => self.metrics.packet_dropped("queue_full"),
        }
    }

    fn spawn_peer(
        self: &Arc<Self>,
        peers: &mut HashMap<NodeId, mpsc::Sender<Bytes>>,
        next: NodeId,
        packet: Bytes,
    ) {
        if peers.len() >= MAX_PEER_LINKS {
            self.metrics.packet_dropped("too_many_peers");
            return;
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE_CAPACITY);
        if tx.try_send(packet).is_err() {
            return;
        }
        peers.insert(next, tx);
        let me = Arc::clone(self);
        tokio::spawn(async move { me.peer_link(next, rx).await });
    }

    /// The task that owns the pooled link to one peer relay: writes queued packets in
    /// batches, reads the link (answers Ping, notices Close, EOF and errors at once, so a dead
    /// or restarted peer's link is dropped before the next packet needs it), re-dials once per
    /// batch when a write fails, closes when idle.
    async fn peer_link(self: Arc<Self>, peer: NodeId, mut rx: mpsc::Receiver<Bytes>) {
        let mut rng = match os_rng() {
            Some(rng) => rng,
            None => return,
        };
        let mut link: Option<link::Link<TcpStream>> = None;
        let mut packets: Vec<Bytes> = Vec::with_capacity(PEER_BATCH_MAX);
        let mut frames: Vec<Frame> = Vec::with_capacity(PEER_BATCH_MAX);
        let idle = tokio::time::sleep(PEER_LINK_IDLE);
        tokio::pin!(idle);
        loop {
            // Reading first: under a steady stream of packets the link is still read, so a
            // Close or end of stream is seen before the next batch is written into it.
            let wake = tokio::select! {
                biased;
                r = recv_opt(&mut link) => PeerWake::Received(r),
                n = rx.recv_many(&mut packets, PEER_BATCH_MAX) => PeerWake::Packets(n),
                () = &mut idle => PeerWake::Idle,
            };
            match wake {
                PeerWake::Packets(0) => break,
                PeerWake::Packets(_) => {
                    idle.as_mut()
                        .reset(tokio::time::Instant::now() + PEER_LINK_IDLE);
                }
                PeerWake::Idle => {
                    // Leave the pool if nothing arrived meanwhile.
                    let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
                    if rx.is_empty() {
                        peers.remove(&peer);
                        break;
                    }
                    idle.as_mut()
                        .reset(tokio::time::Instant::now() + PEER_LINK_IDLE);
                    continue;
                }
                PeerWake::Received(r) => {
                    if !self.peer_frame(&mut link, r, &mut rng).await {
                        link = None;
                        self.metrics.peer_link_lost();
                    }
                    continue;
                }
            }
            frames.clear();
            for packet in packets.drain(..) {
                match Frame::onion_packet(MessageId::random(&mut rng), Flags::EMPTY, packet) {
                    Ok(f) => frames.push(f),
                    Err(_) => self.metrics.packet_dropped("malformed"),
                }
            }
            if frames.is_empty() {
                continue;
            }
            let mut sent = false;
            let mut dropped_reason = "next_hop_unreachable";
            for _attempt in 0..2 {
                if link.is_none() {
                    match self.open_peer_link(peer, &mut rng).await {
                        Ok(l) => {
                            self.metrics.peer_link_opened();
                            link = Some(l);
                        }
                        Err(reason) => {
                            dropped_reason = reason;
                            break;
                        }
                    }
                }
                if let Some(l) = link.as_mut() {
                    match l.send_batch(&frames).await {
                        Ok(()) => {
                            sent = true;
                            break;
                        }
                        Err(e) => {
                            debug!(reason = e.reason(), "peer link failed; reconnecting");
                            self.metrics.peer_link_lost();
                            link = None;
                        }
                    }
                }
            }
            for _ in 0..frames.len() {
                if sent {
                    self.metrics.packet_forwarded();
                    self.metrics.frame_sent();
                } else {
                    self.metrics.packet_dropped(dropped_reason);
                }
            }
        }
        if let Some(mut l) = link {
            let _ = tokio::time::timeout(Duration::from_secs(1), l.shutdown()).await;
        }
    }

    /// Handles what a pooled link received; false when the link must be dropped.
    async fn peer_frame(
        &self,
        link: &mut Option<link::Link<TcpStream>>,
        received: Result<Frame, link::LinkError>,
        rng: &mut ChaCha20Rng,
    ) -> bool {
        let frame = match received {
            Ok(frame) => frame,
            Err(e) => {
                debug!(reason = e.reason(), "peer link ended");
                return false;
            }
        };
        match frame.message_type() {
            MessageType::Ping => {
                let Ok(ping) = frame.decode_body::<proto::Ping>() else {
                    return true;
                };
                let Some(l) = link.as_mut() else {
                    return false;
                };
                let Ok(pong) =
                    Frame::new(MessageId::random(rng), &proto::Pong { nonce: ping.nonce })
                else {
                    return true;
                };
                l.send(&pong).await.is_ok()
            }
            MessageType::Close => {
                debug!("peer closed the pooled link");
                false
            }
            // The opening MailboxChallenge, Pong, Error and anything else: nothing to do.
            _ => true,
        }
    }

    async fn open_peer_link(
        &self,
        peer: NodeId,
        rng: &mut ChaCha20Rng,
    ) -> Result<link::Link<TcpStream>, &'static str> {
        let info = self
            .directory
            .lookup(peer)
            .await
            .map_err(|_| "unknown_next_hop")?;
        let connect = async {
            let stream = TcpStream::connect(info.addr).await?;
            let _ = stream.set_nodelay(true);
            Ok::<_, std::io::Error>(stream)
        };
        let stream = tokio::time::timeout(self.limits.handshake_timeout, connect)
            .await
            .map_err(|_| "next_hop_unreachable")?
            .map_err(|_| "next_hop_unreachable")?;
        link::connect(
            stream,
            self.keys.noise_static(),
            &info.noise_key,
            &self.limits,
            rng,
        )
        .await
        .map_err(|_| "next_hop_unreachable")
    }

    /// The relay's signed transit receipt for `packet_hash`, if one is kept.
    pub(crate) async fn transit_receipt(
        &self,
        packet_hash: &[u8; 32],
    ) -> Result<Option<proto::TransitReceipt>, MailboxError> {
        let Some(ms) = self.store.transit_seen(packet_hash).await? else {
            return Ok(None);
        };
        let secs = ms / 1000;
        let relay_time = secs - secs % TRANSIT_TIME_GRANULARITY_SECS;
        let relay_id = self.node_id.to_bytes();
        let mut msg = Vec::with_capacity(TRANSIT_RECEIPT_CONTEXT.len() + 72);
        msg.extend_from_slice(TRANSIT_RECEIPT_CONTEXT);
        msg.extend_from_slice(packet_hash);
        msg.extend_from_slice(&relay_time.to_be_bytes());
        msg.extend_from_slice(&relay_id);
        let signature = self.keys.identity().sign(&msg);
        Ok(Some(proto::TransitReceipt {
            packet_hash: Bytes::copy_from_slice(packet_hash),
            relay_time,
            relay_id: Bytes::copy_from_slice(&relay_id),
            signature: Bytes::copy_from_slice(&signature.to_bytes()),
        }))
    }

    /// One page of `mailbox` after `after_seq`, at most `max_items` items and at most
    /// `max_body` encoded bytes.
    pub(crate) async fn fetch_batch(
        &self,
        mailbox: &StoreMailboxId,
        after_seq: u64,
        max_items: u32,
        max_body: usize,
    ) -> Result<proto::MailboxBatch, MailboxError> {
        let want = if max_items == 0 {
            DEFAULT_BATCH_ITEMS
        } else {
            max_items
        };
        let want = usize::try_from(want)
            .unwrap_or(usize::MAX)
            .min(zentalk_storage::mailbox::MAX_FETCH - 1);
        let page = self
            .store
            .fetch(mailbox, Cursor(after_seq), want + 1, clock::unix_ms())
            .await?;
        let mut more = page.envelopes.len() > want;
        let mut batch = proto::MailboxBatch::default();
        let mut size = 8usize;
        for env in page.envelopes.into_iter().take(want) {
            let item = item_of(env);
            let item_len = prost::Message::encoded_len(&item) + 8;
            if size + item_len > max_body {
                more = true;
                break;
            }
            size += item_len;
            batch.items.push(item);
        }
        batch.more = more;
        Ok(batch)
    }

    /// Deletes every item of `mailbox` with seq <= `up_to_seq` (one `DELETE` in the store,
    /// [`MailboxBackend::ack_up_to`]); returns how many.
    pub(crate) async fn ack_up_to(
        &self,
        mailbox: &StoreMailboxId,
        up_to_seq: u64,
    ) -> Result<u64, MailboxError> {
        let deleted = self.store.ack_up_to(mailbox, Cursor(up_to_seq)).await?;
        self.metrics.mailbox_acked(deleted);
        Ok(deleted)
    }
}

/// What woke a pooled link's task.
enum PeerWake {
    Packets(usize),
    Received(Result<Frame, link::LinkError>),
    Idle,
}

/// Receives from the pooled link if one is open; never completes otherwise.
async fn recv_opt(link: &mut Option<link::Link<TcpStream>>) -> Result<Frame, link::LinkError> {
    match link {
        Some(l) => l.recv().await,
        None => std::future::pending().await,
    }
}

/// The onion state split into [`ONION_SHARDS`] shards (see there).
struct OnionShards {
    shards: Vec<Mutex<OnionRelay>>,
    key: zeroize::Zeroizing<[u8; 32]>,
}

impl OnionShards {
    fn new(replay_capacity: usize, key: [u8; 32]) -> Self {
        let per_shard = replay_capacity.div_ceil(ONION_SHARDS);
        Self {
            shards: (0..ONION_SHARDS)
                .map(|_| Mutex::new(OnionRelay::new(per_shard)))
                .collect(),
            key: zeroize::Zeroizing::new(key),
        }
    }

    /// The shard of `packet`: a keyed hash of its KEM ciphertext (the bytes the shared
    /// secret, and so the replay tag, is bound to).
    fn shard_of(&self, packet: &[u8]) -> usize {
        let layout = zentalk_onion::Layout::of::<zentalk_onion::X25519Kem>();
        let ct = packet
            .get(KEM_CT_OFFSET..layout.prefix_len.saturating_sub(zentalk_onion::MAC_LEN))
            .unwrap_or(&[]);
        let h = zentalk_crypto::hash::blake2b_256_parts(&[self.key.as_slice(), ct]);
        usize::from(u16::from_le_bytes([h[0], h[1]])) % self.shards.len().max(1)
    }

    fn process(
        &self,
        packet: &[u8],
        epoch: u32,
    ) -> Result<Processed<zentalk_onion::X25519Kem>, OnionError> {
        let i = self.shard_of(packet);
        let Some(shard) = self.shards.get(i) else {
            return Err(OnionError::UnknownEpoch { epoch });
        };
        shard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .process(packet, epoch)
    }
}

/// Offset of the KEM ciphertext in an onion packet: after the version byte and the 4-byte
/// epoch.
const KEM_CT_OFFSET: usize = 1 + zentalk_onion::EPOCH_LEN;

/// A mailbox item as the wire carries it.
pub(crate) fn item_of(env: Envelope) -> proto::MailboxItem {
    proto::MailboxItem {
        seq: env.seq,
        message_id: Bytes::copy_from_slice(&env.message_id.0),
        payload: Bytes::from(env.payload),
    }
}

/// The mailbox message id of a delivered message: the first 16 bytes of BLAKE2b-256 of it,
/// so a retried send of the same ciphertext is stored once.
pub fn message_id_for(message: &[u8]) -> StoreMessageId {
    let h = blake2b_256(message);
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[..16]);
    StoreMessageId(id)
}

fn prefix4(b: &[u8; 32]) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

/// A fresh ChaCha20 RNG seeded from the OS.
pub(crate) fn os_rng() -> Option<ChaCha20Rng> {
    #[allow(
        clippy::disallowed_types,
        reason = "L2 driver: the OS RNG seeds per-task generators"
    )]
    let mut os = rand_core::OsRng;
    ChaCha20Rng::from_rng(&mut os).ok()
}

/// The bytes a mailbox owner signs to answer a challenge.
pub fn mailbox_auth_message(relay_id: &NodeId, nonce: &[u8; 32], mailbox_id: &[u8; 32]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(MAILBOX_AUTH_CONTEXT.len() + 96);
    msg.extend_from_slice(MAILBOX_AUTH_CONTEXT);
    msg.extend_from_slice(relay_id.as_bytes());
    msg.extend_from_slice(nonce);
    msg.extend_from_slice(mailbox_id);
    msg
}

/// Why a MailboxAuth was refused (each a fixed label for metrics and the Error detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No challenge is outstanding on this link (every challenge answers once).
    #[error("no outstanding challenge")]
    NoChallenge,
    /// The nonce is not the outstanding challenge's.
    #[error("nonce does not match the challenge")]
    WrongNonce,
    /// A field has the wrong length.
    #[error("malformed MailboxAuth")]
    Malformed,
    /// mailbox_id is not BLAKE2b-256(mailbox_key).
    #[error("mailbox id is not the hash of the mailbox key")]
    IdMismatch,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// This relay keeps no mailboxes (store-nothing mode).
    #[error("this relay keeps no mailboxes")]
    NoMailboxes,
}

impl AuthError {
    /// A fixed label.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::NoChallenge => "no_challenge",
            AuthError::WrongNonce => "wrong_nonce",
            AuthError::Malformed => "malformed",
            AuthError::IdMismatch => "id_mismatch",
            AuthError::BadSignature => "bad_signature",
            AuthError::NoMailboxes => "no_mailboxes",
        }
    }
}

/// Reasons a MailboxAuth fails (the `reason` label of `zentalk_relay_mailbox_auth_failures_total`).
pub const AUTH_FAILURE_REASONS: &[&str] = &[
    "not_authenticated",
    "no_challenge",
    "wrong_nonce",
    "malformed",
    "id_mismatch",
    "bad_signature",
    "no_mailboxes",
];

/// Checks a MailboxAuth against the outstanding challenge `nonce` of relay `relay_id`.
pub fn verify_auth(
    relay_id: &NodeId,
    nonce: Option<&[u8; 32]>,
    auth: &proto::MailboxAuth,
) -> Result<StoreMailboxId, AuthError> {
    let nonce = nonce.ok_or(AuthError::NoChallenge)?;
    let claimed: [u8; 32] = auth
        .nonce
        .as_ref()
        .try_into()
        .map_err(|_| AuthError::Malformed)?;
    if !zentalk_crypto::hash::ct_eq(&claimed, nonce) {
        return Err(AuthError::WrongNonce);
    }
    let mailbox_id: [u8; 32] = auth
        .mailbox_id
        .as_ref()
        .try_into()
        .map_err(|_| AuthError::Malformed)?;
    let key: [u8; 32] = auth
        .mailbox_key
        .as_ref()
        .try_into()
        .map_err(|_| AuthError::Malformed)?;
    if blake2b_256(&key) != mailbox_id {
        return Err(AuthError::IdMismatch);
    }
    let key = IdentityPublicKey::from_bytes(&key).map_err(|_| AuthError::Malformed)?;
    let signature = Signature::from_slice(&auth.signature).map_err(|_| AuthError::Malformed)?;
    key.verify(
        &mailbox_auth_message(relay_id, nonce, &mailbox_id),
        &signature,
    )
    .map_err(|_| AuthError::BadSignature)?;
    Ok(StoreMailboxId(mailbox_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zentalk_onion::{Hop, build_packet};

    const SEED: u64 = 0x7368_6172_6473;

    #[test]
    fn sharded_onion_state_drops_replays_and_spreads_packets() {
        println!("seed {SEED:#x}");
        let mut rng = ChaCha20Rng::seed_from_u64(SEED);
        let mut key = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rng, &mut key);
        let shards = OnionShards::new(64 * ONION_SHARDS, key);
        let secret = zentalk_crypto::X25519Secret::generate(&mut rng);
        let epoch = 1000;
        let public = secret.public_key();
        for s in &shards.shards {
            s.lock()
                .unwrap()
                .insert_epoch_key(epoch, secret.duplicate())
                .unwrap();
        }
        let route: [Hop; 2] = [
            Hop {
                node: NodeId::from_bytes([1; 32]),
                onion_key: public,
                epoch,
            },
            Hop {
                node: NodeId::from_bytes([2; 32]),
                onion_key: zentalk_crypto::X25519Secret::generate(&mut rng).public_key(),
                epoch,
            },
        ];
        let mut used = std::collections::HashSet::new();
        for _ in 0..64 {
            let p = build_packet(
                &mut rng,
                &route,
                zentalk_onion::MailboxId::from_bytes([3; 32]),
                b"x",
            )
            .unwrap();
            let bytes = p.packet.as_bytes();
            used.insert(shards.shard_of(bytes));
            assert!(matches!(
                shards.process(bytes, epoch),
                Ok(Processed::Forward { .. })
            ));
            // The same packet again reaches the same shard and is refused as a replay.
            assert!(matches!(
                shards.process(bytes, epoch),
                Err(OnionError::Replay)
            ));
        }
        // 64 packets over 16 shards: a keyed hash spreads them (all in one shard would mean
        // no parallelism; the chance of fewer than 8 distinct shards is negligible).
        assert!(used.len() >= 8, "only {} shards used", used.len());
        // Too short to hold a ciphertext: still a shard, and process refuses it by length.
        assert!(shards.shard_of(&[1, 2, 3]) < ONION_SHARDS);
        assert!(matches!(
            shards.process(&[1, 2, 3], epoch),
            Err(OnionError::InvalidLength { .. })
        ));
    }
}
