//! What every network command shares: open the encrypted store, join the DHT, start the
//! client driver, and print events for people.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand_core::OsRng;
use zentalk_client::driver::{DriverConfig, DriverEvent, DriverHandle, DriverOptions};
use zentalk_client::{Client, ContactInfo};
use zentalk_crypto::{Address, IdentityKeyPair, IdentityPublicKey};
use zentalk_dht::net::{DhtHandle, NetConfig};
use zentalk_storage::client::ClientStore;

use crate::init::{CONFIG_FILE, CliResult, Config, PASSWORD_ENV, load_config};

/// How often a long-running client rebuilds its relay directory from the DHT.
pub(crate) const DIRECTORY_REFRESH: Duration = Duration::from_secs(300);

/// Timers of the hidden test mode (`--test-fast-timers`, `$ZENTALK_TEST_FAST_TIMERS`): the
/// end-to-end tests would otherwise wait for the real retry and reconnect schedules.
pub(crate) mod fast {
    use std::time::Duration;

    /// First retry of an unacknowledged message.
    pub(crate) const RETRY_INITIAL: Duration = Duration::from_millis(300);
    /// Largest retry interval.
    pub(crate) const RETRY_MAX: Duration = Duration::from_millis(1_500);
    /// First pause before reopening a lost mailbox link.
    pub(crate) const RECONNECT_INITIAL: Duration = Duration::from_millis(50);
    /// Largest pause between reconnection attempts.
    pub(crate) const RECONNECT_MAX: Duration = Duration::from_millis(500);
    /// How long a relay that failed a packet is left out of routes.
    pub(crate) const RELAY_DOWN_FOR: Duration = Duration::from_secs(30);
    /// Time allowed to open a link.
    pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Directory refresh.
    pub(crate) const DIRECTORY_REFRESH: Duration = Duration::from_secs(2);
}

/// The driver options for normal use, or for the hidden test mode.
pub(crate) fn driver_options(fast_timers: bool) -> DriverOptions {
    if fast_timers {
        DriverOptions {
            retry_initial: fast::RETRY_INITIAL,
            retry_max: fast::RETRY_MAX,
            reconnect_initial: fast::RECONNECT_INITIAL,
            reconnect_max: fast::RECONNECT_MAX,
            relay_down_for: fast::RELAY_DOWN_FOR,
            connect_timeout: fast::CONNECT_TIMEOUT,
            ..DriverOptions::default()
        }
    } else {
        DriverOptions::default()
    }
}

/// The store password, from the environment only (never an argument: other local users can
/// read process arguments).
pub(crate) fn password() -> CliResult<String> {
    match std::env::var(PASSWORD_ENV) {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => Err(format!("set {PASSWORD_ENV} to your store password").into()),
    }
}

/// The account of a client directory: its config, its open store and its engine.
pub(crate) struct Account {
    pub(crate) config: Config,
    pub(crate) store: ClientStore,
    pub(crate) client: Client,
}

/// Opens `dir/config.toml` and the store it names, and loads the account.
pub(crate) async fn open_account(dir: &Path) -> CliResult<Account> {
    let config = load_config(&dir.join(CONFIG_FILE))?;
    let password = password()?;
    let path: PathBuf = dir.join(&config.store);
    if !path.exists() {
        return Err(format!(
            "{} is missing; run `zentalk init` to create an account",
            path.display()
        )
        .into());
    }
    let store = ClientStore::open(&path, password.as_bytes())
        .await
        .map_err(|e| {
            format!(
                "cannot open {}: {e} (is {PASSWORD_ENV} the password given to `zentalk init`?)",
                path.display()
            )
        })?;
    let Some(client) = Client::load(&store).await? else {
        store.close().await;
        return Err(format!(
            "{} holds no account; run `zentalk init` in a new directory",
            path.display()
        )
        .into());
    };
    Ok(Account {
        config,
        store,
        client,
    })
}

