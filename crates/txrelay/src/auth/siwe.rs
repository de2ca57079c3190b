//! Sign-In with Ethereum messages (EIP-4361): the proof that a device's owner holds an
//! account's key, used to register the account to a device and to log in on the WebSocket.
//!
//! The message is the EIP-4361 text, signed as an EIP-191 personal message (what a wallet's
//! `personal_sign` does):
//!
//! ```text
//! relay.example.com wants you to sign in with your Ethereum account:
//! 0xC0Ffee254729296a45a3885639AC7E10F9d54979
//!
//! Register this account to device phone-1 on txrelay.
//!
//! URI: https://relay.example.com
//! Version: 1
//! Chain ID: 31337
//! Nonce: 8a3f1c2e9b7d4f60
//! Issued At: 2026-05-01T10:00:00Z
//! Expiration Time: 2026-05-01T10:05:00Z
//! ```
//!
//! [`SiweMessage::parse`] follows the EIP's ABNF (field order, blank lines, EIP-55 address,
//! RFC 3339 times, nonce of at least 8 alphanumerics); [`verify`] checks the signature and the
//! relay's policy: the configured domain, version 1, a served chain id, the expected nonce
//! when the caller knows it, an expiration time that is present, in the future and not too
//! far away, and `Issued At`/`Not Before` not ahead of the clock. Sans-I/O: time is passed in.
//! Contract wallets (EIP-1271) are not supported: the signer must be the account's own key.

use std::fmt;

use alloy::primitives::{Address, Signature};
use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};

/// The fixed text after the domain on the first line.
const PREAMBLE: &str = " wants you to sign in with your Ethereum account:";

/// A parsed EIP-4361 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiweMessage {
    /// `scheme://` before the domain, if given.
    pub scheme: Option<String>,
    /// The RFC 3986 authority asking for the signature.
    pub domain: String,
    /// The signing account (EIP-55 checksummed in the text).
    pub address: Address,
    /// The human-readable statement, if any.
    pub statement: Option<String>,
    /// The RFC 3986 URI the signature is for.
    pub uri: String,
    /// Always `1`.
    pub version: String,
    /// The EIP-155 chain id.
    pub chain_id: u64,
    /// At least 8 alphanumerics, chosen by the relay.
    pub nonce: String,
    /// When it was made (RFC 3339).
    pub issued_at: DateTime<FixedOffset>,
    /// When it stops being valid.
    pub expiration_time: Option<DateTime<FixedOffset>>,
    /// When it starts being valid.
    pub not_before: Option<DateTime<FixedOffset>>,
    /// A system-specific id.
    pub request_id: Option<String>,
    /// URIs the user wishes to have resolved.
    pub resources: Vec<String>,
}

/// Why a message or its signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SiweError {
    /// The text does not follow the EIP-4361 format.
    #[error("not an EIP-4361 message: {0}")]
    Malformed(String),
    /// The domain is not the relay's.
    #[error("the message is for domain `{found}`, this relay is `{expected}`")]
    WrongDomain {
        /// The relay's domain.
        expected: String,
        /// The message's.
        found: String,
    },
    /// `Version` is not 1.
    #[error("version `{0}` is not supported (only 1)")]
    Version(String),
    /// The chain id is not served by the relay.
    #[error("chain id {0} is not served by this relay")]
    UnknownChain(u64),
    /// The nonce is not the one the relay issued.
    #[error("the nonce is not the one issued for this sign-in")]
    WrongNonce,
    /// `Expiration Time` is missing (the relay requires one).
    #[error("the message has no Expiration Time")]
    NoExpiry,
    /// The message has expired.
    #[error("the message expired at {0}")]
    Expired(String),
    /// The message is valid for longer than the relay accepts.
    #[error("the message is valid for more than {max_secs} s")]
    TooLong {
        /// The largest validity accepted.
        max_secs: u64,
    },
    /// `Issued At` or `Not Before` lies ahead of the relay's clock.
    #[error("the message is not valid yet")]
    NotYetValid,
    /// The signature is not 65 bytes of 0x-hex or recovers no key.
    #[error("the signature is invalid")]
    BadSignature,
    /// The signature was made by another account.
    #[error("the message is signed by `{recovered}`, not `{claimed}`")]
    WrongSigner {
        /// The message's address.
        claimed: Address,
        /// The signer.
        recovered: Address,
    },
}

