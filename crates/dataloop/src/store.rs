//! Where the warehouse, the OLAP store and the file store live (issue 13 item 7): a local
//! directory (the default) or an `s3://bucket/prefix` URL on S3 or an S3-compatible server.
//!
//! S3 goes through `object_store`'s `AmazonS3` client only (no AWS SDK). The Delta table on S3
//! uses handlers this module registers with deltalake for the `s3` scheme
//! ([`register_s3_handlers`]): an object store factory building that client and a log store
//! factory returning deltalake's default log store, which commits a version by writing its
//! `_delta_log/NNN.json` with put-if-absent (`PutMode::Create`). With S3 conditional writes
//! (`aws_conditional_put = "etag"`, `If-None-Match: *`) that put is atomic, so two writers racing
//! for one version cannot both win: the loser gets `VersionAlreadyExists` and delta-rs retries at
//! the next version. This is the set-up delta-rs documents for stores with conditional put
//! ("safe concurrent writes without DynamoDB"); the handlers refuse `aws_conditional_put =
//! "disabled"` instead of falling back to unsafe renames.
//!
//! Options come from [`S3Config`] (the `[s3]` configuration section) over the standard `AWS_*`
//! environment variables that `AmazonS3Builder::from_env` reads (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
//! `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, ...).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::{Arc, Once};

use deltalake::logstore::{
    LogStore, LogStoreFactory, ObjectStoreFactory, ObjectStoreRef, StorageConfig, default_logstore,
    logstore_factories, object_store_factories,
};
use deltalake::{DeltaResult, DeltaTableError};
use object_store::DynObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};

/// The `[s3]` configuration section: options of every `s3://` store. Unset options fall back to
/// the `AWS_*` environment variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint URL of an S3-compatible server (`http://127.0.0.1:9000`); unset: AWS.
    pub endpoint: Option<String>,
    /// Region (`us-east-1`).
    pub region: Option<String>,
    /// Allow plain HTTP endpoints (test servers only).
    pub allow_http: bool,
    /// Access key id (else `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// Secret access key (else `AWS_SECRET_ACCESS_KEY`); keep it out of shared files, set
    /// `DATALOOP_S3__SECRET_ACCESS_KEY` or `AWS_SECRET_ACCESS_KEY` instead.
    pub secret_access_key: svckit::redact::Secret,
    /// Path-style (`false`, `endpoint/bucket/key`, what most S3-compatible servers want) or
    /// virtual-hosted-style (`true`, `bucket.endpoint/key`) requests.
    pub virtual_hosted_style: bool,
    /// `etag` (the default: conditional writes, `If-None-Match: *`, which make Delta commits
    /// safe for concurrent writers). `disabled` is refused.
    pub conditional_put: String,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            allow_http: false,
            access_key_id: None,
            secret_access_key: svckit::redact::Secret::default(),
            virtual_hosted_style: false,
            conditional_put: "etag".to_owned(),
        }
    }
}

impl S3Config {
    /// The options as `object_store` / deltalake storage options (`aws_*` keys), only the ones
    /// set.
    pub fn storage_options(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        let mut set = |k: &str, v: Option<String>| {
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                out.insert(k.to_owned(), v);
            }
        };
        set("aws_endpoint", self.endpoint.clone());
        set("aws_region", self.region.clone());
        set("aws_access_key_id", self.access_key_id.clone());
        set(
            "aws_secret_access_key",
            Some(self.secret_access_key.expose().to_owned()),
        );
        set(
            "aws_virtual_hosted_style_request",
            Some(self.virtual_hosted_style.to_string()),
        );
        set("aws_conditional_put", Some(self.conditional_put.clone()));
        if self.allow_http {
            set("aws_allow_http", Some("true".to_owned()));
        }
        out
    }
}

/// A store location: a local directory or an `s3://` URL with its options.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// A local directory (made absolute by [`Location::prepare`]).
    Local(PathBuf),
    /// An `s3://bucket/prefix` URL (no trailing slash) and its storage options.
    S3 {
        /// The URL.
        url: Url,
        /// `aws_*` options ([`S3Config::storage_options`]).
        options: HashMap<String, String>,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::S3 { url, .. } => write!(f, "{url}"),
        }
    }
}

