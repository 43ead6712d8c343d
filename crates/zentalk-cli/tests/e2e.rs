//! End to end with real processes: `zentalk-relayd` children on 127.0.0.1 (free ports, each
//! publishing its signed descriptor in the DHT), a DHT bootstrap node in this test process,
//! and `zentalk` client processes, each with its own directory, encrypted store and log.
//!
//! - `two_clients_in_order_exactly_once_both_ways_offline_and_impostor`: texts arrive
//!   complete, in order, exactly once, both ways (`send`, `chat`, `inbox`); a recipient offline
//!   then online receives everything; an impostor who knows the victim's mailbox (from the
//!   contact card in the DHT) can neither fetch nor acknowledge it, and the victim still gets
//!   every item. (The relay library's `tests/network.rs::impostors_get_nothing_and_change_nothing`
//!   covers every other impostor move: wrong relay, replayed signature, spent challenge.)
//! - `kill9_of_a_relay_loses_nothing_and_duplicates_nothing`: a relay that is no one's mailbox
//!   relay is killed with SIGKILL mid-conversation; every text the sender was told was sent
//!   arrives once, in order, retried on other routes.
//! - `hostile_links_lose_only_their_own_link`: garbage, an oversized frame and half a handshake
//!   sent to the recipient's mailbox relay while a conversation goes on through it.
//!
//! Every test runs every process at trace level (relayd `--log-level trace`, clients
//! `RUST_LOG=trace`) and finally scans every log for the texts (random per run), the store
//! password and the relays' secret keys, and the relays' logs also for the clients' identity
//! keys and addresses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use zentalk_cli::testnet::{DESCRIPTOR_WAIT, Runner, Testnet, TestnetConfig};
use zentalk_client::{Directory, RelayEntry};
use zentalk_crypto::{IdentityKeyPair, IdentityPublicKey, NodeId, X25519PublicKey, X25519Secret};
use zentalk_relay::Limits;
use zentalk_relay::link;
use zentalk_relay::service::mailbox_auth_message;
use zentalk_wire::proto::{self, ErrorCode};
use zentalk_wire::{Flags, Frame, MessageId, MessageType};

const ZENTALK: &str = env!("CARGO_BIN_EXE_zentalk");
const PASSWORD: &str = "e2e store password 7f3a";
/// Longest wait for one expected output line.
const LINE_WAIT: Duration = Duration::from_secs(30);

/// The relayd executable.
///
/// `CARGO_BIN_EXE_<name>` exists only for the binaries of the package under test, and an
/// artifact dependency on another package's binary is unstable cargo, so the daemon is found
/// where cargo puts every binary of the workspace: `target/<profile>/`, the parent of the
/// `deps/` directory holding this test executable. `cargo test --workspace` has built it there
/// already; under `cargo test -p zentalk-cli` it may be missing, and then it is built with the
/// same profile (`--release` when this test runs from `target/release`), `--locked` so the
/// build never rewrites Cargo.lock. A stale daemon from an older build would still be used by
/// `-p zentalk-cli` alone; `cargo test --workspace` (CI) always rebuilds it first.
fn relayd() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let path = profile_dir.join("zentalk-relayd");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--locked",
            "-p",
            "zentalk-relayd",
            "--bin",
            "zentalk-relayd",
        ]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "building zentalk-relayd failed");
    }
    assert!(path.exists(), "no zentalk-relayd at {}", path.display());
    path
}

async fn start_net(relays: usize) -> (Testnet, Directory) {
    let net = Testnet::start(&TestnetConfig {
        relays,
        runner: Runner::Processes {
            relayd: relayd(),
            log_level: "trace".to_owned(),
        },
        demo_observe: false,
    })
    .await
    .unwrap();
    let dir = net.wait_for_descriptors(DESCRIPTOR_WAIT).await.unwrap();
    (net, dir)
}

