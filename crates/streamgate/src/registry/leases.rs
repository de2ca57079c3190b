//! The registry's state (sans-I/O): media servers by unique label and forwarders by
//! (service, namespace), each with a lease renewed by heartbeats. Time is passed in.
//!
//! Rules:
//! * A registration always wins: a media server that restarts on a new address registers
//!   under its label with a new instance id and replaces the old entry at once (seed ¶53: the
//!   label, not the address, is what the forwarder is bound to).
//! * A heartbeat renews the lease only for the instance that holds the entry. A heartbeat
//!   from a replaced instance is answered [`Renewal::Superseded`] (it should stop); one for an
//!   expired or unknown entry is answered [`Renewal::Unknown`] (it should register again).
//! * Entries declared statically (TOML) never expire; a registration under the same key
//!   replaces them.
//! * Every change (new entry, new address, removal, expiry) increments the version, which
//!   watchers long-poll on.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{ForwarderRecord, MediaRecord, RouteSnapshot};

/// Outcome of a registration or heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// A new entry, or one replaced (the previous record is given).
    Registered {
        /// What the key held before, if anything.
        previous: Option<String>,
    },
    /// The lease was extended.
    Renewed,
    /// Another instance holds the key now; the caller should stop heartbeating.
    Superseded,
    /// No live entry under this key; the caller should register again.
    Unknown,
}

#[derive(Debug, Clone)]
struct Entry<T> {
    record: T,
    /// `None` for static entries.
    expires: Option<Instant>,
}

impl<T> Entry<T> {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| now < t)
    }
}

/// Media servers and forwarders with their leases; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Leases {
    media: BTreeMap<String, Entry<MediaRecord>>,
    forwarders: BTreeMap<(String, String), Entry<ForwarderRecord>>,
    version: u64,
}

impl Leases {
    /// Empty state at version 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The version; it changes whenever the routing-relevant content does.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Declares a media server that never expires.
    pub fn add_static_media(&mut self, record: MediaRecord) {
        self.media.insert(
            record.label.clone(),
            Entry {
                record,
                expires: None,
            },
        );
        self.version += 1;
    }

    /// Declares a forwarder that never expires.
    pub fn add_static_forwarder(&mut self, record: ForwarderRecord) {
        self.forwarders.insert(
            (record.service.clone(), record.namespace.clone()),
            Entry {
                record,
                expires: None,
            },
        );
        self.version += 1;
    }

    /// Registers (or replaces) a media server under its label with a lease of `ttl`.
    pub fn register_media(&mut self, record: MediaRecord, ttl: Duration, now: Instant) -> Renewal {
        let label = record.label.clone();
        let previous = self
            .media
            .get(&label)
            .filter(|e| e.live(now))
            .map(|e| e.record.addr.to_string());
        let changed = self
            .media
            .get(&label)
            .is_none_or(|e| !e.live(now) || e.record != record);
        self.media.insert(
            label,
            Entry {
                record,
                expires: Some(now + ttl),
            },
        );
        if changed {
            self.version += 1;
        }
        Renewal::Registered { previous }
    }

    /// Extends the lease of `label` held by `instance`.
    pub fn heartbeat_media(
        &mut self,
        label: &str,
        instance: &str,
        ttl: Duration,
        now: Instant,
    ) -> Renewal {
        match self.media.get_mut(label) {
            Some(entry) if entry.live(now) => {
                if entry.record.instance != instance {
                    Renewal::Superseded
                } else {
                    if entry.expires.is_some() {
                        entry.expires = Some(now + ttl);
                    }
                    Renewal::Renewed
                }
            }
            _ => Renewal::Unknown,
        }
    }

    /// Removes `label` if `instance` holds it (a clean shutdown); true if removed.
    pub fn remove_media(&mut self, label: &str, instance: &str) -> bool {
        if self
            .media
            .get(label)
            .is_some_and(|e| e.record.instance == instance)
        {
            self.media.remove(label);
            self.version += 1;
            true
        } else {
            false
        }
    }

    /// Registers (or replaces) a forwarder under (service, namespace) with a lease of `ttl`.
    pub fn register_forwarder(
        &mut self,
        record: ForwarderRecord,
        ttl: Duration,
        now: Instant,
    ) -> Renewal {
        let key = (record.service.clone(), record.namespace.clone());
        let previous = self
            .forwarders
            .get(&key)
            .filter(|e| e.live(now))
            .map(|e| e.record.addr.to_string());
        let changed = self
            .forwarders
            .get(&key)
            .is_none_or(|e| !e.live(now) || e.record != record);
        self.forwarders.insert(
            key,
            Entry {
                record,
                expires: Some(now + ttl),
            },
        );
        if changed {
            self.version += 1;
        }
        Renewal::Registered { previous }
    }

    /// Extends the lease of the forwarder (service, namespace) held by `instance`.
    pub fn heartbeat_forwarder(
        &mut self,
        service: &str,
        namespace: &str,
        instance: &str,
        ttl: Duration,
        now: Instant,
    ) -> Renewal {
        match self
            .forwarders
            .get_mut(&(service.to_owned(), namespace.to_owned()))
        {
            Some(entry) if entry.live(now) => {
                if entry.record.instance != instance {
                    Renewal::Superseded
                } else {
                    if entry.expires.is_some() {
                        entry.expires = Some(now + ttl);
                    }
                    Renewal::Renewed
                }
            }
            _ => Renewal::Unknown,
        }
    }

