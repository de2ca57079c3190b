//! The hardened public port: slowloris sockets are closed by the header-read timeout while
//! real viewers keep playing, a connection over the per-address cap is refused at once, a
//! burst of viewers joining together all get 200, and the proxy raises its file limit so idle
//! sockets cannot lock viewers out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use testkit::{Peer, Ready};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

use crate::{bin, camera, forwarder, media, open, proxy, proxy_with, registry, rtsp, url};

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// Opens a slowloris socket: a partial request head, then (if `trickle`) one header byte a
/// second. Returns how long after opening the server closed it.
async fn slowloris(from: IpAddr, to: SocketAddr, trickle: bool) -> Option<Duration> {
    let mut stream = connect_from(from, to).await.ok()?;
    let opened = Instant::now();
    stream
        .write_all(b"GET /realtime-ServiceA-NameSpaceA/sub_stream/0.flv HTTP/1.1\r\nHost: x\r\n")
        .await
        .ok()?;
    let mut buf = [0_u8; 512];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await;
        match read {
            Ok(Ok(0) | Err(_)) => return Some(opened.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => {
                if opened.elapsed() > Duration::from_secs(30) {
                    return None;
                }
                if trickle && stream.write_all(b"X").await.is_err() {
                    return Some(opened.elapsed());
                }
            }
        }
    }
}

