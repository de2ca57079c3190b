//! A page's rendering mode (quirks, limited quirks or standards) from its DOCTYPE, by the
//! HTML standard's rules ("The initial insertion mode", 13.2.6.4.1): what a browser's
//! `document.compatMode` says. The embedded engine (Blitz) lays every page out in standards
//! mode, so quirks-mode pages are reported apart in the layout agreement
//! ([`crate::agreement`]).

use serde::{Deserialize, Serialize};

/// The document's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompatMode {
    /// No DOCTYPE, or one of the legacy public identifiers (`BackCompat`).
    Quirks,
    /// Transitional / frameset DOCTYPEs with a system identifier (`CSS1Compat` in browsers,
    /// only line-height and image-in-table-cell quirks).
    LimitedQuirks,
    /// `<!DOCTYPE html>` and the strict DOCTYPEs (`CSS1Compat`).
    Standards,
}

impl CompatMode {
    /// `"quirks"`, `"limited-quirks"` or `"standards"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quirks => "quirks",
            Self::LimitedQuirks => "limited-quirks",
            Self::Standards => "standards",
        }
    }

    /// True unless full quirks mode (limited quirks counts as standards, as in
    /// `document.compatMode`).
    pub fn is_standards(self) -> bool {
        self != Self::Quirks
    }
}

/// Public identifier prefixes that put a page in quirks mode (the standard's list, lower case).
const QUIRKS_PREFIXES: [&str; 55] = [
    "+//silmaril//dtd html pro v0r11 19970101//",
    "-//as//dtd html 3.0 aswedit + extensions//",
    "-//advasoft ltd//dtd html 3.0 aswedit + extensions//",
    "-//ietf//dtd html 2.0 level 1//",
    "-//ietf//dtd html 2.0 level 2//",
    "-//ietf//dtd html 2.0 strict level 1//",
    "-//ietf//dtd html 2.0 strict level 2//",
    "-//ietf//dtd html 2.0 strict//",
    "-//ietf//dtd html 2.0//",
    "-//ietf//dtd html 2.1e//",
    "-//ietf//dtd html 3.0//",
    "-//ietf//dtd html 3.2 final//",
    "-//ietf//dtd html 3.2//",
    "-//ietf//dtd html 3//",
    "-//ietf//dtd html level 0//",
    "-//ietf//dtd html level 1//",
    "-//ietf//dtd html level 2//",
    "-//ietf//dtd html level 3//",
    "-//ietf//dtd html strict level 0//",
    "-//ietf//dtd html strict level 1//",
    "-//ietf//dtd html strict level 2//",
    "-//ietf//dtd html strict level 3//",
    "-//ietf//dtd html strict//",
    "-//ietf//dtd html//",
    "-//metrius//dtd metrius presentational//",
    "-//microsoft//dtd internet explorer 2.0 html strict//",
    "-//microsoft//dtd internet explorer 2.0 html//",
    "-//microsoft//dtd internet explorer 2.0 tables//",
    "-//microsoft//dtd internet explorer 3.0 html strict//",
    "-//microsoft//dtd internet explorer 3.0 html//",
    "-//microsoft//dtd internet explorer 3.0 tables//",
    "-//netscape comm. corp.//dtd html//",
    "-//netscape comm. corp.//dtd strict html//",
    "-//o'reilly and associates//dtd html 2.0//",
    "-//o'reilly and associates//dtd html extended 1.0//",
    "-//o'reilly and associates//dtd html extended relaxed 1.0//",
    "-//sq//dtd html 2.0 hotmetal + extensions//",
    "-//softquad software//dtd hotmetal pro 6.0::19990601::extensions to html 4.0//",
    "-//softquad//dtd hotmetal pro 4.0::19971010::extensions to html 4.0//",
    "-//spyglass//dtd html 2.0 extended//",
    "-//sun microsystems corp.//dtd hotjava html//",
    "-//sun microsystems corp.//dtd hotjava strict html//",
    "-//w3c//dtd html 3 1995-03-24//",
    "-//w3c//dtd html 3.2 draft//",
    "-//w3c//dtd html 3.2 final//",
    "-//w3c//dtd html 3.2//",
    "-//w3c//dtd html 3.2s draft//",
    "-//w3c//dtd html 4.0 frameset//",
    "-//w3c//dtd html 4.0 transitional//",
    "-//w3c//dtd html experimental 19960712//",
    "-//w3c//dtd html experimental 970421//",
    "-//w3c//dtd w3 html//",
    "-//w3o//dtd w3 html 3.0//",
    "-//webtechs//dtd mozilla html 2.0//",
    "-//webtechs//dtd mozilla html//",
];

