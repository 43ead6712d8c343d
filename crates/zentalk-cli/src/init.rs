//! `zentalk init`: a new account in an encrypted store, and a config file naming the DHT
//! bootstrap node and the relays to look up in the DHT.

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
    /// Node ids (hex) of the relays to route through: the client looks their signed
    /// descriptors up in the DHT. Empty in a config written before this key existed: the
    /// contact relay alone is used then.
    #[serde(default)]
    pub(crate) relays: Vec<String>,
    /// The encrypted store, relative to the config file's directory.
    pub(crate) store: PathBuf,
}

impl Config {
    /// The contact relay's node id.
    pub(crate) fn contact_relay(&self) -> CliResult<NodeId> {
        parse_node(&self.contact_relay, "contact_relay")
    }

    /// The relays to route through (the contact relay included).
    pub(crate) fn relays(&self) -> CliResult<Vec<NodeId>> {
        let mut out = vec![self.contact_relay()?];
        for r in &self.relays {
            let n = parse_node(r, "relays")?;
            if !out.contains(&n) {
                out.push(n);
            }
        }
        Ok(out)
    }
}

fn parse_node(s: &str, what: &str) -> CliResult<NodeId> {
    s.parse()
        .map_err(|e| format!("{what}: {s:?} is not a relay node id ({e})").into())
}

/// What `zentalk init` is told.
#[derive(Debug, Clone)]
pub(crate) struct InitOptions {
    /// UDP address of a DHT node to bootstrap from.
    pub(crate) dht_bootstrap: SocketAddr,
    /// Node id of the relay keeping the contact mailbox.
    pub(crate) contact_relay: String,
    /// Node ids of the relays to route through.
    pub(crate) relays: Vec<String>,
    /// Node ids of the relays that may keep per-contact mailboxes (empty: the contact relay).
    pub(crate) mailbox_relays: Vec<String>,
}

pub(crate) type CliResult<T> = Result<T, Box<dyn std::error::Error>>;

#[allow(clippy::disallowed_methods, reason = "the CLI binary reads the clock")]
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Creates `dir/config.toml` and `dir/store.db` with a new account. Refuses to overwrite.
pub(crate) async fn init(
    dir: &Path,
    options: &InitOptions,
    password: &[u8],
    params: KdfParams,
) -> CliResult<Client> {
    if password.is_empty() {
        return Err(format!("set {PASSWORD_ENV} to the store password").into());
    }
    let relay = parse_node(&options.contact_relay, "--contact-relay")?;
    let mut relays = Vec::new();
    for r in &options.relays {
        let n = parse_node(r, "--relays")?;
        if n != relay && !relays.contains(&n) {
            relays.push(n);
        }
    }
    let mut mailbox_relays = Vec::new();
    for r in &options.mailbox_relays {
        mailbox_relays.push(parse_node(r, "--mailbox-relays")?);
    }
    if mailbox_relays.is_empty() {
        mailbox_relays.push(relay);
    }
    let config_path = dir.join(CONFIG_FILE);
    if config_path.exists() {
        return Err(format!("{} exists; not overwriting", config_path.display()).into());
    }
    tokio::fs::create_dir_all(dir).await?;
    let mut rng = OsRng;
    let client = Client::new(&mut rng, relay, mailbox_relays);
    let store = ClientStore::create(dir.join(STORE_FILE), password, params).await?;
    client.save(&store, &mut rng, unix_ms()).await?;
    store.close().await;
    let config = Config {
        dht_bootstrap: options.dht_bootstrap,
        contact_relay: relay.to_hex(),
        relays: relays.iter().map(NodeId::to_hex).collect(),
        store: PathBuf::from(STORE_FILE),
    };
    let text = format!(
        "# zentalk client configuration (written by `zentalk init`).\n\
         # dht_bootstrap: UDP address of a DHT node to join through.\n\
         # contact_relay: node id of the relay that keeps your contact mailbox.\n\
         # relays: node ids of further relays to route through (their signed descriptors\n\
         #   are looked up in the DHT; every message crosses three relays).\n\
         # store: the password-encrypted store (password from ${PASSWORD_ENV}).\n{}",
        toml::to_string(&config)?
    );
    tokio::fs::write(&config_path, text).await?;
    Ok(client)
}

