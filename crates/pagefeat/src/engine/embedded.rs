//! The embedded engine: html5ever parses the page into a DOM tree (seed ¶29-¶31),
//! Blitz computes styles with stylo and boxes with taffy (block, flex, grid, floats) and
//! parley (inline text), and the laid-out tree is read into a [`LayoutSnapshot`]
//! (seed ¶32-¶33). No scripts run and no network provider is installed, so nothing
//! is fetched; only inline `<style>` applies.
//!
//! Blitz is pre-alpha: every page runs under `catch_unwind`, and a panic becomes
//! [`Error::EnginePanic`] for that page only.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use blitz_dom::{
    BaseDocument, DocumentConfig, FontContext, Node, NodeData, NodeId, StyleThreading,
    UserAgentStylesheet,
};
use blitz_html::HtmlDocument;
use blitz_traits::shell::{ColorScheme, Viewport};

use crate::compat::compat_mode;
use crate::engine::controls;
use crate::engine::fonts::{self, FontAlias};
use crate::engine::images;
use crate::engine::inlines::{self, InlineFonts};
use crate::engine::style_attr::style_name;
use crate::error::{Error, Result};
use crate::input::PageInput;
use crate::layout::{
    ComputedStyle, EngineKind, LayoutObject, LayoutSnapshot, NodeKind, Rect, STYLE_PROPERTIES,
    collapse_text, object_type,
};

/// Stack of the layout thread, bytes (256 MiB of address space).
pub const LAYOUT_STACK_BYTES: usize = 256 << 20;

/// Longest text kept per text node, in characters.
pub const MAX_TEXT_CHARS: usize = 1024;

