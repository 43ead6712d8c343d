//! SQLite mailbox backend: WAL journal, `synchronous = FULL`, one writer connection owned by
//! the group-commit task, a small pool of reader connections.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};

use super::writer::{self, NewRow, Sink, WriterHandle};
use super::{
    Limits, MailboxId, MessageId, WRITE_QUEUE_CAPACITY, mailbox_id, message_id, sql, to_u64,
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
        let (n, bytes): (i64, i64) = sqlx::query_as(sql::USAGE_ALL).fetch_one(&mut conn).await?;
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
    // IMMEDIATE: take the write lock at BEGIN, not at the first write.
    super::common_sink_methods!("BEGIN IMMEDIATE");

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
                b.push_bind(*seq);
                r.push_values(&mut b);
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
        let mut count = build(
            "SELECT count(*), CAST(coalesce(sum(size), 0) AS BIGINT) FROM mailbox_messages WHERE mailbox = ",
        );
        let (n, bytes): (i64, i64) = count.build_query_as().fetch_one(&mut self.conn).await?;
        if n > 0 {
            build("DELETE FROM mailbox_messages WHERE mailbox = ")
                .build()
                .execute(&mut self.conn)
                .await?;
        }
        Ok((to_u64(n), to_u64(bytes)))
    }

    async fn delete_up_to(
        &mut self,
        mailbox: &MailboxId,
        up_to: i64,
    ) -> Result<(u64, u64), MailboxError> {
        // Size first (one row back), then one DELETE (none back), as for `delete_ids`.
        let (n, bytes): (i64, i64) = sqlx::query_as(sql::USAGE_UP_TO)
            .bind(&mailbox.0[..])
            .bind(up_to)
            .fetch_one(&mut self.conn)
            .await?;
        if n > 0 {
            sqlx::query(sql::DELETE_UP_TO)
                .bind(&mailbox.0[..])
                .bind(up_to)
                .execute(&mut self.conn)
                .await?;
        }
        Ok((to_u64(n), to_u64(bytes)))
    }
}

super::impl_mailbox_backend!(SqliteMailbox);
