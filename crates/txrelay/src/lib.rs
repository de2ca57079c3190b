#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod anvil;
pub mod api;
pub mod auth;
mod backlog;
pub mod bench;
pub mod broadcast;
mod checkpoint;
pub mod cli;
pub mod client;
pub mod config;
pub mod core;
pub mod demo;
pub mod error;
pub mod event;
pub mod follow;
mod heads;
pub mod load;
pub mod metrics;
pub mod node;
mod nonce_watch;
pub mod outbound;
pub mod receiver;
pub mod relay;
mod retention;
pub mod rules;
pub mod secrets;
mod server;
pub mod session;
mod state;
pub mod store;
pub mod validate;
pub mod webhook;

pub use config::{Config, Settings};
pub use error::{Error, NodeError, RejectReason, Result, StoreError};
pub use event::{Event, EventStatus};
pub use relay::{Running, start};
pub use rules::{Receiver, Registration};
pub use store::Store;
