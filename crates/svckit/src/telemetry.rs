//! Tracing subscriber set-up for binaries (style.md 2.5).

use tracing_subscriber::EnvFilter;

/// Why [`init_tracing`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TracingError {
    /// `RUST_LOG` holds directives that do not parse; fix or unset the variable.
    #[error("invalid RUST_LOG directives `{value}`")]
    InvalidFilter {
        /// The value of `RUST_LOG` as read.
        value: String,
        /// The parser's complaint.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber was already installed (call `init_tracing` once, from `main`).
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Installs the global `tracing` subscriber: human-readable lines on stderr.
///
/// `verbosity` is the count of `-v` flags: 0 gives `warn` for dependencies and `info` for
/// `crate_name`, 1 gives `debug` for `crate_name`, 2 or more gives `trace` for `crate_name` and
/// `debug` for everything else. A set `RUST_LOG` replaces these defaults entirely.
///
/// Call it once, from a binary's `main`; libraries only emit events.
///
/// # Errors
/// [`TracingError::InvalidFilter`] when `RUST_LOG` does not parse, and
/// [`TracingError::AlreadyInstalled`] on a second call.
pub fn init_tracing(crate_name: &str, verbosity: u8) -> Result<(), TracingError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => {
            EnvFilter::try_new(&value).map_err(|source| TracingError::InvalidFilter {
                value: value.clone(),
                source,
            })?
        }
        _ => EnvFilter::new(default_directives(crate_name, verbosity)),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init()
        .map_err(|_| TracingError::AlreadyInstalled)
}

/// The filter directives used when `RUST_LOG` is unset, as documented on [`init_tracing`].
fn default_directives(crate_name: &str, verbosity: u8) -> String {
    let krate = crate_name.replace('-', "_");
    match verbosity {
        0 => format!("warn,{krate}=info,svckit=info"),
        1 => format!("info,{krate}=debug,svckit=debug"),
        _ => format!("debug,{krate}=trace,svckit=trace"),
    }
}

#[cfg(test)]
mod tests {
    use super::default_directives;

    #[test]
    fn directives_follow_verbosity() {
        for (verbosity, expected) in [
            (0, "warn,p2p_live=info,svckit=info"),
            (1, "info,p2p_live=debug,svckit=debug"),
            (5, "debug,p2p_live=trace,svckit=trace"),
        ] {
            assert_eq!(default_directives("p2p-live", verbosity), expected);
            assert!(tracing_subscriber::EnvFilter::try_new(expected).is_ok());
        }
    }
}
