//! A deterministic network simulator: many [`Node`]s in one process on virtual time.
//!
//! A [`Sim`] owns every node, a priority queue of messages in flight and a timer heap. Each
//! message gets a latency drawn uniformly from `[latency_min_ms, latency_max_ms]` and is lost
//! with probability `loss`. Nodes can be killed (they drop everything), added later (churn),
//! or turned malicious ([`Behavior`]). All randomness comes from one seed, printed if the
//! thread panics while the simulator is alive, so a failing run can be replayed exactly.
//!
//! Two delivery modes: typed (messages are Rust values and the simulator vouches for the
//! sender's id, which is what a verified signature proves: fast enough for 10,000 nodes), or
//! `wire` (every message is encoded into a wire frame, responses signed and verified exactly
//! as over UDP).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use zentalk_crypto::{IdentityKeyPair, NodeId};

use crate::error::DhtError;
use crate::message::{Request, Response, StoreStatus};
use crate::node::{Config, Event, Node, Outgoing, QueryId, QueryStats};
use crate::record::Record;
use crate::routing::{Contact, distance};

/// How a simulated node behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Follows the protocol.
    Honest,
    /// Answers PING (so it stays in routing tables) but drops every other request.
    DropRequests,
    /// Answers PING honestly; answers FIND_NODE / FIND_VALUE with the malicious nodes closest
    /// to the target (never a value), and acknowledges STOREs without storing.
    WrongContacts,
}

/// Simulator parameters.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Nodes created by [`Sim::new`].
    pub nodes: usize,
    /// Seed of everything.
    pub seed: u64,
    /// Minimum one-way latency (ms).
    pub latency_min_ms: u64,
    /// Maximum one-way latency (ms).
    pub latency_max_ms: u64,
    /// Probability that a message is lost (0.0..=1.0).
    pub loss: f64,
    /// Node configuration for every node.
    pub node: Config,
    /// Encode every message as a signed wire frame (slower, exercises the real codec).
    pub wire: bool,
    /// Virtual Unix time at start (ms).
    pub start_ms: u64,
    /// Nodes joining at once during [`Sim::bootstrap_all`].
    pub join_batch: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 100,
            seed: 1,
            latency_min_ms: 10,
            latency_max_ms: 100,
            loss: 0.0,
            node: Config {
                republish_interval_ms: 0,
                ..Config::default()
            },
            wire: false,
            start_ms: 1_800_000_000_000,
            join_batch: 50,
        }
    }
}

/// Simulator failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The node refused the command.
    #[error("node refused: {0}")]
    Node(#[from] DhtError),
    /// The query never finished (a bug: every query ends by timeouts).
    #[error("query did not finish")]
    Unfinished,
    /// No such node.
    #[error("no node {0}")]
    NoNode(usize),
}

#[derive(Debug)]
struct SimNode {
    node: Node,
    addr: SocketAddr,
    alive: bool,
    behavior: Behavior,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant, reason = "short-lived queue entries")]
enum Payload {
    Typed(Outgoing),
    Wire(Vec<u8>),
}

#[derive(Debug)]
struct Delivery {
    from: usize,
    to: usize,
    payload: Payload,
}

/// Counters over a whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Messages delivered to a live node.
    pub delivered: u64,
    /// Messages lost (loss, dead node, unknown address).
    pub lost: u64,
    /// Datagrams a node refused (wire mode).
    pub refused: u64,
}

/// The simulator.
#[derive(Debug)]
pub struct Sim {
    cfg: SimConfig,
    now: u64,
    rng: ChaCha20Rng,
    nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    in_flight: HashMap<usize, Delivery>,
    timers: BinaryHeap<Reverse<(u64, usize)>>,
    /// Earliest timer entry queued per node (avoids flooding the heap with duplicates).
    scheduled: Vec<Option<u64>>,
    seq: u64,
    slot: usize,
    events: Vec<(usize, Event)>,
    stats: SimStats,
    malicious: Vec<usize>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "zentalk-dht sim: replay with seed {} ({} nodes)",
                self.cfg.seed,
                self.nodes.len()
            );
        }
    }
}

