//! zentalk-onion against sphinx-packet 0.8 (Nym), side by side in one run: 3-hop packet
//! creation with a 2030-byte message in a 2048-byte payload, and the processing of one hop.
//!
//! Run (see docs/benchmarks/zentalk-onion.md):
//! `cargo bench -p zentalk-onion --no-run`, then the printed binary with
//! `--bench --warm-up-time 1 --measurement-time 3`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sphinx_packet::SphinxPacket;
use sphinx_packet::SphinxPacketBuilder;
use sphinx_packet::constants::{
    DESTINATION_ADDRESS_LENGTH, IDENTIFIER_LENGTH, NODE_ADDRESS_LENGTH,
};
use sphinx_packet::header::delays;
use sphinx_packet::route::{Destination, DestinationAddressBytes, Node, NodeAddressBytes};
use x25519_dalek_v3::{PublicKey, StaticSecret};
use zentalk_crypto::{NodeId, X25519Secret};
use zentalk_onion::{
    Hop, MAX_MESSAGE_LEN, MailboxId, OnionRelay, PACKET_LEN, PAYLOAD_LEN, PreparedHop, Processed,
    build_packet,
};

const EPOCH: u32 = 1;

struct Ours {
    route: Vec<Hop>,
    secrets: Vec<X25519Secret>,
}

fn ours(rng: &mut ChaCha20Rng) -> Ours {
    let mut route = Vec::new();
    let mut secrets = Vec::new();
    for i in 0..3u8 {
        let s = X25519Secret::generate(rng);
        route.push(Hop {
            node: NodeId::from_bytes([i + 1; 32]),
            onion_key: s.public_key(),
            epoch: EPOCH,
        });
        secrets.push(s);
    }
    Ours { route, secrets }
}

struct Theirs {
    route: Vec<Node>,
    secrets: Vec<StaticSecret>,
    destination: Destination,
    delays: Vec<delays::Delay>,
}

fn theirs(rng: &mut ChaCha20Rng) -> Theirs {
    let mut route = Vec::new();
    let mut secrets = Vec::new();
    for i in 0..3u8 {
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(rng, &mut seed);
        let sk = StaticSecret::from(seed);
        route.push(Node::new(
            NodeAddressBytes::from_bytes([i + 1; NODE_ADDRESS_LENGTH]),
            PublicKey::from(&sk),
        ));
        secrets.push(sk);
    }
    Theirs {
        route,
        secrets,
        destination: Destination::new(
            DestinationAddressBytes::from_bytes([3u8; DESTINATION_ADDRESS_LENGTH]),
            [4u8; IDENTIFIER_LENGTH],
        ),
        delays: delays::generate_from_average_duration(3, Duration::from_millis(10)),
    }
}

