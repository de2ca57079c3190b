//! Token buckets capping the upload or download rate of one P2P link in the application (there
//! is no traffic shaper in CI). The bucket itself is sans-I/O: time is passed in.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A token bucket: `rate` bytes per second, holding at most `burst` bytes of credit.
///
/// [`TokenBucket::take`] books `n` bytes and answers how long the caller must wait before
/// sending them; debt is allowed, so a chunk larger than `burst` still goes through, later.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at time `now` refilling at `rate_bytes_per_s` (> 0) up to `burst_bytes`.
    pub fn new(rate_bytes_per_s: u64, burst_bytes: u64, now: Instant) -> Self {
        let burst = burst_bytes.max(1) as f64;
        Self {
            rate: rate_bytes_per_s.max(1) as f64,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Books `bytes` at `now` and returns how long to wait before they may go out (zero when
    /// the credit covers them).
    pub fn take(&mut self, now: Instant, bytes: u64) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// A shareable, optional rate cap for async code: `None` means unlimited.
#[derive(Debug, Clone, Default)]
pub struct RateCap {
    bucket: Option<Arc<Mutex<TokenBucket>>>,
}

impl RateCap {
    /// A cap of `rate_bytes_per_s` (0 = unlimited) with a burst of a quarter second's worth
    /// (at least 16 KiB).
    pub fn new(rate_bytes_per_s: u64) -> Self {
        if rate_bytes_per_s == 0 {
            return Self::default();
        }
        let burst = (rate_bytes_per_s / 4).max(16 * 1024);
        Self {
            bucket: Some(Arc::new(Mutex::new(TokenBucket::new(
                rate_bytes_per_s,
                burst,
                Instant::now(),
            )))),
        }
    }

    /// Waits until `bytes` may pass.
    pub async fn acquire(&self, bytes: u64) {
        let Some(bucket) = &self.bucket else { return };
        let wait = bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(Instant::now(), bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_paces_to_its_rate_in_virtual_time() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1000, 500, t0);
        assert_eq!(bucket.take(t0, 500), Duration::ZERO, "burst is free");
        assert_eq!(bucket.take(t0, 250), Duration::from_millis(250));
        // 1 s later 1000 bytes of credit came in, 250 paid the debt, capped at burst 500.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(bucket.take(t1, 500), Duration::ZERO);
        assert_eq!(bucket.take(t1, 100), Duration::from_millis(100));
        // Sending 10 kB takes 10 s at 1 kB/s, whatever the chunking.
        let mut bucket = TokenBucket::new(1000, 1, t0);
        let mut now = t0;
        for _ in 0..100 {
            now += bucket.take(now, 100);
        }
        let total = now - t0;
        assert!(
            total >= Duration::from_millis(9_990) && total <= Duration::from_millis(10_000),
            "{total:?}"
        );
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(5);
        let mut bucket = TokenBucket::new(100, 100, t0);
        assert_eq!(
            bucket.take(t0 - Duration::from_secs(1), 100),
            Duration::ZERO
        );
        assert_eq!(bucket.take(t0, 100), Duration::from_secs(1));
    }
}
