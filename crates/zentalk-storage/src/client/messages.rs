//! Messages: insert, conversation pages, read state, stars, edits, deletions, reactions,
//! disappearing timers and search.

use std::collections::HashMap;

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};
use zentalk_crypto::Address;

use super::{ClientStore, ConversationId, MediaId, MessageId};
use crate::StoreError;

/// Messages per conversation page.
pub const PAGE_SIZE: usize = 50;
/// Largest message content accepted (bytes).
pub const MAX_CONTENT_LEN: usize = 256 * 1024;
/// Most messages one [`ClientStore::insert_messages`] call accepts.
pub const MAX_INSERT_BATCH: usize = 10_000;
/// Rows decrypted per round trip by [`ClientStore::search_conversation`].
pub const SEARCH_BATCH_ROWS: usize = 256;
/// Most results one search returns.
pub const MAX_SEARCH_RESULTS: usize = 500;
/// Characters of a text message kept (encrypted) as the conversation preview.
pub const PREVIEW_MAX_CHARS: usize = 80;
/// `content_type` of UTF-8 text messages (the only type that feeds previews and search).
pub const CONTENT_TYPE_TEXT: u8 = 0;

/// Rows per multi-row INSERT statement (12 bound values per row, well under SQLite's limit).
const ROWS_PER_STATEMENT: usize = 128;
const HEADER_LEN_NO_REPLY: usize = 16 + 32 + 1;
const HEADER_LEN_REPLY: usize = HEADER_LEN_NO_REPLY + 16;
const MSG_TAG_DOMAIN: &str = "messages.msg_tag";

/// Delivery status of a message (the original's five states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageStatus {
    /// Queued locally, not yet handed to a relay.
    Sending,
    /// Accepted by the first relay.
    Sent,
    /// Delivered to the recipient's device.
    Delivered,
    /// Read by the recipient.
    Read,
    /// Gave up.
    Failed,
}

impl MessageStatus {
    fn code(self) -> i64 {
        match self {
            Self::Sending => 0,
            Self::Sent => 1,
            Self::Delivered => 2,
            Self::Read => 3,
            Self::Failed => 4,
        }
    }

    fn from_code(c: i64) -> Result<Self, StoreError> {
        Ok(match c {
            0 => Self::Sending,
            1 => Self::Sent,
            2 => Self::Delivered,
            3 => Self::Read,
            4 => Self::Failed,
            _ => {
                return Err(StoreError::Malformed {
                    table: "messages",
                    column: "status",
                    reason: "unknown status code",
                });
            }
        })
    }
}

/// A message to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Globally unique message id.
    pub id: MessageId,
    /// Conversation it belongs to (must exist).
    pub conversation: ConversationId,
    /// Sender's address.
    pub sender: Address,
    /// True for messages this account sent.
    pub outgoing: bool,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Application content type ([`CONTENT_TYPE_TEXT`] for text).
    pub content_type: u8,
    /// The content (encrypted before it reaches the file).
    pub content: Vec<u8>,
    /// Message this one replies to.
    pub reply_to: Option<MessageId>,
    /// Attached media object.
    pub media: Option<MediaId>,
    /// Initial status.
    pub status: MessageStatus,
}

/// A stored message, decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Local row id (increasing in insertion order).
    pub row: i64,
    /// Message id.
    pub id: MessageId,
    /// Conversation.
    pub conversation: ConversationId,
    /// Sender.
    pub sender: Address,
    /// Sent by this account.
    pub outgoing: bool,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Content type.
    pub content_type: u8,
    /// Content (empty once deleted).
    pub content: Vec<u8>,
    /// Replied-to message.
    pub reply_to: Option<MessageId>,
    /// Media reference.
    pub media: Option<MediaId>,
    /// Delivery status.
    pub status: MessageStatus,
    /// Read locally.
    pub read: bool,
    /// Starred.
    pub starred: bool,
    /// When it disappears (ms), if a timer applies.
    pub expires_at_ms: Option<i64>,
    /// Last edit time (ms).
    pub edited_at_ms: Option<i64>,
    /// Deletion time (ms); the content is then empty.
    pub deleted_at_ms: Option<i64>,
}

