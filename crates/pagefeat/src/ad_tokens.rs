//! Token features for the ad-node classifier (issue 15 item 2, after AdGraph: features a filter
//! list does not read directly but that generalise across sites).
//!
//! For every sample node ([`crate::features::node_rows`]) three token sets are read:
//!
//! - `own:` tokens of the node's own names: `class`, `id`, `name`, `role` values and the names
//!   of its `data-*` attributes, split at non-alphanumerics, camelCase and letter/digit
//!   boundaries and lower-cased (`div-gpt-ad_top` -> `div`, `gpt`, `ad`, `top`);
//! - `anc:` the same tokens of its three nearest ancestors;
//! - `url:` tokens of the resource URLs it carries (`src`, `href`, `data-*` values that are
//!   URLs, `action`): host labels, path segments and query keys;
//!
//! plus `third_party`, the number of those URLs whose registrable domain differs from the
//! page's.
//!
//! Which tokens become columns is learned from the training pages only ([`Vocabulary::select`]):
//! a token qualifies when it occurs on nodes of at least [`MIN_SITES`] distinct training sites,
//! and the strongest by smoothed log-odds between labelled and unlabelled nodes are kept, so a
//! token one site uses (a site's own rule in the filter list) cannot become a feature. The
//! chosen tokens are the model's feature names (`own:ad`, `url:doubleclick`), so a saved model
//! carries its vocabulary and [`ad_feature_rows`] rebuilds the same columns from the names.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use url::Url;

use crate::error::{Error, Result};
use crate::features::{NODE_FEATURES, node_rows};
use crate::site::registrable_domain;
use crate::stat_node::StatTree;

/// Column name of the third-party URL count (after the layout columns).
pub const THIRD_PARTY: &str = "third_party";

/// A token must occur on nodes of at least this many distinct training sites.
pub const MIN_SITES: usize = 3;

/// Default number of token columns ([`Vocabulary::select`]).
pub const DEFAULT_TOKENS: usize = 96;

/// Ancestor levels read for `anc:` tokens.
const ANCESTORS: usize = 3;

/// Token lengths kept (shorter and longer ones are noise or ids).
const TOKEN_CHARS: std::ops::RangeInclusive<usize> = 2..=20;

/// The token sets of one node, prefixed (`own:x`, `anc:x`, `url:x`), and its third-party URL
/// count.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeTokens {
    /// Prefixed tokens.
    pub tokens: BTreeSet<String>,
    /// URLs on another registrable domain than the page's.
    pub third_party: usize,
}

#[cfg(test)]
impl NodeTokens {
    /// A node with these tokens and no third-party URL (test helper).
    pub(crate) fn of(tokens: &[&str]) -> Self {
        Self {
            tokens: tokens.iter().map(|s| (*s).to_owned()).collect(),
            third_party: 0,
        }
    }
}

/// Splits `text` into lower-case word tokens (see the module docs).
pub fn split_tokens(text: &str, out: &mut Vec<String>) {
    let mut current = String::new();
    let mut prev: Option<char> = None;
    let mut flush = |current: &mut String| {
        let len = current.chars().count();
        if TOKEN_CHARS.contains(&len) && !current.chars().all(|c| c.is_ascii_digit()) {
            out.push(current.to_lowercase());
        }
        current.clear();
    };
    for c in text.chars() {
        if !c.is_alphanumeric() {
            flush(&mut current);
            prev = None;
            continue;
        }
        if let Some(p) = prev {
            let camel = p.is_lowercase() && c.is_uppercase();
            let digit_edge = p.is_ascii_digit() != c.is_ascii_digit();
            if camel || digit_edge {
                flush(&mut current);
            }
        }
        current.push(c);
        prev = Some(c);
    }
    flush(&mut current);
}

fn name_tokens(attributes: &BTreeMap<String, String>, out: &mut Vec<String>) {
    for key in ["class", "id", "name", "role"] {
        if let Some(value) = attributes.get(key) {
            split_tokens(value, out);
        }
    }
    for key in attributes.keys() {
        if let Some(rest) = key.strip_prefix("data-") {
            split_tokens(rest, out);
        }
    }
}

/// The resource URLs a node carries: `src`, `href`, `action` and `data-*` values that look
/// like absolute or protocol-relative URLs, resolved against `base`.
fn resource_urls(attributes: &BTreeMap<String, String>, base: Option<&Url>) -> Vec<Url> {
    let mut out = Vec::new();
    for (key, value) in attributes {
        let wanted = matches!(key.as_str(), "src" | "href" | "action")
            || (key.starts_with("data-")
                && (value.starts_with("http://")
                    || value.starts_with("https://")
                    || value.starts_with("//")));
        if !wanted {
            continue;
        }
        let value = value.trim();
        if value.starts_with('#') || value.starts_with("javascript:") || value.is_empty() {
            continue;
        }
        let parsed = match base {
            Some(base) => base.join(value).ok(),
            None => Url::parse(value).ok(),
        };
        if let Some(url) = parsed.filter(|u| matches!(u.scheme(), "http" | "https")) {
            out.push(url);
        }
    }
    out
}

