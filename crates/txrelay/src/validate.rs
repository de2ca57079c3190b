//! Validation of a submitted transaction before anything is sent (seed ¶28-29: "check the
//! data types ... check whether the sending account is a legitimate account ... if the check
//! fails, send the failure to the user device").
//!
//! Sans-I/O: [`check_transaction`] works on the request alone, [`AccountPolicy::decide`] on
//! the policy and one registry fact, [`check_nonce`] on the nonce the node reported. The API
//! runs them in that order and answers the first failure as a [`RejectReason`].

use std::collections::BTreeSet;

use alloy::consensus::transaction::SignerRecoverable;
use alloy::consensus::{Transaction, TxEnvelope};
use alloy::eips::eip2718::Decodable2718;
use alloy::primitives::{Address, B256, Bytes};

use crate::config::AccountMode;
use crate::error::RejectReason;

/// Largest raw transaction accepted, in bytes (geth's pool limit for non-blob transactions).
pub const MAX_RAW_BYTES: usize = 128 * 1024;

/// Gas every transaction needs at least (the intrinsic cost of a plain transfer).
pub const MIN_GAS_LIMIT: u64 = 21_000;

/// A decoded, signature-checked transaction: everything the relay needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    /// keccak256 of the EIP-2718 bytes: the hash nodes and receipts use (seed ¶27).
    pub hash: B256,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Account nonce.
    pub nonce: u64,
    /// The recovered signer (equal to the declared sender).
    pub sender: Address,
    /// The `to` account; `None` for a contract creation.
    pub recipient: Option<Address>,
    /// EIP-2718 type byte (0 legacy, 1 EIP-2930, 2 EIP-1559, 4 EIP-7702).
    pub ty: u8,
    /// Gas limit.
    pub gas_limit: u64,
    /// The exact bytes received; rebroadcasts send these again.
    pub raw: Bytes,
}

/// Parses `0x`-prefixed hex into bytes.
///
/// # Errors
/// [`RejectReason::MalformedHex`] without the prefix, with odd length or a non-hex digit;
/// [`RejectReason::InvalidField`] when longer than [`MAX_RAW_BYTES`].
pub fn parse_raw(raw_hex: &str) -> Result<Bytes, RejectReason> {
    let digits = raw_hex
        .trim()
        .strip_prefix("0x")
        .ok_or(RejectReason::MalformedHex)?;
    if digits.len() / 2 > MAX_RAW_BYTES {
        return Err(RejectReason::InvalidField {
            field: "raw",
            detail: format!("longer than {MAX_RAW_BYTES} bytes"),
        });
    }
    hex::decode(digits)
        .map(Bytes::from)
        .map_err(|_| RejectReason::MalformedHex)
}

/// Decodes and checks a submission for chain `path_chain_id` declared as sent by
/// `declared_sender` (seed ¶24-25, ¶29): the envelope decodes completely; the type is relayed;
/// the chain id is present (EIP-155) and equals the path's; gas limit and fees are sane; the
/// signer recovers (EIP-2 low-s) and equals the declared sender. `chain_served` says whether
/// the path's chain is configured.
///
/// # Errors
/// The first failed check, as a [`RejectReason`].
pub fn check_transaction(
    raw_hex: &str,
    declared_sender: Address,
    path_chain_id: u64,
    chain_served: bool,
) -> Result<SignedTx, RejectReason> {
    if !chain_served {
        return Err(RejectReason::UnknownChain {
            chain_id: path_chain_id,
        });
    }
    let raw = parse_raw(raw_hex)?;
    let envelope =
        TxEnvelope::decode_2718_exact(&raw).map_err(|error| RejectReason::Undecodable {
            detail: error.to_string(),
        })?;
    let ty = envelope.tx_type() as u8;
    if envelope.is_eip4844() {
        return Err(RejectReason::UnsupportedType { ty });
    }
    let tx_chain_id = envelope.chain_id().ok_or(RejectReason::MissingChainId)?;
    if tx_chain_id != path_chain_id {
        return Err(RejectReason::ChainMismatch {
            tx_chain_id,
            path_chain_id,
        });
    }
    check_fields(&envelope)?;
    let recovered = envelope
        .recover_signer()
        .map_err(|_| RejectReason::InvalidSignature)?;
    if recovered != declared_sender {
        return Err(RejectReason::SenderMismatch {
            declared: declared_sender,
            recovered,
        });
    }
    Ok(SignedTx {
        hash: *envelope.tx_hash(),
        chain_id: tx_chain_id,
        nonce: envelope.nonce(),
        sender: recovered,
        recipient: envelope.to(),
        ty,
        gas_limit: envelope.gas_limit(),
        raw,
    })
}

