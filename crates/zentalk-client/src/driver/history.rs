//! The message history in the client store: conversations keyed by peer, messages with their
//! delivery status, pages, unread counts and read marks.
//!
//! The store's conversation ids are random 16-byte values chosen by the application; the
//! driver derives them from the peer address (BLAKE2b-256 of a domain string and the address,
//! first 16 bytes) so it needs no lookup table. The store has no column for the conversation
//! sequence number, so the driver keeps it in account keys grouped by conversation and
//! timestamp (texts saved together share one timestamp, so one key per save and
//! conversation): name [`SEQ_KEY_PREFIX`] || conversation id hex || `/` || timestamp ms,
//! value a list of (message id 16 bytes || seq 8 bytes little-endian).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zentalk_crypto::Address;
use zentalk_crypto::hash::blake2b_256_parts;
use zentalk_storage::StoreError;
use zentalk_storage::client::{
    self as store, CONTENT_TYPE_TEXT, ClientStore, ConversationId, ConversationKind, NewMessage,
    PageCursor,
};

use super::{DriverError, ser_display, ser_id};
use crate::MessageId;

/// Domain of the derived conversation ids.
pub const CONVERSATION_ID_DOMAIN: &[u8] = b"zentalk-client/conversation-v1";
/// Account-key prefix under which a message's conversation sequence number is kept.
pub const SEQ_KEY_PREFIX: &str = "history/seq/";

/// Delivery status of a message in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MessageStatus {
    /// Stored locally, its packet not yet handed to a relay.
    Sending,
    /// Handed to a first hop.
    Sent,
    /// The peer's delivery receipt arrived (incoming messages are stored as delivered).
    Delivered,
    /// The peer's read receipt arrived.
    Read,
    /// No first hop took any packet of it yet (every route tried failed). The engine keeps
    /// retrying; a later success moves it on to `sent`.
    Failed,
}

impl MessageStatus {
    pub(crate) fn to_store(self) -> store::MessageStatus {
        match self {
            Self::Sending => store::MessageStatus::Sending,
            Self::Sent => store::MessageStatus::Sent,
            Self::Delivered => store::MessageStatus::Delivered,
            Self::Read => store::MessageStatus::Read,
            Self::Failed => store::MessageStatus::Failed,
        }
    }

    pub(crate) fn from_store(s: store::MessageStatus) -> Self {
        match s {
            store::MessageStatus::Sending => Self::Sending,
            store::MessageStatus::Sent => Self::Sent,
            store::MessageStatus::Delivered => Self::Delivered,
            store::MessageStatus::Read => Self::Read,
            _ => Self::Failed,
        }
    }

    /// Progress order: a status only moves forward (sending < sent < delivered < read);
    /// `failed` is left only for a later receipt.
    fn rank(self) -> u8 {
        match self {
            Self::Failed => 0,
            Self::Sending => 1,
            Self::Sent => 2,
            Self::Delivered => 3,
            Self::Read => 4,
        }
    }
}

/// Where a history page ends: pass the `cursor` of the last message of a page to get the next
/// (older) page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryCursor {
    /// Timestamp of that message (ms).
    pub timestamp_ms: i64,
    /// Its row in the store.
    pub row: i64,
}

/// One message of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryMessage {
    /// Message id.
    #[serde(serialize_with = "ser_id")]
    pub id: MessageId,
    /// The other side of the conversation.
    #[serde(serialize_with = "ser_display")]
    pub peer: Address,
    /// Sent by us.
    pub outgoing: bool,
    /// Position in the conversation (per direction; 0 if unknown).
    pub seq: u64,
    /// The text.
    pub text: String,
    /// When it was sent (outgoing) or received (incoming), ms since the Unix epoch.
    pub sent_ms: u64,
    /// Delivery status.
    pub status: MessageStatus,
    /// Read locally (incoming messages).
    pub read: bool,
    /// Cursor for the next page.
    pub cursor: HistoryCursor,
}

/// A conversation as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConversationSummary {
    /// The peer.
    #[serde(serialize_with = "ser_display")]
    pub peer: Address,
    /// Unread incoming messages.
    pub unread: u32,
    /// Time of the last message (ms since the Unix epoch).
    pub last_ms: Option<u64>,
    /// Start of the last text.
    pub last_text: Option<String>,
}

/// The conversation id of the direct conversation with `peer`.
pub fn conversation_id(peer: &Address) -> ConversationId {
    let h = blake2b_256_parts(&[CONVERSATION_ID_DOMAIN, peer.as_bytes()]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[..16]);
    ConversationId(id)
}

/// Bytes of one (message id, seq) entry of a seq group.
const SEQ_ENTRY_LEN: usize = 16 + 8;

