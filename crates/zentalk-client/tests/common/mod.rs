//! The network the driver and API integration tests run against, in one process: a UDP DHT
//! on 127.0.0.1, relays (TCP + Noise, SQLite mailboxes, onion forwarding, descriptors
//! published in and found through the DHT), and drivers whose engine state and history live
//! in encrypted SQLite stores; plus the steps those tests repeat.
#![allow(
    dead_code,
    reason = "each test file includes this module and uses part of it"
)]

use std::path::Path;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;
use zentalk_client::{
    Client, DriverConfig, DriverError, DriverEvent, DriverHandle, DriverOptions, start_subscribed,
    start_with,
};
use zentalk_crypto::{Address, IdentityKeyPair, NodeId};
use zentalk_dht::net::{DhtHandle, NetConfig, spawn};
use zentalk_relay::{Limits, Relay, RelayConfig, RelayHandle, RelayKeys};
use zentalk_storage::client::{ClientStore, KdfParams};

/// Generous bound for anything the network should do in well under a second.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// The passphrase of every test store.
pub(crate) const PASSPHRASE: &[u8] = b"correct horse";

/// The RNG of a test, its seed printed so a failure can be replayed.
pub(crate) fn seeded(seed: u64) -> ChaCha20Rng {
    println!("seed {seed}");
    ChaCha20Rng::seed_from_u64(seed)
}

#[allow(
    clippy::disallowed_methods,
    reason = "relays and records live in Unix time"
)]
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A DHT node on a free 127.0.0.1 port, not yet bootstrapped.
pub(crate) async fn dht_node(rng: &mut ChaCha20Rng) -> DhtHandle {
    spawn(
        IdentityKeyPair::generate(rng),
        "127.0.0.1:0".parse().unwrap(),
        NetConfig::default(),
    )
    .await
    .unwrap()
    .0
}

/// A running relay: its handle and what stops it.
fn run_relay(relay: Relay) -> (RelayHandle, oneshot::Sender<()>, JoinHandle<()>) {
    let handle = relay.handle();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = relay
            .run(async {
                let _ = stopped.await;
            })
            .await;
    });
    (handle, stop, task)
}

