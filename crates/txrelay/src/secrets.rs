//! Webhook secrets at rest: sealed with XChaCha20-Poly1305 (a 24-byte random nonce per
//! secret, so random nonces never collide in practice) under the key from `secrets.key`.
//!
//! A sealed secret is the text `v1.` + base64url(nonce || ciphertext || tag), bound to its
//! purpose by the associated data `txrelay webhook secret v1`. The database only ever holds
//! sealed secrets; the relay opens one right before it signs a delivery. `secrets.previous_keys`
//! still open secrets sealed under earlier keys (key rotation).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::config::SecretsConfig;
use crate::error::ConfigError;

/// Prefix of a sealed secret (the format version).
const PREFIX: &str = "v1.";
/// Associated data binding ciphertexts to their use.
const AAD: &[u8] = b"txrelay webhook secret v1";
/// Nonce length of XChaCha20-Poly1305.
const NONCE_LEN: usize = 24;

/// A secret could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a stored webhook secret cannot be decrypted (wrong `secrets.key`, or not a sealed secret)"
)]
pub struct OpenError;

/// Seals and opens webhook secrets. Its `Debug` shows no key material.
#[derive(Clone)]
pub struct SecretBox {
    active: XChaCha20Poly1305,
    previous: Vec<XChaCha20Poly1305>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("previous_keys", &self.previous.len())
            .finish_non_exhaustive()
    }
}

fn cipher(hex_key: &str) -> Result<XChaCha20Poly1305, ConfigError> {
    let text = hex_key.trim();
    if text.is_empty() {
        return Err(ConfigError::SecretsKey("is missing"));
    }
    let bytes = hex::decode(text.strip_prefix("0x").unwrap_or(text))
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or(ConfigError::SecretsKey("must be 32 bytes as 64 hex digits"))?;
    XChaCha20Poly1305::new_from_slice(&bytes)
        .map_err(|_| ConfigError::SecretsKey("must be 32 bytes as 64 hex digits"))
}

impl SecretBox {
    /// A box from `[secrets]`.
    ///
    /// # Errors
    /// [`ConfigError::SecretsKey`] for a missing or malformed key.
    pub fn from_config(config: &SecretsConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            active: cipher(&config.key)?,
            previous: config
                .previous_keys
                .iter()
                .map(|k| cipher(k))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Seals `secret` under the active key with a fresh random nonce.
    pub fn seal(&self, secret: &str) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from(nonce_bytes);
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: AAD,
        };
        // Encryption with a valid key only fails for messages beyond the cipher's limit
        // (256 GiB); secrets are bounded by the request body limit.
        let ciphertext = self.active.encrypt(&nonce, payload).unwrap_or_default();
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Opens a sealed secret with the active or a previous key.
    ///
    /// # Errors
    /// [`OpenError`] when no key opens it or it is not a sealed secret.
    pub fn open(&self, sealed: &str) -> Result<String, OpenError> {
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or(OpenError)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| OpenError)?;
        std::iter::once(&self.active)
            .chain(&self.previous)
            .find_map(|cipher| {
                cipher
                    .decrypt(
                        &nonce,
                        Payload {
                            msg: ciphertext,
                            aad: AAD,
                        },
                    )
                    .ok()
            })
            .and_then(|plain| String::from_utf8(plain).ok())
            .ok_or(OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(key: &str, previous: &[&str]) -> SecretsConfig {
        SecretsConfig {
            key: key.to_owned(),
            previous_keys: previous.iter().map(|k| (*k).to_owned()).collect(),
        }
    }

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

    #[test]
    fn seal_open_round_trip_without_the_plaintext_at_rest() {
        let boxed = SecretBox::from_config(&config(K1, &[])).unwrap();
        let sealed = boxed.seal("whsec_c2VjcmV0LW9mLXRoZS1yZWNlaXZlcg");
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains("c2VjcmV0"));
        assert_ne!(sealed, boxed.seal("whsec_c2VjcmV0LW9mLXRoZS1yZWNlaXZlcg"));
        assert_eq!(
            boxed.open(&sealed).unwrap(),
            "whsec_c2VjcmV0LW9mLXRoZS1yZWNlaXZlcg"
        );
        // A flipped bit, another key, plaintext: refused.
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            boxed.open(&String::from_utf8(tampered).unwrap()),
            Err(OpenError)
        );
        let other = SecretBox::from_config(&config(K2, &[])).unwrap();
        assert_eq!(other.open(&sealed), Err(OpenError));
        assert_eq!(boxed.open("plain secret"), Err(OpenError));
        // Rotation: the new key with the old one as previous opens old secrets.
        let rotated = SecretBox::from_config(&config(K2, &[K1])).unwrap();
        assert_eq!(
            rotated.open(&sealed).unwrap(),
            "whsec_c2VjcmV0LW9mLXRoZS1yZWNlaXZlcg"
        );
    }

    #[test]
    fn keys_must_be_32_bytes_of_hex() {
        assert!(SecretBox::from_config(&config("", &[])).is_err());
        assert!(SecretBox::from_config(&config("abcd", &[])).is_err());
        assert!(SecretBox::from_config(&config(&"zz".repeat(32), &[])).is_err());
        assert!(SecretBox::from_config(&config(K1, &["x"])).is_err());
        assert!(
            format!("{:?}", SecretBox::from_config(&config(K1, &[])).unwrap())
                .contains("SecretBox")
        );
    }
}
