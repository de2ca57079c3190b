//! The text parts of a page that the dead-link features read (issue 15, item 3): title,
//! headings, main text, navigation text, link text, script text, and the URLs that name the
//! page's site. Read with html5ever's tokenizer (no tree building, no layout: one linear pass,
//! about 1,229 corpus pages in seconds), with the raw-text states the HTML spec's tree builder
//! would set (`<script>`, `<style>`, `<title>`, `<textarea>`, ...).
//!
//! Parts: **main** is the text inside `<main>`, `<article>` or `role="main"` when the page has
//! any, else the body text outside `<nav>`, `<header>`, `<footer>`, `<aside>` and `role=
//! "navigation"`; **chrome** is the text inside those navigation elements; the **largest
//! block** is the block element (`p`, `div`, `td`, `li`, `section`, headings, ...) holding the
//! most text directly (text whose nearest block ancestor it is).

use std::cell::RefCell;

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

/// The text parts of one page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageText {
    /// `<title>` text, white space collapsed.
    pub title: String,
    /// Text of each `h1` and `h2`, in order.
    pub headings: Vec<String>,
    /// Main text (see the module docs), white space collapsed.
    pub main: String,
    /// True when `main` came from `<main>` / `<article>` / `role=main`.
    pub main_marked: bool,
    /// Characters of body text (outside scripts and styles).
    pub body_chars: usize,
    /// Characters of text inside navigation elements.
    pub chrome_chars: usize,
    /// Characters of text inside links.
    pub link_chars: usize,
    /// Number of `<a href>` elements.
    pub links: usize,
    /// Text of the block holding the most text directly.
    pub largest_block: String,
    /// Text blocks (block elements) with at least 80 characters of their own text.
    pub long_blocks: usize,
    /// `<input>` (not hidden), `<textarea>` and `<select>` elements.
    pub inputs: usize,
    /// An HTTP error status such as `404` occurs as a word inside inline scripts.
    pub status_in_scripts: bool,
    /// `<link rel=canonical href>`.
    pub canonical: Option<String>,
    /// `<meta property=og:url content>`.
    pub og_url: Option<String>,
    /// `<base href>`.
    pub base_href: Option<String>,
}

const BLOCKS: &[&str] = &[
    "p",
    "div",
    "td",
    "th",
    "li",
    "dd",
    "dt",
    "section",
    "article",
    "main",
    "blockquote",
    "pre",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "figcaption",
    "header",
    "footer",
    "nav",
    "aside",
    "form",
    "body",
    "center",
    "table",
    "ul",
    "ol",
];

const CHROME: &[&str] = &["nav", "header", "footer", "aside"];

const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr", "param", "keygen",
];

#[derive(Debug, Default)]
struct Open {
    name: String,
    /// This element starts a main region / a chrome region / is a link / a heading.
    main: bool,
    chrome: bool,
    link: bool,
    heading: bool,
    /// Index into `blocks` when this is a block element.
    block: Option<usize>,
}

#[derive(Debug, Default)]
struct State {
    stack: Vec<Open>,
    raw: Option<String>,
    raw_text: String,
    headings: Vec<String>,
    marked_main: String,
    unmarked_main: String,
    main_depth: usize,
    chrome_depth: usize,
    link_depth: usize,
    heading: Option<String>,
    blocks: Vec<String>,
    block_stack: Vec<usize>,
    text: PageText,
}

fn push_text(buf: &mut String, text: &str) {
    for word in text.split_whitespace() {
        if !buf.is_empty() {
            buf.push(' ');
        }
        buf.push_str(word);
    }
}

fn attr<'a>(tag: &'a html5ever::tokenizer::Tag, name: &str) -> Option<&'a StrTendril> {
    tag.attrs
        .iter()
        .find(|a| &*a.name.local == name)
        .map(|a| &a.value)
}

impl State {
    fn start(&mut self, tag: &html5ever::tokenizer::Tag) -> Option<RawKind> {
        let name = tag.name.to_string();
        match name.as_str() {
            "link" => {
                let rel = attr(tag, "rel").map(|r| r.to_ascii_lowercase());
                if rel.is_some_and(|r| r.split_whitespace().any(|t| t == "canonical")) {
                    self.text.canonical = attr(tag, "href").map(|h| h.trim().to_owned());
                }
            }
            "meta" => {
                let property = attr(tag, "property").or_else(|| attr(tag, "name"));
                if property.is_some_and(|p| p.eq_ignore_ascii_case("og:url")) {
                    self.text.og_url = attr(tag, "content").map(|h| h.trim().to_owned());
                }
            }
            "base" if self.text.base_href.is_none() => {
                self.text.base_href = attr(tag, "href").map(|h| h.trim().to_owned());
            }
            "input" => {
                let hidden = attr(tag, "type").is_some_and(|t| t.eq_ignore_ascii_case("hidden"));
                if !hidden {
                    self.text.inputs += 1;
                }
            }
            "textarea" | "select" => self.text.inputs += 1,
            _ => {}
        }
        let raw = match name.as_str() {
            "script" => Some(RawKind::ScriptData),
            "style" | "xmp" | "iframe" | "noembed" | "noframes" | "template" => {
                Some(RawKind::Rawtext)
            }
            "title" | "textarea" => Some(RawKind::Rcdata),
            _ => None,
        };
        if let Some(kind) = raw {
            if tag.self_closing {
                return None;
            }
            self.raw = Some(name);
            self.raw_text.clear();
            return Some(kind);
        }
        if VOID.contains(&name.as_str()) || tag.self_closing {
            return None;
        }
        let role = attr(tag, "role").map(|r| r.to_ascii_lowercase());
        let mut open = Open {
            main: matches!(name.as_str(), "main" | "article") || role.as_deref() == Some("main"),
            chrome: CHROME.contains(&name.as_str()) || role.as_deref() == Some("navigation"),
            link: name == "a" && attr(tag, "href").is_some(),
            heading: matches!(name.as_str(), "h1" | "h2"),
            ..Open::default()
        };
        if open.main {
            self.main_depth += 1;
        }
        if open.chrome {
            self.chrome_depth += 1;
        }
        if open.link {
            self.link_depth += 1;
            self.text.links += 1;
        }
        if open.heading && self.heading.is_none() {
            self.heading = Some(String::new());
        } else {
            open.heading = false;
        }
        if BLOCKS.contains(&name.as_str()) {
            self.blocks.push(String::new());
            let index = self.blocks.len() - 1;
            open.block = Some(index);
            self.block_stack.push(index);
        }
        open.name = name;
        self.stack.push(open);
        None
    }

