//! Bad input: clear errors for empty, non-HTML and oversized pages; arbitrary bytes never
//! panic the embedded path.

use pagefeat::{EmbeddedEngine, Error, PageInput};
use proptest::prelude::*;

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

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let engine = EmbeddedEngine::new();
        if let Ok(page) = PageInput::from_bytes("fuzz", None, &bytes, 1 << 20) {
            let _ = engine.layout(&page, (800, 600), None);
        }
    }

    #[test]
    fn arbitrary_markup_never_panics(parts in proptest::collection::vec(
        prop_oneof![
            Just("<div>".to_owned()), Just("</div>".to_owned()), Just("<p>".to_owned()),
            Just("<table><tr><td>".to_owned()), Just("<img src=//x/y.gif>".to_owned()),
            Just("<span style='position:fixed;z-index:99'>".to_owned()),
            Just("<style>div{display:flex;float:left}</style>".to_owned()),
            Just("<iframe src=a.html></iframe>".to_owned()), "[a-z ]{0,12}",
            Just("<svg><rect width=5 height=5/></svg>".to_owned()),
        ], 1..40)) {
        let html = parts.concat();
        let engine = EmbeddedEngine::new();
        if let Ok(page) = PageInput::from_bytes("markup", None, html.as_bytes(), 1 << 20) {
            let _ = engine.layout(&page, (800, 600), None);
        }
    }
}
