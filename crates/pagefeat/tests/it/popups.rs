//! Popups with Chromium: each banner fixture is injected by a script after the load event
//! into a host page; the object that turns from invisible to visible is found and classified.

use pagefeat::EngineKind;
use pagefeat::extract::{ProfileArg, read_page};
use pagefeat::popup::PopupKind;

use crate::support::{chromium, labels_only, options, page, pipeline, runtime};

#[test]
fn chromium_finds_injected_banners_and_classifies_them() {
    testkit::require("chromium");
    let rt = runtime();
    let browser = chromium(&rt);
    let pipeline = pipeline(labels_only());
    for (fixture, expected) in [
        ("banner__bbc", Some(PopupKind::Consent)),
        ("banner__complex-settings", Some(PopupKind::Consent)),
        ("banner__ethz", Some(PopupKind::Consent)),
        ("banner__google-type", Some(PopupKind::Consent)),
        // The upstream README calls this fragment a negative, but it is X's cookie banner
        // ("Did someone say ... cookies?", accept / refuse buttons): labelled consent.
        ("banner__x.com", Some(PopupKind::Consent)),
        // Diagnostic pages of the same repository: text about banners, no banner.
        ("banner__google-type-diagnostic", None),
        ("banner__x.com-diagnostic", None),
    ] {
        let dir = if fixture.ends_with("-diagnostic") {
            "popup-set"
        } else {
            "popups"
        };
        let path = testkit::data_path(&format!("pages/{dir}/{fixture}.html"));
        let html = read_page(&path, 1 << 24).unwrap().html;
        let host = page(fixture, &pagefeat::popup_eval::injected_host(&html));
        let extraction = rt
            .block_on(pipeline.extract(
                &host,
                Some(&browser),
                &options(EngineKind::Chromium, ProfileArg::Local),
            ))
            .unwrap();
        let kinds: Vec<PopupKind> = extraction.result.popups.iter().map(|p| p.kind).collect();
        match expected {
            Some(kind) => assert_eq!(kinds, [kind], "{fixture}"),
            None => assert!(kinds.is_empty(), "{fixture}: {kinds:?}"),
        }
        // The popup's local tree starts at the injected root and has its subtree.
        if let Some(tree) = extraction.trees.first() {
            assert!(tree.nodes.len() > 3, "{fixture}");
            assert!(tree.nodes[0].extend_attributes.as_ref().unwrap().popup);
        }
    }
    // The same host page without the reveal script has no popup.
    let still = page(
        "static",
        "<!doctype html><html><body><main><p>Nothing appears here.</p></main></body></html>",
    );
    let extraction = rt
        .block_on(pipeline.extract(
            &still,
            Some(&browser),
            &options(EngineKind::Chromium, ProfileArg::Local),
        ))
        .unwrap();
    assert!(extraction.result.popups.is_empty());
}

/// The embedded engine over the labelled set with the fragments served in the page: the
/// held-out split keeps at least 80 % of its examples right and no dev example that is not a
/// popup (a late inline box, a diagnostic page, a navigation bar) is reported as one. Held-out
/// examples are scored once and their misses reported, so they are not pinned one by one.
#[test]
fn embedded_engine_on_the_labelled_set_keeps_held_out_figures_and_reports_no_false_popups() {
    let rt = runtime();
    let config = pagefeat::config::Config::default();
    let pipeline = pipeline(labels_only());
    let dir = testkit::data_path("pages/popup-set");
    let examples = pagefeat::popup_eval::load(&dir).unwrap();
    let found = rt
        .block_on(pagefeat::popup_eval::run(
            &pipeline,
            None,
            &examples,
            EngineKind::Embedded,
            pagefeat::popup_eval::Rendering::Static,
            config.input.max_bytes,
        ))
        .unwrap();
    let false_popups: Vec<_> = found
        .iter()
        .filter(|f| {
            f.split == pagefeat::popup_eval::Split::Dev
                && f.expected.is_none()
                && !f.kinds.is_empty()
        })
        .map(|f| (&f.file, &f.kinds))
        .collect();
    assert!(false_popups.is_empty(), "{false_popups:?}");
    let test: Vec<_> = found
        .iter()
        .filter(|f| f.split == pagefeat::popup_eval::Split::Test)
        .collect();
    let right = test.iter().filter(|f| f.correct()).count();
    assert!(
        right * 5 >= test.len() * 4,
        "{right}/{} held-out examples right",
        test.len()
    );
}

