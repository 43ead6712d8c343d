//! One test-suite, run against both mailbox backends: every `suite_*` body below runs on
//! SQLite and on PostgreSQL. The PostgreSQL runs need `ZENTALK_TEST_POSTGRES_URL` (see
//! `scripts/pg-test-server.sh`); without it they print that they were skipped, and why.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(
    clippy::disallowed_methods,
    reason = "L2 tests: wall clock for seeds, timing and unique names"
)]

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use sqlx::postgres::PgConnectOptions;
use zentalk_storage::mailbox::{
    Cursor, Limits, MAX_ACK, MAX_FETCH, MAX_PAYLOAD_LEN, Mailbox, MailboxBackend, MailboxId,
    MessageId, PostgresMailbox, PutOutcome, SqliteMailbox, TransitOutcome,
};
use zentalk_storage::{MailboxError, QuotaKind, QuotaScope};

const PG_ENV: &str = "ZENTALK_TEST_POSTGRES_URL";
const T0: u64 = 1_700_000_000_000;

fn mb(n: u8) -> MailboxId {
    MailboxId([n; 32])
}

fn id(n: u32) -> MessageId {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&n.to_be_bytes());
    MessageId(b)
}

async fn with_sqlite<F, Fut>(limits: Limits, body: F)
where
    F: FnOnce(Arc<Mailbox>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("mailbox.db").display());
    let m = Arc::new(Mailbox::open(&url, limits).await.unwrap());
    body(m.clone()).await;
    Arc::try_unwrap(m).unwrap().close().await;
}

/// A fresh schema per test keeps PostgreSQL runs independent of each other.
async fn pg_schema(url: &str) -> String {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let mut b = [0u8; 8];
    getrandom_fill(&mut b);
    let name = format!("zt_test_{}", hex(&b));
    sqlx::query(&format!("CREATE SCHEMA {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    name
}

fn getrandom_fill(b: &mut [u8]) {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ u64::from(std::process::id()) << 32;
    rand_chacha::ChaCha20Rng::seed_from_u64(seed ^ (b.as_ptr() as u64)).fill_bytes(b);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Says so on stderr directly: the test harness captures `println!` of passing tests, not a
/// plain write to the stderr handle, so the skip is visible in every `cargo test` run.
fn skipped(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

async fn with_postgres<F, Fut>(test: &str, limits: Limits, body: F)
where
    F: FnOnce(Arc<Mailbox>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Ok(url) = std::env::var(PG_ENV) else {
        skipped(&format!(
            "SKIPPED {test} on PostgreSQL: {PG_ENV} is not set (start a server with \
             `eval \"$(scripts/pg-test-server.sh start)\"` to run it)"
        ));
        return;
    };
    let schema = pg_schema(&url).await;
    let opts = PgConnectOptions::from_str(&url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    let m = Arc::new(Mailbox::Postgres(
        PostgresMailbox::open_with(opts, limits).await.unwrap(),
    ));
    body(m.clone()).await;
    Arc::try_unwrap(m).unwrap().close().await;
}

macro_rules! both_backends {
    ($($name:ident => $suite:ident($limits:expr);)*) => {
        mod sqlite_backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    with_sqlite($limits, |m| async move { $suite(&*m).await }).await;
                }
            )*
        }
        mod postgres_backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    with_postgres(stringify!($name), $limits, |m| async move { $suite(&*m).await }).await;
                }
            )*
        }
    };
}

both_backends! {
    put_fetch_ack_in_arrival_order => suite_put_fetch_ack(Limits::default());
    put_is_idempotent => suite_idempotent(Limits::default());
    mailboxes_are_isolated => suite_isolation(Limits::default());
    mailbox_quota_messages => suite_mailbox_quota(Limits { mailbox_messages: 3, ..Limits::default() });
    mailbox_quota_bytes => suite_mailbox_bytes(Limits { mailbox_bytes: 100, ..Limits::default() });
    global_quota => suite_global_quota(Limits { global_messages: 4, ..Limits::default() });
    ttl_expiry => suite_ttl(Limits { ttl_ms: 1000, ..Limits::default() });
    transit_receipts => suite_transit(Limits { transit_retention_ms: 1000, max_transit_receipts: 3, ..Limits::default() });
    limits_are_typed_errors => suite_limits(Limits::default());
    concurrent_puts_group_commit => suite_concurrent(Limits::default());
    ack_up_to_a_cursor => suite_ack_up_to(Limits::default());
    ack_up_to_frees_quota => suite_ack_up_to_quota(Limits { mailbox_messages: 4, ..Limits::default() });
}

