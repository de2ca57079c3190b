//! API keys: bearer tokens `txr_{key_id}_{secret}` (RFC 6750 `Authorization: Bearer`).
//!
//! `key_id` (12 hex digits) names the key in the database, in logs and in the admin API; the
//! 32 random bytes of `secret` (64 hex digits) are shown once, when the key is created, and
//! stored only as their SHA-256. The secret is high-entropy random, so a single fast hash is
//! enough (no password stretching is needed); comparison is in constant time. Sans-I/O.

use sha2::{Digest, Sha256};

/// Prefix of every token (lets secret scanners recognise leaked keys).
pub const TOKEN_PREFIX: &str = "txr_";
/// Hex digits of a key id.
pub const KEY_ID_LEN: usize = 12;
/// Hex digits of a token's secret part.
pub const SECRET_LEN: usize = 64;

/// A parsed bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<'a> {
    /// The public key id.
    pub key_id: &'a str,
    /// The secret part (never logged).
    pub secret: &'a str,
}

/// A freshly generated key: the token to hand out once and what is stored.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The public key id.
    pub key_id: String,
    /// The whole bearer token (shown once).
    pub token: String,
    /// SHA-256 of the secret part, hex.
    pub secret_sha256: String,
}

/// Generates a new random key.
pub fn generate() -> NewKey {
    let key_id = hex::encode(rand::random::<[u8; KEY_ID_LEN / 2]>());
    let secret = hex::encode(rand::random::<[u8; SECRET_LEN / 2]>());
    NewKey {
        token: format!("{TOKEN_PREFIX}{key_id}_{secret}"),
        secret_sha256: secret_hash(&secret),
        key_id,
    }
}

/// Parses `txr_{key_id}_{secret}`; `None` for anything else.
pub fn parse(token: &str) -> Option<Token<'_>> {
    let rest = token.trim().strip_prefix(TOKEN_PREFIX)?;
    let (key_id, secret) = rest.split_once('_')?;
    let hex_of =
        |text: &str, len: usize| text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(key_id, KEY_ID_LEN) && hex_of(secret, SECRET_LEN)).then_some(Token { key_id, secret })
}

/// SHA-256 of a secret, lower-case hex.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` hashes to `stored_sha256`, compared in constant time.
pub fn verify(secret: &str, stored_sha256: &str) -> bool {
    let presented = secret_hash(secret);
    presented.len() == stored_sha256.len()
        && presented
            .bytes()
            .zip(stored_sha256.bytes())
            .fold(0_u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_verify() {
        let key = generate();
        let token = parse(&key.token).unwrap();
        assert_eq!(token.key_id, key.key_id);
        assert!(verify(token.secret, &key.secret_sha256));
        assert!(!verify(&"0".repeat(SECRET_LEN), &key.secret_sha256));
        assert_ne!(generate().token, key.token);
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        let good = generate().token;
        for bad in [
            "",
            "txr_",
            "Bearer x",
            &good.replacen("txr_", "txs_", 1),
            &good[..good.len() - 1],
            &format!("{good}0"),
            &good.replacen('_', "-", 2),
            &format!("txr_{}_{}", "g".repeat(KEY_ID_LEN), "0".repeat(SECRET_LEN)),
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