/// A consent message or a sign-up form inside a cross-origin frame cannot be read offline:
/// the frame's URL and title name it (embedded engine, the fragment served in the page).
/// Before frames were read this way, each of these overlays was called `other`.
#[test]
fn overlays_holding_only_a_frame_are_classified_by_the_frame_url() {
    let rt = runtime();
    let pipeline = pipeline(labels_only());
    let sourcepoint = read_page(
        &testkit::data_path("pages/popup-set/consent__sourcepoint-iframe.html"),
        1 << 24,
    )
    .unwrap()
    .html;
    let frame_box = |src: &str| {
        format!(
            "<style>.m{{position:fixed;top:20%;left:20%;width:60%;height:60%;z-index:9999}}\
             .m iframe{{width:100%;height:100%;border:0}}</style>\
             <div class=\"m\"><iframe src=\"{src}\"></iframe></div>"
        )
    };
    for (name, fragment, expected) in [
        ("sourcepoint", sourcepoint, PopupKind::Consent),
        (
            "first-party cmp path",
            frame_box("https://www.example.org/cmp/v2/message.html"),
            PopupKind::Consent,
        ),
        (
            "consent platform host",
            frame_box("https://cdn.cookielaw.org/frame.html"),
            PopupKind::Consent,
        ),
        (
            "mailing service",
            frame_box("https://example.substack.com/embed"),
            PopupKind::Newsletter,
        ),
        (
            "plain frame",
            frame_box("https://www.example.org/promo/spring.html"),
            PopupKind::Other,
        ),
    ] {
        let host = page(name, &pagefeat::popup_eval::static_host(&fragment));
        let extraction = rt
            .block_on(pipeline.extract(
                &host,
                None,
                &options(EngineKind::Embedded, ProfileArg::Panorama),
            ))
            .unwrap();
        let kinds: Vec<PopupKind> = extraction.result.popups.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, [expected], "{name}");
    }
}

/// Fixed bars and boxes whose controls are the page's own (a sticky buy bar, a share rail, a
/// floating video player, a sticky table of contents) are page chrome, not popups; the same
/// bar with an advertisement label is an ad, and a plain fixed notice stays `other`
/// (embedded engine, the fragment served in the page). Before the page-chrome rule, each of
/// the chrome boxes was reported as an `other` popup.
#[test]
fn sticky_commerce_bars_and_other_page_chrome_are_not_popups() {
    let rt = runtime();
    let pipeline = pipeline(labels_only());
    let bottom_bar = |inner: &str| {
        format!(
            "<style>.b{{position:fixed;left:0;right:0;bottom:0;height:70px;z-index:500;\
             background:#fff}}</style><div class=\"b\">{inner}</div>"
        )
    };
    let corner = |inner: &str| {
        format!(
            "<style>.c{{position:fixed;right:16px;bottom:16px;width:400px;height:260px;\
             z-index:900;background:#000}}.c video,.c iframe{{width:100%;height:100%}}</style>\
             <div class=\"c\">{inner}</div>"
        )
    };
    let buy_bar = bottom_bar(
        "<div itemscope itemtype=\"https://schema.org/Product\"><span>Trail jacket</span>\
         <span itemprop=\"offers\" itemscope itemtype=\"https://schema.org/Offer\">\
         <span itemprop=\"price\" content=\"129.00\">129,00 zł</span></span></div>\
         <input type=\"number\" name=\"ilosc\" value=\"1\"><button>Dodaj do koszyka</button>",
    );
    let cases = [
        ("buy bar", buy_bar, None),
        (
            "quantity and price",
            bottom_bar(
                "<span>Tee, 24,90 €</span><select name=\"taille\"><option>M</option></select>\
                 <button type=\"button\">Choisir</button>",
            ),
            None,
        ),
        (
            "share rail",
            bottom_bar(
                "<a href=\"https://www.facebook.com/sharer/sharer.php?u=1\">Facebook</a>\
                 <a href=\"https://x.com/intent/post?url=1\">X</a>\
                 <a href=\"https://api.whatsapp.com/send?text=1\">WhatsApp</a>\
                 <button class=\"close\">×</button>",
            ),
            None,
        ),
        (
            "floating video",
            corner(
                "<iframe src=\"https://www.youtube-nocookie.com/embed/abc\"></iframe>\
                 <button class=\"close\">×</button>",
            ),
            None,
        ),
        (
            "sticky contents",
            corner(
                "<b>Contents</b><a href=\"#one\">One</a><a href=\"#two\">Two</a>\
                 <a href=\"#three\">Three</a><button>Hide</button>",
            ),
            None,
        ),
        (
            "labelled ad bar",
            bottom_bar(
                "<span>Anzeige</span><a href=\"https://shop.example.net/\">Jetzt kaufen</a>",
            ),
            Some(PopupKind::Ad),
        ),
        (
            "plain notice",
            bottom_bar("<p>Our offices are closed on Monday.</p><button>OK</button>"),
            Some(PopupKind::Other),
        ),
    ];
    for (name, fragment, expected) in cases {
        let host = page(name, &pagefeat::popup_eval::static_host(&fragment));
        let extraction = rt
            .block_on(pipeline.extract(
                &host,
                None,
                &options(EngineKind::Embedded, ProfileArg::Panorama),
            ))
            .unwrap();
        let kinds: Vec<PopupKind> = extraction.result.popups.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, expected.into_iter().collect::<Vec<_>>(), "{name}");
    }
}
