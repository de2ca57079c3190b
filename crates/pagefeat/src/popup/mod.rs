//! Popups (seed ¶73-¶79, issue 15 item 4): finding them and telling what they are.
//!
//! A popup is an overlay: a box over the page rather than in its flow
//! ([`crate::overlay::overlay_flags`]: dialog semantics, a fixed modal, a bar at a viewport
//! edge, a raised fixed box). [`popup_roots`] keeps the topmost overlay candidates; with the
//! Chromium engine it also follows pre-paint (seed ¶74): of the subtrees that turned visible
//! after the parse-end snapshot ([`appeared`]), those that hold an overlay candidate, or whose
//! class or id names a popup ([`crate::overlay::hinted`]), are reported by their root. A
//! subtree that appeared in the page's flow (a late "related links" box, comments) is not a
//! popup. A banner already on screen at parse end (a standalone banner page) is one. A root
//! that is page chrome ([`chrome`]: a sticky add-to-cart bar, a share rail, a table of
//! contents, a back-to-top control, a video player, site search) and holds no popup signal
//! is dropped, whichever kind the fallback would give it.
//!
//! Submodules, each importing only those listed before it: [`lexicon`] (word and name
//! lists), [`evidence`] (evidence and kinds), [`chrome`] (page chrome).
//!
//! Kinds ([`classify`], first match): `consent` (a consent frame, or consent wording with a
//! control that answers it or consent-platform markup around it; no e-mail field or sign-up
//! frame); `newsletter` (an e-mail field or a sign-up frame and no password field, unless the
//! popup speaks of signing in and not of subscribing); `ad` (filter-list ad nodes, an
//! advertisement label in one of 14 languages, a `rel="sponsored"` link, or ad-slot markup);
//! `other` (login walls, app banners, notices).
//!
//! A frame's document cannot be read offline (a consent platform's message or a mailing
//! service's form is usually a cross-origin `<iframe>`), so a frame is read by what names
//! it: the host and path of its `src` and its `title` ([`frame_evidence`]).

use std::collections::{BTreeSet, HashSet};

use crate::layout::{LayoutSnapshot, NodeKind};
use crate::overlay::hinted;
use crate::stat_node::Derived;

pub mod chrome;
pub mod evidence;
pub mod lexicon;

pub use evidence::{FrameEvidence, PopupEvidence, PopupKind, classify, evidence, frame_evidence};

/// Smallest popup area, px² (a 40 x 25 box): smaller newly visible boxes are ignored.
pub const MIN_POPUP_AREA: f32 = 1000.0;

/// Roots of subtrees visible in `later` that were absent or invisible in `earlier`: indices
/// into `later.objects`, elements only, at least [`MIN_POPUP_AREA`].
pub fn appeared(
    earlier: &LayoutSnapshot,
    earlier_derived: &Derived,
    later: &LayoutSnapshot,
    later_derived: &Derived,
) -> Vec<usize> {
    let visible_before: HashSet<u64> = earlier
        .objects
        .iter()
        .enumerate()
        .filter(|(i, _)| earlier_derived.visible[*i])
        .map(|(_, o)| o.engine_node)
        .collect();
    let n = later.objects.len();
    let mut new_visible = vec![false; n];
    let mut roots = Vec::new();
    for (i, object) in later.objects.iter().enumerate() {
        new_visible[i] = later_derived.visible[i] && !visible_before.contains(&object.engine_node);
        if !new_visible[i] || object.kind != NodeKind::Element {
            continue;
        }
        let parent_new = object.parent.is_some_and(|p| p < i && new_visible[p]);
        if !parent_new && object.rect.area() >= MIN_POPUP_AREA {
            roots.push(i);
        }
    }
    roots
}

/// Topmost overlay candidates of a snapshot (none of their ancestors is one).
pub fn overlays(snapshot: &LayoutSnapshot, derived: &Derived) -> Vec<usize> {
    let mut inside = vec![false; snapshot.objects.len()];
    let mut roots = Vec::new();
    for (i, object) in snapshot.objects.iter().enumerate() {
        let parent_inside = object.parent.is_some_and(|p| p < i && inside[p]);
        inside[i] = parent_inside || derived.overlay[i];
        if derived.overlay[i] && !parent_inside {
            roots.push(i);
        }
    }
    roots
}

/// The popup roots of `main` (indices into `main.objects`, ascending; module docs): the
/// topmost overlay candidates, each replaced by the root of the subtree that appeared since
/// `parse_end` when it lies in one, plus appeared subtrees with a popup class or id.
pub fn popup_roots(
    main: &LayoutSnapshot,
    derived: &Derived,
    parse_end: Option<(&LayoutSnapshot, &Derived)>,
) -> Vec<usize> {
    let n = main.objects.len();
    let mut appeared_root: Vec<Option<usize>> = vec![None; n];
    let mut roots = BTreeSet::new();
    if let Some((before, before_derived)) = parse_end {
        for root in appeared(before, before_derived, main, derived) {
            appeared_root[root] = Some(root);
        }
        for (i, object) in main.objects.iter().enumerate() {
            if appeared_root[i].is_none() {
                appeared_root[i] = object
                    .parent
                    .filter(|p| *p < i)
                    .and_then(|p| appeared_root[p]);
            }
            if let Some(root) = appeared_root[i]
                && derived.visible[i]
                && object.kind == NodeKind::Element
                && hinted(object)
            {
                roots.insert(root);
            }
        }
    }
    for overlay in overlays(main, derived) {
        roots.insert(appeared_root[overlay].unwrap_or(overlay));
    }
    // Keep only the outermost of nested roots, and only roots with something to show that
    // are not the page's own chrome.
    let content = has_content(main, derived);
    let page_chrome = chrome::page_chrome(main);
    let mut kept: Vec<usize> = Vec::new();
    let mut inside = vec![false; n];
    for (i, object) in main.objects.iter().enumerate() {
        let parent_inside = object.parent.is_some_and(|p| p < i && inside[p]);
        inside[i] = parent_inside || roots.contains(&i);
        if roots.contains(&i) && !parent_inside && content[i] && !page_chrome[i] {
            kept.push(i);
        }
    }
    kept
}

/// Tags that show something even without text (media, frames, ad slots, form controls).
const CONTENT_TAGS: [&str; 13] = [
    "iframe", "img", "video", "canvas", "svg", "ins", "embed", "object", "input", "button",
    "select", "textarea", "picture",
];

/// Per object: its visible subtree holds text or a [`CONTENT_TAGS`] element. An empty
/// backdrop (a fixed scrim behind a dialog) has none and is not a popup of its own.
fn has_content(snapshot: &LayoutSnapshot, derived: &Derived) -> Vec<bool> {
    let objects = &snapshot.objects;
    let mut content = vec![false; objects.len()];
    for i in (0..objects.len()).rev() {
        let object = &objects[i];
        if derived.visible[i] {
            content[i] |= match object.kind {
                NodeKind::Text => !object.text.trim().is_empty(),
                NodeKind::Element => CONTENT_TAGS.contains(&object.tag.as_str()),
                NodeKind::Document => false,
            };
        }
        if content[i]
            && let Some(p) = object.parent.filter(|p| *p < i)
        {
            content[p] = true;
        }
    }
    content
}
