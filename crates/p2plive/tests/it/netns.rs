//! Network-namespace plumbing for [`crate::netem`]: a star of namespaces around a router
//! namespace, with the router impairing every packet it forwards (one-way delay and loss).
//!
//! Topology ([`Lab::new`]): node `i` (namespace `{prefix}-n{i}`) has `eth0` = `10.77.i.2/24`
//! with its default route via `10.77.i.1`, the router's end `v{i}` of a veth pair in namespace
//! `{prefix}-r`. The router forwards between the nodes (`ip_forward=1`, `rp_filter=0`, IPv6 off
//! everywhere so only the test's traffic flows). Each packet the router forwards is impaired
//! once, so a round trip between two nodes crosses the impairment twice: a one-way delay of
//! 50 ms gives an RTT of 100 ms.
//!
//! The impairment is applied by [`Impairment::Netem`] when the kernel has `sch_netem` (a
//! `tc qdisc ... netem delay D loss L` on each router-side veth's egress), else by
//! [`Impairment::TunRouter`]: policy routing (`ip rule add iif v{i} lookup 100`, table 100
//! `default dev p2ptun0`) sends every forwarded packet into a TUN device whose other end is a
//! thread of this test ([`TunRouter`]); it holds each packet for the delay, drops a share given
//! by a seeded RNG and writes the rest back into the TUN, where the main table routes them to the
//! destination veth. Both are a real kernel path for the programs under test (their UDP and TCP
//! sockets, the router's forwarding); only the delay line differs.
//!
//! Cleanup: [`Lab`]'s `Drop` stops the impairment thread, kills whatever still runs in its
//! namespaces and deletes them (which removes their veth and TUN devices), also when the test
//! panics; at start it removes the namespaces of earlier runs whose process is gone.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Prefix of every namespace this module creates (`p2pnet-<pid>-...`).
const NS_PREFIX: &str = "p2pnet-";
/// Routing table that sends forwarded packets into the TUN device.
const TUN_TABLE: &str = "100";
/// Name of the TUN device in the router namespace.
const TUN_NAME: &str = "p2ptun0";
/// Largest packet read from the TUN (its MTU is the veths' 1500).
const MAX_PACKET: usize = 65_536;

/// The network conditions every forwarded packet gets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conditions {
    /// Delay added to each packet at the router (half the added RTT).
    pub(crate) one_way_delay: Duration,
    /// Share of forwarded packets dropped at the router, 0.0 to 1.0.
    pub(crate) loss: f64,
    /// Seed of the TUN router's drop decisions (netem draws its own).
    pub(crate) seed: u64,
    /// Most packets held in the delay line; more are dropped (tail drop).
    pub(crate) queue_packets: usize,
    /// Most bytes held in the delay line; more are dropped (tail drop).
    pub(crate) queue_bytes: usize,
}

/// Which impairment ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Impairment {
    /// The kernel's `sch_netem` on the router's veths.
    Netem,
    /// The user-space delay line behind a TUN device ([`TunRouter`]).
    TunRouter,
}