/// pagefeat's user-agent rules after Blitz's own sheet, so that pages lay out as in Chromium
/// (the reference engine, which runs scripts):
///
/// - `<noscript>` is not rendered (scripting is on in Chromium: its content is raw text there);
/// - form controls take Blink's `html.css` metrics: 13.33 px font (`-webkit-small-control`),
///   no margin, normal line height; text fields 2 px inset border and 1 px / 2 px padding,
///   buttons 2 px outset border and 1 px / 6 px padding, check boxes and radios 13 px; a
///   text field is as wide as Blink's `size=20` field at that font (169 px content, kept in
///   `em` so it scales with the font as Blink's average-character width does).
pub const CHROMIUM_LIKE_UA_CSS: &str = "
noscript { display: none !important; }
input, textarea, select, button {
    margin: 0;
    font-size: 13.333333px;
    line-height: normal;
    letter-spacing: normal;
    word-spacing: normal;
    text-transform: none;
    text-indent: 0;
}
input { padding: 1px 2px; border: 2px inset #767676; }
input:not([type]), input[type=text i], input[type=search i], input[type=email i],
input[type=password i], input[type=url i], input[type=tel i], input[type=number i] {
    width: 12.675em;
}
button, input[type=button i], input[type=submit i], input[type=reset i] {
    padding: 1px 6px;
    border: 2px outset #767676;
}
input[type=checkbox i], input[type=radio i] {
    width: 13px;
    height: 13px;
    margin: 3px 3px 3px 4px;
    padding: 0;
    border: none;
}
textarea { padding: 2px; border: 1px solid #767676; }
select { padding: 0; border: 1px solid #767676; }
";

/// Lays pages out with Blitz. Holds the font context (system fonts are enumerated once) and
/// the faces standing for fontconfig's metric aliases ([`fonts::installed_aliases`]).
#[derive(Clone)]
pub struct EmbeddedEngine {
    fonts: FontContext,
    aliases: Arc<[FontAlias]>,
}

impl Default for EmbeddedEngine {
    fn default() -> Self {
        let mut fonts = FontContext::default();
        let aliases = fonts::installed_aliases(&mut fonts).into();
        Self { fonts, aliases }
    }
}

impl std::fmt::Debug for EmbeddedEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedEngine").finish_non_exhaustive()
    }
}

/// The embedded engine's answer: the layout tree and, when a selector was given, the index of
/// the first matching object.
#[derive(Debug, Clone)]
pub struct EmbeddedLayout {
    /// The layout objects.
    pub snapshot: LayoutSnapshot,
    /// Index into `snapshot.objects` of the selected element (local profile).
    pub selected: Option<usize>,
}

impl EmbeddedEngine {
    /// An engine with a fresh font context (fontconfig's fonts and aliases).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses and lays out `page` in a `viewport` of (width, height) CSS px and reads the
    /// layout tree. With `selector`, also finds the first element matching it.
    ///
    /// # Errors
    /// [`Error::EnginePanic`] when Blitz panics on the page; [`Error::BadSelector`] and
    /// [`Error::SelectorNoMatch`] for the selector.
    pub fn layout(
        &self,
        page: &PageInput,
        viewport: (u32, u32),
        selector: Option<&str>,
    ) -> Result<EmbeddedLayout> {
        let fonts = self.fonts.clone();
        let mut lookup = self.fonts.clone();
        let aliases = Arc::clone(&self.aliases);
        // Style and layout recurse once per nesting level: a thread with a large stack keeps
        // deeply nested pages (thousands of levels) from overflowing, which no catch_unwind
        // could contain. The stack is reserved address space, committed only as used.
        let outcome = std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("pagefeat-layout".to_owned())
                .stack_size(LAYOUT_STACK_BYTES)
                .spawn_scoped(scope, || {
                    catch_unwind(AssertUnwindSafe(|| {
                        let config = DocumentConfig {
                            viewport: Some(Viewport::new(
                                viewport.0,
                                viewport.1,
                                1.0,
                                ColorScheme::Light,
                            )),
                            base_url: Some(page.base_url.clone()),
                            font_ctx: Some(fonts),
                            style_threading: StyleThreading::Sequential,
                            ua_stylesheets: vec![
                                UserAgentStylesheet::default_sheet(),
                                UserAgentStylesheet::parse(CHROMIUM_LIKE_UA_CSS),
                            ],
                            ..DocumentConfig::default()
                        };
                        let mut document = HtmlDocument::from_html(&page.html, config);
                        let mut original_styles = HashMap::new();
                        let mut added: Vec<(u64, Vec<&str>)> =
                            images::size_data_images(&mut document, &mut original_styles)
                                .into_iter()
                                .map(|id| (id, vec!["width"]))
                                .collect();
                        added.extend(images::size_inline_svgs(
                            &mut document,
                            &mut original_styles,
                        ));
                        map_image_aspect_ratios(&mut document);
                        let registered =
                            fonts::register_aliases(&mut document, &aliases, &page.html);
                        fonts::append_standard_fallback(
                            &mut document,
                            &mut lookup,
                            &registered,
                            &mut original_styles,
                        );
                        images::emulate_broken_images(
                            &mut document,
                            !compat_mode(&page.html).is_standards(),
                            &mut original_styles,
                        );
                        document.resolve_stylist(0.0);
                        let mut inline_fonts = inlines::add_probes(&mut document);
                        document.resolve(0.0);
                        if controls::baseline_empty_buttons(&mut document, &mut original_styles) {
                            document.resolve(0.0);
                        }
                        inline_fonts.measure(&document);
                        let base: &BaseDocument = &document;
                        let selected = match selector {
                            Some(selector) => Some(select(base, selector)?),
                            None => None,
                        };
                        let mut layout =
                            read_tree(base, &page.base_url, viewport, selected, &inline_fonts);
                        restore_attributes(&mut layout.snapshot, &original_styles, &added);
                        Ok(layout)
                    }))
                });
            match worker {
                Ok(handle) => handle.join().unwrap_or_else(Err),
                Err(error) => Ok(Err(Error::EnginePanic {
                    source_name: page.name.clone(),
                    message: format!("starting the layout thread: {error}"),
                })),
            }
        });
        match outcome {
            Ok(result) => result,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                Err(Error::EnginePanic {
                    source_name: page.name.clone(),
                    message,
                })
            }
        }
    }
}