/// Video frames a viewer receives in each second of `seconds`.
async fn frames_per_second(viewer: &mut streamgate::viewer::Viewer, seconds: u32) -> Vec<u32> {
    let mut counts = Vec::new();
    for _ in 0..seconds {
        let until = tokio::time::Instant::now() + Duration::from_secs(1);
        let mut frames = 0;
        while let Ok(Ok(Some((tag, _)))) = tokio::time::timeout_at(until, viewer.next_tag()).await {
            frames += u32::from(tag.is_video_frame());
        }
        counts.push(frames);
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_sockets_are_closed_while_viewers_keep_playing() {
    let _ = streamgate::hop::raise_nofile_limit();
    let camera = camera();
    let registry = registry().await;
    let _media = media(
        &registry,
        "media-a",
        "NameSpaceA",
        &[("sub_stream", rtsp(&camera, "/sub_stream"))],
        |_| {},
    )
    .await;
    let _fwd = forwarder(&registry, "ServiceA", "NameSpaceA", "media-a").await;
    let proxy = proxy(&registry).await;
    let address = url(&proxy, "/realtime-ServiceA-NameSpaceA/sub_stream/0.flv");
    let mut viewer = open(&address).await;
    assert_eq!(viewer.status(), 200);
    assert!(
        viewer
            .until_key_frame(Duration::from_secs(15))
            .await
            .unwrap()
            .is_some()
    );

    // 1,000 slowloris sockets from four addresses (250 each, under the per-address cap of
    // 256), half silent after a partial head, half trickling a byte a second.
    let started = Instant::now();
    let mut attack = JoinSet::new();
    for i in 0..1000_u32 {
        let from = loopback(2 + (i % 4) as u8);
        let to = proxy.addr();
        attack.spawn(slowloris(from, to, i % 2 == 1));
    }
    // Over the per-address cap: 300 from one more address; the ones over 256 are refused
    // at once with 503.
    let mut over = Vec::new();
    for _ in 0..300 {
        over.push(connect_from(loopback(9), proxy.addr()).await.unwrap());
    }
    let mut refused = 0;
    for stream in &mut over {
        let mut buf = [0_u8; 64];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await
            && buf[..n].starts_with(b"HTTP/1.1 503")
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 300 - 256, "connections over the per-address cap");

    // Meanwhile the viewer keeps receiving frames, and a new viewer joins.
    let per_second = frames_per_second(&mut viewer, 4).await;
    assert!(
        per_second.iter().all(|n| *n >= 15),
        "frames per second during the attack: {per_second:?}"
    );
    let mut late = open(&address).await;
    assert_eq!(late.status(), 200, "a new viewer during the attack");
    assert!(
        late.until_key_frame(Duration::from_secs(5))
            .await
            .unwrap()
            .is_some()
    );

    let mut closed = Vec::new();
    while let Some(done) = attack.join_next().await {
        closed.push(done.unwrap().expect("a slowloris socket was never closed"));
    }
    let slowest = closed.iter().max().copied().unwrap();
    assert_eq!(closed.len(), 1000);
    assert!(
        slowest <= Duration::from_secs(10),
        "all 1000 closed within 10 s, the last after {slowest:?} (attack began {:?} ago)",
        started.elapsed()
    );
    assert!(
        closed.iter().all(|d| *d >= Duration::from_secs(4)),
        "closed by the 5 s header timeout, not earlier"
    );
    drop(over);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_viewers_joining_at_once_all_get_200() {
    const VIEWERS: usize = 1000;
    let _ = streamgate::hop::raise_nofile_limit();
    let camera = camera();
    let registry = registry().await;
    let _media = media(
        &registry,
        "media-a",
        "NameSpaceA",
        &[("sub_stream", rtsp(&camera, "/sub_stream"))],
        |_| {},
    )
    .await;
    let _fwd = forwarder(&registry, "ServiceA", "NameSpaceA", "media-a").await;
    let proxy = proxy_with(&registry, |_| {}).await;
    let address = url(&proxy, "/realtime-ServiceA-NameSpaceA/sub_stream/0.flv");
    let mut keeper = open(&address).await;
    assert!(
        keeper
            .until_key_frame(Duration::from_secs(15))
            .await
            .unwrap()
            .is_some()
    );
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(VIEWERS));
    let mut viewers = JoinSet::new();
    for i in 0..VIEWERS {
        let address = address.clone();
        let barrier = barrier.clone();
        viewers.spawn(async move {
            let client = streamgate::viewer::client_from(
                loopback(10 + (i % 40) as u8),
                Duration::from_secs(10),
            );
            barrier.wait().await;
            let mut viewer = streamgate::viewer::Viewer::open(&client, &address)
                .await
                .ok()?;
            let status = viewer.status().as_u16();
            let key = viewer.until_key_frame(Duration::from_secs(10)).await.ok()?;
            Some((status, key.is_some()))
        });
    }
    let started = Instant::now();
    let mut ok = 0;
    let mut other = Vec::new();
    while let Some(done) = viewers.join_next().await {
        match done.unwrap() {
            Some((200, true)) => ok += 1,
            outcome => other.push(outcome),
        }
    }
    assert_eq!(ok, VIEWERS, "non-200 or no frame: {other:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_raises_its_file_limit_so_idle_sockets_cannot_lock_viewers_out() {
    let registry = registry().await;
    // The proxy process starts with a soft limit of 256 descriptors.
    let command = format!(
        "ulimit -Sn 256 && exec {} proxy --listen 127.0.0.1:{{port}} --registry http://{}",
        bin(),
        registry.addr()
    );
    let proxy = tokio::task::block_in_place(|| {
        Peer::new("sh")
            .args(["-c".to_owned(), command])
            .env("STREAMGATE_DISCOVERY__TOKEN", crate::TOKEN)
            .ready(Ready::Tcp)
            .start()
    });
    let limit = fs_err::read_to_string(format!("/proc/{}/limits", proxy.pid())).unwrap();
    let open_files = limit
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    let soft: u64 = open_files
        .split_whitespace()
        .nth(3)
        .unwrap()
        .parse()
        .unwrap();
    assert!(soft > 256, "soft limit not raised: {open_files}");
    // 400 idle sockets (from two addresses, under the per-address cap)...
    let mut idle = Vec::new();
    for i in 0..400_u32 {
        idle.push(
            connect_from(loopback(20 + (i % 2) as u8), proxy.addr())
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...and a viewer is still answered (404: no route; what matters is the answer).
    let (status, body, took) =
        crate::get(&proxy.url("/realtime-ServiceA-NameSpaceA/main_stream/0.flv")).await;
    assert_eq!(status, 404, "{body}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    drop(idle);
}
