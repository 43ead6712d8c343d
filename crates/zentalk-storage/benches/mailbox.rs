//! Mailbox benchmarks: sustained put + fetch + ack with group commit (many concurrent
//! producers, consumers fetching and acking in pages), against the baseline of one
//! transaction per put (sequential puts); SQLite always, PostgreSQL when
//! `ZENTALK_TEST_POSTGRES_URL` is set; and behaviour as a mailbox grows deep.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![allow(clippy::disallowed_methods, reason = "benchmark timing")]

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sqlx::postgres::PgConnectOptions;
use zentalk_storage::mailbox::{
    Cursor, Limits, Mailbox, MailboxBackend, MailboxId, MessageId, PostgresMailbox, SqliteMailbox,
};

const MAILBOXES: u32 = 64;
const PRODUCERS: u32 = 256;
const PAYLOAD: usize = 1024;
const T0: u64 = 1_700_000_000_000;

fn mbox(n: u32) -> MailboxId {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&n.to_be_bytes());
    MailboxId(b)
}

fn mid(round: u64, n: u64) -> MessageId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&round.to_be_bytes());
    b[8..].copy_from_slice(&n.to_be_bytes());
    MessageId(b)
}

fn limits() -> Limits {
    Limits {
        mailbox_messages: 10_000_000,
        mailbox_bytes: u64::MAX / 4,
        ..Limits::default()
    }
}

