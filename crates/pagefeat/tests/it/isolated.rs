//! The isolated Chromium (issue 15 item 6): in a network namespace of its own, as an
//! unprivileged user with its sandbox on. A page that tries every way out (WebRTC with STUN
//! servers, fetch/XHR/img/WebSocket to external, LAN and loopback addresses, an mDNS name, a
//! navigation to `file:///etc/passwd`) sends not one packet on any interface of that namespace:
//! a packet socket (`AF_PACKET`, every protocol) opened inside it sees only the DevTools
//! connection. Loopback targets are the one way a packet could still appear inside the
//! namespace (it has no other interface), so they show that the in-browser walls hold too.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sched::CloneFlags;
use nix::sys::socket::{AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType};
use pagefeat::config::Config;
use pagefeat::engine::ChromiumBrowser;
use pagefeat::engine::isolation::netns_of;

use crate::support::{page, runtime};

/// Payload of the one datagram the sniffer sends itself (to a socket of its own on `lo`, so
/// no ICMP answer), to show it does capture.
const CANARY: &[u8] = b"pagefeat-sniffer-canary";

/// One captured frame, reduced to what the assertions need.
#[derive(Debug, Clone)]
struct Frame {
    ifindex: usize,
    ethertype: u16,
    /// IP protocol (6 TCP, 17 UDP, ...), when IPv4/IPv6.
    protocol: Option<u8>,
    ports: Option<(u16, u16)>,
    canary: bool,
}

impl Frame {
    fn describe(&self) -> String {
        format!(
            "if {} ethertype {:#06x} protocol {:?} ports {:?}",
            self.ifindex, self.ethertype, self.protocol, self.ports
        )
    }
}

/// Reads an Ethernet-framed packet (`lo` frames carry a zero Ethernet header).
fn parse(bytes: &[u8], ifindex: usize) -> Frame {
    let ethertype = bytes
        .get(12..14)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    let ip = bytes.get(14..).unwrap_or(&[]);
    let (protocol, l4) = match ethertype {
        0x0800 if !ip.is_empty() => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            (ip.get(9).copied(), ip.get(ihl..).unwrap_or(&[]))
        }
        0x86dd => (ip.get(6).copied(), ip.get(40..).unwrap_or(&[])),
        _ => (None, &[][..]),
    };
    let ports = match protocol {
        Some(6 | 17) if l4.len() >= 4 => Some((
            u16::from_be_bytes([l4[0], l4[1]]),
            u16::from_be_bytes([l4[2], l4[3]]),
        )),
        _ => None,
    };
    let canary = protocol == Some(17) && l4.get(8..).is_some_and(|payload| payload == CANARY);
    Frame {
        ifindex,
        ethertype,
        protocol,
        ports,
        canary,
    }
}

/// A capture on every interface of a process's network namespace, until stopped.
struct Sniffer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Frame>>,
}

impl Sniffer {
    /// Enters the namespace of `pid` on a thread of its own, opens the packet socket, sends
    /// the canary, and returns once capturing.
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let netns = fs_err::File::open(format!("/proc/{pid}/ns/net")).unwrap();
            nix::sched::setns(netns.file(), CloneFlags::CLONE_NEWNET).unwrap();
            let socket = nix::sys::socket::socket(
                AddressFamily::Packet,
                SockType::Raw,
                SockFlag::SOCK_NONBLOCK,
                SockProtocol::EthAll,
            )
            .unwrap();
            let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
            UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .send_to(CANARY, receiver.local_addr().unwrap())
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut frames = Vec::new();
            let mut buffer = vec![0_u8; 1 << 16];
            loop {
                match nix::sys::socket::recvfrom::<LinkAddr>(socket.as_raw_fd(), &mut buffer) {
                    Ok((n, from)) => {
                        let ifindex = from.map_or(0, |a| a.ifindex());
                        frames.push(parse(&buffer[..n], ifindex));
                    }
                    Err(nix::errno::Errno::EAGAIN) => {
                        if flag.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(error) => panic!("packet socket: {error}"),
                }
            }
            frames
        });
        ready_rx.recv().unwrap();
        Self { stop, thread }
    }

    /// Stops and returns every frame seen.
    fn finish(self) -> Vec<Frame> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// `Uid:` of `/proc/<pid>/status`: real, effective, saved, filesystem.
fn uids(pid: u32) -> Vec<u32> {
    let status = fs_err::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect()
}

