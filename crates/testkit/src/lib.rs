#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod clip;

pub use clip::TestClip;
pub use svckit::TestClock;
use svckit::process::{ChildGuard, ProcessError, ProcessSpec, Readiness, find_program};

/// The command that installs every external program the tests need.
pub const SETUP_COMMAND: &str = "scripts/setup";

/// Root of the workspace checkout (where `scripts/setup` and `data/` live).
pub fn workspace_root() -> PathBuf {
    // crates/testkit -> crates -> root
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// A file or directory under the workspace's `data/` folder (the bundled real inputs).
pub fn data_path(relative: &str) -> PathBuf {
    workspace_root().join("data").join(relative)
}

/// The package that provides `program`, for the missing-program message.
fn provider(program: &str) -> &'static str {
    match program {
        "ffmpeg" | "ffprobe" => "Debian package ffmpeg",
        "chromium" => "Debian package chromium",
        "gst-launch-1.0" | "gst-inspect-1.0" => "Debian package gstreamer1.0-tools",
        "protoc" => "Debian package protobuf-compiler",
        "etcd" | "etcdctl" => "Debian package etcd-server",
        "nginx" => "Debian package nginx",
        "initdb" | "pg_ctl" | "postgres" | "psql" => "Debian package postgresql",
        "anvil" => "npm package @foundry-rs/anvil-linux-amd64 in .tools/",
        "cast" => "npm package @foundry-rs/cast-linux-amd64 in .tools/",
        "python" | "python3" => "Python 3 (the venv in .tools/venv for benchmark peers)",
        _ => "the set-up script",
    }
}

/// Extra directories searched for programs: the workspace's `.tools/bin` (npm tools), the
/// benchmark virtual environment and PostgreSQL's versioned `bin` directories.
fn extra_dirs() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut dirs = vec![root.join(".tools/bin"), root.join(".tools/venv/bin")];
    if let Ok(entries) = fs_err::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        dirs.extend(versions.into_iter().rev());
    }
    dirs
}

/// Finds `program` like [`svckit::process::find_program`], also looking in the workspace's
/// `.tools/bin`, `.tools/venv/bin` and `/usr/lib/postgresql/*/bin`.
///
/// # Errors
/// A message naming the set-up command and the providing package.
pub fn find(program: &str) -> Result<PathBuf, String> {
    extra_dirs()
        .into_iter()
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .or_else(|| find_program(program))
        .ok_or_else(|| missing_message(program))
}

fn missing_message(program: &str) -> String {
    format!(
        "required program `{program}` is not installed ({}); run `{SETUP_COMMAND}` from the workspace root",
        provider(program)
    )
}

