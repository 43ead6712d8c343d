//! # zentalk-relay
//!
//! Layer 2 of ZenTalk: the relay node, as far as it is built. This crate owns tokio, sockets
//! and clocks; the protocol layers below it (zentalk-crypto, zentalk-wire) do not.
//!
//! What exists today:
//!
//! - [`link`]: every TCP link is a Noise session (`Noise_XK_25519_ChaChaPoly_BLAKE2s`,
//!   prologue `zentalk-link-v1`); each Noise message is a `u16` big-endian length and the
//!   message; one Noise transport message carries exactly one zentalk-wire frame.
//! - [`Limits`]: maximum frame size, handshake and idle timeouts, connections per IP and in
//!   total, a per-link token bucket (frames/s and bytes/s); each has a default and a typed
//!   error.
//! - [`epoch`]: one-hour onion-key epochs; per-epoch X25519 onion keys (current and next held,
//!   old ones dropped) feeding `zentalk_onion::OnionRelay`.
//! - [`service`]: onion packets forwarded over pooled relay-to-relay links or delivered into
//!   the mailbox store (zentalk-storage) and pushed to the connected owner; mailbox access by
//!   challenge and signature; store-nothing transit receipts; the opt-in demo observation log.
//! - [`directory`]: [`Directory`] (node id -> address, Noise key, onion keys) with a static and
//!   a DHT-backed implementation; the relay publishes its signed descriptor in the DHT.
//! - [`Relay`]: binds, accepts links, answers Ping with Pong, counts everything in
//!   [`Metrics`] (Prometheus text on its own listener, loopback by default), and shuts down
//!   gracefully. Logs never contain keys, nor client IPs unless
//!   [`RelayConfig::log_client_ips`] is set.
//! - [`RelayKeys`]: the Ed25519 identity and the Noise static key, in one key file of mode
//!   0600.
//!
//! Not built yet: SURB replies (dropped). See `docs/protocol/zentalk-relay.md`, section 9.
//!
//! ## Example
//!
//! A relay on loopback, a client link to it, one ping:
//!
//! ```no_run
//! use rand_core::OsRng;
//! use zentalk_crypto::X25519Secret;
//! use zentalk_relay::{link, Limits, Relay, RelayConfig, RelayKeys};
//! use zentalk_wire::proto::{Ping, Pong};
//! use zentalk_wire::{Frame, MessageId};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = RelayConfig {
//!     listen_addr: "127.0.0.1:0".parse()?,
//!     metrics_addr: "127.0.0.1:0".parse()?,
//!     ..RelayConfig::default()
//! };
//! let relay = Relay::bind_with_keys(config, RelayKeys::generate(&mut OsRng)).await?;
//! let (addr, relay_key) = (relay.local_addr()?, relay.noise_public());
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let running = tokio::spawn(relay.run(async { let _ = stopped.await; }));
//!
//! // The client knows the relay's Noise static key in advance (XK).
//! let me = X25519Secret::generate(&mut OsRng);
//! let stream = tokio::net::TcpStream::connect(addr).await?;
//! let mut link = link::connect(stream, &me, &relay_key, &Limits::default(), &mut OsRng).await?;
//! let _challenge = link.recv().await?; // every link opens with a mailbox challenge
//! link.send(&Frame::new(MessageId::random(&mut OsRng), &Ping { nonce: 7 })?).await?;
//! let pong: Pong = link.recv().await?.decode_body()?;
//! assert_eq!(pong.nonce, 7);
//!
//! let _ = stop.send(());
//! let report = running.await??;
//! println!("{report:?}");
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod clock;
pub mod config;
pub mod directory;
pub mod epoch;
pub mod keys;
pub mod limits;
pub mod link;
pub mod metrics;
mod relay;
pub mod service;

pub use config::RelayConfig;
pub use directory::{DhtDirectory, Directory, DirectoryError, PeerInfo, StaticDirectory};
pub use keys::{KeyFileError, RelayKeys};
pub use limits::{Limits, LimitsError, TokenBucket};
pub use link::{Link, LinkError};
pub use metrics::Metrics;
pub use relay::{
    ACCEPT_ERROR_BACKOFF, FINAL_WRITE_TIMEOUT, LinkEnd, Relay, RelayError, RelayHandle,
    ShutdownReport,
};
pub use service::{Observation, Peer};
