//! What a relay does with packets and mailbox requests, shared by every link task.
//!
//! * Onion packets: [`Shared::handle_packet`] peels one layer ([`OnionRelay::process`] at the
//!   current epoch), then forwards over the [`Pool`] of relay-to-relay links or delivers into
//!   the mailbox store and pushes to a connected owner.
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
use zentalk_wire::{Flags, Frame, MessageId};

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
    onion: Mutex<OnionRelay>,
    onion_keys: Mutex<OnionKeys>,
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
    ) -> Self {
        Self {
            node_id: keys.node_id(),
            keys,
            limits,
            metrics,
            store,
            store_nothing,
            directory,
            onion: Mutex::new(OnionRelay::new(replay_capacity)),
            onion_keys: Mutex::new(OnionKeys::new()),
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
        let mut onion = self.onion.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(keys.rotate(now_secs, rng, &mut onion)?.changed())
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
        let processed = {
            let mut onion = self.onion.lock().unwrap_or_else(PoisonError::into_inner);
            onion.process(&packet, epoch)
        };
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

    /// The task that owns the pooled link to one peer relay: sends queued packets, reconnects
    /// once per packet when the link fails, closes when idle.
    async fn peer_link(self: Arc<Self>, peer: NodeId, mut rx: mpsc::Receiver<Bytes>) {
        let mut rng = match os_rng() {
            Some(rng) => rng,
            None => return,
        };
        let mut link: Option<link::Link<TcpStream>> = None;
        loop {
            let packet = match tokio::time::timeout(PEER_LINK_IDLE, rx.recv()).await {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(_) => {
                    // Idle: leave the pool if nothing arrived meanwhile.
                    let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
                    if rx.is_empty() {
                        peers.remove(&peer);
                        break;
                    }
                    continue;
                }
            };
            let frame = match Frame::onion_packet(MessageId::random(&mut rng), Flags::EMPTY, packet)
            {
                Ok(f) => f,
                Err(_) => {
                    self.metrics.packet_dropped("malformed");
                    continue;
                }
            };
            let mut sent = false;
            let mut counted = false;
            for _attempt in 0..2 {
                if link.is_none() {
                    match self.open_peer_link(peer, &mut rng).await {
                        Ok(l) => link = Some(l),
                        Err(reason) => {
                            self.metrics.packet_dropped(reason);
                            counted = true;
                            break;
                        }
                    }
                }
                if let Some(l) = link.as_mut() {
                    match l.send(&frame).await {
                        Ok(()) => {
                            sent = true;
                            break;
                        }
                        Err(e) => {
                            debug!(reason = e.reason(), "peer link failed; reconnecting");
                            link = None;
                        }
                    }
                }
            }
            if sent {
                self.metrics.packet_forwarded();
                self.metrics.frame_sent();
            } else if !counted {
                self.metrics.packet_dropped("next_hop_unreachable");
            }
        }
        if let Some(mut l) = link {
            let _ = tokio::time::timeout(Duration::from_secs(1), l.shutdown()).await;
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

    /// Deletes every item of `mailbox` with seq <= `up_to_seq`; returns how many.
    pub(crate) async fn ack_up_to(
        &self,
        mailbox: &StoreMailboxId,
        up_to_seq: u64,
    ) -> Result<u64, MailboxError> {
        let mut deleted = 0u64;
        loop {
            let page = self
                .store
                .fetch(
                    mailbox,
                    Cursor::START,
                    zentalk_storage::mailbox::MAX_ACK,
                    clock::unix_ms(),
                )
                .await?;
            let ids: Vec<StoreMessageId> = page
                .envelopes
                .iter()
                .filter(|e| e.seq <= up_to_seq)
                .map(|e| e.message_id)
                .collect();
            if ids.is_empty() {
                break;
            }
            let n = self.store.ack(mailbox, &ids).await?;
            deleted += n;
            self.metrics.mailbox_acked(n);
            if n == 0 {
                break;
            }
        }
        Ok(deleted)
    }
}

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
