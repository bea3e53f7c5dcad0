//! Rule: GitHttpServer speaks real smart HTTP through `git http-backend` (protocol v2, gzipped
//! and large request bodies included) and counts every request it receives.

use std::time::Duration;

use flotilla_testkit::{GitHttpServer, GitRepoFixture, run_with_stdin};

#[test]
fn http_backend_serves_fixture_commits() {
    let repo = GitRepoFixture::new();
    repo.write("chart/values.yaml", "replicas: 1\n");
    let first = repo.commit("first");
    let server = GitHttpServer::start(repo.repos_dir());
    let url = server.url_for(&repo);
    assert_eq!(url, format!("http://{}/repo.git", server.addr()));
    assert_eq!(server.requests(), 0);

    let dest = tempfile::tempdir().unwrap();
    let clone = dest.path().join("clone");
    repo.git(&["clone", "-q", &url, clone.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(clone.join("chart/values.yaml")).unwrap(),
        "replicas: 1\n"
    );
    assert_eq!(
        repo.git(&["-C", clone.to_str().unwrap(), "rev-parse", "HEAD"]),
        first
    );
    let after_clone = server.requests();
    assert!(
        after_clone >= 2,
        "info/refs and upload-pack at least: {after_clone}"
    );
    let log = server.request_log();
    assert!(
        log.iter()
            .any(|l| l == "GET /repo.git/info/refs?service=git-upload-pack -> 200"),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l == "POST /repo.git/git-upload-pack -> 200"),
        "{log:#?}"
    );

    // A second commit is visible; each poll is counted; no poll, no count.
    let second = repo.commit("second");
    assert_eq!(
        server.requests(),
        after_clone,
        "committing does not touch the server"
    );
    assert_eq!(repo.ls_remote(&url)["refs/heads/main"], second);
    let after_poll = server.requests();
    assert!(after_poll > after_clone);
    repo.git(&["-C", clone.to_str().unwrap(), "pull", "-q", "--ff-only"]);
    assert!(server.requests() > after_poll);
    assert_eq!(
        repo.git(&["-C", clone.to_str().unwrap(), "rev-parse", "HEAD"]),
        second
    );
}

#[test]
fn http_backend_handles_large_gzipped_fetch_requests() {
    // 60 branches on 60 different commits: the clone's want list is several KiB, which git
    // sends gzip-compressed (Content-Encoding: gzip). http-backend must be told to inflate it.
    let repo = GitRepoFixture::new();
    repo.commit("root");
    for n in 0..60 {
        repo.git(&["commit", "-q", "--allow-empty", "-m", &format!("c{n}")]);
        repo.git(&["branch", &format!("branch-with-a-longish-name-{n:03}")]);
    }
    repo.git(&["push", "-q", "origin", "+refs/heads/*:refs/heads/*"]);
    let server = GitHttpServer::start(repo.repos_dir());
    let dest = tempfile::tempdir().unwrap();
    let clone = dest.path().join("clone");
    repo.git(&[
        "clone",
        "-q",
        "--mirror",
        &server.url_for(&repo),
        clone.to_str().unwrap(),
    ]);
    let branches = repo.git(&["-C", clone.to_str().unwrap(), "branch", "--list"]);
    assert_eq!(branches.lines().count(), 61, "{branches}");
}

#[test]
fn http_backend_streams_chunked_request_bodies() {
    // 1,500 branches on distinct commits: the want list (~75 KB) is over a 64 KiB post buffer,
    // so git sends it with `Transfer-Encoding: chunked` and no Content-Length.
    // http-backend must then read the body to EOF. Commits are made in one `git fast-import`.
    const BRANCHES: usize = 1_500;
    let repo = GitRepoFixture::new();
    repo.commit("root");
    let mut stream = String::new();
    for n in 0..BRANCHES {
        let message = format!("commit {n}\n");
        stream.push_str(&format!(
            "commit refs/heads/b{n:04}\ncommitter T <t@example.invalid> 1700000000 +0000\n\
             data {}\n{message}\n",
            message.len()
        ));
    }
    let out = run_with_stdin(
        repo.git_command()
            .arg("--git-dir")
            .arg(repo.bare_path())
            .args(["fast-import", "--quiet"]),
        stream.as_bytes(),
        Duration::from_secs(120),
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = GitHttpServer::start(repo.repos_dir());
    let dest = tempfile::tempdir().unwrap();
    let clone = dest.path().join("clone");
    repo.git(&[
        "-c",
        "http.postBuffer=65536", // the minimum; the default (1 MiB) would gzip it instead
        "clone",
        "-q",
        "--mirror",
        &server.url_for(&repo),
        clone.to_str().unwrap(),
    ]);
    let branches = repo.git(&["-C", clone.to_str().unwrap(), "branch", "--list"]);
    assert_eq!(branches.lines().count(), BRANCHES + 1);
}
