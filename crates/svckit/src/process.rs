//! External programs as guarded child processes (style.md 2.2: "each process is killed on
//! `Drop`"). Demos use this directly; tests use it through `testkit`, which adds free ports,
//! per-test directories and failure messages.
//!
//! A [`ChildGuard`] owns a child started in its own process group with stdout and stderr in a
//! log file. [`ChildGuard::wait_ready`] polls a [`Readiness`] check until a deadline, failing
//! early if the child exits, and dropping the guard sends SIGTERM to the whole group, waits a
//! bounded time, then sends SIGKILL and reaps the child. Nothing is left running.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use tracing::{debug, warn};

/// Environment variable naming extra directories (`:`-separated) searched by
/// [`find_program`] before `PATH`.
pub const TOOLS_DIR_ENV: &str = "SVCKIT_TOOLS_DIR";

/// How long [`ChildGuard`]'s `Drop` waits after SIGTERM before SIGKILL.
pub const DROP_GRACE: Duration = Duration::from_secs(3);

/// Why starting or checking a child failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The program is not on `PATH`, in `$SVCKIT_TOOLS_DIR` or in `./.tools/bin`.
    #[error("program `{program}` not found on PATH, in ${TOOLS_DIR_ENV} or in ./.tools/bin")]
    NotFound {
        /// The program name as given.
        program: String,
    },
    /// The operating system refused to start the program.
    #[error("starting `{program}` failed")]
    Spawn {
        /// The resolved program path.
        program: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The log file could not be created.
    #[error("creating log file `{path}` failed")]
    Log {
        /// The log file path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The child exited before it became ready.
    #[error("`{program}` exited with {status} before it was ready; log tail:\n{log_tail}")]
    Exited {
        /// The program name.
        program: String,
        /// Its exit status.
        status: ExitStatus,
        /// The last lines of its output.
        log_tail: String,
    },
    /// The readiness check did not pass before the deadline.
    #[error("`{program}` was not ready ({check}) within {waited:?}; log tail:\n{log_tail}")]
    NotReady {
        /// The program name.
        program: String,
        /// The check that kept failing.
        check: String,
        /// How long it was polled.
        waited: Duration,
        /// The last lines of its output.
        log_tail: String,
    },
}

/// When a started child counts as ready.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Readiness {
    /// A TCP connection to this address succeeds.
    Tcp(SocketAddr),
    /// `GET path` on this address answers with a 2xx or 3xx status.
    Http {
        /// Address of the HTTP server.
        addr: SocketAddr,
        /// Path to request, starting with `/`.
        path: String,
    },
    /// The child's combined output contains this text.
    LogContains(String),
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "TCP connect to {addr}"),
            Self::Http { addr, path } => write!(f, "HTTP GET http://{addr}{path}"),
            Self::LogContains(text) => write!(f, "log line containing {text:?}"),
        }
    }
}

/// Finds `program`: a path containing `/` is taken as is; a bare name is searched in
/// `$SVCKIT_TOOLS_DIR`, then `./.tools/bin`, then `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.is_file().then_some(path);
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(extra) = std::env::var_os(TOOLS_DIR_ENV) {
        dirs.extend(std::env::split_paths(&extra));
    }
    dirs.push(PathBuf::from(".tools/bin"));
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

static LOG_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What to start: a builder for [`ChildGuard`].
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    program: String,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    log_file: Option<PathBuf>,
}

impl ProcessSpec {
    /// A child running `program` (a bare name resolved by [`find_program`], or a path).
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            cwd: None,
            log_file: None,
        }
    }

    /// Appends one argument.
    #[must_use]
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child.
    #[must_use]
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Runs the child in `dir`.
    #[must_use]
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Writes the child's stdout and stderr to `path` (kept after the child stops). Without it,
    /// a file in the system temporary directory is used and removed on drop.
    #[must_use]
    pub fn log_file(mut self, path: impl AsRef<Path>) -> Self {
        self.log_file = Some(path.as_ref().to_path_buf());
        self
    }

    /// The program name as given.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Starts the child in a new process group.
    ///
    /// # Errors
    /// [`ProcessError::NotFound`], [`ProcessError::Log`] or [`ProcessError::Spawn`].
    pub fn spawn(self) -> Result<ChildGuard, ProcessError> {
        let resolved = find_program(&self.program).ok_or_else(|| ProcessError::NotFound {
            program: self.program.clone(),
        })?;
        let (log_path, remove_log) = match self.log_file {
            Some(path) => (path, false),
            None => {
                let n = LOG_COUNTER.fetch_add(1, Ordering::Relaxed);
                let stem = Path::new(&self.program)
                    .file_name()
                    .map_or_else(|| "child".into(), |s| s.to_string_lossy().into_owned());
                let path = std::env::temp_dir()
                    .join(format!("svckit-{stem}-{}-{n}.log", std::process::id()));
                (path, true)
            }
        };
        let log = fs_err::File::create(&log_path).map_err(|source| ProcessError::Log {
            path: log_path.clone(),
            source,
        })?;
        let log_err = log.file().try_clone().map_err(|source| ProcessError::Log {
            path: log_path.clone(),
            source,
        })?;
        let mut command = Command::new(&resolved);
        command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.into_parts().0))
            .stderr(Stdio::from(log_err))
            .process_group(0);
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        let child = command.spawn().map_err(|source| ProcessError::Spawn {
            program: resolved.display().to_string(),
            source,
        })?;
        debug!(program = %self.program, pid = child.id(), log = %log_path.display(), "child started");
        Ok(ChildGuard {
            name: self.program,
            child,
            log_path,
            remove_log,
            reaped: None,
        })
    }
}

