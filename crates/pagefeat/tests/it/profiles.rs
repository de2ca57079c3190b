//! Local profile: a CSS-selected region with its subtree; overlay candidates in the embedded
//! engine.

use pagefeat::extract::{ExtractOptions, ProfileArg};
use pagefeat::{EngineKind, Error};

use crate::support::{labels_only, page, pipeline, runtime};

const PAGE: &str = "<!doctype html><html><head><style>body{margin:0}\
    #modal{position:fixed;left:340px;top:200px;width:600px;height:400px;z-index:1000;background:#fff}\
    </style></head><body><header><a href='/'>Home</a></header>\
    <article><h1>Title</h1><p>Body text of the article.</p></article>\
    <div id=modal role=dialog><h2>We value your privacy</h2><p>We use cookies.</p>\
    <button>Accept all</button><button>Reject</button></div></body></html>";

fn local(selector: Option<&str>) -> Result<pagefeat::extract::Extraction, Error> {
    let options = ExtractOptions {
        engine: EngineKind::Embedded,
        profile: ProfileArg::Local,
        selector: selector.map(str::to_owned),
        scroll_y: None,
    };
    runtime().block_on(pipeline(labels_only()).extract(&page("local", PAGE), None, &options))
}

#[test]
fn selector_region_keeps_its_subtree_only() {
    let extraction = local(Some("article")).unwrap();
    let tree = &extraction.trees[0];
    assert_eq!(tree.profile, pagefeat::Profile::Local as i32);
    assert_eq!(tree.nodes[0].name, "article");
    assert_eq!(tree.nodes[0].parent, None);
    let names: Vec<&str> = tree.nodes.iter().map(|n| n.name.as_str()).collect();
    assert!(names.contains(&"h1") && names.contains(&"p"));
    assert!(!names.contains(&"header") && !names.contains(&"button"));
    let ids: std::collections::HashSet<u32> = tree.nodes.iter().map(|n| n.id).collect();
    for n in &tree.nodes[1..] {
        assert!(ids.contains(&n.parent.unwrap()));
    }
}

#[test]
fn selector_errors_are_clear() {
    assert!(matches!(
        local(Some("nav.nothing")),
        Err(Error::SelectorNoMatch { .. })
    ));
    assert!(matches!(local(Some("[[[")), Err(Error::BadSelector { .. })));
}

#[test]
fn embedded_engine_flags_the_fixed_dialog_as_an_overlay_popup() {
    let extraction = local(None).unwrap();
    assert_eq!(extraction.result.popups.len(), 1);
    let popup = &extraction.result.popups[0];
    assert_eq!(popup.kind, pagefeat::popup::PopupKind::Consent);
    let tree = &extraction.trees[0];
    assert_eq!(
        tree.nodes[0].attributes.get("id").map(String::as_str),
        Some("modal")
    );
    assert!(
        tree.nodes[0]
            .extend_attributes
            .as_ref()
            .unwrap()
            .overlay_candidate
    );
    assert!(tree.nodes.iter().any(|n| n.name == "button"));
}
