//! `zentalk demo`: two clients talking through five real relays, in one process.
//!
//! Everything runs on 127.0.0.1: a Kademlia DHT over UDP, five zentalk-relay relays (TCP, Noise
//! XK links, onion forwarding over relay-to-relay links, SQLite mailboxes in a temporary
//! directory, the opt-in demo observation log) and two clients, each a zentalk-client driver
//! with its own encrypted store and DHT node. Relays publish signed descriptors in the DHT and
//! find their next hops there; the clients build their directory from the same descriptors,
//! looked up by node id, find each other's contact card in the DHT, hold one authenticated link
//! per owned mailbox and get pushes. The network setup is [`zentalk_cli::testnet`], shared with
//! the end-to-end tests.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use rand_core::OsRng;
use tokio::sync::{broadcast, mpsc};
use zentalk_cli::testnet::{DESCRIPTOR_WAIT, Runner, Testnet, TestnetConfig};
use zentalk_client::driver::{DriverConfig, DriverEvent, DriverHandle, DriverOptions};
use zentalk_client::{Client, MessageId};
use zentalk_crypto::{Address, NodeId};
use zentalk_dht::net::DhtHandle;
use zentalk_relay::Limits;
use zentalk_relay::service::Peer;
use zentalk_storage::client::{ClientStore, KdfParams};

type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;

/// How long each step may take before the demo says what is missing and moves on.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// The demo stores are thrown away at the end; their password protects nothing.
const DEMO_PASSWORD: &[u8] = b"demo";

#[allow(
    clippy::disallowed_methods,
    reason = "the demo binary measures its own run time"
)]
fn start_clock() -> std::time::Instant {
    std::time::Instant::now()
}

fn hexs(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn short(n: &NodeId) -> String {
    hexs(&n.as_bytes()[..4])
}

struct Names {
    users: HashMap<Address, &'static str>,
    relays: HashMap<NodeId, String>,
}

impl Names {
    fn user(&self, a: &Address) -> &'static str {
        self.users.get(a).copied().unwrap_or("?")
    }

    fn relay(&self, n: &NodeId) -> String {
        self.relays.get(n).cloned().unwrap_or_else(|| short(n))
    }

    fn peer(&self, p: &Peer) -> String {
        match p {
            Peer::ClientLink => "client link".to_owned(),
            Peer::Relay(n) => self.relay(n),
            Peer::Mailbox(m) => format!("mailbox {}", hexs(m)),
            other => other.to_string(),
        }
    }

    /// One line about an event of client `me`, or `None` for bookkeeping events.
    fn describe(&self, me: &str, e: &DriverEvent) -> Option<String> {
        Some(match e {
            DriverEvent::Message {
                from, seq, text, ..
            } => format!("{me} reads #{seq} from {}: {text:?}", self.user(from)),
            DriverEvent::Delivered { to, id } => format!(
                "{me}: delivery receipt from {} for message {}",
                self.user(to),
                hexs(&id[..4])
            ),
            DriverEvent::ContactAdded { address } => {
                format!("{me}: {} is a contact now", self.user(address))
            }
            DriverEvent::MailboxCreated { relay } => format!(
                "{me}: created a fresh mailbox on {} for one contact (its own key pair)",
                self.relay(relay)
            ),
            DriverEvent::LinkUp { relay } => format!(
                "{me}: mailbox link to {} authenticated (pushes on)",
                self.relay(relay)
            ),
            DriverEvent::LinkDown { relay, .. } => {
                format!("{me}: mailbox link to {} lost", self.relay(relay))
            }
            DriverEvent::GapDetected { from, first, last } => format!(
                "{me}: messages #{first}..#{last} from {} have not arrived yet",
                self.user(from)
            ),
            DriverEvent::MessagesLost { from, first, last } => format!(
                "{me}: messages #{first}..#{last} from {} were lost",
                self.user(from)
            ),
            DriverEvent::DirectoryRefreshed { relays } => format!(
                "{me}: relay directory built from {relays} signed descriptors found in the DHT"
            ),
            DriverEvent::CardPublished { stored_on } => {
                format!("{me}: contact card published on {stored_on} DHT nodes")
            }
            DriverEvent::CardPublishFailed { reason } => {
                format!("{me}: contact card not published: {reason}")
            }
            DriverEvent::RelayDown { relay, .. } => format!(
                "{me}: {} failed a packet; routes avoid it for a while",
                self.relay(relay)
            ),
            DriverEvent::SendFailed { reason, .. } => {
                format!("{me}: a packet could not be handed over ({reason}); retried later")
            }
            _ => return None,
        })
    }
}