/// Position in a conversation: pages continue strictly before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    /// Timestamp of the oldest message of the previous page.
    pub timestamp_ms: i64,
    /// Its row id (breaks timestamp ties).
    pub row: i64,
}

/// One page of a conversation, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Up to [`PAGE_SIZE`] messages, newest first.
    pub messages: Vec<StoredMessage>,
    /// Cursor for the next (older) page; `None` at the beginning of the conversation.
    pub next: Option<PageCursor>,
}

/// A reaction to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaction {
    /// Who reacted.
    pub reactor: Address,
    /// The reaction (an emoji or short text).
    pub reaction: String,
    /// When (ms).
    pub reacted_at_ms: i64,
}

type ReactionRow = (Vec<u8>, Vec<u8>, Vec<u8>, i64);

const MSG_COLUMNS: &str = "id, conversation_id, timestamp, status, is_outgoing, is_read, is_starred, \
     content_type, expires_at, edited_at, deleted_at, header_enc, content_enc, media_enc";

fn encode_header(m: &NewMessage) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN_REPLY);
    h.extend_from_slice(&m.id.0);
    h.extend_from_slice(m.sender.as_bytes());
    match m.reply_to {
        Some(r) => {
            h.push(1);
            h.extend_from_slice(&r.0);
        }
        None => h.push(0),
    }
    h
}

fn malformed(column: &'static str, reason: &'static str) -> StoreError {
    StoreError::Malformed {
        table: "messages",
        column,
        reason,
    }
}

fn decode_header(h: &[u8]) -> Result<(MessageId, Address, Option<MessageId>), StoreError> {
    let bad = || malformed("header_enc", "bad header layout");
    if h.len() != HEADER_LEN_NO_REPLY && h.len() != HEADER_LEN_REPLY {
        return Err(bad());
    }
    let id = MessageId(h[..16].try_into().map_err(|_| bad())?);
    let sender = Address::from_slice(&h[16..48]).map_err(|_| bad())?;
    let reply = match (h[48], h.len()) {
        (0, HEADER_LEN_NO_REPLY) => None,
        (1, HEADER_LEN_REPLY) => Some(MessageId(h[49..65].try_into().map_err(|_| bad())?)),
        _ => return Err(bad()),
    };
    Ok((id, sender, reply))
}

pub(crate) fn preview_of(content_type: u8, content: &[u8]) -> String {
    if content_type != CONTENT_TYPE_TEXT {
        return String::new();
    }
    String::from_utf8_lossy(content)
        .chars()
        .take(PREVIEW_MAX_CHARS)
        .collect()
}

fn opt_bool(v: i64) -> bool {
    v != 0
}

impl ClientStore {
    fn msg_tag(&self, id: &MessageId) -> [u8; 16] {
        self.keys.blind_index(MSG_TAG_DOMAIN, &id.0)
    }

    fn decode_message(&self, row: &SqliteRow) -> Result<StoredMessage, StoreError> {
        let rid: i64 = row.try_get(0)?;
        let rk = rid.to_be_bytes();
        let conv: Vec<u8> = row.try_get(1)?;
        let header_enc: Vec<u8> = row.try_get(11)?;
        let content_enc: Vec<u8> = row.try_get(12)?;
        let media_enc: Option<Vec<u8>> = row.try_get(13)?;
        let header = self.keys.open("messages", "header_enc", &rk, &header_enc)?;
        let (id, sender, reply_to) = decode_header(&header)?;
        let content = self
            .keys
            .open("messages", "content_enc", &rk, &content_enc)?;
        let media = match media_enc {
            Some(m) => Some(MediaId::from_column(
                "messages",
                "media_enc",
                &self.keys.open("messages", "media_enc", &rk, &m)?,
            )?),
            None => None,
        };
        let ct: i64 = row.try_get(7)?;
        Ok(StoredMessage {
            row: rid,
            id,
            conversation: ConversationId::from_column("messages", "conversation_id", &conv)?,
            sender,
            outgoing: opt_bool(row.try_get(4)?),
            timestamp_ms: row.try_get(2)?,
            content_type: u8::try_from(ct)
                .map_err(|_| malformed("content_type", "out of range"))?,
            content,
            reply_to,
            media,
            status: MessageStatus::from_code(row.try_get(3)?)?,
            read: opt_bool(row.try_get(5)?),
            starred: opt_bool(row.try_get(6)?),
            expires_at_ms: row.try_get(8)?,
            edited_at_ms: row.try_get(9)?,
            deleted_at_ms: row.try_get(10)?,
        })
    }