async fn suite_put_fetch_ack(m: &Mailbox) {
    let a = mb(1);
    let mut seqs = Vec::new();
    for i in 0..10 {
        match m
            .put(
                &a,
                &id(i),
                format!("payload {i}").as_bytes(),
                T0 + u64::from(i),
            )
            .await
            .unwrap()
        {
            PutOutcome::Stored { seq } => seqs.push(seq),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "arrival order: {seqs:?}"
    );
    let p1 = m.fetch(&a, Cursor::START, 4, T0).await.unwrap();
    assert_eq!(p1.envelopes.len(), 4);
    assert_eq!(p1.envelopes[0].message_id, id(0));
    assert_eq!(p1.envelopes[0].payload, b"payload 0");
    assert_eq!(p1.envelopes[0].received_at_ms, T0);
    assert_eq!(p1.envelopes[0].expires_at_ms, T0 + Limits::default().ttl_ms);
    let p2 = m.fetch(&a, p1.next, 100, T0).await.unwrap();
    assert_eq!(
        p2.envelopes
            .iter()
            .map(|e| e.message_id)
            .collect::<Vec<_>>(),
        (4..10).map(id).collect::<Vec<_>>()
    );
    let p3 = m.fetch(&a, p2.next, 100, T0).await.unwrap();
    assert!(p3.envelopes.is_empty());
    assert_eq!(p3.next, p2.next);
    assert_eq!(m.usage(&a).await.unwrap(), (10, 10 * 9));
    // Ack a few (one unknown id among them).
    assert_eq!(m.ack(&a, &[id(0), id(1), id(99)]).await.unwrap(), 2);
    assert_eq!(m.ack(&a, &[id(0)]).await.unwrap(), 0);
    let all = m.fetch(&a, Cursor::START, 100, T0).await.unwrap();
    assert_eq!(all.envelopes.len(), 8);
    assert_eq!(all.envelopes[0].message_id, id(2));
    assert_eq!(m.usage(&a).await.unwrap(), (8, 8 * 9));
    assert_eq!(m.ack(&a, &[]).await.unwrap(), 0);
}

async fn suite_idempotent(m: &Mailbox) {
    let a = mb(2);
    let first = m.put(&a, &id(7), b"x", T0).await.unwrap();
    assert!(matches!(first, PutOutcome::Stored { .. }));
    assert_eq!(
        m.put(&a, &id(7), b"x", T0 + 5).await.unwrap(),
        PutOutcome::Duplicate
    );
    assert_eq!(
        m.put(&a, &id(7), b"different", T0 + 5).await.unwrap(),
        PutOutcome::Duplicate
    );
    // Same id concurrently, many times: exactly one is stored.
    let eight = id(8);
    let mut handles = Vec::new();
    for _ in 0..20 {
        handles.push(m.put(&a, &eight, b"y", T0));
    }
    let outcomes = futures_join(handles).await;
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Ok(PutOutcome::Stored { .. })))
            .count(),
        1
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Ok(PutOutcome::Duplicate)))
            .count(),
        19
    );
    let page = m.fetch(&a, Cursor::START, 10, T0).await.unwrap();
    assert_eq!(page.envelopes.len(), 2);
    assert_eq!(page.envelopes[0].payload, b"x");
    assert_eq!(m.usage(&a).await.unwrap(), (2, 2));
}

async fn futures_join<F: Future>(fs: Vec<F>) -> Vec<F::Output> {
    // Poll all futures concurrently on this task (they only await the writer).
    let mut out = Vec::with_capacity(fs.len());
    let mut pinned: Vec<_> = fs.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    for r in results {
        out.push(r.unwrap());
    }
    out
}

