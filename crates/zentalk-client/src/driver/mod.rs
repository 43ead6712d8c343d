//! The long-running driver: one tokio task owns the [`Client`] engine and the encrypted
//! [`ClientStore`] (engine snapshot and message history) and moves everything between them
//! and the network; applications talk to it through a cloneable [`DriverHandle`].
//!
//! What the task does (the rules are in `docs/protocol/zentalk-client.md`, "The driver"):
//!
//! - **Mailbox links.** With [`DriverConfig::hold_mailbox_links`], one authenticated
//!   [`crate::net::MailboxLink`] per owned mailbox stays open (a Ping keeps it alive); pushed
//!   items reach the engine at once. A lost link is reopened with exponential back-off and the
//!   first page after authentication brings what was missed.
//! - **Ack after persist.** A mailbox item is acknowledged to its relay only after the engine
//!   state and the history that reflect it are saved in the store; likewise no packet leaves
//!   before the engine state that produced it (ratchet step, sequence number) is saved. A
//!   `kill -9` at any point loses nothing: unacknowledged items come again and the engine's
//!   duplicate filter recognises what it already took.
//! - **Sending.** Every [`crate::Outgoing`] becomes a fixed-size onion packet through three
//!   relays (the last keeps the destination mailbox), handed to its first hop over a pooled
//!   link with a fresh Noise key. A first hop that cannot be reached or fails a send is marked
//!   down for [`DriverOptions::relay_down_for`] and left out of route selection; the packet is
//!   wrapped again on another route at once, and the engine's own retries (same message id)
//!   cover packets lost further on.
//! - **Timers.** The engine's `poll_timeout` deadline is slept on with tokio time; the
//!   directory is rebuilt from DHT descriptors every [`DriverConfig::directory_refresh`]; the
//!   contact card is republished every [`DriverOptions::card_republish`] and at each prekey
//!   period boundary.
//! - **History.** Every sent and received text is written to the store's message tables with
//!   its status (sending, sent, delivered, read); receipts move the status forward only.
//!
//! Time comes from a [`Clock`] and randomness from a seed or the OS ([`DriverOptions`]), so a
//! test can fix both.

mod acks;
mod history;
mod io;
mod task;

use std::sync::Arc;
use std::time::Duration;

use serde::{Serialize, Serializer};
use tokio::sync::{broadcast, mpsc, oneshot};
use zentalk_crypto::{Address, IdentityPublicKey, NodeId};
use zentalk_dht::net::DhtHandle;
use zentalk_storage::client::ClientStore;

use crate::dht::LookupError;
use crate::net::{NetError, SyncReport};
use crate::{Client, ClientError, ContactInfo, MessageId};

pub use history::{
    CONVERSATION_ID_DOMAIN, ConversationSummary, HistoryCursor, HistoryMessage, MessageStatus,
    SEQ_KEY_PREFIX, conversation_id,
};

/// Most messages one [`DriverHandle::messages`] call returns.
pub const MAX_HISTORY_PAGE: u32 = 500;
/// Default capacity of the command channel (callers wait when it is full).
pub const DEFAULT_COMMAND_CAPACITY: usize = 256;
/// Default capacity of the event channel (a subscriber that falls further behind loses the
/// oldest events and is told so by `broadcast::error::RecvError::Lagged`).
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// How the driver reaches the network.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// A running DHT node used to look up relay descriptors and contact cards, and to publish
    /// our own card.
    pub dht: DhtHandle,
    /// Link limits (`zentalk_relay::Limits::default()` normally).
    pub limits: zentalk_relay::Limits,
    /// Relay node ids to consider: the directory is built from their DHT descriptors and
    /// refreshed every `directory_refresh`; relays that fail to accept a packet are avoided for
    /// a while so retries take another route.
    pub relays: Vec<NodeId>,
    /// How often the directory is rebuilt from the DHT.
    pub directory_refresh: Duration,
    /// Whether to hold one authenticated link per owned mailbox open for pushes (true for a
    /// long-running client; a one-shot `inbox` uses [`DriverHandle::sync_now`] and may set
    /// false).
    pub hold_mailbox_links: bool,
}

