//! The relay: accept links, apply limits, answer them, count everything, shut down gracefully.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};
use zentalk_crypto::{NodeId, X25519PublicKey};
use zentalk_dht::net::{DhtHandle, NetConfig};
use zentalk_dht::{Capabilities, RelayDescriptor};
use zentalk_storage::mailbox::Mailbox;
use zentalk_storage::mailbox::{Envelope, MailboxBackend, MailboxId as StoreMailboxId};
use zentalk_wire::proto::{self, CloseReason, ErrorCode};
use zentalk_wire::{Frame, MessageId, MessageType, WireMessage};

use crate::clock;
use crate::config::RelayConfig;
use crate::directory::{DhtDirectory, Directory, PeerInfo, StaticDirectory};
use crate::epoch;
use crate::keys::{KeyFileError, RelayKeys};
use crate::limits::{Limits, LimitsError, TokenBucket};
use crate::link::{self, Link, LinkError};
use crate::metrics::Metrics;
use crate::service::{self, AuthError, Observation, Peer, Shared};

/// How long a link may take to write its last Error or Close frame before it is dropped
/// anyway (a peer that does not read must not hold a task).
pub const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Pause after a failed `accept` (for example when out of file descriptors), so the accept
/// loop does not spin.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Why a relay could not start or run.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The configuration's limits cannot work.
    #[error("invalid configuration: {0}")]
    Limits(#[from] LimitsError),
    /// The key file could not be read.
    #[error(transparent)]
    Keys(#[from] KeyFileError),
    /// A listener could not be bound.
    #[error("cannot bind the {what} listener on {addr}: {source}")]
    Bind {
        /// `links` or `metrics`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The metrics server failed.
    #[error("metrics listener: {0}")]
    Metrics(#[source] std::io::Error),
    /// The mailbox database could not be opened.
    #[error("mailbox store: {0}")]
    Store(#[from] zentalk_storage::MailboxError),
    /// The DHT node could not start.
    #[error("dht: {0}")]
    Dht(#[from] zentalk_dht::net::NetError),
    /// Onion keys could not be generated or installed.
    #[error("onion keys: {0}")]
    Onion(#[from] zentalk_onion::OnionError),
    /// The OS random number generator failed.
    #[error("the OS random number generator failed")]
    Rng,
}

/// What [`Relay::run`] did on its way out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Links that closed within the grace period.
    pub links_closed_gracefully: usize,
    /// Links still open when the grace period ended, which were cut.
    pub links_cut: usize,
}

/// A bound relay, ready to [`run`](Relay::run).
#[derive(Debug)]
pub struct Relay {
    listener: TcpListener,
    metrics_listener: TcpListener,
    keys: Arc<RelayKeys>,
    config: RelayConfig,
    metrics: Arc<Metrics>,
    shared: Arc<Shared>,
    dht: Option<(DhtHandle, tokio::task::JoinHandle<()>)>,
}

/// An in-process view of a relay (cheap to clone; stays valid while it runs).
#[derive(Debug, Clone)]
pub struct RelayHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl RelayHandle {
    /// The relay's node id.
    pub fn node_id(&self) -> NodeId {
        self.shared.node_id
    }

    /// What a directory says about this relay: node id, link address, Noise key, onion keys.
    pub fn peer_info(&self) -> PeerInfo {
        PeerInfo {
            node: self.shared.node_id,
            addr: self.addr,
            noise_key: self.shared.keys.noise_public(),
            onion_keys: self.shared.onion_public_keys(),
            capabilities: capabilities(self.shared.store_nothing),
        }
    }

    /// The demo observation log: one entry per packet this relay processed (predecessor,
    /// successor, size), oldest first, at most [`service::DEMO_OBSERVATION_CAP`]. Empty unless
    /// [`RelayConfig::demo_observe`] is set. In memory only; never persisted or logged.
    pub fn observations(&self) -> Vec<Observation> {
        self.shared.observations()
    }

    /// The relay's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// Serves one link over `stream` exactly as an accepted TCP connection is served (Noise
    /// handshake as the responder, mailbox challenge, frame handling, limits, metrics) and
    /// returns how it ended. For in-process transports, tests and fuzzing; connection counts
    /// per IP do not apply, and the relay's shutdown does not reach this link (its peer
    /// closes it, or it fails).
    pub fn serve_stream<S>(&self, stream: S) -> impl Future<Output = LinkEnd> + Send + use<S>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1 << 48);
        let (stop_tx, stop) = watch::channel(false);
        let task = LinkTask {
            keys: Arc::clone(&self.shared.keys),
            limits: self.shared.limits.clone(),
            metrics: Arc::clone(&self.shared.metrics),
            stop,
            _guard: None,
            shared: Arc::clone(&self.shared),
            link_id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            challenge: None,
            authed: None,
            push_rx: None,
            peer: Peer::ClientLink,
            slots: Arc::new(tokio::sync::Semaphore::new(
                service::MAX_PACKETS_IN_PROCESSING_PER_LINK,
            )),
        };
        async move {
            let end = task.run_stream(stream).await;
            drop(stop_tx);
            end
        }
    }

    /// The relay's identity public key (it signs descriptors and transit receipts).
    pub fn identity_public(&self) -> zentalk_crypto::IdentityPublicKey {
        self.shared.keys.identity().public_key()
    }
}

fn capabilities(store_nothing: bool) -> Capabilities {
    if store_nothing {
        Capabilities::STORE_NOTHING
    } else {
        Capabilities::MAILBOX
    }
}

impl Relay {
    /// Validates `config`, loads its key file and binds both listeners.
    pub async fn bind(config: RelayConfig) -> Result<Self, RelayError> {
        config.validate()?;
        let keys = RelayKeys::load_file(&config.key_file)?;
        Self::bind_with_keys(config, keys).await
    }

    /// As [`Relay::bind`], with keys supplied instead of read from `config.key_file`.
    ///
    /// The directory is the DHT when [`RelayConfig::dht_listen_addr`] is set, otherwise an
    /// empty [`StaticDirectory`] (this relay can then deliver but not forward).
    pub async fn bind_with_keys(config: RelayConfig, keys: RelayKeys) -> Result<Self, RelayError> {
        Self::bind_with_directory(config, keys, None).await
    }

    /// As [`Relay::bind_with_keys`], with the directory used to find next hops supplied
    /// (`None`: as `bind_with_keys` chooses).
    pub async fn bind_with_directory(
        config: RelayConfig,
        keys: RelayKeys,
        directory: Option<Arc<dyn Directory>>,
    ) -> Result<Self, RelayError> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| RelayError::Bind {
                what: "links",
                addr: config.listen_addr,
                source,
            })?;
        let metrics_listener = TcpListener::bind(config.metrics_addr)
            .await
            .map_err(|source| RelayError::Bind {
                what: "metrics",
                addr: config.metrics_addr,
                source,
            })?;
        let store = Mailbox::open(&config.mailbox_database_url(), config.storage_limits()).await?;
        let keys = Arc::new(keys);
        let dht = match config.dht_listen_addr {
            Some(addr) => {
                let identity = zentalk_crypto::IdentityKeyPair::from_seed(&keys.identity().seed());
                Some(zentalk_dht::net::spawn(identity, addr, NetConfig::default()).await?)
            }
            None => None,
        };
        let directory: Arc<dyn Directory> = match (directory, &dht) {
            (Some(d), _) => d,
            (None, Some((handle, _))) => Arc::new(DhtDirectory::new(handle.clone())),
            (None, None) => Arc::new(StaticDirectory::new()),
        };
        let metrics = Arc::new(Metrics::default());
        let mut rng = service::os_rng().ok_or(RelayError::Rng)?;
        let mut shard_key = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rng, &mut shard_key);
        let shared = Arc::new(Shared::new(
            Arc::clone(&keys),
            config.limits.clone(),
            Arc::clone(&metrics),
            Arc::new(store),
            config.store_nothing,
            directory,
            config.demo_observe,
            zentalk_onion::DEFAULT_REPLAY_CAPACITY,
            config.mailbox_ttl_secs.saturating_mul(1000),
            shard_key,
        ));
        shared.rotate_keys(clock::unix_secs(), &mut rng)?;
        Ok(Self {
            listener,
            metrics_listener,
            keys,
            config,
            metrics,
            shared,
            dht,
        })
    }

    /// An in-process handle (node id, directory entry, observation log, metrics).
    pub fn handle(&self) -> RelayHandle {
        RelayHandle {
            shared: Arc::clone(&self.shared),
            addr: self
                .config
                .public_addr
                .or_else(|| self.listener.local_addr().ok())
                .unwrap_or(self.config.listen_addr),
        }
    }

    /// The DHT node's UDP address, if this relay runs one.
    pub fn dht_addr(&self) -> Option<SocketAddr> {
        self.dht.as_ref().map(|(h, _)| h.local_addr())
    }

    /// The address links are accepted on (useful after binding port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The metrics listener's address.
    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics_listener.local_addr()
    }

    /// The Noise static public key initiators need to open a link.
    pub fn noise_public(&self) -> X25519PublicKey {
        self.keys.noise_public()
    }

    /// The relay's counters (shared: they keep updating while the relay runs).
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Runs until `shutdown` completes, then shuts down gracefully: stops accepting, lets each
    /// link finish the frame in hand, sends it a Close (reason shutdown) and waits up to
    /// `config.shutdown_grace` for links to close before cutting the rest.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<ShutdownReport, RelayError> {
        let handle = self.handle();
        let Relay {
            listener,
            metrics_listener,
            keys,
            config,
            metrics,
            shared,
            dht,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let tracker = Arc::new(ConnTracker::new(&config.limits));
        let next_link_id = AtomicU64::new(1);

        let metrics_task = tokio::spawn(serve_metrics(
            metrics_listener,
            Arc::clone(&metrics),
            stop_rx.clone(),
        ));
        let maintenance = tokio::spawn(maintain(
            Arc::clone(&shared),
            handle,
            dht.as_ref().map(|(h, _)| h.clone()),
            config.dht_bootstrap.clone(),
            config.republish_interval,
            stop_rx.clone(),
        ));
        // The port only: the host part may be an address operators consider sensitive, and
        // the daemon reports its bound addresses itself.
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        info!(port, "relay running");

        let mut links = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        metrics.connection_accepted();
                        let guard = match tracker.try_acquire(peer.ip()) {
                            Ok(guard) => guard,
                            Err(reason) => {
                                metrics.connection_refused(reason);
                                if config.log_client_ips {
                                    debug!(%peer, reason, "connection refused");
                                } else {
                                    debug!(reason, "connection refused");
                                }
                                drop(stream);
                                continue;
                            }
                        };
                        let id = next_link_id.fetch_add(1, Ordering::Relaxed);
                        let span = if config.log_client_ips {
                            info_span!("link", id, peer = %peer)
                        } else {
                            info_span!("link", id)
                        };
                        let task = LinkTask {
                            keys: Arc::clone(&keys),
                            limits: config.limits.clone(),
                            metrics: Arc::clone(&metrics),
                            stop: stop_rx.clone(),
                            _guard: Some(guard),
                            shared: Arc::clone(&shared),
                            link_id: id,
                            challenge: None,
                            authed: None,
                            push_rx: None,
                            peer: Peer::ClientLink,
                            slots: Arc::new(tokio::sync::Semaphore::new(
                                service::MAX_PACKETS_IN_PROCESSING_PER_LINK,
                            )),
                        };
                        links.spawn(task.run(stream).instrument(span));
                    }
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    }
                },
                Some(_) = links.join_next(), if !links.is_empty() => {}
            }
        }

        drop(listener);
        let open = links.len();
        info!(open_links = open, grace = ?config.shutdown_grace, "shutting down: no longer accepting");
        let _ = stop_tx.send(true);
        let deadline = tokio::time::sleep(config.shutdown_grace);
        tokio::pin!(deadline);
        let mut closed = 0usize;
        loop {
            tokio::select! {
                joined = links.join_next() => match joined {
                    Some(_) => closed += 1,
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        let cut = links.len();
        links.shutdown().await;
        // Finish packets in processing (they forward or start deliveries), then close the
        // pooled links, which write what is queued first.
        let permits = u32::try_from(service::MAX_PACKETS_IN_PROCESSING).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(
            config.shutdown_grace,
            shared.processing().acquire_many(permits),
        )
        .await;
        shared.close_peer_links();
        // Finish deliveries in flight (each returns once its item is durable).
        let permits = u32::try_from(service::MAX_DELIVERIES_IN_FLIGHT).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(
            config.shutdown_grace,
            shared.deliveries().acquire_many(permits),
        )
        .await;
        let _ = maintenance.await;
        if let Some((_, task)) = dht {
            task.abort();
        }
        let served = metrics_task.await;
        info!(closed, cut, "relay stopped");
        match served {
            Ok(result) => result.map_err(RelayError::Metrics)?,
            Err(join) => warn!(error = %join, "metrics task ended abnormally"),
        }
        Ok(ShutdownReport {
            links_closed_gracefully: closed,
            links_cut: cut,
        })
    }
}

/// Rotates onion keys at epoch boundaries, publishes and republishes the descriptor in the
/// DHT (when there is one), and expires old mailbox items and transit receipts.
async fn maintain(
    shared: Arc<Shared>,
    handle: RelayHandle,
    dht: Option<DhtHandle>,
    seeds: Vec<SocketAddr>,
    republish_interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let Some(mut rng) = service::os_rng() else {
        warn!("OS random number generator failed; no key rotation");
        return;
    };
    if let Some(dht) = &dht {
        if !seeds.is_empty() {
            match dht.bootstrap(seeds).await {
                Ok(n) => info!(routing_table = n, "dht bootstrapped"),
                Err(e) => warn!(error = %e, "dht bootstrap failed"),
            }
        }
        publish_descriptor(dht, &handle).await;
    }
    let mut last_publish = Instant::now();
    loop {
        let now = clock::unix_secs();
        let wait = Duration::from_secs(epoch::secs_until_next_epoch(now))
            .min(republish_interval.max(Duration::from_secs(1)));
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(wait) => {}
        }
        let changed = match shared.rotate_keys(clock::unix_secs(), &mut rng) {
            Ok(changed) => changed,
            Err(e) => {
                warn!(error = %e, "onion key rotation failed");
                false
            }
        };
        if let Some(dht) = &dht
            && (changed || last_publish.elapsed() >= republish_interval)
        {
            publish_descriptor(dht, &handle).await;
            last_publish = Instant::now();
        }
        loop {
            match shared.store.expire(clock::unix_ms()).await {
                Ok(e) if e.messages > 0 || e.receipts > 0 => continue,
                Ok(_) => break,
                Err(e) => {
                    warn!(error = %e, "mailbox expiry failed");
                    break;
                }
            }
        }
    }
}

