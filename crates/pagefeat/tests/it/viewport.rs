//! The viewport profile's triggers and debounce, driven by `svckit::TestClock` (no sleeps),
//! and "after a scroll only newly visible objects" on a real page's tree.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use pagefeat::extract::{ProfileArg, read_page};
use pagefeat::stat_node::StatTree;
use pagefeat::viewport::{Due, ViewportEvent, ViewportTracker};
use pagefeat::{EngineKind, Trigger};
use svckit::{Clock, TestClock};

use crate::support::{labels_only, options, pipeline, runtime};

#[test]
fn debounce_waits_for_a_quiet_period_at_each_setting() {
    for debounce_ms in [200u64, 500, 800] {
        let clock = TestClock::new();
        let debounce = Duration::from_millis(debounce_ms);
        let mut tracker = ViewportTracker::new(debounce);
        tracker.on_event(ViewportEvent::ParseEnd, clock.now());
        clock.tick(debounce - Duration::from_millis(1));
        assert_eq!(tracker.poll(clock.now()), None, "{debounce_ms}: too early");
        clock.tick(Duration::from_millis(1));
        assert_eq!(
            tracker.poll(clock.now()),
            Some(Due {
                trigger: Trigger::ParseEnd,
                scroll_y: 0
            }),
            "{debounce_ms}"
        );
        // Continuous scrolling: each event restarts the wait; one snapshot at the end.
        for step in 1..=10 {
            tracker.on_event(ViewportEvent::Scroll { y: step * 100 }, clock.now());
            clock.tick(debounce / 2);
            assert_eq!(
                tracker.poll(clock.now()),
                None,
                "{debounce_ms}: mid-scroll {step}"
            );
        }
        clock.tick(debounce / 2);
        assert_eq!(
            tracker.poll(clock.now()),
            Some(Due {
                trigger: Trigger::Scroll,
                scroll_y: 1000
            }),
            "{debounce_ms}"
        );
        assert_eq!(tracker.poll(clock.now() + debounce * 10), None);
    }
}

#[test]
fn every_seed_trigger_fires() {
    let clock = TestClock::new();
    let mut tracker = ViewportTracker::new(Duration::from_millis(200));
    for (event, trigger) in [
        (ViewportEvent::FirstScreen, Trigger::FirstScreen),
        (ViewportEvent::ParseEnd, Trigger::ParseEnd),
        (ViewportEvent::PrePaintEnd, Trigger::PrePaintEnd),
    ] {
        tracker.on_event(event, clock.now());
        clock.tick(Duration::from_millis(200));
        assert_eq!(tracker.poll(clock.now()).map(|d| d.trigger), Some(trigger));
    }
}

fn long_page_tree() -> StatTree {
    let page = read_page(
        &testkit::data_path("pages/clean/traf__lemire.me.json.html"),
        1 << 24,
    )
    .unwrap();
    runtime()
        .block_on(pipeline(labels_only()).extract(
            &page,
            None,
            &options(EngineKind::Embedded, ProfileArg::Panorama),
        ))
        .unwrap()
        .result
        .tree
}

#[test]
fn after_a_scroll_only_newly_visible_objects_are_emitted() {
    let panorama = long_page_tree();
    assert!(
        panorama.document_height > 3 * panorama.viewport_height,
        "{}",
        panorama.document_height
    );
    let clock = TestClock::starting_at(SystemTime::UNIX_EPOCH);
    let mut tracker = ViewportTracker::new(Duration::from_millis(500));
    tracker.on_event(ViewportEvent::FirstScreen, clock.now());
    clock.tick(Duration::from_millis(500));
    let due = tracker.poll(clock.now()).unwrap();
    let first = tracker.select(&panorama, due, clock.wall());
    assert!(!first.nodes.is_empty());
    let window = |y: i32| (y, y + panorama.viewport_height as i32);
    let (top, bottom) = window(0);
    for n in &first.nodes {
        assert!(
            n.visible && n.ypos < bottom && n.ypos + n.height > top,
            "node {} outside",
            n.id
        );
    }
    let y = panorama.viewport_height as i32 * 2;
    tracker.on_event(ViewportEvent::Scroll { y }, clock.now());
    clock.tick(Duration::from_millis(500));
    let due = tracker.poll(clock.now()).unwrap();
    assert_eq!(due.trigger, Trigger::Scroll);
    let after = tracker.select(&panorama, due, clock.wall());
    assert!(!after.nodes.is_empty());
    let first_ids: HashSet<u32> = first.nodes.iter().map(|n| n.id).collect();
    for n in &after.nodes {
        assert!(!first_ids.contains(&n.id), "node {} emitted twice", n.id);
        assert!(n.extend_attributes.as_ref().unwrap().newly_visible);
    }
    // Expected set, computed independently: visible, intersecting the new window, not before.
    let (top, bottom) = window(y);
    let expected: HashSet<u32> = panorama
        .nodes
        .iter()
        .filter(|n| n.visible && n.ypos < bottom && n.ypos + n.height > top)
        .filter(|n| n.xpos < panorama.viewport_width as i32 && n.xpos + n.width > 0)
        .filter(|n| n.css_attributes.as_ref().unwrap().position != "fixed")
        .map(|n| n.id)
        .filter(|id| !first_ids.contains(id))
        .collect();
    let got: HashSet<u32> = after
        .nodes
        .iter()
        .filter(|n| n.css_attributes.as_ref().unwrap().position != "fixed")
        .map(|n| n.id)
        .collect();
    assert_eq!(got, expected);
    // Scrolling back emits nothing new.
    tracker.on_event(ViewportEvent::Scroll { y: 0 }, clock.now());
    clock.tick(Duration::from_millis(500));
    let due = tracker.poll(clock.now()).unwrap();
    assert!(
        tracker
            .select(&panorama, due, clock.wall())
            .nodes
            .is_empty()
    );
}