/// Where the driver reads the time: milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// The current time in ms since the Unix epoch.
    fn unix_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(
        clippy::disallowed_methods,
        reason = "the driver is the L2 place that reads the wall clock: onion epochs and DHT records are in Unix time"
    )]
    fn unix_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl<F: Fn() -> u64 + Send + Sync + 'static> Clock for F {
    fn unix_ms(&self) -> u64 {
        self()
    }
}

/// Tuning and injected dependencies of the driver; [`Default`] is right for real use.
#[derive(Clone)]
pub struct DriverOptions {
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Seed of the driver's ChaCha20 generator (every per-task generator is drawn from it);
    /// `None`: seeded from the operating system.
    pub rng_seed: Option<[u8; 32]>,
    /// First retry of an unacknowledged message (engine setting).
    pub retry_initial: Duration,
    /// Largest retry interval (engine setting).
    pub retry_max: Duration,
    /// How long a gap waits for its missing messages before they are declared lost (engine
    /// setting).
    pub gap_timeout: Duration,
    /// First pause before reopening a lost mailbox link; doubles up to `reconnect_max`.
    pub reconnect_initial: Duration,
    /// Largest pause between reconnection attempts.
    pub reconnect_max: Duration,
    /// How long a relay that failed a packet is left out of routes.
    pub relay_down_for: Duration,
    /// A pooled first-hop link idle this long is closed.
    pub first_hop_idle: Duration,
    /// Ping interval on held mailbox links (well under the relay's idle timeout).
    pub keepalive: Duration,
    /// Time allowed to open a link (TCP connect and Noise handshake, mailbox authentication).
    pub connect_timeout: Duration,
    /// Routes tried for one packet before it is left to the engine's retries.
    pub send_attempts: u32,
    /// Whether to publish our contact card at start and keep it published.
    pub publish_card: bool,
    /// How often the card is republished (it is also republished at each prekey period).
    pub card_republish: Duration,
    /// Capacity of the command channel.
    pub command_capacity: usize,
    /// Capacity of the event channel.
    pub event_capacity: usize,
}

impl std::fmt::Debug for DriverOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverOptions")
            .field("rng_seed", &self.rng_seed.map(|_| "<seed>"))
            .field("retry_initial", &self.retry_initial)
            .field("retry_max", &self.retry_max)
            .field("gap_timeout", &self.gap_timeout)
            .field("reconnect_initial", &self.reconnect_initial)
            .field("reconnect_max", &self.reconnect_max)
            .field("relay_down_for", &self.relay_down_for)
            .field("first_hop_idle", &self.first_hop_idle)
            .field("keepalive", &self.keepalive)
            .field("connect_timeout", &self.connect_timeout)
            .field("send_attempts", &self.send_attempts)
            .field("publish_card", &self.publish_card)
            .field("card_republish", &self.card_republish)
            .finish_non_exhaustive()
    }
}

impl Default for DriverOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            rng_seed: None,
            retry_initial: Duration::from_millis(crate::RETRY_INITIAL_MS),
            retry_max: Duration::from_millis(crate::RETRY_MAX_MS),
            gap_timeout: Duration::from_millis(crate::GAP_TIMEOUT_MS),
            reconnect_initial: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
            relay_down_for: Duration::from_secs(60),
            first_hop_idle: Duration::from_secs(30),
            keepalive: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            send_attempts: 3,
            publish_card: true,
            card_republish: Duration::from_millis(zentalk_dht::record::REPUBLISH_INTERVAL_MS),
            command_capacity: DEFAULT_COMMAND_CAPACITY,
            event_capacity: DEFAULT_EVENT_CAPACITY,
        }
    }
}

/// Errors of the driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The engine refused.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] zentalk_storage::StoreError),
    /// A DHT lookup failed (for example no card under that identity).
    #[error("lookup: {0}")]
    Lookup(#[from] LookupError),
    /// The network failed.
    #[error("network: {0}")]
    Net(#[from] NetError),
    /// The address is not a contact: add it with [`DriverHandle::add_contact`] first.
    #[error("not a contact: add it by identity key first")]
    UnknownContact,
    /// The driver has stopped (shut down, or its task ended).
    #[error("the driver has stopped")]
    Stopped,
    /// A history page limit was 0 or above [`MAX_HISTORY_PAGE`].
    #[error("page limit: between 1 and {max}, found {found}")]
    PageLimit {
        /// [`MAX_HISTORY_PAGE`].
        max: u32,
        /// What was asked.
        found: u32,
    },
    /// Saving to the store failed (the store error, as text: several callers share one save).
    #[error("save failed: {0}")]
    Save(String),
    /// A network step took longer than allowed.
    #[error("timed out: {what}")]
    Timeout {
        /// What did not finish.
        what: &'static str,
    },
    /// An option is out of range.
    #[error("option {name}: {reason}")]
    Option {
        /// The option.
        name: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

fn ser_display<T: std::fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn ser_id<S: Serializer>(id: &MessageId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(id))
}

fn ser_opt_id<S: Serializer>(id: &Option<MessageId>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.serialize_some(&hex::encode(id)),
        None => s.serialize_none(),
    }
}

fn ser_ids<S: Serializer>(ids: &[MessageId], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ids.iter().map(hex::encode))
}

