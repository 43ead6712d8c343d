-- ZenTalk relay mailbox (PostgreSQL), schema version 1.
CREATE TABLE mailbox_messages (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- arrival order
    mailbox BYTEA NOT NULL,
    message_id BYTEA NOT NULL,
    payload BYTEA NOT NULL,
    size BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    UNIQUE (mailbox, message_id)
);
CREATE INDEX mailbox_messages_fetch ON mailbox_messages (mailbox, seq);
CREATE INDEX mailbox_messages_expiry ON mailbox_messages (expires_at);

CREATE TABLE transit_receipts (
    packet_hash BYTEA PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
CREATE INDEX transit_receipts_age ON transit_receipts (seen_at);
