//! `zentalk demo`: two clients talking through three onion relays, in one process.
//!
//! What is real here: identities, X3DH and the Double Ratchet, contact cards published to and
//! found in a Kademlia DHT over UDP on 127.0.0.1 (blinded keys), fixed-size onion packets
//! built by the client SDK and peeled by zentalk-onion relay state machines with their own
//! epoch keys, per-contact mailbox handover, receipts, retries and ordering.
//! What is not wired yet (printed as such): the TCP/Noise relay links and the relays' SQLite
//! mailboxes; packets are handed between the in-process relays, and each mailbox is a queue
//! held by the demo.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use rand_core::OsRng;
use zentalk_client::{Client, ContactCard, Directory, Event, RelayEntry};
use zentalk_crypto::{IdentityKeyPair, NodeId, X25519Secret};
use zentalk_dht::net::{DhtHandle, NetConfig, spawn};
use zentalk_dht::{PrekeyLocator, prekey_period};
use zentalk_onion::{DEFAULT_REPLAY_CAPACITY, MailboxId, OnionRelay, Processed};

type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;

/// One hop's view of one packet.
struct Observation {
    predecessor: String,
    successor: String,
    size: usize,
}

struct DemoRelay {
    name: String,
    node: NodeId,
    onion: OnionRelay,
    seen: Vec<Observation>,
}

struct World {
    relays: Vec<DemoRelay>,
    directory: Directory,
    epoch: u32,
    mailboxes: HashMap<MailboxId, Vec<Vec<u8>>>,
    /// Packets in which one relay saw both the client link and the mailbox.
    both_ends: usize,
    packets: usize,
}

#[allow(clippy::disallowed_methods, reason = "the demo binary reads the clock")]
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn short(n: &NodeId) -> String {
    n.to_hex().chars().take(8).collect()
}

impl World {
    fn name_of(&self, n: &NodeId) -> String {
        self.relays
            .iter()
            .find(|r| r.node == *n)
            .map_or_else(|| short(n), |r| r.name.clone())
    }

    /// Wraps and routes everything `c` has to send.
    fn flush(&mut self, c: &mut Client, who: &str) -> DemoResult<()> {
        let mut rng = OsRng;
        while let Some(out) = c.poll_outgoing() {
            let (packet, route) =
                self.directory
                    .wrap(&mut rng, &out.dest, self.epoch, &out.payload)?;
            let names: Vec<String> = route.iter().map(|n| self.name_of(n)).collect();
            println!(
                "  {who} -> {} -> mailbox {}  ({} byte payload in a {} byte packet)",
                names.join(" -> "),
                &hexs(out.dest.mailbox.as_bytes())[..8],
                out.payload.len(),
                packet.packet.len()
            );
            self.packets += 1;
            let mut predecessor = "client link".to_owned();
            let (mut next, mut bytes) = (packet.first_hop, packet.packet.into_bytes());
            loop {
                let size = bytes.len();
                let epoch = self.epoch;
                let relay = self
                    .relays
                    .iter_mut()
                    .find(|r| r.node == next)
                    .ok_or("route names an unknown relay")?;
                let me = relay.name.clone();
                match relay.onion.process(&bytes, epoch)? {
                    Processed::Forward { next_hop, packet } => {
                        let succ = self.name_of(&next_hop);
                        let relay = self
                            .relays
                            .iter_mut()
                            .find(|r| r.node == next)
                            .ok_or("relay vanished")?;
                        relay.seen.push(Observation {
                            predecessor: predecessor.clone(),
                            successor: succ,
                            size,
                        });
                        predecessor = me;
                        (next, bytes) = (next_hop, packet.into_bytes());
                    }
                    Processed::Deliver { mailbox, message } => {
                        if predecessor == "client link" {
                            self.both_ends += 1;
                        }
                        relay.seen.push(Observation {
                            predecessor: predecessor.clone(),
                            successor: format!("mailbox {}", &hexs(mailbox.as_bytes())[..8]),
                            size,
                        });
                        self.mailboxes.entry(mailbox).or_default().push(message);
                        break;
                    }
                    Processed::Reply { .. } => return Err("unexpected reply packet".into()),
                }
            }
        }
        Ok(())
    }

