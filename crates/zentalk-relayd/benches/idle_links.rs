//! Memory of idle links: starts the built `zentalk-relayd` as a child process, opens Noise
//! links to it in steps (each link does its handshake and one Ping, then stays idle), and reads
//! the relay's resident set size (VmRSS in /proc/PID/status) after each step. The relay is a
//! separate process, so the clients' own memory is not counted.
//!
//! Run: `cargo bench -p zentalk-relayd --bench idle_links` (or the built binary directly).
//! `IDLE_LINKS_MAX` sets the largest step (default 15000; this machine's open-file limit is
//! 20000 per process, and this process holds one socket per link too).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::zombie_processes,
    missing_docs
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::net::TcpStream;
use zentalk_crypto::X25519Secret;
use zentalk_relay::{Limits, RelayKeys, link};
use zentalk_wire::proto::{Ping, Pong};
use zentalk_wire::{Frame, MessageId};

const BIN: &str = env!("CARGO_BIN_EXE_zentalk-relayd");

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn start(dir: &Path) -> (Child, std::net::SocketAddr) {
    let out = Command::new(BIN)
        .args(["init", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    // Lift the connection caps above the measurement (the defaults cap one IP at 64), and the
    // idle timeout above its duration.
    let config = dir.join("relay.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("max_connections = 16384", "max_connections = 19000")
        .replace(
            "max_connections_per_ip = 64",
            "max_connections_per_ip = 19000",
        );
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(addr) = line.strip_prefix("listening on ") {
            return (child, addr.parse().unwrap());
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let max: usize = std::env::var("IDLE_LINKS_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15_000);
    let steps: Vec<usize> = [0, 1_000, 2_500, 5_000, 10_000, 15_000]
        .into_iter()
        .filter(|&n| n <= max)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start(dir.path());
    let keys = RelayKeys::load_file(&dir.path().join("relay.key")).unwrap();
    let relay_key = keys.noise_public();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut links = Vec::new();
    let mut rng = ChaCha20Rng::seed_from_u64(0x1d1e);
    // One client static key for all links: the relay's cost per link does not depend on it.
    let me = X25519Secret::generate(&mut rng);
    println!("| idle links | relay RSS (MiB) | RSS per link since 0 (KiB) |");
    println!("|---:|---:|---:|");
    let base = rss_kib(child.id());
    for &target in &steps {
        rt.block_on(async {
            while links.len() < target {
                let stream = TcpStream::connect(addr).await.unwrap();
                // Without it, Nagle holds the Ping behind handshake message 3 until the
                // relay's delayed ACK: 40 ms per link.
                stream.set_nodelay(true).unwrap();
                let mut l = link::connect(stream, &me, &relay_key, &Limits::default(), &mut rng)
                    .await
                    .unwrap();
                // The relay opens every link with a mailbox challenge.
                let _challenge = l.recv().await.unwrap();
                let nonce = links.len() as u64;
                l.send(&Frame::new(MessageId::random(&mut rng), &Ping { nonce }).unwrap())
                    .await
                    .unwrap();
                let pong: Pong = l.recv().await.unwrap().decode_body().unwrap();
                assert_eq!(pong.nonce, nonce);
                links.push(l);
            }
        });
        // Let the relay settle (freed handshake buffers returned to the allocator).
        std::thread::sleep(std::time::Duration::from_millis(500));
        let rss = rss_kib(child.id());
        let per = if target == 0 {
            String::from("-")
        } else {
            format!("{:.1}", (rss.saturating_sub(base)) as f64 / target as f64)
        };
        println!("| {target} | {:.1} | {per} |", rss as f64 / 1024.0);
    }
    drop(links);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