fn random_text(rng: &mut ChaCha20Rng, tag: &str) -> String {
    let mut b = [0u8; 10];
    rng.fill_bytes(&mut b);
    let mut s = format!("{tag}-");
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// A `zentalk` user: a client directory and a log every command of theirs appends to.
struct User {
    name: &'static str,
    dir: tempfile::TempDir,
    identity: String,
    address: String,
}

impl User {
    fn log_path(&self) -> PathBuf {
        self.dir.path().join("zentalk.log")
    }

    fn command(&self, args: &[&str]) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = Command::new(ZENTALK);
        cmd.arg("--dir")
            .arg(self.dir.path())
            .args(args)
            .env("ZENTALK_PASSWORD", PASSWORD)
            .env("ZENTALK_TEST_FAST_TIMERS", "1")
            .env("RUST_LOG", "trace")
            .env_remove("ZENTALK_DIR")
            .stdin(Stdio::null())
            .stderr(Stdio::from(log));
        cmd
    }

    /// Runs a command to completion (off the runtime's threads: the DHT bootstrap node lives
    /// on this runtime and must keep answering).
    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(args);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap();
        println!(
            "{} $ zentalk {} -> {:?}\n{}",
            self.name,
            args.first().unwrap_or(&""),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout)
        );
        out
    }

    async fn init(name: &'static str, net: &Testnet, contact: NodeId) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("zentalk-e2e-{name}-"))
            .tempdir()
            .unwrap();
        let relays: Vec<String> = net.node_ids().iter().map(NodeId::to_hex).collect();
        let mut user = User {
            name,
            dir,
            identity: String::new(),
            address: String::new(),
        };
        let boot = net.bootstrap_addr().to_string();
        let contact = contact.to_hex();
        let relays = relays.join(",");
        let out = user
            .run(&[
                "init",
                "--dht-bootstrap",
                &boot,
                "--contact-relay",
                &contact,
                "--relays",
                &relays,
                "--mailbox-relays",
                &contact,
                "--test-fast-kdf",
            ])
            .await;
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        for line in stdout.lines() {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some("address"), Some(a), _) => user.address = a.to_owned(),
                (Some("identity"), Some("key"), Some(k)) => user.identity = k.to_owned(),
                _ => {}
            }
        }
        assert_eq!(user.identity.len(), 64, "{stdout}");
        user
    }

    /// Starts `zentalk chat PEER` with piped stdin and stdout.
    fn chat(&self, peer: &User) -> Chat {
        self.spawn(&["chat", &peer.identity])
    }

    /// Starts a long-running command with piped stdin and stdout.
    fn spawn(&self, args: &[&str]) -> Chat {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel(1024);
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        Chat {
            name: self.name,
            log: self.log_path(),
            child: Some(child),
            lines: rx,
            seen: Vec::new(),
        }
    }
}

/// The last lines of a log (what a failed process said last).
fn log_tail(path: &Path) -> Vec<String> {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(3)..]
        .iter()
        .map(|l| l.chars().take(300).collect())
        .collect()
}

/// A running `zentalk chat` (or `serve`).
struct Chat {
    name: &'static str,
    log: PathBuf,
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    /// Every line printed so far.
    seen: Vec<String>,
}

