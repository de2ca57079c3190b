//! A private PostgreSQL server per test on 127.0.0.1. As root (CI), initdb and postgres refuse
//! to run, so they run as the `postgres` user (runuser) in a directory it owns.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use testkit::{Peer, Ready, RunningPeer};

pub(crate) struct Postgres {
    // Stopped before its directory is removed.
    peer: RunningPeer,
    _dir: tempfile::TempDir,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs `program args` (as the postgres user when root) and panics with its output on failure.
fn run_as_owner(root: bool, program: &Path, args: &[&str]) {
    let mut command = if root {
        let mut c = Command::new(testkit::require("runuser"));
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let output = command.args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Postgres {
    pub(crate) fn start() -> Self {
        let initdb = testkit::require("initdb");
        let postgres = testkit::require("postgres");
        let root = is_root();
        let dir = testkit::tempdir();
        if root {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown of the PostgreSQL directory failed");
        }
        let data = dir.path().join("data");
        let data_arg = data.display().to_string();
        run_as_owner(
            root,
            &initdb,
            &[
                "-D",
                &data_arg,
                "-U",
                "relay",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let mut args: Vec<String> = Vec::new();
        if root {
            args.extend(["-u", "postgres", "--"].map(str::to_owned));
            args.push(postgres.display().to_string());
        }
        args.extend(
            [
                "-D",
                &data_arg,
                "-p",
                "{port}",
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                &format!("unix_socket_directories={}", dir.path().display()),
                "-c",
                "fsync=off",
                "-c",
                "max_connections=100",
            ]
            .map(str::to_owned),
        );
        let program = if root {
            testkit::require("runuser").display().to_string()
        } else {
            postgres.display().to_string()
        };
        let peer = Peer::new(&program)
            .args(args)
            .ready(Ready::Log(
                "database system is ready to accept connections".to_owned(),
            ))
            .deadline(Duration::from_secs(30))
            .start();
        Self { peer, _dir: dir }
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://relay@127.0.0.1:{}/postgres", self.peer.port())
    }
}