/// Signs this relay's descriptor (sequence = Unix seconds, so a restart still supersedes)
/// and publishes it under its node id.
async fn publish_descriptor(dht: &DhtHandle, handle: &RelayHandle) {
    let info = handle.peer_info();
    let descriptor = RelayDescriptor {
        addrs: vec![info.addr],
        noise_static_key: info.noise_key.to_bytes(),
        onion_keys: info
            .onion_keys
            .iter()
            .map(|(e, k)| (u64::from(*e), k.to_bytes()))
            .collect(),
        capabilities: info.capabilities,
    };
    let now_ms = clock::unix_ms();
    let record = match descriptor.sign(
        handle.shared.keys.identity(),
        now_ms / 1000,
        now_ms.saturating_add(zentalk_dht::record::RELAY_DESCRIPTOR_TTL_MS),
    ) {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "descriptor not signed");
            return;
        }
    };
    match dht.publish(record).await {
        Ok(n) => debug!(stored_on = n, "descriptor published"),
        Err(e) => warn!(error = %e, "descriptor publish failed"),
    }
}

async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    use axum::http::header;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    );
    axum::serve(AnonymousListener(listener), app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await
}

/// The metrics listener as axum sees it: peer addresses are withheld, because axum logs them
/// (at trace level) and logs must not hold client IPs.
struct AnonymousListener(TcpListener);