async fn suite_isolation(m: &Mailbox) {
    let (a, b) = (mb(3), mb(4));
    m.put(&a, &id(1), b"for a", T0).await.unwrap();
    m.put(&b, &id(1), b"for b", T0).await.unwrap();
    let pa = m.fetch(&a, Cursor::START, 10, T0).await.unwrap();
    let pb = m.fetch(&b, Cursor::START, 10, T0).await.unwrap();
    assert_eq!(pa.envelopes.len(), 1);
    assert_eq!(pa.envelopes[0].payload, b"for a");
    assert_eq!(pb.envelopes[0].payload, b"for b");
    // Acking in b deletes only b's copy.
    assert_eq!(m.ack(&b, &[id(1)]).await.unwrap(), 1);
    assert_eq!(
        m.fetch(&a, Cursor::START, 10, T0)
            .await
            .unwrap()
            .envelopes
            .len(),
        1
    );
    assert!(
        m.fetch(&b, Cursor::START, 10, T0)
            .await
            .unwrap()
            .envelopes
            .is_empty()
    );
    assert!(
        m.fetch(&mb(5), Cursor::START, 10, T0)
            .await
            .unwrap()
            .envelopes
            .is_empty()
    );
}

async fn suite_mailbox_quota(m: &Mailbox) {
    let a = mb(6);
    for i in 0..3 {
        m.put(&a, &id(i), b"m", T0).await.unwrap();
    }
    match m.put(&a, &id(3), b"m", T0).await {
        Err(MailboxError::Full {
            scope: QuotaScope::Mailbox,
            kind: QuotaKind::Messages,
            limit: 3,
            current: 3,
        }) => {}
        other => panic!("expected Full, got {other:?}"),
    }
    // A retry of a queued message is still a duplicate, not Full.
    assert_eq!(
        m.put(&a, &id(2), b"m", T0).await.unwrap(),
        PutOutcome::Duplicate
    );
    // Another mailbox is unaffected.
    assert!(matches!(
        m.put(&mb(7), &id(3), b"m", T0).await.unwrap(),
        PutOutcome::Stored { .. }
    ));
    // Ack frees space.
    assert_eq!(m.ack(&a, &[id(0)]).await.unwrap(), 1);
    assert!(matches!(
        m.put(&a, &id(3), b"m", T0).await.unwrap(),
        PutOutcome::Stored { .. }
    ));
    assert!(matches!(
        m.put(&a, &id(4), b"m", T0).await,
        Err(MailboxError::Full { .. })
    ));
    assert_eq!(m.usage(&a).await.unwrap(), (3, 3));
}

async fn suite_mailbox_bytes(m: &Mailbox) {
    let a = mb(8);
    m.put(&a, &id(0), &[0u8; 60], T0).await.unwrap();
    match m.put(&a, &id(1), &[0u8; 41], T0).await {
        Err(MailboxError::Full {
            scope: QuotaScope::Mailbox,
            kind: QuotaKind::Bytes,
            limit: 100,
            current: 60,
        }) => {}
        other => panic!("expected Full(bytes), got {other:?}"),
    }
    assert!(matches!(
        m.put(&a, &id(1), &[0u8; 40], T0).await.unwrap(),
        PutOutcome::Stored { .. }
    ));
}

async fn suite_global_quota(m: &Mailbox) {
    for i in 0..4u8 {
        m.put(&mb(10 + i), &id(0), b"g", T0).await.unwrap();
    }
    match m.put(&mb(20), &id(0), b"g", T0).await {
        Err(MailboxError::Full {
            scope: QuotaScope::Global,
            kind: QuotaKind::Messages,
            limit: 4,
            current: 4,
        }) => {}
        other => panic!("expected global Full, got {other:?}"),
    }
    m.ack(&mb(10), &[id(0)]).await.unwrap();
    assert!(matches!(
        m.put(&mb(20), &id(0), b"g", T0).await.unwrap(),
        PutOutcome::Stored { .. }
    ));
}

async fn suite_ttl(m: &Mailbox) {
    let a = mb(30);
    m.put(&a, &id(0), b"old", T0).await.unwrap();
    m.put(&a, &id(1), b"new", T0 + 600).await.unwrap();
    assert_eq!(
        m.fetch(&a, Cursor::START, 10, T0 + 999)
            .await
            .unwrap()
            .envelopes
            .len(),
        2
    );
    // At T0 + 1000 the first has expired: never served, even before it is deleted.
    let p = m.fetch(&a, Cursor::START, 10, T0 + 1000).await.unwrap();
    assert_eq!(p.envelopes.len(), 1);
    assert_eq!(p.envelopes[0].message_id, id(1));
    let e = m.expire(T0 + 1000).await.unwrap();
    assert_eq!(e.messages, 1);
    assert_eq!(m.usage(&a).await.unwrap(), (1, 3));
    assert_eq!(m.expire(T0 + 1000).await.unwrap().messages, 0);
    assert_eq!(m.expire(T0 + 1600).await.unwrap().messages, 1);
    assert_eq!(m.usage(&a).await.unwrap(), (0, 0));
    // After expiry the id may be queued again.
    assert!(matches!(
        m.put(&a, &id(0), b"again", T0 + 2000).await.unwrap(),
        PutOutcome::Stored { .. }
    ));
}

