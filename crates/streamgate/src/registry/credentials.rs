//! Who may talk to the registry (issue 12 item 2): bearer credentials with a role and the
//! namespaces they may register in. Media servers and forwarders register with their
//! credential; the proxy and forwarders read the routes with theirs.
//!
//! A request carries `Authorization: Bearer <secret>`. No credential: 401. A credential whose
//! role or namespaces do not allow the write: 403. Secrets are compared in constant time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use svckit::redact::Secret;

use crate::error::ConfigError;

/// What a credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Register media servers (in its namespaces) and read.
    Media,
    /// Register forwarders (in its namespaces) and read.
    Forwarder,
    /// Read routes and records only (the proxy).
    Reader,
    /// Everything.
    Admin,
}

/// One credential (`[registry.credentials.<id>]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The bearer secret (at least 16 characters).
    pub secret: Secret,
    /// What it may do.
    pub role: Role,
    /// Namespaces it may register in; empty for any.
    #[serde(default)]
    pub namespaces: Vec<String>,
}

/// The kind of record a write concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A media server registration.
    Media,
    /// A forwarder registration.
    Forwarder,
}

/// The credential a request authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The credential's id.
    pub id: String,
    /// Its role.
    pub role: Role,
    /// Its namespaces (empty for any).
    pub namespaces: Vec<String>,
}

impl Principal {
    /// Whether it may register or remove a record of `kind` in `namespace`.
    pub fn may_write(&self, kind: Kind, namespace: &str) -> bool {
        let role_ok = match self.role {
            Role::Admin => true,
            Role::Media => kind == Kind::Media,
            Role::Forwarder => kind == Kind::Forwarder,
            Role::Reader => false,
        };
        role_ok && (self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace))
    }
}

/// Why a request is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No or an unknown bearer secret (401).
    #[error("a registry credential is required (Authorization: Bearer ...)")]
    Unauthenticated,
    /// The credential may not do this (403).
    #[error("credential `{id}` may not register {what} in namespace `{namespace}`")]
    Forbidden {
        /// The credential's id.
        id: String,
        /// `media servers` or `forwarders`.
        what: &'static str,
        /// The namespace.
        namespace: String,
    },
}

/// The registry's credentials; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_id: BTreeMap<String, Credential>,
    anonymous: bool,
}

/// Whether `a` equals `b`, in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Credentials {
    /// The credentials of `config`; with none and `allow_anonymous`, every request acts as
    /// an anonymous admin.
    ///
    /// # Errors
    /// [`ConfigError`] when there is no credential and anonymous access is not allowed, or a
    /// secret is shorter than 16 characters.
    pub fn new(
        by_id: &BTreeMap<String, Credential>,
        allow_anonymous: bool,
    ) -> Result<Self, ConfigError> {
        if by_id.is_empty() && !allow_anonymous {
            return Err(ConfigError::Missing {
                key: "registry.credentials (or registry.allow_anonymous = true)",
            });
        }
        for (id, credential) in by_id {
            if credential.secret.expose().len() < 16 {
                return Err(ConfigError::Invalid {
                    key: format!("registry.credentials.{id}.secret"),
                    value: "***".to_owned(),
                    reason: "must be at least 16 characters",
                });
            }
        }
        Ok(Self {
            by_id: by_id.clone(),
            anonymous: by_id.is_empty() && allow_anonymous,
        })
    }

    /// The principal of an `Authorization` header value.
    ///
    /// # Errors
    /// [`Denied::Unauthenticated`].
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, Denied> {
        if self.anonymous {
            return Ok(Principal {
                id: "anonymous".to_owned(),
                role: Role::Admin,
                namespaces: Vec::new(),
            });
        }
        let secret = authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(Denied::Unauthenticated)?;
        // Compare with every credential, so the time does not tell which one nearly matched.
        let mut found = None;
        for (id, credential) in &self.by_id {
            if constant_time_eq(credential.secret.expose().as_bytes(), secret.as_bytes()) {
                found = Some((id, credential));
            }
        }
        let (id, credential) = found.ok_or(Denied::Unauthenticated)?;
        Ok(Principal {
            id: id.clone(),
            role: credential.role,
            namespaces: credential.namespaces.clone(),
        })
    }

    /// The principal, if it may write a record of `kind` in `namespace`.
    ///
    /// # Errors
    /// [`Denied`].
    pub fn authorize_write(
        &self,
        authorization: Option<&str>,
        kind: Kind,
        namespace: &str,
    ) -> Result<Principal, Denied> {
        let principal = self.authenticate(authorization)?;
        if principal.may_write(kind, namespace) {
            Ok(principal)
        } else {
            Err(Denied::Forbidden {
                id: principal.id,
                what: match kind {
                    Kind::Media => "media servers",
                    Kind::Forwarder => "forwarders",
                },
                namespace: namespace.to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(role: Role, namespaces: &[&str]) -> Credential {
        Credential {
            secret: Secret::new(format!("secret-of-{role:?}-0123456789")),
            role,
            namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    #[test]
    fn roles_and_namespaces_decide_writes() {
        let by_id: BTreeMap<String, Credential> = [
            (
                "media-a".to_owned(),
                credential(Role::Media, &["NameSpaceA"]),
            ),
            ("fwd".to_owned(), credential(Role::Forwarder, &[])),
            ("proxy".to_owned(), credential(Role::Reader, &[])),
        ]
        .into_iter()
        .collect();
        let creds = Credentials::new(&by_id, false).unwrap();
        let bearer = |id: &str| format!("Bearer {}", by_id[id].secret.expose());
        assert_eq!(
            creds.authenticate(None),
            Err(Denied::Unauthenticated),
            "no header"
        );
        assert_eq!(
            creds.authenticate(Some("Bearer guess-guess-guess-guess")),
            Err(Denied::Unauthenticated)
        );
        // (credential, kind, namespace, allowed)
        let cases = [
            ("media-a", Kind::Media, "NameSpaceA", true),
            ("media-a", Kind::Media, "NameSpaceB", false),
            ("media-a", Kind::Forwarder, "NameSpaceA", false),
            ("fwd", Kind::Forwarder, "Anything", true),
            ("fwd", Kind::Media, "NameSpaceA", false),
            ("proxy", Kind::Media, "NameSpaceA", false),
        ];
        for (id, kind, namespace, allowed) in cases {
            let got = creds.authorize_write(Some(&bearer(id)), kind, namespace);
            assert_eq!(got.is_ok(), allowed, "{id} {kind:?} {namespace}: {got:?}");
        }
        assert!(
            creds.authenticate(Some(&bearer("proxy"))).is_ok(),
            "readers read"
        );
        assert!(Credentials::new(&BTreeMap::new(), false).is_err());
        assert!(
            Credentials::new(&BTreeMap::new(), true)
                .unwrap()
                .authenticate(None)
                .is_ok()
        );
    }
}
