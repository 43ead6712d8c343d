-- ZenTalk client store, schema version 2: the message-id blind index leaves `messages`.
--
-- Version 1 kept `messages.msg_tag` UNIQUE, i.e. a B-tree keyed by a random 16-byte value: a
-- batch of 1,000 messages dirtied ~1,000 different leaf pages of it once the store held a
-- million messages, about 40 % of the insert cost. Version 2 keeps the blind index in
-- `message_tags`, split into levels (a small log-structured merge): new tags go into level 0,
-- which stays small (its few dozen pages absorb a whole batch); when a level outgrows its
-- capacity it is merged, in tag order, into the next one (see docs/protocol/zentalk-storage.md
-- §1.3). Uniqueness of a message id across levels is enforced by the store's single writer
-- inside the insert transaction; `msg_tag` stays in `messages` (unindexed) so a deleted
-- message's tag can be removed by the trigger below.
--
-- SQLite cannot drop a UNIQUE constraint, so `messages` is rebuilt. sqlx runs this file in one
-- transaction with foreign keys on: renaming `messages` re-points the foreign keys of
-- `message_edits` and `reactions` at the renamed table, so those two are rebuilt as well
-- (before the old `messages` is dropped, so no cascade ever fires).

DROP INDEX messages_page;
DROP INDEX messages_starred;
DROP INDEX messages_expiry;
ALTER TABLE messages RENAME TO messages_v1;

CREATE TABLE messages (
    id INTEGER PRIMARY KEY,               -- local row id, allocated increasing by the store
    conversation_id BLOB NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    msg_tag BLOB NOT NULL,                -- blind index of the 16-byte message id (indexed in message_tags)
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
INSERT INTO messages (id, conversation_id, msg_tag, timestamp, status, is_outgoing, is_read,
                      is_starred, content_type, expires_at, edited_at, deleted_at, body_enc)
    SELECT id, conversation_id, msg_tag, timestamp, status, is_outgoing, is_read,
           is_starred, content_type, expires_at, edited_at, deleted_at, body_enc
    FROM messages_v1 ORDER BY id;

CREATE TABLE message_edits_v2 (
    message_row INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    edit_no INTEGER NOT NULL,
    edited_at INTEGER NOT NULL,
    content_enc BLOB NOT NULL,            -- the content before this edit
    PRIMARY KEY (message_row, edit_no)
) WITHOUT ROWID;
INSERT INTO message_edits_v2 SELECT message_row, edit_no, edited_at, content_enc FROM message_edits;
DROP TABLE message_edits;
ALTER TABLE message_edits_v2 RENAME TO message_edits;

CREATE TABLE reactions_v2 (
    message_row INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    reactor_tag BLOB NOT NULL,            -- blind index of the reacting address
    reactor_enc BLOB NOT NULL,
    reaction_enc BLOB NOT NULL,
    reacted_at INTEGER NOT NULL,
    PRIMARY KEY (message_row, reactor_tag)
) WITHOUT ROWID;
INSERT INTO reactions_v2 SELECT message_row, reactor_tag, reactor_enc, reaction_enc, reacted_at FROM reactions;
DROP TABLE reactions;
ALTER TABLE reactions_v2 RENAME TO reactions;

DROP TABLE messages_v1;

CREATE INDEX messages_page ON messages (conversation_id, timestamp);
CREATE INDEX messages_starred ON messages (conversation_id, timestamp) WHERE is_starred = 1;
CREATE INDEX messages_expiry ON messages (expires_at) WHERE expires_at IS NOT NULL;

-- The message-id blind index, in levels 0 (newest, smallest) to 2 (oldest, unbounded).
CREATE TABLE message_tags (
    level INTEGER NOT NULL CHECK (level BETWEEN 0 AND 2),
    tag BLOB NOT NULL,                    -- = messages.msg_tag
    message_row INTEGER NOT NULL,         -- = messages.id
    PRIMARY KEY (level, tag)
) WITHOUT ROWID;
INSERT INTO message_tags (level, tag, message_row)
    SELECT 2, msg_tag, id FROM messages ORDER BY msg_tag;

-- A deleted message (directly, by expiry, or with its conversation) leaves the index too.
CREATE TRIGGER messages_tag_delete AFTER DELETE ON messages BEGIN
    DELETE FROM message_tags WHERE level IN (0, 1, 2) AND tag = old.msg_tag;
END;