    /// Inserts one message. Returns its row id, or `None` if a message with this id is
    /// already stored (a redelivery: nothing changes).
    pub async fn insert_message(&self, msg: &NewMessage) -> Result<Option<i64>, StoreError> {
        let mut v = self.insert_messages(std::slice::from_ref(msg)).await?;
        Ok(v.pop().flatten())
    }

    /// Inserts a batch of messages in one transaction (all or nothing). For each input, the
    /// new row id, or `None` if that message id was already stored. Updates each touched
    /// conversation's last timestamp, encrypted preview and unread count.
    pub async fn insert_messages(
        &self,
        msgs: &[NewMessage],
    ) -> Result<Vec<Option<i64>>, StoreError> {
        if msgs.len() > MAX_INSERT_BATCH {
            return Err(StoreError::TooLarge {
                what: "insert batch",
                max: MAX_INSERT_BATCH,
                found: msgs.len(),
            });
        }
        for m in msgs {
            if m.content.len() > MAX_CONTENT_LEN {
                return Err(StoreError::TooLarge {
                    what: "message content",
                    max: MAX_CONTENT_LEN,
                    found: m.content.len(),
                });
            }
        }
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;

        // Conversations: existence, timer, current last timestamp.
        let mut convs: HashMap<ConversationId, (i64, Option<i64>)> = HashMap::new();
        for m in msgs {
            if convs.contains_key(&m.conversation) {
                continue;
            }
            let row = sqlx::query(
                "SELECT disappearing_secs, last_timestamp FROM conversations WHERE id = ?",
            )
            .bind(&m.conversation.0[..])
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::Missing {
                what: "conversation",
            })?;
            convs.insert(m.conversation, (row.try_get(0)?, row.try_get(1)?));
        }

        let first_row = self.alloc_rows(msgs.len());
        struct Prepared {
            row: i64,
            tag: [u8; 16],
            expires: Option<i64>,
            header: Vec<u8>,
            content: Vec<u8>,
            media: Option<Vec<u8>>,
        }
        let mut prepared = Vec::with_capacity(msgs.len());
        for (i, m) in msgs.iter().enumerate() {
            let row = first_row + i64::try_from(i).unwrap_or(0);
            let rk = row.to_be_bytes();
            let timer = convs.get(&m.conversation).map(|c| c.0).unwrap_or(0);
            prepared.push(Prepared {
                row,
                tag: self.msg_tag(&m.id),
                expires: (timer > 0)
                    .then(|| m.timestamp_ms.saturating_add(timer.saturating_mul(1000))),
                header: self
                    .keys
                    .seal("messages", "header_enc", &rk, &encode_header(m))?,
                content: self.keys.seal("messages", "content_enc", &rk, &m.content)?,
                media: match &m.media {
                    Some(id) => Some(self.keys.seal("messages", "media_enc", &rk, &id.0)?),
                    None => None,
                },
            });
        }

