//! The sans-IO Kademlia node.
//!
//! Call order (as in quinn-proto): feed input with [`Node::handle_datagram`] and
//! [`Node::handle_timeout`]; issue commands ([`Node::bootstrap`], [`Node::find_node`],
//! [`Node::find_value`], [`Node::publish`]); then drain [`Node::poll_transmit`] (datagrams to
//! send), [`Node::poll_event`] (query results) and ask [`Node::poll_timeout`] when to call
//! `handle_timeout` next. Time is always the `now` argument (milliseconds on any monotonic
//! scale the caller keeps; record expiry compares it with Unix milliseconds, so drivers pass
//! Unix time in ms); randomness comes from a seed given to [`Node::new`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use zentalk_crypto::{IdentityKeyPair, NodeId};

use crate::error::{DhtError, MessageError, StoreError};
use crate::lookup::{ClosestPeersIter, DisjointPeersIter, IterState};
use crate::message::{
    Decoded, MAX_CONTACTS, Request, RequestMsg, Response, ResponseMsg, StoreStatus,
    decode_datagram, encode_request, encode_response, request_digest,
};
use crate::record::{REPUBLISH_INTERVAL_MS, Record};
use crate::routing::{Contact, InsertOutcome, RoutingTable, random_id_in_bucket};
use crate::store::{RecordStore, StoreLimits};

/// Most datagrams waiting in the outgoing queue; responses beyond it are dropped (as a full
/// socket buffer would).
pub const MAX_OUTGOING: usize = 4096;
/// Most events waiting to be polled; the oldest are dropped beyond it.
pub const MAX_EVENTS: usize = 1024;
/// How often expired records are purged (ms).
pub const PURGE_INTERVAL_MS: u64 = 60_000;

/// Node configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Bucket size and lookup result count (k = 20).
    pub k: usize,
    /// Requests in flight per lookup path (alpha = 3).
    pub alpha: usize,
    /// Disjoint lookup paths (S/Kademlia d); 1 = classic Kademlia.
    pub disjoint_paths: usize,
    /// Replacement-cache size per bucket.
    pub replacement_cache: usize,
    /// Time before a request is retried or failed (ms).
    pub request_timeout_ms: u64,
    /// Sends per request (1 = no retry).
    pub max_attempts: u8,
    /// Requests in flight at once.
    pub max_pending: usize,
    /// Queries running at once.
    pub max_queries: usize,
    /// A value lookup stops after this many valid records (the highest sequence wins).
    pub value_quorum: usize,
    /// Nodes a publish stores the record on.
    pub replication: usize,
    /// Inbound requesters being verified by ping at once.
    pub max_verify_pings: usize,
    /// Advertise our id in requests (servers) or stay out of routing tables (clients).
    pub server: bool,
    /// Refresh distant buckets after the bootstrap self-lookup.
    pub refresh_on_bootstrap: bool,
    /// Republish our own records every this many ms (0 = never).
    pub republish_interval_ms: u64,
    /// Record store limits.
    pub store: StoreLimits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            k: 20,
            alpha: 3,
            disjoint_paths: 1,
            replacement_cache: 20,
            request_timeout_ms: 1000,
            max_attempts: 2,
            max_pending: 512,
            max_queries: 64,
            value_quorum: 1,
            replication: 20,
            max_verify_pings: 32,
            server: true,
            refresh_on_bootstrap: true,
            republish_interval_ms: REPUBLISH_INTERVAL_MS,
            store: StoreLimits::default(),
        }
    }
}

/// Identifies a query started by a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// Cost and depth of a finished query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryStats {
    /// Requests sent (retries included).
    pub requests: u32,
    /// Authenticated responses received.
    pub responses: u32,
    /// Hop depth at which the result was reached (see the docs: 1 = a peer from our own
    /// table answered; 0 = the node's own store answered a value lookup).
    pub hops: u32,
    /// Start time (ms).
    pub started_ms: u64,
    /// End time (ms).
    pub finished_ms: u64,
}

