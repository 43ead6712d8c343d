//! Simulator runs at a few hundred nodes: static, dead nodes, malicious nodes with disjoint
//! paths, loss and churn, and the full wire codec with signatures. Every failure message
//! carries the seed (and the simulator prints it when a test panics).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use zentalk_crypto::{IdentityKeyPair, NodeId};
use zentalk_dht::sim::{Behavior, Sim, SimConfig};
use zentalk_dht::{
    Capabilities, Config, PrekeyLocator, Record, RelayDescriptor, prekey_period, sign_prekey_bundle,
};

/// A network of `nodes` nodes under `seed`, with node configuration `node`, bootstrapped.
fn network(nodes: usize, seed: u64, node: Config) -> Sim {
    network_with(SimConfig {
        nodes,
        seed,
        node,
        ..SimConfig::default()
    })
}

/// As [`network`], for a configuration with loss or wire mode.
fn network_with(cfg: SimConfig) -> Sim {
    let mut sim = Sim::new(cfg).unwrap();
    sim.bootstrap_all();
    sim
}

/// A relay descriptor record signed by `id`, expiring at `expires_at_ms`.
fn descriptor(id: &IdentityKeyPair, seq: u64, expires_at_ms: u64) -> Record {
    RelayDescriptor {
        addrs: vec!["192.0.2.9:4433".parse().unwrap()],
        noise_static_key: [7u8; 32],
        onion_keys: vec![(1, [8u8; 32])],
        capabilities: Capabilities::MAILBOX,
    }
    .sign(id, seq, expires_at_ms)
    .unwrap()
}

/// A descriptor of a fresh relay identity, valid for six hours.
fn relay_record(sim: &mut Sim, seq: u64) -> (IdentityKeyPair, Record) {
    let id = IdentityKeyPair::generate(sim.rng());
    let rec = descriptor(&id, seq, sim.now() + 6 * 3_600_000);
    (id, rec)
}

fn honest_alive(sim: &mut Sim) -> usize {
    loop {
        let i = sim.random_index(sim.len());
        if sim.is_alive(i) && sim.behavior(i) == Some(Behavior::Honest) {
            return i;
        }
    }
}

/// Asserts that at least `percent` % of `total` lookups succeeded.
fn at_least(seed: u64, what: &str, ok: usize, total: usize, percent: usize) {
    assert!(
        ok * 100 >= total * percent,
        "seed {seed}: {what} lookups {ok}/{total}, below {percent}%"
    );
}

struct Outcome {
    value_ok: usize,
    value_total: usize,
    node_ok: usize,
    node_total: usize,
    hops: Vec<u32>,
}

impl Outcome {
    /// Asserts that at least `values` % of the value lookups and `nodes` % of the node
    /// lookups succeeded.
    fn at_least(&self, seed: u64, values: usize, nodes: usize) {
        at_least(seed, "value", self.value_ok, self.value_total, values);
        at_least(seed, "node", self.node_ok, self.node_total, nodes);
    }
}

/// Publishes `records` records, applies `damage`, then runs value and node lookups.
fn scenario(
    cfg: SimConfig,
    records: usize,
    lookups: usize,
    damage: impl FnOnce(&mut Sim),
) -> Outcome {
    let seed = cfg.seed;
    let mut sim = network_with(cfg);
    let mut keys = Vec::new();
    for _ in 0..records {
        let (_, rec) = relay_record(&mut sim, 1);
        let p = honest_alive(&mut sim);
        keys.push(rec.key);
        let stored = sim.publish(p, rec).unwrap();
        assert!(stored >= 10, "seed {seed}: stored on {stored} nodes only");
    }
    damage(&mut sim);
    let mut out = Outcome {
        value_ok: 0,
        value_total: 0,
        node_ok: 0,
        node_total: 0,
        hops: Vec::new(),
    };
    for j in 0..lookups {
        let key = keys[j % keys.len()];
        let from = honest_alive(&mut sim);
        let (rec, stats) = sim.find_value_stats(from, key).unwrap_or_default();
        out.value_total += 1;
        if rec.is_some_and(|r| r.key == key) {
            out.value_ok += 1;
            out.hops.push(stats.hops);
        }
        let target_idx = honest_alive(&mut sim);
        let target = sim.contact(target_idx).unwrap().id;
        let from = honest_alive(&mut sim);
        if from == target_idx {
            continue;
        }
        // A node whose whole table died has no peers: a failed lookup.
        let contacts = sim.find_node(from, target).map(|r| r.0).unwrap_or_default();
        out.node_total += 1;
        if contacts.first().is_some_and(|c| c.id == target) {
            out.node_ok += 1;
        }
    }
    out
}

#[test]
fn static_network_every_lookup_succeeds() {
    let cfg = SimConfig {
        nodes: 200,
        seed: 101,
        ..SimConfig::default()
    };
    let o = scenario(cfg, 10, 30, |_| {});
    o.at_least(101, 100, 100);
    let mut h = o.hops.clone();
    h.sort_unstable();
    assert!(
        h[h.len() / 2] <= 3,
        "seed 101: median hops {}",
        h[h.len() / 2]
    );
}

