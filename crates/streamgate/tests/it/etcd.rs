//! The etcd discovery backend against real etcd (`/usr/bin/etcd`, Debian `etcd-server`,
//! 3.4) started here on free 127.0.0.1 ports with temporary data directories, killed when
//! the test ends: (a) one member: a label registered by a media server process, resolved by
//! a forwarder, played through the proxy; a second claim refused while the first keeps
//! serving; the lease expiring when the server is killed so that the label frees. (b) three
//! members: the leader killed while viewers play through the chain; no viewer disconnects,
//! a new registration after the kill succeeds, the proxy routes to it, and the first media
//! server's lease survived the election. (c) authentication: user/password with a role on
//! the prefix, anonymous and wrong-password clients refused, tokens refused after a member
//! restart and obtained again.

use std::time::{Duration, Instant};

use streamgate::AnyDiscovery;
use streamgate::etcd::{Claim, EtcdClient, EtcdDiscovery, EtcdSettings};
use streamgate::forwarder::ForwarderConfig;
use streamgate::media::MediaConfig;
use streamgate::proxy::ProxyConfig;
use streamgate::registry::MediaRecord;
use svckit::process::{ChildGuard, ProcessSpec};
use svckit::redact::Secret;
use testkit::{Peer, Ready};
use tokio::task::JoinSet;

use crate::{bin, camera, open, rtsp};

/// One etcd member.
struct Member {
    client_port: u16,
    /// Its command line (to start it again with the same data directory).
    spec: ProcessSpec,
    child: Option<ChildGuard>,
}

/// An etcd cluster of this test's own (members killed on drop, with their process group).
struct Etcd {
    members: Vec<Member>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// `n` members on free ports, each ready and agreeing on a leader.
    async fn start(n: usize) -> Self {
        Self::start_with(n, &[]).await
    }

    /// As [`Etcd::start`], with `extra` arguments for every member.
    async fn start_with(n: usize, extra: &[&str]) -> Self {
        let program = testkit::require("etcd");
        let dir = testkit::tempdir();
        let ports: Vec<(u16, u16)> = (0..n)
            .map(|_| (testkit::free_port(), testkit::free_port()))
            .collect();
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("it-{}-{}", std::process::id(), ports[0].0);
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let spec = ProcessSpec::new(program.display().to_string())
                .args([
                    "--name".to_owned(),
                    format!("m{i}"),
                    "--data-dir".to_owned(),
                    dir.path().join(format!("m{i}")).display().to_string(),
                    "--listen-client-urls".to_owned(),
                    client_url.clone(),
                    "--advertise-client-urls".to_owned(),
                    client_url,
                    "--listen-peer-urls".to_owned(),
                    peer_url.clone(),
                    "--initial-advertise-peer-urls".to_owned(),
                    peer_url,
                    "--initial-cluster".to_owned(),
                    cluster.clone(),
                    "--initial-cluster-state".to_owned(),
                    "new".to_owned(),
                    "--initial-cluster-token".to_owned(),
                    token.clone(),
                    "--heartbeat-interval".to_owned(),
                    "100".to_owned(),
                    "--election-timeout".to_owned(),
                    "1000".to_owned(),
                ])
                .args(extra)
                .log_file(dir.path().join(format!("m{i}.log")));
            members.push(Member {
                client_port: *client,
                child: Some(spec.clone().spawn().unwrap()),
                spec,
            });
        }
        let etcd = Self { members, _dir: dir };
        etcd.until_leader().await;
        etcd
    }

    /// Waits until the live members agree on a leader.
    async fn until_leader(&self) {
        let started = Instant::now();
        while self.leader().await.is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "etcd did not elect a leader: {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills member `index` and starts it again on the same data directory and ports (its
    /// in-memory auth tokens are gone).
    async fn restart(&mut self, index: usize) {
        self.kill(index);
        let member = &mut self.members[index];
        member.child = Some(member.spec.clone().spawn().unwrap());
        self.until_leader().await;
    }

    fn logs(&self) -> String {
        self.members
            .iter()
            .filter_map(|m| m.child.as_ref().map(|c| c.log_tail(10)))
            .collect::<Vec<_>>()
            .join("\n---\n")
    }

    /// Client URLs of the live members, `first` (an index of `members`) first.
    fn endpoints(&self, first: usize) -> Vec<String> {
        let mut order: Vec<usize> = (0..self.members.len()).collect();
        order.rotate_left(first);
        order
            .into_iter()
            .filter(|&i| self.members[i].child.is_some())
            .map(|i| format!("127.0.0.1:{}", self.members[i].client_port))
            .collect()
    }

    /// A client with leases of `ttl_s`, trying member `first` first.
    fn client(&self, ttl_s: u64, first: usize) -> EtcdClient {
        self.client_as(ttl_s, first, "", "")
    }

    /// As [`Etcd::client`], authenticating as `user` with `password`.
    fn client_as(&self, ttl_s: u64, first: usize, user: &str, password: &str) -> EtcdClient {
        EtcdClient::new(
            EtcdSettings::new(
                &self.endpoints(first),
                "/it",
                ttl_s,
                3000,
                user,
                &Secret::new(password),
            )
            .unwrap(),
        )
    }

    /// `POST {path}` with `body` to the first member, for set-up calls the client has no
    /// method for; panics unless it answers 200.
    async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
        token: Option<&str>,
    ) -> serde_json::Value {
        let http = streamgate::hop::HopClient::new(Duration::from_secs(2), Duration::from_secs(5));
        let mut request = http::Request::post(format!(
            "http://127.0.0.1:{}{path}",
            self.members[0].client_port
        ));
        if let Some(token) = token {
            request = request.header("authorization", token);
        }
        let request = request
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .unwrap();
        let response = http.send(request).await.unwrap();
        let status = response.status();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    /// The index of the leader, if every live member agrees on one
    /// (`/v3/maintenance/status` of each).
    async fn leader(&self) -> Option<usize> {
        let client = self.client(1, 0);
        let live: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].child.is_some())
            .collect();
        let mut leader_id = None;
        let mut leader_index = None;
        for (position, &index) in live.iter().enumerate() {
            let status = client.status_of(position).await.ok()?;
            if status.leader == 0 || leader_id.is_some_and(|id| id != status.leader) {
                return None;
            }
            leader_id = Some(status.leader);
            if status.leader == status.header.member_id {
                leader_index = Some(index);
            }
        }
        leader_index
    }

    /// Kills member `index` (`SIGKILL`).
    fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            child.kill();
        }
    }
}

