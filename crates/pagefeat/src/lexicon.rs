//! The multilingual error lexicon of the dead-link (soft-404) features (issue 15, item 3).
//!
//! Matching respects word boundaries: text is split into words by Unicode segmentation (UAX
//! #29, the `unicode-segmentation` crate) and a phrase matches a run of whole words, so "time
//! loops" does not contain "oops". Scripts written without spaces (Chinese, Japanese; Korean
//! is spaced but agglutinative, so its phrases are matched the same way) are matched as
//! character n-grams: a CJK phrase matches when its characters occur contiguously in the text
//! with white space removed.
//!
//! Phrases are **strong** (they name the error page itself: "page not found", "Seite nicht
//! gefunden", "页面不存在") or **weak** (they also occur in normal sentences: "not found", "no
//! existe", "oops", "no longer available"). The classifier sees the two counts separately, per
//! part of the page (title, headings, main text), so a weak phrase inside an article is weak
//! evidence.

use unicode_segmentation::UnicodeSegmentation;

/// How much a phrase says about a page being an error page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strength {
    /// Names the error page itself.
    Strong,
    /// Occurs in error pages and in normal sentences alike.
    Weak,
}

/// Phrases of error pages, lower case, words separated by single spaces (CJK phrases without
/// spaces). Sources: the wording of the bundled HttpErrorPages templates and of common CMS
/// not-found templates (WordPress, Drupal, Shopify, MediaWiki), in English, German, Spanish,
/// French, Italian, Portuguese, Dutch, Polish, Russian, Turkish, Chinese, Japanese and Korean.
const PHRASES: &[(&str, Strength)] = &[
    // English
    ("page not found", Strength::Strong),
    ("404 not found", Strength::Strong),
    ("error 404", Strength::Strong),
    ("404 error", Strength::Strong),
    ("page cannot be found", Strength::Strong),
    ("page can't be found", Strength::Strong),
    ("page could not be found", Strength::Strong),
    ("page does not exist", Strength::Strong),
    ("page doesn't exist", Strength::Strong),
    ("page you requested", Strength::Strong),
    ("page you are looking for", Strength::Strong),
    ("page you were looking for", Strength::Strong),
    ("page you're looking for", Strength::Strong),
    ("nothing was found at this location", Strength::Strong),
    ("page is no longer available", Strength::Strong),
    ("not found", Strength::Weak),
    ("does not exist", Strength::Weak),
    ("doesn't exist", Strength::Weak),
    ("no longer available", Strength::Weak),
    ("could not be found", Strength::Weak),
    ("can't be found", Strength::Weak),
    ("cannot be found", Strength::Weak),
    ("oops", Strength::Weak),
    ("forbidden", Strength::Weak),
    ("access denied", Strength::Weak),
    ("internal server error", Strength::Weak),
    ("bad gateway", Strength::Weak),
    ("service unavailable", Strength::Weak),
    ("temporarily unavailable", Strength::Weak),
    ("currently unavailable", Strength::Weak),
    ("broken link", Strength::Weak),
    ("couldn't find", Strength::Weak),
    ("could not find", Strength::Weak),
    ("can't find", Strength::Weak),
    ("cannot find", Strength::Weak),
    ("link you followed", Strength::Weak),
    ("dead link", Strength::Weak),
    // German
    ("seite nicht gefunden", Strength::Strong),
    ("seite wurde nicht gefunden", Strength::Strong),
    ("seite existiert nicht", Strength::Strong),
    ("fehler 404", Strength::Strong),
    ("nicht gefunden", Strength::Weak),
    ("existiert nicht", Strength::Weak),
    ("nicht mehr verfügbar", Strength::Weak),
    ("hoppla", Strength::Weak),
    // Spanish
    ("página no encontrada", Strength::Strong),
    ("pagina no encontrada", Strength::Strong),
    ("la página que busca", Strength::Strong),
    ("la página que buscas", Strength::Strong),
    ("no encontrada", Strength::Weak),
    ("no encontrado", Strength::Weak),
    ("no existe", Strength::Weak),
    ("ya no está disponible", Strength::Weak),
    // French
    ("page introuvable", Strength::Strong),
    ("page non trouvée", Strength::Strong),
    ("erreur 404", Strength::Strong),
    ("la page que vous recherchez", Strength::Strong),
    ("introuvable", Strength::Weak),
    ("n'existe pas", Strength::Weak),
    ("n’existe pas", Strength::Weak),
    ("n'existe plus", Strength::Weak),
    // Italian
    ("pagina non trovata", Strength::Strong),
    ("errore 404", Strength::Strong),
    ("non trovata", Strength::Weak),
    ("non esiste", Strength::Weak),
    // Portuguese
    ("página não encontrada", Strength::Strong),
    ("erro 404", Strength::Strong),
    ("não encontrada", Strength::Weak),
    ("não existe", Strength::Weak),
    // Dutch
    ("pagina niet gevonden", Strength::Strong),
    ("niet gevonden", Strength::Weak),
    ("bestaat niet", Strength::Weak),
    // Polish
    ("strona nie została znaleziona", Strength::Strong),
    ("nie znaleziono strony", Strength::Strong),
    ("nie znaleziono", Strength::Weak),
    // Russian
    ("страница не найдена", Strength::Strong),
    ("ошибка 404", Strength::Strong),
    ("не найдена", Strength::Weak),
    ("не существует", Strength::Weak),
    // Turkish
    ("sayfa bulunamadı", Strength::Strong),
    ("bulunamadı", Strength::Weak),
    // Chinese (simplified and traditional)
    ("页面不存在", Strength::Strong),
    ("页面未找到", Strength::Strong),
    ("找不到页面", Strength::Strong),
    ("找不到網頁", Strength::Strong),
    ("頁面不存在", Strength::Strong),
    ("网页不存在", Strength::Strong),
    ("您访问的页面", Strength::Strong),
    ("找不到", Strength::Weak),
    ("不存在", Strength::Weak),
    ("已删除", Strength::Weak),
    // Japanese
    ("ページが見つかりません", Strength::Strong),
    ("お探しのページ", Strength::Strong),
    ("ページは存在しません", Strength::Strong),
    ("見つかりません", Strength::Weak),
    ("存在しません", Strength::Weak),
    // Korean
    ("페이지를 찾을 수 없습니다", Strength::Strong),
    ("요청하신 페이지", Strength::Strong),
    ("찾을 수 없습니다", Strength::Weak),
    ("존재하지 않습니다", Strength::Weak),
];