async fn suite_transit(m: &Mailbox) {
    let h = |n: u8| [n; 32];
    assert_eq!(
        m.record_transit(&h(1), T0).await.unwrap(),
        TransitOutcome::Recorded
    );
    assert_eq!(
        m.record_transit(&h(1), T0 + 1).await.unwrap(),
        TransitOutcome::AlreadySeen
    );
    assert_eq!(m.transit_seen(&h(1)).await.unwrap(), Some(T0));
    assert_eq!(m.transit_seen(&h(2)).await.unwrap(), None);
    for n in 2..=4 {
        m.record_transit(&h(n), T0 + 500 + u64::from(n))
            .await
            .unwrap();
    }
    // Retention 1000 ms: h(1) (T0) is past it at T0 + 1001; the cap of 3 keeps the rest.
    let e = m.expire(T0 + 1001).await.unwrap();
    assert_eq!(e.receipts, 1);
    assert_eq!(m.transit_seen(&h(1)).await.unwrap(), None);
    m.record_transit(&h(5), T0 + 1002).await.unwrap();
    // Four receipts, cap 3: the oldest (h(2)) goes.
    let e = m.expire(T0 + 1003).await.unwrap();
    assert_eq!(e.receipts, 1);
    assert_eq!(m.transit_seen(&h(2)).await.unwrap(), None);
    assert_eq!(m.transit_seen(&h(5)).await.unwrap(), Some(T0 + 1002));
}

async fn suite_limits(m: &Mailbox) {
    let a = mb(40);
    match m.put(&a, &id(0), &vec![0u8; MAX_PAYLOAD_LEN + 1], T0).await {
        Err(MailboxError::PayloadTooLarge { max, found }) => {
            assert_eq!((max, found), (MAX_PAYLOAD_LEN, MAX_PAYLOAD_LEN + 1))
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert!(matches!(
        m.put(&a, &id(0), &vec![0u8; MAX_PAYLOAD_LEN], T0)
            .await
            .unwrap(),
        PutOutcome::Stored { .. }
    ));
    assert!(matches!(
        m.fetch(&a, Cursor::START, MAX_FETCH + 1, T0).await,
        Err(MailboxError::LimitTooLarge {
            what: "fetch limit",
            ..
        })
    ));
    let ids: Vec<_> = (0..=MAX_ACK as u32).map(id).collect();
    assert!(matches!(
        m.ack(&a, &ids).await,
        Err(MailboxError::LimitTooLarge {
            what: "ack ids",
            ..
        })
    ));
    assert_eq!(m.usage(&a).await.unwrap(), (1, MAX_PAYLOAD_LEN as u64));
}

async fn suite_concurrent(m: &Mailbox) {
    let a = mb(50);
    let ids: Vec<MessageId> = (0..600u32).map(id).collect();
    let payloads: Vec<[u8; 4]> = (0..600u32).map(|i| i.to_be_bytes()).collect();
    let futs: Vec<_> = ids
        .iter()
        .zip(&payloads)
        .map(|(i, p)| m.put(&a, i, p, T0))
        .collect();
    let outcomes = futures_join(futs).await;
    let mut seqs: Vec<u64> = outcomes
        .into_iter()
        .map(|o| match o.unwrap() {
            PutOutcome::Stored { seq } => seq,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 600);
    let mut cursor = Cursor::START;
    let mut seen = 0;
    loop {
        let p = m.fetch(&a, cursor, 250, T0).await.unwrap();
        if p.envelopes.is_empty() {
            break;
        }
        assert!(p.envelopes.windows(2).all(|w| w[0].seq < w[1].seq));
        seen += p.envelopes.len();
        let ids: Vec<_> = p.envelopes.iter().map(|e| e.message_id).collect();
        for chunk in ids.chunks(MAX_ACK) {
            m.ack(&a, chunk).await.unwrap();
        }
        cursor = p.next;
    }
    assert_eq!(seen, 600);
    assert_eq!(m.usage(&a).await.unwrap(), (0, 0));
}

// ---- Backend-specific: opening, URLs and bad files (SQLite), schema versions (both). ----

#[tokio::test]
async fn unsupported_urls_are_typed_errors() {
    for url in ["mysql://x", "", "sqlite://", "file:/tmp/x"] {
        assert!(
            matches!(
                Mailbox::open(url, Limits::default()).await,
                Err(MailboxError::UnsupportedUrl(_))
            ),
            "{url}"
        );
    }
}

#[tokio::test]
async fn sqlite_corrupt_file_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.db");
    std::fs::write(&p, vec![0x5au8; 8192]).unwrap();
    match SqliteMailbox::open(&p, Limits::default()).await {
        Err(MailboxError::Corrupt { .. }) => {}
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&p).unwrap(),
        vec![0x5au8; 8192],
        "nothing written"
    );
}

#[tokio::test]
async fn sqlite_newer_migration_is_refused() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.db");
    SqliteMailbox::open(&p, Limits::default())
        .await
        .unwrap()
        .close()
        .await;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", p.display()))
        .await
        .unwrap();
    sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99990101000000, 'future', 1, x'00', 0)")
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    match SqliteMailbox::open(&p, Limits::default()).await {
        Err(MailboxError::NewerSchema {
            found: 99990101000000,
            ..
        }) => {}
        other => panic!("expected NewerSchema, got {other:?}"),
    }
}

