//! Devices (seed ¶40): each belongs to the tenant that registered it first, holds its
//! notification rules (secrets sealed) and the accounts registered to it with an EIP-4361
//! proof (the `registered` account policy, seed ¶29).

use alloy::primitives::Address;
use sqlx::Row;

use super::codec::{Db, RowExt, int};
use super::{Store, q};
use crate::error::StoreError;
use crate::rules::StoredRegistration;

/// The outcome of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutDevice {
    /// Created for the tenant, or its rules replaced.
    Stored,
    /// The device belongs to another tenant (or to none: a v1 row); nothing changed.
    OwnedByOther,
    /// The tenant has as many devices as allowed; nothing changed.
    TooMany,
}

/// A device as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Its owner (`None`: a v1 row without one).
    pub tenant: Option<String>,
    /// Its rules.
    pub rules: StoredRegistration,
    /// Accounts registered to it.
    pub accounts: Vec<Address>,
}

impl Store {
    /// Stores `rules` for `device` on behalf of `tenant`: creates the device (unless the
    /// tenant already has `max_devices`) or replaces its rules when the tenant owns it.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn put_device(
        &self,
        tenant: &str,
        device: &str,
        rules: &StoredRegistration,
        max_devices: u64,
        now_ms: u64,
    ) -> Result<PutDevice, StoreError> {
        let text = serde_json::to_string(rules).unwrap_or_default();
        let mut tx = self.pool.begin().await.map_err(q("begin"))?;
        let owner: Option<Option<String>> =
            sqlx::query_scalar("SELECT tenant FROM devices WHERE device = $1")
                .bind(device)
                .fetch_optional(&mut *tx)
                .await
                .map_err(q("device owner"))?;
        let outcome = match owner {
            Some(Some(owner)) if owner == tenant => {
                sqlx::query("UPDATE devices SET rules = $1, updated_at_ms = $2 WHERE device = $3")
                    .bind(&text)
                    .bind(int(now_ms))
                    .bind(device)
                    .execute(&mut *tx)
                    .await
                    .map_err(q("put device"))?;
                PutDevice::Stored
            }
            Some(_) => PutDevice::OwnedByOther,
            None => {
                let owned: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) AS n FROM devices WHERE tenant = $1")
                        .bind(tenant)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(q("count devices"))?;
                if u64::try_from(owned).unwrap_or(u64::MAX) >= max_devices {
                    PutDevice::TooMany
                } else {
                    // A concurrent registration of the same name by another tenant loses on
                    // the primary key (and is answered as owned by another).
                    let inserted = sqlx::query(
                        "INSERT INTO devices (device, rules, updated_at_ms, tenant) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (device) DO NOTHING",
                    )
                    .bind(device)
                    .bind(&text)
                    .bind(int(now_ms))
                    .bind(tenant)
                    .execute(&mut *tx)
                    .await
                    .map_err(q("put device"))?
                    .rows_affected();
                    if inserted == 1 {
                        PutDevice::Stored
                    } else {
                        PutDevice::OwnedByOther
                    }
                }
            }
        };
        self.commit(tx).await?;
        Ok(outcome)
    }

    /// A device with its owner, rules and accounts, if it exists.
    ///
    /// # Errors
    /// [`StoreError`]; [`StoreError::Corrupt`] for rules that do not decode.
    pub async fn device(&self, device: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let Some(row) = sqlx::query("SELECT tenant, rules FROM devices WHERE device = $1")
            .bind(device)
            .fetch_optional(&self.read)
            .await
            .map_err(q("get device"))?
        else {
            return Ok(None);
        };
        let tenant: Option<String> = row.try_get("tenant").map_err(q("get device"))?;
        let rules: String = row.try_get("rules").map_err(q("get device"))?;
        let accounts = sqlx::query(
            "SELECT account FROM device_accounts WHERE device = $1 ORDER BY registered_at_ms, account",
        )
        .bind(device)
        .fetch_all(&self.read)
        .await
        .map_err(q("device accounts"))?
        .iter()
        .map(|row| row.text("account"))
        .collect::<Result<_, _>>()
        .map_err(q("device accounts"))?;
        Ok(Some(DeviceRecord {
            tenant,
            rules: decode_rules(&rules)?,
            accounts,
        }))
    }

    /// The owner of `device`: `None` when it does not exist, `Some(None)` for a v1 row.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn device_owner(&self, device: &str) -> Result<Option<Option<String>>, StoreError> {
        sqlx::query_scalar("SELECT tenant FROM devices WHERE device = $1")
            .bind(device)
            .fetch_optional(&self.read)
            .await
            .map_err(q("device owner"))
    }

    /// Registers `account` to `device` with its EIP-4361 `proof` (message and signature),
    /// replacing an earlier proof.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn add_account(
        &self,
        device: &str,
        account: Address,
        proof: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO device_accounts (account, device, proof, registered_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (account, device) DO UPDATE \
             SET proof = excluded.proof, registered_at_ms = excluded.registered_at_ms",
        )
        .bind(Db(account))
        .bind(device)
        .bind(proof)
        .bind(int(now_ms))
        .execute(&self.pool)
        .await
        .map_err(q("add account"))?;
        Ok(())
    }

    /// Removes `account` from `device`; returns whether it was registered.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn remove_account(&self, device: &str, account: Address) -> Result<bool, StoreError> {
        let removed = sqlx::query("DELETE FROM device_accounts WHERE device = $1 AND account = $2")
            .bind(device)
            .bind(Db(account))
            .execute(&self.pool)
            .await
            .map_err(q("remove account"))?
            .rows_affected();
        Ok(removed == 1)
    }

    /// Whether `account` is registered to `device`.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn account_registered(
        &self,
        device: &str,
        account: Address,
    ) -> Result<bool, StoreError> {
        let row: Option<i64> = sqlx::query_scalar(
            "SELECT 1 AS one FROM device_accounts WHERE device = $1 AND account = $2",
        )
        .bind(device)
        .bind(Db(account))
        .fetch_optional(&self.read)
        .await
        .map_err(q("account registered"))?;
        Ok(row.is_some())
    }
}

/// Decodes a device's stored rules.
pub(super) fn decode_rules(text: &str) -> Result<StoredRegistration, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt {
        what: "device rules",
        value: text.chars().take(80).collect(),
    })
}
