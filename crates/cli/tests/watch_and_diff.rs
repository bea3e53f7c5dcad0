//! kubectl's habits that need the server: `get -w` (the current list, then a line per change),
//! `apply --dry-run=server|client` and `diff -f`, with the real binary against a real server.

mod support;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{BIN, DEADLINE, ServerProcess, wait_exit};

fn bundle(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Bundle\nmetadata: {{name: {name}, labels: {labels}}}\nspec:\n  resources:\n    - {{apiVersion: v1, kind: ConfigMap, metadata: {{name: {name}}}}}\n---\n"
    )
}

fn group(name: &str, env: &str) -> String {
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: ClusterGroup\nmetadata: {{name: {name}, labels: {{env: {env}}}}}\nspec:\n  selector: {{matchLabels: {{env: {env}}}}}\n---\n"
    )
}

/// A `flotilla` process whose standard output is read line by line as it comes.
struct Streaming {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Streaming {
    fn start(server: &ServerProcess, args: &[&str]) -> Streaming {
        let mut child = Command::new(BIN)
            .args(args)
            .env("FLOTILLA_SERVER", &server.url)
            .env("FLOTILLA_TOKEN", &server.admin_token)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run flotilla");
        let stdout = child.stdout.take().expect("stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Streaming { child, lines }
    }

    /// Reads lines until one satisfies `wanted`; returns it (fails past the deadline).
    fn line_where(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let left = DEADLINE.saturating_sub(started.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    /// The next line (fails past the deadline).
    fn next_line(&self, what: &str) -> String {
        self.lines
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn get_watch_prints_the_current_table_then_a_row_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    server.apply(&bundle("alpha", "{}"));
    let watch = Streaming::start(&server, &["get", "bundles", "--watch"]);
    assert!(
        watch.next_line("the table header").starts_with("NAME"),
        "a table first"
    );
    assert!(watch.next_line("the current row").starts_with("alpha"));

    server.apply(&bundle("beta", "{tier: web}"));
    watch.line_where("beta's row", |line| line.starts_with("beta"));
    server.ok(&["delete", "bundle", "beta"]);
    watch.line_where("beta deleted", |line| line == "bundle/beta deleted");
}

#[test]
fn get_watch_as_json_prints_watch_events_of_matching_objects_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    server.apply(&[group("prod-1", "prod"), group("dev-1", "dev")].concat());
    let watch = Streaming::start(
        &server,
        &["get", "clustergroups", "-w", "-o", "json", "-l", "env=prod"],
    );
    let event = |line: String| -> (String, String) {
        let event: Value = serde_json::from_str(&line).expect("one JSON event per line");
        (
            event["type"].as_str().expect("type").to_string(),
            event["object"]["metadata"]["name"]
                .as_str()
                .expect("name")
                .to_string(),
        )
    };
    assert_eq!(
        event(watch.next_line("the initial event")),
        ("ADDED".to_string(), "prod-1".to_string())
    );
    server.apply(&group("dev-2", "dev"));
    server.apply(&group("prod-2", "prod"));
    // dev-2 was written first: the next line being prod-2 shows it was filtered out.
    assert_eq!(
        event(watch.next_line("prod-2 added")),
        ("ADDED".to_string(), "prod-2".to_string())
    );
    server.apply(&group("prod-2", "dev"));
    assert_eq!(
        event(watch.next_line("prod-2 leaving the selector")),
        ("DELETED".to_string(), "prod-2".to_string())
    );
}

#[test]
fn a_server_shutdown_ends_the_watch_promptly_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(&dir.path().join("server"), &[]);
    let mut watch = Streaming::start(&server, &["get", "bundles", "-w", "-o", "json"]);
    server.apply(&bundle("alpha", "{}"));
    watch.line_where("alpha added", |line| line.contains("\"alpha\""));
    let started = Instant::now();
    server.signal("TERM");
    let status = wait_exit(&mut watch.child, Duration::from_secs(10));
    assert!(!status.success(), "a watch the server ended is an error");
    let mut stderr = String::new();
    std::io::Read::read_to_string(watch.child.stderr.as_mut().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(stderr.contains("the server ended the watch"), "{stderr}");
    assert!(server.wait_exit(Duration::from_secs(10)).success());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the watch held the shutdown"
    );
}

#[test]
fn a_watch_past_the_servers_limit_fails_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &["--max-watches", "1"]);
    let first = Streaming::start(&server, &["get", "bundles", "-w", "-o", "name"]);
    server.apply(&bundle("alpha", "{}"));
    first.line_where("the first watch running", |line| line == "bundle/alpha");
    let refused = server.cli(&["get", "clustergroups", "--watch"]);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("too many open watches"), "{stderr}");
    assert!(stderr.contains("429"), "{stderr}");
}

#[test]
fn apply_server_dry_run_stores_nothing_and_names_what_it_would_do() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    let created = server.cli_with_input(
        &["apply", "--dry-run=server", "-f", "-"],
        &bundle("web", "{}"),
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert_eq!(
        text(&created.stdout),
        "bundle/web created (server dry run)\n"
    );
    assert!(server.get("bundle", "web").is_none(), "nothing was stored");

    server.apply(&bundle("web", "{}"));
    let unchanged = server.cli_with_input(
        &["apply", "--dry-run=server", "-f", "-"],
        &bundle("web", "{}"),
    );
    assert_eq!(
        text(&unchanged.stdout),
        "bundle/web unchanged (server dry run)\n"
    );
    let configured = server.cli_with_input(
        &["apply", "--dry-run=server", "-f", "-"],
        &bundle("web", "{tier: web}"),
    );
    assert_eq!(
        text(&configured.stdout),
        "bundle/web configured (server dry run)\n"
    );
    let live = server.get("bundle", "web").expect("web");
    assert!(
        live["metadata"]
            .get("labels")
            .is_none_or(|labels| labels.get("tier").is_none()),
        "the dry run changed nothing: {live}"
    );
}