/// Runs `ip` with `args`; panics with its output when it fails.
pub(crate) fn ip(args: &[&str]) {
    let out = Command::new(ip_program()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `ip` with `args`; `Err(stderr)` when it fails.
fn try_ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new(ip_program())
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn ip_program() -> PathBuf {
    testkit::require("ip")
}

/// Writes `value` to the sysctl `key` (dotted) inside namespace `ns`.
fn sysctl(ns: &str, key: &str, value: &str) {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let script = format!("echo {value} > {path}");
    ip(&["netns", "exec", ns, "sh", "-c", &script]);
}

/// Moves the calling thread into network namespace `ns` (sockets it opens from then on, and
/// threads it spawns, live there).
pub(crate) fn enter(ns: &str) {
    let file = fs_err::File::open(format!("/var/run/netns/{ns}")).unwrap();
    setns(file.file(), CloneFlags::CLONE_NEWNET).unwrap();
}

/// Runs `f` on a new thread inside namespace `ns` and returns its result (a panic in `f` is
/// re-raised here).
pub(crate) fn run_in<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    let handle = std::thread::spawn(move || {
        enter(&ns);
        f()
    });
    match handle.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Namespaces, veths and the impairment of one test; all removed on drop.
#[derive(Debug)]
pub(crate) struct Lab {
    prefix: String,
    nodes: usize,
    created: Vec<String>,
    impairment: Impairment,
    tun: Option<TunRouter>,
}

impl Lab {
    /// A router and `nodes` node namespaces, every forwarded packet impaired by `conditions`;
    /// netem when the kernel has it, else the TUN router.
    pub(crate) fn new(nodes: usize, conditions: Conditions) -> Self {
        assert!(nodes <= 200, "10.77.<node>.0/24 addressing");
        remove_stale();
        let prefix = format!("{NS_PREFIX}{}", std::process::id());
        let mut lab = Self {
            prefix,
            nodes,
            created: Vec::new(),
            impairment: Impairment::TunRouter,
            tun: None,
        };
        let router = lab.router();
        lab.add_namespace(&router);
        for key in [
            "net.ipv4.ip_forward",
            "net.ipv4.conf.all.rp_filter",
            "net.ipv4.conf.default.rp_filter",
            "net.ipv6.conf.all.disable_ipv6",
            "net.ipv6.conf.default.disable_ipv6",
        ] {
            let value = if key.ends_with("rp_filter") { "0" } else { "1" };
            sysctl(&router, key, value);
        }
        for i in 0..nodes {
            lab.add_node(i);
        }
        lab.impairment = if lab.try_netem(conditions) {
            Impairment::Netem
        } else {
            lab.tun = Some(TunRouter::start(&router, nodes, conditions));
            Impairment::TunRouter
        };
        lab
    }

    /// The router namespace's name.
    pub(crate) fn router(&self) -> String {
        format!("{}-r", self.prefix)
    }

    /// Node `i`'s namespace name.
    pub(crate) fn node(&self, i: usize) -> String {
        format!("{}-n{i}", self.prefix)
    }

    /// Node `i`'s address.
    pub(crate) fn addr(i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, u8::try_from(i).unwrap(), 2)
    }

    /// Which impairment is in place.
    pub(crate) fn impairment(&self) -> Impairment {
        self.impairment
    }

    /// Packet counters of the TUN router so far (`None` under netem).
    pub(crate) fn tun_stats(&self) -> Option<TunStats> {
        self.tun.as_ref().map(TunRouter::stats)
    }

    fn add_namespace(&mut self, ns: &str) {
        ip(&["netns", "add", ns]);
        self.created.push(ns.to_owned());
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }

    fn add_node(&mut self, i: usize) {
        let router = self.router();
        let node = self.node(i);
        self.add_namespace(&node);
        sysctl(&node, "net.ipv6.conf.all.disable_ipv6", "1");
        sysctl(&node, "net.ipv6.conf.default.disable_ipv6", "1");
        let dev = format!("v{i}");
        ip(&[
            "-n", &router, "link", "add", &dev, "type", "veth", "peer", "name", "eth0", "netns",
            &node,
        ]);
        let gateway = Ipv4Addr::new(10, 77, u8::try_from(i).unwrap(), 1).to_string();
        ip(&[
            "-n",
            &router,
            "addr",
            "add",
            &format!("{gateway}/24"),
            "dev",
            &dev,
        ]);
        ip(&["-n", &router, "link", "set", &dev, "up"]);
        sysctl(&router, &format!("net.ipv4.conf.{dev}.rp_filter"), "0");
        let me = format!("{}/24", Self::addr(i));
        ip(&["-n", &node, "addr", "add", &me, "dev", "eth0"]);
        ip(&["-n", &node, "link", "set", "eth0", "up"]);
        ip(&["-n", &node, "route", "add", "default", "via", &gateway]);
    }

    /// netem on every router-side veth; false (and nothing left behind) when the kernel has
    /// no `sch_netem`.
    fn try_netem(&self, c: Conditions) -> bool {
        let router = self.router();
        let delay = format!("{}us", c.one_way_delay.as_micros());
        let loss = format!("{}%", c.loss * 100.0);
        let limit = c.queue_packets.to_string();
        for i in 0..self.nodes {
            let dev = format!("v{i}");
            let args = [
                "-n", &router, "qdisc", "add", "dev", &dev, "root", "netem", "delay", &delay,
                "loss", &loss, "limit", &limit,
            ];
            let out = Command::new(testkit::require("tc"))
                .args(args)
                .output()
                .unwrap();
            if !out.status.success() {
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    i == 0 && stderr.contains("unknown"),
                    "tc netem on {dev}: {stderr}"
                );
                return false;
            }
        }
        true
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(tun) = self.tun.take() {
            tun.stop();
        }
        for ns in self.created.iter().rev() {
            remove_namespace(ns);
        }
    }
}

