//! Form-control baselines as Chromium places them (issue 15 item 5). A `<button>` with no
//! content has no line box to take a baseline from; Blink then takes the bottom of its
//! content box as its baseline, so the button hangs below the line's baseline by its bottom
//! padding and border. Blitz treats it as an empty inline block, whose baseline is its
//! bottom margin edge. The embedded engine gives such buttons the difference as a
//! `vertical-align` length.

use std::collections::HashMap;

use blitz_dom::{BaseDocument, NodeData};

use super::style_attr::{appended, style_name};

/// Moves every empty `<button>` (no element children, only white space as text) whose
/// `vertical-align` is `baseline` down by its bottom padding, border and margin, so its
/// content box's bottom sits on the baseline. Needs a laid-out document (the used padding,
/// border and margin); returns whether anything changed (then lay out again). The original
/// `style` attribute of each changed element goes into `originals`.
pub fn baseline_empty_buttons(
    document: &mut BaseDocument,
    originals: &mut HashMap<u64, Option<String>>,
) -> bool {
    let Ok(buttons) = document.query_selector_all("button") else {
        return false;
    };
    let px = |value: String| value.trim().trim_end_matches("px").parse::<f32>().ok();
    let mut changes = Vec::new();
    for id in buttons {
        let Some(node) = document.get_node(id) else {
            continue;
        };
        if node.primary_styles().is_none() {
            continue;
        }
        let empty = node.children.iter().all(|child| {
            document.get_node(*child).is_none_or(|c| match &c.data {
                NodeData::Text(text) => text.content.trim().is_empty(),
                NodeData::Comment { .. } => true,
                _ => false,
            })
        });
        let display = document.resolved_style_value(id, "display");
        if !empty
            || !display.starts_with("inline")
            || document.resolved_style_value(id, "vertical-align") != "baseline"
        {
            continue;
        }
        let below: f32 = ["padding-bottom", "border-bottom-width", "margin-bottom"]
            .iter()
            .filter_map(|p| px(document.resolved_style_value(id, p)))
            .sum();
        if below <= 0.0 {
            continue;
        }
        let style = node.element_data().and_then(|e| {
            e.attrs
                .iter()
                .find(|a| &*a.name.local == "style")
                .map(|a| a.value.clone())
        });
        changes.push((id, style, below));
    }
    if changes.is_empty() {
        return false;
    }
    let mut mutator = document.mutate();
    for (id, style, below) in changes {
        let value = appended(style.as_deref(), &format!("vertical-align: -{below}px;"));
        mutator.set_attribute(id, style_name(), &value);
        originals.entry(id.as_u64()).or_insert(style);
    }
    true
}
