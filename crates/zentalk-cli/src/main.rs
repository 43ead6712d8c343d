//! `zentalk`: the ZenTalk command-line client.
//!
//! `zentalk demo` runs what the workspace has built so far, in one process, and prints only
//! what actually happened.

#![allow(
    clippy::disallowed_types,
    reason = "a binary is the place that creates the OS random number generator"
)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;
mod init;

/// The ZenTalk command-line client.
#[derive(Parser, Debug)]
#[command(name = "zentalk", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a local demonstration of the layers built so far, in one process.
    Demo,
    /// Create an account in a password-encrypted store (password from $ZENTALK_PASSWORD)
    /// and a config file naming the DHT bootstrap node.
    Init {
        /// Directory for config.toml and store.db.
        #[arg(long, default_value = ".zentalk")]
        dir: std::path::PathBuf,
        /// UDP address of a DHT node to bootstrap from.
        #[arg(long)]
        dht_bootstrap: std::net::SocketAddr,
        /// Node id (hex or base32) of the relay that keeps your contact mailbox.
        #[arg(long)]
        contact_relay: String,
    },
    /// Show the account in a client directory (password from $ZENTALK_PASSWORD).
    Whoami {
        /// Directory holding config.toml.
        #[arg(long, default_value = ".zentalk")]
        dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo => demo::run(),
        Command::Init {
            dir,
            dht_bootstrap,
            contact_relay,
        } => run_init(&dir, dht_bootstrap, &contact_relay),
        Command::Whoami { dir } => run_whoami(&dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zentalk: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_init(
    dir: &std::path::Path,
    dht_bootstrap: std::net::SocketAddr,
    contact_relay: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let password = std::env::var(init::PASSWORD_ENV).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = rt.block_on(init::init(
        dir,
        dht_bootstrap,
        contact_relay,
        password.as_bytes(),
        zentalk_storage::client::KdfParams::PRODUCTION,
    ))?;
    println!("created {}", dir.join(init::CONFIG_FILE).display());
    println!("address      {}", client.address());
    println!(
        "identity key {} (share this: others find your contact card with it)",
        hex32(client.identity_key().as_bytes())
    );
    Ok(())
}

fn hex32(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run_whoami(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let config = init::load_config(&dir.join(init::CONFIG_FILE))?;
    let password = std::env::var(init::PASSWORD_ENV).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = rt.block_on(async {
        let store = zentalk_storage::client::ClientStore::open(
            dir.join(&config.store),
            password.as_bytes(),
        )
        .await?;
        let c = zentalk_client::Client::load(&store).await?;
        store.close().await;
        Ok::<_, Box<dyn std::error::Error>>(c)
    })?;
    let client = client.ok_or("the store holds no account")?;
    println!("address        {}", client.address());
    println!("identity key   {}", hex32(client.identity_key().as_bytes()));
    println!("dht bootstrap  {}", config.dht_bootstrap);
    println!("contact relay  {}", config.contact_relay);
    println!("contacts       {}", client.contacts().len());
    Ok(())
}