impl Chat {
    /// Waits until a line satisfying `want` is printed; returns it.
    async fn expect(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + LINE_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    println!("{} | {line}", self.name);
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Ok(None) => panic!(
                    "{}'s chat ended before {what}: {:?}; log ends {:?}",
                    self.name,
                    self.seen,
                    log_tail(&self.log)
                ),
                Err(_) => panic!(
                    "{}'s chat: no {what} within {LINE_WAIT:?}: {:?}; log ends {:?}",
                    self.name,
                    self.seen,
                    log_tail(&self.log)
                ),
            }
        }
    }

    fn type_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.child.as_mut().unwrap().stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Types `/quit` and waits for a clean exit, reading the rest of the output.
    async fn quit(&mut self) {
        self.type_line("/quit");
        self.wait_clean_exit().await;
    }

    /// Closes stdin (Ctrl-D) and waits for a clean exit, reading the rest of the output.
    async fn end_of_input(&mut self) {
        drop(self.child.as_mut().unwrap().stdin.take());
        self.wait_clean_exit().await;
    }

    /// Sends SIGTERM and waits for a clean exit, reading the rest of the output.
    async fn terminate(&mut self) {
        zentalk_cli::testnet::terminate(self.child.as_ref().unwrap());
        self.wait_clean_exit().await;
    }

    async fn wait_clean_exit(&mut self) {
        let mut child = self.child.take().unwrap();
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        while let Some(line) = self.lines.recv().await {
            println!("{} | {line}", self.name);
            self.seen.push(line);
        }
        assert!(
            status.success(),
            "{} chat exit {status:?}: {:?}",
            self.name,
            self.seen
        );
        assert!(
            self.seen.iter().any(|l| l == "saved; bye"),
            "{:?}",
            self.seen
        );
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Lines of `out` mentioning each of `texts`, checked to be in that order, once each.
fn assert_in_order_once(out: &str, texts: &[String]) {
    let mut at = 0;
    for t in texts {
        assert_eq!(
            out.matches(t.as_str()).count(),
            1,
            "{t} not exactly once in {out}"
        );
        let pos = out.find(t.as_str()).unwrap();
        assert!(pos >= at, "{t} out of order in {out}");
        at = pos;
    }
}

fn key_file_secrets(relay_dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(relay_dir.join("relay.key")).unwrap();
    let secrets: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("identity_seed") || l.starts_with("noise_static_secret"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
        .collect();
    assert_eq!(secrets.len(), 2, "key file format changed");
    secrets
}

/// Scans every log: none holds a text, the password or a relay secret key; no relay log
/// holds a client's identity key or address.
async fn scan_logs(net: &Testnet, users: &[&User], texts: &[String]) {
    let mut everywhere: Vec<String> = texts.to_vec();
    everywhere.extend(texts.iter().map(|t| hex(t.as_bytes())));
    everywhere.push(PASSWORD.to_owned());
    for r in net.relays() {
        everywhere.extend(key_file_secrets(r.dir()));
    }
    for u in users {
        for secret in client_secrets(u).await {
            everywhere.push(hex(&secret));
            // Debug form of a byte array, as a careless `{:?}` would print it.
            let list: Vec<String> = secret[..8].iter().map(u8::to_string).collect();
            everywhere.push(format!("[{}", list.join(", ")));
        }
    }
    let mut relay_only = Vec::new();
    for u in users {
        relay_only.push(u.identity.clone());
        relay_only.push(u.address.clone());
    }
    let mut scanned = 0usize;
    let mut check = |path: &Path, forbidden: &[&Vec<String>]| {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        scanned += log.len();
        for list in forbidden {
            for s in list.iter() {
                assert!(
                    !log.contains(s.as_str()),
                    "{} contains {s:?}",
                    path.display()
                );
            }
        }
    };
    for r in net.relays() {
        check(&r.log_path(), &[&everywhere, &relay_only]);
    }
    for u in users {
        check(&u.log_path(), &[&everywhere]);
    }
    // The scan is only meaningful if the processes really logged at trace level.
    assert!(scanned > 10_000, "only {scanned} bytes of logs");
    println!("scanned {scanned} bytes of trace logs");
}

/// A client's secret keys, read from its store (every process of it has exited): the
/// identity seed, its X25519 form, and every owned mailbox's seed.
async fn client_secrets(user: &User) -> Vec<[u8; 32]> {
    let store = zentalk_storage::client::ClientStore::open(
        user.dir.path().join("store.db"),
        PASSWORD.as_bytes(),
    )
    .await
    .unwrap();
    let client = zentalk_client::Client::load(&store).await.unwrap().unwrap();
    store.close().await;
    let identity = client.account().identity();
    let mut out = vec![
        *identity.seed(),
        *identity.to_x25519().to_secret_bytes().expose(),
    ];
    out.extend(client.mailboxes().iter().map(|m| *m.seed()));
    assert!(
        out.len() >= 3,
        "a contact mailbox and at least one per-contact mailbox"
    );
    out
}

fn relay_entry(dir: &Directory, node: NodeId) -> RelayEntry {
    dir.get(&node).unwrap().clone()
}

async fn noise_link(entry: &RelayEntry, rng: &mut ChaCha20Rng) -> zentalk_relay::Link<TcpStream> {
    let stream = TcpStream::connect(entry.addr).await.unwrap();
    let me = X25519Secret::generate(rng);
    link::connect(
        stream,
        &me,
        &X25519PublicKey::from_bytes(entry.noise_key),
        &Limits::default(),
        rng,
    )
    .await
    .unwrap()
}

async fn recv(l: &mut zentalk_relay::Link<TcpStream>) -> Frame {
    tokio::time::timeout(Duration::from_secs(10), l.recv())
        .await
        .expect("a frame within 10 s")
        .unwrap()
}

fn expect_unauthorized(f: &Frame) {
    assert_eq!(f.message_type(), MessageType::Error);
    let e: proto::Error = f.decode_body().unwrap();
    assert_eq!(e.code, ErrorCode::Unauthorized as i32);
}

/// An impostor who found `victim`'s contact card in the DHT tries to fetch and acknowledge
/// the contact mailbox it names, on its relay.
async fn impostor_tries(net: &Testnet, dir: &Directory, victim: &User, rng: &mut ChaCha20Rng) {
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&victim.identity[2 * i..2 * i + 2], 16).unwrap();
    }
    let identity = IdentityPublicKey::from_bytes(&key).unwrap();
    let dht = net.client_dht().await.unwrap();
    #[allow(
        clippy::disallowed_methods,
        reason = "test: card periods are wall-clock"
    )]
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let card = zentalk_client::dht::fetch_card(&dht, &identity, now_ms)
        .await
        .unwrap();
    let relay = relay_entry(dir, card.mailbox.relay);
    let id = zentalk_wire::bytes::Bytes::copy_from_slice(card.mailbox.mailbox.as_bytes());
    let mut l = noise_link(&relay, rng).await;
    let challenge: proto::MailboxChallenge = recv(&mut l).await.decode_body().unwrap();
    // Fetch and ack without authenticating.
    let fetch = proto::MailboxFetch {
        mailbox_id: id.clone(),
        after_seq: 0,
        max_items: 0,
    };
    l.send(&Frame::new(MessageId::random(rng), &fetch).unwrap())
        .await
        .unwrap();
    expect_unauthorized(&recv(&mut l).await);
    let ack = proto::MailboxAck {
        mailbox_id: id.clone(),
        up_to_seq: u64::MAX,
    };
    l.send(&Frame::new(MessageId::random(rng), &ack).unwrap())
        .await
        .unwrap();
    expect_unauthorized(&recv(&mut l).await);
    // Its own key and signature, the victim's mailbox id.
    let impostor = IdentityKeyPair::generate(rng);
    let nonce: [u8; 32] = challenge.nonce.as_ref().try_into().unwrap();
    let sig = impostor.sign(&mailbox_auth_message(
        &relay.node,
        &nonce,
        card.mailbox.mailbox.as_bytes(),
    ));
    let auth = proto::MailboxAuth {
        mailbox_id: id.clone(),
        mailbox_key: zentalk_wire::bytes::Bytes::copy_from_slice(impostor.public_key().as_bytes()),
        nonce: challenge.nonce.clone(),
        signature: zentalk_wire::bytes::Bytes::copy_from_slice(&sig.to_bytes()),
    };
    l.send(&Frame::new(MessageId::random(rng), &auth).unwrap())
        .await
        .unwrap();
    expect_unauthorized(&recv(&mut l).await);
    println!("impostor refused: fetch, ack and auth with its own key");
}

