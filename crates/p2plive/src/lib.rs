#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod auth;
pub mod bench;
pub mod block;
pub mod cdn;
pub mod cli;
pub mod config;
pub mod demo;
pub mod error;
pub mod ffmpeg;
pub mod hls;
pub mod link;
pub mod metrics;
pub mod origin;
pub mod peer;
pub mod psi;
pub mod rate;
pub mod rss;
pub mod sched;
pub mod sim;
pub mod substream;
pub mod tracker;
pub mod ts;

pub use block::{Block, BlockInfo, Cutter};
pub use error::{Error, LayoutError, Result};
pub use peer::{PeerConfig, PeerHandle};
pub use sched::{Action, SchedConfig, Scheduler, Source};
pub use substream::{Epoch, Layout};
pub use tracker::{Swarm, Tracker, TrackerConfig};

// Used only by the binary and the integration tests.
#[cfg(test)]
use testkit as _;
#[cfg(test)]
use tower as _;
