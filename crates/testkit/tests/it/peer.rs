use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use svckit::process::ProcessError;
use testkit::{Peer, Ready};

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn http_server_starts_in_its_own_dir_logs_and_is_reaped_on_drop() {
    let server = Peer::new("python3")
        .args([
            "-u",
            "-m",
            "http.server",
            "{port}",
            "--bind",
            "127.0.0.1",
            "--directory",
            "{dir}",
        ])
        .ready(Ready::Http("/"))
        .deadline(Duration::from_secs(15))
        .start();
    std::fs::write(server.dir().join("hello.txt"), "hello from the peer dir").unwrap();
    let answer = http_get(server.addr(), "/hello.txt");
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert!(answer.ends_with("hello from the peer dir"), "{answer}");

    // The server logs each request to stderr, which the guard keeps.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !server.log().contains("GET /hello.txt") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.log().contains("GET /hello.txt"),
        "log: {}",
        server.log()
    );

    let (pid, addr, dir) = (server.pid(), server.addr(), server.dir().to_path_buf());
    assert!(process_exists(pid));
    drop(server);
    assert!(!process_exists(pid), "process {pid} survived drop");
    assert!(
        TcpStream::connect(addr).is_err(),
        "port still open after drop"
    );
    assert!(!dir.exists(), "peer directory not removed");
}

#[test]
fn missing_program_fails_with_the_setup_command() {
    let panic = std::panic::catch_unwind(|| {
        Peer::new("surely-not-installed-program").start();
    })
    .expect_err("starting a missing program must fail the test");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_else(|| {
        panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .unwrap_or_default()
    });
    assert!(
        message.contains("surely-not-installed-program"),
        "{message}"
    );
    assert!(message.contains("run `scripts/setup`"), "{message}");

    let hint = testkit::find("surely-not-installed-program").unwrap_err();
    assert!(hint.contains("scripts/setup"), "{hint}");
}

#[test]
fn early_exit_reports_the_log_tail() {
    let error = Peer::new("python3")
        .args([
            "-c",
            "import sys; print('boom: cannot bind {port}', flush=True); sys.exit(3)",
        ])
        .ready(Ready::Tcp)
        .try_start()
        .unwrap_err();
    let ProcessError::Exited {
        status, log_tail, ..
    } = &error
    else {
        panic!("unexpected {error:?}")
    };
    assert_eq!(status.code(), Some(3));
    assert!(log_tail.contains("boom: cannot bind"), "{log_tail}");
}

#[test]
fn deadline_stops_waiting_and_kills_the_program() {
    let started = std::time::Instant::now();
    let error = Peer::new("python3")
        .args([
            "-c",
            "import time; print('sleeping', flush=True); time.sleep(60)",
        ])
        .ready(Ready::Log("never printed".to_owned()))
        .deadline(Duration::from_millis(600))
        .try_start()
        .unwrap_err();
    assert!(matches!(error, ProcessError::NotReady { .. }), "{error:?}");
    assert!(error.to_string().contains("sleeping"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn ffmpeg_is_a_usable_one_shot_peer() {
    // A real ffmpeg run: generate one second of test video into the peer's directory.
    let mut peer = Peer::new("ffmpeg")
        .args([
            "-hide_banner",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=10",
            "-t",
            "1",
            "-c:v",
            "mpeg4",
            "{dir}/out.ts",
        ])
        .ready(Ready::Started)
        .start();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = peer.child().try_exit_status() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ffmpeg did not finish: {}",
            peer.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{}", peer.log());
    let size = std::fs::metadata(peer.dir().join("out.ts")).unwrap().len();
    assert!(
        size > 1000 && size % 188 == 0,
        "not an MPEG-TS file: {size} bytes"
    );
}
