-- ZenTalk client store, schema version 1.
-- Columns ending in _enc hold AEAD ciphertexts (see docs/protocol/zentalk-storage.md):
-- version || suite || nonce || ciphertext || tag, associated data = table || column || row key.
-- Columns ending in _tag are blind indexes: HMAC-SHA256(index key, value) truncated to 16 bytes.
-- Only ids, timestamps, flags, counters and blind indexes are in clear and indexed.

CREATE TABLE store_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    format_version INTEGER NOT NULL,
    kdf_salt BLOB NOT NULL,
    kdf_m_kib INTEGER NOT NULL,
    kdf_t INTEGER NOT NULL,
    kdf_p INTEGER NOT NULL,
    wrapped_data_key BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE contacts (
    tag BLOB PRIMARY KEY,                 -- blind index of the contact's address
    address_enc BLOB NOT NULL,
    name_enc BLOB NOT NULL,
    bio_enc BLOB,
    public_key_enc BLOB NOT NULL,
    avatar_enc BLOB,                      -- media id of the avatar
    added_at INTEGER NOT NULL,
    last_seen INTEGER,
    is_blocked INTEGER NOT NULL DEFAULT 0,
    is_favorite INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE conversations (
    id BLOB PRIMARY KEY,                  -- 16 random bytes chosen locally
    kind INTEGER NOT NULL,                -- 0 direct, 1 group, 2 room
    peer_enc BLOB NOT NULL,               -- contact address, group id or room id
    title_enc BLOB NOT NULL,
    preview_enc BLOB,                     -- start of the last text message
    last_timestamp INTEGER,
    unread_count INTEGER NOT NULL DEFAULT 0,
    is_muted INTEGER NOT NULL DEFAULT 0,
    is_pinned INTEGER NOT NULL DEFAULT 0,
    disappearing_secs INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX conversations_order ON conversations (is_pinned, last_timestamp);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY,               -- local row id, allocated increasing by the store
    conversation_id BLOB NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    msg_tag BLOB NOT NULL UNIQUE,         -- blind index of the 16-byte message id
    timestamp INTEGER NOT NULL,           -- milliseconds since the Unix epoch
    status INTEGER NOT NULL,              -- 0 sending, 1 sent, 2 delivered, 3 read, 4 failed
    is_outgoing INTEGER NOT NULL,
    is_read INTEGER NOT NULL DEFAULT 0,
    is_starred INTEGER NOT NULL DEFAULT 0,
    content_type INTEGER NOT NULL,
    expires_at INTEGER,                   -- disappearing messages
    edited_at INTEGER,
    deleted_at INTEGER,
    body_enc BLOB NOT NULL                -- message id, sender, reply-to id, media id, content
);
CREATE INDEX messages_page ON messages (conversation_id, timestamp);
CREATE INDEX messages_starred ON messages (conversation_id, timestamp) WHERE is_starred = 1;
CREATE INDEX messages_expiry ON messages (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE message_edits (
    message_row INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    edit_no INTEGER NOT NULL,
    edited_at INTEGER NOT NULL,
    content_enc BLOB NOT NULL,            -- the content before this edit
    PRIMARY KEY (message_row, edit_no)
) WITHOUT ROWID;

CREATE TABLE reactions (
    message_row INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    reactor_tag BLOB NOT NULL,            -- blind index of the reacting address
    reactor_enc BLOB NOT NULL,
    reaction_enc BLOB NOT NULL,
    reacted_at INTEGER NOT NULL,
    PRIMARY KEY (message_row, reactor_tag)
) WITHOUT ROWID;

CREATE TABLE groups (
    id BLOB PRIMARY KEY,                  -- 16-byte group id
    name_enc BLOB NOT NULL,
    sender_key_enc BLOB,                  -- own sender-key chain (pickled)
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE group_members (
    group_id BLOB NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    member_tag BLOB NOT NULL,
    member_enc BLOB NOT NULL,
    role INTEGER NOT NULL,                -- 0 member, 1 admin
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, member_tag)
) WITHOUT ROWID;

CREATE TABLE rooms (
    id BLOB PRIMARY KEY,                  -- 16-byte room id
    name_enc BLOB NOT NULL,
    pseudonym_enc BLOB NOT NULL,          -- this member's per-room pseudonym key material
    joined_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE ratchet_sessions (
    peer_tag BLOB NOT NULL,               -- blind index of the peer address
    device INTEGER NOT NULL,
    pickle_enc BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (peer_tag, device)
) WITHOUT ROWID;

CREATE TABLE account_keys (
    name TEXT PRIMARY KEY,                -- e.g. 'identity': the key's role, not the key
    key_enc BLOB NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE prekeys (
    id INTEGER PRIMARY KEY,               -- prekey id as published
    kind INTEGER NOT NULL,                -- 0 one-time, 1 signed
    secret_enc BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE media (
    id BLOB PRIMARY KEY,                  -- 16-byte media id
    key_enc BLOB NOT NULL,                -- the media's random content key
    shards_enc BLOB NOT NULL,             -- shard locations
    size INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
