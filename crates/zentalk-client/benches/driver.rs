//! Client-to-client latency and throughput through the real driver.
//!
//! Everything runs in one process on one tokio runtime (2 worker threads): a UDP DHT
//! bootstrap node on 127.0.0.1, five zentalk-relay relays (real TCP + Noise links, SQLite
//! mailboxes, onion forwarding, descriptors published in and found through the DHT) and two
//! drivers, Alice and Bob, whose engine state and history live in encrypted SQLite stores
//! (`synchronous = FULL`) in a temporary directory. Bob holds his mailbox links open
//! (pushes). Every text goes through three relays, chosen by the driver as in real use.
//!
//! - **Latency**: `DRIVER_BENCH_N` texts (default 300), one at a time: the time from calling
//!   `send_text` on Alice to Bob's `DriverEvent::Message` carrying that message id. 20
//!   warm-up texts first (links, sessions) are not counted. Prints p50/p90/p99/max.
//! - **Throughput**: `DRIVER_BENCH_M` texts (default 500) sent concurrently (`send_text`
//!   calls all issued at once); prints when the last `send_text` returned and when the last
//!   text was announced by Bob, and texts/s = M / the latter.
//!
//! `DRIVER_BENCH_DIR` chooses where the relays' mailboxes and the two client stores live
//! (default: the system temporary directory); run it once on the real disk and once on tmpfs
//! (`/dev/shm`) to separate the fsync latency from the rest.
//!
//! Prints the load average (`/proc/loadavg`) before and after: the figures depend on what
//! else runs on the machine.
//!
//! Run: `cargo bench -p zentalk-client --bench driver --no-run`, then the printed binary with
//! `--bench`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use tokio::sync::broadcast;
use tokio::time::Instant;
use zentalk_client::{
    Client, DriverConfig, DriverError, DriverEvent, DriverHandle, DriverOptions, MessageId,
    start_with,
};
use zentalk_crypto::{Address, IdentityKeyPair, NodeId};
use zentalk_dht::net::{DhtHandle, NetConfig, spawn};
use zentalk_relay::{Limits, Relay, RelayConfig};
use zentalk_storage::client::{ClientStore, KdfParams};

const RELAYS: usize = 5;
const WARM_UP: usize = 20;
/// Bound for one text (or the whole burst) to arrive.
const PATIENCE: Duration = Duration::from_secs(120);

#[allow(
    clippy::disallowed_methods,
    reason = "relay descriptors live in Unix time"
)]
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".into(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

