//! Layout micro-pages (issue 15 item 5): one small page per cause of disagreement between the
//! embedded engine and Chromium, under `tests/data/layout/`. Each test lays its page out with
//! both engines and compares the boxes of the elements with an `id`.

use std::path::PathBuf;

use pagefeat::extract::{ProfileArg, read_page};
use pagefeat::{EngineKind, StatTree};

use crate::support::{chromium, labels_only, options, pipeline, runtime};

fn micro_page(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/layout")
        .join(name)
}

/// Both engines' trees of one micro-page.
fn both_trees(name: &str) -> (StatTree, StatTree) {
    let pipeline = pipeline(labels_only());
    let rt = runtime();
    let browser = chromium(&rt);
    let page = read_page(&micro_page(name), 1 << 20).unwrap();
    let mut trees = Vec::new();
    for (engine, chromium) in [
        (EngineKind::Embedded, None),
        (EngineKind::Chromium, Some(&browser)),
    ] {
        let extraction = rt
            .block_on(pipeline.extract(&page, chromium, &options(engine, ProfileArg::Panorama)))
            .unwrap();
        trees.push(extraction.result.tree);
    }
    drop(browser);
    let chromium = trees.pop().unwrap();
    (trees.pop().unwrap(), chromium)
}

/// `[x, y, width, height]` of the element with this id, or `None` when it has no box.
fn box_of(tree: &StatTree, id: &str) -> Option<[i32; 4]> {
    tree.nodes
        .iter()
        .find(|n| n.attributes.get("id").map(String::as_str) == Some(id))
        .map(|n| [n.xpos, n.ypos, n.width, n.height])
}

/// Asserts that every id has boxes within `tolerance` px on each side in both engines.
fn assert_same_boxes(embedded: &StatTree, chromium: &StatTree, ids: &[&str], tolerance: i32) {
    for id in ids {
        let (e, c) = (box_of(embedded, id), box_of(chromium, id));
        let (Some(e), Some(c)) = (e, c) else {
            panic!("#{id}: embedded {e:?}, chromium {c:?}");
        };
        let close = e
            .iter()
            .zip(c.iter())
            .all(|(a, b)| (a - b).abs() <= tolerance);
        assert!(close, "#{id}: embedded {e:?}, chromium {c:?}");
    }
}

#[test]
fn noscript_is_not_rendered_as_with_scripts_on() {
    testkit::require("chromium");
    let (embedded, chromium) = both_trees("noscript.html");
    assert_same_boxes(&embedded, &chromium, &["before", "after"], 0);
    assert!(
        embedded
            .nodes
            .iter()
            .all(|n| n.name != "noscript" || !n.visible),
        "a noscript box in the embedded tree"
    );
}

#[test]
fn form_controls_take_chromium_metrics() {
    testkit::require("chromium");
    let (embedded, chromium) = both_trees("form-controls.html");
    // Sizes of the controls (not their rows: Blitz puts a text field's baseline lower in
    // its line, so rows holding one are 5 px taller than Chromium's; see the README).
    for id in [
        "text", "search", "button", "submit", "check", "radio", "text2", "button2",
    ] {
        let (e, c) = (
            box_of(&embedded, id).unwrap(),
            box_of(&chromium, id).unwrap(),
        );
        let close = (e[2] - c[2]).abs() <= 4 && (e[3] - c[3]).abs() <= 1;
        assert!(close, "#{id}: embedded {e:?}, chromium {c:?}");
    }
}

#[test]
fn unloaded_images_keep_their_declared_proportions() {
    testkit::require("chromium");
    let (embedded, chromium) = both_trees("image-aspect.html");
    assert_same_boxes(&embedded, &chromium, &["photo", "logo", "after"], 1);
}

#[test]
fn font_families_resolve_to_the_same_faces() {
    testkit::require("chromium");
    let (embedded, chromium) = both_trees("fonts.html");
    // Widths within 1 px (Blitz's advances round up where Chromium's round down).
    assert_same_boxes(
        &embedded,
        &chromium,
        &[
            "serif",
            "sans",
            "mono",
            "arial",
            "arial-bold",
            "helvetica",
            "times",
            "courier",
            "georgia",
            "webfont",
            "webfont-declared",
            "webfont-sans",
            "paragraph",
            "after",
        ],
        1,
    );
    // The engine's font fallback does not show in the page's attributes.
    let span = embedded
        .nodes
        .iter()
        .find(|n| n.attributes.get("id").map(String::as_str) == Some("webfont-declared"))
        .unwrap();
    assert!(
        !span.attributes.contains_key("style"),
        "{:?}",
        span.attributes
    );
}

