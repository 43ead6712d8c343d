//! Named limits for links, with their defaults, validation and the per-link token bucket.
//!
//! Every limit is a field of [`Limits`] (a `[limits]` table in the relay's TOML config) with a
//! `DEFAULT_*` constant beside it. [`Limits::validate`] refuses settings that cannot work
//! together, each with its own [`LimitsError`] variant.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Default [`Limits::max_frame_len`]: the largest frame one Noise transport message can carry
/// (65535 bytes minus the 16-byte AEAD tag), so by default the wire format's own limit applies.
pub const DEFAULT_MAX_FRAME_LEN: usize = zentalk_wire::MAX_FRAME_LEN;

/// Smallest accepted [`Limits::max_frame_len`]: a frame header plus a small body. A lower
/// setting would refuse even a Ping.
pub const MIN_MAX_FRAME_LEN: usize = 256;

/// Default [`Limits::handshake_timeout`]: 10 seconds from TCP accept to a finished Noise
/// handshake. A peer that sends half a handshake holds a connection slot at most this long.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default [`Limits::idle_timeout`]: 5 minutes without a received frame closes the link.
/// Clients keep a link open by sending a Ping more often than this.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Default [`Limits::send_timeout`]: 20 seconds for one frame to be written. A peer that
/// stops reading while it keeps sending fills the relay's socket buffer; without this limit the
/// relay's task would wait on it, and hold its connection slot, forever.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(20);

/// Default [`Limits::max_connections`]: open TCP connections (handshaking or established)
/// in total. Sized for the 15,000 idle client links goal under a 20,000 open-file limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// Default [`Limits::max_connections_per_ip`]: open TCP connections from one IP address.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;

/// Default [`Limits::rate_frames_per_sec`]: sustained frames per second read from one link.
pub const DEFAULT_RATE_FRAMES_PER_SEC: u32 = 2_000;

/// Default [`Limits::rate_bytes_per_sec`]: sustained frame bytes per second read from one link
/// (8 MiB/s).
pub const DEFAULT_RATE_BYTES_PER_SEC: u64 = 8 * 1024 * 1024;

/// The limits one relay applies to its links.
///
/// Durations are written in the TOML config in milliseconds (`handshake_timeout_ms`,
/// `idle_timeout_ms`). Any field left out takes its `DEFAULT_*` value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest frame (32-byte header included) accepted on a link. A Noise message announcing a
    /// larger frame closes the link before its body is read. At most
    /// [`zentalk_wire::MAX_FRAME_LEN`], at least [`MIN_MAX_FRAME_LEN`].
    pub max_frame_len: usize,
    /// Time allowed from TCP accept to a finished Noise handshake.
    #[serde(rename = "handshake_timeout_ms", with = "duration_ms")]
    pub handshake_timeout: Duration,
    /// Time without a received frame after which an established link is closed.
    #[serde(rename = "idle_timeout_ms", with = "duration_ms")]
    pub idle_timeout: Duration,
    /// Time allowed to write one frame to the peer; a peer that does not read for this long
    /// loses its link.
    #[serde(rename = "send_timeout_ms", with = "duration_ms")]
    pub send_timeout: Duration,
    /// Open connections in total; one more is closed right after accept.
    pub max_connections: usize,
    /// Open connections from one IP address; one more is closed right after accept.
    pub max_connections_per_ip: usize,
    /// Sustained frames per second read from one link (token bucket, burst = one second's
    /// worth). A faster peer is not disconnected: the relay stops reading from it until the
    /// bucket refills, so TCP flow control slows the sender down.
    pub rate_frames_per_sec: u32,
    /// Sustained frame bytes per second read from one link (token bucket; burst = one second's
    /// worth, and at least `max_frame_len`), applied like `rate_frames_per_sec`.
    pub rate_bytes_per_sec: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            rate_frames_per_sec: DEFAULT_RATE_FRAMES_PER_SEC,
            rate_bytes_per_sec: DEFAULT_RATE_BYTES_PER_SEC,
        }
    }
}

/// A [`Limits`] setting that cannot work.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// `max_frame_len` outside [`MIN_MAX_FRAME_LEN`]..=[`zentalk_wire::MAX_FRAME_LEN`].
    #[error("limits.max_frame_len = {found} is outside {min}..={max}")]
    MaxFrameLen {
        /// Smallest allowed value.
        min: usize,
        /// Largest allowed value.
        max: usize,
        /// The configured value.
        found: usize,
    },
    /// A timeout of zero would close every link at once.
    #[error("limits.{name} must be greater than zero")]
    ZeroTimeout {
        /// The setting's name in the config file.
        name: &'static str,
    },
    /// A connection cap of zero would refuse every connection.
    #[error("limits.{name} must be greater than zero")]
    ZeroConnections {
        /// The setting's name in the config file.
        name: &'static str,
    },
    /// A per-IP cap above the total cap can never be reached.
    #[error("limits.max_connections_per_ip = {per_ip} exceeds limits.max_connections = {total}")]
    PerIpAboveTotal {
        /// The per-IP cap.
        per_ip: usize,
        /// The total cap.
        total: usize,
    },
    /// A rate of zero would stall every link forever.
    #[error("limits.{name} must be greater than zero")]
    ZeroRate {
        /// The setting's name in the config file.
        name: &'static str,
    },
}

