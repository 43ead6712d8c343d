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
/// Conversations per batched SELECT / UPDATE.
const CONVERSATIONS_PER_STATEMENT: usize = 256;
/// Fixed part of a message body: id (16) || sender (32) || flags (1).
const BODY_FIXED_LEN: usize = 16 + 32 + 1;
const FLAG_REPLY: u8 = 1;
const FLAG_MEDIA: u8 = 2;
const MSG_TAG_DOMAIN: &str = "messages.msg_tag";
/// Rows per multi-row INSERT into `message_tags` (2 bound values per row).
const TAG_ROWS_PER_STATEMENT: usize = 512;

/// Number of levels of the message-id index (`message_tags.level` 0 to 2; schema version 2).
pub const TAG_LEVELS: i64 = 3;
/// Entries level 0 of the message-id index holds before it is merged into level 1.
pub const TAG_LEVEL0_MAX: i64 = 8_192;
/// Each level holds this many times the entries of the one before it; the last level is
/// unbounded.
pub const TAG_LEVEL_RATIO: i64 = 16;
/// Entries level 0 of the conversation-page index (`message_pages`, schema version 3) holds
/// before it is merged into level 1 (unbounded).
pub const PAGE_LEVEL0_MAX: i64 = 8_192;
/// Rows per multi-row INSERT into `message_pages` (3 bound values per row).
const PAGE_ROWS_PER_STATEMENT: usize = 512;

/// The `level IN (...)` condition that makes a lookup by tag seek each level (must list every
/// level, `0..TAG_LEVELS`).
macro_rules! every_tag_level {
    () => {
        "level IN (0, 1, 2)"
    };
}

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
    pub(super) fn code(self) -> i64 {
        match self {
            Self::Sending => 0,
            Self::Sent => 1,
            Self::Delivered => 2,
            Self::Read => 3,
            Self::Failed => 4,
        }
    }

    pub(super) fn from_code(c: i64) -> Result<Self, StoreError> {
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

/// (conversation, new last timestamp, new sealed preview, unread increment).
type ConversationUpdate = (ConversationId, Option<i64>, Option<Vec<u8>>, i64);

type ReactionRow = (Vec<u8>, Vec<u8>, Vec<u8>, i64);

const MSG_COLUMNS: &str = "id, conversation_id, timestamp, status, is_outgoing, is_read, is_starred, \
     content_type, expires_at, edited_at, deleted_at, body_enc";

/// The decrypted `body_enc` column: everything sensitive about a message in one AEAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Body {
    pub(super) id: MessageId,
    pub(super) sender: Address,
    pub(super) reply_to: Option<MessageId>,
    pub(super) media: Option<MediaId>,
    pub(super) content: Vec<u8>,
}

/// id (16) || sender (32) || flags (1) || [reply-to id (16)] || [media id (16)] || content.
pub(super) fn encode_body(
    id: &MessageId,
    sender: &Address,
    reply_to: Option<&MessageId>,
    media: Option<&MediaId>,
    content: &[u8],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(BODY_FIXED_LEN + 32 + content.len());
    b.extend_from_slice(&id.0);
    b.extend_from_slice(sender.as_bytes());
    let flags = if reply_to.is_some() { FLAG_REPLY } else { 0 }
        | if media.is_some() { FLAG_MEDIA } else { 0 };
    b.push(flags);
    if let Some(r) = reply_to {
        b.extend_from_slice(&r.0);
    }
    if let Some(m) = media {
        b.extend_from_slice(&m.0);
    }
    b.extend_from_slice(content);
    b
}

fn malformed(column: &'static str, reason: &'static str) -> StoreError {
    StoreError::Malformed {
        table: "messages",
        column,
        reason,
    }
}

