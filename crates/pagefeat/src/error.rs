//! Typed errors of the library (style.md 2.3). `anyhow` is used only at the edges (CLI, demo,
//! bench, tests).

use std::path::PathBuf;

/// The result type of the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in pagefeat's library code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input was empty (0 bytes, or only whitespace). Give a page with markup.
    #[error("input `{source_name}` is empty")]
    EmptyInput {
        /// The file name or request that was empty.
        source_name: String,
    },
    /// The input is larger than the configured limit (`input.max_bytes`). Raise the limit with
    /// `--set input.max_bytes=N` or give a smaller page.
    #[error("input `{source_name}` is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The file name or request.
        source_name: String,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The input nests elements deeper than [`crate::input::MAX_DEPTH`] (Blink's parser
    /// limit, 512).
    #[error("input `{source_name}` is nested {depth} levels deep, over the limit of {limit}")]
    TooDeep {
        /// The file name or request.
        source_name: String,
        /// The nesting found ([`crate::input::nesting_depth`]).
        depth: usize,
        /// The limit.
        limit: usize,
    },
    /// The input does not look like HTML: it is binary (NUL bytes or invalid UTF-8 in most of
    /// it) or has no `<` markup at all.
    #[error("input `{source_name}` is not HTML: {reason}")]
    NotHtml {
        /// The file name or request.
        source_name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The embedded engine (Blitz) panicked on this page; the page is skipped, others go on.
    #[error("the embedded engine failed on `{source_name}`: {message}")]
    EnginePanic {
        /// The page.
        source_name: String,
        /// The panic message.
        message: String,
    },
    /// The CSS selector given for the local profile does not parse.
    #[error("invalid CSS selector `{selector}`")]
    BadSelector {
        /// The selector as given.
        selector: String,
    },
    /// The CSS selector matched no element of the page.
    #[error("CSS selector `{selector}` matched nothing")]
    SelectorNoMatch {
        /// The selector as given.
        selector: String,
    },
    /// Starting or talking to Chromium failed (not installed: run `scripts/setup`).
    #[error("chromium: {context}")]
    Chromium {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Chromium did not answer within the configured time (`chromium.timeout_ms`).
    #[error("chromium: {context} timed out after {timeout_ms} ms")]
    ChromiumTimeout {
        /// What was being done.
        context: String,
        /// The limit in milliseconds.
        timeout_ms: u64,
    },
    /// `chromium.isolation = "netns"` cannot work here: pagefeat is not root, `unshare`, `ip`
    /// or `setpriv` is missing, or the kernel refused a network namespace. Nothing falls back
    /// silently: fix the cause or set `chromium.isolation = "none"` (see
    /// [`crate::engine::isolation`]).
    #[error("chromium isolation unavailable: {reason}")]
    IsolationUnavailable {
        /// What is missing.
        reason: String,
    },
    /// A page took longer than `chromium.page_deadline_ms` as a whole.
    #[error("chromium: the page took longer than its deadline of {deadline_ms} ms")]
    PageDeadline {
        /// The deadline in milliseconds.
        deadline_ms: u64,
    },
    /// Chromium's snapshot did not have the expected shape (missing layout arrays).
    #[error("chromium snapshot malformed: {what}")]
    SnapshotShape {
        /// What was missing or inconsistent.
        what: String,
    },
    /// Reading or writing a file failed.
    #[error("{action} `{path}`")]
    Io {
        /// "reading", "writing", ...
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A protobuf file does not decode as a `StatTree`.
    #[error("`{path}` is not a StatTree protobuf")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: prost::DecodeError,
    },
    /// A model file is missing or does not parse; train first with `pagefeat train`.
    #[error("model `{path}`: {reason}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A row of a labels file (the popup set's `LABELS.tsv`) is malformed.
    #[error("`{}`:{line}: {reason}", path.display())]
    Labels {
        /// The labels file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// Training could not run (too few samples, one class only, the learner failed).
    #[error("training `{model}` failed: {reason}")]
    Training {
        /// Which model ("ad", "soft404").
        model: &'static str,
        /// Why.
        reason: String,
    },
    /// The EasyList file could not be read.
    #[error("filter list `{path}` could not be read")]
    FilterList {
        /// The list file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `/proc` file (process list, `stat`, `smaps_rollup`) could not be read: the process is
    /// gone, access is denied, or the kernel has no such file.
    #[error("reading `{path}`")]
    ProcRead {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `/proc` file did not have the expected shape.
    #[error("`{path}`: {what}")]
    ProcFormat {
        /// The file.
        path: PathBuf,
        /// What was missing or malformed.
        what: String,
    },
    /// The background workers stopped before answering (a worker thread panicked).
    #[error("background workers stopped")]
    WorkersGone,
}

impl Error {
    /// Wraps an I/O error with the action and path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// Wraps a Chromium-side error with what was being done.
    pub fn chromium(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Chromium {
            context: context.into(),
            source: source.into(),
        }
    }

    /// True for errors caused by the input itself (HTTP 4xx in `serve`).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Self::EmptyInput { .. }
                | Self::TooLarge { .. }
                | Self::TooDeep { .. }
                | Self::NotHtml { .. }
                | Self::BadSelector { .. }
                | Self::SelectorNoMatch { .. }
        )
    }
}
