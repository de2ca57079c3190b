//! Ad labels from the bundled EasyList through Brave's `adblock` engine (issue 6 item 5): a
//! node is an ad when a cosmetic hide selector matches it, or when a network rule matches its
//! `src`/`href` URL. These labels are the ground truth the layout-only classifier is trained
//! and evaluated against (the AdGraph method).
//!
//! Cosmetic matching: `hidden_class_id_selectors` (generic rules keyed by class or id) and the
//! host's `hide_selectors` (site rules and generic rules not keyed by class/id). pagefeat
//! evaluates compound selectors itself (tag, `#id`, `.class`, `[attr]`, `[attr=v]`,
//! `[attr^=v]`, `[attr$=v]`, `[attr*=v]`, `[attr~=v]`); selectors with combinators or
//! pseudo-classes are counted as skipped, so labels are a lower bound of what a browser with
//! EasyList hides.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use adblock::Engine;
use adblock::lists::{FilterSet, ParseOptions};
use adblock::request::Request;
use url::Url;

use crate::error::{Error, Result};
use crate::stat_node::StatTree;

/// The EasyList engine.
pub struct AdFilter {
    engine: Engine,
    rules: usize,
}

impl std::fmt::Debug for AdFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdFilter")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

/// Counts from labelling one tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LabelStats {
    /// Nodes matched by a cosmetic selector.
    pub cosmetic: usize,
    /// Nodes matched by a network rule on their URL.
    pub network: usize,
    /// Hide selectors pagefeat could not evaluate (combinators, pseudo-classes).
    pub skipped_selectors: usize,
}

impl AdFilter {
    /// Builds the engine from a filter list file (ABP/uBO syntax).
    ///
    /// # Errors
    /// [`Error::FilterList`] when the file cannot be read.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = fs_err::read_to_string(path).map_err(|source| Error::FilterList {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::from_text(&text))
    }

    /// Builds the engine from filter list text.
    pub fn from_text(text: &str) -> Self {
        let mut set = FilterSet::new(true);
        set.add_filter_list(text.to_owned(), ParseOptions::default());
        let rules = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('!'))
            .count();
        Self {
            engine: Engine::new_with_filter_set(set),
            rules,
        }
    }

    /// Number of non-comment lines in the list.
    pub fn rule_count(&self) -> usize {
        self.rules
    }

    /// Sets `extend_attributes.ad_filter_match` and `ad_filter_rule` on every node of `tree`
    /// that a rule matches. The page URL decides first- and third-party requests and the
    /// host's site-specific rules.
    pub fn label(&self, tree: &mut StatTree) -> LabelStats {
        let mut stats = LabelStats::default();
        let page_url = tree.url.clone();
        let resources = self.engine.url_cosmetic_resources(&page_url);
        let mut classes: HashSet<String> = HashSet::new();
        let mut ids: HashSet<String> = HashSet::new();
        for node in &tree.nodes {
            if let Some(class) = node.attributes.get("class") {
                classes.extend(class.split_whitespace().map(str::to_owned));
            }
            if let Some(id) = node.attributes.get("id") {
                ids.insert(id.clone());
            }
        }
        let mut selectors: Vec<String> = if resources.generichide {
            Vec::new()
        } else {
            self.engine
                .hidden_class_id_selectors(&classes, &ids, &resources.exceptions)
        };
        selectors.extend(resources.hide_selectors.iter().cloned());
        let mut compiled: Vec<(String, Vec<Compound>)> = Vec::new();
        for selector in selectors {
            match parse_selector_list(&selector) {
                Some(list) => compiled.push((selector, list)),
                None => stats.skipped_selectors += 1,
            }
        }
        let base = Url::parse(&page_url).ok();
        let mut cache: HashMap<String, Option<String>> = HashMap::new();
        for node in &mut tree.nodes {
            if node.name.starts_with('#') {
                continue;
            }
            let mut rule = compiled
                .iter()
                .find(|(_, list)| list.iter().any(|c| c.matches(&node.name, &node.attributes)))
                .map(|(text, _)| format!("##{text}"));
            if rule.is_some() {
                stats.cosmetic += 1;
            } else {
                for attr in ["src", "href", "data-src"] {
                    let Some(raw) = node.attributes.get(attr) else {
                        continue;
                    };
                    let Some(absolute) = absolute_url(base.as_ref(), raw) else {
                        continue;
                    };
                    let kind = match node.name.as_str() {
                        "img" => "image",
                        "iframe" | "frame" => "sub_frame",
                        "script" => "script",
                        "video" | "audio" | "source" => "media",
                        _ => "other",
                    };
                    let key = format!("{kind} {absolute}");
                    let hit = cache
                        .entry(key)
                        .or_insert_with(|| self.network_rule(&absolute, &page_url, kind))
                        .clone();
                    if let Some(hit) = hit {
                        stats.network += 1;
                        rule = Some(hit);
                        break;
                    }
                }
            }
            if let Some(rule) = rule {
                let extend = node.extend_attributes.get_or_insert_with(Default::default);
                extend.ad_filter_match = true;
                extend.ad_filter_rule = rule;
            }
        }
        stats
    }

    fn network_rule(&self, url: &str, source: &str, kind: &str) -> Option<String> {
        let request = Request::new(url, source, kind, "get").ok()?;
        let result = self.engine.check_network_request(&request);
        if result.should_block() {
            Some(
                result
                    .filter
                    .and_then(|f| f.raw_line)
                    .unwrap_or_else(|| "(network rule)".to_owned()),
            )
        } else {
            None
        }
    }
}

