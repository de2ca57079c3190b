//! What the relay reads from a node's answers: block headers, receipts with their logs,
//! revert reasons, and JSON-RPC quantities.

use alloy::primitives::{Address, B256};
use serde_json::Value;

/// A block header as the follower needs it: number, hash, parent hash, base fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// The parent's hash.
    pub parent: B256,
    /// EIP-1559 base fee per gas, wei (`None` before London).
    pub base_fee: Option<u128>,
}

impl Header {
    /// Parses a header from a block or `newHeads` JSON object.
    pub fn parse(value: &Value) -> Option<Self> {
        Some(Self {
            number: quantity(value.get("number")?)?,
            hash: b256(value.get("hash")?)?,
            parent: b256(value.get("parentHash")?)?,
            base_fee: value
                .get("baseFeePerGas")
                .and_then(Value::as_str)
                .and_then(|t| u128::from_str_radix(t.strip_prefix("0x")?, 16).ok()),
        })
    }

    /// Its identity in the canonical window.
    pub fn block_ref(&self) -> crate::core::chain::BlockRef {
        crate::core::chain::BlockRef {
            number: self.number,
            hash: self.hash,
            parent: self.parent,
        }
    }
}

/// A transaction receipt as the relay stores and reports it (seed ¶27: "the execution result
/// is stored as a receipt, associated with the transaction hash"): every field of the node's
/// `eth_getTransactionReceipt` answer a client needs, in snake case, except the logs bloom
/// (derivable from the logs). Quantities are numbers, wei amounts decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    /// Transaction hash.
    pub tx_hash: B256,
    /// Including block number.
    pub block_number: u64,
    /// Including block hash.
    pub block_hash: B256,
    /// Position in the block.
    pub transaction_index: u64,
    /// The sender.
    pub from: Address,
    /// The recipient (`None` for a contract creation).
    pub to: Option<Address>,
    /// The created contract's address (contract creations only).
    pub contract_address: Option<Address>,
    /// Gas used by the transaction.
    pub gas_used: u64,
    /// Gas used in the block up to and including it.
    pub cumulative_gas_used: u64,
    /// Wei paid per gas (base fee + tip), decimal.
    pub effective_gas_price: String,
    /// EIP-2718 type.
    #[serde(rename = "type")]
    pub ty: u8,
    /// `status` 1 (success) or 0 (reverted, EIP-658).
    pub success: bool,
    /// The logs it emitted.
    pub logs: Vec<Log>,
}

/// One log entry of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Log {
    /// The emitting contract.
    pub address: Address,
    /// Indexed topics.
    pub topics: Vec<B256>,
    /// Unindexed data, 0x-hex.
    pub data: String,
    /// Position among the block's logs.
    pub log_index: u64,
}

/// Reads a JSON-RPC quantity (`"0x1a"`) as `u64`.
pub fn quantity(value: &Value) -> Option<u64> {
    let text = value.as_str()?.strip_prefix("0x")?;
    u64::from_str_radix(text, 16).ok()
}

pub(super) fn b256(value: &Value) -> Option<B256> {
    value.as_str()?.parse().ok()
}

