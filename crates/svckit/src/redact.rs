//! Values whose `Display`/`Debug` hide credentials, so they can be logged (uv's
//! `DisplaySafeUrl` is the model; style.md 2.4).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

/// A URL that prints without its password and query string (RPC URLs often carry API keys,
/// camera URLs carry `user:password@`).
///
/// `Display` and `Debug` show `scheme://user:***@host:port/path?***`; [`SafeUrl::expose`] gives
/// the real URL for connecting.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SafeUrl(Url);

impl SafeUrl {
    /// Wraps a parsed URL.
    pub fn new(url: Url) -> Self {
        Self(url)
    }

    /// The URL with its secrets, for use on the wire only.
    pub fn expose(&self) -> &Url {
        &self.0
    }
}

impl FromStr for SafeUrl {
    type Err = url::ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Url::parse(text).map(Self)
    }
}

impl fmt::Display for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.clone();
        if shown.password().is_some() {
            // Only fails for URLs that cannot have credentials, which have no password.
            let _ = shown.set_password(Some("***"));
        }
        if shown.query().is_some() {
            shown.set_query(Some("***"));
        }
        write!(f, "{shown}")
    }
}

impl fmt::Debug for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafeUrl({self})")
    }
}

impl Serialize for SafeUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for SafeUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A secret (a webhook signing key, a password) that prints as `***`.
#[derive(Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for signing or authenticating only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_hide_passwords_and_queries() {
        for (raw, shown) in [
            (
                "rtsp://admin:hunter2@127.0.0.1:8554/main",
                "rtsp://admin:***@127.0.0.1:8554/main",
            ),
            (
                "https://node.example/v2?key=abc",
                "https://node.example/v2?***",
            ),
            ("http://127.0.0.1:8545/", "http://127.0.0.1:8545/"),
        ] {
            let url: SafeUrl = raw.parse().expect("valid url");
            assert_eq!(url.to_string(), shown);
            assert!(!format!("{url:?}").contains("hunter2"));
            assert_eq!(url.expose().as_str(), raw);
        }
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new("s3cr3t");
        assert_eq!(format!("{secret} {secret:?}"), "*** Secret(***)");
        assert_eq!(secret.expose(), "s3cr3t");
    }
}
