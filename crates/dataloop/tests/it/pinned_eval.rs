//! The pinned evaluation set (issue 13 item 4, "Done when": the pinned set unchanged across
//! versions): chosen once by whole logs, read at its pinned Delta version by every later trigger
//! while the data grows, never trained on; a pin that points at a missing version or at other
//! windows is a typed error.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use dataloop::fit::clip_hash;
use dataloop::registry::{self, Registry};
use dataloop::warehouse::{self, BeforeCommit};
use dataloop::{Config, DataLoop, Error, TriggerKind};

fn root() -> PathBuf {
    testkit::workspace_root().join("data/driving")
}

async fn open(dir: &Path) -> DataLoop {
    let config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    DataLoop::open(config, false).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_set_is_unchanged_across_versions_and_never_trained_on() {
    let dir = testkit::tempdir();
    let mut dl = open(dir.path()).await;
    let batches = [
        vec![
            root().join("av2_sensor_log_7fab2350"),
            root().join("av2_sensor_log_3b3570b4"),
            root().join("comma2k19_segment"),
        ],
        vec![root().join("av2_sensor_log_3bffdcff")],
        vec![root().join("av2_motion_forecasting")],
    ];
    let mut pins = Vec::new();
    let mut outcomes = Vec::new();
    for (i, inputs) in batches.iter().enumerate() {
        let report = dl
            .ingest(inputs, BeforeCommit::Proceed, SystemTime::now())
            .await
            .unwrap();
        assert_eq!(report.warehouse_version, i as i64 + 1, "{report:?}");
        let outcome = dl
            .trigger(TriggerKind::Scheduled, SystemTime::now())
            .await
            .unwrap();
        assert_eq!(outcome.warehouse_version, i as i64 + 1);
        pins.push(Registry::load(dl.data_dir()).unwrap().eval_pin.unwrap());
        outcomes.push(outcome);
    }
    // Chosen once at version 1 (one of the two sensor logs there), then unchanged.
    let pin = &pins[0];
    assert_eq!(pin.warehouse_version, 1);
    assert_eq!(pin.log_ids.len(), 1, "{pin:?}");
    assert!(
        ["av2_sensor_log_7fab2350", "av2_sensor_log_3b3570b4"].contains(&pin.log_ids[0].as_str()),
        "{pin:?}"
    );
    assert!(pin.windows > 50, "{pin:?}");
    assert!(pins.iter().all(|p| p == pin), "{pins:?}");
    // Every version scored on the same windows while the data grew.
    assert!(outcomes[0].clips < outcomes[1].clips && outcomes[1].clips < outcomes[2].clips);
    for o in &outcomes {
        let p = o.pinned.as_ref().unwrap();
        assert_eq!(p.fingerprint, pin.fingerprint);
        assert_eq!(p.warehouse_version, 1);
        assert_eq!((p.all.windows, o.eval_windows), (pin.windows, pin.windows));
        assert!(
            p.moving.windows > 0 && p.moving.windows < p.all.windows,
            "{p:?}"
        );
        assert!(!p.moving.per_category.is_empty());
        assert!(
            p.moving.per_category.values().all(|c| c.cv_ade_m > 0.0),
            "{p:?}"
        );
    }
    // The same figures for constant velocity each time (same windows).
    let cv: HashSet<String> = outcomes
        .iter()
        .map(|o| format!("{:.9}", o.pinned.as_ref().unwrap().moving.cv_ade_m))
        .collect();
    assert_eq!(cv.len(), 1, "{cv:?}");

    // No clip of a pinned log in any model's statistics, at any version.
    let newest = dl.current_warehouse().await.unwrap();
    let eval_ids: Vec<String> =
        warehouse::decode_rows(&newest.rows_of_logs(&pin.log_ids).await.unwrap())
            .unwrap()
            .into_iter()
            .map(|c| c.clip_id)
            .collect();
    assert_eq!(eval_ids.len(), pin.windows);
    let registry = Registry::load(dl.data_dir()).unwrap();
    assert_eq!(registry.versions.len(), 3);
    for v in &registry.versions {
        assert!(v.train_windows > 0);
        assert!(
            v.train_logs.iter().all(|l| !pin.log_ids.contains(l)),
            "v{}: {:?}",
            v.version,
            v.train_logs
        );
        let model = registry::load_model(&dl.data_dir().join(&v.artefact)).unwrap();
        let seen: HashSet<u64> = model.seen_clips.iter().copied().collect();
        assert!(!seen.is_empty());
        assert!(
            eval_ids.iter().all(|id| !seen.contains(&clip_hash(id))),
            "v{} trained on a pinned window",
            v.version
        );
        let recorded = v.pinned.as_ref().unwrap();
        assert_eq!(recorded.fingerprint, pin.fingerprint);
    }
    assert_eq!(
        registry.versions[2].train_logs.len(),
        4,
        "{:?}",
        registry.versions[2].train_logs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_altered_pinned_version_is_a_typed_error() {
    let dir = testkit::tempdir();
    let mut dl = open(dir.path()).await;
    dl.ingest(
        &[
            root().join("av2_sensor_log_7fab2350"),
            root().join("comma2k19_segment"),
        ],
        BeforeCommit::Proceed,
        SystemTime::now(),
    )
    .await
    .unwrap();
    dl.trigger(TriggerKind::Scheduled, SystemTime::now())
        .await
        .unwrap();
    let good = Registry::load(dl.data_dir()).unwrap();
    let pin = good.eval_pin.clone().unwrap();
    assert_eq!(pin.warehouse_version, 1);

    let with_pin = |edit: &dyn Fn(&mut dataloop::pinned::EvalPin)| {
        let mut r = good.clone();
        edit(r.eval_pin.as_mut().unwrap());
        r.save(dl.data_dir()).unwrap();
    };
    // A version the table does not have.
    with_pin(&|p| p.warehouse_version = 42);
    match dl.trigger(TriggerKind::Scheduled, SystemTime::now()).await {
        Err(Error::PinnedVersion { version: 42, .. }) => {}
        other => panic!("{other:?}"),
    }
    // Other windows than the pinned ones: another fingerprint, or another log.
    with_pin(&|p| p.fingerprint = "0".repeat(64));
    match dl.trigger(TriggerKind::Scheduled, SystemTime::now()).await {
        Err(Error::PinMismatch { version: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
    with_pin(&|p| p.log_ids = vec!["comma2k19_segment".to_owned()]);
    match dl.trigger(TriggerKind::Scheduled, SystemTime::now()).await {
        Err(Error::PinMismatch { version: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
    // A refused trigger records nothing; with the good pin back, it runs on the pinned windows.
    assert_eq!(Registry::load(dl.data_dir()).unwrap().versions.len(), 1);
    good.save(dl.data_dir()).unwrap();
    let outcome = dl
        .trigger(TriggerKind::Scheduled, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(outcome.pinned.unwrap().fingerprint, pin.fingerprint);

    // One log only: no evaluation set of whole logs can be pinned.
    let other = testkit::tempdir();
    let mut fresh = open(other.path()).await;
    fresh
        .ingest(
            &[root().join("comma2k19_segment")],
            BeforeCommit::Proceed,
            SystemTime::now(),
        )
        .await
        .unwrap();
    match fresh
        .trigger(TriggerKind::Scheduled, SystemTime::now())
        .await
    {
        Err(Error::NoEvalLogs { logs: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
}