fn malformed(detail: impl Into<String>) -> SiweError {
    SiweError::Malformed(detail.into())
}

fn time(field: &str, text: &str) -> Result<DateTime<FixedOffset>, SiweError> {
    DateTime::parse_from_rfc3339(text)
        .map_err(|_| malformed(format!("`{field}` `{text}` is not an RFC 3339 date-time")))
}

/// Takes `"{name}: value"` from the next line, if that line carries `name`.
fn field<'a>(
    lines: &mut std::iter::Peekable<std::str::Split<'a, char>>,
    name: &str,
) -> Option<&'a str> {
    let line = lines.peek()?;
    let value = line.strip_prefix(name)?.strip_prefix(": ")?;
    lines.next();
    Some(value)
}

fn required<'a>(
    lines: &mut std::iter::Peekable<std::str::Split<'a, char>>,
    name: &str,
) -> Result<&'a str, SiweError> {
    field(lines, name).ok_or_else(|| malformed(format!("expected `{name}: ...`")))
}

impl SiweMessage {
    /// Parses the EIP-4361 text.
    ///
    /// # Errors
    /// [`SiweError::Malformed`] naming the first deviation.
    pub fn parse(text: &str) -> Result<Self, SiweError> {
        if text.contains('\r') {
            return Err(malformed("lines end with LF only"));
        }
        let mut lines = text.split('\n').peekable();
        let first = lines.next().unwrap_or_default();
        let authority = first
            .strip_suffix(PREAMBLE)
            .ok_or_else(|| malformed("the first line must end with the EIP-4361 preamble"))?;
        let (scheme, domain) = match authority.split_once("://") {
            Some((scheme, domain)) => (Some(scheme.to_owned()), domain),
            None => (None, authority),
        };
        if domain.is_empty() || domain.contains(char::is_whitespace) {
            return Err(malformed("the domain is empty or has spaces"));
        }
        let address_text = lines.next().unwrap_or_default();
        let address = Address::parse_checksummed(address_text, None)
            .map_err(|_| malformed("the address must be an EIP-55 checksummed 0x address"))?;
        if lines.next() != Some("") {
            return Err(malformed("a blank line must follow the address"));
        }
        let statement = match lines.next() {
            Some("") => None,
            Some(statement) => {
                if lines.next() != Some("") {
                    return Err(malformed("a blank line must follow the statement"));
                }
                Some(statement.to_owned())
            }
            None => return Err(malformed("the message ends after the address")),
        };
        let uri = required(&mut lines, "URI")?.to_owned();
        let version = required(&mut lines, "Version")?.to_owned();
        let chain_id = required(&mut lines, "Chain ID")?
            .parse()
            .map_err(|_| malformed("`Chain ID` is not a number"))?;
        let nonce = required(&mut lines, "Nonce")?.to_owned();
        if nonce.len() < 8 || !nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(malformed("the nonce must be at least 8 letters or digits"));
        }
        let issued_at = time("Issued At", required(&mut lines, "Issued At")?)?;
        let expiration_time = field(&mut lines, "Expiration Time")
            .map(|t| time("Expiration Time", t))
            .transpose()?;
        let not_before = field(&mut lines, "Not Before")
            .map(|t| time("Not Before", t))
            .transpose()?;
        let request_id = field(&mut lines, "Request ID").map(str::to_owned);
        let mut resources = Vec::new();
        if lines.peek() == Some(&"Resources:") {
            lines.next();
            while let Some(resource) = lines.peek().and_then(|l| l.strip_prefix("- ")) {
                resources.push(resource.to_owned());
                lines.next();
            }
        }
        if let Some(extra) = lines.next() {
            return Err(malformed(format!("unexpected line `{extra}`")));
        }
        Ok(Self {
            scheme,
            domain: domain.to_owned(),
            address,
            statement,
            uri,
            version,
            chain_id,
            nonce,
            issued_at,
            expiration_time,
            not_before,
            request_id,
            resources,
        })
    }
}

