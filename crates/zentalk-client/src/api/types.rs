//! The JSON shapes of requests, responses and events. Addresses are lowercase base32
//! (52 characters; requests also accept 64 hex characters), message ids 32 hex characters,
//! times milliseconds since the Unix epoch.

use serde::{Deserialize, Serialize};
use zentalk_crypto::Address;

use super::to_hex;
use crate::MessageId;

/// `GET /v1/account`: who we are and what to share so others can add us. Public values
/// only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// Our address (BLAKE2b-256 of the identity key), base32: what conversations and
    /// messages are keyed by.
    pub address: String,
    /// Our address, hex.
    pub address_hex: String,
    /// Our Ed25519 identity public key, 64 hex characters: what others pass to
    /// `POST /v1/contacts` (our signed contact card is found in the DHT under a key derived
    /// from it; an address cannot be turned back into it).
    pub identity_key: String,
}

/// A contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactView {
    /// Their address, base32.
    pub address: String,
    /// Their identity public key, hex (compare it with what they told you).
    pub identity_key: String,
    /// Our sequenced messages to them not yet confirmed delivered.
    pub pending: u64,
}

/// `POST /v1/contacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddContactRequest {
    /// Their identity public key, 64 hex characters (their `GET /v1/account`
    /// `identity_key`, or `zentalk whoami`).
    pub identity_key: String,
}

/// A conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationView {
    /// The peer's address, base32.
    pub peer: String,
    /// Messages received and not yet marked read.
    pub unread: u32,
    /// Time of the last message, if any.
    pub last_ms: Option<u64>,
    /// Text of the last message, if any.
    pub last_text: Option<String>,
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MessageStatusView {
    /// Outgoing, stored, not yet handed to a first relay.
    Sending,
    /// Outgoing, handed to a first relay.
    Sent,
    /// Outgoing: the peer confirmed it stored it. Incoming messages are stored as delivered.
    Delivered,
    /// Outgoing: the peer's user read it.
    Read,
    /// Outgoing and given up on.
    Failed,
}

/// One message of a conversation's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    /// Message id, hex.
    pub id: String,
    /// The peer's address, base32.
    pub peer: String,
    /// Whether we sent it.
    pub outgoing: bool,
    /// Position in the conversation (per direction).
    pub seq: u64,
    /// The text.
    pub text: String,
    /// When it was sent (outgoing) or received (incoming).
    pub sent_ms: u64,
    /// Where it stands.
    pub status: MessageStatusView,
    /// Incoming: marked read here (`POST .../read`).
    pub read: bool,
    /// Pass as `before=` to get the page of older messages.
    pub cursor: String,
}

/// `GET /v1/conversations/{address}/messages`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagesPage {
    /// The messages, newest first.
    pub messages: Vec<MessageView>,
    /// `before=` for the next (older) page; `None` when this page was the last.
    pub next_before: Option<String>,
}

/// `POST /v1/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Recipient address (base32 or hex).
    pub to: String,
    /// The text, 1 to [`crate::MAX_TEXT_LEN`] bytes of UTF-8.
    pub text: String,
}

/// Answer to `POST /v1/messages` (202: stored as sending, delivery follows as events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResponse {
    /// The message id, hex.
    pub id: String,
    /// Recipient address, base32.
    pub to: String,
}

/// `POST /v1/conversations/{address}/typing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypingRequest {
    /// Typing now (true) or stopped (false).
    pub typing: bool,
}

/// One event on `GET /v1/events`, a JSON object with a `type` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ApiEvent {
    /// A text message arrived (once, in conversation order).
    Message {
        /// Sender, base32.
        from: String,
        /// Message id, hex.
        id: String,
        /// Position in the conversation.
        seq: u64,
        /// The text.
        text: String,
        /// When it was received (ms since the Unix epoch).
        received_ms: u64,
    },
    /// Our message was handed to a first relay.
    Sent {
        /// Recipient, base32.
        to: String,
        /// Message id, hex.
        id: String,
    },
    /// The peer stored our message.
    Delivered {
        /// Recipient, base32.
        to: String,
        /// Message id, hex.
        id: String,
    },
    /// The peer's user read our messages.
    Read {
        /// Reader, base32.
        by: String,
        /// Message ids, hex.
        ids: Vec<String>,
    },
    /// The peer is or stopped typing.
    Typing {
        /// Who, base32.
        from: String,
        /// Typing or not.
        typing: bool,
    },
    /// The peer came online or went offline.
    Presence {
        /// Who, base32.
        from: String,
        /// Online or not.
        online: bool,
    },
    /// Messages `first..=last` from `from` have not arrived yet; later ones are held back.
    GapDetected {
        /// Sender, base32.
        from: String,
        /// First missing sequence number.
        first: u64,
        /// Last missing sequence number.
        last: u64,
    },
    /// Messages `first..=last` from `from` never arrived; the conversation moves on.
    MessagesLost {
        /// Sender, base32.
        from: String,
        /// First lost sequence number.
        first: u64,
        /// Last lost sequence number.
        last: u64,
    },
    /// Someone new wrote to us and is now a contact.
    ContactAdded {
        /// Their address, base32.
        address: String,
    },
    /// The peer started a fresh session.
    SessionReset {
        /// Who, base32.
        from: String,
    },
    /// Messages from this contact kept failing to decrypt; a fresh session was started.
    SessionRepairStarted {
        /// Who, base32.
        with: String,
    },
    /// Messages from this contact keep failing to decrypt and their card is being looked up
    /// (the client repairs by itself).
    RepairNeedsCard {
        /// Who, base32.
        address: String,
    },
    /// A packet could not be handed to any first relay (a message is retried later by
    /// itself; `id` names it).
    SendFailed {
        /// The message id, hex, if the packet carried a message.
        id: Option<String>,
        /// Why.
        reason: String,
    },
    /// The link to a relay keeping one of our mailboxes is up (messages are pushed).
    LinkUp {
        /// The relay's node id, base32.
        relay: String,
    },
    /// That link was lost (it is reopened by itself with back-off).
    LinkDown {
        /// The relay's node id, base32.
        relay: String,
        /// Why.
        reason: String,
    },
    /// This socket fell behind and `missed` events were dropped for it: refetch what you
    /// show (conversations, messages).
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// Base32 form of an address.
pub(crate) fn addr(a: &Address) -> String {
    a.to_base32()
}

/// Hex form of a message id.
pub(crate) fn id_hex(id: &MessageId) -> String {
    to_hex(id)
}
