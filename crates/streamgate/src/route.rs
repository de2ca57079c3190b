//! Public stream addresses and how the proxy routes them (seed ¶47, ¶51-¶52).
//!
//! A stream's address on the one public port is
//! `/realtime-{service}-{namespace}/{stream}/{n}.flv` (seed ¶52:
//! `http://192.168.1.100:8080/realtime-ServiceA-NameSpaceA/main_stream/0.flv`): `service`
//! names the forwarding server, `namespace` the group of media servers (a region or scene,
//! seed ¶44-¶45), `stream` the camera's address information on that media server and `n` the
//! channel number. Service and namespace names may themselves contain `-`, so the
//! `{service}-{namespace}` segment is never split on a dash: it is matched against the
//! registered (service, namespace) pairs ([`RouteTable`]), the longest service name first.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::error::RouteError;

/// The route template, as logs record it (never the raw path).
pub const PUBLIC_ROUTE: &str = "/realtime-{service}-{namespace}/{stream}/{n}.flv";
/// The path prefix of every stream address.
pub const PREFIX: &str = "/realtime-";

/// A public stream address, parsed but not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicPath {
    /// The `{service}-{namespace}` segment.
    pub segment: String,
    /// The stream's address information on its media server.
    pub stream: String,
    /// The channel number `n` of `{n}.flv`.
    pub channel: u32,
}

impl PublicPath {
    /// The path the proxy sends to the forwarder, and the forwarder to the media server:
    /// `/{stream}/{n}.flv`.
    pub fn upstream_path(&self) -> String {
        format!("/{}/{}.flv", self.stream, self.channel)
    }
}

/// A stream address on a media server: `/{stream}/{n}.flv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPath {
    /// The stream's address information (a key of the media server's camera map).
    pub stream: String,
    /// The channel number.
    pub channel: u32,
}

impl StreamPath {
    /// The camera-map key: `stream` for channel 0, `stream/n` otherwise.
    pub fn camera_key(&self) -> String {
        if self.channel == 0 {
            self.stream.clone()
        } else {
            format!("{}/{}", self.stream, self.channel)
        }
    }
}

/// Whether `name` may be a stream, service or namespace name: 1-128 characters from
/// `[A-Za-z0-9_.-]`, not `.` or `..`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Parses `/{stream}/{n}.flv` (the query string, if any, is ignored).
///
/// # Errors
/// [`RouteError::Malformed`] naming the wrong part.
pub fn parse_stream_path(path: &str) -> Result<StreamPath, RouteError> {
    let malformed = |reason| RouteError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let path_only = path.split('?').next().unwrap_or_default();
    let rest = path_only
        .strip_prefix('/')
        .ok_or_else(|| malformed("must start with `/`"))?;
    let mut parts = rest.split('/');
    let (Some(stream), Some(file), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed("expected `/{stream}/{n}.flv`"));
    };
    if !is_valid_name(stream) {
        return Err(malformed("stream name must be 1-128 of [A-Za-z0-9_.-]"));
    }
    let number = file
        .strip_suffix(".flv")
        .ok_or_else(|| malformed("file must be `{n}.flv`"))?;
    if number.is_empty() || number.len() > 9 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("channel `{n}` must be a decimal number"));
    }
    let channel = number
        .parse()
        .map_err(|_| malformed("channel `{n}` must be a decimal number"))?;
    Ok(StreamPath {
        stream: stream.to_owned(),
        channel,
    })
}

/// Parses a public address `/realtime-{service}-{namespace}/{stream}/{n}.flv`.
///
/// # Errors
/// [`RouteError::Malformed`] naming the wrong part.
pub fn parse_public_path(path: &str) -> Result<PublicPath, RouteError> {
    let malformed = |reason| RouteError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let path_only = path.split('?').next().unwrap_or_default();
    let rest = path_only
        .strip_prefix(PREFIX)
        .ok_or_else(|| malformed("must start with `/realtime-`"))?;
    let (segment, tail) = rest
        .split_once('/')
        .ok_or_else(|| malformed("expected `/realtime-{service}-{namespace}/{stream}/{n}.flv`"))?;
    if segment.len() < 3 || !segment.contains('-') || !is_valid_name(segment) {
        return Err(malformed(
            "`{service}-{namespace}` must be two names of [A-Za-z0-9_.-] joined by `-`",
        ));
    }
    if segment.starts_with('-') || segment.ends_with('-') {
        return Err(malformed("service and namespace must not be empty"));
    }
    let stream = parse_stream_path(&format!("/{tail}")).map_err(|e| match e {
        RouteError::Malformed { reason, .. } => malformed(reason),
        other => other,
    })?;
    Ok(PublicPath {
        segment: segment.to_owned(),
        stream: stream.stream,
        channel: stream.channel,
    })
}

