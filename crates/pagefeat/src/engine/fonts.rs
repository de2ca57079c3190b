//! Font resolution shared by both engines (issue 15 item 5), so that a page's text takes the
//! same installed faces, and so the same advances and `line-height: normal` metrics, in the
//! embedded engine and in Chromium:
//!
//! - **generic families** (`serif`, `sans-serif`, `monospace`, `cursive`, `fantasy`) are what
//!   fontconfig matches for them (`fc-match`, [`generic_faces`]). Blitz's font library
//!   (fontique) already asks fontconfig; Chromium is given the same faces by name
//!   (`Page.setFontFamilies`), since a generic keyword there is looked up as a family name
//!   and `sans-serif` found nothing and fell back to the serif standard font;
//! - **named families that are not installed** resolve as Chromium resolves them: to a
//!   metric-compatible face by Skia's table and Blink's Arial/Helvetica, Times/Times New Roman,
//!   Courier/Courier New pairs (Arial and Helvetica -> Liberation Sans, Times New Roman and
//!   Times -> Liberation Serif, Courier New and Courier -> Liberation Mono), and to nothing for
//!   fontconfig's other aliases (Georgia -> DejaVu Serif is refused). Blitz ignores aliases,
//!   so the embedded engine registers the faces of [`METRIC_ALIASES`] under the alias names;
//! - **a family list with nothing installed** (web fonts, which never load here) falls back
//!   to Chromium's standard font, the `serif` face; fontique would take fontconfig's default
//!   match for the script (a sans face). The embedded engine appends `serif` to such lists.

use std::collections::HashMap;
use std::sync::OnceLock;

use blitz_dom::net::{FontFaceOverrides, Resource, ResourceLoadResponse};
use blitz_dom::{BaseDocument, FontContext, NodeData, NodeId};
use blitz_traits::net::Bytes;

use super::style_attr::{appended, style_name};

/// Families that stand for a family name that is not installed, as Chromium on Linux takes
/// them: `(name, candidates)`, the first installed candidate wins (fontconfig's order).
/// Chromium asks fontconfig for the name and keeps the match only when it is the name itself
/// or metric-compatible by Skia's own table (Arial / Arimo / Liberation Sans, Times New Roman
/// / Tinos / Liberation Serif, Courier New / Cousine / Liberation Mono, Calibri / Carlito,
/// Cambria / Caladea, Symbol / Symbol Neu); Blink then tries Helvetica as Arial, Times as
/// Times New Roman and Courier as Courier New. Fontconfig's other aliases are refused (the
/// URW base-35 faces for Helvetica, Times, Palatino, Avant Garde; DejaVu for Bitstream Vera;
/// any weak alias such as DejaVu Serif for Georgia), so they are not listed: the
/// `fonts.html` micro-page checks each case against Chromium.
pub const METRIC_ALIASES: &[(&str, &[&str])] = &[
    ("Arial", &["Arimo", "Liberation Sans"]),
    ("Helvetica", &["Arimo", "Liberation Sans"]),
    ("Arimo", &["Liberation Sans"]),
    ("Liberation Sans", &["Arimo"]),
    ("Times New Roman", &["Tinos", "Liberation Serif"]),
    ("Times", &["Tinos", "Liberation Serif"]),
    ("Tinos", &["Liberation Serif"]),
    ("Liberation Serif", &["Tinos"]),
    ("Courier New", &["Cousine", "Liberation Mono"]),
    ("Courier", &["Cousine", "Liberation Mono"]),
    ("Cousine", &["Liberation Mono"]),
    ("Liberation Mono", &["Cousine"]),
    ("Calibri", &["Carlito"]),
    ("Cambria", &["Caladea"]),
    ("Symbol", &["Symbol Neu"]),
];

/// CSS generic family keywords (CSS Fonts 4, `<generic-family>`): a list holding one of these
/// always resolves.
pub const GENERIC_KEYWORDS: &[&str] = &[
    "serif",
    "sans-serif",
    "monospace",
    "cursive",
    "fantasy",
    "system-ui",
    "ui-serif",
    "ui-sans-serif",
    "ui-monospace",
    "ui-rounded",
    "math",
    "emoji",
    "fangsong",
];

