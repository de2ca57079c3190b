//! Outbound safety: where webhook deliveries may go (server-side request forgery, OWASP
//! SSRF prevention: validate the resolved address, not the URL text; no redirects).
//!
//! A receiver URL's host is resolved (IP literals as they are) and every address is checked:
//!
//! 1. the relay's own endpoints are refused always: its listeners (any local address on the
//!    API or operations port), its nodes' RPC/WebSocket endpoints and its database server;
//! 2. networks in `outbound.allow` are allowed (e.g. `127.0.0.1/32` for the demo and tests);
//! 3. the deny list is refused: unspecified, loopback, private (RFC 1918, ULA), shared address
//!    space (RFC 6598), link-local (with the cloud metadata address 169.254.169.254), IETF
//!    protocol assignments, documentation, benchmarking, multicast, reserved and broadcast
//!    ranges, plus `outbound.deny`; IPv4-mapped, NAT64 and 6to4 IPv6 addresses are checked as
//!    the IPv4 address they carry;
//! 4. anything else is allowed.
//!
//! Registration refuses a URL none of whose addresses pass; every delivery resolves again
//! (a DNS answer may change: rebinding) and connects to a checked address only, by putting the
//! address in the URL and the name in the `Host` header. The HTTP client follows no
//! redirects. What the owner sees of a failure is coarse ([`Refusal`], "no HTTP response"),
//! never which addresses exist or answer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use url::{Host, Url};

/// How long a DNS answer or a local-address check is reused.
const CACHE_FOR: Duration = Duration::from_secs(5);
/// Most entries in each cache (cleared when full).
const CACHE_MAX: usize = 10_000;
/// Time allowed for one DNS resolution.
const DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a destination is refused (the owner-facing text names no address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The URL is not `http(s)://host[:port]/...` without credentials.
    #[error("the receiver URL must be http(s)://host[:port]/path without user or password")]
    BadUrl,
    /// The host does not resolve (or not in time).
    #[error("the receiver host does not resolve")]
    Unresolvable,
    /// Every address of the host is refused by the relay's outbound policy.
    #[error("the receiver address is not allowed by the relay's outbound policy")]
    NotAllowed,
}

/// The built-in deny list.
fn deny_list() -> Vec<IpNet> {
    [
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    ]
    .iter()
    .filter_map(|net| net.parse().ok())
    .collect()
}

/// The IPv4 address an IPv6 address carries (mapped, NAT64 well-known prefix, 6to4).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let tail = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(tail(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(tail(s[1], s[2]));
    }
    None
}

/// DNS answers by (name, port), with when they were fetched.
type DnsCache = HashMap<(String, u16), (Vec<SocketAddr>, Instant)>;

/// The relay's outbound policy.
#[derive(Debug)]
pub struct Outbound {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    /// Ports of the relay's own listeners: refused on every local address.
    own_ports: Vec<u16>,
    /// The relay's nodes and database: refused exactly.
    internal: Vec<SocketAddr>,
    dns: Mutex<DnsCache>,
    local: Mutex<HashMap<IpAddr, (bool, Instant)>>,
}

impl Outbound {
    /// A policy allowing `allow`, refusing the deny list and `extra_deny`, and always refusing
    /// the relay's own listener ports (on local addresses) and `internal` endpoints.
    pub fn new(
        allow: Vec<IpNet>,
        extra_deny: Vec<IpNet>,
        own_ports: Vec<u16>,
        internal: Vec<SocketAddr>,
    ) -> Self {
        let mut deny = deny_list();
        deny.extend(extra_deny);
        Self {
            allow,
            deny,
            own_ports,
            internal,
            dns: Mutex::new(HashMap::new()),
            local: Mutex::new(HashMap::new()),
        }
    }