#[test]
fn broken_images_are_drawn_as_in_chromium() {
    testkit::require("chromium");
    let (embedded, chromium) = both_trees("broken-images.html");
    assert_same_boxes(
        &embedded,
        &chromium,
        &[
            "no-alt",
            "width-only",
            "css-width",
            "alt",
            "alt-width",
            "alt-declared",
            "in-link",
            "no-src",
            "block",
            "declared",
            "css-declared",
            "inline-block",
            "after",
        ],
        1,
    );
    let image = embedded
        .nodes
        .iter()
        .find(|n| n.attributes.get("id").map(String::as_str) == Some("css-width"))
        .unwrap();
    assert_eq!(
        image.attributes.get("style").map(String::as_str),
        Some("width: 100px"),
        "the page's own style attribute is reported"
    );
}

#[test]
fn css_transforms_move_the_boxes() {
    testkit::require("chromium");
    let (embedded, chromium) = both_trees("transforms.html");
    assert_same_boxes(
        &embedded,
        &chromium,
        &[
            "translate-x",
            "notification",
            "notification-child",
            "parent",
            "child",
            "scale",
            "rotate",
            "centred",
            "after",
        ],
        1,
    );
}

#[test]
fn data_images_take_their_natural_size() {
    testkit::require("chromium");
    let (embedded, chromium) = both_trees("data-images.html");
    assert_same_boxes(
        &embedded,
        &chromium,
        &["pixel", "gif-16x9", "svg-viewbox", "png-full", "after"],
        1,
    );
    let image = embedded
        .nodes
        .iter()
        .find(|n| n.attributes.get("id").map(String::as_str) == Some("png-full"))
        .unwrap();
    assert!(
        !image.attributes.contains_key("width"),
        "{:?}",
        image.attributes
    );
    assert_eq!(
        image.attributes.get("style").map(String::as_str),
        Some("max-width: 640px")
    );
}

#[test]
fn inline_svgs_take_chromium_sizes() {
    testkit::require("chromium");
    let (embedded, chromium) = both_trees("inline-svg.html");
    assert_same_boxes(
        &embedded,
        &chromium,
        &[
            "width-viewbox",
            "height-viewbox",
            "no-size",
            "viewbox-only",
            "css-width",
            "both",
            "button",
            "icon",
            "after",
        ],
        1,
    );
    let svg = embedded
        .nodes
        .iter()
        .find(|n| n.attributes.get("id").map(String::as_str) == Some("no-size"))
        .unwrap();
    assert!(
        !svg.attributes.contains_key("width"),
        "{:?}",
        svg.attributes
    );
}

#[test]
fn empty_buttons_sit_on_their_content_box() {
    testkit::require("chromium");
    let (embedded, chromium) = both_trees("empty-button.html");
    assert_same_boxes(
        &embedded,
        &chromium,
        &[
            "line",
            "empty",
            "text-line",
            "between",
            "padded",
            "with-text",
            "after",
        ],
        1,
    );
}

#[test]
fn inline_boxes_cover_the_font_not_the_line() {
    testkit::require("chromium");
    let (embedded, chromium) = both_trees("inline-boxes.html");
    assert_same_boxes(
        &embedded,
        &chromium,
        &[
            "tall-line",
            "link",
            "fixed-line",
            "span",
            "normal-line",
            "padded",
            "after",
        ],
        1,
    );
    // A run wrapped over lines: the same lines, widths apart by the break positions.
    let (e, c) = (
        box_of(&embedded, "wrapped").unwrap(),
        box_of(&chromium, "wrapped").unwrap(),
    );
    assert!(
        (e[1] - c[1]).abs() <= 1 && (e[3] - c[3]).abs() <= 1,
        "{e:?} {c:?}"
    );
    assert!(
        embedded.nodes.iter().all(|n| !n
            .attributes
            .contains_key(pagefeat::engine::inlines::PROBE_ATTRIBUTE)),
        "a font probe in the tree"
    );
}
