//! What a popup is ([`classify`]) from the evidence read in its local tree ([`evidence`]),
//! and how a frame is read by what names it ([`frame_evidence`]). Imports [`super::lexicon`]
//! only.

use serde::{Deserialize, Serialize};

use super::lexicon::*;
use crate::overlay::name_tokens;
use crate::stat_node::StatTree;

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
    /// Frames named as consent messages ([`frame_evidence`]: a consent platform's host,
    /// consent tokens in the URL's host or path, consent words in the title).
    #[serde(default)]
    pub consent_frames: usize,
    /// Frames named as sign-up forms (a mailing service's host, sign-up tokens in the URL,
    /// sign-up words in the title).
    #[serde(default)]
    pub mail_frames: usize,
    /// Elements other than controls whose class or id names a consent banner
    /// ([`CONSENT_MARKUP_PREFIXES`], [`CONSENT_MARKUP_TOKENS`]).
    #[serde(default)]
    pub consent_markup: usize,
    /// Ad-slot markup: elements with an [`AD_SLOT_TOKENS`] class or id token or an
    /// [`AD_SLOT_ATTRIBUTES`] attribute (an AdSense `<ins>`, a Google Publisher Tag slot).
    #[serde(default)]
    pub ad_markup: usize,
}

/// What a frame's `src` URL and `title` say it holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameEvidence {
    /// A consent message: the host is a consent platform's ([`CMP_HOSTS`]) or a subdomain
    /// of one, a host or path token is in [`CONSENT_URL_TOKENS`], or the title has consent
    /// words.
    pub consent: bool,
    /// A sign-up form: the host is a mailing service's ([`MAIL_HOSTS`]), a host or path token
    /// is in [`MAIL_URL_TOKENS`], or the title has sign-up words.
    pub mail: bool,
}