/// The mode of a page from its text: the DOCTYPE must come first (after a BOM, whitespace and
/// comments), else the page is in quirks mode, as in a browser.
pub fn compat_mode(html: &str) -> CompatMode {
    let mut rest = html.trim_start_matches('\u{feff}');
    loop {
        rest = rest.trim_start();
        if let Some(comment) = rest.strip_prefix("<!--") {
            match comment.find("-->") {
                Some(end) => rest = &comment[end + 3..],
                None => return CompatMode::Quirks,
            }
        } else if rest.starts_with("<?") {
            match rest.find('>') {
                Some(end) => rest = &rest[end + 1..],
                None => return CompatMode::Quirks,
            }
        } else {
            break;
        }
    }
    let Some(head) = rest.get(..9) else {
        return CompatMode::Quirks;
    };
    if !head.eq_ignore_ascii_case("<!doctype") {
        return CompatMode::Quirks;
    }
    let Some(end) = rest.find('>') else {
        return CompatMode::Quirks;
    };
    doctype_mode(&rest[9..end])
}

/// The mode for the inside of a DOCTYPE (`html PUBLIC "..." "..."`).
fn doctype_mode(inner: &str) -> CompatMode {
    let mut words = inner.trim_start();
    let name_end = words
        .find(|c: char| c.is_ascii_whitespace())
        .unwrap_or(words.len());
    let name = &words[..name_end];
    words = words[name_end..].trim_start();
    if !name.eq_ignore_ascii_case("html") {
        return CompatMode::Quirks;
    }
    let lower = words.to_ascii_lowercase();
    let (public, system) = if let Some(after) = lower.strip_prefix("public") {
        let (public, after) = quoted(after.trim_start());
        let (system, _) = after.map_or((None, None), |a| quoted(a.trim_start()));
        (public, system)
    } else if let Some(after) = lower.strip_prefix("system") {
        (None, quoted(after.trim_start()).0)
    } else if lower.is_empty() {
        (None, None)
    } else {
        return CompatMode::Quirks;
    };
    let public = public.unwrap_or_default();
    let html4_loose = public.starts_with("-//w3c//dtd html 4.01 frameset//")
        || public.starts_with("-//w3c//dtd html 4.01 transitional//");
    let quirks = matches!(
        public.as_str(),
        "-//w3o//dtd w3 html strict 3.0//en//" | "-/w3c/dtd html 4.0 transitional/en" | "html"
    ) || system.as_deref()
        == Some("http://www.ibm.com/data/dtd/v11/ibmxhtml1-transitional.dtd")
        || QUIRKS_PREFIXES.iter().any(|p| public.starts_with(p))
        || (system.is_none() && html4_loose);
    if quirks {
        CompatMode::Quirks
    } else if public.starts_with("-//w3c//dtd xhtml 1.0 frameset//")
        || public.starts_with("-//w3c//dtd xhtml 1.0 transitional//")
        || (system.is_some() && html4_loose)
    {
        CompatMode::LimitedQuirks
    } else {
        CompatMode::Standards
    }
}

/// A quoted string at the start of `text` and what follows it.
fn quoted(text: &str) -> (Option<String>, Option<&str>) {
    let Some(quote) = text.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        return (None, None);
    };
    let body = &text[1..];
    match body.find(quote) {
        Some(end) => (Some(body[..end].to_owned()), Some(&body[end + 1..])),
        None => (Some(body.to_owned()), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_follow_the_standard() {
        assert_eq!(compat_mode("<!DOCTYPE html><p>"), CompatMode::Standards);
        assert_eq!(
            compat_mode("\u{feff}<!-- x -->\n<!doctype HTML>"),
            CompatMode::Standards
        );
        assert_eq!(compat_mode("<html><p>no doctype"), CompatMode::Quirks);
        assert_eq!(
            compat_mode(r#"<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN">"#),
            CompatMode::Quirks
        );
        assert_eq!(
            compat_mode(
                r#"<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN" "http://www.w3.org/TR/html4/loose.dtd">"#
            ),
            CompatMode::LimitedQuirks
        );
        assert_eq!(
            compat_mode(
                r#"<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">"#
            ),
            CompatMode::Standards
        );
        assert_eq!(
            compat_mode(r#"<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">"#),
            CompatMode::Quirks
        );
        assert!(CompatMode::LimitedQuirks.is_standards());
    }
}
