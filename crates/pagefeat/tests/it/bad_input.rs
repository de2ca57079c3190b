//! Bad input: clear errors for empty, non-HTML and oversized pages; arbitrary bytes and markup
//! give a layout or one of the named typed errors, never a panic; structurally valid generated
//! pages reach layout (a non-empty layout tree and StatTree with boxes).

use std::cell::Cell;
use std::time::SystemTime;

use pagefeat::engine::embedded::EmbeddedLayout;
use pagefeat::{EmbeddedEngine, Error, PageInput, Recognizer};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};

#[test]
fn empty_binary_and_oversized_inputs_are_rejected() {
    assert!(matches!(
        PageInput::from_bytes("e", None, b"", 1024),
        Err(Error::EmptyInput { .. })
    ));
    let png = fs_err::read(testkit::workspace_root().join("crates/pagefeat/tests/data/pixel.png"))
        .unwrap();
    let err = PageInput::from_bytes("p", None, &png, 1 << 20).unwrap_err();
    assert!(matches!(err, Error::NotHtml { .. }), "{err}");
    assert!(err.to_string().contains("not HTML"));
    let big = "<p>x</p>".repeat(200);
    let err = PageInput::from_bytes("big", None, big.as_bytes(), 1024).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input `big` is 1600 bytes, over the limit of 1024 bytes"
    );
}

#[test]
fn nesting_lays_out_up_to_blinks_limit_and_is_refused_beyond() {
    let html = format!("{}x{}", "<div>".repeat(500), "</div>".repeat(500));
    let page = PageInput::from_bytes("deep", None, html.as_bytes(), 1 << 20).unwrap();
    let layout = EmbeddedEngine::new()
        .layout(&page, (800, 600), None)
        .unwrap();
    // html, body and 500 nested divs plus the text.
    assert!(
        layout.snapshot.objects.len() > 500,
        "{}",
        layout.snapshot.objects.len()
    );
    // 20,000 levels (4.6 s of layout before the limit) and 8 MB of them: refused at once.
    for levels in [3000, 20_000, 8 << 20 >> 3] {
        let html = format!("{}x", "<div>".repeat(levels));
        let err = PageInput::from_bytes("deeper", None, html.as_bytes(), 1 << 24).unwrap_err();
        assert!(matches!(err, Error::TooDeep { limit: 512, .. }), "{err}");
    }
}

/// What one input did on the embedded path.
enum Outcome {
    /// Refused by input checks with one of [`is_input_error`]'s errors.
    Refused,
    /// The engine laid it out.
    LaidOut(Box<EmbeddedLayout>),
    /// Blitz panicked; the panic was caught and turned into [`Error::EnginePanic`].
    EnginePanic,
}

/// The errors reading a page may give: empty, too large, too deep, not HTML.
fn is_input_error(error: &Error) -> bool {
    matches!(
        error,
        Error::EmptyInput { .. }
            | Error::TooLarge { .. }
            | Error::TooDeep { .. }
            | Error::NotHtml { .. }
    )
}

/// Reads `bytes` as a page and lays it out (no selector). Any error other than the input
/// errors and [`Error::EnginePanic`] fails the case; a panic escaping the engine fails it too.
fn run_embedded(engine: &EmbeddedEngine, bytes: &[u8]) -> Result<Outcome, TestCaseError> {
    let page = match PageInput::from_bytes("case", None, bytes, 1 << 20) {
        Ok(page) => page,
        Err(error) if is_input_error(&error) => return Ok(Outcome::Refused),
        Err(error) => return Err(TestCaseError::fail(format!("input error {error:?}"))),
    };
    match engine.layout(&page, (800, 600), None) {
        Ok(layout) => {
            prop_assert!(!layout.snapshot.objects.is_empty(), "empty layout tree");
            Ok(Outcome::LaidOut(Box::new(layout)))
        }
        Err(Error::EnginePanic { .. }) => Ok(Outcome::EnginePanic),
        Err(error) => Err(TestCaseError::fail(format!("layout error {error:?}"))),
    }
}