fn sim_addr(i: usize) -> SocketAddr {
    let b = (i as u32).to_be_bytes();
    SocketAddr::from((Ipv4Addr::new(10, b[1], b[2], b[3]), 7000 + (b[0] as u16)))
}

impl Sim {
    /// Creates `cfg.nodes` nodes (not yet bootstrapped).
    pub fn new(cfg: SimConfig) -> Result<Self, SimError> {
        let mut sim = Sim {
            rng: ChaCha20Rng::seed_from_u64(cfg.seed),
            now: cfg.start_ms,
            cfg,
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            queue: BinaryHeap::new(),
            in_flight: HashMap::new(),
            timers: BinaryHeap::new(),
            scheduled: Vec::new(),
            seq: 0,
            slot: 0,
            events: Vec::new(),
            stats: SimStats::default(),
            malicious: Vec::new(),
        };
        for _ in 0..sim.cfg.nodes {
            sim.create_node()?;
        }
        Ok(sim)
    }

    fn create_node(&mut self) -> Result<usize, SimError> {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let identity = IdentityKeyPair::from_seed(&seed);
        self.rng.fill_bytes(&mut seed);
        let i = self.nodes.len();
        let addr = sim_addr(i);
        let node = Node::new(identity, self.cfg.node.clone(), seed)?;
        self.nodes.push(SimNode {
            node,
            addr,
            alive: true,
            behavior: Behavior::Honest,
        });
        self.by_addr.insert(addr, i);
        self.scheduled.push(None);
        Ok(i)
    }

    /// The seed (print it with any failure).
    pub fn seed(&self) -> u64 {
        self.cfg.seed
    }

