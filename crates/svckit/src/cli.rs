//! The command-line pieces every service binary shares (style.md 2.6): the global flags
//! ([`CommonArgs`]) with each binary's own subcommands ([`Cli`]), parsing with the binary's
//! own name, description and `--set` example ([`About`], [`parse`], [`run_binary`]), configuration loading ([`load_config`]),
//! stdout/stderr helpers that treat a closed pipe as success, the demo's exit-code rule
//! ([`finish_demo`]) and the common `main` body ([`main`]).

use std::fmt::Display;
use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// `-v`, `--config FILE` and `--set key=value`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// More log output: -v for debug, -vv for trace (`RUST_LOG` overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// A TOML configuration file, applied over the embedded defaults.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one configuration key, applied last (repeatable); each binary's help gives an
    /// example of its own keys (see [`parse`]).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// The clap id of the `--set` flag in [`CommonArgs`] (its field name).
const SET_ARG_ID: &str = "overrides";

impl CommonArgs {
    /// The configuration [`Sources`](crate::config::Sources) these flags name, reading the
    /// environment variables that start with `env_prefix`.
    pub fn config_sources(&self, env_prefix: &str) -> crate::config::Sources {
        crate::config::Sources::new()
            .file(self.config.as_deref())
            .env_prefix(env_prefix)
            .overrides(&self.overrides)
    }
}

/// What a service binary says about itself: its name (clap's `name` and `bin_name`), version
/// and one-line description (`--help`, `--version`), and an example `key=value` of its own
/// configuration for the `--set` help. Built by [`about!`](crate::about) from the calling
/// crate's `Cargo.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct About {
    /// The binary's name, e.g. `"txrelay"`.
    pub name: &'static str,
    /// Its version, e.g. `"0.1.0"`.
    pub version: &'static str,
    /// One line on what it does (the crate's `description`).
    pub description: &'static str,
    /// A `key=value` of its own configuration, e.g. `"delivery.max_attempts=20"`.
    pub set_example: &'static str,
}

/// The calling crate's [`About`]: `CARGO_PKG_NAME`, `CARGO_PKG_VERSION` and
/// `CARGO_PKG_DESCRIPTION` read where the macro is used, with `$set_example` for `--set`.
#[macro_export]
macro_rules! about {
    ($set_example:expr) => {
        $crate::cli::About {
            name: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            description: env!("CARGO_PKG_DESCRIPTION"),
            set_example: $set_example,
        }
    };
}

/// A service binary's command line: the global flags ([`CommonArgs`]), the binary's own global
/// flags `G` (none by default) and its subcommand enum `C`. Name, version and description come
/// from the binary's [`About`] when parsed with [`parse`] or [`parse_from`].
#[derive(Debug, clap::Parser)]
pub struct Cli<C: clap::Subcommand, G: clap::Args = NoGlobals> {
    /// Flags shared by every service.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The binary's own flags before the subcommand.
    #[command(flatten)]
    pub globals: G,
    /// What to run.
    #[command(subcommand)]
    pub command: C,
}

/// No binary-specific global flags (the default `G` of [`Cli`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::Args)]
pub struct NoGlobals {}

/// Parses the process's command line into [`Cli<C>`] with `about`'s name, version,
/// description and `--set` example.
///
/// Usage errors, `--help` and `--version` print and exit as clap does (exit code 2 for errors).
pub fn parse<C: clap::Subcommand, G: clap::Args>(about: &About) -> Cli<C, G> {
    parse_from(std::env::args_os(), about).unwrap_or_else(|error| error.exit())
}

