//! `dataloop serve` on 127.0.0.1: health and metrics from svckit, manual and scheduled triggers
//! over HTTP, SQL over HTTP.

use std::time::Duration;

use serde_json::json;

use crate::{bin, dataloop_ok};

#[tokio::test]
async fn serve_runs_triggers_over_http() {
    let dir = testkit::tempdir();
    let data = dir.path().join("data");
    dataloop_ok(&data, &["ingest", "--input", "data/driving", "--json"], 0);
    let peer = testkit::Peer::new(bin().to_str().unwrap())
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:{port}",
        ])
        .env("DATALOOP_SERVE__TOKEN", crate::safe_service::TOKEN)
        .ready(testkit::Ready::Http("/healthz"))
        .deadline(Duration::from_secs(60))
        .start();
    let client = reqwest::Client::builder()
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", crate::safe_service::TOKEN)
                    .parse()
                    .unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let status: serde_json::Value = client
        .get(peer.url("/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["warehouse_version"], 1);
    assert!(
        status["next_scheduled_run"]
            .as_str()
            .unwrap()
            .contains("T02:00:00"),
        "{status}"
    );

    let scheduled: serde_json::Value = client
        .post(peer.url("/trigger/scheduled"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(scheduled["mode"], "full", "{scheduled}");
    let manual = client
        .post(peer.url("/trigger"))
        .json(&json!({"rule": "moving_in_traffic", "params": {"min_agents": 2}}))
        .send()
        .await
        .unwrap();
    assert!(manual.status().is_success());
    let manual: serde_json::Value = manual.json().await.unwrap();
    assert_eq!(manual["kind"], "manual");
    assert!(manual["eval_windows"].as_u64().unwrap() > 0);

    let bad = client
        .post(peer.url("/trigger"))
        .json(&json!({"rule": "no_such_rule"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), reqwest::StatusCode::BAD_REQUEST);
    let bad = client
        .post(peer.url("/trigger"))
        .json(&json!({"rule": "x > 1); DROP TABLE olap; --"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), reqwest::StatusCode::BAD_REQUEST);

    let rows: serde_json::Value = client
        .post(peer.url("/sql"))
        .json(&json!({"sql": "SELECT count(*) AS n FROM olap"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(rows["rows"][0]["n"].as_i64().unwrap() > 100, "{rows}");
    let metrics = client
        .get(peer.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("dataloop_triggers_total{kind=\"manual\""),
        "{metrics}"
    );
    let registry: serde_json::Value = client
        .get(peer.url("/registry"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(registry["versions"].as_array().unwrap().len(), 2);
}
