//! The relay mailbox: per-recipient queues of opaque payloads, with two backends behind one
//! trait, [`MailboxBackend`]: [`SqliteMailbox`] (default, embedded) and [`PostgresMailbox`]
//! (for operators), chosen by URL in [`Mailbox::open`].
//!
//! Every mutating call (put, ack, expire, transit receipt) goes to one background writer task
//! through a bounded channel ([`WRITE_QUEUE_CAPACITY`]); the writer drains up to
//! [`MAX_BATCH`] waiting requests, applies them in one transaction, commits (WAL +
//! `synchronous = FULL` on SQLite, `synchronous_commit = on` on PostgreSQL) and only then
//! replies to each caller. A put that returned `Ok` is therefore on disk, and many concurrent
//! puts share one fsync (group commit). Reads use a separate connection pool.
//!
//! The API has no call that reads or deletes without naming the mailbox: access control (who
//! may name which mailbox) belongs to the relay.

mod postgres;
mod sqlite;
mod writer;

use std::future::Future;

pub use postgres::{POSTGRES_MIGRATOR, PostgresMailbox};
pub use sqlite::{SQLITE_MIGRATOR, SqliteMailbox};

use crate::MailboxError;
pub use crate::client::MessageId;

/// Largest payload a put accepts (bytes).
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024;
/// Most messages one fetch returns.
pub const MAX_FETCH: usize = 1000;
/// Most message ids one ack names.
pub const MAX_ACK: usize = 1000;
/// Capacity of the writer's request channel: callers wait (backpressure) when it is full.
pub const WRITE_QUEUE_CAPACITY: usize = 8192;
/// Most requests the writer applies in one transaction.
pub const MAX_BATCH: usize = 2048;
/// Most expired messages one expiry step deletes (call [`MailboxBackend::expire`] until it
/// returns 0 to drain a large backlog).
pub const EXPIRE_CHUNK: usize = 10_000;
/// Most mailboxes whose usage the writer keeps cached (it forgets all when exceeded and
/// reloads on demand).
pub const USAGE_CACHE_MAX: usize = 100_000;

/// Default time to live of a queued message: 14 days.
pub const DEFAULT_TTL_MS: u64 = 14 * 24 * 3600 * 1000;
/// Default per-mailbox quota: 10,000 messages.
pub const DEFAULT_MAILBOX_MESSAGES: u64 = 10_000;
/// Default per-mailbox quota: 64 MiB.
pub const DEFAULT_MAILBOX_BYTES: u64 = 64 * 1024 * 1024;
/// Default global quota: 10 million messages.
pub const DEFAULT_GLOBAL_MESSAGES: u64 = 10_000_000;
/// Default global quota: 16 GiB.
pub const DEFAULT_GLOBAL_BYTES: u64 = 16 * 1024 * 1024 * 1024;
/// Default retention of a transit receipt: 24 hours.
pub const DEFAULT_TRANSIT_RETENTION_MS: u64 = 24 * 3600 * 1000;
/// Default cap on stored transit receipts (oldest pruned first).
pub const DEFAULT_MAX_TRANSIT_RECEIPTS: u64 = 10_000_000;

/// A mailbox id: 32 bytes chosen by the relay (e.g. a recipient's address or a blinded form).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct MailboxId(pub [u8; 32]);

/// Quotas, TTL and retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to live of a queued message (ms).
    pub ttl_ms: u64,
    /// Most messages queued in one mailbox.
    pub mailbox_messages: u64,
    /// Most payload bytes queued in one mailbox.
    pub mailbox_bytes: u64,
    /// Most messages queued in all mailboxes.
    pub global_messages: u64,
    /// Most payload bytes queued in all mailboxes.
    pub global_bytes: u64,
    /// How long a transit receipt is kept (ms).
    pub transit_retention_ms: u64,
    /// Most transit receipts kept.
    pub max_transit_receipts: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ttl_ms: DEFAULT_TTL_MS,
            mailbox_messages: DEFAULT_MAILBOX_MESSAGES,
            mailbox_bytes: DEFAULT_MAILBOX_BYTES,
            global_messages: DEFAULT_GLOBAL_MESSAGES,
            global_bytes: DEFAULT_GLOBAL_BYTES,
            transit_retention_ms: DEFAULT_TRANSIT_RETENTION_MS,
            max_transit_receipts: DEFAULT_MAX_TRANSIT_RECEIPTS,
        }
    }
}

