//! The serve loop against raw sockets, in process: the connection cap closes connections that
//! never sent a request before ones that did, idle connections are closed after the idle
//! timeout, a trickled body is cut at the body timeout, a stop does not wait for silent
//! clients, and oversized request heads are refused in
//! the project's JSON error shape, including the ones hyper refuses before any route sees them.

mod support;

use std::time::{Duration, Instant};

use flotilla_api::ErrorBody;
use flotilla_server::{Server, Settings, serve::ConnectionSettings};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// How long an awaited condition may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

async fn start(connections: ConnectionSettings) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = Settings {
        connections,
        ..Settings::default()
    };
    (support::start_server(&dir, &settings).await, dir)
}

/// Sends one HTTP/1.1 request on `stream` and reads one response: status and body.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> (u16, Vec<u8>) {
    stream.write_all(request).await.expect("send request");
    read_response(stream).await
}

/// Reads one HTTP/1.1 response (with a content length): status and body.
async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> (u16, Vec<u8>) {
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut chunk))
            .await
            .expect("a response within the deadline")
            .expect("read response");
        assert!(
            n > 0,
            "connection closed mid-response: {:?}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map(|value| value.trim().parse().expect("content length"))
        .unwrap_or(0);
    while response.len() < head_end + length {
        let n = stream.read(&mut chunk).await.expect("read body");
        assert!(n > 0, "connection closed mid-body");
        response.extend_from_slice(&chunk[..n]);
    }
    (status, response[head_end..head_end + length].to_vec())
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: flotilla\r\n\r\n";

/// Waits until the server closes `stream` (EOF or reset); how long that took from `since`.
async fn closed_after(stream: &mut TcpStream, since: Instant) -> Duration {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(DEADLINE, stream.read(&mut byte)).await {
        Ok(Ok(0) | Err(_)) => since.elapsed(),
        Ok(Ok(_)) => panic!("unexpected data"),
        Err(_) => panic!("the connection was not closed within {DEADLINE:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_connections_that_never_sent_a_request_are_closed_first() {
    let (server, _dir) = start(ConnectionSettings {
        max_connections: Some(8),
        ..ConnectionSettings::default()
    })
    .await;
    let addr = server.addr;
    // Two clients that made a request and keep their connections (as agents do).
    let mut agents = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(exchange(&mut stream, HEALTHZ).await.0, 200);
        agents.push(stream);
    }
    // Fifty silent connections: far over the cap of eight.
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // A newcomer is served, and so are the clients that made requests, on their connections.
    let mut newcomer = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(exchange(&mut newcomer, HEALTHZ).await.0, 200);
    for agent in &mut agents {
        assert_eq!(exchange(agent, HEALTHZ).await.0, 200);
    }
    assert!(
        server.open_connections() <= 8,
        "{} open",
        server.open_connections()
    );
    // The silent ones that went were closed by the server, oldest first.
    let since = Instant::now();
    closed_after(&mut silent[0], since).await;
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let idle_timeout = Duration::from_secs(1);
    let (server, _dir) = start(ConnectionSettings {
        idle_timeout,
        header_timeout: Duration::from_secs(60),
        ..ConnectionSettings::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    assert_eq!(exchange(&mut stream, HEALTHZ).await.0, 200);
    let idle_since = Instant::now();
    let closed = closed_after(&mut stream, idle_since).await;
    assert!(
        closed >= idle_timeout.mul_f64(0.9) && closed < idle_timeout + Duration::from_secs(3),
        "closed {closed:?} after its last request; the idle timeout is {idle_timeout:?}"
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_body_is_cut_at_the_body_timeout() {
    let body_timeout = Duration::from_secs(1);
    let (server, _dir) = start(ConnectionSettings {
        body_timeout,
        ..ConnectionSettings::default()
    })
    .await;
    let admin = server.new_admin_token.clone().expect("admin token");
    let stream = TcpStream::connect(server.addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(
            format!(
                "POST /api/v1/apply HTTP/1.1\r\nhost: flotilla\r\nauthorization: Bearer {admin}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .expect("send head");
    let sent = Instant::now();
    // A byte every 100 ms: the connection is never idle, the body never complete.
    let trickle = tokio::spawn(async move {
        while writer.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let (status, body) = read_response(&mut reader).await;
    let answered = sent.elapsed();
    trickle.abort();
    assert!(
        (400..500).contains(&status),
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        answered >= body_timeout.mul_f64(0.9) && answered < body_timeout + Duration::from_secs(3),
        "answered {answered:?} after the head; the body timeout is {body_timeout:?}"
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_head_arrived_in_time_is_not_cut_by_the_header_timeout() {
    let header_timeout = Duration::from_secs(1);
    let (server, _dir) = start(ConnectionSettings {
        header_timeout,
        ..ConnectionSettings::default()
    })
    .await;
    let admin = server.new_admin_token.clone().expect("admin token");
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let body_bytes = 40;
    stream
        .write_all(
            format!(
                "POST /api/v1/apply HTTP/1.1\r\nhost: flotilla\r\nauthorization: Bearer {admin}\r\ncontent-type: application/json\r\ncontent-length: {body_bytes}\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .expect("send head");
    // The body takes over twice the header timeout to arrive (a slow upload, not a slow head).
    let started = Instant::now();
    for _ in 0..body_bytes - 2 {
        tokio::time::sleep(header_timeout.mul_f64(2.5) / (body_bytes - 2)).await;
        stream
            .write_all(b" ")
            .await
            .expect("the connection stays open");
    }
    stream.write_all(b"}").await.expect("finish the body");
    assert!(started.elapsed() > header_timeout * 2);
    let (status, body) = read_response(&mut stream).await;
    // Answered (an empty document is invalid): the request was served, not cut.
    assert!(
        (400..500).contains(&status),
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_does_not_wait_for_connections_that_never_sent_a_request() {
    let (server, _dir) = start(ConnectionSettings {
        header_timeout: Duration::from_secs(60),
        shutdown_timeout: Duration::from_secs(20),
        ..ConnectionSettings::default()
    })
    .await;
    let mut held = Vec::new();
    for index in 0..100 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        if index % 2 == 0 {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nx-slow: ")
                .await
                .expect("send");
        }
        held.push(stream);
    }
    let deadline = Instant::now() + DEADLINE;
    while server.open_connections() < 100 {
        assert!(Instant::now() < deadline, "the server accepted them all");
        tokio::task::yield_now().await;
    }
    let stopping = Instant::now();
    server.shutdown().await.expect("shutdown");
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "the stop took {:?} with silent and slow-header clients holding connections",
        stopping.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_are_refused_in_json() {
    let (server, _dir) = start(ConnectionSettings::default()).await;
    let cases = [
        // Over our bound: refused before the routes.
        (
            format!(
                "GET /api/v1/clusters?labelSelector={} HTTP/1.1\r\nhost: flotilla\r\n\r\n",
                "a".repeat(20 << 10)
            ),
            414,
            "URITooLong",
        ),
        // Over hyper's own fixed limit (64 KiB): refused by hyper, rewritten to JSON.
        (
            format!(
                "GET /api/v1/clusters?labelSelector={} HTTP/1.1\r\nhost: flotilla\r\n\r\n",
                "a".repeat(115 << 10)
            ),
            414,
            "URITooLong",
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nhost: flotilla\r\nx-big: {}\r\n\r\n",
                "b".repeat(40 << 10)
            ),
            431,
            "RequestHeaderFieldsTooLarge",
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nhost: flotilla\r\nx-big: {}\r\n\r\n",
                "b".repeat(200 << 10)
            ),
            431,
            "RequestHeaderFieldsTooLarge",
        ),
    ];
    for (request, status, reason) in cases {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        let (got, body) = exchange(&mut stream, request.as_bytes()).await;
        let error: ErrorBody = serde_json::from_slice(&body).unwrap_or_else(|error| {
            panic!(
                "{} bytes: not a JSON error ({error}): {:?}",
                request.len(),
                String::from_utf8_lossy(&body)
            )
        });
        assert_eq!(
            (got, error.code, error.reason.as_str()),
            (status, status, reason),
            "{} bytes: {}",
            request.len(),
            error.message
        );
        assert!(!error.message.is_empty());
    }
    // Still serving.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    assert_eq!(exchange(&mut stream, HEALTHZ).await.0, 200);
    server.shutdown().await.expect("shutdown");
}
