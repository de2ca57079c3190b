//! Notifications: the outbox of results for receivers (seed ¶39-43, ¶46-47). One row per
//! (event, receiver), created in the database transaction that records the result; webhook
//! rows are claimed with a lease and POSTed, account rows are offered over the WebSocket until
//! acknowledged; rows that run out of attempts are dead letters until replayed.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};
use svckit::redact::SafeUrl;
use tracing::debug;

use super::codec::{Db, RowExt, db_text_enum, int};
use super::devices::decode_rules;
use super::params::Params;
use super::transactions::TxRecord;
use super::{HasId, Store, Tx, claim_sql, millis, q};
use crate::core::Inclusion;
use crate::error::StoreError;
use crate::event::{Event, EventStatus, event_id};
use crate::rules::{SignatureScheme, Target};

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationState {
    /// Waiting for (another) delivery attempt.
    Pending,
    /// The receiver answered 2xx, or the WebSocket client acknowledged it.
    Delivered,
    /// Out of attempts: a dead letter until replayed.
    Dead,
}

impl NotificationState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }
}

impl FromStr for NotificationState {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, StoreError> {
        match text {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "dead" => Ok(Self::Dead),
            other => Err(StoreError::Corrupt {
                what: "notification state",
                value: other.to_owned(),
            }),
        }
    }
}

db_text_enum!(NotificationState, EventStatus);

/// A claimed webhook notification.
#[derive(Debug, Clone)]
pub struct WebhookJob {
    /// Row id.
    pub id: i64,
    /// Event id (header and payload).
    pub event_id: String,
    /// Endpoint.
    pub url: String,
    /// The sealed signing secret.
    pub sealed_secret: String,
    /// How it is signed.
    pub scheme: SignatureScheme,
    /// JSON body.
    pub payload: String,
    /// This attempt's number.
    pub attempts: u32,
    /// When the result was recorded, Unix ms.
    pub created_at_ms: u64,
    /// When the relay saw the including block, Unix ms.
    pub included_seen_at_ms: Option<u64>,
}

impl FromRow<'_, AnyRow> for WebhookJob {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            event_id: row.try_get("event_id")?,
            url: row.try_get("target")?,
            sealed_secret: row
                .try_get::<Option<String>, _>("secret")?
                .unwrap_or_default(),
            scheme: row
                .try_get::<String, _>("scheme")?
                .parse()
                .unwrap_or_default(),
            payload: row.try_get("payload")?,
            attempts: row.uint("attempts")?,
            created_at_ms: row.uint("created_at_ms")?,
            included_seen_at_ms: row.opt_uint("included_seen_at_ms")?,
        })
    }
}

impl HasId for WebhookJob {
    fn id(&self) -> i64 {
        self.id
    }
}

/// The outcome of one webhook delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Answered 2xx.
    Delivered {
        /// Notification row id.
        id: i64,
        /// When, Unix ms.
        at_ms: u64,
    },
    /// Failed; retried at `retry_at_ms`, or dead-lettered when `None`.
    Failed {
        /// Notification row id.
        id: i64,
        /// Next attempt, Unix ms.
        retry_at_ms: Option<u64>,
        /// What went wrong (owner-facing: no addresses or reachability details).
        error: String,
    },
    /// Not attempted: its receiver's circuit is open. Due again at `until_ms` (or at the
    /// drain when a probe succeeds); the claim's attempt is not counted.
    Parked {
        /// Notification row id.
        id: i64,
        /// When it is due again, Unix ms.
        until_ms: u64,
    },
    /// The receiver `target`'s circuit opened: every pending, unclaimed notification of it is
    /// parked until `until_ms`.
    ParkReceiver {
        /// The receiver's webhook URL.
        target: String,
        /// When, Unix ms (claims leased past it are left alone).
        now_ms: u64,
        /// When they are due again, Unix ms.
        until_ms: u64,
    },
    /// The receiver `target` is back: every pending notification of it is due at `at_ms`. Recorded in order with the outcomes before it, so a notification parked
    /// by an outcome that was still queued when the receiver came back is drained too.
    DrainReceiver {
        /// The receiver's webhook URL.
        target: String,
        /// When, Unix ms.
        at_ms: u64,
    },
}

/// Makes a receiver's pending webhook notifications due at `$1` (the drain).
const DRAIN: &str = "UPDATE notifications SET next_attempt_at_ms = $1 WHERE target = $2 \
     AND state = 'pending' AND channel = 'webhook' AND next_attempt_at_ms > $1";