impl Limits {
    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), LimitsError> {
        if !(MIN_MAX_FRAME_LEN..=zentalk_wire::MAX_FRAME_LEN).contains(&self.max_frame_len) {
            return Err(LimitsError::MaxFrameLen {
                min: MIN_MAX_FRAME_LEN,
                max: zentalk_wire::MAX_FRAME_LEN,
                found: self.max_frame_len,
            });
        }
        if self.handshake_timeout.is_zero() {
            return Err(LimitsError::ZeroTimeout {
                name: "handshake_timeout_ms",
            });
        }
        if self.idle_timeout.is_zero() {
            return Err(LimitsError::ZeroTimeout {
                name: "idle_timeout_ms",
            });
        }
        if self.send_timeout.is_zero() {
            return Err(LimitsError::ZeroTimeout {
                name: "send_timeout_ms",
            });
        }
        if self.max_connections == 0 {
            return Err(LimitsError::ZeroConnections {
                name: "max_connections",
            });
        }
        if self.max_connections_per_ip == 0 {
            return Err(LimitsError::ZeroConnections {
                name: "max_connections_per_ip",
            });
        }
        if self.max_connections_per_ip > self.max_connections {
            return Err(LimitsError::PerIpAboveTotal {
                per_ip: self.max_connections_per_ip,
                total: self.max_connections,
            });
        }
        if self.rate_frames_per_sec == 0 {
            return Err(LimitsError::ZeroRate {
                name: "rate_frames_per_sec",
            });
        }
        if self.rate_bytes_per_sec == 0 {
            return Err(LimitsError::ZeroRate {
                name: "rate_bytes_per_sec",
            });
        }
        Ok(())
    }
}

/// Serde helper: a [`Duration`] as a whole number of milliseconds.
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

