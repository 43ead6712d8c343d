//! The client engine: account, contacts, sessions, ordering, retries and mailbox handover.
//!
//! The engine contains no networking code and reads no clock: time is a `now_ms` argument and
//! randomness an `rng` argument. A driver feeds it deliveries from the owned mailboxes
//! ([`Client::handle_delivery`]) and timer wake-ups ([`Client::handle_timeout`]), sends what
//! [`Client::poll_outgoing`] returns (each item wrapped into an onion packet by
//! [`crate::Directory::wrap`]) and shows what [`Client::poll_event`] returns.
//!
//! Guarantees per conversation: sequenced messages (text, mailbox handover, session reset)
//! are retried with the same ciphertext, hence the same message id, until the peer's delivery
//! receipt arrives; the receiver accepts each once (a duplicate is recognised by the hash of
//! its payload before any decryption, and by its sequence number after), delivers them in
//! sequence order, and reports a gap as soon as it sees one ([`Event::GapDetected`]) and, if
//! the missing messages never come, says so ([`Event::MessagesLost`]) before moving on.

use std::collections::{BTreeMap, HashMap, VecDeque};

use zentalk_crypto::{Address, CryptoRngCore, IdentityPublicKey, NodeId, hash::blake2b_256};
use zentalk_onion::MailboxId;
use zentalk_ratchet::{Account, Message, PrekeyBundle, Session, SessionConfig};

use crate::ClientError;
use crate::card::ContactCard;
use crate::mailbox::{MailboxAddr, MailboxKey};
use crate::payload::{Body, Inner, MAX_TEXT_LEN, MessageId, open_outer, seal_outer};

/// First retry of an unacknowledged message after this long.
pub const RETRY_INITIAL_MS: u64 = 2_000;
/// Retry intervals double up to this.
pub const RETRY_MAX_MS: u64 = 60_000;
/// A gap is declared lost after this long without the missing messages.
pub const GAP_TIMEOUT_MS: u64 = 120_000;
/// Most out-of-order messages buffered per conversation; one more declares the oldest gap
/// lost.
pub const MAX_REORDER: usize = 256;

/// Ranges of sequence numbers reported lost ([`Event::MessagesLost`]) that are remembered per
/// contact, so that a text of such a range arriving late is still shown (once) instead of being
/// acknowledged and dropped. Beyond this many ranges the oldest is forgotten.
pub const MAX_LOST_RANGES: usize = 64;
/// Most control messages held per contact while no mailbox of theirs is known.
pub const MAX_PENDING_CONTROLS: usize = 64;
/// Undecryptable messages from one contact before a fresh session is negotiated.
pub const REPAIR_AFTER_FAILURES: u32 = 3;
/// Payload hashes remembered to recognise retried duplicates.
pub const SEEN_CAPACITY: usize = 4096;

/// A payload to send to a mailbox (wrap it with [`crate::Directory::wrap`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Destination mailbox.
    pub dest: MailboxAddr,
    /// The client payload (opaque to relays).
    pub payload: Vec<u8>,
    /// The message id of a sequenced message (text, mailbox handover, session reset), the
    /// same on every retry; `None` for unsequenced control messages (receipts, typing).
    pub id: Option<MessageId>,
}

/// What the application is told.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A text message, delivered once and in conversation order.
    Message {
        /// Sender.
        from: Address,
        /// Message id.
        id: MessageId,
        /// Position in the conversation.
        seq: u64,
        /// The text.
        text: String,
    },
    /// The peer stored our message.
    Delivered {
        /// Recipient.
        to: Address,
        /// Message id.
        id: MessageId,
    },
    /// The peer's user read our messages.
    Read {
        /// Reader.
        by: Address,
        /// Message ids.
        ids: Vec<MessageId>,
    },
    /// The peer is or stopped typing.
    Typing {
        /// Who.
        from: Address,
        /// Typing or not.
        typing: bool,
    },
    /// The peer came online or went offline.
    Presence {
        /// Who.
        from: Address,
        /// Online or not.
        online: bool,
    },
    /// Messages `first..=last` from `from` have not arrived yet; later ones are held back.
    GapDetected {
        /// Sender.
        from: Address,
        /// First missing sequence number.
        first: u64,
        /// Last missing sequence number.
        last: u64,
    },
    /// Messages `first..=last` from `from` never arrived; the conversation moves on.
    MessagesLost {
        /// Sender.
        from: Address,
        /// First lost sequence number.
        first: u64,
        /// Last lost sequence number.
        last: u64,
    },
    /// Someone new wrote to our contact mailbox.
    ContactAdded {
        /// Their address.
        address: Address,
    },
    /// The peer started a fresh session.
    SessionReset {
        /// Who.
        from: Address,
    },
    /// Messages from this contact kept failing to decrypt; a fresh session was started and
    /// a session reset sent (once: no second repair before the peer's messages decrypt).
    SessionRepairStarted {
        /// Who.
        with: Address,
    },
    /// Messages from this contact keep failing to decrypt and no card of theirs is known:
    /// fetch it, `add_contact` it, then call [`Client::repair_session`].
    RepairNeedsCard {
        /// Who.
        address: Address,
    },
    /// We own a new mailbox: the driver should open a link to it.
    MailboxCreated {
        /// Where.
        mailbox: MailboxAddr,
    },
}

