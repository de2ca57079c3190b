//! Unloaded images as Chromium draws them (issue 15 item 5). Nothing loads in either engine
//! (Chromium's requests are refused, the embedded engine fetches nothing), so every `<img>`
//! with a URL is a broken image. The policy is Chromium's own (Blink's image fallback, after
//! the HTML standard's rendering section "Images"), emulated in the embedded engine:
//!
//! - with both sizes specified (`width` and `height` attributes or CSS) and an empty or
//!   missing `alt` (or any `alt` in quirks mode), the element stays a replaced box at that
//!   size (Blitz does this, with the proportions from [`crate::engine::embedded`]'s
//!   `aspect-ratio` mapping);
//! - with a non-empty `alt`, it is phrasing content: a 16 px broken-image icon followed by the
//!   alt text on one line; an inline image is that wide and one line high (author `width` /
//!   `height` do not apply), a block-level one keeps author sizes (an `auto` width fills a
//!   block's container, an `auto` height without an aspect ratio is one line);
//! - without `alt`, it is the 16 x 16 px icon (inline; a block-level one as above);
//! - with an empty `alt`, it represents nothing (Blitz gives it no size already).
//!
//! `data:` images load in Chromium: they get their natural size ([`size_data_images`]).
//! Inline `<svg>` elements get Chromium's replaced-element sizes ([`size_inline_svgs`]). The
//! alt text is measured by laying it
//! out in a hidden span next to the image (one extra layout pass on pages with such images),
//! then the image gets the size in its inline style (the page's own `style` attribute is
//! what the tree reports).

use std::collections::HashMap;

use blitz_dom::{Attribute, BaseDocument, NodeId};

use super::style_attr::{appended, style_name};

/// Width of Chromium's broken-image icon, CSS px (it stands before the alt text).
pub const BROKEN_ICON_PX: f32 = 16.0;

/// How one broken image is drawn.
enum Fallback {
    /// The icon alone.
    Icon,
    /// The icon and this alt text.
    AltText(String),
}

/// Gives every broken `<img>` of `document` Chromium's fallback size (see the module docs).
/// Styles must be resolved (`resolve_stylist`). `quirks`: the page is in quirks mode. The
/// original `style` attribute of each changed element is added to `originals` (by node id)
/// unless already there.
pub fn emulate_broken_images(
    document: &mut BaseDocument,
    quirks: bool,
    originals: &mut HashMap<u64, Option<String>>,
) {
    let Ok(images) = document.query_selector_all("img") else {
        return;
    };
    let mut broken: Vec<(NodeId, Fallback)> = Vec::new();
    for id in images {
        let Some(node) = document.get_node(id) else {
            continue;
        };
        let Some(element) = node.element_data() else {
            continue;
        };
        if node.primary_styles().is_none() {
            continue; // not rendered
        }
        let attr = |name: &str| element.attr(blitz_dom::LocalName::from(name));
        let src = attr("src").unwrap_or_default().trim();
        if src.to_ascii_lowercase().starts_with("data:") {
            continue; // loads in Chromium
        }
        let alt = attr("alt").map(str::trim);
        // Both sizes specified (attributes or CSS), as Blink's fallback asks.
        let declared = node.primary_styles().is_some_and(|styles| {
            let position = styles.get_position();
            !position.width.is_auto() && !position.height.is_auto()
        });
        let fallback = match alt {
            Some("") => continue, // represents nothing
            Some(_) if declared && quirks => continue,
            None if declared => continue,
            Some(text) => Fallback::AltText(text.to_owned()),
            None => Fallback::Icon,
        };
        broken.push((id, fallback));
    }
    if broken.is_empty() {
        return;
    }
    let sizes = measure_alt_texts(document, &broken);
    let mut styles = Vec::new();
    for (index, (id, fallback)) in broken.iter().enumerate() {
        let display = document.resolved_style_value(*id, "display");
        let inline = display == "inline";
        let (width, height) = match fallback {
            Fallback::Icon => (BROKEN_ICON_PX, BROKEN_ICON_PX),
            Fallback::AltText(_) => {
                let Some((w, h)) = sizes.get(&index) else {
                    continue;
                };
                (BROKEN_ICON_PX + w, *h)
            }
        };
        let (width_auto, height_auto) = document
            .get_node(*id)
            .and_then(|node| node.primary_styles())
            .map_or((true, true), |styles| {
                let position = styles.get_position();
                (position.width.is_auto(), position.height.is_auto())
            });
        let mut rules = String::new();
        if inline {
            // Author sizes do not apply to the inline fallback content.
            rules.push_str(&format!(
                "width: {width}px !important; height: {height}px !important;"
            ));
        } else {
            // A block-level fallback keeps author sizes; an `auto` width fills a block's
            // container and shrinks to the content otherwise, an `auto` height (without an
            // aspect ratio) is the content's.
            if width_auto {
                if display == "block" {
                    rules.push_str(" width: 100%;");
                } else {
                    rules.push_str(&format!(" width: {width}px;"));
                }
            }
            let ratio = document.resolved_style_value(*id, "aspect-ratio");
            if height_auto && ratio == "auto" {
                rules.push_str(&format!(" height: {height}px;"));
            }
        }
        if rules.is_empty() {
            continue;
        }
        let text_like = inline
            && matches!(fallback, Fallback::AltText(_))
            && document.resolved_style_value(*id, "vertical-align") == "baseline";
        if text_like {
            // The alt text's line box: from the descent below the baseline up one line.
            rules.push_str(" vertical-align: text-bottom;");
        }
        let own = style_attribute(document, *id);
        styles.push((*id, own, rules));
    }
    let mut mutator = document.mutate();
    for (id, own, rules) in styles {
        mutator.set_attribute(id, style_name(), &appended(own.as_deref(), &rules));
        originals.entry(id.as_u64()).or_insert(own);
    }
}

