//! A tokio UDP driver around the sans-IO [`Node`] (feature `net`).
//!
//! One task owns the socket and the node. It loops: send what [`Node::poll_transmit`]
//! returns (one datagram = one wire frame), wait for a datagram, a command or the node's next
//! timeout, feed it in, answer finished queries. Commands arrive over a bounded channel
//! ([`NetConfig::command_queue`]); the node bounds requests in flight
//! ([`Config::max_pending`]), queries ([`Config::max_queries`]), retries
//! ([`Config::max_attempts`]) and timeouts ([`Config::request_timeout_ms`]). This is the only
//! place in the crate that reads the clock or the OS RNG.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use zentalk_crypto::{IdentityKeyPair, NodeId};

use crate::error::DhtError;
use crate::message::MAX_DATAGRAM_LEN;
use crate::node::{Config, Event, Node, QueryId};
use crate::record::Record;
use crate::routing::Contact;

/// Driver configuration.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The node's configuration.
    pub node: Config,
    /// Capacity of the command channel (commands wait when it is full).
    pub command_queue: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            node: Config::default(),
            command_queue: 64,
        }
    }
}

/// Driver errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// Socket error.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The node refused the command.
    #[error("dht: {0}")]
    Dht(#[from] DhtError),
    /// The driver task has stopped.
    #[error("driver stopped")]
    Closed,
}

enum Reply {
    Bootstrap(oneshot::Sender<Result<usize, NetError>>),
    Nodes(oneshot::Sender<Result<Vec<Contact>, NetError>>),
    Value(oneshot::Sender<Result<Option<Record>, NetError>>),
    Published(oneshot::Sender<Result<usize, NetError>>),
}

enum Command {
    Bootstrap(Vec<SocketAddr>, oneshot::Sender<Result<usize, NetError>>),
    FindNode(NodeId, oneshot::Sender<Result<Vec<Contact>, NetError>>),
    FindValue(NodeId, oneshot::Sender<Result<Option<Record>, NetError>>),
    Publish(Box<Record>, oneshot::Sender<Result<usize, NetError>>),
    TableLen(oneshot::Sender<usize>),
}

/// A handle to a running node; cheap to clone.
#[derive(Debug, Clone)]
pub struct DhtHandle {
    tx: mpsc::Sender<Command>,
    local_addr: SocketAddr,
    id: NodeId,
}

/// Milliseconds since the Unix epoch (record expiry is Unix time).
#[allow(
    clippy::disallowed_methods,
    reason = "the net driver is the crate's one clock reader (L2 role)"
)]
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[allow(
    clippy::disallowed_types,
    reason = "the net driver seeds the node from the OS RNG (L2 role)"
)]
fn os_seed() -> [u8; 32] {
    use rand_core::RngCore;
    let mut seed = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut seed);
    seed
}

/// Binds a UDP socket on `bind` and spawns the node's driver task.
pub async fn spawn(
    identity: IdentityKeyPair,
    bind: SocketAddr,
    config: NetConfig,
) -> Result<(DhtHandle, JoinHandle<()>), NetError> {
    let socket = UdpSocket::bind(bind).await?;
    let local_addr = socket.local_addr()?;
    let node = Node::new(identity, config.node, os_seed())?;
    let id = node.id();
    let (tx, rx) = mpsc::channel(config.command_queue.max(1));
    let task = tokio::spawn(run(node, socket, rx));
    Ok((DhtHandle { tx, local_addr, id }, task))
}

impl DhtHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, NetError>>) -> Command,
    ) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| NetError::Closed)?;
        rx.await.map_err(|_| NetError::Closed)?
    }

    /// Bootstraps from `seeds`; returns the routing-table size afterwards.
    pub async fn bootstrap(&self, seeds: Vec<SocketAddr>) -> Result<usize, NetError> {
        self.ask(|tx| Command::Bootstrap(seeds, tx)).await
    }

    /// The k closest nodes to `target`.
    pub async fn find_node(&self, target: NodeId) -> Result<Vec<Contact>, NetError> {
        self.ask(|tx| Command::FindNode(target, tx)).await
    }

    /// The record under `key` (validated, highest sequence found).
    pub async fn find_value(&self, key: NodeId) -> Result<Option<Record>, NetError> {
        self.ask(|tx| Command::FindValue(key, tx)).await
    }

    /// Publishes (and keeps republishing) `record`; returns how many nodes hold it.
    pub async fn publish(&self, record: Record) -> Result<usize, NetError> {
        self.ask(|tx| Command::Publish(Box::new(record), tx)).await
    }

    /// Routing-table size.
    pub async fn routing_table_len(&self) -> Result<usize, NetError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::TableLen(tx))
            .await
            .map_err(|_| NetError::Closed)?;
        rx.await.map_err(|_| NetError::Closed)
    }
}

