//! Relay counters and their Prometheus text exposition.
//!
//! Every counter is an atomic; every label set is fixed at compile time (reasons are
//! `&'static str` from a closed list), so a peer cannot grow the metrics by sending odd input.
//! Nothing here ever holds an address or a key.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A counter per label value, over a fixed list of values. Unknown values count as `other`.
#[derive(Debug)]
struct Labeled {
    labels: &'static [&'static str],
    counts: Box<[AtomicU64]>,
    other: AtomicU64,
}

impl Labeled {
    fn new(labels: &'static [&'static str]) -> Self {
        Self {
            labels,
            counts: labels.iter().map(|_| AtomicU64::new(0)).collect(),
            other: AtomicU64::new(0),
        }
    }

    fn inc(&self, label: &str) {
        let slot = self
            .labels
            .iter()
            .position(|l| *l == label)
            .and_then(|i| self.counts.get(i))
            .unwrap_or(&self.other);
        slot.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, label: &str) -> u64 {
        self.labels
            .iter()
            .position(|l| *l == label)
            .and_then(|i| self.counts.get(i))
            .unwrap_or(&self.other)
            .load(Ordering::Relaxed)
    }

    fn total(&self) -> u64 {
        self.counts
            .iter()
            .chain(std::iter::once(&self.other))
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    fn render(&self, out: &mut String, name: &str, label: &str) {
        let pairs = self
            .labels
            .iter()
            .zip(self.counts.iter())
            .map(|(l, c)| (*l, c))
            .chain(std::iter::once(("other", &self.other)));
        for (value, count) in pairs {
            let _ = writeln!(
                out,
                "{name}{{{label}=\"{value}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
    }
}

/// Reasons a TCP connection is refused right after accept.
pub const REFUSE_REASONS: &[&str] = &["max_connections", "max_connections_per_ip"];

/// Reasons a handshake fails (the [`crate::LinkError::reason`] labels that can occur before a
/// link is established).
pub const HANDSHAKE_FAILURE_REASONS: &[&str] = &[
    "handshake_timeout",
    "handshake_failed",
    "handshake_length",
    "closed",
    "truncated",
    "io",
    "shutdown",
    "rng",
];

/// Reasons an established link closes.
pub const LINK_CLOSE_REASONS: &[&str] = &[
    "closed",
    "peer_close",
    "idle_timeout",
    "send_timeout",
    "shutdown",
    "truncated",
    "io",
    "frame_too_large",
    "message_too_short",
    "decrypt_failed",
    "malformed_frame",
];

/// Reasons a received frame is dropped.
pub const FRAME_DROP_REASONS: &[&str] = &[
    "frame_too_large",
    "message_too_short",
    "decrypt_failed",
    "malformed_frame",
    "malformed_body",
    "unsupported_type",
];

/// The relay's counters. Shared by the accept loop, every link task and the metrics listener.
#[derive(Debug)]
pub struct Metrics {
    links_open: AtomicU64,
    connections_accepted: AtomicU64,
    connections_refused: Labeled,
    handshakes_completed: AtomicU64,
    handshake_failures: Labeled,
    links_closed: Labeled,
    frames_received: AtomicU64,
    bytes_received: AtomicU64,
    frames_sent: AtomicU64,
    frames_dropped: Labeled,
    rate_limit_pauses: AtomicU64,
    packets_forwarded: AtomicU64,
    packets_delivered: AtomicU64,
    packets_duplicate: AtomicU64,
    packets_dropped: Labeled,
    mailbox_stored: AtomicU64,
    mailbox_acked: AtomicU64,
    pushes_skipped: AtomicU64,
    mailbox_auth_ok: AtomicU64,
    mailbox_auth_failures: Labeled,
    transit_receipts_served: AtomicU64,
    peer_links_opened: AtomicU64,
    peer_links_lost: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            links_open: AtomicU64::new(0),
            connections_accepted: AtomicU64::new(0),
            connections_refused: Labeled::new(REFUSE_REASONS),
            handshakes_completed: AtomicU64::new(0),
            handshake_failures: Labeled::new(HANDSHAKE_FAILURE_REASONS),
            links_closed: Labeled::new(LINK_CLOSE_REASONS),
            frames_received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            frames_dropped: Labeled::new(FRAME_DROP_REASONS),
            rate_limit_pauses: AtomicU64::new(0),
            packets_forwarded: AtomicU64::new(0),
            packets_delivered: AtomicU64::new(0),
            packets_duplicate: AtomicU64::new(0),
            packets_dropped: Labeled::new(crate::service::PACKET_DROP_REASONS),
            mailbox_stored: AtomicU64::new(0),
            mailbox_acked: AtomicU64::new(0),
            pushes_skipped: AtomicU64::new(0),
            mailbox_auth_ok: AtomicU64::new(0),
            mailbox_auth_failures: Labeled::new(crate::service::AUTH_FAILURE_REASONS),
            transit_receipts_served: AtomicU64::new(0),
            peer_links_opened: AtomicU64::new(0),
            peer_links_lost: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub(crate) fn connection_accepted(&self) {
        self.connections_accepted.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn connection_refused(&self, reason: &str) {
        self.connections_refused.inc(reason);
    }
    pub(crate) fn handshake_completed(&self) {
        self.handshakes_completed.fetch_add(1, Ordering::Relaxed);
        self.links_open.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn handshake_failed(&self, reason: &str) {
        self.handshake_failures.inc(reason);
    }
    pub(crate) fn link_closed(&self, reason: &str) {
        self.links_open.fetch_sub(1, Ordering::Relaxed);
        self.links_closed.inc(reason);
    }
    pub(crate) fn frame_received(&self, len: usize) {
        self.frames_received.fetch_add(1, Ordering::Relaxed);
        self.bytes_received
            .fetch_add(u64::try_from(len).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
    pub(crate) fn frame_sent(&self) {
        self.frames_sent.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn frame_dropped(&self, reason: &str) {
        self.frames_dropped.inc(reason);
    }
    pub(crate) fn rate_limit_pause(&self) {
        self.rate_limit_pauses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn packet_forwarded(&self) {
        self.packets_forwarded.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn packet_delivered(&self) {
        self.packets_delivered.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn packet_delivered_duplicate(&self) {
        self.packets_duplicate.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn packet_dropped(&self, reason: &str) {
        self.packets_dropped.inc(reason);
    }
    pub(crate) fn mailbox_stored(&self) {
        self.mailbox_stored.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn mailbox_acked(&self, n: u64) {
        self.mailbox_acked.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn push_skipped(&self) {
        self.pushes_skipped.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn mailbox_auth_succeeded(&self) {
        self.mailbox_auth_ok.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn mailbox_auth_failed(&self, reason: &str) {
        self.mailbox_auth_failures.inc(reason);
    }
    pub(crate) fn transit_receipt_served(&self) {
        self.transit_receipts_served.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn peer_link_opened(&self) {
        self.peer_links_opened.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn peer_link_lost(&self) {
        self.peer_links_lost.fetch_add(1, Ordering::Relaxed);
    }

    /// Pushes skipped because an owner's push queue was full (the items stay stored).
    pub fn pushes_skipped(&self) -> u64 {
        self.pushes_skipped.load(Ordering::Relaxed)
    }
    /// Pooled relay-to-relay links opened (first use, and every re-dial).
    pub fn peer_links_opened(&self) -> u64 {
        self.peer_links_opened.load(Ordering::Relaxed)
    }
    /// Pooled relay-to-relay links dropped because the peer closed them, sent garbage, or a
    /// read or write failed (not counting idle closes and shutdown).
    pub fn peer_links_lost(&self) -> u64 {
        self.peer_links_lost.load(Ordering::Relaxed)
    }

    /// Onion packets forwarded to the next relay (written to its link).
    pub fn packets_forwarded(&self) -> u64 {
        self.packets_forwarded.load(Ordering::Relaxed)
    }
    /// Onion packets delivered into a mailbox (stored durably).
    pub fn packets_delivered(&self) -> u64 {
        self.packets_delivered.load(Ordering::Relaxed)
    }
    /// Deliveries of a message already queued in that mailbox (stored once).
    pub fn packets_duplicate(&self) -> u64 {
        self.packets_duplicate.load(Ordering::Relaxed)
    }
    /// Onion packets dropped for `reason` (one of [`crate::service::PACKET_DROP_REASONS`]).
    pub fn packets_dropped(&self, reason: &str) -> u64 {
        self.packets_dropped.get(reason)
    }
    /// Onion packets dropped, all reasons.
    pub fn packets_dropped_total(&self) -> u64 {
        self.packets_dropped.total()
    }
    /// Mailbox items stored minus items acknowledged, since this process started.
    pub fn mailbox_depth(&self) -> u64 {
        self.mailbox_stored
            .load(Ordering::Relaxed)
            .saturating_sub(self.mailbox_acked.load(Ordering::Relaxed))
    }
    /// Successful mailbox authentications.
    pub fn mailbox_auth_ok(&self) -> u64 {
        self.mailbox_auth_ok.load(Ordering::Relaxed)
    }
    /// Refused mailbox authentications for `reason`.
    pub fn mailbox_auth_failures(&self, reason: &str) -> u64 {
        self.mailbox_auth_failures.get(reason)
    }
    /// Refused mailbox authentications, all reasons.
    pub fn mailbox_auth_failures_total(&self) -> u64 {
        self.mailbox_auth_failures.total()
    }

    /// Established links now open.
    pub fn links_open(&self) -> u64 {
        self.links_open.load(Ordering::Relaxed)
    }
    /// TCP connections accepted (before limits and handshake).
    pub fn connections_accepted(&self) -> u64 {
        self.connections_accepted.load(Ordering::Relaxed)
    }
    /// Connections refused for `reason` (one of [`REFUSE_REASONS`]).
    pub fn connections_refused(&self, reason: &str) -> u64 {
        self.connections_refused.get(reason)
    }
    /// Handshakes completed.
    pub fn handshakes_completed(&self) -> u64 {
        self.handshakes_completed.load(Ordering::Relaxed)
    }
    /// Handshakes failed for `reason` (one of [`HANDSHAKE_FAILURE_REASONS`]).
    pub fn handshake_failures(&self, reason: &str) -> u64 {
        self.handshake_failures.get(reason)
    }
    /// Handshakes failed, all reasons.
    pub fn handshake_failures_total(&self) -> u64 {
        self.handshake_failures.total()
    }
    /// Links closed for `reason` (one of [`LINK_CLOSE_REASONS`]).
    pub fn links_closed(&self, reason: &str) -> u64 {
        self.links_closed.get(reason)
    }
    /// Frames received and decoded.
    pub fn frames_received(&self) -> u64 {
        self.frames_received.load(Ordering::Relaxed)
    }
    /// Frames sent.
    pub fn frames_sent(&self) -> u64 {
        self.frames_sent.load(Ordering::Relaxed)
    }
    /// Frames dropped for `reason` (one of [`FRAME_DROP_REASONS`]).
    pub fn frames_dropped(&self, reason: &str) -> u64 {
        self.frames_dropped.get(reason)
    }
    /// Times a link's reader paused because the peer exceeded its rate.
    pub fn rate_limit_pauses(&self) -> u64 {
        self.rate_limit_pauses.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition (format 0.0.4) of every counter.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut simple = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        simple(
            "zentalk_relay_links_open",
            "gauge",
            "Established Noise links now open.",
            self.links_open(),
        );
        simple(
            "zentalk_relay_connections_accepted_total",
            "counter",
            "TCP connections accepted, before limits and handshake.",
            self.connections_accepted(),
        );
        simple(
            "zentalk_relay_handshakes_completed_total",
            "counter",
            "Noise handshakes completed.",
            self.handshakes_completed(),
        );
        simple(
            "zentalk_relay_frames_received_total",
            "counter",
            "Frames received, authenticated and decoded.",
            self.frames_received(),
        );
        simple(
            "zentalk_relay_frame_bytes_received_total",
            "counter",
            "Bytes of the frames counted in zentalk_relay_frames_received_total.",
            self.bytes_received.load(Ordering::Relaxed),
        );
        simple(
            "zentalk_relay_frames_sent_total",
            "counter",
            "Frames sent.",
            self.frames_sent(),
        );
        simple(
            "zentalk_relay_rate_limit_pauses_total",
            "counter",
            "Times a link's reader paused because the peer exceeded its token bucket.",
            self.rate_limit_pauses(),
        );
        simple(
            "zentalk_relay_packets_forwarded_total",
            "counter",
            "Onion packets forwarded to the next relay.",
            self.packets_forwarded(),
        );
        simple(
            "zentalk_relay_packets_delivered_total",
            "counter",
            "Onion packets delivered into a mailbox (stored durably).",
            self.packets_delivered(),
        );
        simple(
            "zentalk_relay_packets_duplicate_total",
            "counter",
            "Deliveries of a message already queued in its mailbox (stored once).",
            self.packets_duplicate(),
        );
        simple(
            "zentalk_relay_mailbox_depth",
            "gauge",
            "Mailbox items stored minus items acknowledged since this process started.",
            self.mailbox_depth(),
        );
        simple(
            "zentalk_relay_mailbox_pushes_skipped_total",
            "counter",
            "Pushes skipped because the owner's push queue was full (items stay stored).",
            self.pushes_skipped(),
        );
        simple(
            "zentalk_relay_mailbox_auth_ok_total",
            "counter",
            "Successful mailbox authentications.",
            self.mailbox_auth_ok(),
        );
        simple(
            "zentalk_relay_transit_receipts_served_total",
            "counter",
            "Transit receipts sent in answer to TransitReceiptFetch.",
            self.transit_receipts_served.load(Ordering::Relaxed),
        );
        simple(
            "zentalk_relay_peer_links_opened_total",
            "counter",
            "Pooled relay-to-relay links opened (first use and every re-dial).",
            self.peer_links_opened(),
        );
        simple(
            "zentalk_relay_peer_links_lost_total",
            "counter",
            "Pooled relay-to-relay links dropped because the peer closed them or I/O failed.",
            self.peer_links_lost(),
        );
        let labeled: [(&str, &str, &str, &Labeled); 6] = [
            (
                "zentalk_relay_packets_dropped_total",
                "reason",
                "Onion packets dropped (replays, expired epochs, MAC failures, ...).",
                &self.packets_dropped,
            ),
            (
                "zentalk_relay_mailbox_auth_failures_total",
                "reason",
                "Refused mailbox authentications.",
                &self.mailbox_auth_failures,
            ),
            (
                "zentalk_relay_connections_refused_total",
                "reason",
                "TCP connections closed right after accept by a connection limit.",
                &self.connections_refused,
            ),
            (
                "zentalk_relay_handshake_failures_total",
                "reason",
                "Noise handshakes that failed.",
                &self.handshake_failures,
            ),
            (
                "zentalk_relay_links_closed_total",
                "reason",
                "Established links closed.",
                &self.links_closed,
            ),
            (
                "zentalk_relay_frames_dropped_total",
                "reason",
                "Received frames dropped (for link-level reasons the link closes too).",
                &self.frames_dropped,
            ),
        ];
        for (name, label, help, counter) in labeled {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            counter.render(&mut out, name, label);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_every_series() {
        let m = Metrics::default();
        m.handshake_completed();
        m.handshake_failed("handshake_timeout");
        m.handshake_failed("something_new");
        m.frame_dropped("unsupported_type");
        m.connection_refused("max_connections_per_ip");
        let text = m.render();
        assert!(text.contains("zentalk_relay_links_open 1\n"), "{text}");
        assert!(
            text.contains(
                "zentalk_relay_handshake_failures_total{reason=\"handshake_timeout\"} 1\n"
            )
        );
        assert!(text.contains("zentalk_relay_handshake_failures_total{reason=\"other\"} 1\n"));
        assert!(
            text.contains("zentalk_relay_frames_dropped_total{reason=\"unsupported_type\"} 1\n")
        );
        assert!(text.contains(
            "zentalk_relay_connections_refused_total{reason=\"max_connections_per_ip\"} 1\n"
        ));
        assert_eq!(m.handshake_failures_total(), 2);
        // Every sample line is `name{labels} value` or `name value` with a numeric value.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            value.parse::<u64>().unwrap();
        }
    }
}
