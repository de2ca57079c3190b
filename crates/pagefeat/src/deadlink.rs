//! Dead-link (soft-404) page features and the synthetic error pages (issue 15, item 3).
//!
//! Features come from the page's text parts ([`crate::pagetext`]): lexicon hits
//! ([`crate::lexicon`], strong and weak counted apart) in the title, the `h1`/`h2` headings and
//! the main text separately, HTTP-status-like numbers in the title / headings / beside error
//! words in the main text versus only in scripts, main-text and body length, link density, the
//! share of text that is navigation, long text blocks, form inputs. The model is the page-level
//! [`crate::model::Forest`].
//!
//! Synthetic positives ([`synthesize`]) are corpus pages whose main content is replaced by
//! one of [`TEMPLATES`] (13 templates, 11 languages, written here), keeping the page's own
//! head, styles and chrome; they are marked synthetic wherever they are used.

use crate::lexicon::{self, Hits};
use crate::pagetext::PageText;

/// Names of the dead-link features, in column order.
pub const FEATURES: [&str; 23] = [
    "title_strong",
    "title_weak",
    "title_status",
    "heading_strong",
    "heading_weak",
    "heading_status",
    "main_strong",
    "main_weak",
    "main_status_near_error",
    "main_hits_per_100_words",
    "main_lead_hits",
    "main_lead_status",
    "largest_block_hits",
    "main_chars_log",
    "largest_block_chars_log",
    "body_chars_log",
    "link_density",
    "chrome_share",
    "long_blocks",
    "inputs",
    "status_in_scripts_only",
    "main_marked",
    "headings",
];

fn ln1(v: usize) -> f64 {
    (1.0 + v as f64).ln()
}

/// Characters of the main text's lead (its first sentence or two) scanned for
/// `main_lead_hits`.
const LEAD_CHARS: usize = 300;

/// The feature row of a page (see [`FEATURES`]).
pub fn row(text: &PageText) -> Vec<f64> {
    let title = lexicon::find(&text.title);
    let mut heading = Hits::default();
    for h in &text.headings {
        let hits = lexicon::find(h);
        heading.strong += hits.strong;
        heading.weak += hits.weak;
        heading.status |= hits.status;
    }
    let main = lexicon::find(&text.main);
    let lead: String = text.main.chars().take(LEAD_CHARS).collect();
    let lead = lexicon::find(&lead);
    let block = lexicon::find(&text.largest_block);
    let main_words = lexicon::words(&text.main).len();
    let main_chars = text.main.chars().filter(|c| !c.is_whitespace()).count();
    let block_chars = text
        .largest_block
        .chars()
        .filter(|c| !c.is_whitespace())
        .count();
    let body = text.body_chars.max(1) as f64;
    let status_near = lexicon::status_near_error(&text.main, 6);
    let visible_status = title.status || heading.status || status_near || lead.status;
    vec![
        title.strong as f64,
        title.weak as f64,
        f64::from(u8::from(title.status)),
        heading.strong as f64,
        heading.weak as f64,
        f64::from(u8::from(heading.status)),
        main.strong as f64,
        main.weak as f64,
        f64::from(u8::from(status_near)),
        (main.strong + main.weak) as f64 * 100.0 / (main_words as f64 + 1.0),
        (lead.strong + lead.weak) as f64,
        f64::from(u8::from(lead.status)),
        (block.strong + block.weak) as f64,
        ln1(main_chars),
        ln1(block_chars),
        ln1(text.body_chars),
        text.link_chars as f64 / body,
        text.chrome_chars as f64 / body,
        ln1(text.long_blocks),
        text.inputs.min(50) as f64,
        f64::from(u8::from(text.status_in_scripts && !visible_status)),
        f64::from(u8::from(text.main_marked)),
        text.headings.len().min(100) as f64,
    ]
}

/// The feature row of an HTML text.
pub fn row_of_html(html: &str) -> Vec<f64> {
    row(&crate::pagetext::read(html))
}

/// One not-found template: what goes into the title and the replaced main content.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    /// Short name (`en-plain`, `zh`, ...), recorded in the variant's file name.
    pub name: &'static str,
    /// How the `<title>` changes: `Some(text)` replaces it with `text | <site name>`; `None`
    /// leaves the page's own title (soft-404s often keep the site's generic title).
    pub title: Option<&'static str>,
    /// The HTML put in place of the main content.
    pub body: &'static str,
}

