-- txrelay v2 schema, SQLite dialect. The PostgreSQL file makes the same changes; it alters
-- the notifications table in place where SQLite has to rebuild it.

-- API keys (bearer tokens `txr_{key_id}_{secret}`): only the SHA-256 of the secret is stored.
-- A tenant owns devices; several keys (rotation) may belong to one tenant.
CREATE TABLE api_keys (
    key_id           TEXT PRIMARY KEY,
    tenant           TEXT NOT NULL,
    secret_sha256    TEXT NOT NULL,
    admin            BIGINT NOT NULL DEFAULT 0,
    rate_per_second  BIGINT,
    burst            BIGINT,
    label            TEXT,
    created_at_ms    BIGINT NOT NULL,
    revoked_at_ms    BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant);

-- Single-use EIP-4361 nonces handed out by `POST /v1/auth/nonce`.
CREATE TABLE siwe_nonces (
    nonce          TEXT PRIMARY KEY,
    tenant         TEXT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    used_at_ms     BIGINT
);

-- `Idempotency-Key` request headers: the first answer per (tenant, key), replayed for the
-- same request body; `status` is NULL while the first request is in progress.
CREATE TABLE idempotency_keys (
    tenant          TEXT NOT NULL,
    idem_key        TEXT NOT NULL,
    request_sha256  TEXT NOT NULL,
    status          BIGINT,
    body            TEXT,
    created_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (tenant, idem_key)
);

-- The last block each chain's follower processed (number and hash), to resume after a restart.
CREATE TABLE chain_heads (
    chain_id       BIGINT PRIMARY KEY,
    block_number   BIGINT NOT NULL,
    block_hash     TEXT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);

-- Devices belong to the tenant that registered them first (NULL: a v1 row, admin only).
ALTER TABLE devices ADD COLUMN tenant TEXT;
CREATE INDEX devices_tenant ON devices (tenant);

-- Accounts are registered to a device with an EIP-4361 proof, kept for audit.
ALTER TABLE device_accounts ADD COLUMN proof TEXT;
ALTER TABLE device_accounts ADD COLUMN registered_at_ms BIGINT;
CREATE INDEX device_accounts_device ON device_accounts (device);

-- Transactions: the full receipt (JSON), the fee cap (decimal wei) for the stuck check, the
-- head when first sent, notices already sent, the expiry, the replacing transaction, and when
-- the including block was first seen (inclusion-to-delivery latency).
ALTER TABLE transactions ADD COLUMN receipt TEXT;
ALTER TABLE transactions ADD COLUMN max_fee_per_gas TEXT;
ALTER TABLE transactions ADD COLUMN sent_at_block BIGINT;
ALTER TABLE transactions ADD COLUMN stuck_notified BIGINT NOT NULL DEFAULT 0;
ALTER TABLE transactions ADD COLUMN expires_at_ms BIGINT;
ALTER TABLE transactions ADD COLUMN replaced_by TEXT;
ALTER TABLE transactions ADD COLUMN included_seen_at_ms BIGINT;
CREATE INDEX transactions_block ON transactions (chain_id, block_hash);
CREATE INDEX transactions_sender ON transactions (chain_id, sender, nonce);
CREATE INDEX transactions_finished ON transactions (finalized, updated_at_ms);

-- Notifications: per tenant (two tenants registering one URL each get their own signed
-- delivery), with the signature scheme, the secret encrypted at rest, and when the relay saw
-- the including block (inclusion-to-delivery latency).
CREATE TABLE notifications_v2 (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id            TEXT NOT NULL,
    tx_hash             TEXT NOT NULL,
    kind                TEXT NOT NULL,
    channel             TEXT NOT NULL,
    target              TEXT NOT NULL,
    tenant              TEXT NOT NULL DEFAULT '',
    scheme              TEXT NOT NULL DEFAULT 'txrelay-v1',
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
    included_seen_at_ms BIGINT,
    UNIQUE (event_id, channel, target, tenant)
);
INSERT INTO notifications_v2 (id, event_id, tx_hash, kind, channel, target, secret, payload,
    state, attempts, next_attempt_at_ms, locked_by, locked_until_ms, last_error, created_at_ms,
    delivered_at_ms)
SELECT id, event_id, tx_hash, kind, channel, target, secret, payload, state, attempts,
    next_attempt_at_ms, locked_by, locked_until_ms, last_error, created_at_ms, delivered_at_ms
FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_v2 RENAME TO notifications;
CREATE INDEX notifications_due ON notifications (state, channel, next_attempt_at_ms);
CREATE INDEX notifications_tx ON notifications (tx_hash);
CREATE INDEX notifications_target ON notifications (target, state);
CREATE INDEX notifications_finished ON notifications (state, created_at_ms);