/// Something the application asked for has finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Bootstrap reached the network (or not: `peers == 0`).
    Bootstrapped {
        /// The query.
        query: QueryId,
        /// Routing-table size afterwards.
        peers: usize,
    },
    /// A node lookup finished.
    NodesFound {
        /// The query.
        query: QueryId,
        /// Target.
        target: NodeId,
        /// Closest verified nodes, closest first.
        contacts: Vec<Contact>,
        /// Cost.
        stats: QueryStats,
    },
    /// A value lookup finished.
    ValueFound {
        /// The query.
        query: QueryId,
        /// Key.
        key: NodeId,
        /// The valid record with the highest sequence number found, if any.
        record: Option<Record>,
        /// Cost.
        stats: QueryStats,
    },
    /// A publish finished.
    Published {
        /// The query.
        query: QueryId,
        /// Key.
        key: NodeId,
        /// Nodes that hold the record (or a newer one) now.
        stored: usize,
        /// Cost.
        stats: QueryStats,
    },
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddr,
    /// One wire frame.
    pub payload: Vec<u8>,
}

/// A typed message to send (the simulator's view of [`Transmit`]).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant, reason = "short-lived queue entries")]
pub(crate) enum Outgoing {
    Request {
        to: SocketAddr,
        msg: RequestMsg,
    },
    Response {
        to: SocketAddr,
        msg: ResponseMsg,
        request: RequestMsg,
    },
}

#[derive(Debug, Clone, Copy)]
enum Purpose {
    Query {
        query: QueryId,
        path: usize,
        depth: u32,
    },
    Store {
        query: QueryId,
    },
    Bootstrap {
        query: QueryId,
    },
    Verify,
    EvictCheck,
    /// A read-repair STORE of the newest version to a holder of an older one.
    Repair,
}

#[derive(Debug, Clone)]
struct Pending {
    to: SocketAddr,
    expected: Option<NodeId>,
    msg: RequestMsg,
    attempts: u8,
    deadline: u64,
    purpose: Purpose,
}

#[derive(Debug, Clone)]
enum Iter {
    One(ClosestPeersIter),
    Disjoint(DisjointPeersIter),
}

impl Iter {
    fn new(target: NodeId, seeds: Vec<Contact>, cfg: &Config) -> Self {
        if cfg.disjoint_paths > 1 {
            Iter::Disjoint(DisjointPeersIter::new(
                target,
                seeds,
                cfg.alpha,
                cfg.k,
                cfg.disjoint_paths,
            ))
        } else {
            Iter::One(ClosestPeersIter::new(target, seeds, cfg.alpha, cfg.k))
        }
    }
    fn next_step(&mut self) -> (usize, IterState) {
        match self {
            Iter::One(i) => (0, i.next_step()),
            Iter::Disjoint(i) => i.next_step(),
        }
    }
    fn on_success(&mut self, path: usize, id: &NodeId, closer: Vec<Contact>) -> bool {
        match self {
            Iter::One(i) => i.on_success(id, closer),
            Iter::Disjoint(i) => i.on_success(path, id, closer),
        }
    }
    fn on_failure(&mut self, path: usize, id: &NodeId) -> bool {
        match self {
            Iter::One(i) => i.on_failure(id),
            Iter::Disjoint(i) => i.on_failure(path, id),
        }
    }
    fn finish(&mut self) {
        match self {
            Iter::One(i) => i.finish(),
            Iter::Disjoint(i) => i.finish(),
        }
    }
    fn results(&self) -> Vec<Contact> {
        match self {
            Iter::One(i) => i.results(),
            Iter::Disjoint(i) => i.results(),
        }
    }
}

#[derive(Debug, Clone)]
enum Kind {
    FindNode {
        target: NodeId,
        /// Internal (bootstrap self-lookup or bucket refresh): no event unless `bootstrap`.
        internal: bool,
        bootstrap: bool,
    },
    FindValue {
        key: NodeId,
        best: Option<Record>,
        found: usize,
        /// Holders that answered with a valid record, and its sequence number (read repair).
        holders: Vec<(Contact, u64)>,
    },
    Publish {
        record: Record,
        storing: Option<(usize, usize)>,
    },
    BootstrapPing {
        outstanding: usize,
    },
}

#[derive(Debug, Clone)]
struct Query {
    kind: Kind,
    iter: Option<Iter>,
    stats: QueryStats,
    best_distance: Option<[u8; 32]>,
}

