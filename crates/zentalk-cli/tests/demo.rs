//! README's main command, `zentalk demo`, as a process: it exits 0, every text arrives once
//! and in order (Bob's offline ones too), every step settles, and no relay saw both a client
//! link and a mailbox. Also the in-process test network on its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::Duration;

use zentalk_cli::testnet::{Runner, Testnet, TestnetConfig};

#[test]
fn zentalk_demo_runs_and_shows_what_the_issue_asks() {
    let out = Command::new(env!("CARGO_BIN_EXE_zentalk"))
        .arg("demo")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(out.status.success(), "{out:?}");
    // (Sequence numbers are the engine's business; the texts and their order are the demo's.)
    let reads = [
        "from alice: \"hi bob\"",
        "from alice: \"this crossed three relays\"",
        "from alice: \"none of them saw both ends\"",
        "from bob: \"hi alice, got all three\"",
        "from alice: \"are you there?\"",
        "from alice: \"I'll wait\"",
    ];
    let mut at = 0;
    for r in reads {
        assert_eq!(stdout.matches(r).count(), 1, "{r} not exactly once");
        let pos = stdout.find(r).unwrap();
        assert!(pos > at, "{r} out of order");
        at = pos;
    }
    assert!(!stdout.contains("not settled"), "a step did not settle");
    assert!(stdout.contains("signed descriptors"));
    assert!(stdout.contains("relay observations with both a client link and a mailbox: 0"));
    for i in 1..=5 {
        assert!(
            stdout.contains(&format!("  relay{i}: ")),
            "relay{i}'s view missing"
        );
    }
    assert!(stdout.contains("Finished in"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_testnet_publishes_descriptors_and_stops() {
    let mut net = Testnet::start(&TestnetConfig {
        relays: 3,
        runner: Runner::InProcess,
        demo_observe: true,
    })
    .await
    .unwrap();
    let dir = net
        .wait_for_descriptors(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(dir.relays().len(), 3);
    for (r, node) in net.relays().iter().zip(net.node_ids()) {
        let entry = dir.get(&node).unwrap();
        assert_eq!(entry.addr, r.addr());
        assert_eq!(Some(entry.noise_key), r.noise_key().map(|k| k.to_bytes()));
        assert!(r.observations().is_empty());
        assert!(r.metrics_text().unwrap().contains("zentalk_relay"));
    }
    let r = net.relay_mut(0).unwrap();
    assert!(r.is_running());
    r.kill();
    assert!(!r.is_running());
    net.relay_mut(1).unwrap().stop().await;
    assert!(!net.relay_mut(1).unwrap().is_running());
    net.stop().await;
}