fn any_port() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn media_config(label: &str, namespace: &str, camera_url: &str) -> MediaConfig {
    MediaConfig {
        label: label.to_owned(),
        namespace: namespace.to_owned(),
        listen: any_port(),
        admin_listen: any_port(),
        cameras: [("sub_stream".to_owned(), camera_url.to_owned())]
            .into_iter()
            .collect(),
        ..MediaConfig::default()
    }
}

async fn forwarder(
    client: &EtcdClient,
    service: &str,
    namespace: &str,
    label: &str,
) -> streamgate::Running {
    let config = ForwarderConfig {
        service: service.to_owned(),
        namespace: namespace.to_owned(),
        label: label.to_owned(),
        listen: any_port(),
        admin_listen: any_port(),
        ..ForwarderConfig::default()
    };
    let running = streamgate::service::start_forwarder(
        &config,
        AnyDiscovery::Etcd(EtcdDiscovery::new(client.clone())),
        Some(client.clone()),
    )
    .await
    .unwrap();
    assert!(running.wait_registered(Duration::from_secs(10)).await);
    running
}

async fn proxy(client: &EtcdClient) -> streamgate::Running {
    let config = ProxyConfig {
        listen: any_port(),
        admin_listen: any_port(),
        ..ProxyConfig::default()
    };
    streamgate::service::start_proxy(
        &config,
        AnyDiscovery::Etcd(EtcdDiscovery::new(client.clone())),
    )
    .await
    .unwrap()
}

/// The record under `label` in etcd, read directly (not from a cache).
async fn record(client: &EtcdClient, label: &str) -> Option<MediaRecord> {
    let kv = client
        .get(client.settings().media_key(label).as_bytes())
        .await
        .unwrap()?;
    Some(serde_json::from_slice(&kv.value).unwrap())
}