/// The HTML standard maps an `<img>`'s `width` and `height` attributes to
/// `aspect-ratio: auto W / H` ("attributes for embedded content and images"), which Blitz
/// does not. Chromium does, so an image that does not load (nothing loads in either engine)
/// keeps its declared proportions under author CSS such as `height: auto`. Written into the
/// image's inline style ahead of the page's own, so an inline `aspect-ratio` still wins;
/// author style-sheet `aspect-ratio` rules (rare on images) lose to it.
fn map_image_aspect_ratios(document: &mut BaseDocument) {
    let Ok(images) = document.query_selector_all("img[width][height]") else {
        return;
    };
    let dimension = |value: &str| -> Option<f32> {
        let digits: String = value
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        digits
            .parse::<f32>()
            .ok()
            .filter(|v| *v > 0.0 && v.is_finite())
    };
    let mut changes = Vec::new();
    for id in images {
        let Some(element) = document.get_node(id).and_then(Node::element_data) else {
            continue;
        };
        let attr = |name: &str| {
            element
                .attr(blitz_dom::LocalName::from(name))
                .map(str::to_owned)
        };
        let (Some(w), Some(h)) = (
            attr("width").as_deref().and_then(dimension),
            attr("height").as_deref().and_then(dimension),
        ) else {
            continue;
        };
        let style = attr("style").unwrap_or_default();
        changes.push((id, format!("aspect-ratio: auto {w} / {h}; {style}")));
    }
    let mut mutator = document.mutate();
    for (id, style) in changes {
        mutator.set_attribute(id, style_name(), &style);
    }
}

/// Puts back the page's own attributes: the `style` attribute of the elements the engine
/// gave a font fallback or a broken-image size ([`fonts::append_standard_fallback`],
/// [`images::emulate_broken_images`]) or proportions, and none of the size attributes it
/// added (`added`: [`images::size_data_images`], [`images::size_inline_svgs`]); by engine
/// node id.
fn restore_attributes(
    snapshot: &mut LayoutSnapshot,
    styles: &HashMap<u64, Option<String>>,
    added: &[(u64, Vec<&str>)],
) {
    if styles.is_empty() && added.is_empty() {
        return;
    }
    let added: HashMap<u64, &Vec<&str>> = added.iter().map(|(id, names)| (*id, names)).collect();
    for object in &mut snapshot.objects {
        if let Some(names) = added.get(&object.engine_node) {
            object
                .attributes
                .retain(|(k, _)| !names.contains(&k.as_str()));
        }
        let Some(original) = styles.get(&object.engine_node) else {
            continue;
        };
        object.attributes.retain(|(k, _)| k != "style");
        if let Some(style) = original {
            object.attributes.push(("style".to_owned(), style.clone()));
        }
    }
}

fn select(document: &BaseDocument, selector: &str) -> Result<NodeId> {
    document
        .query_selector(selector)
        .map_err(|_| Error::BadSelector {
            selector: selector.to_owned(),
        })?
        .ok_or_else(|| Error::SelectorNoMatch {
            selector: selector.to_owned(),
        })
}

