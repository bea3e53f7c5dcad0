//! Rule: GitDaemon serves a fixture over git:// with the real `git daemon`, is ready when
//! `start` returns, and is gone when dropped.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use flotilla_testkit::{GitDaemon, GitRepoFixture, wait_until};

#[test]
fn git_daemon_serves_fixture_commits() {
    let repo = GitRepoFixture::new();
    repo.write("a.txt", "one\n");
    let first = repo.commit("first");
    let daemon = GitDaemon::serve(&repo);
    let url = daemon.url_for(&repo);
    assert_eq!(url, format!("git://127.0.0.1:{}/repo.git", daemon.port()));

    let dest = tempfile::tempdir().unwrap();
    let clone = dest.path().join("clone");
    repo.git(&["clone", "-q", &url, clone.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(clone.join("a.txt")).unwrap(),
        "one\n"
    );
    assert_eq!(
        repo.git(&["-C", clone.to_str().unwrap(), "rev-parse", "HEAD"]),
        first
    );

    // A second commit is served without restarting anything.
    repo.write("a.txt", "two\n");
    let second = repo.commit("second");
    let tagged = repo.tag("v2");
    let refs = repo.ls_remote(&url);
    assert_eq!(refs["refs/heads/main"], second);
    assert_eq!(refs["refs/tags/v2^{}"], tagged);
}

#[test]
fn git_daemon_starts_on_an_empty_repository_and_stops_when_dropped() {
    let repo = GitRepoFixture::new();
    let daemon = GitDaemon::start(repo.repos_dir());
    let url = daemon.url_for(&repo);
    assert!(repo.ls_remote(&url).is_empty(), "no commits yet");
    let sha = repo.commit("first");
    assert_eq!(repo.ls_remote(&url)["refs/heads/main"], sha);

    let addr = SocketAddr::from(([127, 0, 0, 1], daemon.port()));
    daemon.stop();
    wait_until(
        Duration::from_secs(10),
        "the daemon's port to close",
        || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
    )
    .unwrap();
    let failed = flotilla_testkit::run_with_deadline(
        repo.git_command().args(["ls-remote", &url]),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(!failed.status.success());
}
