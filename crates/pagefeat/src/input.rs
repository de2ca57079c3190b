//! Page input checks: every engine gets only non-empty, size-limited, text HTML (issue 6, "bad
//! input gets a clear error").

use crate::error::{Error, Result};

/// A page accepted for layout: its text and the name used in messages and URLs.
#[derive(Debug, Clone)]
pub struct PageInput {
    /// The character encoding the bytes were decoded from (WHATWG name, e.g. `"UTF-8"`,
    /// `"GBK"`, `"windows-1252"`).
    pub charset: &'static str,
    /// File name or request label, used in errors and reports.
    pub name: String,
    /// The page's base URL (a `file://` URL for files, a placeholder for HTTP bodies). Blitz
    /// needs one: without it, protocol-relative URLs such as `//host/x.gif` make it panic.
    pub base_url: String,
    /// The HTML text, decoded from [`PageInput::charset`] (invalid sequences replaced).
    pub html: String,
}

/// The base URL given to pages that came without one (HTTP bodies, tests).
pub const FALLBACK_BASE_URL: &str = "http://page.invalid/";

impl PageInput {
    /// Checks `bytes` and makes a page of them.
    ///
    /// Rules, in order: empty or whitespace-only -> [`Error::EmptyInput`]; more than
    /// `max_bytes` -> [`Error::TooLarge`]; the bytes are decoded from the charset
    /// [`sniff_charset`] finds; then a NUL byte in the first 8 KiB (outside UTF-16), more
    /// than 1 in 30 characters undecodable, or no `<` followed by a letter, `!` or `/`
    /// anywhere -> [`Error::NotHtml`]; elements nested deeper than [`MAX_DEPTH`] (as
    /// [`nesting_depth`] counts them) -> [`Error::TooDeep`].
    ///
    /// # Errors
    /// As listed above.
    pub fn from_bytes(
        name: impl Into<String>,
        base_url: Option<String>,
        bytes: &[u8],
        max_bytes: usize,
    ) -> Result<Self> {
        let name = name.into();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::EmptyInput { source_name: name });
        }
        if bytes.len() > max_bytes {
            return Err(Error::TooLarge {
                source_name: name,
                size: bytes.len(),
                limit: max_bytes,
            });
        }
        let encoding = sniff_charset(bytes);
        let utf16 = encoding == encoding_rs::UTF_16LE || encoding == encoding_rs::UTF_16BE;
        if !utf16 && bytes.iter().take(8192).any(|b| *b == 0) {
            return Err(Error::NotHtml {
                source_name: name,
                reason: "it contains NUL bytes (binary data)",
            });
        }
        let (html, encoding, _) = encoding.decode(bytes);
        let html = html.into_owned();
        let replaced = html.matches('\u{FFFD}').count();
        if replaced * 30 > bytes.len() {
            return Err(Error::NotHtml {
                source_name: name,
                reason: "most of it is not UTF-8 text",
            });
        }
        if !has_markup(&html) {
            return Err(Error::NotHtml {
                source_name: name,
                reason: "it has no HTML tags",
            });
        }
        let depth = nesting_depth(&html);
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep {
                source_name: name,
                depth,
                limit: MAX_DEPTH,
            });
        }
        Ok(Self {
            charset: encoding.name(),
            name,
            base_url: base_url.unwrap_or_else(|| FALLBACK_BASE_URL.to_owned()),
            html,
        })
    }
}

/// The deepest element nesting accepted: Blink's parser limit
/// (`kMaximumHTMLParserDOMTreeDepth`, 512). Deeper pages cost the engines superlinear time
/// (20,000 levels took 4.6 s, 100,000 over 5 minutes) and are refused up front.
pub const MAX_DEPTH: usize = 512;