/// The `style` attribute of an element.
fn style_attribute(document: &BaseDocument, id: NodeId) -> Option<String> {
    document
        .get_node(id)?
        .element_data()?
        .attrs
        .iter()
        .find(|a| &*a.name.local == "style")
        .map(|a| a.value.clone())
}

/// Lays each alt text out in a hidden, absolutely placed span after its image (same
/// inherited font) and returns its (width, height), CSS px, by index into `broken`; the
/// spans are removed again.
fn measure_alt_texts(
    document: &mut BaseDocument,
    broken: &[(NodeId, Fallback)],
) -> HashMap<usize, (f32, f32)> {
    let mut spans: Vec<(usize, NodeId)> = Vec::new();
    {
        let mut mutator = document.mutate();
        for (index, (id, fallback)) in broken.iter().enumerate() {
            let Fallback::AltText(text) = fallback else {
                continue;
            };
            let style = Attribute {
                name: style_name(),
                value: "position: absolute; left: 0; top: 0; display: block; \
                        visibility: hidden; white-space: pre; margin: 0; padding: 0; \
                        border: 0; width: auto; height: auto;"
                    .to_owned(),
            };
            let span = mutator.create_element(
                blitz_dom::QualName::new(
                    None,
                    blitz_dom::ns!(html),
                    blitz_dom::local_name!("span"),
                ),
                vec![style],
            );
            let content = mutator.create_text_node(text);
            mutator.append_children(span, &[content]);
            mutator.insert_nodes_after(*id, &[span]);
            spans.push((index, span));
        }
    }
    if spans.is_empty() {
        return HashMap::new();
    }
    document.resolve(0.0);
    let mut sizes = HashMap::new();
    for (index, span) in &spans {
        if let Some(node) = document.get_node(*span) {
            let size = node.final_layout().size;
            sizes.insert(*index, (size.width.max(0.0), size.height.max(0.0)));
        }
    }
    let mut mutator = document.mutate();
    for (_, span) in spans {
        mutator.remove_and_drop_node(span);
    }
    drop(mutator);
    sizes
}