/// One Kademlia node: routing table, record store, running queries. Contains no networking
/// code and reads no clock. `Debug` shows counts only (no key or RNG state).
pub struct Node {
    identity: IdentityKeyPair,
    id: NodeId,
    config: Config,
    rng: ChaCha20Rng,
    table: RoutingTable,
    store: RecordStore,
    pending: HashMap<u64, Pending>,
    queries: HashMap<QueryId, Query>,
    next_query: u64,
    out: VecDeque<Outgoing>,
    events: VecDeque<Event>,
    published: HashMap<NodeId, (Record, u64)>,
    next_purge: u64,
    dropped: u64,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("routing_table", &self.table.len())
            .field("records", &self.store.len())
            .field("pending", &self.pending.len())
            .field("queries", &self.queries.len())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node with `identity`, `config`, and a seed for its request ids and frame ids.
    pub fn new(
        identity: IdentityKeyPair,
        config: Config,
        seed: [u8; 32],
    ) -> Result<Self, DhtError> {
        if config.k == 0 || config.k > MAX_CONTACTS {
            return Err(DhtError::Config("k must be in 1..=20"));
        }
        if config.alpha == 0 || config.disjoint_paths == 0 || config.max_attempts == 0 {
            return Err(DhtError::Config(
                "alpha, disjoint_paths and max_attempts must be >= 1",
            ));
        }
        let id = NodeId::of(&identity.public_key());
        Ok(Self {
            table: RoutingTable::new(id, config.k, config.replacement_cache),
            store: RecordStore::new(config.store),
            identity,
            id,
            config,
            rng: ChaCha20Rng::from_seed(seed),
            pending: HashMap::new(),
            queries: HashMap::new(),
            next_query: 1,
            out: VecDeque::new(),
            events: VecDeque::new(),
            published: HashMap::new(),
            next_purge: 0,
            dropped: 0,
        })
    }

    /// Our node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The routing table.
    pub fn routing_table(&self) -> &RoutingTable {
        &self.table
    }