/// Elements that never hold children.
const VOID: &[&str] = &[
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "img", "input",
    "keygen", "link", "meta", "param", "source", "track", "wbr",
];
/// Elements whose content is raw text up to their end tag.
const RAW_TEXT: &[&str] = &[
    "script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes",
];
/// Elements whose end tag may be left out (the parser closes them itself): not counted, so
/// old pages full of unclosed `<p>`, `<li>` or `<td>` are not taken for deep ones.
const OPTIONAL_END: &[&str] = &[
    "p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "tbody", "thead", "tfoot",
    "colgroup", "caption", "rb", "rt", "rtc", "rp", "html", "head", "body",
];

/// The deepest element nesting in `html`, counted in one linear pass over its tags: a start
/// tag opens a level and an end tag closes one, except void, self-closing, raw-text and
/// optional-end elements; comments, doctypes and raw text are skipped. An estimate of the
/// parser's tree depth (misnested tags count as nested, which is what makes them costly).
pub fn nesting_depth(html: &str) -> usize {
    let bytes = html.as_bytes();
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while let Some(offset) = bytes
        .get(i..)
        .and_then(|rest| rest.iter().position(|b| *b == b'<'))
    {
        let start = i + offset;
        let rest = &bytes[start..];
        if rest.starts_with(b"<!--") {
            i = start + 4 + find(&rest[4..], b"-->").map_or(rest.len() - 4, |e| e + 3);
            continue;
        }
        let end = start + rest.iter().position(|b| *b == b'>').unwrap_or(rest.len());
        i = end.max(start + 1);
        let closing = rest.get(1) == Some(&b'/');
        let name_from = start + 1 + usize::from(closing);
        let name_len = bytes[name_from..end]
            .iter()
            .position(|b| !b.is_ascii_alphanumeric() && *b != b'-')
            .unwrap_or(end - name_from);
        if name_len == 0 || !bytes[name_from].is_ascii_alphabetic() {
            continue; // `<!doctype>`, `<?..>`, a lone `<`
        }
        let name = html[name_from..name_from + name_len].to_ascii_lowercase();
        if VOID.contains(&name.as_str()) || OPTIONAL_END.contains(&name.as_str()) {
            continue;
        }
        if closing {
            depth = depth.saturating_sub(1);
            continue;
        }
        if RAW_TEXT.contains(&name.as_str()) {
            let close = format!("</{name}");
            let after = &html[i..];
            i += after
                .to_ascii_lowercase()
                .find(&close)
                .unwrap_or(after.len());
            continue;
        }
        if end > start && bytes[end.saturating_sub(1)] == b'/' {
            continue; // `<x/>`
        }
        depth += 1;
        deepest = deepest.max(depth);
    }
    deepest
}

/// How many bytes the `<meta>` prescan looks at (the HTML standard's 1024).
const PRESCAN_BYTES: usize = 1024;

/// The character encoding of an HTML byte stream without transport information, after the
/// HTML standard's "encoding sniffing algorithm" (¶ 13.2.3.2) as browsers run it: a byte
/// order mark; else a `<meta charset>` or `<meta http-equiv=content-type content=...charset=>`
/// in the first 1024 bytes (a declared UTF-16 means UTF-8, as the standard says); else UTF-8
/// when the bytes are valid UTF-8; else the guess of `chardetng` (Firefox's detector).
pub fn sniff_charset(bytes: &[u8]) -> &'static encoding_rs::Encoding {
    if let Some((encoding, _)) = encoding_rs::Encoding::for_bom(bytes) {
        return encoding;
    }
    if let Some(declared) = prescan_meta(&bytes[..bytes.len().min(PRESCAN_BYTES)]) {
        if declared == encoding_rs::UTF_16LE || declared == encoding_rs::UTF_16BE {
            return encoding_rs::UTF_8;
        }
        if declared == encoding_rs::X_USER_DEFINED {
            return encoding_rs::WINDOWS_1252;
        }
        return declared;
    }
    if std::str::from_utf8(bytes).is_ok() {
        return encoding_rs::UTF_8;
    }
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(bytes, true);
    detector.guess(None, true)
}

