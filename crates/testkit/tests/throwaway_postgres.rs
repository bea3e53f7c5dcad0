//! Rule: the throwaway PostgreSQL is a real, private server (TCP and Unix socket, TLS on, trust
//! only for itself) and leaves nothing behind: not when dropped, not when its process is killed.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use flotilla_testkit::{PostgresServer, wait_until};

/// Set in the child process of the kill test: start a server, say where, then wait forever.
const CHILD_VAR: &str = "FLOTILLA_TESTKIT_PG_CHILD";

fn query(url: &str, sql: &str) -> String {
    let mut client = ::postgres::Client::connect(url, ::postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    client.query_one(sql, &[]).unwrap().get::<_, String>(0)
}

#[test]
fn throwaway_server_answers_on_tcp_and_its_socket_with_tls_on_and_is_gone_when_dropped() {
    let server = PostgresServer::start().unwrap();
    let dir = server.socket_dir().to_path_buf();
    assert_eq!(query(&server.url(), "SHOW ssl"), "on");
    assert_eq!(query(&server.url(), "SHOW port"), server.port().to_string());
    assert_eq!(
        query(&server.socket_url(), "SELECT current_user::text"),
        "postgres"
    );
    let hba = query(&server.url(), "SHOW hba_file");
    assert!(
        hba.starts_with(&*dir.to_string_lossy()),
        "{hba} outside {}",
        dir.display()
    );
    let certificate = std::fs::read_to_string(server.certificate()).unwrap();
    assert!(certificate.contains("BEGIN CERTIFICATE"), "{certificate}");

    let url = server.url();
    drop(server);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(::postgres::Client::connect(&url, ::postgres::NoTls).is_err());
}

#[test]
fn a_killed_test_process_leaves_no_server_and_no_directory() {
    if std::env::var_os(CHILD_VAR).is_some() {
        let server = PostgresServer::start().unwrap();
        println!("DIR {}", server.socket_dir().display());
        println!("URL {}", server.url());
        // Blocks until the parent kills this process (it never writes to our stdin).
        let _ = std::io::stdin().read_line(&mut String::new());
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_killed_test_process_leaves_no_server_and_no_directory",
        ])
        .args(["--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut dir, mut url) = (None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        // libtest may print "test … " before our line: look for the marker anywhere.
        if let Some((_, d)) = line.split_once("DIR ") {
            dir = Some(PathBuf::from(d));
        }
        if let Some((_, u)) = line.split_once("URL ") {
            url = Some(u.to_string());
            break;
        }
    }
    let (dir, url) = (dir.expect("the child's directory"), url.expect("its URL"));
    assert_eq!(query(&url, "SHOW ssl"), "on");

    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    wait_until(
        Duration::from_secs(60),
        "the watchdog to remove the directory",
        || !dir.exists(),
    )
    .unwrap();
    assert!(::postgres::Client::connect(&url, ::postgres::NoTls).is_err());
}
