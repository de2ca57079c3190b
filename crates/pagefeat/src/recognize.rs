//! Recognition on StatTrees (seed ¶96-¶104): ad labels and scores on nodes, the page's
//! soft-404 score, popups and their kinds. Runs on the background workers.

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::ad_tokens::ad_feature_rows;
use crate::adfilter::{AdFilter, LabelStats};
use crate::layout::LayoutSnapshot;
use crate::model::Forest;
use crate::popup::{self, PopupEvidence, PopupKind};
use crate::stat_node::{
    Derived, Profile, Selection, StatTree, TreeMeta, Trigger, build_tree, derive,
};

/// The recognition pieces a worker uses; each is optional (a missing model skips its step).
#[derive(Debug, Default)]
pub struct Recognizer {
    /// EasyList engine for the filter-list labels.
    pub filter: Option<Arc<AdFilter>>,
    /// Layout-only ad node classifier.
    pub ad: Option<Forest>,
    /// Page-level soft-404 classifier.
    pub soft404: Option<Forest>,
}

/// One detected popup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PopupReport {
    /// Its kind.
    pub kind: PopupKind,
    /// Id of its root node in the panorama tree.
    pub node: u32,
    /// The evidence behind the kind.
    pub evidence: PopupEvidence,
    /// Size of its local tree, nodes.
    pub nodes: usize,
}

/// Everything recognised on one page.
#[derive(Debug, Clone, PartialEq)]
pub struct PageResult {
    /// The page's name.
    pub page: String,
    /// The panorama tree with ad marks, ad scores and popup marks.
    pub tree: StatTree,
    /// The local tree of each popup, in the order of `popups`.
    pub popup_trees: Vec<StatTree>,
    /// Filter-list labelling counts (zero without a filter).
    pub labels: LabelStats,
    /// Nodes the ad classifier called ads (filter-list matches when there is no model).
    pub ad_nodes: usize,
    /// Soft-404 verdict and score in [0, 1], when the model is loaded.
    pub soft404: Option<(bool, f64)>,
    /// Popups found.
    pub popups: Vec<PopupReport>,
}

/// The extract of one subtree of `tree` as a local tree (the root loses its parent and
/// sibling links; ids are kept).
pub fn local_tree(tree: &StatTree, root_id: u32) -> StatTree {
    let mut keep = std::collections::HashSet::new();
    keep.insert(root_id);
    let mut nodes = Vec::new();
    for node in &tree.nodes {
        if node.id == root_id || node.parent.is_some_and(|p| keep.contains(&p)) {
            keep.insert(node.id);
            let mut node = node.clone();
            if node.id == root_id {
                node.parent = None;
                node.next_sibling = None;
            }
            nodes.push(node);
        }
    }
    StatTree {
        profile: Profile::Local as i32,
        nodes,
        ..tree.clone_header()
    }
}

impl StatTree {
    /// A copy of the header fields with no nodes.
    pub fn clone_header(&self) -> Self {
        Self {
            url: self.url.clone(),
            viewport_width: self.viewport_width,
            viewport_height: self.viewport_height,
            profile: self.profile,
            trigger: self.trigger,
            capture_time_ms: self.capture_time_ms,
            nodes: Vec::new(),
            engine: self.engine.clone(),
            scroll_y: self.scroll_y,
            document_width: self.document_width,
            document_height: self.document_height,
        }
    }
}

impl Recognizer {
    /// Labels and scores the nodes of `tree` in place; returns the label counts and the
    /// number of nodes called ads.
    pub fn mark_ads(&self, tree: &mut StatTree) -> (LabelStats, usize) {
        let labels = self
            .filter
            .as_ref()
            .map(|f| f.label(tree))
            .unwrap_or_default();
        let Some(model) = &self.ad else {
            let matched = tree
                .nodes
                .iter()
                .filter(|n| {
                    n.extend_attributes
                        .as_ref()
                        .is_some_and(|e| e.ad_filter_match)
                })
                .count();
            return (labels, matched);
        };
        let (samples, scores) = match ad_feature_rows(tree, &model.features) {
            Ok((samples, rows)) => (samples, model.score(&rows).unwrap_or_default()),
            Err(error) => {
                tracing::warn!(%error, "ad model does not fit the feature set; no ad scores");
                (Vec::new(), Vec::new())
            }
        };
        let mut count = 0;
        for (i, score) in samples.iter().zip(scores) {
            if score >= model.threshold {
                count += 1;
            }
            let extend = tree.nodes[*i]
                .extend_attributes
                .get_or_insert_with(Default::default);
            extend.ad_score = score as f32;
        }
        (labels, count)
    }

    /// The soft-404 verdict from a page's dead-link feature row ([`crate::deadlink::row`]);
    /// `None` without a model or a row.
    pub fn soft404(&self, deadlink_row: Option<&[f64]>) -> Option<(bool, f64)> {
        let model = self.soft404.as_ref()?;
        let row = deadlink_row?.to_vec();
        let score = model.score(&[row]).ok()?.first().copied()?;
        Some((score >= model.threshold, score))
    }

    /// The classifier threshold for ad nodes (1.1, never reached, without a model).
    pub fn ad_threshold(&self) -> f32 {
        self.ad.as_ref().map_or(1.1, |m| m.threshold as f32)
    }

    /// Builds the panorama tree of `main` and recognises everything. Popups:
    /// [`popup::popup_roots`] (overlay candidates, and with `parse_end` (Chromium) the
    /// subtrees that appeared since then and hold one).
    /// The soft-404 verdict reads `deadlink_row`, the page's dead-link features (from its HTML).
    pub fn recognize(
        &self,
        page: &str,
        main: &LayoutSnapshot,
        parse_end: Option<&LayoutSnapshot>,
        deadlink_row: Option<&[f64]>,
        captured: SystemTime,
    ) -> PageResult {
        let derived: Derived = derive(main);
        let meta = TreeMeta {
            profile: Profile::Panorama,
            trigger: if parse_end.is_some() {
                Trigger::PrePaintEnd
            } else {
                Trigger::ParseEnd
            },
            captured,
        };
        let mut tree = build_tree(main, &derived, &Selection::All, meta);
        let (labels, ad_nodes) = self.mark_ads(&mut tree);
        let soft404 = self.soft404(deadlink_row);
        let before = parse_end.map(|b| (b, derive(b)));
        let roots = popup::popup_roots(main, &derived, before.as_ref().map(|(b, d)| (*b, d)));
        let mut popups = Vec::new();
        let mut popup_trees = Vec::new();
        for root in roots {
            let id = root as u32;
            if let Ok(pos) = tree.nodes.binary_search_by_key(&id, |n| n.id) {
                tree.nodes[pos]
                    .extend_attributes
                    .get_or_insert_with(Default::default)
                    .popup = true;
            }
            let local = local_tree(&tree, id);
            let evidence = popup::evidence(&local);
            popups.push(PopupReport {
                kind: popup::classify(&evidence),
                node: id,
                evidence,
                nodes: local.nodes.len(),
            });
            popup_trees.push(local);
        }
        PageResult {
            page: page.to_owned(),
            tree,
            popup_trees,
            labels,
            ad_nodes,
            soft404,
            popups,
        }
    }
}
