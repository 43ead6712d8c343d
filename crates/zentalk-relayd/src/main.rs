//! `zentalk-relayd`: the ZenTalk relay daemon.
//!
//! The relay (zentalk-relay) is built by the network issue; until then this binary says so
//! and exits with status 2 rather than pretending to run.

fn main() -> std::process::ExitCode {
    eprintln!(
        "zentalk-relayd {}: the relay is not built yet (see the network issue); nothing to run.",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::from(2)
}
