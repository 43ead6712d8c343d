//! The relay's configuration: what `zentalk-relayd` reads from its TOML file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::limits::{Limits, LimitsError};

/// Default [`RelayConfig::listen_addr`]: every interface, port 7447.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:7447";

/// Default [`RelayConfig::metrics_addr`]: loopback only, port 9477. Metrics say how busy a
/// relay is; expose them beyond the host only on purpose.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9477";

/// Default [`RelayConfig::key_file`].
pub const DEFAULT_KEY_FILE: &str = "relay.key";

/// Default [`RelayConfig::mailbox_path`].
pub const DEFAULT_MAILBOX_PATH: &str = "mailbox.sqlite";

/// Default [`RelayConfig::republish_interval`]: 10 minutes (descriptors live 24 hours in the
/// DHT; onion keys change every epoch, and a republish follows each change anyway).
pub const DEFAULT_REPUBLISH_INTERVAL: Duration = Duration::from_secs(600);

/// Default [`RelayConfig::shutdown_grace`]: 5 seconds.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A relay's configuration. Every field has a default; see `docs/running-a-relay.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// TCP address links are accepted on.
    pub listen_addr: SocketAddr,
    /// TCP address of the Prometheus metrics listener (`GET /metrics`).
    pub metrics_addr: SocketAddr,
    /// The key file (identity and Noise static key). A relative path is taken relative to the
    /// process's working directory by this library; `zentalk-relayd` resolves it against the
    /// config file's directory first.
    pub key_file: PathBuf,
    /// Whether logs may contain client IP addresses. Off by default: a relay that logs who
    /// connected keeps exactly the metadata ZenTalk exists to avoid.
    pub log_client_ips: bool,
    /// On shutdown, how long open links may take to finish the frame in hand and close
    /// before they are cut.
    #[serde(rename = "shutdown_grace_ms", with = "duration_ms")]
    pub shutdown_grace: Duration,
    /// Link limits.
    pub limits: Limits,
    /// The SQLite mailbox file (created if missing). A relative path is taken relative to the
    /// working directory by this library; `zentalk-relayd` resolves it against the config
    /// file's directory. Ignored when [`RelayConfig::mailbox_url`] is set.
    pub mailbox_path: PathBuf,
    /// A mailbox database URL (`sqlite://PATH` or `postgres://...`) overriding
    /// [`RelayConfig::mailbox_path`].
    pub mailbox_url: Option<String>,
    /// Time to live of a queued mailbox item, in seconds.
    pub mailbox_ttl_secs: u64,
    /// Most items queued in one mailbox.
    pub mailbox_max_items: u64,
    /// Most payload bytes queued in one mailbox.
    pub mailbox_max_bytes: u64,
    /// Store-nothing mode: keep no mailbox; for each forwarded packet keep only a hash-only
    /// transit receipt (packet hash, relay time) for [`RelayConfig::transit_retention_secs`].
    pub store_nothing: bool,
    /// How long a transit receipt is kept, in seconds.
    pub transit_retention_secs: u64,
    /// The address published in the relay's descriptor (where other relays and clients
    /// connect). Defaults to the bound link address, which is right only when that is a
    /// routable address (not `0.0.0.0`).
    pub public_addr: Option<SocketAddr>,
    /// UDP address of the relay's DHT node. Unset: no DHT (the directory must be supplied in
    /// process, see `Relay::with_directory`).
    pub dht_listen_addr: Option<SocketAddr>,
    /// DHT seed nodes to bootstrap from.
    pub dht_bootstrap: Vec<SocketAddr>,
    /// How often the descriptor is republished even when no onion key changed.
    #[serde(rename = "republish_interval_secs", with = "duration_secs")]
    pub republish_interval: Duration,
    /// Demonstrations only: keep an in-memory, bounded log of what this relay saw of each
    /// packet (predecessor, successor, size). Never persisted, never logged.
    pub demo_observe: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 7447)),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 9477)),
            key_file: PathBuf::from(DEFAULT_KEY_FILE),
            log_client_ips: false,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            limits: Limits::default(),
            mailbox_path: PathBuf::from(DEFAULT_MAILBOX_PATH),
            mailbox_url: None,
            mailbox_ttl_secs: zentalk_storage::mailbox::DEFAULT_TTL_MS / 1000,
            mailbox_max_items: zentalk_storage::mailbox::DEFAULT_MAILBOX_MESSAGES,
            mailbox_max_bytes: zentalk_storage::mailbox::DEFAULT_MAILBOX_BYTES,
            store_nothing: false,
            transit_retention_secs: zentalk_storage::mailbox::DEFAULT_TRANSIT_RETENTION_MS / 1000,
            public_addr: None,
            dht_listen_addr: None,
            dht_bootstrap: Vec::new(),
            republish_interval: DEFAULT_REPUBLISH_INTERVAL,
            demo_observe: false,
        }
    }
}

impl RelayConfig {
    /// Checks the limits (see [`Limits::validate`]).
    pub fn validate(&self) -> Result<(), LimitsError> {
        self.limits.validate()
    }

    /// The mailbox database URL: [`RelayConfig::mailbox_url`], or `sqlite://` and
    /// [`RelayConfig::mailbox_path`].
    pub fn mailbox_database_url(&self) -> String {
        match &self.mailbox_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.mailbox_path.display()),
        }
    }

    /// The storage quotas, TTL and retention this configuration asks for.
    pub fn storage_limits(&self) -> zentalk_storage::mailbox::Limits {
        zentalk_storage::mailbox::Limits {
            ttl_ms: self.mailbox_ttl_secs.saturating_mul(1000),
            mailbox_messages: self.mailbox_max_items,
            mailbox_bytes: self.mailbox_max_bytes,
            transit_retention_ms: self.transit_retention_secs.saturating_mul(1000),
            ..zentalk_storage::mailbox::Limits::default()
        }
    }
}

mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_constants() {
        let c = RelayConfig::default();
        assert_eq!(c.listen_addr, DEFAULT_LISTEN_ADDR.parse().unwrap());
        assert_eq!(c.metrics_addr, DEFAULT_METRICS_ADDR.parse().unwrap());
        assert!(c.metrics_addr.ip().is_loopback());
        assert!(!c.log_client_ips);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn toml_round_trip_and_unknown_keys() {
        let c = RelayConfig {
            log_client_ips: true,
            shutdown_grace: Duration::from_millis(250),
            ..RelayConfig::default()
        };
        let text = toml::to_string(&c).unwrap();
        let back: RelayConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        let empty: RelayConfig = toml::from_str("").unwrap();
        assert_eq!(empty, RelayConfig::default());
        assert!(toml::from_str::<RelayConfig>("listen = \"1.2.3.4:5\"").is_err());
        assert!(toml::from_str::<RelayConfig>("[limits]\nmax_frames = 3").is_err());
    }
}