        let mut inserted = std::collections::HashSet::new();
        for (chunk_m, chunk_p) in msgs
            .chunks(ROWS_PER_STATEMENT)
            .zip(prepared.chunks(ROWS_PER_STATEMENT))
        {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO messages (id, conversation_id, msg_tag, timestamp, status, is_outgoing, \
                 content_type, expires_at, header_enc, content_enc, media_enc) ",
            );
            qb.push_values(chunk_m.iter().zip(chunk_p), |mut b, (m, p)| {
                b.push_bind(p.row)
                    .push_bind(&m.conversation.0[..])
                    .push_bind(&p.tag[..])
                    .push_bind(m.timestamp_ms)
                    .push_bind(m.status.code())
                    .push_bind(i64::from(m.outgoing))
                    .push_bind(i64::from(m.content_type))
                    .push_bind(p.expires)
                    .push_bind(&p.header)
                    .push_bind(&p.content)
                    .push_bind(p.media.as_deref());
            });
            qb.push(" ON CONFLICT (msg_tag) DO NOTHING RETURNING id");
            let rows: Vec<i64> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
            inserted.extend(rows);
        }

        // Conversation summaries.
        let mut updates: HashMap<ConversationId, (i64, Option<(i64, usize)>)> = HashMap::new();
        for (i, (m, p)) in msgs.iter().zip(&prepared).enumerate() {
            if !inserted.contains(&p.row) {
                continue;
            }
            let e = updates.entry(m.conversation).or_insert((0, None));
            if !m.outgoing {
                e.0 += 1;
            }
            let newer = match e.1 {
                Some((ts, _)) => m.timestamp_ms >= ts,
                None => true,
            };
            if newer {
                e.1 = Some((m.timestamp_ms, i));
            }
        }
        for (conv, (unread_add, newest)) in updates {
            let last = convs.get(&conv).and_then(|c| c.1);
            match newest {
                Some((ts, i)) if last.is_none_or(|l| ts >= l) => {
                    let m = &msgs[i];
                    let preview = self.keys.seal(
                        "conversations",
                        "preview_enc",
                        &conv.0,
                        preview_of(m.content_type, &m.content).as_bytes(),
                    )?;
                    sqlx::query(
                        "UPDATE conversations SET last_timestamp = ?, preview_enc = ?, \
                         unread_count = unread_count + ? WHERE id = ?",
                    )
                    .bind(ts)
                    .bind(preview)
                    .bind(unread_add)
                    .bind(&conv.0[..])
                    .execute(&mut *tx)
                    .await?;
                }
                _ => {
                    sqlx::query(
                        "UPDATE conversations SET unread_count = unread_count + ? WHERE id = ?",
                    )
                    .bind(unread_add)
                    .bind(&conv.0[..])
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(prepared
            .iter()
            .map(|p| inserted.contains(&p.row).then_some(p.row))
            .collect())
    }

    /// The [`PAGE_SIZE`] newest messages of a conversation strictly before `before`
    /// (`None`: the newest page), newest first, decrypted.
    pub async fn conversation_page(
        &self,
        conversation: &ConversationId,
        before: Option<PageCursor>,
    ) -> Result<Page, StoreError> {
        let c = before.unwrap_or(PageCursor {
            timestamp_ms: i64::MAX,
            row: i64::MAX,
        });
        let rows = self.page_rows(conversation, c, PAGE_SIZE, false).await?;
        let mut messages = Vec::with_capacity(rows.len());
        for r in &rows {
            messages.push(self.decode_message(r)?);
        }
        let next = if messages.len() == PAGE_SIZE {
            messages.last().map(|m| PageCursor {
                timestamp_ms: m.timestamp_ms,
                row: m.row,
            })
        } else {
            None
        };
        Ok(Page { messages, next })
    }

    async fn page_rows(
        &self,
        conversation: &ConversationId,
        c: PageCursor,
        limit: usize,
        starred_only: bool,
    ) -> Result<Vec<SqliteRow>, StoreError> {
        let sql = format!(
            "SELECT {MSG_COLUMNS} FROM messages WHERE conversation_id = ? {} \
             AND (timestamp < ? OR (timestamp = ? AND id < ?)) ORDER BY timestamp DESC, id DESC LIMIT ?",
            if starred_only {
                "AND is_starred = 1"
            } else {
                ""
            }
        );
        Ok(sqlx::query(&sql)
            .bind(&conversation.0[..])
            .bind(c.timestamp_ms)
            .bind(c.timestamp_ms)
            .bind(c.row)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?)
    }

    /// Looks a message up by id.
    pub async fn message(&self, id: &MessageId) -> Result<Option<StoredMessage>, StoreError> {
        let sql = format!("SELECT {MSG_COLUMNS} FROM messages WHERE msg_tag = ?");
        let row = sqlx::query(&sql)
            .bind(&self.msg_tag(id)[..])
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| self.decode_message(&r)).transpose()
    }

    async fn row_of(&self, id: &MessageId) -> Result<(i64, Vec<u8>), StoreError> {
        let row = sqlx::query("SELECT id, conversation_id FROM messages WHERE msg_tag = ?")
            .bind(&self.msg_tag(id)[..])
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::Missing { what: "message" })?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Sets a message's delivery status.
    pub async fn set_status(
        &self,
        id: &MessageId,
        status: MessageStatus,
    ) -> Result<(), StoreError> {
        let r = sqlx::query("UPDATE messages SET status = ? WHERE msg_tag = ?")
            .bind(status.code())
            .bind(&self.msg_tag(id)[..])
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Missing { what: "message" });
        }
        Ok(())
    }

    /// Marks incoming messages of a conversation up to `up_to_ms` (inclusive; `None`: all) as
    /// read and lowers the unread count accordingly. Returns how many became read.
    pub async fn mark_read(
        &self,
        conversation: &ConversationId,
        up_to_ms: Option<i64>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE messages SET is_read = 1 WHERE conversation_id = ? AND timestamp <= ? \
             AND is_read = 0 AND is_outgoing = 0",
        )
        .bind(&conversation.0[..])
        .bind(up_to_ms.unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        let n = r.rows_affected();
        let u = sqlx::query(
            "UPDATE conversations SET unread_count = max(unread_count - ?, 0) WHERE id = ?",
        )
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .bind(&conversation.0[..])
        .execute(&mut *tx)
        .await?;
        if u.rows_affected() == 0 {
            return Err(StoreError::Missing {
                what: "conversation",
            });
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Stars or unstars a message.
    pub async fn set_starred(&self, id: &MessageId, starred: bool) -> Result<(), StoreError> {
        let r = sqlx::query("UPDATE messages SET is_starred = ? WHERE msg_tag = ?")
            .bind(i64::from(starred))
            .bind(&self.msg_tag(id)[..])
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Missing { what: "message" });
        }
        Ok(())
    }

    /// Starred messages of a conversation, newest first, paged like [`Self::conversation_page`].
    pub async fn starred_page(
        &self,
        conversation: &ConversationId,
        before: Option<PageCursor>,
    ) -> Result<Page, StoreError> {
        let c = before.unwrap_or(PageCursor {
            timestamp_ms: i64::MAX,
            row: i64::MAX,
        });
        let rows = self.page_rows(conversation, c, PAGE_SIZE, true).await?;
        let mut messages = Vec::with_capacity(rows.len());
        for r in &rows {
            messages.push(self.decode_message(r)?);
        }
        let next = (messages.len() == PAGE_SIZE)
            .then(|| {
                messages.last().map(|m| PageCursor {
                    timestamp_ms: m.timestamp_ms,
                    row: m.row,
                })
            })
            .flatten();
        Ok(Page { messages, next })
    }

    /// Replaces a message's content, keeping the previous content as an (encrypted) edit.
    pub async fn edit_message(
        &self,
        id: &MessageId,
        new_content: &[u8],
        at_ms: i64,
    ) -> Result<(), StoreError> {
        if new_content.len() > MAX_CONTENT_LEN {
            return Err(StoreError::TooLarge {
                what: "message content",
                max: MAX_CONTENT_LEN,
                found: new_content.len(),
            });
        }
        let (row, _) = self.row_of(id).await?;
        let rk = row.to_be_bytes();
        let mut tx = self.pool.begin().await?;
        let old: (Vec<u8>, Option<i64>) =
            sqlx::query_as("SELECT content_enc, deleted_at FROM messages WHERE id = ?")
                .bind(row)
                .fetch_one(&mut *tx)
                .await?;
        if old.1.is_some() {
            return Err(StoreError::Missing {
                what: "message (deleted)",
            });
        }
        let old_content = self.keys.open("messages", "content_enc", &rk, &old.0)?;
        let edit_no: i64 = sqlx::query_scalar(
            "SELECT coalesce(max(edit_no), 0) + 1 FROM message_edits WHERE message_row = ?",
        )
        .bind(row)
        .fetch_one(&mut *tx)
        .await?;
        let mut ek = rk.to_vec();
        ek.extend_from_slice(&edit_no.to_be_bytes());
        sqlx::query("INSERT INTO message_edits (message_row, edit_no, edited_at, content_enc) VALUES (?, ?, ?, ?)")
            .bind(row)
            .bind(edit_no)
            .bind(at_ms)
            .bind(self.keys.seal("message_edits", "content_enc", &ek, &old_content)?)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE messages SET content_enc = ?, edited_at = ? WHERE id = ?")
            .bind(
                self.keys
                    .seal("messages", "content_enc", &rk, new_content)?,
            )
            .bind(at_ms)
            .bind(row)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Earlier versions of an edited message, oldest first.
    pub async fn edit_history(&self, id: &MessageId) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        let (row, _) = self.row_of(id).await?;
        let rows: Vec<(i64, i64, Vec<u8>)> =
            sqlx::query_as("SELECT edit_no, edited_at, content_enc FROM message_edits WHERE message_row = ? ORDER BY edit_no")
                .bind(row)
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (no, at, enc) in rows {
            let mut ek = row.to_be_bytes().to_vec();
            ek.extend_from_slice(&no.to_be_bytes());
            out.push((
                at,
                self.keys.open("message_edits", "content_enc", &ek, &enc)?,
            ));
        }
        Ok(out)
    }

    /// Deletes a message's content ("deleted for everyone"): the row stays as a tombstone
    /// with empty content; edits and reactions are removed.
    pub async fn delete_message(&self, id: &MessageId, at_ms: i64) -> Result<(), StoreError> {
        let (row, _) = self.row_of(id).await?;
        let rk = row.to_be_bytes();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM message_edits WHERE message_row = ?")
            .bind(row)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM reactions WHERE message_row = ?")
            .bind(row)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE messages SET content_enc = ?, media_enc = NULL, deleted_at = ?, is_starred = 0 WHERE id = ?")
            .bind(self.keys.seal("messages", "content_enc", &rk, &[])?)
            .bind(at_ms)
            .bind(row)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds or replaces `reactor`'s reaction to a message.
    pub async fn set_reaction(
        &self,
        id: &MessageId,
        reactor: &Address,
        reaction: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        if reaction.len() > super::MAX_TEXT_LEN {
            return Err(StoreError::TooLarge {
                what: "reaction",
                max: super::MAX_TEXT_LEN,
                found: reaction.len(),
            });
        }
        let (row, _) = self.row_of(id).await?;
        let tag = self
            .keys
            .blind_index("reactions.reactor_tag", reactor.as_bytes());
        let mut rk = row.to_be_bytes().to_vec();
        rk.extend_from_slice(&tag);
        sqlx::query(
            "INSERT INTO reactions (message_row, reactor_tag, reactor_enc, reaction_enc, reacted_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (message_row, reactor_tag) DO UPDATE SET reaction_enc = excluded.reaction_enc, reacted_at = excluded.reacted_at",
        )
        .bind(row)
        .bind(&tag[..])
        .bind(self.keys.seal("reactions", "reactor_enc", &rk, reactor.as_bytes())?)
        .bind(self.keys.seal("reactions", "reaction_enc", &rk, reaction.as_bytes())?)
        .bind(at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes `reactor`'s reaction. Returns whether there was one.
    pub async fn remove_reaction(
        &self,
        id: &MessageId,
        reactor: &Address,
    ) -> Result<bool, StoreError> {
        let (row, _) = self.row_of(id).await?;
        let tag = self
            .keys
            .blind_index("reactions.reactor_tag", reactor.as_bytes());
        let r = sqlx::query("DELETE FROM reactions WHERE message_row = ? AND reactor_tag = ?")
            .bind(row)
            .bind(&tag[..])
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Reactions to a message, oldest first.
    pub async fn reactions(&self, id: &MessageId) -> Result<Vec<Reaction>, StoreError> {
        let (row, _) = self.row_of(id).await?;
        let rows: Vec<ReactionRow> = sqlx::query_as(
            "SELECT reactor_tag, reactor_enc, reaction_enc, reacted_at FROM reactions WHERE message_row = ? ORDER BY reacted_at",
        )
        .bind(row)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (tag, who, what, at) in rows {
            let mut rk = row.to_be_bytes().to_vec();
            rk.extend_from_slice(&tag);
            let who = self.keys.open("reactions", "reactor_enc", &rk, &who)?;
            out.push(Reaction {
                reactor: Address::from_slice(&who).map_err(|_| StoreError::Malformed {
                    table: "reactions",
                    column: "reactor_enc",
                    reason: "address is not 32 bytes",
                })?,
                reaction: self
                    .keys
                    .open_string("reactions", "reaction_enc", &rk, &what)?,
                reacted_at_ms: at,
            });
        }
        Ok(out)
    }

    /// Deletes messages whose disappearing timer ran out at `now_ms`. Returns how many.
    pub async fn purge_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Unread expired incoming messages stop counting as unread.
        let unread: Vec<(Vec<u8>, i64)> = sqlx::query_as(
            "SELECT conversation_id, count(*) FROM messages WHERE expires_at IS NOT NULL AND expires_at <= ? \
             AND is_read = 0 AND is_outgoing = 0 GROUP BY conversation_id",
        )
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
        for (conv, n) in unread {
            sqlx::query(
                "UPDATE conversations SET unread_count = max(unread_count - ?, 0) WHERE id = ?",
            )
            .bind(n)
            .bind(conv)
            .execute(&mut *tx)
            .await?;
        }
        let r =
            sqlx::query("DELETE FROM messages WHERE expires_at IS NOT NULL AND expires_at <= ?")
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    /// Finds text messages of a conversation whose content contains `needle` (case-insensitive),
    /// newest first, at most `limit` (≤ [`MAX_SEARCH_RESULTS`]).
    ///
    /// Content is encrypted, so there is no index to search: rows are read and decrypted in
    /// batches of [`SEARCH_BATCH_ROWS`], newest first, until `limit` matches are found or the
    /// conversation is exhausted. Cost is linear in the conversation's length (about one AEAD
    /// open per message), memory is bounded by one batch.
    pub async fn search_conversation(
        &self,
        conversation: &ConversationId,
        needle: &str,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        if limit > MAX_SEARCH_RESULTS {
            return Err(StoreError::TooLarge {
                what: "search limit",
                max: MAX_SEARCH_RESULTS,
                found: limit,
            });
        }
        let needle = needle.to_lowercase();
        let mut out = Vec::new();
        let mut cursor = PageCursor {
            timestamp_ms: i64::MAX,
            row: i64::MAX,
        };
        while out.len() < limit {
            let rows = self
                .page_rows(conversation, cursor, SEARCH_BATCH_ROWS, false)
                .await?;
            let n = rows.len();
            for r in &rows {
                let m = self.decode_message(r)?;
                cursor = PageCursor {
                    timestamp_ms: m.timestamp_ms,
                    row: m.row,
                };
                if out.len() < limit
                    && m.content_type == CONTENT_TYPE_TEXT
                    && m.deleted_at_ms.is_none()
                    && String::from_utf8_lossy(&m.content)
                        .to_lowercase()
                        .contains(&needle)
                {
                    out.push(m);
                }
            }
            if n < SEARCH_BATCH_ROWS {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_rejects_bad_layouts() {
        let m = NewMessage {
            id: MessageId([1; 16]),
            conversation: ConversationId([2; 16]),
            sender: Address::from_bytes([3; 32]),
            outgoing: false,
            timestamp_ms: 0,
            content_type: 0,
            content: vec![],
            reply_to: Some(MessageId([4; 16])),
            media: None,
            status: MessageStatus::Sent,
        };
        let h = encode_header(&m);
        assert_eq!(decode_header(&h).unwrap(), (m.id, m.sender, m.reply_to));
        let mut bad = h.clone();
        bad[48] = 0;
        assert!(decode_header(&bad).is_err());
        assert!(decode_header(&h[..40]).is_err());
        assert!(decode_header(&[]).is_err());
    }

    #[test]
    fn preview_truncates_and_skips_non_text() {
        let long = "é".repeat(200);
        assert_eq!(
            preview_of(CONTENT_TYPE_TEXT, long.as_bytes())
                .chars()
                .count(),
            PREVIEW_MAX_CHARS
        );
        assert_eq!(preview_of(5, b"secret"), "");
    }
}
