//! The `pagefeat` binary: extract, dump, train, detect on arbitrary files, error exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pagefeat::extract::{ProfileArg, read_page};
use pagefeat::stat_node;
use pagefeat::{EngineKind, PageInput};

use crate::support::{labels_only, options, pipeline, runtime};

fn pagefeat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pagefeat"))
        .args(args)
        .current_dir(testkit::workspace_root())
        .output()
        .unwrap()
}

fn article() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/article.html")
}

fn stdout_json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn extract_then_dump_an_arbitrary_file() {
    let dir = testkit::tempdir();
    let out = dir.path().join("article.pb");
    let article = article();
    let output = pagefeat(&[
        "extract",
        article.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = &stdout_json_lines(&output)[0];
    assert_eq!(summary["engine"], "embedded");
    let tree = stat_node::read_file(&out).unwrap();
    assert_eq!(
        tree.nodes.len() as u64,
        summary["panorama_nodes"].as_u64().unwrap()
    );
    // The EasyList labels mark the ad slot (cosmetic `#div-gpt-ad` rule or the ad URL).
    assert!(
        summary["filter_matches"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    let dump = pagefeat(&["dump", out.to_str().unwrap()]);
    assert!(dump.status.success());
    let json: serde_json::Value = serde_json::from_slice(&dump.stdout).unwrap();
    assert_eq!(json["profile"], "PROFILE_PANORAMA");
    assert_eq!(json["nodes"].as_array().unwrap().len(), tree.nodes.len());
    assert_eq!(json["nodes"][0]["type"], "LayoutView");
}

#[test]
fn bad_input_exits_non_zero_with_a_clear_message() {
    let dir = testkit::tempdir();
    let empty = dir.path().join("empty.html");
    fs_err::write(&empty, "").unwrap();
    let out = dir.path().join("o.pb");
    let png = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pixel.png");
    let big = testkit::data_path("pages/clean/traf__lemire.me.json.html");
    for (file, extra, message) in [
        (empty.as_path(), None, "is empty"),
        (png.as_path(), None, "is not HTML"),
        (
            big.as_path(),
            Some("input.max_bytes=2048"),
            "over the limit of 2048 bytes",
        ),
    ] {
        let mut args = vec![
            "extract",
            file.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        if let Some(set) = extra {
            args.extend(["--set", set]);
        }
        let output = pagefeat(&args);
        assert_eq!(output.status.code(), Some(1), "{}", file.display());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{stderr}");
        assert!(!out.exists(), "no output for bad input");
    }
}

#[test]
fn train_then_detect_json_on_arbitrary_pages() {
    let dir = testkit::tempdir();
    let trees = dir.path().join("trees");
    let models = dir.path().join("models");
    fs_err::create_dir_all(&trees).unwrap();
    let pipeline = pipeline(labels_only());
    let rt = runtime();
    let opts = options(EngineKind::Embedded, ProfileArg::Panorama);
    let mut pages: Vec<(String, PageInput)> = Vec::new();
    for (category, file) in [
        ("ads", "ads/teval__kulturnews.de-Deutschland-Tour.html"),
        ("ads", "ads/teval__teslamag.de-Musk.html"),
        ("clean", "clean/teval__shabka.org.about.html"),
        ("errors", "errors/HttpErrorPages__HTTP404.html"),
        ("errors", "errors/HttpErrorPages__HTTP500.html"),
    ] {
        let page = read_page(&testkit::data_path(&format!("pages/{file}")), 1 << 24).unwrap();
        if category == "ads" {
            let variant = PageInput {
                html: pagefeat::corpus::synthesize_soft404(&page.html, pages.len()),
                ..page.clone()
            };
            pages.push((format!("synthetic-soft404__{}", pages.len()), variant));
        }
        pages.push((format!("{category}__{}", pages.len()), page));
    }
    for (key, page) in &pages {
        let tree = rt
            .block_on(pipeline.extract(page, None, &opts))
            .unwrap()
            .result
            .tree;
        stat_node::write_file(&trees.join(format!("{key}.pb")), &tree).unwrap();
    }
    let train = pagefeat(&[
        "train",
        "--trees",
        trees.to_str().unwrap(),
        "--models",
        models.to_str().unwrap(),
    ]);
    assert!(
        train.status.success(),
        "{}",
        String::from_utf8_lossy(&train.stderr)
    );
    assert!(models.join("ad.json").is_file() && models.join("soft404.json").is_file());

    let log = dir.path().join("detect.jsonl");
    let article = article();
    let error_page = testkit::data_path("pages/errors/HttpErrorPages__HTTP404.html");
    let detect = pagefeat(&[
        "detect",
        "--json",
        "--models",
        models.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
        article.to_str().unwrap(),
        error_page.to_str().unwrap(),
    ]);
    assert!(
        detect.status.success(),
        "{}",
        String::from_utf8_lossy(&detect.stderr)
    );
    let lines = stdout_json_lines(&detect);
    assert_eq!(lines.len(), 2);
    for line in &lines {
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["ad_nodes", "page", "popups", "soft404", "soft404_score"]
        );
        assert!(line["soft404"].is_boolean() && line["soft404_score"].is_number());
        assert!(line["ad_nodes"].is_u64() && line["popups"].is_array());
    }
    assert_eq!(lines[0]["page"], article.to_str().unwrap());
    assert_eq!(lines[1]["soft404"], true, "{}", lines[1]);
    let logged: Vec<serde_json::Value> = fs_err::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(logged.len(), 2);
    assert!(logged[0]["stat_tree"]["nodes"].as_array().unwrap().len() > 10);
    assert_eq!(logged[1]["result"], lines[1]);

    // A missing page is reported and the others still run (exit 3).
    let missing = dir.path().join("missing.html");
    let detect = pagefeat(&[
        "detect",
        "--json",
        "--models",
        models.to_str().unwrap(),
        missing.to_str().unwrap(),
        article.to_str().unwrap(),
    ]);
    assert_eq!(detect.status.code(), Some(3));
    let lines = stdout_json_lines(&detect);
    assert!(lines[0]["error"].as_str().unwrap().contains("missing.html"));
    assert_eq!(lines[1]["page"], article.to_str().unwrap());
}

#[test]
fn chromium_cli_extract_viewport_after_scroll() {
    testkit::require("chromium");
    let dir = testkit::tempdir();
    let out = dir.path().join("vp.pb");
    let page = testkit::data_path("pages/clean/traf__lemire.me.json.html");
    let output = pagefeat(&[
        "extract",
        "--engine",
        "chromium",
        "--profile",
        "viewport",
        "--scroll-y",
        "1600",
        "--set",
        "viewport.debounce_ms=200",
        page.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = &stdout_json_lines(&output)[0];
    let trees = summary["trees"].as_array().unwrap();
    assert_eq!(trees.len(), 2, "{summary}");
    assert_eq!(trees[1]["trigger"], "TRIGGER_SCROLL");
    let tree = stat_node::read_file(&out).unwrap();
    assert_eq!(tree.engine, "chromium");
    assert_eq!(tree.scroll_y, 1600);
    assert!(!tree.nodes.is_empty());
    for n in &tree.nodes {
        assert!(n.extend_attributes.as_ref().unwrap().newly_visible);
        assert!(n.ypos + n.height > 1600 || n.css_attributes.as_ref().unwrap().position == "fixed");
    }
}