struct Net {
    boot: DhtHandle,
    nodes: Vec<NodeId>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Net {
    async fn start(dir: &Path, rng: &mut ChaCha20Rng) -> Self {
        let (boot, _) = spawn(
            IdentityKeyPair::generate(rng),
            "127.0.0.1:0".parse().unwrap(),
            NetConfig::default(),
        )
        .await
        .unwrap();
        let mut nodes = Vec::new();
        let mut stops = Vec::new();
        let mut tasks = Vec::new();
        for i in 0..RELAYS {
            let config = RelayConfig {
                listen_addr: "127.0.0.1:0".parse().unwrap(),
                metrics_addr: "127.0.0.1:0".parse().unwrap(),
                mailbox_path: dir.join(format!("relay{i}.sqlite")),
                dht_listen_addr: Some("127.0.0.1:0".parse().unwrap()),
                dht_bootstrap: vec![boot.local_addr()],
                shutdown_grace: Duration::from_millis(200),
                ..RelayConfig::default()
            };
            let relay = Relay::bind_with_keys(config, zentalk_relay::RelayKeys::generate(rng))
                .await
                .unwrap();
            nodes.push(relay.handle().node_id());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tasks.push(tokio::spawn(async move {
                let _ = relay
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await;
            }));
            stops.push(stop);
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let d = zentalk_client::dht::directory_from_dht(&boot, &nodes, unix_ms()).await;
            if d.relays().len() == RELAYS {
                break;
            }
            assert!(Instant::now() < deadline, "descriptors not found");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            boot,
            nodes,
            stops,
            tasks,
        }
    }

    async fn config(&self, rng: &mut ChaCha20Rng) -> DriverConfig {
        let (dht, _) = spawn(
            IdentityKeyPair::generate(rng),
            "127.0.0.1:0".parse().unwrap(),
            NetConfig::default(),
        )
        .await
        .unwrap();
        dht.bootstrap(vec![self.boot.local_addr()]).await.unwrap();
        DriverConfig {
            dht,
            limits: Limits::default(),
            relays: self.nodes.clone(),
            directory_refresh: Duration::from_secs(300),
            hold_mailbox_links: true,
        }
    }

    async fn shutdown(self) {
        for s in self.stops {
            let _ = s.send(());
        }
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Default options, except the event channel: it holds a whole burst (a bench reader that
/// falls behind would otherwise lose events).
fn options(rng: &mut ChaCha20Rng, burst: usize) -> DriverOptions {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    DriverOptions {
        rng_seed: Some(seed),
        event_capacity: (4 * burst).max(zentalk_client::driver::DEFAULT_EVENT_CAPACITY),
        ..DriverOptions::default()
    }
}

async fn driver(
    net: &Net,
    path: &Path,
    home: NodeId,
    burst: usize,
    rng: &mut ChaCha20Rng,
) -> DriverHandle {
    let client = Client::new(rng, home, net.nodes.clone());
    let store = ClientStore::create(path, b"correct horse", KdfParams::TEST)
        .await
        .unwrap();
    start_with(client, store, net.config(rng).await, options(rng, burst))
        .await
        .unwrap()
}

async fn add(a: &DriverHandle, whom: &DriverHandle) -> Address {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match a.add_contact(whom.identity_key()).await {
            Ok(info) => return info.address,
            Err(DriverError::Lookup(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("add_contact: {e}"),
        }
    }
}

/// Waits for Bob's `Message` events until every id in `want` was announced (ids announced
/// before they were known to the caller are in `early`). On timeout returns how many did not
/// arrive and the other events Bob announced meanwhile, by kind.
async fn arrived(
    rx: &mut broadcast::Receiver<DriverEvent>,
    want: &mut HashSet<MessageId>,
    early: &mut HashSet<MessageId>,
) -> Result<(), (usize, BTreeMap<String, usize>)> {
    want.retain(|id| !early.remove(id));
    let deadline = Instant::now() + PATIENCE;
    let mut other = BTreeMap::new();
    while !want.is_empty() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(DriverEvent::Message { id, .. })) => {
                if !want.remove(&id) {
                    early.insert(id);
                }
            }
            Ok(Ok(e)) => {
                let kind = format!("{e:?}");
                let kind = kind.split([' ', '{']).next().unwrap_or("?").to_owned();
                *other.entry(kind).or_insert(0) += 1;
            }
            Ok(Err(e)) => panic!("events: {e}"),
            Err(_) => return Err((want.len(), other)),
        }
    }
    Ok(())
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs both measurements; false if some text of the burst never arrived.
async fn run() -> bool {
    let n = env_usize("DRIVER_BENCH_N", 300);
    let m = env_usize("DRIVER_BENCH_M", 500);
    println!("driver bench: {RELAYS} relays, 3-hop routes, N = {n} sequential, M = {m} concurrent");
    println!("load average at start: {}", loadavg());
    let mut rng = ChaCha20Rng::seed_from_u64(4242);
    let tmp = match std::env::var_os("DRIVER_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    println!("stores in {}", tmp.path().display());
    let net = Net::start(tmp.path(), &mut rng).await;
    let alice = driver(
        &net,
        &tmp.path().join("alice.db"),
        net.nodes[0],
        m,
        &mut rng,
    )
    .await;
    let bob = driver(&net, &tmp.path().join("bob.db"), net.nodes[1], m, &mut rng).await;
    let mut rx = bob.subscribe();
    let b = add(&alice, &bob).await;
    let mut early = HashSet::new();

    for i in 0..WARM_UP {
        let id = alice.send_text(b, format!("warm-up {i}")).await.unwrap();
        arrived(&mut rx, &mut HashSet::from([id]), &mut early)
            .await
            .unwrap();
    }

    // (a) One text at a time.
    let mut lat = Vec::with_capacity(n);
    let t_all = Instant::now();
    for i in 0..n {
        let t0 = Instant::now();
        let id = alice.send_text(b, format!("text {i}")).await.unwrap();
        arrived(&mut rx, &mut HashSet::from([id]), &mut early)
            .await
            .unwrap();
        lat.push(t0.elapsed());
    }
    let seq_total = t_all.elapsed();
    lat.sort();
    println!(
        "latency send_text -> peer event, {n} texts one at a time: p50 {:.2} ms  p90 {:.2} ms  \
         p99 {:.2} ms  max {:.2} ms  ({:.1} texts/s sequential)",
        ms(pct(&lat, 0.50)),
        ms(pct(&lat, 0.90)),
        ms(pct(&lat, 0.99)),
        ms(lat[lat.len() - 1]),
        n as f64 / seq_total.as_secs_f64()
    );
    println!("load average after latency: {}", loadavg());

    // (b) M texts at once.
    let t0 = Instant::now();
    let sends = (0..m).map(|i| {
        let alice = alice.clone();
        async move { alice.send_text(b, format!("burst {i}")).await.unwrap() }
    });
    let ids: Vec<MessageId> = futures::future::join_all(sends).await;
    let queued = t0.elapsed();
    let mut want: HashSet<MessageId> = ids.into_iter().collect();
    if let Err((missing, other)) = arrived(&mut rx, &mut want, &mut early).await {
        println!(
            "burst: {missing} of {m} texts not announced by the peer after {} s; Alice still \
             has {} unacknowledged; other events at the peer meanwhile: {other:?}",
            PATIENCE.as_secs(),
            alice.pending().await.unwrap()
        );
        let _ = alice.shutdown().await;
        let _ = bob.shutdown().await;
        net.shutdown().await;
        return false;
    }
    let done = t0.elapsed();
    println!(
        "throughput {m} concurrent send_text: all queued in {:.0} ms, all arrived in {:.0} ms: \
         {:.0} texts/s",
        ms(queued),
        ms(done),
        m as f64 / done.as_secs_f64()
    );
    println!("load average at end: {}", loadavg());

    let _ = alice.shutdown().await;
    let _ = bob.shutdown().await;
    net.shutdown().await;
    true
}

fn main() {
    // Only `--bench` runs it (cargo test --benches would pass nothing and must stay fast).
    if !std::env::args().any(|a| a == "--bench") {
        println!("driver bench: pass --bench to run");
        return;
    }
    let complete = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
    if !complete {
        std::process::exit(1);
    }
}