fn seq_key(conversation: &ConversationId, timestamp_ms: i64) -> String {
    format!(
        "{SEQ_KEY_PREFIX}{}/{timestamp_ms}",
        hex::encode(conversation.0)
    )
}

fn decode_seqs(bytes: &[u8]) -> Vec<(MessageId, u64)> {
    bytes
        .chunks_exact(SEQ_ENTRY_LEN)
        .filter_map(|e| {
            let (id, seq) = e.split_at(16);
            Some((
                id.try_into().ok()?,
                u64::from_le_bytes(seq.try_into().ok()?),
            ))
        })
        .collect()
}

/// Adds `entries` to the seq group of (conversation, timestamp) in one account-key write.
async fn put_seqs(
    store: &ClientStore,
    conversation: &ConversationId,
    timestamp_ms: i64,
    entries: &[(MessageId, u64)],
) -> Result<(), StoreError> {
    let name = seq_key(conversation, timestamp_ms);
    let mut all = match store.account_key(&name).await? {
        Some(b) => decode_seqs(&b),
        None => Vec::new(),
    };
    for (id, seq) in entries {
        if !all.iter().any(|(i, _)| i == id) {
            all.push((*id, *seq));
        }
    }
    // A group larger than an account key allows keeps its first entries (later ones read
    // as seq 0); a millisecond of one conversation never holds that many texts in practice.
    all.truncate(store::MAX_SECRET_LEN / SEQ_ENTRY_LEN);
    let mut bytes = Vec::with_capacity(all.len() * SEQ_ENTRY_LEN);
    for (id, seq) in &all {
        bytes.extend_from_slice(id);
        bytes.extend_from_slice(&seq.to_le_bytes());
    }
    store.put_account_key(&name, &bytes, timestamp_ms).await
}

