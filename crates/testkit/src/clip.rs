//! Synthetic H.264 clips made by a real ffmpeg from its `lavfi` test sources, for the tests of
//! the media systems (p2plive, streamgate).

use std::path::Path;
use std::process::Command;

use crate::require;

/// An ffmpeg test clip: `seconds` of a `lavfi` pattern (`testsrc` or `testsrc2`) encoded with
/// libx264 `ultrafast` in yuv420p at `size` and `fps`, optionally with a fixed GOP (key frame
/// every `gop` frames, no scene-cut key frames), B-frames and a 440 Hz AAC tone. The output's
/// extension picks the container (`.mp4`, `.ts`, ...).
#[derive(Debug, Clone)]
pub struct TestClip {
    pattern: &'static str,
    size: &'static str,
    fps: u32,
    seconds: u32,
    gop: Option<u32>,
    b_frames: Option<u32>,
    audio: bool,
}

impl TestClip {
    /// `seconds` of `testsrc2` at 320x180, 25 fps, ffmpeg's default GOP, no audio.
    pub fn new(seconds: u32) -> Self {
        Self {
            pattern: "testsrc2",
            size: "320x180",
            fps: 25,
            seconds,
            gop: None,
            b_frames: None,
            audio: false,
        }
    }

    /// The `lavfi` source (`testsrc`, `testsrc2`).
    pub fn pattern(mut self, pattern: &'static str) -> Self {
        self.pattern = pattern;
        self
    }

    /// The frame size, `WIDTHxHEIGHT`.
    pub fn size(mut self, size: &'static str) -> Self {
        self.size = size;
        self
    }

    /// A key frame every `frames` frames and only then (`-g`, `-keyint_min`, no scene cuts).
    pub fn gop(mut self, frames: u32) -> Self {
        self.gop = Some(frames);
        self
    }

    /// `frames` B-frames between references (`-bf`).
    pub fn b_frames(mut self, frames: u32) -> Self {
        self.b_frames = Some(frames);
        self
    }

    /// Adds a 440 Hz sine tone as AAC at 64 kbit/s.
    pub fn audio(mut self) -> Self {
        self.audio = true;
        self
    }

    /// Writes the clip to `out`.
    ///
    /// # Panics
    /// When ffmpeg is missing or fails (a test fixture: the test cannot go on without it).
    pub fn write(&self, out: &Path) {
        let mut command = Command::new(require("ffmpeg"));
        command.args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"]);
        command.arg(format!(
            "{}=size={}:rate={}:duration={}",
            self.pattern, self.size, self.fps, self.seconds
        ));
        if self.audio {
            command.args(["-f", "lavfi", "-i"]);
            command.arg(format!("sine=frequency=440:duration={}", self.seconds));
        }
        command.args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ]);
        if let Some(gop) = self.gop {
            let gop = gop.to_string();
            command.args(["-g", &gop, "-keyint_min", &gop, "-sc_threshold", "0"]);
        }
        if let Some(b) = self.b_frames {
            command.args(["-bf", &b.to_string()]);
        }
        if self.audio {
            command.args(["-c:a", "aac", "-b:a", "64k", "-shortest"]);
        }
        command.arg(out);
        match command.status() {
            Ok(status) if status.success() => {}
            Ok(status) => panic!("ffmpeg could not make {}: {status}", out.display()),
            Err(error) => panic!("cannot run ffmpeg for {}: {error}", out.display()),
        }
    }
}