#[test]
fn twenty_percent_dead_nodes() {
    let cfg = SimConfig {
        nodes: 200,
        seed: 202,
        ..SimConfig::default()
    };
    let o = scenario(cfg, 10, 30, |sim| {
        let n = sim.len();
        let mut killed = 0;
        while killed < n / 5 {
            let i = 1 + sim.random_index(n - 1);
            if sim.is_alive(i) {
                sim.kill(i);
                killed += 1;
            }
        }
    });
    o.at_least(202, 99, 99);
}

fn make_malicious(sim: &mut Sim, b: Behavior) {
    let n = sim.len();
    let mut bad = 0;
    while bad < n / 5 {
        let i = 1 + sim.random_index(n - 1);
        if sim.behavior(i) == Some(Behavior::Honest) {
            sim.set_behavior(i, b);
            bad += 1;
        }
    }
}

#[test]
fn twenty_percent_malicious_with_disjoint_paths() {
    let node = Config {
        disjoint_paths: 4,
        republish_interval_ms: 0,
        ..Config::default()
    };
    let cfg = SimConfig {
        nodes: 150,
        seed: 303,
        node,
        ..SimConfig::default()
    };
    let o = scenario(cfg, 8, 25, |sim| {
        make_malicious(sim, Behavior::WrongContacts)
    });
    o.at_least(303, 99, 99);
}

#[test]
fn request_droppers_are_routed_around() {
    let cfg = SimConfig {
        nodes: 120,
        seed: 404,
        ..SimConfig::default()
    };
    let o = scenario(cfg, 5, 20, |sim| {
        make_malicious(sim, Behavior::DropRequests)
    });
    at_least(404, "value", o.value_ok, o.value_total, 99);
}

#[test]
fn loss_and_churn() {
    let cfg = SimConfig {
        nodes: 120,
        seed: 505,
        loss: 0.05,
        ..SimConfig::default()
    };
    let o = scenario(cfg, 5, 20, |sim| {
        // A quarter of the nodes leave, 30 new ones join.
        for _ in 0..30 {
            let i = 1 + sim.random_index(sim.len() - 1);
            sim.kill(i);
        }
        for _ in 0..30 {
            sim.add_node().unwrap();
        }
    });
    o.at_least(505, 95, 95);
}

#[test]
fn wire_mode_with_signatures_and_prekeys() {
    let seed = 606;
    let mut sim = network_with(SimConfig {
        nodes: 60,
        seed,
        wire: true,
        ..SimConfig::default()
    });
    assert_eq!(sim.stats().refused, 0, "seed {seed}");
    let user = IdentityKeyPair::generate(sim.rng());
    let period = prekey_period(sim.now());
    let mut rng = rand_chacha::ChaCha20Rng::from_seed_u64(seed);
    let expires = sim.now() + 3_600_000;
    let mut bundle =
        |body: &[u8], seq| sign_prekey_bundle(&user, body, period, seq, expires, &mut rng).unwrap();
    let rec = bundle(b"bundle-v1", 1);
    assert!(sim.publish(5, rec).unwrap() >= 15, "seed {seed}");
    let loc = PrekeyLocator::new(&user.public_key(), period).unwrap();
    let found = sim.find_value(40, loc.key()).unwrap().expect("found");
    assert_eq!(loc.open(&found, sim.now()).unwrap(), b"bundle-v1");
    // A newer version replaces it; replaying the old one is refused everywhere.
    assert!(sim.publish(7, bundle(b"bundle-v2", 2)).unwrap() >= 15);
    let old = bundle(b"bundle-v1", 1);
    // The old version counts as "stored" nowhere: every holder reports a newer sequence.
    let _ = sim.publish(9, old).unwrap();
    let found = sim.find_value(50, loc.key()).unwrap().expect("found");
    assert_eq!(found.sequence, 2, "seed {seed}");
    assert_eq!(loc.open(&found, sim.now()).unwrap(), b"bundle-v2");
}

#[test]
fn republish_reaches_new_nodes_and_records_expire() {
    let seed = 707;
    let node = Config {
        republish_interval_ms: 3_600_000,
        ..Config::default()
    };
    let mut sim = network(100, seed, node);
    let id = IdentityKeyPair::generate(sim.rng());
    let rec = descriptor(&id, 1, sim.now() + 3 * 3_600_000);
    let key = rec.key;
    sim.publish(3, rec).unwrap();
    // Every holder dies; after the owner republishes, the record is found again.
    let holders: Vec<usize> = (0..sim.len())
        .filter(|&i| i != 3 && sim.node(i).unwrap().store().get(&key, sim.now()).is_some())
        .collect();
    assert!(!holders.is_empty());
    for &h in &holders {
        sim.kill(h);
    }
    let t = sim.now();
    sim.advance_to(t + 3_600_000 + 1);
    let from = (0..sim.len()).find(|&i| sim.is_alive(i) && i != 3).unwrap();
    assert!(sim.find_value(from, key).unwrap().is_some(), "seed {seed}");
    // After expiry nobody serves it.
    sim.advance_to(t + 3 * 3_600_000 + 1);
    assert!(sim.find_value(from, key).unwrap().is_none(), "seed {seed}");
}