fn url_tokens(url: &Url, out: &mut Vec<String>) {
    if let Some(host) = url.host_str() {
        for label in host.split('.') {
            split_tokens(label, out);
        }
    }
    split_tokens(url.path(), out);
    for (key, _) in url.query_pairs() {
        split_tokens(&key, out);
    }
}

/// Parent index of every node (`None` for the root or a dangling parent id).
fn parents(tree: &StatTree) -> Vec<Option<usize>> {
    let index_of = |id: u32| tree.nodes.binary_search_by_key(&id, |n| n.id).ok();
    tree.nodes
        .iter()
        .map(|n| n.parent.and_then(index_of))
        .collect()
}

/// The registrable domain of the page: its URL's, unless that is the fallback base of a saved
/// page (`page.invalid`, [`crate::input::FALLBACK_BASE_URL`]); then the most common domain
/// among its absolute `<a href>` links (a page links mostly to itself), ties by name.
pub fn page_domain(tree: &StatTree) -> Option<String> {
    let own = Url::parse(&tree.url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .filter(|h| !h.ends_with(".invalid"))
        .and_then(|h| registrable_domain(&h));
    if own.is_some() {
        return own;
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for node in tree.nodes.iter().filter(|n| n.name == "a") {
        if let Some(domain) = node
            .attributes
            .get("href")
            .and_then(|h| Url::parse(h).ok())
            .and_then(|u| u.host_str().and_then(registrable_domain))
        {
            *counts.entry(domain).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(d, _)| d)
}

/// The token sets of the nodes at `samples` (indices into `tree.nodes`).
pub fn node_tokens(tree: &StatTree, samples: &[usize]) -> Vec<NodeTokens> {
    let parent = parents(tree);
    let base = Url::parse(&tree.url).ok();
    let page_domain = page_domain(tree);
    let mut own_cache: HashMap<usize, Vec<String>> = HashMap::new();
    let mut own_of = |i: usize| -> Vec<String> {
        own_cache
            .entry(i)
            .or_insert_with(|| {
                let mut v = Vec::new();
                name_tokens(&tree.nodes[i].attributes, &mut v);
                v
            })
            .clone()
    };
    samples
        .iter()
        .map(|&i| {
            let mut tokens = BTreeSet::new();
            for t in own_of(i) {
                tokens.insert(format!("own:{t}"));
            }
            let mut up = parent[i];
            for _ in 0..ANCESTORS {
                let Some(p) = up.filter(|p| *p != i) else {
                    break;
                };
                for t in own_of(p) {
                    tokens.insert(format!("anc:{t}"));
                }
                up = parent[p];
            }
            let mut third_party = 0;
            let mut words = Vec::new();
            for url in resource_urls(&tree.nodes[i].attributes, base.as_ref()) {
                let domain = url.host_str().and_then(registrable_domain);
                if domain.is_some() && domain != page_domain {
                    third_party += 1;
                }
                url_tokens(&url, &mut words);
            }
            for t in words {
                tokens.insert(format!("url:{t}"));
            }
            NodeTokens {
                tokens,
                third_party,
            }
        })
        .collect()
}

/// Counts of one token over the training nodes.
#[derive(Debug, Clone, Default)]
struct TokenCount {
    positives: usize,
    negatives: usize,
    sites: BTreeSet<usize>,
}

/// The token columns of an ad model, in column order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vocabulary {
    /// Prefixed tokens (`own:ad`).
    pub tokens: Vec<String>,
}

impl Vocabulary {
    /// Picks up to `k` tokens from training nodes: `(site index, tokens, label)` per node.
    /// A token needs [`MIN_SITES`] distinct sites among the nodes carrying it; the kept tokens
    /// are the `3k/4` with the highest log-odds of a label (smoothed by one count each side,
    /// weighted by the log of the positives carrying it) and the `k/4` most negative ones.
    pub fn select<'a>(
        nodes: impl IntoIterator<Item = (usize, &'a NodeTokens, bool)>,
        k: usize,
    ) -> Self {
        let mut counts: BTreeMap<&'a str, TokenCount> = BTreeMap::new();
        let (mut positives, mut negatives) = (0usize, 0usize);
        for (site, tokens, label) in nodes {
            if label {
                positives += 1;
            } else {
                negatives += 1;
            }
            for t in &tokens.tokens {
                let c = counts.entry(t.as_str()).or_default();
                if label {
                    c.positives += 1;
                } else {
                    c.negatives += 1;
                }
                c.sites.insert(site);
            }
        }
        let (p_all, n_all) = (positives as f64 + 2.0, negatives as f64 + 2.0);
        let mut scored: Vec<(f64, f64, &str)> = counts
            .iter()
            .filter(|(_, c)| c.sites.len() >= MIN_SITES)
            .map(|(t, c)| {
                let p = (c.positives as f64 + 1.0) / p_all;
                let n = (c.negatives as f64 + 1.0) / n_all;
                let odds = (p / n).ln();
                (
                    odds * (1.0 + c.positives as f64).ln(),
                    -odds * (1.0 + c.negatives as f64).ln(),
                    *t,
                )
            })
            .collect();
        let wanted_pos = k * 3 / 4;
        let wanted_neg = k - wanted_pos;
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.2.cmp(b.2)));
        let mut chosen: Vec<String> = scored
            .iter()
            .filter(|s| s.0 > 0.0)
            .take(wanted_pos)
            .map(|s| s.2.to_owned())
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(b.2)));
        chosen.extend(
            scored
                .iter()
                .filter(|s| s.1 > 0.0)
                .take(wanted_neg)
                .map(|s| s.2.to_owned()),
        );
        Self { tokens: chosen }
    }

    /// Every column name of a model with this vocabulary: the layout columns
    /// ([`NODE_FEATURES`]), [`THIRD_PARTY`], then the tokens.
    pub fn feature_names(&self) -> Vec<String> {
        NODE_FEATURES
            .iter()
            .map(|s| (*s).to_owned())
            .chain(std::iter::once(THIRD_PARTY.to_owned()))
            .chain(self.tokens.iter().cloned())
            .collect()
    }

    /// The vocabulary of a model's feature names: empty for a layout-only model (its names
    /// are exactly [`NODE_FEATURES`]).
    ///
    /// # Errors
    /// [`Error::Model`] when the names start otherwise (a model of another feature set).
    pub fn from_feature_names(names: &[String]) -> Result<Self> {
        let bad = || Error::Model {
            path: "(ad model)".into(),
            reason: "its feature names are not the layout features followed by tokens".to_owned(),
        };
        if names.len() < NODE_FEATURES.len() || names.iter().zip(NODE_FEATURES).any(|(a, b)| a != b)
        {
            return Err(bad());
        }
        let rest = &names[NODE_FEATURES.len()..];
        match rest.split_first() {
            None => Ok(Self::default()),
            Some((first, tokens)) if first == THIRD_PARTY => Ok(Self {
                tokens: tokens.to_vec(),
            }),
            Some(_) => Err(bad()),
        }
    }
}

