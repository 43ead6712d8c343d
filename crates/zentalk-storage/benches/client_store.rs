//! Client store benchmarks: encrypted insert throughput, conversation page latency (p50/p99
//! measured directly over many random pages, plus criterion's estimate) in a large file, and
//! the file size per million messages. Side by side, the original's approach as a baseline:
//! sqlx row by row, transactions of 1,000, same AES-256-GCM sealing.
//!
//! `ZT_BENCH_MESSAGES` (default 1,000,000) sets the size of the large file; 1,000
//! conversations, 200-byte contents.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
#![allow(clippy::disallowed_methods, reason = "benchmark timing")]

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sqlx::Connection;
use zentalk_crypto::{Address, AeadKey, AeadSuite};
use zentalk_storage::client::{
    ClientStore, ConversationId, ConversationKind, KdfParams, MessageId, MessageStatus,
    NewConversation, NewMessage,
};

const CONVERSATIONS: u32 = 1000;
const CONTENT: usize = 200;
const BATCH: usize = 1000;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn conv_id(n: u32) -> ConversationId {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&n.to_be_bytes());
    ConversationId(b)
}

fn batch(rng: &mut ChaCha20Rng, first_ts: i64) -> Vec<NewMessage> {
    (0..BATCH)
        .map(|i| {
            let mut id = [0u8; 16];
            rng.fill_bytes(&mut id); // random ids, as on the wire
            let mut content = vec![0u8; CONTENT];
            rng.fill_bytes(&mut content);
            NewMessage {
                id: MessageId(id),
                conversation: conv_id(rng.next_u32() % CONVERSATIONS),
                sender: Address::from_bytes([7; 32]),
                outgoing: i % 2 == 0,
                timestamp_ms: first_ts + i as i64,
                content_type: 1,
                content,
                reply_to: None,
                media: None,
                status: MessageStatus::Delivered,
            }
        })
        .collect()
}

async fn fresh_store(dir: &std::path::Path) -> ClientStore {
    let s = ClientStore::create(dir.join("bench.zt"), b"bench", KdfParams::TEST)
        .await
        .unwrap();
    for c in 0..CONVERSATIONS {
        s.create_conversation(&NewConversation {
            id: conv_id(c),
            kind: ConversationKind::Direct,
            peer: vec![1; 32],
            title: format!("c{c}"),
            created_at_ms: 0,
        })
        .await
        .unwrap();
    }
    s
}

