//! `zentalk demo`: two clients talking through five real relays, in one process.
//!
//! Everything runs on 127.0.0.1: a Kademlia DHT over UDP (where Bob's contact card is
//! published under its blinded key and found by Alice), five zentalk-relay relays (TCP, Noise
//! XK links, onion forwarding over relay-to-relay links, SQLite mailboxes in a temporary
//! directory, the opt-in demo observation log) and two zentalk-client engines driven by
//! `net::sync_once`. The relays find each other through an in-process directory (not the
//! DHT), and the clients' relay list comes from the same place; the demo says so.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use rand_core::OsRng;
use zentalk_client::net::sync_once;
use zentalk_client::{Client, ContactCard, Directory, Event, RelayEntry};
use zentalk_crypto::{Address, IdentityKeyPair, NodeId};
use zentalk_dht::net::{DhtHandle, NetConfig, spawn};
use zentalk_dht::{PrekeyLocator, prekey_period};
use zentalk_relay::epoch::epoch_at;
use zentalk_relay::service::Peer;
use zentalk_relay::{Limits, Relay, RelayConfig, RelayHandle, RelayKeys, StaticDirectory};

type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;

#[allow(clippy::disallowed_methods, reason = "the demo binary reads the clock")]
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

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

    fn peer(&self, p: &Peer) -> String {
        match p {
            Peer::ClientLink => "client link".to_owned(),
            Peer::Relay(n) => self.relays.get(n).cloned().unwrap_or_else(|| short(n)),
            Peer::Mailbox(m) => format!("mailbox {}", hexs(m)),
            other => other.to_string(),
        }
    }
}

fn report(c: &mut Client, me: &str, names: &Names) {
    while let Some(e) = c.poll_event() {
        match e {
            Event::Message {
                from, seq, text, ..
            } => {
                println!("  {me} reads #{seq} from {}: {text:?}", names.user(&from));
            }
            Event::Delivered { to, id } => println!(
                "  {me}: delivery receipt from {} for message {}",
                names.user(&to),
                hexs(&id[..4])
            ),
            Event::ContactAdded { address } => println!(
                "  {me}: {} wrote to the contact mailbox (a new contact)",
                names.user(&address)
            ),
            Event::MailboxCreated { mailbox } => println!(
                "  {me}: created a fresh mailbox {} on {} for one contact (its own key pair)",
                hexs(&mailbox.mailbox.as_bytes()[..4]),
                names
                    .relays
                    .get(&mailbox.relay)
                    .cloned()
                    .unwrap_or_default()
            ),
            Event::GapDetected { from, first, last } => println!(
                "  {me}: messages #{first}..#{last} from {} have not arrived yet",
                names.user(&from)
            ),
            Event::MessagesLost { from, first, last } => println!(
                "  {me}: messages #{first}..#{last} from {} were lost",
                names.user(&from)
            ),
            other => println!("  {me}: {other:?}"),
        }
    }
}

async fn dht_node(seed: Option<std::net::SocketAddr>) -> DemoResult<DhtHandle> {
    let id = IdentityKeyPair::generate(&mut OsRng);
    let (h, _task) = spawn(id, "127.0.0.1:0".parse()?, NetConfig::default()).await?;
    if let Some(s) = seed {
        h.bootstrap(vec![s]).await?;
    }
    Ok(h)
}

/// Errors are reported, never unwrapped: the demo is a user-facing command.
pub(crate) fn run() -> DemoResult<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async())
}

struct Net {
    dir: Directory,
    epoch: u32,
    limits: Limits,
}

impl Net {
    /// One sync round of `c` (fetch its mailboxes, then send what it queued), then a pause
    /// for packets to cross the relay-to-relay links.
    async fn sync(&self, c: &mut Client, now: u64) -> DemoResult<zentalk_client::net::SyncReport> {
        let r = sync_once(c, &self.dir, self.epoch, &self.limits, &mut OsRng, now).await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(r)
    }

    /// Sync rounds of `x` then `y` until neither has unacknowledged messages (at most
    /// `MAX_ROUNDS`, so a lost packet cannot hang the demo).
    async fn settle(
        &self,
        x: (&mut Client, &str),
        y: (&mut Client, &str),
        names: &Names,
        now: u64,
    ) -> DemoResult<()> {
        const MAX_ROUNDS: usize = 100;
        let ((x, xn), (y, yn)) = (x, y);
        for _ in 0..MAX_ROUNDS {
            self.sync(x, now).await?;
            report(x, xn, names);
            self.sync(y, now).await?;
            report(y, yn, names);
            let idle = |c: &Client| c.contacts().iter().all(|k| k.unacknowledged == 0);
            if idle(x) && idle(y) {
                return Ok(());
            }
        }
        println!("  (still unacknowledged after {MAX_ROUNDS} rounds; retries continue)");
        Ok(())
    }
}

