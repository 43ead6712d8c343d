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
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};
use zentalk_crypto::X25519PublicKey;
use zentalk_wire::proto::{self, CloseReason, ErrorCode};
use zentalk_wire::{Frame, MessageId, MessageType, WireMessage};

use crate::config::RelayConfig;
use crate::keys::{KeyFileError, RelayKeys};
use crate::limits::{Limits, LimitsError, TokenBucket};
use crate::link::{self, Link, LinkError};
use crate::metrics::Metrics;

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
}

impl Relay {
    /// Validates `config`, loads its key file and binds both listeners.
    pub async fn bind(config: RelayConfig) -> Result<Self, RelayError> {
        config.validate()?;
        let keys = RelayKeys::load_file(&config.key_file)?;
        Self::bind_with_keys(config, keys).await
    }

    /// As [`Relay::bind`], with keys supplied instead of read from `config.key_file`.
    pub async fn bind_with_keys(config: RelayConfig, keys: RelayKeys) -> Result<Self, RelayError> {
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
        Ok(Self {
            listener,
            metrics_listener,
            keys: Arc::new(keys),
            config,
            metrics: Arc::new(Metrics::default()),
        })
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
        let Relay {
            listener,
            metrics_listener,
            keys,
            config,
            metrics,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let tracker = Arc::new(ConnTracker::new(&config.limits));
        let next_link_id = AtomicU64::new(1);

        let metrics_task = tokio::spawn(serve_metrics(
            metrics_listener,
            Arc::clone(&metrics),
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
                            _guard: guard,
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
    _guard: ConnGuard,
}

/// Why the serve loop ended.
enum End {
    Stop,
    PeerClose,
    Error(LinkError),
}

impl LinkTask {
    async fn run(mut self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
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
                return;
            }
        };
        let handshake = link::accept(stream, self.keys.noise_static(), &self.limits, &mut rng);
        let mut stop = self.stop.clone();
        let result = tokio::select! {
            result = handshake => result,
            _ = stop.wait_for(|s| *s) => {
                self.metrics.handshake_failed("shutdown");
                debug!("handshake abandoned: shutting down");
                return;
            }
        };
        let mut link = match result {
            Ok(link) => link,
            Err(e) => {
                self.metrics.handshake_failed(e.reason());
                debug!(reason = e.reason(), error = %e, "handshake failed");
                return;
            }
        };
        self.metrics.handshake_completed();
        debug!("link established");
        let end = self.serve(&mut link, &mut rng).await;
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
    }

    async fn serve(&mut self, link: &mut Link<TcpStream>, rng: &mut ChaCha20Rng) -> End {
        let mut bucket = TokenBucket::new(&self.limits, Instant::now());
        let idle = self.limits.idle_timeout;
        loop {
            if *self.stop.borrow() {
                return End::Stop;
            }
            let received = tokio::select! {
                biased;
                _ = self.stop.wait_for(|s| *s) => return End::Stop,
                r = tokio::time::timeout(idle, link.recv()) => r,
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
    async fn handle(
        &mut self,
        link: &mut Link<TcpStream>,
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
            MessageType::Pong | MessageType::Error => {}
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

    async fn send<M: WireMessage>(
        &self,
        link: &mut Link<TcpStream>,
        rng: &mut ChaCha20Rng,
        msg: &M,
    ) -> Result<(), LinkError> {
        let frame = Frame::new(MessageId::random(rng), msg).map_err(LinkError::Frame)?;
        link.send(&frame).await?;
        self.metrics.frame_sent();
        Ok(())
    }

    async fn reject(
        &self,
        link: &mut Link<TcpStream>,
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
    async fn final_frame<M: WireMessage>(
        &self,
        link: &mut Link<TcpStream>,
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