/// `total` messages through put (PRODUCERS concurrent tasks) + fetch + ack (one consumer per
/// mailbox, pages of 256). Returns elapsed time once every message was acked.
async fn cycle(m: Arc<Mailbox>, round: u64, total: u64) -> Duration {
    let start = Instant::now();
    let per_producer = total / u64::from(PRODUCERS);
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            let payload = vec![0xab; PAYLOAD];
            for k in 0..per_producer {
                let n = u64::from(p) * per_producer + k;
                let mb = mbox((n % u64::from(MAILBOXES)) as u32);
                m.put(&mb, &mid(round, n), &payload, T0).await.unwrap();
            }
        }));
    }
    let expected = per_producer * u64::from(PRODUCERS);
    let mut consumers = Vec::new();
    for c in 0..MAILBOXES {
        let m = m.clone();
        let want = expected / u64::from(MAILBOXES)
            + u64::from(u64::from(c) < expected % u64::from(MAILBOXES));
        consumers.push(tokio::spawn(async move {
            let mb = mbox(c);
            let mut got = 0u64;
            let mut cursor = Cursor::START;
            while got < want {
                let page = m.fetch(&mb, cursor, 256, T0).await.unwrap();
                if page.envelopes.is_empty() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                let ids: Vec<_> = page.envelopes.iter().map(|e| e.message_id).collect();
                got += m.ack(&mb, &ids).await.unwrap();
                cursor = page.next;
                if page.envelopes.len() < 256 {
                    // A short page: let more arrive before the next round trip (a relay
                    // delivering to an online client batches the same way).
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }));
    }
    for t in tasks.into_iter().chain(consumers) {
        t.await.unwrap();
    }
    start.elapsed()
}

/// Baseline: one put at a time, each its own transaction and fsync, then fetch + ack.
async fn sequential(m: &Mailbox, round: u64, total: u64) -> Duration {
    let start = Instant::now();
    let mb = mbox(9999);
    let payload = vec![0xab; PAYLOAD];
    for n in 0..total {
        m.put(&mb, &mid(round, n), &payload, T0).await.unwrap();
    }
    let mut cursor = Cursor::START;
    loop {
        let p = m.fetch(&mb, cursor, 256, T0).await.unwrap();
        if p.envelopes.is_empty() {
            break;
        }
        let ids: Vec<_> = p.envelopes.iter().map(|e| e.message_id).collect();
        m.ack(&mb, &ids).await.unwrap();
        cursor = p.next;
    }
    start.elapsed()
}

async fn open_pg(url: &str) -> Mailbox {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let schema = format!("zt_bench_{}", std::process::id());
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut c)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut c)
        .await
        .unwrap();
    let o = PgConnectOptions::from_str(url)
        .unwrap()
        .options([("search_path", schema.as_str())]);
    Mailbox::Postgres(PostgresMailbox::open_with(o, limits()).await.unwrap())
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(Mailbox::Sqlite(
        rt.block_on(SqliteMailbox::open(&dir.path().join("bench.db"), limits()))
            .unwrap(),
    ));
    let pg = std::env::var("ZENTALK_TEST_POSTGRES_URL")
        .ok()
        .map(|u| Arc::new(rt.block_on(open_pg(&u))));
    if pg.is_none() {
        println!("PostgreSQL mailbox bench skipped: ZENTALK_TEST_POSTGRES_URL is not set");
    }
    let mut round = 0u64;
    const N: u64 = 20_480;
    const SEQ: u64 = 1_000;

    let mut g = c.benchmark_group("mailbox_put_fetch_ack");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N));
    g.bench_function("sqlite_group_commit", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                t += rt.block_on(cycle(sqlite.clone(), round, N));
            }
            t
        })
    });
    if let Some(pg) = &pg {
        g.bench_function("postgres_group_commit", |b| {
            b.iter_custom(|iters| {
                let mut t = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    t += rt.block_on(cycle(pg.clone(), round, N));
                }
                t
            })
        });
    }
    g.throughput(Throughput::Elements(SEQ));
    g.bench_function("sqlite_baseline_one_tx_per_put", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                t += rt.block_on(sequential(&sqlite, round, SEQ));
            }
            t
        })
    });
    if let Some(pg) = &pg {
        g.bench_function("postgres_baseline_one_tx_per_put", |b| {
            b.iter_custom(|iters| {
                let mut t = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    t += rt.block_on(sequential(pg, round, SEQ));
                }
                t
            })
        });
    }
    g.finish();

    // Deep mailboxes: fill one mailbox to a depth, then time puts into it and a fetch of its
    // oldest page (what a reconnecting client does first).
    let deep = mbox(77_777);
    let mut filled = 0u64;
    for depth in [1_000u64, 10_000, 100_000] {
        rt.block_on(async {
            let payload = vec![0xcd; PAYLOAD];
            let mut futs = Vec::new();
            while filled < depth {
                let m = sqlite.clone();
                let p = payload.clone();
                let n = filled;
                futs.push(tokio::spawn(async move { m.put(&deep, &mid(u64::MAX, n), &p, T0).await.unwrap() }));
                filled += 1;
                if futs.len() == 512 {
                    for f in futs.drain(..) {
                        f.await.unwrap();
                    }
                }
            }
            for f in futs {
                f.await.unwrap();
            }
            let mut lat = Vec::new();
            for _ in 0..200 {
                let t = Instant::now();
                let p = sqlite.fetch(&deep, Cursor::START, 256, T0).await.unwrap();
                lat.push(t.elapsed());
                assert_eq!(p.envelopes.len(), 256);
            }
            lat.sort_unstable();
            // Concurrent puts into the deep mailbox (the quota check reads the cached usage).
            let t = Instant::now();
            let mut futs = Vec::new();
            for k in 0..4096u64 {
                let m = sqlite.clone();
                let p = payload.clone();
                futs.push(tokio::spawn(async move { m.put(&deep, &mid(u64::MAX - 1 - depth, k), &p, T0).await.unwrap() }));
            }
            for f in futs {
                f.await.unwrap();
            }
            let put_rate = 4096.0 / t.elapsed().as_secs_f64();
            filled += 4096;
            println!(
                "mailbox sqlite depth {depth}: fetch oldest 256 p50 {:?} p99 {:?}; 4096 concurrent puts into it: {put_rate:.0}/s",
                lat[lat.len() / 2],
                lat[lat.len() * 99 / 100]
            );
        });
    }
    drop(pg);
    rt.block_on(async { Arc::try_unwrap(sqlite).ok().unwrap().close().await });
}

criterion_group!(benches, bench);
criterion_main!(benches);
