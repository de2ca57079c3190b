//! Device registrations (seed ¶40): a device's notification rules and the accounts it sends
//! from (the `registered` account policy, seed ¶29).

use alloy::primitives::Address;

use super::codec::Db;
use super::{Store, q};
use crate::error::StoreError;
use crate::rules::Registration;

impl Store {
    /// Stores a device's registration, replacing the previous one (seed ¶40).
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn put_device(
        &self,
        device: &str,
        registration: &Registration,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let rules = serde_json::to_string(registration).unwrap_or_default();
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        sqlx::query(
            "INSERT INTO devices (device, rules, updated_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (device) DO UPDATE SET rules = excluded.rules, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(device)
        .bind(rules)
        .bind(super::codec::int(now_ms))
        .execute(&mut *tx)
        .await
        .map_err(q("put device"))?;
        sqlx::query("DELETE FROM device_accounts WHERE device = $1")
            .bind(device)
            .execute(&mut *tx)
            .await
            .map_err(q("put device accounts"))?;
        for account in &registration.accounts {
            sqlx::query(
                "INSERT INTO device_accounts (account, device) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(Db(*account))
            .bind(device)
            .execute(&mut *tx)
            .await
            .map_err(q("put device accounts"))?;
        }
        tx.commit().await.map_err(q("commit"))
    }

    /// A device's registration, if any.
    ///
    /// # Errors
    /// [`StoreError`]; [`StoreError::Corrupt`] for rules that do not decode.
    pub async fn device(&self, device: &str) -> Result<Option<Registration>, StoreError> {
        let rules: Option<String> =
            sqlx::query_scalar("SELECT rules FROM devices WHERE device = $1")
                .bind(device)
                .fetch_optional(&self.read)
                .await
                .map_err(q("get device"))?;
        rules.map(|text| decode_rules(&text)).transpose()
    }

    /// Whether some device registered `account`.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn account_registered(&self, account: Address) -> Result<bool, StoreError> {
        let row: Option<i64> =
            sqlx::query_scalar("SELECT 1 AS one FROM device_accounts WHERE account = $1 LIMIT 1")
                .bind(Db(account))
                .fetch_optional(&self.read)
                .await
                .map_err(q("account registered"))?;
        Ok(row.is_some())
    }
}

/// Decodes a device's stored rules.
pub(super) fn decode_rules(text: &str) -> Result<Registration, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt {
        what: "device rules",
        value: text.chars().take(80).collect(),
    })
}
