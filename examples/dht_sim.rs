//! A 10,000-node Kademlia network in one process on virtual time (zentalk-dht's simulator).
//!
//! ```text
//! cargo run --release --example dht_sim -- --nodes 10000 --lookups 1000
//! cargo run --release --example dht_sim -- --nodes 10000 --dead 0.2
//! cargo run --release --example dht_sim -- --nodes 10000 --malicious 0.2 --paths 4
//! ```
//!
//! Options: `--nodes N` (10000), `--seed S` (1), `--lookups L` (1000, each one FIND_VALUE of
//! a published record and one FIND_NODE of a live honest node), `--records R` (100),
//! `--dead F` (fraction killed after publishing), `--malicious F` (fraction turned malicious
//! after publishing), `--behavior wrong|drop` (wrong contacts, or drop requests),
//! `--paths D` (disjoint lookup paths), `--loss P` (message loss probability), `--alpha A`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(
    clippy::disallowed_methods,
    reason = "the example measures its own wall-clock time; the simulation itself is virtual"
)]

use std::time::Instant;

use zentalk_crypto::IdentityKeyPair;
use zentalk_dht::sim::{Behavior, Sim, SimConfig};
use zentalk_dht::{Capabilities, Config, Event, RelayDescriptor};

struct Args {
    nodes: usize,
    seed: u64,
    lookups: usize,
    records: usize,
    dead: f64,
    malicious: f64,
    behavior: Behavior,
    paths: usize,
    loss: f64,
    alpha: usize,
}

fn parse() -> Args {
    let mut a = Args {
        nodes: 10_000,
        seed: 1,
        lookups: 1000,
        records: 100,
        dead: 0.0,
        malicious: 0.0,
        behavior: Behavior::WrongContacts,
        paths: 1,
        loss: 0.0,
        alpha: 3,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--nodes" => a.nodes = v.parse().expect("--nodes"),
            "--seed" => a.seed = v.parse().expect("--seed"),
            "--lookups" => a.lookups = v.parse().expect("--lookups"),
            "--records" => a.records = v.parse().expect("--records"),
            "--dead" => a.dead = v.parse().expect("--dead"),
            "--malicious" => a.malicious = v.parse().expect("--malicious"),
            "--behavior" => {
                a.behavior = match v.as_str() {
                    "drop" => Behavior::DropRequests,
                    _ => Behavior::WrongContacts,
                }
            }
            "--paths" => a.paths = v.parse().expect("--paths"),
            "--loss" => a.loss = v.parse().expect("--loss"),
            "--alpha" => a.alpha = v.parse().expect("--alpha"),
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    a
}

fn pct(v: &mut [u32], p: usize) -> u32 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) * p) / 100]
}

fn pick(sim: &mut Sim) -> usize {
    loop {
        let i = sim.random_index(sim.len());
        if sim.is_alive(i) && sim.behavior(i) == Some(Behavior::Honest) {
            return i;
        }
    }
}