/// Gives every `<img>` whose `src` is a `data:` URL of a GIF, PNG or SVG image (these load
/// in Chromium, not in the embedded engine) its natural size where it has no `width` /
/// `height` attribute: the natural width as a presentational `width` (author CSS overrides
/// it as it overrides a natural width) and the natural proportions as `aspect-ratio: auto
/// W / H` ahead of its inline style, so an `auto` height follows the used width. Returns
/// the ids of the elements given a `width` attribute; their original `style` goes into
/// `originals` (the tree reports the page's own attributes).
pub fn size_data_images(
    document: &mut BaseDocument,
    originals: &mut HashMap<u64, Option<String>>,
) -> Vec<u64> {
    let Ok(images) = document.query_selector_all("img[src^='data:']") else {
        return Vec::new();
    };
    let mut sized = Vec::new();
    for id in images {
        let Some(element) = document.get_node(id).and_then(|n| n.element_data()) else {
            continue;
        };
        let attr = |name: &str| element.attr(blitz_dom::LocalName::from(name));
        if attr("width").is_some() || attr("height").is_some() {
            continue;
        }
        if let Some(size) = attr("src").and_then(data_image_size) {
            sized.push((id, size, attr("style").map(str::to_owned)));
        }
    }
    let mut mutator = document.mutate();
    let mut changed = Vec::new();
    for (id, (width, height), style) in sized {
        let name =
            blitz_dom::QualName::new(None, blitz_dom::ns!(), blitz_dom::local_name!("width"));
        mutator.set_attribute(id, name, &format!("{width}"));
        let own = style.clone().unwrap_or_default();
        mutator.set_attribute(
            id,
            style_name(),
            &format!("aspect-ratio: auto {width} / {height}; {own}"),
        );
        originals.entry(id.as_u64()).or_insert(style);
        changed.push(id.as_u64());
    }
    changed
}

/// The natural size (width, height), px, of a `data:` URL holding a GIF, PNG or SVG image
/// (SVG: the root's `width` / `height` in px, or its `viewBox`), or `None`.
pub fn data_image_size(url: &str) -> Option<(f32, f32)> {
    use base64::Engine as _;
    let rest = url.trim().strip_prefix("data:")?;
    let (header, payload) = rest.split_once(',')?;
    let header = header.to_ascii_lowercase();
    let bytes = if header.ends_with(";base64") {
        let compact: String = payload.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact.trim_end_matches('='))
            .or_else(|_| {
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(compact.trim_end_matches('='))
            })
            .ok()?
    } else {
        percent_decode(payload)
    };
    if header.starts_with("image/svg") {
        return svg_size(&String::from_utf8_lossy(&bytes));
    }
    let size = match bytes.as_slice() {
        [b'G', b'I', b'F', b'8', _, _, w0, w1, h0, h1, ..] => (
            u16::from_le_bytes([*w0, *w1]).into(),
            u16::from_le_bytes([*h0, *h1]).into(),
        ),
        [
            0x89,
            b'P',
            b'N',
            b'G',
            _,
            _,
            _,
            _,
            _,
            _,
            _,
            _,
            b'I',
            b'H',
            b'D',
            b'R',
            w @ ..,
        ] if w.len() >= 8 => (
            u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as f32,
            u32::from_be_bytes([w[4], w[5], w[6], w[7]]) as f32,
        ),
        _ => return None,
    };
    (size.0 > 0.0 && size.1 > 0.0).then_some(size)
}

