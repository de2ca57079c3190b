//! Inclusion updates of the `transactions` table: a tracker decision that puts a
//! transaction in a block (`Include`) or completes its confirmations (`Confirm`), written
//! only if the row is still as the follower read it (status and block hash, so a racing
//! instance or a reorg seen meanwhile wins).
//!
//! A block's decisions are written together ([`update_many`]): one `UPDATE ... FROM
//! (VALUES ...) RETURNING` per [`BATCH_ROWS`] transactions instead of one statement each,
//! which on SQLite is one hand-off to its writer thread per batch rather than per row.

use std::collections::HashSet;

use alloy::primitives::B256;
use sqlx::any::AnyRow;

use super::codec::{Db, DbText, RowExt, int};
use super::params::Params;
use super::transactions::{Decision, TxRecord, TxStatus};
use super::{Backend, Tx, q};
use crate::core::{Inclusion, Step};
use crate::error::StoreError;
use crate::node::Receipt;

/// Transactions per batched statement (13 values each).
const BATCH_ROWS: usize = 200;

/// The values of one conditional inclusion update.
#[derive(Debug, Clone)]
pub(super) struct InclusionUpdate<'a> {
    /// The status written.
    pub(super) status: TxStatus,
    /// The block written.
    pub(super) inclusion: &'a Inclusion,
    /// The receipt stored with it (kept as is when `None`).
    pub(super) receipt: Option<&'a Receipt>,
    /// When the including block was first seen, Unix ms (kept as is when `None`).
    pub(super) seen_at_ms: Option<u64>,
    /// The revert reason written.
    pub(super) revert_reason: Option<String>,
    /// Whether this inclusion follows a reorg (`reorgs` is raised by one).
    pub(super) reorged: bool,
}

/// Whether `success` is a mined or a failed result.
pub(super) fn result_status(success: bool) -> TxStatus {
    if success {
        TxStatus::Mined
    } else {
        TxStatus::Failed
    }
}

/// The inclusion update `decision` makes: `Include` and `Confirm` steps; `None` for the
/// others (and for a `Confirm` of a row without a stored inclusion).
pub(super) fn update_of<'a>(decision: &'a Decision<'_>) -> Option<InclusionUpdate<'a>> {
    match &decision.step {
        Step::Include {
            inclusion,
            reorged_from,
            confirm,
            ..
        } => Some(InclusionUpdate {
            status: if *confirm {
                result_status(inclusion.success)
            } else {
                TxStatus::Included
            },
            inclusion,
            receipt: decision.receipt.as_ref(),
            seen_at_ms: decision.seen_at_ms,
            revert_reason: if *confirm {
                decision.revert_reason.clone()
            } else {
                None
            },
            reorged: reorged_from.is_some(),
        }),
        Step::Confirm => {
            let inclusion = decision.record.inclusion.as_ref()?;
            Some(InclusionUpdate {
                status: result_status(inclusion.success),
                inclusion,
                receipt: None,
                seen_at_ms: None,
                revert_reason: decision.revert_reason.clone(),
                reorged: false,
            })
        }
        _ => None,
    }
}

/// The block hash a row must still have for an update of `record` (`''` for none).
fn old_block(record: &TxRecord) -> String {
    record
        .inclusion
        .map(|i| i.block_hash.to_text())
        .unwrap_or_default()
}

/// The receipt column's text.
fn receipt_text(receipt: Option<&Receipt>) -> Option<String> {
    receipt.map(|r| serde_json::to_string(r).unwrap_or_default())
}

/// Records `update` on `record` if the row is still as read (status and block hash);
/// answers whether it was.
///
/// # Errors
/// [`StoreError::Query`].
pub(super) async fn update_one(
    tx: &mut Tx<'_>,
    record: &TxRecord,
    update: InclusionUpdate<'_>,
    now_ms: u64,
) -> Result<bool, StoreError> {
    let changed = sqlx::query(
        "UPDATE transactions SET status = $1, block_number = $2, block_hash = $3, gas_used = $4, \
         success = $5, revert_reason = $6, reorgs = reorgs + $7, updated_at_ms = $8, \
         receipt = COALESCE($12, receipt), included_seen_at_ms = COALESCE($13, included_seen_at_ms) \
         WHERE tx_hash = $9 AND status = $10 AND COALESCE(block_hash, '') = $11",
    )
    .bind(Db(update.status))
    .bind(int(update.inclusion.block_number))
    .bind(Db(update.inclusion.block_hash))
    .bind(int(update.inclusion.gas_used))
    .bind(i64::from(update.inclusion.success))
    .bind(update.revert_reason)
    .bind(i64::from(update.reorged))
    .bind(int(now_ms))
    .bind(Db(record.tx_hash))
    .bind(Db(record.status))
    .bind(old_block(record))
    .bind(receipt_text(update.receipt))
    .bind(update.seen_at_ms.map(int))
    .execute(&mut **tx)
    .await
    .map_err(q("record inclusion"))?
    .rows_affected();
    Ok(changed == 1)
}

/// [`update_one`] for many transactions, [`BATCH_ROWS`] per statement; answers the hashes
/// of the rows changed. Each transaction may appear once (the caller writes a repeated one
/// with [`update_one`]).
///
/// # Errors
/// [`StoreError::Query`]; the caller's database transaction is then to be rolled back.
pub(super) async fn update_many(
    tx: &mut Tx<'_>,
    backend: Backend,
    updates: &[(&TxRecord, InclusionUpdate<'_>)],
    now_ms: u64,
) -> Result<HashSet<B256>, StoreError> {
    let mut changed = HashSet::with_capacity(updates.len());
    for chunk in updates.chunks(BATCH_ROWS) {
        let mut params = Params::new(backend);
        // VALUES columns are `column1..column12` on both databases (no column list on an
        // alias in SQLite): hash, status, block number, block hash, gas used, success,
        // revert reason, reorg, receipt, seen at, old status, old block hash.
        let mut sql = String::from("UPDATE transactions SET updated_at_ms = ");
        params.push(&mut sql);
        sql.push_str(
            ", status = v.column2, block_number = v.column3, block_hash = v.column4, \
             gas_used = v.column5, success = v.column6, revert_reason = v.column7, \
             reorgs = reorgs + v.column8, receipt = COALESCE(v.column9, receipt), \
             included_seen_at_ms = COALESCE(v.column10, included_seen_at_ms) FROM (VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            params.push_list(&mut sql, 12);
            sql.push(')');
        }
        sql.push_str(
            ") AS v WHERE transactions.tx_hash = v.column1 AND transactions.status = v.column11 \
             AND COALESCE(transactions.block_hash, '') = v.column12 RETURNING tx_hash",
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(int(now_ms));
        for (record, update) in chunk {
            query = query
                .bind(Db(record.tx_hash))
                .bind(Db(update.status))
                .bind(int(update.inclusion.block_number))
                .bind(Db(update.inclusion.block_hash))
                .bind(int(update.inclusion.gas_used))
                .bind(i64::from(update.inclusion.success))
                .bind(update.revert_reason.clone())
                .bind(i64::from(update.reorged))
                .bind(receipt_text(update.receipt))
                .bind(update.seen_at_ms.map(int))
                .bind(Db(record.status))
                .bind(old_block(record));
        }
        let rows: Vec<AnyRow> = query
            .fetch_all(&mut **tx)
            .await
            .map_err(q("record inclusions"))?;
        for row in &rows {
            let hash: B256 = row.text("tx_hash").map_err(q("record inclusions"))?;
            changed.insert(hash);
        }
    }
    Ok(changed)
}
