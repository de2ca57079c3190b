#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod cli;
pub mod clock;
pub mod config;
pub mod process;
pub mod procstat;
pub mod redact;
mod serve;
mod telemetry;

pub use clock::{Clock, SystemClock, TestClock};
pub use serve::{ServeError, ServeOptions, ShutdownSignal, serve, shutdown_signal};
pub use telemetry::{TracingError, init_tracing};

// Used only by the integration tests and doc tests.
#[cfg(test)]
use reqwest as _;
#[cfg(test)]
use tempfile as _;