fn rfc3339(time: &DateTime<FixedOffset>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

impl fmt::Display for SiweMessage {
    /// The EIP-4361 text, as a client signs it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(scheme) = &self.scheme {
            write!(f, "{scheme}://")?;
        }
        writeln!(f, "{}{PREAMBLE}", self.domain)?;
        writeln!(f, "{}", self.address.to_checksum(None))?;
        writeln!(f)?;
        if let Some(statement) = &self.statement {
            writeln!(f, "{statement}")?;
        }
        writeln!(f)?;
        writeln!(f, "URI: {}", self.uri)?;
        writeln!(f, "Version: {}", self.version)?;
        writeln!(f, "Chain ID: {}", self.chain_id)?;
        writeln!(f, "Nonce: {}", self.nonce)?;
        write!(f, "Issued At: {}", rfc3339(&self.issued_at))?;
        if let Some(time) = &self.expiration_time {
            write!(f, "\nExpiration Time: {}", rfc3339(time))?;
        }
        if let Some(time) = &self.not_before {
            write!(f, "\nNot Before: {}", rfc3339(time))?;
        }
        if let Some(id) = &self.request_id {
            write!(f, "\nRequest ID: {id}")?;
        }
        if !self.resources.is_empty() {
            write!(f, "\nResources:")?;
            for resource in &self.resources {
                write!(f, "\n- {resource}")?;
            }
        }
        Ok(())
    }
}

/// What [`verify`] requires besides a valid signature.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    /// The relay's domain (`auth.domain`).
    pub domain: &'a str,
    /// The nonce the relay issued, when the caller knows it (the WebSocket challenge); `None`
    /// when the caller checks the message's nonce itself (a stored, single-use nonce).
    pub nonce: Option<&'a str>,
    /// Chain ids the relay serves.
    pub chain_ids: &'a [u64],
    /// The relay's time, Unix milliseconds.
    pub now_ms: u64,
    /// Clock difference tolerated for `Issued At` and `Not Before`, milliseconds.
    pub skew_ms: u64,
    /// Longest validity accepted (`Expiration Time` - now), milliseconds.
    pub max_validity_ms: u64,
}

fn unix_ms(time: &DateTime<FixedOffset>) -> i64 {
    time.with_timezone(&Utc).timestamp_millis()
}

/// Parses `text`, checks the relay's policy and recovers the EIP-191 signer of `text` from
/// `signature_hex` (65 bytes, r || s || v); the signer must be the message's address.
///
/// # Errors
/// The first failed check as a [`SiweError`].
pub fn verify(
    text: &str,
    signature_hex: &str,
    expect: &Expect<'_>,
) -> Result<SiweMessage, SiweError> {
    let message = SiweMessage::parse(text)?;
    if message.domain != expect.domain {
        return Err(SiweError::WrongDomain {
            expected: expect.domain.to_owned(),
            found: message.domain,
        });
    }
    if message.version != "1" {
        return Err(SiweError::Version(message.version));
    }
    if !expect.chain_ids.contains(&message.chain_id) {
        return Err(SiweError::UnknownChain(message.chain_id));
    }
    if expect.nonce.is_some_and(|nonce| nonce != message.nonce) {
        return Err(SiweError::WrongNonce);
    }
    let now = i64::try_from(expect.now_ms).unwrap_or(i64::MAX);
    let skew = i64::try_from(expect.skew_ms).unwrap_or(i64::MAX);
    let expiry = message
        .expiration_time
        .as_ref()
        .ok_or(SiweError::NoExpiry)?;
    if unix_ms(expiry) <= now {
        return Err(SiweError::Expired(rfc3339(expiry)));
    }
    if unix_ms(expiry).saturating_sub(now)
        > i64::try_from(expect.max_validity_ms).unwrap_or(i64::MAX)
    {
        return Err(SiweError::TooLong {
            max_secs: expect.max_validity_ms / 1000,
        });
    }
    let ahead = |time: &DateTime<FixedOffset>| unix_ms(time) > now.saturating_add(skew);
    if ahead(&message.issued_at) || message.not_before.as_ref().is_some_and(ahead) {
        return Err(SiweError::NotYetValid);
    }
    let bytes = signature_hex
        .trim()
        .strip_prefix("0x")
        .and_then(|digits| hex::decode(digits).ok())
        .filter(|bytes| bytes.len() == 65)
        .ok_or(SiweError::BadSignature)?;
    let signature = Signature::from_raw(&bytes).map_err(|_| SiweError::BadSignature)?;
    let recovered = signature
        .recover_address_from_msg(text.as_bytes())
        .map_err(|_| SiweError::BadSignature)?;
    if recovered != message.address {
        return Err(SiweError::WrongSigner {
            claimed: message.address,
            recovered,
        });
    }
    Ok(message)
}