/// The synthetic templates, written here after the shapes of common CMS not-found pages.
pub const TEMPLATES: [Template; 13] = [
    Template {
        name: "en-plain",
        title: Some("Page not found"),
        body: "<h1>Page not found</h1><p>Sorry, the page you are looking for does not exist or is no longer available. It may have been moved or deleted.</p><p><a href=\"/\">Back to the home page</a></p>",
    },
    Template {
        name: "en-wordpress",
        title: Some("Nothing found"),
        body: "<section class=\"error-404 not-found\"><header class=\"page-header\"><h1 class=\"page-title\">Oops! That page can&rsquo;t be found.</h1></header><div class=\"page-content\"><p>It looks like nothing was found at this location. Maybe try one of the links below or a search?</p><form role=\"search\" action=\"/\"><input type=\"search\" name=\"s\" placeholder=\"Search &hellip;\"><button>Search</button></form><h2>Recent Posts</h2><ul><li><a href=\"/a\">Our spring programme</a></li><li><a href=\"/b\">Meet the new team</a></li><li><a href=\"/c\">Opening hours over the holidays</a></li></ul></div></section>",
    },
    Template {
        name: "en-big404",
        title: None,
        body: "<div class=\"err\"><div style=\"font-size:96px;font-weight:bold\">404</div><h2>We couldn&#39;t find that page</h2><p>The link you followed may be broken, or the page may have been removed.</p><a href=\"/\">Go home</a> &middot; <a href=\"/sitemap\">Sitemap</a></div>",
    },
    Template {
        name: "en-removed",
        title: Some("Content unavailable"),
        body: "<h1>This article is no longer available</h1><p>The content you requested has been removed or has expired. Browse our latest stories instead.</p><ul><li><a href=\"/news\">News</a></li><li><a href=\"/sport\">Sport</a></li><li><a href=\"/culture\">Culture</a></li></ul>",
    },
    Template {
        name: "de",
        title: Some("Seite nicht gefunden"),
        body: "<h1>Fehler 404: Seite nicht gefunden</h1><p>Die angeforderte Seite existiert nicht oder wurde verschoben. Bitte versuchen Sie es &uuml;ber die <a href=\"/\">Startseite</a> oder nutzen Sie die Suche.</p><form action=\"/suche\"><input name=\"q\"><button>Suchen</button></form>",
    },
    Template {
        name: "es",
        title: Some("Página no encontrada"),
        body: "<div class=\"pagina-error\"><h1>¡Vaya! Página no encontrada</h1><p>Lo sentimos, la página que buscas no existe o ya no está disponible.</p><p><a href=\"/\">Volver a la portada</a></p></div>",
    },
    Template {
        name: "fr",
        title: Some("Erreur 404"),
        body: "<h1>Erreur 404 &ndash; Page introuvable</h1><p>La page que vous recherchez n&#39;existe pas ou a &eacute;t&eacute; d&eacute;plac&eacute;e.</p><p><a href=\"/\">Retour &agrave; l&#39;accueil</a></p>",
    },
    Template {
        name: "it",
        title: None,
        body: "<h2>Pagina non trovata</h2><p>Ci dispiace, la pagina che stai cercando non esiste pi&ugrave; o &egrave; stata spostata. Torna alla <a href=\"/\">home page</a>.</p>",
    },
    Template {
        name: "pt",
        title: Some("Página não encontrada"),
        body: "<h1>404</h1><h2>Página não encontrada</h2><p>A página que você procura não existe ou foi removida.</p><a href=\"/\">Ir para a página inicial</a>",
    },
    Template {
        name: "nl-ru",
        title: Some("Pagina niet gevonden"),
        body: "<h1>Pagina niet gevonden</h1><p>De pagina die u zoekt bestaat niet (meer). <a href=\"/\">Naar de homepage</a></p><p lang=\"ru\">Страница не найдена.</p>",
    },
    Template {
        name: "zh",
        title: Some("404 页面不存在"),
        body: "<div class=\"box404\"><h1>404</h1><p>抱歉，您访问的页面不存在或已被删除。</p><p><a href=\"/\">返回首页</a></p></div>",
    },
    Template {
        name: "ja",
        title: None,
        body: "<h1>ページが見つかりません</h1><p>お探しのページは移動または削除された可能性があります。URLをご確認ください。</p><p><a href=\"/\">トップページへ戻る</a></p>",
    },
    Template {
        name: "ko",
        title: Some("페이지를 찾을 수 없습니다"),
        body: "<h1>페이지를 찾을 수 없습니다</h1><p>요청하신 페이지가 존재하지 않거나 삭제되었습니다.</p><p><a href=\"/\">홈으로 가기</a></p>",
    },
];

/// The byte offset of the first `<tag` whose name ends there (followed by white space, `>` or
/// `/`), from `from`.
fn find_open(lower: &str, tag: &str, from: usize) -> Option<usize> {
    let open = format!("<{tag}");
    let mut at = from;
    while let Some(pos) = lower[at..].find(&open) {
        let start = at + pos;
        let next = lower[start + open.len()..].chars().next();
        if next.is_some_and(|c| c.is_ascii_whitespace() || c == '>' || c == '/') {
            return Some(start);
        }
        at = start + open.len();
    }
    None
}

