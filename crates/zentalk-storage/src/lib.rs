//! # zentalk-storage
//!
//! Layer 2 of ZenTalk: everything ZenTalk keeps on disk, on [sqlx].
//!
//! - [`client::ClientStore`]: the encrypted client store, one SQLite file per account. Every
//!   sensitive column (message content, names, bios, previews, keys, pickles, media keys) is
//!   sealed with AES-256-GCM bound to its table, column and row; the key comes from
//!   Argon2id(password, salt); indexes cover only ids, timestamps, flags and keyed blind indexes.
//! - [`mailbox`]: the relay's offline mailbox behind one trait, [`mailbox::MailboxBackend`], with
//!   a SQLite backend (default, embedded) and a PostgreSQL backend, chosen by URL. A put returns
//!   only once it is durable; concurrent puts share one transaction (group commit). The same
//!   store keeps store-nothing relays' hash-only transit receipts.
//!
//! This crate does I/O and reads the clock only where a caller does not pass `now` in; all
//! randomness comes from the operating system (nonces through a ChaCha20 generator seeded
//! from it).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use zentalk_storage::client::{ClientStore, ConversationId, ConversationKind, KdfParams,
//!     MessageId, MessageStatus, NewConversation, NewMessage};
//! use zentalk_crypto::Address;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("alice.zentalk");
//! // Real stores use KdfParams::PRODUCTION (64 MiB, t = 3); TEST keeps this example fast.
//! let store = ClientStore::create(&path, b"correct horse", KdfParams::TEST).await.unwrap();
//! let conv = ConversationId::random();
//! store.create_conversation(&NewConversation {
//!     id: conv,
//!     kind: ConversationKind::Direct,
//!     peer: vec![7; 32],
//!     title: "Bob".into(),
//!     created_at_ms: 1,
//! }).await.unwrap();
//! store.insert_message(&NewMessage {
//!     id: MessageId::random(),
//!     conversation: conv,
//!     sender: Address::from_bytes([7; 32]),
//!     outgoing: false,
//!     timestamp_ms: 1_700_000_000_000,
//!     content_type: 0,
//!     content: b"hello Alice".to_vec(),
//!     reply_to: None,
//!     media: None,
//!     status: MessageStatus::Delivered,
//! }).await.unwrap();
//! store.close().await;
//!
//! let store = ClientStore::open(&path, b"correct horse").await.unwrap();
//! let page = store.conversation_page(&conv, None).await.unwrap();
//! assert_eq!(page.messages[0].content, b"hello Alice");
//! assert_eq!(store.conversations(10).await.unwrap()[0].unread, 1);
//! store.close().await;
//! # });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
mod error;
pub mod mailbox;

pub use error::{MailboxError, QuotaKind, QuotaScope, StoreError};

/// Fills `buf` from the operating system's RNG. L2 code: the one place this crate reaches for
/// OS randomness (salts, data keys, ids, the seed of the nonce generator).
#[allow(
    clippy::disallowed_types,
    reason = "L2 storage driver: OS randomness for salts, keys and nonce seeds"
)]
pub(crate) fn os_fill(buf: &mut [u8]) {
    use rand_core::RngCore;
    rand_core::OsRng.fill_bytes(buf);
}

/// Milliseconds since the Unix epoch from the system clock (for bookkeeping timestamps that
/// carry no protocol meaning, such as `store_meta.created_at`).
#[allow(
    clippy::disallowed_methods,
    reason = "L2 storage driver: wall-clock bookkeeping timestamp"
)]
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
