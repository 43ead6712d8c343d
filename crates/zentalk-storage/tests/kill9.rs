//! Durability under `kill -9`: a child process (this same test binary, re-invoked with
//! `ZT_KILL9_CHILD` set) puts messages from many concurrent tasks and prints each id as soon as
//! its put returned Ok; the parent SIGKILLs it mid-stream, reopens the mailbox and checks that
//! every acknowledged put is there. Runs on SQLite always and on PostgreSQL when
//! `ZENTALK_TEST_POSTGRES_URL` is set (otherwise it says it skipped).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(
    clippy::disallowed_methods,
    reason = "L2 tests: wall clock for seeds, timing and unique names"
)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use zentalk_storage::mailbox::{
    Cursor, Limits, Mailbox, MailboxBackend, MailboxId, MessageId, PostgresMailbox, SqliteMailbox,
};

const CHILD_ENV: &str = "ZT_KILL9_CHILD";
const SCHEMA_ENV: &str = "ZT_KILL9_SCHEMA";
const PG_ENV: &str = "ZENTALK_TEST_POSTGRES_URL";
const MAILBOX: MailboxId = MailboxId([0x4b; 32]);
const TASKS: u32 = 32;
const T0: u64 = 1_700_000_000_000;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(target) = std::env::var(CHILD_ENV) {
        rt.block_on(child(target));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("kill9.db").display());
    let n = parent(&sqlite, None, &rt);
    println!("kill9 sqlite: {n} acknowledged puts all present after SIGKILL: ok");
    match std::env::var(PG_ENV) {
        Ok(url) => {
            let schema = rt.block_on(async {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                let name = format!("zt_kill9_{}", std::process::id());
                sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .execute(&mut c)
                    .await
                    .unwrap();
                sqlx::query(&format!("CREATE SCHEMA {name}"))
                    .execute(&mut c)
                    .await
                    .unwrap();
                name
            });
            let n = parent(&url, Some(&schema), &rt);
            println!("kill9 postgres: {n} acknowledged puts all present after SIGKILL: ok");
        }
        Err(_) => println!("SKIPPED kill9 on PostgreSQL: {PG_ENV} is not set"),
    }
}

async fn open(target: &str, schema: Option<&str>) -> Mailbox {
    match schema {
        Some(s) => {
            let o = PgConnectOptions::from_str(target)
                .unwrap()
                .options([("search_path", s)]);
            Mailbox::Postgres(
                PostgresMailbox::open_with(o, Limits::default())
                    .await
                    .unwrap(),
            )
        }
        None => {
            let path = target.strip_prefix("sqlite://").unwrap();
            Mailbox::Sqlite(
                SqliteMailbox::open(std::path::Path::new(path), Limits::default())
                    .await
                    .unwrap(),
            )
        }
    }
}

fn id(task: u32, n: u32) -> MessageId {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&task.to_be_bytes());
    b[4..8].copy_from_slice(&n.to_be_bytes());
    MessageId(b)
}

async fn child(target: String) {
    let schema = std::env::var(SCHEMA_ENV).ok();
    let m = std::sync::Arc::new(open(&target, schema.as_deref()).await);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0.. {
                let i = id(t, n);
                m.put(&MAILBOX, &i, &[0x55; 512], T0).await.unwrap();
                // Acknowledged: report it (one write per line, so a line is never interleaved).
                let line = format!("ACK {t} {n}\n");
                let mut out = std::io::stdout().lock();
                out.write_all(line.as_bytes()).unwrap();
                out.flush().unwrap();
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn parent(target: &str, schema: Option<&str>, rt: &tokio::runtime::Runtime) -> usize {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(CHILD_ENV, target)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(s) = schema {
        cmd.env(SCHEMA_ENV, s);
    }
    let mut child = cmd.spawn().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut acked = HashSet::new();
    let start = Instant::now();
    let mut line = String::new();
    // Let it run until a few thousand puts were acknowledged, then kill it mid-flight.
    while acked.len() < 3000 && start.elapsed() < Duration::from_secs(60) {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("child exited early");
        }
        record(&line, &mut acked);
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    // Lines already written before the kill are still in the pipe: they were acknowledged too.
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        record(&line, &mut acked);
    }
    assert!(!acked.is_empty());
    rt.block_on(async {
        let m = open(target, schema).await;
        let mut found = HashSet::new();
        let mut cursor = Cursor::START;
        loop {
            let p = m.fetch(&MAILBOX, cursor, 1000, T0).await.unwrap();
            if p.envelopes.is_empty() {
                break;
            }
            found.extend(p.envelopes.iter().map(|e| e.message_id));
            cursor = p.next;
        }
        let missing: Vec<_> = acked.iter().filter(|i| !found.contains(*i)).collect();
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged puts lost after SIGKILL",
            missing.len(),
            acked.len()
        );
        m.close().await;
    });
    acked.len()
}

fn record(line: &str, acked: &mut HashSet<MessageId>) {
    // Only complete lines count: a line cut by the kill was never fully reported.
    let Some(body) = line.strip_suffix('\n') else {
        return;
    };
    let mut parts = body.split(' ');
    if parts.next() != Some("ACK") {
        return;
    }
    let t: u32 = parts.next().unwrap().parse().unwrap();
    let n: u32 = parts.next().unwrap().parse().unwrap();
    acked.insert(id(t, n));
}
