-- txrelay schema, SQLite dialect (the PostgreSQL file differs only in id columns).
-- Every state change of a transaction is written together with the work it causes (broadcast
-- jobs, notifications) in one database transaction: the transactional outbox.

-- Device registrations (seed ¶40): notification rules as JSON, and the accounts the device
-- sends from (the "registered" account policy, seed ¶29).
CREATE TABLE devices (
    device         TEXT PRIMARY KEY,
    rules          TEXT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);
CREATE TABLE device_accounts (
    account  TEXT NOT NULL,
    device   TEXT NOT NULL,
    PRIMARY KEY (account, device)
);

-- One row per distinct signed transaction (hash = keccak of the EIP-2718 bytes).
-- status: queued -> pending -> included -> mined | failed; rejected when no node takes it.
CREATE TABLE transactions (
    tx_hash            TEXT PRIMARY KEY,
    chain_id           BIGINT NOT NULL,
    sender             TEXT NOT NULL,
    recipient          TEXT,
    nonce              BIGINT NOT NULL,
    raw                TEXT NOT NULL,
    status             TEXT NOT NULL,
    finalized          BIGINT NOT NULL DEFAULT 0,
    accepted_at_ms     BIGINT NOT NULL,
    last_activity_ms   BIGINT NOT NULL,
    broadcast_count    BIGINT NOT NULL DEFAULT 0,
    nonce_conflicts    BIGINT NOT NULL DEFAULT 0,
    reorgs             BIGINT NOT NULL DEFAULT 0,
    block_number       BIGINT,
    block_hash         TEXT,
    gas_used           BIGINT,
    success            BIGINT,
    revert_reason      TEXT,
    error              TEXT,
    updated_at_ms      BIGINT NOT NULL
);
CREATE INDEX transactions_tracking ON transactions (chain_id, finalized, status);

-- Which device sent which hash (seed ¶41), and every submission received.
CREATE TABLE tx_devices (
    tx_hash  TEXT NOT NULL,
    device   TEXT NOT NULL,
    PRIMARY KEY (tx_hash, device)
);
CREATE TABLE submissions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_hash         TEXT NOT NULL,
    device          TEXT NOT NULL,
    idempotent      BIGINT NOT NULL,
    duplicate       BIGINT NOT NULL,
    received_at_ms  BIGINT NOT NULL
);

-- Outbox: sends to a node. reason: accepted | resubmitted | dropped | reorged.
CREATE TABLE broadcast_jobs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_hash             TEXT NOT NULL,
    chain_id            BIGINT NOT NULL,
    reason              TEXT NOT NULL,
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms  BIGINT NOT NULL,
    locked_by           TEXT,
    locked_until_ms     BIGINT,
    done_at_ms          BIGINT,
    last_error          TEXT,
    created_at_ms       BIGINT NOT NULL
);
CREATE INDEX broadcast_jobs_due ON broadcast_jobs (done_at_ms, next_attempt_at_ms);

-- Outbox: results for receivers. channel webhook (target = URL, with its secret) or account
-- (target = account address, delivered over the WebSocket). kind: the event's status (mined |
-- failed | reorged | rejected). state: pending | delivered | dead.
CREATE TABLE notifications (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id            TEXT NOT NULL,
    tx_hash             TEXT NOT NULL,
    kind                TEXT NOT NULL,
    channel             TEXT NOT NULL,
    target              TEXT NOT NULL,
    secret              TEXT,
    payload             TEXT NOT NULL,
    state               TEXT NOT NULL,
    attempts            BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms  BIGINT NOT NULL,
    locked_by           TEXT,
    locked_until_ms     BIGINT,
    last_error          TEXT,
    created_at_ms       BIGINT NOT NULL,
    delivered_at_ms     BIGINT,
    UNIQUE (event_id, channel, target)
);
CREATE INDEX notifications_due ON notifications (state, channel, next_attempt_at_ms);
CREATE INDEX notifications_tx ON notifications (tx_hash);