/// A file of a stream's HLS output (`/{stream}/{n}/index.m3u8`, `/{stream}/{n}/seg-{seq}.ts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HlsFile {
    /// The live media playlist `index.m3u8`.
    Playlist,
    /// The segment `seg-{seq}.ts`.
    Segment(u64),
}

impl HlsFile {
    /// The file name.
    pub fn name(&self) -> String {
        match self {
            Self::Playlist => crate::hls::PLAYLIST_NAME.to_owned(),
            Self::Segment(seq) => crate::hls::playlist::segment_name(*seq),
        }
    }
}

/// Whether `path` (query string ignored) names an HLS file: it ends in `.m3u8` or `.ts`.
pub fn is_hls_path(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    path.ends_with(".m3u8") || path.ends_with(".ts")
}

/// Splits `{prefix}/{file}` and parses the HLS file name.
fn split_hls(path: &str) -> Result<(&str, HlsFile), &'static str> {
    let path_only = path.split('?').next().unwrap_or_default();
    let (prefix, file) = path_only
        .rsplit_once('/')
        .ok_or("expected `.../{stream}/{n}/index.m3u8` or `.../seg-{seq}.ts`")?;
    let file = if file == crate::hls::PLAYLIST_NAME {
        HlsFile::Playlist
    } else {
        HlsFile::Segment(
            crate::hls::playlist::parse_segment_name(file)
                .ok_or("HLS file must be `index.m3u8` or `seg-{seq}.ts`")?,
        )
    };
    Ok((prefix, file))
}

/// Parses `/{stream}/{n}/index.m3u8` or `/{stream}/{n}/seg-{seq}.ts` (query ignored).
///
/// # Errors
/// [`RouteError::Malformed`] naming the wrong part.
pub fn parse_hls_path(path: &str) -> Result<(StreamPath, HlsFile), RouteError> {
    let malformed = |reason| RouteError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let (prefix, file) = split_hls(path).map_err(malformed)?;
    let stream = parse_stream_path(&format!("{prefix}.flv")).map_err(|e| match e {
        RouteError::Malformed { reason, .. } => malformed(reason),
        other => other,
    })?;
    Ok((stream, file))
}

/// Parses a public HLS address `/realtime-{service}-{namespace}/{stream}/{n}/index.m3u8` or
/// `.../seg-{seq}.ts` (query ignored).
///
/// # Errors
/// [`RouteError::Malformed`] naming the wrong part.
pub fn parse_public_hls_path(path: &str) -> Result<(PublicPath, HlsFile), RouteError> {
    let malformed = |reason| RouteError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let (prefix, file) = split_hls(path).map_err(malformed)?;
    let public = parse_public_path(&format!("{prefix}.flv")).map_err(|e| match e {
        RouteError::Malformed { reason, .. } => malformed(reason),
        other => other,
    })?;
    Ok((public, file))
}

/// Where a (service, namespace) pair is served: its forwarding server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTarget {
    /// The forwarding service's name.
    pub service: String,
    /// The namespace.
    pub namespace: String,
    /// The forwarder's address.
    pub addr: SocketAddr,
    /// The label of the media server the forwarder is bound to (for logs).
    pub label: String,
}

/// The proxy's routing table: `{service}-{namespace}` segments of the registered pairs.
///
/// Resolution is an exact match of the whole segment against `service + "-" + namespace`.
/// When two pairs spell the same segment (`a-b` + `c` and `a` + `b-c`), the one with the
/// longer service name wins, and [`RouteTable::ambiguities`] reports the clash. A miss is
/// explained: if some registered service followed by `-` starts the segment (the longest such
/// service), the namespace is unknown for it; otherwise the service is unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    /// Segment -> candidates, longest service name first.
    by_segment: BTreeMap<String, Vec<RouteTarget>>,
    /// Registered service names, longest first.
    services: Vec<String>,
}

