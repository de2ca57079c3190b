//! The mesh side of the simulated peers: applying the tracker's partial views and deltas,
//! buffer maps of new neighbours, "have" messages with the sender's upload advert.

use std::collections::{BTreeMap, BTreeSet};

use super::{Event, Have, Policy, Sim};
use crate::sched::{PeerId, Scheduler, Upload};
use crate::substream::Layout;
use crate::tracker::View;

impl Sim<'_> {
    /// Applies a tracker view to peer `n` as the real driver does: a changed layout or
    /// prefetch set restarts the subscription from the next block cut; the neighbourhood (in
    /// full or as a delta) replaces the scheduler's peers, and each new neighbour's buffer
    /// map is fetched (one RTT). Returns whether the assignment or the neighbourhood changed.
    pub(super) fn apply_view(&mut self, n: usize, view: &View) -> bool {
        self.tracker_bytes += neighbourhood_bytes(view);
        let cdn_only = self.policy == Policy::CdnOnly;
        let cut = self.cut;
        let prefetch = self.policy_prefetch(n, &view.layout, &view.prefetch);
        let peer = &mut self.peers[n];
        peer.view_version = view.version;
        let Some(sched) = peer.sched.as_mut() else {
            return false;
        };
        let mut changed = false;
        if prefetch != peer.prefetch || peer.layout.as_ref() != Some(&view.layout) {
            changed = true;
            peer.layout = Some(view.layout.clone());
            if peer.prefetch != prefetch {
                peer.prefetch_from = peer.prefetch_from.max(cut);
            }
            peer.prefetch = prefetch;
            let mine = peer
                .prefetch
                .iter()
                .map(|b| (*b, peer.prefetch_from))
                .collect();
            sched.set_assignment(view.layout.clone(), mine);
        }
        if cdn_only || (view.peers.is_none() && view.changed.is_empty() && view.removed.is_empty())
        {
            return changed;
        }
        let before: BTreeSet<PeerId> = peer.known.keys().copied().collect();
        view.apply_to(&mut peer.known);
        let entries: Vec<(PeerId, BTreeSet<u32>)> = peer
            .known
            .values()
            .map(|e| (e.id, e.prefetch.clone()))
            .collect();
        let neighbours: BTreeMap<PeerId, BTreeSet<u32>> = entries
            .into_iter()
            .map(|(id, assigned)| {
                let prefetch = match self.by_id.get(&id) {
                    Some(&j) => self.policy_prefetch(j, &view.layout, &assigned),
                    None => BTreeSet::new(),
                };
                (id, prefetch)
            })
            .collect();
        let links = self.peers[n]
            .known
            .keys()
            .filter_map(|id| self.by_id.get(id).copied())
            .collect();
        let peer = &mut self.peers[n];
        peer.links = links;
        if let Some(sched) = peer.sched.as_mut() {
            sched.set_peers(neighbours);
        }
        let added: Vec<PeerId> = peer
            .known
            .keys()
            .filter(|id| !before.contains(id))
            .copied()
            .collect();
        let rtt = peer.link.rtt_us;
        for id in added {
            if let Some(&from) = self.by_id.get(&id) {
                self.push(self.now + rtt, Event::Map { to: n, from });
            }
        }
        true
    }

    /// The substreams peer `n` prefetches from the CDN under the policy, given the layout and
    /// what the tracker assigned it (`assigned`, least-covered).
    pub(super) fn policy_prefetch(
        &self,
        n: usize,
        layout: &Layout,
        assigned: &BTreeSet<u32>,
    ) -> BTreeSet<u32> {
        match self.policy {
            Policy::LeastCovered => assigned.clone(),
            Policy::Random => {
                let s = u64::from(layout.current().substreams.max(1));
                // s <= u32::MAX, so the draw fits.
                BTreeSet::from([1 + (self.peers[n].pick % s) as u32])
            }
            Policy::NoPrefetch | Policy::CdnOnly => BTreeSet::new(),
        }
    }

    /// The upload peer `n` advertises: its capacity and queue, in the schedulers' byte units
    /// (the 8-byte block tokens stand for `block_bytes`).
    fn upload_of(&self, n: usize) -> Upload {
        let link = &self.peers[n].link;
        let scale = 8.0 / self.config.block_bytes().max(1) as f64;
        let queued = link.busy_until.saturating_sub(self.now) as f64 / 1e6 * link.upload;
        Upload {
            cap_bytes_per_s: (link.upload * scale).round() as u64,
            queued_bytes: (queued * scale).round() as u64,
        }
    }

    /// Sends `have` to peer `to`: queued in its inbox until the have tick at or after its
    /// arrival.
    pub(super) fn send_have(&mut self, to: usize, have: Have) {
        let peer = &mut self.peers[to];
        peer.inbox.push(have);
        if !peer.dirty {
            peer.dirty = true;
            self.dirty.push(to);
        }
        if !self.tick_pending {
            self.tick_pending = true;
            let tick = self.have_tick_us();
            self.push(have.at.div_ceil(tick) * tick, Event::Tick);
        }
    }

    fn have_tick_us(&self) -> u64 {
        self.config.have_batch_ms.max(1) * 1000
    }

    /// The have tick: every peer with haves due learns them (and its neighbours' upload
    /// adverts), and its scheduler is polled once when one of them names a block it wants.
    pub(super) fn on_tick(&mut self) {
        self.tick_pending = false;
        let dirty = std::mem::take(&mut self.dirty);
        let mut again = Vec::new();
        for to in dirty {
            let mut inbox = std::mem::take(&mut self.peers[to].inbox);
            self.peers[to].dirty = false;
            let mut wanted = false;
            if self.peers[to].present {
                let mut keep = 0;
                for i in 0..inbox.len() {
                    let have = inbox[i];
                    if have.at > self.now {
                        inbox[keep] = have;
                        keep += 1;
                        continue;
                    }
                    wanted |= self.learn_have(to, have.from, have.block);
                }
                inbox.truncate(keep);
            } else {
                inbox.clear();
            }
            if !inbox.is_empty() {
                self.peers[to].dirty = true;
                again.push(to);
            }
            self.peers[to].inbox = inbox;
            if wanted {
                self.poll(to);
            }
        }
        // Haves sent while polling (none today) were listed meanwhile; keep them too.
        again.append(&mut self.dirty);
        self.dirty = again;
        if !self.dirty.is_empty() && !self.tick_pending {
            self.tick_pending = true;
            let at = self.now + self.have_tick_us();
            self.push(at, Event::Tick);
        }
    }

    /// Peer `to` learns that neighbour `from` got `block` (and its upload advert); whether
    /// it wants the block.
    fn learn_have(&mut self, to: usize, from: usize, block: u64) -> bool {
        if !self.peers[from].present {
            return false;
        }
        let id = self.peers[from].id;
        let upload = self.upload_of(from);
        let Some(s) = self.peers[to].sched.as_mut() else {
            return false;
        };
        s.on_have_advert(id, block, upload)
    }

    /// Peer `to` gets the buffer map of neighbour `from`.
    pub(super) fn on_map(&mut self, to: usize, from: usize) {
        if !self.peers[to].present || !self.peers[from].present {
            return;
        }
        let id = self.peers[from].id;
        let upload = self.upload_of(from);
        let Some(map) = self.peers[from].sched.as_ref().map(Scheduler::buffer_map) else {
            return;
        };
        if let Some(s) = self.peers[to].sched.as_mut() {
            s.on_buffer_map(id, &map);
            s.on_upload(id, upload);
        }
        self.poll(to);
    }
}

/// The serde_json bytes of a view's neighbourhood part (full list or delta).
fn neighbourhood_bytes(view: &View) -> u64 {
    let size = |v: &View| serde_json::to_vec(v).map_or(0, |b| b.len() as u64);
    if view.peers.is_none() && view.changed.is_empty() && view.removed.is_empty() {
        return 0;
    }
    let bare = View {
        peers: None,
        changed: Vec::new(),
        removed: Vec::new(),
        ..view.clone()
    };
    size(view).saturating_sub(size(&bare))
}