/// Parks a receiver's pending, unclaimed webhook notifications until `$1`.
const PARK: &str = "UPDATE notifications SET next_attempt_at_ms = $1 WHERE target = $2 \
     AND state = 'pending' AND channel = 'webhook' AND next_attempt_at_ms < $1 \
     AND (locked_until_ms IS NULL OR locked_until_ms < $3)";

/// A claimed WebSocket notification.
#[derive(Debug, Clone)]
pub struct AccountEvent {
    /// Row id.
    pub id: i64,
    /// Event id.
    pub event_id: String,
    /// JSON event.
    pub payload: String,
}

impl FromRow<'_, AnyRow> for AccountEvent {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            event_id: row.try_get("event_id")?,
            payload: row.try_get("payload")?,
        })
    }
}

/// A notification as listed by the API.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationRecord {
    /// Row id (the dead-letter replay id).
    pub id: i64,
    /// Event id.
    pub event_id: String,
    /// Transaction.
    pub tx_hash: B256,
    /// Event status.
    pub kind: EventStatus,
    /// `webhook` or `account`.
    pub channel: String,
    /// URL (query redacted) or account.
    pub target: String,
    /// The tenant whose device's rules named the target.
    #[serde(skip)]
    pub tenant: String,
    /// Where it stands.
    pub state: NotificationState,
    /// Attempts made.
    pub attempts: u32,
    /// Last failure.
    pub last_error: Option<String>,
    /// Created, Unix ms.
    pub created_at_ms: u64,
    /// Delivered, Unix ms.
    pub delivered_at_ms: Option<u64>,
}

impl FromRow<'_, AnyRow> for NotificationRecord {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let channel: String = row.try_get("channel")?;
        let target: String = row.try_get("target")?;
        let target = if channel == "webhook" {
            target
                .parse::<SafeUrl>()
                .map_or(target, |url| url.to_string())
        } else {
            target
        };
        Ok(Self {
            id: row.try_get("id")?,
            event_id: row.try_get("event_id")?,
            tx_hash: row.text("tx_hash")?,
            kind: row.text("kind")?,
            channel,
            target,
            tenant: row.try_get("tenant")?,
            state: row.text("state")?,
            attempts: row.uint("attempts")?,
            last_error: row.try_get("last_error")?,
            created_at_ms: row.uint("created_at_ms")?,
            delivered_at_ms: row.opt_uint("delivered_at_ms")?,
        })
    }
}

const CLAIM_WEBHOOK: (&str, &str) = claim_sql!(
    "notifications",
    "channel = 'webhook' AND state = 'pending' AND next_attempt_at_ms <= $3",
    "id, event_id, target, scheme, secret, payload, attempts, created_at_ms, included_seen_at_ms"
);

const CLAIM_PROBE: (&str, &str) = claim_sql!(
    "notifications",
    "channel = 'webhook' AND state = 'pending' AND target = $5",
    "id, event_id, target, scheme, secret, payload, attempts, created_at_ms, included_seen_at_ms"
);

const CLAIM_ACCOUNT: (&str, &str) = claim_sql!(
    "notifications",
    "channel = 'account' AND state = 'pending' AND target = $5",
    "id, event_id, payload"
);

/// `SELECT <the columns NotificationRecord is read from> FROM notifications <tail>`.
macro_rules! select_notifications {
    ($tail:literal) => {
        concat!(
            "SELECT id, event_id, tx_hash, kind, channel, target, tenant, state, attempts, last_error, ",
            "created_at_ms, delivered_at_ms FROM notifications ",
            $tail
        )
    };
}

impl Store {
    /// Claims up to `limit` due webhook notifications for `instance`, oldest first.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn claim_webhooks(
        &self,
        instance: &str,
        now_ms: u64,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<WebhookJob>, StoreError> {
        self.claim(
            CLAIM_WEBHOOK,
            "claim webhooks",
            (instance, now_ms, lease, limit),
        )
        .await
    }