    /// Removes the forwarder if `instance` holds it; true if removed.
    pub fn remove_forwarder(&mut self, service: &str, namespace: &str, instance: &str) -> bool {
        let key = (service.to_owned(), namespace.to_owned());
        if self
            .forwarders
            .get(&key)
            .is_some_and(|e| e.record.instance == instance)
        {
            self.forwarders.remove(&key);
            self.version += 1;
            true
        } else {
            false
        }
    }

    /// Drops expired entries; returns their keys (labels, or `service/namespace`).
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut gone: Vec<String> = self
            .media
            .iter()
            .filter(|(_, e)| !e.live(now))
            .map(|(k, _)| k.clone())
            .collect();
        self.media.retain(|_, e| e.live(now));
        let forwarders: Vec<String> = self
            .forwarders
            .iter()
            .filter(|(_, e)| !e.live(now))
            .map(|((s, n), _)| format!("{s}/{n}"))
            .collect();
        self.forwarders.retain(|_, e| e.live(now));
        gone.extend(forwarders);
        if !gone.is_empty() {
            self.version += 1;
        }
        gone
    }

    /// The live media server under `label`.
    pub fn media(&self, label: &str, now: Instant) -> Option<&MediaRecord> {
        self.media
            .get(label)
            .filter(|e| e.live(now))
            .map(|e| &e.record)
    }

    /// Everything live, at the current version.
    pub fn snapshot(&self, now: Instant) -> RouteSnapshot {
        RouteSnapshot {
            version: self.version,
            media: self
                .media
                .values()
                .filter(|e| e.live(now))
                .map(|e| e.record.clone())
                .collect(),
            forwarders: self
                .forwarders
                .values()
                .filter(|e| e.live(now))
                .map(|e| e.record.clone())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use svckit::{Clock, TestClock};

    const TTL: Duration = Duration::from_secs(3);

    fn media(instance: &str, port: u16) -> MediaRecord {
        MediaRecord {
            label: "media-a".to_owned(),
            namespace: "NameSpaceA".to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            streams: vec!["main_stream".to_owned()],
            instance: instance.to_owned(),
        }
    }

    #[test]
    fn lease_expires_without_heartbeats() {
        let clock = TestClock::new();
        let mut leases = Leases::new();
        let v0 = leases.version();
        assert_eq!(
            leases.register_media(media("i1", 1000), TTL, clock.now()),
            Renewal::Registered { previous: None }
        );
        assert!(leases.version() > v0);
        clock.tick(Duration::from_secs(2));
        assert_eq!(
            leases.heartbeat_media("media-a", "i1", TTL, clock.now()),
            Renewal::Renewed
        );
        clock.tick(Duration::from_millis(2_999));
        assert!(leases.media("media-a", clock.now()).is_some());
        assert!(leases.expire(clock.now()).is_empty());
        clock.tick(Duration::from_millis(1));
        assert!(
            leases.media("media-a", clock.now()).is_none(),
            "expired before the sweep"
        );
        let v = leases.version();
        assert_eq!(leases.expire(clock.now()), vec!["media-a".to_owned()]);
        assert!(leases.version() > v);
        assert_eq!(
            leases.heartbeat_media("media-a", "i1", TTL, clock.now()),
            Renewal::Unknown
        );
    }

    #[test]
    fn a_restarted_server_replaces_the_old_one() {
        let clock = TestClock::new();
        let mut leases = Leases::new();
        leases.register_media(media("old", 1000), TTL, clock.now());
        let v = leases.version();
        assert_eq!(
            leases.register_media(media("new", 2000), TTL, clock.now()),
            Renewal::Registered {
                previous: Some("127.0.0.1:1000".to_owned())
            }
        );
        assert!(leases.version() > v);
        assert_eq!(
            leases.media("media-a", clock.now()).unwrap().addr.port(),
            2000
        );
        assert_eq!(
            leases.heartbeat_media("media-a", "old", TTL, clock.now()),
            Renewal::Superseded
        );
        assert!(
            !leases.remove_media("media-a", "old"),
            "old instance cannot remove"
        );
        // Re-registering the same record does not bump the version.
        let v = leases.version();
        leases.register_media(media("new", 2000), TTL, clock.now());
        assert_eq!(leases.version(), v);
        assert!(leases.remove_media("media-a", "new"));
        assert!(leases.snapshot(clock.now()).media.is_empty());
    }

    #[test]
    fn static_entries_never_expire() {
        let clock = TestClock::new();
        let mut leases = Leases::new();
        leases.add_static_media(media("static", 1000));
        leases.add_static_forwarder(ForwarderRecord {
            service: "ServiceA".to_owned(),
            namespace: "NameSpaceA".to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            label: "media-a".to_owned(),
            instance: "static".to_owned(),
        });
        clock.tick(Duration::from_secs(3600));
        assert!(leases.expire(clock.now()).is_empty());
        let snap = leases.snapshot(clock.now());
        assert_eq!((snap.media.len(), snap.forwarders.len()), (1, 1));
        assert_eq!(
            leases.heartbeat_forwarder("ServiceA", "NameSpaceA", "static", TTL, clock.now()),
            Renewal::Renewed
        );
    }
}
