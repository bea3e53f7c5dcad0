//! Rule: GitHttpServer::start_with_basic_auth refuses requests without the right credentials
//! (401 + `WWW-Authenticate: Basic realm="git"`), so HTTPS-token handling can be tested, and
//! serves the repository with them.

use std::time::Duration;

use flotilla_testkit::{GitHttpServer, GitRepoFixture, run_with_deadline};

fn with_credentials(url: &str, user: &str, password: &str) -> String {
    url.replacen("http://", &format!("http://{user}:{password}@"), 1)
}

#[test]
fn http_backend_basic_auth_rejects_wrong_credentials() {
    let repo = GitRepoFixture::new();
    repo.write("a.txt", "secret\n");
    let sha = repo.commit("first");
    let server = GitHttpServer::start_with_basic_auth(repo.repos_dir(), "flotilla", "s3cret");
    let url = server.url_for(&repo);
    let dest = tempfile::tempdir().unwrap();

    let clone = |url: &str, name: &str| {
        run_with_deadline(
            repo.git_command().args([
                "-c",
                "credential.helper=",
                "clone",
                "-q",
                url,
                dest.path().join(name).to_str().unwrap(),
            ]),
            Duration::from_secs(60),
        )
        .unwrap()
    };

    let anonymous = clone(&url, "anonymous");
    assert!(!anonymous.status.success());
    let wrong = clone(&with_credentials(&url, "flotilla", "wrong"), "wrong");
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("Authentication failed"), "{stderr}");
    let log = server.request_log();
    assert!(log.iter().all(|l| l.ends_with("-> 401")), "{log:#?}");
    assert!(server.requests() >= 2);

    let right = clone(&with_credentials(&url, "flotilla", "s3cret"), "right");
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    let clone_dir = dest.path().join("right");
    assert_eq!(
        std::fs::read_to_string(clone_dir.join("a.txt")).unwrap(),
        "secret\n"
    );
    assert_eq!(
        repo.git(&["-C", clone_dir.to_str().unwrap(), "rev-parse", "HEAD"]),
        sha
    );
    let log = server.request_log();
    assert!(
        log.iter()
            .any(|l| l == "POST /repo.git/git-upload-pack -> 200"),
        "{log:#?}"
    );

    // A second commit through ls-remote with credentials.
    let second = repo.commit("second");
    let refs = repo.ls_remote(&with_credentials(&url, "flotilla", "s3cret"));
    assert_eq!(refs["refs/heads/main"], second);
}
