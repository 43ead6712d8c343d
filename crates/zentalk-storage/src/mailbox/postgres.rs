//! PostgreSQL mailbox backend: the same group-commit writer over one connection with
//! `synchronous_commit = on` (a commit returns after its WAL record is flushed), plus a pool of
//! reader connections. One writer process per database: the usage cache that enforces quotas
//! assumes no other process mutates the tables.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, Postgres};
use sqlx::{Connection, QueryBuilder, Row};

use super::sqlite::{build_page, check_ack};
use super::writer::{self, NewRow, Op, OpResult, Sink, WriterHandle};
use super::{
    Cursor, EXPIRE_CHUNK, Expired, FetchPage, Limits, MAX_PAYLOAD_LEN, MailboxBackend, MailboxId,
    MessageId, PutOutcome, TransitOutcome, WRITE_QUEUE_CAPACITY, check_fetch_limit, mailbox_id,
    message_id, to_i64, to_u64,
};
use crate::MailboxError;

/// The PostgreSQL mailbox migrations (embedded from `migrations/mailbox_postgres`).
pub static POSTGRES_MIGRATOR: sqlx::migrate::Migrator =
    sqlx::migrate!("./migrations/mailbox_postgres");

const ROWS_PER_STATEMENT: usize = 1000;
const READERS: u32 = 4;
/// SQLSTATE of "undefined table".
const UNDEFINED_TABLE: &str = "42P01";

/// The PostgreSQL mailbox.
#[derive(Debug)]
pub struct PostgresMailbox {
    writer: WriterHandle,
    task: tokio::task::JoinHandle<()>,
    read: PgPool,
}

impl PostgresMailbox {
    /// Connects to `url` (`postgres://user@host:port/db`), applies migrations and starts the
    /// writer.
    pub async fn open(url: &str, limits: Limits) -> Result<Self, MailboxError> {
        Self::open_with(PgConnectOptions::from_str(url)?, limits).await
    }

    /// Like [`Self::open`] with explicit connection options (e.g. a `search_path` to keep
    /// several mailboxes in one database, as the tests do).
    pub async fn open_with(
        options: PgConnectOptions,
        limits: Limits,
    ) -> Result<Self, MailboxError> {
        let options = options.options([("synchronous_commit", "on")]);
        let mut conn = PgConnection::connect_with(&options).await?;
        match sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations")
            .fetch_all(&mut conn)
            .await
        {
            Ok(versions) => crate::client::check_migrations(&POSTGRES_MIGRATOR, &versions)
                .map_err(|(expected, found)| MailboxError::NewerSchema { expected, found })?,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNDEFINED_TABLE) => {}
            Err(e) => return Err(e.into()),
        }
        POSTGRES_MIGRATOR
            .run(&mut conn)
            .await
            .map_err(|e| MailboxError::Migrate(e.to_string()))?;
        let (n, bytes): (i64, i64) =
            sqlx::query_as("SELECT count(*), coalesce(sum(size), 0)::BIGINT FROM mailbox_messages")
                .fetch_one(&mut conn)
                .await?;
        let read = PgPoolOptions::new()
            .max_connections(READERS)
            .connect_with(options)
            .await?;
        let (writer, task) = writer::spawn(
            PgSink { conn },
            limits,
            (to_u64(n), to_u64(bytes)),
            WRITE_QUEUE_CAPACITY,
        );
        Ok(Self { writer, task, read })
    }

    /// Stops the writer after it has finished queued requests, then closes the readers.
    pub async fn close(self) {
        drop(self.writer);
        let _ = self.task.await;
        self.read.close().await;
    }
}

struct PgSink {
    conn: PgConnection,
}

impl Sink for PgSink {
    async fn begin(&mut self) -> Result<(), MailboxError> {
        sqlx::query("BEGIN").execute(&mut self.conn).await?;
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
        let (n, b): (i64, i64) =
            sqlx::query_as("SELECT count(*), coalesce(sum(size), 0)::BIGINT FROM mailbox_messages WHERE mailbox = $1")
                .bind(&mailbox.0[..])
                .fetch_one(&mut self.conn)
                .await?;
        Ok((to_u64(n), to_u64(b)))
    }

    async fn exists(&mut self, mailbox: &MailboxId, id: &MessageId) -> Result<bool, MailboxError> {
        let r: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM mailbox_messages WHERE mailbox = $1 AND message_id = $2",
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
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
                "INSERT INTO mailbox_messages (mailbox, message_id, payload, size, received_at, expires_at) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(&r.mailbox.0[..])
                    .push_bind(&r.id.0[..])
                    .push_bind(r.payload)
                    .push_bind(i64::try_from(r.payload.len()).unwrap_or(i64::MAX))
                    .push_bind(r.received_at)
                    .push_bind(r.expires_at);
            });
            qb.push(
                " ON CONFLICT (mailbox, message_id) DO NOTHING RETURNING mailbox, message_id, seq",
            );
            let got = qb.build().fetch_all(&mut self.conn).await?;
            for row in got {
                let mb: Vec<u8> = row.try_get(0)?;
                let id: Vec<u8> = row.try_get(1)?;
                out.push((mailbox_id(&mb)?, message_id(&id)?, to_u64(row.try_get(2)?)));
            }
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
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new("DELETE FROM mailbox_messages WHERE mailbox = ");
        qb.push_bind(&mailbox.0[..]).push(" AND message_id IN (");
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(&id.0[..]);
        }
        qb.push(") RETURNING size");
        let sizes: Vec<i64> = qb.build_query_scalar().fetch_all(&mut self.conn).await?;
        let n = u64::try_from(sizes.len()).unwrap_or(u64::MAX);
        Ok((n, sizes.into_iter().map(to_u64).sum()))
    }

    async fn delete_expired(&mut self, now_ms: i64) -> Result<Vec<(MailboxId, u64)>, MailboxError> {
        let rows: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "DELETE FROM mailbox_messages WHERE seq IN \
             (SELECT seq FROM mailbox_messages WHERE expires_at <= $1 LIMIT $2) RETURNING mailbox, size",
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
        let r = sqlx::query(
            "INSERT INTO transit_receipts (packet_hash, seen_at) VALUES ($1, $2) ON CONFLICT (packet_hash) DO NOTHING",
        )
        .bind(&hash[..])
        .bind(now_ms)
        .execute(&mut self.conn)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn prune_transit(&mut self, cutoff: i64, max: u64) -> Result<u64, MailboxError> {
        let old = sqlx::query("DELETE FROM transit_receipts WHERE seen_at < $1")
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
                 (SELECT packet_hash FROM transit_receipts ORDER BY seen_at LIMIT $1)",
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

impl MailboxBackend for PostgresMailbox {
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
             WHERE mailbox = $1 AND seq > $2 AND expires_at > $3 ORDER BY seq LIMIT $4",
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
        let (n, b): (i64, i64) =
            sqlx::query_as("SELECT count(*), coalesce(sum(size), 0)::BIGINT FROM mailbox_messages WHERE mailbox = $1")
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
            sqlx::query_scalar("SELECT seen_at FROM transit_receipts WHERE packet_hash = $1")
                .bind(&packet_hash[..])
                .fetch_optional(&self.read)
                .await?;
        Ok(r.map(to_u64))
    }
}