/// A running child process that is stopped, with its whole process group, when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    log_path: PathBuf,
    remove_log: bool,
    reaped: Option<ExitStatus>,
}

impl ChildGuard {
    /// The child's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The program name the child was started with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Path of the file holding the child's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The child's whole output so far (lossy UTF-8); empty if the log cannot be read.
    pub fn log(&self) -> String {
        let mut bytes = Vec::new();
        if let Ok(mut file) = fs_err::File::open(&self.log_path) {
            let _ = file.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The last `lines` lines of the child's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The exit status if the child has exited (reaping it), `None` while it runs.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.reaped.is_none() {
            self.reaped = self.child.try_wait().ok().flatten();
        }
        self.reaped
    }

    /// Polls `check` every 50 ms until it passes or `deadline` has elapsed.
    ///
    /// # Errors
    /// [`ProcessError::Exited`] if the child stops first, [`ProcessError::NotReady`] on timeout;
    /// both carry the tail of the child's log.
    pub fn wait_ready(
        &mut self,
        check: &Readiness,
        deadline: Duration,
    ) -> Result<(), ProcessError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_exit_status() {
                return Err(ProcessError::Exited {
                    program: self.name.clone(),
                    status,
                    log_tail: self.log_tail(30),
                });
            }
            let ready = match check {
                Readiness::Tcp(addr) => {
                    TcpStream::connect_timeout(addr, Duration::from_millis(300)).is_ok()
                }
                Readiness::Http { addr, path } => http_ok(*addr, path),
                Readiness::LogContains(text) => self.log().contains(text.as_str()),
            };
            if ready {
                debug!(program = %self.name, waited_ms = started.elapsed().as_millis(), "child ready");
                return Ok(());
            }
            if started.elapsed() >= deadline {
                return Err(ProcessError::NotReady {
                    program: self.name.clone(),
                    check: check.to_string(),
                    waited: started.elapsed(),
                    log_tail: self.log_tail(30),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` to the child's process group (no-op once it has been reaped).
    pub fn signal(&mut self, signal: Signal) {
        if self.try_exit_status().is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id())
            && let Err(error) = killpg(Pid::from_raw(pid), signal)
        {
            debug!(program = %self.name, %error, "signalling process group failed");
        }
    }

    /// SIGKILL to the process group now, then reap: a crash as `kill -9` makes it.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        self.signal(Signal::SIGKILL);
        self.reap()
    }

    /// SIGTERM to the process group, wait up to `grace`, then SIGKILL; reaps the child.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.try_exit_status() {
            return Some(status);
        }
        self.signal(Signal::SIGTERM);
        let started = Instant::now();
        while started.elapsed() < grace {
            if let Some(status) = self.try_exit_status() {
                // The leader is gone; make sure no other group member lingers.
                self.signal_group_leftovers();
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        warn!(program = %self.name, grace_ms = grace.as_millis(), "child ignored SIGTERM; killing");
        self.kill()
    }

    fn signal_group_leftovers(&self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    fn reap(&mut self) -> Option<ExitStatus> {
        if self.reaped.is_none() {
            self.reaped = self.child.wait().ok();
        }
        self.reaped
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.terminate(DROP_GRACE);
        if self.remove_log {
            let _ = fs_err::remove_file(&self.log_path);
        }
    }
}

/// `GET path` over a fresh connection; true on a 2xx or 3xx status line.
fn http_ok(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0_u8; 16];
    let mut filled = 0;
    while filled < head.len() {
        match stream.read(&mut head[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    // "HTTP/1.x NNN"
    let line = String::from_utf8_lossy(&head[..filled]);
    line.get(9..12)
        .and_then(|code| code.parse::<u16>().ok())
        .is_some_and(|code| (200..400).contains(&code))
}
