//! Transactions that are not mined when they should be (issue 11 item 5; seed ¶37-38: the
//! relay "actively queries" what became of a transaction it sent).
//!
//! The follower's nonce watch looks at each sender's lowest unmined transaction once it has
//! had no receipt for `tracking.nonce_watch_after_ms` after its last broadcast, and asks the
//! node two things: the sender's account nonce (`eth_getTransactionCount`, latest) and
//! whether the node still holds the transaction (`eth_getTransactionByHash`). [`judge`]
//! turns those facts into a [`Verdict`]:
//!
//! ```text
//! account nonce > nonce, no receipt by hash  -> Replaced   (another transaction used it)
//! not held by the node                       -> Resend     (lost: the same bytes again, now)
//! watched >= stuck_after_blocks blocks, once:
//!   account nonce < nonce                    -> Stuck(NonceGap)
//!   fee cap < base fee                       -> Stuck(FeeBelowBaseFee)
//! otherwise                                  -> Wait
//! ```
//!
//! A node that accepts a batch and then loses part of it leaves every later transaction of
//! those senders waiting in its queue; the resend closes that gap within one watch period
//! instead of the `rebroadcast_after_ms` timer. [`expired`] decides the lifetime limit,
//! which applies to every unfinished transaction, lowest or not.

/// Why a transaction is reported `stuck` (the event's `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StuckReason {
    /// The node's account nonce is below the transaction's: a lower nonce was never sent or
    /// was lost.
    NonceGap,
    /// Its fee cap (`max_fee_per_gas`, or the legacy gas price) is below the head's base fee.
    FeeBelowBaseFee,
}

impl StuckReason {
    /// The event's `error` text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NonceGap => "nonce_gap",
            Self::FeeBelowBaseFee => "fee_below_base_fee",
        }
    }
}

/// What the nonce watch knows about a sender's lowest unmined transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The transaction's nonce.
    pub nonce: u64,
    /// The sender's nonce at the node's latest block (transactions mined from the account).
    pub account_nonce: u64,
    /// The node holds the transaction (pool or chain).
    pub held: bool,
    /// The head block the watch first saw it at.
    pub watched_since_block: u64,
    /// The current head block.
    pub head: u64,
    /// Its fee cap, wei per gas (`None` when unknown).
    pub fee_cap: Option<u128>,
    /// The head's base fee, wei per gas (`None` before London).
    pub base_fee: Option<u128>,
    /// A `stuck` notice was already made.
    pub stuck_notified: bool,
}

/// The nonce watch's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do.
    Wait,
    /// The node lost it: send the same bytes again now.
    Resend,
    /// Another transaction with the same sender and nonce was mined: final, `replaced`.
    Replaced,
    /// Report `stuck` once (the transaction stays tracked).
    Stuck(StuckReason),
}

/// Decides on `facts` with the `stuck_after_blocks` limit (blocks, >= 1).
///
/// The caller has checked that the node has no receipt for the transaction's hash before
/// it trusts `account_nonce > nonce` (a receipt means mined, not replaced).
pub fn judge(facts: &Facts, stuck_after_blocks: u64) -> Verdict {
    if facts.account_nonce > facts.nonce {
        return Verdict::Replaced;
    }
    if !facts.held {
        return Verdict::Resend;
    }
    let watched = facts.head.saturating_sub(facts.watched_since_block);
    if facts.stuck_notified || watched < stuck_after_blocks {
        return Verdict::Wait;
    }
    if facts.account_nonce < facts.nonce {
        return Verdict::Stuck(StuckReason::NonceGap);
    }
    match (facts.fee_cap, facts.base_fee) {
        (Some(cap), Some(base)) if cap < base => Verdict::Stuck(StuckReason::FeeBelowBaseFee),
        _ => Verdict::Wait,
    }
}

/// Whether a transaction accepted at `accepted_at_ms` is past its `lifetime_ms` at `now_ms`
/// (all Unix ms; a lifetime reaching past `u64::MAX` never ends).
pub fn expired(accepted_at_ms: u64, now_ms: u64, lifetime_ms: u64) -> bool {
    accepted_at_ms
        .checked_add(lifetime_ms)
        .is_some_and(|end| now_ms >= end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            nonce: 5,
            account_nonce: 5,
            held: true,
            watched_since_block: 100,
            head: 100,
            fee_cap: Some(10),
            base_fee: Some(7),
            stuck_notified: false,
        }
    }

    #[test]
    fn a_used_nonce_is_a_replacement_even_when_the_node_still_answers_for_the_hash() {
        for held in [true, false] {
            let f = Facts {
                account_nonce: 6,
                held,
                ..facts()
            };
            assert_eq!(judge(&f, 3), Verdict::Replaced);
        }
    }

    #[test]
    fn a_transaction_the_node_lost_is_sent_again_at_once_gap_or_not() {
        for account_nonce in [3, 5] {
            let f = Facts {
                account_nonce,
                held: false,
                ..facts()
            };
            assert_eq!(judge(&f, 3), Verdict::Resend);
        }
    }

    #[test]
    fn stuck_only_after_the_block_limit_and_only_once() {
        let gap = Facts {
            account_nonce: 4,
            head: 102,
            ..facts()
        };
        assert_eq!(judge(&gap, 3), Verdict::Wait);
        let later = Facts { head: 103, ..gap };
        assert_eq!(judge(&later, 3), Verdict::Stuck(StuckReason::NonceGap));
        let told = Facts {
            stuck_notified: true,
            ..later
        };
        assert_eq!(judge(&told, 3), Verdict::Wait);
    }

    #[test]
    fn an_underpriced_next_transaction_is_stuck_a_priced_one_waits() {
        let cheap = Facts {
            head: 110,
            fee_cap: Some(6),
            ..facts()
        };
        assert_eq!(
            judge(&cheap, 3),
            Verdict::Stuck(StuckReason::FeeBelowBaseFee)
        );
        let priced = Facts {
            fee_cap: Some(7),
            ..cheap
        };
        assert_eq!(judge(&priced, 3), Verdict::Wait);
        let unknown = Facts {
            base_fee: None,
            ..cheap
        };
        assert_eq!(judge(&unknown, 3), Verdict::Wait);
    }

    #[test]
    fn lifetime_ends_at_its_millisecond_and_never_overflows() {
        assert!(!expired(1_000, 1_999, 1_000));
        assert!(expired(1_000, 2_000, 1_000));
        assert!(!expired(u64::MAX - 1, u64::MAX, 10));
    }
}