/// The path of `program`.
///
/// # Panics
/// When the program is missing, with a message naming `scripts/setup`: tests that need a real
/// peer fail rather than skip.
pub fn require(program: &str) -> PathBuf {
    match find(program) {
        Ok(path) => path,
        Err(message) => panic!("{message}"),
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; another process may take it in between,
/// which [`Peer::start`] tolerates by retrying).
///
/// # Panics
/// When no port can be bound on 127.0.0.1.
pub fn free_port() -> u16 {
    match TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr())
    {
        Ok(addr) => addr.port(),
        Err(error) => panic!("cannot bind a port on 127.0.0.1: {error}"),
    }
}

/// A fresh temporary directory, removed on drop.
///
/// # Panics
/// When the system temporary directory is not writable.
pub fn tempdir() -> tempfile::TempDir {
    match tempfile::Builder::new().prefix("testkit-").tempdir() {
        Ok(dir) => dir,
        Err(error) => panic!("cannot create a temporary directory: {error}"),
    }
}

/// How [`Peer::start`] decides the program is ready.
#[derive(Debug, Clone)]
pub enum Ready {
    /// A TCP connect to `127.0.0.1:{port}` succeeds.
    Tcp,
    /// `GET http://127.0.0.1:{port}{path}` answers 2xx or 3xx.
    Http(&'static str),
    /// The program's output contains this text (placeholders are substituted).
    Log(String),
    /// Nothing to wait for (a one-shot tool).
    Started,
}

/// An external program to run for a test. See the crate docs.
#[derive(Debug, Clone)]
pub struct Peer {
    program: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    ready: Ready,
    deadline: Duration,
    attempts: u32,
}

impl Peer {
    /// A peer running `program` (found by [`find`]). Defaults: ready on TCP, a 20 s deadline.
    pub fn new(program: &str) -> Self {
        Self {
            program: program.to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            ready: Ready::Tcp,
            deadline: Duration::from_secs(20),
            attempts: 3,
        }
    }

    /// Appends arguments; `{port}` and `{dir}` are replaced by the chosen port and directory.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable (placeholders are replaced in the value).
    #[must_use]
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// How readiness is checked.
    #[must_use]
    pub fn ready(mut self, ready: Ready) -> Self {
        self.ready = ready;
        self
    }

    /// How long to wait for readiness per attempt.
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Starts the peer, retrying on a new port when it exits early (a port taken in between).
    ///
    /// # Errors
    /// [`ProcessError::NotFound`] when the program is missing (its message does not name the
    /// set-up command; [`Peer::start`] adds it), or the last attempt's failure with the log tail.
    pub fn try_start(&self) -> Result<RunningPeer, ProcessError> {
        let program = find(&self.program).map_err(|_| ProcessError::NotFound {
            program: self.program.clone(),
        })?;
        let mut last_error = None;
        for _ in 0..self.attempts.max(1) {
            let dir = tempdir();
            let port = free_port();
            let fill = |text: &str| {
                text.replace("{port}", &port.to_string())
                    .replace("{dir}", &dir.path().display().to_string())
            };
            let mut spec = ProcessSpec::new(program.display().to_string())
                .args(self.args.iter().map(|a| fill(a)))
                .current_dir(dir.path())
                .log_file(dir.path().join("peer.log"));
            for (key, value) in &self.envs {
                spec = spec.env(key, fill(value));
            }
            let mut child = spec.spawn()?;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let check = match &self.ready {
                Ready::Tcp => Some(Readiness::Tcp(addr)),
                Ready::Http(path) => Some(Readiness::Http {
                    addr,
                    path: (*path).to_owned(),
                }),
                Ready::Log(text) => Some(Readiness::LogContains(fill(text))),
                Ready::Started => None,
            };
            let outcome = match &check {
                Some(check) => child.wait_ready(check, self.deadline),
                None => Ok(()),
            };
            match outcome {
                Ok(()) => return Ok(RunningPeer { child, port, dir }),
                // Exited early: most likely the port was taken; try another.
                Err(error @ ProcessError::Exited { .. }) => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or(ProcessError::NotFound {
            program: self.program.clone(),
        }))
    }

    /// Starts the peer like [`Peer::try_start`].
    ///
    /// # Panics
    /// When the program is missing (the message names `scripts/setup`) or never becomes ready
    /// (the message holds the log tail).
    pub fn start(&self) -> RunningPeer {
        match self.try_start() {
            Ok(peer) => peer,
            Err(ProcessError::NotFound { program }) => panic!("{}", missing_message(&program)),
            Err(error) => panic!("starting test peer `{}` failed: {error}", self.program),
        }
    }
}

/// A started peer; dropping it stops the program and removes its directory.
#[derive(Debug)]
pub struct RunningPeer {
    // Field order matters: the child is stopped before its directory is removed.
    child: ChildGuard,
    port: u16,
    dir: tempfile::TempDir,
}

impl RunningPeer {
    /// The port the peer was given.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:{port}`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The peer's private directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the peer printed so far.
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// The peer's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The underlying guard, to send signals or kill the peer (`kill -9`) mid-test.
    pub fn child(&mut self) -> &mut ChildGuard {
        &mut self.child
    }
}
