#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "test code: a panic is a test failure"
)]
//! Integration tests of the `dataloop` binary and library on the bundled real logs: one binary,
//! one module per capability.

mod delta_reader;
mod http_api;
mod ingest_faults;
mod integrity;
mod manual_trigger;
mod native_trajectory;
mod object_storage;
mod pinned_eval;
mod safe_service;
mod take_by_id;
mod web_view;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `dataloop` binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_dataloop"))
}

/// Runs `dataloop --data-dir DIR ARGS...` and returns its output.
pub fn dataloop(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .current_dir(testkit::workspace_root())
        .output()
        .expect("running dataloop")
}

/// Like [`dataloop`] but panics with the output unless the exit code is `code`.
pub fn dataloop_ok(data_dir: &Path, args: &[&str], code: i32) -> String {
    let output = dataloop(data_dir, args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.code(),
        Some(code),
        "dataloop {args:?}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The last stdout line parsed as JSON.
pub fn last_json(stdout: &str) -> serde_json::Value {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .expect("output");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// The Python of `.tools/venv` (independent readers, DuckDB); installed by scripts/setup.
pub fn python() -> PathBuf {
    let p = testkit::workspace_root().join(".tools/venv/bin/python");
    assert!(p.exists(), "{} is missing: run scripts/setup", p.display());
    p
}

/// `dataloop sql --json` returning the `clip_id` column, sorted.
pub fn sql_ids(data_dir: &Path, sql: &str) -> Vec<String> {
    let out = dataloop_ok(data_dir, &["sql", sql, "--json"], 0);
    let mut ids: Vec<String> = last_json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["clip_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}
