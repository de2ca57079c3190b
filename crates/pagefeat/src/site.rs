//! The site of a saved page, for evaluation held out by site (issue 15, item 1).
//!
//! Rule, first that applies:
//! 1. the registrable domain (public suffix list + one label, the `addr` crate) of the host of
//!    the page's `<link rel=canonical>`, else `<meta property=og:url>`, else `<base href>`, when
//!    it is an absolute `http(s)` URL with a known public suffix;
//! 2. else, for file names that start with a host (`traf__adac.de.kindersitze`,
//!    `teval__diariolibre.com-republica`): the registrable domain of the shortest dot-separated
//!    prefix of the name (the last label cut at its first `-` or `_`) whose suffix is known;
//! 3. else the file's origin when the origin is one project's templates (`HttpErrorPages`);
//! 4. else the page is its own site: `page:<file stem>` (readability test folders, benchmark
//!    hashes without a canonical URL). This keeps such pages apart from each other, which can
//!    only put two pages of one unknown site on both sides, never merge two known sites.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::pagetext::PageText;

/// Where a page's site came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteSource {
    /// `<link rel=canonical>`.
    Canonical,
    /// `<meta property=og:url>`.
    OgUrl,
    /// `<base href>`.
    BaseHref,
    /// The host at the start of the file name.
    FileName,
    /// The file's origin prefix (one project's templates).
    FileOrigin,
    /// Nothing named a site: the page is its own site.
    PageItself,
}

impl SiteSource {
    /// The kebab-case name used in TSV files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Canonical => "canonical",
            Self::OgUrl => "og-url",
            Self::BaseHref => "base-href",
            Self::FileName => "file-name",
            Self::FileOrigin => "file-origin",
            Self::PageItself => "page-itself",
        }
    }

    /// Parses [`SiteSource::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Canonical,
            Self::OgUrl,
            Self::BaseHref,
            Self::FileName,
            Self::FileOrigin,
            Self::PageItself,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// File origins whose pages are one project's templates, hence one site.
const TEMPLATE_ORIGINS: [&str; 1] = ["HttpErrorPages"];

/// The registrable domain of `host` (`www.bbc.co.uk` -> `bbc.co.uk`); `None` when its suffix is
/// not in the public suffix list or it has no label before the suffix.
pub fn registrable_domain(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let name = addr::parse_domain_name(&host).ok()?;
    if !name.has_known_suffix() {
        return None;
    }
    name.root().map(str::to_owned)
}

fn from_url(url: Option<&str>) -> Option<String> {
    let url = Url::parse(url?.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    registrable_domain(url.host_str()?)
}

fn from_file_name(rest: &str) -> Option<String> {
    let labels: Vec<&str> = rest.split('.').collect();
    for end in 2..=labels.len() {
        let mut candidate: Vec<&str> = labels[..end].to_vec();
        if let Some(last) = candidate.last_mut() {
            *last = last.split(['-', '_']).next().unwrap_or(last);
        }
        if candidate.iter().any(|l| l.is_empty()) {
            continue;
        }
        if let Some(domain) = registrable_domain(&candidate.join(".")) {
            return Some(domain);
        }
    }
    None
}

/// The site of a page from its text parts and file stem (`<origin>__<name>`), with where it
/// came from (see the module docs for the rule).
pub fn site_of(text: &PageText, stem: &str) -> (String, SiteSource) {
    let urls = [
        (text.canonical.as_deref(), SiteSource::Canonical),
        (text.og_url.as_deref(), SiteSource::OgUrl),
        (text.base_href.as_deref(), SiteSource::BaseHref),
    ];
    for (url, source) in urls {
        if let Some(site) = from_url(url) {
            return (site, source);
        }
    }
    let (origin, rest) = stem.split_once("__").unwrap_or(("", stem));
    if TEMPLATE_ORIGINS.contains(&origin) {
        return (origin.to_ascii_lowercase(), SiteSource::FileOrigin);
    }
    if matches!(origin, "traf" | "teval")
        && let Some(site) = from_file_name(rest)
    {
        return (site, SiteSource::FileName);
    }
    (format!("page:{stem}"), SiteSource::PageItself)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_then_file_name_then_page() {
        let text = PageText {
            canonical: Some("https://www.bbc.co.uk/news/x".to_owned()),
            ..PageText::default()
        };
        assert_eq!(
            site_of(&text, "shub__abc"),
            ("bbc.co.uk".to_owned(), SiteSource::Canonical)
        );
        let none = PageText::default();
        assert_eq!(
            site_of(&none, "teval__diariolibre.com-republica"),
            ("diariolibre.com".to_owned(), SiteSource::FileName)
        );
        assert_eq!(
            site_of(&none, "traf__en.wikipedia.org.tsne").0,
            "wikipedia.org"
        );
        assert_eq!(
            site_of(&none, "HttpErrorPages__HTTP404"),
            ("httperrorpages".to_owned(), SiteSource::FileOrigin)
        );
        assert_eq!(
            site_of(&none, "rdb__msn"),
            ("page:rdb__msn".to_owned(), SiteSource::PageItself)
        );
        // a relative canonical URL names no site
        let relative = PageText {
            canonical: Some("/news/x".to_owned()),
            ..PageText::default()
        };
        assert_eq!(site_of(&relative, "rdb__x").1, SiteSource::PageItself);
    }
}
