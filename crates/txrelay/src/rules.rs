//! Notification rules a device registers in advance (seed ¶40-43) and the choice of receivers
//! for one result.
//!
//! Seed ¶43 gives the cases: device a always sends to account 2 of device b, so it registers
//! device b as the receiver (a **fixed** receiver); device a sends to accounts 2, 3 and 4 of
//! devices b, c and d, so it registers a receiver **per recipient account**; or it asks that
//! each result go **to the recipient account** itself, whoever that is (the wildcard),
//! delivered over the WebSocket to whoever has logged in as that account.

use std::collections::BTreeSet;

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};
use svckit::redact::{SafeUrl, Secret};

/// Smallest accepted webhook secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// A webhook receiver: where results are POSTed and the key they are signed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    /// The endpoint (http or https).
    pub url: SafeUrl,
    /// The HMAC-SHA256 key (at least [`MIN_SECRET_LEN`] bytes), shared with the receiver.
    pub secret: Secret,
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

/// The body of `PUT /v1/devices/{device}/notifications`: a device's accounts and rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Registration {
    /// Accounts the device sends from (admitted under the `registered` account policy).
    pub accounts: Vec<Address>,
    /// Receivers of every result of this device's transactions.
    pub fixed: Vec<Receiver>,
    /// Receivers per recipient account.
    pub by_recipient: Vec<RecipientRule>,
    /// Also deliver each result to the recipient account's WebSocket session(s).
    pub to_recipient_account: bool,
}

/// One place a result goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A webhook POST.
    Webhook {
        /// Endpoint.
        url: String,
        /// HMAC key.
        secret: String,
    },
    /// The WebSocket session of whoever is logged in as this account.
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
    /// A receiver URL is not http or https.
    #[error("receiver URL `{url}` must be http or https")]
    BadScheme {
        /// The URL (redacted).
        url: String,
    },
    /// A receiver secret is shorter than [`MIN_SECRET_LEN`].
    #[error("the secret of receiver `{url}` is shorter than {MIN_SECRET_LEN} bytes")]
    ShortSecret {
        /// The receiver URL (redacted).
        url: String,
    },
    /// The same recipient account has two rules.
    #[error("recipient `{account}` has more than one rule")]
    DuplicateRecipient {
        /// The account.
        account: Address,
    },
}

impl Registration {
    /// Checks receivers and rules.
    ///
    /// # Errors
    /// The first [`RuleError`].
    pub fn validate(&self) -> Result<(), RuleError> {
        let receivers = self
            .fixed
            .iter()
            .chain(self.by_recipient.iter().map(|rule| &rule.receiver));
        for receiver in receivers {
            if !matches!(receiver.url.expose().scheme(), "http" | "https") {
                return Err(RuleError::BadScheme {
                    url: receiver.url.to_string(),
                });
            }
            if receiver.secret.expose().len() < MIN_SECRET_LEN {
                return Err(RuleError::ShortSecret {
                    url: receiver.url.to_string(),
                });
            }
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

    /// Where the result of a transaction to `recipient` (`None`: contract creation) goes
    /// (seed ¶43): the fixed receivers, the recipient's receiver, and the recipient account
    /// itself when the wildcard is set. Sorted, without repeats.
    pub fn targets(&self, recipient: Option<Address>) -> Vec<Target> {
        let webhook = |receiver: &Receiver| Target::Webhook {
            url: receiver.url.expose().to_string(),
            secret: receiver.secret.expose().to_owned(),
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
        targets.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver(url: &str) -> Receiver {
        Receiver {
            url: url.parse().unwrap(),
            secret: Secret::new("0123456789abcdef"),
        }
    }

    #[test]
    fn seed_examples_pick_their_receivers() {
        let b = Address::repeat_byte(0xb);
        let c = Address::repeat_byte(0xc);
        let d = Address::repeat_byte(0xd);
        // ¶43 first example: a fixed receiver (device b).
        let fixed = Registration {
            fixed: vec![receiver("http://127.0.0.1:9001/b")],
            ..Registration::default()
        };
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
        };
        assert_eq!(per.targets(Some(c))[0].key(), "http://127.0.0.1:9001/c");
        assert!(per.targets(Some(d)).is_empty());
        // The wildcard: the recipient account itself.
        let wildcard = Registration {
            fixed: vec![receiver("http://127.0.0.1:9001/b")],
            by_recipient: vec![RecipientRule {
                account: d,
                receiver: receiver("http://127.0.0.1:9001/b"),
            }],
            to_recipient_account: true,
            ..Registration::default()
        };
        let targets = wildcard.targets(Some(d));
        assert_eq!(
            targets.len(),
            2,
            "the repeated webhook appears once: {targets:?}"
        );
        assert!(targets.contains(&Target::Account(d)));
        assert_eq!(Target::Account(d).channel(), "account");
    }

    #[test]
    fn bad_registrations_are_refused() {
        let mut bad = Registration {
            fixed: vec![receiver("ftp://127.0.0.1/x")],
            ..Registration::default()
        };
        assert!(matches!(bad.validate(), Err(RuleError::BadScheme { .. })));
        bad.fixed = vec![Receiver {
            url: "http://127.0.0.1/x".parse().unwrap(),
            secret: Secret::new("short"),
        }];
        assert!(matches!(bad.validate(), Err(RuleError::ShortSecret { .. })));
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
            twice.validate(),
            Err(RuleError::DuplicateRecipient { .. })
        ));
        let json = r#"{"accounts":[],"fixed":[],"surprise":1}"#;
        assert!(serde_json::from_str::<Registration>(json).is_err());
    }
}
