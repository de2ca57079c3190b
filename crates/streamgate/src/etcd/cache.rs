//! The watched cache behind [`EtcdDiscovery`]: list the prefix, watch it from the next
//! revision, apply each event; on any loss of the watch, list and watch again, keeping the
//! last good snapshot meanwhile.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::wire::KeyValue;
use super::{EtcdClient, EtcdError};
use crate::error::HopError;
use crate::registry::{ForwarderRecord, MediaRecord, RouteSnapshot};

/// Longest a watch runs before it is replaced by a fresh list and watch: bounds how long a
/// watch on a member that silently stopped getting updates (cut off from the cluster) can
/// go unnoticed.
pub const RESYNC: Duration = Duration::from_secs(30);
/// Pause between failed attempts to list.
const RETRY: Duration = Duration::from_millis(200);

/// Discovery answered from a watched cache of `{prefix}/` in etcd. Clones share the cache
/// and its one watch; the watch starts on first use and stops when the last clone is
/// dropped.
#[derive(Debug, Clone)]
pub struct EtcdDiscovery {
    client: EtcdClient,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    tx: Arc<watch::Sender<Cache>>,
    task: OnceLock<JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }
}

/// What the cache holds.
#[derive(Debug, Clone, Default)]
struct Cache {
    loaded: bool,
    snapshot: Arc<RouteSnapshot>,
}

impl EtcdDiscovery {
    /// Discovery through `client`, watching its settings' prefix.
    pub fn new(client: EtcdClient) -> Self {
        let (tx, _) = watch::channel(Cache::default());
        Self {
            client,
            shared: Arc::new(Shared {
                tx: Arc::new(tx),
                task: OnceLock::new(),
            }),
        }
    }

    /// The client.
    pub fn client(&self) -> &EtcdClient {
        &self.client
    }

    fn start(&self) -> watch::Receiver<Cache> {
        self.shared
            .task
            .get_or_init(|| tokio::spawn(follow(self.client.clone(), self.shared.tx.clone())));
        self.shared.tx.subscribe()
    }

    /// The cache once loaded, waiting up to `within`.
    async fn loaded(&self, within: Duration) -> Result<Arc<RouteSnapshot>, HopError> {
        let mut rx = self.start();
        match tokio::time::timeout(within, rx.wait_for(|c| c.loaded)).await {
            Ok(Ok(cache)) => Ok(cache.snapshot.clone()),
            _ => Err(HopError::Registry {
                reason: format!("etcd: no listing of the prefix within {within:?}"),
            }),
        }
    }

    /// The media server registered under `label`, from the cache (waiting up to the call
    /// deadline for the first listing).
    ///
    /// # Errors
    /// [`HopError::Registry`] when the prefix could not be listed yet.
    pub async fn media(&self, label: &str) -> Result<Option<MediaRecord>, HopError> {
        let snapshot = self.loaded(self.client.settings().request_timeout).await?;
        Ok(snapshot.media.iter().find(|m| m.label == label).cloned())
    }

    /// The routing snapshot, version = etcd revision; with `since`, waits up to `wait` for a
    /// revision other than it.
    ///
    /// # Errors
    /// [`HopError::Registry`] when the prefix could not be listed yet.
    pub async fn routes(
        &self,
        since: Option<u64>,
        wait: Duration,
    ) -> Result<RouteSnapshot, HopError> {
        let first = self.loaded(self.client.settings().request_timeout).await?;
        let Some(since) = since else {
            return Ok((*first).clone());
        };
        let mut rx = self.start();
        let changed = tokio::time::timeout(
            wait,
            rx.wait_for(|c| c.loaded && c.snapshot.version != since),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .map(|cache| cache.snapshot.clone());
        let snapshot = changed.unwrap_or_else(|| rx.borrow().snapshot.clone());
        Ok((*snapshot).clone())
    }
}

/// The cache's entries by key.
#[derive(Debug, Default)]
struct Entries {
    media_prefix: Vec<u8>,
    forwarder_prefix: Vec<u8>,
    media: BTreeMap<Vec<u8>, MediaRecord>,
    forwarders: BTreeMap<Vec<u8>, ForwarderRecord>,
}

impl Entries {
    fn new(client: &EtcdClient) -> Self {
        let prefix = &client.settings().prefix;
        Self {
            media_prefix: format!("{prefix}/media/").into_bytes(),
            forwarder_prefix: format!("{prefix}/forwarders/").into_bytes(),
            ..Self::default()
        }
    }

