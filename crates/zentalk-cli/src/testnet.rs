//! A local ZenTalk network on 127.0.0.1: one DHT bootstrap node and N relays that publish
//! their signed descriptors in the DHT, run either inside this process (what `zentalk demo`
//! shows) or as `zentalk-relayd` child processes (what the end-to-end tests drive).
//!
//! Both runners share everything else: the bootstrap node (a [`DhtHandle`] owned by the
//! [`Testnet`]), the wait until every relay's descriptor can be found and verified in the DHT
//! ([`Testnet::wait_for_descriptors`]), and the client side's DHT nodes
//! ([`Testnet::client_dht`]). Clients never get the relays from the harness: they build their
//! directory from the DHT, as a real client does.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rand_core::OsRng;
use zentalk_client::Directory;
use zentalk_crypto::{IdentityKeyPair, NodeId};
use zentalk_dht::net::{DhtHandle, NetConfig};
use zentalk_relay::service::Observation;
use zentalk_relay::{DhtDirectory, Relay, RelayConfig, RelayHandle, RelayKeys};

/// How long [`Testnet::wait_for_descriptors`] waits by default for every relay's descriptor.
pub const DESCRIPTOR_WAIT: Duration = Duration::from_secs(20);

/// Pause between two directory lookups while waiting for descriptors.
const DESCRIPTOR_POLL: Duration = Duration::from_millis(50);

