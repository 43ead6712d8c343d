//! SQLite mailbox backend: WAL journal, `synchronous = FULL`, one writer connection owned by
//! the group-commit task, a small pool of reader connections.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};

use super::writer::{self, NewRow, Op, OpResult, Sink, WriterHandle};
use super::{
    Cursor, EXPIRE_CHUNK, Envelope, Expired, FetchPage, Limits, MAX_ACK, MAX_PAYLOAD_LEN,
    MailboxBackend, MailboxId, MessageId, PutOutcome, TransitOutcome, WRITE_QUEUE_CAPACITY,
    check_fetch_limit, mailbox_id, message_id, to_i64, to_u64,
};
use crate::MailboxError;

/// The SQLite mailbox migrations (embedded from `migrations/mailbox_sqlite`).
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/mailbox_sqlite");

/// Rows per multi-row INSERT (6 values each).
const ROWS_PER_STATEMENT: usize = 256;
/// Reader connections.
const READERS: u32 = 4;

/// The SQLite mailbox.
#[derive(Debug)]
pub struct SqliteMailbox {
    writer: WriterHandle,
    task: tokio::task::JoinHandle<()>,
    read: SqlitePool,
    path: PathBuf,
}

fn options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: the WAL is fsynced at every commit, so an acknowledged put survives power loss,
        // not only a process kill (NORMAL would survive kill -9 but not power loss).
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .pragma("cache_size", "-65536")
        .pragma("mmap_size", "268435456")
}

impl SqliteMailbox {
    /// Opens (creating if missing) the mailbox database at `path` and starts its writer.
    pub async fn open(path: &Path, limits: Limits) -> Result<Self, MailboxError> {
        let mut conn = SqliteConnection::connect_with(&options(path)).await?;
        let has: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_one(&mut conn)
        .await?;
        if has == 1 {
            let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
                .fetch_all(&mut conn)
                .await?;
            crate::client::check_migrations(&SQLITE_MIGRATOR, &versions)
                .map_err(|(expected, found)| MailboxError::NewerSchema { expected, found })?;
        }
        SQLITE_MIGRATOR
            .run(&mut conn)
            .await
            .map_err(|e| MailboxError::Migrate(e.to_string()))?;
        let (n, bytes): (i64, i64) =
            sqlx::query_as("SELECT count(*), coalesce(sum(size), 0) FROM mailbox_messages")
                .fetch_one(&mut conn)
                .await?;
        let next_seq: i64 = sqlx::query_scalar(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'mailbox_messages'), 0), \
             coalesce((SELECT max(seq) FROM mailbox_messages), 0)) + 1",
        )
        .fetch_one(&mut conn)
        .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options(path))
            .await?;
        let (writer, task) = writer::spawn(
            SqliteSink { conn, next_seq },
            limits,
            (to_u64(n), to_u64(bytes)),
            WRITE_QUEUE_CAPACITY,
        );
        Ok(Self {
            writer,
            task,
            read,
            path: path.to_path_buf(),
        })
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the writer after it has finished queued requests, then closes the readers.
    pub async fn close(self) {
        drop(self.writer);
        let _ = self.task.await;
        self.read.close().await;
    }
}

struct SqliteSink {
    conn: SqliteConnection,
    /// Next arrival sequence number (the writer assigns them; AUTOINCREMENT semantics kept:
    /// never below anything used before, so a deleted seq is never reused).
    next_seq: i64,
}

impl Sink for SqliteSink {
    async fn begin(&mut self) -> Result<(), MailboxError> {
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    async fn commit(&mut self) -> Result<(), MailboxError> {
        sqlx::query("COMMIT").execute(&mut self.conn).await?;
        Ok(())
    }

    async fn rollback(&mut self) {
        let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
    }

    async fn load_usage(&mut self, mailbox: &MailboxId) -> Result<(u64, u64), MailboxError> {
        let (n, b): (i64, i64) = sqlx::query_as(
            "SELECT count(*), coalesce(sum(size), 0) FROM mailbox_messages WHERE mailbox = ?",
        )
        .bind(&mailbox.0[..])
        .fetch_one(&mut self.conn)
        .await?;
        Ok((to_u64(n), to_u64(b)))
    }

    async fn exists(&mut self, mailbox: &MailboxId, id: &MessageId) -> Result<bool, MailboxError> {
        let r: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM mailbox_messages WHERE mailbox = ? AND message_id = ?",
        )
        .bind(&mailbox.0[..])
        .bind(&id.0[..])
        .fetch_optional(&mut self.conn)
        .await?;
        Ok(r.is_some())
    }