pub(super) fn decode_body(mut b: Vec<u8>) -> Result<Body, StoreError> {
    let bad = |reason| malformed("body_enc", reason);
    if b.len() < BODY_FIXED_LEN {
        return Err(bad("body shorter than its fixed part"));
    }
    let id = MessageId(b[..16].try_into().map_err(|_| bad("id"))?);
    let sender = Address::from_slice(&b[16..48]).map_err(|_| bad("sender"))?;
    let flags = b[48];
    if flags & !(FLAG_REPLY | FLAG_MEDIA) != 0 {
        return Err(bad("unknown flags"));
    }
    let mut at = BODY_FIXED_LEN;
    let take16 = |at: &mut usize| -> Result<[u8; 16], StoreError> {
        let v: [u8; 16] = b
            .get(*at..*at + 16)
            .ok_or_else(|| bad("truncated reference"))?
            .try_into()
            .map_err(|_| bad("reference"))?;
        *at += 16;
        Ok(v)
    };
    let reply_to = if flags & FLAG_REPLY != 0 {
        Some(MessageId(take16(&mut at)?))
    } else {
        None
    };
    let media = if flags & FLAG_MEDIA != 0 {
        Some(MediaId(take16(&mut at)?))
    } else {
        None
    };
    let content = b.split_off(at);
    Ok(Body {
        id,
        sender,
        reply_to,
        media,
        content,
    })
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

/// Subquery: the row id of the message whose blind index is the bound value (one seek per level).
const ROW_OF_TAG: &str = concat!(
    "SELECT message_row FROM message_tags WHERE ",
    every_tag_level!(),
    " AND tag = ?"
);

/// Merges each level of `message_tags` that outgrew its capacity into the next one, oldest
/// level last. The merged entries are inserted in tag order, so the next level's pages are
/// each rewritten once per merge instead of once per message.
async fn merge_tag_levels(tx: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
    let mut cap = TAG_LEVEL0_MAX;
    for level in 0..TAG_LEVELS - 1 {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM message_tags WHERE level = ?")
            .bind(level)
            .fetch_one(&mut *tx)
            .await?;
        if n <= cap {
            break;
        }
        sqlx::query(
            "INSERT INTO message_tags (level, tag, message_row) \
             SELECT ?, tag, message_row FROM message_tags WHERE level = ? ORDER BY tag",
        )
        .bind(level + 1)
        .bind(level)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM message_tags WHERE level = ?")
            .bind(level)
            .execute(&mut *tx)
            .await?;
        cap = cap.saturating_mul(TAG_LEVEL_RATIO);
    }
    Ok(())
}

/// Merges level 0 of `message_pages` into level 1 once it holds more than
/// [`PAGE_LEVEL0_MAX`] entries, in index order: each conversation's tail in level 1 is
/// rewritten once per merge instead of once per insert batch.
async fn merge_page_levels(tx: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM message_pages WHERE level = 0")
        .fetch_one(&mut *tx)
        .await?;
    if n > PAGE_LEVEL0_MAX {
        sqlx::query(
            "INSERT INTO message_pages (level, conversation_id, timestamp, message_row) \
             SELECT 1, conversation_id, timestamp, message_row FROM message_pages WHERE level = 0 \
             ORDER BY conversation_id, timestamp, message_row",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM message_pages WHERE level = 0")
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Row ids of a conversation's newest `limit` messages strictly before a cursor, from both
/// levels of `message_pages` (each level read newest-first from the cursor, then merged).
/// Binds: `$1` conversation, `$2` cursor timestamp, `$3` cursor row, `$4` limit.
const PAGE_ROWS: &str = "SELECT message_row FROM (\
     SELECT * FROM (SELECT timestamp, message_row FROM message_pages WHERE level = 0 \
       AND conversation_id = $1 AND (timestamp < $2 OR (timestamp = $2 AND message_row < $3)) \
       ORDER BY timestamp DESC, message_row DESC LIMIT $4) \
     UNION ALL \
     SELECT * FROM (SELECT timestamp, message_row FROM message_pages WHERE level = 1 \
       AND conversation_id = $1 AND (timestamp < $2 OR (timestamp = $2 AND message_row < $3)) \
       ORDER BY timestamp DESC, message_row DESC LIMIT $4) \
     ORDER BY timestamp DESC, message_row DESC LIMIT $4)";

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
        let body_enc: Vec<u8> = row.try_get(11)?;
        let Body {
            id,
            sender,
            reply_to,
            media,
            content,
        } = decode_body(self.keys.open("messages", "body_enc", &rk, &body_enc)?)?;
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
        // Seal before taking the connection, so concurrent inserts overlap CPU and SQL work.
        let first_row = self.alloc_rows(msgs.len());
        struct Prepared {
            row: i64,
            tag: [u8; 16],
            expires: Option<i64>,
            body: Vec<u8>,
        }
        let mut prepared = Vec::with_capacity(msgs.len());
        for (i, m) in msgs.iter().enumerate() {
            let row = first_row + i64::try_from(i).unwrap_or(0);
            let rk = row.to_be_bytes();
            prepared.push(Prepared {
                row,
                tag: self.msg_tag(&m.id),
                expires: None,
                body: self.keys.seal(
                    "messages",
                    "body_enc",
                    &rk,
                    &encode_body(
                        &m.id,
                        &m.sender,
                        m.reply_to.as_ref(),
                        m.media.as_ref(),
                        &m.content,
                    ),
                )?,
            });
        }

        let mut tx = self.pool.begin().await?;

        // Conversations: existence, timer, current last timestamp (one query per chunk).
        let mut wanted: Vec<ConversationId> = msgs.iter().map(|m| m.conversation).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut convs: HashMap<ConversationId, (i64, Option<i64>)> = HashMap::new();
        for chunk in wanted.chunks(CONVERSATIONS_PER_STATEMENT) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "SELECT id, disappearing_secs, last_timestamp FROM conversations WHERE id IN (",
            );
            let mut sep = qb.separated(", ");
            for c in chunk {
                sep.push_bind(&c.0[..]);
            }
            qb.push(")");
            for row in qb.build().fetch_all(&mut *tx).await? {
                let id: Vec<u8> = row.try_get(0)?;
                convs.insert(
                    ConversationId::from_column("conversations", "id", &id)?,
                    (row.try_get(1)?, row.try_get(2)?),
                );
            }
        }
        if convs.len() != wanted.len() {
            return Err(StoreError::Missing {
                what: "conversation",
            });
        }

        for (p, m) in prepared.iter_mut().zip(msgs) {
            let timer = convs.get(&m.conversation).map(|c| c.0).unwrap_or(0);
            p.expires =
                (timer > 0).then(|| m.timestamp_ms.saturating_add(timer.saturating_mul(1000)));
        }

        // Redeliveries: which of these message ids are already stored? (Usually none, so this
        // returns no rows; a RETURNING clause on the insert would stream every row back.)
        let mut existing = std::collections::HashSet::new();
        for chunk in prepared.chunks(CONVERSATIONS_PER_STATEMENT) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(concat!(
                "SELECT tag FROM message_tags WHERE ",
                every_tag_level!(),
                " AND tag IN ("
            ));
            let mut sep = qb.separated(", ");
            for p in chunk {
                sep.push_bind(&p.tag[..]);
            }
            qb.push(")");
            let tags: Vec<Vec<u8>> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
            existing.extend(tags);
        }
        // First occurrence of an id in the batch wins; later ones are redeliveries too.
        let mut inserted = std::collections::HashSet::new();
        let mut fresh = Vec::with_capacity(msgs.len());
        for (m, p) in msgs.iter().zip(&prepared) {
            if !existing.contains(&p.tag[..]) && existing.insert(p.tag.to_vec()) {
                inserted.insert(p.row);
                fresh.push((m, p));
            }
        }
        for chunk in fresh.chunks(ROWS_PER_STATEMENT) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO messages (id, conversation_id, msg_tag, timestamp, status, is_outgoing, \
                 content_type, expires_at, body_enc) ",
            );
            qb.push_values(chunk, |mut b, (m, p)| {
                b.push_bind(p.row)
                    .push_bind(&m.conversation.0[..])
                    .push_bind(&p.tag[..])
                    .push_bind(m.timestamp_ms)
                    .push_bind(m.status.code())
                    .push_bind(i64::from(m.outgoing))
                    .push_bind(i64::from(m.content_type))
                    .push_bind(p.expires)
                    .push_bind(&p.body);
            });
            qb.build().execute(&mut *tx).await?;
        }
        // The message-id index: new tags go into level 0, in tag order.
        let mut tags: Vec<(&[u8], i64)> = fresh.iter().map(|(_, p)| (&p.tag[..], p.row)).collect();
        tags.sort_unstable();
        for chunk in tags.chunks(TAG_ROWS_PER_STATEMENT) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO message_tags (level, tag, message_row) ");
            qb.push_values(chunk, |mut b, (tag, row)| {
                b.push("0").push_bind(*tag).push_bind(*row);
            });
            qb.build().execute(&mut *tx).await?;
        }
        merge_tag_levels(&mut tx).await?;
        // The conversation-page index: level 0, in (conversation, timestamp, row) order.
        let mut pages: Vec<(&[u8], i64, i64)> = fresh
            .iter()
            .map(|(m, p)| (&m.conversation.0[..], m.timestamp_ms, p.row))
            .collect();
        pages.sort_unstable();
        for chunk in pages.chunks(PAGE_ROWS_PER_STATEMENT) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO message_pages (level, conversation_id, timestamp, message_row) ",
            );
            qb.push_values(chunk, |mut b, (conv, ts, row)| {
                b.push("0").push_bind(*conv).push_bind(*ts).push_bind(*row);
            });
            qb.build().execute(&mut *tx).await?;
        }
        merge_page_levels(&mut tx).await?;

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
        // (id, new last timestamp, new preview, unread increment) per touched conversation.
        let mut rows: Vec<ConversationUpdate> = Vec::with_capacity(updates.len());
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
                    rows.push((conv, Some(ts), Some(preview), unread_add));
                }
                _ => rows.push((conv, None, None, unread_add)),
            }
        }
        for chunk in rows.chunks(CONVERSATIONS_PER_STATEMENT) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "UPDATE conversations SET \
                 last_timestamp = coalesce(v.column2, conversations.last_timestamp), \
                 preview_enc = coalesce(v.column3, conversations.preview_enc), \
                 unread_count = conversations.unread_count + v.column4 FROM (",
            );
            qb.push_values(chunk, |mut b, (id, ts, preview, add)| {
                b.push_bind(&id.0[..])
                    .push_bind(*ts)
                    .push_bind(preview.as_deref())
                    .push_bind(*add);
            });
            qb.push(") AS v WHERE conversations.id = v.column1");
            qb.build().execute(&mut *tx).await?;
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        if starred_only {
            // Starred messages have their own (partial, small) index on `messages`.
            let sql = format!(
                "SELECT {MSG_COLUMNS} FROM messages WHERE conversation_id = ? AND is_starred = 1 \
                 AND (timestamp < ? OR (timestamp = ? AND id < ?)) ORDER BY timestamp DESC, id DESC LIMIT ?"
            );
            return Ok(sqlx::query(&sql)
                .bind(&conversation.0[..])
                .bind(c.timestamp_ms)
                .bind(c.timestamp_ms)
                .bind(c.row)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?);
        }
        let sql = format!(
            "SELECT {MSG_COLUMNS} FROM messages WHERE id IN ({PAGE_ROWS}) ORDER BY timestamp DESC, id DESC"
        );
        Ok(sqlx::query(&sql)
            .bind(&conversation.0[..])
            .bind(c.timestamp_ms)
            .bind(c.row)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Looks a message up by id.
    pub async fn message(&self, id: &MessageId) -> Result<Option<StoredMessage>, StoreError> {
        let sql = format!("SELECT {MSG_COLUMNS} FROM messages WHERE id = ({ROW_OF_TAG})");
        let row = sqlx::query(&sql)
            .bind(&self.msg_tag(id)[..])
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| self.decode_message(&r)).transpose()
    }

    async fn row_of(&self, id: &MessageId) -> Result<(i64, Vec<u8>), StoreError> {
        let row = sqlx::query(&format!(
            "SELECT id, conversation_id FROM messages WHERE id = ({ROW_OF_TAG})"
        ))
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
        let r = sqlx::query(&format!(
            "UPDATE messages SET status = ? WHERE id = ({ROW_OF_TAG})"
        ))
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
            "UPDATE messages SET is_read = 1 WHERE id IN (SELECT message_row FROM message_pages \
             WHERE level IN (0, 1) AND conversation_id = ? AND timestamp <= ?) \
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
        let r = sqlx::query(&format!(
            "UPDATE messages SET is_starred = ? WHERE id = ({ROW_OF_TAG})"
        ))
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
            sqlx::query_as("SELECT body_enc, deleted_at FROM messages WHERE id = ?")
                .bind(row)
                .fetch_one(&mut *tx)
                .await?;
        if old.1.is_some() {
            return Err(StoreError::Missing {
                what: "message (deleted)",
            });
        }
        let body = decode_body(self.keys.open("messages", "body_enc", &rk, &old.0)?)?;
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
            .bind(self.keys.seal("message_edits", "content_enc", &ek, &body.content)?)
            .execute(&mut *tx)
            .await?;
        let new_body = encode_body(
            &body.id,
            &body.sender,
            body.reply_to.as_ref(),
            body.media.as_ref(),
            new_content,
        );
        sqlx::query("UPDATE messages SET body_enc = ?, edited_at = ? WHERE id = ?")
            .bind(self.keys.seal("messages", "body_enc", &rk, &new_body)?)
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
        let enc: Vec<u8> = sqlx::query_scalar("SELECT body_enc FROM messages WHERE id = ?")
            .bind(row)
            .fetch_one(&mut *tx)
            .await?;
        let body = decode_body(self.keys.open("messages", "body_enc", &rk, &enc)?)?;
        let tombstone = encode_body(&body.id, &body.sender, body.reply_to.as_ref(), None, &[]);
        sqlx::query(
            "UPDATE messages SET body_enc = ?, deleted_at = ?, is_starred = 0 WHERE id = ?",
        )
        .bind(self.keys.seal("messages", "body_enc", &rk, &tombstone)?)
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
    fn body_round_trip_and_rejects_bad_layouts() {
        let (id, sender) = (MessageId([1; 16]), Address::from_bytes([3; 32]));
        let r = Some(MessageId([4; 16]));
        let m = Some(MediaId([5; 16]));
        for (reply, media) in [(None, None), (r, None), (None, m), (r, m)] {
            let b = encode_body(&id, &sender, reply.as_ref(), media.as_ref(), b"hi");
            let want = Body {
                id,
                sender,
                reply_to: reply,
                media,
                content: b"hi".to_vec(),
            };
            assert_eq!(decode_body(b).unwrap(), want);
        }
        let mut bad = encode_body(&id, &sender, None, None, b"");
        bad[48] = 4;
        assert!(decode_body(bad).is_err());
        let mut short = encode_body(&id, &sender, None, None, b"");
        short[48] = FLAG_REPLY; // claims a reply-to id that is not there
        assert!(decode_body(short).is_err());
        assert!(decode_body(vec![0; 10]).is_err());
    }

    #[test]
    fn tag_level_list_names_every_level() {
        let want: Vec<String> = (0..TAG_LEVELS).map(|l| l.to_string()).collect();
        assert_eq!(
            every_tag_level!(),
            format!("level IN ({})", want.join(", "))
        );
        assert!(ROW_OF_TAG.contains(every_tag_level!()));
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