impl Location {
    /// `text` as a location: `s3://bucket[/prefix]` is S3 (with the options of `s3`), anything
    /// else a local path.
    ///
    /// # Errors
    /// [`Error::Store`] for an `s3://` URL that does not parse or has no bucket, or another
    /// URL scheme (`gs://`, `http://`, ...).
    pub fn parse(text: &str, s3: &S3Config) -> Result<Self> {
        let bad = |reason: String| Error::Store {
            location: text.to_owned(),
            reason,
        };
        if let Some((scheme, _)) = text.split_once("://") {
            if scheme != "s3" {
                return Err(bad(format!(
                    "scheme `{scheme}` is not supported (a local path or s3://bucket/prefix)"
                )));
            }
            let url = Url::parse(text).map_err(|e| bad(e.to_string()))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(bad("no bucket".to_owned()));
            }
            let trimmed = url.as_str().trim_end_matches('/').to_owned();
            let url = Url::parse(&trimmed).map_err(|e| bad(e.to_string()))?;
            return Ok(Self::S3 {
                url,
                options: s3.storage_options(),
            });
        }
        Ok(Self::Local(PathBuf::from(text)))
    }

    /// `self/child`.
    pub fn join(&self, child: &str) -> Self {
        match self {
            Self::Local(p) => Self::Local(p.join(child)),
            Self::S3 { url, options } => {
                let mut url = url.clone();
                let path = format!("{}/{child}", url.path().trim_end_matches('/'));
                url.set_path(&path);
                Self::S3 {
                    url,
                    options: options.clone(),
                }
            }
        }
    }

    /// The local directory, `None` on S3.
    pub fn local(&self) -> Option<&Path> {
        match self {
            Self::Local(p) => Some(p),
            Self::S3 { .. } => None,
        }
    }

    /// Creates a local directory and makes its path canonical; S3 locations are returned as
    /// they are (S3 has no directories).
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be created.
    pub fn prepare(&self) -> Result<Self> {
        match self {
            Self::Local(p) => {
                fs_err::create_dir_all(p).map_err(|e| Error::io(p, e))?;
                let p = p.canonicalize().map_err(|e| Error::io(p, e))?;
                Ok(Self::Local(p))
            }
            Self::S3 { .. } => Ok(self.clone()),
        }
    }

    /// The location as a URL: `file:///abs/dir/` (with the trailing slash) or the `s3://` URL.
    ///
    /// # Errors
    /// [`Error::Io`] for a relative local path (call [`Location::prepare`] first).
    pub fn url(&self) -> Result<Url> {
        match self {
            Self::Local(p) => Url::from_directory_path(p).map_err(|()| {
                Error::io(
                    p,
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an absolute path"),
                )
            }),
            Self::S3 { url, .. } => Ok(url.clone()),
        }
    }

    /// Storage options for deltalake (empty for a local directory).
    pub fn storage_options(&self) -> HashMap<String, String> {
        match self {
            Self::Local(_) => HashMap::new(),
            Self::S3 { options, .. } => options.clone(),
        }
    }

    /// The object store holding the location and the location's prefix in it: for S3 the
    /// bucket's store (rooted at the bucket, so DataFusion can be given it for `s3://bucket`)
    /// and the URL's path; for a local directory a store rooted at the directory and an empty
    /// prefix.
    ///
    /// # Errors
    /// [`Error::Store`] when the S3 options are invalid; [`Error::ObjectStore`] for a local
    /// directory that cannot be opened.
    pub fn object_store(&self) -> Result<(Arc<DynObjectStore>, StorePath)> {
        match self {
            Self::Local(p) => Ok((
                Arc::new(LocalFileSystem::new_with_prefix(p)?),
                StorePath::default(),
            )),
            Self::S3 { url, options } => {
                let store = s3_store(url, options).map_err(|e| Error::Store {
                    location: url.to_string(),
                    reason: e.to_string(),
                })?;
                let prefix = StorePath::from_url_path(url.path()).map_err(|e| Error::Store {
                    location: url.to_string(),
                    reason: e.to_string(),
                })?;
                Ok((store, prefix))
            }
        }
    }

    /// The `s3://bucket` URL of the bucket, `None` for a local directory.
    pub fn bucket_url(&self) -> Option<Url> {
        match self {
            Self::Local(_) => None,
            Self::S3 { url, .. } => Url::parse(&format!("s3://{}", url.host_str()?)).ok(),
        }
    }
}