#[test]
fn forged_store_is_refused_by_the_network() {
    let seed = 808;
    let mut sim = network(80, seed, Config::default());
    let (victim, rec) = relay_record(&mut sim, 5);
    let key = rec.key;
    sim.publish(2, rec).unwrap();
    // The attacker re-signs a higher sequence for the victim's key with its own key.
    let attacker = IdentityKeyPair::generate(sim.rng());
    let mut forged = descriptor(&attacker, 99, sim.now() + 1000);
    forged.key = key;
    // The node API refuses to publish it at all...
    let now = sim.now();
    assert!(forged.validate(now).is_err());
    assert!(sim.start_publish(4, forged).is_err());
    let found = sim.find_value(30, key).unwrap().unwrap();
    assert_eq!(found.sequence, 5, "seed {seed}");
    assert_eq!(found.signer, victim.public_key().to_bytes());
    let _ = NodeId::of(&victim.public_key());
}

trait FromSeed {
    fn from_seed_u64(s: u64) -> Self;
}
impl FromSeed for rand_chacha::ChaCha20Rng {
    fn from_seed_u64(s: u64) -> Self {
        rand_core::SeedableRng::seed_from_u64(s)
    }
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut sim = network_with(SimConfig {
            nodes: 60,
            seed,
            loss: 0.02,
            ..SimConfig::default()
        });
        let (_, rec) = relay_record(&mut sim, 1);
        let key = rec.key;
        sim.publish(4, rec).unwrap();
        let (_, stats) = sim.find_value_stats(50, key).unwrap();
        (sim.stats(), sim.now(), stats)
    };
    assert_eq!(run(42), run(42), "seed 42");
    assert_ne!(run(42).0, run(43).0);
}

#[test]
fn read_repair_updates_holders_of_an_older_version() {
    let seed = 909;
    let node = Config {
        value_quorum: 20,
        republish_interval_ms: 0,
        ..Config::default()
    };
    let mut sim = network(80, seed, node);
    let id = IdentityKeyPair::generate(sim.rng());
    let make = |sim: &Sim, seq| descriptor(&id, seq, sim.now() + 3_600_000);
    let v1 = make(&sim, 1);
    let key = v1.key;
    sim.publish(2, v1).unwrap();
    let holders: Vec<usize> = (0..sim.len())
        .filter(|&i| sim.node(i).unwrap().store().get(&key, sim.now()).is_some())
        .collect();
    // Five holders are cut off while version 2 is published, then come back with version 1.
    let away: Vec<usize> = holders
        .iter()
        .copied()
        .filter(|&i| i != 2)
        .take(5)
        .collect();
    for &i in &away {
        sim.kill(i);
    }
    sim.publish(2, make(&sim, 2)).unwrap();
    for &i in &away {
        sim.revive(i);
        assert_eq!(sim.node(i).unwrap().store().sequence(&key, sim.now()), 1);
    }
    // A reader gets version 2, and the holders it saw serving version 1 are repaired.
    let reader = (0..sim.len())
        .find(|i| !holders.contains(i) && *i != 2)
        .unwrap();
    let found = sim.find_value(reader, key).unwrap().unwrap();
    assert_eq!(found.sequence, 2, "seed {seed}");
    sim.run_until_idle();
    let repaired = away
        .iter()
        .filter(|&&i| sim.node(i).unwrap().store().sequence(&key, sim.now()) == 2)
        .count();
    assert!(repaired >= 3, "seed {seed}: {repaired} of 5 repaired");
}

#[test]
fn holders_and_the_publisher_answer_from_their_own_records() {
    let seed = 1010;
    let mut sim = network(60, seed, Config::default());
    let (_, rec) = relay_record(&mut sim, 3);
    let key = rec.key;
    let publisher = 4;
    assert!(
        sim.publish(publisher, rec.clone()).unwrap() >= 10,
        "seed {seed}"
    );
    let holder = (0..sim.len())
        .find(|&i| i != publisher && sim.node(i).unwrap().store().get(&key, sim.now()).is_some())
        .unwrap();
    // Neither the publisher (its own record) nor a holder (one held for others) asks the
    // network for a value it has: no request, depth 0.
    for i in [publisher, holder] {
        let sent_before = sim.stats().delivered;
        let (found, stats) = sim.find_value_stats(i, key).unwrap();
        assert_eq!(found.as_ref(), Some(&rec), "seed {seed}, node {i}");
        assert_eq!(
            (stats.requests, stats.hops),
            (0, 0),
            "seed {seed}, node {i}"
        );
        assert_eq!(sim.stats().delivered, sent_before, "seed {seed}, node {i}");
    }
    // A node without it still finds it through the network.
    let reader = (0..sim.len())
        .find(|&i| i != publisher && sim.node(i).unwrap().store().get(&key, sim.now()).is_none())
        .unwrap();
    let (found, stats) = sim.find_value_stats(reader, key).unwrap();
    assert_eq!(found, Some(rec), "seed {seed}");
    assert!(stats.requests > 0, "seed {seed}");
}
