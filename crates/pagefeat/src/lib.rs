#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod ad_eval;
pub mod ad_linear;
pub mod ad_tokens;
pub mod adfilter;
pub mod agreement;
pub mod bench;
pub mod cli;
pub mod compat;
pub mod config;
pub mod corpus;
pub mod deadlink;
pub mod deadlink_data;
pub mod deadlink_report;
pub mod demo;
pub mod engine;
pub mod error;
pub mod evaluation;
pub mod extract;
pub mod features;
pub mod input;
pub mod layout;
pub mod lexicon;
pub mod model;
pub mod overlay;
pub mod pagetext;
pub mod popup;
pub mod popup_eval;
pub mod procmem;
pub mod recognize;
pub mod serve;
pub mod site;
pub mod stat_node;
pub mod training;
pub mod viewport;
pub mod workers;

pub use engine::{ChromiumBrowser, ChromiumConfig, EmbeddedEngine};
pub use error::{Error, Result};
pub use input::PageInput;
pub use layout::{EngineKind, LayoutObject, LayoutSnapshot};
pub use recognize::{PageResult, Recognizer};
pub use stat_node::{Profile, StatNode, StatTree, Trigger};
pub use viewport::{ViewportEvent, ViewportTracker};

// Used only by the integration tests.
#[cfg(test)]
use http_body_util as _;
#[cfg(test)]
use proptest as _;
#[cfg(test)]
use testkit as _;
#[cfg(test)]
use tower as _;