#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) id: MessageId,
    pub(crate) payload: Vec<u8>,
    pub(crate) next_retry_ms: u64,
    pub(crate) interval_ms: u64,
    /// False while no mailbox of the peer was known when it was queued.
    pub(crate) sent: bool,
    /// The inner message, kept to re-encrypt it under a repaired session.
    pub(crate) inner: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct Contact {
    pub(crate) identity: IdentityPublicKey,
    pub(crate) bundle: Option<PrekeyBundle>,
    pub(crate) session: Option<Session>,
    pub(crate) send_to: Option<MailboxAddr>,
    pub(crate) my_mailbox: Option<MailboxKey>,
    pub(crate) next_send_seq: u64,
    pub(crate) next_recv_seq: u64,
    pub(crate) reorder: BTreeMap<u64, Inner>,
    /// Sequence ranges (first -> last) reported lost whose texts may still arrive late.
    pub(crate) lost: BTreeMap<u64, u64>,
    pub(crate) gap_since_ms: Option<u64>,
    pub(crate) unacked: BTreeMap<u64, Pending>,
    pub(crate) pending_controls: VecDeque<Vec<u8>>,
    /// Messages in this contact's mailbox that no session decrypted, since the last success.
    pub(crate) decrypt_failures: u32,
    /// A repair was started and no message of the peer has decrypted since.
    pub(crate) repair_sent: bool,
    /// The session was replaced: unacknowledged messages must be re-encrypted.
    pub(crate) reencrypt: bool,
}

/// Borrowed engine state for the snapshot.
pub(crate) struct Parts<'a> {
    pub(crate) account: &'a Account,
    pub(crate) contact_mailbox: &'a MailboxKey,
    pub(crate) mailbox_relays: &'a [NodeId],
    pub(crate) contacts: &'a BTreeMap<Address, Contact>,
    pub(crate) seen: &'a HashMap<[u8; 32], Option<(Address, MessageId)>>,
    pub(crate) seen_order: &'a VecDeque<[u8; 32]>,
}

impl Contact {
    /// Remembers `first..=last` as reported lost (at most [`MAX_LOST_RANGES`] ranges).
    pub(crate) fn note_lost(&mut self, first: u64, last: u64) {
        if first > last {
            return;
        }
        self.lost.insert(first, last);
        while self.lost.len() > MAX_LOST_RANGES {
            self.lost.pop_first();
        }
    }

    /// Whether `seq` was reported lost; if so it is taken out of its range (it arrived).
    pub(crate) fn take_lost(&mut self, seq: u64) -> bool {
        let Some((&first, &last)) = self.lost.range(..=seq).next_back() else {
            return false;
        };
        if last < seq {
            return false;
        }
        self.lost.remove(&first);
        if first < seq {
            self.lost.insert(first, seq - 1);
        }
        if seq < last {
            self.lost.insert(seq + 1, last);
        }
        while self.lost.len() > MAX_LOST_RANGES {
            self.lost.pop_first();
        }
        true
    }

    pub(crate) fn new(identity: IdentityPublicKey) -> Self {
        Self {
            identity,
            bundle: None,
            session: None,
            send_to: None,
            my_mailbox: None,
            next_send_seq: 1,
            next_recv_seq: 1,
            reorder: BTreeMap::new(),
            lost: BTreeMap::new(),
            gap_since_ms: None,
            unacked: BTreeMap::new(),
            pending_controls: VecDeque::new(),
            decrypt_failures: 0,
            repair_sent: false,
            reencrypt: false,
        }
    }
}

/// Who an owned mailbox is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    ContactMailbox,
    Contact(Address),
}

/// A summary of one contact, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactInfo {
    /// Address.
    pub address: Address,
    /// Identity key.
    pub identity: IdentityPublicKey,
    /// Where we write to them now (their contact mailbox until they hand over a fresh one).
    pub send_to: Option<MailboxAddr>,
    /// The mailbox we gave them.
    pub my_mailbox: Option<MailboxAddr>,
    /// Sequenced messages sent but not yet acknowledged.
    pub unacknowledged: usize,
}

