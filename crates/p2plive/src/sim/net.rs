//! The simulated network: a seeded random source, per-peer upload capacities drawn from a
//! log-normal distribution, and the link model that turns a transfer into an arrival time.
//!
//! Link model (issue 16 item 4, step 1): a transfer of `size` bytes from a peer takes
//! `size / min(sender upload, receiver download) + RTT/2`. A peer's uploads are served one
//! after the other (FIFO at full capacity), so a busy sender's "spare" upload is what is left
//! after the transfers already queued. The CDN has unbounded upload: only the receiver's
//! download and the RTT count.

/// A small seeded xorshift64* generator: deterministic for a seed, not cryptographic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Self {
        // splitmix64 step so that nearby seeds give unrelated streams and the state is never 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self(if z == 0 { 1 } else { z })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniform value in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal value (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A log-normal value with the given arithmetic `mean` and log-space `sigma`.
    pub fn log_normal(&mut self, mean: f64, sigma: f64) -> f64 {
        let mu = mean.ln() - sigma * sigma / 2.0;
        (mu + sigma * self.normal()).exp()
    }
}

/// One simulated peer's link: capacities in bytes per second, RTT in microseconds, and the
/// time (µs of virtual time) until which its upload is busy.
#[derive(Debug, Clone)]
pub struct Link {
    /// Upload capacity, bytes/s.
    pub upload: f64,
    /// Download capacity, bytes/s.
    pub download: f64,
    /// Round-trip time to anyone (peer or CDN), µs.
    pub rtt_us: u64,
    /// Virtual time at which the uploads queued so far are done, µs.
    pub busy_until: u64,
}

impl Link {
    /// Queues an upload of `size` bytes to `to`, requested at `now` (µs); returns when the
    /// receiver has it (µs): `size / min(upload, to.download)` after the uploads ahead of it,
    /// plus `to`'s RTT/2.
    pub fn send(&mut self, now: u64, size: u64, to: &Self) -> u64 {
        let rate = self.upload.min(to.download).max(1.0);
        let start = now.max(self.busy_until);
        let done = start + secs_to_us(size as f64 / rate);
        self.busy_until = done;
        done + to.rtt_us / 2
    }

    /// When a CDN transfer of `size` bytes requested at `now` (µs) reaches this peer (µs):
    /// the CDN's upload is unbounded, so only this peer's download and RTT/2 count.
    pub fn from_cdn(&self, now: u64, size: u64) -> u64 {
        now + secs_to_us(size as f64 / self.download.max(1.0)) + self.rtt_us / 2
    }
}

fn secs_to_us(secs: f64) -> u64 {
    (secs * 1e6).round() as u64
}