/// What the driver tells subscribers, in order. Serialized as JSON objects with a `type`
/// field; addresses and node ids as base32 strings, message ids as hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DriverEvent {
    /// A text message arrived (once, in conversation order) and is in the history.
    Message {
        /// Sender.
        #[serde(serialize_with = "ser_display")]
        from: Address,
        /// Message id.
        #[serde(serialize_with = "ser_id")]
        id: MessageId,
        /// Position in the conversation.
        seq: u64,
        /// The text.
        text: String,
        /// When it was received (ms since the Unix epoch).
        received_ms: u64,
    },
    /// A text's first packet was handed to a first hop (history status `sent`).
    Sent {
        /// Recipient.
        #[serde(serialize_with = "ser_display")]
        to: Address,
        /// Message id.
        #[serde(serialize_with = "ser_id")]
        id: MessageId,
    },
    /// The peer stored our message (history status `delivered`).
    Delivered {
        /// Recipient.
        #[serde(serialize_with = "ser_display")]
        to: Address,
        /// Message id.
        #[serde(serialize_with = "ser_id")]
        id: MessageId,
    },
    /// The peer read our messages (history status `read`).
    Read {
        /// Reader.
        #[serde(serialize_with = "ser_display")]
        by: Address,
        /// Message ids.
        #[serde(serialize_with = "ser_ids")]
        ids: Vec<MessageId>,
    },
    /// The peer is or stopped typing.
    Typing {
        /// Who.
        #[serde(serialize_with = "ser_display")]
        from: Address,
        /// Typing or not.
        typing: bool,
    },
    /// The peer came online or went offline.
    Presence {
        /// Who.
        #[serde(serialize_with = "ser_display")]
        from: Address,
        /// Online or not.
        online: bool,
    },
    /// Messages `first..=last` from `from` have not arrived yet; later ones are held back.
    GapDetected {
        /// Sender.
        #[serde(serialize_with = "ser_display")]
        from: Address,
        /// First missing sequence number.
        first: u64,
        /// Last missing sequence number.
        last: u64,
    },
    /// Messages `first..=last` from `from` never arrived; the conversation moves on.
    MessagesLost {
        /// Sender.
        #[serde(serialize_with = "ser_display")]
        from: Address,
        /// First lost sequence number.
        first: u64,
        /// Last lost sequence number.
        last: u64,
    },
    /// A new contact: added by us, or someone wrote to our contact mailbox.
    ContactAdded {
        /// Their address.
        #[serde(serialize_with = "ser_display")]
        address: Address,
    },
    /// The peer started a fresh session.
    SessionReset {
        /// Who.
        #[serde(serialize_with = "ser_display")]
        from: Address,
    },
    /// Messages from this contact kept failing to decrypt; a fresh session was started.
    SessionRepairStarted {
        /// Who.
        #[serde(serialize_with = "ser_display")]
        with: Address,
    },
    /// A repair needs this contact's card (the driver fetches it and repairs by itself).
    RepairNeedsCard {
        /// Who.
        #[serde(serialize_with = "ser_display")]
        address: Address,
    },
    /// We own a new mailbox on `relay` (a link to it is opened when links are held).
    MailboxCreated {
        /// The relay keeping it.
        #[serde(serialize_with = "ser_display")]
        relay: NodeId,
    },
    /// A mailbox link to `relay` is authenticated.
    LinkUp {
        /// The relay.
        #[serde(serialize_with = "ser_display")]
        relay: NodeId,
    },
    /// A mailbox link to `relay` was lost (it is reopened with back-off).
    LinkDown {
        /// The relay.
        #[serde(serialize_with = "ser_display")]
        relay: NodeId,
        /// Why.
        reason: String,
    },
    /// A relay failed a packet and is left out of routes until `until_ms`.
    RelayDown {
        /// The relay.
        #[serde(serialize_with = "ser_display")]
        relay: NodeId,
        /// Until when (ms since the Unix epoch).
        until_ms: u64,
    },
    /// A packet could not be handed to any first hop after every attempt (a sequenced message
    /// is retried by the engine later; `id` names it).
    SendFailed {
        /// The message id if the packet carried a sequenced message.
        #[serde(serialize_with = "ser_opt_id")]
        id: Option<MessageId>,
        /// Why.
        reason: String,
    },
    /// The relay directory was rebuilt from the DHT.
    DirectoryRefreshed {
        /// Relays with a valid descriptor.
        relays: usize,
    },
    /// Our contact card was (re)published.
    CardPublished {
        /// DHT nodes that stored it.
        stored_on: usize,
    },
    /// Publishing our card failed (retried at the next republication).
    CardPublishFailed {
        /// Why.
        reason: String,
    },
    /// Saving to the store failed: nothing is acknowledged or sent until a save succeeds
    /// (tried again at the next event).
    StoreFailed {
        /// Why.
        reason: String,
    },
}

