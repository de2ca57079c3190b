#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod auth;
pub mod bench;
pub mod camera;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod error;
pub mod etcd;
pub mod fanout;
pub mod flv;
pub mod forwarder;
pub mod hls;
pub mod hop;
pub mod lifecycle;
pub mod media;
pub mod proxy;
pub mod registry;
pub mod relay;
pub mod route;
pub mod service;
pub mod viewer;
pub mod ws;

pub use discovery::{AnyDiscovery, Discovery, Registrar, StaticDiscovery};
pub use error::{Classify, Error, Origin, Result, Retry};
pub use flv::{FlvReader, Tag, TagKind};
pub use media::{MediaConfig, MediaServer};
pub use route::{RouteTable, parse_public_path};
pub use service::Running;

// Used only by the integration tests.
#[cfg(test)]
use testkit as _;
