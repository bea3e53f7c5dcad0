//! Hostile connections against a real `flotilla server` process under a low open-files limit:
//! silent and slow-header connections held by the hundred never keep `/healthz`, the admin API
//! or an agent from being served; slow headers are cut at the header timeout; the soft
//! open-files limit is raised at start.

mod support;

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use support::{AgentProcess, ServerProcess, config_map_bundle, wait_for};

/// The server's open-files limit in the flood test: its default connection cap is then 128
/// (half of it), so the flood below is more than five times the cap.
const SERVER_OPEN_FILES: u64 = 256;
/// Silent connections (a TCP handshake, then nothing) the flood keeps open.
const SILENT: usize = 600;
/// Slow-header connections (a byte of a request head every second) the flood keeps open.
const SLOW: usize = 100;
/// How long one `/healthz` may take while the flood runs.
const HEALTHZ_DEADLINE: Duration = Duration::from_secs(2);

/// Whether the server closed this connection (EOF or reset), without blocking.
fn closed(stream: &TcpStream) -> bool {
    let _ = stream.set_nonblocking(true);
    let mut byte = [0u8; 1];
    let closed = match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => error.kind() != ErrorKind::WouldBlock,
    };
    let _ = stream.set_nonblocking(false);
    closed
}

/// Keeps `SILENT` silent and `SLOW` slow-header connections open against `port`, opening a new
/// one for each the server closes, until `stop`. Counts the connections it opened.
fn flood(port: u16, stop: Arc<AtomicBool>, opened: Arc<AtomicU64>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let connect = || {
            let stream =
                TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))
                    .ok()?;
            opened.fetch_add(1, Ordering::Relaxed);
            Some(stream)
        };
        let mut silent: Vec<Option<TcpStream>> = (0..SILENT).map(|_| None).collect();
        let mut slow: Vec<Option<TcpStream>> = (0..SLOW).map(|_| None).collect();
        let mut last_byte = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            for slot in silent.iter_mut() {
                if slot.as_ref().is_none_or(closed) {
                    *slot = connect();
                }
            }
            let byte_due = last_byte.elapsed() >= Duration::from_secs(1);
            for slot in slow.iter_mut() {
                if slot.as_ref().is_none_or(closed) {
                    *slot = connect();
                    if let Some(stream) = slot {
                        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nx-slow: ");
                    }
                } else if byte_due && let Some(stream) = slot {
                    let _ = stream.write_all(b"a");
                }
            }
            if byte_due {
                last_byte = Instant::now();
            }
            // Pacing of the flood, not synchronization.
            thread::sleep(Duration::from_millis(10));
        }
    })
}

/// `GET /healthz` on a new connection; its status and how long it took (None: no answer
/// within `deadline`).
fn healthz(port: u16, deadline: Duration) -> Option<(u16, Duration)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), deadline).ok()?;
    stream.set_read_timeout(Some(deadline)).ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: flotilla\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let status = reply.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, started.elapsed()))
}

#[test]
fn agents_and_healthz_are_served_while_hostile_connections_are_held() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with_open_files(
        &dir.path().join("server"),
        &[],
        (SERVER_OPEN_FILES, SERVER_OPEN_FILES),
    );
    let token = server.new_token();
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    let flooding = flood(server.port, stop.clone(), opened.clone());
    wait_for("the flood to open more connections than the cap", || {
        (opened.load(Ordering::Relaxed) > 2 * (SILENT + SLOW) as u64).then_some(())
    });

    let opened_before = opened.load(Ordering::Relaxed);
    let mut probes = 0;
    let mut probe = || {
        let answer = healthz(server.port, HEALTHZ_DEADLINE);
        probes += 1;
        assert!(
            matches!(answer, Some((200, _))),
            "/healthz probe {probes} during the flood: {answer:?}"
        );
    };
    for _ in 0..20 {
        probe();
    }
    // An agent registers, syncs and applies; the admin API (the CLI) is served throughout.
    let agent = AgentProcess::start(&server, &token, "store-1", "env=prod", dir.path());
    server.apply(&config_map_bundle("web", &["web"], "env=prod", ""));
    server.wait_bundle_ready("web", 1);
    agent.wait_objects("the bundle's config map", |objects| {
        objects.contains(&"ConfigMap/web".to_string())
    });
    // Still served while the flood turns over once more (the server closes its connections
    // and it opens new ones).
    wait_for("the flood to open as many connections again", || {
        probe();
        (opened.load(Ordering::Relaxed) > opened_before + (SILENT + SLOW) as u64).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    flooding.join().expect("flood thread");
    assert!(
        server.log().contains("max_connections=128"),
        "the cap comes from the open-files limit: {}",
        server.log()
    );
    assert!(
        !server.log().contains("Too many open files"),
        "the cap kept the server inside its open-files limit: {}",
        server.log()
    );
}

#[test]
fn slow_header_connections_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let header_timeout = Duration::from_secs(1);
    let server = ServerProcess::start(&dir.path().join("server"), &["--header-timeout", "1s"]);
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nx-slow: ")
                .expect("send");
            stream
        })
        .collect();
    let silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).expect("connect"))
        .collect();
    // A byte every quarter second: each write is progress, none completes the head.
    let all_closed = wait_for("every slow and silent connection to be closed", || {
        for stream in &mut slow {
            let _ = stream.write_all(b"a");
        }
        let open = slow.iter().chain(&silent).filter(|s| !closed(s)).count();
        (open == 0).then(|| started.elapsed())
    });
    assert!(
        all_closed >= header_timeout.mul_f64(0.9),
        "closed after {all_closed:?}, before the {header_timeout:?} header timeout"
    );
    assert!(
        all_closed < header_timeout + Duration::from_secs(3),
        "closed only after {all_closed:?}; the header timeout is {header_timeout:?}"
    );
    assert_eq!(
        healthz(server.port, HEALTHZ_DEADLINE).map(|(status, _)| status),
        Some(200)
    );
}

#[test]
fn the_soft_open_files_limit_is_raised_to_the_hard_limit_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with_open_files(&dir.path().join("server"), &[], (200, 4096));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid()))
        .expect("read /proc/PID/limits");
    let open_files: Vec<&str> = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("the open files line")
        .split_whitespace()
        .collect();
    assert_eq!(
        &open_files[3..5],
        ["4096", "4096"],
        "soft and hard open-files limits: {limits}"
    );
    assert!(
        server.log().contains("max_connections=3840"),
        "{}",
        server.log()
    );
}
