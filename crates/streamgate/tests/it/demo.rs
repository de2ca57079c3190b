//! `streamgate demo --json`: every part its own process; the JSON report has the issue's
//! shape, every check holds, and the logs carry the route template and the label.

use std::process::Command;

use serde_json::Value;

use crate::bin;

#[test]
fn demo_passes_its_checks_and_reports_in_the_issue_shape() {
    let out = Command::new(bin())
        .args([
            "demo",
            "--json",
            "--viewers",
            "20",
            "--restart-viewers",
            "10",
            "--keep-logs",
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    let keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "errors",
            "fanout",
            "hls",
            "public_port",
            "restart",
            "streams",
            "ws_flv"
        ]
    );
    let streams = report["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 5);
    for s in streams {
        let fields: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            fields,
            [
                "codec",
                "ffprobe_ok",
                "first_frame_ms",
                "height",
                "url",
                "width"
            ]
        );
        assert_eq!(s["ffprobe_ok"], true, "{s}");
        assert_eq!(s["codec"], "h264");
        assert!(s["url"].as_str().unwrap().starts_with("/realtime-"));
    }
    assert_eq!(report["fanout"]["viewers"], 20);
    assert_eq!(report["fanout"]["upstream_pulls"], 1);
    let restart = &report["restart"];
    let fields: Vec<&str> = restart
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "max_gap_ms",
            "new_addr",
            "ok_after_ms",
            "old_addr",
            "open_viewers",
            "open_viewers_kept"
        ]
    );
    assert!(restart["ok_after_ms"].as_u64().unwrap() <= 1000);
    assert_ne!(restart["old_addr"], restart["new_addr"]);
    assert_eq!(restart["open_viewers"], 10);
    assert_eq!(restart["open_viewers_kept"], 10);
    assert!(restart["max_gap_ms"].as_u64().unwrap() <= 2000, "{restart}");
    let errors = &report["errors"];
    assert_eq!(errors["malformed"], 400);
    assert_eq!(errors["unknown"], 404);
    assert_eq!(errors["camera_down"], 502);
    assert_eq!(errors["unsigned"], 401);
    assert_eq!(errors["expired"], 403);
    let hls = &report["hls"];
    assert_eq!(hls["status"], 200, "{hls}");
    assert_eq!(hls["ffprobe_ok"], true, "{hls}");
    assert!(hls["segments"].as_u64().unwrap() >= 1, "{hls}");
    assert!(
        hls["url"].as_str().unwrap().ends_with("/index.m3u8"),
        "{hls}"
    );
    let ws = &report["ws_flv"];
    assert_eq!(ws["status"], 101, "{ws}");
    assert_eq!(ws["one_tag_per_message"], true, "{ws}");
    assert!(ws["video_frames"].as_u64().unwrap() >= 25, "{ws}");

    // Logs: the proxy's carry the public route template, the forwarders' the media route
    // template, and both the label.
    let logs = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("logs: "))
        .expect("logs directory printed");
    let mut proxy_log = String::new();
    let mut forwarder_log = String::new();
    for entry in fs_err::read_dir(logs).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs_err::read_to_string(&path).unwrap();
        if name.ends_with("-proxy.log") {
            proxy_log = text;
        } else if name.ends_with("-forwarder-ServiceA.log") {
            forwarder_log = text;
        }
    }
    assert!(
        proxy_log.contains(r#"route="/realtime-{service}-{namespace}/{stream}/{n}.flv""#)
            && proxy_log.contains("label=media-a"),
        "proxy log:\n{proxy_log}"
    );
    assert!(
        forwarder_log.contains(r#"route="/{stream}/{n}.flv""#)
            && forwarder_log.contains("label=media-a"),
        "forwarder log:\n{forwarder_log}"
    );
    fs_err::remove_dir_all(logs).unwrap();
}
