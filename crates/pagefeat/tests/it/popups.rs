//! Popups with Chromium: each banner fixture is injected by a script after the load event
//! into a host page; the object that turns from invisible to visible is found and classified.

use pagefeat::EngineKind;
use pagefeat::engine::ChromiumBrowser;
use pagefeat::extract::{ProfileArg, read_page};
use pagefeat::popup::PopupKind;

use crate::support::{labels_only, options, page, pipeline, runtime};

#[test]
fn chromium_finds_injected_banners_and_classifies_them() {
    testkit::require("chromium");
    let rt = runtime();
    let config = pagefeat::config::Config::default();
    let browser = rt
        .block_on(ChromiumBrowser::launch(
            &config.chromium,
            config.viewport_size(),
        ))
        .unwrap();
    let pipeline = pipeline(labels_only());
    for (fixture, expected) in [
        ("banner__bbc", Some(PopupKind::Consent)),
        ("banner__complex-settings", Some(PopupKind::Consent)),
        ("banner__ethz", Some(PopupKind::Consent)),
        ("banner__google-type", Some(PopupKind::Consent)),
        ("banner__x.com", None),
    ] {
        let path = testkit::data_path(&format!("pages/popups/{fixture}.html"));
        let html = read_page(&path, 1 << 24).unwrap().html;
        let host = page(fixture, &pagefeat::demo::popup_host_page(&html));
        let extraction = rt
            .block_on(pipeline.extract(
                &host,
                Some(&browser),
                &options(EngineKind::Chromium, ProfileArg::Local),
            ))
            .unwrap();
        let kinds: Vec<PopupKind> = extraction.result.popups.iter().map(|p| p.kind).collect();
        match expected {
            Some(kind) => assert!(kinds.contains(&kind), "{fixture}: {kinds:?}"),
            None => assert!(!kinds.contains(&PopupKind::Consent), "{fixture}: {kinds:?}"),
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
