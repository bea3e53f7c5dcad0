//! `flotilla rollout` and `flotilla history` through the real binary, against a stub admin API
//! that answers with fixed documents (the wire types of `flotilla_api::rollout`): what the CLI
//! asks, what it prints and the exit code `--watch` ends with. The stub answers in order, so a
//! watch sees a scripted run and ends when the script's last phase does.

use std::{
    collections::{BTreeMap, VecDeque},
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    process::{Command, Output},
    sync::{Arc, Mutex},
};

use flotilla_api::{BundleRevision, FailedCluster, List, RolloutReason, RolloutStatus, WaveStatus};
use serde::Serialize;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// One request the stub saw: method, path (still percent-encoded) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    path: String,
    body: String,
}

/// Answers per `METHOD path`, in order; the last one repeats.
type Script = BTreeMap<String, VecDeque<(u16, String)>>;

/// An admin API on 127.0.0.1 that answers each request from its script (404 for anything
/// else) and records it. Its thread ends with the test process.
struct Stub {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Stub {
    fn start(routes: Vec<(&str, Vec<(u16, String)>)>) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stub");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut script = Script::new();
        for (route, answers) in routes {
            script.insert(route.to_string(), answers.into());
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&mut stream) else {
                    continue;
                };
                let route = format!("{} {}", request.method, request.path);
                let (status, body) = match script.get_mut(&route) {
                    Some(answers) if answers.len() > 1 => answers.pop_front().unwrap(),
                    Some(answers) => answers.front().cloned().unwrap(),
                    None => (
                        404,
                        format!(
                            r#"{{"code":404,"reason":"NotFound","message":"no route {route} in the stub"}}"#
                        ),
                    ),
                };
                record.lock().unwrap().push(request);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Stub { url, seen }
    }

    /// Runs the CLI against the stub.
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("FLOTILLA_SERVER", &self.url)
            .env("FLOTILLA_TOKEN", "stub-token")
            .output()
            .expect("run flotilla")
    }

    /// Runs the CLI, asserting success; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.status.success(),
            "flotilla {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        path,
        body: String::from_utf8(body).ok()?,
    })
}

fn json<T: Serialize>(document: &T) -> String {
    serde_json::to_string(document).unwrap()
}

fn wave(name: &str, phase: &str, clusters: u64, done: u64, failed: u64) -> WaveStatus {
    WaveStatus {
        name: name.into(),
        phase: phase.into(),
        clusters,
        updated: done + failed,
        ready: done,
        done,
        failed,
        max_concurrency: clusters,
        ..WaveStatus::default()
    }
}

/// A run of `web` from revision 3 to 4 over waves canary (2 clusters) and rest (10).
fn run(phase: &str, current_wave: Option<u32>, waves: [WaveStatus; 2]) -> RolloutStatus {
    let mut status = RolloutStatus {
        phase: phase.into(),
        stable_revision: 3,
        candidate_revision: Some(4),
        current_wave,
        waves: waves.into(),
        started: Some("2026-12-07T10:00:00Z".into()),
        updated: Some("2026-12-07T10:05:00Z".into()),
        ..RolloutStatus::default()
    };
    status.metadata.name = "web".into();
    status
}

fn rolled_back() -> RolloutStatus {
    let mut status = run(
        "RolledBack",
        None,
        [
            wave("canary", "Failed", 2, 1, 1),
            wave("rest", "Waiting", 10, 0, 0),
        ],
    );
    status.held_revision = Some(4);
    status.reason = Some(RolloutReason {
        reason: "WaveFailed".into(),
        message: "wave canary: 1 of 2 clusters failed, at most 0 may".into(),
        wave: Some("canary".into()),
        failed_clusters: vec![FailedCluster {
            cluster: "store-3".into(),
            reason: "Error".into(),
            message: "ConfigMap apps/web: forbidden".into(),
            objects: vec!["ConfigMap/apps/web".into()],
        }],
    });
    status
}

