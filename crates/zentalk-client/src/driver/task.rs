//! The driver task: owns the engine and the store, and decides everything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use zentalk_crypto::{Address, IdentityPublicKey, NodeId};
use zentalk_onion::MailboxId;
use zentalk_relay::epoch::epoch_at;
use zentalk_storage::client::ClientStore;

use super::acks::AckTracker;
use super::history::{History, MessageStatus, NewText};
use super::io::{
    self, LINK_COMMAND_CAPACITY, LinkCommand, LinkSettings, Report, SENDER_QUEUE_CAPACITY, SendJob,
    SenderSettings,
};
use super::{Command, DriverConfig, DriverError, DriverEvent, DriverOptions, MAX_HISTORY_PAGE};
use crate::dht::{LookupError, directory_from_dht, fetch_card, publish_card_record};
use crate::mailbox::MailboxKey;
use crate::net::{Incoming, MailboxLink, SyncReport, send_packet};
use crate::payload::{Body, MAX_RECEIPT_IDS};
use crate::{Client, ContactCard, ContactInfo, Directory, Event, MessageId, Outgoing};

/// Capacity of the channel I/O tasks report on.
const REPORT_CAPACITY: usize = 1024;
/// Capacity of the channel DHT lookups answer on.
const INTERNAL_CAPACITY: usize = 64;
/// Reports handled in one batch before the state is saved.
const REPORT_BATCH: usize = 256;
/// Most queued `send_text` calls saved together.
const SEND_BATCH: usize = 256;
/// At shutdown, how long queued packets may take to leave.
const SHUTDOWN_SEND_GRACE: Duration = Duration::from_secs(2);
/// At shutdown, how long a mailbox link task may take to close its link.
const SHUTDOWN_LINK_GRACE: Duration = Duration::from_secs(1);
/// Earliest directory refresh after a route named a relay missing from the directory.
const MISSING_RELAY_REFRESH_MS: u64 = 1_000;

/// Where a `send_text` answer goes.
type TextReply = oneshot::Sender<Result<MessageId, DriverError>>;

/// Answers of the DHT tasks.
enum Internal {
    Card(Box<CardAnswer>),
    Directory(Directory),
    Published(Result<usize, LookupError>),
}

/// A contact card lookup's answer.
struct CardAnswer {
    identity: IdentityPublicKey,
    result: Result<ContactCard, LookupError>,
    /// `None`: fetched for a session repair.
    reply: Option<oneshot::Sender<Result<ContactInfo, DriverError>>>,
}

/// The driver's view of one held mailbox link.
struct LinkState {
    relay: NodeId,
    commands: mpsc::Sender<LinkCommand>,
    task: JoinHandle<()>,
    acks: AckTracker,
}

/// A packet handed to a first-hop sender.
struct InFlight {
    out: Outgoing,
    attempts: u32,
}

pub(crate) struct Driver {
    client: Client,
    store: Option<Arc<ClientStore>>,
    config: DriverConfig,
    options: DriverOptions,
    rng: ChaCha20Rng,
    events: broadcast::Sender<DriverEvent>,
    history: History,
    directory: Arc<Directory>,
    directory_tx: watch::Sender<Arc<Directory>>,
    down: HashMap<NodeId, u64>,
    reports_tx: mpsc::Sender<Report>,
    reports_rx: mpsc::Receiver<Report>,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    links: HashMap<MailboxId, LinkState>,
    link_settings: Arc<LinkSettings>,
    senders: HashMap<NodeId, mpsc::Sender<SendJob>>,
    sender_settings: Arc<SenderSettings>,
    inflight: HashMap<u64, InFlight>,
    next_job: u64,
    /// The engine changed since the last save.
    dirty: bool,
    new_texts: Vec<NewText>,
    statuses: Vec<(MessageId, MessageStatus)>,
    new_contacts: Vec<Address>,
    after_save: Vec<(MailboxId, LinkCommand)>,
    pending_events: Vec<DriverEvent>,
    next_directory_ms: u64,
    directory_running: bool,
    next_card_ms: Option<u64>,
    card_running: bool,
}