    fn close_one(&mut self) {
        let Some(open) = self.stack.pop() else { return };
        if open.main {
            self.main_depth -= 1;
        }
        if open.chrome {
            self.chrome_depth -= 1;
        }
        if open.link {
            self.link_depth -= 1;
        }
        if open.heading
            && let Some(text) = self.heading.take()
        {
            self.headings.push(text);
        }
        if open.block.is_some() {
            self.block_stack.pop();
        }
    }

    fn end(&mut self, name: &str) {
        if self.raw.as_deref() == Some(name) {
            let raw = std::mem::take(&mut self.raw_text);
            self.raw = None;
            match name {
                "title" if self.text.title.is_empty() => push_text(&mut self.text.title, &raw),
                "script"
                    if crate::lexicon::words(&raw)
                        .iter()
                        .any(|w| crate::lexicon::ERROR_STATUSES.contains(&w.as_str())) =>
                {
                    self.text.status_in_scripts = true;
                }
                "textarea" => self.characters(&raw),
                _ => {}
            }
            return;
        }
        // Close up to the matching open element; a stray end tag closes nothing.
        if let Some(pos) = self.stack.iter().rposition(|o| o.name == name) {
            while self.stack.len() > pos {
                self.close_one();
            }
        }
    }

    fn characters(&mut self, text: &str) {
        if self.raw.is_some() {
            self.raw_text.push_str(text);
            return;
        }
        let chars = text.chars().filter(|c| !c.is_whitespace()).count();
        if chars == 0 {
            // keep word separation inside open buffers
            return;
        }
        self.text.body_chars += chars;
        if self.chrome_depth > 0 && self.main_depth == 0 {
            self.text.chrome_chars += chars;
        } else {
            push_text(&mut self.unmarked_main, text);
        }
        if self.main_depth > 0 {
            push_text(&mut self.marked_main, text);
        }
        if self.link_depth > 0 {
            self.text.link_chars += chars;
        }
        if let Some(heading) = self.heading.as_mut() {
            push_text(heading, text);
        }
        if let Some(&block) = self.block_stack.last() {
            push_text(&mut self.blocks[block], text);
        }
    }

    fn finish(mut self) -> PageText {
        while !self.stack.is_empty() {
            self.close_one();
        }
        if let Some(text) = self.heading.take() {
            self.headings.push(text);
        }
        let mut text = self.text;
        text.headings = self.headings;
        text.main_marked = !self.marked_main.is_empty();
        text.main = if text.main_marked {
            self.marked_main
        } else {
            self.unmarked_main
        };
        text.long_blocks = self
            .blocks
            .iter()
            .filter(|b| b.chars().count() >= 80)
            .count();
        text.largest_block = self
            .blocks
            .into_iter()
            .max_by_key(|b| b.chars().count())
            .unwrap_or_default();
        text
    }
}

struct Sink(RefCell<State>);

impl TokenSink for Sink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut state = self.0.borrow_mut();
        match token {
            Token::TagToken(tag) => match tag.kind {
                TagKind::StartTag => {
                    if let Some(kind) = state.start(&tag) {
                        return TokenSinkResult::RawData(kind);
                    }
                }
                TagKind::EndTag => state.end(&tag.name),
            },
            Token::CharacterTokens(text) => state.characters(&text),
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// Reads the text parts of `html` (see the module docs). Never fails: malformed markup is
/// read the way the tokenizer reads it, unclosed elements end at the end of the input.
pub fn read(html: &str) -> PageText {
    let sink = Sink(RefCell::new(State::default()));
    let tokenizer = Tokenizer::new(sink, TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    tokenizer.sink.0.into_inner().finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_a_page() {
        let html = r#"<html><head><title> Oops &amp; more </title>
            <link rel="canonical" href="https://www.example.co.uk/a">
            <script>var code = 404; if (x < 3) {}</script></head>
            <body><nav><a href="/">Home</a> <a href="/b">Blog</a></nav>
            <main><h1>Not here</h1><p>Some text</p></main><footer>(c) 2024</footer></body></html>"#;
        let text = read(html);
        assert_eq!(text.title, "Oops & more");
        assert_eq!(text.headings, vec!["Not here".to_owned()]);
        assert_eq!(text.main, "Not here Some text");
        assert!(text.main_marked && text.status_in_scripts);
        assert_eq!(text.links, 2);
        assert_eq!(text.link_chars, 8);
        assert_eq!(text.chrome_chars, 8 + 7);
        assert_eq!(
            text.canonical.as_deref(),
            Some("https://www.example.co.uk/a")
        );
    }

    #[test]
    fn unmarked_main_skips_navigation() {
        let text = read("<body><header>Menu</header><div>Story one</div><p>x</p></body>");
        assert_eq!(text.main, "Story one x");
        assert!(!text.main_marked);
        assert_eq!(text.largest_block, "Story one");
    }
}
