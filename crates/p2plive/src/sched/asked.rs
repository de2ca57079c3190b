//! The requests a poll has in flight per neighbour ([`Asked`]), for the per-peer request cap
//! and the spare upload left after this peer's own requests ([`super::Scheduler::poll`]).

use super::PeerId;

/// The P2P requests in flight per peer during one poll: (peer, requests, bytes asked). At most
/// `max_peer_requests` entries, so a linear scan beats hashing.
#[derive(Debug, Default)]
pub(super) struct Asked(Vec<(PeerId, usize, u64)>);

impl Asked {
    /// One more request of `bytes` asked of `peer`.
    pub(super) fn add(&mut self, peer: PeerId, bytes: u64) {
        match self.0.iter_mut().find(|(p, _, _)| *p == peer) {
            Some((_, n, b)) => {
                *n += 1;
                *b += bytes;
            }
            None => self.0.push((peer, 1, bytes)),
        }
    }

    /// Requests in flight to `peer`.
    pub(super) fn requests(&self, peer: PeerId) -> usize {
        self.0
            .iter()
            .find(|(p, _, _)| *p == peer)
            .map_or(0, |(_, n, _)| *n)
    }

    /// Bytes asked of `peer` by the requests in flight.
    pub(super) fn bytes(&self, peer: PeerId) -> u64 {
        self.0
            .iter()
            .find(|(p, _, _)| *p == peer)
            .map_or(0, |(_, _, b)| *b)
    }
}
