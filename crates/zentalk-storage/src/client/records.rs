//! Contacts, conversations, groups, rooms, ratchet sessions, account keys, prekeys and media.

use sqlx::Row;
use zentalk_crypto::{Address, AeadKey};
use zeroize::Zeroizing;

use super::{ClientStore, ConversationId, GroupId, MediaId, RoomId};
use crate::StoreError;

/// Longest name, title, bio or reaction text accepted (bytes).
pub const MAX_TEXT_LEN: usize = 4096;
/// Longest secret (pickle, key, prekey) accepted (bytes).
pub const MAX_SECRET_LEN: usize = 1024 * 1024;
/// Most shard locations one media record holds.
pub const MAX_SHARDS: usize = 1024;
/// Longest shard location (bytes).
pub const MAX_SHARD_LOCATION_LEN: usize = 1024;
/// Most rows a list call returns.
pub const MAX_LIST_ROWS: usize = 100_000;

fn text_limit(what: &'static str, s: &str) -> Result<(), StoreError> {
    if s.len() > MAX_TEXT_LEN {
        return Err(StoreError::TooLarge {
            what,
            max: MAX_TEXT_LEN,
            found: s.len(),
        });
    }
    Ok(())
}

fn secret_limit(what: &'static str, s: &[u8]) -> Result<(), StoreError> {
    if s.len() > MAX_SECRET_LEN {
        return Err(StoreError::TooLarge {
            what,
            max: MAX_SECRET_LEN,
            found: s.len(),
        });
    }
    Ok(())
}

fn address(table: &'static str, column: &'static str, v: &[u8]) -> Result<Address, StoreError> {
    Address::from_slice(v).map_err(|_| StoreError::Malformed {
        table,
        column,
        reason: "address is not 32 bytes",
    })
}

fn list_limit(limit: usize) -> Result<i64, StoreError> {
    if limit > MAX_LIST_ROWS {
        return Err(StoreError::TooLarge {
            what: "list limit",
            max: MAX_LIST_ROWS,
            found: limit,
        });
    }
    Ok(i64::try_from(limit).unwrap_or(i64::MAX))
}

/// A contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The contact's address (the key: stored as a blind index plus ciphertext).
    pub address: Address,
    /// Display name.
    pub name: String,
    /// Bio.
    pub bio: Option<String>,
    /// Identity public key bytes.
    pub public_key: Vec<u8>,
    /// Avatar media object.
    pub avatar: Option<MediaId>,
    /// When added (ms).
    pub added_at_ms: i64,
    /// Last seen (ms).
    pub last_seen_ms: Option<i64>,
    /// Blocked.
    pub blocked: bool,
    /// Favorite.
    pub favorite: bool,
}

/// Kind of conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConversationKind {
    /// One-to-one with a contact.
    Direct,
    /// A group.
    Group,
    /// An anonymous room.
    Room,
}

impl ConversationKind {
    pub(super) fn code(self) -> i64 {
        match self {
            Self::Direct => 0,
            Self::Group => 1,
            Self::Room => 2,
        }
    }
    pub(super) fn from_code(c: i64) -> Result<Self, StoreError> {
        match c {
            0 => Ok(Self::Direct),
            1 => Ok(Self::Group),
            2 => Ok(Self::Room),
            _ => Err(StoreError::Malformed {
                table: "conversations",
                column: "kind",
                reason: "unknown kind",
            }),
        }
    }
}

/// A conversation to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConversation {
    /// Local id.
    pub id: ConversationId,
    /// Kind.
    pub kind: ConversationKind,
    /// Peer: contact address, group id or room id bytes.
    pub peer: Vec<u8>,
    /// Title.
    pub title: String,
    /// Creation time (ms).
    pub created_at_ms: i64,
}

/// A conversation as listed, decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    /// Id.
    pub id: ConversationId,
    /// Kind.
    pub kind: ConversationKind,
    /// Peer bytes.
    pub peer: Vec<u8>,
    /// Title.
    pub title: String,
    /// Start of the last text message.
    pub preview: Option<String>,
    /// Timestamp of the last message (ms).
    pub last_timestamp_ms: Option<i64>,
    /// Unread incoming messages.
    pub unread: u64,
    /// Muted.
    pub muted: bool,
    /// Pinned.
    pub pinned: bool,
    /// Disappearing-message timer in seconds (0: off).
    pub disappearing_secs: u32,
}

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupRole {
    /// Ordinary member.
    Member,
    /// Administrator.
    Admin,
}

