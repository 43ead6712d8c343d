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
        }
    }
}

impl RelayConfig {
    /// Checks the limits (see [`Limits::validate`]).
    pub fn validate(&self) -> Result<(), LimitsError> {
        self.limits.validate()
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
