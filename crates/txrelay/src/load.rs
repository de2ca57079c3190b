//! Signing test load with local keys (alloy `signer-local`): the user devices of the demo,
//! the benchmark and the tests. The relay itself never holds a key.

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::primitives::{Address, B256, Bytes, Signature, TxKind, U256};
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;

/// Fee cap used for generated transactions, in wei per gas (100 gwei: far above anvil's base
/// fee, so load never stalls on fees).
pub const MAX_FEE_PER_GAS: u128 = 100_000_000_000;
/// Priority fee used for generated transactions, in wei per gas (1 gwei).
pub const PRIORITY_FEE_PER_GAS: u128 = 1_000_000_000;

/// Signing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The 32 bytes are not a valid secp256k1 secret key (zero or above the group order).
    #[error("invalid private key")]
    BadKey,
    /// The signer refused to sign.
    #[error("signing failed")]
    Sign(#[source] alloy::signers::Error),
}

/// A local account key.
#[derive(Debug, Clone)]
pub struct Wallet {
    signer: PrivateKeySigner,
}

impl Wallet {
    /// A key from 32 secret bytes.
    ///
    /// # Errors
    /// [`SignError::BadKey`] for zero or out-of-range bytes.
    pub fn from_seed(secret: [u8; 32]) -> Result<Self, SignError> {
        PrivateKeySigner::from_bytes(&B256::from(secret))
            .map(|signer| Self { signer })
            .map_err(|_| SignError::BadKey)
    }

    /// A fresh random key.
    pub fn random() -> Self {
        loop {
            let secret: [u8; 32] = rand::random();
            if let Ok(wallet) = Self::from_seed(secret) {
                return wallet;
            }
        }
    }

    /// The account address.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// Signs an EIP-1559 transaction and returns its EIP-2718 bytes.
    ///
    /// # Errors
    /// [`SignError::Sign`].
    pub fn sign_1559(&self, tx: TxEip1559) -> Result<Vec<u8>, SignError> {
        let signature = self
            .signer
            .sign_hash_sync(&tx.signature_hash())
            .map_err(SignError::Sign)?;
        Ok(TxEnvelope::from(tx.into_signed(signature)).encoded_2718())
    }

    /// Signs `message` as an EIP-191 personal message (`"\x19Ethereum Signed Message:\n" +
    /// len + message`), the relay's WebSocket login.
    ///
    /// # Errors
    /// [`SignError::Sign`].
    pub fn sign_message(&self, message: &[u8]) -> Result<Signature, SignError> {
        self.signer
            .sign_message_sync(message)
            .map_err(SignError::Sign)
    }
}

/// An EIP-1559 transaction from `wallet` on `chain_id` with the generated fees.
fn eip1559(
    chain_id: u64,
    nonce: u64,
    to: Address,
    value: U256,
    input: Bytes,
    gas_limit: u64,
) -> TxEip1559 {
    TxEip1559 {
        chain_id,
        nonce,
        gas_limit,
        max_fee_per_gas: MAX_FEE_PER_GAS,
        max_priority_fee_per_gas: PRIORITY_FEE_PER_GAS,
        to: TxKind::Call(to),
        value,
        access_list: Default::default(),
        input,
    }
}

/// A signed transfer of `value` wei to `to`.
///
/// # Errors
/// [`SignError`].
pub fn transfer(
    wallet: &Wallet,
    chain_id: u64,
    nonce: u64,
    to: Address,
    value: U256,
    gas_limit: u64,
) -> Result<Vec<u8>, SignError> {
    wallet.sign_1559(eip1559(chain_id, nonce, to, value, Bytes::new(), gas_limit))
}

/// A signed contract call to `to` with calldata `input`.
///
/// # Errors
/// [`SignError`].
pub fn call(
    wallet: &Wallet,
    chain_id: u64,
    nonce: u64,
    to: Address,
    input: Bytes,
    gas_limit: u64,
) -> Result<Vec<u8>, SignError> {
    wallet.sign_1559(eip1559(chain_id, nonce, to, U256::ZERO, input, gas_limit))
}

/// EVM runtime code that always reverts with `Error(reason)` (Solidity's `require(false,
/// reason)` encoding): `CODECOPY` the ABI-encoded revert data appended to the code into
/// memory, then `REVERT` with it. Install it with `anvil_setCode`.
///
/// `reason` must be at most 32 bytes.
pub fn reverting_code(reason: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(100);
    data.extend_from_slice(&[0x08, 0xc3, 0x79, 0xa0]); // Error(string)
    data.extend_from_slice(&U256::from(32).to_be_bytes::<32>());
    data.extend_from_slice(&U256::from(reason.len()).to_be_bytes::<32>());
    let mut word = [0_u8; 32];
    let len = reason.len().min(32);
    word[..len].copy_from_slice(&reason.as_bytes()[..len]);
    data.extend_from_slice(&word);
    let size = u8::try_from(data.len()).unwrap_or(u8::MAX);
    // PUSH1 size PUSH1 offset PUSH1 0 CODECOPY PUSH1 size PUSH1 0 REVERT; the prefix is 12
    // bytes long, so the data starts at offset 12.
    let mut code = vec![
        0x60, size, 0x60, 12, 0x60, 0x00, 0x39, 0x60, size, 0x60, 0x00, 0xfd,
    ];
    code.extend_from_slice(&data);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_message_signature_recovers_the_account() {
        let wallet = Wallet::from_seed([7; 32]).unwrap();
        let signature = wallet.sign_message(b"txrelay login 1234").unwrap();
        assert_eq!(
            signature
                .recover_address_from_msg(b"txrelay login 1234")
                .unwrap(),
            wallet.address()
        );
        assert!(Wallet::from_seed([0; 32]).is_err());
    }

    #[test]
    fn reverting_code_carries_the_reason() {
        let code = reverting_code("nope");
        assert_eq!(code.len(), 12 + 100);
        assert_eq!(&code[12..16], &[0x08, 0xc3, 0x79, 0xa0]);
        assert_eq!(
            crate::node::decode_revert_reason(&code[12..]).as_deref(),
            Some("nope")
        );
    }
}