/// Walks the DOM from the document node and keeps the nodes that get a layout object.
fn read_tree(
    document: &BaseDocument,
    url: &str,
    viewport: (u32, u32),
    selected_node: Option<NodeId>,
    inline_fonts: &InlineFonts,
) -> EmbeddedLayout {
    let mut objects: Vec<LayoutObject> = Vec::new();
    let mut selected = None;
    let root = document.root_node();
    objects.push(LayoutObject {
        engine_node: root.id.as_u64(),
        parent: None,
        kind: NodeKind::Document,
        tag: "#document".to_owned(),
        object_type: "LayoutView",
        rect: Rect {
            x: 0.0,
            y: 0.0,
            width: viewport.0 as f32,
            height: viewport.1 as f32,
        },
        attributes: Vec::new(),
        text: String::new(),
        style: ComputedStyle {
            display: "block".to_owned(),
            position: "static".to_owned(),
            z_index: "auto".to_owned(),
            opacity: 1.0,
            visibility: "visible".to_owned(),
            ..ComputedStyle::default()
        },
        paint_order: Some(0),
    });
    // Explicit stack: deep pages must not overflow the call stack.
    // Per object: the transform from untransformed to transformed page coordinates (the
    // product of its own and its ancestors' CSS transforms), `None` for none.
    let mut transforms: Vec<Option<Affine>> = vec![None];
    let mut stack: Vec<(NodeId, usize)> = root.children.iter().rev().map(|c| (*c, 0)).collect();
    let mut document_bottom: f32 = 0.0;
    let mut document_right: f32 = viewport.0 as f32;
    while let Some((node_id, parent_index)) = stack.pop() {
        let Some(node) = document.get_node(node_id) else {
            continue;
        };
        match &node.data {
            NodeData::Element(element) => {
                let tag = element.name.local.to_string().to_ascii_lowercase();
                if node.primary_styles().is_none() {
                    continue; // inside a display:none subtree: no styles, no layout object
                }
                if element
                    .attrs
                    .iter()
                    .any(|a| &*a.name.local == inlines::PROBE_ATTRIBUTE)
                {
                    continue; // the engine's own font probe
                }
                let values: Vec<String> = STYLE_PROPERTIES
                    .iter()
                    .map(|p| document.resolved_style_value(node_id, p))
                    .collect();
                let style = ComputedStyle::from_values(&values);
                let Some(class) = object_type(NodeKind::Element, &tag, &style.display) else {
                    if style.display == "contents" {
                        push_children(&mut stack, node, parent_index);
                    }
                    continue;
                };
                let untransformed = element_rect(document, node, inline_fonts);
                let transform = page_transform(
                    transforms.get(parent_index).copied().flatten(),
                    node,
                    untransformed,
                );
                let rect = transform.map_or(untransformed, |t| transform_rect(&t, untransformed));
                transforms.push(transform);
                document_bottom = document_bottom.max(rect.y + rect.height);
                document_right = document_right.max(rect.x + rect.width);
                let index = objects.len();
                if selected_node == Some(node_id) {
                    selected = Some(index);
                }
                objects.push(LayoutObject {
                    engine_node: node_id.as_u64(),
                    parent: Some(parent_index),
                    kind: NodeKind::Element,
                    tag,
                    object_type: class,
                    rect,
                    attributes: element
                        .attrs
                        .iter()
                        .map(|a| (a.name.local.to_string(), a.value.clone()))
                        .collect(),
                    text: String::new(),
                    paint_order: Some(style.z_index_value()),
                    style,
                });
                push_children(&mut stack, node, index);
            }
            NodeData::Text(text) => {
                let collapsed = collapse_text(&text.content, MAX_TEXT_CHARS);
                if collapsed.is_empty() {
                    continue;
                }
                let parent = &objects[parent_index];
                let rect = parent.rect;
                transforms.push(transforms.get(parent_index).copied().flatten());
                let style = parent.style.clone();
                objects.push(LayoutObject {
                    engine_node: node_id.as_u64(),
                    parent: Some(parent_index),
                    kind: NodeKind::Text,
                    tag: "#text".to_owned(),
                    object_type: "LayoutText",
                    rect,
                    attributes: Vec::new(),
                    text: collapsed,
                    style,
                    paint_order: parent.paint_order,
                });
            }
            _ => {}
        }
    }
    let (document_width, document_height) = (
        document_right.max(0.0).round() as u32,
        document_bottom.max(viewport.1 as f32).round() as u32,
    );
    if let Some(view) = objects.first_mut() {
        view.rect.width = document_width as f32;
        view.rect.height = document_height as f32;
    }
    EmbeddedLayout {
        snapshot: LayoutSnapshot {
            url: url.to_owned(),
            engine: EngineKind::Embedded,
            viewport_width: viewport.0,
            viewport_height: viewport.1,
            scroll_y: 0,
            document_width,
            document_height,
            objects,
        },
        selected,
    }
}

/// A 2-D affine map as `[a, b, c, d, e, f]`: `(x, y) -> (a x + c y + e, b x + d y + f)`
/// (kurbo's coefficient order, as Blitz stores an element's resolved CSS transform).
type Affine = [f64; 6];

