//! The engine-neutral layout object tree (seed ¶31-¶33): what each engine hands to the
//! background workers. Both engines fill the same [`LayoutSnapshot`], and
//! [`object_type`] maps (node kind, tag, computed `display`) to the same Blink LayoutObject
//! class names, so the StatTree built from it does not depend on the engine (seed ¶66).

use serde::{Deserialize, Serialize};

/// Which engine laid the page out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// html5ever + Blitz (stylo, taffy, parley), in process, no scripts, no network.
    Embedded,
    /// Debian's headless Chromium over the DevTools protocol, network blocked.
    Chromium,
}

impl EngineKind {
    /// `"embedded"` or `"chromium"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Chromium => "chromium",
        }
    }
}

/// The kind of DOM node a layout object was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// The document (its layout object is the LayoutView).
    Document,
    /// An element.
    Element,
    /// A text node.
    Text,
}

/// An axis-aligned box in CSS pixels, page coordinates (origin at the document's top-left).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rect {
    /// Left edge, px.
    pub x: f32,
    /// Top edge, px.
    pub y: f32,
    /// Width, px (>= 0).
    pub width: f32,
    /// Height, px (>= 0).
    pub height: f32,
}

impl Rect {
    /// Area in px².
    pub fn area(&self) -> f32 {
        self.width.max(0.0) * self.height.max(0.0)
    }

    /// The overlap of two boxes (zero-sized when they do not meet).
    pub fn intersection(&self, other: &Self) -> Self {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = (self.x + self.width).min(other.x + other.width);
        let y1 = (self.y + self.height).min(other.y + other.height);
        Self {
            x: x0,
            y: y0,
            width: (x1 - x0).max(0.0),
            height: (y1 - y0).max(0.0),
        }
    }

    /// Intersection over union in [0, 1]; 1 for two identical empty boxes at the same place.
    pub fn iou(&self, other: &Self) -> f32 {
        let inter = self.intersection(other).area();
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            let same = (self.x - other.x).abs() < 0.5 && (self.y - other.y).abs() < 0.5;
            return if same { 1.0 } else { 0.0 };
        }
        inter / union
    }

    /// True when the boxes overlap with a positive area, or when an empty box lies inside.
    pub fn intersects(&self, other: &Self) -> bool {
        self.x < other.x + other.width
            && other.x < self.x + self.width
            && self.y < other.y + other.height
            && other.y < self.y + self.height
    }

    /// True when the point lies inside the box.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.x && x <= self.x + self.width && y >= self.y && y <= self.y + self.height
    }
}

/// The computed style values pagefeat keeps, as `getComputedStyle` serialises them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComputedStyle {
    /// `display`.
    pub display: String,
    /// `position`.
    pub position: String,
    /// `z-index` ("auto" or an integer).
    pub z_index: String,
    /// `opacity` in [0, 1].
    pub opacity: f32,
    /// `visibility`.
    pub visibility: String,
    /// `overflow-x`.
    pub overflow_x: String,
    /// `overflow-y`.
    pub overflow_y: String,
    /// `background-color`.
    pub background_color: String,
    /// `color`.
    pub color: String,
    /// `font-size` in px.
    pub font_size_px: f32,
    /// `font-weight`.
    pub font_weight: f32,
    /// `float`.
    pub float: String,
}

/// The CSS properties read from both engines, in this order.
pub const STYLE_PROPERTIES: [&str; 12] = [
    "display",
    "position",
    "z-index",
    "opacity",
    "visibility",
    "overflow-x",
    "overflow-y",
    "background-color",
    "color",
    "font-size",
    "font-weight",
    "float",
];

impl ComputedStyle {
    /// Builds the style from values given in [`STYLE_PROPERTIES`] order; numbers that do not
    /// parse become the CSS initial values (opacity 1, font size 16 px, weight 400).
    pub fn from_values<S: AsRef<str>>(values: &[S]) -> Self {
        let get = |i: usize| values.get(i).map_or("", AsRef::as_ref).trim().to_owned();
        let number = |i: usize, default: f32| {
            let text = get(i);
            text.trim_end_matches("px")
                .parse::<f32>()
                .unwrap_or(default)
        };
        Self {
            display: get(0),
            position: get(1),
            z_index: get(2),
            opacity: number(3, 1.0),
            visibility: get(4),
            overflow_x: get(5),
            overflow_y: get(6),
            background_color: get(7),
            color: get(8),
            font_size_px: number(9, 16.0),
            font_weight: number(10, 400.0),
            float: get(11),
        }
    }

