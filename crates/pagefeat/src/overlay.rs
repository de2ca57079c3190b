//! Overlay candidates (seed ¶74, issue 15 item 4): the boxes of one layout snapshot that sit
//! over the page instead of in its flow, so a popup can be one of them.
//!
//! An element is an overlay candidate when it is visible and any of these holds:
//! - **dialog semantics**: `role="dialog"` / `"alertdialog"`, `aria-modal="true"` or an
//!   open `<dialog>` (saved pages lose their stylesheets, so the markup is often all that
//!   says a box is a dialog);
//! - **modal**: `position: fixed` covering the viewport centre, or `absolute` with
//!   `z-index` >= [`RAISED_Z`] covering it;
//! - **bar**: at least half the viewport wide, at most [`MAX_BAR_SHARE`] of its height,
//!   and either fixed/sticky/absolute against the viewport's bottom edge (cookie and
//!   app banners, sticky ad bars) or fixed and raised against its top edge;
//! - **box**: fixed and raised, at least [`MIN_BOX_SHARE`] of the viewport's area (corner
//!   slide-ins, side panels).
//!
//! Bars and boxes that are the page's own chrome are not overlays: navigation (`<nav>`,
//! `<header>`, `role="navigation"` / `"menubar"`, or a box with a `<nav>` inside, or with
//! [`NAV_LINKS`] links or more and no button or form field), a box that links to the site's
//! home page (a masthead's brand link: `href` `/`, `./`, `/index.html`, or the page's own
//! origin), and a media player (an `<audio>`, a `<progress>`, a range input or
//! `role="slider"` inside). Small fixed widgets (chat bubbles, back-to-top buttons) stay
//! under [`MIN_BOX_SHARE`].
//!
//! [`hinted`] marks a weaker signal used only for subtrees that appeared after load
//! (Chromium): class or id tokens `modal`, `popup`, `lightbox`, `interstitial`, `dialog`.

use crate::layout::{LayoutObject, LayoutSnapshot, NodeKind, Rect};

/// `z-index` at or above which a positioned box counts as raised over the page.
pub const RAISED_Z: i32 = 10;
/// Largest share of the viewport's height a bar may take.
pub const MAX_BAR_SHARE: f32 = 0.6;
/// Smallest share of the viewport's area a fixed raised box must cover.
pub const MIN_BOX_SHARE: f32 = 0.03;
/// Links at or above which a bar or box without controls counts as navigation.
pub const NAV_LINKS: usize = 4;
/// Distance from a viewport edge still counted as touching it, px.
const EDGE_SLACK: f32 = 4.0;
/// Smallest bar height, px (thinner lines are borders and progress bars).
const MIN_BAR_HEIGHT: f32 = 24.0;

/// True for dialog semantics on one element (module docs).
pub fn is_dialog(object: &LayoutObject) -> bool {
    matches!(object.attr("role"), Some("dialog" | "alertdialog"))
        || object.attr("aria-modal") == Some("true")
        || (object.tag == "dialog" && object.attr("open").is_some())
}

/// True when an element is navigation by its own markup.
fn is_navigation(object: &LayoutObject) -> bool {
    matches!(object.tag.as_str(), "nav" | "header")
        || matches!(object.attr("role"), Some("navigation" | "menubar"))
}

/// What the subtree below each element holds, counted bottom-up.
#[derive(Debug, Clone, Copy, Default)]
struct Inside {
    links: usize,
    controls: usize,
    nav: bool,
    home_link: bool,
    player: bool,
}

/// True when `href` points at the home page of the site `page` is on (module docs).
fn is_home_link(href: &str, page: Option<&url::Url>) -> bool {
    let href = href.trim();
    if matches!(href, "/" | "./" | "/index.html" | "/index.php") {
        return true;
    }
    let Some(page) = page.filter(|p| p.host_str().is_some()) else {
        return false;
    };
    page.join(href)
        .is_ok_and(|u| u.origin() == page.origin() && u.path() == "/" && u.query().is_none())
}