/// A peer address that is not there to log.
#[derive(Debug, Clone, Copy)]
struct Withheld;

impl axum::serve::Listener for AnonymousListener {
    type Io = TcpStream;
    type Addr = Withheld;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, _)) => return (stream, Withheld),
                Err(e) => {
                    debug!(error = %e, "metrics accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Withheld)
    }
}

/// Connection counts per IP and in total. A [`ConnGuard`] gives its slot back on drop.
#[derive(Debug)]
struct ConnTracker {
    max_total: usize,
    max_per_ip: usize,
    state: Mutex<TrackerState>,
}

#[derive(Debug, Default)]
struct TrackerState {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl ConnTracker {
    fn new(limits: &Limits) -> Self {
        Self {
            max_total: limits.max_connections,
            max_per_ip: limits.max_connections_per_ip,
            state: Mutex::new(TrackerState::default()),
        }
    }

    fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, &'static str> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.total >= self.max_total {
            return Err("max_connections");
        }
        let count = state.per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            return Err("max_connections_per_ip");
        }
        *count += 1;
        state.total += 1;
        Ok(ConnGuard {
            tracker: Arc::clone(self),
            ip,
        })
    }
}

#[derive(Debug)]
struct ConnGuard {
    tracker: Arc<ConnTracker>,
    ip: IpAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut state = self
            .tracker
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        state.total = state.total.saturating_sub(1);
        if let Some(count) = state.per_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Everything one link's task owns.
struct LinkTask {
    keys: Arc<RelayKeys>,
    limits: Limits,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
    _guard: Option<ConnGuard>,
    shared: Arc<Shared>,
    link_id: u64,
    /// The outstanding mailbox challenge nonce (each answers once).
    challenge: Option<[u8; 32]>,
    /// The mailbox authenticated on this link.
    authed: Option<StoreMailboxId>,
    /// Pushes for the authenticated mailbox.
    push_rx: Option<mpsc::Receiver<Envelope>>,
    /// Who the peer is, for the demo observation log.
    peer: Peer,
    /// This link's share of packets in processing.
    slots: Arc<tokio::sync::Semaphore>,
}

/// What woke the serve loop.
enum Wake {
    Stop,
    Push(Envelope),
    Received(Result<Result<Frame, LinkError>, tokio::time::error::Elapsed>),
}

async fn next_push(rx: &mut Option<mpsc::Receiver<Envelope>>) -> Option<Envelope> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A byte stream a link can run over (TCP in production; any in-memory stream in tests).
pub(crate) trait LinkStream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send
{
}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> LinkStream for T {}

/// How a link served by [`RelayHandle::serve_stream`] ended.
#[non_exhaustive]
#[derive(Debug)]
pub enum LinkEnd {
    /// The relay was shutting down (after the handshake it sent `Close(shutdown)`).
    Shutdown,
    /// The peer sent `Close`.
    PeerClosed,
    /// The Noise handshake failed; nothing was served.
    Handshake(LinkError),
    /// This error closed the established link (the relay sent `Error` or `Close(idle)` first
    /// where section 2 of the protocol chapter says so).
    Error(LinkError),
}

impl LinkEnd {
    /// A short, fixed label: `shutdown`, `peer_close`, or the error's
    /// [`LinkError::reason`].
    pub fn reason(&self) -> &'static str {
        match self {
            LinkEnd::Shutdown => "shutdown",
            LinkEnd::PeerClosed => "peer_close",
            LinkEnd::Handshake(e) | LinkEnd::Error(e) => e.reason(),
        }
    }
}

