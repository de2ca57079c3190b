//! The registry's state (sans-I/O): media servers by unique label and forwarders by
//! (service, namespace), each with a lease renewed by heartbeats. Time is passed in.
//!
//! Rules:
//! * A key (a label, a (service, namespace) pair) is unique: one instance holds it at a
//!   time. A registration from the holding instance refreshes the entry; one from another
//!   instance while the holder's lease is live is refused with [`Renewal::Held`], unless the
//!   caller established that the holder is gone ([`Takeover::IfHolder`]: the registry's API
//!   probes the holder's address first). So a media server that restarts on a new address
//!   takes its label back at once (seed ¶53: the label, not the address, is what the
//!   forwarder is bound to), while a second claim on a label whose server is alive is refused
//!   and the real server keeps serving.
//! * A heartbeat renews the lease only for the instance that holds the entry. A heartbeat
//!   from a replaced instance is answered [`Renewal::Superseded`]; one for an expired or
//!   unknown entry [`Renewal::Unknown`]. Either way the instance registers again (its claim is
//!   refused while another live instance holds the key).
//! * Entries declared statically (TOML) never expire and are never taken over.
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
    /// Another instance holds the key now; the caller registers again (and is refused while
    /// that instance lives).
    Superseded,
    /// No live entry under this key; the caller should register again.
    Unknown,
    /// A live entry of another instance holds the key: the registration is refused.
    Held {
        /// The holder's address.
        addr: String,
        /// The holder's instance id.
        instance: String,
        /// Whether the holder is a static (configured) entry.
        fixed: bool,
    },
}

/// Whether a registration may replace a live entry of another instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takeover<'a> {
    /// No: a live entry of another instance is kept.
    No,
    /// Yes, if the entry is still held by this instance (probed and found gone).
    IfHolder(&'a str),
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

/// What a leased record tells the table: its key, the instance holding it and its address.
trait Leased: Clone + PartialEq {
    type Key: Ord + Clone;
    fn key(&self) -> Self::Key;
    fn instance(&self) -> &str;
    fn addr(&self) -> String;
}

impl Leased for MediaRecord {
    type Key = String;
    fn key(&self) -> String {
        self.label.clone()
    }
    fn instance(&self) -> &str {
        &self.instance
    }
    fn addr(&self) -> String {
        self.addr.to_string()
    }
}

impl Leased for ForwarderRecord {
    type Key = (String, String);
    fn key(&self) -> (String, String) {
        (self.service.clone(), self.namespace.clone())
    }
    fn instance(&self) -> &str {
        &self.instance
    }
    fn addr(&self) -> String {
        self.addr.to_string()
    }
}

/// One kind of leased record by key; the rules of the module docs, without the version (each
/// method says whether the routing-relevant content changed).
#[derive(Debug, Clone)]
struct Table<R: Leased> {
    entries: BTreeMap<R::Key, Entry<R>>,
}

impl<R: Leased> Default for Table<R> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
        }
    }
}

impl<R: Leased> Table<R> {
    fn add_static(&mut self, record: R) {
        self.entries.insert(
            record.key(),
            Entry {
                record,
                expires: None,
            },
        );
    }

    /// Returns the renewal and whether the content changed.
    fn register(
        &mut self,
        record: R,
        ttl: Duration,
        now: Instant,
        takeover: Takeover<'_>,
    ) -> (Renewal, bool) {
        let key = record.key();
        let live = self.entries.get(&key).filter(|e| e.live(now));
        if let Some(held) = live
            && held.record.instance() != record.instance()
        {
            let fixed = held.expires.is_none();
            let may_take =
                matches!(takeover, Takeover::IfHolder(gone) if gone == held.record.instance());
            if fixed || !may_take {
                return (
                    Renewal::Held {
                        addr: held.record.addr(),
                        instance: held.record.instance().to_owned(),
                        fixed,
                    },
                    false,
                );
            }
        }
        let previous = live.map(|e| e.record.addr());
        let changed = live.is_none_or(|e| e.record != record);
        self.entries.insert(
            key,
            Entry {
                record,
                expires: Some(now + ttl),
            },
        );
        (Renewal::Registered { previous }, changed)
    }