    /// The records held for others.
    pub fn store(&self) -> &RecordStore {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Sets the number of disjoint lookup paths for lookups started from now on (e.g. turn
    /// S/Kademlia on after a cheap single-path bootstrap).
    pub fn set_disjoint_paths(&mut self, d: usize) -> Result<(), DhtError> {
        if d == 0 {
            return Err(DhtError::Config("disjoint_paths must be >= 1"));
        }
        self.config.disjoint_paths = d;
        Ok(())
    }

    /// Requests in flight.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Queries running.
    pub fn running_queries(&self) -> usize {
        self.queries.len()
    }

    /// Datagrams dropped because the outgoing queue was full or failed to encode.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    // ---------------------------------------------------------------- input

    /// Handles one received datagram. Errors say why it was dropped; the node state is
    /// unchanged by a refused datagram except that a failed response counts as a failure of
    /// the request it claimed to answer.
    pub fn handle_datagram(
        &mut self,
        now: u64,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), MessageError> {
        match decode_datagram(bytes)? {
            Decoded::Request(msg) => {
                self.handle_request(now, from, msg);
                Ok(())
            }
            Decoded::Response(u) => {
                let digest = match self.pending.get(&u.msg.id) {
                    Some(p) if p.to == from => request_digest(&p.msg),
                    _ => return Err(MessageError::Unsolicited(u.msg.id)),
                };
                let responder = u.verify(&digest)?;
                self.handle_response(now, from, responder, u.msg)
            }
        }
    }

    /// Handles a decoded request (the simulator's entry point; `handle_datagram` decodes).
    pub(crate) fn handle_request(&mut self, now: u64, from: SocketAddr, msg: RequestMsg) {
        let k = self.config.k;
        let body = match &msg.body {
            Request::Ping => Response::Pong { observed: from },
            Request::FindNode { target } => Response::Nodes {
                contacts: self.closest_excluding(target, k, msg.sender),
            },
            Request::FindValue { key } => match self.store.get(key, now) {
                Some(r) => Response::Value {
                    record: Some(r.clone()),
                    closer: Vec::new(),
                },
                None => Response::Value {
                    record: None,
                    closer: self.closest_excluding(key, k, msg.sender),
                },
            },
            Request::Store { record } => {
                let key = record.key;
                let res = self
                    .store
                    .check_rate(from.ip(), now)
                    .and_then(|()| self.store.put(record.clone(), from.ip(), now));
                let status = match res {
                    Ok(_) => StoreStatus::Stored,
                    Err(StoreError::Stale { .. }) => StoreStatus::Stale,
                    Err(StoreError::Invalid(_)) => StoreStatus::Invalid,
                    Err(_) => StoreStatus::Limited,
                };
                Response::StoreAck {
                    status,
                    stored_sequence: self.store.sequence(&key, now),
                }
            }
        };
        let sender = msg.sender;
        self.push_out(Outgoing::Response {
            to: from,
            msg: ResponseMsg { id: msg.id, body },
            request: msg,
        });
        if let Some(sender) = sender {
            self.consider_verify(now, sender, from);
        }
    }

    fn closest_excluding(&self, target: &NodeId, k: usize, skip: Option<NodeId>) -> Vec<Contact> {
        let mut v = self.table.closest(target, k + 1);
        v.retain(|c| Some(c.id) != skip);
        v.truncate(k);
        v
    }

    /// An inbound requester claimed `id`: ping it and add it only if it answers as `id`.
    fn consider_verify(&mut self, now: u64, id: NodeId, addr: SocketAddr) {
        if id == self.id || !self.table.wants(&id) {
            return;
        }
        let verifying = self
            .pending
            .values()
            .filter(|p| matches!(p.purpose, Purpose::Verify))
            .count();
        if verifying >= self.config.max_verify_pings
            || self.pending.values().any(|p| p.expected == Some(id))
        {
            return;
        }
        self.send_request(now, addr, Some(id), Request::Ping, Purpose::Verify);
    }

    /// Handles an authenticated response (`responder` proved its id).
    pub(crate) fn handle_response(
        &mut self,
        now: u64,
        from: SocketAddr,
        responder: NodeId,
        msg: ResponseMsg,
    ) -> Result<(), MessageError> {
        match self.pending.get(&msg.id) {
            Some(p) if p.to == from => {}
            _ => return Err(MessageError::Unsolicited(msg.id)),
        }
        let Some(p) = self.pending.remove(&msg.id) else {
            return Err(MessageError::Unsolicited(msg.id));
        };
        if p.expected.is_some_and(|e| e != responder) {
            self.fail(now, p);
            return Err(MessageError::WrongResponder);
        }
        if !msg.body.answers(&p.msg.body) {
            self.fail(now, p);
            return Err(MessageError::WrongResponseKind);
        }
        // The responder proved its id over a fresh request: it may enter the table.
        let contact = Contact {
            id: responder,
            addr: from,
        };
        self.insert_verified(now, contact);
        match p.purpose {
            Purpose::Verify | Purpose::Repair => {}
            Purpose::EvictCheck => self.table.on_evict_ping(&responder, true, now),
            Purpose::Bootstrap { query } => self.bootstrap_ping_done(now, query),
            Purpose::Store { query } => {
                let ok = match &msg.body {
                    Response::StoreAck {
                        status,
                        stored_sequence,
                    } => {
                        let seq = match &p.msg.body {
                            Request::Store { record } => record.sequence,
                            _ => u64::MAX,
                        };
                        *status == StoreStatus::Stored
                            || (*status == StoreStatus::Stale && *stored_sequence >= seq)
                    }
                    _ => false,
                };
                self.store_done(now, query, ok);
            }
            Purpose::Query { query, path, depth } => {
                let from = Contact {
                    id: responder,
                    addr: from,
                };
                self.query_response(now, query, path, depth, from, msg.body);
            }
        }
        Ok(())
    }

    fn insert_verified(&mut self, now: u64, contact: Contact) {
        if let InsertOutcome::PingBeforeEvict { ping } = self.table.insert_verified(contact, now) {
            self.send_request(
                now,
                ping.addr,
                Some(ping.id),
                Request::Ping,
                Purpose::EvictCheck,
            );
        }
    }

    /// Retries or fails every request whose deadline has passed; republishes and purges.
    pub fn handle_timeout(&mut self, now: u64) {
        let mut due: Vec<(u64, u64)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, p)| (p.deadline, *id))
            .collect();
        // Deterministic order whatever the hash map's.
        due.sort_unstable();
        for (_, id) in due {
            let Some(mut p) = self.pending.remove(&id) else {
                continue;
            };
            if p.attempts < self.config.max_attempts {
                p.attempts += 1;
                p.deadline = now.saturating_add(self.config.request_timeout_ms);
                self.count_request(&p.purpose);
                self.push_out(Outgoing::Request {
                    to: p.to,
                    msg: p.msg.clone(),
                });
                self.pending.insert(id, p);
            } else {
                self.fail(now, p);
            }
        }
        if now >= self.next_purge {
            self.store.purge_expired(now);
            self.next_purge = now.saturating_add(PURGE_INTERVAL_MS);
        }
        if self.config.republish_interval_ms > 0 {
            let mut due: Vec<Record> = self
                .published
                .values()
                .filter(|(_, at)| *at <= now)
                .map(|(r, _)| r.clone())
                .collect();
            due.sort_unstable_by_key(|r| r.key);
            for r in due {
                if r.expires_at_ms <= now {
                    self.published.remove(&r.key);
                    continue;
                }
                if let Some(e) = self.published.get_mut(&r.key) {
                    e.1 = now.saturating_add(self.config.republish_interval_ms);
                }
                // Best effort: a full query table or an empty routing table retries later.
                let _ = self.start_publish(now, r);
            }
        }
    }

