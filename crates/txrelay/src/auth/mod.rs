//! Authentication and tenancy: who is calling, what they may do, and how often.
//!
//! - [`keys`]: bearer API keys, stored hashed.
//! - [`siwe`]: EIP-4361 messages proving an account's key (account registration, WebSocket
//!   login).
//! - [`Gate`]: checks a bearer token against the stored keys (cached for
//!   `auth.key_cache_seconds`), applies the key's token-bucket rate limit
//!   ([`crate::core::ratelimit`]) and counts open WebSocket sessions per key. Requests with an
//!   unknown key are answered from a negative cache, and database lookups for keys not in the
//!   cache are themselves rate limited, so a flood of made-up tokens costs neither node RPCs
//!   nor unbounded database reads.
//!
//! The model: an API key belongs to a tenant; a tenant owns the devices it registered first;
//! a key may read and change only its tenant's devices, submit only as them, and read only
//! the transactions they sent. Admin keys may also use the admin endpoints (dead letters,
//! replay, keys) and read everything.

pub mod keys;
pub mod siwe;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::core::ratelimit::{Admit, Quota, TokenBucket};
use crate::error::StoreError;
use crate::store::Store;
use crate::store::keys::ApiKey;

/// Most keys kept in each in-memory map (cache, buckets, negative cache); beyond it the map
/// is cleared and refilled from the database (bounded memory under key churn or floods).
const MAX_CACHED: usize = 100_000;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key used.
    pub key_id: String,
    /// Its tenant.
    pub tenant: String,
    /// Whether it is an admin key.
    pub admin: bool,
}

/// Why a request is refused before it reaches its handler.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// No bearer token, a malformed one, an unknown or revoked key, or a wrong secret.
    #[error("a valid API key is required (Authorization: Bearer txr_...)")]
    Unauthorized,
    /// The key's rate is used up (or too many unknown keys are being tried).
    #[error("rate limit exceeded; retry after {0:?}")]
    RateLimited(Duration),
    /// The key may not do this (an admin endpoint).
    #[error("this endpoint needs an admin key")]
    NotAdmin,
    /// The key has as many WebSocket sessions open as allowed.
    #[error("at most {0} WebSocket sessions per key")]
    TooManySockets(usize),
    /// Looking the key up failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Settings of the [`Gate`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateSettings {
    /// The default per-key quota.
    pub quota: Quota,
    /// Database lookups of keys not in the cache, per second, across all callers.
    pub lookup_quota: Quota,
    /// How long a looked-up key (or its absence) is trusted, milliseconds.
    pub cache_ms: u64,
    /// Open WebSocket sessions allowed per key.
    pub max_sockets: usize,
}

#[derive(Debug, Clone)]
struct Cached {
    key: Option<ApiKey>,
    fetched_at_ms: u64,
}

#[derive(Debug, Default)]
struct Maps {
    keys: HashMap<String, Cached>,
    buckets: HashMap<String, TokenBucket>,
    lookups: Option<TokenBucket>,
    sockets: HashMap<String, usize>,
}

/// Authenticates and rate-limits requests (see the module docs).
#[derive(Debug)]
pub struct Gate {
    settings: GateSettings,
    maps: Arc<Mutex<Maps>>,
}

/// Holds one WebSocket slot of a key; released on drop.
#[derive(Debug)]
pub struct SocketSlot {
    key_id: String,
    maps: Arc<Mutex<Maps>>,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut maps = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = maps.sockets.get_mut(&self.key_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                maps.sockets.remove(&self.key_id);
            }
        }
    }
}

impl Gate {
    /// A gate with `settings`.
    pub fn new(settings: GateSettings) -> Self {
        Self {
            settings,
            maps: Arc::new(Mutex::new(Maps::default())),
        }
    }

    fn quota_of(&self, key: &ApiKey) -> Quota {
        Quota {
            rate: key
                .rate_per_second
                .map_or(self.settings.quota.rate, f64::from),
            burst: key.burst.map_or(self.settings.quota.burst, f64::from),
        }
    }

    /// Checks the `Authorization` header value `header` (e.g. `Bearer txr_...`) at `now_ms`
    /// and takes one request from the key's rate.
    ///
    /// # Errors
    /// [`Denied::Unauthorized`], [`Denied::RateLimited`] or [`Denied::Store`].
    pub async fn check(
        &self,
        store: &Store,
        header: Option<&str>,
        now_ms: u64,
    ) -> Result<Caller, Denied> {
        let token = header
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .and_then(keys::parse)
            .ok_or(Denied::Unauthorized)?;
        let key = match self.cached(token.key_id, now_ms)? {
            Some(cached) => cached,
            None => {
                let key = store.api_key(token.key_id).await?;
                let mut maps = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
                if maps.keys.len() >= MAX_CACHED {
                    maps.keys.clear();
                }
                maps.keys.insert(
                    token.key_id.to_owned(),
                    Cached {
                        key: key.clone(),
                        fetched_at_ms: now_ms,
                    },
                );
                key
            }
        };
        let key = key
            .filter(|k| k.revoked_at_ms.is_none() && keys::verify(token.secret, &k.secret_sha256))
            .ok_or(Denied::Unauthorized)?;
        let quota = self.quota_of(&key);
        let mut maps = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
        if maps.buckets.len() >= MAX_CACHED {
            maps.buckets.retain(|_, b| !b.is_full(quota, now_ms));
        }
        let bucket = maps
            .buckets
            .entry(key.key_id.clone())
            .or_insert_with(|| TokenBucket::full(quota, now_ms));
        match bucket.take(quota, now_ms) {
            Admit::Yes => Ok(Caller {
                key_id: key.key_id,
                tenant: key.tenant,
                admin: key.admin,
            }),
            Admit::RetryAfter(wait) => Err(Denied::RateLimited(wait)),
        }
    }