fn ms_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn ms_u64(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

/// A text to write to the history.
#[derive(Debug, Clone)]
pub(crate) struct NewText {
    pub(crate) id: MessageId,
    pub(crate) peer: Address,
    pub(crate) sender: Address,
    pub(crate) outgoing: bool,
    pub(crate) seq: u64,
    pub(crate) text: String,
    pub(crate) at_ms: u64,
    pub(crate) status: MessageStatus,
}

/// The history over a store.
pub(crate) struct History {
    /// Direct conversations in the store and their peers.
    known: std::collections::HashMap<ConversationId, Address>,
}

impl History {
    pub(crate) async fn load(store: &ClientStore) -> Result<Self, StoreError> {
        let known = store
            .conversations(store::MAX_LIST_ROWS)
            .await?
            .into_iter()
            .filter(|c| c.kind == ConversationKind::Direct)
            .filter_map(|c| Some((c.id, Address::from_slice(&c.peer).ok()?)))
            .collect();
        Ok(Self { known })
    }

    async fn ensure_conversation(
        &mut self,
        store: &ClientStore,
        peer: &Address,
        at_ms: u64,
    ) -> Result<ConversationId, StoreError> {
        let id = conversation_id(peer);
        if let std::collections::hash_map::Entry::Vacant(slot) = self.known.entry(id) {
            store
                .create_conversation(&store::NewConversation {
                    id,
                    kind: ConversationKind::Direct,
                    peer: peer.as_bytes().to_vec(),
                    title: peer.to_string(),
                    created_at_ms: ms_i64(at_ms),
                })
                .await?;
            slot.insert(*peer);
        }
        Ok(id)
    }

    /// Writes texts (one transaction for the messages; a redelivered id changes nothing).
    pub(crate) async fn insert(
        &mut self,
        store: &Arc<ClientStore>,
        texts: &[NewText],
    ) -> Result<(), StoreError> {
        if texts.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(texts.len());
        for t in texts {
            let conversation = self.ensure_conversation(store, &t.peer, t.at_ms).await?;
            rows.push(NewMessage {
                id: store::MessageId(t.id),
                conversation,
                sender: t.sender,
                outgoing: t.outgoing,
                timestamp_ms: ms_i64(t.at_ms),
                content_type: CONTENT_TYPE_TEXT,
                content: t.text.as_bytes().to_vec(),
                reply_to: None,
                media: None,
                status: t.status.to_store(),
            });
        }
        for chunk in rows.chunks(store::MAX_INSERT_BATCH) {
            store.insert_messages(chunk).await?;
        }
        let mut groups: std::collections::BTreeMap<(ConversationId, i64), Vec<(MessageId, u64)>> =
            std::collections::BTreeMap::new();
        for (t, row) in texts.iter().zip(&rows) {
            groups
                .entry((row.conversation, row.timestamp_ms))
                .or_default()
                .push((t.id, t.seq));
        }
        for ((conversation, ts), entries) in groups {
            put_seqs(store, &conversation, ts, &entries).await?;
        }
        Ok(())
    }

    /// Moves a message's status forward to `to` (never back; `failed` only from `sending`).
    /// Returns the message's peer if the status changed; `None` if the message is not in the
    /// history (a mailbox handover or session reset has an id but no history row).
    pub(crate) async fn advance(
        &self,
        store: &ClientStore,
        id: &MessageId,
        to: MessageStatus,
    ) -> Result<Option<Address>, StoreError> {
        let sid = store::MessageId(*id);
        let Some(m) = store.message(&sid).await? else {
            return Ok(None);
        };
        let now = MessageStatus::from_store(m.status);
        let forward = if to == MessageStatus::Failed {
            now == MessageStatus::Sending
        } else {
            to.rank() > now.rank()
        };
        if !forward {
            return Ok(None);
        }
        store.set_status(&sid, to.to_store()).await?;
        Ok(Some(
            self.known.get(&m.conversation).copied().unwrap_or(m.sender),
        ))
    }

    pub(crate) async fn conversations(
        &self,
        store: &ClientStore,
    ) -> Result<Vec<ConversationSummary>, DriverError> {
        let mut out = Vec::new();
        for c in store.conversations(store::MAX_LIST_ROWS).await? {
            if c.kind != ConversationKind::Direct {
                continue;
            }
            let Ok(peer) = Address::from_slice(&c.peer) else {
                continue;
            };
            out.push(ConversationSummary {
                peer,
                unread: u32::try_from(c.unread).unwrap_or(u32::MAX),
                last_ms: c.last_timestamp_ms.map(ms_u64),
                last_text: c.preview,
            });
        }
        Ok(out)
    }

    pub(crate) async fn unread(
        &self,
        store: &ClientStore,
        peer: &Address,
    ) -> Result<u64, StoreError> {
        let id = conversation_id(peer);
        if !self.known.contains_key(&id) {
            return Ok(0);
        }
        Ok(store
            .conversations(store::MAX_LIST_ROWS)
            .await?
            .into_iter()
            .find(|c| c.id == id)
            .map_or(0, |c| c.unread))
    }

    pub(crate) async fn page(
        &self,
        store: &ClientStore,
        peer: &Address,
        before: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<Vec<HistoryMessage>, DriverError> {
        let id = conversation_id(peer);
        let want = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut out = Vec::new();
        if !self.known.contains_key(&id) {
            return Ok(out);
        }
        let mut cursor = before.map(|c| PageCursor {
            timestamp_ms: c.timestamp_ms,
            row: c.row,
        });
        let mut groups: std::collections::HashMap<i64, Vec<(MessageId, u64)>> =
            std::collections::HashMap::new();
        while out.len() < want {
            let page = store.conversation_page(&id, cursor).await?;
            for m in page.messages {
                if out.len() >= want {
                    break;
                }
                let group = match groups.entry(m.timestamp_ms) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => e.insert(
                        store
                            .account_key(&seq_key(&id, m.timestamp_ms))
                            .await?
                            .map(|b| decode_seqs(&b))
                            .unwrap_or_default(),
                    ),
                };
                let seq = group
                    .iter()
                    .find(|(i, _)| *i == m.id.0)
                    .map_or(0, |(_, s)| *s);
                out.push(HistoryMessage {
                    id: m.id.0,
                    peer: *peer,
                    outgoing: m.outgoing,
                    seq,
                    text: String::from_utf8_lossy(&m.content).into_owned(),
                    sent_ms: ms_u64(m.timestamp_ms),
                    status: MessageStatus::from_store(m.status),
                    read: m.read,
                    cursor: HistoryCursor {
                        timestamp_ms: m.timestamp_ms,
                        row: m.row,
                    },
                });
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(out)
    }

    /// Ids of the unread incoming messages of the conversation with `peer` (newest first, at
    /// most `max`).
    pub(crate) async fn unread_ids(
        &self,
        store: &ClientStore,
        peer: &Address,
        max: u64,
    ) -> Result<Vec<MessageId>, StoreError> {
        let id = conversation_id(peer);
        let mut out = Vec::new();
        if max == 0 || !self.known.contains_key(&id) {
            return Ok(out);
        }
        let mut cursor = None;
        loop {
            let page = store.conversation_page(&id, cursor).await?;
            for m in &page.messages {
                if !m.outgoing && !m.read {
                    out.push(m.id.0);
                    if u64::try_from(out.len()).unwrap_or(u64::MAX) >= max {
                        return Ok(out);
                    }
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }

    pub(crate) async fn mark_read(
        &self,
        store: &ClientStore,
        peer: &Address,
    ) -> Result<u64, StoreError> {
        let id = conversation_id(peer);
        if !self.known.contains_key(&id) {
            return Ok(0);
        }
        store.mark_read(&id, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zentalk_storage::client::KdfParams;

    fn text(id: u8, peer: Address, outgoing: bool, at_ms: u64) -> NewText {
        NewText {
            id: [id; 16],
            peer,
            sender: if outgoing {
                Address::from_bytes([0xee; 32])
            } else {
                peer
            },
            outgoing,
            seq: u64::from(id),
            text: format!("text {id}"),
            at_ms,
            status: if outgoing {
                MessageStatus::Sending
            } else {
                MessageStatus::Delivered
            },
        }
    }

    #[tokio::test]
    async fn statuses_only_move_forward_and_pages_carry_seq_and_peer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            ClientStore::create(dir.path().join("h.db"), b"pw", KdfParams::TEST)
                .await
                .unwrap(),
        );
        let mut h = History::load(&store).await.unwrap();
        let peer = Address::from_bytes([7; 32]);
        let other = Address::from_bytes([8; 32]);
        assert_ne!(conversation_id(&peer), conversation_id(&other));
        assert_eq!(conversation_id(&peer), conversation_id(&peer));
        h.insert(
            &store,
            &[
                text(1, peer, true, 10),
                text(2, peer, false, 20),
                text(3, peer, true, 30),
            ],
        )
        .await
        .unwrap();
        // A redelivered id changes nothing.
        h.insert(&store, &[text(2, peer, false, 40)]).await.unwrap();

        // Forward only: sent, then read; a late "sent" or "delivered" does not undo read.
        let id = [1u8; 16];
        assert_eq!(
            h.advance(&store, &id, MessageStatus::Sent).await.unwrap(),
            Some(peer)
        );
        assert_eq!(
            h.advance(&store, &id, MessageStatus::Read).await.unwrap(),
            Some(peer)
        );
        for late in [
            MessageStatus::Sent,
            MessageStatus::Delivered,
            MessageStatus::Failed,
        ] {
            assert_eq!(h.advance(&store, &id, late).await.unwrap(), None);
        }
        // Failed only from sending; a later receipt still counts.
        let id3 = [3u8; 16];
        assert_eq!(
            h.advance(&store, &id3, MessageStatus::Failed)
                .await
                .unwrap(),
            Some(peer)
        );
        assert_eq!(
            h.advance(&store, &id3, MessageStatus::Delivered)
                .await
                .unwrap(),
            Some(peer)
        );
        // Unknown ids (handovers, resets) are not in the history.
        assert_eq!(
            h.advance(&store, &[9; 16], MessageStatus::Sent)
                .await
                .unwrap(),
            None
        );

        let page = h.page(&store, &peer, None, 10).await.unwrap();
        let got: Vec<(u64, bool, MessageStatus)> =
            page.iter().map(|m| (m.seq, m.outgoing, m.status)).collect();
        assert_eq!(
            got,
            [
                (3, true, MessageStatus::Delivered),
                (2, false, MessageStatus::Delivered),
                (1, true, MessageStatus::Read),
            ]
        );
        assert!(page.iter().all(|m| m.peer == peer));
        assert_eq!(h.unread(&store, &peer).await.unwrap(), 1);
        assert_eq!(h.unread_ids(&store, &peer, 5).await.unwrap(), [[2u8; 16]]);
        assert_eq!(h.mark_read(&store, &peer).await.unwrap(), 1);
        assert_eq!(h.unread(&store, &peer).await.unwrap(), 0);
        // Texts saved apart in the same millisecond share a seq group: both keep their seq.
        h.insert(&store, &[text(4, peer, false, 50), text(5, peer, true, 50)])
            .await
            .unwrap();
        h.insert(&store, &[text(6, peer, false, 50)]).await.unwrap();
        let page = h.page(&store, &peer, None, 3).await.unwrap();
        let mut seqs: Vec<u64> = page.iter().map(|m| m.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, [4, 5, 6]);
        // A conversation that does not exist is empty, not an error.
        assert!(h.page(&store, &other, None, 10).await.unwrap().is_empty());
        assert_eq!(h.mark_read(&store, &other).await.unwrap(), 0);
        // The conversations survive a reload with their peers.
        let h2 = History::load(&store).await.unwrap();
        let convs = h2.conversations(&store).await.unwrap();
        assert_eq!(convs.len(), 1);
        assert_eq!(convs[0].peer, peer);
        assert_eq!(convs[0].last_ms, Some(50));
        assert_eq!(convs[0].unread, 2);
        Arc::try_unwrap(store).unwrap().close().await;
    }
}
