//! Page input checks: every engine gets only non-empty, size-limited, text HTML (issue 6, "bad
//! input gets a clear error").

use crate::error::{Error, Result};

/// A page accepted for layout: its text and the name used in messages and URLs.
#[derive(Debug, Clone)]
pub struct PageInput {
    /// File name or request label, used in errors and reports.
    pub name: String,
    /// The page's base URL (a `file://` URL for files, a placeholder for HTTP bodies). Blitz
    /// needs one: without it, protocol-relative URLs such as `//host/x.gif` make it panic.
    pub base_url: String,
    /// The HTML text (invalid UTF-8 sequences replaced).
    pub html: String,
}

/// The base URL given to pages that came without one (HTTP bodies, tests).
pub const FALLBACK_BASE_URL: &str = "http://page.invalid/";

impl PageInput {
    /// Checks `bytes` and makes a page of them.
    ///
    /// Rules, in order: empty or whitespace-only -> [`Error::EmptyInput`]; more than
    /// `max_bytes` -> [`Error::TooLarge`]; a NUL byte in the first 8 KiB, more than 10 % of
    /// the bytes invalid UTF-8, or no `<` followed by a letter, `!` or `/` anywhere ->
    /// [`Error::NotHtml`].
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
        if bytes.iter().take(8192).any(|b| *b == 0) {
            return Err(Error::NotHtml {
                source_name: name,
                reason: "it contains NUL bytes (binary data)",
            });
        }
        let html = String::from_utf8_lossy(bytes).into_owned();
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
        Ok(Self {
            name,
            base_url: base_url.unwrap_or_else(|| FALLBACK_BASE_URL.to_owned()),
            html,
        })
    }
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
}
