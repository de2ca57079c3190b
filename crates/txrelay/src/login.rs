//! WebSocket login for the "to the recipient account" rule (seed ¶43): a client proves it
//! holds an account's key by signing a fresh server challenge as an EIP-191 personal message
//! (`"\x19Ethereum Signed Message:\n" + len + message`, what wallets' `personal_sign` does).
//! Sans-I/O: the session in [`crate::session`] supplies the nonce and the client's answer.

use alloy::primitives::{Address, Signature};

/// Random bytes in a challenge nonce.
pub const NONCE_BYTES: usize = 16;

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The signature is not 65 bytes of 0x-hex (r, s, v).
    #[error("the signature is not 65 bytes of 0x-hex")]
    Malformed,
    /// No key can be recovered from it.
    #[error("the signature is invalid")]
    Invalid,
    /// It was made by another account.
    #[error("the challenge was signed by `{recovered}`, not `{claimed}`")]
    WrongAccount {
        /// The account the client claimed.
        claimed: Address,
        /// The signer.
        recovered: Address,
    },
}

/// A fresh random nonce (hex).
pub fn new_nonce() -> String {
    let bytes: [u8; NONCE_BYTES] = rand::random();
    hex::encode(bytes)
}

/// The text the client signs for `nonce`.
pub fn challenge_message(nonce: &str) -> String {
    format!("txrelay login\nnonce: {nonce}")
}

/// Checks that `signature_hex` is `claimed`'s EIP-191 signature of the challenge for `nonce`.
///
/// # Errors
/// [`LoginError`].
pub fn verify_login(nonce: &str, claimed: Address, signature_hex: &str) -> Result<(), LoginError> {
    let bytes = signature_hex
        .trim()
        .strip_prefix("0x")
        .and_then(|digits| hex::decode(digits).ok())
        .filter(|bytes| bytes.len() == 65)
        .ok_or(LoginError::Malformed)?;
    let signature = Signature::from_raw(&bytes).map_err(|_| LoginError::Invalid)?;
    let recovered = signature
        .recover_address_from_msg(challenge_message(nonce).as_bytes())
        .map_err(|_| LoginError::Invalid)?;
    if recovered == claimed {
        Ok(())
    } else {
        Err(LoginError::WrongAccount { claimed, recovered })
    }
}

/// Signs the challenge for `nonce` with `wallet` as a client does: 0x-hex of r, s, v.
///
/// # Errors
/// [`crate::load::SignError`].
pub fn sign_challenge(
    wallet: &crate::load::Wallet,
    nonce: &str,
) -> Result<String, crate::load::SignError> {
    let signature = wallet.sign_message(challenge_message(nonce).as_bytes())?;
    Ok(format!("0x{}", hex::encode(signature.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Wallet;

    #[test]
    fn login_accepts_the_owner_only() {
        let alice = Wallet::from_seed([3; 32]).unwrap();
        let bob = Wallet::from_seed([4; 32]).unwrap();
        let nonce = new_nonce();
        assert_eq!(nonce.len(), 2 * NONCE_BYTES);
        let signature = sign_challenge(&alice, &nonce).unwrap();
        assert_eq!(verify_login(&nonce, alice.address(), &signature), Ok(()));
        assert!(matches!(
            verify_login(&nonce, bob.address(), &signature),
            Err(LoginError::WrongAccount { .. })
        ));
        // A signature of another challenge does not log in.
        let other = sign_challenge(&alice, &new_nonce()).unwrap();
        assert!(verify_login(&nonce, alice.address(), &other).is_err());
        assert_eq!(
            verify_login(&nonce, alice.address(), "0x1234"),
            Err(LoginError::Malformed)
        );
    }
}
