//! Integration tests of txrelay: the relay as its own process against real anvil nodes,
//! webhook receivers and (in the `postgres` variants) a PostgreSQL server started by the test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "test code: a panic is a test failure"
)]
