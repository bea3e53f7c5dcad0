//! Rule: HttpFileServer serves a directory's files (and nothing outside it) over HTTP, well
//! enough to be a Helm chart repository.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use flotilla_testkit::{HttpFileServer, helm_command, run_checked};

/// A bare-bones HTTP/1.1 GET (no client crate needed): status code and body.
fn get(server: &HttpFileServer, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn http_file_server_serves_files_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/hello.txt"), "hello\n").unwrap();
    std::fs::write(dir.path().join("outside.txt"), "private\n").unwrap();
    let server = HttpFileServer::start(&root);
    assert!(server.url().starts_with("http://127.0.0.1:"));

    assert_eq!(get(&server, "/sub/hello.txt"), (200, "hello\n".to_string()));
    assert_eq!(get(&server, "/missing.txt").0, 404);
    assert_eq!(get(&server, "/sub").0, 404, "no directory listings");
    assert_eq!(get(&server, "/../outside.txt").0, 404);
    assert_eq!(get(&server, "/sub/../../outside.txt").0, 404);
    assert_eq!(get(&server, "/sub/%2e%2e/%2e%2e/outside.txt").0, 404);
    // Files written after start are served too.
    std::fs::write(root.join("late.txt"), "late\n").unwrap();
    assert_eq!(get(&server, "/late.txt"), (200, "late\n".to_string()));
    assert_eq!(server.requests(), 7, "{:#?}", server.request_log());
}

#[test]
fn http_file_server_is_a_helm_chart_repository() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let helm = |args: &[&str]| {
        run_checked(
            helm_command(home.path())
                .unwrap()
                .current_dir(work.path())
                .args(args),
            Duration::from_secs(120),
        )
        .unwrap()
    };
    helm(&["create", "demo"]);
    std::fs::create_dir_all(work.path().join("repo")).unwrap();
    helm(&["package", "demo", "--version", "1.2.3", "-d", "repo"]);
    let server = HttpFileServer::start(work.path().join("repo"));
    helm(&["repo", "index", "repo", "--url", &server.url()]);

    let pulled = work.path().join("pulled");
    std::fs::create_dir_all(&pulled).unwrap();
    helm(&[
        "pull",
        "demo",
        "--repo",
        &server.url(),
        "--version",
        "1.2.3",
        "-d",
        pulled.to_str().unwrap(),
    ]);
    assert!(pulled.join("demo-1.2.3.tgz").is_file());
    let log = server.request_log();
    assert!(
        log.contains(&"GET /index.yaml -> 200".to_string()),
        "{log:#?}"
    );
    assert!(
        log.contains(&"GET /demo-1.2.3.tgz -> 200".to_string()),
        "{log:#?}"
    );
}