/// True when an element other than the view, `<html>` and `<body>` has a box with area.
fn has_boxes(layout: &EmbeddedLayout) -> bool {
    layout.snapshot.objects.iter().any(|o| {
        !matches!(o.tag.as_str(), "#document" | "html" | "body" | "head")
            && !o.tag.starts_with('#')
            && o.rect.width >= 1.0
            && o.rect.height >= 1.0
    })
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

#[test]
fn arbitrary_bytes_give_a_layout_or_a_typed_error() {
    let engine = EmbeddedEngine::new();
    let (refused, laid_out) = (Cell::new(0u32), Cell::new(0u32));
    runner(48)
        .run(&proptest::collection::vec(any::<u8>(), 0..600), |bytes| {
            match run_embedded(&engine, &bytes)? {
                Outcome::Refused => refused.set(refused.get() + 1),
                Outcome::LaidOut(_) | Outcome::EnginePanic => laid_out.set(laid_out.get() + 1),
            }
            Ok(())
        })
        .unwrap();
    // Random bytes are mostly refused as not HTML; the count shows how many got further.
    eprintln!(
        "arbitrary bytes: {} refused, {} laid out",
        refused.get(),
        laid_out.get()
    );
    assert_eq!(refused.get() + laid_out.get(), 48);
}

#[test]
fn arbitrary_markup_gives_a_layout_or_a_typed_error_and_mostly_reaches_layout() {
    let parts = proptest::collection::vec(
        prop_oneof![
            Just("<div>".to_owned()),
            Just("</div>".to_owned()),
            Just("<p>".to_owned()),
            Just("<table><tr><td>".to_owned()),
            Just("<img src=//x/y.gif>".to_owned()),
            Just("<span style='position:fixed;z-index:99'>".to_owned()),
            Just("<style>div{display:flex;float:left}</style>".to_owned()),
            Just("<iframe src=a.html></iframe>".to_owned()),
            "[a-z ]{0,12}",
            Just("<svg><rect width=5 height=5/></svg>".to_owned()),
        ],
        1..40,
    );
    let engine = EmbeddedEngine::new();
    let (cases, laid_out, panics) = (Cell::new(0u32), Cell::new(0u32), Cell::new(0u32));
    runner(48)
        .run(&parts, |parts| {
            cases.set(cases.get() + 1);
            match run_embedded(&engine, parts.concat().as_bytes())? {
                Outcome::Refused => {}
                Outcome::LaidOut(_) => laid_out.set(laid_out.get() + 1),
                Outcome::EnginePanic => panics.set(panics.get() + 1),
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "arbitrary markup: {} of {} laid out, {} caught engine panics",
        laid_out.get(),
        cases.get(),
        panics.get()
    );
    // Only a part list of bare text (no `<`) is refused as not HTML.
    assert!(
        laid_out.get() * 4 >= cases.get() * 3,
        "{} of {}",
        laid_out.get(),
        cases.get()
    );
}

/// Text without markup characters.
fn text() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z ,.]{0,30}"
}

/// An inline style declaration list (possibly empty).
fn style() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("display:flex".to_owned()),
            Just("display:grid;grid-template-columns:1fr 1fr".to_owned()),
            Just("display:inline-block".to_owned()),
            Just("float:left".to_owned()),
            Just("position:relative".to_owned()),
            (0u32..200, 0u32..200)
                .prop_map(|(t, l)| format!("position:absolute;top:{t}px;left:{l}px")),
            (1u32..600).prop_map(|w| format!("width:{w}px")),
            (1u32..300).prop_map(|h| format!("min-height:{h}px")),
            (0u32..40).prop_map(|p| format!("padding:{p}px")),
            (0u32..40).prop_map(|m| format!("margin:{m}px")),
            (8u32..40).prop_map(|f| format!("font-size:{f}px")),
            Just("border:1px solid #333".to_owned()),
            Just("color:#c00;background:#eee".to_owned()),
        ],
        0..4,
    )
    .prop_map(|decls| {
        if decls.is_empty() {
            String::new()
        } else {
            format!(" style=\"{}\"", decls.join(";"))
        }
    })
}

/// `id`, `class`, `title` and `data-*` attributes (possibly none).
fn attributes() -> impl Strategy<Value = String> {
    (
        proptest::option::of(0u32..50),
        proptest::option::of("[a-z]{1,8}"),
        proptest::option::of("[a-z]{1,8}"),
        proptest::option::of(0u32..9),
    )
        .prop_map(|(id, class, title, data)| {
            let mut out = String::new();
            if let Some(id) = id {
                out.push_str(&format!(" id=\"n{id}\""));
            }
            if let Some(class) = class {
                out.push_str(&format!(" class=\"{class} box\""));
            }
            if let Some(title) = title {
                out.push_str(&format!(" title=\"{title}\""));
            }
            if let Some(data) = data {
                out.push_str(&format!(" data-slot=\"{data}\""));
            }
            out
        })
}

