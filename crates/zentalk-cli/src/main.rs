//! `zentalk`: the ZenTalk command-line client.
//!
//! - `zentalk demo`: a local network in one process (DHT, five relays, two clients).
//! - `zentalk init`: a new account and config; `zentalk whoami`: what to share.
//! - `zentalk send PEER TEXT`, `zentalk inbox`, `zentalk chat PEER`, `zentalk serve`: the
//!   client over the network, through the client driver.
//!
//! Exit status: 0 success (for `send`: delivered); 1 an error (one line on standard error
//! saying what to do); 2 a usage error; 3 (`send` only) the message is saved and was handed to
//! the network but its delivery receipt did not come within `--wait`: it is retried on the
//! next run of any zentalk command that reaches the network.
//!
//! The store password comes from `$ZENTALK_PASSWORD` only. Logs go to standard error when
//! `RUST_LOG` is set; they never contain message text or keys.

#![allow(
    clippy::disallowed_types,
    reason = "a binary is the place that creates the OS random number generator"
)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod commands;
mod demo;
mod init;
mod session;

use init::CliResult;
use session::PeerArg;

/// The ZenTalk command-line client.
#[derive(Parser, Debug)]
#[command(name = "zentalk", version, about)]
struct Cli {
    /// Client directory holding config.toml and the encrypted store.
    #[arg(long, global = true, env = "ZENTALK_DIR", default_value = ".zentalk")]
    dir: PathBuf,
    /// TESTS ONLY: short retry, reconnect and directory timers so end-to-end tests finish in
    /// seconds. Hidden; never useful for real use.
    #[arg(
        long,
        global = true,
        hide = true,
        env = "ZENTALK_TEST_FAST_TIMERS",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    test_fast_timers: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a local network in one process: a DHT, five relays, Alice and Bob.
    Demo,
    /// Create an account in a password-encrypted store (password from $ZENTALK_PASSWORD)
    /// and a config file naming the DHT bootstrap node and the relays.
    Init {
        /// UDP address of a DHT node to bootstrap from.
        #[arg(long)]
        dht_bootstrap: std::net::SocketAddr,
        /// Node id (hex or base32) of the relay that keeps your contact mailbox.
        #[arg(long)]
        contact_relay: String,
        /// Node ids of the relays to route through, comma-separated (looked up in the DHT;
        /// each message crosses three of them). The contact relay is always included.
        #[arg(long, value_delimiter = ',')]
        relays: Vec<String>,
        /// Node ids of the relays that may keep the per-contact mailboxes you create,
        /// comma-separated (default: the contact relay).
        #[arg(long, value_delimiter = ',')]
        mailbox_relays: Vec<String>,
        /// TESTS ONLY: a cheap key derivation for the store (fast, and weak against password
        /// guessing). Hidden.
        #[arg(
            long,
            hide = true,
            env = "ZENTALK_TEST_FAST_KDF",
            value_parser = clap::builder::FalseyValueParser::new()
        )]
        test_fast_kdf: bool,
    },
    /// Show the account: address, identity key (what others add you by), config.
    Whoami,
    /// Send a text and wait for the delivery receipt (exit 0 delivered, 3 queued).
    Send {
        /// The peer: their identity key (64 hex digits, from `zentalk whoami`) or the
        /// address of a contact.
        peer: PeerArg,
        /// The text.
        text: String,
        /// Seconds to wait for the delivery receipt before reporting the message queued.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// Fetch new messages once, print them, send receipts and pending retries, exit.
    Inbox,
    /// Talk with one peer: lines typed are sent, what arrives is printed.
    Chat {
        /// The peer: identity key (64 hex digits) or the address of a contact.
        peer: PeerArg,
    },
    /// Run the client with the local HTTP API for apps, until SIGTERM or SIGINT.
    Serve {
        /// Loopback address of the local API.
        #[arg(long, default_value = "127.0.0.1:7717")]
        listen: std::net::SocketAddr,
    },
}

