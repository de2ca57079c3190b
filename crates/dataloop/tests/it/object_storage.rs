//! Object storage (issue 13 item 7): the warehouse, OLAP store and file store on `s3://` URLs
//! against an S3-compatible server started by the test (moto's server from PyPI, installed by
//! `scripts/setup dataloop`; the test fails, not skips, without it). The loop runs end to end
//! (ingest, scheduled and manual triggers: mine, take, train, evaluate) with every store on S3
//! and gives the rows, versions and scores of the same run on local paths; two commits racing
//! for one Delta version both land, as distinct versions (conditional put).

use std::path::Path;
use std::process::Command;

use dataloop::clip::{self, WindowSpec};
use dataloop::store::{Location, S3Config};
use dataloop::warehouse::{BeforeCommit, Warehouse, warehouse_batch};
use serde_json::Value;

use crate::{bin, last_json};

const BUCKET: &str = "dataloop-test";
const KEY: &str = "testing";

/// moto's S3 server (the pinned one in `.tools/venv`) on a free port, stopped on drop.
fn moto() -> testkit::RunningPeer {
    let program = testkit::workspace_root().join(".tools/venv/bin/moto_server");
    assert!(
        program.is_file(),
        "{} is missing (PyPI moto[server], pinned in scripts/requirements-peers.txt): run `scripts/setup dataloop` from the workspace root",
        program.display()
    );
    testkit::Peer::new(&program.to_string_lossy())
        .args(["-H", "127.0.0.1", "-p", "{port}"])
        .ready(testkit::Ready::Tcp)
        .deadline(std::time::Duration::from_secs(60))
        .start()
}

