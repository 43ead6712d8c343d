//! `zentalk init`: a new account in an encrypted store, and a config file naming the DHT
//! bootstrap node.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use zentalk_client::Client;
use zentalk_crypto::NodeId;
use zentalk_storage::client::{ClientStore, KdfParams};

/// Name of the config file inside the client directory.
pub(crate) const CONFIG_FILE: &str = "config.toml";
/// Name of the encrypted store inside the client directory.
pub(crate) const STORE_FILE: &str = "store.db";
/// Environment variable holding the store password (never a command-line argument, which
/// other local users could read from the process list).
pub(crate) const PASSWORD_ENV: &str = "ZENTALK_PASSWORD";

/// The client config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Config {
    /// UDP address of a DHT node to bootstrap from.
    pub(crate) dht_bootstrap: SocketAddr,
    /// Node id (hex) of the relay keeping the contact mailbox.
    pub(crate) contact_relay: String,
    /// The encrypted store, relative to the config file's directory.
    pub(crate) store: PathBuf,
}

type CliResult<T> = Result<T, Box<dyn std::error::Error>>;

#[allow(clippy::disallowed_methods, reason = "the CLI binary reads the clock")]
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Creates `dir/config.toml` and `dir/store.db` with a new account. Refuses to overwrite.
pub(crate) async fn init(
    dir: &Path,
    dht_bootstrap: SocketAddr,
    contact_relay: &str,
    password: &[u8],
    params: KdfParams,
) -> CliResult<Client> {
    if password.is_empty() {
        return Err(format!("set {PASSWORD_ENV} to the store password").into());
    }
    let relay: NodeId = contact_relay
        .parse()
        .map_err(|e| format!("--contact-relay is not a node id: {e}"))?;
    let config_path = dir.join(CONFIG_FILE);
    if config_path.exists() {
        return Err(format!("{} exists; not overwriting", config_path.display()).into());
    }
    tokio::fs::create_dir_all(dir).await?;
    let mut rng = OsRng;
    let client = Client::new(&mut rng, relay, vec![relay]);
    let store = ClientStore::create(dir.join(STORE_FILE), password, params).await?;
    client.save(&store, &mut rng, unix_ms()).await?;
    store.close().await;
    let config = Config {
        dht_bootstrap,
        contact_relay: relay.to_hex(),
        store: PathBuf::from(STORE_FILE),
    };
    let text = format!(
        "# zentalk client configuration (written by `zentalk init`).\n\
         # dht_bootstrap: UDP address of a DHT node to join through.\n\
         # contact_relay: node id of the relay that keeps your contact mailbox.\n\
         # store: the password-encrypted store (password from ${PASSWORD_ENV}).\n{}",
        toml::to_string(&config)?
    );
    tokio::fs::write(&config_path, text).await?;
    Ok(client)
}

/// Reads a config file.
pub(crate) fn load_config(path: &Path) -> CliResult<Config> {
    Ok(toml::from_str(&std::fs::read_to_string(path)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn init_writes_config_and_an_encrypted_account() {
        let dir = tempfile::tempdir().unwrap();
        let relay = NodeId::from_bytes([4; 32]).to_hex();
        let boot: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let c = init(dir.path(), boot, &relay, b"pw", KdfParams::TEST)
            .await
            .unwrap();
        let cfg = load_config(&dir.path().join(CONFIG_FILE)).unwrap();
        assert_eq!(cfg.dht_bootstrap, boot);
        assert_eq!(cfg.contact_relay, relay);
        let store = ClientStore::open(dir.path().join(&cfg.store), b"pw")
            .await
            .unwrap();
        let loaded = Client::load(&store).await.unwrap().unwrap();
        assert_eq!(loaded.address(), c.address());
        assert!(
            ClientStore::open(dir.path().join(&cfg.store), b"nope")
                .await
                .is_err()
        );
        // Refuses to overwrite, an empty password and a malformed relay id.
        assert!(
            init(dir.path(), boot, &relay, b"pw", KdfParams::TEST)
                .await
                .is_err()
        );
        let d2 = tempfile::tempdir().unwrap();
        assert!(
            init(d2.path(), boot, &relay, b"", KdfParams::TEST)
                .await
                .is_err()
        );
        assert!(
            init(d2.path(), boot, "zz", b"pw", KdfParams::TEST)
                .await
                .is_err()
        );
    }
}