async fn run(mut node: Node, socket: UdpSocket, mut rx: mpsc::Receiver<Command>) {
    let mut buf = vec![0u8; MAX_DATAGRAM_LEN + 1];
    let mut replies: HashMap<QueryId, Reply> = HashMap::new();
    loop {
        while let Some(t) = node.poll_transmit() {
            if let Err(e) = socket.send_to(&t.payload, t.to).await {
                tracing::debug!(to = %t.to, error = %e, "dht send failed");
            }
        }
        while let Some(ev) = node.poll_event() {
            dispatch(&mut replies, ev);
        }
        let now = unix_ms();
        let sleep_ms = node
            .poll_timeout()
            .map_or(60_000, |t| t.saturating_sub(now))
            .min(60_000);
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    let data = buf.get(..n).unwrap_or_default();
                    if let Err(e) = node.handle_datagram(unix_ms(), from, data) {
                        tracing::debug!(%from, error = %e, "dht datagram refused");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "dht recv failed"),
            },
            cmd = rx.recv() => match cmd {
                None => return,
                Some(cmd) => command(&mut node, &mut replies, cmd),
            },
            () = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {
                node.handle_timeout(unix_ms());
            }
        }
    }
}

fn command(node: &mut Node, replies: &mut HashMap<QueryId, Reply>, cmd: Command) {
    let now = unix_ms();
    match cmd {
        Command::Bootstrap(seeds, tx) => match node.bootstrap(now, &seeds) {
            Ok(q) => {
                replies.insert(q, Reply::Bootstrap(tx));
            }
            Err(e) => {
                let _ = tx.send(Err(e.into()));
            }
        },
        Command::FindNode(t, tx) => match node.find_node(now, t) {
            Ok(q) => {
                replies.insert(q, Reply::Nodes(tx));
            }
            Err(e) => {
                let _ = tx.send(Err(e.into()));
            }
        },
        Command::FindValue(k, tx) => match node.find_value(now, k) {
            Ok(q) => {
                replies.insert(q, Reply::Value(tx));
            }
            Err(e) => {
                let _ = tx.send(Err(e.into()));
            }
        },
        Command::Publish(r, tx) => match node.publish(now, *r) {
            Ok(q) => {
                replies.insert(q, Reply::Published(tx));
            }
            Err(e) => {
                let _ = tx.send(Err(e.into()));
            }
        },
        Command::TableLen(tx) => {
            let _ = tx.send(node.routing_table().len());
        }
    }
}

fn dispatch(replies: &mut HashMap<QueryId, Reply>, ev: Event) {
    let q = match &ev {
        Event::Bootstrapped { query, .. }
        | Event::NodesFound { query, .. }
        | Event::ValueFound { query, .. }
        | Event::Published { query, .. } => *query,
    };
    // Republish queries have no waiter.
    let Some(reply) = replies.remove(&q) else {
        return;
    };
    match (reply, ev) {
        (Reply::Bootstrap(tx), Event::Bootstrapped { peers, .. }) => {
            let _ = tx.send(Ok(peers));
        }
        (Reply::Nodes(tx), Event::NodesFound { contacts, .. }) => {
            let _ = tx.send(Ok(contacts));
        }
        (Reply::Value(tx), Event::ValueFound { record, .. }) => {
            let _ = tx.send(Ok(record));
        }
        (Reply::Published(tx), Event::Published { stored, .. }) => {
            let _ = tx.send(Ok(stored));
        }
        _ => {}
    }
}
