//! Per-key request rate limits: a token bucket (the GCRA/"leaky bucket as a meter" family
//! that `governor` and nginx `limit_req` implement), sans-I/O: the caller passes the time.
//!
//! A bucket holds at most `burst` tokens and gains `rate` tokens per second; a request takes
//! one. An empty bucket answers how long until the next token, which the API sends as
//! `429 Too Many Requests` with `Retry-After` (RFC 9110 §10.2.3, whole seconds, rounded up).

use std::time::Duration;

/// A rate: `rate` tokens per second, at most `burst` stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    /// Tokens gained per second (> 0).
    pub rate: f64,
    /// Most tokens stored, the largest burst allowed (>= 1).
    pub burst: f64,
}

/// One key's bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    /// Time of the last update, in milliseconds on the caller's clock.
    at_ms: u64,
}

/// The answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Go ahead.
    Yes,
    /// Refused; a token is available after this long.
    RetryAfter(Duration),
}

impl TokenBucket {
    /// A full bucket at `now_ms`.
    pub fn full(quota: Quota, now_ms: u64) -> Self {
        Self {
            tokens: quota.burst,
            at_ms: now_ms,
        }
    }

    /// Takes one token at `now_ms` (a clock going backwards counts as no time passing).
    pub fn take(&mut self, quota: Quota, now_ms: u64) -> Admit {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * quota.rate).min(quota.burst);
        self.at_ms = self.at_ms.max(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Admit::Yes
        } else {
            let wait = (1.0 - self.tokens) / quota.rate.max(f64::MIN_POSITIVE);
            Admit::RetryAfter(Duration::from_secs_f64(wait.min(86_400.0)))
        }
    }

    /// Whether the bucket is full again at `now_ms` (it can then be forgotten).
    pub fn is_full(&self, quota: Quota, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        self.tokens + elapsed * quota.rate >= quota.burst
    }
}

/// `Retry-After` seconds for a wait: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTA: Quota = Quota {
        rate: 10.0,
        burst: 5.0,
    };

    #[test]
    fn a_burst_then_the_rate() {
        let mut bucket = TokenBucket::full(QUOTA, 0);
        for _ in 0..5 {
            assert_eq!(bucket.take(QUOTA, 0), Admit::Yes);
        }
        let Admit::RetryAfter(wait) = bucket.take(QUOTA, 0) else {
            panic!("the sixth request in the same instant passed");
        };
        assert_eq!(wait, Duration::from_millis(100));
        // 100 ms later one token is back, and only one.
        assert_eq!(bucket.take(QUOTA, 100), Admit::Yes);
        assert!(matches!(bucket.take(QUOTA, 100), Admit::RetryAfter(_)));
        // Over one virtual second at 20 requests/s, 10 pass.
        let passed = (0..20)
            .filter(|i| bucket.take(QUOTA, 150 + i * 50) == Admit::Yes)
            .count();
        assert_eq!(passed, 10);
        assert!(bucket.is_full(QUOTA, 10_000));
    }

    #[test]
    fn a_clock_going_back_gives_nothing() {
        let mut bucket = TokenBucket::full(QUOTA, 1_000);
        for _ in 0..5 {
            bucket.take(QUOTA, 1_000);
        }
        assert!(matches!(bucket.take(QUOTA, 500), Admit::RetryAfter(_)));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(100)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