fn host_is(host: &str, domain: &str) -> bool {
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// Reads a frame by what names it: `src` (absolute, or relative to `base`; only the host
/// and path are read, never the query) and `title`. A `src` that does not parse gives no
/// URL evidence.
pub fn frame_evidence(
    src: Option<&str>,
    title: Option<&str>,
    base: Option<&url::Url>,
) -> FrameEvidence {
    let mut e = FrameEvidence::default();
    let parsed = src.and_then(|s| match base {
        Some(base) => base.join(s.trim()).ok(),
        None => url::Url::parse(s.trim()).ok(),
    });
    if let Some(url) = parsed {
        let host = url.host_str().unwrap_or_default().to_lowercase();
        let tokens: Vec<String> = name_tokens(&host)
            .into_iter()
            .chain(name_tokens(url.path()))
            .collect();
        let has = |list: &[&str]| tokens.iter().any(|t| list.contains(&t.as_str()));
        e.consent |= CMP_HOSTS.iter().any(|d| host_is(&host, d)) || has(&CONSENT_URL_TOKENS);
        e.mail |= MAIL_HOSTS.iter().any(|d| host_is(&host, d)) || has(&MAIL_URL_TOKENS);
    }
    if let Some(title) = title {
        let lower = title.to_lowercase();
        e.consent |= CONSENT_WORDS.iter().any(|w| lower.contains(w));
        e.mail |= NEWSLETTER_WORDS.iter().any(|w| lower.contains(w));
    }
    e
}

/// True when a class or id names a consent banner (see [`PopupEvidence::consent_markup`]).
fn consent_markup(text: &str) -> bool {
    name_tokens(text).iter().any(|t| {
        CONSENT_MARKUP_PREFIXES.iter().any(|p| t.starts_with(p))
            || CONSENT_MARKUP_TOKENS.contains(&t.as_str())
    })
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
    let base = url::Url::parse(&tree.url).ok();
    for node in &tree.nodes {
        let extend = node.extend_attributes.clone().unwrap_or_default();
        if extend.ad_filter_match {
            e.ad_nodes += 1;
        }
        let attr = |k: &str| node.attributes.get(k).map(String::as_str);
        if matches!(node.name.as_str(), "iframe" | "frame") {
            let frame = frame_evidence(attr("src"), attr("title"), base.as_ref());
            e.consent_frames += usize::from(frame.consent);
            e.mail_frames += usize::from(frame.mail);
        }
        let control = matches!(
            node.name.as_str(),
            "a" | "button" | "input" | "select" | "textarea" | "label" | "#text"
        ) || attr("role") == Some("button");
        if !control
            && [attr("class"), attr("id")]
                .into_iter()
                .flatten()
                .any(consent_markup)
        {
            e.consent_markup += 1;
        }
        let slot_token = [attr("class"), attr("id")]
            .into_iter()
            .flatten()
            .flat_map(name_tokens)
            .any(|t| AD_SLOT_TOKENS.contains(&t.as_str()));
        if slot_token || AD_SLOT_ATTRIBUTES.iter().any(|a| attr(a).is_some()) {
            e.ad_markup += 1;
        }
        // A button drawn by an `<input>` carries its text in `value`.
        if node.name == "input"
            && matches!(
                attr("type").map(str::to_ascii_lowercase).as_deref(),
                Some("submit" | "button")
            )
            && let Some(value) = attr("value")
        {
            let lower = value.to_lowercase();
            let words = words_of(&lower);
            if ANSWER_WORDS.iter().any(|w| has_phrase(&words, w)) {
                e.answer_controls += 1;
            }
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
///
/// A sign-up frame counts as an e-mail field (the field is inside it).
pub fn classify(e: &PopupEvidence) -> PopupKind {
    let mail = e.email_inputs + e.mail_frames;
    let consent_text = e.consent_words >= 1 && (e.answer_controls >= 1 || e.consent_markup >= 1);
    if mail == 0 && (e.consent_frames >= 1 || consent_text) {
        PopupKind::Consent
    } else if mail >= 1
        && e.password_inputs == 0
        && (e.newsletter_words >= 1 || e.login_words == 0 || e.mail_frames >= 1)
    {
        PopupKind::Newsletter
    } else if e.ad_nodes >= 1 || e.ad_labels >= 1 || e.ad_markup >= 1 {
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
        assert_eq!(classify(&with(|e| e.ad_markup = 1)), PopupKind::Ad);
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
    fn frames_are_read_by_their_url_host_path_and_title() {
        let f = |src: &str, title: Option<&str>| frame_evidence(Some(src), title, None);
        // A consent platform's host, by itself or as a parent domain.
        assert!(f("https://cdn.privacy-mgmt.com/index.html?message_id=1", None).consent);
        assert!(f("https://consent.cookiebot.com/x/cd.html", None).consent);
        assert!(!f("https://notcookiebot.com/x.html", None).consent);
        // Consent tokens in the host or path, not in the query.
        assert!(f("https://example.org/cmp/v2/message", None).consent);
        assert!(f("https://static.example.org/cookieConsent/frame.html", None).consent);
        assert!(!f("https://ads.example.org/serve?consentUUID=1&gdpr=1", None).consent);
        // A title that speaks of consent.
        assert!(f("https://example.org/m.html", Some("SP Consent Message")).consent);
        // Mailing services and sign-up paths.
        assert!(f("https://foo.substack.com/embed", None).mail);
        assert!(f("https://example.org/newsletter/signup-form", None).mail);
        assert!(!f("https://www.youtube.com/embed/abc", Some("Video")).mail);
        // Relative to the page, or not a URL at all.
        let base = url::Url::parse("https://www.example.org/news/a.html").ok();
        assert!(frame_evidence(Some("/consent/banner.html"), None, base.as_ref()).consent);
        assert_eq!(
            frame_evidence(Some("::"), None, None),
            FrameEvidence::default()
        );
    }

    #[test]
    fn a_consent_frame_is_consent_and_a_signup_frame_a_newsletter() {
        assert_eq!(
            classify(&with(|e| e.consent_frames = 1)),
            PopupKind::Consent
        );
        assert_eq!(
            classify(&with(|e| e.mail_frames = 1)),
            PopupKind::Newsletter
        );
        // Consent words with consent-platform markup and no readable answer control.
        let markup = with(|e| {
            e.consent_words = 1;
            e.consent_markup = 1;
        });
        assert_eq!(classify(&markup), PopupKind::Consent);
        assert_eq!(classify(&with(|e| e.consent_markup = 2)), PopupKind::Other);
        assert!(consent_markup("CybotCookiebotDialog"));
        assert!(consent_markup("cmplz-cookiebanner"));
        assert!(consent_markup("onetrust-banner-sdk"));
        assert!(!consent_markup("site-header main-nav"));
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
