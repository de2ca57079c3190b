//! Model inputs read from StatTrees (seed ¶101: traverse the tree, take each node's features,
//! and the text): layout-only node features for the ad classifier. The soft-404 (dead-link)
//! features are read from the page's text parts instead: [`crate::deadlink`].

use url::Url;

use crate::stat_node::{StatNode, StatTree};

/// Names of the layout node features, in column order: no class names, ids or URLs. The ad
/// model adds token columns learned across training sites after these
/// ([`crate::ad_tokens`]).
pub const NODE_FEATURES: [&str; 24] = [
    "x_rel",
    "y_log",
    "y_rel_doc",
    "width",
    "height",
    "area_log",
    "aspect",
    "width_rel",
    "standard_ad_size",
    "depth",
    "is_iframe",
    "is_img",
    "z_index",
    "fixed",
    "absolute",
    "link_other_domain",
    "text_density",
    "text_chars_log",
    "siblings",
    "children",
    "subtree_log",
    "subtree_links",
    "subtree_images",
    "visible",
];

/// IAB standard ad sizes (width x height, px).
const AD_SIZES: [(i32, i32); 10] = [
    (300, 250),
    (728, 90),
    (160, 600),
    (320, 50),
    (300, 600),
    (970, 250),
    (970, 90),
    (336, 280),
    (320, 100),
    (468, 60),
];

/// Per-node aggregates over each node's subtree.
#[derive(Debug, Clone, Copy, Default)]
struct Subtree {
    size: f64,
    text: f64,
    links: f64,
    images: f64,
}

/// Indices of the element nodes that are samples (visible elements other than html/body),
/// with one feature row per sample.
pub fn node_rows(tree: &StatTree) -> (Vec<usize>, Vec<Vec<f64>>) {
    let n = tree.nodes.len();
    let index_of = |id: u32| tree.nodes.binary_search_by_key(&id, |n| n.id).ok();
    let mut parent_index: Vec<Option<usize>> = vec![None; n];
    for (i, node) in tree.nodes.iter().enumerate() {
        parent_index[i] = node.parent.and_then(index_of);
    }
    let mut sub = vec![Subtree::default(); n];
    for i in (0..n).rev() {
        let node = &tree.nodes[i];
        sub[i].size += 1.0;
        sub[i].text += node.txt.chars().count() as f64;
        if node.name == "a" {
            sub[i].links += 1.0;
        }
        if node.name == "img" {
            sub[i].images += 1.0;
        }
        if let Some(p) = parent_index[i].filter(|p| *p < i) {
            let s = sub[i];
            sub[p].size += s.size;
            sub[p].text += s.text;
            sub[p].links += s.links;
            sub[p].images += s.images;
        }
    }
    let page_host = host_of(&tree.url);
    let vw = f64::from(tree.viewport_width.max(1));
    let doc_h = f64::from(tree.document_height.max(1));
    let mut samples = Vec::new();
    let mut rows = Vec::new();
    for (i, node) in tree.nodes.iter().enumerate() {
        if node.name.starts_with('#') || matches!(node.name.as_str(), "html" | "body") {
            continue;
        }
        if !node.visible {
            continue;
        }
        let extend = node.extend_attributes.clone().unwrap_or_default();
        let css = node.css_attributes.clone().unwrap_or_default();
        let (w, h) = (f64::from(node.width), f64::from(node.height));
        let standard = AD_SIZES
            .iter()
            .any(|(aw, ah)| (node.width - aw).abs() <= 4 && (node.height - ah).abs() <= 4);
        let other_domain = links_elsewhere(tree, &parent_index, i, page_host.as_deref());
        let siblings = parent_index[i].map_or(0, |p| tree.nodes[p].children.len());
        rows.push(vec![
            f64::from(node.xpos) / vw,
            (1.0 + f64::from(node.ypos.max(0))).ln(),
            f64::from(node.ypos) / doc_h,
            w.min(4000.0),
            h.min(4000.0),
            (1.0 + w * h).ln(),
            w / (h + 1.0),
            w / vw,
            f64::from(u8::from(standard)),
            f64::from(extend.depth),
            f64::from(u8::from(matches!(node.name.as_str(), "iframe" | "frame"))),
            f64::from(u8::from(node.name == "img")),
            f64::from(css.z_index.parse::<i32>().unwrap_or(0).clamp(-100, 10_000)),
            f64::from(u8::from(
                css.position == "fixed" || css.position == "sticky",
            )),
            f64::from(u8::from(css.position == "absolute")),
            f64::from(u8::from(other_domain)),
            sub[i].text / (w * h / 1000.0 + 1.0),
            (1.0 + sub[i].text).ln(),
            siblings as f64,
            node.children.len() as f64,
            sub[i].size.ln(),
            sub[i].links,
            sub[i].images,
            f64::from(u8::from(node.visible)),
        ]);
        samples.push(i);
    }
    (samples, rows)
}

fn host_of(url: &str) -> Option<String> {
    Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
}

/// True when the node, or an ancestor up to three levels, links or loads from another host.
fn links_elsewhere(
    tree: &StatTree,
    parent_index: &[Option<usize>],
    mut i: usize,
    page_host: Option<&str>,
) -> bool {
    for _ in 0..4 {
        let node: &StatNode = &tree.nodes[i];
        for attr in ["href", "src"] {
            if let Some(value) = node.attributes.get(attr)
                && let Some(host) = host_of(value)
                && Some(host.as_str()) != page_host
            {
                return true;
            }
        }
        match parent_index[i] {
            Some(p) => i = p,
            None => break,
        }
    }
    false
}

/// The ad label of every node: true when an EasyList rule matches the node itself (its class
/// or id selector, or its own `src`/`href` URL), as AdGraph labels each element. Descendants of
/// a matched element are not labelled: one matched recommendation widget would otherwise label
/// hundreds of nodes (1,243 of 1,756 on the msn page).
pub fn ad_labels(tree: &StatTree) -> Vec<bool> {
    tree.nodes
        .iter()
        .map(|n| {
            n.extend_attributes
                .as_ref()
                .is_some_and(|e| e.ad_filter_match)
        })
        .collect()
}
