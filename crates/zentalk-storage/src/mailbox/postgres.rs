//! PostgreSQL mailbox backend: the same group-commit writer over one connection with
//! `synchronous_commit = on` (a commit returns after its WAL record is flushed), plus a pool of
//! reader connections. One writer process per database: the usage cache that enforces quotas
//! assumes no other process mutates the tables.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, Postgres};
use sqlx::{Connection, QueryBuilder, Row};

use super::writer::{self, NewRow, Sink, WriterHandle};
use super::{
    Limits, MailboxId, MessageId, WRITE_QUEUE_CAPACITY, mailbox_id, message_id, sql, to_u64,
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
        let (n, bytes): (i64, i64) = sqlx::query_as(sql::USAGE_ALL).fetch_one(&mut conn).await?;
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
    super::common_sink_methods!("BEGIN");

    async fn insert_many(
        &mut self,
        rows: &[NewRow<'_>],
    ) -> Result<Vec<(MailboxId, MessageId, u64)>, MailboxError> {
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
                "INSERT INTO mailbox_messages (mailbox, message_id, payload, size, received_at, expires_at) ",
            );
            qb.push_values(chunk, |mut b, r| r.push_values(&mut b));
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

    async fn delete_up_to(
        &mut self,
        mailbox: &MailboxId,
        up_to: i64,
    ) -> Result<(u64, u64), MailboxError> {
        // One statement: the DELETE, sized by the query around it (one row back).
        let (n, bytes): (i64, i64) = sqlx::query_as(
            "WITH gone AS (DELETE FROM mailbox_messages WHERE mailbox = $1 AND seq <= $2 RETURNING size) \
             SELECT count(*), CAST(coalesce(sum(size), 0) AS BIGINT) FROM gone",
        )
        .bind(&mailbox.0[..])
        .bind(up_to)
        .fetch_one(&mut self.conn)
        .await?;
        Ok((to_u64(n), to_u64(bytes)))
    }
}

super::impl_mailbox_backend!(PostgresMailbox);
