//! The result notice sent to receivers (seed ¶39: "send the execution result of the first
//! transaction to the receiver device").
//!
//! One [`Event`] is made per result of a transaction: mined, failed (reverted, final),
//! reorged (a delivered result was undone by a reorg; a new result follows), rejected (no
//! node will ever take it), and the notices stuck (not mined for a while, with the reason),
//! replaced (another transaction took its nonce) and expired (not mined within its lifetime).
//! Its `event_id` is derived from the chain, hash, status and block hash, so the same result
//! always has the same id: redeliveries after a retry or a crash carry the id the receiver
//! has already seen, and receivers dedupe on it.

use alloy::primitives::{Address, B256};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What happened to the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Executed successfully with the configured confirmations (receipt status 1).
    Mined,
    /// Mined but reverted (receipt status 0): its nonce is used, it is final; `revert_reason`
    /// says why (seed ¶44-45 reading in the crate docs).
    Failed,
    /// A result delivered earlier was undone by a reorg; the transaction is sent again and a
    /// new result follows.
    Reorged,
    /// No node will accept it (its nonce was already used, the sender cannot pay, ...);
    /// `error` says why.
    Rejected,
    /// Sent, but not in a block `tracking.stuck_after_blocks` blocks later while the node
    /// reports a nonce gap or its fee cap is below the base fee; `error` says which. It is
    /// still tracked: a `mined` (or `replaced`, `expired`) notice may follow.
    Stuck,
    /// Another transaction with the same sender and nonce was mined (`replaced_by`, when
    /// known); final.
    Replaced,
    /// Not in a block within `tracking.lifetime_seconds`; final: the relay stops sending and
    /// watching it (a node may still mine the bytes it holds; the relay no longer reports it).
    Expired,
}

impl EventStatus {
    /// The snake-case name used in payloads and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mined => "mined",
            Self::Failed => "failed",
            Self::Reorged => "reorged",
            Self::Rejected => "rejected",
            Self::Stuck => "stuck",
            Self::Replaced => "replaced",
            Self::Expired => "expired",
        }
    }
}

impl std::str::FromStr for EventStatus {
    type Err = crate::error::StoreError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "mined" => Ok(Self::Mined),
            "failed" => Ok(Self::Failed),
            "reorged" => Ok(Self::Reorged),
            "rejected" => Ok(Self::Rejected),
            "stuck" => Ok(Self::Stuck),
            "replaced" => Ok(Self::Replaced),
            "expired" => Ok(Self::Expired),
            other => Err(crate::error::StoreError::Corrupt {
                what: "event status",
                value: other.to_owned(),
            }),
        }
    }
}

/// The JSON body POSTed to webhooks and pushed over the WebSocket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Stable id of this result (32 hex digits); receivers dedupe on it.
    pub event_id: String,
    /// The transaction hash.
    pub tx_hash: B256,
    /// The chain.
    pub chain_id: u64,
    /// What happened.
    pub status: EventStatus,
    /// The including block (for `reorged`: the block that was undone).
    pub block_number: Option<u64>,
    /// Its hash.
    pub block_hash: Option<B256>,
    /// Gas used, from the receipt.
    pub gas_used: Option<u64>,
    /// The full receipt of a `mined` or `failed` transaction (contract address, logs,
    /// effective gas price, cumulative gas, type, status).
    pub receipt: Option<crate::node::Receipt>,
    /// Why a `failed` transaction reverted (`Error(string)` text, `panic 0x..`, or revert
    /// data as hex), when the node can trace it.
    pub revert_reason: Option<String>,
    /// Why a `rejected` transaction was given up, or why a `stuck` one is stuck
    /// (`nonce_gap`, `fee_below_base_fee`).
    pub error: Option<String>,
    /// The transaction that took the nonce of a `replaced` one, when known.
    pub replaced_by: Option<B256>,
    /// The sending account.
    pub sender: Address,
    /// The recipient account (`None` for a contract creation).
    pub recipient: Option<Address>,
    /// The transaction's nonce.
    pub nonce: u64,
    /// Confirmations required before `mined`/`failed` was sent.
    pub confirmations: u64,
    /// When the relay made the event, Unix milliseconds.
    pub emitted_at_ms: u64,
}

/// The stable id of a result: the first 16 bytes of SHA-256 over
/// `txrelay-event-v1|chain_id|tx_hash|status|block_hash`, as hex.
pub fn event_id(
    chain_id: u64,
    tx_hash: B256,
    status: EventStatus,
    block_hash: Option<B256>,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"txrelay-event-v1|");
    hasher.update(chain_id.to_string().as_bytes());
    hasher.update(b"|");
    hasher.update(tx_hash.as_slice());
    hasher.update(b"|");
    hasher.update(status.as_str().as_bytes());
    hasher.update(b"|");
    if let Some(block_hash) = block_hash {
        hasher.update(block_hash.as_slice());
    }
    hex::encode(&hasher.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinguish_results() {
        let tx = B256::repeat_byte(1);
        let a = B256::repeat_byte(0xa);
        let b = B256::repeat_byte(0xb);
        let mined_a = event_id(1, tx, EventStatus::Mined, Some(a));
        assert_eq!(mined_a, event_id(1, tx, EventStatus::Mined, Some(a)));
        assert_eq!(mined_a.len(), 32);
        for other in [
            event_id(1, tx, EventStatus::Mined, Some(b)),
            event_id(1, tx, EventStatus::Reorged, Some(a)),
            event_id(2, tx, EventStatus::Mined, Some(a)),
            event_id(1, tx, EventStatus::Rejected, None),
        ] {
            assert_ne!(mined_a, other);
        }
    }
}