fn revisions() -> List<BundleRevision> {
    List {
        items: vec![
            BundleRevision {
                revision: 4,
                generation: 7,
                digest: "sha256:4444444444444444444444".into(),
                commit: Some("abcdef0123456789abcdef0123456789abcdef01".into()),
                author: "gitrepo/apps".into(),
                created: "2020-01-02T00:00:00Z".into(),
                phase: "Failed".into(),
                ..BundleRevision::default()
            },
            BundleRevision {
                revision: 3,
                generation: 6,
                digest: "sha256:3333333333333333333333".into(),
                author: "admin".into(),
                created: "2020-01-01T00:00:00Z".into(),
                phase: "Stable".into(),
                ..BundleRevision::default()
            },
        ],
        continue_token: None,
        total: None,
    }
}

const STATUS_PATH: &str = "GET /api/v1/bundles/web/rollout";

#[test]
fn status_prints_the_waves_and_why_the_run_rolled_back() {
    let stub = Stub::start(vec![(STATUS_PATH, vec![(200, json(&rolled_back()))])]);
    let printed = stub.ok(&["rollout", "status", "web"]);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines[0], "Bundle:     web");
    assert_eq!(lines[1], "Phase:      RolledBack");
    assert_eq!(lines[2], "Revisions:  stable 3, candidate 4, held 4");
    let header = lines
        .iter()
        .position(|line| line.starts_with("NAME"))
        .expect("a wave table");
    assert_eq!(
        lines[header].split_whitespace().collect::<Vec<_>>(),
        [
            "NAME",
            "PHASE",
            "CLUSTERS",
            "UPDATED",
            "READY",
            "DONE",
            "FAILED",
            "SOAK-REMAINING"
        ]
    );
    assert_eq!(
        lines[header + 1].split_whitespace().collect::<Vec<_>>(),
        ["canary", "Failed", "2", "2", "1", "1", "1"]
    );
    assert_eq!(
        lines[header + 2].split_whitespace().collect::<Vec<_>>(),
        ["rest", "Waiting", "10", "0", "0", "0", "0"]
    );
    for expected in [
        "Reason:     WaveFailed\n",
        "Wave:       canary\n",
        "Failed clusters:\n  store-3 (Error): ConfigMap apps/web: forbidden\n    objects: ConfigMap/apps/web\n",
    ] {
        assert!(
            printed.contains(expected),
            "{expected:?} missing:\n{printed}"
        );
    }
}

#[test]
fn status_and_history_json_and_yaml_are_the_servers_documents() {
    let stub = Stub::start(vec![
        (STATUS_PATH, vec![(200, json(&rolled_back()))]),
        (
            "GET /api/v1/bundles/web/revisions",
            vec![(200, json(&revisions()))],
        ),
    ]);
    let status: Value = serde_json::to_value(rolled_back()).unwrap();
    assert_eq!(
        stub.ok(&["rollout", "status", "web", "-o", "json"]),
        format!("{}\n", serde_json::to_string_pretty(&status).unwrap())
    );
    assert_eq!(
        stub.ok(&["rollout", "status", "web", "-o", "yaml"]),
        serde_saphyr::to_string(&status).unwrap()
    );
    let list = serde_json::json!({ "items": serde_json::to_value(revisions().items).unwrap() });
    assert_eq!(
        stub.ok(&["history", "bundle", "web", "-o", "json"]),
        format!("{}\n", serde_json::to_string_pretty(&list).unwrap())
    );
    assert_eq!(
        stub.ok(&["history", "bundles", "web", "-o", "yaml"]),
        serde_saphyr::to_string(&list).unwrap()
    );
}

