//! Paired measurement for a loaded machine: the contenders of each comparison run in short
//! interleaved blocks (order rotated every round), so they share the same background load;
//! each round gives a ratio and the report shows medians. Prints a Markdown table.
//!
//! Build: `cargo bench -p zentalk-ratchet --no-run`; run the printed `paired-*` binary.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark reads the monotonic clock to time itself"
)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zentalk_crypto::AeadSuite;
use zentalk_ratchet::Account;
use zentalk_ratchet::group::{InboundGroupSession, OutboundGroupSession};

const ROUNDS: usize = 101;

type Contender<'a> = (&'static str, Box<dyn FnMut(usize) -> Duration + 'a>);

/// Runs every contender `iters` times per block, ROUNDS rounds, rotating the order. Returns
/// per-contender median time per iteration (µs) and the median per-round ratio of each
/// contender to the first.
fn paired(iters: usize, contenders: &mut [Contender<'_>]) -> Vec<(&'static str, f64, f64)> {
    let n = contenders.len();
    let mut times = vec![Vec::with_capacity(ROUNDS); n];
    for (_, f) in contenders.iter_mut() {
        f(iters.div_ceil(4)); // warm-up
    }
    for round in 0..ROUNDS {
        for k in 0..n {
            let i = (round + k) % n;
            let d = (contenders[i].1)(iters);
            times[i].push(d.as_secs_f64() * 1e6 / iters as f64);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    (0..n)
        .map(|i| {
            let mut ratios: Vec<f64> = (0..ROUNDS).map(|r| times[i][r] / times[0][r]).collect();
            let mut t = times[i].clone();
            (contenders[i].0, median(&mut t), median(&mut ratios))
        })
        .collect()
}

fn timed(iters: usize, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed()
}

fn report(name: &str, rows: &[(&'static str, f64, f64)]) {
    for (who, us, ratio) in rows {
        println!("| {name} | {who} | {us:.2} | {ratio:.3} |");
    }
}

fn main() {
    println!(
        "| workload | implementation | median µs/op | median per-round ratio (this ÷ zentalk) |"
    );
    println!("| --- | --- | ---: | ---: |");
    for size in [100usize, 1024] {
        let pt = vec![0x5au8; size];
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let (mut a, mut b) = established(&mut rng);
        let (mut va, mut vb) = vodozemac_established();
        let rows = paired(
            1000,
            &mut [
                (
                    "zentalk",
                    Box::new(|it| {
                        timed(it, || {
                            let m = a.encrypt(&mut rng, black_box(&pt)).unwrap();
                            black_box(b.decrypt(&m).unwrap());
                        })
                    }),
                ),
                (
                    "primitives",
                    Box::new(|it| {
                        timed(it, || {
                            black_box(steady_primitives(&pt));
                        })
                    }),
                ),
                (
                    "vodozemac",
                    Box::new(|it| {
                        timed(it, || {
                            let m = va.encrypt(black_box(&pt));
                            black_box(vb.decrypt(&m).unwrap());
                        })
                    }),
                ),
            ],
        );
        report(&format!("steady chain {size} B, encrypt+decrypt"), &rows);
    }

    {
        let pt = vec![0x5au8; 100];
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let mut prng = ChaCha20Rng::seed_from_u64(22);
        let (mut a, mut b) = established(&mut rng);
        let keys = PrimitiveKeys::new(&mut prng);
        let (mut va, mut vb) = vodozemac_established();
        let mut turn = false;
        let mut vturn = false;
        let rows = paired(
            40,
            &mut [
                (
                    "zentalk",
                    Box::new(|it| {
                        timed(it, || {
                            turn = !turn;
                            let (s, r) = if turn {
                                (&mut a, &mut b)
                            } else {
                                (&mut b, &mut a)
                            };
                            let m = s.encrypt(&mut rng, black_box(&pt)).unwrap();
                            black_box(r.decrypt(&m).unwrap());
                        })
                    }),
                ),
                (
                    "primitives",
                    Box::new(|it| {
                        timed(it, || {
                            black_box(ping_pong_primitives(&mut prng, &keys, &pt));
                        })
                    }),
                ),
                (
                    "vodozemac",
                    Box::new(|it| {
                        timed(it, || {
                            vturn = !vturn;
                            let (s, r) = if vturn {
                                (&mut va, &mut vb)
                            } else {
                                (&mut vb, &mut va)
                            };
                            let m = s.encrypt(black_box(&pt));
                            black_box(r.decrypt(&m).unwrap());
                        })
                    }),
                ),
            ],
        );
        report(
            "ping-pong 100 B (DH step every message), per message",
            &rows,
        );
    }

    {
        let pt = vec![0x5au8; 100];
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut setup_rng = ChaCha20Rng::seed_from_u64(4);
        let mut prng = ChaCha20Rng::seed_from_u64(33);
        let alice = Account::new(&mut rng);
        let keys = PrimitiveKeys::new(&mut prng);
        let valice = vodozemac::olm::Account::new();
        let rows = paired(
            8,
            &mut [
                (
                    "zentalk",
                    Box::new(|it| {
                        // Bob's accounts are made outside the timed region.
                        let mut bobs: Vec<_> = (0..it).map(|_| fresh_bob(&mut setup_rng)).collect();
                        let start = Instant::now();
                        for (bob, bundle) in bobs.iter_mut() {
                            zentalk_setup(&mut rng, &alice, bob, bundle, &pt);
                        }
                        start.elapsed()
                    }),
                ),
                (
                    "primitives",
                    Box::new(|it| {
                        timed(it, || {
                            black_box(setup_primitives(&mut prng, &keys, &pt));
                        })
                    }),
                ),
                (
                    "vodozemac",
                    Box::new(|it| {
                        let mut bobs: Vec<_> = (0..it).map(|_| vodozemac_fresh_bob()).collect();
                        let start = Instant::now();
                        for (bob, otk) in bobs.iter_mut() {
                            vodozemac_setup(&valice, bob, *otk, &pt);
                        }
                        start.elapsed()
                    }),
                ),
            ],
        );
        report("session setup, both sides (X3DH + first message)", &rows);
    }

    {
        let pt = vec![0x5au8; 1024];
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mut out = OutboundGroupSession::new(&mut rng, AeadSuite::default());
        let mut inb = InboundGroupSession::new(&out.distribution());
        let mut vout =
            vodozemac::megolm::GroupSession::new(vodozemac::megolm::SessionConfig::version_1());
        let mut vin = vodozemac::megolm::InboundGroupSession::new(
            &vout.session_key(),
            vodozemac::megolm::SessionConfig::version_1(),
        );
        let rows = paired(
            40,
            &mut [
                (
                    "zentalk",
                    Box::new(|it| {
                        timed(it, || {
                            let m = out.encrypt(black_box(&pt)).unwrap();
                            black_box(inb.decrypt(&m).unwrap());
                        })
                    }),
                ),
                (
                    "vodozemac megolm",
                    Box::new(|it| {
                        timed(it, || {
                            let m = vout.encrypt(black_box(&pt));
                            black_box(vin.decrypt(&m).unwrap());
                        })
                    }),
                ),
            ],
        );
        report("group message 1 KiB, encrypt+decrypt", &rows);
    }
}
