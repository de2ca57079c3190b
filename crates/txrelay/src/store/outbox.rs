//! Batched notification writes for a batch of tracker decisions (one block's results).
//!
//! [`super::notifications::insert_notifications`] reads the device rules of one transaction
//! and inserts its notification rows one statement at a time; for a block of a thousand
//! results that is thousands of statements through SQLite's single writer. An [`Outbox`]
//! reads the rules of every transaction of the batch at once (one query per
//! [`RULES_CHUNK`] hashes), decodes each distinct rule set once, collects the rows of every
//! event, and inserts them with multi-row statements ([`INSERT_CHUNK`] rows each) in the
//! same database transaction as the decisions.
//!
//! With a [`Lease`], the webhook rows are inserted already claimed by this instance (as
//! [`super::Store::claim_webhooks`] would leave them: `locked_by`, `locked_until_ms`,
//! `attempts = 1`) and answered as [`WebhookJob`]s, so the caller delivers them from memory
//! as soon as the transaction commits instead of claiming them again. Durability is the
//! claim's: the rows are committed before anything is sent, and a crash leaves them leased to
//! this instance, released at its restart (or due again when the lease runs out).

use std::collections::{BTreeSet, HashMap};

use alloy::primitives::B256;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::codec::{Db, RowExt, int};
use super::devices::decode_rules;
use super::notifications::WebhookJob;
use super::params::Params;
use super::transactions::TxRecord;
use super::{Backend, Tx, q};
use crate::error::StoreError;
use crate::event::{Event, EventStatus};
use crate::rules::{SignatureScheme, StoredRegistration, Target};

/// Transactions whose device rules are read per query.
const RULES_CHUNK: usize = 400;
/// Notification rows per `INSERT` statement.
const INSERT_CHUNK: usize = 200;
/// Bound values per inserted row.
const ROW_VALUES: usize = 15;

/// Who the rows of a batch (webhook notifications, first broadcast jobs) are leased to,
/// and until when (Unix ms).
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    /// The claiming instance (`locked_by`).
    pub instance: &'a str,
    /// End of the lease, Unix ms (`locked_until_ms`).
    pub until_ms: u64,
}

/// One notification row to insert.
struct NewRow {
    /// Index of the decision that caused it.
    decision: usize,
    event_id: String,
    tx_hash: B256,
    kind: EventStatus,
    channel: &'static str,
    target: String,
    tenant: String,
    scheme: SignatureScheme,
    secret: Option<String>,
    payload: String,
    seen_at_ms: Option<u64>,
}

/// The notification rows of one batch of decisions, written together (module docs).
pub(super) struct Outbox<'a> {
    /// (tenant, rules text) of the devices that sent each transaction, in device order.
    rules: HashMap<B256, Vec<(String, String)>>,
    /// Decoded rule sets by their text.
    decoded: HashMap<String, StoredRegistration>,
    rows: Vec<NewRow>,
    lease: Option<Lease<'a>>,
    backend: Backend,
}