/// The installed family fontconfig matches for each generic family (the first family of
/// `fc-match <generic>`), or the keyword itself when `fc-match` could not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericFaces {
    /// `serif` (also Chromium's standard font, the one text without a usable family takes).
    pub serif: String,
    /// `sans-serif`.
    pub sans_serif: String,
    /// `monospace` (Chromium's fixed font).
    pub monospace: String,
    /// `cursive`.
    pub cursive: String,
    /// `fantasy`.
    pub fantasy: String,
}

/// The generic faces of this machine, asked of `fc-match` once per process (a few ms).
/// Where `fc-match` is missing or fails, a keyword stays itself (logged at warn level).
pub fn generic_faces() -> &'static GenericFaces {
    static FACES: OnceLock<GenericFaces> = OnceLock::new();
    FACES.get_or_init(|| GenericFaces {
        serif: fc_match_family("serif"),
        sans_serif: fc_match_family("sans-serif"),
        monospace: fc_match_family("monospace"),
        cursive: fc_match_family("cursive"),
        fantasy: fc_match_family("fantasy"),
    })
}

/// The first family name of fontconfig's match for `pattern`, or `pattern` itself.
fn fc_match_family(pattern: &str) -> String {
    let output = std::process::Command::new("fc-match")
        .arg("--format=%{family[0]}")
        .arg(pattern)
        .output();
    match output {
        Ok(out) if out.status.success() => {
            let family = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if family.is_empty() {
                pattern.to_owned()
            } else {
                family
            }
        }
        Ok(out) => {
            tracing::warn!(pattern, status = %out.status, "fc-match failed; keeping the keyword");
            pattern.to_owned()
        }
        Err(error) => {
            tracing::warn!(pattern, %error, "fc-match not run; keeping the keyword");
            pattern.to_owned()
        }
    }
}

/// The families of a computed `font-family` value (`"Helvetica Neue", Arial, sans-serif`):
/// split at commas outside quotes, quotes and surrounding white space removed.
pub fn parse_family_list(value: &str) -> Vec<String> {
    let mut families = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in value.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => quote = Some(c),
            (None, ',') => {
                families.push(current.trim().to_owned());
                current.clear();
            }
            (None, c) => current.push(c),
        }
    }
    families.push(current.trim().to_owned());
    families.retain(|f| !f.is_empty());
    families
}

/// Whether `family` is a generic keyword (ASCII case-insensitive; a quoted name is not one,
/// but computed values keep quotes only where needed, so this is close enough here).
pub fn is_generic(family: &str) -> bool {
    GENERIC_KEYWORDS
        .iter()
        .any(|g| g.eq_ignore_ascii_case(family))
}

/// An alias family for the embedded engine: the faces (font files) of the installed family
/// that stands for it.
#[derive(Clone)]
pub struct FontAlias {
    /// The alias, as pages write it (`Arial`).
    pub name: &'static str,
    /// The installed family standing for it (`Liberation Sans`).
    pub family: String,
    /// The font data of each face of that family (memory-mapped files, shared).
    faces: Vec<Bytes>,
}

impl std::fmt::Debug for FontAlias {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FontAlias")
            .field("name", &self.name)
            .field("family", &self.family)
            .field("faces", &self.faces.len())
            .finish()
    }
}

/// The aliases of [`METRIC_ALIASES`] that this machine can serve: the alias itself is not
/// installed and one of its candidates is (through `fonts`, i.e. fontconfig's font list).
pub fn installed_aliases(fonts: &mut FontContext) -> Vec<FontAlias> {
    let mut aliases = Vec::new();
    for (name, candidates) in METRIC_ALIASES {
        if fonts.collection.family_id(name).is_some() {
            continue; // the real family is installed
        }
        let Some(family) = candidates
            .iter()
            .find_map(|c| fonts.collection.family_by_name(c))
        else {
            continue;
        };
        let faces: Vec<Bytes> = family
            .fonts()
            .iter()
            .filter_map(|font| font.load(None))
            .map(Bytes::from_owner)
            .collect();
        if !faces.is_empty() {
            aliases.push(FontAlias {
                name,
                family: family.name().to_owned(),
                faces,
            });
        }
    }
    tracing::debug!(?aliases, "font aliases");
    aliases
}