    /// `c` empties its mailboxes; returns how many items it found.
    fn fetch(&mut self, c: &mut Client, now: u64) -> DemoResult<usize> {
        let mut rng = OsRng;
        let ids: Vec<MailboxId> = c.mailboxes().iter().map(|m| m.id()).collect();
        let mut n = 0;
        for id in ids {
            for p in self.mailboxes.remove(&id).unwrap_or_default() {
                c.handle_delivery(&mut rng, &id, &p, now)?;
                n += 1;
            }
        }
        Ok(n)
    }
}

fn hexs(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn report(c: &mut Client, me: &str, names: &HashMap<zentalk_crypto::Address, &str>) {
    while let Some(e) = c.poll_event() {
        let name = |a: &zentalk_crypto::Address| names.get(a).copied().unwrap_or("?");
        match e {
            Event::Message {
                from, seq, text, ..
            } => {
                println!("  {me} reads #{seq} from {}: {text:?}", name(&from));
            }
            Event::Delivered { to, id } => {
                println!(
                    "  {me}: delivery receipt from {} for {}",
                    name(&to),
                    &hexs(&id)[..8]
                );
            }
            Event::ContactAdded { address } => {
                println!(
                    "  {me}: new contact {} wrote to the contact mailbox",
                    name(&address)
                );
            }
            Event::MailboxCreated { mailbox } => println!(
                "  {me}: created a fresh mailbox {} for one contact (own key pair)",
                &hexs(mailbox.mailbox.as_bytes())[..8]
            ),
            Event::GapDetected { from, first, last } => {
                println!(
                    "  {me}: messages #{first}..#{last} from {} are missing",
                    name(&from)
                );
            }
            Event::MessagesLost { from, first, last } => {
                println!(
                    "  {me}: messages #{first}..#{last} from {} were lost",
                    name(&from)
                );
            }
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async())
}

#[allow(
    clippy::disallowed_methods,
    reason = "the demo binary measures its own run time"
)]
fn start_clock() -> std::time::Instant {
    std::time::Instant::now()
}

