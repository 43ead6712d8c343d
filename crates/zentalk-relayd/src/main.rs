//! `zentalk-relayd`: the ZenTalk relay daemon, a thin layer over `zentalk_relay::Relay`.
//!
//! - `zentalk-relayd init [--dir D]` writes a commented default config (`relay.toml`) and
//!   fresh keys (`relay.key`, mode 0600) into `D`, without asking anything, and prints the
//!   relay's node id and Noise static public key.
//! - `zentalk-relayd run --config F [--listen ADDR] [--metrics ADDR] [--log-level LEVEL]` runs
//!   the relay until SIGTERM or SIGINT, then shuts down gracefully. Once bound it prints
//!   `listening on ADDR` and `metrics on ADDR` on standard output; logs go to standard error.
//!
//! Exit status: 0 after a clean shutdown, 1 on a configuration or runtime error, 2 on a usage
//! error. What the relay does and does not do yet is in `docs/running-a-relay.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use zentalk_relay::{Relay, RelayConfig, RelayKeys};

/// The config file `init` writes: every key at its default, with comments.
const DEFAULT_CONFIG: &str = include_str!("default_config.toml");

/// File names `init` writes.
const CONFIG_FILE: &str = "relay.toml";
const KEY_FILE: &str = "relay.key";

/// Largest config file read (a real one is about 2 KiB).
const MAX_CONFIG_LEN: u64 = 64 * 1024;

#[derive(Debug, Parser)]
#[command(name = "zentalk-relayd", version, about = "ZenTalk relay daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a commented default config (relay.toml) and fresh keys (relay.key) into a directory.
    Init {
        /// Directory to write into (created if missing). Existing files are never overwritten.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Run the relay until SIGTERM or SIGINT.
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Override `listen_addr`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Override `metrics_addr`.
        #[arg(long)]
        metrics: Option<SocketAddr>,
        /// Log filter: a level (error, warn, info, debug, trace) or a tracing directive list.
        #[arg(long, env = "ZENTALK_RELAYD_LOG", default_value = "info")]
        log_level: String,
    },
}

