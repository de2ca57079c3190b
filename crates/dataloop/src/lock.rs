//! Exclusive locks across processes on the data directory (issue 13 item 5): `registry.lock` is
//! held by a trigger from reading the registry (and so choosing its version number) until it
//! has recorded its version, `ingest.lock` by an ingest from its duplicate check until its
//! commit. They are OS file locks (`flock`), so a killed process releases its lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How often a waiting process retries.
const RETRY: Duration = Duration::from_millis(50);

/// A held lock; released on drop.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the exclusive lock on `<data_dir>/<name>`, waiting at most `limit` for another
    /// holder to release it.
    ///
    /// # Errors
    /// [`Error::Io`] when the lock file cannot be opened or locked, [`Error::LockTimeout`] when
    /// it is still held after `limit`.
    pub async fn acquire(data_dir: &Path, name: &str, limit: Duration) -> Result<Self> {
        let path = data_dir.join(name);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let started = Instant::now();
        let mut logged = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Self { _file: file, path }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
            if started.elapsed() >= limit {
                return Err(Error::LockTimeout {
                    path,
                    limit_s: limit.as_secs(),
                });
            }
            if !logged {
                tracing::info!(lock = %path.display(), "waiting for another process's lock");
                logged = true;
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_waits_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), "x.lock", Duration::ZERO)
            .await
            .unwrap();
        let second = DirLock::acquire(dir.path(), "x.lock", Duration::from_millis(120)).await;
        assert!(
            matches!(second, Err(Error::LockTimeout { .. })),
            "{second:?}"
        );
        drop(first);
        DirLock::acquire(dir.path(), "x.lock", Duration::ZERO)
            .await
            .unwrap();
    }
}
