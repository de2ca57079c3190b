#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod auth;
pub mod av2_protocol;
pub mod bench;
pub mod bench_take;
pub mod cli;
pub mod clip;
pub mod closed_loop;
pub mod config;
pub mod demo;
pub mod error;
pub mod eval;
pub mod feed;
pub mod fit;
pub mod geometry;
pub mod hd_map;
mod ingest_cut;
#[cfg(test)]
mod ingest_golden;
pub mod lock;
pub mod mined_view;
pub mod model;
pub mod olap;
pub mod pinned;
pub mod query;
pub mod reader;
pub mod registry;
pub mod report;
pub mod rows;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod sql_engine;
pub mod store;
pub mod take;
pub mod take_cache;
mod take_gather;
mod take_prefetch;
pub mod take_remote;
pub mod trajectory;
pub mod trigger;
pub mod ui;
pub mod warehouse;

pub use closed_loop::{DataLoop, IngestReport, TriggerKind, TriggerOutcome};
pub use config::Config;
pub use error::{Error, Result};
pub use eval::Metrics;
pub use model::{TrainMode, TrajectoryModel};
pub use trigger::MiningRequest;

// Used by the integration tests only.
#[cfg(test)]
use testkit as _;
