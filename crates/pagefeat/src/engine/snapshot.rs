//! Reading Chromium's `DOMSnapshot.captureSnapshot` answer into the engine-independent
//! [`LayoutSnapshot`] (layout bounds, computed styles, paint orders), for
//! [`crate::engine::chromium`].

use std::collections::HashMap;

use chromiumoxide::cdp::browser_protocol::dom_snapshot::CaptureSnapshotReturns;

use crate::error::{Error, Result};
use crate::layout::{
    ComputedStyle, EngineKind, LayoutObject, LayoutSnapshot, NodeKind, Rect, collapse_text,
    object_type,
};

/// Converts a DOMSnapshot answer into layout objects: one per DOM node that has a layout
/// tree entry (the first entry, when Blink made several), parented to the nearest ancestor
/// that has one.
///
/// # Errors
/// [`Error::SnapshotShape`] when the arrays are missing or inconsistent.
pub fn read_snapshot(
    answer: &CaptureSnapshotReturns,
    url: &str,
    viewport: (u32, u32),
) -> Result<LayoutSnapshot> {
    let shape = |what: &str| Error::SnapshotShape {
        what: what.to_owned(),
    };
    let document = answer
        .documents
        .first()
        .ok_or_else(|| shape("no document"))?;
    let strings = &answer.strings;
    let text_of = |index: i64| -> &str {
        usize::try_from(index)
            .ok()
            .and_then(|i| strings.get(i))
            .map_or("", String::as_str)
    };
    let nodes = &document.nodes;
    let parents = nodes
        .parent_index
        .as_ref()
        .ok_or_else(|| shape("parentIndex"))?;
    let types = nodes.node_type.as_ref().ok_or_else(|| shape("nodeType"))?;
    let names = nodes.node_name.as_ref().ok_or_else(|| shape("nodeName"))?;
    let values = nodes.node_value.as_ref();
    let backend = nodes.backend_node_id.as_ref();
    let attributes = nodes.attributes.as_ref();
    let layout = &document.layout;
    let mut layout_of: HashMap<usize, usize> = HashMap::new();
    for (entry, node) in layout.node_index.iter().enumerate() {
        if let Ok(node) = usize::try_from(*node) {
            layout_of.entry(node).or_insert(entry);
        }
    }
    let count = parents.len();
    let mut object_of: Vec<Option<usize>> = vec![None; count];
    let mut objects: Vec<LayoutObject> = Vec::new();
    for node in 0..count {
        let Some(&entry) = layout_of.get(&node) else {
            continue;
        };
        let name = names.get(node).map_or("", |s| text_of(*s.inner()));
        if name.starts_with("::") {
            continue; // pseudo-elements
        }
        let kind = match types.get(node) {
            Some(9) => NodeKind::Document,
            Some(1) => NodeKind::Element,
            Some(3) => NodeKind::Text,
            _ => continue,
        };
        // Nearest ancestor with an object.
        let mut p = parents.get(node).copied().unwrap_or(-1);
        let mut parent = None;
        while let Ok(pi) = usize::try_from(p) {
            if pi >= node {
                break;
            }
            if let Some(o) = object_of[pi] {
                parent = Some(o);
                break;
            }
            p = parents.get(pi).copied().unwrap_or(-1);
        }
        if kind != NodeKind::Document && parent.is_none() {
            continue;
        }
        let style_values: Vec<String> = layout
            .styles
            .get(entry)
            .map(|a| {
                a.inner()
                    .iter()
                    .map(|s| text_of(*s.inner()).to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let style = ComputedStyle::from_values(&style_values);
        let tag = match kind {
            NodeKind::Document => "#document".to_owned(),
            NodeKind::Text => "#text".to_owned(),
            NodeKind::Element => name.to_ascii_lowercase(),
        };
        let Some(class) = object_type(kind, &tag, &style.display) else {
            continue;
        };
        let bounds = layout
            .bounds
            .get(entry)
            .map(|r| r.inner().clone())
            .unwrap_or_default();
        let rect = if bounds.len() >= 4 {
            Rect {
                x: bounds[0] as f32,
                y: bounds[1] as f32,
                width: bounds[2].max(0.0) as f32,
                height: bounds[3].max(0.0) as f32,
            }
        } else {
            Rect::default()
        };
        let text = if kind == NodeKind::Text {
            let from_layout = layout.text.get(entry).map_or("", |s| text_of(*s.inner()));
            let raw = if from_layout.is_empty() {
                values
                    .and_then(|v| v.get(node))
                    .map_or("", |s| text_of(*s.inner()))
            } else {
                from_layout
            };
            let collapsed = collapse_text(raw, crate::engine::embedded::MAX_TEXT_CHARS);
            if collapsed.is_empty() {
                continue;
            }
            collapsed
        } else {
            String::new()
        };
        let attrs: Vec<(String, String)> = attributes
            .and_then(|a| a.get(node))
            .map(|list| {
                list.inner()
                    .chunks(2)
                    .filter(|pair| pair.len() == 2)
                    .map(|pair| {
                        (
                            text_of(*pair[0].inner()).to_owned(),
                            text_of(*pair[1].inner()).to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        // A text node takes its parent's style (Blink reports the inherited values too).
        let style = if kind == NodeKind::Text {
            parent.map_or(style.clone(), |p| {
                let mut inherited = objects[p].style.clone();
                inherited.display = style.display.clone();
                inherited
            })
        } else {
            style
        };
        object_of[node] = Some(objects.len());
        objects.push(LayoutObject {
            engine_node: backend
                .and_then(|b| b.get(node))
                .map_or(node as u64, |b| u64::try_from(*b.inner()).unwrap_or(0)),
            parent,
            kind,
            tag,
            object_type: class,
            rect,
            attributes: attrs,
            text,
            style,
            paint_order: layout
                .paint_orders
                .as_ref()
                .and_then(|p| p.get(entry))
                .and_then(|v| i32::try_from(*v).ok()),
        });
    }
    if objects.first().is_none_or(|o| o.kind != NodeKind::Document) {
        return Err(shape("the document has no LayoutView"));
    }
    Ok(LayoutSnapshot {
        url: url.to_owned(),
        engine: EngineKind::Chromium,
        viewport_width: viewport.0,
        viewport_height: viewport.1,
        scroll_y: document.scroll_offset_y.unwrap_or(0.0).round() as i32,
        document_width: document.content_width.unwrap_or(0.0).round().max(0.0) as u32,
        document_height: document.content_height.unwrap_or(0.0).round().max(0.0) as u32,
        objects,
    })
}