    fn heartbeat(&mut self, key: &R::Key, instance: &str, ttl: Duration, now: Instant) -> Renewal {
        match self.entries.get_mut(key) {
            Some(entry) if entry.live(now) => {
                if entry.record.instance() != instance {
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

    fn remove(&mut self, key: &R::Key, instance: &str) -> bool {
        let held = self
            .entries
            .get(key)
            .is_some_and(|e| e.record.instance() == instance);
        if held {
            self.entries.remove(key);
        }
        held
    }

    fn expire(&mut self, now: Instant) -> Vec<R::Key> {
        let gone: Vec<R::Key> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.live(now))
            .map(|(k, _)| k.clone())
            .collect();
        self.entries.retain(|_, e| e.live(now));
        gone
    }

    fn get(&self, key: &R::Key, now: Instant) -> Option<&R> {
        self.entries
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| &e.record)
    }

    fn live(&self, now: Instant) -> Vec<R> {
        self.entries
            .values()
            .filter(|e| e.live(now))
            .map(|e| e.record.clone())
            .collect()
    }
}

/// Media servers and forwarders with their leases; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct Leases {
    media: Table<MediaRecord>,
    forwarders: Table<ForwarderRecord>,
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

    fn bump_if(&mut self, changed: bool) {
        if changed {
            self.version += 1;
        }
    }

    /// Declares a media server that never expires.
    pub fn add_static_media(&mut self, record: MediaRecord) {
        self.media.add_static(record);
        self.version += 1;
    }

    /// Declares a forwarder that never expires.
    pub fn add_static_forwarder(&mut self, record: ForwarderRecord) {
        self.forwarders.add_static(record);
        self.version += 1;
    }

    /// Registers a media server under its label with a lease of `ttl` (refused while another
    /// live instance holds the label, see [`Takeover`]).
    pub fn register_media(
        &mut self,
        record: MediaRecord,
        ttl: Duration,
        now: Instant,
        takeover: Takeover<'_>,
    ) -> Renewal {
        let (renewal, changed) = self.media.register(record, ttl, now, takeover);
        self.bump_if(changed);
        renewal
    }

    /// Extends the lease of `label` held by `instance`.
    pub fn heartbeat_media(
        &mut self,
        label: &str,
        instance: &str,
        ttl: Duration,
        now: Instant,
    ) -> Renewal {
        self.media.heartbeat(&label.to_owned(), instance, ttl, now)
    }

    /// Removes `label` if `instance` holds it (a clean shutdown); true if removed.
    pub fn remove_media(&mut self, label: &str, instance: &str) -> bool {
        let removed = self.media.remove(&label.to_owned(), instance);
        self.bump_if(removed);
        removed
    }

    /// Registers a forwarder under (service, namespace) with a lease of `ttl` (refused while
    /// another live instance holds the pair, see [`Takeover`]).
    pub fn register_forwarder(
        &mut self,
        record: ForwarderRecord,
        ttl: Duration,
        now: Instant,
        takeover: Takeover<'_>,
    ) -> Renewal {
        let (renewal, changed) = self.forwarders.register(record, ttl, now, takeover);
        self.bump_if(changed);
        renewal
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
        let key = (service.to_owned(), namespace.to_owned());
        self.forwarders.heartbeat(&key, instance, ttl, now)
    }

    /// Removes the forwarder if `instance` holds it; true if removed.
    pub fn remove_forwarder(&mut self, service: &str, namespace: &str, instance: &str) -> bool {
        let key = (service.to_owned(), namespace.to_owned());
        let removed = self.forwarders.remove(&key, instance);
        self.bump_if(removed);
        removed
    }

    /// Drops expired entries; returns their keys (labels, or `service/namespace`).
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut gone = self.media.expire(now);
        gone.extend(
            self.forwarders
                .expire(now)
                .into_iter()
                .map(|(s, n)| format!("{s}/{n}")),
        );
        self.bump_if(!gone.is_empty());
        gone
    }

    /// The live forwarder under (service, namespace).
    pub fn forwarder(
        &self,
        service: &str,
        namespace: &str,
        now: Instant,
    ) -> Option<&ForwarderRecord> {
        self.forwarders
            .get(&(service.to_owned(), namespace.to_owned()), now)
    }

    /// The live media server under `label`.
    pub fn media(&self, label: &str, now: Instant) -> Option<&MediaRecord> {
        self.media.get(&label.to_owned(), now)
    }

    /// Everything live, at the current version.
    pub fn snapshot(&self, now: Instant) -> RouteSnapshot {
        RouteSnapshot {
            version: self.version,
            media: self.media.live(now),
            forwarders: self.forwarders.live(now),
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
            leases.register_media(media("i1", 1000), TTL, clock.now(), Takeover::No),
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
    fn a_live_holder_keeps_its_label_and_a_gone_one_is_replaced() {
        let clock = TestClock::new();
        let mut leases = Leases::new();
        leases.register_media(media("old", 1000), TTL, clock.now(), Takeover::No);
        let v = leases.version();
        // A second claim while the holder lives is refused, and nothing changes.
        assert_eq!(
            leases.register_media(media("new", 2000), TTL, clock.now(), Takeover::No),
            Renewal::Held {
                addr: "127.0.0.1:1000".to_owned(),
                instance: "old".to_owned(),
                fixed: false
            }
        );
        // A takeover naming another holder than the current one is refused too.
        assert!(matches!(
            leases.register_media(
                media("new", 2000),
                TTL,
                clock.now(),
                Takeover::IfHolder("x")
            ),
            Renewal::Held { .. }
        ));
        assert_eq!(leases.version(), v);
        assert_eq!(
            leases.media("media-a", clock.now()).unwrap().addr.port(),
            1000
        );
        // The holder was probed and found gone: the restarted server takes the label.
        assert_eq!(
            leases.register_media(
                media("new", 2000),
                TTL,
                clock.now(),
                Takeover::IfHolder("old")
            ),
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
        leases.register_media(media("new", 2000), TTL, clock.now(), Takeover::No);
        assert_eq!(leases.version(), v);
        // After the lease ran out, anyone may register.
        clock.tick(TTL);
        assert!(matches!(
            leases.register_media(media("third", 3000), TTL, clock.now(), Takeover::No),
            Renewal::Registered { .. }
        ));
        assert!(leases.remove_media("media-a", "third"));
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
        assert!(
            matches!(
                leases.register_media(
                    media("claim", 2000),
                    TTL,
                    clock.now(),
                    Takeover::IfHolder("static")
                ),
                Renewal::Held { fixed: true, .. }
            ),
            "static entries are never taken over"
        );
    }
}