    /// `z-index` as a number (`auto` is 0).
    pub fn z_index_value(&self) -> i32 {
        self.z_index.parse().unwrap_or(0)
    }

    /// True for `position: fixed` or `sticky`.
    pub fn is_fixed(&self) -> bool {
        self.position == "fixed" || self.position == "sticky"
    }

    /// True when the box clips its content in either direction.
    pub fn clips(&self) -> bool {
        let clipping = |v: &str| matches!(v, "hidden" | "clip" | "scroll" | "auto");
        clipping(&self.overflow_x) || clipping(&self.overflow_y)
    }
}

/// One layout object (seed ¶33: "document" -> LayoutView, "html" -> LayoutBlockFlow, text
/// -> LayoutText).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayoutObject {
    /// The engine's key for the DOM node (Chromium backendNodeId, Blitz node id): stable
    /// between snapshots of one page load.
    pub engine_node: u64,
    /// Index of the parent in [`LayoutSnapshot::objects`]; `None` for the view.
    pub parent: Option<usize>,
    /// Node kind.
    pub kind: NodeKind,
    /// Tag name in lower case, `#text` or `#document`.
    pub tag: String,
    /// Blink LayoutObject class name ([`object_type`]).
    #[serde(skip_deserializing, default)]
    pub object_type: &'static str,
    /// Border box in page coordinates.
    pub rect: Rect,
    /// HTML attributes in source order.
    pub attributes: Vec<(String, String)>,
    /// Text of a text node (whitespace collapsed); empty for elements.
    pub text: String,
    /// Computed style (a text node carries its parent's).
    pub style: ComputedStyle,
    /// Paint order when the engine reports one.
    pub paint_order: Option<i32>,
}

impl LayoutObject {
    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A layout object tree of one page at one moment: what rendering hands to the workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayoutSnapshot {
    /// The page URL.
    pub url: String,
    /// The engine.
    pub engine: EngineKind,
    /// Viewport width, px.
    pub viewport_width: u32,
    /// Viewport height, px.
    pub viewport_height: u32,
    /// Vertical scroll offset, px.
    pub scroll_y: i32,
    /// Document width, px.
    pub document_width: u32,
    /// Document height, px.
    pub document_height: u32,
    /// The objects, parents before children; `objects[0]` is the LayoutView.
    pub objects: Vec<LayoutObject>,
}

impl LayoutSnapshot {
    /// The viewport rectangle in page coordinates.
    pub fn viewport_rect(&self) -> Rect {
        Rect {
            x: 0.0,
            y: self.scroll_y as f32,
            width: self.viewport_width as f32,
            height: self.viewport_height as f32,
        }
    }
}

/// Collapses runs of whitespace to one space, trims, and keeps at most `max_chars` characters.
pub fn collapse_text(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() > max_chars * 4 {
            break;
        }
    }
    out.chars().take(max_chars).collect()
}