async fn create_bucket(endpoint: &str) {
    let resp = reqwest::Client::new()
        .put(format!("{endpoint}/{BUCKET}"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "create bucket: {resp:?}");
}

/// Keys under `prefix` in the bucket (ListObjectsV2, first 1,000).
async fn keys(endpoint: &str, prefix: &str) -> Vec<String> {
    let body = reqwest::Client::new()
        .get(format!("{endpoint}/{BUCKET}?list-type=2&prefix={prefix}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(str::to_owned)
        .collect()
}

/// Runs `dataloop --data-dir DATA [--set ...] ARGS` with the S3 settings `sets` and test
/// credentials in the environment, and returns stdout's last JSON line.
fn run(data: &Path, sets: &[String], args: &[&str]) -> Value {
    let mut cmd = Command::new(bin());
    cmd.arg("--data-dir").arg(data);
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    let out = cmd
        .args(args)
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", KEY)
        .current_dir(testkit::workspace_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dataloop {args:?} {sets:?}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    last_json(&stdout)
}

/// The loop's observable results: ingest, a scheduled and a manual trigger, the stored ids.
fn the_loop(data: &Path, sets: &[String]) -> Vec<(String, Value)> {
    let ingest = run(data, sets, &["ingest", "--input", "data/driving", "--json"]);
    let scheduled = run(data, sets, &["trigger", "--scheduled", "--json"]);
    let manual = run(data, sets, &["trigger", "--rule", "hard_braking", "--json"]);
    let rows = run(
        data,
        sets,
        &[
            "sql",
            "SELECT clip_id, present_index, trajectory FROM warehouse WHERE clip_id LIKE '%:ego:%' ORDER BY clip_id",
            "--json",
        ],
    );
    let olap = run(
        data,
        sets,
        &[
            "sql",
            "SELECT category, count(*) AS n FROM olap GROUP BY category ORDER BY category",
            "--json",
        ],
    );
    let mut out = vec![
        ("ingest.clips".to_owned(), ingest["clips"].clone()),
        (
            "ingest.warehouse_version".to_owned(),
            ingest["warehouse_version"].clone(),
        ),
        ("ingest.olap_rows".to_owned(), ingest["olap_rows"].clone()),
        ("ingest.rejected".to_owned(), ingest["rejected"].clone()),
        ("ego rows".to_owned(), rows),
        ("olap categories".to_owned(), olap),
    ];
    for (name, t) in [("scheduled", &scheduled), ("manual", &manual)] {
        for k in [
            "clips",
            "train_windows",
            "eval_windows",
            "model_version",
            "mode",
            "warehouse_version",
            "promoted",
            "train_logs",
        ] {
            out.push((format!("{name}.{k}"), t[k].clone()));
        }
        for k in ["ade_m", "fde_m", "cv_ade_m"] {
            // Sums over the same windows in another order may differ in the last bits.
            let v = t[k].as_f64().unwrap_or(f64::NAN);
            out.push((format!("{name}.{k} (1e-9)"), Value::from((v * 1e9).round())));
        }
        let list = t["id_list"].as_str().unwrap_or_default();
        out.push((
            format!("{name}.id_list name"),
            Value::from(list.rsplit('/').next().unwrap_or_default()),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_on_s3_equals_the_local_run() {
    let server = moto();
    let endpoint = server.url("");
    create_bucket(&endpoint).await;
    let dir = testkit::tempdir();

    let local = tokio::task::spawn_blocking({
        let data = dir.path().join("local");
        move || the_loop(&data, &[])
    });
    let s3_data = dir.path().join("s3");
    let sets = vec![
        format!("store_url=s3://{BUCKET}/run"),
        format!("s3.endpoint={endpoint}"),
        "s3.allow_http=true".to_owned(),
        "s3.region=us-east-1".to_owned(),
    ];
    let on_s3 = tokio::task::spawn_blocking({
        let (data, sets) = (s3_data.clone(), sets.clone());
        move || the_loop(&data, &sets)
    });
    let (local, on_s3) = (local.await.unwrap(), on_s3.await.unwrap());
    assert!(
        local
            .iter()
            .any(|(k, v)| k == "ingest.clips" && v.as_u64() > Some(100)),
        "{local:?}"
    );
    for ((k, l), (_, s)) in local.iter().zip(&on_s3) {
        assert_eq!(l, s, "{k}: local {l} vs s3 {s}");
    }

    // Everything the stores hold is in the bucket; the local data dir keeps only the registry,
    // models and locks.
    let delta_log = keys(&endpoint, "run/warehouse/_delta_log/").await;
    assert!(
        delta_log
            .iter()
            .any(|k| k.ends_with("00000000000000000001.json")),
        "{delta_log:?}"
    );
    let data_files = keys(&endpoint, "run/warehouse/ingest_date=").await;
    assert!(!data_files.is_empty());
    let sidecars = keys(&endpoint, "run/warehouse/_dataloop_ids/").await;
    assert_eq!(sidecars.len(), data_files.len(), "{sidecars:?}");
    assert!(!keys(&endpoint, "run/olap/source=").await.is_empty());
    let lists = keys(&endpoint, "run/file_store/id_lists/").await;
    assert!(
        lists.iter().any(|k| k.ends_with("-hard_braking.txt")),
        "{lists:?}"
    );
    for gone in ["warehouse", "olap", "file_store"] {
        assert!(!s3_data.join(gone).exists(), "{gone} was written locally");
    }
    assert!(s3_data.join("registry.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_on_s3_land_as_distinct_versions() {
    let server = moto();
    let endpoint = server.url("");
    create_bucket(&endpoint).await;
    let s3 = S3Config {
        endpoint: Some(endpoint.clone()),
        region: Some("us-east-1".to_owned()),
        allow_http: true,
        access_key_id: Some(KEY.to_owned()),
        secret_access_key: svckit::redact::Secret::new(KEY),
        ..S3Config::default()
    };
    let location = Location::parse(&format!("s3://{BUCKET}/concurrent"), &s3).unwrap();
    let log = testkit::workspace_root().join("data/driving/av2_sensor_log_7fab2350");
    let clips: Vec<clip::Clip> = dataloop::reader::discover(&log)
        .unwrap()
        .iter()
        .flat_map(|l| {
            clip::extract(
                &dataloop::reader::read_log(l),
                WindowSpec { stride_steps: 10 },
                None,
            )
        })
        .collect();
    assert!(clips.len() >= 40, "{}", clips.len());
    let batch = |k: usize| {
        warehouse_batch(&clips[k * 10..(k + 1) * 10], &format!("b{k}"), "2026-01-01").unwrap()
    };

    let mut a = Warehouse::open_or_create_at(&location).await.unwrap();
    assert_eq!(a.version(), 0);
    let mut b = Warehouse::open_location(&location).await.unwrap();
    // Both handles are at version 0 and race for version 1.
    let (va, vb) = tokio::join!(
        a.append(batch(0), BeforeCommit::Proceed),
        b.append(batch(1), BeforeCommit::Proceed)
    );
    let mut got = vec![va.unwrap(), vb.unwrap()];
    got.sort_unstable();
    assert_eq!(got, vec![1, 2], "both commits landed as distinct versions");

    // A handle that has not seen version 3 commits after it: its put of version 3 is refused
    // (If-None-Match) and delta-rs retries at 4.
    let mut stale = Warehouse::open_location(&location).await.unwrap();
    let mut fresh = Warehouse::open_location(&location).await.unwrap();
    assert_eq!(
        fresh.append(batch(2), BeforeCommit::Proceed).await.unwrap(),
        3
    );
    assert_eq!(stale.version(), 2);
    assert_eq!(
        stale.append(batch(3), BeforeCommit::Proceed).await.unwrap(),
        4
    );

    let wh = Warehouse::open_location(&location).await.unwrap();
    assert_eq!(wh.version(), 4);
    let ids: Vec<String> = clips[..40]
        .iter()
        .map(|c| c.simple.clip_id.clone())
        .collect();
    let taken = wh.take(&ids).await.unwrap();
    assert_eq!(taken.len(), 40, "every committed row is in the table once");
    let mut want: Vec<(String, dataloop::trajectory::Trajectory)> = clips[..40]
        .iter()
        .map(|c| (c.simple.clip_id.clone(), c.trajectory.clone()))
        .collect();
    want.sort_by(|x, y| x.0.cmp(&y.0));
    let got: Vec<(String, dataloop::trajectory::Trajectory)> = taken
        .into_iter()
        .map(|c| (c.clip_id, c.trajectory))
        .collect();
    assert_eq!(got, want, "the S3 take returns the trajectories written");
    let check = wh.check_index().await.unwrap();
    assert_eq!((check.files, check.consistent), (4, 4), "{check:?}");
    let log = keys(&endpoint, "concurrent/_delta_log/").await;
    for v in 0..=4 {
        assert!(
            log.iter().any(|k| k.ends_with(&format!("{v:020}.json"))),
            "version {v} missing: {log:?}"
        );
    }
}