impl RouteTable {
    /// Builds the table from the registered forwarders.
    pub fn new(targets: impl IntoIterator<Item = RouteTarget>) -> Self {
        let mut by_segment: BTreeMap<String, Vec<RouteTarget>> = BTreeMap::new();
        let mut services: Vec<String> = Vec::new();
        for target in targets {
            if !services.contains(&target.service) {
                services.push(target.service.clone());
            }
            by_segment
                .entry(format!("{}-{}", target.service, target.namespace))
                .or_default()
                .push(target);
        }
        for candidates in by_segment.values_mut() {
            candidates.sort_by(|a, b| {
                b.service
                    .len()
                    .cmp(&a.service.len())
                    .then_with(|| a.service.cmp(&b.service))
            });
        }
        services.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        Self {
            by_segment,
            services,
        }
    }

    /// Number of registered pairs.
    pub fn len(&self) -> usize {
        self.by_segment.values().map(Vec::len).sum()
    }

    /// Whether no pair is registered.
    pub fn is_empty(&self) -> bool {
        self.by_segment.is_empty()
    }

    /// Segments that more than one pair spells, with the pairs (the first one wins).
    pub fn ambiguities(&self) -> Vec<(&str, Vec<(&str, &str)>)> {
        self.by_segment
            .iter()
            .filter(|(_, c)| c.len() > 1)
            .map(|(segment, c)| {
                (
                    segment.as_str(),
                    c.iter()
                        .map(|t| (t.service.as_str(), t.namespace.as_str()))
                        .collect(),
                )
            })
            .collect()
    }

