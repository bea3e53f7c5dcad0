//! SIGTERM, as Kubernetes, systemd and `docker stop` send it, stops the server and the agent as
//! gracefully as Ctrl-C: requests drain within the deadline, soft state is written, the
//! PostgreSQL lease is released at once, the exit status is 0; a second signal stops at once.
//! Real processes throughout.

mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use flotilla_store::pg_testing::TestSchema;
use support::{AgentProcess, ServerProcess, config_map_bundle, wait_for};

/// The server's lease time to live (`Settings::lease_ttl`'s default; no flag changes it): a
/// replica that dies without releasing the lease keeps it from the others for up to this long.
const LEASE_TTL: Duration = Duration::from_secs(15);

/// How long a graceful stop of an idle process may take in these tests: well under any deadline
/// it is configured with, far over what it needs (milliseconds).
const PROMPT: Duration = Duration::from_secs(5);

#[test]
fn sigterm_releases_the_postgres_lease_at_once() {
    let schema = TestSchema::create("sigterm_lease");
    let dir = tempfile::tempdir().unwrap();
    let store = ["--store", &schema.url()].map(str::to_string);
    let store: Vec<&str> = store.iter().map(String::as_str).collect();
    let mut one = ServerProcess::start(&dir.path().join("one"), &store);
    let mut two = ServerProcess::start_replica(&dir.path().join("two"), &store, &one.admin_token);
    let lease_held = |server: &ServerProcess| server.metric("flotilla_singleton_lease_held");
    let one_holds = wait_for("one replica to hold the singleton lease", || {
        match (lease_held(&one), lease_held(&two)) {
            (Some(1.0), _) => Some(true),
            (_, Some(1.0)) => Some(false),
            _ => None,
        }
    });
    let (holder, other) = if one_holds {
        (&mut one, &mut two)
    } else {
        (&mut two, &mut one)
    };

    let stopped = Instant::now();
    holder.signal("TERM");
    let status = holder.wait_exit(PROMPT);
    assert!(status.success(), "SIGTERM exit status: {status}");
    wait_for("the other replica to take the lease", || {
        (lease_held(other) == Some(1.0)).then_some(())
    });
    let taken_after = stopped.elapsed();
    // Released, the lease is free at the other replica's next attempt (every third of the TTL);
    // held by a dead process it would stay taken until the TTL ran out (10 to 15 s after the
    // kill, plus that attempt).
    assert!(
        taken_after < LEASE_TTL * 2 / 3,
        "the other replica took the lease {taken_after:?} after SIGTERM; the lease lasts {LEASE_TTL:?}"
    );
    assert!(holder.log().contains("stopped cleanly"), "{}", holder.log());
}

#[test]
fn sigterm_writes_soft_state_before_the_server_exits() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing goes Offline while the agent is away for the restart.
    let mut server = ServerProcess::start(
        &dir.path().join("server"),
        &["--offline-missed-intervals", "1000"],
    );
    let token = server.new_token();
    let mut agent = AgentProcess::start(&server, &token, "store-1", "env=prod", dir.path());
    server.apply(&config_map_bundle("web", &["web"], "env=prod", ""));
    let ready = |server: &ServerProcess| {
        server
            .get("bundle", "web")
            .and_then(|bundle| bundle["status"]["summary"]["ready"].as_u64())
    };
    // SIGTERM as soon as the report is in memory: soft state is written every 500 ms, so a
    // server that exits at once loses it. The agent goes before the restart, so nothing can
    // resend the report.
    wait_for("the bundle Ready in memory", || {
        (ready(&server) == Some(1)).then_some(())
    });
    server.signal("TERM");
    let status = server.wait_exit(PROMPT);
    agent.stop();
    assert!(status.success(), "SIGTERM exit status: {status}");
    assert!(server.log().contains("stopped cleanly"), "{}", server.log());

    server.start_again();
    assert_eq!(
        ready(&server),
        Some(1),
        "the agent's report survives the restart"
    );
    let cluster = server.get("cluster", "store-1").expect("the cluster");
    assert_eq!(cluster["status"]["state"], "Online", "{cluster}");
}

#[test]
fn sigterm_stops_an_agent_promptly_with_status_0() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    let token = server.new_token();
    let mut agent = AgentProcess::start(&server, &token, "store-1", "env=prod", dir.path());
    wait_for("the agent to register", || server.get("cluster", "store-1"));
    let stopped = Instant::now();
    agent.signal("TERM");
    let status = agent.wait_exit(PROMPT);
    assert!(status.success(), "SIGTERM exit status: {status}");
    assert!(stopped.elapsed() < PROMPT);
}

/// A request in flight that never finishes: its head is read and its handler is reading the
/// body (hyper's `100 Continue` says so), which never comes in full.
fn stalled_request(server: &ServerProcess) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    write!(
        stream,
        "POST /api/v1/apply HTTP/1.1\r\nhost: flotilla\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: 1000\r\n\r\n",
        server.admin_token
    )
    .expect("send a request head");
    stream
        .set_read_timeout(Some(support::DEADLINE))
        .expect("read timeout");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("read 100 Continue");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
        .write_all(b"{\"apiVersion\"")
        .expect("send part of the body");
    stream
}

/// A connection that sends a request head one byte at a time, never finishing it.
fn slow_header_client(server: &ServerProcess) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nx-slow: ")
        .expect("send");
    stream
}

#[test]
fn graceful_stop_with_slow_clients_finishes_within_the_drain_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let shutdown_timeout = Duration::from_secs(4);
    let mut server = ServerProcess::start(
        &dir.path().join("server"),
        &["--shutdown-timeout", "4s", "--header-timeout", "60s"],
    );
    let slow: Vec<TcpStream> = (0..50).map(|_| slow_header_client(&server)).collect();
    let mut stalled = stalled_request(&server);
    let stopped = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(shutdown_timeout + PROMPT);
    let took = stopped.elapsed();
    assert!(status.success(), "SIGTERM exit status: {status}");
    assert!(
        took < shutdown_timeout + Duration::from_secs(1),
        "the stop took {took:?}, past the {shutdown_timeout:?} deadline"
    );
    // The stalled request was cut at the drain deadline: its connection is closed.
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    assert!(stopped.elapsed() < shutdown_timeout + PROMPT);
    drop(slow);
}

#[test]
fn a_second_signal_stops_the_server_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut server =
        ServerProcess::start(&dir.path().join("server"), &["--shutdown-timeout", "60s"]);
    let _stalled = stalled_request(&server);
    server.signal("INT");
    wait_for("the graceful stop to begin", || {
        server.log().contains("stopping gracefully").then_some(())
    });
    let stopped = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(PROMPT);
    assert_eq!(status.code(), Some(143), "exit status: {status}");
    assert!(stopped.elapsed() < PROMPT);
}
