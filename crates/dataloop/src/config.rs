//! Configuration (style.md 2.4): embedded defaults (`config/default.toml`), then a file, then
//! `DATALOOP_*` environment variables, then `--set` (via [`svckit::config`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::store::Location;
pub use crate::store::S3Config;

/// The embedded default configuration text.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
/// Prefix of environment variables that override configuration keys (`DATALOOP_SCHEDULE__CRON`).
pub const ENV_PREFIX: &str = "DATALOOP_";

/// Whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Local directory holding the models, the registry, the locks and (unless `store_url` is
    /// set) the warehouse, OLAP store and file store.
    pub data_dir: PathBuf,
    /// Root of the warehouse (`<store_url>/warehouse`), OLAP store (`/olap`) and file store
    /// (`/file_store`): a local path or `s3://bucket/prefix` ([`crate::store`]); default
    /// `data_dir`.
    pub store_url: Option<String>,
    /// File-store root for ID lists and map copies (seed ¶45: AFS), a local path or
    /// `s3://bucket/prefix`; default `<store_url or data_dir>/file_store`.
    pub file_store_dir: Option<PathBuf>,
    /// Options of `s3://` stores (endpoint, region, credentials, conditional put).
    pub s3: S3Config,
    /// Listen address of `dataloop serve` (`host:port`).
    pub listen: String,
    /// `dataloop serve`: authentication and query limits.
    pub serve: ServeConfig,
    /// Scheduled trigger.
    pub schedule: ScheduleConfig,
    /// Window cutting.
    pub window: WindowConfig,
    /// Named mining rules.
    pub rules: BTreeMap<String, RuleConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("dataloop-data"),
            store_url: None,
            file_store_dir: None,
            s3: S3Config::default(),
            listen: "127.0.0.1:8095".to_owned(),
            serve: ServeConfig::default(),
            schedule: ScheduleConfig::default(),
            window: WindowConfig::default(),
            rules: BTreeMap::new(),
        }
    }
}

impl Config {
    /// Loads the embedded defaults and the layers in `sources`.
    ///
    /// # Errors
    /// [`svckit::config::ConfigError`] naming the layer and key.
    pub fn load(sources: svckit::config::Sources) -> Result<Self, svckit::config::ConfigError> {
        svckit::config::load(&sources.embedded(DEFAULT_TOML))
    }

    /// The root of the warehouse, OLAP store and file store: `store_url`, else `data_dir`.
    ///
    /// # Errors
    /// [`crate::Error::Store`] for a `store_url` that is no local path or `s3://` URL.
    pub fn stores(&self) -> crate::Result<Location> {
        match &self.store_url {
            Some(url) if !url.trim().is_empty() => Location::parse(url.trim(), &self.s3),
            _ => Ok(Location::Local(self.data_dir.clone())),
        }
    }

    /// The file-store root: `file_store_dir`, else `<stores>/file_store`.
    ///
    /// # Errors
    /// [`crate::Error::Store`] for a location that is no local path or `s3://` URL.
    pub fn file_store(&self) -> crate::Result<Location> {
        match &self.file_store_dir {
            Some(dir) => Location::parse(&dir.to_string_lossy(), &self.s3),
            None => Ok(self.stores()?.join("file_store")),
        }
    }
}

/// `dataloop serve`'s authentication and the limits of every SQL query (`/sql` and `dataloop sql`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Bearer token that `/status`, `/registry`, `/sql` and `/trigger*` require
    /// (`Authorization: Bearer <token>`), at least [`MIN_TOKEN_BYTES`] bytes. Usually set through
    /// `DATALOOP_SERVE__TOKEN`; empty means "read `token_file`". `serve` refuses to start without
    /// one. `/healthz` and `/metrics` stay open.
    pub token: svckit::redact::Secret,
    /// File holding the token (surrounding whitespace trimmed), used when `token` is empty.
    pub token_file: Option<PathBuf>,
    /// Wall-clock limit of one SQL query \[ms\]; the query is cancelled after it.
    pub query_timeout_ms: u64,
    /// Memory all running SQL queries may hold together \[MiB\] (DataFusion memory pool; no
    /// spilling to disk, so a query over it fails with a clear error).
    pub query_memory_mib: u64,
    /// Rows a query may return; a larger result is an error (add a `LIMIT`).
    pub query_max_rows: usize,
    /// SQL queries run at once over HTTP; more are answered `503` at once.
    pub max_concurrent_queries: usize,
}

/// Shortest accepted bearer token, in bytes.
pub const MIN_TOKEN_BYTES: usize = 16;

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            token: svckit::redact::Secret::default(),
            token_file: None,
            query_timeout_ms: 10_000,
            query_memory_mib: 512,
            query_max_rows: 100_000,
            max_concurrent_queries: 2,
        }
    }
}

/// The scheduled trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Cron expression with seconds: `sec min hour dom month dow [year]`, UTC.
    pub cron: String,
    /// Whether `serve` runs the scheduler.
    pub enabled: bool,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            cron: "0 0 2 * * *".to_owned(),
            enabled: true,
        }
    }
}

/// Window cutting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowConfig {
    /// Samples (10 Hz) between window starts, 1..=50.
    pub stride_steps: usize,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self { stride_steps: 10 }
    }
}

/// A named mining rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RuleConfig {
    /// What the rule selects.
    pub description: String,
    /// Boolean SQL expression over the `olap` columns with `{name}` placeholders.
    pub predicate: String,
    /// Default values of the placeholders (numbers or strings).
    pub params: BTreeMap<String, toml::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_load_and_typos_are_errors() {
        let config = Config::load(svckit::config::Sources::new()).unwrap();
        assert!(config.rules.contains_key("hard_braking"));
        assert_eq!(config.schedule.cron, "0 0 2 * * *");
        let bad =
            Config::load(svckit::config::Sources::new().overrides(&["schedule.crn=1".to_owned()]));
        assert!(bad.is_err());
    }
}