/// `outer` after `inner`.
fn compose(outer: &Affine, inner: &Affine) -> Affine {
    let [a, b, c, d, e, f] = *outer;
    let [p, q, r, s, t, u] = *inner;
    [
        a * p + c * q,
        b * p + d * q,
        a * r + c * s,
        b * r + d * s,
        a * t + c * u + e,
        b * t + d * u + f,
    ]
}

/// The transform from untransformed to transformed page coordinates of an element whose
/// parent's is `parent` and whose untransformed border box is `rect`: its own CSS transform
/// (resolved by Blitz about its border box's origin, `transform-origin` included) moved to
/// page coordinates, then the parent's. `None` when neither has one.
fn page_transform(parent: Option<Affine>, node: &Node, rect: Rect) -> Option<Affine> {
    let own = node.transform().as_deref().map(|t| t.as_coeffs());
    let own = own.map(|[a, b, c, d, e, f]| {
        let (ox, oy) = (f64::from(rect.x), f64::from(rect.y));
        [
            a,
            b,
            c,
            d,
            e + ox - (a * ox + c * oy),
            f + oy - (b * ox + d * oy),
        ]
    });
    match (parent, own) {
        (None, own) => own,
        (parent, None) => parent,
        (Some(parent), Some(own)) => Some(compose(&parent, &own)),
    }
}

/// The bounding box of `rect` mapped by `t`.
fn transform_rect(t: &Affine, rect: Rect) -> Rect {
    let [a, b, c, d, e, f] = *t;
    let (x0, y0) = (f64::from(rect.x), f64::from(rect.y));
    let (x1, y1) = (x0 + f64::from(rect.width), y0 + f64::from(rect.height));
    let corners = [(x0, y0), (x1, y0), (x0, y1), (x1, y1)]
        .map(|(x, y)| (a * x + c * y + e, b * x + d * y + f));
    let min_x = corners.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let max_x = corners
        .iter()
        .map(|p| p.0)
        .fold(f64::NEG_INFINITY, f64::max);
    let min_y = corners.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let max_y = corners
        .iter()
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max);
    Rect {
        x: min_x as f32,
        y: min_y as f32,
        width: (max_x - min_x) as f32,
        height: (max_y - min_y) as f32,
    }
}

fn push_children(stack: &mut Vec<(NodeId, usize)>, node: &Node, parent_index: usize) {
    stack.extend(node.children.iter().rev().map(|c| (*c, parent_index)));
}

/// The border box of an element in page coordinates. A non-atomic inline element has no box
/// of its own in Blitz: its line fragments (relative to the inline root) are united.
fn element_rect(document: &BaseDocument, node: &Node, inline_fonts: &InlineFonts) -> Rect {
    if let Some(fragments) = node.inline_fragment_boxes() {
        let origin = node
            .inline_root_ancestor()
            .map(|root| root.absolute_position(0.0, 0.0));
        let mut union: Option<(f32, f32, f32, f32)> = None;
        for f in fragments {
            // Chromium's height: the font's content area, not the line box.
            let (top, bottom) = inline_fonts.fragment(document, node, f.top, f.bottom);
            let (x0, y0, x1, y1) = (f.left, top, f.right, bottom);
            union = Some(match union {
                None => (x0, y0, x1, y1),
                Some((a, b, c, d)) => (a.min(x0), b.min(y0), c.max(x1), d.max(y1)),
            });
        }
        if let (Some(origin), Some((x0, y0, x1, y1))) = (origin, union) {
            // Blitz lays inline padding and border out as nothing: the glyphs start at the
            // box's left edge, so the edges are added on the right.
            let (left, right) = inlines::horizontal_edges(document, node);
            let x1 = x1 + left + right;
            return Rect {
                x: origin.x + x0,
                y: origin.y + y0,
                width: (x1 - x0).max(0.0),
                height: (y1 - y0).max(0.0),
            };
        }
    }
    let position = node.absolute_position(0.0, 0.0);
    let size = node.final_layout().size;
    Rect {
        x: position.x,
        y: position.y,
        width: size.width.max(0.0),
        height: size.height.max(0.0),
    }
}