/// True for an element that plays or seeks media (module docs).
fn is_player_part(object: &LayoutObject) -> bool {
    matches!(object.tag.as_str(), "audio" | "progress")
        || (object.tag == "input"
            && object
                .attr("type")
                .is_some_and(|t| t.eq_ignore_ascii_case("range")))
        || object.attr("role") == Some("slider")
}

fn subtree_counts(snapshot: &LayoutSnapshot) -> Vec<Inside> {
    let objects = &snapshot.objects;
    let page = url::Url::parse(&snapshot.url).ok();
    let mut inside = vec![Inside::default(); objects.len()];
    for i in (0..objects.len()).rev() {
        let object = &objects[i];
        if object.kind == NodeKind::Element {
            match object.tag.as_str() {
                "a" => inside[i].links += 1,
                "button" | "input" | "select" | "textarea" => inside[i].controls += 1,
                _ => {}
            }
            if object.attr("role") == Some("button") {
                inside[i].controls += 1;
            }
            inside[i].nav |= is_navigation(object);
            inside[i].home_link |= object.tag == "a"
                && object
                    .attr("href")
                    .is_some_and(|h| is_home_link(h, page.as_ref()));
            inside[i].player |= is_player_part(object);
        }
        if let Some(p) = object.parent.filter(|p| *p < i) {
            let child = inside[i];
            let parent = &mut inside[p];
            parent.links += child.links;
            parent.controls += child.controls;
            parent.nav |= child.nav;
            parent.home_link |= child.home_link;
            parent.player |= child.player;
        }
    }
    inside
}

fn covers_centre(rect: &Rect, viewport: &Rect, fixed: bool) -> bool {
    let (cx, cy) = (
        viewport.x + viewport.width / 2.0,
        viewport.y + viewport.height / 2.0,
    );
    // Engines differ on whether a fixed box's rect is in page or viewport coordinates.
    rect.contains(cx, cy) || (fixed && rect.contains(cx - viewport.x, cy - viewport.y))
}

/// The overlay candidate flag of every object of `snapshot` (module docs); `visible` is
/// the visibility flag per object (same length).
pub fn overlay_flags(snapshot: &LayoutSnapshot, visible: &[bool]) -> Vec<bool> {
    let viewport = snapshot.viewport_rect();
    let inside = subtree_counts(snapshot);
    let (vw, vh) = (viewport.width.max(1.0), viewport.height.max(1.0));
    snapshot
        .objects
        .iter()
        .enumerate()
        .map(|(i, object)| {
            if object.kind != NodeKind::Element || !visible.get(i).copied().unwrap_or(false) {
                return false;
            }
            if matches!(object.tag.as_str(), "html" | "body") {
                return false;
            }
            if is_dialog(object) {
                return true;
            }
            let position = object.style.position.as_str();
            let fixed = position == "fixed";
            let raised = object.style.z_index_value() >= RAISED_Z;
            let rect = object.rect;
            let modal = (fixed || (position == "absolute" && raised))
                && covers_centre(&rect, &viewport, fixed);
            if modal {
                return true;
            }
            let here = inside[i];
            let navigation = here.nav || (here.links >= NAV_LINKS && here.controls == 0);
            if navigation || here.home_link || here.player {
                return false;
            }
            // Fixed boxes may come in viewport coordinates: compare both ways.
            let top = rect.y.min(rect.y + viewport.y);
            let bottom_gap = [rect.y + rect.height, rect.y + rect.height + viewport.y]
                .iter()
                .map(|b| (viewport.y + vh - b).abs())
                .fold(f32::MAX, f32::min);
            let wide = rect.width >= 0.5 * vw;
            let bar_height = rect.height >= MIN_BAR_HEIGHT && rect.height <= MAX_BAR_SHARE * vh;
            let at_bottom =
                bottom_gap <= EDGE_SLACK && matches!(position, "fixed" | "sticky" | "absolute");
            let at_top = (top - viewport.y).abs() <= EDGE_SLACK && fixed && raised;
            if wide && bar_height && (at_bottom || at_top) {
                return true;
            }
            fixed && raised && rect.area() >= MIN_BOX_SHARE * vw * vh
        })
        .collect()
}

