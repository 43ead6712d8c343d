//! End to end: the built `zentalk-relayd` binary as a child process. `init` writes config and
//! keys; `run` binds, a Noise client pings it, metrics are scraped, and SIGTERM (or SIGINT)
//! ends it with a clean exit and a Close frame to the open link.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zentalk_crypto::X25519Secret;
use zentalk_relay::{Limits, RelayKeys, link};
use zentalk_wire::proto::{Close, CloseReason, Ping, Pong};
use zentalk_wire::{Frame, MessageId, MessageType};

const BIN: &str = env!("CARGO_BIN_EXE_zentalk-relayd");

fn init(dir: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["init", "--dir"])
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn init_writes_config_and_private_keys_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("relay");
    let out = init(&target);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let keys = RelayKeys::load_file(&target.join("relay.key")).unwrap();
    assert!(
        stdout.contains(&hex::encode(keys.noise_public().as_bytes())),
        "{stdout}"
    );
    assert!(stdout.contains(&keys.node_id().to_hex()), "{stdout}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(target.join("relay.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let config = std::fs::read_to_string(target.join("relay.toml")).unwrap();
    assert!(config.starts_with("# ZenTalk relay configuration"));

    // A second init refuses and leaves both files as they were.
    let key_before = std::fs::read(target.join("relay.key")).unwrap();
    let again = init(&target);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read(target.join("relay.key")).unwrap(), key_before);
}

#[test]
fn usage_errors_exit_2_and_config_errors_exit_1() {
    let out = Command::new(BIN).arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// A started daemon, with the addresses it printed. Killed on drop if still running.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Daemon {
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(dir.join("relay.toml"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--log-level",
            "trace",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut addr = None;
    let mut metrics = None;
    while addr.is_none() || metrics.is_none() {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("daemon exited before binding: {:?}", child.try_wait()))
            .unwrap();
        if let Some(a) = line.strip_prefix("listening on ") {
            addr = Some(a.parse().unwrap());
        } else if let Some(a) = line.strip_prefix("metrics on ") {
            metrics = Some(a.parse().unwrap());
        }
    }
    Daemon {
        child,
        addr: addr.unwrap(),
        metrics: metrics.unwrap(),
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    const STEP: Duration = Duration::from_millis(20);
    let mut waited = Duration::ZERO;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(waited < within, "daemon did not exit within {within:?}");
        std::thread::sleep(STEP);
        waited += STEP;
    }
}

async fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn session(sig: &str) {
    let dir = tempfile::tempdir().unwrap();
    assert!(init(dir.path()).status.success());
    let keys = RelayKeys::load_file(&dir.path().join("relay.key")).unwrap();
    let mut daemon = start(dir.path());
    let mut rng = ChaCha20Rng::seed_from_u64(0x7265_6c61);
    let client_key = X25519Secret::generate(&mut rng);
    let client_public = client_key.public_key();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stream = TcpStream::connect(daemon.addr).await.unwrap();
        let mut link = link::connect(
            stream,
            &client_key,
            &keys.noise_public(),
            &Limits::default(),
            &mut rng,
        )
        .await
        .unwrap();
        // The relay opens every link with a mailbox challenge.
        let challenge = link.recv().await.unwrap();
        assert_eq!(challenge.message_type(), MessageType::MailboxChallenge);
        for nonce in 1..=3u64 {
            let ping = Frame::new(MessageId::random(&mut rng), &Ping { nonce }).unwrap();
            link.send(&ping).await.unwrap();
            let pong = link.recv().await.unwrap();
            assert_eq!(pong.decode_body::<Pong>().unwrap().nonce, nonce);
        }
        let text = scrape(daemon.metrics).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("zentalk_relay_links_open 1\n"), "{text}");
        assert!(
            text.contains("zentalk_relay_frames_received_total 3\n"),
            "{text}"
        );

        // The signal: the open link gets Close(shutdown), then the process exits cleanly.
        signal(&daemon.child, sig);
        let close = link.recv().await.unwrap();
        assert_eq!(close.message_type(), MessageType::Close);
        assert_eq!(
            close.decode_body::<Close>().unwrap().reason,
            CloseReason::Shutdown as i32
        );
    });
    let status = wait_exit(&mut daemon.child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");

    // Trace-level logs: no client IP, no key.
    let mut logs = String::new();
    daemon
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(logs.contains("clean shutdown"), "{logs}");
    assert!(logs.contains(sig), "{logs}");
    assert!(!logs.contains("127.0.0.1"), "client IP in logs:\n{logs}");
    for key in [
        client_public.to_bytes(),
        keys.noise_public().to_bytes(),
        *keys.noise_static().to_secret_bytes().expose(),
        *keys.identity().seed(),
    ] {
        assert!(!logs.contains(&hex::encode(key)), "key in logs:\n{logs}");
    }
}

#[test]
fn run_ping_scrape_and_sigterm() {
    session("TERM");
}

#[test]
fn sigint_shuts_down_gracefully_too() {
    session("INT");
}