/// A per-link token bucket over frames and bytes, on a caller-supplied clock.
///
/// Each bucket holds up to one second of its rate (the byte bucket at least one maximum-size
/// frame, so any legal frame can pass). [`TokenBucket::take`] always charges the frame and
/// returns how long the reader must pause before it reads more: zero while the peer stays
/// within its rate. Debt is allowed, so a pause repays exactly what was overdrawn.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    frames_per_sec: f64,
    bytes_per_sec: f64,
    frame_capacity: f64,
    byte_capacity: f64,
    frames: f64,
    bytes: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket for `limits`, as of `now`.
    pub fn new(limits: &Limits, now: Instant) -> Self {
        let frames_per_sec = f64::from(limits.rate_frames_per_sec.max(1));
        // u64 -> f64 loses precision only above 2^53 bytes/s, far beyond any link.
        #[allow(clippy::cast_precision_loss, reason = "rates are far below 2^53")]
        let bytes_per_sec = limits.rate_bytes_per_sec.max(1) as f64;
        #[allow(clippy::cast_precision_loss, reason = "frame lengths are below 2^16")]
        let byte_capacity = bytes_per_sec.max(limits.max_frame_len as f64);
        Self {
            frames_per_sec,
            bytes_per_sec,
            frame_capacity: frames_per_sec,
            byte_capacity,
            frames: frames_per_sec,
            bytes: byte_capacity,
            last: now,
        }
    }

    /// Charges one frame of `len` bytes at `now`; returns the pause owed before the next read
    /// (zero when the link is within its rate).
    pub fn take(&mut self, len: usize, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.frames = (self.frames + elapsed * self.frames_per_sec).min(self.frame_capacity);
        self.bytes = (self.bytes + elapsed * self.bytes_per_sec).min(self.byte_capacity);
        self.frames -= 1.0;
        #[allow(clippy::cast_precision_loss, reason = "frame lengths are below 2^16")]
        {
            self.bytes -= len as f64;
        }
        let frame_wait = if self.frames < 0.0 {
            -self.frames / self.frames_per_sec
        } else {
            0.0
        };
        let byte_wait = if self.bytes < 0.0 {
            -self.bytes / self.bytes_per_sec
        } else {
            0.0
        };
        Duration::from_secs_f64(frame_wait.max(byte_wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        assert_eq!(Limits::default().validate(), Ok(()));
    }

    #[test]
    fn every_bad_setting_has_its_error() {
        let base = Limits::default();
        let cases: Vec<(Limits, LimitsError)> = vec![
            (
                Limits {
                    max_frame_len: 10,
                    ..base.clone()
                },
                LimitsError::MaxFrameLen {
                    min: MIN_MAX_FRAME_LEN,
                    max: zentalk_wire::MAX_FRAME_LEN,
                    found: 10,
                },
            ),
            (
                Limits {
                    max_frame_len: zentalk_wire::MAX_FRAME_LEN + 1,
                    ..base.clone()
                },
                LimitsError::MaxFrameLen {
                    min: MIN_MAX_FRAME_LEN,
                    max: zentalk_wire::MAX_FRAME_LEN,
                    found: zentalk_wire::MAX_FRAME_LEN + 1,
                },
            ),
            (
                Limits {
                    handshake_timeout: Duration::ZERO,
                    ..base.clone()
                },
                LimitsError::ZeroTimeout {
                    name: "handshake_timeout_ms",
                },
            ),
            (
                Limits {
                    idle_timeout: Duration::ZERO,
                    ..base.clone()
                },
                LimitsError::ZeroTimeout {
                    name: "idle_timeout_ms",
                },
            ),
            (
                Limits {
                    send_timeout: Duration::ZERO,
                    ..base.clone()
                },
                LimitsError::ZeroTimeout {
                    name: "send_timeout_ms",
                },
            ),
            (
                Limits {
                    max_connections: 0,
                    ..base.clone()
                },
                LimitsError::ZeroConnections {
                    name: "max_connections",
                },
            ),
            (
                Limits {
                    max_connections_per_ip: 0,
                    ..base.clone()
                },
                LimitsError::ZeroConnections {
                    name: "max_connections_per_ip",
                },
            ),
            (
                Limits {
                    max_connections: 4,
                    max_connections_per_ip: 5,
                    ..base.clone()
                },
                LimitsError::PerIpAboveTotal {
                    per_ip: 5,
                    total: 4,
                },
            ),
            (
                Limits {
                    rate_frames_per_sec: 0,
                    ..base.clone()
                },
                LimitsError::ZeroRate {
                    name: "rate_frames_per_sec",
                },
            ),
            (
                Limits {
                    rate_bytes_per_sec: 0,
                    ..base.clone()
                },
                LimitsError::ZeroRate {
                    name: "rate_bytes_per_sec",
                },
            ),
        ];
        for (limits, expected) in cases {
            assert_eq!(limits.validate(), Err(expected));
        }
    }

    #[test]
    fn toml_round_trip_uses_milliseconds() {
        let limits = Limits {
            handshake_timeout: Duration::from_millis(1500),
            ..Limits::default()
        };
        let text = toml::to_string(&limits).unwrap();
        assert!(text.contains("handshake_timeout_ms = 1500"), "{text}");
        let back: Limits = toml::from_str(&text).unwrap();
        assert_eq!(back, limits);
        let partial: Limits = toml::from_str("idle_timeout_ms = 42").unwrap();
        assert_eq!(partial.idle_timeout, Duration::from_millis(42));
        assert_eq!(partial.max_frame_len, DEFAULT_MAX_FRAME_LEN);
        assert!(toml::from_str::<Limits>("no_such_limit = 1").is_err());
    }

    #[test]
    fn bucket_allows_burst_then_paces() {
        let limits = Limits {
            rate_frames_per_sec: 10,
            rate_bytes_per_sec: 1_000_000,
            ..Limits::default()
        };
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(&limits, t0);
        for _ in 0..10 {
            assert_eq!(bucket.take(100, t0), Duration::ZERO);
        }
        // The 11th frame in the same instant overdraws by one frame: 1/10 s.
        let wait = bucket.take(100, t0);
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // After repaying that pause, one more frame still owes a pause (bucket is empty).
        let t1 = t0 + wait;
        let wait2 = bucket.take(100, t1);
        assert!((wait2.as_secs_f64() - 0.1).abs() < 1e-9, "{wait2:?}");
        // After a full second of silence the burst is back.
        let t2 = t1 + wait2 + Duration::from_secs(1);
        assert_eq!(bucket.take(100, t2), Duration::ZERO);
    }

    #[test]
    fn bucket_paces_bytes() {
        let limits = Limits {
            max_frame_len: 1_000,
            rate_frames_per_sec: 1_000,
            rate_bytes_per_sec: 1_000,
            ..Limits::default()
        };
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(&limits, t0);
        assert_eq!(bucket.take(1_000, t0), Duration::ZERO);
        let wait = bucket.take(500, t0);
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
    }
}
