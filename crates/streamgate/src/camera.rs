//! The camera for the demo, the bench and the tests: a real RTSP server (gst-rtsp-server,
//! Debian packages installed by `scripts/setup`) started from the launcher script
//! `camera/rtsp_camera.py`, which is embedded in the binary and run with Debian's
//! `/usr/bin/python3` (where `python3-gi` lives).
//!
//! Mount points: `/main_stream` (a clip, MP4 or TS, looped in real time and encoded like an
//! IP camera: H.264 with 1 s GOP and B-frames, plus AAC when the clip has audio),
//! `/sub_stream` (a live 640x360 test pattern, H.264 zero-latency, no audio), `/aux_stream`
//! (a live 320x240 SMPTE pattern with a 440 Hz AAC tone), `/h265_stream` (a live H.265
//! pattern), and for each file given: `/file/{name}` (the file's own encoded streams, looped,
//! without re-encoding, so its real GOP pattern reaches the media server) and `/once/{name}`
//! (the file played once per session). Every path but `/once/*` is a shared media factory; the
//! script logs one `camera: session path=...` line per RTSP session, which is how the camera
//! side counts upstream pulls.

use std::path::{Path, PathBuf};
use std::time::Duration;

use svckit::process::{ChildGuard, ProcessError, ProcessSpec, Readiness};

/// The launcher script.
pub const SCRIPT: &str = include_str!("../camera/rtsp_camera.py");
/// The interpreter that has `python3-gi` (Debian's, not a pyenv or venv one).
pub const PYTHON: &str = "/usr/bin/python3";
/// The camera's mount points.
pub const PATHS: [&str; 4] = ["/main_stream", "/sub_stream", "/aux_stream", "/h265_stream"];
/// Text of the readiness log line.
const READY: &str = "camera: listening";

/// Why the camera did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CameraError {
    /// The input clip does not exist.
    #[error("camera input `{0}` does not exist")]
    NoInput(PathBuf),
    /// The script could not be written to the temporary directory.
    #[error("writing the camera script failed")]
    Script(#[source] std::io::Error),
    /// Python or GStreamer is missing, or the camera exited or never became ready (the
    /// message holds its log; run `scripts/setup`).
    #[error("camera did not start (run scripts/setup if GStreamer is missing)")]
    Process(#[source] ProcessError),
}

/// A running camera process, stopped (with its process group) when dropped.
#[derive(Debug)]
pub struct Camera {
    // The child first: it stops before its directory goes.
    child: ChildGuard,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Camera {
    /// Starts the camera on `127.0.0.1:port` serving `input` at `/main_stream`, and waits up
    /// to `ready_within` for it to listen. Blocking (it polls the log): call it from
    /// `spawn_blocking` in async code.
    ///
    /// # Errors
    /// [`CameraError`].
    pub fn start(port: u16, input: &Path, ready_within: Duration) -> Result<Self, CameraError> {
        Self::start_with_files(port, input, &[], ready_within)
    }

    /// As [`Camera::start`], also serving each `(name, file)` of `files` without re-encoding at
    /// `/file/{name}` (looped) and `/once/{name}` (once per session).
    ///
    /// # Errors
    /// [`CameraError`].
    pub fn start_with_files(
        port: u16,
        input: &Path,
        files: &[(&str, PathBuf)],
        ready_within: Duration,
    ) -> Result<Self, CameraError> {
        if !input.is_file() {
            return Err(CameraError::NoInput(input.to_path_buf()));
        }
        if let Some((_, missing)) = files.iter().find(|(_, path)| !path.is_file()) {
            return Err(CameraError::NoInput(missing.clone()));
        }
        let dir = tempfile::Builder::new()
            .prefix("streamgate-camera-")
            .tempdir()
            .map_err(CameraError::Script)?;
        let script = dir.path().join("rtsp_camera.py");
        fs_err::write(&script, SCRIPT).map_err(CameraError::Script)?;
        let mut spec = ProcessSpec::new(PYTHON)
            .arg(&script)
            .args(["--port", &port.to_string(), "--input"])
            .arg(input);
        for (name, path) in files {
            spec = spec.arg("--file").arg(format!("{name}={}", path.display()));
        }
        let mut child = spec
            .log_file(dir.path().join("camera.log"))
            .spawn()
            .map_err(CameraError::Process)?;
        child
            .wait_ready(&Readiness::LogContains(READY.to_owned()), ready_within)
            .map_err(CameraError::Process)?;
        Ok(Self {
            child,
            port,
            _dir: dir,
        })
    }

    /// The RTSP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rtsp://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("rtsp://127.0.0.1:{}{path}", self.port)
    }

    /// Everything the camera logged.
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// RTSP sessions opened on `path` (e.g. `/main_stream`) so far, counted at the camera.
    pub fn sessions(&self, path: &str) -> usize {
        count_sessions(&self.log(), path)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// Counts `camera: session path={path} ` lines in a camera log.
pub fn count_sessions(log: &str, path: &str) -> usize {
    let needle = format!("camera: session path={path} ");
    log.lines().filter(|line| line.starts_with(&needle)).count()
}

#[cfg(test)]
mod tests {
    use super::count_sessions;

    #[test]
    fn counts_sessions_per_path() {
        let log = "camera: listening rtsp://127.0.0.1:1 main=640x360@24/1 audio=aac\n\
                   camera: session path=/main_stream session=a client=127.0.0.1\n\
                   camera: play path=/main_stream session=a\n\
                   camera: session path=/main_stream_2 session=b client=127.0.0.1\n\
                   camera: session path=/sub_stream session=c client=127.0.0.1\n";
        assert_eq!(count_sessions(log, "/main_stream"), 1);
        assert_eq!(count_sessions(log, "/sub_stream"), 1);
        assert_eq!(count_sessions(log, "/aux_stream"), 0);
    }
}
