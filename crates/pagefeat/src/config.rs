//! Configuration, loaded in layers by `svckit::config` (defaults, `--config` file,
//! `PAGEFEAT_*` environment variables, `--set key=value`), then validated (style.md 2.4).
//!
//! ```toml
//! [input]
//! max_bytes = 8388608
//!
//! [viewport]
//! width_px = 1280
//! height_px = 800
//! debounce_ms = 500
//!
//! [chromium]
//! program = "chromium"
//! timeout_ms = 20000
//! settle_ms = 700
//! page_deadline_ms = 5000
//! isolation = "netns"   # or "none"; netns needs root (crate::engine::isolation)
//! sandbox_uid = 65534
//! sandbox_gid = 65534
//!
//! [workers]
//! threads = 2
//! queue = 8
//!
//! [paths]
//! filter_list = "data/pages/filters/easylist.txt"
//! models_dir = "models"
//!
//! [serve]
//! listen = "127.0.0.1:7600"
//! max_concurrent = 4
//! request_deadline_ms = 10000
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::ChromiumConfig;

/// Prefix of the environment variables read as configuration, e.g.
/// `PAGEFEAT_INPUT__MAX_BYTES=1000000` sets `input.max_bytes`.
pub const ENV_PREFIX: &str = "PAGEFEAT_";

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Input limits.
    pub input: InputConfig,
    /// Viewport size and the viewport profile's debounce.
    pub viewport: ViewportConfig,
    /// The reference engine.
    pub chromium: ChromiumConfig,
    /// Background workers.
    pub workers: WorkersConfig,
    /// Files.
    pub paths: PathsConfig,
    /// The HTTP service.
    pub serve: ServeConfig,
}

/// `[input]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputConfig {
    /// Largest page accepted, bytes (default 8 MiB; 1 KiB to 256 MiB).
    pub max_bytes: usize,
}

impl Default for InputConfig {
    fn default() -> Self {
        Self {
            max_bytes: 8 * 1024 * 1024,
        }
    }
}

/// `[viewport]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ViewportConfig {
    /// Width, CSS px (200 to 10,000).
    pub width_px: u32,
    /// Height, CSS px (200 to 10,000).
    pub height_px: u32,
    /// Wait after the last trigger before a viewport snapshot, ms (seed ¶90: 200, 500 or
    /// 800; 0 to 10,000 accepted).
    pub debounce_ms: u64,
}

impl Default for ViewportConfig {
    fn default() -> Self {
        Self {
            width_px: 1280,
            height_px: 800,
            debounce_ms: 500,
        }
    }
}

/// `[workers]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersConfig {
    /// Worker threads building trees and running recognition (1 to 64).
    pub threads: usize,
    /// Snapshots that may wait in the channel before rendering blocks (1 to 1,024).
    pub queue: usize,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            threads: 2,
            queue: 8,
        }
    }
}

/// `[paths]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathsConfig {
    /// The EasyList file.
    pub filter_list: PathBuf,
    /// Where `train` writes and `detect`/`serve` read the models (`ad.json`, `soft404.json`).
    pub models_dir: PathBuf,
    /// The bundled pages (`data/pages`).
    pub pages_dir: PathBuf,
    /// The dead-link data: feature cache, hand-checked set and its pages
    /// (`data/pages/deadlinks`, see [`crate::deadlink_data`]).
    pub deadlinks_dir: PathBuf,
}

impl Default for PathsConfig {
    fn default() -> Self {
        Self {
            filter_list: PathBuf::from("data/pages/filters/easylist.txt"),
            models_dir: PathBuf::from("models"),
            pages_dir: PathBuf::from("data/pages"),
            deadlinks_dir: PathBuf::from("data/pages/deadlinks"),
        }
    }
}

/// `[serve]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Requests extracted at once; more are answered 503 with `Retry-After` (1 to 1024).
    pub max_concurrent: usize,
    /// Longest time for one request's extraction, ms; longer answers 503 (100 to 600,000).
    pub request_deadline_ms: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7600)),
            max_concurrent: 4,
            request_deadline_ms: 10_000,
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, thiserror::Error)]
#[error("configuration `{key}` = {value} is out of range ({range})")]
pub struct ConfigRangeError {
    /// The key.
    pub key: &'static str,
    /// The value given.
    pub value: String,
    /// The valid range.
    pub range: &'static str,
}

impl Config {
    /// Checks the ranges documented on each field.
    ///
    /// # Errors
    /// [`ConfigRangeError`] naming the first bad key.
    pub fn validate(&self) -> Result<(), ConfigRangeError> {
        let check = |ok: bool, key: &'static str, value: String, range: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigRangeError { key, value, range })
            }
        };
        check(
            (1024..=256 << 20).contains(&self.input.max_bytes),
            "input.max_bytes",
            self.input.max_bytes.to_string(),
            "1024..=268435456",
        )?;
        check(
            (200..=10_000).contains(&self.viewport.width_px),
            "viewport.width_px",
            self.viewport.width_px.to_string(),
            "200..=10000",
        )?;
        check(
            (200..=10_000).contains(&self.viewport.height_px),
            "viewport.height_px",
            self.viewport.height_px.to_string(),
            "200..=10000",
        )?;
        check(
            self.viewport.debounce_ms <= 10_000,
            "viewport.debounce_ms",
            self.viewport.debounce_ms.to_string(),
            "0..=10000",
        )?;
        check(
            (1..=1024).contains(&self.serve.max_concurrent),
            "serve.max_concurrent",
            self.serve.max_concurrent.to_string(),
            "1..=1024",
        )?;
        check(
            (100..=600_000).contains(&self.serve.request_deadline_ms),
            "serve.request_deadline_ms",
            self.serve.request_deadline_ms.to_string(),
            "100..=600000",
        )?;
        check(
            (1..=64).contains(&self.workers.threads),
            "workers.threads",
            self.workers.threads.to_string(),
            "1..=64",
        )?;
        check(
            (1..=1024).contains(&self.workers.queue),
            "workers.queue",
            self.workers.queue.to_string(),
            "1..=1024",
        )?;
        // Root inside the namespace would need `--no-sandbox`: the point is an unprivileged user.
        check(
            self.chromium.sandbox_uid != 0,
            "chromium.sandbox_uid",
            self.chromium.sandbox_uid.to_string(),
            "1..=4294967295 (not root)",
        )
    }

    /// (width, height) of the viewport in px.
    pub fn viewport_size(&self) -> (u32, u32) {
        (self.viewport.width_px, self.viewport.height_px)
    }
}

/// `path` as given when it exists (or is absolute), else the same relative path under the
/// workspace this crate was built in (so the bundled `data/` is found from any directory).
pub fn resolve_path(path: &std::path::Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidate = workspace.join(path);
    if candidate.exists() {
        candidate
    } else {
        path.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chromium_may_not_be_sandboxed_as_root() {
        let mut config = Config::default();
        config.validate().unwrap();
        config.chromium.sandbox_uid = 0;
        let error = config.validate().unwrap_err();
        assert_eq!(error.key, "chromium.sandbox_uid");
    }
}
