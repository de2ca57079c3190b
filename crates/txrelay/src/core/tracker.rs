//! A sent transaction's life on chain (seed ¶37-38, ¶44-45), as decisions on observations.
//!
//! On every new head the relay asks the node for the receipts of its own unfinished
//! transactions (and no others) and calls [`observe`] for each:
//!
//! ```text
//!            receipt, < N confs          >= N confs                 >= N + watch confs
//! Pending ───────────────────> Included ───────────> Confirmed ──────────────────> finalized
//!   ^  │ no receipt for `rebroadcast_after`: CheckPool -> not in pool: Rebroadcast
//!   │  │
//!   └──┴──── receipt gone (reorg): Reorged, rebroadcast; receivers told if they were told
//! ```
//!
//! `Confirmed` means the result (mined or failed) has been handed to the outbox. Results of
//! reverted transactions are final (¶44-45 reading, see the crate docs): their nonce is used,
//! the same bytes can never execute again, so the receivers get a "failed" notice with the
//! revert reason. What is resent are transactions that never made it into a block (a failed
//! broadcast, a drop from the pool, a reorg), always with the same signed bytes.

use crate::error::{NodeError, RpcErrorKind};
use crate::node::Receipt;

use super::backoff::{Backoff, Retry};

/// Where a tracked transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Sent; no receipt yet.
    Pending,
    /// In a block, short of the configured confirmations.
    Included,
    /// Confirmed and its result handed to the outbox; watched for reorgs until finalized.
    Confirmed,
}

/// The block a transaction was found in and its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inclusion {
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: alloy::primitives::B256,
    /// Gas used.
    pub gas_used: u64,
    /// Receipt status (false: reverted).
    pub success: bool,
}

impl From<&Receipt> for Inclusion {
    fn from(receipt: &Receipt) -> Self {
        Self {
            block_number: receipt.block_number,
            block_hash: receipt.block_hash,
            gas_used: receipt.gas_used,
            success: receipt.success,
        }
    }
}

/// What the relay knows about one tracked transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    /// Its phase.
    pub phase: Phase,
    /// The recorded inclusion (set in `Included` and `Confirmed`).
    pub inclusion: Option<Inclusion>,
    /// Unix ms of the last broadcast or pool check; the rebroadcast timer runs from here.
    pub last_activity_ms: u64,
}

/// Per-chain tracking parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Blocks, counting the including one, before the result is delivered (>= 1).
    pub confirmations: u64,
    /// Further blocks during which a delivered result is watched for reorgs.
    pub reorg_watch_blocks: u64,
    /// Milliseconds without a receipt before the node's pool is checked.
    pub rebroadcast_after_ms: u64,
}

/// The decision for one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do yet.
    Wait,
    /// Found in a block it was not recorded in: record `inclusion`. When `reorged_from` is
    /// set the earlier inclusion was reorged away (receivers are told if `notify_reorg`).
    /// With `confirm` the confirmations are already reached: deliver the result now.
    Include {
        /// The new inclusion.
        inclusion: Inclusion,
        /// The inclusion it replaces, if any.
        reorged_from: Option<Inclusion>,
        /// Whether receivers were told about `reorged_from` and must hear of the reorg.
        notify_reorg: bool,
        /// Whether to deliver the result at once.
        confirm: bool,
    },
    /// The recorded inclusion has its confirmations: deliver the result.
    Confirm,
    /// Deep enough: stop watching.
    Finalize,
    /// The receipt is gone: the block was reorged away. Back to pending and send the same
    /// bytes again; tell receivers when `notify`.
    Reorged {
        /// The lost inclusion.
        from: Inclusion,
        /// Whether receivers had been told about it.
        notify: bool,
    },
    /// No receipt for too long: ask the node whether it still holds the transaction.
    CheckPool,
}

/// Confirmations of a block at `block` with the chain at `head` (the including block counts
/// as one; a head behind the block, seen from a lagging node, counts as one).
pub fn confirmations(block: u64, head: u64) -> u64 {
    head.max(block) - block + 1
}

/// Decides on `receipt` (the node's answer for the hash, `None` when it has none) with the
/// chain at block `head` and the time at `now_ms`.
pub fn observe(
    tracked: &Tracked,
    receipt: Option<&Receipt>,
    head: u64,
    now_ms: u64,
    policy: &Policy,
) -> Step {
    match (receipt, tracked.inclusion) {
        (Some(receipt), Some(known)) if receipt.block_hash == known.block_hash => {
            let confs = confirmations(known.block_number, head);
            match tracked.phase {
                Phase::Included | Phase::Pending if confs >= policy.confirmations => Step::Confirm,
                Phase::Confirmed
                    if confs
                        >= policy
                            .confirmations
                            .saturating_add(policy.reorg_watch_blocks) =>
                {
                    Step::Finalize
                }
                _ => Step::Wait,
            }
        }
        (Some(receipt), known) => {
            let inclusion = Inclusion::from(receipt);
            let reorged_from = if tracked.phase == Phase::Pending {
                None
            } else {
                known
            };
            Step::Include {
                inclusion,
                reorged_from,
                notify_reorg: reorged_from.is_some() && tracked.phase == Phase::Confirmed,
                confirm: confirmations(inclusion.block_number, head) >= policy.confirmations,
            }
        }
        (None, Some(from)) if tracked.phase != Phase::Pending => Step::Reorged {
            from,
            notify: tracked.phase == Phase::Confirmed,
        },
        (None, _) => {
            if now_ms.saturating_sub(tracked.last_activity_ms) >= policy.rebroadcast_after_ms {
                Step::CheckPool
            } else {
                Step::Wait
            }
        }
    }
}