/// Phrasing content: text, `<br>`, sized images, and inline elements holding phrasing content.
fn inline() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        4 => text(),
        1 => Just("<br>".to_owned()),
        1 => (1u32..400, 1u32..300).prop_map(|(w, h)| format!("<img width=\"{w}\" height=\"{h}\" alt=\"pic\">")),
        1 => Just("<input type=\"text\" value=\"q\">".to_owned()),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        (
            prop_oneof![
                Just("span"),
                Just("a"),
                Just("em"),
                Just("strong"),
                Just("code")
            ],
            attributes(),
            style(),
            proptest::collection::vec(inner, 1..4),
        )
            .prop_map(|(tag, attrs, style, kids)| {
                let href = if tag == "a" { " href=\"/x\"" } else { "" };
                format!("<{tag}{href}{attrs}{style}>{}</{tag}>", kids.concat())
            })
    })
}

/// Flow content: blocks whose children are blocks or phrasing content, lists and tables, each
/// element closed where the HTML parser expects it (no `<div>` inside `<p>`).
fn block() -> impl Strategy<Value = String> {
    let phrasing_block = (
        prop_oneof![
            Just("p"),
            Just("h1"),
            Just("h2"),
            Just("h3"),
            Just("blockquote")
        ],
        attributes(),
        style(),
        proptest::collection::vec(inline(), 1..4),
    )
        .prop_map(|(tag, attrs, style, kids)| {
            format!("<{tag}{attrs}{style}>{}</{tag}>", kids.concat())
        });
    let list = proptest::collection::vec(inline(), 1..5).prop_map(|items| {
        let items: String = items.iter().map(|i| format!("<li>{i}</li>")).collect();
        format!("<ul>{items}</ul>")
    });
    let table = proptest::collection::vec(proptest::collection::vec(inline(), 1..4), 1..4)
        .prop_map(|rows| {
            let rows: String = rows
                .iter()
                .map(|cells| {
                    let cells: String = cells.iter().map(|c| format!("<td>{c}</td>")).collect();
                    format!("<tr>{cells}</tr>")
                })
                .collect();
            format!("<table><tbody>{rows}</tbody></table>")
        });
    let leaf = prop_oneof![3 => phrasing_block, 1 => list, 1 => table];
    leaf.prop_recursive(4, 32, 4, |inner| {
        (
            prop_oneof![
                Just("div"),
                Just("section"),
                Just("article"),
                Just("header"),
                Just("footer"),
                Just("nav"),
                Just("main"),
                Just("aside")
            ],
            attributes(),
            style(),
            proptest::collection::vec(prop_oneof![3 => inner, 1 => inline()], 1..4),
        )
            .prop_map(|(tag, attrs, style, kids)| {
                format!("<{tag}{attrs}{style}>{}</{tag}>", kids.concat())
            })
    })
}

/// A whole standards-mode page with an optional `<style>` sheet and 1-3 top-level blocks.
fn valid_page() -> impl Strategy<Value = String> {
    (
        proptest::option::of(Just(
            ".box{margin:4px} section{display:flex;gap:8px} aside{float:right;width:30%}",
        )),
        proptest::collection::vec(block(), 1..4),
    )
        .prop_map(|(sheet, blocks)| {
            let sheet = sheet.map_or_else(String::new, |css| format!("<style>{css}</style>"));
            format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>case</title>{sheet}</head><body>{}</body></html>",
                blocks.concat()
            )
        })
}

#[test]
fn structurally_valid_pages_reach_layout_with_boxes() {
    let engine = EmbeddedEngine::new();
    let recognizer = Recognizer {
        filter: None,
        ad: None,
        soft404: None,
    };
    let cases = 40u32;
    let (reached, refused, panics) = (Cell::new(0u32), Cell::new(0u32), Cell::new(0u32));
    runner(cases)
        .run(&valid_page(), |html| {
            match run_embedded(&engine, html.as_bytes())? {
                Outcome::Refused => refused.set(refused.get() + 1),
                Outcome::EnginePanic => panics.set(panics.get() + 1),
                Outcome::LaidOut(layout) => {
                    let result = recognizer.recognize(
                        "case",
                        &layout.snapshot,
                        None,
                        None,
                        SystemTime::now(),
                    );
                    let tree_boxes = result
                        .tree
                        .nodes
                        .iter()
                        .filter(|n| n.width > 0 && n.height > 0)
                        .count();
                    if has_boxes(&layout) && tree_boxes > 0 {
                        reached.set(reached.get() + 1);
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "valid pages: {} of {cases} reached layout with boxes ({} refused, {} engine panics)",
        reached.get(),
        refused.get(),
        panics.get()
    );
    // Every generated page is valid HTML: none may be refused, and Blitz should not panic.
    assert_eq!(refused.get(), 0, "valid pages refused by input checks");
    assert_eq!(panics.get(), 0, "the engine panicked on valid pages");
    assert!(
        reached.get() * 10 >= cases * 9,
        "only {} of {cases} valid pages reached layout with boxes",
        reached.get()
    );
}
