//! The viewport profile's scheduling core (seed ¶82-¶94), sans I/O: events come in with
//! the time they happened, [`ViewportTracker::poll`] says when a snapshot is due, and
//! [`ViewportTracker::select`] picks the objects to emit. Time is a value passed in, so tests
//! drive it with `svckit::TestClock` and never sleep.
//!
//! Triggers (seed ¶89): first screen, end of parsing, end of pre-paint, after a scroll. After
//! a trigger the tracker waits a debounce time (seed ¶90: 200, 500 or 800 ms); a new event
//! within that time restarts the wait, so continuous scrolling produces one snapshot. After a
//! scroll only objects that were not emitted before are emitted (seed ¶91).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use std::time::SystemTime;

use crate::layout::{EngineKind, Rect};
use crate::stat_node::{Profile, StatTree, Trigger};

/// An event that may trigger a viewport snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewportEvent {
    /// The first screen was shown.
    FirstScreen,
    /// HTML parsing ended.
    ParseEnd,
    /// Pre-paint ended.
    PrePaintEnd,
    /// The page scrolled to this vertical offset (CSS px).
    Scroll {
        /// New scroll offset, px.
        y: i32,
    },
}

impl ViewportEvent {
    /// The StatTree trigger of this event.
    pub fn trigger(self) -> Trigger {
        match self {
            Self::FirstScreen => Trigger::FirstScreen,
            Self::ParseEnd => Trigger::ParseEnd,
            Self::PrePaintEnd => Trigger::PrePaintEnd,
            Self::Scroll { .. } => Trigger::Scroll,
        }
    }
}

/// A snapshot that became due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The trigger of the last event before the quiet period.
    pub trigger: Trigger,
    /// The scroll offset to snapshot at, px.
    pub scroll_y: i32,
}

/// Debounces viewport triggers and remembers which objects were emitted.
#[derive(Debug, Clone)]
pub struct ViewportTracker {
    debounce: Duration,
    scroll_y: i32,
    pending: Option<(Trigger, Instant)>,
    scrolled_since_emit: bool,
    emitted: HashSet<u64>,
}

impl ViewportTracker {
    /// A tracker waiting `debounce` after the last event (seed: 200/500/800 ms).
    pub fn new(debounce: Duration) -> Self {
        Self {
            debounce,
            scroll_y: 0,
            pending: None,
            scrolled_since_emit: false,
            emitted: HashSet::new(),
        }
    }

    /// Records `event` at `now`; the snapshot becomes due `debounce` after the last event.
    pub fn on_event(&mut self, event: ViewportEvent, now: Instant) {
        if let ViewportEvent::Scroll { y } = event {
            self.scroll_y = y;
            self.scrolled_since_emit = true;
        }
        self.pending = Some((event.trigger(), now + self.debounce));
    }

    /// When the pending snapshot is due, if one is pending.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.map(|(_, due)| due)
    }

    /// Returns the due snapshot once `now` has reached the deadline (and clears it).
    pub fn poll(&mut self, now: Instant) -> Option<Due> {
        let (trigger, due) = self.pending?;
        if now < due {
            return None;
        }
        self.pending = None;
        Some(Due {
            trigger: if self.scrolled_since_emit {
                Trigger::Scroll
            } else {
                trigger
            },
            scroll_y: self.scroll_y,
        })
    }

    /// The viewport tree for `due`, cut from a panorama tree of the page at `due.scroll_y`:
    /// visible nodes intersecting the viewport, each re-parented to its nearest included
    /// ancestor; after a scroll, only nodes not emitted before (by engine node key). Marks
    /// them emitted.
    pub fn select(&mut self, panorama: &StatTree, due: Due, captured: SystemTime) -> StatTree {
        let window = Rect {
            x: 0.0,
            y: due.scroll_y as f32,
            width: panorama.viewport_width as f32,
            height: panorama.viewport_height as f32,
        };
        let embedded = panorama.engine == EngineKind::Embedded.as_str();
        let only_new = due.trigger == Trigger::Scroll;
        let mut chosen = HashSet::new();
        for node in &panorama.nodes {
            if !node.visible {
                continue;
            }
            let mut rect = Rect {
                x: node.xpos as f32,
                y: node.ypos as f32,
                width: node.width as f32,
                height: node.height as f32,
            };
            let fixed = node
                .css_attributes
                .as_ref()
                .is_some_and(|c| c.position == "fixed");
            // Blitz lays fixed boxes out at scroll 0; they move with the viewport.
            if embedded && fixed {
                rect.y += due.scroll_y as f32;
            }
            if !rect.intersects(&window) {
                continue;
            }
            let key = node
                .extend_attributes
                .as_ref()
                .map_or(u64::from(node.id), |e| e.engine_node);
            let fresh = self.emitted.insert(key);
            if fresh || !only_new {
                chosen.insert(node.id);
            }
        }
        self.scrolled_since_emit = false;
        let mut tree = subset(panorama, &chosen);
        tree.profile = Profile::Viewport as i32;
        tree.trigger = due.trigger as i32;
        tree.scroll_y = due.scroll_y;
        tree.capture_time_ms = captured
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if only_new {
            for node in &mut tree.nodes {
                node.extend_attributes
                    .get_or_insert_with(Default::default)
                    .newly_visible = true;
            }
        }
        tree
    }

    /// How many distinct objects were emitted so far.
    pub fn emitted_count(&self) -> usize {
        self.emitted.len()
    }
}

/// The nodes of `tree` whose ids are in `keep`, each re-parented to its nearest kept ancestor,
/// with children and next-sibling links rebuilt.
pub fn subset(tree: &StatTree, keep: &HashSet<u32>) -> StatTree {
    let index_of = |id: u32| tree.nodes.binary_search_by_key(&id, |n| n.id).ok();
    let mut out = tree.clone_header();
    for node in &tree.nodes {
        if !keep.contains(&node.id) {
            continue;
        }
        let mut parent = node.parent;
        while let Some(p) = parent {
            if keep.contains(&p) {
                break;
            }
            parent = index_of(p).and_then(|i| tree.nodes[i].parent);
        }
        let mut copy = node.clone();
        copy.parent = parent;
        copy.children.clear();
        copy.next_sibling = None;
        out.nodes.push(copy);
    }
    let mut last_child: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for i in 0..out.nodes.len() {
        let (id, parent) = (out.nodes[i].id, out.nodes[i].parent);
        if let Some(p) = parent
            && let Ok(pi) = out.nodes.binary_search_by_key(&p, |n| n.id)
        {
            out.nodes[pi].children.push(id);
            if let Some(prev) = last_child.insert(p, i) {
                out.nodes[prev].next_sibling = Some(id);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_within_the_debounce_merge() {
        let t0 = Instant::now();
        let mut tracker = ViewportTracker::new(Duration::from_millis(200));
        tracker.on_event(ViewportEvent::ParseEnd, t0);
        tracker.on_event(ViewportEvent::PrePaintEnd, t0 + Duration::from_millis(100));
        assert_eq!(tracker.poll(t0 + Duration::from_millis(250)), None);
        let due = tracker.poll(t0 + Duration::from_millis(300));
        assert_eq!(
            due,
            Some(Due {
                trigger: Trigger::PrePaintEnd,
                scroll_y: 0
            })
        );
        assert_eq!(tracker.poll(t0 + Duration::from_secs(5)), None);
    }
}