/// A group member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Member address.
    pub address: Address,
    /// Role.
    pub role: GroupRole,
    /// Joined (ms).
    pub joined_at_ms: i64,
}

/// An anonymous room this account is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    /// Room id.
    pub id: RoomId,
    /// Name.
    pub name: String,
    /// This member's per-room pseudonym key material.
    pub pseudonym: Zeroizing<Vec<u8>>,
    /// Joined (ms).
    pub joined_at_ms: i64,
}

/// Kind of prekey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrekeyKind {
    /// One-time prekey (deleted when used).
    OneTime,
    /// Signed prekey.
    Signed,
}

/// A media object's key and where its shards are.
#[derive(Debug, PartialEq, Eq)]
pub struct MediaRecord {
    /// Media id.
    pub id: MediaId,
    /// The random content key.
    pub key: AeadKey,
    /// Shard locations (opaque to this crate).
    pub shards: Vec<Vec<u8>>,
    /// Plaintext size in bytes.
    pub size: u64,
}

pub(super) fn encode_shards(shards: &[Vec<u8>]) -> Result<Vec<u8>, StoreError> {
    if shards.len() > MAX_SHARDS {
        return Err(StoreError::TooLarge {
            what: "shard count",
            max: MAX_SHARDS,
            found: shards.len(),
        });
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(shards.len() as u32).to_be_bytes());
    for s in shards {
        if s.len() > MAX_SHARD_LOCATION_LEN {
            return Err(StoreError::TooLarge {
                what: "shard location",
                max: MAX_SHARD_LOCATION_LEN,
                found: s.len(),
            });
        }
        out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        out.extend_from_slice(s);
    }
    Ok(out)
}

pub(super) fn decode_shards(b: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
    let bad = |reason| StoreError::Malformed {
        table: "media",
        column: "shards_enc",
        reason,
    };
    let take_u32 = |b: &[u8], at: usize| -> Result<usize, StoreError> {
        let s = b.get(at..at + 4).ok_or_else(|| bad("truncated length"))?;
        let mut a = [0u8; 4];
        a.copy_from_slice(s);
        usize::try_from(u32::from_be_bytes(a)).map_err(|_| bad("length overflow"))
    };
    let n = take_u32(b, 0)?;
    if n > MAX_SHARDS {
        return Err(bad("too many shards"));
    }
    let mut at = 4;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = take_u32(b, at)?;
        if len > MAX_SHARD_LOCATION_LEN {
            return Err(bad("shard location too long"));
        }
        at += 4;
        out.push(
            b.get(at..at + len)
                .ok_or_else(|| bad("truncated shard"))?
                .to_vec(),
        );
        at += len;
    }
    if at != b.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(out)
}

impl ClientStore {
    fn contact_tag(&self, a: &Address) -> [u8; 16] {
        self.keys.blind_index("contacts.tag", a.as_bytes())
    }

