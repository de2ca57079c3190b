//! A safe service (issue 13 item 6), against a real `dataloop serve` on 127.0.0.1: `/sql` runs
//! read-only queries only (COPY TO, CREATE EXTERNAL TABLE, DML and SET refused with 403 and a
//! JSON reason, no file written), a query over its time limit is cancelled, `/status` answers
//! while a slow query runs, and every API route wants the bearer token.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{bin, dataloop, dataloop_ok};

/// The token the tests' servers require.
pub(crate) const TOKEN: &str = "test-token-0123456789abcdef";

/// Starts `dataloop serve` on `data` with the test token and `sets` (`key=value`).
pub(crate) fn serve(data: &std::path::Path, sets: &[&str]) -> testkit::RunningPeer {
    let mut args = vec![
        "--data-dir".to_owned(),
        data.display().to_string(),
        "--set".to_owned(),
        "schedule.enabled=false".to_owned(),
    ];
    for s in sets {
        args.extend(["--set".to_owned(), (*s).to_owned()]);
    }
    args.extend(["serve", "--listen", "127.0.0.1:{port}"].map(str::to_owned));
    testkit::Peer::new(bin().to_str().unwrap())
        .args(args)
        .env("DATALOOP_SERVE__TOKEN", TOKEN)
        .ready(testkit::Ready::Http("/healthz"))
        .deadline(Duration::from_secs(60))
        .start()
}

