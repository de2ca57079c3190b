//! The FLV output is accepted by ffprobe and decoded by ffmpeg, with sane timestamps.

use std::process::Command;

use serde_json::Value;

use crate::{camera, forwarder, media, proxy, registry, rtsp, url};

fn probe_args() -> [&'static str; 6] {
    [
        "-v",
        "error",
        "-analyzeduration",
        "500000",
        "-probesize",
        "65536",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffprobe_and_ffmpeg_accept_the_flv_with_b_frames_and_audio() {
    let ffprobe = testkit::require("ffprobe");
    let ffmpeg = testkit::require("ffmpeg");
    let camera = camera();
    let registry = registry().await;
    let _media = media(
        &registry,
        "media-a",
        "NameSpaceA",
        &[
            ("main_stream", rtsp(&camera, "/main_stream")),
            ("sub_stream", rtsp(&camera, "/sub_stream")),
        ],
        |_| {},
    )
    .await;
    let _fwd = forwarder(&registry, "ServiceA", "NameSpaceA", "media-a").await;
    let proxy = proxy(&registry).await;

    // (stream, codecs, width, height, B-frames expected)
    let cases = [
        ("main_stream", "aac,h264", 640, 360, true),
        ("sub_stream", "h264", 640, 360, false),
    ];
    for (stream, codecs, width, height, b_frames) in cases {
        let address = url(
            &proxy,
            &format!("/realtime-ServiceA-NameSpaceA/{stream}/0.flv"),
        );
        let out = tokio::task::block_in_place(|| {
            Command::new(&ffprobe)
                .args(probe_args())
                .args([
                    "-show_entries",
                    "stream=codec_type,codec_name,width,height,has_b_frames",
                ])
                .args(["-of", "json", &address])
                .output()
                .unwrap()
        });
        assert!(
            out.status.success(),
            "{stream}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        let streams = json["streams"].as_array().unwrap();
        let mut names: Vec<&str> = streams
            .iter()
            .map(|s| s["codec_name"].as_str().unwrap())
            .collect();
        names.sort_unstable();
        assert_eq!(names.join(","), codecs, "{stream}: {json}");
        let video = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
        assert_eq!(video["width"], width);
        assert_eq!(video["height"], height);
        assert_eq!(
            video["has_b_frames"].as_u64().unwrap() > 0,
            b_frames,
            "{stream}: {video}"
        );

        // Packets: decoding times never go back, presentation never precedes decoding.
        let out = tokio::task::block_in_place(|| {
            Command::new(&ffprobe)
                .args(probe_args())
                .args(["-select_streams", "v", "-read_intervals", "%+3"])
                .args([
                    "-show_entries",
                    "packet=pts,dts,flags",
                    "-of",
                    "csv=p=0",
                    &address,
                ])
                .output()
                .unwrap()
        });
        assert!(
            out.status.success(),
            "{stream}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let packets: Vec<(i64, i64)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut f = line.split(',');
                Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
            })
            .collect();
        assert!(packets.len() >= 50, "{stream}: {} packets", packets.len());
        assert!(
            packets.iter().all(|(pts, dts)| pts >= dts),
            "{stream}: pts < dts"
        );
        assert!(
            packets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{stream}: dts goes back"
        );
        if b_frames {
            assert!(
                packets.windows(2).any(|w| w[1].0 < w[0].0),
                "{stream}: no reordering seen"
            );
        }

        // A real decoder: 48 frames with no error.
        let out = tokio::task::block_in_place(|| {
            Command::new(&ffmpeg)
                .args(["-nostdin"])
                .args(probe_args())
                .args([
                    "-i",
                    &address,
                    "-map",
                    "0:v",
                    "-frames:v",
                    "48",
                    "-f",
                    "null",
                    "-",
                ])
                .output()
                .unwrap()
        });
        assert!(out.status.success(), "{stream}: ffmpeg failed");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim(),
            "",
            "{stream}: decode errors"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ts_clip_without_audio_gives_an_flv_header_without_audio() {
    let dir = testkit::tempdir();
    let clip = dir.path().join("pattern.ts");
    testkit::TestClip::new(4).gop(25).write(&clip);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("camera/rtsp_camera.py");
    let camera = tokio::task::block_in_place(|| {
        testkit::Peer::new(streamgate::camera::PYTHON)
            .args([
                script.display().to_string(),
                "--port".to_owned(),
                "{port}".to_owned(),
                "--input".to_owned(),
                clip.display().to_string(),
            ])
            .ready(testkit::Ready::Log("camera: listening".to_owned()))
            .deadline(std::time::Duration::from_secs(30))
            .start()
    });
    assert!(
        camera.log().contains("main=320x180@25/1 audio=none"),
        "{}",
        camera.log()
    );
    let registry = registry().await;
    let media = media(
        &registry,
        "media-a",
        "NameSpaceA",
        &[("main_stream", rtsp(&camera, "/main_stream"))],
        |_| {},
    )
    .await;
    let mut viewer = crate::open(&url(&media, "/main_stream/0.flv")).await;
    assert_eq!(viewer.status(), 200);
    let (before, _, _) = viewer
        .until_key_frame(std::time::Duration::from_secs(15))
        .await
        .unwrap()
        .unwrap();
    let header = viewer.header().unwrap();
    assert!(header.has_video && !header.has_audio, "{header:?}");
    assert!(before.iter().all(|t| !t.is_aac_sequence_header()));
}
