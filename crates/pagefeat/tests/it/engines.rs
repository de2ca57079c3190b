//! Both engines on every bundled page: no panic, a LayoutView root, the same class names.

use pagefeat::EngineKind;
use pagefeat::extract::{ProfileArg, read_page};

use crate::support::{bundled_pages, chromium, labels_only, options, pipeline, runtime};

#[test]
fn embedded_engine_lays_out_every_bundled_page() {
    let pipeline = pipeline(labels_only());
    let rt = runtime();
    let pages = bundled_pages();
    assert!(pages.len() >= 50, "{} pages", pages.len());
    for path in pages {
        let page = read_page(&path, 1 << 24).unwrap();
        let extraction = rt
            .block_on(pipeline.extract(
                &page,
                None,
                &options(EngineKind::Embedded, ProfileArg::Panorama),
            ))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let tree = &extraction.result.tree;
        assert_eq!(tree.nodes[0].r#type, "LayoutView", "{}", path.display());
        assert!(
            tree.nodes
                .iter()
                .any(|n| n.r#type == "LayoutText" && n.visible),
            "{}",
            path.display()
        );
    }
}

#[test]
fn chromium_lays_out_every_bundled_page() {
    testkit::require("chromium");
    let pipeline = pipeline(labels_only());
    let rt = runtime();
    let browser = chromium(&rt);
    for path in bundled_pages() {
        let page = read_page(&path, 1 << 24).unwrap();
        let extraction = rt
            .block_on(pipeline.extract(
                &page,
                Some(&browser),
                &options(EngineKind::Chromium, ProfileArg::Panorama),
            ))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let tree = &extraction.result.tree;
        assert_eq!(tree.engine, "chromium");
        assert_eq!(tree.nodes[0].r#type, "LayoutView", "{}", path.display());
        assert!(
            tree.nodes.iter().any(|n| n.r#type == "LayoutBlockFlow"),
            "{}",
            path.display()
        );
    }
    drop(browser);
}

#[test]
fn chromium_and_embedded_agree_on_a_simple_page() {
    testkit::require("chromium");
    let html = "<!doctype html><html><head><style>body{margin:0} .box{width:300px;height:250px;margin:20px}</style></head>\
                <body><div class=box id=a>one</div><div class=box id=b>two</div></body></html>";
    let page = crate::support::page("simple", html);
    let pipeline = pipeline(labels_only());
    let rt = runtime();
    let browser = chromium(&rt);
    let embedded = rt
        .block_on(pipeline.extract(
            &page,
            None,
            &options(EngineKind::Embedded, ProfileArg::Panorama),
        ))
        .unwrap()
        .result
        .tree;
    let chromium = rt
        .block_on(pipeline.extract(
            &page,
            Some(&browser),
            &options(EngineKind::Chromium, ProfileArg::Panorama),
        ))
        .unwrap()
        .result
        .tree;
    for id in ["a", "b"] {
        let find = |t: &pagefeat::StatTree| {
            t.nodes
                .iter()
                .find(|n| n.attributes.get("id").map(String::as_str) == Some(id))
                .cloned()
                .unwrap()
        };
        let (e, c) = (find(&embedded), find(&chromium));
        assert_eq!(
            (e.r#type.as_str(), c.r#type.as_str()),
            ("LayoutBlockFlow", "LayoutBlockFlow")
        );
        assert_eq!(
            (e.xpos, e.ypos, e.width, e.height),
            (c.xpos, c.ypos, c.width, c.height),
            "{id}"
        );
    }
    let ious = pagefeat::demo::matched_ious(&embedded, &chromium);
    assert!(!ious.is_empty());
}