/// Lexicon hits in one piece of text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hits {
    /// Strong phrases found (each occurrence counted).
    pub strong: usize,
    /// Weak phrases found (occurrences not already inside a strong phrase's span are counted;
    /// see [`find`]).
    pub weak: usize,
    /// An HTTP error status (400, 401, 403, 404, 410, 500, 502, 503) as a whole word.
    pub status: bool,
}

impl Hits {
    /// Strong or weak phrases were found.
    pub fn any(&self) -> bool {
        self.strong + self.weak > 0
    }
}

/// True for characters of scripts written without spaces between words, matched by
/// character n-grams: Han, Hiragana, Katakana, Hangul.
pub fn is_cjk(c: char) -> bool {
    matches!(u32::from(c),
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0x1100..=0x11FF    // Hangul jamo
        | 0xF900..=0xFAFF) // CJK compatibility ideographs
}

fn phrase_is_cjk(phrase: &str) -> bool {
    phrase.chars().any(is_cjk)
}

/// HTTP status codes that error pages show.
pub const ERROR_STATUSES: [&str; 8] = ["400", "401", "403", "404", "410", "500", "502", "503"];

/// The lower-case words of `text` by Unicode word boundaries (apostrophes inside words kept,
/// typographic apostrophes folded to `'`).
pub fn words(text: &str) -> Vec<String> {
    text.unicode_words()
        .map(|w| w.to_lowercase().replace('’', "'"))
        .collect()
}