#[test]
fn history_lists_revisions_newest_first_with_short_digests() {
    let stub = Stub::start(vec![(
        "GET /api/v1/bundles/web/revisions",
        vec![(200, json(&revisions()))],
    )]);
    let printed = stub.ok(&["history", "bundle", "web"]);
    let rows: Vec<Vec<&str>> = printed
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "REVISION",
            "GENERATION",
            "DIGEST",
            "COMMIT",
            "AUTHOR",
            "CREATED",
            "PHASE"
        ]
    );
    assert_eq!(
        rows[1][..5],
        ["4", "7", "444444444444", "abcdef012345", "gitrepo/apps"]
    );
    assert_eq!(rows[1][6], "Failed");
    assert!(rows[1][5].ends_with('d'), "an age in days: {printed}");
    // No commit: the column stays empty, the row has one cell less.
    assert_eq!(rows[2][..4], ["3", "6", "333333333333", "admin"]);
    assert_eq!(rows[2][5], "Stable");

    let refused = stub.cli(&["history", "cluster", "web"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("only bundles keep revisions"),
        "refusal: {stderr}"
    );
    assert_eq!(
        stub.seen().len(),
        1,
        "a wrong kind never reaches the server"
    );
}

#[test]
fn watch_prints_each_change_once_and_exits_with_the_code_of_the_final_phase() {
    let progressing = run(
        "Progressing",
        Some(0),
        [
            wave("canary", "Progressing", 2, 0, 0),
            wave("rest", "Waiting", 10, 0, 0),
        ],
    );
    let mut soaking = progressing.clone();
    soaking.waves[0].phase = "Soaking".into();
    soaking.waves[0].ready = 2;
    soaking.waves[0].soak_remaining_seconds = Some(30);
    let mut soaking_later = soaking.clone();
    soaking_later.waves[0].soak_remaining_seconds = Some(28);
    let mut paused = soaking_later.clone();
    paused.phase = "Paused".into();
    let script = vec![
        (200, json(&progressing)),
        (200, json(&progressing)),
        (200, json(&soaking)),
        (200, json(&soaking_later)),
        (200, json(&paused)),
        (200, json(&rolled_back())),
    ];
    let stub = Stub::start(vec![(STATUS_PATH, script)]);
    let output = stub.cli(&["rollout", "status", "web", "--watch", "--interval", "1ms"]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "RolledBack exits 3: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = printed
        .lines()
        .take_while(|line| !line.is_empty())
        .collect();
    assert_eq!(
        lines,
        [
            "bundle/web Progressing revision 4, wave canary (1/2): 0/2 done, 0 ready, 0 failed",
            "bundle/web Progressing revision 4, wave canary (1/2): 0/2 done, 2 ready, 0 failed, soak 30s left",
            "bundle/web Paused revision 4, wave canary (1/2): 0/2 done, 2 ready, 0 failed, soak 28s left",
            "bundle/web RolledBack revision 4: wave canary: 1 of 2 clusters failed, at most 0 may",
        ],
        "a line per change, none for the soak countdown alone:\n{printed}"
    );
    assert!(
        printed.contains("\nBundle:     web\nPhase:      RolledBack\n"),
        "the final status follows the lines:\n{printed}"
    );
    assert!(
        printed.contains("store-3 (Error)"),
        "with its failed clusters:\n{printed}"
    );
    assert_eq!(stub.seen().len(), 6, "it stops polling once the run ended");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bundle/web rollout ended RolledBack"),
        "{stderr}"
    );

    for (phase, code) in [("Succeeded", 0), ("Halted", 4), ("Frozen", 5)] {
        let ended = run(
            phase,
            None,
            [
                wave("canary", "Done", 2, 2, 0),
                wave("rest", "Done", 10, 10, 0),
            ],
        );
        let stub = Stub::start(vec![(
            STATUS_PATH,
            vec![(200, json(&progressing)), (200, json(&ended))],
        )]);
        let output = stub.cli(&[
            "rollout",
            "status",
            "web",
            "-w",
            "--interval",
            "1ms",
            "-o",
            "json",
        ]);
        assert_eq!(output.status.code(), Some(code), "{phase}");
        // -o json under --watch: one document per change.
        let documents: Vec<RolloutStatus> = serde_json::Deserializer::from_slice(&output.stdout)
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("JSON documents");
        assert_eq!(documents, [progressing.clone(), ended], "{phase}");
    }
}