pub(crate) struct Net {
    pub(crate) boot: DhtHandle,
    pub(crate) relays: Vec<RelayHandle>,
    pub(crate) configs: Vec<RelayConfig>,
    pub(crate) keys: Vec<RelayKeys>,
    pub(crate) nodes: Vec<NodeId>,
    stops: Vec<Option<oneshot::Sender<()>>>,
    tasks: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Net {
    /// A DHT bootstrap node and `n` relays that publish their descriptors in it; returns when
    /// every descriptor can be found.
    pub(crate) async fn start(n: usize, rng: &mut ChaCha20Rng) -> Self {
        let boot = dht_node(rng).await;
        let dir = tempfile::tempdir().unwrap();
        let mut relays = Vec::new();
        let mut stops = Vec::new();
        let mut tasks = Vec::new();
        let mut configs = Vec::new();
        let mut keyss = Vec::new();
        for i in 0..n {
            let config = RelayConfig {
                listen_addr: "127.0.0.1:0".parse().unwrap(),
                metrics_addr: "127.0.0.1:0".parse().unwrap(),
                mailbox_path: dir.path().join(format!("relay{i}.sqlite")),
                dht_listen_addr: Some("127.0.0.1:0".parse().unwrap()),
                dht_bootstrap: vec![boot.local_addr()],
                shutdown_grace: Duration::from_millis(200),
                ..RelayConfig::default()
            };
            let keys = RelayKeys::generate(rng);
            keyss.push(keys.duplicate());
            let relay = Relay::bind_with_keys(config.clone(), keys).await.unwrap();
            configs.push(RelayConfig {
                listen_addr: relay.local_addr().unwrap(),
                ..config
            });
            let (handle, stop, task) = run_relay(relay);
            relays.push(handle);
            tasks.push(task);
            stops.push(Some(stop));
        }
        let nodes: Vec<NodeId> = relays.iter().map(RelayHandle::node_id).collect();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let dir = zentalk_client::dht::directory_from_dht(&boot, &nodes, unix_ms()).await;
            if dir.relays().len() == n {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "descriptors not found"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            boot,
            relays,
            configs,
            keys: keyss,
            nodes,
            stops,
            tasks,
            _dir: dir,
        }
    }

    /// Stops relay `i` (graceful: it closes its links, its port stops accepting).
    pub(crate) async fn stop_relay(&mut self, i: usize) {
        if let Some(s) = self.stops[i].take() {
            let _ = s.send(());
        }
        let t = std::mem::replace(&mut self.tasks[i], tokio::spawn(async {}));
        t.await.unwrap();
    }

    /// Starts relay `i` again: same keys, same link port, same mailbox file (fresh onion
    /// keys, republished descriptor).
    pub(crate) async fn restart_relay(&mut self, i: usize) {
        let relay = Relay::bind_with_keys(self.configs[i].clone(), self.keys[i].duplicate())
            .await
            .unwrap();
        let (handle, stop, task) = run_relay(relay);
        self.relays[i] = handle;
        self.tasks[i] = task;
        self.stops[i] = Some(stop);
    }

    /// A client's DHT node, bootstrapped from the network's.
    pub(crate) async fn client_dht(&self, rng: &mut ChaCha20Rng) -> DhtHandle {
        let h = dht_node(rng).await;
        h.bootstrap(vec![self.boot.local_addr()]).await.unwrap();
        h
    }

    /// A driver configuration with its own DHT node, every relay, held mailbox links.
    pub(crate) async fn config(&self, rng: &mut ChaCha20Rng) -> DriverConfig {
        DriverConfig {
            dht: self.client_dht(rng).await,
            limits: Limits::default(),
            relays: self.nodes.clone(),
            directory_refresh: Duration::from_secs(30),
            hold_mailbox_links: true,
        }
    }

    /// Stops every relay still running and waits for it.
    pub(crate) async fn shutdown(mut self) {
        for i in 0..self.stops.len() {
            self.stop_relay(i).await;
        }
    }
}

/// Fast retries and reconnects, a seed from `rng`.
pub(crate) fn options(rng: &mut ChaCha20Rng) -> DriverOptions {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    DriverOptions {
        rng_seed: Some(seed),
        retry_initial: Duration::from_millis(300),
        retry_max: Duration::from_millis(1_000),
        reconnect_initial: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(3),
        ..DriverOptions::default()
    }
}

/// A new encrypted store at `path` (test KDF parameters).
pub(crate) async fn new_store(path: &Path) -> ClientStore {
    ClientStore::create(path, PASSPHRASE, KdfParams::TEST)
        .await
        .unwrap()
}

/// Starts a driver for `client` on a new store at `path`, with its own DHT node from `net`
/// and `options` (called after the store and the configuration are made, so the RNG is
/// drawn in that order).
pub(crate) async fn start_driver(
    net: &Net,
    client: Client,
    path: &Path,
    rng: &mut ChaCha20Rng,
    options: impl FnOnce(&mut ChaCha20Rng) -> DriverOptions,
) -> DriverHandle {
    let store = new_store(path).await;
    let config = net.config(rng).await;
    start_with(client, store, config, options(rng))
        .await
        .unwrap()
}

/// Opens the store at `path` and loads the client saved in it.
pub(crate) async fn reopen(path: &Path) -> (ClientStore, Client) {
    let store = ClientStore::open(path, PASSPHRASE).await.unwrap();
    let client = Client::load(&store).await.unwrap().unwrap();
    (store, client)
}

/// Starts a driver again from the store at `path` alone, subscribed to its events.
pub(crate) async fn restart_driver(
    net: &Net,
    path: &Path,
    rng: &mut ChaCha20Rng,
    options: impl FnOnce(&mut ChaCha20Rng) -> DriverOptions,
) -> (DriverHandle, broadcast::Receiver<DriverEvent>) {
    let (store, client) = reopen(path).await;
    let config = net.config(rng).await;
    start_subscribed(client, store, config, options(rng))
        .await
        .unwrap()
}

/// Adds `whom` by identity key, waiting for its card to be in the DHT.
pub(crate) async fn add(a: &DriverHandle, whom: &DriverHandle) -> Address {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match a.add_contact(whom.identity_key()).await {
            Ok(info) => return info.address,
            Err(DriverError::Lookup(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("add_contact: {e}"),
        }
    }
}

/// The first event before `deadline` for which `pick` returns something; any other outcome
/// (time out, lagging or closed channel) panics with `what`.
pub(crate) async fn event_until<T>(
    rx: &mut broadcast::Receiver<DriverEvent>,
    deadline: tokio::time::Instant,
    what: &str,
    mut pick: impl FnMut(DriverEvent) -> Option<T>,
) -> T {
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(e)) => {
                if let Some(v) = pick(e) {
                    return v;
                }
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

/// [`event_until`] within [`PATIENCE`].
pub(crate) async fn event<T>(
    rx: &mut broadcast::Receiver<DriverEvent>,
    what: &str,
    pick: impl FnMut(DriverEvent) -> Option<T>,
) -> T {
    event_until(rx, tokio::time::Instant::now() + PATIENCE, what, pick).await
}

/// Shuts every driver down, then the network.
pub(crate) async fn shutdown_all(drivers: &[&DriverHandle], net: Net) {
    for d in drivers {
        d.shutdown().await.unwrap();
    }
    net.shutdown().await;
}