fn file_size(path: &std::path::Path) -> u64 {
    ["", "-wal"]
        .iter()
        .map(|s| {
            std::fs::metadata(format!("{}{s}", path.display()))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum()
}

fn bench(c: &mut Criterion) {
    let rt = rt();
    let total: usize = std::env::var("ZT_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(fresh_store(dir.path()));
    let mut rng = ChaCha20Rng::seed_from_u64(1);

    // 1. Build the large file, timing it: sustained encrypted insert rate.
    let start = Instant::now();
    let mut ts = 1_700_000_000_000i64;
    let mut done = 0usize;
    // Two callers inserting batches of 1,000 concurrently: one seals while the other's batch
    // is in SQLite.
    while done < total {
        let a = batch(&mut rng, ts);
        let b = batch(&mut rng, ts + BATCH as i64);
        ts += 2 * BATCH as i64;
        rt.block_on(async {
            let (x, y) = tokio::join!(store.insert_messages(&a), store.insert_messages(&b));
            x.unwrap();
            y.unwrap();
        });
        done += 2 * BATCH;
    }
    let secs = start.elapsed().as_secs_f64();
    rt.block_on(async {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&sqlx_pool(&store))
            .await
            .ok()
    });
    let bytes = file_size(store.path());
    println!(
        "client_store build (2 concurrent callers, batches of 1000): {done} messages in {secs:.1} s = {:.0} messages/s; file {} bytes = {:.1} MiB per million messages",
        done as f64 / secs,
        bytes,
        bytes as f64 / (done as f64 / 1e6) / 1048576.0
    );

    // 2. Insert throughput at this size, criterion-measured (batches of 1,000).
    let mut g = c.benchmark_group("client_store_insert");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);
    g.bench_function("encrypted_batch_1000", |b| {
        b.iter_batched(
            || {
                ts += BATCH as i64;
                batch(&mut rng, ts)
            },
            |msgs| rt.block_on(store.insert_messages(&msgs)).unwrap(),
            BatchSize::PerIteration,
        )
    });
    // Baseline: the original's approach (row by row, 1,000 per transaction, same sealing).
    let base_path = dir.path().join("baseline.db");
    let mut base = rt.block_on(baseline_open(&base_path));
    let key = AeadKey::new(&mut [3u8; 32]);
    g.bench_function("baseline_sqlx_row_by_row_1000", |b| {
        b.iter_batched(
            || {
                ts += BATCH as i64;
                batch(&mut rng, ts)
            },
            |msgs| rt.block_on(baseline_insert(&mut base, &key, &msgs)),
            BatchSize::PerIteration,
        )
    });
    g.finish();

    // 3. Conversation page (50 newest, decrypted): direct p50/p99 over random conversations.
    let mut lat = Vec::with_capacity(5000);
    for _ in 0..5000 {
        let conv = conv_id(rng.next_u32() % CONVERSATIONS);
        let t = Instant::now();
        let p = rt.block_on(store.conversation_page(&conv, None)).unwrap();
        lat.push(t.elapsed());
        assert!(!p.messages.is_empty());
    }
    lat.sort_unstable();
    let q = |f: f64| lat[((lat.len() as f64 * f) as usize).min(lat.len() - 1)];
    println!(
        "client_store page of 50 (first page, {} messages in file): p50 {:?} p99 {:?} max {:?}",
        done,
        q(0.50),
        q(0.99),
        lat[lat.len() - 1]
    );
    // Deeper pages through the cursor (page 2 of random conversations).
    let mut lat2 = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let conv = conv_id(rng.next_u32() % CONVERSATIONS);
        let p1 = rt.block_on(store.conversation_page(&conv, None)).unwrap();
        let t = Instant::now();
        let _ = rt
            .block_on(store.conversation_page(&conv, p1.next))
            .unwrap();
        lat2.push(t.elapsed());
    }
    lat2.sort_unstable();
    println!(
        "client_store page 2 via cursor: p50 {:?} p99 {:?}",
        lat2[lat2.len() / 2],
        lat2[lat2.len() * 99 / 100]
    );
    // Search cost: one full conversation scan.
    let conv = conv_id(0);
    let t = Instant::now();
    let hits = rt
        .block_on(store.search_conversation(&conv, "needle-not-present", 10))
        .unwrap();
    let scanned = (done / CONVERSATIONS as usize) as f64;
    println!(
        "client_store search (no match, ~{scanned:.0} messages decrypted): {:?} = {:.2} us/message",
        t.elapsed(),
        t.elapsed().as_secs_f64() * 1e6 / scanned
    );
    assert!(hits.is_empty());

    let mut g = c.benchmark_group("client_store_page");
    g.bench_function("page_50_newest", |b| {
        b.iter(|| {
            let conv = conv_id(rng.next_u32() % CONVERSATIONS);
            rt.block_on(store.conversation_page(&conv, None)).unwrap()
        })
    });
    g.finish();
    rt.block_on(store.close());
    let _ = Duration::ZERO;
}

/// The store's pool is private; for the checkpoint, open a side connection on the file.
fn sqlx_pool(store: &ClientStore) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect_lazy_with(
        sqlx::sqlite::SqliteConnectOptions::new().filename(store.path()),
    )
}

async fn baseline_open(path: &std::path::Path) -> sqlx::SqliteConnection {
    let mut c = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full),
    )
    .await
    .unwrap();
    sqlx::query(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, conversation_id BLOB NOT NULL, \
         message_id BLOB UNIQUE NOT NULL, timestamp INTEGER NOT NULL, content BLOB NOT NULL)",
    )
    .execute(&mut c)
    .await
    .unwrap();
    sqlx::query("CREATE INDEX m_conv ON messages (conversation_id, timestamp)")
        .execute(&mut c)
        .await
        .unwrap();
    c
}

async fn baseline_insert(c: &mut sqlx::SqliteConnection, key: &AeadKey, msgs: &[NewMessage]) {
    let mut tx = c.begin().await.unwrap();
    for m in msgs {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&m.timestamp_ms.to_be_bytes());
        let ct = AeadSuite::Aes256Gcm
            .seal(key, &nonce, b"", &m.content)
            .unwrap();
        sqlx::query("INSERT INTO messages (conversation_id, message_id, timestamp, content) VALUES (?, ?, ?, ?)")
            .bind(&m.conversation.0[..])
            .bind(&m.id.0[..])
            .bind(m.timestamp_ms)
            .bind(ct)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);