async fn run_async() -> DemoResult<()> {
    let started = start_clock();
    let mut rng = OsRng;
    println!("ZenTalk demo: a DHT, five relays and two clients in one process, on 127.0.0.1.\n");

    println!("[dht] Kademlia nodes on UDP");
    let boot = dht_node(None).await?;
    let seed = boot.local_addr();
    let mut dht = vec![boot];
    for _ in 0..4 {
        dht.push(dht_node(Some(seed)).await?);
    }
    println!("  bootstrap node {seed}, {} nodes", dht.len());

    println!("[relays] five zentalk-relay relays: TCP + Noise XK links, SQLite mailboxes");
    let tmp = tempfile::tempdir()?;
    let static_dir = Arc::new(StaticDirectory::new());
    let mut handles: Vec<RelayHandle> = Vec::new();
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    let mut relay_names = HashMap::new();
    for i in 0..5 {
        let config = RelayConfig {
            listen_addr: "127.0.0.1:0".parse()?,
            metrics_addr: "127.0.0.1:0".parse()?,
            mailbox_path: tmp.path().join(format!("relay{}.sqlite", i + 1)),
            demo_observe: true,
            shutdown_grace: Duration::from_secs(1),
            ..RelayConfig::default()
        };
        let dyn_dir: Arc<dyn zentalk_relay::Directory> = static_dir.clone();
        let relay =
            Relay::bind_with_directory(config, RelayKeys::generate(&mut rng), Some(dyn_dir))
                .await?;
        let h = relay.handle();
        static_dir.insert(h.peer_info());
        let name = format!("relay{}", i + 1);
        println!(
            "  {name} node {} listening on {}",
            short(&h.node_id()),
            h.peer_info().addr
        );
        relay_names.insert(h.node_id(), name);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tasks.push(tokio::spawn(async move {
            relay
                .run(async {
                    let _ = stopped.await;
                })
                .await
        }));
        handles.push(h);
        stops.push(stop);
    }
    let entries: Vec<RelayEntry> = handles
        .iter()
        .map(|h| {
            let p = h.peer_info();
            RelayEntry {
                node: p.node,
                addr: p.addr,
                noise_key: p.noise_key.to_bytes(),
                onion_keys: p
                    .onion_keys
                    .iter()
                    .map(|(e, k)| (u64::from(*e), k.to_bytes()))
                    .collect(),
            }
        })
        .collect();
    let now = unix_ms();
    let net = Net {
        dir: Directory::new(entries),
        epoch: epoch_at(now / 1000),
        limits: Limits::default(),
    };
    let nodes: Vec<NodeId> = handles.iter().map(RelayHandle::node_id).collect();

    let mut alice = Client::new(&mut rng, nodes[0], nodes.clone());
    let mut bob = Client::new(&mut rng, nodes[1], nodes.clone());
    let names = Names {
        users: [(alice.address(), "alice"), (bob.address(), "bob")].into(),
        relays: relay_names,
    };
    println!("\n[clients]");
    println!("  alice {} (contact mailbox on relay1)", alice.address());
    println!("  bob   {} (contact mailbox on relay2)", bob.address());
    let record = bob.card_record(&mut rng, now, 1)?;
    let stored = dht[2].publish(record.clone()).await?;
    println!(
        "  bob's signed contact card stored on {stored} DHT nodes under blinded key {}",
        short(&record.key)
    );
    let locator = PrekeyLocator::new(&bob.identity_key(), prekey_period(now))?;
    let found = dht[3]
        .find_value(locator.key())
        .await?
        .ok_or("bob's card was not found in the DHT")?;
    let card = ContactCard::from_bytes(&locator.open(&found, now)?)?;
    println!("  alice found it from bob's identity key and verified both signatures");
    let b = alice.add_contact(&card);
    let a = alice.address();

    println!("\n[1] alice writes to bob");
    for text in [
        "hi bob",
        "this crossed three relays",
        "none of them saw both ends",
    ] {
        alice.send_text(&mut rng, &b, text, now)?;
    }
    net.settle((&mut alice, "alice"), (&mut bob, "bob"), &names, now)
        .await?;

    println!("\n[2] bob answers");
    bob.send_text(&mut rng, &a, "hi alice, got all three", now)?;
    net.settle((&mut bob, "bob"), (&mut alice, "alice"), &names, now)
        .await?;

    println!("\n[3] bob goes offline; alice keeps writing");
    for text in ["are you there?", "I'll wait"] {
        alice.send_text(&mut rng, &b, text, now)?;
    }
    let r = net.sync(&mut alice, now).await?;
    println!(
        "  alice handed {} packets to first hops; bob's mailbox relays keep them",
        r.sent
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("  bob comes back");
    let r = net.sync(&mut bob, now).await?;
    println!("  bob fetched {} items from his mailboxes", r.fetched);
    report(&mut bob, "bob", &names);
    net.settle((&mut bob, "bob"), (&mut alice, "alice"), &names, now)
        .await?;

    println!("\n[what each relay saw] predecessor -> successor, packet size");
    let (mut packets, mut both, mut sizes) = (0usize, 0usize, std::collections::BTreeSet::new());
    for h in &handles {
        let obs = h.observations();
        let name = names.relays.get(&h.node_id()).cloned().unwrap_or_default();
        println!("  {name}: {} packets", obs.len());
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
        "\n  {packets} packets delivered to mailboxes; packet sizes seen {sizes:?}; \
         relay observations with both a client link and a mailbox: {both}"
    );
    println!(
        "\nNot used in this demo: relay descriptors in the DHT (relays and clients share an \
         in-process directory), mailbox pushes (clients fetch in rounds)."
    );
    for s in stops {
        let _ = s.send(());
    }
    for t in tasks {
        let _ = t.await;
    }
    println!("Finished in {} ms.", started.elapsed().as_millis());
    Ok(())
}