/// The Blink LayoutObject class for a node, from its kind, tag and computed `display`
/// (Blink's `LayoutObject::CreateObject` chooses by display type, with replaced elements
/// getting their own classes). `None` when no layout object is created (`display: none` or
/// `contents`).
pub fn object_type(kind: NodeKind, tag: &str, display: &str) -> Option<&'static str> {
    match kind {
        NodeKind::Document => return Some("LayoutView"),
        NodeKind::Text => return Some("LayoutText"),
        NodeKind::Element => {}
    }
    if display == "none" || display == "contents" {
        return None;
    }
    let replaced = match tag {
        "br" => Some("LayoutBR"),
        "img" => Some("LayoutImage"),
        "iframe" | "frame" => Some("LayoutIFrame"),
        "video" => Some("LayoutVideo"),
        "audio" => Some("LayoutMedia"),
        "canvas" => Some("LayoutHTMLCanvas"),
        "svg" => Some("LayoutSVGRoot"),
        "embed" | "object" => Some("LayoutEmbeddedObject"),
        "input" | "textarea" => Some("LayoutTextControl"),
        "select" => Some("LayoutMenuList"),
        "button" => Some("LayoutButton"),
        "hr" => Some("LayoutBlockFlow"),
        // SVG content (these tags exist only inside <svg>).
        "path" | "line" | "polyline" | "polygon" => Some("LayoutSVGPath"),
        "rect" => Some("LayoutSVGRect"),
        "circle" | "ellipse" => Some("LayoutSVGEllipse"),
        "g" | "symbol" | "use" | "defs" | "clippath" | "mask" | "lineargradient"
        | "radialgradient" | "pattern" | "marker" => Some("LayoutSVGContainer"),
        "text" | "tspan" => Some("LayoutSVGText"),
        _ => None,
    };
    if let Some(class) = replaced {
        return Some(class);
    }
    let display = display.split_whitespace().collect::<Vec<_>>();
    let has = |word: &str| display.contains(&word);
    Some(if has("list-item") {
        "LayoutListItem"
    } else if has("flex") || has("inline-flex") {
        "LayoutFlexibleBox"
    } else if has("grid") || has("inline-grid") {
        "LayoutGrid"
    } else if has("table") || has("inline-table") {
        "LayoutTable"
    } else if has("table-row") {
        "LayoutTableRow"
    } else if has("table-cell") {
        "LayoutTableCell"
    } else if has("table-row-group") || has("table-header-group") || has("table-footer-group") {
        "LayoutTableSection"
    } else if has("table-column") || has("table-column-group") {
        "LayoutTableColumn"
    } else if has("table-caption") {
        "LayoutTableCaption"
    } else if display == ["inline"] {
        "LayoutInline"
    } else {
        "LayoutBlockFlow"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blink_class_names_follow_display_and_tag() {
        let cases = [
            (NodeKind::Document, "#document", "", Some("LayoutView")),
            (NodeKind::Text, "#text", "inline", Some("LayoutText")),
            (NodeKind::Element, "html", "block", Some("LayoutBlockFlow")),
            (NodeKind::Element, "span", "inline", Some("LayoutInline")),
            (
                NodeKind::Element,
                "div",
                "inline-block",
                Some("LayoutBlockFlow"),
            ),
            (NodeKind::Element, "li", "list-item", Some("LayoutListItem")),
            (NodeKind::Element, "div", "flex", Some("LayoutFlexibleBox")),
            (NodeKind::Element, "div", "grid", Some("LayoutGrid")),
            (
                NodeKind::Element,
                "td",
                "table-cell",
                Some("LayoutTableCell"),
            ),
            (
                NodeKind::Element,
                "tbody",
                "table-row-group",
                Some("LayoutTableSection"),
            ),
            (NodeKind::Element, "img", "inline", Some("LayoutImage")),
            (NodeKind::Element, "iframe", "inline", Some("LayoutIFrame")),
            (NodeKind::Element, "path", "inline", Some("LayoutSVGPath")),
            (NodeKind::Element, "div", "none", None),
            (NodeKind::Element, "div", "contents", None),
        ];
        for (kind, tag, display, expected) in cases {
            assert_eq!(object_type(kind, tag, display), expected, "{tag} {display}");
        }
    }

    #[test]
    fn iou_of_boxes() {
        let a = Rect {
            x: 0.0,
            y: 0.0,
            width: 10.0,
            height: 10.0,
        };
        let b = Rect {
            x: 5.0,
            y: 0.0,
            width: 10.0,
            height: 10.0,
        };
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&a), 1.0);
        let far = Rect { x: 100.0, ..a };
        assert_eq!(a.iou(&far), 0.0);
    }

    #[test]
    fn text_is_collapsed_and_cut() {
        assert_eq!(collapse_text("  a \n\t b  ", 10), "a b");
        assert_eq!(collapse_text("abcdef", 3), "abc");
    }
}