/// Kills what runs in `ns`, then deletes it (its devices go with it).
fn remove_namespace(ns: &str) {
    if let Ok(pids) = try_ip(&["netns", "pids", ns]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    if let Err(error) = try_ip(&["netns", "del", ns]) {
        tracing::warn!(ns, error, "could not delete namespace");
    }
}

/// Deletes the namespaces of earlier runs whose test process is gone (killed before its
/// `Drop` ran).
fn remove_stale() {
    let Ok(list) = try_ip(&["netns", "list"]) else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !PathBuf::from(format!("/proc/{pid}")).exists() {
            remove_namespace(name);
        }
    }
}

/// Counters of the TUN router.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TunStats {
    /// Packets read from the TUN.
    pub(crate) received: u64,
    /// Packets written back after the delay.
    pub(crate) forwarded: u64,
    /// Packets dropped by the loss draw.
    pub(crate) lost: u64,
    /// Packets dropped because the delay line was full.
    pub(crate) overflow: u64,
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    forwarded: AtomicU64,
    lost: AtomicU64,
    overflow: AtomicU64,
}

/// The user-space impairment: a thread in the router namespace reading every forwarded
/// packet from a TUN device, delaying and dropping them, and writing the rest back.
#[derive(Debug)]
pub(crate) struct TunRouter {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl TunRouter {
    /// Opens the TUN in `router`, routes the forwarded traffic of `v0..v{nodes-1}` into it
    /// and starts the delay line.
    fn start(router: &str, nodes: usize, conditions: Conditions) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        let thread = {
            let (router, stop, counters) = (router.to_owned(), stop.clone(), counters.clone());
            std::thread::spawn(move || {
                enter(&router);
                let iface =
                    tun_tap::Iface::without_packet_info(TUN_NAME, tun_tap::Mode::Tun).unwrap();
                iface.set_non_blocking().unwrap();
                opened_tx.send(()).unwrap();
                delay_line(&iface, conditions, &stop, &counters);
            })
        };
        opened_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("TUN device opened");
        ip(&[
            "-n",
            router,
            "link",
            "set",
            TUN_NAME,
            "up",
            "txqueuelen",
            "10000",
        ]);
        sysctl(router, &format!("net.ipv4.conf.{TUN_NAME}.rp_filter"), "0");
        ip(&[
            "-n", router, "route", "add", "default", "dev", TUN_NAME, "table", TUN_TABLE,
        ]);
        for i in 0..nodes {
            ip(&[
                "-n",
                router,
                "rule",
                "add",
                "iif",
                &format!("v{i}"),
                "lookup",
                TUN_TABLE,
                "pref",
                "100",
            ]);
        }
        Self {
            stop,
            counters,
            thread: Some(thread),
        }
    }

