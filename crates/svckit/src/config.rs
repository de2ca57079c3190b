//! Layered configuration (style.md 2.4; uv's `Combine` and pingora's `ServerConf` are the
//! models).
//!
//! Layers, later ones winning key by key:
//! 1. the config type's `Default` (the embedded defaults);
//! 2. an optional embedded TOML text (a crate's `config/default.toml`, for example);
//! 3. a TOML file given by path (it must exist);
//! 4. environment variables `PREFIX_KEY`, with `__` between nested keys
//!    (`P2PLIVE_TRACKER__MAX_SUBSTREAMS=12` sets `tracker.max_substreams`);
//! 5. `--set key.path=value` overrides from the command line.
//!
//! Values from the environment and from `--set` are read as TOML values when they parse as one
//! (`12`, `true`, `[1, 2]`, `"text"`) and as plain strings otherwise.
//!
//! Put `#[serde(deny_unknown_fields)]` on every config struct: a misspelled key is then an error
//! that names the key and the layer it came from, instead of being silently ignored.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why [`load`] failed. The message names the layer (file path, environment variable prefix or
/// `--set`) and the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file named on the command line does not exist or cannot be read.
    #[error("config file `{path}` cannot be read")]
    Unreadable {
        /// The path as given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `--set` argument is not of the form `key.path=value`.
    #[error("override `{0}` is not of the form `key.path=value`")]
    BadOverride(String),
    /// A layer holds a value of the wrong type, an unknown key or malformed TOML.
    #[error("invalid configuration{}{}: {message}", key_part(.key.as_deref()), source_part(.source_name.as_deref()))]
    Invalid {
        /// The dotted key path, when the error concerns one key.
        key: Option<String>,
        /// The layer the offending value came from (a file path, `environment` or `--set`).
        source_name: Option<String>,
        /// What is wrong, as reported by the deserializer.
        message: String,
    },
}

fn key_part(key: Option<&str>) -> String {
    key.map(|k| format!(" at key `{k}`")).unwrap_or_default()
}

fn source_part(source: Option<&str>) -> String {
    source.map(|s| format!(" in {s}")).unwrap_or_default()
}

/// Where [`load`] reads its layers from. Built with [`Sources::new`] and the methods below.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    embedded: Option<&'static str>,
    file: Option<PathBuf>,
    env_prefix: Option<String>,
    overrides: Vec<String>,
}

impl Sources {
    /// No layers beyond the type's `Default`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Embedded TOML text applied over the `Default` (for example from `include_str!`).
    #[must_use]
    pub fn embedded(mut self, toml: &'static str) -> Self {
        self.embedded = Some(toml);
        self
    }

    /// A TOML file; [`load`] fails when it is missing.
    #[must_use]
    pub fn file(mut self, path: Option<&Path>) -> Self {
        self.file = path.map(Path::to_path_buf);
        self
    }

    /// Read environment variables starting with `prefix` (for example `"TXRELAY_"`); `__`
    /// separates nested keys.
    #[must_use]
    pub fn env_prefix(mut self, prefix: &str) -> Self {
        self.env_prefix = Some(prefix.to_owned());
        self
    }

    /// `key.path=value` overrides, applied last (the `--set` flag of [`crate::cli::CommonArgs`]).
    #[must_use]
    pub fn overrides(mut self, overrides: &[String]) -> Self {
        self.overrides = overrides.to_vec();
        self
    }
}

/// Loads a `T` from the layers in `sources`, in the order given in the module docs.
///
/// # Errors
/// [`ConfigError::Unreadable`] for a missing file, [`ConfigError::BadOverride`] for a malformed
/// `--set`, [`ConfigError::Invalid`] for bad TOML, a wrong type or an unknown key.
pub fn load<T>(sources: &Sources) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(text) = sources.embedded {
        figment = figment.merge(Toml::string(text));
    }
    if let Some(path) = &sources.file {
        // Figment treats a missing file as empty; a path the user typed must exist.
        fs_err::metadata(path).map_err(|source| ConfigError::Unreadable {
            path: path.clone(),
            source,
        })?;
        figment = figment.merge(Toml::file_exact(path));
    }
    if let Some(prefix) = &sources.env_prefix {
        figment = figment.merge(Env::prefixed(prefix).split("__"));
    }
    for item in &sources.overrides {
        let (key, value) = item
            .split_once('=')
            .filter(|(key, _)| !key.trim().is_empty())
            .ok_or_else(|| ConfigError::BadOverride(item.clone()))?;
        figment = figment.merge(Serialized::default(key.trim(), parse_value(value)));
    }
    figment
        .extract::<T>()
        .map_err(|error| to_config_error(&error))
}

/// Reads `text` as a TOML value when it is one, else as a string.
fn parse_value(text: &str) -> toml::Value {
    let wrapped = format!("v = {text}");
    match wrapped.parse::<toml::Table>() {
        Ok(mut table) => table
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(text.to_owned())),
        Err(_) => toml::Value::String(text.to_owned()),
    }
}

fn to_config_error(error: &figment::Error) -> ConfigError {
    let key = if error.path.is_empty() {
        None
    } else {
        // Figment prefixes the profile name ("default"); it means nothing to our users.
        let parts: Vec<&str> = error.path.iter().map(String::as_str).collect();
        let parts = match parts.split_first() {
            Some((&"default" | &"global", rest)) if !rest.is_empty() => rest.to_vec(),
            _ => parts,
        };
        Some(parts.join("."))
    };
    let source_name = error.metadata.as_ref().map(|meta| match &meta.source {
        // A file or the environment: say which.
        Some(source @ (figment::Source::File(_) | figment::Source::Custom(_))) => {
            format!("{} ({source})", meta.name)
        }
        // Code locations mean nothing to users.
        _ => meta.name.to_string(),
    });
    ConfigError::Invalid {
        key,
        source_name,
        message: error.kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_value;

    #[test]
    fn override_values_are_typed_when_they_parse() {
        for (text, expected) in [
            ("12", toml::Value::Integer(12)),
            ("true", toml::Value::Boolean(true)),
            ("1.5", toml::Value::Float(1.5)),
            ("\"quoted\"", toml::Value::String("quoted".to_owned())),
            (
                "http://127.0.0.1:8545",
                toml::Value::String("http://127.0.0.1:8545".to_owned()),
            ),
            ("", toml::Value::String(String::new())),
        ] {
            assert_eq!(parse_value(text), expected, "value {text:?}");
        }
    }
}