fn check_fields(envelope: &TxEnvelope) -> Result<(), RejectReason> {
    if envelope.gas_limit() < MIN_GAS_LIMIT {
        return Err(RejectReason::InvalidField {
            field: "gas_limit",
            detail: format!(
                "{} is below the intrinsic {MIN_GAS_LIMIT}",
                envelope.gas_limit()
            ),
        });
    }
    if let Some(priority) = envelope.max_priority_fee_per_gas()
        && priority > envelope.max_fee_per_gas()
    {
        return Err(RejectReason::InvalidField {
            field: "max_priority_fee_per_gas",
            detail: format!(
                "{priority} exceeds max_fee_per_gas {}",
                envelope.max_fee_per_gas()
            ),
        });
    }
    if envelope.is_eip7702() && envelope.authorization_count().unwrap_or(0) == 0 {
        return Err(RejectReason::InvalidField {
            field: "authorization_list",
            detail: "an EIP-7702 transaction needs at least one authorization".to_owned(),
        });
    }
    Ok(())
}

/// Which accounts may submit (seed ¶29 "legitimate account"): configured allow and deny
/// lists, or the accounts registered by devices.
#[derive(Debug, Clone)]
pub struct AccountPolicy {
    mode: AccountMode,
    allow: BTreeSet<Address>,
    deny: BTreeSet<Address>,
}

impl AccountPolicy {
    /// A policy from the validated configuration.
    pub fn new(mode: AccountMode, allow: BTreeSet<Address>, deny: BTreeSet<Address>) -> Self {
        Self { mode, allow, deny }
    }

    /// True when [`Self::decide`] needs to know whether a device registered `account` (the
    /// caller then looks it up).
    pub fn needs_registry(&self, account: Address) -> bool {
        self.mode == AccountMode::Registered
            && !self.deny.contains(&account)
            && !self.allow.contains(&account)
    }

    /// Decides for `account`; `registered` says whether a device registered it (ignored
    /// unless [`Self::needs_registry`]).
    ///
    /// # Errors
    /// [`RejectReason::AccountDenied`] for a denied account, [`RejectReason::AccountUnknown`]
    /// for one the mode does not admit.
    pub fn decide(&self, account: Address, registered: bool) -> Result<(), RejectReason> {
        if self.deny.contains(&account) {
            return Err(RejectReason::AccountDenied { account });
        }
        let admitted = match self.mode {
            AccountMode::Open => true,
            AccountMode::AllowList => self.allow.contains(&account),
            AccountMode::Registered => self.allow.contains(&account) || registered,
        };
        if admitted {
            Ok(())
        } else {
            Err(RejectReason::AccountUnknown { account })
        }
    }
}