async fn post_sql(client: &reqwest::Client, url: &str, sql: &str) -> (StatusCode, Value) {
    let response = client
        .post(url)
        .bearer_auth(TOKEN)
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn sql_is_read_only_and_routes_need_the_token() {
    let dir = testkit::tempdir();
    let data = dir.path().join("data");
    dataloop_ok(
        &data,
        &[
            "ingest",
            "--input",
            "data/driving/av2_sensor_log_7fab2350",
            "--json",
        ],
        0,
    );
    let peer = serve(&data, &[]);
    let client = reqwest::Client::new();
    let sql_url = peer.url("/sql");

    // COPY ... TO would write a file: refused, and no file appears.
    let leak = dir.path().join("leak.csv");
    let (status, body) = post_sql(
        &client,
        &sql_url,
        &format!("COPY (SELECT clip_id FROM olap) TO '{}'", leak.display()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"].as_str().unwrap().contains("COPY"), "{body}");
    let (status, body) = post_sql(
        &client,
        &sql_url,
        &format!(
            "EXPLAIN ANALYZE COPY (SELECT clip_id FROM olap) TO '{}'",
            leak.display()
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(!leak.exists(), "COPY wrote {}", leak.display());

    for (sql, word) in [
        (
            "CREATE EXTERNAL TABLE passwd STORED AS CSV LOCATION '/etc/passwd'",
            "DDL",
        ),
        ("CREATE VIEW v AS SELECT 1", "DDL"),
        ("DROP TABLE olap", "DDL"),
        ("INSERT INTO olap SELECT * FROM olap", "DML"),
        (
            "SET datafusion.execution.target_partitions = 1",
            "Statement",
        ),
    ] {
        let (status, body) = post_sql(&client, &sql_url, sql).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{sql}: {body}");
        let reason = body["error"].as_str().unwrap();
        assert!(
            reason.contains("read-only") && reason.contains(word),
            "{sql}: {body}"
        );
    }
    // Not SQL at all: a 400 with the parser's reason.
    let (status, body) = post_sql(&client, &sql_url, "SELEKT 1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // The stores are intact and readable; the answer names the warehouse version it read.
    let (status, body) = post_sql(&client, &sql_url, "SELECT count(*) AS n FROM olap").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let before = body["rows"][0]["n"].as_i64().unwrap();
    assert!(before > 100, "{body}");
    assert_eq!(body["warehouse_version"], 1, "{body}");
    // Another process commits a batch while the service runs: the next query reads it.
    dataloop_ok(
        &data,
        &[
            "ingest",
            "--input",
            "data/driving/comma2k19_segment",
            "--json",
        ],
        0,
    );
    let (status, body) = post_sql(&client, &sql_url, "SELECT count(*) AS n FROM warehouse").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["warehouse_version"], 2, "{body}");
    assert!(body["rows"][0]["n"].as_i64().unwrap() > before, "{body}");

    // Authentication: every API route, none of /healthz and /metrics.
    for (method, path) in [
        (reqwest::Method::GET, "/status"),
        (reqwest::Method::GET, "/registry"),
        (reqwest::Method::POST, "/sql"),
        (reqwest::Method::POST, "/trigger"),
        (reqwest::Method::POST, "/trigger/scheduled"),
    ] {
        for auth in [
            None,
            Some("Bearer wrong-token-0123456789abcdef"),
            Some("Basic abc"),
        ] {
            let mut request = client
                .request(method.clone(), peer.url(path))
                .json(&json!({"sql": "SELECT 1", "rule": "hard_braking"}));
            if let Some(value) = auth {
                request = request.header("authorization", value);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{path} {auth:?}"
            );
            assert!(response.headers().contains_key("www-authenticate"));
            let body: Value = response.json().await.unwrap();
            assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
        }
    }
    for path in ["/healthz", "/metrics"] {
        let response = client.get(peer.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let registry = client
        .get(peer.url("/registry"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(registry.status(), StatusCode::OK);
}

#[tokio::test]
async fn status_answers_while_a_slow_query_runs_and_the_query_is_cancelled() {
    let dir = testkit::tempdir();
    let data = dir.path().join("data");
    dataloop_ok(&data, &["ingest", "--input", "data/driving", "--json"], 0);
    let peer = serve(&data, &["serve.query_timeout_ms=3000"]);
    let client = reqwest::Client::new();

    // Far more work than 3 s allow (10^11 rows; the filter keeps the count from statistics).
    let slow = {
        let client = client.clone();
        let url = peer.url("/sql");
        tokio::spawn(async move {
            post_sql(
                &client,
                &url,
                "SELECT count(*) AS n FROM range(100000000000) WHERE value % 7 = 3",
            )
            .await
        })
    };
    // /status answers again and again while the query is still running.
    let mut answered_during_query = 0;
    while !slow.is_finished() {
        let response = client
            .get(peer.url("/status"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let status: Value = response.json().await.unwrap();
        assert_eq!(status["warehouse_version"], 1, "{status}");
        if !slow.is_finished() {
            answered_during_query += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, body) = slow.await.unwrap();
    assert_eq!(code, StatusCode::REQUEST_TIMEOUT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("3000 ms"),
        "{body}"
    );
    assert!(
        answered_during_query >= 5,
        "/status answered only {answered_during_query} times during the query"
    );
    // The cancelled query released its slot: the next query runs.
    let (code, body) = post_sql(&client, &peer.url("/sql"), "SELECT 1 AS one").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0]["one"], 1);
}

#[test]
fn memory_and_row_limits_are_clear_errors_and_serve_needs_a_token() {
    let dir = testkit::tempdir();
    let data = dir.path().join("data");
    dataloop_ok(&data, &["ingest", "--input", "data/driving", "--json"], 0);
    // A sort of every trajectory blob in a 1 MiB pool without spilling.
    let output = dataloop(
        &data,
        &[
            "--set",
            "serve.query_memory_mib=1",
            "sql",
            "SELECT clip_id, trajectory FROM warehouse ORDER BY trajectory",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("1 MiB memory limit"), "{stderr}");
    let output = dataloop(
        &data,
        &[
            "--set",
            "serve.query_max_rows=5",
            "sql",
            "SELECT clip_id FROM olap",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("more than 5 rows"), "{stderr}");
    // The CLI is read-only too.
    let output = dataloop(&data, &["sql", "DROP TABLE olap"]);
    assert_eq!(output.status.code(), Some(1));
    // Without a token `serve` does not start.
    let output = std::process::Command::new(bin())
        .env_remove("DATALOOP_SERVE__TOKEN")
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("DATALOOP_SERVE__TOKEN"), "{stderr}");
}