/// `%XX` escapes decoded (others kept as they are).
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(value)) => {
                out.push(value);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// The size of an SVG document's root element: `width` and `height` in px (plain numbers),
/// else its `viewBox`'s.
fn svg_size(svg: &str) -> Option<(f32, f32)> {
    let start = svg.find("<svg")?;
    let tag = &svg[start..start + svg[start..].find('>')?];
    let attr = |name: &str| -> Option<&str> {
        let at = tag.find(&format!(" {name}="))? + name.len() + 2;
        let quote = tag[at..].chars().next()?;
        let value = &tag[at + 1..];
        value.find(quote).map(|end| &value[..end])
    };
    let px = |value: &str| {
        value
            .trim()
            .trim_end_matches("px")
            .parse::<f32>()
            .ok()
            .filter(|v| *v > 0.0)
    };
    if let (Some(w), Some(h)) = (attr("width").and_then(px), attr("height").and_then(px)) {
        return Some((w, h));
    }
    view_box_size(attr("viewBox")?)
}

/// The width and height of an SVG `viewBox` value (`min-x min-y width height`, separated by
/// spaces and/or commas), both positive; `None` otherwise (SVG 2, the `viewBox` attribute).
fn view_box_size(value: &str) -> Option<(f32, f32)> {
    let numbers: Vec<f32> = value
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    match numbers.as_slice() {
        [_, _, w, h] if *w > 0.0 && *h > 0.0 => Some((*w, *h)),
        _ => None,
    }
}

/// Gives every outermost inline `<svg>` the size Chromium gives it where Blitz would give it
/// none: a `viewBox` gives its proportions (`aspect-ratio: auto W / H` ahead of its inline
/// style), so one size attribute implies the other, and with neither attribute the width
/// fills the container (`width="100%"`); without a `viewBox` a missing width is 300 px and
/// a missing height 150 px (the replaced-element defaults). Returns the ids of the elements
/// given size attributes with the names added; their original `style` goes into
/// `originals`.
pub fn size_inline_svgs(
    document: &mut BaseDocument,
    originals: &mut HashMap<u64, Option<String>>,
) -> Vec<(u64, Vec<&'static str>)> {
    let Ok(svgs) = document.query_selector_all("svg") else {
        return Vec::new();
    };
    let mut plans = Vec::new();
    for id in svgs {
        let Some(node) = document.get_node(id) else {
            continue;
        };
        let nested = node
            .parent
            .and_then(|p| document.get_node(p))
            .and_then(|p| p.element_data())
            .is_some_and(|p| &*p.name.local == "svg");
        let Some(element) = node.element_data() else {
            continue;
        };
        if nested {
            continue;
        }
        let attr = |name: &str| {
            element
                .attrs
                .iter()
                .find(|a| a.name.local.to_ascii_lowercase() == name.to_ascii_lowercase())
                .map(|a| a.value.as_str())
        };
        let (width, height) = (attr("width"), attr("height"));
        let ratio = attr("viewBox").and_then(view_box_size);
        let mut added: Vec<(&'static str, &'static str)> = Vec::new();
        match ratio {
            Some(_) if width.is_none() && height.is_none() => added.push(("width", "100%")),
            Some(_) => {}
            None => {
                if width.is_none() {
                    added.push(("width", "300"));
                }
                if height.is_none() {
                    added.push(("height", "150"));
                }
            }
        }
        if added.is_empty() && ratio.is_none() {
            continue;
        }
        plans.push((id, added, ratio, attr("style").map(str::to_owned)));
    }
    let mut mutator = document.mutate();
    let mut changed = Vec::new();
    for (id, added, ratio, style) in plans {
        for (name, value) in &added {
            let local = match *name {
                "width" => blitz_dom::local_name!("width"),
                _ => blitz_dom::local_name!("height"),
            };
            mutator.set_attribute(
                id,
                blitz_dom::QualName::new(None, blitz_dom::ns!(), local),
                value,
            );
        }
        if let Some((w, h)) = ratio {
            let own = style.clone().unwrap_or_default();
            let value = format!("aspect-ratio: auto {w} / {h}; {own}");
            mutator.set_attribute(id, style_name(), &value);
            originals.entry(id.as_u64()).or_insert(style);
        }
        changed.push((id.as_u64(), added.iter().map(|(n, _)| *n).collect()));
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_image_sizes() {
        let gif = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7";
        assert_eq!(data_image_size(gif), Some((1.0, 1.0)));
        let gif = "data:image/gif;base64,R0lGODlhEAAJAJEAAAAAAP///////wAAACH5BAEAAAAALAAAAAAQAAkAAAIKlI+py+0Po5yUFQA7";
        assert_eq!(data_image_size(gif), Some((16.0, 9.0)));
        let png = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
        assert_eq!(data_image_size(png), Some((1.0, 1.0)));
        let svg = "data:image/svg+xml,%3Csvg%20xmlns='http://www.w3.org/2000/svg'%20viewBox='0%200%20400%20268'%3E%3C/svg%3E";
        assert_eq!(data_image_size(svg), Some((400.0, 268.0)));
        let svg = r#"data:image/svg+xml;utf8,<svg xmlns="http://www.w3.org/2000/svg" width="10" height="20"></svg>"#;
        assert_eq!(data_image_size(svg), Some((10.0, 20.0)));
        assert_eq!(data_image_size("data:text/plain,hello"), None);
        assert_eq!(data_image_size("data:image/gif;base64,!!!"), None);
    }
}