fn sphinx_packet(t: &Theirs, message: &[u8]) -> SphinxPacket {
    SphinxPacketBuilder::new()
        .with_payload_size(PAYLOAD_LEN)
        .build_packet(message, &t.route, &t.destination, &t.delays)
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let message = vec![0x5Au8; MAX_MESSAGE_LEN];
    let o = ours(&mut rng);
    let t = theirs(&mut rng);
    let mailbox = MailboxId::from_bytes([7; 32]);

    // Sizes, printed beside the timings.
    let ours_pkt = build_packet(&mut rng, &o.route, mailbox, &message).unwrap();
    let theirs_pkt = sphinx_packet(&t, &message);
    println!(
        "packet size, 3 hops, {}-byte message: zentalk-onion {} bytes ({} header), sphinx-packet {} bytes",
        message.len(),
        ours_pkt.packet.len(),
        PACKET_LEN - PAYLOAD_LEN,
        theirs_pkt.len()
    );

    let mut g = c.benchmark_group("create_3_hops_2KiB");
    g.bench_function("zentalk-onion", |b| {
        b.iter(|| {
            build_packet(&mut rng, black_box(&o.route), mailbox, black_box(&message)).unwrap()
        })
    });
    let prepared: Vec<PreparedHop> = o
        .route
        .iter()
        .map(|h| PreparedHop::prepare(h).unwrap())
        .collect();
    g.bench_function("zentalk-onion (prepared relay keys)", |b| {
        b.iter(|| {
            build_packet(&mut rng, black_box(&prepared), mailbox, black_box(&message)).unwrap()
        })
    });
    g.bench_function("sphinx-packet", |b| {
        b.iter(|| sphinx_packet(black_box(&t), black_box(&message)))
    });
    g.finish();

    let mut g = c.benchmark_group("prepare_relay_key");
    g.bench_function("zentalk-onion", |b| {
        b.iter(|| PreparedHop::prepare(black_box(&o.route[0])).unwrap())
    });
    g.finish();

    let ours_bytes = ours_pkt.packet.into_bytes();
    let theirs_bytes = theirs_pkt.to_bytes();
    let mut g = c.benchmark_group("process_one_hop");
    g.bench_function("zentalk-onion", |b| {
        // A fresh relay per iteration so the replay filter accepts the packet; the relay is
        // returned so that dropping it is not timed.
        b.iter_batched(
            || {
                let mut relay = OnionRelay::new(1024);
                relay
                    .insert_epoch_key(EPOCH, o.secrets[0].duplicate())
                    .unwrap();
                relay
            },
            |mut relay| {
                let out = relay.process(black_box(&ours_bytes), EPOCH).unwrap();
                assert!(matches!(out, Processed::Forward { .. }));
                (relay, out)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("sphinx-packet", |b| {
        b.iter(|| {
            SphinxPacket::from_bytes(black_box(&theirs_bytes))
                .unwrap()
                .process(black_box(&t.secrets[0]))
                .unwrap()
        })
    });
    g.finish();

    // The cost both sides are made of: one X25519 scalar multiplication (variable base).
    let mut g = c.benchmark_group("x25519_dh");
    let peer = o.route[1].onion_key;
    g.bench_function("zentalk-crypto (dalek 4)", |b| {
        b.iter(|| o.secrets[0].diffie_hellman(black_box(&peer)).unwrap())
    });
    let their_peer = PublicKey::from(&t.secrets[1]);
    g.bench_function("sphinx-packet (dalek 5)", |b| {
        b.iter(|| t.secrets[0].diffie_hellman(black_box(&their_peer)))
    });
    {
        // The faster forms of the same function that the onion code uses (zentalk-crypto,
        // on dalek 4): the Edwards-form agreement, the ephemeral key generation, and the
        // prepared table of a relay key.
        use zentalk_crypto::{PreparedX25519PublicKey, X25519Secret};
        let e = [0x42u8; 32];
        let ephemeral = X25519Secret::from_bytes(&e);
        g.bench_function("edwards variable-base (dalek 4)", |b| {
            b.iter(|| ephemeral.diffie_hellman_edwards(black_box(&peer)).unwrap())
        });
        g.bench_function("keygen basepoint (dalek 4)", |b| {
            b.iter(|| X25519Secret::from_bytes(black_box(&e)).public_key())
        });
        g.bench_function("table create (dalek 4)", |b| {
            b.iter(|| PreparedX25519PublicKey::new(black_box(&peer)).unwrap())
        });
        let table = PreparedX25519PublicKey::new(&peer).unwrap();
        g.bench_function("table mul (dalek 4)", |b| {
            b.iter(|| table.diffie_hellman(black_box(&ephemeral)).unwrap())
        });
    }
    g.finish();
}

/// Median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The machine is shared and its load drifts between criterion groups, so the ratios are
/// also measured *paired*: each round times one operation of each implementation back to
/// back (alternating which goes first), and the median of the per-round ratios is reported.
#[allow(clippy::disallowed_methods, reason = "benchmark timing")]
fn paired(rounds: usize) {
    use std::time::Instant;
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let message = vec![0x5Au8; MAX_MESSAGE_LEN];
    let o = ours(&mut rng);
    let t = theirs(&mut rng);
    let mailbox = MailboxId::from_bytes([7; 32]);
    let ours_bytes = build_packet(&mut rng, &o.route, mailbox, &message)
        .unwrap()
        .packet
        .into_bytes();
    let theirs_bytes = sphinx_packet(&t, &message).to_bytes();
    let prepared: Vec<PreparedHop> = o
        .route
        .iter()
        .map(|h| PreparedHop::prepare(h).unwrap())
        .collect();
    let (mut pc, mut rpc) = (Vec::new(), Vec::new());
    let (mut oc, mut tc, mut rc) = (Vec::new(), Vec::new(), Vec::new());
    let (mut op, mut tp, mut rp) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let time_ours_create = |rng: &mut ChaCha20Rng| {
            let s = Instant::now();
            black_box(build_packet(rng, &o.route, mailbox, &message).unwrap());
            s.elapsed().as_secs_f64() * 1e6
        };
        let time_prepared_create = |rng: &mut ChaCha20Rng| {
            let s = Instant::now();
            black_box(build_packet(rng, &prepared, mailbox, &message).unwrap());
            s.elapsed().as_secs_f64() * 1e6
        };
        let time_theirs_create = || {
            let s = Instant::now();
            black_box(sphinx_packet(&t, &message));
            s.elapsed().as_secs_f64() * 1e6
        };
        let mut relay = OnionRelay::new(16);
        relay
            .insert_epoch_key(EPOCH, o.secrets[0].duplicate())
            .unwrap();
        let mut time_ours_process = || {
            let s = Instant::now();
            black_box(relay.process(&ours_bytes, EPOCH).unwrap());
            s.elapsed().as_secs_f64() * 1e6
        };
        let time_theirs_process = || {
            let s = Instant::now();
            black_box(
                SphinxPacket::from_bytes(&theirs_bytes)
                    .unwrap()
                    .process(&t.secrets[0])
                    .unwrap(),
            );
            s.elapsed().as_secs_f64() * 1e6
        };
        let (a, b, c, d, e) = if round % 2 == 0 {
            let a = time_ours_create(&mut rng);
            let b = time_theirs_create();
            let e = time_prepared_create(&mut rng);
            let c = time_ours_process();
            let d = time_theirs_process();
            (a, b, c, d, e)
        } else {
            let e = time_prepared_create(&mut rng);
            let b = time_theirs_create();
            let a = time_ours_create(&mut rng);
            let d = time_theirs_process();
            let c = time_ours_process();
            (a, b, c, d, e)
        };
        pc.push(e);
        rpc.push(e / b);
        oc.push(a);
        tc.push(b);
        rc.push(a / b);
        op.push(c);
        tp.push(d);
        rp.push(c / d);
    }
    println!(
        "paired ({rounds} rounds, medians): create 3 hops: zentalk-onion {:.1} us, sphinx-packet {:.1} us, ratio {:.3}",
        median(&mut oc),
        median(&mut tc),
        median(&mut rc)
    );
    println!(
        "paired ({rounds} rounds, medians): create 3 hops, prepared relay keys: zentalk-onion {:.1} us, ratio to sphinx-packet {:.3}",
        median(&mut pc),
        median(&mut rpc)
    );
    println!(
        "paired ({rounds} rounds, medians): process one hop: zentalk-onion {:.1} us, sphinx-packet {:.1} us, ratio {:.3}",
        median(&mut op),
        median(&mut tp),
        median(&mut rp)
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    // `--bench NAME` filters criterion groups; the paired run only happens unfiltered or when
    // the filter is "paired".
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && a.parse::<f64>().is_err())
        .collect();
    if filter.is_empty() || filter.iter().any(|f| f == "paired") {
        paired(2000);
    }
    Criterion::default().configure_from_args().final_summary();
}