/// A node's receipt JSON as a [`Receipt`]; `None` when a field is missing or malformed.
pub fn parse_receipt(value: &Value) -> Option<Receipt> {
    let address = |v: &Value| -> Option<Option<Address>> {
        match v {
            Value::Null => Some(None),
            other => other.as_str()?.parse().ok().map(Some),
        }
    };
    let logs = value
        .get("logs")?
        .as_array()?
        .iter()
        .map(|log| {
            Some(Log {
                address: log.get("address")?.as_str()?.parse().ok()?,
                topics: log
                    .get("topics")?
                    .as_array()?
                    .iter()
                    .map(b256)
                    .collect::<Option<_>>()?,
                data: log.get("data")?.as_str()?.to_owned(),
                log_index: quantity(log.get("logIndex")?)?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let price = value.get("effectiveGasPrice").and_then(|v| {
        let digits = v.as_str()?.strip_prefix("0x")?;
        u128::from_str_radix(digits, 16).ok()
    });
    Some(Receipt {
        tx_hash: b256(value.get("transactionHash")?)?,
        block_number: quantity(value.get("blockNumber")?)?,
        block_hash: b256(value.get("blockHash")?)?,
        transaction_index: quantity(value.get("transactionIndex")?)?,
        from: value.get("from")?.as_str()?.parse().ok()?,
        to: address(value.get("to").unwrap_or(&Value::Null))?,
        contract_address: address(value.get("contractAddress").unwrap_or(&Value::Null))?,
        gas_used: quantity(value.get("gasUsed")?)?,
        cumulative_gas_used: quantity(value.get("cumulativeGasUsed")?)?,
        effective_gas_price: price.unwrap_or(0).to_string(),
        ty: u8::try_from(value.get("type").and_then(quantity).unwrap_or(0)).ok()?,
        success: quantity(value.get("status")?)? == 1,
        logs,
    })
}

/// Decodes EVM revert data: `Error(string)` gives the string, `Panic(uint256)` gives
/// `panic 0x..`, other non-empty data gives `0x`-hex; empty data gives `None`.
pub fn decode_revert_reason(data: &[u8]) -> Option<String> {
    const ERROR: [u8; 4] = [0x08, 0xc3, 0x79, 0xa0];
    const PANIC: [u8; 4] = [0x4e, 0x48, 0x7b, 0x71];
    if data.is_empty() {
        return None;
    }
    let word = |i: usize| data.get(4 + 32 * i..4 + 32 * (i + 1));
    let as_usize = |w: &[u8]| -> Option<usize> {
        // Only the low 8 bytes may be set for a sane offset or length.
        if w[..24].iter().any(|b| *b != 0) {
            return None;
        }
        let mut low = [0_u8; 8];
        low.copy_from_slice(&w[24..]);
        usize::try_from(u64::from_be_bytes(low)).ok()
    };
    if data.starts_with(&ERROR) {
        let offset = word(0).and_then(as_usize)?;
        let len_at = 4 + offset;
        let len = data.get(len_at..len_at + 32).and_then(as_usize)?;
        let bytes = data.get(len_at + 32..len_at + 32 + len)?;
        return Some(String::from_utf8_lossy(bytes).into_owned());
    }
    if data.starts_with(&PANIC) {
        let code = word(0)?;
        let trimmed: Vec<u8> = code.iter().copied().skip_while(|b| *b == 0).collect();
        return Some(format!(
            "panic 0x{}",
            hex::encode(if trimmed.is_empty() { vec![0] } else { trimmed })
        ));
    }
    Some(format!("0x{}", hex::encode(data)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn receipts_parse_from_node_json() {
        // As anvil 1.7.1 answered for a reverted call (bloom trimmed).
        let value = json!({
            "type": "0x2", "status": "0x0", "cumulativeGasUsed": "0x5232",
            "transactionHash": "0xe8f794e4680daa6589d3c22dbabca5838db94088fd4eeab6b2be1f56a55fc646",
            "transactionIndex": "0x0",
            "blockHash": "0x81d1bd61cf19176830e1f88193658a32be606453175d0dfa94cb85686e21a192",
            "blockNumber": "0x1", "gasUsed": "0x5232", "effectiveGasPrice": "0x3b9aca07",
            "from": "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
            "to": "0x4242424242424242424242424242424242424242",
            "contractAddress": null, "logs": [], "logsBloom": "0x00"
        });
        let receipt = parse_receipt(&value).unwrap();
        assert_eq!(receipt.block_number, 1);
        assert_eq!(receipt.gas_used, 0x5232);
        assert_eq!(receipt.effective_gas_price, "1000000007");
        assert_eq!(receipt.ty, 2);
        assert!(!receipt.success);
        assert_eq!(receipt.contract_address, None);
        // A creation with a log.
        let mut created = value;
        created["to"] = Value::Null;
        created["contractAddress"] = json!("0x5fbdb2315678afecb367f032d93f642f64180aa3");
        created["logs"] = json!([{
            "address": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
            "topics": ["0x0000000000000000000000000000000000000000000000000000000000000001"],
            "data": "0x2a", "logIndex": "0x3", "blockNumber": "0x1"
        }]);
        let receipt = parse_receipt(&created).unwrap();
        assert_eq!(receipt.to, None);
        assert!(receipt.contract_address.is_some());
        assert_eq!(receipt.logs[0].log_index, 3);
        assert_eq!(receipt.logs[0].data, "0x2a");
        let text = serde_json::to_value(&receipt).unwrap();
        assert_eq!(text["type"], 2);
        assert!(parse_receipt(&json!({"status": "0x1"})).is_none());
    }

    #[test]
    fn revert_data_decodes() {
        let data = hex::decode("08c379a0000000000000000000000000000000000000000000000000000000000000002000000000000000000000000000000000000000000000000000000000000000046e6f706500000000000000000000000000000000000000000000000000000000").unwrap();
        assert_eq!(decode_revert_reason(&data).as_deref(), Some("nope"));
        let mut panic = vec![0x4e, 0x48, 0x7b, 0x71];
        panic.extend_from_slice(&[0; 31]);
        panic.push(0x11);
        assert_eq!(decode_revert_reason(&panic).as_deref(), Some("panic 0x11"));
        assert_eq!(decode_revert_reason(&[]), None);
        assert_eq!(decode_revert_reason(&[1, 2]).as_deref(), Some("0x0102"));
        // Truncated Error(string) does not panic.
        assert_eq!(decode_revert_reason(&data[..40]), None);
    }
}