/// The encoding a `<meta>` in `head` declares (a simplified prescan: attribute values
/// quoted or not, case-insensitive; comments are skipped).
fn prescan_meta(head: &[u8]) -> Option<&'static encoding_rs::Encoding> {
    let lower: Vec<u8> = head.to_ascii_lowercase();
    let mut at = 0;
    while let Some(offset) = find(&lower[at..], b"<") {
        let start = at + offset;
        let rest = &lower[start..];
        if rest.starts_with(b"<!--") {
            at = start + 4 + find(&rest[4..], b"-->").map_or(rest.len() - 4, |e| e + 3);
            continue;
        }
        let end = start + find(rest, b">").unwrap_or(rest.len());
        let tag = &lower[start..end];
        at = end.max(start + 1);
        if !(tag.starts_with(b"<meta")
            && tag
                .get(5)
                .is_some_and(|b| b.is_ascii_whitespace() || *b == b'/'))
        {
            continue;
        }
        let value = attribute(tag, b"charset").or_else(|| {
            let equiv = attribute(tag, b"http-equiv")?;
            if equiv != b"content-type" {
                return None;
            }
            let content = attribute(tag, b"content")?;
            let from = find(content, b"charset=")? + b"charset=".len();
            let label = &content[from..];
            let label = label
                .strip_prefix(b"\"")
                .or_else(|| label.strip_prefix(b"'"))
                .unwrap_or(label);
            let stop = label
                .iter()
                .position(|b| matches!(b, b';' | b'"' | b'\'') || b.is_ascii_whitespace())
                .unwrap_or(label.len());
            Some(&label[..stop])
        });
        if let Some(encoding) = value.and_then(encoding_rs::Encoding::for_label) {
            return Some(encoding);
        }
    }
    None
}

