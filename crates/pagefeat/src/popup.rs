//! Popups (seed ¶73-¶79, issue 15 item 4): finding them and telling what they are.
//!
//! A popup is an overlay: a box over the page rather than in its flow
//! ([`crate::overlay::overlay_flags`]: dialog semantics, a fixed modal, a bar at a viewport
//! edge, a raised fixed box). [`popup_roots`] keeps the topmost overlay candidates; with the
//! Chromium engine it also follows pre-paint (seed ¶74): of the subtrees that turned visible
//! after the parse-end snapshot ([`appeared`]), those that hold an overlay candidate, or whose
//! class or id names a popup ([`crate::overlay::hinted`]), are reported by their root. A
//! subtree that appeared in the page's flow (a late "related links" box, comments) is not a
//! popup. A banner already on screen at parse end (a standalone banner page) is one.
//!
//! Kinds ([`classify`], first match): `consent` (consent wording and a control that answers
//! it, no e-mail field); `newsletter` (an e-mail field and no password field, unless the
//! popup speaks of signing in and not of subscribing); `ad` (filter-list ad nodes, an
//! advertisement label, or a `rel="sponsored"` link); `other` (login walls, app banners,
//! notices).

use std::collections::{BTreeSet, HashSet};

use serde::{Deserialize, Serialize};

use crate::layout::{LayoutSnapshot, NodeKind};
use crate::overlay::hinted;
use crate::stat_node::{Derived, StatTree};