async fn run_async() -> DemoResult<()> {
    let started = start_clock();
    let mut rng = OsRng;
    println!("ZenTalk demo: two clients, a DHT and five onion relays in one process.\n");

    // DHT: a bootstrap node and four more nodes, real UDP on 127.0.0.1.
    println!("[dht] Kademlia nodes on UDP 127.0.0.1");
    let boot = dht_node(None).await?;
    let seed = boot.local_addr();
    let mut dht = vec![boot];
    for _ in 0..4 {
        dht.push(dht_node(Some(seed)).await?);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    println!("  bootstrap node at {seed}, {} nodes in all", dht.len());

    // Relays: onion state machines with their own epoch keys.
    let now = unix_ms();
    let epoch = u32::try_from(now / 1000 / 3600)?;
    let mut relays = Vec::new();
    let mut entries = Vec::new();
    for i in 0..5 {
        let identity = IdentityKeyPair::generate(&mut rng);
        let node = NodeId::of(&identity.public_key());
        let key = X25519Secret::generate(&mut rng);
        entries.push(RelayEntry {
            node,
            addr: "127.0.0.1:0".parse()?,
            noise_key: [0; 32],
            onion_keys: vec![(u64::from(epoch), key.public_key().to_bytes())],
        });
        let mut onion = OnionRelay::new(DEFAULT_REPLAY_CAPACITY / 64);
        onion.insert_epoch_key(epoch, key)?;
        relays.push(DemoRelay {
            name: format!("relay{}", i + 1),
            node,
            onion,
            seen: Vec::new(),
        });
    }
    let nodes: Vec<NodeId> = relays.iter().map(|r| r.node).collect();
    println!("[relays] five onion relays, epoch {epoch}, one X25519 onion key each");
    for r in &relays {
        println!("  {} node id {}", r.name, short(&r.node));
    }
    let mut world = World {
        relays,
        directory: Directory::new(entries),
        epoch,
        mailboxes: HashMap::new(),
        both_ends: 0,
        packets: 0,
    };

    // Clients: contact mailboxes on relay1 (Alice) and relay2 (Bob).
    let mut alice = Client::new(&mut rng, nodes[0], nodes.clone());
    let mut bob = Client::new(&mut rng, nodes[1], nodes.clone());
    let names: HashMap<_, _> = [(alice.address(), "alice"), (bob.address(), "bob")].into();
    println!("\n[clients]");
    println!("  alice address {}", alice.address());
    println!("  bob   address {}", bob.address());

    // Bob publishes his contact card; Alice finds it from his identity key alone.
    let record = bob.card_record(&mut rng, now, 1)?;
    let stored = dht[2].publish(record.clone()).await?;
    println!(
        "  bob's contact card (prekey bundle + contact mailbox, signed) stored on {stored} DHT nodes under blinded key {}",
        short(&record.key)
    );
    let locator = PrekeyLocator::new(&bob.identity_key(), prekey_period(now))?;
    let found = dht[3]
        .find_value(locator.key())
        .await?
        .ok_or("bob's card was not found in the DHT")?;
    let card = ContactCard::from_bytes(&locator.open(&found, now)?)?;
    println!("  alice found it in the DHT, opened it and checked both signatures");
    let b = alice.add_contact(&card);

    println!("\n[1] alice writes to bob (first to his contact mailbox, then to a fresh one)");
    for text in [
        "hi bob",
        "this went through three relays",
        "none saw both ends",
    ] {
        alice.send_text(&mut rng, &b, text, now)?;
    }
    world.flush(&mut alice, "alice")?;
    world.fetch(&mut bob, now)?;
    report(&mut bob, "bob", &names);
    world.flush(&mut bob, "bob")?;
    world.fetch(&mut alice, now)?;
    report(&mut alice, "alice", &names);
    world.flush(&mut alice, "alice")?;
    world.fetch(&mut bob, now)?;
    report(&mut bob, "bob", &names);

    println!("\n[2] bob answers");
    let a = alice.address();
    bob.send_text(&mut rng, &a, "hi alice, got all three", now)?;
    world.flush(&mut bob, "bob")?;
    world.fetch(&mut alice, now)?;
    report(&mut alice, "alice", &names);
    world.flush(&mut alice, "alice")?;
    world.fetch(&mut bob, now)?;
    report(&mut bob, "bob", &names);

    println!("\n[3] bob goes offline; alice keeps writing");
    for text in ["are you there?", "I'll wait"] {
        alice.send_text(&mut rng, &b, text, now)?;
    }
    world.flush(&mut alice, "alice")?;
    let waiting: usize = bob
        .mailboxes()
        .iter()
        .map(|m| world.mailboxes.get(&m.id()).map_or(0, Vec::len))
        .sum();
    println!("  {waiting} items wait in bob's mailboxes");
    println!("  bob comes back");
    let n = world.fetch(&mut bob, now)?;
    println!("  bob fetched {n} items");
    report(&mut bob, "bob", &names);
    world.flush(&mut bob, "bob")?;
    world.fetch(&mut alice, now)?;
    report(&mut alice, "alice", &names);

    println!("\n[what each relay saw] (predecessor -> successor, packet size)");
    for r in &world.relays {
        println!("  {} ({} packets)", r.name, r.seen.len());
        for o in &r.seen {
            println!(
                "    {:>11} -> {:<16} {} bytes",
                o.predecessor, o.successor, o.size
            );
        }
    }
    let sizes: std::collections::BTreeSet<usize> = world
        .relays
        .iter()
        .flat_map(|r| r.seen.iter().map(|o| o.size))
        .collect();
    println!(
        "\n  {} packets; packet sizes seen: {:?}; packets in which one relay saw both the client link and the mailbox: {}",
        world.packets, sizes, world.both_ends
    );
    println!(
        "\nNot wired into this demo yet: TCP/Noise links between clients and relays and the relays' SQLite mailboxes \
(packets are handed between the in-process relays; mailboxes are queues held by the demo), and relay descriptors in the DHT \
(the client's directory is built in-process)."
    );
    println!("Finished in {} ms.", started.elapsed().as_millis());
    Ok(())
}