/// A message for `address` as the relay's clients make it: `domain` and `uri` as the relay
/// announces them, the relay's `nonce`, issued at `now_ms`, valid for `valid_ms`.
pub fn message_for(
    domain: &str,
    uri: &str,
    address: Address,
    statement: Option<&str>,
    (chain_id, nonce): (u64, &str),
    now_ms: u64,
    valid_ms: u64,
) -> SiweMessage {
    let at = |ms: u64| {
        DateTime::<Utc>::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
            .unwrap_or_default()
            .fixed_offset()
    };
    SiweMessage {
        scheme: None,
        domain: domain.to_owned(),
        address,
        statement: statement.map(str::to_owned),
        uri: uri.to_owned(),
        version: "1".to_owned(),
        chain_id,
        nonce: nonce.to_owned(),
        issued_at: at(now_ms),
        expiration_time: Some(at(now_ms.saturating_add(valid_ms))),
        not_before: None,
        request_id: None,
        resources: Vec::new(),
    }
}

/// Signs `message` with `wallet` as a wallet's `personal_sign` does: 0x-hex of r, s, v.
///
/// # Errors
/// [`crate::load::SignError`].
pub fn sign(
    wallet: &crate::load::Wallet,
    message: &SiweMessage,
) -> Result<String, crate::load::SignError> {
    let signature = wallet.sign_message(message.to_string().as_bytes())?;
    Ok(format!("0x{}", hex::encode(signature.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Wallet;

    /// A message in the shape of the EIP-4361 example (statement and resources).
    const EIP_EXAMPLE: &str = "service.invalid wants you to sign in with your Ethereum account:
0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2

I accept the ServiceOrg Terms of Service: https://service.invalid/tos

URI: https://service.invalid/login
Version: 1
Chain ID: 1
Nonce: 32891756
Issued At: 2021-09-30T16:25:24Z
Resources:
- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/
- https://example.com/my-web2-claim.json";

    const NOW: u64 = 1_777_000_000_000;

    fn expect(nonce: Option<&str>) -> Expect<'_> {
        Expect {
            domain: "relay.test",
            nonce,
            chain_ids: &[31337],
            now_ms: NOW,
            skew_ms: 60_000,
            max_validity_ms: 3_600_000,
        }
    }

    #[test]
    fn the_eip_example_parses_and_formats_back() {
        let message = SiweMessage::parse(EIP_EXAMPLE).unwrap();
        assert_eq!(message.domain, "service.invalid");
        assert_eq!(message.chain_id, 1);
        assert_eq!(message.nonce, "32891756");
        assert_eq!(message.resources.len(), 2);
        assert_eq!(
            message.statement.as_deref(),
            Some("I accept the ServiceOrg Terms of Service: https://service.invalid/tos")
        );
        assert_eq!(message.to_string(), EIP_EXAMPLE);
        // Without statement: two blank lines between address and URI.
        let bare = EIP_EXAMPLE.replace(
            "I accept the ServiceOrg Terms of Service: https://service.invalid/tos\n\n",
            "\n",
        );
        let message = SiweMessage::parse(&bare).unwrap();
        assert_eq!(message.statement, None);
        assert_eq!(message.to_string(), bare);
    }

    #[test]
    fn deviations_from_the_format_are_refused() {
        for (from, to) in [
            (" wants you", " want you"),
            (
                "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
                "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2",
            ),
            ("Nonce: 32891756", "Nonce: 3289"),
            ("Nonce: 32891756", "Nonce: 3289-1756"),
            ("Chain ID: 1", "Chain ID: one"),
            ("Issued At: 2021-09-30T16:25:24Z", "Issued At: yesterday"),
            ("Version: 1\n", ""),
            ("\n- https://example.com/my-web2-claim.json", "\nextra line"),
            ("\n", "\r\n"),
        ] {
            let text = EIP_EXAMPLE.replacen(from, to, 1);
            assert!(
                matches!(SiweMessage::parse(&text), Err(SiweError::Malformed(_))),
                "{from:?} -> {to:?} parsed"
            );
        }
    }

    #[test]
    fn verify_checks_signer_and_policy() {
        let alice = Wallet::from_seed([5; 32]).unwrap();
        let bob = Wallet::from_seed([6; 32]).unwrap();
        let make = |domain: &str, chain_id: u64, issued: u64, valid: u64| {
            let mut m = message_for(
                domain,
                "https://relay.test",
                alice.address(),
                Some("Register this account."),
                (chain_id, "abcdef0123456789"),
                issued,
                valid,
            );
            m.domain = domain.to_owned();
            m
        };
        let good = make("relay.test", 31337, NOW, 300_000);
        let text = good.to_string();
        let signature = sign(&alice, &good).unwrap();
        let verified = verify(&text, &signature, &expect(Some("abcdef0123456789"))).unwrap();
        assert_eq!(verified.address, alice.address());
        assert!(verify(&text, &signature, &expect(None)).is_ok());
        // Another key, another nonce, a changed text.
        let forged = sign(&bob, &good).unwrap();
        assert!(matches!(
            verify(&text, &forged, &expect(None)),
            Err(SiweError::WrongSigner { .. })
        ));
        assert_eq!(
            verify(&text, &signature, &expect(Some("0000000000000000"))).unwrap_err(),
            SiweError::WrongNonce
        );
        let altered = text.replace("Register", "Regster");
        assert!(matches!(
            verify(&altered, &signature, &expect(None)),
            Err(SiweError::WrongSigner { .. } | SiweError::BadSignature)
        ));
        assert_eq!(
            verify(&text, "0x1234", &expect(None)).unwrap_err(),
            SiweError::BadSignature
        );
        // Policy: domain, chain, expiry, validity, issued in the future.
        type Case = (SiweMessage, fn(&SiweError) -> bool);
        let cases: Vec<Case> = vec![
            (make("evil.test", 31337, NOW, 300_000), |e| {
                matches!(e, SiweError::WrongDomain { .. })
            }),
            (make("relay.test", 1, NOW, 300_000), |e| {
                matches!(e, SiweError::UnknownChain(1))
            }),
            (make("relay.test", 31337, NOW - 600_000, 300_000), |e| {
                matches!(e, SiweError::Expired(_))
            }),
            (make("relay.test", 31337, NOW, 7_200_000), |e| {
                matches!(e, SiweError::TooLong { .. })
            }),
            (make("relay.test", 31337, NOW + 120_000, 300_000), |e| {
                matches!(e, SiweError::NotYetValid)
            }),
        ];
        for (message, expected) in cases {
            let signature = sign(&alice, &message).unwrap();
            let error = verify(&message.to_string(), &signature, &expect(None)).unwrap_err();
            assert!(expected(&error), "{message}: {error}");
        }
        let mut no_expiry = good;
        no_expiry.expiration_time = None;
        let signature = sign(&alice, &no_expiry).unwrap();
        assert_eq!(
            verify(&no_expiry.to_string(), &signature, &expect(None)).unwrap_err(),
            SiweError::NoExpiry
        );
    }
}