    /// Marks a notification delivered.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn delivered(&self, id: i64, now_ms: u64) -> Result<(), StoreError> {
        self.record_deliveries(&[DeliveryOutcome::Delivered { id, at_ms: now_ms }])
            .await
            .map(drop)
    }

    /// Records a failed delivery: due again at `retry_at_ms`, or dead-lettered when `None`.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn delivery_failed(
        &self,
        id: i64,
        retry_at_ms: Option<u64>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.record_deliveries(&[DeliveryOutcome::Failed {
            id,
            retry_at_ms,
            error: error.to_owned(),
        }])
        .await
        .map(drop)
    }

    /// Records the outcomes of several deliveries in one database transaction, in their order
    /// (deliveries first: no other outcome touches a delivered row). Returns how many
    /// notifications the [`DeliveryOutcome::DrainReceiver`] entries made due.
    ///
    /// # Errors
    /// [`StoreError::Query`]; nothing is recorded then (the leases run out and the
    /// notifications are delivered again: at least once).
    pub async fn record_deliveries(&self, outcomes: &[DeliveryOutcome]) -> Result<u64, StoreError> {
        /// Delivered rows marked per statement (two values each).
        const DELIVERED_CHUNK: usize = 200;
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        let mut drained = 0;
        let delivered: Vec<(i64, u64)> = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                DeliveryOutcome::Delivered { id, at_ms } => Some((*id, *at_ms)),
                _ => None,
            })
            .collect();
        // The common case, one statement per chunk: each row gets its own delivery time.
        for chunk in delivered.chunks(DELIVERED_CHUNK) {
            // Each id is written (and bound) twice: in its `WHEN` and in the `IN` list.
            let mut params = Params::new(self.backend);
            let mut sql = String::from(
                "UPDATE notifications SET state = 'delivered', delivered_at_ms = CASE id",
            );
            for _ in chunk {
                sql.push_str(" WHEN ");
                params.push(&mut sql);
                sql.push_str(" THEN ");
                params.push(&mut sql);
            }
            sql.push_str(
                " END, locked_by = NULL, locked_until_ms = NULL, last_error = NULL \
                 WHERE state = 'pending' AND id IN (",
            );
            params.push_list(&mut sql, chunk.len());
            sql.push(')');
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, at_ms) in chunk {
                query = query.bind(*id).bind(int(*at_ms));
            }
            for (id, _) in chunk {
                query = query.bind(*id);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(q("record delivery"))?;
        }
        for outcome in outcomes {
            let query = match outcome {
                DeliveryOutcome::Delivered { .. } => continue,
                DeliveryOutcome::Failed {
                    id,
                    retry_at_ms,
                    error,
                } => {
                    let (state, next) = match retry_at_ms {
                        Some(at) => (NotificationState::Pending, int(*at)),
                        None => (NotificationState::Dead, 0),
                    };
                    sqlx::query(
                        "UPDATE notifications SET state = $1, next_attempt_at_ms = CASE WHEN $1 = 'pending' \
                         THEN $2 ELSE next_attempt_at_ms END, locked_by = NULL, locked_until_ms = NULL, \
                         last_error = $3 WHERE id = $4 AND state = 'pending'",
                    )
                    .bind(Db(state))
                    .bind(next)
                    .bind(error.clone())
                    .bind(*id)
                }
                DeliveryOutcome::Parked { id, until_ms } => sqlx::query(
                    "UPDATE notifications SET next_attempt_at_ms = $1, attempts = attempts - 1, \
                     locked_by = NULL, locked_until_ms = NULL WHERE id = $2 AND state = 'pending'",
                )
                .bind(int(*until_ms))
                .bind(*id),
                DeliveryOutcome::ParkReceiver {
                    target,
                    now_ms,
                    until_ms,
                } => sqlx::query(PARK)
                    .bind(int(*until_ms))
                    .bind(target.clone())
                    .bind(int(*now_ms)),
                DeliveryOutcome::DrainReceiver { target, at_ms } => {
                    drained += sqlx::query(DRAIN)
                        .bind(int(*at_ms))
                        .bind(target.clone())
                        .execute(&mut *tx)
                        .await
                        .map_err(q("drain"))?
                        .rows_affected();
                    continue;
                }
            };
            query
                .execute(&mut *tx)
                .await
                .map_err(q("record delivery"))?;
        }
        self.commit(tx).await?;
        Ok(drained)
    }

    /// Claims the oldest pending notification of the webhook `target`, due or not: the probe
    /// of an open circuit.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn claim_probe(
        &self,
        instance: &str,
        target: &str,
        now_ms: u64,
        lease: Duration,
    ) -> Result<Option<WebhookJob>, StoreError> {
        let job: Option<WebhookJob> = sqlx::query_as(self.pick(CLAIM_PROBE))
            .bind(instance)
            .bind(int(now_ms.saturating_add(millis(lease))))
            .bind(int(now_ms))
            .bind(1_i64)
            .bind(target)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("claim probe"))?;
        Ok(job)
    }

    /// Dead-letters pending webhook notifications created before `deadline_ms` (they ran out
    /// of retry time, parked or not). Returns how many.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn dead_letter_overdue(
        &self,
        deadline_ms: u64,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        let changed = sqlx::query(
            "UPDATE notifications SET state = 'dead', last_error = 'retry time used up', \
             locked_by = NULL, locked_until_ms = NULL WHERE state = 'pending' \
             AND channel = 'webhook' AND created_at_ms < $1 \
             AND (locked_until_ms IS NULL OR locked_until_ms < $2)",
        )
        .bind(int(deadline_ms))
        .bind(int(now_ms))
        .execute(&self.pool)
        .await
        .map_err(q("dead-letter overdue"))?
        .rows_affected();
        Ok(changed)
    }

    /// Claims up to `limit` pending WebSocket events for `account` for `session` until
    /// `now_ms + lease` (the acknowledgement timeout).
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn claim_account_events(
        &self,
        account: Address,
        session: &str,
        now_ms: u64,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<AccountEvent>, StoreError> {
        let mut events: Vec<AccountEvent> = sqlx::query_as(self.pick(CLAIM_ACCOUNT))
            .bind(session)
            .bind(int(now_ms.saturating_add(millis(lease))))
            .bind(int(now_ms))
            .bind(i64::from(limit))
            .bind(Db(account))
            .fetch_all(&self.pool)
            .await
            .map_err(q("claim account events"))?;
        events.sort_by_key(|e| e.id);
        Ok(events)
    }

    /// Marks the WebSocket event `event_id` for `account` delivered (the client acknowledged
    /// it). Returns whether a pending row was found.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn account_event_acked(
        &self,
        account: Address,
        event_id: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "UPDATE notifications SET state = 'delivered', delivered_at_ms = $1, locked_by = NULL, \
             locked_until_ms = NULL WHERE channel = 'account' AND target = $2 AND event_id = $3 \
             AND state = 'pending'",
        )
        .bind(int(now_ms))
        .bind(Db(account))
        .bind(event_id)
        .execute(&self.pool)
        .await
        .map_err(q("ack"))?
        .rows_affected();
        Ok(changed == 1)
    }

    /// Releases the unacknowledged events a closed WebSocket session held.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn release_session(&self, session: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notifications SET locked_by = NULL, locked_until_ms = NULL \
             WHERE locked_by = $1 AND state = 'pending'",
        )
        .bind(session)
        .execute(&self.pool)
        .await
        .map_err(q("release session"))?;
        Ok(())
    }

    /// Notifications of one transaction, or (with `hash = None`) dead letters, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn notifications(
        &self,
        hash: Option<B256>,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let query = match hash {
            Some(hash) => sqlx::query_as(select_notifications!(
                "WHERE tx_hash = $1 ORDER BY id LIMIT $2"
            ))
            .bind(Db(hash)),
            None => sqlx::query_as(select_notifications!(
                "WHERE state = 'dead' ORDER BY id LIMIT $1"
            )),
        };
        query
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(q("list notifications"))
    }

    /// Puts dead-lettered notifications back in the queue with fresh attempts: the one with
    /// row id `id`, or all when `None`. Returns how many.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn replay(&self, id: Option<i64>, now_ms: u64) -> Result<u64, StoreError> {
        let changed = sqlx::query(
            "UPDATE notifications SET state = 'pending', attempts = 0, next_attempt_at_ms = $1, \
             locked_by = NULL, locked_until_ms = NULL WHERE state = 'dead' AND ($2 = 1 OR id = $3)",
        )
        .bind(int(now_ms))
        .bind(i64::from(id.is_none()))
        .bind(id.unwrap_or(0))
        .execute(&self.pool)
        .await
        .map_err(q("replay"))?
        .rows_affected();
        debug!(replayed = changed, "dead letters replayed");
        Ok(changed)
    }

    /// Counts of broadcast jobs not yet done and notifications by state, for progress and
    /// tests: `(open_jobs, pending, delivered, dead)`.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn backlog(&self) -> Result<(u64, u64, u64, u64), StoreError> {
        let open: i64 =
            sqlx::query_scalar("SELECT COUNT(*) AS n FROM broadcast_jobs WHERE done_at_ms IS NULL")
                .fetch_one(&self.read)
                .await
                .map_err(q("backlog"))?;
        let mut counts = [0_u64; 3];
        for (slot, state) in counts.iter_mut().zip([
            NotificationState::Pending,
            NotificationState::Delivered,
            NotificationState::Dead,
        ]) {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) AS n FROM notifications WHERE state = $1")
                    .bind(Db(state))
                    .fetch_one(&self.read)
                    .await
                    .map_err(q("backlog"))?;
            *slot = u64::try_from(n).unwrap_or(0);
        }
        Ok((
            u64::try_from(open).unwrap_or(0),
            counts[0],
            counts[1],
            counts[2],
        ))
    }
}

