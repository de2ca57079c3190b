//! Integration tests of streamgate: a real gst-rtsp-server camera, the real registry, media
//! servers, forwarders and proxy on 127.0.0.1 (in this process, or as `streamgate`
//! processes where a crash is part of the test), real viewers, ffprobe and ffmpeg.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "test code: a panic is a test failure"
)]

mod auth;
mod defects;
mod demo;
mod errors;
mod etcd;
mod fanout;
mod ffprobe;
mod gop_cache;
mod hardening;
mod hls;
mod latency;
mod players;
mod registry;
mod restart;
mod routing;
mod ws_flv;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use streamgate::Running;
use streamgate::forwarder::ForwarderConfig;
use streamgate::media::MediaConfig;
use streamgate::proxy::ProxyConfig;
use streamgate::registry::{Credential, RegistryClient, RegistryConfig, Role};
use streamgate::viewer::{Viewer, client};
use svckit::redact::Secret;
use testkit::{Peer, Ready, RunningPeer};

/// The `streamgate` binary built for these tests.
pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_streamgate")
}

/// The bundled clip.
pub(crate) fn clip() -> PathBuf {
    testkit::data_path("video/big_buck_bunny_640x360_60s.mp4")
}

/// The gst-rtsp-server camera serving the bundled clip, on a free port.
pub(crate) fn camera() -> RunningPeer {
    camera_with_files(&[])
}

/// The camera, also serving `files` (name, path) without re-encoding at `/file/{name}`
/// (looped) and `/once/{name}` (once per session).
pub(crate) fn camera_with_files(files: &[(&str, &Path)]) -> RunningPeer {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("camera/rtsp_camera.py");
    let mut args = vec![
        script.display().to_string(),
        "--port".to_owned(),
        "{port}".to_owned(),
        "--input".to_owned(),
        clip().display().to_string(),
    ];
    for (name, path) in files {
        args.push("--file".to_owned());
        args.push(format!("{name}={}", path.display()));
    }
    tokio::task::block_in_place(|| {
        Peer::new(streamgate::camera::PYTHON)
            .args(args)
            .ready(Ready::Log("camera: listening".to_owned()))
            .deadline(Duration::from_secs(30))
            .start()
    })
}

/// An H.264 clip made by ffmpeg's test source: `seconds` long at 25 fps, 320x180, a key frame
/// every `gop` frames, 2 B-frames.
pub(crate) fn make_clip(dir: &Path, name: &str, seconds: u32, gop: u32) -> PathBuf {
    let path = dir.join(name);
    testkit::TestClip::new(seconds)
        .gop(gop)
        .b_frames(2)
        .write(&path);
    path
}

/// `rtsp://127.0.0.1:{camera port}{path}`.
pub(crate) fn rtsp(camera: &RunningPeer, path: &str) -> String {
    format!("rtsp://127.0.0.1:{}{path}", camera.port())
}

/// RTSP sessions the camera logged on `path`.
pub(crate) fn sessions(camera: &RunningPeer, path: &str) -> usize {
    streamgate::camera::count_sessions(&camera.log(), path)
}

fn any_port() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// The admin credential of the tests' registries.
pub(crate) const TOKEN: &str = "it-admin-secret-0123456789";

/// A registry on a free port, accepting [`TOKEN`] as an admin credential.
pub(crate) async fn registry() -> Running {
    let credentials = [(
        "admin".to_owned(),
        Credential {
            secret: Secret::new(TOKEN),
            role: Role::Admin,
            namespaces: Vec::new(),
        },
    )]
    .into_iter()
    .collect();
    streamgate::service::start_registry(&RegistryConfig {
        listen: any_port(),
        credentials,
        ..RegistryConfig::default()
    })
    .await
    .unwrap()
}

/// A client for `registry` with [`TOKEN`].
pub(crate) fn registry_client(registry: &Running) -> RegistryClient {
    RegistryClient::new(&format!("http://{}", registry.addr())).with_token(&Secret::new(TOKEN))
}

/// A media server registered with `registry`, serving `cameras`; `tweak` adjusts its config.
pub(crate) async fn media(
    registry: &Running,
    label: &str,
    namespace: &str,
    cameras: &[(&str, String)],
    tweak: impl FnOnce(&mut MediaConfig),
) -> Running {
    let mut config = MediaConfig {
        label: label.to_owned(),
        namespace: namespace.to_owned(),
        listen: any_port(),
        admin_listen: any_port(),
        cameras: cameras
            .iter()
            .map(|(s, u)| ((*s).to_owned(), u.clone()))
            .collect(),
        ..MediaConfig::default()
    };
    tweak(&mut config);
    let running = streamgate::service::start_media(&config, Some(registry_client(registry)))
        .await
        .unwrap();
    assert!(running.wait_registered(Duration::from_secs(10)).await);
    running
}

/// A forwarder for (`service`, `namespace`) bound to `label`, registered with `registry`.
pub(crate) async fn forwarder(
    registry: &Running,
    service: &str,
    namespace: &str,
    label: &str,
) -> Running {
    let config = ForwarderConfig {
        service: service.to_owned(),
        namespace: namespace.to_owned(),
        label: label.to_owned(),
        listen: any_port(),
        admin_listen: any_port(),
        ..ForwarderConfig::default()
    };
    let client = registry_client(registry);
    let running = streamgate::service::start_forwarder(
        &config,
        streamgate::AnyDiscovery::Registry(client.clone()),
        Some(client),
    )
    .await
    .unwrap();
    assert!(running.wait_registered(Duration::from_secs(10)).await);
    running
}

/// The proxy, routing from `registry`.
pub(crate) async fn proxy(registry: &Running) -> Running {
    proxy_with(registry, |_| {}).await
}

/// The proxy, routing from `registry`, with `tweak` applied to its configuration.
pub(crate) async fn proxy_with(
    registry: &Running,
    tweak: impl FnOnce(&mut ProxyConfig),
) -> Running {
    let mut config = ProxyConfig {
        listen: any_port(),
        admin_listen: any_port(),
        ..ProxyConfig::default()
    };
    tweak(&mut config);
    streamgate::service::start_proxy(
        &config,
        streamgate::AnyDiscovery::Registry(registry_client(registry)),
    )
    .await
    .unwrap()
}

/// `http://{addr}{path}`.
pub(crate) fn url(running: &Running, path: &str) -> String {
    format!("http://{}{path}", running.addr())
}

/// Opens a viewer on `url`.
pub(crate) async fn open(url: &str) -> Viewer {
    Viewer::open(&client(Duration::from_secs(30)), url)
        .await
        .unwrap()
}

/// `GET url`: status, body as JSON (`Null` if not JSON) and the time to the whole answer.
pub(crate) async fn get(url: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let viewer = open(url).await;
    let status = viewer.status().as_u16();
    let text = viewer.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        started.elapsed(),
    )
}

/// A counter from a `/metrics` page.
pub(crate) async fn counter(running: &Running, name: &str, stream: &str) -> f64 {
    let (_, page) = streamgate::cluster::get_text(running.metrics_addr(), "/metrics")
        .await
        .unwrap();
    streamgate::cluster::metric_value(&page, name, stream).unwrap_or(0.0)
}

/// The streams a media server is pulling now.
pub(crate) async fn running_streams(media: &Running) -> Vec<String> {
    let (_, body, _) = get(&format!("http://{}/v1/streams", media.metrics_addr())).await;
    body["running"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stream"].as_str().unwrap().to_owned())
        .collect()
}
