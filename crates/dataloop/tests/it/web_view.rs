//! Issue 13 item 8: the web view of `dataloop serve` renders in headless Chromium and its charts
//! hold the counts the OLAP store and the registry hold; a screenshot is left in the test
//! output directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::dataloop_ok;
use crate::safe_service::TOKEN;

/// Runs headless Chromium on `url` with `extra` arguments (at most 60 s) and returns stdout.
async fn chromium(profile: &Path, url: &str, extra: &[&str]) -> String {
    let mut command = tokio::process::Command::new(testkit::require("chromium"));
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=15000",
            "--window-size=1200,1500",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("chromium finished within 60 s")
        .expect("running chromium");
    assert!(
        output.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `(data-key, data-count)` of every bar of the chart `name` in the dumped DOM.
fn chart(dom: &str, name: &str) -> BTreeMap<String, f64> {
    let start = dom
        .find(&format!("data-chart=\"{name}\""))
        .unwrap_or_else(|| panic!("chart {name} missing in the page:\n{dom}"));
    let end = dom[start..].find("</svg>").map_or(dom.len(), |e| start + e);
    let mut bars = BTreeMap::new();
    let mut rest = &dom[start..end];
    while let Some(at) = rest.find("data-key=\"") {
        rest = &rest[at + 10..];
        let key_end = rest.find('"').unwrap();
        let key = rest[..key_end].to_owned();
        let count_at = rest.find("data-count=\"").unwrap() + 12;
        let count_end = count_at + rest[count_at..].find('"').unwrap();
        bars.insert(key, rest[count_at..count_end].parse().unwrap());
        rest = &rest[count_end..];
    }
    bars
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_view_draws_the_stores_and_the_registry_in_chromium() {
    let dir = testkit::tempdir();
    let data = dir.path().join("data");
    dataloop_ok(&data, &["ingest", "--input", "data/driving", "--json"], 0);
    dataloop_ok(&data, &["trigger", "--scheduled", "--json"], 0);
    dataloop_ok(&data, &["trigger", "--rule", "hard_braking", "--json"], 0);
    let peer = crate::safe_service::serve(&data, &[]);

    // What the page must show, read through the authenticated API.
    let client = reqwest::Client::new();
    let rows: Value = client
        .post(peer.url("/sql"))
        .bearer_auth(TOKEN)
        .json(&json!({"sql": "SELECT source, log_id, count(*) AS n FROM olap GROUP BY source, log_id"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let registry: Value = client
        .get(peer.url("/registry"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pinned: Vec<&str> = registry["eval_pin"]["log_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let mut by_source = BTreeMap::<String, f64>::new();
    let mut by_split = BTreeMap::<String, f64>::new();
    for row in rows["rows"].as_array().unwrap() {
        let n = row["n"].as_f64().unwrap();
        *by_source
            .entry(row["source"].as_str().unwrap().to_owned())
            .or_default() += n;
        let split = if pinned.contains(&row["log_id"].as_str().unwrap()) {
            "eval"
        } else {
            "train"
        };
        *by_split.entry(split.to_owned()).or_default() += n;
    }
    assert!(
        by_source.len() >= 3 && by_split.len() == 2,
        "{by_source:?} {by_split:?}"
    );

    // The page without the token in its fragment gets no data.
    let profile = dir.path().join("chromium");
    let anonymous = chromium(&profile, &peer.url("/ui"), &["--dump-dom"]).await;
    assert!(
        anonymous.contains("data-ready=\"error\"") && anonymous.contains("401"),
        "{anonymous}"
    );

    let url = format!("{}#token={TOKEN}", peer.url("/ui"));
    let dom = chromium(&profile, &url, &["--dump-dom"]).await;
    assert!(
        dom.contains("data-ready=\"true\""),
        "the page did not finish:\n{dom}"
    );
    assert_eq!(chart(&dom, "source"), by_source);
    assert_eq!(chart(&dom, "split"), by_split);
    let categories: f64 = chart(&dom, "category").values().sum();
    assert_eq!(categories, by_source.values().sum::<f64>());

    // One pair of bars (model, constant velocity) per version, with the registry's ADE.
    let moving = chart(&dom, "ade-moving");
    let versions = registry["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(moving.len(), 2 * versions.len(), "{moving:?}");
    for v in versions {
        let key = format!("v{} model", v["version"]);
        let drawn = moving[&key];
        let ade = v["pinned"]["moving"]["ade_m"].as_f64().unwrap();
        assert!(
            (drawn - ade).abs() < 1e-9,
            "{key}: drawn {drawn}, registry {ade}"
        );
    }
    for text in [
        "hard_braking",
        "incremental",
        "Trigger and training history",
    ] {
        assert!(dom.contains(text), "{text} missing");
    }

    // The mined list of version 2 (manual trigger): its first clips, in list order, each with
    // history (20 + present), ground truth, model and constant velocity (origin + 30 each).
    let ids =
        std::fs::read_to_string(data.join("file_store/id_lists/v0002-hard_braking.txt")).unwrap();
    let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
    assert!(ids.len() > 24, "{} mined", ids.len());
    let mined = chromium(
        &profile,
        &format!("{}?list=2#token={TOKEN}", peer.url("/ui")),
        &["--dump-dom"],
    )
    .await;
    assert!(mined.contains("data-ready=\"true\""), "{mined}");
    let drawn: Vec<&str> = mined
        .split("data-clip=\"")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect();
    assert_eq!(drawn, ids[..24].to_vec());
    for (path, points) in [
        ("history", 21),
        ("future", 31),
        ("model", 31),
        ("constant_velocity", 31),
    ] {
        let needle = format!("data-path=\"{path}\" data-points=\"{points}\"");
        assert_eq!(mined.matches(&needle).count(), 24, "{needle}");
    }
    // Lanes of the HD maps ingest kept in the file store are drawn under some clips.
    assert!(
        mined.matches("data-path=\"lane\"").count() > 0,
        "no lane drawn"
    );
    // A scheduled version has no ID list to show.
    let scheduled = client
        .get(peer.url("/mined/1"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(scheduled.status(), reqwest::StatusCode::NOT_FOUND);

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dataloop-web-view.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &dir.path().join("chromium-shot"),
        &url,
        &[&format!("--screenshot={}", shot.display())],
    )
    .await;
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    eprintln!("web view screenshot: {}", shot.display());
}