/// What a notice says besides the transaction.
#[derive(Debug, Clone, Default)]
pub(super) struct Notice<'a> {
    /// The event status (`Mined` by default, never used so).
    pub(super) status: Option<EventStatus>,
    /// The inclusion it is about.
    pub(super) inclusion: Option<&'a Inclusion>,
    /// The receipt of a result.
    pub(super) receipt: Option<&'a crate::node::Receipt>,
    /// The revert reason of a failed result.
    pub(super) revert_reason: Option<String>,
    /// Why a rejected or stuck transaction is so.
    pub(super) error: Option<String>,
    /// The replacing transaction.
    pub(super) replaced_by: Option<B256>,
}

impl<'a> Notice<'a> {
    /// A notice of `status`.
    pub(super) fn of(status: EventStatus) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }
}

/// The event for a result of `record`.
pub(super) fn make_event(
    record: &TxRecord,
    notice: Notice<'_>,
    confirmations: u64,
    now_ms: u64,
) -> Event {
    let status = notice.status.unwrap_or(EventStatus::Mined);
    let block_hash = notice.inclusion.map(|i| i.block_hash);
    Event {
        event_id: event_id(record.chain_id, record.tx_hash, status, block_hash),
        tx_hash: record.tx_hash,
        chain_id: record.chain_id,
        status,
        block_number: notice.inclusion.map(|i| i.block_number),
        block_hash,
        gas_used: notice.inclusion.map(|i| i.gas_used),
        receipt: notice.receipt.cloned(),
        revert_reason: notice.revert_reason,
        error: notice.error,
        replaced_by: notice.replaced_by,
        sender: record.sender,
        recipient: record.recipient,
        nonce: record.nonce,
        confirmations,
        emitted_at_ms: now_ms,
    }
}