    /// The cached lookup of `key_id` (`Some(None)`: known to be absent), or `None` when the
    /// database must be asked; a lookup takes a token from the global lookup rate.
    fn cached(&self, key_id: &str, now_ms: u64) -> Result<Option<Option<ApiKey>>, Denied> {
        let mut maps = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cached) = maps.keys.get(key_id)
            && now_ms.saturating_sub(cached.fetched_at_ms) < self.settings.cache_ms
        {
            return Ok(Some(cached.key.clone()));
        }
        let quota = self.settings.lookup_quota;
        let bucket = maps
            .lookups
            .get_or_insert_with(|| TokenBucket::full(quota, now_ms));
        match bucket.take(quota, now_ms) {
            Admit::Yes => Ok(None),
            Admit::RetryAfter(wait) => Err(Denied::RateLimited(wait)),
        }
    }

    /// Forgets the cached entry of `key_id` (after a revocation on this instance).
    pub fn forget(&self, key_id: &str) {
        self.maps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
            .remove(key_id);
    }

    /// Takes a WebSocket slot of `caller`'s key.
    ///
    /// # Errors
    /// [`Denied::TooManySockets`] when the key has `max_sockets` open.
    pub fn open_socket(&self, caller: &Caller) -> Result<SocketSlot, Denied> {
        let mut maps = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
        let count = maps.sockets.entry(caller.key_id.clone()).or_default();
        if *count >= self.settings.max_sockets {
            return Err(Denied::TooManySockets(self.settings.max_sockets));
        }
        *count += 1;
        Ok(SocketSlot {
            key_id: caller.key_id.clone(),
            maps: Arc::clone(&self.maps),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("k.db").display())
            .parse()
            .unwrap();
        let store = Store::open(&url, 1).await.unwrap();
        (dir, store)
    }

    fn gate() -> Gate {
        Gate::new(GateSettings {
            quota: Quota {
                rate: 1.0,
                burst: 3.0,
            },
            lookup_quota: Quota {
                rate: 1.0,
                burst: 2.0,
            },
            cache_ms: 10_000,
            max_sockets: 1,
        })
    }

    async fn new_key(store: &Store, tenant: &str) -> String {
        let key = keys::generate();
        store
            .create_key(&ApiKey {
                key_id: key.key_id,
                tenant: tenant.to_owned(),
                secret_sha256: key.secret_sha256,
                admin: false,
                rate_per_second: None,
                burst: None,
                label: None,
                created_at_ms: 0,
                revoked_at_ms: None,
            })
            .await
            .unwrap();
        key.token
    }

    #[tokio::test]
    async fn keys_authenticate_rate_limit_and_revoke() {
        let (_dir, store) = store().await;
        let gate = gate();
        let token = new_key(&store, "acme").await;
        let header = format!("Bearer {token}");
        let caller = gate.check(&store, Some(&header), 0).await.unwrap();
        assert_eq!(caller.tenant, "acme");
        assert!(!caller.admin);
        // Burst 3: two more pass, the fourth in the same instant is limited.
        gate.check(&store, Some(&header), 0).await.unwrap();
        gate.check(&store, Some(&header), 0).await.unwrap();
        assert!(matches!(
            gate.check(&store, Some(&header), 0).await,
            Err(Denied::RateLimited(_))
        ));
        assert!(gate.check(&store, Some(&header), 1_000).await.is_ok());
        // Wrong secret, no header, another scheme.
        let last = if token.ends_with('0') { '1' } else { '0' };
        let wrong = format!("Bearer {}{last}", &token[..token.len() - 1]);
        for bad in [Some(wrong.as_str()), None, Some("Basic abc")] {
            assert!(matches!(
                gate.check(&store, bad, 5_000).await,
                Err(Denied::Unauthorized)
            ));
        }
        // Revoked: refused once the cache entry is gone.
        let key_id = keys::parse(&token).unwrap().key_id.to_owned();
        assert!(store.revoke_key(&key_id, 6_000).await.unwrap());
        assert!(gate.check(&store, Some(&header), 6_000).await.is_ok());
        gate.forget(&key_id);
        assert!(matches!(
            gate.check(&store, Some(&header), 20_000).await,
            Err(Denied::Unauthorized)
        ));
    }

    #[tokio::test]
    async fn unknown_keys_cost_a_bounded_number_of_lookups() {
        let (_dir, store) = store().await;
        let gate = gate();
        let mut limited = 0;
        for _ in 0..10 {
            let header = format!("Bearer {}", keys::generate().token);
            match gate.check(&store, Some(&header), 0).await {
                Err(Denied::Unauthorized) => {}
                Err(Denied::RateLimited(_)) => limited += 1,
                other => panic!("{other:?}"),
            }
        }
        // Burst 2 of lookups: the other 8 made-up keys never reached the database.
        assert_eq!(limited, 8);
    }

    #[test]
    fn sockets_are_counted_per_key() {
        let gate = gate();
        let caller = Caller {
            key_id: "k".to_owned(),
            tenant: "t".to_owned(),
            admin: false,
        };
        let slot = gate.open_socket(&caller).unwrap();
        assert!(matches!(
            gate.open_socket(&caller),
            Err(Denied::TooManySockets(1))
        ));
        drop(slot);
        assert!(gate.open_socket(&caller).is_ok());
    }
}