/// The `AmazonS3` store of the bucket of `url`: `AWS_*` environment variables, then the `aws_*`
/// (or bare) keys of `options`; conditional put `etag` unless set.
fn s3_store(url: &Url, options: &HashMap<String, String>) -> DeltaResult<Arc<DynObjectStore>> {
    let mut builder = AmazonS3Builder::from_env()
        .with_url(url.as_str())
        .with_config(AmazonS3ConfigKey::ConditionalPut, "etag");
    for (k, v) in options {
        if let Ok(key) = AmazonS3ConfigKey::from_str(&k.to_ascii_lowercase()) {
            builder = builder.with_config(key, v);
        }
    }
    if conditional_put_disabled(options) {
        return Err(DeltaTableError::Generic(format!(
            "{url}: aws_conditional_put = disabled is refused: Delta commits on S3 need conditional writes (etag) to be safe for concurrent writers"
        )));
    }
    Ok(Arc::new(builder.build()?))
}

fn conditional_put_disabled(options: &HashMap<String, String>) -> bool {
    options.iter().any(|(k, v)| {
        matches!(
            k.to_ascii_lowercase().as_str(),
            "aws_conditional_put" | "conditional_put"
        ) && v.trim() != "etag"
    })
}

/// deltalake's handlers of the `s3` scheme (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
struct S3Handlers;

impl ObjectStoreFactory for S3Handlers {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, StorePath)> {
        let store = s3_store(url, &config.raw)?;
        let prefix = StorePath::from_url_path(url.path())?;
        Ok((store, prefix))
    }
}

impl LogStoreFactory for S3Handlers {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> DeltaResult<Arc<dyn LogStore>> {
        if conditional_put_disabled(&options.raw) {
            return Err(DeltaTableError::Generic(format!(
                "{location}: aws_conditional_put = disabled is refused (unsafe for concurrent writers)"
            )));
        }
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// Registers [`S3Handlers`] for `s3://` with deltalake (once per process).
pub fn register_s3_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Ok(scheme) = Url::parse("s3://") {
            object_store_factories().insert(scheme.clone(), Arc::new(S3Handlers));
            logstore_factories().insert(scheme, Arc::new(S3Handlers));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_join_and_refuse() {
        let s3 = S3Config {
            endpoint: Some("http://127.0.0.1:9".to_owned()),
            ..S3Config::default()
        };
        let loc = Location::parse("s3://bucket/some/prefix/", &s3).unwrap();
        let wh = loc.join("warehouse");
        assert_eq!(wh.to_string(), "s3://bucket/some/prefix/warehouse");
        assert_eq!(wh.bucket_url().unwrap().as_str(), "s3://bucket");
        assert_eq!(
            wh.storage_options()["aws_endpoint"],
            "http://127.0.0.1:9".to_owned()
        );
        let (_, prefix) = wh.object_store().unwrap();
        assert_eq!(prefix.as_ref(), "some/prefix/warehouse");
        assert!(matches!(
            Location::parse("gs://b/x", &s3),
            Err(Error::Store { .. })
        ));
        assert_eq!(
            Location::parse("rel/dir", &s3).unwrap(),
            Location::Local(PathBuf::from("rel/dir"))
        );
        let unsafe_put = S3Config {
            conditional_put: "disabled".to_owned(),
            ..s3
        };
        let loc = Location::parse("s3://bucket/x", &unsafe_put).unwrap();
        assert!(matches!(loc.object_store(), Err(Error::Store { .. })));
    }
}
