//! API keys (stored as the SHA-256 of their secret, see [`crate::auth::keys`]) and the
//! single-use EIP-4361 nonces handed out for account registration.

use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use super::codec::{RowExt, int};
use super::{Store, q};
use crate::error::StoreError;

/// A stored API key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKey {
    /// The public key id (the token's middle part).
    pub key_id: String,
    /// The tenant owning it (and its devices).
    pub tenant: String,
    /// SHA-256 of the secret, hex (never shown by the API).
    #[serde(skip)]
    pub secret_sha256: String,
    /// Whether it may use the admin endpoints.
    pub admin: bool,
    /// Its own request rate, per second (`None`: the configured default).
    pub rate_per_second: Option<u32>,
    /// Its own burst (`None`: the configured default).
    pub burst: Option<u32>,
    /// A free-text label.
    pub label: Option<String>,
    /// Created, Unix ms.
    pub created_at_ms: u64,
    /// Revoked, Unix ms (`None`: valid).
    pub revoked_at_ms: Option<u64>,
}

impl FromRow<'_, AnyRow> for ApiKey {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let small = |v: Option<u64>| v.map(|v| u32::try_from(v).unwrap_or(u32::MAX));
        Ok(Self {
            key_id: row.try_get("key_id")?,
            tenant: row.try_get("tenant")?,
            secret_sha256: row.try_get("secret_sha256")?,
            admin: row.flag("admin")?,
            rate_per_second: small(row.opt_uint("rate_per_second")?),
            burst: small(row.opt_uint("burst")?),
            label: row.try_get("label")?,
            created_at_ms: row.uint("created_at_ms")?,
            revoked_at_ms: row.opt_uint("revoked_at_ms")?,
        })
    }
}

/// `SELECT <ApiKey columns> FROM api_keys <tail>`.
macro_rules! select_keys {
    ($tail:literal) => {
        concat!(
            "SELECT key_id, tenant, secret_sha256, admin, rate_per_second, burst, label, ",
            "created_at_ms, revoked_at_ms FROM api_keys ",
            $tail
        )
    };
}

impl Store {
    /// Stores a new key.
    ///
    /// # Errors
    /// [`StoreError::Query`] (also for a key id that exists: ids are random, 48 bits).
    pub async fn create_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (key_id, tenant, secret_sha256, admin, rate_per_second, burst, \
             label, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.key_id)
        .bind(&key.tenant)
        .bind(&key.secret_sha256)
        .bind(i64::from(key.admin))
        .bind(key.rate_per_second.map(i64::from))
        .bind(key.burst.map(i64::from))
        .bind(&key.label)
        .bind(int(key.created_at_ms))
        .execute(&self.pool)
        .await
        .map_err(q("create key"))?;
        Ok(())
    }

    /// The key `key_id`, revoked or not.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn api_key(&self, key_id: &str) -> Result<Option<ApiKey>, StoreError> {
        sqlx::query_as(select_keys!("WHERE key_id = $1"))
            .bind(key_id)
            .fetch_optional(&self.read)
            .await
            .map_err(q("get key"))
    }

    /// Every key, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        sqlx::query_as(select_keys!("ORDER BY created_at_ms, key_id"))
            .fetch_all(&self.read)
            .await
            .map_err(q("list keys"))
    }

    /// Revokes `key_id`; returns whether a valid key was revoked.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn revoke_key(&self, key_id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "UPDATE api_keys SET revoked_at_ms = $1 WHERE key_id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(int(now_ms))
        .bind(key_id)
        .execute(&self.pool)
        .await
        .map_err(q("revoke key"))?
        .rows_affected();
        Ok(changed == 1)
    }

    /// Records a sign-in nonce issued to `tenant`, valid until `expires_at_ms`.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn issue_nonce(
        &self,
        tenant: &str,
        nonce: &str,
        expires_at_ms: u64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO siwe_nonces (nonce, tenant, expires_at_ms) VALUES ($1, $2, $3)")
            .bind(nonce)
            .bind(tenant)
            .bind(int(expires_at_ms))
            .execute(&self.pool)
            .await
            .map_err(q("issue nonce"))?;
        Ok(())
    }

    /// Uses up `nonce` for `tenant`: true exactly once, while it has not expired.
    ///
    /// # Errors
    /// [`StoreError::Query`].
    pub async fn consume_nonce(
        &self,
        tenant: &str,
        nonce: &str,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "UPDATE siwe_nonces SET used_at_ms = $1 WHERE nonce = $2 AND tenant = $3 \
             AND used_at_ms IS NULL AND expires_at_ms > $1",
        )
        .bind(int(now_ms))
        .bind(nonce)
        .bind(tenant)
        .execute(&self.pool)
        .await
        .map_err(q("consume nonce"))?
        .rows_affected();
        Ok(changed == 1)
    }
}