/// Waits until `label` is registered at `port`.
async fn until_registered_at(client: &EtcdClient, label: &str, port: u16) {
    let started = Instant::now();
    while record(client, label)
        .await
        .is_none_or(|r| r.addr.port() != port)
    {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "`{label}` never registered at port {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Plays `address` until a key frame arrives.
async fn plays(address: &str) -> streamgate::viewer::Viewer {
    let mut viewer = open(address).await;
    assert_eq!(viewer.status(), 200, "{address}");
    assert!(
        viewer
            .until_key_frame(Duration::from_secs(15))
            .await
            .unwrap()
            .is_some(),
        "no key frame from {address}"
    );
    viewer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_one_member_claims_refuses_a_second_and_frees_on_expiry() {
    let etcd = Etcd::start(1).await;
    let camera = camera();
    let client = etcd.client(2, 0);
    let camera_url = rtsp(&camera, "/sub_stream");
    // The media server is a process (configured on the command line), so that it can be
    // killed without revoking its lease.
    let mut first = tokio::task::block_in_place(|| {
        Peer::new(bin())
            .args([
                "media".to_owned(),
                "--label".to_owned(),
                "media-e".to_owned(),
                "--namespace".to_owned(),
                "NameSpaceE".to_owned(),
                "--listen".to_owned(),
                "127.0.0.1:{port}".to_owned(),
                "--etcd".to_owned(),
                etcd.endpoints(0).join(","),
                "--camera".to_owned(),
                format!("sub_stream={camera_url}"),
                "--set".to_owned(),
                "discovery.lease_ttl_s=2".to_owned(),
                "--set".to_owned(),
                "discovery.prefix=\"/it\"".to_owned(),
            ])
            .ready(Ready::Tcp)
            .start()
    });
    until_registered_at(&client, "media-e", first.port()).await;
    let _fwd = forwarder(&client, "ServiceE", "NameSpaceE", "media-e").await;
    let proxy = proxy(&client).await;
    let address = format!(
        "http://{}/realtime-ServiceE-NameSpaceE/sub_stream/0.flv",
        proxy.addr()
    );
    let mut viewer = plays(&address).await;

    // A second claim is refused, both by the raw transaction and by a second server that
    // keeps trying.
    let key = client.settings().media_key("media-e");
    let lease = client.grant(60).await.unwrap();
    let raw = client
        .create(key.as_bytes(), b"{\"thief\":true}", lease.id)
        .await
        .unwrap();
    assert!(matches!(raw, Claim::Held(_)), "{raw:?}");
    client.revoke(lease.id).await.unwrap();
    let second = streamgate::service::start_media(
        &media_config("media-e", "NameSpaceE", &camera_url),
        Some(client.clone()),
    )
    .await
    .unwrap();
    assert!(
        !second.wait_registered(Duration::from_secs(3)).await,
        "a second server took a live label"
    );
    let held = record(&client, "media-e").await.unwrap();
    assert_eq!(
        held.addr.port(),
        first.port(),
        "the first server keeps its label"
    );

    // The first server keeps serving the open viewer, and a new one.
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut frames = 0;
    while let Ok(Ok(Some((tag, _)))) = tokio::time::timeout_at(until, viewer.next_tag()).await {
        frames += usize::from(tag.is_video_frame());
    }
    assert!(
        frames >= 10,
        "{frames} frames in 2 s after the refused claim"
    );
    drop(plays(&address).await);

    // Killed (no revoke): the lease expires, the label frees, the waiting server gets it
    // and the chain plays from it.
    first.child().kill();
    let killed = Instant::now();
    assert!(
        second.wait_registered(Duration::from_secs(15)).await,
        "the label did not free after the lease TTL"
    );
    let freed = killed.elapsed();
    let now = record(&client, "media-e").await.unwrap();
    assert_eq!(now.addr, second.addr());
    drop(plays(&address).await);
    eprintln!(
        "etcd: label freed and claimed by the waiting server {freed:?} after the kill (lease 2 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_leader_kill_keeps_viewers_and_registrations() {
    const VIEWERS: usize = 5;
    let mut etcd = Etcd::start(3).await;
    let leader = etcd.leader().await.unwrap();
    // Every part talks to the leader first, so that its death is felt by all of them.
    let client = etcd.client(3, leader);
    let camera = camera();
    let media = streamgate::service::start_media(
        &media_config("media-l", "NameSpaceL", &rtsp(&camera, "/sub_stream")),
        Some(client.clone()),
    )
    .await
    .unwrap();
    assert!(media.wait_registered(Duration::from_secs(10)).await);
    let instance = record(&client, "media-l").await.unwrap().instance;
    let _fwd = forwarder(&client, "ServiceL", "NameSpaceL", "media-l").await;
    let proxy = proxy(&client).await;
    let address = format!(
        "http://{}/realtime-ServiceL-NameSpaceL/sub_stream/0.flv",
        proxy.addr()
    );
    drop(plays(&address).await);

    let (mark_tx, mark) = tokio::sync::watch::channel(false);
    let until = tokio::time::Instant::now() + Duration::from_secs(12);
    let mut viewers = JoinSet::new();
    for _ in 0..VIEWERS {
        let (address, mark) = (address.clone(), mark.clone());
        viewers.spawn(async move {
            let http = streamgate::viewer::client(Duration::from_secs(30));
            streamgate::viewer::watch_stream(&http, &address, until, &mark)
                .await
                .unwrap()
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    etcd.kill(leader);
    let killed = Instant::now();
    mark_tx.send_replace(true);
    // A new registration after the kill (its client tries the dead member first), and the
    // proxy's watch follows it.
    let fresh = EtcdClient::new(client.settings().clone());
    let later = forwarder(&fresh, "ServiceL2", "NameSpaceL", "media-l").await;
    let registered_after = killed.elapsed();
    let second_address = format!(
        "http://{}/realtime-ServiceL2-NameSpaceL/sub_stream/0.flv",
        proxy.addr()
    );
    let started = Instant::now();
    loop {
        let viewer = open(&second_address).await;
        if viewer.status() == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the proxy never routed to the forwarder registered after the kill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let routed_after = killed.elapsed();
    drop(plays(&second_address).await);

    let mut worst = Duration::ZERO;
    while let Some(seen) = viewers.join_next().await {
        let seen = seen.unwrap();
        assert_eq!(seen.status, 200);
        assert!(!seen.ended, "a viewer was cut by the leader kill: {seen:?}");
        assert!(seen.frames_after_mark > 0, "{seen:?}");
        worst = worst.max(seen.max_gap);
    }
    // Well past the 3 s TTL since the kill: the first registration was kept alive through
    // the election by the surviving members.
    assert!(killed.elapsed() > Duration::from_secs(6));
    let still = record(&client, "media-l").await.unwrap();
    assert_eq!(
        still.instance, instance,
        "the media server's registration changed"
    );
    assert!(media.wait_registered(Duration::ZERO).await);
    assert!(
        etcd.leader().await.is_some(),
        "the two survivors have no leader"
    );
    eprintln!(
        "etcd leader kill: {VIEWERS}/{VIEWERS} viewers kept, largest frame gap {worst:?}, \
         new registration {registered_after:?} and routed {routed_after:?} after the kill"
    );
    drop(later);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_with_auth_registers_and_authenticates_again_when_tokens_are_refused() {
    // Simple tokens expire 2 s after their last use here (etcd refreshes them on use).
    let mut etcd = Etcd::start_with(1, &["--auth-token-ttl", "2"]).await;
    let b64 = streamgate::etcd::wire::b64;
    for (path, body) in [
        (
            "/v3/auth/user/add",
            serde_json::json!({"name": "root", "password": "root-pw"}),
        ),
        ("/v3/auth/role/add", serde_json::json!({"name": "root"})),
        (
            "/v3/auth/user/grant",
            serde_json::json!({"user": "root", "role": "root"}),
        ),
        (
            "/v3/auth/user/add",
            serde_json::json!({"name": "sg", "password": "sg-pw"}),
        ),
        ("/v3/auth/role/add", serde_json::json!({"name": "sg"})),
        (
            "/v3/auth/role/grant",
            serde_json::json!({"name": "sg", "perm": {
                "permType": "READWRITE", "key": b64(b"/it/"), "range_end": b64(b"/it0"),
            }}),
        ),
        (
            "/v3/auth/user/grant",
            serde_json::json!({"user": "sg", "role": "sg"}),
        ),
        ("/v3/auth/enable", serde_json::json!({})),
    ] {
        etcd.post(path, body, None).await;
    }
    let key = b"/it/media/media-x";
    let anonymous = etcd.client(2, 0);
    assert!(
        anonymous.get(key).await.is_err(),
        "read without credentials"
    );
    let wrong = etcd.client_as(2, 0, "sg", "not-the-password");
    assert!(wrong.get(key).await.is_err(), "read with a wrong password");

    let client = etcd.client_as(2, 0, "sg", "sg-pw");
    let media = streamgate::service::start_media(
        &media_config("media-x", "NameSpaceX", "rtsp://127.0.0.1:9/sub_stream"),
        Some(client.clone()),
    )
    .await
    .unwrap();
    assert!(media.wait_registered(Duration::from_secs(10)).await);
    let first_kv = client.get(key).await.unwrap().unwrap();
    let first: MediaRecord = serde_json::from_slice(&first_kv.value).unwrap();
    let discovery = EtcdDiscovery::new(client.clone());
    assert_eq!(
        discovery.media("media-x").await.unwrap().map(|r| r.addr),
        Some(media.addr())
    );
    // Simple tokens live in the member's memory: after a restart every token is refused,
    // and the clients must authenticate again (without that, this test fails: checked by
    // disabling the re-authentication). 6 s later the lease was renewed throughout (same
    // instance, same lease) and the watch still follows a change.
    etcd.restart(0).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let kv = client.get(key).await.unwrap().unwrap();
    let later: MediaRecord = serde_json::from_slice(&kv.value).unwrap();
    assert_eq!(later.instance, first.instance);
    assert_eq!(
        kv.lease, first_kv.lease,
        "the lease was lost and granted again"
    );
    assert!(media.wait_registered(Duration::ZERO).await);
    media.stop().await;
    let started = Instant::now();
    while discovery.media("media-x").await.unwrap().is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the watched cache did not see the revoked registration"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        client.get(key).await.unwrap().is_none(),
        "stop revokes the lease"
    );
}