/// [`parse`] over explicit arguments (the first is the binary name).
///
/// # Errors
/// clap's error for a usage error, `--help` or `--version`.
pub fn parse_from<C, G, I, T>(args: I, about: &About) -> Result<Cli<C, G>, clap::Error>
where
    C: clap::Subcommand,
    G: clap::Args,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::{CommandFactory as _, FromArgMatches as _};
    let help = format!(
        "Override one configuration key, applied last, e.g. `--set {}` (repeatable)",
        about.set_example
    );
    let mut command = Cli::<C, G>::command()
        .name(about.name)
        .bin_name(about.name)
        .version(about.version)
        .about(about.description)
        .mut_arg(SET_ARG_ID, |arg| arg.help(help));
    let mut matches = command.try_get_matches_from_mut(args)?;
    Cli::<C, G>::from_arg_matches_mut(&mut matches).map_err(|error| error.format(&mut command))
}

/// A whole service binary's `main`: [`parse`] the command line with `about`, then [`main`]
/// runs `run` on it (tracing at the `-v` level, the Tokio runtime, the exit code).
pub fn run_binary<C, G, F, E>(about: &About, run: impl FnOnce(Cli<C, G>) -> F) -> ExitCode
where
    C: clap::Subcommand,
    G: clap::Args,
    F: Future<Output = Result<ExitCode, E>>,
    E: Display,
{
    let cli = parse::<C, G>(about);
    main(about.name, cli.common.verbose, || run(cli))
}

/// Loads a binary's configuration `T` from the layers `common` names: embedded defaults (`T`'s
/// `Default` through serde), the `--config` TOML file, environment variables starting with
/// `env_prefix`, then `--set` flags (see [`crate::config::load`]).
///
/// # Errors
/// [`crate::config::ConfigError`] naming the file, variable or key.
pub fn load_config<T: Serialize + DeserializeOwned + Default>(
    common: &CommonArgs,
    env_prefix: &str,
) -> Result<T, crate::config::ConfigError> {
    crate::config::load(&common.config_sources(env_prefix))
}