    /// Inserts or replaces a contact.
    pub async fn upsert_contact(&self, c: &Contact) -> Result<(), StoreError> {
        text_limit("contact name", &c.name)?;
        if let Some(b) = &c.bio {
            text_limit("contact bio", b)?;
        }
        secret_limit("public key", &c.public_key)?;
        let tag = self.contact_tag(&c.address);
        let k = &self.keys;
        sqlx::query(
            "INSERT OR REPLACE INTO contacts (tag, address_enc, name_enc, bio_enc, public_key_enc, avatar_enc, added_at, \
             last_seen, is_blocked, is_favorite) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&tag[..])
        .bind(k.seal("contacts", "address_enc", &tag, c.address.as_bytes())?)
        .bind(k.seal("contacts", "name_enc", &tag, c.name.as_bytes())?)
        .bind(c.bio.as_ref().map(|b| k.seal("contacts", "bio_enc", &tag, b.as_bytes())).transpose()?)
        .bind(k.seal("contacts", "public_key_enc", &tag, &c.public_key)?)
        .bind(c.avatar.map(|a| k.seal("contacts", "avatar_enc", &tag, &a.0)).transpose()?)
        .bind(c.added_at_ms)
        .bind(c.last_seen_ms)
        .bind(i64::from(c.blocked))
        .bind(i64::from(c.favorite))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn decode_contact(&self, r: &sqlx::sqlite::SqliteRow) -> Result<Contact, StoreError> {
        let tag: Vec<u8> = r.try_get(0)?;
        let k = &self.keys;
        let addr = k.open(
            "contacts",
            "address_enc",
            &tag,
            &r.try_get::<Vec<u8>, _>(1)?,
        )?;
        let bio: Option<Vec<u8>> = r.try_get(3)?;
        let avatar: Option<Vec<u8>> = r.try_get(5)?;
        Ok(Contact {
            address: address("contacts", "address_enc", &addr)?,
            name: k.open_string("contacts", "name_enc", &tag, &r.try_get::<Vec<u8>, _>(2)?)?,
            bio: bio
                .map(|b| k.open_string("contacts", "bio_enc", &tag, &b))
                .transpose()?,
            public_key: k.open(
                "contacts",
                "public_key_enc",
                &tag,
                &r.try_get::<Vec<u8>, _>(4)?,
            )?,
            avatar: avatar
                .map(|a| {
                    MediaId::from_column(
                        "contacts",
                        "avatar_enc",
                        &k.open("contacts", "avatar_enc", &tag, &a)?,
                    )
                })
                .transpose()?,
            added_at_ms: r.try_get(6)?,
            last_seen_ms: r.try_get(7)?,
            blocked: r.try_get::<i64, _>(8)? != 0,
            favorite: r.try_get::<i64, _>(9)? != 0,
        })
    }

    const CONTACT_COLS: &'static str = "tag, address_enc, name_enc, bio_enc, public_key_enc, avatar_enc, added_at, last_seen, is_blocked, is_favorite";

    /// Looks a contact up by address.
    pub async fn contact(&self, a: &Address) -> Result<Option<Contact>, StoreError> {
        let sql = format!("SELECT {} FROM contacts WHERE tag = ?", Self::CONTACT_COLS);
        let r = sqlx::query(&sql)
            .bind(&self.contact_tag(a)[..])
            .fetch_optional(&self.pool)
            .await?;
        r.map(|r| self.decode_contact(&r)).transpose()
    }

    /// All contacts (at most `limit`), favorites first, then by name.
    pub async fn contacts(&self, limit: usize) -> Result<Vec<Contact>, StoreError> {
        let sql = format!("SELECT {} FROM contacts LIMIT ?", Self::CONTACT_COLS);
        let rows = sqlx::query(&sql)
            .bind(list_limit(limit)?)
            .fetch_all(&self.pool)
            .await?;
        let mut out = rows
            .iter()
            .map(|r| self.decode_contact(r))
            .collect::<Result<Vec<_>, _>>()?;
        // Names are encrypted, so sorting happens after decryption.
        out.sort_by(|a, b| {
            b.favorite
                .cmp(&a.favorite)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(out)
    }

    async fn update_contact_flag(&self, a: &Address, sql: &str, v: i64) -> Result<(), StoreError> {
        let r = sqlx::query(sql)
            .bind(v)
            .bind(&self.contact_tag(a)[..])
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Missing { what: "contact" });
        }
        Ok(())
    }

    /// Blocks or unblocks a contact.
    pub async fn set_contact_blocked(&self, a: &Address, blocked: bool) -> Result<(), StoreError> {
        self.update_contact_flag(
            a,
            "UPDATE contacts SET is_blocked = ? WHERE tag = ?",
            i64::from(blocked),
        )
        .await
    }

    /// Marks or unmarks a contact as favorite.
    pub async fn set_contact_favorite(
        &self,
        a: &Address,
        favorite: bool,
    ) -> Result<(), StoreError> {
        self.update_contact_flag(
            a,
            "UPDATE contacts SET is_favorite = ? WHERE tag = ?",
            i64::from(favorite),
        )
        .await
    }

    /// Records when a contact was last seen.
    pub async fn set_contact_last_seen(&self, a: &Address, at_ms: i64) -> Result<(), StoreError> {
        self.update_contact_flag(a, "UPDATE contacts SET last_seen = ? WHERE tag = ?", at_ms)
            .await
    }

    /// Deletes a contact. Returns whether it existed.
    pub async fn delete_contact(&self, a: &Address) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM contacts WHERE tag = ?")
            .bind(&self.contact_tag(a)[..])
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Creates a conversation.
    pub async fn create_conversation(&self, c: &NewConversation) -> Result<(), StoreError> {
        text_limit("conversation title", &c.title)?;
        secret_limit("conversation peer", &c.peer)?;
        let k = &self.keys;
        sqlx::query(
            "INSERT INTO conversations (id, kind, peer_enc, title_enc, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&c.id.0[..])
        .bind(c.kind.code())
        .bind(k.seal("conversations", "peer_enc", &c.id.0, &c.peer)?)
        .bind(k.seal("conversations", "title_enc", &c.id.0, c.title.as_bytes())?)
        .bind(c.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Conversations, pinned first, then most recent first, with unread counts (at most `limit`).
    pub async fn conversations(
        &self,
        limit: usize,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, peer_enc, title_enc, preview_enc, last_timestamp, unread_count, is_muted, is_pinned, \
             disappearing_secs FROM conversations ORDER BY is_pinned DESC, last_timestamp DESC LIMIT ?",
        )
        .bind(list_limit(limit)?)
        .fetch_all(&self.pool)
        .await?;
        let k = &self.keys;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: Vec<u8> = r.try_get(0)?;
            let preview: Option<Vec<u8>> = r.try_get(4)?;
            out.push(ConversationSummary {
                id: ConversationId::from_column("conversations", "id", &id)?,
                kind: ConversationKind::from_code(r.try_get(1)?)?,
                peer: k.open(
                    "conversations",
                    "peer_enc",
                    &id,
                    &r.try_get::<Vec<u8>, _>(2)?,
                )?,
                title: k.open_string(
                    "conversations",
                    "title_enc",
                    &id,
                    &r.try_get::<Vec<u8>, _>(3)?,
                )?,
                preview: preview
                    .map(|p| k.open_string("conversations", "preview_enc", &id, &p))
                    .transpose()?,
                last_timestamp_ms: r.try_get(5)?,
                unread: u64::try_from(r.try_get::<i64, _>(6)?).unwrap_or(0),
                muted: r.try_get::<i64, _>(7)? != 0,
                pinned: r.try_get::<i64, _>(8)? != 0,
                disappearing_secs: u32::try_from(r.try_get::<i64, _>(9)?).unwrap_or(0),
            });
        }
        Ok(out)
    }

    async fn update_conversation(
        &self,
        id: &ConversationId,
        sql: &str,
        v: i64,
    ) -> Result<(), StoreError> {
        let r = sqlx::query(sql)
            .bind(v)
            .bind(&id.0[..])
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Missing {
                what: "conversation",
            });
        }
        Ok(())
    }

    /// Mutes or unmutes a conversation.
    pub async fn set_muted(&self, id: &ConversationId, muted: bool) -> Result<(), StoreError> {
        self.update_conversation(
            id,
            "UPDATE conversations SET is_muted = ? WHERE id = ?",
            i64::from(muted),
        )
        .await
    }

    /// Pins or unpins a conversation.
    pub async fn set_pinned(&self, id: &ConversationId, pinned: bool) -> Result<(), StoreError> {
        self.update_conversation(
            id,
            "UPDATE conversations SET is_pinned = ? WHERE id = ?",
            i64::from(pinned),
        )
        .await
    }

    /// Sets the disappearing-message timer (0 turns it off); applies to messages inserted later.
    pub async fn set_disappearing(&self, id: &ConversationId, secs: u32) -> Result<(), StoreError> {
        self.update_conversation(
            id,
            "UPDATE conversations SET disappearing_secs = ? WHERE id = ?",
            i64::from(secs),
        )
        .await
    }

    /// Deletes a conversation and all its messages.
    pub async fn delete_conversation(&self, id: &ConversationId) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM conversations WHERE id = ?")
            .bind(&id.0[..])
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Stores (replaces) the pickled ratchet session with `peer`'s `device`.
    pub async fn put_session(
        &self,
        peer: &Address,
        device: u32,
        pickle: &[u8],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        secret_limit("session pickle", pickle)?;
        let mut rk = self
            .keys
            .blind_index("ratchet_sessions.peer_tag", peer.as_bytes())
            .to_vec();
        let tag = rk.clone();
        rk.extend_from_slice(&device.to_be_bytes());
        sqlx::query("INSERT OR REPLACE INTO ratchet_sessions (peer_tag, device, pickle_enc, updated_at) VALUES (?, ?, ?, ?)")
            .bind(tag)
            .bind(i64::from(device))
            .bind(self.keys.seal("ratchet_sessions", "pickle_enc", &rk, pickle)?)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The pickled session with `peer`'s `device`, if any.
    pub async fn session(
        &self,
        peer: &Address,
        device: u32,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let mut rk = self
            .keys
            .blind_index("ratchet_sessions.peer_tag", peer.as_bytes())
            .to_vec();
        let tag = rk.clone();
        rk.extend_from_slice(&device.to_be_bytes());
        let enc: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT pickle_enc FROM ratchet_sessions WHERE peer_tag = ? AND device = ?",
        )
        .bind(tag)
        .bind(i64::from(device))
        .fetch_optional(&self.pool)
        .await?;
        enc.map(|e| {
            self.keys
                .open("ratchet_sessions", "pickle_enc", &rk, &e)
                .map(Zeroizing::new)
        })
        .transpose()
    }

    /// Deletes all sessions with `peer`. Returns how many.
    pub async fn delete_sessions(&self, peer: &Address) -> Result<u64, StoreError> {
        let tag = self
            .keys
            .blind_index("ratchet_sessions.peer_tag", peer.as_bytes());
        let r = sqlx::query("DELETE FROM ratchet_sessions WHERE peer_tag = ?")
            .bind(&tag[..])
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// Stores an account key under a role name (e.g. `"identity"`).
    pub async fn put_account_key(
        &self,
        name: &str,
        key: &[u8],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        text_limit("key name", name)?;
        secret_limit("account key", key)?;
        sqlx::query(
            "INSERT OR REPLACE INTO account_keys (name, key_enc, updated_at) VALUES (?, ?, ?)",
        )
        .bind(name)
        .bind(
            self.keys
                .seal("account_keys", "key_enc", name.as_bytes(), key)?,
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The account key stored under `name`.
    pub async fn account_key(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let enc: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT key_enc FROM account_keys WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        enc.map(|e| {
            self.keys
                .open("account_keys", "key_enc", name.as_bytes(), &e)
                .map(Zeroizing::new)
        })
        .transpose()
    }

    /// Stores a prekey secret under its published id.
    pub async fn put_prekey(
        &self,
        id: u32,
        kind: PrekeyKind,
        secret: &[u8],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        secret_limit("prekey", secret)?;
        let kc = match kind {
            PrekeyKind::OneTime => 0i64,
            PrekeyKind::Signed => 1,
        };
        sqlx::query(
            "INSERT OR REPLACE INTO prekeys (id, kind, secret_enc, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(i64::from(id))
        .bind(kc)
        .bind(self.keys.seal(
            "prekeys",
            "secret_enc",
            &i64::from(id).to_be_bytes(),
            secret,
        )?)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Reads a prekey; a one-time prekey is deleted in the same transaction (used once).
    pub async fn take_prekey(
        &self,
        id: u32,
    ) -> Result<Option<(PrekeyKind, Zeroizing<Vec<u8>>)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT kind, secret_enc FROM prekeys WHERE id = ?")
                .bind(i64::from(id))
                .fetch_optional(&mut *tx)
                .await?;
        let Some((kind, enc)) = row else {
            return Ok(None);
        };
        let secret = Zeroizing::new(self.keys.open(
            "prekeys",
            "secret_enc",
            &i64::from(id).to_be_bytes(),
            &enc,
        )?);
        let kind = match kind {
            0 => PrekeyKind::OneTime,
            1 => PrekeyKind::Signed,
            _ => {
                return Err(StoreError::Malformed {
                    table: "prekeys",
                    column: "kind",
                    reason: "unknown kind",
                });
            }
        };
        if kind == PrekeyKind::OneTime {
            sqlx::query("DELETE FROM prekeys WHERE id = ?")
                .bind(i64::from(id))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some((kind, secret)))
    }

    /// Number of one-time prekeys left.
    pub async fn one_time_prekeys_left(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM prekeys WHERE kind = 0")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Stores a media object's key and shard locations.
    pub async fn put_media(&self, m: &MediaRecord, now_ms: i64) -> Result<(), StoreError> {
        let shards = encode_shards(&m.shards)?;
        sqlx::query("INSERT OR REPLACE INTO media (id, key_enc, shards_enc, size, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&m.id.0[..])
            .bind(self.keys.seal("media", "key_enc", &m.id.0, m.key.expose())?)
            .bind(self.keys.seal("media", "shards_enc", &m.id.0, &shards)?)
            .bind(i64::try_from(m.size).unwrap_or(i64::MAX))
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A media object's key and shard locations.
    pub async fn media(&self, id: &MediaId) -> Result<Option<MediaRecord>, StoreError> {
        let row: Option<(Vec<u8>, Vec<u8>, i64)> =
            sqlx::query_as("SELECT key_enc, shards_enc, size FROM media WHERE id = ?")
                .bind(&id.0[..])
                .fetch_optional(&self.pool)
                .await?;
        let Some((k, s, size)) = row else {
            return Ok(None);
        };
        let key = Zeroizing::new(self.keys.open("media", "key_enc", &id.0, &k)?);
        let shards = decode_shards(&self.keys.open("media", "shards_enc", &id.0, &s)?)?;
        Ok(Some(MediaRecord {
            id: *id,
            key: AeadKey::from_slice(&key).map_err(|_| StoreError::Malformed {
                table: "media",
                column: "key_enc",
                reason: "key is not 32 bytes",
            })?,
            shards,
            size: u64::try_from(size).unwrap_or(0),
        }))
    }

    /// Creates or renames a group; `sender_key` is this account's pickled sender-key chain.
    pub async fn put_group(
        &self,
        id: &GroupId,
        name: &str,
        sender_key: Option<&[u8]>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        text_limit("group name", name)?;
        if let Some(s) = sender_key {
            secret_limit("sender key", s)?;
        }
        sqlx::query(
            "INSERT INTO groups (id, name_enc, sender_key_enc, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET name_enc = excluded.name_enc, sender_key_enc = excluded.sender_key_enc",
        )
        .bind(&id.0[..])
        .bind(self.keys.seal("groups", "name_enc", &id.0, name.as_bytes())?)
        .bind(sender_key.map(|s| self.keys.seal("groups", "sender_key_enc", &id.0, s)).transpose()?)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A group's name and pickled sender key.
    pub async fn group(
        &self,
        id: &GroupId,
    ) -> Result<Option<(String, Option<Zeroizing<Vec<u8>>>)>, StoreError> {
        let row: Option<(Vec<u8>, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT name_enc, sender_key_enc FROM groups WHERE id = ?")
                .bind(&id.0[..])
                .fetch_optional(&self.pool)
                .await?;
        let Some((n, s)) = row else { return Ok(None) };
        Ok(Some((
            self.keys.open_string("groups", "name_enc", &id.0, &n)?,
            s.map(|s| {
                self.keys
                    .open("groups", "sender_key_enc", &id.0, &s)
                    .map(Zeroizing::new)
            })
            .transpose()?,
        )))
    }

    fn member_key(&self, group: &GroupId, member: &Address) -> ([u8; 16], Vec<u8>) {
        let tag = self
            .keys
            .blind_index("group_members.member_tag", member.as_bytes());
        let mut rk = group.0.to_vec();
        rk.extend_from_slice(&tag);
        (tag, rk)
    }

    /// Adds (or updates) a group member.
    pub async fn put_group_member(
        &self,
        group: &GroupId,
        m: &GroupMember,
    ) -> Result<(), StoreError> {
        let (tag, rk) = self.member_key(group, &m.address);
        let role = match m.role {
            GroupRole::Member => 0i64,
            GroupRole::Admin => 1,
        };
        sqlx::query("INSERT OR REPLACE INTO group_members (group_id, member_tag, member_enc, role, joined_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&group.0[..])
            .bind(&tag[..])
            .bind(self.keys.seal("group_members", "member_enc", &rk, m.address.as_bytes())?)
            .bind(role)
            .bind(m.joined_at_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes a group member. Returns whether they were a member.
    pub async fn remove_group_member(
        &self,
        group: &GroupId,
        member: &Address,
    ) -> Result<bool, StoreError> {
        let (tag, _) = self.member_key(group, member);
        let r = sqlx::query("DELETE FROM group_members WHERE group_id = ? AND member_tag = ?")
            .bind(&group.0[..])
            .bind(&tag[..])
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// A group's members, in join order.
    pub async fn group_members(&self, group: &GroupId) -> Result<Vec<GroupMember>, StoreError> {
        let rows: Vec<(Vec<u8>, Vec<u8>, i64, i64)> = sqlx::query_as(
            "SELECT member_tag, member_enc, role, joined_at FROM group_members WHERE group_id = ? ORDER BY joined_at",
        )
        .bind(&group.0[..])
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (tag, enc, role, at) in rows {
            let mut rk = group.0.to_vec();
            rk.extend_from_slice(&tag);
            let a = self.keys.open("group_members", "member_enc", &rk, &enc)?;
            out.push(GroupMember {
                address: address("group_members", "member_enc", &a)?,
                role: if role == 1 {
                    GroupRole::Admin
                } else {
                    GroupRole::Member
                },
                joined_at_ms: at,
            });
        }
        Ok(out)
    }

    /// Records a room this account joined.
    pub async fn put_room(&self, room: &Room) -> Result<(), StoreError> {
        text_limit("room name", &room.name)?;
        secret_limit("room pseudonym", &room.pseudonym)?;
        sqlx::query("INSERT OR REPLACE INTO rooms (id, name_enc, pseudonym_enc, joined_at) VALUES (?, ?, ?, ?)")
            .bind(&room.id.0[..])
            .bind(self.keys.seal("rooms", "name_enc", &room.id.0, room.name.as_bytes())?)
            .bind(self.keys.seal("rooms", "pseudonym_enc", &room.id.0, &room.pseudonym)?)
            .bind(room.joined_at_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A joined room.
    pub async fn room(&self, id: &RoomId) -> Result<Option<Room>, StoreError> {
        let row: Option<(Vec<u8>, Vec<u8>, i64)> =
            sqlx::query_as("SELECT name_enc, pseudonym_enc, joined_at FROM rooms WHERE id = ?")
                .bind(&id.0[..])
                .fetch_optional(&self.pool)
                .await?;
        let Some((n, p, at)) = row else {
            return Ok(None);
        };
        Ok(Some(Room {
            id: *id,
            name: self.keys.open_string("rooms", "name_enc", &id.0, &n)?,
            pseudonym: Zeroizing::new(self.keys.open("rooms", "pseudonym_enc", &id.0, &p)?),
            joined_at_ms: at,
        }))
    }

    /// Leaves a room: its row (and pseudonym) is deleted.
    pub async fn delete_room(&self, id: &RoomId) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM rooms WHERE id = ?")
            .bind(&id.0[..])
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_round_trip_and_bounds() {
        let s = vec![b"node-a/1".to_vec(), vec![], b"x".to_vec()];
        let e = encode_shards(&s).unwrap();
        assert_eq!(decode_shards(&e).unwrap(), s);
        assert!(decode_shards(&e[..e.len() - 1]).is_err());
        let mut trailing = e.clone();
        trailing.push(0);
        assert!(decode_shards(&trailing).is_err());
        assert!(decode_shards(&u32::MAX.to_be_bytes()).is_err());
        assert!(encode_shards(&vec![vec![]; MAX_SHARDS + 1]).is_err());
    }
}