/// Logs go to standard error, filtered by `RUST_LOG` (nothing unless it is set). They never
/// contain message text or keys: the end-to-end tests scan them at trace level.
fn init_logging() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zentalk: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> CliResult<ExitCode> {
    let dir = cli.dir;
    let fast = cli.test_fast_timers;
    match cli.command {
        Command::Demo => demo::run()?,
        Command::Init {
            dht_bootstrap,
            contact_relay,
            relays,
            mailbox_relays,
            test_fast_kdf,
        } => {
            let options = init::InitOptions {
                dht_bootstrap,
                contact_relay,
                relays,
                mailbox_relays,
            };
            run_init(&dir, &options, test_fast_kdf)?;
        }
        Command::Whoami => run_whoami(&dir)?,
        Command::Send { peer, text, wait } => {
            let outcome = runtime()?.block_on(commands::send(
                &dir,
                peer,
                text,
                Duration::from_secs(wait),
                fast,
            ))?;
            return Ok(match outcome {
                commands::SendOutcome::Delivered => {
                    println!("delivered");
                    ExitCode::SUCCESS
                }
                commands::SendOutcome::Queued => {
                    println!("queued, will retry on next run");
                    ExitCode::from(commands::EXIT_QUEUED)
                }
            });
        }
        Command::Inbox => runtime()?.block_on(commands::inbox(&dir, fast))?,
        Command::Chat { peer } => runtime()?.block_on(commands::chat(&dir, peer, fast))?,
        Command::Serve { listen } => runtime()?.block_on(commands::serve(&dir, listen, fast))?,
    }
    Ok(ExitCode::SUCCESS)
}

fn run_init(dir: &Path, options: &init::InitOptions, fast_kdf: bool) -> CliResult<()> {
    let password = session::password()?;
    let params = if fast_kdf {
        zentalk_storage::client::KdfParams::TEST
    } else {
        zentalk_storage::client::KdfParams::PRODUCTION
    };
    let client = runtime()?.block_on(init::init(dir, options, password.as_bytes(), params))?;
    println!("created {}", dir.join(init::CONFIG_FILE).display());
    println!("address      {}", client.address());
    println!(
        "identity key {} (share this: others add you with it)",
        hex32(client.identity_key().as_bytes())
    );
    Ok(())
}

fn hex32(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run_whoami(dir: &Path) -> CliResult<()> {
    let account = runtime()?.block_on(async {
        let a = session::open_account(dir).await?;
        a.store.close().await;
        Ok::<_, Box<dyn std::error::Error>>((a.config, a.client))
    })?;
    let (config, client) = account;
    println!("address        {}", client.address());
    println!("identity key   {}", hex32(client.identity_key().as_bytes()));
    println!("dht bootstrap  {}", config.dht_bootstrap);
    println!("contact relay  {}", config.contact_relay);
    println!("relays         {}", config.relays()?.len());
    println!("contacts       {}", client.contacts().len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn commands_parse() {
        let hex = "ab".repeat(32);
        let c = Cli::try_parse_from(["zentalk", "--dir", "d", "send", &hex, "hi", "--wait", "5"]);
        // "abab..." may or may not be a valid curve point; either way the parse is decided by
        // PeerArg, not by clap's shape checks.
        if let Ok(c) = c {
            assert!(matches!(c.command, Command::Send { wait: 5, .. }));
        }
        let c = Cli::try_parse_from([
            "zentalk",
            "init",
            "--dht-bootstrap",
            "127.0.0.1:1",
            "--contact-relay",
            "x",
            "--relays",
            "a,b,c",
        ])
        .unwrap();
        match c.command {
            Command::Init { relays, .. } => assert_eq!(relays, ["a", "b", "c"]),
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["zentalk", "send", "not-a-peer", "hi"]).is_err());
        assert!(Cli::try_parse_from(["zentalk", "chat"]).is_err());
        let s = Cli::try_parse_from(["zentalk", "serve", "--listen", "127.0.0.1:0"]).unwrap();
        assert!(matches!(s.command, Command::Serve { .. }));
        assert_eq!(s.dir, PathBuf::from(".zentalk"));
    }
}