    /// The `(host, port)` endpoints of `urls` (nodes, database), resolved now; names that do
    /// not resolve are skipped (they cannot be reached either).
    pub async fn endpoints_of(urls: &[Url]) -> Vec<SocketAddr> {
        let mut endpoints = Vec::new();
        for url in urls {
            let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                continue;
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(Ok(addrs)) =
                tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host, port))).await
            {
                endpoints.extend(addrs);
            }
        }
        endpoints
    }

    fn is_local(&self, ip: IpAddr) -> bool {
        if ip.is_loopback() || ip.is_unspecified() {
            return true;
        }
        let now = Instant::now();
        let mut cache = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((local, at)) = cache.get(&ip)
            && now.duration_since(*at) < CACHE_FOR
        {
            return *local;
        }
        // Binding succeeds only for an address of this host.
        let local = UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(ip, (local, now));
        local
    }

    /// Whether the relay may connect to `addr`.
    pub fn permits(&self, addr: SocketAddr) -> bool {
        let ip = match addr.ip() {
            IpAddr::V6(v6) => embedded_v4(v6).map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        let target = SocketAddr::new(ip, addr.port());
        if self.internal.contains(&target) || self.internal.contains(&addr) {
            return false;
        }
        if self.own_ports.contains(&addr.port()) && self.is_local(ip) {
            return false;
        }
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        !self.deny.iter().any(|net| net.contains(&ip))
    }

    /// The permitted addresses of `url`'s host (resolved with a 2 s limit, answers reused for
    /// 5 s).
    ///
    /// # Errors
    /// [`Refusal::BadUrl`] for a URL that is not plain http(s), [`Refusal::Unresolvable`],
    /// or [`Refusal::NotAllowed`] when no address passes.
    pub async fn resolve(&self, url: &Url) -> Result<Vec<SocketAddr>, Refusal> {
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(Refusal::BadUrl);
        }
        let port = url.port_or_known_default().ok_or(Refusal::BadUrl)?;
        let addrs = match url.host().ok_or(Refusal::BadUrl)? {
            Host::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            Host::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
            Host::Domain(name) => self.lookup(name, port).await?,
        };
        let permitted: Vec<SocketAddr> = addrs.into_iter().filter(|a| self.permits(*a)).collect();
        if permitted.is_empty() {
            Err(Refusal::NotAllowed)
        } else {
            Ok(permitted)
        }
    }

    async fn lookup(&self, name: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
        let key = (name.to_ascii_lowercase(), port);
        let now = Instant::now();
        if let Some((addrs, at)) = self
            .dns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            && now.duration_since(*at) < CACHE_FOR
        {
            return Ok(addrs.clone());
        }
        let addrs: Vec<SocketAddr> =
            match tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((name, port))).await {
                Ok(Ok(addrs)) => addrs.collect(),
                _ => return Err(Refusal::Unresolvable),
            };
        if addrs.is_empty() {
            return Err(Refusal::Unresolvable);
        }
        let mut cache = self.dns.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, (addrs.clone(), now));
        Ok(addrs)
    }
}

/// `url` with its host replaced by `addr` (the checked address to connect to), and the
/// `Host` header value of the original (`name[:port]`).
pub fn pinned(url: &Url, addr: SocketAddr) -> Option<(Url, String)> {
    let host = url.host_str()?;
    let host_header = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let mut pinned = url.clone();
    pinned.set_ip_host(addr.ip()).ok()?;
    pinned.set_port(Some(addr.port())).ok()?;
    Some((pinned, host_header))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> Outbound {
        Outbound::new(
            allow.iter().map(|n| n.parse().unwrap()).collect(),
            vec!["8.8.4.0/24".parse().unwrap()],
            vec![8645, 8646],
            vec![
                "127.0.0.1:8545".parse().unwrap(),
                "93.184.215.14:5432".parse().unwrap(),
            ],
        )
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_deny_list_covers_internal_ranges() {
        let p = policy(&[]);
        for refused in [
            "127.0.0.1:80",
            "10.1.2.3:80",
            "172.20.0.1:80",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "100.64.0.1:80",
            "0.0.0.0:80",
            "224.0.0.1:80",
            "255.255.255.255:80",
            "[::1]:80",
            "[fe80::1]:80",
            "[fd00:ec2::254]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:169.254.169.254]:80",
            "[64:ff9b::a9fe:a9fe]:80",
            "[2002:a9fe:a9fe::]:80",
            "8.8.4.4:443",
            "93.184.215.14:5432",
        ] {
            assert!(!p.permits(addr(refused)), "{refused} permitted");
        }
        for permitted in ["93.184.215.14:80", "8.8.8.8:443", "[2606:4700::1111]:443"] {
            assert!(p.permits(addr(permitted)), "{permitted} refused");
        }
    }

    #[test]
    fn allowing_loopback_keeps_the_relay_itself_refused() {
        let p = policy(&["127.0.0.1/32"]);
        assert!(p.permits(addr("127.0.0.1:9000")));
        // Own listeners, the node, other loopback addresses.
        assert!(!p.permits(addr("127.0.0.1:8645")));
        assert!(!p.permits(addr("127.0.0.1:8646")));
        assert!(!p.permits(addr("127.0.0.1:8545")));
        assert!(!p.permits(addr("127.0.0.2:9000")));
        assert!(!p.permits(addr("[::ffff:127.0.0.1]:8645")));
    }

    #[tokio::test]
    async fn urls_are_checked_after_resolution() {
        let p = policy(&[]);
        for (url, expected) in [
            ("http://localhost:9000/", Err(Refusal::NotAllowed)),
            ("http://169.254.169.254/latest", Err(Refusal::NotAllowed)),
            ("http://[::1]:9000/", Err(Refusal::NotAllowed)),
            ("http://user:pw@93.184.215.14/", Err(Refusal::BadUrl)),
            ("ftp://93.184.215.14/", Err(Refusal::BadUrl)),
            (
                "http://93.184.215.14:8080/hook",
                Ok(vec![addr("93.184.215.14:8080")]),
            ),
        ] {
            let url: Url = url.parse().unwrap();
            assert_eq!(p.resolve(&url).await, expected, "{url}");
        }
    }

    #[test]
    fn pinning_keeps_the_host_header() {
        let url: Url = "http://hooks.example:8080/a?b=1".parse().unwrap();
        let (pinned, host) = pinned(&url, addr("93.184.215.14:8080")).unwrap();
        assert_eq!(pinned.as_str(), "http://93.184.215.14:8080/a?b=1");
        assert_eq!(host, "hooks.example:8080");
    }
}
