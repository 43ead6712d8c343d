//! The relay's one clock reader. Everything else takes time as an argument.

use std::time::{Duration, UNIX_EPOCH};

/// Time since the Unix epoch, by the system clock (zero if the clock is before 1970).
#[allow(
    clippy::disallowed_methods,
    reason = "L2 driver: the relay reads the wall clock here and only here"
)]
pub(crate) fn unix_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// Unix milliseconds now.
pub(crate) fn unix_ms() -> u64 {
    u64::try_from(unix_now().as_millis()).unwrap_or(u64::MAX)
}

/// Unix seconds now.
pub(crate) fn unix_secs() -> u64 {
    unix_now().as_secs()
}
