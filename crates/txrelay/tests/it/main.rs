//! Integration tests of txrelay: the relay as its own process (the crate's binary) against
//! real anvil nodes, webhook receivers and, in the `postgres` variants, a PostgreSQL server
//! started by the test on 127.0.0.1. Each scenario runs once per database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "test code: a panic is a test failure"
)]

/// Generates `sqlite` and `postgres` tests running `scenario(backend)`.
macro_rules! on_both_databases {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(crate::support::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario(crate::support::Backend::Postgres).await;
            }
        }
    };
}

mod support;

mod auth;
mod backlog;
mod crash;
mod delivery;
mod demo;
mod failover;
mod heads;
mod multi_instance;
mod outbound;
mod overdue;
mod rebroadcast;
mod receipts;
mod reorg;
mod speed;
mod submit;
mod websocket;