    fn stats(&self) -> TunStats {
        let c = &self.counters;
        TunStats {
            received: c.received.load(Ordering::Relaxed),
            forwarded: c.forwarded.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
            overflow: c.overflow.load(Ordering::Relaxed),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TunRouter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// splitmix64: a small seeded generator for the drop decisions.
#[derive(Debug)]
struct SplitMix(u64);

impl SplitMix {
    /// A uniform draw in [0, 1).
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1_u64 << 53) as f64
    }
}

/// Reads packets, drops `loss` of them, holds the rest `one_way_delay` (FIFO, bounded in
/// packets and bytes) and writes them back, until `stop`.
fn delay_line(iface: &tun_tap::Iface, c: Conditions, stop: &AtomicBool, counters: &Counters) {
    let mut rng = SplitMix(c.seed);
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut queued_bytes = 0_usize;
    let mut buf = vec![0_u8; MAX_PACKET];
    while !stop.load(Ordering::Relaxed) {
        loop {
            match iface.recv(&mut buf) {
                Ok(n) => {
                    counters.received.fetch_add(1, Ordering::Relaxed);
                    if rng.next_f64() < c.loss {
                        counters.lost.fetch_add(1, Ordering::Relaxed);
                    } else if queue.len() >= c.queue_packets || queued_bytes + n > c.queue_bytes {
                        counters.overflow.fetch_add(1, Ordering::Relaxed);
                    } else {
                        queued_bytes += n;
                        queue.push_back((Instant::now() + c.one_way_delay, buf[..n].to_vec()));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("TUN read: {e}"),
            }
        }
        let now = Instant::now();
        while queue.front().is_some_and(|(due, _)| *due <= now) {
            let Some((_, packet)) = queue.pop_front() else {
                break;
            };
            queued_bytes -= packet.len();
            // A full TUN transmit queue drops the packet, as a link would.
            if iface.send(&packet).is_ok() {
                counters.forwarded.fetch_add(1, Ordering::Relaxed);
            } else {
                counters.overflow.fetch_add(1, Ordering::Relaxed);
            }
        }
        let idle = queue
            .front()
            .map_or(Duration::from_micros(500), |(due, _)| {
                due.saturating_duration_since(Instant::now())
            });
        std::thread::sleep(idle.min(Duration::from_micros(500)));
    }
}

/// Round trips measured by [`probe`].
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// Probes sent.
    pub(crate) sent: u64,
    /// Probes the echo side received.
    pub(crate) echoed: u64,
    /// Replies received back.
    pub(crate) replies: u64,
    /// Round-trip times of the replies, sorted.
    pub(crate) rtts: Vec<Duration>,
}

impl Probe {
    /// The share of probes lost on the way there.
    pub(crate) fn loss_there(&self) -> f64 {
        1.0 - self.echoed as f64 / self.sent as f64
    }

    /// The share of echoes lost on the way back.
    pub(crate) fn loss_back(&self) -> f64 {
        1.0 - self.replies as f64 / self.echoed.max(1) as f64
    }

    /// The `q` quantile of the round-trip times (0.0 to 1.0).
    pub(crate) fn rtt(&self, q: f64) -> Duration {
        let last = self.rtts.len().saturating_sub(1);
        self.rtts
            .get(((last as f64) * q).round() as usize)
            .copied()
            .unwrap_or(Duration::MAX)
    }
}

/// A UDP ping (`ping` is not installed on this machine): `count` numbered datagrams from node
/// `from` to an echo socket on node `to`, one every `interval`, each reply timed.
pub(crate) fn probe(lab: &Lab, from: usize, to: usize, count: u32, interval: Duration) -> Probe {
    let target = SocketAddr::from((Lab::addr(to), 7900));
    let stop = Arc::new(AtomicBool::new(false));
    let echoed = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let echo = {
        let (ns, stop, echoed) = (lab.node(to), stop.clone(), echoed.clone());
        std::thread::spawn(move || {
            enter(&ns);
            let socket = UdpSocket::bind(target).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0_u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                    echoed.fetch_add(1, Ordering::Relaxed);
                    let _ = socket.send_to(&buf[..n], peer);
                }
            }
        })
    };
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let rtts = run_in(&lab.node(from), move || {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        socket.connect(target).unwrap();
        let receiver = socket.try_clone().unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let start = Instant::now();
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut rtts = Vec::new();
                let mut buf = [0_u8; 64];
                while !done.load(Ordering::Relaxed) {
                    if let Ok(n) = receiver.recv(&mut buf)
                        && n == 16
                    {
                        let sent_ns = u64::from_be_bytes(buf[8..16].try_into().unwrap());
                        let now = u64::try_from(start.elapsed().as_nanos()).unwrap();
                        rtts.push(Duration::from_nanos(now - sent_ns));
                    }
                }
                rtts
            })
        };
        for seq in 0..u64::from(count) {
            let mut payload = [0_u8; 16];
            payload[..8].copy_from_slice(&seq.to_be_bytes());
            let at = u64::try_from(start.elapsed().as_nanos()).unwrap();
            payload[8..].copy_from_slice(&at.to_be_bytes());
            socket.send(&payload).unwrap();
            std::thread::sleep(interval);
        }
        // Stragglers: far more than any RTT this test expects.
        std::thread::sleep(Duration::from_millis(600));
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap()
    });
    stop.store(true, Ordering::Relaxed);
    echo.join().unwrap();
    let mut rtts = rtts;
    rtts.sort();
    Probe {
        sent: u64::from(count),
        echoed: echoed.load(Ordering::Relaxed),
        replies: rtts.len() as u64,
        rtts,
    }
}