    async fn insert_many(
        &mut self,
        rows: &[NewRow<'_>],
    ) -> Result<Vec<(MailboxId, MessageId, u64)>, MailboxError> {
        // Which (mailbox, id) pairs are queued already? Usually none: this returns no rows,
        // where `RETURNING` on the insert would stream every inserted row back through the
        // driver's channel.
        let mut existing = std::collections::HashSet::new();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "SELECT mailbox, message_id FROM mailbox_messages WHERE (mailbox, message_id) IN (",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(&r.mailbox.0[..]).push_bind(&r.id.0[..]);
            });
            qb.push(")");
            for row in qb.build().fetch_all(&mut self.conn).await? {
                let mb: Vec<u8> = row.try_get(0)?;
                let id: Vec<u8> = row.try_get(1)?;
                existing.insert((mailbox_id(&mb)?, message_id(&id)?));
            }
        }
        // The writer is the only inserter: it assigns arrival sequence numbers itself.
        let mut out = Vec::with_capacity(rows.len());
        let mut fresh = Vec::with_capacity(rows.len());
        for r in rows {
            if existing.insert((*r.mailbox, *r.id)) {
                let seq = self.next_seq;
                self.next_seq += 1;
                out.push((*r.mailbox, *r.id, to_u64(seq)));
                fresh.push((seq, r));
            }
        }
        for chunk in fresh.chunks(ROWS_PER_STATEMENT) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO mailbox_messages (seq, mailbox, message_id, payload, size, received_at, expires_at) ",
            );
            qb.push_values(chunk, |mut b, (seq, r)| {
                b.push_bind(*seq)
                    .push_bind(&r.mailbox.0[..])
                    .push_bind(&r.id.0[..])
                    .push_bind(r.payload)
                    .push_bind(i64::try_from(r.payload.len()).unwrap_or(i64::MAX))
                    .push_bind(r.received_at)
                    .push_bind(r.expires_at);
            });
            qb.build().execute(&mut self.conn).await?;
        }
        Ok(out)
    }

    async fn delete_ids(
        &mut self,
        mailbox: &MailboxId,
        ids: &[MessageId],
    ) -> Result<(u64, u64), MailboxError> {
        if ids.is_empty() {
            return Ok((0, 0));
        }
        // Count and size first (one row back), then delete (none back).
        let build = |head: &str| {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(head);
            qb.push_bind(&mailbox.0[..]).push(" AND message_id IN (");
            let mut sep = qb.separated(", ");
            for id in ids {
                sep.push_bind(&id.0[..]);
            }
            qb.push(")");
            qb
        };
        let mut count =
            build("SELECT count(*), coalesce(sum(size), 0) FROM mailbox_messages WHERE mailbox = ");
        let (n, bytes): (i64, i64) = count.build_query_as().fetch_one(&mut self.conn).await?;
        if n > 0 {
            build("DELETE FROM mailbox_messages WHERE mailbox = ")
                .build()
                .execute(&mut self.conn)
                .await?;
        }
        Ok((to_u64(n), to_u64(bytes)))
    }

    async fn delete_expired(&mut self, now_ms: i64) -> Result<Vec<(MailboxId, u64)>, MailboxError> {
        let rows: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "DELETE FROM mailbox_messages WHERE seq IN \
             (SELECT seq FROM mailbox_messages WHERE expires_at <= ? LIMIT ?) RETURNING mailbox, size",
        )
        .bind(now_ms)
        .bind(i64::try_from(EXPIRE_CHUNK).unwrap_or(i64::MAX))
        .fetch_all(&mut self.conn)
        .await?;
        rows.into_iter()
            .map(|(m, s)| Ok((mailbox_id(&m)?, to_u64(s))))
            .collect()
    }

    async fn insert_transit(&mut self, hash: &[u8; 32], now_ms: i64) -> Result<bool, MailboxError> {
        let r = sqlx::query("INSERT INTO transit_receipts (packet_hash, seen_at) VALUES (?, ?) ON CONFLICT (packet_hash) DO NOTHING")
            .bind(&hash[..])
            .bind(now_ms)
            .execute(&mut self.conn)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn prune_transit(&mut self, cutoff: i64, max: u64) -> Result<u64, MailboxError> {
        let old = sqlx::query("DELETE FROM transit_receipts WHERE seen_at < ?")
            .bind(cutoff)
            .execute(&mut self.conn)
            .await?;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM transit_receipts")
            .fetch_one(&mut self.conn)
            .await?;
        let excess = to_u64(count).saturating_sub(max);
        let mut extra = 0;
        if excess > 0 {
            extra = sqlx::query(
                "DELETE FROM transit_receipts WHERE packet_hash IN \
                 (SELECT packet_hash FROM transit_receipts ORDER BY seen_at LIMIT ?)",
            )
            .bind(to_i64(excess))
            .execute(&mut self.conn)
            .await?
            .rows_affected();
        }
        Ok(old.rows_affected() + extra)
    }
}