/// Process ids of Chromium's renderers in process group `group`.
fn renderers(group: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs_err::read_dir("/proc").unwrap() {
        let Some(pid) = entry
            .ok()
            .and_then(|e| e.file_name().to_str()?.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs_err::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the ")" of the command name: state, ppid, pgrp.
        let pgrp = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<u32>().ok());
        let cmdline = fs_err::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if pgrp == Some(group) && String::from_utf8_lossy(&cmdline).contains("--type=renderer") {
            found.push(pid);
        }
    }
    found
}

fn user_ns(pid: u32) -> std::path::PathBuf {
    fs_err::read_link(format!("/proc/{pid}/ns/user")).unwrap()
}

/// Every way out a page has, at once.
const ESCAPES: &str = "<p id=t>escape attempts</p><script>\
    const out = ['http://203.0.113.5/x.png', 'https://example.com/', 'http://192.168.1.1/',\
                 'http://10.0.0.1:8080/', 'http://printer.local/', 'http://[2001:db8::1]/',\
                 'http://127.0.0.1:8000/', 'http://localhost:631/', 'http://[::1]:8080/'];\
    for (const u of out) {\
        fetch(u, {mode: 'no-cors'}).catch(() => {});\
        const x = new XMLHttpRequest(); x.open('GET', u); x.onerror = () => {}; x.send();\
        const i = new Image(); i.src = u; document.body.appendChild(i);\
    }\
    try { new WebSocket('ws://198.51.100.9:80/'); } catch (e) {}\
    navigator.sendBeacon && navigator.sendBeacon('http://192.168.0.10/beacon', 'x');\
    const pc = new RTCPeerConnection({iceServers: [\
        {urls: 'stun:198.51.100.7:3478'}, {urls: 'stun:stun.l.google.com:19302'},\
        {urls: 'turn:203.0.113.9:3478', username: 'u', credential: 'p'}]});\
    pc.createDataChannel('x');\
    pc.createOffer().then(o => pc.setLocalDescription(o));\
    setTimeout(() => { location.href = 'file:///etc/passwd'; }, 20);\
    </script>";

#[test]
fn chromium_in_its_namespace_sends_no_packet_and_runs_unprivileged_with_its_sandbox() {
    testkit::require("chromium");
    let rt = runtime();
    let config = Config::default();
    let browser = rt
        .block_on(ChromiumBrowser::launch(
            &config.chromium,
            config.viewport_size(),
        ))
        .unwrap();
    let pid = browser.pid();
    let devtools = browser.devtools_port();
    assert!(pid > 0 && devtools > 0);

    let sniffer = Sniffer::start(pid);
    let input = page("escapes", ESCAPES);
    for _ in 0..2 {
        let capture = rt
            .block_on(browser.capture(&input, config.viewport_size(), None, None))
            .unwrap();
        let text: String = capture.settled.objects.iter().map(|o| &*o.text).collect();
        assert!(text.contains("escape attempts"), "{text}");
        assert!(!text.contains("root:"), "{text}");
    }
    // Late retransmissions (STUN, TCP SYN) would come within this.
    std::thread::sleep(Duration::from_millis(1500));
    let frames = sniffer.finish();

    let is_devtools = |f: &Frame| {
        f.protocol == Some(6) && f.ports.is_some_and(|(a, b)| a == devtools || b == devtools)
    };
    assert!(
        frames.iter().any(|f| f.canary),
        "the sniffer did not see its own canary"
    );
    assert!(
        frames.iter().any(is_devtools),
        "the sniffer did not see the DevTools connection"
    );
    let escaped: Vec<String> = frames
        .iter()
        .filter(|f| !f.canary && !is_devtools(f))
        .map(Frame::describe)
        .collect();
    assert!(
        escaped.is_empty(),
        "{} frames other than DevTools in the browser's namespace: {escaped:#?}",
        escaped.len()
    );

    assert_ne!(
        netns_of(Some(pid)).unwrap(),
        netns_of(None).unwrap(),
        "chromium shares pagefeat's network namespace"
    );
    let ids = uids(pid);
    assert!(ids.iter().all(|&id| id != 0), "chromium runs as {ids:?}");
    assert!(ids.iter().all(|&id| id == config.chromium.sandbox_uid));
    // Sandbox on: no --no-sandbox, and the renderers live in a user namespace of their own
    // (Chromium's namespace sandbox).
    let cmdline = fs_err::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("--no-sandbox"));
    let renderers = renderers(pid);
    assert!(!renderers.is_empty(), "no renderer in group {pid}");
    for renderer in renderers {
        assert_ne!(
            user_ns(renderer),
            user_ns(pid),
            "renderer {renderer} unsandboxed"
        );
    }
}