/// After a pool check: rebroadcast the same bytes when the node no longer holds the
/// transaction (dropped, evicted, or lost with a node restart), else keep waiting.
pub fn rebroadcast_needed(in_pool: bool) -> bool {
    !in_pool
}

/// What a broadcast attempt's result means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BroadcastStep {
    /// A node accepted (or already held) it.
    Sent,
    /// Transient failure: try again at this Unix millisecond.
    RetryAt(u64),
    /// A rebroadcast was answered "nonce too low" and no receipt is known: it was mined and
    /// the receipt is not seen yet, or another transaction used the nonce. Stop this attempt;
    /// the tracker looks the receipt and the account nonce up and reports `replaced` when it
    /// was the latter.
    NonceConflict,
    /// It can never be sent: record it as rejected with this reason and tell the receivers.
    Rejected(String),
}

/// The facts about a broadcast attempt besides its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// This attempt's number (1 for the first).
    pub attempts: u32,
    /// Whether a node accepted the transaction earlier (then "nonce too low" may just mean it
    /// was mined).
    pub sent_before: bool,
}

/// Decides on the outcome of a broadcast attempt at `now_ms` (`jitter` in `[0, 1]` for the
/// retry delay).
pub fn after_broadcast(
    result: Result<(), &NodeError>,
    attempt: Attempt,
    backoff: &Backoff,
    now_ms: u64,
    jitter: f64,
) -> BroadcastStep {
    let Attempt {
        attempts,
        sent_before,
    } = attempt;
    let error = match result {
        Ok(()) => return BroadcastStep::Sent,
        Err(error) => error,
    };
    if error.retryable() {
        return match backoff.after_failure(attempts, now_ms, jitter) {
            Retry::At(at) => BroadcastStep::RetryAt(at),
            Retry::GiveUp => BroadcastStep::Rejected(format!(
                "no node accepted it after {attempts} attempts: {error}"
            )),
        };
    }
    match error.rpc_kind() {
        Some(RpcErrorKind::NonceTooLow) if sent_before => BroadcastStep::NonceConflict,
        _ => BroadcastStep::Rejected(node_message(error)),
    }
}