#[test]
fn a_server_dry_run_reports_what_only_the_server_can_check() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    // Valid as a document, so a client dry run passes; the server knows no such cluster.
    let cluster = "apiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {name: nowhere, labels: {env: prod}}\nspec: {}\n";
    let client = server.cli_with_input(&["apply", "--dry-run=client", "-f", "-"], cluster);
    assert_eq!(
        text(&client.stdout),
        "cluster/nowhere valid (client dry run)\n"
    );
    let refused = server.cli_with_input(&["apply", "--dry-run=server", "-f", "-"], cluster);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("cluster/nowhere"), "{stderr}");
    assert!(stderr.contains("not found"), "{stderr}");
    assert!(stderr.contains("would not be applied"), "{stderr}");
}

#[test]
fn apply_client_dry_run_validates_locally_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    let invalid = "apiVersion: flotilla.dev/v1alpha1\nkind: ClusterGroup\nmetadata: {name: bad}\nspec:\n  selector: {matchExpressions: [{key: env, operator: Near}]}\n";
    let refused = server.cli_with_input(&["apply", "--dry-run=client", "-f", "-"], invalid);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("clustergroup/bad"),
        "{}",
        text(&refused.stderr)
    );
    let valid = server.cli_with_input(
        &["apply", "--dry-run=client", "-f", "-"],
        &group("good", "prod"),
    );
    assert!(valid.status.success(), "{}", text(&valid.stderr));
    assert!(
        server.get("clustergroup", "good").is_none(),
        "nothing was sent"
    );
}

#[test]
fn diff_shows_a_changed_field_and_exits_1_and_exits_0_when_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    server.apply(&bundle("web", "{env: dev}"));

    let same = server.cli_with_input(&["diff", "-f", "-"], &bundle("web", "{env: dev}"));
    assert_eq!(same.status.code(), Some(0), "{}", text(&same.stderr));
    assert_eq!(text(&same.stdout), "");

    let changed = server.cli_with_input(&["diff", "-f", "-"], &bundle("web", "{env: prod}"));
    assert_eq!(changed.status.code(), Some(1), "{}", text(&changed.stderr));
    let diff = text(&changed.stdout);
    assert!(diff.contains("--- live/bundle/web"), "{diff}");
    assert!(diff.contains("+++ merged/bundle/web"), "{diff}");
    assert!(diff.contains("-    env: dev"), "{diff}");
    assert!(diff.contains("+    env: prod"), "{diff}");
    for server_set in [
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "status",
    ] {
        assert!(!diff.contains(server_set), "{server_set} in {diff}");
    }
    assert_eq!(
        server.get("bundle", "web").expect("web")["metadata"]["labels"]["env"],
        "dev",
        "diff changed nothing"
    );

    let new = server.cli_with_input(&["diff", "-f", "-"], &bundle("api", "{}"));
    assert_eq!(new.status.code(), Some(1));
    assert!(
        text(&new.stdout).contains("+  name: api"),
        "{}",
        text(&new.stdout)
    );

    let invalid = server.cli_with_input(
        &["diff", "-f", "-"],
        "apiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {name: nowhere}\nspec: {}\n",
    );
    assert_eq!(invalid.status.code(), Some(2), "{}", text(&invalid.stderr));
}

#[test]
fn a_secrets_values_never_leave_the_server_in_a_dry_run_or_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("server"), &[]);
    let secret = |password: &str| {
        format!(
            "apiVersion: flotilla.dev/v1alpha1\nkind: Secret\nmetadata: {{name: creds}}\nspec:\n  type: basic-auth\n  stringData: {{username: deploy-user, password: {password}}}\n"
        )
    };
    let created = server.cli_with_input(
        &["apply", "--dry-run=server", "-f", "-", "-o", "yaml"],
        &secret("first-Pa55"),
    );
    let shown = format!("{}{}", text(&created.stdout), text(&created.stderr));
    assert!(
        !shown.contains("first-Pa55") && !shown.contains("deploy-user"),
        "{shown}"
    );

    server.apply(&secret("first-Pa55"));
    let same = server.cli_with_input(&["diff", "-f", "-"], &secret("first-Pa55"));
    assert_eq!(same.status.code(), Some(0), "{}", text(&same.stdout));
    let changed = server.cli_with_input(&["diff", "-f", "-"], &secret("second-Pa55"));
    assert_eq!(changed.status.code(), Some(1), "{}", text(&changed.stderr));
    let diff = text(&changed.stdout);
    assert!(
        diff.contains("+    password: (redacted, changed)"),
        "{diff}"
    );
    assert!(
        !diff
            .lines()
            .any(|line| line.starts_with(['+', '-']) && line.contains("username")),
        "an unchanged key is no difference: {diff}"
    );
    for value in ["first-Pa55", "second-Pa55", "deploy-user"] {
        assert!(!diff.contains(value), "{value} in {diff}");
    }
}
