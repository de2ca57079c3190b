//! Boxes of non-atomic inline elements (`<a>`, `<span>`, `<strong>`, ...) as Chromium
//! reports them (issue 15 item 5). Blitz gives an inline element's fragment on a line the
//! whole line box's height; Chromium's box is the content area of the element's font
//! (ascent + descent) plus its vertical padding and border, which is smaller whenever the
//! line height is larger than the font's normal one (`line-height: 1.6` makes a 14 px link
//! 23 px high in Blitz and 16 px in Chromium).
//!
//! The content area of each font (family list, size, weight, style) used by an inline
//! element is measured once per page with a hidden probe (`line-height: normal`, which adds
//! the font's line gap, under a pixel at text sizes); a fragment is then cut to that height
//! about its line's middle (half-leading is split evenly) and grown by the padding and
//! border (horizontally on the right: Blitz lays no room out for an inline's padding).

use std::collections::HashMap;

use blitz_dom::{Attribute, BaseDocument, Node, NodeData, NodeId};

use super::style_attr::style_name;

/// Marks the probe elements (never reported).
pub const PROBE_ATTRIBUTE: &str = "data-pagefeat-probe";

/// The font of an element: computed `font-family`, `font-size`, `font-weight`, `font-style`.
type FontKey = (String, String, String, String);

/// Content-area heights by font, from the probes, and which probe measures which font.
#[derive(Debug, Default)]
pub struct InlineFonts {
    probes: Vec<(FontKey, NodeId)>,
    heights: HashMap<FontKey, f32>,
}

/// Tags whose `display: inline` elements are replaced (atomic), not non-atomic inlines.
const REPLACED: &[&str] = &[
    "img", "svg", "input", "button", "select", "textarea", "video", "audio", "iframe", "canvas",
    "object", "embed", "br", "wbr",
];

fn font_key(document: &BaseDocument, id: NodeId) -> FontKey {
    (
        document.resolved_style_value(id, "font-family"),
        document.resolved_style_value(id, "font-size"),
        document.resolved_style_value(id, "font-weight"),
        document.resolved_style_value(id, "font-style"),
    )
}

/// Adds one hidden probe per distinct font of the document's inline elements, at the end
/// of `<body>` (absolutely placed: the page's boxes do not move). Styles must be resolved;
/// the probes are laid out by the next `resolve` and measured by [`InlineFonts::measure`].
pub fn add_probes(document: &mut BaseDocument) -> InlineFonts {
    let mut keys: Vec<FontKey> = Vec::new();
    let mut stack = vec![document.root_node().id];
    while let Some(id) = stack.pop() {
        let Some(node) = document.get_node(id) else {
            continue;
        };
        stack.extend(node.children.iter().copied());
        let NodeData::Element(element) = &node.data else {
            continue;
        };
        if node.primary_styles().is_none() || REPLACED.contains(&&*element.name.local) {
            continue;
        }
        if document.resolved_style_value(id, "display") != "inline" {
            continue;
        }
        let key = font_key(document, id);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let Ok(Some(body)) = document.query_selector("body") else {
        return InlineFonts::default();
    };
    let mut fonts = InlineFonts::default();
    let mut mutator = document.mutate();
    for key in keys {
        let (family, size, weight, style) = &key;
        let attrs = vec![
            Attribute {
                name: style_name(),
                value: format!(
                    "position: absolute; left: 0; top: 0; display: block; visibility: hidden; \
                     margin: 0; padding: 0; border: 0; white-space: pre; line-height: normal; \
                     font-family: {family}; font-size: {size}; font-weight: {weight}; \
                     font-style: {style};"
                ),
            },
            Attribute {
                name: blitz_dom::QualName::new(
                    None,
                    blitz_dom::ns!(),
                    blitz_dom::LocalName::from(PROBE_ATTRIBUTE),
                ),
                value: String::new(),
            },
        ];
        let probe = mutator.create_element(
            blitz_dom::QualName::new(None, blitz_dom::ns!(html), blitz_dom::local_name!("span")),
            attrs,
        );
        let text = mutator.create_text_node("x");
        mutator.append_children(probe, &[text]);
        mutator.append_children(body, &[probe]);
        fonts.probes.push((key, probe));
    }
    fonts
}

impl InlineFonts {
    /// Reads the probes' heights (after layout).
    pub fn measure(&mut self, document: &BaseDocument) {
        for (key, probe) in &self.probes {
            if let Some(node) = document.get_node(*probe) {
                let height = node.final_layout().size.height;
                if height > 0.0 {
                    self.heights.insert(key.clone(), height);
                }
            }
        }
    }

    /// The box of one line fragment `(top, bottom)` of the inline element `node` as Chromium
    /// reports it: the font's content area about the fragment's middle (when the line is
    /// taller), grown by the vertical padding and border. Unchanged when the font was not
    /// measured.
    pub fn fragment(
        &self,
        document: &BaseDocument,
        node: &Node,
        top: f32,
        bottom: f32,
    ) -> (f32, f32) {
        let Some(content) = self.heights.get(&font_key(document, node.id)) else {
            return (top, bottom);
        };
        let (top, bottom) = if bottom - top > *content {
            let middle = (top + bottom) / 2.0;
            (middle - content / 2.0, middle + content / 2.0)
        } else {
            (top, bottom)
        };
        let above =
            px(document, node.id, "padding-top") + px(document, node.id, "border-top-width");
        let below =
            px(document, node.id, "padding-bottom") + px(document, node.id, "border-bottom-width");
        (top - above, bottom + below)
    }
}

/// The inline element's left and right padding plus border, px (Blitz's fragments cover
/// its glyphs only and it lays no room out for them; Chromium's box includes them).
pub fn horizontal_edges(document: &BaseDocument, node: &Node) -> (f32, f32) {
    (
        px(document, node.id, "padding-left") + px(document, node.id, "border-left-width"),
        px(document, node.id, "padding-right") + px(document, node.id, "border-right-width"),
    )
}

/// A used length in px (0 when not a length).
fn px(document: &BaseDocument, id: NodeId, property: &str) -> f32 {
    document
        .resolved_style_value(id, property)
        .trim()
        .trim_end_matches("px")
        .parse::<f32>()
        .unwrap_or(0.0)
}