/// The client engine (see the module documentation).
pub struct Client {
    account: Account,
    contact_mailbox: MailboxKey,
    mailbox_relays: Vec<NodeId>,
    contacts: BTreeMap<Address, Contact>,
    outgoing: VecDeque<Outgoing>,
    events: VecDeque<Event>,
    seen: HashMap<[u8; 32], Option<(Address, MessageId)>>,
    seen_order: VecDeque<[u8; 32]>,
    pending_handover: Vec<Address>,
    retry_initial_ms: u64,
    retry_max_ms: u64,
    gap_timeout_ms: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.address())
            .field("contact_mailbox", &self.contact_mailbox)
            .field("contacts", &self.contacts.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A new account whose contact mailbox lives on `contact_relay`; per-contact mailboxes
    /// are placed on relays drawn from `mailbox_relays` (the contact relay if empty).
    pub fn new(
        rng: &mut impl CryptoRngCore,
        contact_relay: NodeId,
        mailbox_relays: Vec<NodeId>,
    ) -> Self {
        let account = Account::new(rng);
        let contact_mailbox = MailboxKey::generate(rng, contact_relay);
        Self::from_parts(account, contact_mailbox, mailbox_relays)
    }

    pub(crate) fn from_parts(
        account: Account,
        contact_mailbox: MailboxKey,
        mailbox_relays: Vec<NodeId>,
    ) -> Self {
        Self {
            account,
            contact_mailbox,
            mailbox_relays,
            contacts: BTreeMap::new(),
            outgoing: VecDeque::new(),
            events: VecDeque::new(),
            seen: HashMap::new(),
            seen_order: VecDeque::new(),
            pending_handover: Vec::new(),
            retry_initial_ms: RETRY_INITIAL_MS,
            retry_max_ms: RETRY_MAX_MS,
            gap_timeout_ms: GAP_TIMEOUT_MS,
        }
    }

    /// Sets how long a gap may wait for its missing messages before they are declared lost
    /// (default [`GAP_TIMEOUT_MS`]; at least 1 ms). A runtime setting: not part of the
    /// snapshot.
    pub fn set_gap_timeout(&mut self, ms: u64) {
        self.gap_timeout_ms = ms.max(1);
    }

    /// Sets the retry schedule of unacknowledged messages: the first retry after
    /// `initial_ms`, then doubling up to `max_ms` (defaults [`RETRY_INITIAL_MS`] and
    /// [`RETRY_MAX_MS`]; both at least 1 ms, `max_ms` at least `initial_ms`). A runtime
    /// setting: not part of the snapshot. Messages already queued keep their next retry time.
    pub fn set_retry_intervals(&mut self, initial_ms: u64, max_ms: u64) {
        self.retry_initial_ms = initial_ms.max(1);
        self.retry_max_ms = max_ms.max(self.retry_initial_ms);
    }

    /// The sequence number of the unacknowledged message `id` to `to` (what
    /// [`Client::send_text`] just queued); `None` once acknowledged or if unknown.
    pub fn unacknowledged_seq(&self, to: &Address, id: &MessageId) -> Option<u64> {
        self.contacts
            .get(to)?
            .unacked
            .iter()
            .find(|(_, p)| p.id == *id)
            .map(|(s, _)| *s)
    }

    pub(crate) fn parts(&self) -> Parts<'_> {
        Parts {
            account: &self.account,
            contact_mailbox: &self.contact_mailbox,
            mailbox_relays: &self.mailbox_relays,
            contacts: &self.contacts,
            seen: &self.seen,
            seen_order: &self.seen_order,
        }
    }

    pub(crate) fn insert_contact(&mut self, a: Address, c: Contact) {
        self.contacts.insert(a, c);
    }

    pub(crate) fn remember_seen(&mut self, h: [u8; 32], v: Option<(Address, MessageId)>) {
        self.remember(h, v);
    }

    /// The identity public key (what a user shares so others can find the card).
    pub fn identity_key(&self) -> IdentityPublicKey {
        self.account.identity_key()
    }

    /// The address: BLAKE2b-256 of the identity key.
    pub fn address(&self) -> Address {
        self.account.identity_key().address()
    }

    /// The ratchet account.
    pub fn account(&self) -> &Account {
        &self.account
    }

    /// The contact mailbox (receives first messages).
    pub fn contact_mailbox(&self) -> &MailboxKey {
        &self.contact_mailbox
    }

    /// Every mailbox this client owns: the contact mailbox, then one per contact.
    pub fn mailboxes(&self) -> Vec<&MailboxKey> {
        let mut v = vec![&self.contact_mailbox];
        v.extend(self.contacts.values().filter_map(|c| c.my_mailbox.as_ref()));
        v
    }

    /// The signed contact card to publish: the current signed prekey and the contact mailbox.
    ///
    /// The card carries no one-time prekey: a DHT record is read by everyone who looks the
    /// user up, so a one-time key in it would be consumed by the first sender and make every
    /// later first message fail. X3DH without a one-time key is Signal's documented fallback;
    /// a replayed initial message is still refused (the account remembers used base keys).
    pub fn contact_card(
        &mut self,
        _rng: &mut impl CryptoRngCore,
    ) -> Result<ContactCard, ClientError> {
        let mut bundle = self.account.prekey_bundle();
        bundle.one_time_prekey = None;
        ContactCard::sign(self.account.identity(), bundle, self.contact_mailbox.addr())
    }

    /// The contact card as a DHT record under the blinded key of the period containing
    /// `now_ms`.
    pub fn card_record(
        &mut self,
        rng: &mut impl CryptoRngCore,
        now_ms: u64,
        sequence: u64,
    ) -> Result<zentalk_dht::Record, ClientError> {
        let card = self.contact_card(rng)?;
        let period = zentalk_dht::record::prekey_period(now_ms);
        let expires = now_ms.saturating_add(zentalk_dht::record::PREKEY_PERIOD_MS);
        Ok(zentalk_dht::record::sign_prekey_bundle(
            self.account.identity(),
            &card.to_bytes(),
            period,
            sequence,
            expires,
            rng,
        )?)
    }

    /// Adds (or refreshes) a contact from their card. First messages go to the card's contact
    /// mailbox until the contact hands over a fresh one.
    pub fn add_contact(&mut self, card: &ContactCard) -> Address {
        let identity = card.bundle.identity_key;
        let address = identity.address();
        let c = self
            .contacts
            .entry(address)
            .or_insert_with(|| Contact::new(identity));
        c.bundle = Some(card.bundle.clone());
        if c.send_to.is_none() {
            c.send_to = Some(card.mailbox);
        }
        address
    }

    /// Known contacts.
    pub fn contacts(&self) -> Vec<ContactInfo> {
        self.contacts
            .iter()
            .map(|(a, c)| ContactInfo {
                address: *a,
                identity: c.identity,
                send_to: c.send_to,
                my_mailbox: c.my_mailbox.as_ref().map(MailboxKey::addr),
                unacknowledged: c.unacked.len(),
            })
            .collect()
    }

    /// Sends a text to `to`; returns its message id. The message is retried until the peer's
    /// delivery receipt arrives.
    pub fn send_text(
        &mut self,
        rng: &mut impl CryptoRngCore,
        to: &Address,
        text: &str,
        now_ms: u64,
    ) -> Result<MessageId, ClientError> {
        if text.len() > MAX_TEXT_LEN {
            return Err(ClientError::TextTooLong {
                max: MAX_TEXT_LEN,
                found: text.len(),
            });
        }
        self.ensure_session(rng, to, now_ms)?;
        self.send_sequenced(rng, to, Body::Text(text.to_owned()), now_ms)
    }

    /// Sends an unsequenced control message (typing, presence, read receipt) to `to`. Not
    /// retried. Needs an existing session.
    pub fn send_control(
        &mut self,
        rng: &mut impl CryptoRngCore,
        to: &Address,
        body: Body,
    ) -> Result<(), ClientError> {
        if body.is_sequenced() {
            return Err(ClientError::MalformedBody {
                kind: "control",
                reason: "sequenced kinds go through send_text",
            });
        }
        self.send_unsequenced(rng, to, body)
    }

    fn ensure_session(
        &mut self,
        rng: &mut impl CryptoRngCore,
        to: &Address,
        now_ms: u64,
    ) -> Result<(), ClientError> {
        let c = self
            .contacts
            .get_mut(to)
            .ok_or(ClientError::UnknownContact)?;
        if c.session.is_some() {
            return Ok(());
        }
        let bundle = c.bundle.as_ref().ok_or(ClientError::UnknownContact)?;
        let session =
            self.account
                .create_outbound_session(rng, bundle, SessionConfig::default())?;
        c.session = Some(session);
        if c.my_mailbox.is_none() {
            let mb = self.new_mailbox(rng);
            let addr = mb.addr();
            if let Some(c) = self.contacts.get_mut(to) {
                c.my_mailbox = Some(mb);
            }
            self.events
                .push_back(Event::MailboxCreated { mailbox: addr });
            self.send_sequenced(rng, to, Body::MailboxHandover(addr), now_ms)?;
        }
        Ok(())
    }

    fn new_mailbox(&self, rng: &mut impl CryptoRngCore) -> MailboxKey {
        let relay = if self.mailbox_relays.is_empty() {
            self.contact_mailbox.addr().relay
        } else {
            let mut b = [0u8; 8];
            rng.fill_bytes(&mut b);
            let n = u64::try_from(self.mailbox_relays.len()).unwrap_or(1);
            let i = usize::try_from(u64::from_le_bytes(b) % n).unwrap_or(0);
            self.mailbox_relays
                .get(i)
                .copied()
                .unwrap_or(self.contact_mailbox.addr().relay)
        };
        MailboxKey::generate(rng, relay)
    }

    fn encrypt(
        &mut self,
        rng: &mut impl CryptoRngCore,
        to: &Address,
        inner: &Inner,
    ) -> Result<Vec<u8>, ClientError> {
        let c = self
            .contacts
            .get_mut(to)
            .ok_or(ClientError::UnknownContact)?;
        let s = c.session.as_mut().ok_or(ClientError::UnknownContact)?;
        Ok(seal_outer(&s.encrypt(rng, &inner.to_bytes())?.to_bytes()))
    }

    fn send_sequenced(
        &mut self,
        rng: &mut impl CryptoRngCore,
        to: &Address,
        body: Body,
        now_ms: u64,
    ) -> Result<MessageId, ClientError> {
        let seq = self
            .contacts
            .get(to)
            .ok_or(ClientError::UnknownContact)?
            .next_send_seq;
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let inner = Inner { seq, id, body };
        let payload = self.encrypt(rng, to, &inner)?;
        let c = self
            .contacts
            .get_mut(to)
            .ok_or(ClientError::UnknownContact)?;
        c.next_send_seq += 1;
        let sent = c.send_to.is_some();
        if let Some(dest) = c.send_to {
            self.outgoing.push_back(Outgoing {
                dest,
                payload: payload.clone(),
                id: Some(id),
            });
        }
        c.unacked.insert(
            seq,
            Pending {
                id,
                payload,
                next_retry_ms: now_ms.saturating_add(self.retry_initial_ms),
                interval_ms: self.retry_initial_ms,
                sent,
                inner: inner.to_bytes(),
            },
        );
        Ok(id)
    }

    fn send_unsequenced(
        &mut self,
        rng: &mut impl CryptoRngCore,
        to: &Address,
        body: Body,
    ) -> Result<(), ClientError> {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let payload = self.encrypt(rng, to, &Inner { seq: 0, id, body })?;
        let c = self
            .contacts
            .get_mut(to)
            .ok_or(ClientError::UnknownContact)?;
        match c.send_to {
            Some(dest) => self.outgoing.push_back(Outgoing {
                dest,
                payload,
                id: None,
            }),
            None => {
                if c.pending_controls.len() >= MAX_PENDING_CONTROLS {
                    c.pending_controls.pop_front();
                }
                c.pending_controls.push_back(payload);
            }
        }
        Ok(())
    }

    /// The next payload to send, if any.
    pub fn poll_outgoing(&mut self) -> Option<Outgoing> {
        self.outgoing.pop_front()
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Client::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.contacts
            .values()
            .flat_map(|c| {
                let retry = if c.send_to.is_some() {
                    c.unacked.values().map(|p| p.next_retry_ms).min()
                } else {
                    None
                };
                let gap = c
                    .gap_since_ms
                    .map(|t| t.saturating_add(self.gap_timeout_ms));
                [retry, gap]
            })
            .flatten()
            .min()
    }

    /// Retries what is due and declares gaps lost that waited the gap timeout
    /// ([`GAP_TIMEOUT_MS`] unless set by [`Client::set_gap_timeout`]).
    pub fn handle_timeout(
        &mut self,
        rng: &mut impl CryptoRngCore,
        now_ms: u64,
    ) -> Result<(), ClientError> {
        let retry_max_ms = self.retry_max_ms;
        let gap_timeout_ms = self.gap_timeout_ms;
        let addrs: Vec<Address> = self.contacts.keys().copied().collect();
        for a in addrs {
            let Some(c) = self.contacts.get_mut(&a) else {
                continue;
            };
            if let Some(dest) = c.send_to {
                for p in c.unacked.values_mut() {
                    if p.next_retry_ms <= now_ms {
                        p.sent = true;
                        self.outgoing.push_back(Outgoing {
                            dest,
                            payload: p.payload.clone(),
                            id: Some(p.id),
                        });
                        p.interval_ms = (p.interval_ms.saturating_mul(2)).min(retry_max_ms);
                        p.next_retry_ms = now_ms.saturating_add(p.interval_ms);
                    }
                }
            }
            if c.gap_since_ms
                .is_some_and(|t| now_ms >= t.saturating_add(gap_timeout_ms))
            {
                self.skip_gap(&a, now_ms);
            }
        }
        self.answer_handovers(rng, now_ms)
    }

    /// Hands a fresh mailbox to every peer that just handed us one, if we have not yet.
    fn answer_handovers(
        &mut self,
        rng: &mut impl CryptoRngCore,
        now_ms: u64,
    ) -> Result<(), ClientError> {
        for from in std::mem::take(&mut self.pending_handover) {
            let needs = self
                .contacts
                .get(&from)
                .is_some_and(|c| c.my_mailbox.is_none());
            if needs {
                let mb = self.new_mailbox(rng);
                let addr = mb.addr();
                if let Some(c) = self.contacts.get_mut(&from) {
                    c.my_mailbox = Some(mb);
                }
                self.events
                    .push_back(Event::MailboxCreated { mailbox: addr });
                self.send_sequenced(rng, &from, Body::MailboxHandover(addr), now_ms)?;
            }
        }
        Ok(())
    }

    /// Declares the first gap of `a`'s conversation lost and delivers what follows it.
    fn skip_gap(&mut self, a: &Address, now_ms: u64) {
        let Some(c) = self.contacts.get_mut(a) else {
            return;
        };
        let Some(&first_buffered) = c.reorder.keys().next() else {
            c.gap_since_ms = None;
            return;
        };
        self.events.push_back(Event::MessagesLost {
            from: *a,
            first: c.next_recv_seq,
            last: first_buffered - 1,
        });
        c.note_lost(c.next_recv_seq, first_buffered - 1);
        c.next_recv_seq = first_buffered;
        c.gap_since_ms = None;
        self.drain(a, now_ms);
    }

    fn remember(&mut self, hash: [u8; 32], what: Option<(Address, MessageId)>) {
        if self.seen.insert(hash, what).is_none() {
            self.seen_order.push_back(hash);
        }
        while self.seen_order.len() > SEEN_CAPACITY {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }

    /// Feeds one item that arrived in the owned mailbox `mailbox`.
    ///
    /// A payload seen before (a retry) is not decrypted again; if it was a sequenced message
    /// the delivery receipt is sent again (the first may have been lost).
    pub fn handle_delivery(
        &mut self,
        rng: &mut impl CryptoRngCore,
        mailbox: &MailboxId,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<(), ClientError> {
        let hash = blake2b_256(payload);
        if let Some(seen) = self.seen.get(&hash) {
            if let Some((from, id)) = *seen {
                self.send_unsequenced(rng, &from, Body::DeliveryReceipt(vec![id]))?;
            }
            return Ok(());
        }
        let owner = if *mailbox == self.contact_mailbox.id() {
            Owner::ContactMailbox
        } else {
            self.contacts
                .iter()
                .find(|(_, c)| c.my_mailbox.as_ref().is_some_and(|m| m.id() == *mailbox))
                .map(|(a, _)| Owner::Contact(*a))
                .ok_or(ClientError::UnknownContact)?
        };
        let message = Message::from_bytes(open_outer(payload)?)?;
        let (from, plaintext) = match self.decrypt(&message, owner) {
            Ok(ok) => ok,
            Err(e) => {
                if let Owner::Contact(a) = owner {
                    self.decrypt_failed(rng, &a, now_ms)?;
                }
                return Err(e);
            }
        };
        if let Some(c) = self.contacts.get_mut(&from) {
            c.decrypt_failures = 0;
            c.repair_sent = false;
            if std::mem::take(&mut c.reencrypt) {
                self.reencrypt_unacked(rng, &from, None)?;
            }
        }
        let inner = Inner::from_bytes(&plaintext)?;
        let sequenced = inner.body.is_sequenced();
        self.remember(hash, sequenced.then_some((from, inner.id)));
        self.accept(rng, from, inner, now_ms)
    }

    /// Counts a message in `a`'s mailbox that no session decrypts; after
    /// [`REPAIR_AFTER_FAILURES`] starts one fresh session (never a second one before a
    /// message of the peer decrypts again, so two clients cannot loop).
    fn decrypt_failed(
        &mut self,
        rng: &mut impl CryptoRngCore,
        a: &Address,
        now_ms: u64,
    ) -> Result<(), ClientError> {
        let Some(c) = self.contacts.get_mut(a) else {
            return Ok(());
        };
        c.decrypt_failures = c.decrypt_failures.saturating_add(1);
        if c.decrypt_failures < REPAIR_AFTER_FAILURES || c.repair_sent {
            return Ok(());
        }
        let Some(bundle) = c.bundle.as_ref() else {
            c.repair_sent = true;
            self.events
                .push_back(Event::RepairNeedsCard { address: *a });
            return Ok(());
        };
        let session =
            self.account
                .create_outbound_session(rng, bundle, SessionConfig::default())?;
        c.session = Some(session);
        c.repair_sent = true;
        c.decrypt_failures = 0;
        self.events
            .push_back(Event::SessionRepairStarted { with: *a });
        // The reset goes first in the new session, then every unacknowledged message again.
        let reset_seq = c.next_send_seq;
        self.send_sequenced(rng, a, Body::SessionReset, now_ms)?;
        self.reencrypt_unacked(rng, a, Some(reset_seq))
    }

    /// Starts a repair with `a` by hand (for example after fetching their card when
    /// [`Event::RepairNeedsCard`] was raised).
    pub fn repair_session(
        &mut self,
        rng: &mut impl CryptoRngCore,
        a: &Address,
        now_ms: u64,
    ) -> Result<(), ClientError> {
        let c = self
            .contacts
            .get_mut(a)
            .ok_or(ClientError::UnknownContact)?;
        c.repair_sent = false;
        c.decrypt_failures = REPAIR_AFTER_FAILURES.saturating_sub(1);
        self.decrypt_failed(rng, a, now_ms)
    }

    /// Re-encrypts every unacknowledged message to `a` (same seq, same id) under the current
    /// session, oldest first, except `skip` (a message already encrypted under it), and
    /// queues them.
    fn reencrypt_unacked(
        &mut self,
        rng: &mut impl CryptoRngCore,
        a: &Address,
        skip: Option<u64>,
    ) -> Result<(), ClientError> {
        let Some(c) = self.contacts.get_mut(a) else {
            return Ok(());
        };
        let Some(session) = c.session.as_mut() else {
            return Ok(());
        };
        for (seq, p) in c.unacked.iter_mut() {
            if Some(*seq) == skip {
                continue;
            }
            p.payload = seal_outer(&session.encrypt(rng, &p.inner)?.to_bytes());
            if let Some(dest) = c.send_to {
                p.sent = true;
                self.outgoing.push_back(Outgoing {
                    dest,
                    payload: p.payload.clone(),
                    id: Some(p.id),
                });
            }
        }
        Ok(())
    }

    fn decrypt(
        &mut self,
        message: &Message,
        owner: Owner,
    ) -> Result<(Address, Vec<u8>), ClientError> {
        match message {
            Message::Prekey(pm) => {
                let from = pm.identity_key().address();
                if let Some(s) = self
                    .contacts
                    .get_mut(&from)
                    .and_then(|c| c.session.as_mut())
                    .filter(|s| s.matches_prekey_message(pm))
                {
                    let pt = s
                        .decrypt_ratchet(pm.message())
                        .map_err(|_| ClientError::Undecryptable)?;
                    return Ok((from, pt));
                }
                let (session, pt) = self.account.create_inbound_session(pm)?;
                let is_new = !self.contacts.contains_key(&from);
                let c = self
                    .contacts
                    .entry(from)
                    .or_insert_with(|| Contact::new(pm.identity_key()));
                let reset = c.session.is_some();
                c.session = Some(session);
                if is_new {
                    self.events.push_back(Event::ContactAdded { address: from });
                } else if reset {
                    c.reencrypt = true;
                    self.events.push_back(Event::SessionReset { from });
                }
                Ok((from, pt))
            }
            Message::Normal(rm) => {
                let candidates: Vec<Address> = match owner {
                    Owner::Contact(a) => vec![a],
                    Owner::ContactMailbox => self.contacts.keys().copied().collect(),
                };
                for a in candidates {
                    if let Some(s) = self.contacts.get_mut(&a).and_then(|c| c.session.as_mut())
                        && let Ok(pt) = s.decrypt_ratchet(rm)
                    {
                        return Ok((a, pt));
                    }
                }
                Err(ClientError::Undecryptable)
            }
        }
    }

    fn accept(
        &mut self,
        rng: &mut impl CryptoRngCore,
        from: Address,
        inner: Inner,
        now_ms: u64,
    ) -> Result<(), ClientError> {
        match &inner.body {
            Body::DeliveryReceipt(ids) => {
                if let Some(c) = self.contacts.get_mut(&from) {
                    let done: Vec<u64> = c
                        .unacked
                        .iter()
                        .filter(|(_, p)| ids.contains(&p.id))
                        .map(|(s, _)| *s)
                        .collect();
                    for s in done {
                        if let Some(p) = c.unacked.remove(&s) {
                            self.events
                                .push_back(Event::Delivered { to: from, id: p.id });
                        }
                    }
                }
                return Ok(());
            }
            Body::ReadReceipt(ids) => {
                self.events.push_back(Event::Read {
                    by: from,
                    ids: ids.clone(),
                });
                return Ok(());
            }
            Body::Typing(t) => {
                self.events.push_back(Event::Typing { from, typing: *t });
                return Ok(());
            }
            Body::Presence(o) => {
                self.events.push_back(Event::Presence { from, online: *o });
                return Ok(());
            }
            _ => {}
        }
        // Sequenced: acknowledge (it is safely held from now on), then order.
        self.send_unsequenced(rng, &from, Body::DeliveryReceipt(vec![inner.id]))?;
        let c = self
            .contacts
            .get_mut(&from)
            .ok_or(ClientError::UnknownContact)?;
        if inner.body == Body::SessionReset && inner.seq != c.next_recv_seq {
            // A peer that restored an old state counts from where its state left off: the
            // reset realigns the order (what was lost before it is reported by the peer's
            // side as a gap, if anywhere).
            if inner.seq > c.next_recv_seq {
                self.events.push_back(Event::MessagesLost {
                    from,
                    first: c.next_recv_seq,
                    last: inner.seq - 1,
                });
            }
            c.next_recv_seq = inner.seq;
            c.reorder.retain(|s, _| *s > inner.seq);
            // The numbering starts over from the reset: old lost ranges mean nothing now.
            c.lost.clear();
            c.gap_since_ms = None;
        }
        if inner.seq < c.next_recv_seq || c.reorder.contains_key(&inner.seq) {
            // A duplicate (already shown or buffered), or a text of a range reported lost that
            // arrives late: that one is shown now, once (its range forgets it), rather than
            // acknowledged and dropped. Only texts are applied late: a late handover or reset
            // would undo newer state.
            let late = inner.seq < c.next_recv_seq && c.take_lost(inner.seq);
            if late && matches!(inner.body, Body::Text(_)) {
                self.apply(from, inner);
            }
            return Ok(());
        }
        let seq = inner.seq;
        if seq > c.next_recv_seq && c.reorder.is_empty() {
            c.gap_since_ms = Some(now_ms);
            self.events.push_back(Event::GapDetected {
                from,
                first: c.next_recv_seq,
                last: seq - 1,
            });
        }
        c.reorder.insert(seq, inner);
        let overfull = c.reorder.len() > MAX_REORDER;
        self.drain(&from, now_ms);
        if overfull {
            self.skip_gap(&from, now_ms);
        }
        self.answer_handovers(rng, now_ms)
    }

    /// Applies buffered messages that are next in sequence.
    fn drain(&mut self, from: &Address, now_ms: u64) {
        loop {
            let Some(c) = self.contacts.get_mut(from) else {
                return;
            };
            let Some(inner) = c.reorder.remove(&c.next_recv_seq) else {
                if c.reorder.is_empty() {
                    c.gap_since_ms = None;
                } else if c.gap_since_ms.is_none() {
                    // A new gap behind the one just filled.
                    c.gap_since_ms = Some(now_ms);
                    let last = c.reorder.keys().next().copied().unwrap_or(c.next_recv_seq) - 1;
                    self.events.push_back(Event::GapDetected {
                        from: *from,
                        first: c.next_recv_seq,
                        last,
                    });
                }
                return;
            };
            c.next_recv_seq += 1;
            self.apply(*from, inner);
        }
    }

    fn apply(&mut self, from: Address, inner: Inner) {
        match inner.body {
            Body::Text(text) => self.events.push_back(Event::Message {
                from,
                id: inner.id,
                seq: inner.seq,
                text,
            }),
            Body::MailboxHandover(addr) => {
                if let Some(c) = self.contacts.get_mut(&from) {
                    c.send_to = Some(addr);
                    // Everything waiting goes to the new mailbox now.
                    for payload in c.pending_controls.drain(..) {
                        self.outgoing.push_back(Outgoing {
                            dest: addr,
                            payload,
                            id: None,
                        });
                    }
                    // Messages never sent go now; sent ones are retried there on their
                    // schedule (their receipts may already be on the way).
                    for p in c.unacked.values_mut().filter(|p| !p.sent) {
                        p.sent = true;
                        self.outgoing.push_back(Outgoing {
                            dest: addr,
                            payload: p.payload.clone(),
                            id: Some(p.id),
                        });
                    }
                }
                self.pending_handover.push(from);
            }
            Body::SessionReset => self.events.push_back(Event::SessionReset { from }),
            _ => {}
        }
    }
}
