//! An onion packet through three in-memory relays: build it, peel it hop by hop, and print
//! what each relay learns and the packet size it sees. Then a reply through a single-use reply
//! block, and the replay of a packet, which the relay drops.
//!
//! Run with `cargo run --example onion_three_hops`.

use zentalk_crypto::{NodeId, X25519Secret};
use zentalk_onion::{
    DEFAULT_MAX_PENDING_SURBS, DEFAULT_REPLAY_CAPACITY, Hop, MailboxId, OnionRelay, PACKET_LEN,
    Processed, ReplyKeyStore, Surb, UniformWeight, select_route,
};

struct Relay {
    name: &'static str,
    node: NodeId,
    onion: OnionRelay,
}

fn short(bytes: &[u8]) -> String {
    bytes[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        + ".."
}

/// Delivers a packet hop by hop, printing what each relay learns.
fn run(
    relays: &mut [Relay],
    mut node: NodeId,
    mut bytes: Box<[u8]>,
    epoch: u32,
) -> Result<Processed, Box<dyn std::error::Error>> {
    loop {
        let relay = relays
            .iter_mut()
            .find(|r| r.node == node)
            .ok_or("packet addressed to an unknown relay")?;
        let size = bytes.len();
        match relay.onion.process(&bytes, epoch)? {
            Processed::Forward { next_hop, packet } => {
                println!(
                    "  {:<8} got {size} bytes -> learns only: forward to relay {}; sends {} bytes",
                    relay.name,
                    short(next_hop.as_bytes()),
                    packet.len()
                );
                node = next_hop;
                bytes = packet.into_bytes();
            }
            end => {
                println!("  {:<8} got {size} bytes -> last hop", relay.name);
                return Ok(end);
            }
        }
    }
}

#[allow(
    clippy::disallowed_types,
    reason = "an example is a program: it owns the OS RNG and passes it in"
)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = rand_core::OsRng;
    let epoch = 1;

    // Three relays, each with an onion key for the current epoch, and a directory of them.
    let mut relays = Vec::new();
    let mut directory: Vec<Hop> = Vec::new();
    for (i, name) in ["relay-A", "relay-B", "relay-C"].into_iter().enumerate() {
        let secret = X25519Secret::generate(&mut rng);
        let node = NodeId::from_bytes([0xA0 + i as u8; 32]);
        directory.push(Hop {
            node,
            onion_key: secret.public_key(),
            epoch,
        });
        let mut onion = OnionRelay::new(DEFAULT_REPLAY_CAPACITY);
        onion.insert_epoch_key(epoch, secret)?;
        relays.push(Relay { name, node, onion });
    }

    // Bob's mailbox lives at relay-C; Alice picks the two other hops at random.
    let mailbox = MailboxId::from_bytes([0xB0; 32]);
    let route = select_route(&mut rng, &directory, 3, &directory[2], &UniformWeight)?;
    let names: Vec<_> = route
        .iter()
        .map(|h| {
            relays
                .iter()
                .find(|r| r.node == h.node)
                .map_or("?", |r| r.name)
        })
        .collect();
    println!(
        "route: {}  (every packet is {PACKET_LEN} bytes)",
        names.join(" -> ")
    );

    // Alice encloses a reply block for Bob: a route back to her own mailbox at relay-A.
    let mut store = ReplyKeyStore::new(DEFAULT_MAX_PENDING_SURBS);
    let back = vec![
        directory[2].clone(),
        directory[1].clone(),
        directory[0].clone(),
    ];
    let (_, surb) = store.create_surb(&mut rng, &back)?;
    let mut message = b"hi Bob, answer with the enclosed block: ".to_vec();
    message.extend_from_slice(&surb.to_bytes());

    println!("\nAlice -> Bob ({} bytes of message):", message.len());
    let out = zentalk_onion::build_packet(&mut rng, &route, mailbox, &message)?;
    let first_copy = out.packet.clone();
    match run(&mut relays, out.first_hop, out.packet.into_bytes(), epoch)? {
        Processed::Deliver {
            mailbox: m,
            message,
        } => {
            println!(
                "  -> delivered to mailbox {} ({} bytes; end-to-end ciphertext in real use)",
                short(m.as_bytes()),
                message.len()
            );
            let surb_bytes = &message[message.len() - zentalk_onion::SURB_LEN..];
            let surb = Surb::from_bytes(surb_bytes)?;
            println!(
                "\nBob -> Alice through the reply block (Bob sees only the first hop {}):",
                short(surb.first_hop().as_bytes())
            );
            let reply = surb.into_reply(b"hi Alice")?;
            match run(
                &mut relays,
                reply.first_hop,
                reply.packet.into_bytes(),
                epoch,
            )? {
                Processed::Reply { surb_id, payload } => {
                    let text = store.open_reply(&surb_id, &payload)?;
                    println!(
                        "  -> Alice opens the reply: {:?}",
                        String::from_utf8_lossy(&text)
                    );
                    match store.open_reply(&surb_id, &payload) {
                        Err(e) => println!("  -> the same block again: {e}"),
                        Ok(_) => println!("  -> the same block again: accepted?!"),
                    }
                }
                other => println!("  unexpected: {other:?}"),
            }
        }
        other => println!("  unexpected: {other:?}"),
    }

    println!("\nA replayed copy of Alice's packet:");
    let first = relays
        .iter_mut()
        .find(|r| r.node == route[0].node)
        .ok_or("no first relay")?;
    match first.onion.process(first_copy.as_bytes(), epoch) {
        Err(e) => println!("  {} drops it: {e}", first.name),
        Ok(_) => println!("  accepted?!"),
    }
    Ok(())
}