/// Checks a transaction's nonce against the account's `current` nonce (the node's
/// `eth_getTransactionCount(sender, "latest")`): a lower nonce is already used and would be
/// refused by every node. Higher nonces are allowed (they wait in the node's pool for the gap
/// to fill).
///
/// # Errors
/// [`RejectReason::NonceTooLow`].
pub fn check_nonce(nonce: u64, current: u64) -> Result<(), RejectReason> {
    if nonce < current {
        Err(RejectReason::NonceTooLow { nonce, current })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Wallet, transfer};
    use alloy::primitives::U256;

    fn wallet(seed: u8) -> Wallet {
        Wallet::from_seed([seed; 32]).unwrap()
    }

    fn raw(bytes: &[u8]) -> String {
        format!("0x{}", hex::encode(bytes))
    }

    #[test]
    fn a_valid_transfer_passes_and_keeps_its_bytes() {
        let alice = wallet(1);
        let bob = wallet(2);
        let signed = transfer(&alice, 31337, 0, bob.address(), U256::from(5), 21_000).unwrap();
        let tx = check_transaction(&raw(&signed), alice.address(), 31337, true).unwrap();
        assert_eq!(tx.sender, alice.address());
        assert_eq!(tx.recipient, Some(bob.address()));
        assert_eq!(tx.chain_id, 31337);
        assert_eq!(tx.ty, 2);
        assert_eq!(tx.raw.as_ref(), signed.as_slice());
        assert_eq!(tx.hash, alloy::primitives::keccak256(&signed));
    }

    #[test]
    fn every_failure_has_its_reason() {
        let alice = wallet(1);
        let bob = wallet(2);
        let good = transfer(&alice, 31337, 3, bob.address(), U256::from(1), 21_000).unwrap();
        let low_gas = transfer(&alice, 31337, 3, bob.address(), U256::from(1), 20_000).unwrap();
        let mut bad_sig = good.clone();
        // The last byte belongs to `s`; flipping its top half makes recovery yield another
        // key or fail.
        let last = bad_sig.len() - 1;
        bad_sig[last] ^= 0x55;
        let cases: Vec<(String, Address, u64, bool, &str)> = vec![
            (raw(&good), alice.address(), 7, false, "unknown_chain"),
            (
                "deadbeef".to_owned(),
                alice.address(),
                31337,
                true,
                "malformed_hex",
            ),
            (
                "0xzz".to_owned(),
                alice.address(),
                31337,
                true,
                "malformed_hex",
            ),
            (
                "0x02c0".to_owned(),
                alice.address(),
                31337,
                true,
                "undecodable_transaction",
            ),
            (
                format!("{}00", raw(&good)),
                alice.address(),
                31337,
                true,
                "undecodable_transaction",
            ),
            (raw(&good), alice.address(), 1337001, true, "chain_mismatch"),
            (raw(&low_gas), alice.address(), 31337, true, "invalid_field"),
            (raw(&good), bob.address(), 31337, true, "sender_mismatch"),
        ];
        for (raw, sender, chain, served, code) in cases {
            let reason = check_transaction(&raw, sender, chain, served).unwrap_err();
            assert_eq!(reason.code(), code, "{raw} -> {reason}");
        }
        let reason = check_transaction(&raw(&bad_sig), alice.address(), 31337, true).unwrap_err();
        assert!(
            matches!(
                reason,
                RejectReason::InvalidSignature | RejectReason::SenderMismatch { .. }
            ),
            "{reason}"
        );
    }

    /// EIP-2: the same signature with `s` replaced by `n - s` (and the parity flipped)
    /// recovers the same signer, and must still be refused, whichever secp256k1 backend
    /// recovers it (libsecp256k1 here).
    #[test]
    fn a_high_s_twin_of_a_valid_signature_is_refused() {
        use alloy::consensus::TxEnvelope;
        use alloy::eips::eip2718::{Decodable2718, Encodable2718};
        let alice = wallet(1);
        let good = transfer(&alice, 31337, 3, wallet(2).address(), U256::from(1), 21_000).unwrap();
        assert!(check_transaction(&raw(&good), alice.address(), 31337, true).is_ok());
        let Ok(TxEnvelope::Eip1559(signed)) = TxEnvelope::decode_2718(&mut good.as_slice()) else {
            panic!("not an EIP-1559 transaction");
        };
        let n = U256::from_str_radix(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
            16,
        )
        .unwrap();
        let sig = *signed.signature();
        let twin = alloy::primitives::Signature::new(sig.r(), n - sig.s(), !sig.v());
        let (tx, _, _) = signed.into_parts();
        let malleable = TxEnvelope::from(alloy::consensus::Signed::new_unhashed(tx, twin));
        let bytes = malleable.encoded_2718();
        let reason = check_transaction(&raw(&bytes), alice.address(), 31337, true).unwrap_err();
        assert!(matches!(reason, RejectReason::InvalidSignature), "{reason}");
    }

    #[test]
    fn transactions_signed_by_cast_decode_as_cast_says() {
        let text = include_str!("../tests/data/cast-transactions.json");
        let fixtures: Vec<serde_json::Value> = serde_json::from_str(text).unwrap();
        assert_eq!(fixtures.len(), 2);
        for fixture in fixtures {
            let cast = &fixture["cast_decode_transaction"];
            let signer: Address = cast["signer"].as_str().unwrap().parse().unwrap();
            let chain_id = crate::node::quantity(&cast["chainId"]).unwrap();
            let raw = fixture["raw"].as_str().unwrap();
            let tx = check_transaction(raw, signer, chain_id, true).unwrap();
            assert_eq!(format!("{:#x}", tx.hash), cast["hash"].as_str().unwrap());
            assert_eq!(tx.sender, signer);
            assert_eq!(Some(tx.nonce), crate::node::quantity(&cast["nonce"]));
            assert_eq!(Some(tx.gas_limit), crate::node::quantity(&cast["gas"]));
            assert_eq!(Some(u64::from(tx.ty)), crate::node::quantity(&cast["type"]));
            assert_eq!(
                tx.recipient.map(|a| format!("{a:#x}")).as_deref(),
                cast["to"].as_str()
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic sweep of truncations and byte flips of a valid transaction.
        let alice = wallet(1);
        let good = transfer(&alice, 31337, 0, wallet(2).address(), U256::from(1), 21_000).unwrap();
        for len in 0..=good.len() {
            let _ = check_transaction(&raw(&good[..len]), alice.address(), 31337, true);
        }
        for i in 0..good.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bytes = good.clone();
                bytes[i] ^= flip;
                let _ = check_transaction(&raw(&bytes), alice.address(), 31337, true);
            }
        }
    }

    #[test]
    fn account_policy_modes() {
        let a = wallet(1).address();
        let b = wallet(2).address();
        let c = wallet(3).address();
        let allow: BTreeSet<_> = [a].into();
        let deny: BTreeSet<_> = [c].into();
        let open = AccountPolicy::new(AccountMode::Open, allow.clone(), deny.clone());
        assert!(open.decide(b, false).is_ok());
        assert_eq!(open.decide(c, true).unwrap_err().code(), "account_denied");
        let listed = AccountPolicy::new(AccountMode::AllowList, allow.clone(), deny.clone());
        assert!(listed.decide(a, false).is_ok());
        assert_eq!(
            listed.decide(b, true).unwrap_err().code(),
            "account_unknown"
        );
        let registered = AccountPolicy::new(AccountMode::Registered, allow, deny);
        assert!(!registered.needs_registry(a));
        assert!(registered.needs_registry(b));
        assert!(!registered.needs_registry(c));
        assert!(registered.decide(a, false).is_ok());
        assert!(registered.decide(b, true).is_ok());
        assert_eq!(
            registered.decide(b, false).unwrap_err().code(),
            "account_unknown"
        );
        assert_eq!(
            registered.decide(c, true).unwrap_err().code(),
            "account_denied"
        );
    }

    #[test]
    fn nonce_below_current_is_refused() {
        assert!(check_nonce(5, 5).is_ok());
        assert!(check_nonce(9, 5).is_ok());
        assert_eq!(
            check_nonce(4, 5).unwrap_err(),
            RejectReason::NonceTooLow {
                nonce: 4,
                current: 5
            }
        );
    }
}