/// snow draws the ephemeral key from its resolver's RNG: the test's seeded one, as the relay
/// crate's links do (`SeededResolver` in zentalk-relay's link.rs).
struct TestResolver(std::sync::Mutex<Option<ChaCha20Rng>>);

struct TestRng(ChaCha20Rng);

impl snow::types::Random for TestRng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

impl snow::resolvers::CryptoResolver for TestResolver {
    fn resolve_rng(&self) -> Option<Box<dyn snow::types::Random>> {
        let rng = self.0.lock().ok()?.take()?;
        Some(Box::new(TestRng(rng)))
    }

    fn resolve_dh(&self, c: &snow::params::DHChoice) -> Option<Box<dyn snow::types::Dh>> {
        snow::resolvers::DefaultResolver.resolve_dh(c)
    }

    fn resolve_hash(&self, c: &snow::params::HashChoice) -> Option<Box<dyn snow::types::Hash>> {
        snow::resolvers::DefaultResolver.resolve_hash(c)
    }

    fn resolve_cipher(
        &self,
        c: &snow::params::CipherChoice,
    ) -> Option<Box<dyn snow::types::Cipher>> {
        snow::resolvers::DefaultResolver.resolve_cipher(c)
    }
}

/// A Noise XK initiator written with snow directly, to send what `Link` refuses to.
struct RawNoise {
    stream: TcpStream,
    transport: snow::TransportState,
}

impl RawNoise {
    async fn write_msg(stream: &mut TcpStream, msg: &[u8]) {
        let len = u16::try_from(msg.len()).unwrap().to_be_bytes();
        stream.write_all(&len).await.unwrap();
        stream.write_all(msg).await.unwrap();
    }

