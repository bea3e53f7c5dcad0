//! Watches (`GET /api/v1/{plural}?watch=true`) and server-side dry runs (`POST
//! /api/v1/apply?dryRun=All`) on a real server: the current objects then each change, the
//! label selector, the limit on open watches, shutdown ending watches, and a dry run that
//! validates and plans but stores nothing.

mod support;

use std::time::{Duration, Instant};

use flotilla_server::Settings;
use reqwest::Method;
use serde_json::{Value, json};
use support::{API_VERSION, Harness, bundle, expect_error};

/// How long any awaited event may take.
const DEADLINE: Duration = Duration::from_secs(20);

/// An open watch's events, read line by line.
struct Events {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl Events {
    async fn open(h: &Harness, query: &str) -> Events {
        let response = h
            .admin(Method::GET, &format!("/api/v1/{query}"), None)
            .await;
        assert_eq!(response.status().as_u16(), 200, "watch {query} refused");
        Events {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next event, or None when the server ended the stream; fails past [`DEADLINE`].
    async fn next(&mut self) -> Option<Value> {
        tokio::time::timeout(DEADLINE, async {
            loop {
                if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.buffer.drain(..=end).collect();
                    return Some(serde_json::from_slice(&line).expect("an event is JSON"));
                }
                match self.response.chunk().await {
                    Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                    Ok(None) | Err(_) => return None,
                }
            }
        })
        .await
        .expect("an event (or the end of the watch) within the deadline")
    }

    /// The initial ADDED events' objects' names, up to the initial-events-end bookmark.
    async fn initial(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        loop {
            let event = self.next().await.expect("the initial events");
            if event["type"] == "BOOKMARK" {
                assert_eq!(
                    event["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true",
                    "{event}"
                );
                return names;
            }
            assert_eq!(event["type"], "ADDED", "{event}");
            names.push(name_of(&event));
        }
    }

    /// The next event that is not a BOOKMARK, as (type, name).
    async fn change(&mut self) -> (String, String) {
        loop {
            let event = self.next().await.expect("a change event");
            if event["type"] != "BOOKMARK" {
                return (
                    event["type"].as_str().expect("type").to_string(),
                    name_of(&event),
                );
            }
        }
    }
}

fn name_of(event: &Value) -> String {
    event["object"]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn group(name: &str, env: &str) -> Value {
    json!({
        "apiVersion": API_VERSION, "kind": "ClusterGroup",
        "metadata": {"name": name, "labels": {"env": env}},
        "spec": {"selector": {"matchLabels": {"env": env}}},
    })
}

fn change(kind: &str, name: &str) -> (String, String) {
    (kind.to_string(), name.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sends_the_current_objects_then_every_change_in_order() {
    let h = Harness::start().await;
    h.apply_ok(&bundle("a", json!({}))).await;
    let mut events = Events::open(&h, "bundles?watch=true").await;
    assert_eq!(events.initial().await, ["a"]);

    h.apply_ok(&bundle("b", json!({}))).await;
    assert_eq!(events.change().await, change("ADDED", "b"));
    let mut relabelled = bundle("a", json!({}));
    relabelled["metadata"]["labels"] = json!({"tier": "web"});
    h.apply_ok(&relabelled).await;
    assert_eq!(events.change().await, change("MODIFIED", "a"));
    let deleted = h.admin(Method::DELETE, "/api/v1/bundles/b", None).await;
    assert_eq!(deleted.status().as_u16(), 200);
    assert_eq!(events.change().await, change("DELETED", "b"));
    // Other kinds' changes are not this watch's.
    h.apply_ok(&group("g", "prod")).await;
    h.apply_ok(&bundle("c", json!({}))).await;
    assert_eq!(events.change().await, change("ADDED", "c"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_watch_after_many_writes_is_not_flooded_with_what_its_list_holds() {
    // The hub starts with the first watch and reads the feed from the server's start: what it
    // finds there is in the watch's initial list, so it must not fill a queue of 2.
    let h = Harness::with_settings(Settings {
        watch_queue: 2,
        ..Settings::default()
    })
    .await;
    for n in 0..10 {
        h.apply_ok(&bundle(&format!("b{n}"), json!({}))).await;
    }
    let mut events = Events::open(&h, "bundles?watch=true").await;
    assert_eq!(events.initial().await.len(), 10);
    h.apply_ok(&bundle("last", json!({}))).await;
    assert_eq!(events.change().await, change("ADDED", "last"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_with_a_label_selector_sees_only_matching_objects() {
    let h = Harness::start().await;
    h.apply_ok(&group("prod-1", "prod")).await;
    h.apply_ok(&group("dev-1", "dev")).await;
    let mut events = Events::open(&h, "clustergroups?watch=true&labelSelector=env%3Dprod").await;
    assert_eq!(events.initial().await, ["prod-1"]);

    h.apply_ok(&group("dev-2", "dev")).await;
    h.apply_ok(&group("prod-2", "prod")).await;
    assert_eq!(events.change().await, change("ADDED", "prod-2"));
    // Leaving the selector is leaving the watch's view; joining it is being added to it.
    h.apply_ok(&group("prod-1", "dev")).await;
    assert_eq!(events.change().await, change("DELETED", "prod-1"));
    h.apply_ok(&group("dev-1", "prod")).await;
    assert_eq!(events.change().await, change("ADDED", "dev-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_by_name_sees_only_that_object() {
    let h = Harness::start().await;
    h.apply_ok(&group("one", "prod")).await;
    let mut events = Events::open(
        &h,
        "clustergroups?watch=true&fieldSelector=metadata.name%3Dtwo",
    )
    .await;
    assert!(events.initial().await.is_empty());
    h.apply_ok(&group("one", "dev")).await;
    h.apply_ok(&group("two", "dev")).await;
    assert_eq!(events.change().await, change("ADDED", "two"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_past_the_limit_are_refused_with_429_until_one_closes() {
    let h = Harness::with_settings(Settings {
        max_watches: 1,
        ..Settings::default()
    })
    .await;
    let mut first = Events::open(&h, "bundles?watch=true").await;
    first.initial().await;
    let refused = h
        .admin(Method::GET, "/api/v1/clusters?watch=true", None)
        .await;
    let error = expect_error(refused, 429).await;
    assert!(error.message.contains("too many open watches"), "{error:?}");
    assert!(error.message.contains("--max-watches"), "{error:?}");

    drop(first);
    // The slot is freed when the server notices the client went away (its next write fails).
    h.apply_ok(&bundle("wake", json!({}))).await;
    let started = Instant::now();
    loop {
        let response = h
            .admin(Method::GET, "/api/v1/bundles?watch=true", None)
            .await;
        if response.status().as_u16() == 200 {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the closed watch's slot was never freed"
        );
        h.apply_ok(&bundle(
            "wake",
            json!({"matchLabels": {"n": format!("{}", started.elapsed().as_millis())}}),
        ))
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_watch_outlives_the_idle_timeout() {
    let idle = Duration::from_millis(200);
    let h = Harness::with_settings(Settings {
        connections: flotilla_server::serve::ConnectionSettings {
            idle_timeout: idle,
            ..Default::default()
        },
        ..Settings::default()
    })
    .await;
    let mut events = Events::open(&h, "bundles?watch=true").await;
    events.initial().await;
    // Time passing is what is tested: an idle connection would be shut down after one idle
    // timeout and closed after a second.
    tokio::time::sleep(idle * 4).await;
    h.apply_ok(&bundle("late", json!({}))).await;
    assert_eq!(events.change().await, change("ADDED", "late"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_shutdown_ends_open_watches_promptly() {
    let h = Harness::start().await;
    let mut events = Events::open(&h, "bundles?watch=true").await;
    events.initial().await;
    let started = Instant::now();
    let stopping = tokio::spawn(h.shutdown());
    assert_eq!(events.next().await, None, "the watch ends with the server");
    stopping.await.expect("shutdown");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "an open watch held the shutdown for {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_cannot_resume_from_a_resource_version_or_filter_by_state() {
    let h = Harness::start().await;
    let gone = h
        .admin(
            Method::GET,
            "/api/v1/bundles?watch=true&resourceVersion=5",
            None,
        )
        .await;
    let error = expect_error(gone, 410).await;
    assert!(error.message.contains("resourceVersion"), "{error:?}");
    let state = h
        .admin(
            Method::GET,
            "/api/v1/clusters?watch=true&state=Online",
            None,
        )
        .await;
    expect_error(state, 400).await;
    let fields = h
        .admin(
            Method::GET,
            "/api/v1/bundles?watch=true&fieldSelector=spec.x%3D1",
            None,
        )
        .await;
    expect_error(fields, 400).await;
}

async fn dry_run(h: &Harness, document: &Value) -> reqwest::Response {
    h.admin(Method::POST, "/api/v1/apply?dryRun=All", Some(document))
        .await
}

fn verb(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("flotilla-dry-run")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_dry_run_stores_nothing_and_says_what_it_would_do() {
    let h = Harness::start().await;
    let before = h.revision();
    let created = dry_run(&h, &bundle("web", json!({}))).await;
    assert_eq!(created.status().as_u16(), 201);
    assert_eq!(verb(&created), "created");
    let object: Value = created.json().await.expect("JSON");
    assert_eq!(object["metadata"]["name"], "web");
    assert!(object.get("status").is_none(), "{object}");
    assert_eq!(h.revision(), before, "a dry run commits nothing");
    h.assert_absent("bundles", "web").await;

    let live = h.apply_ok(&bundle("web", json!({}))).await;
    let before = h.revision();
    let unchanged = dry_run(&h, &bundle("web", json!({}))).await;
    assert_eq!(unchanged.status().as_u16(), 200);
    assert_eq!(verb(&unchanged), "unchanged");
    let mut relabelled = bundle("web", json!({}));
    relabelled["metadata"]["labels"] = json!({"tier": "web"});
    let configured = dry_run(&h, &relabelled).await;
    assert_eq!(configured.status().as_u16(), 200);
    assert_eq!(verb(&configured), "configured");
    assert_eq!(h.revision(), before, "a dry run commits nothing");
    let now: Value = h
        .admin(Method::GET, "/api/v1/bundles/web", None)
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(now["metadata"], live["metadata"], "memory is unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_dry_run_answers_the_write_services_refusals() {
    let h = Harness::start().await;
    // A rule of the document (a bad selector operator): 422 naming the field.
    let mut invalid = bundle("web", json!({}));
    invalid["spec"]["targets"] =
        json!([{"clusterSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}]);
    let refused = dry_run(&h, &invalid).await;
    assert_eq!(
        refused.status().as_u16(),
        422,
        "{}",
        refused.text().await.unwrap_or_default()
    );
    // A check against memory: clusters are only created by registration.
    let cluster = json!({"apiVersion": API_VERSION, "kind": "Cluster",
        "metadata": {"name": "nowhere"}, "spec": {}});
    expect_error(dry_run(&h, &cluster).await, 404).await;
    // Stale resourceVersion: 409, as the write would be.
    h.apply_ok(&bundle("web", json!({}))).await;
    let mut stale = bundle("web", json!({}));
    stale["metadata"]["resourceVersion"] = json!("1");
    expect_error(dry_run(&h, &stale).await, 409).await;
    let bogus = h
        .admin(
            Method::POST,
            "/api/v1/apply?dryRun=Maybe",
            Some(&bundle("x", json!({}))),
        )
        .await;
    expect_error(bogus, 400).await;
}