#[derive(Debug, thiserror::Error)]
enum DaemonError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} already exists; init never overwrites (move it away or use another --dir)")]
    Exists { path: PathBuf },
    #[error("{path} is {found} bytes; a config file is at most {limit}")]
    ConfigTooLarge {
        path: PathBuf,
        limit: u64,
        found: u64,
    },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("invalid --log-level: {0}")]
    LogLevel(String),
    #[error(transparent)]
    Keys(#[from] zentalk_relay::KeyFileError),
    #[error(transparent)]
    Relay(#[from] zentalk_relay::RelayError),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init { dir } => init(&dir),
        Command::Run {
            config,
            listen,
            metrics,
            log_level,
        } => run(&config, listen, metrics, &log_level),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zentalk-relayd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError + '_ {
    move |source| DaemonError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn init(dir: &Path) -> Result<(), DaemonError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let config_path = dir.join(CONFIG_FILE);
    let key_path = dir.join(KEY_FILE);
    for path in [&config_path, &key_path] {
        if path.exists() {
            return Err(DaemonError::Exists { path: path.clone() });
        }
    }
    #[allow(
        clippy::disallowed_types,
        reason = "the daemon draws long-term keys from the OS RNG"
    )]
    let keys = RelayKeys::generate(&mut rand_core::OsRng);
    keys.create_file(&key_path)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    let mut file = options.open(&config_path).map_err(io_err(&config_path))?;
    file.write_all(DEFAULT_CONFIG.as_bytes())
        .map_err(io_err(&config_path))?;
    println!("wrote {}", config_path.display());
    println!("wrote {} (mode 600: keep it secret)", key_path.display());
    println!("node id: {}", keys.node_id().to_hex());
    println!(
        "noise static public key: {}",
        to_hex(keys.noise_public().as_bytes())
    );
    Ok(())
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Reads and parses a config file; a relative `key_file` is resolved against its directory.
fn load_config(path: &Path) -> Result<RelayConfig, DaemonError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if meta.len() > MAX_CONFIG_LEN {
        return Err(DaemonError::ConfigTooLarge {
            path: path.to_path_buf(),
            limit: MAX_CONFIG_LEN,
            found: meta.len(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let mut config: RelayConfig = toml::from_str(&text).map_err(|e| DaemonError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if config.mailbox_path.is_relative() {
        let base = path.parent().unwrap_or(Path::new("."));
        config.mailbox_path = base.join(&config.mailbox_path);
    }
    if config.key_file.is_relative() {
        let base = path.parent().unwrap_or(Path::new("."));
        config.key_file = base.join(&config.key_file);
    }
    config.validate().map_err(|e| DaemonError::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(config)
}

fn run(
    config_path: &Path,
    listen: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
    log_level: &str,
) -> Result<(), DaemonError> {
    let filter = tracing_subscriber::EnvFilter::try_new(log_level)
        .map_err(|e| DaemonError::LogLevel(e.to_string()))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let mut config = load_config(config_path)?;
    if let Some(addr) = listen {
        config.listen_addr = addr;
    }
    if let Some(addr) = metrics {
        config.metrics_addr = addr;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io_err(Path::new("tokio runtime")))?;
    runtime.block_on(async move {
        // Install the signal handlers before binding, so a signal sent as soon as the
        // addresses are printed is never missed.
        let shutdown = shutdown_signal()?;
        let relay = Relay::bind(config).await?;
        let addr = relay.local_addr().map_err(io_err(Path::new("listener")))?;
        let metrics_addr = relay
            .metrics_addr()
            .map_err(io_err(Path::new("metrics listener")))?;
        println!("listening on {addr}");
        println!("metrics on {metrics_addr}");
        if let Some(dht) = relay.dht_addr() {
            println!("dht on {dht}");
        }
        let _ = std::io::stdout().flush();
        let report = relay.run(shutdown).await?;
        tracing::info!(
            closed = report.links_closed_gracefully,
            cut = report.links_cut,
            "clean shutdown"
        );
        Ok(())
    })
}

/// A future that completes on the first SIGTERM or SIGINT.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, DaemonError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(io_err(Path::new("SIGTERM handler")))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io_err(Path::new("SIGINT handler")))?;
    Ok(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = which, "shutting down gracefully");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_exactly_the_defaults() {
        let parsed: RelayConfig = toml::from_str(DEFAULT_CONFIG).unwrap();
        assert_eq!(parsed, RelayConfig::default());
    }

    #[test]
    fn default_config_names_every_key() {
        // Every key the config type serializes appears in the commented template.
        let full = toml::to_string(&RelayConfig::default()).unwrap();
        for line in full.lines() {
            if let Some((key, _)) = line.split_once(" = ") {
                assert!(
                    DEFAULT_CONFIG.contains(&format!("\n{key} = ")),
                    "template lacks {key}"
                );
            }
        }
    }

    #[test]
    fn cli_parses_overrides() {
        let cli = Cli::try_parse_from([
            "zentalk-relayd",
            "run",
            "--config",
            "x.toml",
            "--listen",
            "127.0.0.1:1",
            "--metrics",
            "127.0.0.1:2",
            "--log-level",
            "debug",
        ])
        .unwrap();
        match cli.command {
            Command::Run {
                listen,
                metrics,
                log_level,
                ..
            } => {
                assert_eq!(listen, Some("127.0.0.1:1".parse().unwrap()));
                assert_eq!(metrics, Some("127.0.0.1:2".parse().unwrap()));
                assert_eq!(log_level, "debug");
            }
            Command::Init { .. } => unreachable!(),
        }
        assert!(Cli::try_parse_from(["zentalk-relayd", "run"]).is_err());
        assert!(
            Cli::try_parse_from(["zentalk-relayd", "run", "-c", "x", "--listen", "nope"]).is_err()
        );
    }

    #[test]
    fn config_errors_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "listen_addr = 5\n").unwrap();
        assert!(matches!(load_config(&bad), Err(DaemonError::Config { .. })));
        let invalid = dir.path().join("invalid.toml");
        std::fs::write(&invalid, "[limits]\nmax_connections = 0\n").unwrap();
        assert!(matches!(
            load_config(&invalid),
            Err(DaemonError::Config { .. })
        ));
        let big = dir.path().join("big.toml");
        std::fs::write(&big, "#".repeat(70_000)).unwrap();
        assert!(matches!(
            load_config(&big),
            Err(DaemonError::ConfigTooLarge { .. })
        ));
        assert!(matches!(
            load_config(&dir.path().join("missing.toml")),
            Err(DaemonError::Io { .. })
        ));
        let ok = dir.path().join("ok.toml");
        std::fs::write(&ok, DEFAULT_CONFIG).unwrap();
        assert_eq!(
            load_config(&ok).unwrap().key_file,
            dir.path().join("relay.key")
        );
    }
}
