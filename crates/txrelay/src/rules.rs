//! Notification rules a device registers in advance (seed ¶40-43) and the choice of receivers
//! for one result.
//!
//! Seed ¶43 gives the cases: device a always sends to account 2 of device b, so it registers
//! device b as the receiver (a **fixed** receiver); device a sends to accounts 2, 3 and 4 of
//! devices b, c and d, so it registers a receiver **per recipient account**; or it asks that
//! each result go **to the recipient account** itself, whoever that is (the wildcard),
//! delivered over the WebSocket to whoever has signed in as that account.
//!
//! [`Registration`] is what the API takes and shows (secrets in the clear on the way in,
//! masked on the way out); [`StoredRegistration`] is what the database holds, every secret
//! sealed by [`crate::secrets::SecretBox`].

use std::collections::BTreeSet;

use alloy::primitives::Address;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use svckit::redact::{SafeUrl, Secret};

use crate::secrets::SecretBox;

/// Smallest accepted `txrelay-v1` secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// Prefix of Standard Webhooks secrets.
pub const WHSEC_PREFIX: &str = "whsec_";
/// Key sizes Standard Webhooks allows, in bytes (after base64 decoding).
pub const STANDARD_KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// How deliveries to a receiver are signed.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum SignatureScheme {
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`)
    /// with a `whsec_` secret (the default).
    #[default]
    #[serde(rename = "standard")]
    Standard,
    /// The relay's v1 headers (`X-Txrelay-Event-Id`, `X-Txrelay-Timestamp`,
    /// `X-Txrelay-Signature: v1=<hex>`), any secret of 16 bytes or more.
    #[serde(rename = "txrelay-v1")]
    TxrelayV1,
}

impl SignatureScheme {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::TxrelayV1 => "txrelay-v1",
        }
    }
}

impl std::str::FromStr for SignatureScheme {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "standard" => Ok(Self::Standard),
            "txrelay-v1" => Ok(Self::TxrelayV1),
            _ => Err(()),
        }
    }
}

/// A webhook receiver: where results are POSTed and how they are signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    /// The endpoint (http or https, no credentials).
    pub url: SafeUrl,
    /// The signing secret. For `standard`: `whsec_` + base64 of 24..=64 bytes; omitted, the
    /// relay generates one and shows it once in the answer. For `txrelay-v1`: at least
    /// [`MIN_SECRET_LEN`] bytes, required.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// The signature scheme (default `standard`).
    #[serde(default)]
    pub scheme: SignatureScheme,
}

/// "Results of transactions to `account` go to `receiver`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientRule {
    /// The recipient account (the transaction's `to`).
    pub account: Address,
    /// Its receiver.
    pub receiver: Receiver,
}

/// The body of `PUT /v1/devices/{device}/notifications`: a device's rules. (The accounts a
/// device sends from are registered one by one with a signature,
/// `POST /v1/devices/{device}/accounts`.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Registration {
    /// Receivers of every result of this device's transactions.
    pub fixed: Vec<Receiver>,
    /// Receivers per recipient account.
    pub by_recipient: Vec<RecipientRule>,
    /// Also deliver each result to the recipient account's WebSocket session(s).
    pub to_recipient_account: bool,
}

/// A receiver as stored: its secret sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredReceiver {
    /// The endpoint.
    pub url: String,
    /// The sealed secret (see [`SecretBox`]).
    pub sealed_secret: String,
    /// The signature scheme.
    pub scheme: SignatureScheme,
}

/// A recipient rule as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRule {
    /// The recipient account.
    pub account: Address,
    /// Its receiver.
    pub receiver: StoredReceiver,
}

/// A registration as stored in `devices.rules`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRegistration {
    /// Fixed receivers.
    pub fixed: Vec<StoredReceiver>,
    /// Receivers per recipient.
    pub by_recipient: Vec<StoredRule>,
    /// The wildcard.
    pub to_recipient_account: bool,
}

/// One place a result goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A webhook POST.
    Webhook {
        /// Endpoint.
        url: String,
        /// The sealed signing secret.
        sealed_secret: String,
        /// How it is signed.
        scheme: SignatureScheme,
    },
    /// The WebSocket session of whoever is signed in as this account.
    Account(Address),
}

impl Target {
    /// The outbox channel name: `webhook` or `account`.
    pub fn channel(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::Account(_) => "account",
        }
    }

    /// The outbox target: the URL or the lower-case 0x account.
    pub fn key(&self) -> String {
        match self {
            Self::Webhook { url, .. } => url.clone(),
            Self::Account(account) => format!("{account:#x}"),
        }
    }
}

/// A registration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// A receiver URL is not plain http(s) without credentials.
    #[error("receiver URL `{url}` must be http(s)://host[:port]/path without user or password")]
    BadUrl {
        /// The URL (redacted).
        url: String,
    },
    /// A `txrelay-v1` secret is missing or shorter than [`MIN_SECRET_LEN`].
    #[error("the secret of receiver `{url}` must be at least {MIN_SECRET_LEN} bytes")]
    ShortSecret {
        /// The receiver URL (redacted).
        url: String,
    },
    /// A `standard` secret is not `whsec_` + base64 of 24..=64 bytes.
    #[error(
        "the secret of receiver `{url}` must be `whsec_` + base64 of 24 to 64 bytes (or omitted)"
    )]
    BadStandardSecret {
        /// The receiver URL (redacted).
        url: String,
    },
    /// The same recipient account has two rules.
    #[error("recipient `{account}` has more than one rule")]
    DuplicateRecipient {
        /// The account.
        account: Address,
    },
    /// More receivers than `limits.max_receivers_per_device`.
    #[error("{count} receivers; at most {max} per device")]
    TooManyReceivers {
        /// Receivers in the registration.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// The HMAC key of a Standard Webhooks secret (`whsec_` + base64), if it is one.
pub fn standard_key(secret: &str) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix(WHSEC_PREFIX)?;
    STANDARD
        .decode(b64)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64))
        .ok()
        .filter(|key| STANDARD_KEY_BYTES.contains(&key.len()))
}

/// A fresh Standard Webhooks secret: `whsec_` + base64 of 32 random bytes.
pub fn generate_standard_secret() -> String {
    format!(
        "{WHSEC_PREFIX}{}",
        STANDARD.encode(rand::random::<[u8; 32]>())
    )
}

impl Receiver {
    fn check(&self) -> Result<(), RuleError> {
        let url = self.url.expose();
        if !matches!(url.scheme(), "http" | "https")
            || url.host_str().is_none()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(RuleError::BadUrl {
                url: self.url.to_string(),
            });
        }
        match (self.scheme, &self.secret) {
            (SignatureScheme::Standard, None) => Ok(()),
            (SignatureScheme::Standard, Some(secret)) => standard_key(secret.expose())
                .map(drop)
                .ok_or_else(|| RuleError::BadStandardSecret {
                    url: self.url.to_string(),
                }),
            (SignatureScheme::TxrelayV1, Some(secret))
                if secret.expose().len() >= MIN_SECRET_LEN =>
            {
                Ok(())
            }
            (SignatureScheme::TxrelayV1, _) => Err(RuleError::ShortSecret {
                url: self.url.to_string(),
            }),
        }
    }
}

impl Registration {
    /// Every receiver, fixed ones first.
    pub fn receivers(&self) -> impl Iterator<Item = &Receiver> {
        self.fixed
            .iter()
            .chain(self.by_recipient.iter().map(|rule| &rule.receiver))
    }

    /// Checks receivers and rules against the limit of `max_receivers` per device.
    ///
    /// # Errors
    /// The first [`RuleError`].
    pub fn validate(&self, max_receivers: usize) -> Result<(), RuleError> {
        let count = self.receivers().count();
        if count > max_receivers {
            return Err(RuleError::TooManyReceivers {
                count,
                max: max_receivers,
            });
        }
        for receiver in self.receivers() {
            receiver.check()?;
        }
        let mut seen = BTreeSet::new();
        for rule in &self.by_recipient {
            if !seen.insert(rule.account) {
                return Err(RuleError::DuplicateRecipient {
                    account: rule.account,
                });
            }
        }
        Ok(())
    }

    /// Gives every `standard` receiver without a secret a generated one (shown once, in the
    /// answer to the registration).
    pub fn fill_secrets(&mut self) {
        let receivers = self
            .fixed
            .iter_mut()
            .chain(self.by_recipient.iter_mut().map(|rule| &mut rule.receiver));
        for receiver in receivers {
            if receiver.secret.is_none() && receiver.scheme == SignatureScheme::Standard {
                receiver.secret = Some(Secret::new(generate_standard_secret()));
            }
        }
    }

    /// Where the result of a transaction to `recipient` goes, as outbox target keys (URLs and
    /// lower-case accounts): what [`StoredRegistration::targets`] of the stored form picks.
    pub fn target_keys(&self, recipient: Option<Address>) -> BTreeSet<String> {
        let mut keys: BTreeSet<String> = self
            .fixed
            .iter()
            .map(|r| r.url.expose().to_string())
            .collect();
        if let Some(recipient) = recipient {
            keys.extend(
                self.by_recipient
                    .iter()
                    .filter(|rule| rule.account == recipient)
                    .map(|rule| rule.receiver.url.expose().to_string()),
            );
            if self.to_recipient_account {
                keys.insert(format!("{recipient:#x}"));
            }
        }
        keys
    }

    /// The stored form, every secret sealed with `secrets`.
    pub fn sealed(&self, secrets: &SecretBox) -> StoredRegistration {
        let seal = |r: &Receiver| StoredReceiver {
            url: r.url.expose().to_string(),
            sealed_secret: secrets.seal(r.secret.as_ref().map_or("", |s| s.expose())),
            scheme: r.scheme,
        };
        StoredRegistration {
            fixed: self.fixed.iter().map(seal).collect(),
            by_recipient: self
                .by_recipient
                .iter()
                .map(|rule| StoredRule {
                    account: rule.account,
                    receiver: seal(&rule.receiver),
                })
                .collect(),
            to_recipient_account: self.to_recipient_account,
        }
    }
}

impl StoredRegistration {
    /// Every receiver URL.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.fixed
            .iter()
            .chain(self.by_recipient.iter().map(|rule| &rule.receiver))
            .map(|r| r.url.as_str())
    }

    /// Where the result of a transaction to `recipient` (`None`: contract creation) goes
    /// (seed ¶43): the fixed receivers, the recipient's receiver, and the recipient account
    /// itself when the wildcard is set. Sorted, without repeats.
    pub fn targets(&self, recipient: Option<Address>) -> Vec<Target> {
        let webhook = |receiver: &StoredReceiver| Target::Webhook {
            url: receiver.url.clone(),
            sealed_secret: receiver.sealed_secret.clone(),
            scheme: receiver.scheme,
        };
        let mut targets: BTreeSet<Target> = self.fixed.iter().map(webhook).collect();
        if let Some(recipient) = recipient {
            targets.extend(
                self.by_recipient
                    .iter()
                    .filter(|rule| rule.account == recipient)
                    .map(|rule| webhook(&rule.receiver)),
            );
            if self.to_recipient_account {
                targets.insert(Target::Account(recipient));
            }
        }
        // One delivery per URL even when two rules name it (with different secrets).
        let mut urls = BTreeSet::new();
        targets
            .into_iter()
            .filter(|t| match t {
                Target::Webhook { url, .. } => urls.insert(url.clone()),
                Target::Account(_) => true,
            })
            .collect()
    }

    /// The registration as the API shows it: URLs, schemes and accounts; secrets `***`.
    pub fn masked(&self) -> serde_json::Value {
        let receiver = |r: &StoredReceiver| {
            let url = r
                .url
                .parse::<SafeUrl>()
                .map_or_else(|_| r.url.clone(), |u| u.to_string());
            serde_json::json!({"url": url, "secret": "***", "scheme": r.scheme})
        };
        serde_json::json!({
            "fixed": self.fixed.iter().map(receiver).collect::<Vec<_>>(),
            "by_recipient": self.by_recipient.iter()
                .map(|rule| serde_json::json!({"account": rule.account, "receiver": receiver(&rule.receiver)}))
                .collect::<Vec<_>>(),
            "to_recipient_account": self.to_recipient_account,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn boxed() -> SecretBox {
        SecretBox::from_config(&crate::config::SecretsConfig {
            key: KEY.to_owned(),
            previous_keys: Vec::new(),
        })
        .unwrap()
    }

    fn receiver(url: &str) -> Receiver {
        Receiver {
            url: url.parse().unwrap(),
            secret: Some(Secret::new("0123456789abcdef")),
            scheme: SignatureScheme::TxrelayV1,
        }
    }

    #[test]
    fn seed_examples_pick_their_receivers() {
        let b = Address::repeat_byte(0xb);
        let c = Address::repeat_byte(0xc);
        let d = Address::repeat_byte(0xd);
        let secrets = boxed();
        // ¶43 first example: a fixed receiver (device b).
        let fixed = Registration {
            fixed: vec![receiver("http://127.0.0.1:9001/b")],
            ..Registration::default()
        }
        .sealed(&secrets);
        assert_eq!(fixed.targets(Some(b)).len(), 1);
        assert_eq!(fixed.targets(None).len(), 1);
        // ¶43 second example: one receiver per recipient account.
        let per = Registration {
            by_recipient: vec![
                RecipientRule {
                    account: b,
                    receiver: receiver("http://127.0.0.1:9001/b"),
                },
                RecipientRule {
                    account: c,
                    receiver: receiver("http://127.0.0.1:9001/c"),
                },
            ],
            ..Registration::default()
        }
        .sealed(&secrets);
        assert_eq!(per.targets(Some(c))[0].key(), "http://127.0.0.1:9001/c");
        assert!(per.targets(Some(d)).is_empty());
        // The wildcard: the recipient account itself; a URL named twice gets one delivery.
        let wildcard = Registration {
            fixed: vec![receiver("http://127.0.0.1:9001/b")],
            by_recipient: vec![RecipientRule {
                account: d,
                receiver: receiver("http://127.0.0.1:9001/b"),
            }],
            to_recipient_account: true,
        }
        .sealed(&secrets);
        let targets = wildcard.targets(Some(d));
        assert_eq!(targets.len(), 2, "{targets:?}");
        assert!(targets.contains(&Target::Account(d)));
        assert_eq!(Target::Account(d).channel(), "account");
        // Sealed at rest, masked on the way out.
        let Target::Webhook { sealed_secret, .. } = &targets[0] else {
            panic!("{targets:?}");
        };
        assert_eq!(secrets.open(sealed_secret).unwrap(), "0123456789abcdef");
        let text = serde_json::to_string(&wildcard).unwrap();
        assert!(!text.contains("0123456789abcdef"));
        assert!(
            !wildcard
                .masked()
                .to_string()
                .contains(sealed_secret.as_str())
        );
    }

    #[test]
    fn bad_registrations_are_refused() {
        let with = |r: Receiver| Registration {
            fixed: vec![r],
            ..Registration::default()
        };
        let mut bad = receiver("ftp://127.0.0.1/x");
        assert!(matches!(
            with(bad.clone()).validate(10),
            Err(RuleError::BadUrl { .. })
        ));
        bad.url = "http://user:pw@127.0.0.1/x".parse().unwrap();
        assert!(matches!(
            with(bad.clone()).validate(10),
            Err(RuleError::BadUrl { .. })
        ));
        bad.url = "http://127.0.0.1/x".parse().unwrap();
        bad.secret = Some(Secret::new("short"));
        assert!(matches!(
            with(bad.clone()).validate(10),
            Err(RuleError::ShortSecret { .. })
        ));
        bad.scheme = SignatureScheme::Standard;
        assert!(matches!(
            with(bad.clone()).validate(10),
            Err(RuleError::BadStandardSecret { .. })
        ));
        bad.secret = Some(Secret::new(generate_standard_secret()));
        assert!(with(bad.clone()).validate(10).is_ok());
        bad.secret = None;
        let mut generated = with(bad);
        assert!(generated.validate(10).is_ok());
        generated.fill_secrets();
        assert!(standard_key(generated.fixed[0].secret.as_ref().unwrap().expose()).is_some());
        let a = Address::repeat_byte(1);
        let twice = Registration {
            by_recipient: vec![
                RecipientRule {
                    account: a,
                    receiver: receiver("http://127.0.0.1/1"),
                },
                RecipientRule {
                    account: a,
                    receiver: receiver("http://127.0.0.1/2"),
                },
            ],
            ..Registration::default()
        };
        assert!(matches!(
            twice.validate(10),
            Err(RuleError::DuplicateRecipient { .. })
        ));
        let many = Registration {
            fixed: (0..11)
                .map(|i| receiver(&format!("http://127.0.0.1/{i}")))
                .collect(),
            ..Registration::default()
        };
        assert!(matches!(
            many.validate(10),
            Err(RuleError::TooManyReceivers { count: 11, max: 10 })
        ));
        let json = r#"{"fixed":[],"surprise":1}"#;
        assert!(serde_json::from_str::<Registration>(json).is_err());
        let json = r#"{"accounts":[]}"#;
        assert!(serde_json::from_str::<Registration>(json).is_err());
    }
}