/// What a put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutOutcome {
    /// Stored (durably) at this arrival sequence number.
    Stored {
        /// Arrival sequence number (the fetch cursor position).
        seq: u64,
    },
    /// A message with this id is already queued in this mailbox: nothing changed.
    Duplicate,
}

/// A fetch position: fetch returns messages that arrived after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor(pub u64);

impl Cursor {
    /// The beginning of a mailbox.
    pub const START: Cursor = Cursor(0);
}

/// A queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Arrival sequence number.
    pub seq: u64,
    /// Message id.
    pub message_id: MessageId,
    /// Opaque payload.
    pub payload: Vec<u8>,
    /// When the relay stored it (ms).
    pub received_at_ms: u64,
    /// When it expires (ms).
    pub expires_at_ms: u64,
}

/// One fetch result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPage {
    /// Messages in arrival order.
    pub envelopes: Vec<Envelope>,
    /// Where the next fetch continues (unchanged if nothing was returned).
    pub next: Cursor,
}

/// What recording a transit receipt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransitOutcome {
    /// First time this packet hash was seen (within retention).
    Recorded,
    /// A receipt for this hash already exists.
    AlreadySeen,
}

/// What one expiry step removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expired {
    /// Expired messages deleted (at most [`EXPIRE_CHUNK`]).
    pub messages: u64,
    /// Transit receipts pruned (past retention or over the cap).
    pub receipts: u64,
}

/// The mailbox operations both backends implement (and pass the same test-suite).
///
/// `now_ms` is the relay's clock in milliseconds since the Unix epoch, passed in so that TTL
/// behaviour is testable.
pub trait MailboxBackend: Send + Sync {
    /// Queues `payload` for `mailbox` under `id`. Idempotent: while a message with this id is
    /// queued in this mailbox, a retried put returns [`PutOutcome::Duplicate`] and changes
    /// nothing. Returns only once the message is durable. Fails with
    /// [`MailboxError::Full`] when a quota would be exceeded.
    fn put(
        &self,
        mailbox: &MailboxId,
        id: &MessageId,
        payload: &[u8],
        now_ms: u64,
    ) -> impl Future<Output = Result<PutOutcome, MailboxError>> + Send;

    /// Up to `limit` (≤ [`MAX_FETCH`]) unexpired messages of `mailbox` that arrived after
    /// `after`, in arrival order.
    fn fetch(
        &self,
        mailbox: &MailboxId,
        after: Cursor,
        limit: usize,
        now_ms: u64,
    ) -> impl Future<Output = Result<FetchPage, MailboxError>> + Send;

    /// Deletes the named messages (≤ [`MAX_ACK`]) from `mailbox`. Returns how many existed.
    fn ack(
        &self,
        mailbox: &MailboxId,
        ids: &[MessageId],
    ) -> impl Future<Output = Result<u64, MailboxError>> + Send;

    /// Deletes up to [`EXPIRE_CHUNK`] expired messages and prunes transit receipts past
    /// retention or over the cap.
    fn expire(&self, now_ms: u64) -> impl Future<Output = Result<Expired, MailboxError>> + Send;

    /// Messages and payload bytes queued in `mailbox`.
    fn usage(
        &self,
        mailbox: &MailboxId,
    ) -> impl Future<Output = Result<(u64, u64), MailboxError>> + Send;

    /// Records a hash-only transit receipt for a forwarded packet (store-nothing mode).
    fn record_transit(
        &self,
        packet_hash: &[u8; 32],
        now_ms: u64,
    ) -> impl Future<Output = Result<TransitOutcome, MailboxError>> + Send;

    /// When a transit receipt for this hash was recorded, if one is kept.
    fn transit_seen(
        &self,
        packet_hash: &[u8; 32],
    ) -> impl Future<Output = Result<Option<u64>, MailboxError>> + Send;
}