    async fn read_msg(stream: &mut TcpStream) -> Vec<u8> {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.unwrap();
        let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut msg).await.unwrap();
        msg
    }

    async fn connect(entry: &RelayEntry, rng: &mut ChaCha20Rng) -> Self {
        let me = X25519Secret::generate(rng).to_secret_bytes();
        let resolver = TestResolver(std::sync::Mutex::new(Some(ChaCha20Rng::seed_from_u64(
            rng.next_u64(),
        ))));
        let mut hs =
            snow::Builder::with_resolver(link::NOISE_PATTERN.parse().unwrap(), Box::new(resolver))
                .prologue(link::PROLOGUE)
                .and_then(|b| b.local_private_key(me.expose()))
                .and_then(|b| b.remote_public_key(&entry.noise_key))
                .and_then(|b| b.build_initiator())
                .unwrap();
        let mut stream = TcpStream::connect(entry.addr).await.unwrap();
        let mut buf = vec![0u8; 65535];
        let n = hs.write_message(&[], &mut buf).unwrap();
        Self::write_msg(&mut stream, &buf[..n]).await;
        let reply = Self::read_msg(&mut stream).await;
        hs.read_message(&reply, &mut buf).unwrap();
        let n = hs.write_message(&[], &mut buf).unwrap();
        Self::write_msg(&mut stream, &buf[..n]).await;
        let transport = hs.into_transport_mode().unwrap();
        Self { stream, transport }
    }

    /// Reads and decrypts one transport message (proves the handshake succeeded).
    async fn recv_plain(&mut self) -> Vec<u8> {
        let msg = tokio::time::timeout(Duration::from_secs(10), Self::read_msg(&mut self.stream))
            .await
            .expect("a transport message within 10 s");
        let mut buf = vec![0u8; msg.len()];
        let n = self.transport.read_message(&msg, &mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    async fn send(&mut self, plain: &[u8]) {
        let mut buf = vec![0u8; plain.len() + 16];
        let n = self.transport.write_message(plain, &mut buf).unwrap();
        Self::write_msg(&mut self.stream, &buf[..n]).await;
    }

    /// Reads (and discards) until the relay closes the connection, at most 10 s.
    async fn expect_closed(&mut self) {
        let mut buf = [0u8; 4096];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "the relay kept a link that sent an oversized frame"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_in_order_exactly_once_both_ways_offline_and_impostor() {
    let seed = 0x00e2_e001;
    println!("seed {seed:#x}");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let (net, dir) = start_net(5).await;
    let nodes = net.node_ids();
    let alice = User::init("alice", &net, nodes[0]).await;
    let bob = User::init("bob", &net, nodes[1]).await;
    // First runs publish the contact cards.
    for u in [&alice, &bob] {
        let out = u.run(&["inbox"]).await;
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("no new messages"));
    }

    // Peers that cannot be written to: an address that is not a contact, an identity key
    // whose card is not in the DHT. One line each, saying what to do.
    let stranger = IdentityKeyPair::generate(&mut rng).public_key();
    let stranger_address = stranger.address().to_string();
    let stranger_key = hex(stranger.as_bytes());
    for (peer, hint) in [
        (stranger_address.as_str(), "pass their identity key"),
        (stranger_key.as_str(), "zentalk inbox"),
    ] {
        let out = alice.run(&["send", peer, "hi", "--wait", "1"]).await;
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let log = log_tail(&alice.log_path());
        let last = log.last().unwrap();
        assert!(
            last.starts_with("zentalk: ") && last.contains(hint),
            "{last}"
        );
    }

    // Bob online in a chat; Alice sends with `zentalk send`, each delivered.
    let mut bob_chat = bob.chat(&alice);
    bob_chat
        .expect("the prompt", |l| l.starts_with("type a line"))
        .await;
    let to_bob: Vec<String> = (0..3)
        .map(|i| random_text(&mut rng, &format!("a{i}")))
        .collect();
    for t in &to_bob {
        let out = alice.run(&["send", &bob.identity, t, "--wait", "20"]).await;
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "delivered");
    }
    for t in &to_bob {
        let line = bob_chat.expect(t, |l| l.starts_with("them: ")).await;
        assert_eq!(line, format!("them: {t}"), "out of order or not once");
    }
    // Bob answers in the chat (Alice is offline: her `send` runs have exited) and leaves;
    // Alice's next `inbox` prints the answers once, in order.
    let to_alice: Vec<String> = (0..2)
        .map(|i| random_text(&mut rng, &format!("b{i}")))
        .collect();
    for t in &to_alice {
        bob_chat.type_line(t);
        bob_chat.expect("sent", |l| l.starts_with("  (sent ")).await;
    }
    bob_chat.quit().await;
    let seen = bob_chat.seen.join("\n");
    for t in &to_bob {
        assert_eq!(seen.matches(t.as_str()).count(), 1, "{seen}");
    }
    let out = alice.run(&["inbox"]).await;
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_in_order_once(&stdout, &to_alice);
    assert!(stdout.contains(&bob.address), "sender shown: {stdout}");
    let again = alice.run(&["inbox"]).await;
    let again = String::from_utf8(again.stdout).unwrap();
    assert!(
        to_alice.iter().all(|t| !again.contains(t.as_str())),
        "{again}"
    );

    // Bob offline: Alice is told her texts are queued.
    let offline: Vec<String> = (0..2)
        .map(|i| random_text(&mut rng, &format!("o{i}")))
        .collect();
    for t in &offline {
        let out = alice.run(&["send", &bob.address, t, "--wait", "1"]).await;
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "queued, will retry on next run"
        );
    }
    // Meanwhile an impostor goes for Bob's contact mailbox.
    impostor_tries(&net, &dir, &bob, &mut rng).await;
    // Bob back: everything, once, in order, and nothing he already had.
    let mut got = String::new();
    for _ in 0..10 {
        let out = bob.run(&["inbox"]).await;
        assert!(out.status.success());
        got.push_str(&String::from_utf8(out.stdout).unwrap());
        if offline.iter().all(|t| got.contains(t.as_str())) {
            break;
        }
        // A packet still crossing the relays (or dropped and retried by Alice's next run).
        let _ = alice.run(&["inbox"]).await;
    }
    assert_in_order_once(&got, &offline);
    assert!(to_bob.iter().all(|t| !got.contains(t.as_str())), "{got}");
    // Alice's next run gets both delivery receipts and has nothing pending.
    let mut receipts = 0;
    for _ in 0..10 {
        let out = alice.run(&["inbox"]).await;
        let s = String::from_utf8(out.stdout).unwrap();
        receipts += s.matches("delivered: message").count();
        if receipts >= 2 && !s.contains("not yet delivered") {
            break;
        }
        let _ = bob.run(&["inbox"]).await;
    }
    assert!(receipts >= 2, "receipts {receipts}");

    let mut texts = to_bob.clone();
    texts.extend(to_alice);
    texts.extend(offline);
    scan_logs(&net, &[&alice, &bob], &texts).await;
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_a_relay_loses_nothing_and_duplicates_nothing() {
    let seed = 0x00e2_e002;
    println!("seed {seed:#x}");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let (mut net, _dir) = start_net(5).await;
    let nodes = net.node_ids();
    // Mailboxes on relays 1 (Alice) and 2 (Bob) only; relays 3-5 only forward.
    let alice = User::init("alice", &net, nodes[0]).await;
    let bob = User::init("bob", &net, nodes[1]).await;
    for u in [&alice, &bob] {
        assert!(u.run(&["inbox"]).await.status.success());
    }
    let mut bob_chat = bob.chat(&alice);
    bob_chat
        .expect("the prompt", |l| l.starts_with("type a line"))
        .await;
    let mut alice_chat = alice.chat(&bob);
    alice_chat
        .expect("the prompt", |l| l.starts_with("type a line"))
        .await;

    let texts: Vec<String> = (0..10)
        .map(|i| random_text(&mut rng, &format!("k{i}")))
        .collect();
    for (i, t) in texts.iter().enumerate() {
        alice_chat.type_line(t);
        // Alice is told each text was sent before the next.
        alice_chat
            .expect("sent", |l| l.starts_with("  (sent "))
            .await;
        if i == 4 {
            let victim = net.relay_mut(2).unwrap();
            assert!(victim.is_running());
            victim.kill(); // SIGKILL: no flush, no goodbye
            println!("relay3 killed with SIGKILL after 5 texts");
        }
    }
    for t in &texts {
        let line = bob_chat.expect(t, |l| l.starts_with("them: ")).await;
        assert_eq!(
            line,
            format!("them: {t}"),
            "lost, duplicated or out of order"
        );
    }
    // Evidence of the detour (not asserted: a run may never have routed through relay3).
    let avoided = alice_chat
        .seen
        .iter()
        .filter(|l| l.contains("routes avoid"))
        .count();
    let gaps = bob_chat
        .seen
        .iter()
        .filter(|l| l.contains("not arrived yet"))
        .count();
    println!("first hops avoided after a failure: {avoided}; gaps bob saw and waited out: {gaps}");
    let mut delivered = alice_chat
        .seen
        .iter()
        .filter(|l| l.starts_with("  (delivered "))
        .count();
    while delivered < texts.len() {
        alice_chat
            .expect("delivered", |l| l.starts_with("  (delivered "))
            .await;
        delivered += 1;
    }
    alice_chat.quit().await;
    bob_chat.quit().await;
    let seen = bob_chat.seen.join("\n");
    for t in &texts {
        assert_eq!(seen.matches(t.as_str()).count(), 1, "{seen}");
    }

    // Bob offline; Alice is told two more texts are queued; then a second forwarding relay
    // is killed. Nothing she was told is queued is lost, nothing arrives twice: what a dead
    // relay swallowed is retried by her next runs on other routes.
    let queued: Vec<String> = (0..2)
        .map(|i| random_text(&mut rng, &format!("q{i}")))
        .collect();
    for t in &queued {
        let out = alice.run(&["send", &bob.address, t, "--wait", "1"]).await;
        assert_eq!(out.status.code(), Some(3), "{out:?}");
    }
    net.relay_mut(3).unwrap().kill();
    println!("relay4 killed with SIGKILL while two texts were queued");
    let mut got = String::new();
    for _ in 0..15 {
        let out = bob.run(&["inbox"]).await;
        got.push_str(&String::from_utf8(out.stdout).unwrap());
        if queued.iter().all(|t| got.contains(t.as_str())) {
            break;
        }
        let _ = alice.run(&["inbox"]).await;
    }
    assert_in_order_once(&got, &queued);
    assert!(texts.iter().all(|t| !got.contains(t.as_str())), "{got}");

    let mut all = texts.clone();
    all.extend(queued);
    scan_logs(&net, &[&alice, &bob], &all).await;
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_links_lose_only_their_own_link() {
    let seed = 0x00e2_e003;
    println!("seed {seed:#x}");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let (mut net, dir) = start_net(4).await;
    let nodes = net.node_ids();
    let alice = User::init("alice", &net, nodes[0]).await;
    let bob = User::init("bob", &net, nodes[1]).await;
    for u in [&alice, &bob] {
        assert!(u.run(&["inbox"]).await.status.success());
    }
    let mut bob_chat = bob.chat(&alice);
    bob_chat
        .expect("the prompt", |l| l.starts_with("type a line"))
        .await;
    let mut alice_chat = alice.chat(&bob);
    alice_chat
        .expect("the prompt", |l| l.starts_with("type a line"))
        .await;
    let before = random_text(&mut rng, "h0");
    alice_chat.type_line(&before);
    bob_chat.expect(&before, |l| l.starts_with("them: ")).await;

    // Bob's mailbox relay, which holds his pushed link, is attacked.
    let target = relay_entry(&dir, nodes[1]);
    // 1. Garbage instead of a handshake: the relay closes that connection.
    let mut garbage = TcpStream::connect(target.addr).await.unwrap();
    garbage.write_all(&[0x00, 48]).await.unwrap();
    garbage.write_all(&[0xde; 48]).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), garbage.read(&mut buf))
        .await
        .expect("the relay closes a garbage connection")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // 2. Half a handshake, left hanging while the conversation goes on.
    let mut half = TcpStream::connect(target.addr).await.unwrap();
    half.write_all(&[0x00, 48, 1, 2, 3]).await.unwrap();
    // 3. An oversized frame after a good handshake: an onion packet frame whose header
    //    claims (and whose body carries) more than the per-type limit. The Frame API refuses
    //    to build one, so it is written by hand inside a raw Noise session.
    let mut raw_link = RawNoise::connect(&target, &mut rng).await;
    // The relay's opening frame (its mailbox challenge) decrypts: the session is genuine, so
    // what closes it below is the frame, not a failed handshake.
    let opening = raw_link.recv_plain().await;
    assert_eq!(&opening[..4], &zentalk_wire::MAGIC[..]);
    let oversized = zentalk_wire::MAX_ONION_PACKET_LEN + 1000;
    let mut plain = zentalk_wire::bytes::BytesMut::new();
    Frame::onion_packet(
        MessageId::random(&mut rng),
        Flags::EMPTY,
        zentalk_wire::bytes::Bytes::from(vec![0; 100]),
    )
    .unwrap()
    .encode_into(&mut plain);
    let mut plain = plain.to_vec();
    plain.truncate(zentalk_wire::HEADER_LEN);
    let off = zentalk_wire::OFFSET_BODY_LEN;
    plain[off..off + 4].copy_from_slice(&u32::try_from(oversized).unwrap().to_be_bytes());
    plain.resize(zentalk_wire::HEADER_LEN + oversized, 0x55);
    raw_link.send(&plain).await;
    raw_link.expect_closed().await;
    // 4. Garbage inside a good Noise link.
    let mut tampered = noise_link(&target, &mut rng).await;
    let _ = recv(&mut tampered).await;
    let mut raw = vec![0x00, 64];
    raw.extend([0xaa; 64]);
    tampered.get_mut().write_all(&raw).await.unwrap();
    assert!(tampered.recv().await.is_err());

    // The conversation through that relay never noticed.
    let after: Vec<String> = (1..4)
        .map(|i| random_text(&mut rng, &format!("h{i}")))
        .collect();
    for t in &after {
        alice_chat.type_line(t);
    }
    for t in &after {
        let line = bob_chat.expect(t, |l| l.starts_with("them: ")).await;
        assert_eq!(line, format!("them: {t}"));
    }
    assert!(net.relay_mut(1).unwrap().is_running());
    drop(half);
    alice_chat.quit().await;
    bob_chat.end_of_input().await; // Ctrl-D
    let mut texts = vec![before];
    texts.extend(after);
    scan_logs(&net, &[&alice, &bob], &texts).await;
    net.stop().await;
}