fn store_of(store: &Option<Arc<ClientStore>>) -> Result<&Arc<ClientStore>, DriverError> {
    store.as_ref().ok_or(DriverError::Stopped)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Driver {
    pub(crate) async fn new(
        mut client: Client,
        store: ClientStore,
        config: DriverConfig,
        options: DriverOptions,
        events: broadcast::Sender<DriverEvent>,
    ) -> Result<Self, DriverError> {
        client.set_retry_intervals(ms(options.retry_initial), ms(options.retry_max));
        client.set_gap_timeout(ms(options.gap_timeout));
        let mut rng = match options.rng_seed {
            Some(seed) => ChaCha20Rng::from_seed(seed),
            None => os_seeded(),
        };
        let now = options.clock.unix_ms();
        client
            .save(&store, &mut rng, i64::try_from(now).unwrap_or(i64::MAX))
            .await?;
        let history = History::load(&store).await?;
        let directory = Arc::new(directory_from_dht(&config.dht, &config.relays, now).await);
        let (directory_tx, _) = watch::channel(Arc::clone(&directory));
        let (reports_tx, reports_rx) = mpsc::channel(REPORT_CAPACITY);
        let (internal_tx, internal_rx) = mpsc::channel(INTERNAL_CAPACITY);
        let link_settings = Arc::new(LinkSettings {
            limits: config.limits.clone(),
            connect_timeout: options.connect_timeout,
            reconnect_initial: options.reconnect_initial,
            reconnect_max: options.reconnect_max,
            keepalive: options.keepalive,
        });
        let sender_settings = Arc::new(SenderSettings {
            limits: config.limits.clone(),
            connect_timeout: options.connect_timeout,
            idle: options.first_hop_idle,
        });
        let mut driver = Self {
            client,
            store: Some(Arc::new(store)),
            next_directory_ms: now.saturating_add(ms(config.directory_refresh)),
            next_card_ms: options.publish_card.then_some(now),
            config,
            options,
            rng,
            events,
            history,
            directory,
            directory_tx,
            down: HashMap::new(),
            reports_tx,
            reports_rx,
            internal_tx,
            internal_rx,
            links: HashMap::new(),
            link_settings,
            senders: HashMap::new(),
            sender_settings,
            inflight: HashMap::new(),
            next_job: 0,
            dirty: false,
            new_texts: Vec::new(),
            statuses: Vec::new(),
            new_contacts: Vec::new(),
            after_save: Vec::new(),
            pending_events: Vec::new(),
            directory_running: false,
            card_running: false,
        };
        driver.open_links();
        Ok(driver)
    }

    fn now(&self) -> u64 {
        self.options.clock.unix_ms()
    }

    fn child_rng(&mut self) -> ChaCha20Rng {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        ChaCha20Rng::from_seed(seed)
    }

    /// The earliest time something is due (engine timer, directory refresh, card).
    fn next_wake(&self) -> u64 {
        let mut t = self.next_directory_ms;
        if let Some(e) = self.client.poll_timeout() {
            t = t.min(e);
        }
        if let Some(c) = self.next_card_ms.filter(|_| !self.card_running) {
            t = t.min(c);
        }
        t
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            let now = self.now();
            let wait = Duration::from_millis(self.next_wake().saturating_sub(now));
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None => {
                        let _ = self.stop().await;
                        return;
                    }
                    Some(Command::Shutdown { reply }) => {
                        let r = self.stop().await;
                        let _ = reply.send(r);
                        return;
                    }
                    Some(Command::SendText { to, text, reply }) => {
                        // Texts queued behind this one share its save.
                        let mut batch = vec![(to, text, reply)];
                        let mut next = None;
                        while batch.len() < SEND_BATCH {
                            match commands.try_recv() {
                                Ok(Command::SendText { to, text, reply }) => {
                                    batch.push((to, text, reply));
                                }
                                Ok(other) => {
                                    next = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        self.send_texts(batch).await;
                        match next {
                            Some(Command::Shutdown { reply }) => {
                                let r = self.stop().await;
                                let _ = reply.send(r);
                                return;
                            }
                            Some(cmd) => self.command(cmd).await,
                            None => {}
                        }
                    }
                    Some(cmd) => self.command(cmd).await,
                },
                Some(report) = self.reports_rx.recv() => {
                    self.report(report);
                    for _ in 1..REPORT_BATCH {
                        match self.reports_rx.try_recv() {
                            Ok(r) => self.report(r),
                            Err(_) => break,
                        }
                    }
                }
                Some(internal) = self.internal_rx.recv() => self.internal(internal),
                () = tokio::time::sleep(wait) => self.tick(),
            }
            // A failed save leaves everything unacknowledged and unsent; the next event
            // tries again.
            if let Err(e) = self.commit().await {
                let _ = self.events.send(DriverEvent::StoreFailed {
                    reason: e.to_string(),
                });
            }
        }
    }

    // ---------------------------------------------------------------- persistence

    /// Turns engine events into history writes and driver events.
    fn collect_engine_events(&mut self) {
        let now = self.now();
        while let Some(e) = self.client.poll_event() {
            let ev = match e {
                Event::Message {
                    from,
                    id,
                    seq,
                    text,
                } => {
                    self.new_texts.push(NewText {
                        id,
                        peer: from,
                        sender: from,
                        outgoing: false,
                        seq,
                        text: text.clone(),
                        at_ms: now,
                        status: MessageStatus::Delivered,
                    });
                    DriverEvent::Message {
                        from,
                        id,
                        seq,
                        text,
                        received_ms: now,
                    }
                }
                Event::Delivered { to, id } => {
                    self.statuses.push((id, MessageStatus::Delivered));
                    DriverEvent::Delivered { to, id }
                }
                Event::Read { by, ids } => {
                    self.statuses
                        .extend(ids.iter().map(|id| (*id, MessageStatus::Read)));
                    DriverEvent::Read { by, ids }
                }
                Event::Typing { from, typing } => DriverEvent::Typing { from, typing },
                Event::Presence { from, online } => DriverEvent::Presence { from, online },
                Event::GapDetected { from, first, last } => {
                    DriverEvent::GapDetected { from, first, last }
                }
                Event::MessagesLost { from, first, last } => {
                    DriverEvent::MessagesLost { from, first, last }
                }
                Event::ContactAdded { address } => {
                    self.new_contacts.push(address);
                    DriverEvent::ContactAdded { address }
                }
                Event::SessionReset { from } => DriverEvent::SessionReset { from },
                Event::SessionRepairStarted { with } => DriverEvent::SessionRepairStarted { with },
                Event::RepairNeedsCard { address } => {
                    self.fetch_for_repair(&address);
                    DriverEvent::RepairNeedsCard { address }
                }
                Event::MailboxCreated { mailbox } => DriverEvent::MailboxCreated {
                    relay: mailbox.relay,
                },
            };
            self.pending_events.push(ev);
        }
    }

    /// Saves the history and the engine state (if changed). Nothing is acknowledged or sent
    /// before this returns `Ok`.
    async fn persist(&mut self) -> Result<(), DriverError> {
        self.collect_engine_events();
        let now = self.now();
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        let store = store_of(&self.store)?;
        if !self.new_texts.is_empty() {
            self.history.insert(store, &self.new_texts).await?;
            self.new_texts.clear();
        }
        // Each list is cleared only once written, so a failed save loses nothing.
        for i in 0..self.statuses.len() {
            let Some(&(id, status)) = self.statuses.get(i) else {
                break;
            };
            match self.history.advance(store, &id, status).await {
                Ok(Some(peer)) if status == MessageStatus::Sent => {
                    self.pending_events.push(DriverEvent::Sent { to: peer, id });
                }
                Ok(_) => {}
                Err(e) => {
                    self.statuses.drain(..i);
                    return Err(e.into());
                }
            }
        }
        self.statuses.clear();
        while let Some(&address) = self.new_contacts.first() {
            let info = self
                .client
                .contacts()
                .into_iter()
                .find(|c| c.address == address);
            if let Some(info) = info
                && store.contact(&address).await?.is_none()
            {
                store
                    .upsert_contact(&zentalk_storage::client::Contact {
                        address,
                        name: address.to_string(),
                        bio: None,
                        public_key: info.identity.as_bytes().to_vec(),
                        avatar: None,
                        added_at_ms: now_i,
                        last_seen_ms: None,
                        blocked: false,
                        favorite: false,
                    })
                    .await?;
            }
            self.new_contacts.remove(0);
        }
        if self.dirty {
            self.client.save(store, &mut self.rng, now_i).await?;
            self.dirty = false;
        }
        Ok(())
    }

    /// What may happen once the state is saved: acks and fetches, packets, new links, events.
    fn release(&mut self) {
        // Events that arise while sending (a status change to save first) wait for the next
        // save; the run loop saves after every wake-up.
        let ready = std::mem::take(&mut self.pending_events);
        for (mailbox, cmd) in std::mem::take(&mut self.after_save) {
            if let Some(st) = self.links.get(&mailbox) {
                // A full or closed queue means the link is being replaced; the next link
                // starts over from the watermark.
                let _ = st.commands.try_send(cmd);
            }
        }
        while let Some(out) = self.client.poll_outgoing() {
            self.dispatch(out, 1);
        }
        self.open_links();
        for e in ready {
            let _ = self.events.send(e);
        }
    }

    async fn commit(&mut self) -> Result<(), DriverError> {
        self.persist().await?;
        self.release();
        Ok(())
    }

    // ---------------------------------------------------------------- sending

    /// The directory routes are drawn from: relays marked down are left out (the destination
    /// relay stays, it has no substitute).
    fn route_directory(&mut self, dest_relay: &NodeId, now: u64) -> Directory {
        self.down.retain(|_, until| *until > now);
        Directory::new(
            self.directory
                .relays()
                .iter()
                .filter(|r| r.node == *dest_relay || !self.down.contains_key(&r.node))
                .cloned()
                .collect(),
        )
    }

    /// Wraps `out` into an onion packet through a fresh route and hands it to its first hop's
    /// sender.
    fn dispatch(&mut self, out: Outgoing, attempts: u32) {
        let now = self.now();
        let epoch = epoch_at(now / 1000);
        let dir = self.route_directory(&out.dest.relay, now);
        let wrapped = match dir.wrap(&mut self.rng, &out.dest, epoch, &out.payload) {
            Ok(w) => Ok(w),
            // Too few relays up: use every relay rather than none.
            Err(_) => self
                .directory
                .wrap(&mut self.rng, &out.dest, epoch, &out.payload),
        };
        let (packet, _route) = match wrapped {
            Ok(w) => w,
            Err(e) => {
                if matches!(e, crate::ClientError::UnknownRelay { .. }) {
                    self.next_directory_ms = self
                        .next_directory_ms
                        .min(now.saturating_add(MISSING_RELAY_REFRESH_MS));
                }
                self.send_failed(out.id, e.to_string());
                return;
            }
        };
        let first = packet.first_hop;
        self.next_job += 1;
        let job = self.next_job;
        self.inflight.insert(job, InFlight { out, attempts });
        self.enqueue(first, SendJob { job, packet });
    }

    fn enqueue(&mut self, first: NodeId, job: SendJob) {
        let mut job = job;
        for _ in 0..2 {
            let sender = match self.senders.get(&first) {
                Some(s) if !s.is_closed() => s.clone(),
                _ => {
                    let Some(entry) = self.directory.get(&first).cloned() else {
                        break;
                    };
                    let (tx, rx) = mpsc::channel(SENDER_QUEUE_CAPACITY);
                    let rng = self.child_rng();
                    tokio::spawn(io::sender_task(
                        first,
                        entry,
                        Arc::clone(&self.sender_settings),
                        rng,
                        self.reports_tx.clone(),
                        rx,
                    ));
                    self.senders.insert(first, tx.clone());
                    tx
                }
            };
            match sender.try_send(job) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Closed(j)) => {
                    self.senders.remove(&first);
                    job = j;
                }
                Err(mpsc::error::TrySendError::Full(j)) => {
                    job = j;
                    break;
                }
            }
        }
        self.not_sent(
            job.job,
            first,
            false,
            "first hop queue full or unknown".to_owned(),
        );
    }

    fn not_sent(&mut self, job: u64, relay: NodeId, relay_failed: bool, reason: String) {
        let Some(f) = self.inflight.remove(&job) else {
            return;
        };
        if relay_failed {
            let until = self.now().saturating_add(ms(self.options.relay_down_for));
            if self.down.insert(relay, until).is_none() {
                self.pending_events.push(DriverEvent::RelayDown {
                    relay,
                    until_ms: until,
                });
            }
            self.senders.remove(&relay);
        }
        if f.attempts < self.options.send_attempts {
            self.dispatch(f.out, f.attempts + 1);
        } else {
            self.send_failed(f.out.id, reason);
        }
    }

    /// No first hop took the packet. A text not yet sent shows `failed` in the history until
    /// an engine retry gets through (the status then moves on to `sent`).
    fn send_failed(&mut self, id: Option<MessageId>, reason: String) {
        if let Some(id) = id {
            self.statuses.push((id, MessageStatus::Failed));
        }
        self.pending_events
            .push(DriverEvent::SendFailed { id, reason });
    }

    // ---------------------------------------------------------------- mailbox links

    fn owned_keys(&self) -> Vec<MailboxKey> {
        self.client
            .mailboxes()
            .iter()
            .map(|m| MailboxKey::from_seed(&m.seed(), m.addr().relay))
            .collect()
    }

    /// Opens a link task for every owned mailbox that has none (when links are held).
    fn open_links(&mut self) {
        if !self.config.hold_mailbox_links {
            return;
        }
        for key in self.owned_keys() {
            let id = key.id();
            if self.links.contains_key(&id) {
                continue;
            }
            let relay = key.addr().relay;
            let (tx, rx) = mpsc::channel(LINK_COMMAND_CAPACITY);
            let rng = self.child_rng();
            let task = tokio::spawn(io::mailbox_link_task(
                key,
                self.directory_tx.subscribe(),
                Arc::clone(&self.link_settings),
                rng,
                self.reports_tx.clone(),
                rx,
            ));
            self.links.insert(
                id,
                LinkState {
                    relay,
                    commands: tx,
                    task,
                    acks: AckTracker::default(),
                },
            );
        }
    }

    fn feed(&mut self, mailbox: &MailboxId, payload: &[u8]) -> bool {
        let now = self.now();
        self.dirty = true;
        self.client
            .handle_delivery(&mut self.rng, mailbox, payload, now)
            .is_ok()
    }

    fn report(&mut self, report: Report) {
        match report {
            Report::Sent { job } => {
                if let Some(f) = self.inflight.remove(&job)
                    && let Some(id) = f.out.id
                {
                    self.statuses.push((id, MessageStatus::Sent));
                }
            }
            Report::NotSent {
                job,
                relay,
                relay_failed,
                reason,
            } => self.not_sent(job, relay, relay_failed, reason),
            Report::LinkUp {
                mailbox,
                generation,
            } => {
                if let Some(st) = self.links.get_mut(&mailbox) {
                    st.acks.up(generation);
                    let relay = st.relay;
                    self.pending_events.push(DriverEvent::LinkUp { relay });
                }
            }
            Report::LinkDown {
                mailbox,
                generation,
                reason,
            } => {
                if let Some(st) = self.links.get_mut(&mailbox)
                    && st.acks.down(generation)
                {
                    let relay = st.relay;
                    self.pending_events
                        .push(DriverEvent::LinkDown { relay, reason });
                }
            }
            Report::Batch {
                mailbox,
                generation,
                items,
                more,
            } => self.batch(mailbox, generation, items, more),
            Report::Push {
                mailbox,
                generation,
                item,
            } => self.push(mailbox, generation, item),
        }
    }

    fn batch(
        &mut self,
        mailbox: MailboxId,
        generation: u64,
        items: Vec<zentalk_wire::proto::MailboxItem>,
        more: bool,
    ) {
        let seqs: Vec<u64> = items.iter().map(|i| i.seq).collect();
        let Some(plan) = self
            .links
            .get_mut(&mailbox)
            .and_then(|st| st.acks.page(generation, &seqs, more))
        else {
            return;
        };
        for i in plan.feed {
            if let Some(item) = items.get(i) {
                self.feed(&mailbox, &item.payload);
            }
        }
        self.after_save
            .extend(plan.after_save.into_iter().map(|c| (mailbox, c)));
    }

    /// A pushed item is fed at once; it is acknowledged only through a fetch chain (see
    /// `acks`).
    fn push(
        &mut self,
        mailbox: MailboxId,
        generation: u64,
        item: zentalk_wire::proto::MailboxItem,
    ) {
        let Some((feed, fetch)) = self
            .links
            .get_mut(&mailbox)
            .and_then(|st| st.acks.push(generation, item.seq))
        else {
            return;
        };
        if let Some(cmd) = fetch {
            self.after_save.push((mailbox, cmd));
        }
        if feed {
            self.feed(&mailbox, &item.payload);
        }
    }

    // ---------------------------------------------------------------- timers and DHT

    fn tick(&mut self) {
        let now = self.now();
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.dirty = true;
            if let Err(e) = self.client.handle_timeout(&mut self.rng, now) {
                self.pending_events.push(DriverEvent::SendFailed {
                    id: None,
                    reason: e.to_string(),
                });
            }
        }
        if now >= self.next_directory_ms {
            self.next_directory_ms = now.saturating_add(ms(self.config.directory_refresh));
            if !self.directory_running {
                self.directory_running = true;
                let dht = self.config.dht.clone();
                let relays = self.config.relays.clone();
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    let dir = directory_from_dht(&dht, &relays, now).await;
                    let _ = tx.send(Internal::Directory(dir)).await;
                });
            }
        }
        if !self.card_running && self.next_card_ms.is_some_and(|t| t <= now) {
            self.publish_card(now);
        }
    }

    fn publish_card(&mut self, now: u64) {
        let period_ms = zentalk_dht::record::PREKEY_PERIOD_MS;
        let next_period = (now / period_ms)
            .saturating_add(1)
            .saturating_mul(period_ms);
        self.next_card_ms = Some(
            now.saturating_add(ms(self.options.card_republish))
                .min(next_period.saturating_add(1_000)),
        );
        match self.client.card_record(&mut self.rng, now, now) {
            Ok(record) => {
                self.card_running = true;
                let dht = self.config.dht.clone();
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    let r = publish_card_record(&dht, record).await;
                    let _ = tx.send(Internal::Published(r)).await;
                });
            }
            Err(e) => self.pending_events.push(DriverEvent::CardPublishFailed {
                reason: e.to_string(),
            }),
        }
    }

    fn fetch_card_task(
        &self,
        identity: IdentityPublicKey,
        reply: Option<oneshot::Sender<Result<ContactInfo, DriverError>>>,
    ) {
        let dht = self.config.dht.clone();
        let tx = self.internal_tx.clone();
        let now = self.now();
        tokio::spawn(async move {
            let result = fetch_card(&dht, &identity, now).await;
            let _ = tx
                .send(Internal::Card(Box::new(CardAnswer {
                    identity,
                    result,
                    reply,
                })))
                .await;
        });
    }

    fn fetch_for_repair(&mut self, address: &Address) {
        if let Some(c) = self
            .client
            .contacts()
            .into_iter()
            .find(|c| c.address == *address)
        {
            self.fetch_card_task(c.identity, None);
        }
    }

    fn internal(&mut self, internal: Internal) {
        match internal {
            Internal::Directory(dir) => {
                self.directory_running = false;
                let relays = dir.relays().len();
                if relays > 0 {
                    self.directory = Arc::new(dir);
                    let _ = self.directory_tx.send(Arc::clone(&self.directory));
                }
                self.pending_events
                    .push(DriverEvent::DirectoryRefreshed { relays });
            }
            Internal::Published(r) => {
                self.card_running = false;
                self.pending_events.push(match r {
                    Ok(stored_on) => DriverEvent::CardPublished { stored_on },
                    Err(e) => DriverEvent::CardPublishFailed {
                        reason: e.to_string(),
                    },
                });
            }
            Internal::Card(answer) => {
                let CardAnswer {
                    identity,
                    result,
                    reply,
                } = *answer;
                let result = result.map_err(DriverError::from).map(|card| {
                    let known = self
                        .client
                        .contacts()
                        .iter()
                        .any(|c| c.address == identity.address());
                    let address = self.client.add_contact(&card);
                    self.dirty = true;
                    if !known {
                        self.new_contacts.push(address);
                        self.pending_events
                            .push(DriverEvent::ContactAdded { address });
                    }
                    if reply.is_none() {
                        let now = self.now();
                        let _ = self.client.repair_session(&mut self.rng, &address, now);
                    }
                    address
                });
                if let Some(reply) = reply {
                    let info = result.and_then(|a| self.contact_info(&a));
                    let _ = reply.send(info);
                }
            }
        }
    }

    fn contact_info(&self, address: &Address) -> Result<ContactInfo, DriverError> {
        self.client
            .contacts()
            .into_iter()
            .find(|c| c.address == *address)
            .ok_or(DriverError::UnknownContact)
    }

    // ---------------------------------------------------------------- commands

    async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::AddContact { identity, reply } => {
                match self.contact_info(&identity.address()) {
                    Ok(info) => {
                        let _ = reply.send(Ok(info));
                    }
                    Err(_) => self.fetch_card_task(identity, Some(reply)),
                }
            }
            Command::Contacts { reply } => {
                let _ = reply.send(Ok(self.client.contacts()));
            }
            Command::SendText { to, text, reply } => {
                self.send_texts(vec![(to, text, reply)]).await;
            }
            Command::Conversations { reply } => {
                let r = match store_of(&self.store) {
                    Ok(store) => self.history.conversations(store).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(r);
            }
            Command::Messages {
                peer,
                before,
                limit,
                reply,
            } => {
                let r = if limit == 0 || limit > MAX_HISTORY_PAGE {
                    Err(DriverError::PageLimit {
                        max: MAX_HISTORY_PAGE,
                        found: limit,
                    })
                } else {
                    match store_of(&self.store) {
                        Ok(store) => self.history.page(store, &peer, before, limit).await,
                        Err(e) => Err(e),
                    }
                };
                let _ = reply.send(r);
            }
            Command::MarkRead { peer, reply } => {
                let r = self.mark_read(peer).await;
                let _ = reply.send(r);
            }
            Command::SetTyping {
                peer,
                typing,
                reply,
            } => {
                let r = self.control(&peer, Body::Typing(typing)).await;
                let _ = reply.send(r);
            }
            Command::SetPresence { online, reply } => {
                let r = self.presence(online).await;
                let _ = reply.send(r);
            }
            Command::SyncNow { reply } => {
                let r = self.sync_now().await;
                let _ = reply.send(r);
            }
            Command::Pending { reply } => {
                let n = self
                    .client
                    .contacts()
                    .iter()
                    .map(|c| c.unacknowledged)
                    .sum();
                let _ = reply.send(Ok(n));
            }
            // Handled by the loop.
            Command::Shutdown { reply } => {
                let _ = reply.send(Err(DriverError::Stopped));
            }
        }
    }

    /// Queues texts in the engine, saves once, then sends them all and answers each caller.
    async fn send_texts(&mut self, batch: Vec<(Address, String, TextReply)>) {
        let mut accepted = Vec::with_capacity(batch.len());
        for (to, text, reply) in batch {
            match self.queue_text(to, text) {
                Ok(id) => accepted.push((id, reply)),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        if accepted.is_empty() {
            return;
        }
        match self.commit().await {
            Ok(()) => {
                for (id, reply) in accepted {
                    let _ = reply.send(Ok(id));
                }
            }
            Err(e) => {
                let reason = e.to_string();
                let _ = self.events.send(DriverEvent::StoreFailed {
                    reason: reason.clone(),
                });
                for (_, reply) in accepted {
                    let _ = reply.send(Err(DriverError::Save(reason.clone())));
                }
            }
        }
    }

    /// Queues one text in the engine and its history row (not yet saved).
    fn queue_text(&mut self, to: Address, text: String) -> Result<MessageId, DriverError> {
        if self.contact_info(&to).is_err() {
            return Err(DriverError::UnknownContact);
        }
        let now = self.now();
        let id = self.client.send_text(&mut self.rng, &to, &text, now)?;
        self.dirty = true;
        let seq = self.client.unacknowledged_seq(&to, &id).unwrap_or(0);
        self.new_texts.push(NewText {
            id,
            peer: to,
            sender: self.client.address(),
            outgoing: true,
            seq,
            text,
            at_ms: now,
            status: MessageStatus::Sending,
        });
        Ok(id)
    }

    async fn control(&mut self, peer: &Address, body: Body) -> Result<(), DriverError> {
        if self.contact_info(peer).is_err() {
            return Err(DriverError::UnknownContact);
        }
        self.client.send_control(&mut self.rng, peer, body)?;
        self.dirty = true;
        self.commit().await
    }

    async fn presence(&mut self, online: bool) -> Result<usize, DriverError> {
        let mut sent = 0;
        for c in self.client.contacts() {
            // Contacts without a session yet are skipped.
            if self
                .client
                .send_control(&mut self.rng, &c.address, Body::Presence(online))
                .is_ok()
            {
                sent += 1;
            }
        }
        self.dirty = true;
        self.commit().await?;
        Ok(sent)
    }

    async fn mark_read(&mut self, peer: Address) -> Result<(), DriverError> {
        let store = store_of(&self.store)?;
        let unread = self.history.unread(store, &peer).await?;
        let ids = self.history.unread_ids(store, &peer, unread).await?;
        self.history.mark_read(store, &peer).await?;
        for chunk in ids.chunks(MAX_RECEIPT_IDS) {
            // A peer without a session (never wrote, never written to) gets no receipt.
            if self
                .client
                .send_control(&mut self.rng, &peer, Body::ReadReceipt(chunk.to_vec()))
                .is_ok()
            {
                self.dirty = true;
            }
        }
        self.commit().await
    }

    /// One fetch round over fresh links (what `zentalk inbox` uses), then timers, then every
    /// queued packet sent over a fresh link each, waiting for each.
    async fn sync_now(&mut self) -> Result<SyncReport, DriverError> {
        let mut report = SyncReport::default();
        for key in self.owned_keys() {
            if self.sync_mailbox(&key, &mut report).await.is_err() {
                report.mailboxes_unreachable += 1;
            }
            // What was fed is saved even if the link failed half-way (not acknowledged:
            // it comes again and the duplicate filter knows it).
            self.persist().await?;
        }
        let now = self.now();
        if self.client.handle_timeout(&mut self.rng, now).is_err() {
            report.send_failures += 1;
        }
        self.dirty = true;
        self.persist().await?;
        while let Some(out) = self.client.poll_outgoing() {
            if self.send_inline(&out).await {
                report.sent += 1;
                if let Some(id) = out.id {
                    self.statuses.push((id, MessageStatus::Sent));
                }
            } else {
                report.send_failures += 1;
            }
        }
        self.commit().await?;
        Ok(report)
    }

    /// Fetches one mailbox over a fresh link: every page fed, saved, then acknowledged.
    async fn sync_mailbox(
        &mut self,
        key: &MailboxKey,
        report: &mut SyncReport,
    ) -> Result<(), DriverError> {
        let limits = self.config.limits.clone();
        let timeout = self.options.connect_timeout;
        let id = key.id();
        let entry = self
            .directory
            .get(&key.addr().relay)
            .cloned()
            .ok_or(DriverError::Client(crate::ClientError::UnknownRelay {
                epoch: 0,
            }))?;
        let (mut link, mut incoming) = tokio::time::timeout(
            timeout,
            MailboxLink::open(&entry, key, &limits, &mut self.rng),
        )
        .await
        .map_err(|_| DriverError::Timeout {
            what: "opening a mailbox link",
        })??;
        let mut last = 0u64;
        loop {
            let more = match incoming {
                Incoming::Batch { items, more } => {
                    for item in items {
                        last = last.max(item.seq);
                        report.fetched += 1;
                        if !self.feed(&id, &item.payload) {
                            report.refused += 1;
                        }
                    }
                    if more {
                        link.fetch(last, &mut self.rng).await?;
                    }
                    more
                }
                // Fed, but acknowledged only through a page (a relay may skip pushes).
                Incoming::Push(item) => {
                    self.feed(&id, &item.payload);
                    true
                }
            };
            if !more {
                break;
            }
            incoming = tokio::time::timeout(timeout, link.next())
                .await
                .map_err(|_| DriverError::Timeout {
                    what: "a mailbox page",
                })??;
        }
        self.persist().await?;
        if last > 0 {
            link.ack(last, &mut self.rng).await?;
        }
        link.close().await;
        Ok(())
    }

    /// Sends one payload over a fresh link, trying up to `send_attempts` routes.
    async fn send_inline(&mut self, out: &Outgoing) -> bool {
        let limits = self.config.limits.clone();
        for _ in 0..self.options.send_attempts {
            let now = self.now();
            let epoch = epoch_at(now / 1000);
            let dir = self.route_directory(&out.dest.relay, now);
            let Ok((packet, _)) = dir
                .wrap(&mut self.rng, &out.dest, epoch, &out.payload)
                .or_else(|_| {
                    self.directory
                        .wrap(&mut self.rng, &out.dest, epoch, &out.payload)
                })
            else {
                return false;
            };
            let first = packet.first_hop;
            let Some(entry) = self.directory.get(&first).cloned() else {
                return false;
            };
            let sent = tokio::time::timeout(
                self.options.connect_timeout,
                send_packet(&entry, packet, &limits, &mut self.rng),
            )
            .await;
            if matches!(sent, Ok(Ok(()))) {
                return true;
            }
            let until = now.saturating_add(ms(self.options.relay_down_for));
            if self.down.insert(first, until).is_none() {
                self.pending_events.push(DriverEvent::RelayDown {
                    relay: first,
                    until_ms: until,
                });
            }
        }
        false
    }

    // ---------------------------------------------------------------- shutdown

    async fn stop(&mut self) -> Result<(), DriverError> {
        let saved = self.commit().await;
        // Mailbox links: dropping the command sender makes each task close its link; a task
        // that has not ended by the deadline is cut.
        let tasks: Vec<JoinHandle<()>> = self.links.drain().map(|(_, st)| st.task).collect();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_LINK_GRACE;
        for mut task in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
        // Senders: let queued packets go out (bounded), recording which were sent.
        self.senders.clear();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_SEND_GRACE;
        while !self.inflight.is_empty() {
            match tokio::time::timeout_at(deadline, self.reports_rx.recv()).await {
                Ok(Some(Report::Sent { job })) => {
                    if let Some(f) = self.inflight.remove(&job)
                        && let Some(id) = f.out.id
                    {
                        self.statuses.push((id, MessageStatus::Sent));
                    }
                }
                Ok(Some(Report::NotSent { job, .. })) => {
                    self.inflight.remove(&job);
                }
                // Mailbox items arriving now are not fed: unacknowledged, they come again.
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        self.dirty = true;
        let flushed = self.persist().await;
        for e in std::mem::take(&mut self.pending_events) {
            let _ = self.events.send(e);
        }
        if let Some(store) = self.store.take() {
            // Every insert task has finished (each is awaited), so this is the last owner.
            if let Ok(store) = Arc::try_unwrap(store) {
                store.close().await;
            }
        }
        saved.and(flushed)
    }
}

/// The driver's generator when no seed is given.
fn os_seeded() -> ChaCha20Rng {
    #[allow(
        clippy::disallowed_types,
        reason = "L2 driver: the OS generator seeds the driver's ChaCha20 generator once"
    )]
    let mut os = rand_core::OsRng;
    let mut seed = [0u8; 32];
    os.fill_bytes(&mut seed);
    ChaCha20Rng::from_seed(seed)
}