fn absolute_url(base: Option<&Url>, raw: &str) -> Option<String> {
    let raw = raw.trim();
    if raw.is_empty() || raw.starts_with('#') || raw.starts_with("javascript:") {
        return None;
    }
    let url = match base {
        Some(base) => base.join(raw).ok()?,
        None => Url::parse(raw).ok()?,
    };
    matches!(url.scheme(), "http" | "https").then(|| url.to_string())
}

/// One attribute test of a compound selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AttrTest {
    Exists(String),
    Equals(String, String),
    Prefix(String, String),
    Suffix(String, String),
    Contains(String, String),
    Word(String, String),
}

/// A compound selector: an optional tag and tests that all must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Compound {
    tag: Option<String>,
    tests: Vec<AttrTest>,
}

impl Compound {
    fn matches(&self, tag: &str, attributes: &std::collections::BTreeMap<String, String>) -> bool {
        if self
            .tag
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case(tag))
        {
            return false;
        }
        self.tests.iter().all(|test| match test {
            AttrTest::Exists(name) => attributes.contains_key(name),
            AttrTest::Equals(name, v) => attributes.get(name).is_some_and(|a| a == v),
            AttrTest::Prefix(name, v) => attributes.get(name).is_some_and(|a| a.starts_with(v)),
            AttrTest::Suffix(name, v) => attributes.get(name).is_some_and(|a| a.ends_with(v)),
            AttrTest::Contains(name, v) => attributes.get(name).is_some_and(|a| a.contains(v)),
            AttrTest::Word(name, v) => attributes
                .get(name)
                .is_some_and(|a| a.split_whitespace().any(|w| w == v)),
        })
    }
}

/// Parses `a, b, c` where each part is one compound selector; `None` when any part uses
/// something else (combinators, pseudo-classes, namespaces).
fn parse_selector_list(text: &str) -> Option<Vec<Compound>> {
    text.split(',')
        .map(|part| parse_compound(part.trim()))
        .collect()
}

fn parse_compound(text: &str) -> Option<Compound> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return None;
    }
    let mut compound = Compound::default();
    let mut i = 0;
    let ident = |i: &mut usize| -> String {
        let start = *i;
        while *i < chars.len() && (chars[*i].is_alphanumeric() || matches!(chars[*i], '-' | '_')) {
            *i += 1;
        }
        chars[start..*i].iter().collect()
    };
    if chars[0].is_alphabetic() || chars[0] == '*' {
        if chars[0] == '*' {
            i = 1;
        } else {
            compound.tag = Some(ident(&mut i));
        }
    }
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let name = ident(&mut i);
                if name.is_empty() {
                    return None;
                }
                compound.tests.push(AttrTest::Word("class".into(), name));
            }
            '#' => {
                i += 1;
                let name = ident(&mut i);
                if name.is_empty() {
                    return None;
                }
                compound.tests.push(AttrTest::Equals("id".into(), name));
            }
            '[' => {
                let close = chars[i..].iter().position(|c| *c == ']')? + i;
                let inner: String = chars[i + 1..close].iter().collect();
                compound.tests.push(parse_attr(&inner)?);
                i = close + 1;
            }
            _ => return None,
        }
    }
    Some(compound)
}

fn parse_attr(inner: &str) -> Option<AttrTest> {
    let ops = ["^=", "$=", "*=", "~=", "="];
    for op in ops {
        if let Some(pos) = inner.find(op) {
            let name = inner[..pos].trim().to_ascii_lowercase();
            let mut value = inner[pos + op.len()..].trim();
            if let Some(stripped) = value.strip_suffix(" i") {
                value = stripped.trim();
            }
            let value = value.trim_matches(|c| c == '"' || c == '\'').to_owned();
            if name.is_empty()
                || name.contains(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
            {
                return None;
            }
            return Some(match op {
                "^=" => AttrTest::Prefix(name, value),
                "$=" => AttrTest::Suffix(name, value),
                "*=" => AttrTest::Contains(name, value),
                "~=" => AttrTest::Word(name, value),
                _ => AttrTest::Equals(name, value),
            });
        }
    }
    let name = inner.trim().to_ascii_lowercase();
    (!name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_'))
    .then_some(AttrTest::Exists(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compound_selectors_parse_and_match() {
        let attrs: std::collections::BTreeMap<String, String> = [
            ("class".to_owned(), "box ad-slot wide".to_owned()),
            ("id".to_owned(), "div-gpt-ad-123".to_owned()),
        ]
        .into_iter()
        .collect();
        let yes = [
            ".ad-slot",
            "div.ad-slot",
            "[id^=\"div-gpt-ad\"]",
            "#div-gpt-ad-123",
            "[class*='slot']",
        ];
        for s in yes {
            let list = parse_selector_list(s).unwrap_or_default();
            assert!(list.iter().any(|c| c.matches("div", &attrs)), "{s}");
        }
        let no = [".ad", "span.ad-slot", "[id$=\"x\"]"];
        for s in no {
            let list = parse_selector_list(s).unwrap_or_default();
            assert!(!list.iter().any(|c| c.matches("div", &attrs)), "{s}");
        }
        assert_eq!(parse_selector_list("div > .ad"), None);
        assert_eq!(parse_selector_list(".ad:has(a)"), None);
    }
}
