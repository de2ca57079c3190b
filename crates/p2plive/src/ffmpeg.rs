//! The ffmpeg runs p2plive makes: the origin's lossless MP4-to-TS remux, a live encoder's
//! re-encode at a fixed GOP, and the decode check the demo applies to what late viewers got.
//!
//! Every run is a guarded child (killed with its process group when the future is dropped)
//! writing its stderr to a log file in a temporary directory; a failure carries the last
//! lines of that log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use svckit::process::{ProcessError, ProcessSpec};
use tracing::info;

use crate::error::Error;

/// How often a running ffmpeg is polled for its exit.
const POLL: Duration = Duration::from_millis(20);

/// Runs `ffmpeg -nostdin -v error -y ARGS` with its stderr in `dir/ffmpeg.log`; returns the
/// log's text.
///
/// # Errors
/// [`Error::FfmpegMissing`] when ffmpeg is not installed; `failed(stderr_tail)` when it
/// cannot be started or exits unsuccessfully.
async fn ffmpeg(
    dir: &Path,
    args: &[&std::ffi::OsStr],
    failed: impl Fn(String) -> Error,
) -> Result<String, Error> {
    let mut child = ProcessSpec::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .log_file(dir.join("ffmpeg.log"))
        .spawn()
        .map_err(|error| match error {
            ProcessError::NotFound { .. } => Error::FfmpegMissing,
            other => failed(other.to_string()),
        })?;
    let status = loop {
        if let Some(status) = child.try_exit_status() {
            break status;
        }
        tokio::time::sleep(POLL).await;
    };
    if !status.success() {
        return Err(failed(child.log_tail(3).replace('\n', " | ")));
    }
    Ok(child.log())
}

fn temp_dir() -> Result<tempfile::TempDir, Error> {
    tempfile::tempdir().map_err(|source| Error::Io {
        path: std::env::temp_dir(),
        source,
    })
}

/// Remuxes an MP4 file to TS (`-c copy -bsf:v h264_mp4toannexb -f mpegts`, lossless) in a
/// new temporary directory; returns the directory (delete it by dropping) and the TS path.
///
/// # Errors
/// [`Error::FfmpegMissing`], or [`Error::Remux`] with ffmpeg's complaint.
pub async fn remux_mp4(path: &Path) -> Result<(tempfile::TempDir, PathBuf), Error> {
    let dir = temp_dir()?;
    let out = dir.path().join("remux.ts");
    info!(input = %path.display(), "remuxing MP4 to MPEG-TS (ffmpeg -c copy)");
    let args = [
        "-i".as_ref(),
        path.as_os_str(),
        "-map".as_ref(),
        "0".as_ref(),
        "-c".as_ref(),
        "copy".as_ref(),
        "-bsf:v".as_ref(),
        "h264_mp4toannexb".as_ref(),
        "-f".as_ref(),
        "mpegts".as_ref(),
        out.as_os_str(),
    ];
    ffmpeg(dir.path(), &args, |stderr_tail| Error::Remux {
        path: path.to_path_buf(),
        stderr_tail,
    })
    .await?;
    Ok((dir, out))
}

/// Re-encodes a video file (any container ffmpeg reads) to MPEG-TS the way a live encoder
/// does: H.264 (libx264, `veryfast`) with a key frame forced every `gop_ms` of media and no
/// scene-cut key frames, so every block the cutter ends at the first key frame after its
/// target duration is one GOP that decodes on its own (issue 16 item 1); audio is re-encoded
/// to AAC. The bitrate is capped at 500 kb/s (the bundled clip's video is ~420 kb/s).
///
/// Returns the TS file, in a temporary directory deleted with it (a 60 s clip is ~4 MB, a
/// 600 s one ~46 MB: kept on disk, not in memory).
///
/// # Errors
/// [`Error::Config`] for `gop_ms` 0; [`Error::FfmpegMissing`]; [`Error::Encode`] with
/// ffmpeg's complaint; [`Error::Io`] creating the temporary directory.
pub async fn encode_live(path: &Path, gop_ms: u64) -> Result<TempTs, Error> {
    if gop_ms == 0 {
        return Err(Error::Config("the GOP must be longer than 0 ms".to_owned()));
    }
    let dir = temp_dir()?;
    let out = dir.path().join("live.ts");
    let gop_s = format!("{:.3}", gop_ms as f64 / 1000.0);
    let force = format!("expr:gte(t,n_forced*{gop_s})");
    info!(input = %path.display(), gop_ms, "encoding as a live encoder would (libx264, fixed GOP)");
    let args = [
        "-i".as_ref(),
        path.as_os_str(),
        "-map".as_ref(),
        "0:v:0".as_ref(),
        "-map".as_ref(),
        "0:a?".as_ref(),
        "-c:v".as_ref(),
        "libx264".as_ref(),
        "-preset".as_ref(),
        "veryfast".as_ref(),
        "-pix_fmt".as_ref(),
        "yuv420p".as_ref(),
        "-b:v".as_ref(),
        "450k".as_ref(),
        "-maxrate".as_ref(),
        "500k".as_ref(),
        "-bufsize".as_ref(),
        "1000k".as_ref(),
        "-force_key_frames".as_ref(),
        force.as_ref(),
        "-sc_threshold".as_ref(),
        "0".as_ref(),
        "-c:a".as_ref(),
        "aac".as_ref(),
        "-b:a".as_ref(),
        "96k".as_ref(),
        "-f".as_ref(),
        "mpegts".as_ref(),
        out.as_os_str(),
    ];
    ffmpeg(dir.path(), &args, |stderr_tail| Error::Encode {
        path: path.to_path_buf(),
        stderr_tail,
    })
    .await?;
    Ok(TempTs {
        _dir: dir,
        path: out,
    })
}

/// An MPEG-TS file in a temporary directory of its own, deleted when this is dropped (what
/// [`encode_live`] writes: the stream stays on disk, so a long input costs no memory).
#[derive(Debug)]
pub struct TempTs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TempTs {
    /// The TS file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Decodes the MPEG-TS file `input` fully (`ffmpeg -v error -i FILE -f null -`) and returns
/// ffmpeg's error lines: empty when every frame decoded (what a player joining mid-stream
/// must see, issue 16 item 1).
///
/// # Errors
/// [`Error::Io`] creating the directory of ffmpeg's log, [`Error::FfmpegMissing`], or
/// [`Error::Encode`] when ffmpeg cannot read the input at all.
pub async fn decode_errors(input: &Path) -> Result<Vec<String>, Error> {
    let dir = temp_dir()?;
    let args = [
        "-i".as_ref(),
        input.as_os_str(),
        "-f".as_ref(),
        "null".as_ref(),
        "-".as_ref(),
    ];
    let log = ffmpeg(dir.path(), &args, |stderr_tail| Error::Encode {
        path: input.to_path_buf(),
        stderr_tail,
    })
    .await?;
    Ok(log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect())
}