#[tokio::test]
async fn postgres_newer_migration_is_refused() {
    let Ok(url) = std::env::var(PG_ENV) else {
        skipped(&format!(
            "SKIPPED postgres_newer_migration_is_refused: {PG_ENV} is not set"
        ));
        return;
    };
    let schema = pg_schema(&url).await;
    let opts = || {
        PgConnectOptions::from_str(&url)
            .unwrap()
            .options([("search_path", schema.as_str())])
    };
    PostgresMailbox::open_with(opts(), Limits::default())
        .await
        .unwrap()
        .close()
        .await;
    {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect_with(&opts()).await.unwrap();
        sqlx::query("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99990101000000, 'future', true, '\\x00', 0)")
            .execute(&mut c)
            .await
            .unwrap();
    }
    match PostgresMailbox::open_with(opts(), Limits::default()).await {
        Err(MailboxError::NewerSchema {
            found: 99990101000000,
            ..
        }) => {}
        other => panic!("expected NewerSchema, got {other:?}"),
    }
}

#[tokio::test]
async fn sqlite_data_survives_reopen_and_usage_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.db");
    let limits = Limits {
        global_messages: 2,
        ..Limits::default()
    };
    let m = SqliteMailbox::open(&p, limits).await.unwrap();
    m.put(&mb(1), &id(1), b"a", T0).await.unwrap();
    m.put(&mb(2), &id(1), b"b", T0).await.unwrap();
    m.close().await;
    let m = SqliteMailbox::open(&p, limits).await.unwrap();
    assert!(matches!(
        m.put(&mb(3), &id(1), b"c", T0).await,
        Err(MailboxError::Full {
            scope: QuotaScope::Global,
            ..
        })
    ));
    assert_eq!(
        m.fetch(&mb(1), Cursor::START, 10, T0)
            .await
            .unwrap()
            .envelopes[0]
            .payload,
        b"a"
    );
    // Ack everything, reopen: a new message gets a sequence number never used before.
    let last = m
        .fetch(&mb(2), Cursor::START, 10, T0)
        .await
        .unwrap()
        .envelopes[0]
        .seq;
    assert_eq!(m.ack(&mb(1), &[id(1)]).await.unwrap(), 1);
    assert_eq!(m.ack(&mb(2), &[id(1)]).await.unwrap(), 1);
    m.close().await;
    let m = SqliteMailbox::open(&p, limits).await.unwrap();
    match m.put(&mb(3), &id(1), b"c", T0).await.unwrap() {
        PutOutcome::Stored { seq } => assert!(seq > last, "seq {seq} reused (last {last})"),
        other => panic!("unexpected {other:?}"),
    }
    m.close().await;
}