fn unexpected() -> MailboxError {
    MailboxError::Database(sqlx::Error::Protocol(
        "writer answered with the wrong result kind".into(),
    ))
}

impl MailboxBackend for SqliteMailbox {
    async fn put(
        &self,
        mailbox: &MailboxId,
        id: &MessageId,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<PutOutcome, MailboxError> {
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(MailboxError::PayloadTooLarge {
                max: MAX_PAYLOAD_LEN,
                found: payload.len(),
            });
        }
        match self
            .writer
            .call(Op::Put {
                mailbox: *mailbox,
                id: *id,
                payload: payload.to_vec(),
                now_ms,
            })
            .await?
        {
            OpResult::Put(p) => Ok(p),
            _ => Err(unexpected()),
        }
    }

    async fn fetch(
        &self,
        mailbox: &MailboxId,
        after: Cursor,
        limit: usize,
        now_ms: u64,
    ) -> Result<FetchPage, MailboxError> {
        let lim = check_fetch_limit(limit)?;
        let rows: Vec<super::EnvelopeRow> = sqlx::query_as(
            "SELECT seq, message_id, payload, received_at, expires_at FROM mailbox_messages \
             WHERE mailbox = ? AND seq > ? AND expires_at > ? ORDER BY seq LIMIT ?",
        )
        .bind(&mailbox.0[..])
        .bind(to_i64(after.0))
        .bind(to_i64(now_ms))
        .bind(lim)
        .fetch_all(&self.read)
        .await?;
        build_page(rows, after)
    }

    async fn ack(&self, mailbox: &MailboxId, ids: &[MessageId]) -> Result<u64, MailboxError> {
        check_ack(ids)?;
        match self
            .writer
            .call(Op::Ack {
                mailbox: *mailbox,
                ids: ids.to_vec(),
            })
            .await?
        {
            OpResult::Acked(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }

    async fn expire(&self, now_ms: u64) -> Result<Expired, MailboxError> {
        match self.writer.call(Op::Expire { now_ms }).await? {
            OpResult::Expired(e) => Ok(e),
            _ => Err(unexpected()),
        }
    }

    async fn usage(&self, mailbox: &MailboxId) -> Result<(u64, u64), MailboxError> {
        let (n, b): (i64, i64) = sqlx::query_as(
            "SELECT count(*), coalesce(sum(size), 0) FROM mailbox_messages WHERE mailbox = ?",
        )
        .bind(&mailbox.0[..])
        .fetch_one(&self.read)
        .await?;
        Ok((to_u64(n), to_u64(b)))
    }

    async fn record_transit(
        &self,
        packet_hash: &[u8; 32],
        now_ms: u64,
    ) -> Result<TransitOutcome, MailboxError> {
        match self
            .writer
            .call(Op::Transit {
                hash: *packet_hash,
                now_ms,
            })
            .await?
        {
            OpResult::Transit(t) => Ok(t),
            _ => Err(unexpected()),
        }
    }

    async fn transit_seen(&self, packet_hash: &[u8; 32]) -> Result<Option<u64>, MailboxError> {
        let r: Option<i64> =
            sqlx::query_scalar("SELECT seen_at FROM transit_receipts WHERE packet_hash = ?")
                .bind(&packet_hash[..])
                .fetch_optional(&self.read)
                .await?;
        Ok(r.map(to_u64))
    }
}

pub(crate) fn check_ack(ids: &[MessageId]) -> Result<(), MailboxError> {
    if ids.len() > MAX_ACK {
        return Err(MailboxError::LimitTooLarge {
            what: "ack ids",
            max: MAX_ACK,
            found: ids.len(),
        });
    }
    Ok(())
}

pub(crate) fn build_page(
    rows: Vec<super::EnvelopeRow>,
    after: Cursor,
) -> Result<FetchPage, MailboxError> {
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