/// The value of attribute `name` in the lower-cased tag text `tag` (`<meta ...`).
fn attribute<'a>(tag: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let mut from = 0;
    while let Some(offset) = find(&tag[from..], name) {
        let at = from + offset;
        from = at + name.len();
        let before_ok = tag
            .get(at.wrapping_sub(1))
            .is_some_and(|b| b.is_ascii_whitespace() || *b == b'/');
        let mut i = at + name.len();
        while tag.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if !before_ok || tag.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while tag.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let value = match tag.get(i) {
            Some(quote @ (b'"' | b'\'')) => {
                let body = &tag[i + 1..];
                &body[..body.iter().position(|b| b == quote).unwrap_or(body.len())]
            }
            _ => {
                let body = &tag[i..];
                let stop = body
                    .iter()
                    .position(|b| b.is_ascii_whitespace() || matches!(b, b'>' | b'/' | b';'))
                    .unwrap_or(body.len());
                &body[..stop]
            }
        };
        return Some(value);
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// True when `text` has at least one `<tag`, `</tag` or `<!` sequence.
fn has_markup(text: &str) -> bool {
    text.as_bytes()
        .windows(2)
        .any(|w| w[0] == b'<' && (w[1].is_ascii_alphabetic() || w[1] == b'!' || w[1] == b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_inputs_get_their_own_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"  \n\t", "empty"),
            (b"\x89PNG\r\n\x1a\n\0\0\0", "not html"),
            (b"just some words, no tags at all", "not html"),
            (b"<p>hello</p>", "ok"),
        ];
        for (bytes, expected) in cases {
            let got = match PageInput::from_bytes("t", None, bytes, 1 << 20) {
                Ok(_) => "ok",
                Err(Error::EmptyInput { .. }) => "empty",
                Err(Error::NotHtml { .. }) => "not html",
                Err(other) => panic!("unexpected {other}"),
            };
            assert_eq!(got, *expected, "{bytes:?}");
        }
        let big = vec![b'<'; 100];
        assert!(matches!(
            PageInput::from_bytes("t", None, &big, 99),
            Err(Error::TooLarge {
                size: 100,
                limit: 99,
                ..
            })
        ));
    }

    #[test]
    fn legacy_charsets_are_decoded_not_rejected() {
        // GBK declared by <meta charset>: "新闻" (news) is D0C2 CEC5.
        let gbk = b"<html><head><meta charset=\"gbk\"><title>\xD0\xC2\xCE\xC5</title></head><body><p>\xD0\xC2\xCE\xC5</p></body></html>";
        let page = PageInput::from_bytes("gbk", None, gbk, 1 << 20).unwrap();
        assert_eq!(page.charset, "GBK");
        assert!(page.html.contains("<p>新闻</p>"), "{}", page.html);
        // Latin-1 through http-equiv: "café" with E9.
        let latin1 = b"<html><head><meta http-equiv='Content-Type' content='text/html; charset=ISO-8859-1'></head><body>caf\xE9</body></html>";
        let page = PageInput::from_bytes("latin1", None, latin1, 1 << 20).unwrap();
        assert_eq!(page.charset, "windows-1252");
        assert!(page.html.contains("café"));
        // Undeclared Shift_JIS: guessed ("日本語のページです。" repeated).
        let text = "<p>日本語のページです。</p>".repeat(20);
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(&text);
        let page = PageInput::from_bytes("sjis", None, &sjis, 1 << 20).unwrap();
        assert_eq!(page.charset, "Shift_JIS");
        assert!(page.html.contains("日本語のページです。"));
        // A UTF-8 BOM wins over a wrong declaration; plain UTF-8 stays UTF-8.
        let bom = "\u{FEFF}<meta charset=gbk><p>新闻</p>".as_bytes();
        assert_eq!(
            PageInput::from_bytes("bom", None, bom, 1 << 20)
                .unwrap()
                .charset,
            "UTF-8"
        );
        let utf8 = "<p>新闻</p>".as_bytes();
        assert_eq!(
            PageInput::from_bytes("u8", None, utf8, 1 << 20)
                .unwrap()
                .charset,
            "UTF-8"
        );
        // A declaration inside a comment does not count.
        let commented = b"<!-- <meta charset=gbk> --><p>caf\xE9 ol\xE9 na\xEFve r\xE9sum\xE9</p>";
        assert_ne!(
            PageInput::from_bytes("c", None, commented, 1 << 20)
                .unwrap()
                .charset,
            "GBK"
        );
    }

    #[test]
    fn depth_counts_real_nesting_only() {
        assert_eq!(nesting_depth("<div><div><span>x</span></div></div>"), 3);
        // Unclosed optional-end and void elements, raw text, comments: not nesting.
        let flat = "<!doctype html><html><body>".to_owned()
            + &"<p>para<li>item<td>cell<br><img src=x>".repeat(2000)
            + "<script>if (a < b) { '<div><div><div>' }</script><!-- <div><div> --><x/>";
        assert_eq!(nesting_depth(&flat), 0);
        let deep = "<div>".repeat(MAX_DEPTH + 1);
        assert_eq!(nesting_depth(&deep), MAX_DEPTH + 1);
        assert!(matches!(
            PageInput::from_bytes("deep", None, deep.as_bytes(), 1 << 20),
            Err(Error::TooDeep {
                depth: 513,
                limit: 512,
                ..
            })
        ));
        // The misnested `<a><div>` pattern counts as the nesting it makes.
        assert!(nesting_depth(&"<a><div>".repeat(300)) > MAX_DEPTH);
        assert!(
            PageInput::from_bytes("ok", None, "<div>".repeat(MAX_DEPTH).as_bytes(), 1 << 20)
                .is_ok()
        );
    }

    #[test]
    fn a_hundred_thousand_levels_are_refused_not_laid_out() {
        let hostile = "<div>".repeat(100_000);
        let error =
            PageInput::from_bytes("hostile", None, hostile.as_bytes(), 1 << 24).unwrap_err();
        assert!(error.is_bad_input(), "{error}");
        assert!(
            error.to_string().contains("nested 100000 levels deep"),
            "{error}"
        );
    }
}
