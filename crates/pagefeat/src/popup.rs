//! Popups (seed ¶73-¶79): finding them and telling what they are.
//!
//! Chromium engine: an object that turns from invisible (or absent) at the parse-end snapshot
//! to visible in a later snapshot is a popup; the root of each newly visible subtree is kept
//! ([`appeared`]). Embedded engine (no scripts): overlay candidates, fixed or absolute boxes
//! with z-index >= 10 or a dialog role that cover the viewport centre ([`overlays`]).
//!
//! Kinds ([`classify`]): `ad` when filter-list or classifier ad nodes are inside; `consent`
//! when the popup has dialog semantics (role `dialog`/`alertdialog`, `aria-modal`, or a fixed
//! high-z overlay) and consent wording with a button or link to answer it; `other` otherwise.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::layout::{LayoutSnapshot, NodeKind};
use crate::stat_node::{Derived, StatTree};

/// What a popup is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PopupKind {
    /// An advertisement (a "bad popup ad", seed ¶102).
    Ad,
    /// A cookie or privacy consent banner.
    Consent,
    /// Anything else (newsletter, login, notice).
    Other,
}

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

const CONSENT_WORDS: [&str; 14] = [
    "cookie",
    "consent",
    "privacy",
    "gdpr",
    "datenschutz",
    "einwilligung",
    "your data",
    "personal data",
    "partners",
    "tracking",
    "privacidad",
    "confidentialité",
    "rgpd",
    "dsgvo",
];

const ANSWER_WORDS: [&str; 16] = [
    "accept",
    "agree",
    "allow",
    "reject",
    "refuse",
    "decline",
    "consent",
    "ok",
    "got it",
    "i agree",
    "yes",
    "settings",
    "preferences",
    "akzeptieren",
    "zustimmen",
    "aceptar",
];

/// Evidence read from a popup's local tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopupEvidence {
    /// Nodes labelled ad (filter list or classifier).
    pub ad_nodes: usize,
    /// Dialog semantics or a fixed high-z overlay at the root.
    pub dialog: bool,
    /// Consent words in the visible text.
    pub consent_words: usize,
    /// Buttons or links whose text answers a consent question.
    pub answer_controls: usize,
}

/// Reads the evidence from a local tree whose first node is the popup root; `ad_threshold`
/// is the classifier score at or above which a node counts as an ad.
pub fn evidence(tree: &StatTree, ad_threshold: f32) -> PopupEvidence {
    let mut e = PopupEvidence::default();
    if let Some(root) = tree.nodes.first() {
        let css = root.css_attributes.clone().unwrap_or_default();
        e.dialog = root
            .extend_attributes
            .as_ref()
            .is_some_and(|x| x.overlay_candidate)
            || (css.position == "fixed" && css.z_index.parse::<i32>().unwrap_or(0) >= 10);
    }
    e.dialog |= tree.nodes.iter().any(|n| {
        matches!(
            n.attributes.get("role").map(String::as_str),
            Some("dialog" | "alertdialog")
        ) || n.attributes.get("aria-modal").is_some_and(|v| v == "true")
    });
    let index_of = |id: u32| tree.nodes.binary_search_by_key(&id, |n| n.id).ok();
    for node in &tree.nodes {
        let extend = node.extend_attributes.clone().unwrap_or_default();
        if extend.ad_filter_match || extend.ad_score >= ad_threshold {
            e.ad_nodes += 1;
        }
        if node.name != "#text" {
            continue;
        }
        let lower = node.txt.to_lowercase();
        e.consent_words += CONSENT_WORDS.iter().filter(|w| lower.contains(*w)).count();
        let mut ancestor = node.parent.and_then(index_of);
        for _ in 0..4 {
            let Some(a) = ancestor else { break };
            let parent = &tree.nodes[a];
            let control = matches!(parent.name.as_str(), "button" | "a")
                || parent.attributes.get("role").is_some_and(|r| r == "button");
            if control {
                let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).collect();
                if ANSWER_WORDS.iter().any(|w| {
                    if w.contains(' ') {
                        lower.contains(w)
                    } else {
                        words.contains(w)
                    }
                }) {
                    e.answer_controls += 1;
                }
                break;
            }
            ancestor = parent.parent.and_then(index_of);
        }
    }
    e
}

/// The kind of a popup from its evidence.
pub fn classify(e: &PopupEvidence) -> PopupKind {
    if e.dialog && e.consent_words >= 1 && e.answer_controls >= 1 {
        PopupKind::Consent
    } else if e.ad_nodes >= 1 {
        PopupKind::Ad
    } else {
        PopupKind::Other
    }
}