/// Appends the token columns of `vocab` to layout `rows` (one per node of `tokens`).
pub fn extend_rows(rows: &mut [Vec<f64>], tokens: &[NodeTokens], vocab: &Vocabulary) {
    for (row, t) in rows.iter_mut().zip(tokens) {
        row.push(t.third_party as f64);
        row.extend(
            vocab
                .tokens
                .iter()
                .map(|name| f64::from(u8::from(t.tokens.contains(name)))),
        );
    }
}

/// Sample node indices and full feature rows of `tree` for a model with feature `names`
/// (layout only when the names are [`NODE_FEATURES`]).
///
/// # Errors
/// As [`Vocabulary::from_feature_names`].
pub fn ad_feature_rows(tree: &StatTree, names: &[String]) -> Result<(Vec<usize>, Vec<Vec<f64>>)> {
    let vocab = Vocabulary::from_feature_names(names)?;
    let (samples, mut rows) = node_rows(tree);
    if names.len() > NODE_FEATURES.len() {
        let tokens = node_tokens(tree, &samples);
        extend_rows(&mut rows, &tokens, &vocab);
    }
    Ok((samples, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Vec<String> {
        let mut v = Vec::new();
        split_tokens(text, &mut v);
        v
    }

    #[test]
    fn tokens_split_at_case_digits_and_punctuation() {
        assert_eq!(split("div-gpt-ad_top"), ["div", "gpt", "ad", "top"]);
        assert_eq!(split("adContainer300x250"), ["ad", "container"]);
        assert_eq!(split("a 12345 Sponsored"), ["sponsored"]);
    }

    fn tokens(list: &[&str]) -> NodeTokens {
        NodeTokens::of(list)
    }

    #[test]
    fn vocabulary_needs_several_sites_and_round_trips_through_names() {
        let ad = tokens(&["own:ad"]);
        let plain = tokens(&["own:nav"]);
        // "own:ad" is on positives of three sites; "own:siteonly" on one site only.
        let mut nodes = vec![(0, &ad, true), (1, &ad, true), (2, &ad, true)];
        let single = tokens(&["own:siteonly"]);
        nodes.push((0, &single, true));
        for site in 0..4 {
            nodes.push((site, &plain, false));
        }
        let vocab = Vocabulary::select(nodes.iter().copied(), 8);
        assert!(vocab.tokens.contains(&"own:ad".to_owned()), "{vocab:?}");
        assert!(
            !vocab.tokens.contains(&"own:siteonly".to_owned()),
            "{vocab:?}"
        );
        let names = vocab.feature_names();
        assert_eq!(Vocabulary::from_feature_names(&names).ok(), Some(vocab));
        let layout: Vec<String> = NODE_FEATURES.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(
            Vocabulary::from_feature_names(&layout).ok(),
            Some(Vocabulary::default())
        );
        assert!(Vocabulary::from_feature_names(&["x".to_owned()]).is_err());
    }
}
