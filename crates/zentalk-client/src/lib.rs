//! # zentalk-client
//!
//! Layer 2 of ZenTalk: the client SDK. An account (identity and prekeys from
//! `zentalk-ratchet`, a contact mailbox with its own key pair), a signed contact card
//! published in the DHT under the blinded prekey key, contacts by address, ratchet sessions,
//! the client payload format, per-conversation ordering with gap detection, retries until a
//! delivery receipt, unlinkable per-contact mailboxes handed over inside the ratchet, and
//! onion wrapping through three relays.
//!
//! The [`Client`] engine contains no networking code and reads no clock (time is a `now_ms`
//! argument), so the whole conversation logic is tested in memory; a driver moves its
//! [`Outgoing`] payloads into onion packets ([`Directory::wrap`]) and feeds deliveries back.
//! The exact formats are in `docs/protocol/zentalk-client.md`.
//!
//! The [`driver`] is the long-running tokio side ([`start`] returns a [`DriverHandle`]): one
//! task owns the engine and the encrypted store, holds the mailbox links, sends every packet
//! through three relays, runs the timers and keeps the message history; nothing is
//! acknowledged to a relay before the state that reflects it is saved.
//!
//! ```
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//! use zentalk_client::{Client, ContactCard, Event};
//! use zentalk_crypto::NodeId;
//!
//! let mut rng = ChaCha20Rng::seed_from_u64(1);
//! let relay = NodeId::from_bytes([7; 32]);
//! let mut alice = Client::new(&mut rng, relay, vec![relay]);
//! let mut bob = Client::new(&mut rng, relay, vec![relay]);
//!
//! // Alice learns Bob's card (from the DHT in real use) and writes.
//! let card = ContactCard::from_bytes(&bob.contact_card(&mut rng)?.to_bytes())?;
//! let b = alice.add_contact(&card);
//! alice.send_text(&mut rng, &b, "hi Bob", 0)?;
//!
//! // Carry every payload to its mailbox (relays and onion layers left out here).
//! for _ in 0..4 {
//!     while let Some(out) = alice.poll_outgoing() {
//!         bob.handle_delivery(&mut rng, &out.dest.mailbox, &out.payload, 0)?;
//!     }
//!     while let Some(out) = bob.poll_outgoing() {
//!         alice.handle_delivery(&mut rng, &out.dest.mailbox, &out.payload, 0)?;
//!     }
//! }
//! let texts: Vec<String> = std::iter::from_fn(|| bob.poll_event())
//!     .filter_map(|e| match e { Event::Message { text, .. } => Some(text), _ => None })
//!     .collect();
//! assert_eq!(texts, ["hi Bob"]);
//! # Ok::<(), zentalk_client::ClientError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "local-api")]
pub mod api;
pub mod card;
mod client;
pub mod dht;
pub mod directory;
pub mod driver;
mod error;
pub mod mailbox;
pub mod net;
pub mod payload;
mod persist;

#[cfg(test)]
mod tests;

pub use card::{CARD_VERSION, ContactCard};
pub use client::{
    Client, ContactInfo, Event, GAP_TIMEOUT_MS, MAX_LOST_RANGES, MAX_PENDING_CONTROLS, MAX_REORDER,
    Outgoing, REPAIR_AFTER_FAILURES, RETRY_INITIAL_MS, RETRY_MAX_MS, SEEN_CAPACITY,
};
pub use directory::{Directory, ROUTE_LEN, RelayEntry};
pub use driver::{
    DriverConfig, DriverError, DriverEvent, DriverHandle, DriverOptions, start, start_subscribed,
    start_with,
};
pub use error::ClientError;
pub use mailbox::{MailboxAddr, MailboxKey};
pub use payload::{Body, Inner, MAX_TEXT_LEN, MessageId, PAYLOAD_VERSION};
pub use persist::{PICKLE_KEY_NAME, SNAPSHOT_NAME, SNAPSHOT_VERSION};