/// The local address a DHT node binds to reach `bootstrap`: loopback for a loopback
/// bootstrap, every interface of its family otherwise.
fn dht_bind_for(bootstrap: SocketAddr) -> SocketAddr {
    let ip = match bootstrap.ip() {
        IpAddr::V4(a) if a.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// Joins the DHT through the configured bootstrap node.
pub(crate) async fn join_dht(config: &Config) -> CliResult<DhtHandle> {
    let identity = IdentityKeyPair::generate(&mut OsRng);
    // Client mode: asks and publishes, but stays out of other nodes' routing tables, so a
    // command that exits after a second leaves no dead entry behind.
    let mut net = NetConfig::default();
    net.node.server = false;
    let (dht, _task) =
        zentalk_dht::net::spawn(identity, dht_bind_for(config.dht_bootstrap), net).await?;
    let known = dht
        .bootstrap(vec![config.dht_bootstrap])
        .await
        .map_err(|e| format!("cannot join the DHT through {}: {e}", config.dht_bootstrap))?;
    if known == 0 {
        return Err(format!(
            "the DHT bootstrap node {} did not answer; check dht_bootstrap in config.toml",
            config.dht_bootstrap
        )
        .into());
    }
    Ok(dht)
}

/// A running client: the driver, its events since start, and the DHT node it uses.
pub(crate) struct Session {
    pub(crate) handle: DriverHandle,
    /// Subscribed before the driver task ran: nothing it reported at start is missed.
    pub(crate) events: tokio::sync::broadcast::Receiver<DriverEvent>,
    _dht: DhtHandle,
}

/// Opens the account in `dir`, joins the DHT and starts the driver.
pub(crate) async fn start(dir: &Path, hold_links: bool, fast_timers: bool) -> CliResult<Session> {
    let account = open_account(dir).await?;
    let relays = account.config.relays()?;
    let dht = join_dht(&account.config).await?;
    let config = DriverConfig {
        dht: dht.clone(),
        limits: zentalk_relay::Limits::default(),
        relays,
        directory_refresh: if fast_timers {
            fast::DIRECTORY_REFRESH
        } else {
            DIRECTORY_REFRESH
        },
        hold_mailbox_links: hold_links,
    };
    let (handle, events) = zentalk_client::driver::start_subscribed(
        account.client,
        account.store,
        config,
        driver_options(fast_timers),
    )
    .await
    .map_err(|e| format!("cannot start the client: {e}"))?;
    Ok(Session {
        handle,
        events,
        _dht: dht,
    })
}

/// A peer as given on the command line: an identity key (64 hex digits, what `zentalk
/// whoami` prints to share), or the address of a known contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerArg {
    /// An identity key: the contact card can be looked up in the DHT.
    Identity(IdentityPublicKey),
    /// An address: only a known contact can be written to.
    Address(Address),
}

impl std::str::FromStr for PeerArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut bytes = [0u8; 32];
            for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
                let hex = std::str::from_utf8(chunk).map_err(|e| e.to_string())?;
                if let Some(b) = bytes.get_mut(i) {
                    *b = u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                }
            }
            return IdentityPublicKey::from_bytes(&bytes)
                .map(PeerArg::Identity)
                .map_err(|_| format!("{s} is not a valid identity key"));
        }
        s.parse::<Address>().map(PeerArg::Address).map_err(|_| {
            format!(
                "{s:?} is neither an identity key (64 hex digits, from `zentalk whoami`) \
                 nor an address"
            )
        })
    }
}

/// The address of `peer`, adding it as a contact (card looked up in the DHT) if needed.
pub(crate) async fn resolve_peer(handle: &DriverHandle, peer: PeerArg) -> CliResult<Address> {
    let contacts: Vec<ContactInfo> = handle.contacts().await?;
    match peer {
        PeerArg::Identity(key) => {
            let address = key.address();
            if contacts.iter().any(|c| c.address == address) {
                return Ok(address);
            }
            handle.add_contact(key).await.map_err(|e| {
                format!(
                    "cannot add {address} as a contact: {e} (their card is published when \
                     they run a zentalk command; ask them to run `zentalk inbox`)"
                )
            })?;
            Ok(address)
        }
        PeerArg::Address(address) => {
            if contacts.iter().any(|c| c.address == address) {
                Ok(address)
            } else {
                Err(format!(
                    "{address} is not a contact yet; pass their identity key (64 hex digits, \
                     shown by `zentalk whoami`) instead"
                )
                .into())
            }
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` UTC of a time in ms since the Unix epoch.
pub(crate) fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// First characters of an id in hex, to tell messages apart on screen.
pub(crate) fn short_id(id: &[u8]) -> String {
    id.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// One line for a person about an event, or `None` for events only a program cares about.
pub(crate) fn describe(event: &DriverEvent) -> Option<String> {
    Some(match event {
        DriverEvent::Message {
            from,
            text,
            received_ms,
            ..
        } => format!("[{}] {from}: {text}", format_time(*received_ms)),
        DriverEvent::Delivered { to, id } => {
            format!("delivered: message {} to {to}", short_id(id))
        }
        DriverEvent::Read { by, ids } => format!("read by {by}: {} message(s)", ids.len()),
        DriverEvent::Typing { from, typing: true } => format!("{from} is typing"),
        DriverEvent::GapDetected { from, first, last } => {
            format!("messages #{first}..#{last} from {from} have not arrived yet; later ones wait")
        }
        DriverEvent::MessagesLost { from, first, last } => {
            format!("messages #{first}..#{last} from {from} were lost")
        }
        DriverEvent::ContactAdded { address } => format!("new contact: {address}"),
        DriverEvent::SessionReset { from } => {
            format!("{from} started a fresh encrypted session")
        }
        DriverEvent::SessionRepairStarted { with } => {
            format!("messages from {with} kept failing to decrypt; a fresh session was started")
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(format_time(1_795_389_296_789), "2026-11-22 23:14:56");
    }

    #[test]
    fn peers_are_identity_keys_or_addresses() {
        let key = IdentityKeyPair::from_seed(&[9; 32]).public_key();
        let hex: String = key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex.parse::<PeerArg>(), Ok(PeerArg::Identity(key)));
        let address = key.address();
        assert_eq!(
            address.to_string().parse::<PeerArg>(),
            Ok(PeerArg::Address(address))
        );
        assert!("nope".parse::<PeerArg>().is_err());
        assert!("zz".repeat(32).parse::<PeerArg>().is_err());
    }

    #[test]
    fn the_dht_node_binds_where_the_bootstrap_is_reachable() {
        let local = dht_bind_for("127.0.0.1:4000".parse().unwrap());
        assert!(local.ip().is_loopback());
        let remote = dht_bind_for("192.0.2.1:4000".parse().unwrap());
        assert!(remote.ip().is_unspecified());
    }

    #[test]
    fn events_for_people_never_show_ids_in_full() {
        let from = IdentityKeyPair::from_seed(&[1; 32]).public_key().address();
        let e = DriverEvent::Delivered {
            to: from,
            id: [0xab; 16],
        };
        let line = describe(&e).unwrap();
        assert!(line.contains("abababab") && !line.contains(&"ab".repeat(16)));
        assert!(describe(&DriverEvent::DirectoryRefreshed { relays: 3 }).is_none());
    }
}