/// How long a relayd child may take to print its addresses after it was started.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors of the local network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestnetError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The DHT node failed.
    #[error("dht: {0}")]
    Dht(#[from] zentalk_dht::net::NetError),
    /// An in-process relay failed to start.
    #[error("relay: {0}")]
    Relay(#[from] zentalk_relay::RelayError),
    /// A relay key file could not be read.
    #[error("relay keys: {0}")]
    Keys(#[from] zentalk_relay::KeyFileError),
    /// A relayd child did not start as expected.
    #[error("zentalk-relayd: {0}")]
    Daemon(String),
    /// Descriptors were still missing from the DHT when the wait ended.
    #[error("relay descriptors missing from the DHT after {waited:?}: found {found} of {expected}")]
    DescriptorsMissing {
        /// How long we waited.
        waited: Duration,
        /// Descriptors expected.
        expected: usize,
        /// Descriptors found.
        found: usize,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestnetError {
    let what = what.into();
    move |source| TestnetError::Io { what, source }
}

/// Where the relays run.
#[derive(Debug, Clone)]
pub enum Runner {
    /// Inside this process, each a [`Relay`] task on the current tokio runtime.
    InProcess,
    /// As `zentalk-relayd run` child processes.
    Processes {
        /// The `zentalk-relayd` executable.
        relayd: PathBuf,
        /// Its log filter (`--log-level`): a level or a tracing directive list. Its standard
        /// error goes to `relayd.log` in the relay's directory ([`TestRelay::log_path`]).
        log_level: String,
    },
}

/// What to start.
#[derive(Debug, Clone)]
pub struct TestnetConfig {
    /// How many relays.
    pub relays: usize,
    /// Where they run.
    pub runner: Runner,
    /// In-process relays only: keep the demo observation log (predecessor, successor, size of
    /// each packet), see [`TestRelay::observations`].
    pub demo_observe: bool,
}

enum Running {
    InProcess {
        handle: RelayHandle,
        directory: Arc<DhtDirectory>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: Option<tokio::task::JoinHandle<()>>,
    },
    Process {
        child: Child,
        // Kept open so the daemon never writes to a closed pipe.
        _stdout: BufReader<std::process::ChildStdout>,
    },
    Stopped,
}

/// One relay of the network.
pub struct TestRelay {
    node: NodeId,
    addr: SocketAddr,
    dir: PathBuf,
    running: Running,
}

impl std::fmt::Debug for TestRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRelay")
            .field("node", &self.node)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TestRelay {
    /// The relay's node id.
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// Where it accepts links.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its directory (key file, config, mailbox database, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The relayd child's log file (processes only; in-process relays log nowhere).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("relayd.log")
    }

    /// Its Noise static public key (in-process relays only).
    pub fn noise_key(&self) -> Option<zentalk_crypto::X25519PublicKey> {
        match &self.running {
            Running::InProcess { handle, .. } => Some(handle.peer_info().noise_key),
            _ => None,
        }
    }

    /// The demo observation log (in-process relays started with `demo_observe` only).
    pub fn observations(&self) -> Vec<Observation> {
        match &self.running {
            Running::InProcess { handle, .. } => handle.observations(),
            _ => Vec::new(),
        }
    }

    /// Its Prometheus metrics text (in-process relays only).
    pub fn metrics_text(&self) -> Option<String> {
        match &self.running {
            Running::InProcess { handle, .. } => Some(handle.metrics().render()),
            _ => None,
        }
    }

    /// Whether it still runs (a process that exited on its own counts as stopped).
    pub fn is_running(&mut self) -> bool {
        match &mut self.running {
            Running::InProcess { task, .. } => task.as_ref().is_some_and(|t| !t.is_finished()),
            Running::Process { child, .. } => matches!(child.try_wait(), Ok(None)),
            Running::Stopped => false,
        }
    }

    /// Kills it at once: SIGKILL for a child process (nothing flushed, nothing closed
    /// politely), an aborted task for an in-process relay.
    pub fn kill(&mut self) {
        match std::mem::replace(&mut self.running, Running::Stopped) {
            Running::InProcess { task, .. } => {
                if let Some(t) = task {
                    t.abort();
                }
            }
            Running::Process { mut child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Running::Stopped => {}
        }
    }

    /// Stops it gracefully: SIGTERM for a child process, the shutdown signal for an
    /// in-process relay; returns once it has exited.
    pub async fn stop(&mut self) {
        match std::mem::replace(&mut self.running, Running::Stopped) {
            Running::InProcess { stop, task, .. } => {
                if let Some(s) = stop {
                    let _ = s.send(());
                }
                if let Some(t) = task {
                    let _ = t.await;
                }
            }
            Running::Process { mut child, .. } => {
                terminate(&child);
                let _ = tokio::task::spawn_blocking(move || child.wait()).await;
            }
            Running::Stopped => {}
        }
    }
}

/// Sends SIGTERM to a child (through `kill(1)`: the workspace forbids unsafe code, so no
/// direct libc call).
pub fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The running network.
pub struct Testnet {
    relays: Vec<TestRelay>,
    bootstrap: DhtHandle,
    /// A server node that lives as long as the network: in-process relays look next hops up
    /// through it (so the harness can warm their caches), and the harness waits for
    /// descriptors with it. (A server node that stops stays in others' routing tables for a
    /// while, and lookups then wait for it to time out: clients use client-mode nodes.)
    lookup: DhtHandle,
    // Dropped last: the relays' files live here.
    _tmp: tempfile::TempDir,
}

impl std::fmt::Debug for Testnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Testnet")
            .field("bootstrap", &self.bootstrap.local_addr())
            .field("relays", &self.relays)
            .finish()
    }
}

/// A DHT node on an ephemeral 127.0.0.1 UDP port, joined through `seed` if given. A
/// `server` node enters other nodes' routing tables and stores records; a client node
/// (`server = false`) only asks, so it leaves nothing behind when it stops.
pub async fn dht_node(seed: Option<SocketAddr>, server: bool) -> Result<DhtHandle, TestnetError> {
    let identity = IdentityKeyPair::generate(&mut OsRng);
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut config = NetConfig::default();
    config.node.server = server;
    let (handle, _task) = zentalk_dht::net::spawn(identity, local, config).await?;
    if let Some(s) = seed {
        handle.bootstrap(vec![s]).await?;
    }
    Ok(handle)
}

#[allow(
    clippy::disallowed_methods,
    reason = "L2 harness: descriptors carry wall-clock expiry"
)]
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Testnet {
    /// Starts the bootstrap node, then the relays (each publishes its descriptor through its
    /// own DHT node joined through the bootstrap). Call [`Testnet::wait_for_descriptors`]
    /// before clients route through them.
    pub async fn start(config: &TestnetConfig) -> Result<Self, TestnetError> {
        let tmp = tempfile::Builder::new()
            .prefix("zentalk-testnet-")
            .tempdir()
            .map_err(io("temporary directory"))?;
        let bootstrap = dht_node(None, true).await?;
        // In-process relays look their next hops up through this node.
        let lookup = dht_node(Some(bootstrap.local_addr()), true).await?;
        let mut relays = Vec::with_capacity(config.relays);
        for i in 0..config.relays {
            let dir = tmp.path().join(format!("relay{}", i + 1));
            std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
            let relay = match &config.runner {
                Runner::InProcess => {
                    start_in_process(&dir, bootstrap.local_addr(), &lookup, config.demo_observe)
                        .await?
                }
                Runner::Processes { relayd, log_level } => {
                    start_process(relayd, &dir, bootstrap.local_addr(), log_level).await?
                }
            };
            relays.push(relay);
        }
        Ok(Self {
            relays,
            bootstrap,
            lookup,
            _tmp: tmp,
        })
    }

    /// The bootstrap node's UDP address (what a client's config names).
    pub fn bootstrap_addr(&self) -> SocketAddr {
        self.bootstrap.local_addr()
    }

    /// The relays, in start order.
    pub fn relays(&self) -> &[TestRelay] {
        &self.relays
    }

    /// One relay, mutably (to kill or stop it).
    pub fn relay_mut(&mut self, i: usize) -> Option<&mut TestRelay> {
        self.relays.get_mut(i)
    }

    /// The relays' node ids (what a client's config lists).
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.relays.iter().map(TestRelay::node_id).collect()
    }

    /// A fresh DHT node in client mode joined through the bootstrap, for a client.
    pub async fn client_dht(&self) -> Result<DhtHandle, TestnetError> {
        dht_node(Some(self.bootstrap_addr()), false).await
    }

    /// Waits until every relay's signed descriptor is found and verified in the DHT (at most
    /// `timeout`), then returns the directory a client builds from them. In-process relays
    /// also look each other up, so their observation logs name the relay a packet came from.
    pub async fn wait_for_descriptors(&self, timeout: Duration) -> Result<Directory, TestnetError> {
        let nodes = self.node_ids();
        let dht = &self.lookup;
        let deadline = tokio::time::Instant::now() + timeout;
        let dir = loop {
            let dir = zentalk_client::dht::directory_from_dht(dht, &nodes, unix_ms()).await;
            if dir.relays().len() == nodes.len() {
                break dir;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(TestnetError::DescriptorsMissing {
                    waited: timeout,
                    expected: nodes.len(),
                    found: dir.relays().len(),
                });
            }
            tokio::time::sleep(DESCRIPTOR_POLL).await;
        };
        for relay in &self.relays {
            if let Running::InProcess { directory, .. } = &relay.running {
                for node in &nodes {
                    use zentalk_relay::Directory as _;
                    let _ = directory.lookup(*node).await;
                }
            }
        }
        Ok(dir)
    }

    /// Stops every relay gracefully.
    pub async fn stop(mut self) {
        for r in &mut self.relays {
            r.stop().await;
        }
    }
}