fn node_message(error: &NodeError) -> String {
    match error {
        NodeError::Rpc { message, .. } => message.clone(),
        NodeError::AllFailed { last, .. } => node_message(last),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::B256;
    use std::time::Duration;
    use svckit::TestClock;

    const POLICY: Policy = Policy {
        confirmations: 2,
        reorg_watch_blocks: 3,
        rebroadcast_after_ms: 1_000,
    };

    fn receipt(block: u64, tag: u8) -> Receipt {
        Receipt {
            tx_hash: B256::repeat_byte(1),
            block_number: block,
            block_hash: B256::repeat_byte(tag),
            transaction_index: 0,
            from: alloy::primitives::Address::repeat_byte(2),
            to: None,
            contract_address: None,
            gas_used: 21_000,
            cumulative_gas_used: 21_000,
            effective_gas_price: "1".to_owned(),
            ty: 2,
            success: true,
            logs: Vec::new(),
        }
    }

    fn apply(tracked: &mut Tracked, step: Step, now_ms: u64) {
        match step {
            Step::Include {
                inclusion, confirm, ..
            } => {
                tracked.inclusion = Some(inclusion);
                tracked.phase = if confirm {
                    Phase::Confirmed
                } else {
                    Phase::Included
                };
            }
            Step::Confirm => tracked.phase = Phase::Confirmed,
            Step::Reorged { .. } => {
                tracked.phase = Phase::Pending;
                tracked.inclusion = None;
                tracked.last_activity_ms = now_ms;
            }
            Step::Wait | Step::Finalize | Step::CheckPool => {}
        }
    }

    #[test]
    fn pending_included_confirmed_finalized() {
        let mut t = Tracked {
            phase: Phase::Pending,
            inclusion: None,
            last_activity_ms: 0,
        };
        assert_eq!(observe(&t, None, 9, 500, &POLICY), Step::Wait);
        let step = observe(&t, Some(&receipt(10, 0xa)), 10, 600, &POLICY);
        assert!(matches!(
            step,
            Step::Include {
                confirm: false,
                reorged_from: None,
                ..
            }
        ));
        apply(&mut t, step, 600);
        assert_eq!(
            observe(&t, Some(&receipt(10, 0xa)), 10, 700, &POLICY),
            Step::Wait
        );
        assert_eq!(
            observe(&t, Some(&receipt(10, 0xa)), 11, 800, &POLICY),
            Step::Confirm
        );
        apply(&mut t, Step::Confirm, 800);
        assert_eq!(
            observe(&t, Some(&receipt(10, 0xa)), 13, 900, &POLICY),
            Step::Wait
        );
        assert_eq!(
            observe(&t, Some(&receipt(10, 0xa)), 14, 900, &POLICY),
            Step::Finalize
        );
    }

    #[test]
    fn a_receipt_at_enough_depth_confirms_at_once() {
        let t = Tracked {
            phase: Phase::Pending,
            inclusion: None,
            last_activity_ms: 0,
        };
        assert!(matches!(
            observe(&t, Some(&receipt(10, 0xa)), 12, 0, &POLICY),
            Step::Include { confirm: true, .. }
        ));
    }

    #[test]
    fn reorg_after_delivery_is_reported_and_retracked() {
        let inclusion = Inclusion::from(&receipt(10, 0xa));
        let confirmed = Tracked {
            phase: Phase::Confirmed,
            inclusion: Some(inclusion),
            last_activity_ms: 0,
        };
        // Receipt gone: reorged, receivers told.
        assert_eq!(
            observe(&confirmed, None, 11, 0, &POLICY),
            Step::Reorged {
                from: inclusion,
                notify: true
            }
        );
        // Receipt moved to another block: the old one is reported, the new one recorded.
        assert!(matches!(
            observe(&confirmed, Some(&receipt(11, 0xb)), 11, 0, &POLICY),
            Step::Include {
                reorged_from: Some(from),
                notify_reorg: true,
                confirm: false,
                ..
            } if from == inclusion
        ));
        // Not yet delivered: reorg handled silently.
        let included = Tracked {
            phase: Phase::Included,
            ..confirmed
        };
        assert_eq!(
            observe(&included, None, 11, 0, &POLICY),
            Step::Reorged {
                from: inclusion,
                notify: false
            }
        );
    }

    #[test]
    fn missing_receipt_leads_to_a_pool_check_after_the_timeout() {
        let clock = TestClock::starting_at(std::time::UNIX_EPOCH);
        let sent = crate::core::now_ms(&clock);
        let t = Tracked {
            phase: Phase::Pending,
            inclusion: None,
            last_activity_ms: sent,
        };
        clock.tick(Duration::from_millis(999));
        assert_eq!(
            observe(&t, None, 5, crate::core::now_ms(&clock), &POLICY),
            Step::Wait
        );
        clock.tick(Duration::from_millis(1));
        assert_eq!(
            observe(&t, None, 5, crate::core::now_ms(&clock), &POLICY),
            Step::CheckPool
        );
        assert!(rebroadcast_needed(false));
        assert!(!rebroadcast_needed(true));
    }

    fn rpc(kind: RpcErrorKind, message: &str) -> NodeError {
        NodeError::Rpc {
            url: "u".to_owned(),
            method: "eth_sendRawTransaction",
            code: -32003,
            message: message.to_owned(),
            kind,
        }
    }

    #[test]
    fn broadcast_outcomes() {
        let backoff = Backoff::new(crate::config::BackoffSettings {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_attempts: 3,
        });
        let down = NodeError::Timeout {
            url: "u".to_owned(),
            after: Duration::from_secs(1),
        };
        assert_eq!(
            after_broadcast(
                Ok(()),
                Attempt {
                    attempts: 1,
                    sent_before: false,
                },
                &backoff,
                0,
                0.0
            ),
            BroadcastStep::Sent
        );
        assert_eq!(
            after_broadcast(
                Err(&down),
                Attempt {
                    attempts: 1,
                    sent_before: false,
                },
                &backoff,
                1_000,
                1.0
            ),
            BroadcastStep::RetryAt(1_100)
        );
        assert!(matches!(
            after_broadcast(
                Err(&down),
                Attempt {
                    attempts: 3,
                    sent_before: false,
                },
                &backoff,
                0,
                1.0
            ),
            BroadcastStep::Rejected(_)
        ));
        let low = rpc(RpcErrorKind::NonceTooLow, "nonce too low");
        assert_eq!(
            after_broadcast(
                Err(&low),
                Attempt {
                    attempts: 1,
                    sent_before: false,
                },
                &backoff,
                0,
                0.0
            ),
            BroadcastStep::Rejected("nonce too low".to_owned())
        );
        assert_eq!(
            after_broadcast(
                Err(&low),
                Attempt {
                    attempts: 1,
                    sent_before: true,
                },
                &backoff,
                0,
                0.0
            ),
            BroadcastStep::NonceConflict
        );
        let funds = rpc(
            RpcErrorKind::InsufficientFunds,
            "Insufficient funds for gas",
        );
        assert_eq!(
            after_broadcast(
                Err(&funds),
                Attempt {
                    attempts: 1,
                    sent_before: false,
                },
                &backoff,
                0,
                0.0
            ),
            BroadcastStep::Rejected("Insufficient funds for gas".to_owned())
        );
    }
}