    /// When [`Node::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut t = self.pending.values().map(|p| p.deadline).min();
        if self.config.republish_interval_ms > 0
            && let Some(r) = self.published.values().map(|(_, at)| *at).min()
        {
            t = Some(t.map_or(r, |x| x.min(r)));
        }
        t
    }

    fn fail(&mut self, now: u64, p: Pending) {
        if let Some(id) = p.expected {
            match p.purpose {
                Purpose::EvictCheck => self.table.on_evict_ping(&id, false, now),
                Purpose::Verify => {}
                _ => {
                    self.table.on_failure(&id, now);
                }
            }
        }
        match p.purpose {
            Purpose::Query { query, path, .. } => {
                if let (Some(q), Some(id)) = (self.queries.get_mut(&query), p.expected)
                    && let Some(it) = q.iter.as_mut()
                {
                    it.on_failure(path, &id);
                }
                self.progress(now, query);
            }
            Purpose::Store { query } => self.store_done(now, query, false),
            Purpose::Bootstrap { query } => self.bootstrap_ping_done(now, query),
            Purpose::Verify | Purpose::EvictCheck | Purpose::Repair => {}
        }
    }

    // ---------------------------------------------------------------- commands

    /// Pings `seeds` (addresses only; their ids are learned from their signed answers), then
    /// looks up our own id and refreshes distant buckets. Emits [`Event::Bootstrapped`].
    pub fn bootstrap(&mut self, now: u64, seeds: &[SocketAddr]) -> Result<QueryId, DhtError> {
        let qid = self.new_query_id()?;
        let n = seeds.len();
        self.queries.insert(
            qid,
            Query {
                kind: Kind::BootstrapPing { outstanding: n },
                iter: None,
                stats: QueryStats {
                    started_ms: now,
                    ..QueryStats::default()
                },
                best_distance: None,
            },
        );
        for s in seeds {
            self.send_request(
                now,
                *s,
                None,
                Request::Ping,
                Purpose::Bootstrap { query: qid },
            );
        }
        if n == 0 {
            self.bootstrap_ping_done_inner(now, qid, true);
        }
        Ok(qid)
    }

    /// Looks up the k nodes closest to `target`. Emits [`Event::NodesFound`].
    pub fn find_node(&mut self, now: u64, target: NodeId) -> Result<QueryId, DhtError> {
        self.start_lookup(
            now,
            Kind::FindNode {
                target,
                internal: false,
                bootstrap: false,
            },
            target,
        )
    }

    /// Looks up the record under `key`. Emits [`Event::ValueFound`].
    ///
    /// The node's own records come first: one it holds for others ([`Node::store`]) or
    /// publishes itself ([`Node::publish`]), unexpired, counts as one valid answer. With the
    /// default [`Config::value_quorum`] of 1 that answer is enough: the event is queued at once
    /// (`hops` and `requests` 0) and nothing is sent, even with an empty routing table. With a
    /// larger quorum the lookup still runs, starting from the local record as the best version
    /// (remote holders of an older one get it by read repair). Without a local record, the
    /// lookup goes to the network as before ([`DhtError::NoPeers`] if the table is empty).
    pub fn find_value(&mut self, now: u64, key: NodeId) -> Result<QueryId, DhtError> {
        let local = self.local_record(&key, now);
        if local.is_some() && self.config.value_quorum <= 1 {
            return self.answer_locally(now, key, local);
        }
        let kind = Kind::FindValue {
            key,
            best: local.clone(),
            found: usize::from(local.is_some()),
            holders: Vec::new(),
        };
        match self.start_lookup(now, kind, key) {
            Err(DhtError::NoPeers) if local.is_some() => self.answer_locally(now, key, local),
            other => other,
        }
    }

    /// The newest unexpired record under `key` this node has itself: held for others or
    /// published by it.
    fn local_record(&self, key: &NodeId, now: u64) -> Option<Record> {
        let held = self.store.get(key, now);
        let own = self
            .published
            .get(key)
            .map(|(r, _)| r)
            .filter(|r| r.expires_at_ms > now);
        match (held, own) {
            (Some(h), Some(o)) if o.sequence > h.sequence => Some(o.clone()),
            (Some(h), _) => Some(h.clone()),
            (None, o) => o.cloned(),
        }
    }

    /// Finishes a value lookup from the node's own records, without the network.
    fn answer_locally(
        &mut self,
        now: u64,
        key: NodeId,
        record: Option<Record>,
    ) -> Result<QueryId, DhtError> {
        let query = self.new_query_id()?;
        self.push_event(Event::ValueFound {
            query,
            key,
            record,
            stats: QueryStats {
                started_ms: now,
                finished_ms: now,
                ..QueryStats::default()
            },
        });
        Ok(query)
    }

    /// Validates `record`, stores it on the `replication` closest nodes, and republishes it
    /// every [`Config::republish_interval_ms`] until it expires. Emits [`Event::Published`].
    pub fn publish(&mut self, now: u64, record: Record) -> Result<QueryId, DhtError> {
        record.validate(now)?;
        if self.config.republish_interval_ms > 0 {
            self.published.insert(
                record.key,
                (
                    record.clone(),
                    now.saturating_add(self.config.republish_interval_ms),
                ),
            );
        }
        self.start_publish(now, record)
    }

    /// Stops republishing the record under `key`.
    pub fn unpublish(&mut self, key: &NodeId) {
        self.published.remove(key);
    }

    fn start_publish(&mut self, now: u64, record: Record) -> Result<QueryId, DhtError> {
        let key = record.key;
        self.start_lookup(
            now,
            Kind::Publish {
                record,
                storing: None,
            },
            key,
        )
    }

    fn new_query_id(&mut self) -> Result<QueryId, DhtError> {
        if self.queries.len() >= self.config.max_queries {
            return Err(DhtError::TooManyQueries {
                limit: self.config.max_queries,
            });
        }
        let q = QueryId(self.next_query);
        self.next_query += 1;
        Ok(q)
    }

    fn start_lookup(&mut self, now: u64, kind: Kind, target: NodeId) -> Result<QueryId, DhtError> {
        let seeds = self.table.closest(&target, self.config.k);
        if seeds.is_empty() {
            return Err(DhtError::NoPeers);
        }
        let qid = self.new_query_id()?;
        let iter = Iter::new(target, seeds, &self.config);
        self.queries.insert(
            qid,
            Query {
                kind,
                iter: Some(iter),
                stats: QueryStats {
                    started_ms: now,
                    ..QueryStats::default()
                },
                best_distance: None,
            },
        );
        self.progress(now, qid);
        Ok(qid)
    }

    // ---------------------------------------------------------------- queries

    fn query_response(
        &mut self,
        now: u64,
        qid: QueryId,
        path: usize,
        depth: u32,
        from: Contact,
        body: Response,
    ) {
        let responder = from.id;
        let k = self.config.k;
        let quorum = self.config.value_quorum.max(1);
        let local = self.id;
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        q.stats.responses += 1;
        let clean = |v: Vec<Contact>| -> Vec<Contact> {
            let mut v: Vec<Contact> = v.into_iter().filter(|c| c.id != local).collect();
            v.truncate(k);
            v
        };
        let Some(iter) = q.iter.as_mut() else {
            return;
        };
        match (&mut q.kind, body) {
            (
                Kind::FindValue {
                    key,
                    best,
                    found,
                    holders,
                },
                Response::Value { record, closer },
            ) => {
                match record {
                    Some(r) => {
                        if r.key == *key && r.validate(now).is_ok() {
                            if !iter.on_success(path, &responder, Vec::new()) {
                                return;
                            }
                            if *found == 0 {
                                q.stats.hops = depth;
                            }
                            *found += 1;
                            holders.push((from, r.sequence));
                            if best.as_ref().is_none_or(|b| b.sequence < r.sequence) {
                                *best = Some(r);
                            }
                            if *found >= quorum {
                                iter.finish();
                            }
                        } else {
                            // A forged or stale-expired record: treat the peer as failed.
                            iter.on_failure(path, &responder);
                        }
                    }
                    None => {
                        iter.on_success(path, &responder, clean(closer));
                    }
                }
            }
            (_, Response::Nodes { contacts }) => {
                if iter.on_success(path, &responder, clean(contacts)) {
                    let target = match &q.kind {
                        Kind::FindNode { target, .. } => Some(*target),
                        Kind::Publish { record, .. } => Some(record.key),
                        _ => None,
                    };
                    if let Some(t) = target {
                        let d = crate::routing::distance(&responder, &t);
                        if q.best_distance.is_none_or(|b| d < b) {
                            q.best_distance = Some(d);
                            q.stats.hops = depth;
                        }
                    }
                }
            }
            _ => {
                iter.on_failure(path, &responder);
            }
        }
        self.progress(now, qid);
    }

    /// Sends what the query's iterator wants, or finishes the query.
    fn progress(&mut self, now: u64, qid: QueryId) {
        loop {
            let Some(q) = self.queries.get_mut(&qid) else {
                return;
            };
            let Some(iter) = q.iter.as_mut() else {
                return;
            };
            match iter.next_step() {
                (path, IterState::Contact { contact, depth }) => {
                    let body = match &q.kind {
                        Kind::FindNode { target, .. } => Request::FindNode { target: *target },
                        Kind::Publish { record, .. } => Request::FindNode { target: record.key },
                        Kind::FindValue { key, .. } => Request::FindValue { key: *key },
                        Kind::BootstrapPing { .. } => return,
                    };
                    if self.pending.len() >= self.config.max_pending {
                        iter.on_failure(path, &contact.id);
                        continue;
                    }
                    self.send_request(
                        now,
                        contact.addr,
                        Some(contact.id),
                        body,
                        Purpose::Query {
                            query: qid,
                            path,
                            depth,
                        },
                    );
                }
                (_, IterState::Waiting) => return,
                (_, IterState::Finished) => {
                    self.lookup_finished(now, qid);
                    return;
                }
            }
        }
    }

    fn lookup_finished(&mut self, now: u64, qid: QueryId) {
        let Some(mut q) = self.queries.remove(&qid) else {
            return;
        };
        q.stats.finished_ms = now;
        let results = q.iter.as_ref().map(Iter::results).unwrap_or_default();
        match q.kind {
            Kind::FindNode {
                target,
                internal,
                bootstrap,
            } => {
                if bootstrap {
                    self.push_event(Event::Bootstrapped {
                        query: qid,
                        peers: self.table.len(),
                    });
                    if self.config.refresh_on_bootstrap {
                        self.refresh_buckets(now);
                    }
                } else if !internal {
                    self.push_event(Event::NodesFound {
                        query: qid,
                        target,
                        contacts: results,
                        stats: q.stats,
                    });
                }
            }
            Kind::FindValue {
                key, best, holders, ..
            } => {
                // Read repair: holders that served an older version get the newest one.
                if let Some(b) = &best {
                    for (c, seq) in holders {
                        if seq < b.sequence {
                            self.send_request(
                                now,
                                c.addr,
                                Some(c.id),
                                Request::Store { record: b.clone() },
                                Purpose::Repair,
                            );
                        }
                    }
                }
                self.push_event(Event::ValueFound {
                    query: qid,
                    key,
                    record: best,
                    stats: q.stats,
                });
            }
            Kind::Publish { record, .. } => {
                let targets: Vec<Contact> =
                    results.into_iter().take(self.config.replication).collect();
                let key = record.key;
                if targets.is_empty() {
                    self.push_event(Event::Published {
                        query: qid,
                        key,
                        stored: 0,
                        stats: q.stats,
                    });
                    return;
                }
                let mut sent = 0usize;
                q.kind = Kind::Publish {
                    record: record.clone(),
                    storing: Some((targets.len(), 0)),
                };
                q.iter = None;
                self.queries.insert(qid, q);
                for c in targets {
                    self.send_request(
                        now,
                        c.addr,
                        Some(c.id),
                        Request::Store {
                            record: record.clone(),
                        },
                        Purpose::Store { query: qid },
                    );
                    sent += 1;
                }
                if sent == 0 {
                    self.store_done(now, qid, false);
                }
            }
            Kind::BootstrapPing { .. } => {}
        }
    }

    fn store_done(&mut self, now: u64, qid: QueryId, ok: bool) {
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        if ok {
            q.stats.responses += 1;
        }
        let Kind::Publish {
            record,
            storing: Some((outstanding, stored)),
        } = &mut q.kind
        else {
            return;
        };
        *outstanding = outstanding.saturating_sub(1);
        if ok {
            *stored += 1;
        }
        if *outstanding == 0 {
            let key = record.key;
            let stored = *stored;
            let mut stats = q.stats;
            stats.finished_ms = now;
            self.queries.remove(&qid);
            self.push_event(Event::Published {
                query: qid,
                key,
                stored,
                stats,
            });
        }
    }

    fn bootstrap_ping_done(&mut self, now: u64, qid: QueryId) {
        self.bootstrap_ping_done_inner(now, qid, false);
    }

    fn bootstrap_ping_done_inner(&mut self, now: u64, qid: QueryId, force: bool) {
        let Some(q) = self.queries.get_mut(&qid) else {
            return;
        };
        let Kind::BootstrapPing { outstanding } = &mut q.kind else {
            return;
        };
        if !force {
            *outstanding = outstanding.saturating_sub(1);
        }
        if *outstanding > 0 {
            return;
        }
        let seeds = self.table.closest(&self.id, self.config.k);
        if seeds.is_empty() {
            self.queries.remove(&qid);
            self.push_event(Event::Bootstrapped {
                query: qid,
                peers: 0,
            });
            return;
        }
        q.kind = Kind::FindNode {
            target: self.id,
            internal: true,
            bootstrap: true,
        };
        q.iter = Some(Iter::new(self.id, seeds, &self.config));
        self.progress(now, qid);
    }

    /// Looks up a random id in every bucket farther than our closest neighbour's, so that
    /// the nodes there learn of us and we of them (Kademlia's join).
    fn refresh_buckets(&mut self, now: u64) {
        let Some(lowest) = self.table.non_empty_buckets().next() else {
            return;
        };
        for index in (lowest + 1)..256 {
            let target = random_id_in_bucket(&self.id, index, &mut self.rng);
            // Best effort: stop when the query table is full.
            if self
                .start_lookup(
                    now,
                    Kind::FindNode {
                        target,
                        internal: true,
                        bootstrap: false,
                    },
                    target,
                )
                .is_err()
            {
                break;
            }
        }
    }

    // ---------------------------------------------------------------- output

    fn count_request(&mut self, purpose: &Purpose) {
        let q = match purpose {
            Purpose::Query { query, .. }
            | Purpose::Store { query }
            | Purpose::Bootstrap { query } => *query,
            _ => return,
        };
        if let Some(q) = self.queries.get_mut(&q) {
            q.stats.requests += 1;
        }
    }

    fn send_request(
        &mut self,
        now: u64,
        to: SocketAddr,
        expected: Option<NodeId>,
        body: Request,
        purpose: Purpose,
    ) {
        if self.pending.len() >= self.config.max_pending {
            self.dropped += 1;
            return;
        }
        let mut id = self.rng.next_u64();
        while self.pending.contains_key(&id) {
            id = self.rng.next_u64();
        }
        let msg = RequestMsg {
            id,
            sender: self.config.server.then_some(self.id),
            body,
        };
        self.count_request(&purpose);
        self.push_out(Outgoing::Request {
            to,
            msg: msg.clone(),
        });
        self.pending.insert(
            id,
            Pending {
                to,
                expected,
                msg,
                attempts: 1,
                deadline: now.saturating_add(self.config.request_timeout_ms),
                purpose,
            },
        );
    }

    fn push_out(&mut self, o: Outgoing) {
        if self.out.len() >= MAX_OUTGOING {
            self.dropped += 1;
            return;
        }
        self.out.push_back(o);
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// Queues a response crafted by the caller (the simulator's malicious nodes).
    pub(crate) fn respond_as(&mut self, to: SocketAddr, request: RequestMsg, body: Response) {
        self.push_out(Outgoing::Response {
            to,
            msg: ResponseMsg {
                id: request.id,
                body,
            },
            request,
        });
    }

    /// The earliest request deadline (the simulator ignores republish timers).
    pub(crate) fn next_request_deadline(&self) -> Option<u64> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// The next typed message to send (simulator).
    pub(crate) fn poll_outgoing(&mut self) -> Option<Outgoing> {
        self.out.pop_front()
    }

    /// The next datagram to send: requests as frames, responses as signed frames.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        while let Some(o) = self.out.pop_front() {
            let (to, bytes) = match o {
                Outgoing::Request { to, msg } => (to, encode_request(&msg, &mut self.rng)),
                Outgoing::Response { to, msg, request } => (
                    to,
                    encode_response(
                        &msg,
                        &request_digest(&request),
                        &self.identity,
                        &mut self.rng,
                    ),
                ),
            };
            match bytes {
                Ok(payload) => return Some(Transmit { to, payload }),
                Err(_) => self.dropped += 1,
            }
        }
        None
    }

    /// The next finished query.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}