async fn start_in_process(
    dir: &Path,
    bootstrap: SocketAddr,
    lookup: &DhtHandle,
    demo_observe: bool,
) -> Result<TestRelay, TestnetError> {
    let config = RelayConfig {
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        dht_listen_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        dht_bootstrap: vec![bootstrap],
        mailbox_path: dir.join("mailbox.sqlite"),
        demo_observe,
        shutdown_grace: Duration::from_secs(1),
        ..RelayConfig::default()
    };
    // The relay publishes its descriptor through its own DHT node; the directory it forwards
    // with is a DhtDirectory too, on the shared lookup node, so the harness can warm its
    // cache and the observation log can name the relay a packet came from.
    let directory = Arc::new(DhtDirectory::new(lookup.clone()));
    let dyn_dir: Arc<dyn zentalk_relay::Directory> = directory.clone();
    let relay =
        Relay::bind_with_directory(config, RelayKeys::generate(&mut OsRng), Some(dyn_dir)).await?;
    let handle = relay.handle();
    let addr = relay.local_addr().map_err(io("relay listener"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = relay
            .run(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(TestRelay {
        node: handle.node_id(),
        addr,
        dir: dir.to_path_buf(),
        running: Running::InProcess {
            handle,
            directory,
            stop: Some(stop),
            task: Some(task),
        },
    })
}

async fn start_process(
    relayd: &Path,
    dir: &Path,
    bootstrap: SocketAddr,
    log_level: &str,
) -> Result<TestRelay, TestnetError> {
    let out = Command::new(relayd)
        .args(["init", "--dir"])
        .arg(dir)
        .output()
        .map_err(io(format!("run {}", relayd.display())))?;
    if !out.status.success() {
        return Err(TestnetError::Daemon(format!(
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let keys = RelayKeys::load_file(&dir.join("relay.key"))?;
    let config = dir.join("testnet.toml");
    std::fs::write(
        &config,
        format!(
            "listen_addr = \"127.0.0.1:0\"\nmetrics_addr = \"127.0.0.1:0\"\n\
             dht_listen_addr = \"127.0.0.1:0\"\ndht_bootstrap = [\"{bootstrap}\"]\n\
             shutdown_grace_ms = 1000\n"
        ),
    )
    .map_err(io(format!("write {}", config.display())))?;
    let log = std::fs::File::create(dir.join("relayd.log")).map_err(io("relayd.log"))?;
    let mut child = Command::new(relayd)
        .args(["run", "--config"])
        .arg(&config)
        .args(["--log-level", log_level])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(io(format!("start {}", relayd.display())))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| TestnetError::Daemon("no stdout".into()))?;
    // Read the startup lines off the runtime's threads (a blocking pipe read), bounded.
    let read = tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stdout);
        let (mut addr, mut dht) = (None, None);
        let mut line = String::new();
        while addr.is_none() || dht.is_none() {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let l = line.trim();
            if let Some(a) = l.strip_prefix("listening on ") {
                addr = a.parse::<SocketAddr>().ok();
            } else if let Some(a) = l.strip_prefix("dht on ") {
                dht = a.parse::<SocketAddr>().ok();
            }
        }
        (reader, addr)
    });
    let (reader, addr) = match tokio::time::timeout(STARTUP_TIMEOUT, read).await {
        Ok(Ok(r)) => r,
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(TestnetError::Daemon(format!(
                "no addresses within {STARTUP_TIMEOUT:?}"
            )));
        }
    };
    let Some(addr) = addr else {
        let _ = child.kill();
        let status = child.wait().ok();
        let log = std::fs::read_to_string(dir.join("relayd.log")).unwrap_or_default();
        return Err(TestnetError::Daemon(format!(
            "exited ({status:?}) before printing its addresses: {}",
            log.lines().last().unwrap_or("")
        )));
    };
    Ok(TestRelay {
        node: keys.node_id(),
        addr,
        dir: dir.to_path_buf(),
        running: Running::Process {
            child,
            _stdout: reader,
        },
    })
}