/// One HTTP/1.1 request over a fresh connection; returns the whole response.
async fn http(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_local_api_until_sigterm() {
    let (net, _dir) = start_net(3).await;
    let nodes = net.node_ids();
    let alice = User::init("alice", &net, nodes[0]).await;
    let mut serve = alice.spawn(&["serve", "--listen", "127.0.0.1:0"]);
    let api = serve
        .expect("the API address", |l| l.starts_with("local API"))
        .await;
    let addr = api.rsplit("http://").next().unwrap().to_owned();
    let token_line = serve
        .expect("the token file", |l| l.starts_with("token file"))
        .await;
    let token_path = PathBuf::from(token_line.trim_start_matches("token file").trim());
    let token = std::fs::read_to_string(&token_path)
        .unwrap()
        .trim()
        .to_owned();
    let ok = http(
        &addr,
        &format!(
            "GET /v1/account HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains(&alice.address), "{ok}");
    let refused = http(
        &addr,
        &format!("GET /v1/account HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    serve.terminate().await;
    assert!(
        serve.seen.iter().any(|l| l == "shutting down"),
        "{:?}",
        serve.seen
    );
    // The token never reaches a log either.
    scan_logs(&net, &[&alice], &[token]).await;
    net.stop().await;
}

/// Runs `zentalk` without logging; returns (exit code, stdout, stderr).
async fn zentalk_plain(args: &[&str], password: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(ZENTALK);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("ZENTALK_DIR")
        .env_remove("ZENTALK_PASSWORD")
        .env("ZENTALK_TEST_FAST_TIMERS", "1")
        .stdin(Stdio::null());
    if let Some(p) = password {
        cmd.env("ZENTALK_PASSWORD", p);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One line on standard error, starting `zentalk: ` and containing `hint`; exit status 1.
fn assert_one_line_error(r: &(Option<i32>, String, String), hint: &str) {
    let (code, _, stderr) = r;
    assert_eq!(*code, Some(1), "{r:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("zentalk: "), "{stderr}");
    assert!(stderr.contains(hint), "{stderr} lacks {hint:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_one_line_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let node = NodeId::from_bytes([7; 32]).to_hex();
    // No account yet.
    let r = zentalk_plain(&["--dir", d, "inbox"], Some(PASSWORD)).await;
    assert_one_line_error(&r, "zentalk init");
    // No password.
    let init = [
        "--dir",
        d,
        "init",
        "--dht-bootstrap",
        "127.0.0.1:9",
        "--contact-relay",
        &node,
        "--test-fast-kdf",
    ];
    assert_one_line_error(&zentalk_plain(&init, None).await, "ZENTALK_PASSWORD");
    // A malformed relay id.
    let mut bad = init;
    bad[6] = "not-a-node";
    assert_one_line_error(
        &zentalk_plain(&bad, Some(PASSWORD)).await,
        "--contact-relay",
    );
    // Created once, never overwritten.
    let r = zentalk_plain(&init, Some(PASSWORD)).await;
    assert_eq!(r.0, Some(0), "{r:?}");
    assert_one_line_error(
        &zentalk_plain(&init, Some(PASSWORD)).await,
        "not overwriting",
    );
    // The wrong password.
    let r = zentalk_plain(&["--dir", d, "whoami"], Some("wrong")).await;
    assert_one_line_error(&r, "ZENTALK_PASSWORD");
    // A DHT bootstrap node that does not answer.
    let r = zentalk_plain(&["--dir", d, "inbox"], Some(PASSWORD)).await;
    assert_one_line_error(&r, "dht_bootstrap");
    // Usage errors: status 2.
    let r = zentalk_plain(&["--dir", d, "send", "nobody", "hi"], Some(PASSWORD)).await;
    assert_eq!(r.0, Some(2), "{r:?}");
    let r = zentalk_plain(&["--dir", d, "chat"], Some(PASSWORD)).await;
    assert_eq!(r.0, Some(2), "{r:?}");
}