/// What a popup is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PopupKind {
    /// An advertisement (a "bad popup ad", seed ¶102).
    Ad,
    /// A cookie or privacy consent banner.
    Consent,
    /// A newsletter or mailing-list sign-up.
    Newsletter,
    /// Anything else (login or paywall, app banner, survey, notice).
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
    // Keep only the outermost of nested roots, and only roots with something to show.
    let content = has_content(main, derived);
    let mut kept: Vec<usize> = Vec::new();
    let mut inside = vec![false; n];
    for (i, object) in main.objects.iter().enumerate() {
        let parent_inside = object.parent.is_some_and(|p| p < i && inside[p]);
        inside[i] = parent_inside || roots.contains(&i);
        if roots.contains(&i) && !parent_inside && content[i] {
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

const ANSWER_WORDS: [&str; 44] = [
    // English
    "accept",
    "agree",
    "allow",
    "reject",
    "refuse",
    "decline",
    "disagree",
    "consent",
    "ok",
    "got it",
    "i agree",
    "yes",
    "settings",
    "preferences",
    "manage options",
    "customize",
    "customise",
    // German
    "akzeptieren",
    "zustimmen",
    "ablehnen",
    "zulassen",
    "erlauben",
    "einverstanden",
    "annehmen",
    "einstellungen",
    // French
    "accepter",
    "refuser",
    "accepte",
    "paramétrer",
    "personnaliser",
    // Spanish and Portuguese
    "aceptar",
    "acepto",
    "rechazar",
    "configurar",
    "aceitar",
    "rejeitar",
    // Italian
    "accetta",
    "accetto",
    "rifiuta",
    "impostazioni",
    // Dutch
    "accepteren",
    "akkoord",
    "weigeren",
    "instellingen",
];

/// Words of sign-up popups (lower case; matched as substrings of the visible text).
const NEWSLETTER_WORDS: [&str; 16] = [
    "newsletter",
    "subscribe",
    "sign up",
    "signup",
    "mailing list",
    "inbox",
    "weekly digest",
    "abonnieren",
    "anmelden",
    "suscríbete",
    "suscribirse",
    "boletín",
    "abonnez",
    "inscrivez",
    "iscriviti",
    "nieuwsbrief",
];

/// Words of login and account prompts (lower case, word boundaries).
const LOGIN_WORDS: [&str; 6] = [
    "sign in",
    "log in",
    "login",
    "signin",
    "einloggen",
    "connexion",
];

/// Labels that mark an advertisement (whole words or phrases, lower case).
const AD_LABELS: [&str; 13] = [
    "advertisement",
    "sponsored",
    "promoted",
    "ad choices",
    "adchoices",
    "anzeige",
    "werbung",
    "publicidad",
    "publicité",
    "pubblicità",
    "reclame",
    "skip ad",
    "close ad",
];

/// Evidence read from a popup's local tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PopupEvidence {
    /// Nodes the filter list marks as ads.
    pub ad_nodes: usize,
    /// Dialog semantics or an overlay candidate at the root or inside.
    pub dialog: bool,
    /// Consent words in the visible text.
    pub consent_words: usize,
    /// Buttons or links whose text answers a consent question.
    pub answer_controls: usize,
    /// Fields that take an e-mail address (`type=email`, or `email` in the field's name,
    /// id, placeholder or autocomplete).
    #[serde(default)]
    pub email_inputs: usize,
    /// Password fields (a login or registration form, not a sign-up for mail).
    #[serde(default)]
    pub password_inputs: usize,
    /// Sign-up words in the visible text ([`NEWSLETTER_WORDS`]).
    #[serde(default)]
    pub newsletter_words: usize,
    /// Login words in the visible text ([`LOGIN_WORDS`]).
    #[serde(default)]
    pub login_words: usize,
    /// Advertisement labels in the visible text or in `aria-label`s ([`AD_LABELS`]), and
    /// links marked paid with `rel="sponsored"` (the HTML link type for paid links).
    #[serde(default)]
    pub ad_labels: usize,
}

fn words_of(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect()
}

/// True when `phrase` (one or more words) occurs in `words` on word boundaries.
fn has_phrase(words: &[&str], phrase: &str) -> bool {
    if phrase.contains(' ') {
        let wanted = words_of(phrase);
        !wanted.is_empty() && words.windows(wanted.len()).any(|w| w == wanted.as_slice())
    } else {
        words.contains(&phrase)
    }
}

fn takes_email(node: &crate::stat_node::StatNode) -> bool {
    if node.name != "input" {
        return false;
    }
    let attr = |k: &str| node.attributes.get(k).map(|v| v.to_lowercase());
    if attr("type").as_deref() == Some("email") {
        return true;
    }
    ["name", "id", "placeholder", "autocomplete"]
        .iter()
        .filter_map(|k| attr(k))
        .any(|v| v.contains("email") || v.contains("e-mail") || v.contains("correo"))
}

/// Reads the evidence from a local tree whose first node is the popup root.
///
/// Ad nodes are those the filter list marks (`ad_filter_match`). The node classifier's
/// score is not used here: with its held-out F1 of 0.36 it marks nodes of login walls and
/// notices as ads, and the demo's popup set showed it turning `other` popups into `ad`.
pub fn evidence(tree: &StatTree) -> PopupEvidence {
    let dialog = tree.nodes.iter().any(|n| {
        n.extend_attributes
            .as_ref()
            .is_some_and(|x| x.overlay_candidate)
            || matches!(
                n.attributes.get("role").map(String::as_str),
                Some("dialog" | "alertdialog")
            )
            || n.attributes.get("aria-modal").is_some_and(|v| v == "true")
    });
    let mut e = PopupEvidence {
        dialog,
        ..PopupEvidence::default()
    };
    let index_of = |id: u32| tree.nodes.binary_search_by_key(&id, |n| n.id).ok();
    for node in &tree.nodes {
        let extend = node.extend_attributes.clone().unwrap_or_default();
        if extend.ad_filter_match {
            e.ad_nodes += 1;
        }
        if takes_email(node) {
            e.email_inputs += 1;
        }
        if node.name == "input"
            && node
                .attributes
                .get("type")
                .is_some_and(|t| t.eq_ignore_ascii_case("password"))
        {
            e.password_inputs += 1;
        }
        if node.attributes.get("rel").is_some_and(|r| {
            r.split_ascii_whitespace()
                .any(|t| t.eq_ignore_ascii_case("sponsored"))
        }) {
            e.ad_labels += 1;
        }
        if let Some(label) = node.attributes.get("aria-label") {
            let lower = label.to_lowercase();
            let words = words_of(&lower);
            e.ad_labels += AD_LABELS.iter().filter(|w| has_phrase(&words, w)).count();
        }
        if node.name != "#text" {
            continue;
        }
        let lower = node.txt.to_lowercase();
        let words = words_of(&lower);
        e.consent_words += CONSENT_WORDS.iter().filter(|w| lower.contains(*w)).count();
        e.login_words += LOGIN_WORDS.iter().filter(|w| has_phrase(&words, w)).count();
        e.newsletter_words += NEWSLETTER_WORDS
            .iter()
            .filter(|w| lower.contains(*w))
            .count();
        e.ad_labels += AD_LABELS.iter().filter(|w| has_phrase(&words, w)).count();
        // A text that is just "Ad" or "Ads" labels an ad slot.
        if matches!(lower.trim(), "ad" | "ads" | "anuncio" | "pub") {
            e.ad_labels += 1;
        }
        let mut ancestor = node.parent.and_then(index_of);
        for _ in 0..4 {
            let Some(a) = ancestor else { break };
            let parent = &tree.nodes[a];
            let control = matches!(parent.name.as_str(), "button" | "a")
                || parent.attributes.get("role").is_some_and(|r| r == "button");
            if control {
                if ANSWER_WORDS.iter().any(|w| has_phrase(&words, w)) {
                    e.answer_controls += 1;
                }
                break;
            }
            ancestor = parent.parent.and_then(index_of);
        }
    }
    e
}

/// The kind of a popup from its evidence (module docs; first match wins).
pub fn classify(e: &PopupEvidence) -> PopupKind {
    if e.consent_words >= 1 && e.answer_controls >= 1 && e.email_inputs == 0 {
        PopupKind::Consent
    } else if e.email_inputs >= 1
        && e.password_inputs == 0
        && (e.newsletter_words >= 1 || e.login_words == 0)
    {
        PopupKind::Newsletter
    } else if e.ad_nodes >= 1 || e.ad_labels >= 1 {
        PopupKind::Ad
    } else {
        PopupKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut PopupEvidence)) -> PopupEvidence {
        let mut e = PopupEvidence::default();
        f(&mut e);
        e
    }

    #[test]
    fn consent_needs_words_and_an_answer_and_no_mail_field() {
        let consent = with(|e| {
            e.consent_words = 2;
            e.answer_controls = 1;
        });
        assert_eq!(classify(&consent), PopupKind::Consent);
        let words_only = with(|e| e.consent_words = 3);
        assert_eq!(classify(&words_only), PopupKind::Other);
        let with_mail = with(|e| {
            e.consent_words = 1;
            e.answer_controls = 1;
            e.email_inputs = 1;
            e.newsletter_words = 1;
        });
        assert_eq!(classify(&with_mail), PopupKind::Newsletter);
    }

    #[test]
    fn a_mail_field_is_a_newsletter_unless_it_is_a_login() {
        let signup = with(|e| e.email_inputs = 1);
        assert_eq!(classify(&signup), PopupKind::Newsletter);
        let login = with(|e| {
            e.email_inputs = 1;
            e.password_inputs = 1;
        });
        assert_eq!(classify(&login), PopupKind::Other);
        let login_words = with(|e| {
            e.email_inputs = 1;
            e.login_words = 1;
        });
        assert_eq!(classify(&login_words), PopupKind::Other);
        let both = with(|e| {
            e.email_inputs = 1;
            e.login_words = 1;
            e.newsletter_words = 1;
        });
        assert_eq!(classify(&both), PopupKind::Newsletter);
    }

    #[test]
    fn ad_nodes_or_labels_make_an_ad() {
        assert_eq!(classify(&with(|e| e.ad_nodes = 1)), PopupKind::Ad);
        assert_eq!(classify(&with(|e| e.ad_labels = 1)), PopupKind::Ad);
        assert_eq!(classify(&PopupEvidence::default()), PopupKind::Other);
    }

    #[test]
    fn only_filter_list_matches_count_as_ad_nodes() {
        use crate::stat_node::{ExtendAttributes, StatNode};
        let node = |id: u32, filter: bool, score: f32| StatNode {
            id,
            name: "div".to_owned(),
            extend_attributes: Some(ExtendAttributes {
                ad_filter_match: filter,
                ad_score: score,
                ..ExtendAttributes::default()
            }),
            ..StatNode::default()
        };
        let tree = StatTree {
            nodes: vec![node(0, false, 0.99), node(1, false, 0.9)],
            ..StatTree::default()
        };
        assert_eq!(evidence(&tree).ad_nodes, 0);
        let tree = StatTree {
            nodes: vec![node(0, false, 0.99), node(1, true, 0.0)],
            ..StatTree::default()
        };
        assert_eq!(evidence(&tree).ad_nodes, 1);
    }

    #[test]
    fn phrases_match_whole_words_only() {
        let words = words_of("skip ad, then adjust the sponsored settings");
        assert!(has_phrase(&words, "skip ad"));
        assert!(has_phrase(&words, "sponsored"));
        assert!(!has_phrase(&words, "adjust ad"));
        let words = words_of("loading advertisements");
        assert!(!has_phrase(&words, "ad"));
    }
}
