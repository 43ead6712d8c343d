//! Where relays are: node id -> address, Noise static key, onion keys per epoch.
//!
//! [`Directory`] is what forwarding needs. [`StaticDirectory`] is an in-memory table (tests,
//! fixed deployments); [`DhtDirectory`] looks relays up in the DHT (`zentalk_dht::net`): it
//! fetches the signed [`RelayDescriptor`] stored under the node id, checks it (signature, key
//! binding, expiry) and caches it for [`DHT_CACHE_TTL`].

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use zentalk_crypto::{NodeId, X25519PublicKey};
use zentalk_dht::net::DhtHandle;
use zentalk_dht::{Capabilities, RelayDescriptor};

use crate::clock;

/// How long a descriptor found in the DHT is used before it is looked up again.
pub const DHT_CACHE_TTL: Duration = Duration::from_secs(600);

/// Most descriptors a [`DhtDirectory`] caches (it forgets all when the cap is reached).
pub const DHT_CACHE_MAX: usize = 10_000;

/// A boxed future, as the object-safe [`Directory`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the directory knows about one relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Node id (BLAKE2b-256 of its identity key).
    pub node: NodeId,
    /// Where it accepts links.
    pub addr: SocketAddr,
    /// Its Noise static key (what a link initiator must know).
    pub noise_key: X25519PublicKey,
    /// Onion public keys per epoch.
    pub onion_keys: Vec<(u32, X25519PublicKey)>,
    /// Its capabilities.
    pub capabilities: Capabilities,
}

impl PeerInfo {
    /// The onion key of `epoch`, if listed.
    pub fn onion_key(&self, epoch: u32) -> Option<X25519PublicKey> {
        self.onion_keys
            .iter()
            .find(|(e, _)| *e == epoch)
            .map(|(_, k)| *k)
    }

    /// Reads a checked descriptor (its first address is used).
    pub fn from_descriptor(node: NodeId, d: &RelayDescriptor) -> Result<Self, DirectoryError> {
        let addr = *d.addrs.first().ok_or(DirectoryError::BadDescriptor)?;
        let onion_keys = d
            .onion_keys
            .iter()
            .filter_map(|(e, k)| Some((u32::try_from(*e).ok()?, X25519PublicKey::from_bytes(*k))))
            .collect();
        Ok(Self {
            node,
            addr,
            noise_key: X25519PublicKey::from_bytes(d.noise_static_key),
            onion_keys,
            capabilities: d.capabilities,
        })
    }
}

/// Why a lookup failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// No relay with that node id is known.
    #[error("relay not found")]
    NotFound,
    /// A record was found but is not a valid relay descriptor for that node id.
    #[error("invalid relay descriptor")]
    BadDescriptor,
    /// The DHT failed.
    #[error("dht: {0}")]
    Dht(#[from] zentalk_dht::net::NetError),
}

/// Node id -> relay, as forwarding needs it.
pub trait Directory: Send + Sync + std::fmt::Debug + 'static {
    /// Looks a relay up.
    fn lookup(&self, node: NodeId) -> BoxFuture<'_, Result<PeerInfo, DirectoryError>>;

    /// The node id of the relay whose Noise static key is `key`, if this directory already
    /// knows it (no network request). Used only to say who a packet came from in the demo
    /// observation log.
    fn identify(&self, key: &X25519PublicKey) -> Option<NodeId>;
}

/// A fixed in-memory directory.
#[derive(Debug, Default)]
pub struct StaticDirectory {
    peers: Mutex<HashMap<NodeId, PeerInfo>>,
}

impl StaticDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a relay.
    pub fn insert(&self, peer: PeerInfo) {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(peer.node, peer);
    }

    /// Removes a relay.
    pub fn remove(&self, node: &NodeId) {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(node);
    }
}

impl Directory for StaticDirectory {
    fn lookup(&self, node: NodeId) -> BoxFuture<'_, Result<PeerInfo, DirectoryError>> {
        let found = self
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&node)
            .cloned();
        Box::pin(async move { found.ok_or(DirectoryError::NotFound) })
    }

    fn identify(&self, key: &X25519PublicKey) -> Option<NodeId> {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .find(|p| p.noise_key == *key)
            .map(|p| p.node)
    }
}

/// A directory backed by the DHT, with a cache.
#[derive(Debug)]
pub struct DhtDirectory {
    dht: DhtHandle,
    cache: Mutex<HashMap<NodeId, (PeerInfo, u64)>>,
}

impl DhtDirectory {
    /// Looks relays up through `dht`.
    pub fn new(dht: DhtHandle) -> Self {
        Self {
            dht,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The DHT handle.
    pub fn dht(&self) -> &DhtHandle {
        &self.dht
    }

    fn cached(&self, node: &NodeId, now_ms: u64) -> Option<PeerInfo> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(node)
            .filter(|(_, until)| *until > now_ms)
            .map(|(p, _)| p.clone())
    }
}

impl Directory for DhtDirectory {
    fn lookup(&self, node: NodeId) -> BoxFuture<'_, Result<PeerInfo, DirectoryError>> {
        Box::pin(async move {
            let now_ms = clock::unix_ms();
            if let Some(p) = self.cached(&node, now_ms) {
                return Ok(p);
            }
            let record = self
                .dht
                .find_value(node)
                .await?
                .ok_or(DirectoryError::NotFound)?;
            if record.key != node {
                return Err(DirectoryError::BadDescriptor);
            }
            let (_identity, descriptor) = RelayDescriptor::from_record(&record, now_ms)
                .map_err(|_| DirectoryError::BadDescriptor)?;
            let peer = PeerInfo::from_descriptor(node, &descriptor)?;
            let ttl = u64::try_from(DHT_CACHE_TTL.as_millis()).unwrap_or(u64::MAX);
            let until = record.expires_at_ms.min(now_ms.saturating_add(ttl));
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if cache.len() >= DHT_CACHE_MAX {
                cache.clear();
            }
            cache.insert(node, (peer.clone(), until));
            Ok(peer)
        })
    }

    fn identify(&self, key: &X25519PublicKey) -> Option<NodeId> {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .find(|(p, _)| p.noise_key == *key)
            .map(|(p, _)| p.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_directory_lookup_and_identify() {
        let d = StaticDirectory::new();
        let node = NodeId::from_bytes([1; 32]);
        let key = X25519PublicKey::from_bytes([2; 32]);
        assert!(matches!(
            d.lookup(node).await,
            Err(DirectoryError::NotFound)
        ));
        d.insert(PeerInfo {
            node,
            addr: "127.0.0.1:1".parse().unwrap(),
            noise_key: key,
            onion_keys: vec![(5, X25519PublicKey::from_bytes([3; 32]))],
            capabilities: Capabilities::MAILBOX,
        });
        let p = d.lookup(node).await.unwrap();
        assert_eq!(p.onion_key(5), Some(X25519PublicKey::from_bytes([3; 32])));
        assert_eq!(p.onion_key(6), None);
        assert_eq!(d.identify(&key), Some(node));
        d.remove(&node);
        assert_eq!(d.identify(&key), None);
    }
}
