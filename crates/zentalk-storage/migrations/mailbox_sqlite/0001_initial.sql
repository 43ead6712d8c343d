-- ZenTalk relay mailbox (SQLite), schema version 1.
CREATE TABLE mailbox_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order; never reused
    mailbox BLOB NOT NULL,
    message_id BLOB NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    UNIQUE (mailbox, message_id)
);
CREATE INDEX mailbox_messages_fetch ON mailbox_messages (mailbox, seq);
CREATE INDEX mailbox_messages_expiry ON mailbox_messages (expires_at);

-- Store-nothing relays: one row per forwarded packet, hash only.
CREATE TABLE transit_receipts (
    packet_hash BLOB PRIMARY KEY,
    seen_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX transit_receipts_age ON transit_receipts (seen_at);