/// Per-client counts of what arrived, updated as events are printed.
#[derive(Debug, Default)]
struct Counts {
    /// Texts received, per client.
    messages: HashMap<&'static str, usize>,
    /// Message ids whose delivery receipt arrived.
    delivered: HashSet<MessageId>,
    /// Message ids whose first packet was handed to a first hop.
    sent: HashSet<MessageId>,
}

impl Counts {
    fn all_delivered(&self, ids: &[MessageId]) -> bool {
        ids.iter().all(|id| self.delivered.contains(id))
    }
}

/// Every client's events, merged in arrival order.
struct Feed {
    tx: mpsc::Sender<(&'static str, DriverEvent)>,
    rx: mpsc::Receiver<(&'static str, DriverEvent)>,
    counts: Counts,
}

impl Feed {
    fn new() -> Self {
        let (tx, rx) = mpsc::channel(1024);
        Self {
            tx,
            rx,
            counts: Counts::default(),
        }
    }

    /// Forwards a driver's events under `name` until it stops.
    fn attach(&self, name: &'static str, mut events: broadcast::Receiver<DriverEvent>) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(e) => {
                        if tx.send((name, e)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// Prints events until `done(counts)` holds (or [`STEP_TIMEOUT`] passes).
    async fn until(&mut self, names: &Names, done: impl Fn(&Counts) -> bool) {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        while !done(&self.counts) {
            let Ok(Some((who, e))) = tokio::time::timeout_at(deadline, self.rx.recv()).await else {
                println!("  (not settled after {STEP_TIMEOUT:?}; the clients keep retrying)");
                return;
            };
            match &e {
                DriverEvent::Message { .. } => *self.counts.messages.entry(who).or_default() += 1,
                DriverEvent::Delivered { id, .. } => {
                    self.counts.delivered.insert(*id);
                }
                DriverEvent::Sent { id, .. } => {
                    self.counts.sent.insert(*id);
                }
                _ => {}
            }
            if let Some(line) = names.describe(who, &e) {
                println!("  {line}");
            }
        }
    }
}

fn count(map: &HashMap<&'static str, usize>, who: &str) -> usize {
    map.get(who).copied().unwrap_or(0)
}

/// Starts a client driver on `store_path` (created if `client` is given, else reopened), with
/// its events from the very start.
async fn start_client(
    testnet: &Testnet,
    dht: &DhtHandle,
    store_path: &Path,
    client: Option<Client>,
) -> DemoResult<(DriverHandle, broadcast::Receiver<DriverEvent>)> {
    let (client, store) = match client {
        Some(c) => {
            // A throwaway store: cheap key derivation, the demo deletes it at the end.
            let store = ClientStore::create(store_path, DEMO_PASSWORD, KdfParams::TEST).await?;
            (c, store)
        }
        None => {
            let store = ClientStore::open(store_path, DEMO_PASSWORD).await?;
            let c = Client::load(&store)
                .await?
                .ok_or("the demo store lost its account")?;
            (c, store)
        }
    };
    let config = DriverConfig {
        dht: dht.clone(),
        limits: Limits::default(),
        relays: testnet.node_ids(),
        directory_refresh: Duration::from_secs(60),
        hold_mailbox_links: true,
    };
    let options = DriverOptions {
        retry_initial: Duration::from_millis(500),
        ..DriverOptions::default()
    };
    Ok(zentalk_client::driver::start_subscribed(client, store, config, options).await?)
}

/// Errors are reported, never unwrapped: the demo is a user-facing command.
pub(crate) fn run() -> DemoResult<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async())
}

async fn run_async() -> DemoResult<()> {
    let started = start_clock();
    let mut rng = OsRng;
    println!("ZenTalk demo: a DHT, five relays and two clients in one process, on 127.0.0.1.\n");

    println!("[network] a DHT bootstrap node and five zentalk-relay relays");
    let testnet = Testnet::start(&TestnetConfig {
        relays: 5,
        runner: Runner::InProcess,
        demo_observe: true,
    })
    .await?;
    println!("  DHT bootstrap node on UDP {}", testnet.bootstrap_addr());
    let mut relay_names = HashMap::new();
    for (i, r) in testnet.relays().iter().enumerate() {
        let name = format!("relay{}", i + 1);
        println!(
            "  {name} node {} on {} (TCP + Noise XK links, SQLite mailbox)",
            short(&r.node_id()),
            r.addr()
        );
        relay_names.insert(r.node_id(), name);
    }
    let directory = testnet.wait_for_descriptors(DESCRIPTOR_WAIT).await?;
    println!(
        "  all {} relays published signed descriptors (address, Noise key, onion keys per \
         epoch) in the DHT",
        directory.relays().len()
    );
    let nodes = testnet.node_ids();
    let (Some(relay1), Some(relay2)) = (nodes.first().copied(), nodes.get(1).copied()) else {
        return Err("the demo needs five relays".into());
    };

    let tmp = tempfile::tempdir()?;
    let alice_client = Client::new(&mut rng, relay1, nodes.clone());
    let bob_client = Client::new(&mut rng, relay2, nodes.clone());
    let (a, b) = (alice_client.address(), bob_client.address());
    let bob_identity = bob_client.identity_key();
    let names = Names {
        users: [(a, "alice"), (b, "bob")].into(),
        relays: relay_names,
    };
    println!("\n[clients] each with an encrypted store, its own DHT node and the relay node ids");
    println!("  alice {a} (contact mailbox on relay1)");
    println!("  bob   {b} (contact mailbox on relay2)");
    let mut feed = Feed::new();
    let bob_path = tmp.path().join("bob.db");
    // Each user's DHT node (their device's) lives through the whole demo.
    let (alice_dht, bob_dht) = tokio::try_join!(testnet.client_dht(), testnet.client_dht())?;
    let (bob, events) = start_client(&testnet, &bob_dht, &bob_path, Some(bob_client)).await?;
    feed.attach("bob", events);
    let alice_path = tmp.path().join("alice.db");
    let (alice, events) =
        start_client(&testnet, &alice_dht, &alice_path, Some(alice_client)).await?;
    feed.attach("alice", events);
    alice.add_contact(bob_identity).await?;
    println!(
        "  alice found bob's contact card in the DHT from his identity key (blinded lookup key) \
         and verified it"
    );

    println!("\n[1] alice writes to bob");
    let mut ids = Vec::new();
    for text in [
        "hi bob",
        "this crossed three relays",
        "none of them saw both ends",
    ] {
        ids.push(alice.send_text(b, text.to_owned()).await?);
    }
    feed.until(&names, |c| {
        count(&c.messages, "bob") >= 3 && c.all_delivered(&ids)
    })
    .await;

    println!("\n[2] bob answers");
    let ids = [bob
        .send_text(a, "hi alice, got all three".to_owned())
        .await?];
    feed.until(&names, |c| {
        count(&c.messages, "alice") >= 1 && c.all_delivered(&ids)
    })
    .await;

    println!("\n[3] bob goes offline; alice keeps writing");
    bob.shutdown().await?;
    println!("  bob's client stopped (state saved in his encrypted store)");
    let mut ids = Vec::new();
    for text in ["are you there?", "I'll wait"] {
        ids.push(alice.send_text(b, text.to_owned()).await?);
    }
    feed.until(&names, |c| ids.iter().all(|id| c.sent.contains(id)))
        .await;
    println!(
        "  alice's packets were handed to first hops; bob's mailbox relay stores what arrives"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("  bob comes back");
    let (bob, events) = start_client(&testnet, &bob_dht, &bob_path, None).await?;
    feed.attach("bob", events);
    feed.until(&names, |c| {
        count(&c.messages, "bob") >= 5 && c.all_delivered(&ids)
    })
    .await;
    alice.shutdown().await?;
    bob.shutdown().await?;

    println!("\n[what each relay saw] predecessor -> successor, packet size");
    let (mut packets, mut both, mut sizes) = (0usize, 0usize, std::collections::BTreeSet::new());
    for r in testnet.relays() {
        let obs = r.observations();
        println!("  {}: {} packets", names.relay(&r.node_id()), obs.len());
        for o in &obs {
            println!(
                "    {:>11} -> {:<16} {} bytes",
                names.peer(&o.predecessor),
                names.peer(&o.successor),
                o.packet_len
            );
            sizes.insert(o.packet_len);
            if matches!(o.successor, Peer::Mailbox(_)) {
                packets += 1;
            }
            if matches!(o.predecessor, Peer::ClientLink) && matches!(o.successor, Peer::Mailbox(_))
            {
                both += 1;
            }
        }
    }
    println!(
        "\n  {packets} packets delivered to mailboxes (messages, receipts, mailbox hand-overs); \
         packet sizes seen {sizes:?}; relay observations with both a client link and a \
         mailbox: {both}"
    );
    testnet.stop().await;
    println!("Finished in {} ms.", started.elapsed().as_millis());
    Ok(())
}
