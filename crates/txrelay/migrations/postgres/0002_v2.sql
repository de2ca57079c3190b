-- txrelay v2 schema, PostgreSQL dialect. The SQLite file makes the same changes; it has to
-- rebuild the notifications table where PostgreSQL alters it in place.

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

CREATE TABLE siwe_nonces (
    nonce          TEXT PRIMARY KEY,
    tenant         TEXT NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    used_at_ms     BIGINT
);

CREATE TABLE idempotency_keys (
    tenant          TEXT NOT NULL,
    idem_key        TEXT NOT NULL,
    request_sha256  TEXT NOT NULL,
    status          BIGINT,
    body            TEXT,
    created_at_ms   BIGINT NOT NULL,
    PRIMARY KEY (tenant, idem_key)
);

CREATE TABLE chain_heads (
    chain_id       BIGINT PRIMARY KEY,
    block_number   BIGINT NOT NULL,
    block_hash     TEXT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);

ALTER TABLE devices ADD COLUMN tenant TEXT;
CREATE INDEX devices_tenant ON devices (tenant);

ALTER TABLE device_accounts ADD COLUMN proof TEXT;
ALTER TABLE device_accounts ADD COLUMN registered_at_ms BIGINT;
CREATE INDEX device_accounts_device ON device_accounts (device);

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

ALTER TABLE notifications DROP CONSTRAINT notifications_event_id_channel_target_key;
ALTER TABLE notifications ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE notifications ADD COLUMN scheme TEXT NOT NULL DEFAULT 'txrelay-v1';
ALTER TABLE notifications ADD COLUMN included_seen_at_ms BIGINT;
CREATE UNIQUE INDEX notifications_event_target_tenant
    ON notifications (event_id, channel, target, tenant);
CREATE INDEX notifications_target ON notifications (target, state);
CREATE INDEX notifications_finished ON notifications (state, created_at_ms);
