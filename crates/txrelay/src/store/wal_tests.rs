//! The SQLite write-ahead-log settings and [`Store::checkpoint`].

use sqlx::Row;
use svckit::redact::SafeUrl;

use super::*;

#[tokio::test]
async fn the_log_is_checkpointed_on_its_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let url: SafeUrl = format!("sqlite://{}", path.display()).parse().unwrap();
    let store = Store::open(&url, 1).await.unwrap();
    let pragma = |name: &'static str| {
        let pool = store.pool.clone();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA {name}")))
                .fetch_one(&pool)
                .await
                .unwrap()
                .try_get::<i64, _>(0)
                .unwrap()
        }
    };
    // The writer leaves checkpoints to the checkpointer up to the backstop.
    assert_eq!(
        pragma("wal_autocheckpoint").await,
        i64::from(WAL_AUTOCHECKPOINT_PAGES)
    );
    assert_eq!(pragma("cache_size").await, -i64::from(WRITER_CACHE_KIB));
    // The migrations are in the log, not yet in the database file.
    let before = fs_err::metadata(&path).unwrap().len();
    let done = store.checkpoint().await.unwrap().unwrap();
    assert!(!done.busy, "{done:?}");
    assert!(done.log_frames > 0, "{done:?}");
    assert_eq!(done.checkpointed_frames, done.log_frames, "{done:?}");
    assert_eq!(store.checkpoints().get(), 1);
    let after = fs_err::metadata(&path).unwrap().len();
    assert!(after > before, "database file {before} -> {after} bytes");
}
