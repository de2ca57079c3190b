//! The `p2plive` binary: [`svckit::cli::run_binary`] parses the command line with this crate's
//! name, description and a `--set` example of its own keys, sets up tracing and the runtime,
//! runs the subcommand and maps its outcome to the exit code.
//!
//! On glibc it first makes sure it runs with [`p2plive::rss::MALLOC_TUNABLE`] (bounded memory,
//! issue 16 item 5): glibc reads `GLIBC_TUNABLES` only when a program starts, so a process
//! started without it executes itself again (same pid, arguments and environment, plus the
//! tunable). An operator's own mmap threshold is kept.

use std::process::ExitCode;

use p2plive::cli::run;

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tune_malloc();
    svckit::cli::run_binary(&svckit::about!("tracker.max_substreams=12"), run)
}

/// Set in the environment of the re-executed process, so it never executes itself again
/// (whatever glibc makes of `GLIBC_TUNABLES` while it parses it).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TUNED: &str = "TUNED_BY_P2PLIVE";

/// Re-executes this program with the malloc tunable when it is missing; returns only when it
/// is already set (or this is the re-executed process), `GLIBC_TUNABLES` is not UTF-8, or the
/// exec failed (said on stderr: the process goes on with glibc's defaults).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    use std::os::unix::process::CommandExt;

    if std::env::var_os(TUNED).is_some() {
        return;
    }
    let current = match std::env::var("GLIBC_TUNABLES") {
        Ok(value) => Some(value),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => return,
    };
    let Some(tunables) = p2plive::rss::malloc_tunables(current.as_deref()) else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "p2plive".into());
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .env(TUNED, "malloc")
        .exec();
    #[allow(
        clippy::print_stderr,
        reason = "tracing is set up later, by run_binary; this is the one line before it"
    )]
    {
        eprintln!("p2plive: running with glibc's malloc defaults: re-exec failed: {error}");
    }
}