fn main() {
    let a = parse();
    println!(
        "dht_sim: nodes={} seed={} lookups={} records={} dead={} malicious={} ({:?}) paths={} alpha={} loss={}",
        a.nodes,
        a.seed,
        a.lookups,
        a.records,
        a.dead,
        a.malicious,
        a.behavior,
        a.paths,
        a.alpha,
        a.loss
    );
    // Bootstrap on one path (cheap); lookups then use `--paths`.
    let node = Config {
        disjoint_paths: 1,
        alpha: a.alpha,
        republish_interval_ms: 0,
        max_queries: 64,
        ..Config::default()
    };
    let cfg = SimConfig {
        nodes: a.nodes,
        seed: a.seed,
        loss: a.loss,
        node,
        join_batch: 100,
        ..SimConfig::default()
    };
    let t0 = Instant::now();
    let mut sim = Sim::new(cfg).expect("valid config");
    sim.bootstrap_all();
    let boot = t0.elapsed();
    let table: usize = (0..sim.len())
        .map(|i| sim.node(i).unwrap().routing_table().len())
        .sum();
    println!(
        "bootstrap: {:.1} s wall, {} messages, mean routing table {:.0} entries",
        boot.as_secs_f64(),
        sim.stats().sent,
        table as f64 / sim.len() as f64
    );

    sim.set_disjoint_paths(a.paths).expect("paths >= 1");

    // Publish relay descriptors.
    let mut keys = Vec::new();
    let mut stored = Vec::new();
    let mut unpublished = 0;
    for _ in 0..a.records {
        let id = IdentityKeyPair::generate(sim.rng());
        let rec = RelayDescriptor {
            addrs: vec!["192.0.2.1:4433".parse().unwrap()],
            noise_static_key: [1; 32],
            onion_keys: vec![(1, [2; 32])],
            capabilities: Capabilities::MAILBOX,
        }
        .sign(&id, 1, sim.now() + 6 * 3_600_000)
        .unwrap();
        keys.push(rec.key);
        let p = pick(&mut sim);
        if sim.start_publish(p, rec).is_err() {
            unpublished += 1;
        }
    }
    sim.run_until_idle();
    for (_, e) in sim.take_events() {
        if let Event::Published { stored: s, .. } = e {
            stored.push(s as u32);
        }
    }
    println!(
        "publish: {} records ({} could not start), median replicas {}",
        keys.len(),
        unpublished,
        pct(&mut stored, 50)
    );

    // Damage.
    let n = sim.len();
    let dead = (n as f64 * a.dead) as usize;
    let bad = (n as f64 * a.malicious) as usize;
    let mut k = 0;
    while k < dead {
        let i = 1 + sim.random_index(n - 1);
        if sim.is_alive(i) {
            sim.kill(i);
            k += 1;
        }
    }
    k = 0;
    while k < bad {
        let i = 1 + sim.random_index(n - 1);
        if sim.is_alive(i) && sim.behavior(i) == Some(Behavior::Honest) {
            sim.set_behavior(i, a.behavior);
            k += 1;
        }
    }

    // Lookups, 50 at a time.
    let t1 = Instant::now();
    let (mut v_ok, mut v_tot, mut n_ok, mut n_tot) = (0usize, 0usize, 0usize, 0usize);
    let (mut v_hops, mut v_msgs, mut n_hops, mut n_msgs) = (vec![], vec![], vec![], vec![]);
    let mut targets = std::collections::HashMap::new();
    let mut done = 0;
    while done < a.lookups {
        let batch = (a.lookups - done).min(50);
        for j in 0..batch {
            let key = keys[(done + j) % keys.len()];
            // A node with an empty routing table cannot start a lookup: a failure.
            let from = pick(&mut sim);
            if sim.start_find_value(from, key).is_err() {
                v_tot += 1;
            }
            let t = pick(&mut sim);
            let target = sim.contact(t).unwrap().id;
            let from = pick(&mut sim);
            match sim.start_find_node(from, target) {
                Ok(q) => {
                    targets.insert((from, q), target);
                }
                Err(_) => n_tot += 1,
            }
        }
        sim.run_until_idle();
        for (i, e) in sim.take_events() {
            match e {
                Event::ValueFound { record, stats, .. } => {
                    v_tot += 1;
                    v_msgs.push(stats.requests);
                    if record.is_some() {
                        v_ok += 1;
                        v_hops.push(stats.hops);
                    }
                }
                Event::NodesFound {
                    query,
                    contacts,
                    stats,
                    ..
                } => {
                    n_tot += 1;
                    n_msgs.push(stats.requests);
                    let t = targets.remove(&(i, query));
                    if contacts.first().map(|c| c.id) == t {
                        n_ok += 1;
                        n_hops.push(stats.hops);
                    }
                }
                _ => {}
            }
        }
        done += batch;
    }
    let lk = t1.elapsed();
    println!(
        "FIND_VALUE: success {}/{} = {:.2}%, hops median {} p99 {}, messages median {} p99 {}",
        v_ok,
        v_tot,
        100.0 * v_ok as f64 / v_tot.max(1) as f64,
        pct(&mut v_hops, 50),
        pct(&mut v_hops, 99),
        pct(&mut v_msgs, 50),
        pct(&mut v_msgs, 99)
    );
    println!(
        "FIND_NODE:  success {}/{} = {:.2}%, hops median {} p99 {}, messages median {} p99 {}",
        n_ok,
        n_tot,
        100.0 * n_ok as f64 / n_tot.max(1) as f64,
        pct(&mut n_hops, 50),
        pct(&mut n_hops, 99),
        pct(&mut n_msgs, 50),
        pct(&mut n_msgs, 99)
    );
    println!(
        "wall: bootstrap {:.1} s, lookups {:.1} s; total messages {}",
        boot.as_secs_f64(),
        lk.as_secs_f64(),
        sim.stats().sent
    );
}
