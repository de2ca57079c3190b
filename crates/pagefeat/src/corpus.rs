//! The bundled pages (`data/pages`, see its SOURCE.md), the synthetic soft-404 variants and
//! the train / held-out split used by `train` and `demo`.
//!
//! Soft-404 positives are the bundled HTTP error pages plus variants of normal pages whose
//! main content is swapped for not-found text; the variants are marked synthetic in their
//! names (`synthetic-soft404__<page>`). Tree files are named `<category>__<page>.pb`; a tree is
//! a soft-404 positive when its category is `errors` or `synthetic-soft404`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a bundled page is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Pages with ad markup (`data/pages/ads`).
    Ads,
    /// Pages with few or no ad markers (`data/pages/clean`).
    Clean,
    /// HTTP error pages (`data/pages/errors`).
    Errors,
    /// The hard negative: a normal article whose scripts mention "404" (`data/pages/hardneg`).
    Hardneg,
    /// Cookie banner fixtures (`data/pages/popups`).
    Popups,
    /// Generated soft-404 variants of normal pages (marked synthetic).
    SyntheticSoft404,
}

impl Category {
    /// The directory / file-name prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ads => "ads",
            Self::Clean => "clean",
            Self::Errors => "errors",
            Self::Hardneg => "hardneg",
            Self::Popups => "popups",
            Self::SyntheticSoft404 => "synthetic-soft404",
        }
    }

    /// Parses a prefix.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Ads,
            Self::Clean,
            Self::Errors,
            Self::Hardneg,
            Self::Popups,
            Self::SyntheticSoft404,
        ]
        .into_iter()
        .find(|c| c.as_str() == text)
    }

    /// True for soft-404 positives.
    pub fn is_soft404(self) -> bool {
        matches!(self, Self::Errors | Self::SyntheticSoft404)
    }
}

/// One page of the corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusPage {
    /// Category.
    pub category: Category,
    /// File stem, e.g. `traf__lemire.me.json`.
    pub stem: String,
    /// The HTML file.
    pub path: PathBuf,
    /// Held out from training (recognition is measured on these).
    pub held_out: bool,
}

impl CorpusPage {
    /// `<category>__<stem>`: the name of its tree file without `.pb`.
    pub fn key(&self) -> String {
        format!("{}__{}", self.category.as_str(), self.stem)
    }
}

/// Parses `<category>__<rest>` names (tree files); `None` for other names.
pub fn category_of_key(key: &str) -> Option<Category> {
    key.split_once("__").and_then(|(c, _)| Category::parse(c))
}

/// Lists the bundled pages under `pages_dir` (`data/pages`), sorted by category and name.
/// Every third page of each category (from the second) is held out; the hard negative is
/// always held out.
///
/// # Errors
/// [`Error::Io`] when a directory cannot be read.
pub fn bundled(pages_dir: &Path) -> Result<Vec<CorpusPage>> {
    let mut pages = Vec::new();
    for category in [
        Category::Ads,
        Category::Clean,
        Category::Errors,
        Category::Hardneg,
        Category::Popups,
    ] {
        let dir = pages_dir.join(category.as_str());
        let mut files: Vec<PathBuf> = fs_err::read_dir(&dir)
            .map_err(|e| Error::io("listing", &dir, e))?
            .filter_map(std::result::Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "html"))
            .collect();
        files.sort();
        for (i, path) in files.into_iter().enumerate() {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            pages.push(CorpusPage {
                category,
                stem,
                path,
                held_out: category == Category::Hardneg || i % 3 == 1,
            });
        }
    }
    Ok(pages)
}

/// Not-found texts for the synthetic variants (language chosen by the page's position).
const NOT_FOUND: [(&str, &str); 4] = [
    (
        "Page not found",
        "Sorry, the page you are looking for does not exist or is no longer available. It may have been moved or deleted.",
    ),
    (
        "Seite nicht gefunden",
        "Die angeforderte Seite existiert nicht oder wurde verschoben. Bitte versuchen Sie es über die Startseite.",
    ),
    (
        "Página no encontrada",
        "Lo sentimos, la página que busca no existe o ya no está disponible.",
    ),
    (
        "Oops! That page can't be found.",
        "It looks like nothing was found at this location. Maybe try a search or one of the links below?",
    ),
];

/// A soft-404 variant of a normal page: the main content (`<main>`, else `<article>`, else
/// the whole `<body>` content) is replaced by a not-found heading and paragraph; the page's
/// head, inline CSS and the rest of its chrome stay. `variant` picks the language.
pub fn synthesize_soft404(html: &str, variant: usize) -> String {
    let (title, text) = NOT_FOUND[variant % NOT_FOUND.len()];
    let block = format!(
        "<div class=\"content\"><h1>{title}</h1><p>{text}</p><p><a href=\"/\">Home</a></p></div>"
    );
    let lower = html.to_ascii_lowercase();
    for tag in ["main", "article"] {
        let open = format!("<{tag}");
        let close = format!("</{tag}>");
        if let (Some(start), Some(end)) = (lower.find(&open), lower.rfind(&close))
            && let Some(open_end) = lower[start..].find('>').map(|e| start + e + 1)
            && open_end <= end
        {
            return format!("{}{block}{}", &html[..open_end], &html[end..]);
        }
    }
    if let Some(start) = lower.find("<body")
        && let Some(open_end) = lower[start..].find('>').map(|e| start + e + 1)
    {
        let end = lower.rfind("</body>").unwrap_or(html.len());
        if open_end <= end {
            return format!("{}{block}{}", &html[..open_end], &html[end..]);
        }
    }
    format!("<!doctype html><html><body>{block}</body></html>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_variant_swaps_the_main_content() {
        let page = "<html><head><style>p{}</style></head><body><nav>N</nav><main class=x><p>story</p></main><footer>F</footer></body></html>";
        let out = synthesize_soft404(page, 0);
        assert!(out.contains("<nav>N</nav>") && out.contains("<footer>F</footer>"));
        assert!(out.contains("Page not found") && !out.contains("story"));
        assert!(out.contains("<main class=x>"));
    }

    #[test]
    fn keys_name_their_category() {
        assert_eq!(
            category_of_key("errors__HttpErrorPages__HTTP404"),
            Some(Category::Errors)
        );
        assert_eq!(
            category_of_key("synthetic-soft404__traf__x"),
            Some(Category::SyntheticSoft404)
        );
        assert_eq!(category_of_key("nothing"), None);
    }
}