/// Registers, in `document`'s font collection, the faces of every alias whose name occurs in
/// `html` (ASCII case-insensitively; only inline style applies in the embedded engine, so a
/// family not named in the page is never asked for) under the alias name. Returns the names
/// registered.
pub fn register_aliases(
    document: &mut BaseDocument,
    aliases: &[FontAlias],
    html: &str,
) -> Vec<&'static str> {
    let lower = html.to_ascii_lowercase();
    let mut registered = Vec::new();
    for alias in aliases {
        if !lower.contains(&alias.name.to_ascii_lowercase()) {
            continue;
        }
        for face in &alias.faces {
            document.load_resource(ResourceLoadResponse {
                request_id: usize::MAX,
                node_id: None,
                resolved_url: None,
                result: Ok(Resource::Font(
                    face.clone(),
                    FontFaceOverrides {
                        family_name: Some(alias.name.to_owned()),
                        weight: None,
                        style: None,
                    },
                )),
            });
        }
        registered.push(alias.name);
    }
    registered
}

/// Gives elements whose computed `font-family` names nothing installed (no generic, no
/// installed family, no registered alias) the list followed by `serif`, so they take the
/// serif face as Chromium takes its standard font; Blitz would take fontconfig's default
/// match for the script. Resolves styles itself (`resolve_stylist`), then sets the list in
/// the inline style of each element where such a list starts (differs from its parent's);
/// descendants inherit it, and a second round catches those that declare the same list
/// themselves. The original `style` attribute of each changed element goes into
/// `originals` by node id (unless there already), to report the page's own attributes.
pub fn append_standard_fallback(
    document: &mut BaseDocument,
    fonts: &mut FontContext,
    aliases: &[&str],
    originals: &mut HashMap<u64, Option<String>>,
) {
    let mut resolvable: HashMap<String, bool> = HashMap::new();
    for _round in 0..FALLBACK_ROUNDS {
        document.resolve_stylist(0.0);
        let changes = unusable_lists(document, fonts, aliases, &mut resolvable);
        if changes.is_empty() {
            break;
        }
        let mut mutator = document.mutate();
        for (id, style, value) in changes {
            let value = appended(style.as_deref(), &format!("font-family: {value}, serif;"));
            mutator.set_attribute(id, style_name(), &value);
            originals.entry(id.as_u64()).or_insert(style);
        }
    }
}

/// Rounds of [`append_standard_fallback`] (the second one catches explicit declarations of
/// a list an ancestor was given the fallback for).
const FALLBACK_ROUNDS: usize = 3;

/// Elements (with their `style` attribute and computed `font-family`) whose list starts
/// there and names nothing usable.
fn unusable_lists(
    document: &BaseDocument,
    fonts: &mut FontContext,
    aliases: &[&str],
    resolvable: &mut HashMap<String, bool>,
) -> Vec<(NodeId, Option<String>, String)> {
    let mut computed: HashMap<u64, String> = HashMap::new();
    let mut changes = Vec::new();
    let mut stack = vec![document.root_node().id];
    while let Some(id) = stack.pop() {
        let Some(node) = document.get_node(id) else {
            continue;
        };
        stack.extend(node.children.iter().copied());
        let NodeData::Element(element) = &node.data else {
            continue;
        };
        if node.primary_styles().is_none() {
            continue; // display: none subtree, no text shaped
        }
        let value = document.resolved_style_value(id, "font-family");
        let inherited = node
            .parent
            .and_then(|p| computed.get(&p.as_u64()))
            .is_some_and(|parent| *parent == value);
        computed.insert(id.as_u64(), value.clone());
        if inherited || value.is_empty() {
            continue;
        }
        let usable = *resolvable.entry(value.clone()).or_insert_with(|| {
            parse_family_list(&value).iter().any(|family| {
                is_generic(family)
                    || aliases.iter().any(|a| a.eq_ignore_ascii_case(family))
                    || fonts.collection.family_id(family).is_some()
            })
        });
        if !usable {
            let style = element
                .attrs
                .iter()
                .find(|a| &*a.name.local == "style")
                .map(|a| a.value.clone());
            changes.push((id, style, value));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_lists_split_outside_quotes() {
        assert_eq!(
            parse_family_list(r#""Helvetica Neue", Arial,sans-serif"#),
            ["Helvetica Neue", "Arial", "sans-serif"]
        );
        assert_eq!(parse_family_list("'a,b', c"), ["a,b", "c"]);
        assert!(parse_family_list("  ").is_empty());
        assert!(is_generic("Sans-Serif"));
        assert!(!is_generic("Arial"));
    }
}