/// Writes `text` and a newline to stdout and flushes; a closed pipe (`| head`) is not an
/// error (ripgrep's rule).
///
/// # Errors
/// Other write errors.
pub fn stdout_line(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes `text` (as is, no newline added) to stderr, ignoring failures: for tables and notes
/// a person reads, never for data.
pub fn stderr_text(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Whether progress bars should be drawn: only on a terminal and not with `--json`.
pub fn progress_wanted(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// Prints `value` on stdout: one JSON line with `json`, else `text()` (a table people read).
///
/// # Errors
/// A serialisation or write error.
pub fn print_report<R: Serialize>(
    value: &R,
    json: bool,
    text: impl FnOnce() -> String,
) -> std::io::Result<()> {
    if json {
        stdout_line(&serde_json::to_string(value)?)
    } else {
        stdout_line(text().trim_end())
    }
}

/// The end of every `demo` subcommand: prints `report` on stdout (one JSON line with `json`,
/// pretty JSON otherwise), each failed check on stderr and in the log, and gives exit code 0
/// when `failures` is empty, else 2 (the demo ran but failed its own checks).
///
/// # Errors
/// A serialisation or write error.
pub fn finish_demo<R: Serialize, F: Display>(
    report: &R,
    failures: &[F],
    json: bool,
) -> std::io::Result<ExitCode> {
    if json {
        stdout_line(&serde_json::to_string(report)?)?;
    } else {
        stdout_line(&serde_json::to_string_pretty(report)?)?;
    }
    for failure in failures {
        tracing::error!(%failure, "demo check failed");
        stderr_text(&format!("demo check failed: {failure}\n"));
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// The body of every service binary's `main` (style.md 2.6): sets up tracing for `binary` at
/// `verbose` (`-v` count), builds a multi-threaded Tokio runtime, runs `run` on it and maps the
/// outcome to the process exit code. `run`'s own exit code is returned as is; a tracing set-up
/// failure, a runtime that cannot start or an error from `run` prints `BINARY: error: ...`
/// (with the error's `{:#}` chain) to stderr and gives [`ExitCode::FAILURE`].
pub fn main<F, E>(binary: &str, verbose: u8, run: impl FnOnce() -> F) -> ExitCode
where
    F: Future<Output = Result<ExitCode, E>>,
    E: Display,
{
    let fail = |what: &dyn Display| {
        let _ = writeln!(std::io::stderr(), "{binary}: error: {what:#}");
        ExitCode::FAILURE
    };
    if let Err(error) = crate::init_tracing(binary, verbose) {
        return fail(&error);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("starting the async runtime: {error}")),
    };
    match runtime.block_on(run()) {
        Ok(code) => code,
        Err(error) => fail(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Subcommand)]
    enum TestCommand {
        Run,
    }

    const ABOUT: About = About {
        name: "demo-bin",
        version: "9.8.7",
        description: "A binary that exists in this test only.",
        set_example: "relay.max_in_flight=64",
    };

    #[test]
    fn parse_keeps_flags_and_shows_the_binarys_own_name_and_example() {
        let cli: Cli<TestCommand> =
            parse_from(["demo-bin", "run", "--set", "a.b=1", "-vv"], &ABOUT).unwrap();
        assert_eq!(cli.common.overrides, ["a.b=1"]);
        assert_eq!(cli.common.verbose, 2);
        assert!(matches!(cli.command, TestCommand::Run));

        let help = parse_from::<TestCommand, NoGlobals, _, _>(["demo-bin", "--help"], &ABOUT)
            .unwrap_err()
            .to_string();
        assert!(help.contains("--set relay.max_in_flight=64"), "{help}");
        assert!(
            help.contains("A binary that exists in this test only."),
            "{help}"
        );
        assert!(help.contains("Usage: demo-bin"), "{help}");
        assert!(!help.contains("tracker.max_substreams"), "{help}");
        assert!(!help.contains("svckit"), "{help}");
        // The example also reaches the subcommands (the flag is global).
        let other = About {
            set_example: "x.y=2",
            ..ABOUT
        };
        let sub = parse_from::<TestCommand, NoGlobals, _, _>(["demo-bin", "run", "--help"], &other)
            .unwrap_err()
            .to_string();
        assert!(sub.contains("--set x.y=2"), "{sub}");
        let version = parse_from::<TestCommand, NoGlobals, _, _>(["demo-bin", "--version"], &ABOUT)
            .unwrap_err()
            .to_string();
        assert_eq!(version.trim(), "demo-bin 9.8.7");
    }

    #[test]
    fn about_reads_the_calling_crate() {
        let about = crate::about!("k=v");
        assert_eq!(about.name, "svckit");
        assert_eq!(about.version, env!("CARGO_PKG_VERSION"));
        assert!(about.description.starts_with("Shared service runtime"));
    }

    #[test]
    fn usage_errors_are_errors() {
        assert!(parse_from::<TestCommand, NoGlobals, _, _>(["demo-bin", "nope"], &ABOUT).is_err());
    }

    #[derive(Debug, clap::Args)]
    struct Dir {
        /// A directory.
        #[arg(long, global = true)]
        dir: Option<String>,
    }

    #[test]
    fn a_binarys_own_globals_parse_before_and_after_the_subcommand() {
        let before: Cli<TestCommand, Dir> =
            parse_from(["demo-bin", "--dir", "d", "run"], &ABOUT).unwrap();
        assert_eq!(before.globals.dir.as_deref(), Some("d"));
        let after: Cli<TestCommand, Dir> =
            parse_from(["demo-bin", "run", "--dir", "e"], &ABOUT).unwrap();
        assert_eq!(after.globals.dir.as_deref(), Some("e"));
    }

    #[test]
    fn demo_exit_code_follows_failures() {
        let report = serde_json::json!({"ok": true});
        let none: [&str; 0] = [];
        assert_eq!(
            finish_demo(&report, &none, true).unwrap(),
            ExitCode::SUCCESS
        );
        assert_eq!(
            finish_demo(&report, &["p2p ratio 0.5 < 0.85"], true).unwrap(),
            ExitCode::from(2)
        );
    }
}
