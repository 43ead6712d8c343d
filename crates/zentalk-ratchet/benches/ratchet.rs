//! zentalk-ratchet against its own primitives and vodozemac 0.9, in the same run (criterion).
//!
//! Build: `cargo bench -p zentalk-ratchet --no-run`, then run the printed `ratchet-*` binary
//! with `--bench --warm-up-time 1 --measurement-time 3`. On a loaded machine prefer the paired
//! figures of the `paired` bench (see docs/benchmarks/zentalk-ratchet.md).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::hint::black_box;

use common::*;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zentalk_crypto::AeadSuite;
use zentalk_ratchet::Account;
use zentalk_ratchet::group::{InboundGroupSession, OutboundGroupSession};

fn steady_chain(c: &mut Criterion) {
    for size in [100usize, 1024] {
        let mut g = c.benchmark_group(format!("steady_chain_{size}B"));
        let pt = vec![0x5au8; size];
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        // Alice keeps sending on one chain: no DH step inside the loop.
        let (mut a, mut b) = established(&mut rng);
        g.bench_function("zentalk", |bench| {
            bench.iter(|| {
                let m = a.encrypt(&mut rng, black_box(&pt)).unwrap();
                black_box(b.decrypt(&m).unwrap())
            })
        });
        g.bench_function("primitives", |bench| {
            bench.iter(|| black_box(steady_primitives(&pt)))
        });
        let (mut va, mut vb) = vodozemac_established();
        g.bench_function("vodozemac", |bench| {
            bench.iter(|| {
                let m = va.encrypt(black_box(&pt));
                black_box(vb.decrypt(&m).unwrap())
            })
        });
        g.finish();
    }
}

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("ping_pong_100B_per_message");
    let pt = vec![0x5au8; 100];
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let (mut a, mut b) = established(&mut rng);
    // Each iteration: one message, alternately A->B and B->A, so every message has a DH step.
    let mut turn = false;
    g.bench_function("zentalk", |bench| {
        bench.iter(|| {
            turn = !turn;
            let (s, r) = if turn {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            let m = s.encrypt(&mut rng, black_box(&pt)).unwrap();
            black_box(r.decrypt(&m).unwrap())
        })
    });
    let keys = PrimitiveKeys::new(&mut rng);
    g.bench_function("primitives", |bench| {
        bench.iter(|| black_box(ping_pong_primitives(&mut rng, &keys, &pt)))
    });
    let (mut va, mut vb) = vodozemac_established();
    let mut vturn = false;
    g.bench_function("vodozemac", |bench| {
        bench.iter(|| {
            vturn = !vturn;
            let (s, r) = if vturn {
                (&mut va, &mut vb)
            } else {
                (&mut vb, &mut va)
            };
            let m = s.encrypt(black_box(&pt));
            black_box(r.decrypt(&m).unwrap())
        })
    });
    g.finish();
}

fn session_setup(c: &mut Criterion) {
    let mut g = c.benchmark_group("session_setup_both_sides");
    let pt = vec![0x5au8; 100];
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let alice = Account::new(&mut rng);
    let mut setup_rng = ChaCha20Rng::seed_from_u64(4);
    g.bench_function("zentalk", |bench| {
        bench.iter_batched(
            || fresh_bob(&mut setup_rng),
            |(mut bob, bundle)| zentalk_setup(&mut rng, &alice, &mut bob, &bundle, &pt),
            BatchSize::SmallInput,
        )
    });
    let keys = PrimitiveKeys::new(&mut rng);
    g.bench_function("primitives", |bench| {
        bench.iter(|| black_box(setup_primitives(&mut rng, &keys, &pt)))
    });
    let valice = vodozemac::olm::Account::new();
    g.bench_function("vodozemac", |bench| {
        bench.iter_batched(
            vodozemac_fresh_bob,
            |(mut bob, otk)| vodozemac_setup(&valice, &mut bob, otk, &pt),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn group(c: &mut Criterion) {
    let mut g = c.benchmark_group("group_1KiB");
    let pt = vec![0x5au8; 1024];
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut out = OutboundGroupSession::new(&mut rng, AeadSuite::default());
    let mut inb = InboundGroupSession::new(&out.distribution());
    g.bench_function("zentalk", |bench| {
        bench.iter(|| {
            let m = out.encrypt(black_box(&pt)).unwrap();
            black_box(inb.decrypt(&m).unwrap())
        })
    });
    let mut vout =
        vodozemac::megolm::GroupSession::new(vodozemac::megolm::SessionConfig::version_1());
    let mut vin = vodozemac::megolm::InboundGroupSession::new(
        &vout.session_key(),
        vodozemac::megolm::SessionConfig::version_1(),
    );
    g.bench_function("vodozemac_megolm", |bench| {
        bench.iter(|| {
            let m = vout.encrypt(black_box(&pt));
            black_box(vin.decrypt(&m).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, steady_chain, ping_pong, session_setup, group);
criterion_main!(benches);