/// The content span of the first `<tag ...>` to the last `</tag>`.
fn tag_span(lower: &str, tag: &str) -> Option<(usize, usize)> {
    let start = find_open(lower, tag, 0)?;
    let open_end = lower[start..].find('>').map(|e| start + e + 1)?;
    let end = lower.rfind(&format!("</{tag}>"))?;
    (open_end <= end).then_some((open_end, end))
}

fn site_name(title: &str) -> &str {
    title
        .rsplit(['|', '–', '—', '-', '·'])
        .next()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("Home")
}

/// The candidate pages of [`synthesize`], most faithful first.
fn candidates(html: &str, block: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    for tag in ["main", "article"] {
        if let Some((a, b)) = tag_span(&lower, tag) {
            out.push(format!("{}{block}{}", &html[..a], &html[b..]));
        }
    }
    if let (Some(header_end), Some(footer_start)) = (
        lower.find("</header>").map(|e| e + "</header>".len()),
        lower.rfind("<footer"),
    ) && header_end <= footer_start
    {
        out.push(format!(
            "{}{block}{}",
            &html[..header_end],
            &html[footer_start..]
        ));
    }
    if let Some((a, b)) = tag_span(&lower, "body") {
        out.push(format!("{}{block}{}", &html[..a], &html[b..]));
    }
    out.push(format!("<!doctype html><html><body>{block}</body></html>"));
    out
}

/// A synthetic error page made from a real page: the content of `<main>` (else the range of
/// `<article>` elements, else everything between the end of the first `<header>` and the start
/// of the last `<footer>`, else the whole body) is replaced by `template`'s body, and the title
/// changed as the template says (`<template title> | <site name>`, the site name being the last
/// `|`/`-` part of the old title). The head, inline styles and the rest of the chrome stay.
/// A replacement is kept only when the page's main text ([`crate::pagetext`]) then is the
/// template's text (not more than 1,000 characters beside it); otherwise the next one is tried
/// (a `<main>` inside a menu, markup inside scripts).
pub fn synthesize(html: &str, template: &Template) -> String {
    let block = format!("<div class=\"content\">{}</div>", template.body);
    let expected = crate::pagetext::read(&format!("<main>{}</main>", template.body)).main;
    let lead: String = expected.chars().take(12).collect();
    let all = candidates(html, &block);
    let fallback = all.last().cloned().unwrap_or_default();
    let page = all
        .into_iter()
        .find(|candidate| {
            let main = crate::pagetext::read(candidate).main;
            main.contains(&lead) && main.chars().count() <= expected.chars().count() + 1000
        })
        .unwrap_or(fallback);
    let Some(title) = template.title else {
        return page;
    };
    let lower = page.to_ascii_lowercase();
    if let Some((a, b)) = tag_span(&lower, "title") {
        let old = crate::pagetext::read(&format!("<title>{}</title>", &page[a..b])).title;
        let new = format!("{title} | {}", site_name(&old));
        return format!("{}{}{}", &page[..a], escape(&new), &page[b..]);
    }
    page
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_page_keeps_chrome_and_changes_title() {
        let page = "<html><head><title>Big story | Daily Paper</title></head><body><nav><a href=/>N</a></nav><main class=x><p>story</p></main><footer>F</footer></body></html>";
        let out = synthesize(page, &TEMPLATES[0]);
        assert!(out.contains("<nav><a href=/>N</a></nav>") && out.contains("<footer>F</footer>"));
        assert!(out.contains("<title>Page not found | Daily Paper</title>"));
        assert!(!out.contains("story"));
        let text = crate::pagetext::read(&out);
        let features = row(&text);
        assert_eq!(features[0], 1.0, "title_strong");
        assert!(features[6] >= 1.0, "main_strong");
    }

    #[test]
    fn header_footer_fallback() {
        let page = "<body><header>H</header><div>old text</div><footer>F</footer></body>";
        let out = synthesize(page, &TEMPLATES[10]);
        assert!(out.contains("<header>H</header>") && out.contains("<footer>F</footer>"));
        assert!(out.contains("页面不存在") || out.contains("不存在"));
        assert!(!out.contains("old text"));
    }

    #[test]
    fn every_template_names_its_error_or_says_404() {
        for template in &TEMPLATES {
            let text = crate::pagetext::read(&format!("<main>{}</main>", template.body));
            let hits = lexicon::find(&text.main);
            assert!(hits.any() || hits.status, "{}", template.name);
        }
    }
}
