-- ZenTalk client store, schema version 3: the conversation-page index leaves `messages`.
--
-- `messages (conversation_id, timestamp)` made every batch dirty the tail page of each
-- conversation it touched: ~630 of the ~850 pages a batch of 1,000 messages spread over 1,000
-- conversations wrote to the WAL. Version 3 keeps that index in `message_pages`, in two
-- levels like `message_tags` (0002): new entries go into level 0, which stays small; when it
-- outgrows its capacity it is merged, in (conversation, timestamp) order, into level 1, so each
-- conversation's tail page is rewritten once per merge instead of once per batch. A page query
-- reads the newest entries of both levels and merges them (docs/protocol/zentalk-storage.md
-- §1.3).
--
-- Without an index on messages.conversation_id, the foreign key from messages to
-- conversations would make deleting a conversation scan every message, so it is replaced by
-- the store's own check (an insert verifies its conversations inside the transaction) and a
-- trigger that deletes a conversation's messages through `message_pages`. SQLite cannot drop a
-- foreign key, so `messages` is rebuilt as in 0002 (with `message_edits` and `reactions`,
-- whose foreign keys a rename inside this transaction re-points).

DROP TRIGGER messages_tag_delete;
DROP INDEX messages_page;
DROP INDEX messages_starred;
DROP INDEX messages_expiry;
ALTER TABLE messages RENAME TO messages_v2;

CREATE TABLE messages (
    id INTEGER PRIMARY KEY,               -- local row id, allocated increasing by the store
    conversation_id BLOB NOT NULL,        -- conversations.id (checked by the store; see above)
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
    FROM messages_v2 ORDER BY id;

CREATE TABLE message_edits_v3 (
    message_row INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    edit_no INTEGER NOT NULL,
    edited_at INTEGER NOT NULL,
    content_enc BLOB NOT NULL,            -- the content before this edit
    PRIMARY KEY (message_row, edit_no)
) WITHOUT ROWID;
INSERT INTO message_edits_v3 SELECT message_row, edit_no, edited_at, content_enc FROM message_edits;
DROP TABLE message_edits;
ALTER TABLE message_edits_v3 RENAME TO message_edits;

CREATE TABLE reactions_v3 (
    message_row INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    reactor_tag BLOB NOT NULL,            -- blind index of the reacting address
    reactor_enc BLOB NOT NULL,
    reaction_enc BLOB NOT NULL,
    reacted_at INTEGER NOT NULL,
    PRIMARY KEY (message_row, reactor_tag)
) WITHOUT ROWID;
INSERT INTO reactions_v3 SELECT message_row, reactor_tag, reactor_enc, reaction_enc, reacted_at FROM reactions;
DROP TABLE reactions;
ALTER TABLE reactions_v3 RENAME TO reactions;

DROP TABLE messages_v2;

CREATE INDEX messages_starred ON messages (conversation_id, timestamp) WHERE is_starred = 1;
CREATE INDEX messages_expiry ON messages (expires_at) WHERE expires_at IS NOT NULL;

-- The conversation-page index, in levels 0 (newest, small) and 1 (unbounded).
CREATE TABLE message_pages (
    level INTEGER NOT NULL CHECK (level BETWEEN 0 AND 1),
    conversation_id BLOB NOT NULL,        -- = messages.conversation_id
    timestamp INTEGER NOT NULL,           -- = messages.timestamp
    message_row INTEGER NOT NULL,         -- = messages.id
    PRIMARY KEY (level, conversation_id, timestamp, message_row)
) WITHOUT ROWID;
INSERT INTO message_pages (level, conversation_id, timestamp, message_row)
    SELECT 1, conversation_id, timestamp, id FROM messages ORDER BY conversation_id, timestamp, id;

-- A deleted message (directly, by expiry, or with its conversation) leaves both indexes.
CREATE TRIGGER messages_index_delete AFTER DELETE ON messages BEGIN
    DELETE FROM message_tags WHERE level IN (0, 1, 2) AND tag = old.msg_tag;
    DELETE FROM message_pages WHERE level IN (0, 1) AND conversation_id = old.conversation_id
        AND timestamp = old.timestamp AND message_row = old.id;
END;

-- A deleted conversation takes its messages with it (what the foreign key's cascade did).
CREATE TRIGGER conversations_messages_delete AFTER DELETE ON conversations BEGIN
    DELETE FROM messages WHERE id IN (SELECT message_row FROM message_pages
        WHERE level IN (0, 1) AND conversation_id = old.id);
END;