    /// Virtual time (Unix ms).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Number of nodes (alive or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Run counters.
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.nodes.get(i).map(|n| &n.node)
    }

    /// Node `i`'s id and address.
    pub fn contact(&self, i: usize) -> Option<Contact> {
        self.nodes.get(i).map(|n| Contact {
            id: n.node.id(),
            addr: n.addr,
        })
    }

    /// True if node `i` is alive.
    pub fn is_alive(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(|n| n.alive)
    }

    /// The behaviour of node `i`.
    pub fn behavior(&self, i: usize) -> Option<Behavior> {
        self.nodes.get(i).map(|n| n.behavior)
    }

    /// Kills node `i`: it drops every message and never answers again.
    pub fn kill(&mut self, i: usize) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.alive = false;
        }
    }

    /// Brings a killed node back with the state it had (a partition that heals).
    pub fn revive(&mut self, i: usize) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.alive = true;
        }
    }

    /// Sets the disjoint lookup paths of every node (for lookups started from now on).
    pub fn set_disjoint_paths(&mut self, d: usize) -> Result<(), SimError> {
        for n in &mut self.nodes {
            n.node.set_disjoint_paths(d)?;
        }
        self.cfg.node.disjoint_paths = d;
        Ok(())
    }

    /// Sets node `i`'s behaviour.
    pub fn set_behavior(&mut self, i: usize, b: Behavior) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.behavior = b;
        }
        self.malicious = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.behavior != Behavior::Honest)
            .map(|(i, _)| i)
            .collect();
    }

    /// A uniformly random index in `0..n` from the simulator's RNG.
    pub fn random_index(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.rng.next_u64() % n as u64) as usize
    }

    /// A random 256-bit id from the simulator's RNG.
    pub fn random_id(&mut self) -> NodeId {
        let mut b = [0u8; 32];
        self.rng.fill_bytes(&mut b);
        NodeId::from_bytes(b)
    }

    /// Access to the simulator's RNG (to build records deterministically).
    pub fn rng(&mut self) -> &mut ChaCha20Rng {
        &mut self.rng
    }

    /// Bootstraps every node from node 0, `join_batch` nodes at a time, and runs until idle;
    /// a node left with an empty table (lost messages) retries twice.
    pub fn bootstrap_all(&mut self) {
        let n = self.nodes.len();
        let batch = self.cfg.join_batch.max(1);
        let mut i = 1;
        while i < n {
            let end = (i + batch).min(n);
            for j in i..end {
                self.join(j, 0);
            }
            self.run_until_idle();
            // A node whose bootstrap was lost (message loss) tries again, twice at most.
            for _ in 0..2 {
                let lost: Vec<usize> = (i..end)
                    .filter(|&j| self.node(j).is_some_and(|n| n.routing_table().is_empty()))
                    .collect();
                if lost.is_empty() {
                    break;
                }
                for j in lost {
                    self.join(j, 0);
                }
                self.run_until_idle();
            }
            i = end;
        }
    }

    /// Starts node `i`'s bootstrap from node `seed` (run the simulator to complete it).
    pub fn join(&mut self, i: usize, seed: usize) {
        let Some(seed_addr) = self.nodes.get(seed).map(|n| n.addr) else {
            return;
        };
        let now = self.now;
        if let Some(n) = self.nodes.get_mut(i) {
            let _ = n.node.bootstrap(now, &[seed_addr]);
        }
        self.flush(i);
    }

    /// Adds a node and bootstraps it from a random live honest node (churn), trying up to
    /// three seeds while its routing table stays empty (as a client retries a lost
    /// bootstrap). Returns its index.
    pub fn add_node(&mut self) -> Result<usize, SimError> {
        let i = self.create_node()?;
        let live: Vec<usize> = (0..i)
            .filter(|&j| self.is_alive(j) && self.behavior(j) == Some(Behavior::Honest))
            .collect();
        for _ in 0..3 {
            if live.is_empty() || self.node(i).is_some_and(|n| !n.routing_table().is_empty()) {
                break;
            }
            let k = self.random_index(live.len());
            if let Some(&seed) = live.get(k) {
                self.join(i, seed);
            }
            self.run_until_idle();
        }
        Ok(i)
    }

    /// Moves virtual time to `t` and runs every node's timers (republish, purge) there.
    pub fn advance_to(&mut self, t: u64) {
        self.run_until_idle();
        self.now = self.now.max(t);
        for i in 0..self.nodes.len() {
            if self.is_alive(i) {
                let now = self.now;
                if let Some(n) = self.nodes.get_mut(i) {
                    n.node.handle_timeout(now);
                }
                self.flush(i);
            }
        }
        self.run_until_idle();
    }

    // ------------------------------------------------------------- queries

    /// Starts a FIND_NODE on node `i`.
    pub fn start_find_node(&mut self, i: usize, target: NodeId) -> Result<QueryId, SimError> {
        let now = self.now;
        let n = self.nodes.get_mut(i).ok_or(SimError::NoNode(i))?;
        let q = n.node.find_node(now, target)?;
        self.flush(i);
        Ok(q)
    }

    /// Starts a FIND_VALUE on node `i`.
    pub fn start_find_value(&mut self, i: usize, key: NodeId) -> Result<QueryId, SimError> {
        let now = self.now;
        let n = self.nodes.get_mut(i).ok_or(SimError::NoNode(i))?;
        let q = n.node.find_value(now, key)?;
        self.flush(i);
        Ok(q)
    }

    /// Starts a publish on node `i`.
    pub fn start_publish(&mut self, i: usize, record: Record) -> Result<QueryId, SimError> {
        let now = self.now;
        let n = self.nodes.get_mut(i).ok_or(SimError::NoNode(i))?;
        let q = n.node.publish(now, record)?;
        self.flush(i);
        Ok(q)
    }

    /// Events emitted so far (node index, event), drained.
    pub fn take_events(&mut self) -> Vec<(usize, Event)> {
        std::mem::take(&mut self.events)
    }

    fn take_event(&mut self, i: usize, q: QueryId) -> Option<Event> {
        let pos = self.events.iter().position(|(n, e)| {
            *n == i
                && match e {
                    Event::NodesFound { query, .. }
                    | Event::ValueFound { query, .. }
                    | Event::Published { query, .. }
                    | Event::Bootstrapped { query, .. } => *query == q,
                }
        })?;
        Some(self.events.remove(pos).1)
    }

    /// Runs a FIND_NODE to completion: the contacts found and the query's cost.
    pub fn find_node(
        &mut self,
        i: usize,
        target: NodeId,
    ) -> Result<(Vec<Contact>, QueryStats), SimError> {
        let q = self.start_find_node(i, target)?;
        self.run_until_idle();
        match self.take_event(i, q) {
            Some(Event::NodesFound {
                contacts, stats, ..
            }) => Ok((contacts, stats)),
            _ => Err(SimError::Unfinished),
        }
    }

    /// Runs a FIND_VALUE to completion.
    pub fn find_value(&mut self, i: usize, key: NodeId) -> Result<Option<Record>, SimError> {
        self.find_value_stats(i, key).map(|(r, _)| r)
    }

    /// Runs a FIND_VALUE to completion, with its cost.
    pub fn find_value_stats(
        &mut self,
        i: usize,
        key: NodeId,
    ) -> Result<(Option<Record>, QueryStats), SimError> {
        let q = self.start_find_value(i, key)?;
        self.run_until_idle();
        match self.take_event(i, q) {
            Some(Event::ValueFound { record, stats, .. }) => Ok((record, stats)),
            _ => Err(SimError::Unfinished),
        }
    }

    /// Runs a publish to completion: how many nodes hold the record.
    pub fn publish(&mut self, i: usize, record: Record) -> Result<usize, SimError> {
        let q = self.start_publish(i, record)?;
        self.run_until_idle();
        match self.take_event(i, q) {
            Some(Event::Published { stored, .. }) => Ok(stored),
            _ => Err(SimError::Unfinished),
        }
    }

    // ------------------------------------------------------------- engine

    fn flush(&mut self, i: usize) {
        let wire = self.cfg.wire;
        let mut outs: Vec<(SocketAddr, Payload)> = Vec::new();
        let Some(n) = self.nodes.get_mut(i) else {
            return;
        };
        if wire {
            while let Some(t) = n.node.poll_transmit() {
                outs.push((t.to, Payload::Wire(t.payload)));
            }
        } else {
            while let Some(o) = n.node.poll_outgoing() {
                let to = match &o {
                    Outgoing::Request { to, .. } | Outgoing::Response { to, .. } => *to,
                };
                outs.push((to, Payload::Typed(o)));
            }
        }
        while let Some(e) = n.node.poll_event() {
            self.events.push((i, e));
        }
        if let Some(t) = n.node.next_request_deadline() {
            self.schedule(i, t);
        }
        for (to, payload) in outs {
            self.stats.sent += 1;
            let Some(&dst) = self.by_addr.get(&to) else {
                self.stats.lost += 1;
                continue;
            };
            if self.cfg.loss > 0.0 {
                let x = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                if x < self.cfg.loss {
                    self.stats.lost += 1;
                    continue;
                }
            }
            let span = self
                .cfg
                .latency_max_ms
                .saturating_sub(self.cfg.latency_min_ms);
            let lat = self.cfg.latency_min_ms
                + if span == 0 {
                    0
                } else {
                    self.rng.next_u64() % (span + 1)
                };
            self.seq += 1;
            self.slot += 1;
            let slot = self.slot;
            self.in_flight.insert(
                slot,
                Delivery {
                    from: i,
                    to: dst,
                    payload,
                },
            );
            self.queue.push(Reverse((self.now + lat, self.seq, slot)));
        }
    }

    fn schedule(&mut self, i: usize, t: u64) {
        let Some(s) = self.scheduled.get_mut(i) else {
            return;
        };
        if s.is_none_or(|cur| t < cur) {
            *s = Some(t);
            self.timers.push(Reverse((t, i)));
        }
    }

    /// Processes one message or timer. Returns false when nothing is left to do.
    pub fn step(&mut self) -> bool {
        let next_msg = self.queue.peek().map(|Reverse((t, _, _))| *t);
        let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
        match (next_msg, next_timer) {
            (None, None) => false,
            (Some(m), t) if t.is_none_or(|t| m <= t) => {
                let Some(Reverse((t, _, slot))) = self.queue.pop() else {
                    return false;
                };
                self.now = self.now.max(t);
                if let Some(d) = self.in_flight.remove(&slot) {
                    self.deliver(d);
                }
                true
            }
            _ => {
                let Some(Reverse((t, i))) = self.timers.pop() else {
                    return false;
                };
                self.now = self.now.max(t);
                let now = self.now;
                if let Some(s) = self.scheduled.get_mut(i)
                    && *s == Some(t)
                {
                    *s = None;
                }
                if let Some(n) = self.nodes.get_mut(i)
                    && n.alive
                {
                    if n.node.next_request_deadline().is_some_and(|d| d <= now) {
                        n.node.handle_timeout(now);
                        self.flush(i);
                    } else if let Some(d) = n.node.next_request_deadline() {
                        self.schedule(i, d);
                    }
                }
                true
            }
        }
    }

    /// Steps until no message is in flight and no request is pending.
    pub fn run_until_idle(&mut self) {
        while self.step() {}
    }

    fn deliver(&mut self, d: Delivery) {
        let now = self.now;
        let Some(from_addr) = self.nodes.get(d.from).map(|n| n.addr) else {
            return;
        };
        let Some(sender_id) = self.nodes.get(d.from).map(|n| n.node.id()) else {
            return;
        };
        let (alive, behavior) = match self.nodes.get(d.to) {
            Some(n) => (n.alive, n.behavior),
            None => return,
        };
        if !alive {
            self.stats.lost += 1;
            return;
        }
        self.stats.delivered += 1;
        match d.payload {
            Payload::Wire(bytes) => {
                if behavior != Behavior::Honest
                    && let Ok(crate::message::Decoded::Request(req)) =
                        crate::message::decode_datagram(&bytes)
                    && self.misbehave(d.to, from_addr, req.clone())
                {
                    self.flush(d.to);
                    return;
                }
                if let Some(n) = self.nodes.get_mut(d.to)
                    && n.node.handle_datagram(now, from_addr, &bytes).is_err()
                {
                    self.stats.refused += 1;
                }
            }
            Payload::Typed(Outgoing::Request { msg, .. }) => {
                if behavior != Behavior::Honest && self.misbehave(d.to, from_addr, msg.clone()) {
                    self.flush(d.to);
                    return;
                }
                if let Some(n) = self.nodes.get_mut(d.to) {
                    n.node.handle_request(now, from_addr, msg);
                }
            }
            Payload::Typed(Outgoing::Response { msg, .. }) => {
                if let Some(n) = self.nodes.get_mut(d.to)
                    && n.node
                        .handle_response(now, from_addr, sender_id, msg)
                        .is_err()
                {
                    self.stats.refused += 1;
                }
            }
        }
        self.flush(d.to);
    }

    /// Lets malicious node `m` handle `req`; returns true if it did (false: handle honestly).
    fn misbehave(&mut self, m: usize, from: SocketAddr, req: crate::message::RequestMsg) -> bool {
        let Some(behavior) = self.nodes.get(m).map(|n| n.behavior) else {
            return false;
        };
        if matches!(req.body, Request::Ping) {
            return false;
        }
        match behavior {
            Behavior::Honest => false,
            Behavior::DropRequests => true,
            Behavior::WrongContacts => {
                let k = self.cfg.node.k;
                let body = match &req.body {
                    Request::FindNode { target } => Response::Nodes {
                        contacts: self.closest_malicious(target, k),
                    },
                    Request::FindValue { key } => Response::Value {
                        record: None,
                        closer: self.closest_malicious(key, k),
                    },
                    Request::Store { record } => Response::StoreAck {
                        status: StoreStatus::Stored,
                        stored_sequence: record.sequence,
                    },
                    Request::Ping => return false,
                };
                if let Some(n) = self.nodes.get_mut(m) {
                    n.node.respond_as(from, req, body);
                }
                true
            }
        }
    }

    fn closest_malicious(&self, target: &NodeId, k: usize) -> Vec<Contact> {
        let mut v: Vec<([u8; 32], Contact)> = self
            .malicious
            .iter()
            .filter_map(|&i| self.contact(i))
            .map(|c| (distance(&c.id, target), c))
            .collect();
        if v.len() > k {
            v.select_nth_unstable_by(k, |a, b| a.0.cmp(&b.0));
            v.truncate(k);
        }
        v.sort_unstable_by_key(|a| a.0);
        v.into_iter().map(|(_, c)| c).collect()
    }
}
