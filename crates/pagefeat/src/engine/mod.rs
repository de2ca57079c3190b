//! The two layout engines. Both produce a [`crate::layout::LayoutSnapshot`] with the same
//! LayoutObject class names, so everything after them is engine-independent.

pub mod chromium;
pub mod controls;
pub mod embedded;
pub mod fonts;
pub mod images;
pub mod inlines;
pub mod isolation;
pub mod snapshot;
mod style_attr;

pub use chromium::{ChromiumBrowser, ChromiumCapture, ChromiumConfig};
pub use embedded::{EmbeddedEngine, EmbeddedLayout};
pub use isolation::Isolation;
