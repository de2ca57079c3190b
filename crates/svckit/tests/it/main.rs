//! svckit integration tests: one binary, one module per capability (style.md 2.7).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    clippy::result_large_err,
    reason = "test code: a panic is a test failure"
)]

mod config;
mod serve;
