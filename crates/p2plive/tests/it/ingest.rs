//! Live ingest: MPEG-TS on standard input, over UDP and by HTTP push, each from ffmpeg or a
//! file, cut into blocks at the CDN.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{Infra, bin, get_bytes, get_json, make_clip, sha256_hex};

/// The origin's HTTP push token in these tests.
const INGEST_TOKEN: &str = "tests-ingest-token-0123";

/// Concatenates the CDN's blocks of stream `live` and checks them against the manifest.
async fn cdn_stream(infra: &Infra) -> (Value, Vec<u8>) {
    let sha = infra.wait_end(Duration::from_secs(60)).await;
    let manifest = get_json(&format!("{}/streams/live/manifest", infra.cdn_url())).await;
    let mut all = Vec::new();
    for b in manifest["blocks"].as_array().unwrap() {
        let n = b["number"].as_u64().unwrap();
        let data = get_bytes(&format!("{}/streams/live/blocks/{n}", infra.cdn_url())).await;
        assert_eq!(data.len() as u64, b["size"].as_u64().unwrap());
        assert_eq!(data.len() % 188, 0, "blocks are whole TS packets");
        assert_eq!(sha256_hex(&data), b["sha256"].as_str().unwrap());
        all.extend(data);
    }
    assert_eq!(sha256_hex(&all), sha);
    (manifest, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_input_is_cut_byte_for_byte() {
    let dir = testkit::tempdir();
    let ts = make_clip(dir.path(), "stdin.ts", 4);
    let infra = Infra::start(&[]);
    let bytes = fs_err::read(&ts).unwrap();
    let mut child = Command::new(bin())
        .args([
            "origin",
            "--input",
            "-",
            "--cdn",
            &infra.cdn_url(),
            "--block-ms",
            "500",
        ])
        .env(crate::ORIGIN_ENV.0, crate::ORIGIN_ENV.1)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    assert!(child.wait().unwrap().success());
    let (manifest, all) = cdn_stream(&infra).await;
    assert_eq!(all, bytes);
    let blocks = manifest["blocks"].as_array().unwrap();
    // A 0.5 s target with a 1 s GOP: every block ends at the next key frame, 1 s.
    assert!(blocks.len() >= 4, "4 s in 1 s GOPs: {}", blocks.len());
    for b in &blocks[..blocks.len() - 1] {
        let ms = b["duration_ms"].as_u64().unwrap();
        assert!((950..=1100).contains(&ms), "block duration {ms} ms");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_and_http_push_from_ffmpeg() {
    let dir = testkit::tempdir();
    let clip = make_clip(dir.path(), "push.mp4", 3);
    for scheme in ["udp", "http"] {
        let infra = Infra::start(&[]);
        let port = testkit::free_port();
        let input = match scheme {
            "udp" => format!("udp://127.0.0.1:{port}"),
            _ => format!("http://127.0.0.1:{port}/ingest"),
        };
        let origin = Command::new(bin())
            .args([
                "origin",
                "--input",
                &input,
                "--cdn",
                &infra.cdn_url(),
                "--json",
            ])
            .env(crate::ORIGIN_ENV.0, crate::ORIGIN_ENV.1)
            .env("P2PLIVE_ORIGIN__INGEST_TOKEN", INGEST_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        if scheme == "http" {
            // A push without the ingest token is refused, and the origin keeps waiting.
            for (token, status) in [(None, 401), (Some("wrong-token-0123456"), 403)] {
                let mut request = crate::http().put(&input).body("not the stream");
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                assert_eq!(request.send().await.unwrap().status(), status);
            }
        }
        let mut push = Command::new(testkit::require("ffmpeg"));
        push.args(["-nostdin", "-v", "error", "-re", "-i"])
            .arg(&clip)
            .args(["-c", "copy", "-f", "mpegts"]);
        if scheme == "http" {
            push.args(["-method", "PUT"]);
            push.args([
                "-headers",
                &format!("Authorization: Bearer {INGEST_TOKEN}\r\n"),
            ]);
        } else {
            push.args(["-pkt_size", "1316"]);
        }
        let status = push.arg(&input).status().unwrap();
        assert!(status.success(), "ffmpeg push to {input}");
        let out = origin.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{scheme}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value =
            serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap())
                .unwrap();
        let (manifest, all) = cdn_stream(&infra).await;
        assert_eq!(
            report["blocks"],
            manifest["blocks"].as_array().unwrap().len()
        );
        assert!(report["media_seconds"].as_f64().unwrap() > 2.0, "{report}");
        // The cut stream is real video: ffprobe finds both streams.
        let file = dir.path().join(format!("{scheme}.ts"));
        fs_err::write(&file, &all).unwrap();
        let probe = Command::new(testkit::require("ffprobe"))
            .args([
                "-v",
                "error",
                "-show_entries",
                "stream=codec_name",
                "-of",
                "csv=p=0",
            ])
            .arg(&file)
            .output()
            .unwrap();
        let codecs = String::from_utf8_lossy(&probe.stdout);
        assert!(
            codecs.contains("h264") && codecs.contains("aac"),
            "{scheme}: {codecs}"
        );
    }
}

/// Bounded origin memory (issue 16 item 5): a file input is streamed, not read whole before
/// cutting. Through a FIFO, blocks reach the CDN while the writer still holds back the second
/// half of the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_input_is_streamed_not_read_whole_first() {
    let dir = testkit::tempdir();
    let ts = make_clip(dir.path(), "fifo-source.ts", 6);
    let bytes = fs_err::read(&ts).unwrap();
    let fifo = dir.path().join("input.ts");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo");
    let infra = Infra::start(&[]);
    let fifo_arg = fifo.to_str().unwrap().to_owned();
    let mut origin = testkit::Peer::new(bin())
        .args(["origin", "--input", &fifo_arg, "--cdn", &infra.cdn_url()])
        .args(["--speed", "50"])
        .env(crate::ORIGIN_ENV.0, crate::ORIGIN_ENV.1)
        .ready(testkit::Ready::Started)
        .start();
    let half = bytes.len() / 2;
    let mut writer = tokio::task::spawn_blocking({
        let (fifo, first) = (fifo.clone(), bytes[..half].to_vec());
        move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            f.write_all(&first).unwrap();
            f
        }
    })
    .await
    .unwrap();
    // Without streaming the origin would wait for the end of the file before cutting.
    infra.wait_cut(1, Duration::from_secs(20)).await;
    writer.write_all(&bytes[half..]).unwrap();
    drop(writer);
    let (_, all) = cdn_stream(&infra).await;
    assert_eq!(all, bytes);
    // The origin exits 0 after the end of stream (it is killed on drop if the test fails).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = origin.child().try_exit_status() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the origin did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{}", origin.log());
}