impl<'a> Outbox<'a> {
    /// Reads the device rules of `hashes` inside `tx`.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub(super) async fn prefetch(
        tx: &mut Tx<'_>,
        backend: Backend,
        hashes: &[B256],
        lease: Option<Lease<'a>>,
    ) -> Result<Self, StoreError> {
        let mut rules: HashMap<B256, Vec<(String, String)>> = HashMap::new();
        for chunk in hashes.chunks(RULES_CHUNK) {
            let mut sql = String::from(
                "SELECT t.tx_hash AS tx_hash, d.tenant AS tenant, d.rules AS rules \
                 FROM tx_devices t JOIN devices d ON d.device = t.device WHERE t.tx_hash IN (",
            );
            Params::new(backend).push_list(&mut sql, chunk.len());
            sql.push_str(") ORDER BY t.tx_hash, d.device");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for hash in chunk {
                query = query.bind(Db(*hash));
            }
            let rows = query
                .fetch_all(&mut **tx)
                .await
                .map_err(q("rules of devices"))?;
            for row in &rows {
                let hash: B256 = row.text("tx_hash").map_err(q("rules of devices"))?;
                let tenant: Option<String> =
                    row.try_get("tenant").map_err(q("rules of devices"))?;
                let text: String = row.try_get("rules").map_err(q("rules of devices"))?;
                rules
                    .entry(hash)
                    .or_default()
                    .push((tenant.unwrap_or_default(), text));
            }
        }
        Ok(Self {
            rules,
            decoded: HashMap::new(),
            rows: Vec::new(),
            lease,
            backend,
        })
    }

    /// Adds the rows of `event` about `record` (caused by decision number `decision`): one
    /// per target of the rules of every device that sent it (seed ¶41-43), per tenant, as
    /// [`super::notifications::insert_notifications`] does.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for undecodable stored rules.
    pub(super) fn add(
        &mut self,
        decision: usize,
        record: &TxRecord,
        event: &Event,
        seen_at_ms: Option<u64>,
    ) -> Result<(), StoreError> {
        let Some(devices) = self.rules.get(&record.tx_hash) else {
            return Ok(());
        };
        let mut seen = BTreeSet::new();
        let payload = serde_json::to_string(event).unwrap_or_default();
        for (tenant, text) in devices {
            if !self.decoded.contains_key(text) {
                self.decoded.insert(text.clone(), decode_rules(text)?);
            }
            let Some(rules) = self.decoded.get(text) else {
                continue;
            };
            for target in rules.targets(record.recipient) {
                if !seen.insert((tenant.clone(), target.channel(), target.key())) {
                    continue;
                }
                let (secret, scheme) = match &target {
                    Target::Webhook {
                        sealed_secret,
                        scheme,
                        ..
                    } => (Some(sealed_secret.clone()), *scheme),
                    Target::Account(_) => (None, SignatureScheme::Standard),
                };
                self.rows.push(NewRow {
                    decision,
                    event_id: event.event_id.clone(),
                    tx_hash: record.tx_hash,
                    kind: event.status,
                    channel: target.channel(),
                    target: target.key(),
                    tenant: tenant.clone(),
                    scheme,
                    secret,
                    payload: payload.clone(),
                    seen_at_ms,
                });
            }
        }
        Ok(())
    }

    /// Inserts the collected rows inside `tx` (a row that exists already is skipped).
    /// Answers the rows created per decision (`decisions` entries) and, with a lease, the
    /// webhook rows created, claimed by the lease's instance.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub(super) async fn flush(
        self,
        tx: &mut Tx<'_>,
        decisions: usize,
        now_ms: u64,
    ) -> Result<(Vec<usize>, Vec<WebhookJob>), StoreError> {
        let mut created = vec![0_usize; decisions];
        let mut jobs = Vec::new();
        for chunk in self.rows.chunks(INSERT_CHUNK) {
            let sql = insert_sql(self.backend, chunk.len());
            // Only what tells the inserted rows apart: the rest of each job is in `chunk`.
            let sql = format!(
                "{sql} ON CONFLICT (event_id, channel, target, tenant) DO NOTHING \
                 RETURNING id, event_id, channel, target, tenant"
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for row in chunk {
                let leased = self.lease.filter(|_| row.channel == "webhook");
                query = query
                    .bind(row.event_id.clone())
                    .bind(Db(row.tx_hash))
                    .bind(Db(row.kind))
                    .bind(row.channel)
                    .bind(row.target.clone())
                    .bind(row.tenant.clone())
                    .bind(row.scheme.as_str())
                    .bind(row.secret.clone())
                    .bind(row.payload.clone())
                    .bind(int(now_ms))
                    .bind(int(now_ms))
                    .bind(row.seen_at_ms.map(int))
                    .bind(leased.map(|l| l.instance.to_owned()))
                    .bind(leased.map(|l| int(l.until_ms)))
                    .bind(i64::from(leased.is_some()));
            }
            let inserted: Vec<AnyRow> = query
                .fetch_all(&mut **tx)
                .await
                .map_err(q("insert notifications"))?;
            let by_key: HashMap<(&str, &str, &str, &str), &NewRow> = chunk
                .iter()
                .map(|r| {
                    let key = (
                        r.event_id.as_str(),
                        r.channel,
                        r.target.as_str(),
                        r.tenant.as_str(),
                    );
                    (key, r)
                })
                .collect();
            for row in &inserted {
                let text = |column: &str| -> Result<String, StoreError> {
                    row.try_get(column).map_err(q("insert notifications"))
                };
                let (event_id, channel) = (text("event_id")?, text("channel")?);
                let (target, tenant) = (text("target")?, text("tenant")?);
                let key = (
                    event_id.as_str(),
                    channel.as_str(),
                    target.as_str(),
                    tenant.as_str(),
                );
                let Some(new) = by_key.get(&key) else {
                    continue;
                };
                if let Some(slot) = created.get_mut(new.decision) {
                    *slot += 1;
                }
                if self.lease.is_some() && new.channel == "webhook" {
                    jobs.push(WebhookJob {
                        id: row.try_get("id").map_err(q("insert notifications"))?,
                        event_id: new.event_id.clone(),
                        url: new.target.clone(),
                        sealed_secret: new.secret.clone().unwrap_or_default(),
                        scheme: new.scheme,
                        payload: new.payload.clone(),
                        attempts: 1,
                        created_at_ms: now_ms,
                        included_seen_at_ms: new.seen_at_ms,
                    });
                }
            }
        }
        Ok((created, jobs))
    }
}

/// `INSERT INTO notifications (...) VALUES (...), ...` for `rows` rows of
/// [`ROW_VALUES`] placeholders each (state is the literal `'pending'`), placeholders as
/// `backend` takes them best ([`Params`]).
fn insert_sql(backend: Backend, rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO notifications (event_id, tx_hash, kind, channel, target, tenant, \
         scheme, secret, payload, state, next_attempt_at_ms, created_at_ms, \
         included_seen_at_ms, locked_by, locked_until_ms, attempts) VALUES ",
    );
    let mut params = Params::new(backend);
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        params.push_list(&mut sql, 9);
        sql.push_str(", 'pending', ");
        params.push_list(&mut sql, ROW_VALUES - 9);
        sql.push(')');
    }
    sql
}
