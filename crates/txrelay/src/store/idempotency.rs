//! `Idempotency-Key` request headers: the first answer per (tenant, key), replayed for the
//! same request; see [`crate::api`]'s submission docs for the contract.

use std::time::Duration;

use sqlx::Row;

use super::codec::{RowExt, int};
use super::{Store, millis, q};
use crate::error::StoreError;

/// What to do with a request carrying an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// First use of the key: run the request (the key is now marked in progress).
    New,
    /// The key's first answer, for the same request body.
    Replay {
        /// Its HTTP status.
        status: u16,
        /// Its JSON body.
        body: String,
    },
    /// The key was used with another request body.
    Mismatch,
    /// The first request with the key has not answered yet.
    InProgress,
}

impl Store {
    /// Starts a request with `key` for `tenant` whose body hashes to `request_sha256`; keys
    /// older than `ttl` count as unused.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn idempotency_begin(
        &self,
        tenant: &str,
        key: &str,
        request_sha256: &str,
        now_ms: u64,
        ttl: Duration,
    ) -> Result<Begin, StoreError> {
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE tenant = $1 AND idem_key = $2 AND created_at_ms < $3",
        )
        .bind(tenant)
        .bind(key)
        .bind(int(now_ms.saturating_sub(millis(ttl))))
        .execute(&mut *tx)
        .await
        .map_err(q("expire idempotency key"))?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (tenant, idem_key, request_sha256, created_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, idem_key) DO NOTHING",
        )
        .bind(tenant)
        .bind(key)
        .bind(request_sha256)
        .bind(int(now_ms))
        .execute(&mut *tx)
        .await
        .map_err(q("begin idempotency key"))?
        .rows_affected();
        let begin = if inserted == 1 {
            Begin::New
        } else {
            let row = sqlx::query(
                "SELECT request_sha256, status, body FROM idempotency_keys \
                 WHERE tenant = $1 AND idem_key = $2",
            )
            .bind(tenant)
            .bind(key)
            .fetch_one(&mut *tx)
            .await
            .map_err(q("read idempotency key"))?;
            let stored: String = row
                .try_get("request_sha256")
                .map_err(q("read idempotency key"))?;
            let status: Option<u64> = row.opt_uint("status").map_err(q("read idempotency key"))?;
            let body: Option<String> = row.try_get("body").map_err(q("read idempotency key"))?;
            match (stored == request_sha256, status, body) {
                (false, _, _) => Begin::Mismatch,
                (true, Some(status), Some(body)) => Begin::Replay {
                    status: u16::try_from(status).unwrap_or(500),
                    body,
                },
                (true, _, _) => Begin::InProgress,
            }
        };
        self.commit(tx).await?;
        Ok(begin)
    }

    /// Keeps the first answer of `key`.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn idempotency_finish(
        &self,
        tenant: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE idempotency_keys SET status = $1, body = $2 WHERE tenant = $3 AND idem_key = $4",
        )
        .bind(i64::from(status))
        .bind(body)
        .bind(tenant)
        .bind(key)
        .execute(&self.pool)
        .await
        .map_err(q("finish idempotency key"))?;
        Ok(())
    }

    /// Forgets `key` (its request failed in a way worth retrying).
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn idempotency_abort(&self, tenant: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM idempotency_keys WHERE tenant = $1 AND idem_key = $2")
            .bind(tenant)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(q("abort idempotency key"))?;
        Ok(())
    }
}