/// Inserts one notification row per target of the rules of every device that sent the
/// transaction (seed ¶41-43), per tenant: a target named by several devices of one tenant
/// gets the event once; two tenants naming one URL each get their own signed delivery.
pub(super) async fn insert_notifications(
    tx: &mut Tx<'_>,
    record: &TxRecord,
    event: &Event,
    (now_ms, seen_at_ms): (u64, Option<u64>),
) -> Result<usize, StoreError> {
    let rows = sqlx::query(
        "SELECT d.tenant AS tenant, d.rules AS rules FROM tx_devices t \
         JOIN devices d ON d.device = t.device WHERE t.tx_hash = $1 ORDER BY d.device",
    )
    .bind(Db(record.tx_hash))
    .fetch_all(&mut **tx)
    .await
    .map_err(q("rules of devices"))?;
    let mut targets: Vec<(String, Target)> = Vec::new();
    let mut seen = BTreeSet::new();
    for row in &rows {
        let tenant: Option<String> = row.try_get("tenant").map_err(q("rules of devices"))?;
        let tenant = tenant.unwrap_or_default();
        let rules: String = row.try_get("rules").map_err(q("rules of devices"))?;
        for target in decode_rules(&rules)?.targets(record.recipient) {
            if seen.insert((tenant.clone(), target.channel(), target.key())) {
                targets.push((tenant.clone(), target));
            }
        }
    }
    let payload = serde_json::to_string(event).unwrap_or_default();
    let mut created = 0;
    for (tenant, target) in targets {
        let (secret, scheme) = match &target {
            Target::Webhook {
                sealed_secret,
                scheme,
                ..
            } => (Some(sealed_secret.clone()), scheme.as_str()),
            Target::Account(_) => (None, SignatureScheme::Standard.as_str()),
        };
        created += sqlx::query(
            "INSERT INTO notifications (event_id, tx_hash, kind, channel, target, tenant, scheme, \
             secret, payload, state, next_attempt_at_ms, created_at_ms, included_seen_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $10, $11) \
             ON CONFLICT (event_id, channel, target, tenant) DO NOTHING",
        )
        .bind(&event.event_id)
        .bind(Db(record.tx_hash))
        .bind(Db(event.status))
        .bind(target.channel())
        .bind(target.key())
        .bind(&tenant)
        .bind(scheme)
        .bind(secret)
        .bind(&payload)
        .bind(int(now_ms))
        .bind(seen_at_ms.map(int))
        .execute(&mut **tx)
        .await
        .map_err(q("insert notification"))?
        .rows_affected();
    }
    Ok(usize::try_from(created).unwrap_or(usize::MAX))
}