/// A mailbox on either backend, chosen by URL.
#[derive(Debug)]
#[non_exhaustive]
pub enum Mailbox {
    /// SQLite (default).
    Sqlite(SqliteMailbox),
    /// PostgreSQL.
    Postgres(PostgresMailbox),
}

impl Mailbox {
    /// Opens a mailbox: `sqlite://PATH` (created if missing; `sqlite:PATH` also accepted) or
    /// `postgres://...` / `postgresql://...`. Migrations are applied; a database with a
    /// migration this build does not know is refused with [`MailboxError::NewerSchema`].
    pub async fn open(url: &str, limits: Limits) -> Result<Self, MailboxError> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(MailboxError::UnsupportedUrl(url.to_string()));
            }
            return Ok(Self::Sqlite(
                SqliteMailbox::open(std::path::Path::new(path), limits).await?,
            ));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(PostgresMailbox::open(url, limits).await?));
        }
        Err(MailboxError::UnsupportedUrl(url.to_string()))
    }

    /// Stops the writer (after it finishes queued requests) and closes the connections.
    pub async fn close(self) {
        match self {
            Self::Sqlite(m) => m.close().await,
            Self::Postgres(m) => m.close().await,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $m:ident => $e:expr) => {
        match $self {
            Mailbox::Sqlite($m) => $e.await,
            Mailbox::Postgres($m) => $e.await,
        }
    };
}

impl MailboxBackend for Mailbox {
    async fn put(
        &self,
        mailbox: &MailboxId,
        id: &MessageId,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<PutOutcome, MailboxError> {
        delegate!(self, m => m.put(mailbox, id, payload, now_ms))
    }
    async fn fetch(
        &self,
        mailbox: &MailboxId,
        after: Cursor,
        limit: usize,
        now_ms: u64,
    ) -> Result<FetchPage, MailboxError> {
        delegate!(self, m => m.fetch(mailbox, after, limit, now_ms))
    }
    async fn ack(&self, mailbox: &MailboxId, ids: &[MessageId]) -> Result<u64, MailboxError> {
        delegate!(self, m => m.ack(mailbox, ids))
    }
    async fn expire(&self, now_ms: u64) -> Result<Expired, MailboxError> {
        delegate!(self, m => m.expire(now_ms))
    }
    async fn usage(&self, mailbox: &MailboxId) -> Result<(u64, u64), MailboxError> {
        delegate!(self, m => m.usage(mailbox))
    }
    async fn record_transit(
        &self,
        packet_hash: &[u8; 32],
        now_ms: u64,
    ) -> Result<TransitOutcome, MailboxError> {
        delegate!(self, m => m.record_transit(packet_hash, now_ms))
    }
    async fn transit_seen(&self, packet_hash: &[u8; 32]) -> Result<Option<u64>, MailboxError> {
        delegate!(self, m => m.transit_seen(packet_hash))
    }
}

/// (seq, message_id, payload, received_at, expires_at) as read from either backend.
pub(crate) type EnvelopeRow = (i64, Vec<u8>, Vec<u8>, i64, i64);

pub(crate) fn check_fetch_limit(limit: usize) -> Result<i64, MailboxError> {
    if limit > MAX_FETCH {
        return Err(MailboxError::LimitTooLarge {
            what: "fetch limit",
            max: MAX_FETCH,
            found: limit,
        });
    }
    Ok(i64::try_from(limit).unwrap_or(i64::MAX))
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn message_id(v: &[u8]) -> Result<MessageId, MailboxError> {
    let b: [u8; 16] = v.try_into().map_err(|_| MailboxError::Malformed {
        table: "mailbox_messages",
        reason: "message id is not 16 bytes",
    })?;
    Ok(MessageId(b))
}

pub(crate) fn mailbox_id(v: &[u8]) -> Result<MailboxId, MailboxError> {
    let b: [u8; 32] = v.try_into().map_err(|_| MailboxError::Malformed {
        table: "mailbox_messages",
        reason: "mailbox id is not 32 bytes",
    })?;
    Ok(MailboxId(b))
}