/// Lower-case tokens of a class, id or URL text: split on every character that is not
/// alphanumeric and on lower-to-upper case changes (`cookieNotice_bar` -> `cookie`, `notice`,
/// `bar`).
pub fn name_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut token = String::new();
    let mut previous_lower = false;
    for c in text.chars() {
        if !c.is_alphanumeric() {
            if !token.is_empty() {
                tokens.push(std::mem::take(&mut token));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !token.is_empty() {
            tokens.push(std::mem::take(&mut token));
        }
        previous_lower = c.is_lowercase();
        token.extend(c.to_lowercase());
    }
    if !token.is_empty() {
        tokens.push(token);
    }
    tokens
}

/// Class or id tokens that name a popup (module docs), as split by [`name_tokens`].
pub fn hinted(object: &LayoutObject) -> bool {
    const HINTS: [&str; 6] = [
        "modal",
        "popup",
        "lightbox",
        "interstitial",
        "dialog",
        "popover",
    ];
    [object.attr("class"), object.attr("id")]
        .into_iter()
        .flatten()
        .flat_map(name_tokens)
        .any(|t| HINTS.contains(&t.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{ComputedStyle, EngineKind};

    fn object(
        tag: &str,
        parent: Option<usize>,
        rect: Rect,
        position: &str,
        z: &str,
    ) -> LayoutObject {
        LayoutObject {
            engine_node: 0,
            parent,
            kind: if tag == "#document" {
                NodeKind::Document
            } else {
                NodeKind::Element
            },
            tag: tag.to_owned(),
            object_type: "",
            rect,
            attributes: Vec::new(),
            text: String::new(),
            style: ComputedStyle {
                position: position.to_owned(),
                z_index: z.to_owned(),
                opacity: 1.0,
                ..ComputedStyle::default()
            },
            paint_order: None,
        }
    }

    fn rect(x: f32, y: f32, width: f32, height: f32) -> Rect {
        Rect {
            x,
            y,
            width,
            height,
        }
    }

    fn snapshot(objects: Vec<LayoutObject>) -> LayoutSnapshot {
        LayoutSnapshot {
            url: "about:blank".into(),
            engine: EngineKind::Embedded,
            viewport_width: 1000,
            viewport_height: 800,
            scroll_y: 0,
            document_width: 1000,
            document_height: 3000,
            objects,
        }
    }

    fn flags(objects: Vec<LayoutObject>) -> Vec<bool> {
        let s = snapshot(objects);
        let visible = vec![true; s.objects.len()];
        overlay_flags(&s, &visible)
    }

    fn page() -> Vec<LayoutObject> {
        vec![
            object(
                "#document",
                None,
                rect(0.0, 0.0, 1000.0, 3000.0),
                "",
                "auto",
            ),
            object(
                "body",
                Some(0),
                rect(0.0, 0.0, 1000.0, 3000.0),
                "static",
                "auto",
            ),
        ]
    }

    #[test]
    fn bottom_bars_modals_and_dialogs_are_overlays() {
        let mut objects = page();
        // A cookie bar against the bottom edge, positioned absolute, no z-index.
        objects.push(object(
            "div",
            Some(1),
            rect(0.0, 700.0, 1000.0, 100.0),
            "absolute",
            "auto",
        ));
        // A fixed modal over the centre.
        objects.push(object(
            "div",
            Some(1),
            rect(200.0, 200.0, 600.0, 400.0),
            "fixed",
            "auto",
        ));
        // An unstyled dialog in the flow, far below the fold.
        let mut dialog = object(
            "div",
            Some(1),
            rect(0.0, 2500.0, 1000.0, 200.0),
            "static",
            "auto",
        );
        dialog.attributes.push(("role".into(), "dialog".into()));
        objects.push(dialog);
        // A corner slide-in.
        objects.push(object(
            "div",
            Some(1),
            rect(650.0, 450.0, 330.0, 330.0),
            "fixed",
            "9999",
        ));
        assert_eq!(flags(objects), [false, false, true, true, true, true]);
    }

    #[test]
    fn flow_content_navigation_and_small_widgets_are_not() {
        let mut objects = page();
        // A box in the flow (late "related links").
        objects.push(object(
            "div",
            Some(1),
            rect(0.0, 1200.0, 1000.0, 300.0),
            "static",
            "auto",
        ));
        // A fixed navigation header with links.
        objects.push(object(
            "header",
            Some(1),
            rect(0.0, 0.0, 1000.0, 60.0),
            "fixed",
            "100",
        ));
        for _ in 0..5 {
            objects.push(object(
                "a",
                Some(3),
                rect(0.0, 0.0, 80.0, 20.0),
                "static",
                "auto",
            ));
        }
        // A chat bubble and a back-to-top button.
        objects.push(object(
            "div",
            Some(1),
            rect(920.0, 720.0, 60.0, 60.0),
            "fixed",
            "1000",
        ));
        objects.push(object(
            "a",
            Some(1),
            rect(940.0, 600.0, 40.0, 40.0),
            "fixed",
            "50",
        ));
        // A sticky top bar in the flow at the top that is not raised.
        objects.push(object(
            "div",
            Some(1),
            rect(0.0, 0.0, 1000.0, 50.0),
            "sticky",
            "auto",
        ));
        let got = flags(objects);
        assert!(got.iter().all(|f| !f), "{got:?}");
    }

    #[test]
    fn a_bar_with_a_home_link_or_a_player_is_page_chrome() {
        let bar = |children: &[(&str, &str, &str)]| {
            let mut objects = page();
            objects.push(object(
                "div",
                Some(1),
                rect(0.0, 0.0, 1000.0, 50.0),
                "fixed",
                "90",
            ));
            for (tag, attr, value) in children {
                let mut child = object(tag, Some(2), rect(0.0, 0.0, 80.0, 20.0), "", "auto");
                child.attributes.push(((*attr).into(), (*value).into()));
                objects.push(child);
            }
            flags(objects)[2]
        };
        // A masthead: menu button, brand link home, one more link.
        assert!(!bar(&[
            ("button", "class", "menu"),
            ("a", "href", "/"),
            ("a", "href", "/subscribe")
        ]));
        // A player bar.
        assert!(!bar(&[
            ("button", "class", "play"),
            ("progress", "max", "100")
        ]));
        assert!(!bar(&[("input", "type", "range")]));
        // The same bar with an app-store link and a close button is an overlay.
        assert!(bar(&[
            ("a", "href", "https://apps.apple.com/app/id1"),
            ("button", "class", "x")
        ]));
        let page_url = url::Url::parse("https://www.example.org/news/a.html").ok();
        assert!(is_home_link("https://www.example.org/", page_url.as_ref()));
        assert!(!is_home_link(
            "https://www.example.org/?utm=1",
            page_url.as_ref()
        ));
        assert!(!is_home_link("/news/", page_url.as_ref()));
    }

    #[test]
    fn name_tokens_split_on_punctuation_and_case() {
        assert_eq!(
            name_tokens("CybotCookiebotDialog sp_message-iframe"),
            ["cybot", "cookiebot", "dialog", "sp", "message", "iframe"]
        );
        assert!(name_tokens(" -_ ").is_empty());
    }

    #[test]
    fn class_tokens_hint_at_popups() {
        let mut o = object("div", None, Rect::default(), "", "auto");
        for (class, expected) in [
            ("newsletter-modal open", true),
            ("cookiePopup", true),
            ("fc-dialog-container", true),
            ("modalities", false),
            ("popular-links", false),
            ("", false),
        ] {
            o.attributes = vec![("class".into(), class.into())];
            assert_eq!(hinted(&o), expected, "{class}");
        }
    }
}
