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

    /// Deletes every message of `mailbox` whose arrival sequence number is at most `up_to`,
    /// in one `DELETE` naming the mailbox: passing a fetched page's `next` cursor acknowledges
    /// that page and everything before it. Returns how many messages were deleted. Messages of
    /// other mailboxes are never touched, whatever their seq.
    fn ack_up_to(
        &self,
        mailbox: &MailboxId,
        up_to: Cursor,
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
    async fn ack_up_to(&self, mailbox: &MailboxId, up_to: Cursor) -> Result<u64, MailboxError> {
        delegate!(self, m => m.ack_up_to(mailbox, up_to))
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

/// SQL that both backends run unchanged. Parameters are written `$N`, which PostgreSQL and
/// sqlx's SQLite driver both read as the N-th bound argument; sums are cast to BIGINT (a
/// PostgreSQL `sum` of BIGINT is NUMERIC; SQLite's cast is a no-op).
pub(crate) mod sql {
    /// Unexpired messages of `$1` after seq `$2` at time `$3`, in arrival order, at most `$4`.
    pub(crate) const FETCH: &str = "SELECT seq, message_id, payload, received_at, expires_at FROM mailbox_messages \
         WHERE mailbox = $1 AND seq > $2 AND expires_at > $3 ORDER BY seq LIMIT $4";
    /// (messages, bytes) queued in `$1`.
    pub(crate) const USAGE: &str = "SELECT count(*), CAST(coalesce(sum(size), 0) AS BIGINT) \
         FROM mailbox_messages WHERE mailbox = $1";
    /// (messages, bytes) queued in all mailboxes.
    pub(crate) const USAGE_ALL: &str =
        "SELECT count(*), CAST(coalesce(sum(size), 0) AS BIGINT) FROM mailbox_messages";
    /// 1 if (`$1`, `$2`) is queued, else 0.
    pub(crate) const EXISTS: &str =
        "SELECT count(*) FROM mailbox_messages WHERE mailbox = $1 AND message_id = $2";
    /// (messages, bytes) of `$1` with seq ≤ `$2`.
    pub(crate) const USAGE_UP_TO: &str = "SELECT count(*), CAST(coalesce(sum(size), 0) AS BIGINT) \
         FROM mailbox_messages WHERE mailbox = $1 AND seq <= $2";
    /// Deletes the messages of `$1` with seq ≤ `$2`.
    pub(crate) const DELETE_UP_TO: &str =
        "DELETE FROM mailbox_messages WHERE mailbox = $1 AND seq <= $2";
    /// Deletes at most `$2` messages expired at `$1`, returning (mailbox, size) of each.
    pub(crate) const DELETE_EXPIRED: &str = "DELETE FROM mailbox_messages WHERE seq IN \
         (SELECT seq FROM mailbox_messages WHERE expires_at <= $1 LIMIT $2) RETURNING mailbox, size";
    /// Records receipt `$1` at `$2` unless present.
    pub(crate) const INSERT_TRANSIT: &str = "INSERT INTO transit_receipts (packet_hash, seen_at) \
         VALUES ($1, $2) ON CONFLICT (packet_hash) DO NOTHING";
    /// When receipt `$1` was recorded.
    pub(crate) const TRANSIT_SEEN: &str =
        "SELECT seen_at FROM transit_receipts WHERE packet_hash = $1";
    /// Deletes receipts recorded before `$1`.
    pub(crate) const PRUNE_TRANSIT_OLD: &str = "DELETE FROM transit_receipts WHERE seen_at < $1";
    /// Receipts kept.
    pub(crate) const COUNT_TRANSIT: &str = "SELECT count(*) FROM transit_receipts";
    /// Deletes the `$1` oldest receipts.
    pub(crate) const PRUNE_TRANSIT_OLDEST: &str = "DELETE FROM transit_receipts WHERE packet_hash IN \
         (SELECT packet_hash FROM transit_receipts ORDER BY seen_at LIMIT $1)";
}

/// The [`writer::Sink`] methods whose SQL and code are the same for both backends (see
/// [`sql`]), expanded inside each backend's `impl Sink`, where `self.conn` is its connection;
/// `$begin` is the statement that opens the writer's transaction.
macro_rules! common_sink_methods {
    ($begin:literal) => {
        async fn begin(&mut self) -> Result<(), $crate::MailboxError> {
            sqlx::query($begin).execute(&mut self.conn).await?;
            Ok(())
        }

        async fn commit(&mut self) -> Result<(), $crate::MailboxError> {
            sqlx::query("COMMIT").execute(&mut self.conn).await?;
            Ok(())
        }

        async fn rollback(&mut self) {
            let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
        }

        async fn load_usage(
            &mut self,
            mailbox: &$crate::mailbox::MailboxId,
        ) -> Result<(u64, u64), $crate::MailboxError> {
            let (n, b): (i64, i64) = sqlx::query_as($crate::mailbox::sql::USAGE)
                .bind(&mailbox.0[..])
                .fetch_one(&mut self.conn)
                .await?;
            Ok(($crate::mailbox::to_u64(n), $crate::mailbox::to_u64(b)))
        }

        async fn exists(
            &mut self,
            mailbox: &$crate::mailbox::MailboxId,
            id: &$crate::mailbox::MessageId,
        ) -> Result<bool, $crate::MailboxError> {
            let n: i64 = sqlx::query_scalar($crate::mailbox::sql::EXISTS)
                .bind(&mailbox.0[..])
                .bind(&id.0[..])
                .fetch_one(&mut self.conn)
                .await?;
            Ok(n > 0)
        }

        async fn delete_expired(
            &mut self,
            now_ms: i64,
        ) -> Result<Vec<($crate::mailbox::MailboxId, u64)>, $crate::MailboxError> {
            let rows: Vec<(Vec<u8>, i64)> = sqlx::query_as($crate::mailbox::sql::DELETE_EXPIRED)
                .bind(now_ms)
                .bind(i64::try_from($crate::mailbox::EXPIRE_CHUNK).unwrap_or(i64::MAX))
                .fetch_all(&mut self.conn)
                .await?;
            rows.into_iter()
                .map(|(m, s)| Ok(($crate::mailbox::mailbox_id(&m)?, $crate::mailbox::to_u64(s))))
                .collect()
        }

        async fn insert_transit(
            &mut self,
            hash: &[u8; 32],
            now_ms: i64,
        ) -> Result<bool, $crate::MailboxError> {
            let r = sqlx::query($crate::mailbox::sql::INSERT_TRANSIT)
                .bind(&hash[..])
                .bind(now_ms)
                .execute(&mut self.conn)
                .await?;
            Ok(r.rows_affected() == 1)
        }

        async fn prune_transit(
            &mut self,
            cutoff: i64,
            max: u64,
        ) -> Result<u64, $crate::MailboxError> {
            let old = sqlx::query($crate::mailbox::sql::PRUNE_TRANSIT_OLD)
                .bind(cutoff)
                .execute(&mut self.conn)
                .await?;
            let count: i64 = sqlx::query_scalar($crate::mailbox::sql::COUNT_TRANSIT)
                .fetch_one(&mut self.conn)
                .await?;
            let excess = $crate::mailbox::to_u64(count).saturating_sub(max);
            let mut extra = 0;
            if excess > 0 {
                extra = sqlx::query($crate::mailbox::sql::PRUNE_TRANSIT_OLDEST)
                    .bind($crate::mailbox::to_i64(excess))
                    .execute(&mut self.conn)
                    .await?
                    .rows_affected();
            }
            Ok(old.rows_affected() + extra)
        }
    };
}
pub(crate) use common_sink_methods;

/// Implements [`MailboxBackend`] for a backend type with a `writer: WriterHandle` (mutations
/// go through the group-commit writer) and a `read` pool (reads run the shared [`sql`]).
macro_rules! impl_mailbox_backend {
    ($ty:ty) => {
        impl $crate::mailbox::MailboxBackend for $ty {
            async fn put(
                &self,
                mailbox: &$crate::mailbox::MailboxId,
                id: &$crate::mailbox::MessageId,
                payload: &[u8],
                now_ms: u64,
            ) -> Result<$crate::mailbox::PutOutcome, $crate::MailboxError> {
                self.writer.put(mailbox, id, payload, now_ms).await
            }

            async fn fetch(
                &self,
                mailbox: &$crate::mailbox::MailboxId,
                after: $crate::mailbox::Cursor,
                limit: usize,
                now_ms: u64,
            ) -> Result<$crate::mailbox::FetchPage, $crate::MailboxError> {
                let lim = $crate::mailbox::check_fetch_limit(limit)?;
                let rows: Vec<$crate::mailbox::EnvelopeRow> =
                    sqlx::query_as($crate::mailbox::sql::FETCH)
                        .bind(&mailbox.0[..])
                        .bind($crate::mailbox::to_i64(after.0))
                        .bind($crate::mailbox::to_i64(now_ms))
                        .bind(lim)
                        .fetch_all(&self.read)
                        .await?;
                $crate::mailbox::build_page(rows, after)
            }

            async fn ack(
                &self,
                mailbox: &$crate::mailbox::MailboxId,
                ids: &[$crate::mailbox::MessageId],
            ) -> Result<u64, $crate::MailboxError> {
                self.writer.ack(mailbox, ids).await
            }

            async fn ack_up_to(
                &self,
                mailbox: &$crate::mailbox::MailboxId,
                up_to: $crate::mailbox::Cursor,
            ) -> Result<u64, $crate::MailboxError> {
                self.writer.ack_up_to(mailbox, up_to).await
            }

            async fn expire(
                &self,
                now_ms: u64,
            ) -> Result<$crate::mailbox::Expired, $crate::MailboxError> {
                self.writer.expire(now_ms).await
            }

            async fn usage(
                &self,
                mailbox: &$crate::mailbox::MailboxId,
            ) -> Result<(u64, u64), $crate::MailboxError> {
                let (n, b): (i64, i64) = sqlx::query_as($crate::mailbox::sql::USAGE)
                    .bind(&mailbox.0[..])
                    .fetch_one(&self.read)
                    .await?;
                Ok(($crate::mailbox::to_u64(n), $crate::mailbox::to_u64(b)))
            }

            async fn record_transit(
                &self,
                packet_hash: &[u8; 32],
                now_ms: u64,
            ) -> Result<$crate::mailbox::TransitOutcome, $crate::MailboxError> {
                self.writer.record_transit(packet_hash, now_ms).await
            }

            async fn transit_seen(
                &self,
                packet_hash: &[u8; 32],
            ) -> Result<Option<u64>, $crate::MailboxError> {
                let r: Option<i64> = sqlx::query_scalar($crate::mailbox::sql::TRANSIT_SEEN)
                    .bind(&packet_hash[..])
                    .fetch_optional(&self.read)
                    .await?;
                Ok(r.map($crate::mailbox::to_u64))
            }
        }
    };
}
pub(crate) use impl_mailbox_backend;

pub(crate) fn build_page(rows: Vec<EnvelopeRow>, after: Cursor) -> Result<FetchPage, MailboxError> {
    let mut envelopes = Vec::with_capacity(rows.len());
    for (seq, id, payload, received, expires) in rows {
        envelopes.push(Envelope {
            seq: to_u64(seq),
            message_id: message_id(&id)?,
            payload,
            received_at_ms: to_u64(received),
            expires_at_ms: to_u64(expires),
        });
    }
    let next = envelopes.last().map(|e| Cursor(e.seq)).unwrap_or(after);
    Ok(FetchPage { envelopes, next })
}

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