/// A request to the driver task.
pub(crate) enum Command {
    AddContact {
        identity: IdentityPublicKey,
        reply: oneshot::Sender<Result<ContactInfo, DriverError>>,
    },
    Contacts {
        reply: oneshot::Sender<Result<Vec<ContactInfo>, DriverError>>,
    },
    SendText {
        to: Address,
        text: String,
        reply: oneshot::Sender<Result<MessageId, DriverError>>,
    },
    Conversations {
        reply: oneshot::Sender<Result<Vec<ConversationSummary>, DriverError>>,
    },
    Messages {
        peer: Address,
        before: Option<HistoryCursor>,
        limit: u32,
        reply: oneshot::Sender<Result<Vec<HistoryMessage>, DriverError>>,
    },
    MarkRead {
        peer: Address,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    SetTyping {
        peer: Address,
        typing: bool,
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
    SetPresence {
        online: bool,
        reply: oneshot::Sender<Result<usize, DriverError>>,
    },
    SyncNow {
        reply: oneshot::Sender<Result<SyncReport, DriverError>>,
    },
    Pending {
        reply: oneshot::Sender<Result<usize, DriverError>>,
    },
    Shutdown {
        reply: oneshot::Sender<Result<(), DriverError>>,
    },
}

/// The application's handle on a running driver (cheap to clone).
#[derive(Clone)]
pub struct DriverHandle {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<DriverEvent>,
    address: Address,
    identity: IdentityPublicKey,
}

impl std::fmt::Debug for DriverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverHandle")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Starts the driver task with [`DriverOptions::default`]; it owns the engine and the store.
pub async fn start(
    client: Client,
    store: ClientStore,
    config: DriverConfig,
) -> Result<DriverHandle, DriverError> {
    start_with(client, store, config, DriverOptions::default()).await
}

/// Starts the driver task: saves the engine state, loads the relay directory from the DHT,
/// publishes the contact card (if asked), opens the mailbox links (if asked) and returns.
pub async fn start_with(
    client: Client,
    store: ClientStore,
    config: DriverConfig,
    options: DriverOptions,
) -> Result<DriverHandle, DriverError> {
    start_subscribed(client, store, config, options)
        .await
        .map(|(h, _)| h)
}

/// Like [`start_with`], and also returns an event receiver subscribed before the task ran,
/// so not even the first event (a message fetched right at start) is missed.
pub async fn start_subscribed(
    client: Client,
    store: ClientStore,
    config: DriverConfig,
    options: DriverOptions,
) -> Result<(DriverHandle, broadcast::Receiver<DriverEvent>), DriverError> {
    if options.command_capacity == 0 || options.event_capacity == 0 {
        return Err(DriverError::Option {
            name: "command_capacity/event_capacity",
            reason: "must be at least 1",
        });
    }
    if options.send_attempts == 0 {
        return Err(DriverError::Option {
            name: "send_attempts",
            reason: "must be at least 1",
        });
    }
    let (commands, rx) = mpsc::channel(options.command_capacity);
    let (events, _) = broadcast::channel(options.event_capacity);
    let address = client.address();
    let identity = client.identity_key();
    let first = events.subscribe();
    let driver = task::Driver::new(client, store, config, options, events.clone()).await?;
    tokio::spawn(driver.run(rx));
    Ok((
        DriverHandle {
            commands,
            events,
            address,
            identity,
        },
        first,
    ))
}

impl DriverHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, DriverError>>) -> Command,
    ) -> Result<T, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)?
    }

    /// Our address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Our identity key (what others add us by).
    pub fn identity_key(&self) -> IdentityPublicKey {
        self.identity
    }

    /// Looks the contact card of `identity` up in the DHT (unless already known) and adds the
    /// contact.
    pub async fn add_contact(
        &self,
        identity: IdentityPublicKey,
    ) -> Result<ContactInfo, DriverError> {
        self.ask(|reply| Command::AddContact { identity, reply })
            .await
    }

    /// Known contacts.
    pub async fn contacts(&self) -> Result<Vec<ContactInfo>, DriverError> {
        self.ask(|reply| Command::Contacts { reply }).await
    }

    /// Sends a text to a contact. Returns once the message is in the history as `sending`,
    /// the engine state is saved and its packet was handed to the sender pool (the engine
    /// retries it until the peer's delivery receipt arrives).
    ///
    /// [`DriverError::Save`] after the engine accepted the text means the save failed: the
    /// text is kept and goes out (and into the history) as soon as a save succeeds
    /// ([`DriverEvent::StoreFailed`] reports further failures); nothing leaves unsaved.
    pub async fn send_text(&self, to: Address, text: String) -> Result<MessageId, DriverError> {
        self.ask(|reply| Command::SendText { to, text, reply })
            .await
    }

    /// Conversations with unread counts and last-message time, most recent first.
    pub async fn conversations(&self) -> Result<Vec<ConversationSummary>, DriverError> {
        self.ask(|reply| Command::Conversations { reply }).await
    }

    /// Newest-first page of at most `limit` messages of the conversation with `peer`, strictly
    /// older than `before` (the `cursor` of the last message of the previous page).
    pub async fn messages(
        &self,
        peer: Address,
        before: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<Vec<HistoryMessage>, DriverError> {
        self.ask(|reply| Command::Messages {
            peer,
            before,
            limit,
            reply,
        })
        .await
    }

    /// Marks the conversation read locally and sends read receipts for its unread messages.
    pub async fn mark_read(&self, peer: Address) -> Result<(), DriverError> {
        self.ask(|reply| Command::MarkRead { peer, reply }).await
    }

    /// Tells the peer we are (or stopped) typing.
    pub async fn set_typing(&self, peer: Address, typing: bool) -> Result<(), DriverError> {
        self.ask(|reply| Command::SetTyping {
            peer,
            typing,
            reply,
        })
        .await
    }

    /// Tells every contact we have a session with that we are online (or going offline);
    /// returns to how many it was sent.
    pub async fn set_presence(&self, online: bool) -> Result<usize, DriverError> {
        self.ask(|reply| Command::SetPresence { online, reply })
            .await
    }

    /// Fetches every owned mailbox once (saving, then acknowledging what came), runs the
    /// engine's timers and sends what is due over fresh links, waiting for each send. A
    /// mailbox whose relay cannot be reached is counted in
    /// [`SyncReport::mailboxes_unreachable`] and the others are still fetched.
    pub async fn sync_now(&self) -> Result<SyncReport, DriverError> {
        self.ask(|reply| Command::SyncNow { reply }).await
    }

    /// Outgoing sequenced messages not yet confirmed delivered by their peer.
    pub async fn pending(&self) -> Result<usize, DriverError> {
        self.ask(|reply| Command::Pending { reply }).await
    }

    /// Events (messages, receipts, typing, gaps, repairs, contacts, link state), in order.
    pub fn subscribe(&self) -> broadcast::Receiver<DriverEvent> {
        self.events.subscribe()
    }

    /// Stops: closes the mailbox links, lets queued packets go out (bounded wait), saves the
    /// engine state, closes the store and returns when all that is done. Later calls on any
    /// handle return [`DriverError::Stopped`].
    pub async fn shutdown(&self) -> Result<(), DriverError> {
        self.ask(|reply| Command::Shutdown { reply }).await
    }
}