/// Why the serve loop ended.
enum End {
    Stop,
    PeerClose,
    Error(LinkError),
}

impl LinkTask {
    async fn run(self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        self.run_stream(stream).await;
    }

    async fn run_stream<S: LinkStream>(mut self, stream: S) -> LinkEnd {
        #[allow(
            clippy::disallowed_types,
            reason = "L2 driver: the OS RNG seeds each link's handshake and message ids"
        )]
        let mut os = rand_core::OsRng;
        let mut rng = match ChaCha20Rng::from_rng(&mut os) {
            Ok(rng) => rng,
            Err(e) => {
                warn!(error = %e, "OS random number generator failed; closing connection");
                self.metrics.handshake_failed("rng");
                return LinkEnd::Handshake(LinkError::Io(std::io::Error::other(
                    "the OS random number generator failed",
                )));
            }
        };
        let handshake = link::accept(stream, self.keys.noise_static(), &self.limits, &mut rng);
        let mut stop = self.stop.clone();
        let result = tokio::select! {
            result = handshake => result,
            _ = stop.wait_for(|s| *s) => {
                self.metrics.handshake_failed("shutdown");
                debug!("handshake abandoned: shutting down");
                return LinkEnd::Shutdown;
            }
        };
        let mut link = match result {
            Ok(link) => link,
            Err(e) => {
                self.metrics.handshake_failed(e.reason());
                debug!(reason = e.reason(), error = %e, "handshake failed");
                return LinkEnd::Handshake(e);
            }
        };
        self.metrics.handshake_completed();
        debug!("link established");
        self.peer = self.shared.predecessor(&link.remote_static());
        let end = match self.send_challenge(&mut link, &mut rng).await {
            Ok(()) => self.serve(&mut link, &mut rng).await,
            Err(e) => End::Error(e),
        };
        if let Some(mailbox) = self.authed.take() {
            self.shared.unregister_owner(&mailbox, self.link_id);
        }
        let reason = match &end {
            End::Stop => {
                let close = proto::Close {
                    reason: CloseReason::Shutdown as i32,
                };
                self.final_frame(&mut link, &mut rng, &close).await;
                "shutdown"
            }
            End::PeerClose => "peer_close",
            End::Error(e @ LinkError::IdleTimeout { .. }) => {
                let close = proto::Close {
                    reason: CloseReason::Idle as i32,
                };
                self.final_frame(&mut link, &mut rng, &close).await;
                e.reason()
            }
            End::Error(e) => {
                if let Some(code) = error_code_for(e) {
                    let body = proto::Error {
                        code: code as i32,
                        detail: e.reason().to_owned(),
                        in_reply_to: bytes::Bytes::new(),
                    };
                    self.final_frame(&mut link, &mut rng, &body).await;
                }
                e.reason()
            }
        };
        let _ = tokio::time::timeout(FINAL_WRITE_TIMEOUT, link.shutdown()).await;
        self.metrics.link_closed(reason);
        debug!(reason, "link closed");
        match end {
            End::Stop => LinkEnd::Shutdown,
            End::PeerClose => LinkEnd::PeerClosed,
            End::Error(e) => LinkEnd::Error(e),
        }
    }

    async fn serve<S: LinkStream>(&mut self, link: &mut Link<S>, rng: &mut ChaCha20Rng) -> End {
        let mut bucket = TokenBucket::new(&self.limits, Instant::now());
        let idle = self.limits.idle_timeout;
        loop {
            if *self.stop.borrow() {
                return End::Stop;
            }
            let wake = tokio::select! {
                biased;
                _ = self.stop.wait_for(|s| *s) => Wake::Stop,
                Some(env) = next_push(&mut self.push_rx) => Wake::Push(env),
                r = tokio::time::timeout(idle, link.recv()) => Wake::Received(r),
            };
            let received = match wake {
                Wake::Stop => return End::Stop,
                Wake::Push(env) => {
                    if let Some(mailbox) = self.authed {
                        let push = proto::MailboxPush {
                            mailbox_id: bytes::Bytes::copy_from_slice(&mailbox.0),
                            item: Some(service::item_of(env)),
                        };
                        if let Err(e) = self.send(link, rng, &push).await {
                            return End::Error(e);
                        }
                    }
                    continue;
                }
                Wake::Received(r) => r,
            };
            let frame = match received {
                Err(_) => return End::Error(LinkError::IdleTimeout { limit: idle }),
                Ok(Err(e)) => {
                    if let Some(reason) = frame_drop_reason(&e) {
                        self.metrics.frame_dropped(reason);
                    }
                    return End::Error(e);
                }
                Ok(Ok(frame)) => frame,
            };
            let len = frame.encoded_len();
            self.metrics.frame_received(len);
            match self.handle(link, rng, &frame).await {
                Ok(true) => {}
                Ok(false) => return End::PeerClose,
                Err(e) => return End::Error(e),
            }
            let pause = bucket.take(len, Instant::now());
            if !pause.is_zero() {
                self.metrics.rate_limit_pause();
                tokio::select! {
                    biased;
                    _ = self.stop.wait_for(|s| *s) => return End::Stop,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    /// Handles one frame; `Ok(false)` when the peer closed the link.
    async fn handle<S: LinkStream>(
        &mut self,
        link: &mut Link<S>,
        rng: &mut ChaCha20Rng,
        frame: &Frame,
    ) -> Result<bool, LinkError> {
        match frame.message_type() {
            MessageType::Ping => match frame.decode_body::<proto::Ping>() {
                Ok(ping) => {
                    let pong = proto::Pong { nonce: ping.nonce };
                    self.send(link, rng, &pong).await?;
                }
                Err(e) => {
                    self.metrics.frame_dropped("malformed_body");
                    debug!(error = %e, "malformed Ping body");
                    self.reject(link, rng, frame, e.error_code(), "malformed body")
                        .await?;
                }
            },
            MessageType::Close => return Ok(false),
            MessageType::Pong | MessageType::Error | MessageType::MailboxChallenge => {}
            MessageType::OnionPacket => {
                let shared = Arc::clone(&self.shared);
                shared
                    .dispatch_packet(frame.body().clone(), &self.peer, &self.slots)
                    .await;
            }
            MessageType::MailboxAuth => match frame.decode_body::<proto::MailboxAuth>() {
                Ok(auth) => self.mailbox_auth(link, rng, frame, &auth).await?,
                Err(e) => self.malformed(link, rng, frame, &e).await?,
            },
            MessageType::MailboxFetch => match frame.decode_body::<proto::MailboxFetch>() {
                Ok(fetch) => {
                    let Some(mailbox) = self.authorized(&fetch.mailbox_id) else {
                        return self.unauthorized(link, rng, frame).await.map(|()| true);
                    };
                    let max_body = self.max_body();
                    match self
                        .shared
                        .fetch_batch(&mailbox, fetch.after_seq, fetch.max_items, max_body)
                        .await
                    {
                        Ok(batch) => self.send(link, rng, &batch).await?,
                        Err(e) => {
                            debug!(error = %e, "mailbox fetch failed");
                            self.reject(link, rng, frame, ErrorCode::Internal, "storage error")
                                .await?;
                        }
                    }
                }
                Err(e) => self.malformed(link, rng, frame, &e).await?,
            },
            MessageType::MailboxAck => match frame.decode_body::<proto::MailboxAck>() {
                Ok(ack) => {
                    let Some(mailbox) = self.authorized(&ack.mailbox_id) else {
                        return self.unauthorized(link, rng, frame).await.map(|()| true);
                    };
                    if let Err(e) = self.shared.ack_up_to(&mailbox, ack.up_to_seq).await {
                        debug!(error = %e, "mailbox ack failed");
                        self.reject(link, rng, frame, ErrorCode::Internal, "storage error")
                            .await?;
                    }
                }
                Err(e) => self.malformed(link, rng, frame, &e).await?,
            },
            MessageType::TransitReceiptFetch => {
                match frame.decode_body::<proto::TransitReceiptFetch>() {
                    Ok(fetch) => {
                        for hash in fetch
                            .packet_hashes
                            .iter()
                            .take(zentalk_wire::MAX_RECEIPT_IDS)
                        {
                            let Ok(hash) = <[u8; 32]>::try_from(hash.as_ref()) else {
                                continue;
                            };
                            match self.shared.transit_receipt(&hash).await {
                                Ok(Some(receipt)) => {
                                    self.send(link, rng, &receipt).await?;
                                    self.metrics.transit_receipt_served();
                                }
                                Ok(None) => {}
                                Err(e) => debug!(error = %e, "transit receipt lookup failed"),
                            }
                        }
                    }
                    Err(e) => self.malformed(link, rng, frame, &e).await?,
                }
            }
            other => {
                self.metrics.frame_dropped("unsupported_type");
                debug!(ty = other.name(), "frame type not served by this relay");
                self.reject(
                    link,
                    rng,
                    frame,
                    ErrorCode::UnknownType,
                    "message type not served by this relay",
                )
                .await?;
            }
        }
        Ok(true)
    }

    /// Sends a fresh MailboxChallenge (after the handshake, and after a refused MailboxAuth).
    async fn send_challenge<S: LinkStream>(
        &mut self,
        link: &mut Link<S>,
        rng: &mut ChaCha20Rng,
    ) -> Result<(), LinkError> {
        let mut nonce = [0u8; service::CHALLENGE_NONCE_LEN];
        rand_core::RngCore::fill_bytes(rng, &mut nonce);
        self.challenge = Some(nonce);
        let challenge = proto::MailboxChallenge {
            nonce: bytes::Bytes::copy_from_slice(&nonce),
            relay_id: bytes::Bytes::copy_from_slice(self.shared.node_id.as_bytes()),
        };
        self.send(link, rng, &challenge).await
    }

    async fn mailbox_auth<S: LinkStream>(
        &mut self,
        link: &mut Link<S>,
        rng: &mut ChaCha20Rng,
        frame: &Frame,
        auth: &proto::MailboxAuth,
    ) -> Result<(), LinkError> {
        // Every challenge answers once, whatever the outcome.
        let nonce = self.challenge.take();
        let verified = if self.shared.store_nothing {
            Err(AuthError::NoMailboxes)
        } else {
            service::verify_auth(&self.shared.node_id, nonce.as_ref(), auth)
        };
        match verified {
            Ok(mailbox) => {
                self.metrics.mailbox_auth_succeeded();
                if let Some(old) = self.authed.take() {
                    self.shared.unregister_owner(&old, self.link_id);
                }
                self.push_rx = Some(self.shared.register_owner(mailbox, self.link_id));
                self.authed = Some(mailbox);
                let max_body = self.max_body();
                match self.shared.fetch_batch(&mailbox, 0, 0, max_body).await {
                    Ok(batch) => self.send(link, rng, &batch).await,
                    Err(e) => {
                        debug!(error = %e, "mailbox fetch failed");
                        self.reject(link, rng, frame, ErrorCode::Internal, "storage error")
                            .await
                    }
                }
            }
            Err(e) => {
                self.metrics.mailbox_auth_failed(e.reason());
                debug!(reason = e.reason(), "mailbox auth refused");
                let code = match e {
                    AuthError::Malformed => ErrorCode::ProtocolViolation,
                    _ => ErrorCode::Unauthorized,
                };
                self.reject(link, rng, frame, code, e.reason()).await?;
                self.send_challenge(link, rng).await
            }
        }
    }

    /// The mailbox named by `id` if it is the one authenticated on this link.
    fn authorized(&self, id: &[u8]) -> Option<StoreMailboxId> {
        self.authed.filter(|m| m.0.as_slice() == id)
    }

    async fn unauthorized<S: LinkStream>(
        &self,
        link: &mut Link<S>,
        rng: &mut ChaCha20Rng,
        frame: &Frame,
    ) -> Result<(), LinkError> {
        self.metrics.mailbox_auth_failed("not_authenticated");
        self.reject(
            link,
            rng,
            frame,
            ErrorCode::Unauthorized,
            "mailbox not authenticated on this link",
        )
        .await
    }

    async fn malformed<S: LinkStream>(
        &self,
        link: &mut Link<S>,
        rng: &mut ChaCha20Rng,
        frame: &Frame,
        e: &zentalk_wire::WireError,
    ) -> Result<(), LinkError> {
        self.metrics.frame_dropped("malformed_body");
        debug!(error = %e, "malformed body");
        self.reject(link, rng, frame, e.error_code(), "malformed body")
            .await
    }

    /// Largest body a frame on this link may carry.
    fn max_body(&self) -> usize {
        self.limits
            .max_frame_len
            .saturating_sub(zentalk_wire::HEADER_LEN)
            .min(zentalk_wire::MAX_BODY_LEN)
    }

    async fn send<S: LinkStream, M: WireMessage>(
        &self,
        link: &mut Link<S>,
        rng: &mut ChaCha20Rng,
        msg: &M,
    ) -> Result<(), LinkError> {
        let frame = Frame::new(MessageId::random(rng), msg).map_err(LinkError::Frame)?;
        link.send(&frame).await?;
        self.metrics.frame_sent();
        Ok(())
    }

    async fn reject<S: LinkStream>(
        &self,
        link: &mut Link<S>,
        rng: &mut ChaCha20Rng,
        frame: &Frame,
        code: ErrorCode,
        detail: &str,
    ) -> Result<(), LinkError> {
        let body = proto::Error {
            code: code as i32,
            detail: detail.to_owned(),
            in_reply_to: bytes::Bytes::copy_from_slice(frame.id().as_bytes()),
        };
        self.send(link, rng, &body).await
    }

    /// Best effort: a last frame before closing, bounded by [`FINAL_WRITE_TIMEOUT`].
    async fn final_frame<S: LinkStream, M: WireMessage>(
        &self,
        link: &mut Link<S>,
        rng: &mut ChaCha20Rng,
        msg: &M,
    ) {
        let _ = tokio::time::timeout(FINAL_WRITE_TIMEOUT, self.send(link, rng, msg)).await;
    }
}

/// The frame-drop reason for a receive error that discarded a frame, if it did.
fn frame_drop_reason(e: &LinkError) -> Option<&'static str> {
    match e {
        LinkError::FrameTooLarge { .. }
        | LinkError::MessageTooShort { .. }
        | LinkError::Decrypt
        | LinkError::Frame(_) => Some(e.reason()),
        _ => None,
    }
}

/// The Error code to send before closing a link for `e`, if the peer should be told.
fn error_code_for(e: &LinkError) -> Option<ErrorCode> {
    match e {
        LinkError::FrameTooLarge { .. } => Some(ErrorCode::TooLong),
        LinkError::Frame(w) => Some(w.error_code()),
        LinkError::MessageTooShort { .. } => Some(ErrorCode::ProtocolViolation),
        _ => None,
    }
}