/// Largest config file read (a real one is well under 2 KiB).
pub(crate) const MAX_CONFIG_LEN: u64 = 64 * 1024;

/// Reads a config file.
pub(crate) fn load_config(path: &Path) -> CliResult<Config> {
    let meta = std::fs::metadata(path).map_err(|e| {
        format!(
            "cannot read {}: {e} (run `zentalk init` first, or pass --dir)",
            path.display()
        )
    })?;
    if meta.len() > MAX_CONFIG_LEN {
        return Err(format!(
            "{} is {} bytes; a config file is at most {MAX_CONFIG_LEN}",
            path.display(),
            meta.len()
        )
        .into());
    }
    let text = std::fs::read_to_string(path)?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn init_writes_config_and_an_encrypted_account() {
        let dir = tempfile::tempdir().unwrap();
        let relay = NodeId::from_bytes([4; 32]).to_hex();
        let other = NodeId::from_bytes([5; 32]);
        let boot: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let opts = |contact: &str, relays: Vec<String>| InitOptions {
            dht_bootstrap: boot,
            contact_relay: contact.to_owned(),
            relays,
            mailbox_relays: Vec::new(),
        };
        let good = opts(&relay, vec![relay.clone(), other.to_base32()]);
        let c = init(dir.path(), &good, b"pw", KdfParams::TEST)
            .await
            .unwrap();
        let cfg = load_config(&dir.path().join(CONFIG_FILE)).unwrap();
        assert_eq!(cfg.dht_bootstrap, boot);
        assert_eq!(cfg.contact_relay, relay);
        // The contact relay first, then the others once each, whatever the spelling.
        assert_eq!(
            cfg.relays().unwrap(),
            vec![NodeId::from_bytes([4; 32]), other]
        );
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
        // Refuses to overwrite, an empty password and malformed relay ids.
        assert!(
            init(dir.path(), &good, b"pw", KdfParams::TEST)
                .await
                .is_err()
        );
        let d2 = tempfile::tempdir().unwrap();
        assert!(init(d2.path(), &good, b"", KdfParams::TEST).await.is_err());
        assert!(
            init(d2.path(), &opts("zz", vec![]), b"pw", KdfParams::TEST)
                .await
                .is_err()
        );
        assert!(
            init(
                d2.path(),
                &opts(&relay, vec!["zz".into()]),
                b"pw",
                KdfParams::TEST
            )
            .await
            .is_err()
        );
        assert!(!d2.path().join(CONFIG_FILE).exists());
    }

    #[test]
    fn config_errors_name_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let missing = load_config(&dir.path().join("config.toml")).unwrap_err();
        assert!(missing.to_string().contains("zentalk init"), "{missing}");
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "dht_bootstrap = 5\n").unwrap();
        assert!(
            load_config(&bad)
                .unwrap_err()
                .to_string()
                .contains("bad.toml")
        );
        let big = dir.path().join("big.toml");
        std::fs::write(&big, "#".repeat(70_000)).unwrap();
        assert!(load_config(&big).is_err());
        // A config written before `relays` existed still loads: the contact relay alone.
        let old = dir.path().join("old.toml");
        let relay = NodeId::from_bytes([4; 32]);
        std::fs::write(
            &old,
            format!(
                "dht_bootstrap = \"127.0.0.1:1\"\ncontact_relay = \"{}\"\nstore = \"store.db\"\n",
                relay.to_hex()
            ),
        )
        .unwrap();
        assert_eq!(load_config(&old).unwrap().relays().unwrap(), vec![relay]);
    }
}