    /// Resolves a `{service}-{namespace}` segment.
    ///
    /// # Errors
    /// [`RouteError::UnknownNamespace`] when a registered service starts the segment,
    /// [`RouteError::UnknownService`] otherwise.
    pub fn resolve(&self, segment: &str) -> Result<&RouteTarget, RouteError> {
        if let Some(target) = self.by_segment.get(segment).and_then(|c| c.first()) {
            return Ok(target);
        }
        for service in &self.services {
            if let Some(namespace) = segment
                .strip_prefix(service.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .filter(|ns| !ns.is_empty())
            {
                return Err(RouteError::UnknownNamespace {
                    service: service.clone(),
                    namespace: namespace.to_owned(),
                });
            }
        }
        Err(RouteError::UnknownService {
            segment: segment.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(service: &str, namespace: &str, port: u16) -> RouteTarget {
        RouteTarget {
            service: service.to_owned(),
            namespace: namespace.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            label: format!("media-{port}"),
        }
    }

    #[test]
    fn public_paths() {
        let ok = parse_public_path("/realtime-ServiceA-NameSpaceA/main_stream/0.flv").unwrap();
        assert_eq!(ok.segment, "ServiceA-NameSpaceA");
        assert_eq!(ok.stream, "main_stream");
        assert_eq!(ok.channel, 0);
        assert_eq!(ok.upstream_path(), "/main_stream/0.flv");
        let q = parse_public_path("/realtime-a-b-c/cam.1/12.flv?token=x").unwrap();
        assert_eq!(
            (q.segment.as_str(), q.stream.as_str(), q.channel),
            ("a-b-c", "cam.1", 12)
        );
        for bad in [
            "/",
            "/main_stream/0.flv",
            "/realtime-/x/0.flv",
            "/realtime-ServiceA/x/0.flv",
            "/realtime--NameSpaceA/x/0.flv",
            "/realtime-ServiceA-/x/0.flv",
            "/realtime-ServiceA-NameSpaceA",
            "/realtime-ServiceA-NameSpaceA/",
            "/realtime-ServiceA-NameSpaceA/main_stream",
            "/realtime-ServiceA-NameSpaceA/main_stream/0.mp4",
            "/realtime-ServiceA-NameSpaceA/main_stream/zero.flv",
            "/realtime-ServiceA-NameSpaceA/main_stream/.flv",
            "/realtime-ServiceA-NameSpaceA/main_stream/0.flv/more",
            "/realtime-ServiceA-NameSpaceA/../0.flv",
            "/realtime-ServiceA-NameSpaceA/a b/0.flv",
            "/realtime-Service%41-NameSpaceA/main_stream/0.flv",
            "/realtime-ServiceA-NameSpaceA/main_stream/99999999999.flv",
        ] {
            let err = parse_public_path(bad).unwrap_err();
            assert!(
                matches!(err, RouteError::Malformed { .. }),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn hls_paths() {
        let (p, f) = parse_public_hls_path(
            "/realtime-ServiceA-NameSpaceA/main_stream/0/index.m3u8?expires=1",
        )
        .unwrap();
        assert_eq!(
            (p.segment.as_str(), p.stream.as_str(), p.channel),
            ("ServiceA-NameSpaceA", "main_stream", 0)
        );
        assert_eq!(f, HlsFile::Playlist);
        let (p, f) = parse_hls_path("/main_stream/2/seg-1764650000.ts").unwrap();
        assert_eq!(p.camera_key(), "main_stream/2");
        assert_eq!(f, HlsFile::Segment(1_764_650_000));
        assert_eq!(f.name(), "seg-1764650000.ts");
        assert!(is_hls_path("/a/0/index.m3u8?x=1"));
        assert!(is_hls_path("/a/0/seg-1.ts"));
        assert!(!is_hls_path("/a/0.flv"));
        for bad in [
            "/main_stream/0/other.m3u8",
            "/main_stream/0/seg-x.ts",
            "/main_stream/index.m3u8",
            "/main_stream/0.flv/index.m3u8",
            "/../0/index.m3u8",
            "/a/0/b/index.m3u8",
        ] {
            assert!(
                matches!(parse_hls_path(bad), Err(RouteError::Malformed { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn stream_paths_and_camera_keys() {
        let p = parse_stream_path("/main_stream/0.flv").unwrap();
        assert_eq!(p.camera_key(), "main_stream");
        let p = parse_stream_path("/main_stream/2.flv").unwrap();
        assert_eq!(p.camera_key(), "main_stream/2");
        assert!(parse_stream_path("/main_stream").is_err());
        assert!(parse_stream_path("main_stream/0.flv").is_err());
    }

    #[test]
    fn longest_match_resolution_with_hyphenated_names() {
        let table = RouteTable::new([
            target("ServiceA", "NameSpaceA", 1),
            target("ServiceA", "NameSpaceB", 2),
            target("cam-gw", "east-1", 3),
            target("cam", "gw-west", 4),
            target("cam-gw-east", "1", 5),
            target("a-b", "c", 6),
            target("a", "b-c", 7),
        ]);
        assert_eq!(table.len(), 7);
        // (segment, expected port or error)
        let cases: &[(&str, Result<u16, RouteError>)] = &[
            ("ServiceA-NameSpaceA", Ok(1)),
            ("ServiceA-NameSpaceB", Ok(2)),
            ("cam-gw-east-1", Ok(5)), // "cam-gw-east"+"1" beats "cam-gw"+"east-1"
            ("cam-gw-west", Ok(4)),
            ("a-b-c", Ok(6)), // "a-b" + "c" beats "a" + "b-c"
            (
                "ServiceA-NameSpaceC",
                Err(RouteError::UnknownNamespace {
                    service: "ServiceA".to_owned(),
                    namespace: "NameSpaceC".to_owned(),
                }),
            ),
            (
                "cam-gw-north",
                Err(RouteError::UnknownNamespace {
                    service: "cam-gw".to_owned(),
                    namespace: "north".to_owned(),
                }),
            ),
            (
                "ServiceZ-NameSpaceA",
                Err(RouteError::UnknownService {
                    segment: "ServiceZ-NameSpaceA".to_owned(),
                }),
            ),
            (
                "ServiceAB-NameSpaceA",
                Err(RouteError::UnknownService {
                    segment: "ServiceAB-NameSpaceA".to_owned(),
                }),
            ),
        ];
        for (segment, expected) in cases {
            let got = table.resolve(segment).map(|t| t.addr.port());
            assert_eq!(&got, expected, "{segment}");
        }
        let clashes = table.ambiguities();
        assert_eq!(clashes.len(), 2, "{clashes:?}");
        assert_eq!(clashes[0].0, "a-b-c");
        assert_eq!(clashes[0].1[0], ("a-b", "c"));
    }

    #[test]
    fn empty_table_knows_no_service() {
        let table = RouteTable::default();
        assert!(table.is_empty());
        assert!(matches!(
            table.resolve("ServiceA-NameSpaceA"),
            Err(RouteError::UnknownService { .. })
        ));
    }
}