#[test]
fn watch_of_a_missing_bundle_fails_like_any_error_not_like_a_failed_rollout() {
    let stub = Stub::start(vec![]);
    let output = stub.cli(&["rollout", "status", "nope", "--watch", "--interval", "1ms"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("read the rollout of bundle/nope") && stderr.contains("(404)"),
        "{stderr}"
    );
}

#[test]
fn verbs_post_to_their_endpoint_and_print_one_line_or_the_status() {
    let paused = run(
        "Paused",
        Some(0),
        [
            wave("canary", "Paused", 2, 1, 0),
            wave("rest", "Waiting", 10, 0, 0),
        ],
    );
    let mut undone = paused.clone();
    undone.phase = "Progressing".into();
    undone.candidate_revision = Some(2);
    let stub = Stub::start(vec![
        (
            "POST /api/v1/bundles/web/rollout/pause",
            vec![(200, json(&paused))],
        ),
        (
            "POST /api/v1/bundles/web/rollout/undo",
            vec![(200, json(&undone))],
        ),
        (
            "POST /api/v1/bundles/web/rollout/resume",
            vec![(
                409,
                r#"{"code":409,"reason":"Conflict","message":"the rollout of bundle \"web\" is Progressing, not Paused"}"#.into(),
            )],
        ),
    ]);
    assert_eq!(
        stub.ok(&["rollout", "pause", "web"]),
        "bundle/web rollout paused (wave canary)\n"
    );
    assert_eq!(
        stub.ok(&["rollout", "undo", "web", "--to-revision", "2"]),
        "bundle/web rollout undone (Progressing, revision 2, wave canary)\n"
    );
    let printed: RolloutStatus =
        serde_json::from_str(&stub.ok(&["rollout", "undo", "web", "-o", "json"])).unwrap();
    assert_eq!(printed, undone);

    let refused = stub.cli(&["rollout", "resume", "web"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(
            "resume the rollout of bundle/web: the rollout of bundle \"web\" is Progressing, not Paused (409)"
        ),
        "{stderr}"
    );

    let posted: Vec<(String, String)> = stub
        .seen()
        .into_iter()
        .map(|seen| (format!("{} {}", seen.method, seen.path), seen.body))
        .collect();
    assert_eq!(
        posted,
        [
            (
                "POST /api/v1/bundles/web/rollout/pause".to_string(),
                String::new()
            ),
            (
                "POST /api/v1/bundles/web/rollout/undo".into(),
                r#"{"toRevision":2}"#.into()
            ),
            ("POST /api/v1/bundles/web/rollout/undo".into(), "{}".into()),
            (
                "POST /api/v1/bundles/web/rollout/resume".into(),
                String::new()
            ),
        ]
    );
}

#[test]
fn watch_rides_out_a_few_server_errors_but_not_an_endless_outage() {
    let unavailable = (
        503,
        r#"{"code":503,"reason":"ServiceUnavailable","message":"not the lease holder yet"}"#
            .to_string(),
    );
    let succeeded = run(
        "Succeeded",
        None,
        [
            wave("canary", "Done", 2, 2, 0),
            wave("rest", "Done", 10, 10, 0),
        ],
    );
    let stub = Stub::start(vec![(
        STATUS_PATH,
        vec![
            unavailable.clone(),
            unavailable.clone(),
            (200, json(&succeeded)),
        ],
    )]);
    let output = stub.cli(&["rollout", "status", "web", "-w", "--interval", "1ms"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("retrying").count(), 2, "{stderr}");

    let stub = Stub::start(vec![(STATUS_PATH, vec![unavailable])]);
    let output = stub.cli(&["rollout", "status", "web", "-w", "--interval", "1ms"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: read the rollout of bundle/web: not the lease holder yet (503)"),
        "{stderr}"
    );
    assert_eq!(stub.seen().len(), 6, "five retries after the first failure");
}