/// Counts the lexicon's phrases in `text`. Word phrases match whole-word runs; CJK phrases match
/// as character n-grams over the text with white space removed. A weak phrase that lies inside
/// a strong phrase's match is not counted again ("page not found" counts one strong hit, not a
/// strong and a weak one).
pub fn find(text: &str) -> Hits {
    let words = words(text);
    let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut hits = Hits {
        status: words.iter().any(|w| ERROR_STATUSES.contains(&w.as_str())),
        ..Hits::default()
    };
    // Word spans already covered by a strong match.
    let mut covered = vec![false; words.len()];
    let mut cjk_strong_spans: Vec<(usize, usize)> = Vec::new();
    for strength in [Strength::Strong, Strength::Weak] {
        for (phrase, _) in PHRASES.iter().filter(|(_, s)| *s == strength) {
            if phrase_is_cjk(phrase) {
                let phrase: String = phrase.chars().filter(|c| !c.is_whitespace()).collect();
                let mut from = 0;
                while let Some(at) = squeezed[from..].find(&phrase) {
                    let start = from + at;
                    let end = start + phrase.len();
                    let inside = cjk_strong_spans
                        .iter()
                        .any(|(s, e)| start >= *s && end <= *e);
                    if strength == Strength::Strong {
                        cjk_strong_spans.push((start, end));
                        hits.strong += 1;
                    } else if !inside {
                        hits.weak += 1;
                    }
                    from = end;
                }
                continue;
            }
            let needle = self::words(phrase);
            if needle.is_empty() || needle.len() > words.len() {
                continue;
            }
            for start in 0..=words.len() - needle.len() {
                if words[start..start + needle.len()] != needle[..] {
                    continue;
                }
                let span = start..start + needle.len();
                if strength == Strength::Strong {
                    if covered[span.clone()].iter().all(|c| *c) {
                        continue; // the same words matched by another strong phrase
                    }
                    covered[span].iter_mut().for_each(|c| *c = true);
                    hits.strong += 1;
                } else if !covered[span].iter().all(|c| *c) {
                    hits.weak += 1;
                }
            }
        }
    }
    hits
}

/// True when an HTTP error status stands within `window` words of an error phrase, or a strong
/// phrase is present ("404" beside "not found" rather than in a product number).
pub fn status_near_error(text: &str, window: usize) -> bool {
    let words = words(text);
    let statuses: Vec<usize> = words
        .iter()
        .enumerate()
        .filter(|(_, w)| ERROR_STATUSES.contains(&w.as_str()))
        .map(|(i, _)| i)
        .collect();
    if statuses.is_empty() {
        return false;
    }
    statuses.iter().any(|&i| {
        let lo = i.saturating_sub(window);
        let hi = (i + window + 1).min(words.len());
        find(&words[lo..hi].join(" ")).any()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_words_only() {
        assert_eq!(find("Stories about time loops and paradoxes").weak, 0);
        let hits = find("Oops! That page can't be found.");
        assert_eq!((hits.strong, hits.weak), (1, 1));
        assert_eq!(find("Whoopsie").weak, 0);
    }

    #[test]
    fn strong_phrase_is_not_counted_twice() {
        let hits = find("404 - Page not found");
        assert_eq!((hits.strong, hits.weak, hits.status), (1, 0, true));
    }

    #[test]
    fn cjk_by_character_ngrams() {
        assert_eq!(find("抱歉，您访问的页面不存在").strong, 2);
        assert_eq!(find("ページが見つかりません").strong, 1);
        assert_eq!(find("페이지를 찾을 수 없습니다").strong, 1);
        // a weak CJK word inside a normal sentence
        let hits = find("这个问题的答案并不存在于书中");
        assert_eq!((hits.strong, hits.weak), (0, 1));
    }

    #[test]
    fn status_needs_an_error_word_nearby() {
        assert!(status_near_error("Error 404: the page was not found", 5));
        assert!(!status_near_error("Call 404 555 0100 for tickets", 5));
    }
}