async fn suite_ack_up_to(m: &Mailbox) {
    let (a, b) = (mb(30), mb(31));
    // Interleaved puts: a's and b's seqs alternate, so a seq range of `a` spans `b`'s too.
    for i in 0..10u32 {
        m.put(&a, &id(i), b"aaaa", T0).await.unwrap();
        m.put(&b, &id(i), b"bb", T0).await.unwrap();
    }
    let p = m.fetch(&a, Cursor::START, 4, T0).await.unwrap();
    assert_eq!(p.envelopes.len(), 4);
    // Acknowledges exactly the fetched page (and nothing of b, whose seqs lie in that range).
    assert_eq!(m.ack_up_to(&a, p.next).await.unwrap(), 4);
    assert_eq!(m.usage(&a).await.unwrap(), (6, 6 * 4));
    assert_eq!(m.usage(&b).await.unwrap(), (10, 10 * 2));
    let rest = m.fetch(&a, Cursor::START, 100, T0).await.unwrap();
    assert_eq!(
        rest.envelopes
            .iter()
            .map(|e| e.message_id)
            .collect::<Vec<_>>(),
        (4..10).map(id).collect::<Vec<_>>()
    );
    // Repeating it, or a cursor before everything, deletes nothing.
    assert_eq!(m.ack_up_to(&a, p.next).await.unwrap(), 0);
    assert_eq!(m.ack_up_to(&a, Cursor::START).await.unwrap(), 0);
    // An unknown mailbox: nothing.
    assert_eq!(m.ack_up_to(&mb(32), Cursor(u64::MAX)).await.unwrap(), 0);
    // A seq in the middle of the rest: up to and including it.
    let mid = rest.envelopes[2].seq;
    assert_eq!(m.ack_up_to(&a, Cursor(mid)).await.unwrap(), 3);
    let left = m.fetch(&a, Cursor::START, 100, T0).await.unwrap();
    assert_eq!(left.envelopes.len(), 3);
    assert!(left.envelopes.iter().all(|e| e.seq > mid));
    // Everything, with the largest cursor; b still untouched.
    assert_eq!(m.ack_up_to(&a, Cursor(u64::MAX)).await.unwrap(), 3);
    assert_eq!(m.usage(&a).await.unwrap(), (0, 0));
    assert_eq!(m.usage(&b).await.unwrap(), (10, 10 * 2));
    // A put after a full ack_up_to is stored and fetched normally.
    assert!(matches!(
        m.put(&a, &id(0), b"again", T0).await.unwrap(),
        PutOutcome::Stored { .. }
    ));
    assert_eq!(
        m.fetch(&a, Cursor::START, 10, T0)
            .await
            .unwrap()
            .envelopes
            .len(),
        1
    );
}

/// The writer's usage cache follows ack_up_to: a full mailbox accepts puts again, and
/// concurrent puts and an ack_up_to in one group commit behave as in arrival order.
async fn suite_ack_up_to_quota(m: &Mailbox) {
    let a = mb(33);
    for i in 0..4 {
        m.put(&a, &id(i), b"m", T0).await.unwrap();
    }
    assert!(matches!(
        m.put(&a, &id(4), b"m", T0).await,
        Err(MailboxError::Full { .. })
    ));
    let p = m.fetch(&a, Cursor::START, 2, T0).await.unwrap();
    assert_eq!(m.ack_up_to(&a, p.next).await.unwrap(), 2);
    for i in 4..6 {
        assert!(matches!(
            m.put(&a, &id(i), b"m", T0).await.unwrap(),
            PutOutcome::Stored { .. }
        ));
    }
    assert!(matches!(
        m.put(&a, &id(6), b"m", T0).await,
        Err(MailboxError::Full { .. })
    ));
    // Two puts and an ack_up_to(MAX) of the same mailbox sent in this order (join! polls them
    // in order and each enqueues on its first poll): whether or not they share one group
    // commit, the ack comes after the puts, so it deletes both.
    assert_eq!(m.ack_up_to(&a, Cursor(u64::MAX)).await.unwrap(), 4);
    let (i10, i11) = (id(10), id(11));
    let (r1, r2, r3) = tokio::join!(
        m.put(&a, &i10, b"m", T0),
        m.put(&a, &i11, b"m", T0),
        m.ack_up_to(&a, Cursor(u64::MAX))
    );
    assert!(matches!(r1.unwrap(), PutOutcome::Stored { .. }));
    assert!(matches!(r2.unwrap(), PutOutcome::Stored { .. }));
    assert_eq!(r3.unwrap(), 2);
    assert_eq!(m.usage(&a).await.unwrap(), (0, 0));
    for i in 20..24 {
        m.put(&a, &id(i), b"m", T0).await.unwrap();
    }
    assert!(matches!(
        m.put(&a, &id(24), b"m", T0).await,
        Err(MailboxError::Full { .. })
    ));
}
