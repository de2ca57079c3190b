#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "test code: a panic is a test failure"
)]
//! Integration tests of pagefeat, one module per capability. Tests whose names start with
//! `chromium_` start a real headless Chromium and run in the nextest group `end-to-end`.

mod adnodes;
mod bad_input;
mod cli;
mod deadlinks;
mod engines;
mod isolated;
mod layout_micro;
mod popups;
mod profiles;
mod schema;
mod sealed;
mod serve;
mod support;
mod viewport;