    /// Takes in a put; a value that is not a record, or a record whose names differ from
    /// its key's (written by hand at the wrong key), is ignored with a warning.
    fn put(&mut self, kv: &KeyValue) {
        let key = String::from_utf8_lossy(&kv.key);
        if let Some(label) = kv.key.strip_prefix(self.media_prefix.as_slice()) {
            match serde_json::from_slice::<MediaRecord>(&kv.value) {
                Ok(record) if record.label.as_bytes() == label => {
                    self.media.insert(kv.key.clone(), record);
                }
                Ok(record) => {
                    warn!(%key, label = %record.label, "ignoring a media record under another label's key");
                }
                Err(error) => warn!(%key, %error, "ignoring a media entry that is not a record"),
            }
        } else if let Some(names) = kv.key.strip_prefix(self.forwarder_prefix.as_slice()) {
            match serde_json::from_slice::<ForwarderRecord>(&kv.value) {
                Ok(record)
                    if format!("{}/{}", record.service, record.namespace).as_bytes() == names =>
                {
                    self.forwarders.insert(kv.key.clone(), record);
                }
                Ok(_) => warn!(%key, "ignoring a forwarder record under another pair's key"),
                Err(error) => {
                    warn!(%key, %error, "ignoring a forwarder entry that is not a record");
                }
            }
        }
    }

    fn delete(&mut self, key: &[u8]) {
        self.media.remove(key);
        self.forwarders.remove(key);
    }

    fn snapshot(&self, revision: i64) -> RouteSnapshot {
        RouteSnapshot {
            version: u64::try_from(revision).unwrap_or(0),
            media: self.media.values().cloned().collect(),
            forwarders: self.forwarders.values().cloned().collect(),
        }
    }
}

fn install(tx: &watch::Sender<Cache>, snapshot: RouteSnapshot) {
    tx.send_if_modified(|held| {
        if held.loaded && *held.snapshot == snapshot {
            return false;
        }
        *held = Cache {
            loaded: true,
            snapshot: Arc::new(snapshot),
        };
        true
    });
}

/// Lists and watches until aborted.
async fn follow(client: EtcdClient, tx: Arc<watch::Sender<Cache>>) {
    let prefix = client.settings().watched().into_bytes();
    let mut warned = false;
    loop {
        let listed = match client.list(&prefix).await {
            Ok(listed) => listed,
            Err(error) => {
                if !warned {
                    warn!(%error, "cannot list the etcd prefix; keeping the current routes");
                    warned = true;
                }
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut entries = Entries::new(&client);
        for kv in &listed.kvs {
            entries.put(kv);
        }
        let mut revision = listed.header.revision;
        install(&tx, entries.snapshot(revision));
        if warned {
            info!(revision, "etcd prefix listed again");
            warned = false;
        }
        match watch_from(&client, &prefix, &mut entries, &mut revision, &tx).await {
            Ok(()) => debug!(revision, "watch replaced by a fresh list"),
            Err(error) => {
                warn!(%error, revision, "etcd watch lost; listing again");
            }
        }
    }
}

/// Applies the watch's events from `revision` + 1 until it ends (`Ok` at the resync time or
/// when the server cancels it, `Err` when it breaks).
async fn watch_from(
    client: &EtcdClient,
    prefix: &[u8],
    entries: &mut Entries,
    revision: &mut i64,
    tx: &watch::Sender<Cache>,
) -> Result<(), EtcdError> {
    let mut stream = client.watch(prefix, *revision + 1).await?;
    let until = Instant::now() + RESYNC;
    while let Some(message) = stream.next(until).await? {
        if message.canceled || message.compact_revision > 0 {
            return Err(EtcdError::Unavailable {
                what: "watch".to_owned(),
                reason: format!(
                    "cancelled (compacted at {}): {}",
                    message.compact_revision, message.cancel_reason
                ),
            });
        }
        if message.events.is_empty() {
            continue;
        }
        for event in &message.events {
            if event.is_delete() {
                entries.delete(&event.kv.key);
            } else {
                entries.put(&event.kv);
            }
            *revision = (*revision).max(event.kv.mod_revision);
        }
        *revision = (*revision).max(message.header.revision);
        install(tx, entries.snapshot(*revision));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..KeyValue::default()
        }
    }

    #[test]
    fn entries_follow_puts_and_deletes_and_check_keys() {
        let mut entries = Entries {
            media_prefix: b"/sg/media/".to_vec(),
            forwarder_prefix: b"/sg/forwarders/".to_vec(),
            ..Entries::default()
        };
        let media = r#"{"label":"m-a","namespace":"N","addr":"127.0.0.1:1","instance":"i"}"#;
        let forwarder =
            r#"{"service":"S","namespace":"N","addr":"127.0.0.1:2","label":"m-a","instance":"j"}"#;
        entries.put(&kv("/sg/media/m-a", media));
        entries.put(&kv("/sg/forwarders/S/N", forwarder));
        entries.put(&kv("/sg/media/m-b", media));
        entries.put(&kv("/sg/forwarders/S/M", forwarder));
        entries.put(&kv("/sg/media/m-c", "not json"));
        entries.put(&kv("/sg/other", media));
        let snapshot = entries.snapshot(7);
        assert_eq!(snapshot.version, 7);
        assert_eq!(snapshot.media.len(), 1, "{snapshot:?}");
        assert_eq!(snapshot.media[0].label, "m-a");
        assert_eq!(snapshot.forwarders.len(), 1, "{snapshot:?}");
        entries.delete(b"/sg/media/m-a");
        let snapshot = entries.snapshot(8);
        assert!(snapshot.media.is_empty());
        assert_eq!(snapshot.forwarders.len(), 1);
    }
}
