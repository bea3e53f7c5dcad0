//! Bundle revisions (`GET /api/v1/bundles/{name}/revisions`): every change to what clusters
//! receive, from the admin API or a git render, is an immutable, numbered revision; label edits
//! and paused specs are not; `spec.revisionHistoryLimit` prunes the oldest (records, and content
//! once collected); numbers are never reused; revisions survive a restart and reach other
//! replicas. A real server on 127.0.0.1 over a temp data dir (PostgreSQL for the replicas test).

mod support;

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use flotilla_server::{PgOptions, Server, ServerConfig, Settings, StoreConfig};
use flotilla_store::pg_testing::TestSchema;
use flotilla_testkit::GitRepoFixture;
use reqwest::Method;
use serde_json::{Value, json};
use support::{API_VERSION, Harness, expect_error};

/// Longest a git render, a content collection or another replica may take in these tests.
const DEADLINE: Duration = Duration::from_secs(30);

/// A bundle whose ConfigMap carries `value`; `spec` is merged over the default spec.
fn bundle(name: &str, value: &str, spec: Value) -> Value {
    let mut document = json!({
        "apiVersion": API_VERSION, "kind": "Bundle",
        "metadata": {"name": name},
        "spec": {
            "resources": [{"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": name}, "data": {"value": value}}],
            "targets": [{"clusterSelector": {}}],
        },
    });
    for (key, field) in spec.as_object().into_iter().flatten() {
        document["spec"][key] = field.clone();
    }
    document
}

/// The bundle's revisions as the API lists them, newest first.
async fn revisions(h: &Harness, name: &str) -> Vec<Value> {
    let response = h
        .admin(
            Method::GET,
            &format!("/api/v1/bundles/{name}/revisions"),
            None,
        )
        .await;
    assert_eq!(response.status().as_u16(), 200, "revisions of {name}");
    let list: Value = response.json().await.expect("list JSON");
    assert_eq!(list["total"], list["items"].as_array().map_or(0, Vec::len));
    list["items"].as_array().expect("items").clone()
}

fn numbers(revisions: &[Value]) -> Vec<u64> {
    revisions
        .iter()
        .map(|r| r["revision"].as_u64().expect("a revision number"))
        .collect()
}

/// The `BundleRevision` records the store holds for `bundle`.
fn stored_revisions(server: &Server, bundle: &str) -> Vec<String> {
    let prefix = format!("{bundle}/");
    server
        .state
        .store
        .load()
        .expect("load the store")
        .records
        .into_iter()
        .filter(|r| r.kind == "BundleRevision" && r.name.starts_with(&prefix))
        .map(|r| r.name)
        .collect()
}

async fn live_digest(h: &Harness, name: &str) -> String {
    let response = h
        .admin(Method::GET, &format!("/api/v1/bundles/{name}"), None)
        .await;
    let bundle: Value = response.json().await.expect("bundle JSON");
    bundle["status"]["digest"]
        .as_str()
        .expect("a digest")
        .to_string()
}

async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {DEADLINE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_change_creates_the_next_revision_and_a_label_edit_none() {
    let h = Harness::start().await;
    let edge = json!({"targets": [
        {"name": "edge", "clusterSelector": {"matchLabels": {"tier": "edge"}},
         "resources": [{"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "web-edge"}, "data": {"value": "edge"}}]},
        {"clusterSelector": {}},
    ]});
    h.apply_ok(&bundle("web", "v1", edge.clone())).await;
    let first = revisions(&h, "web").await;
    assert_eq!(numbers(&first), [1]);
    assert_eq!(first[0]["digest"], live_digest(&h, "web").await.as_str());
    assert_eq!(first[0]["author"], "admin");
    assert_eq!(first[0]["phase"], "Stable");
    assert_eq!(first[0]["generation"], 1);
    assert!(first[0].get("commit").is_none(), "{first:?}");
    let targets = first[0]["targetDigests"]
        .as_array()
        .expect("target digests");
    assert_eq!(targets.len(), 1, "{first:?}");
    assert_eq!(targets[0]["target"], "edge");
    assert!(
        chrono_like(first[0]["created"].as_str().expect("created")),
        "{first:?}"
    );

    // Labels, annotations and a history limit change nothing clusters receive.
    let mut labelled = bundle("web", "v1", edge.clone());
    labelled["metadata"]["labels"] = json!({"team": "shop"});
    labelled["metadata"]["annotations"] = json!({"note": "relabelled"});
    h.apply_ok(&labelled).await;
    let mut limited = edge.clone();
    limited["revisionHistoryLimit"] = json!(5);
    h.apply_ok(&bundle("web", "v1", limited)).await;
    assert_eq!(revisions(&h, "web").await, first);

    // New content: revision 2, the live one; revision 1 stays listed, without a phase.
    h.apply_ok(&bundle("web", "v2", edge)).await;
    let second = revisions(&h, "web").await;
    assert_eq!(numbers(&second), [2, 1]);
    assert_eq!(second[0]["digest"], live_digest(&h, "web").await.as_str());
    assert_ne!(second[0]["digest"], first[0]["digest"]);
    assert_eq!(second[0]["phase"], "Stable");
    assert_eq!(second[0]["generation"], 3, "the generation that made it");
    let mut older = first[0].clone();
    older.as_object_mut().expect("object").remove("phase");
    assert_eq!(second[1], older, "an old revision is immutable");

    // The same content with another customization reaches clusters differently: a revision.
    let customized = json!({"targets": [{"clusterSelector": {},
                                         "customization": {"namespace": "shop"}}]});
    h.apply_ok(&bundle("web", "v2", customized)).await;
    let third = revisions(&h, "web").await;
    assert_eq!(numbers(&third), [3, 2, 1]);
    assert_eq!(third[0]["digest"], third[1]["digest"]);
    h.shutdown().await;
}

/// An RFC 3339 UTC time as the server writes them (`2026-01-02T03:04:05Z`).
fn chrono_like(text: &str) -> bool {
    text.len() == 20 && text.ends_with('Z') && text.as_bytes()[10] == b'T'
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_spec_creates_no_revision_until_it_is_unpaused() {
    let h = Harness::start().await;
    // Created paused: nothing is rolled out, so there is no revision yet.
    h.apply_ok(&bundle("later", "v1", json!({"paused": true})))
        .await;
    assert!(revisions(&h, "later").await.is_empty());
    h.apply_ok(&bundle("later", "v1", json!({}))).await;
    assert_eq!(numbers(&revisions(&h, "later").await), [1]);

    h.apply_ok(&bundle("web", "v1", json!({}))).await;
    let served = live_digest(&h, "web").await;
    h.apply_ok(&bundle("web", "v2", json!({"paused": true})))
        .await;
    h.apply_ok(&bundle("web", "v3", json!({"paused": true})))
        .await;
    let paused = revisions(&h, "web").await;
    assert_eq!(numbers(&paused), [1], "paused specs are not revisions");
    assert_eq!(paused[0]["phase"], "Stable", "revision 1 keeps serving");
    assert_eq!(live_digest(&h, "web").await, served);

    h.apply_ok(&bundle("web", "v3", json!({}))).await;
    let unpaused = revisions(&h, "web").await;
    assert_eq!(numbers(&unpaused), [2, 1]);
    assert_eq!(unpaused[0]["digest"], live_digest(&h, "web").await.as_str());
    assert_ne!(unpaused[0]["digest"], served.as_str());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_limit_prunes_the_oldest_revisions_and_their_records() {
    let h = Harness::start().await;
    let limit = json!({"revisionHistoryLimit": 2});
    for value in ["v1", "v2", "v3", "v4", "v5"] {
        h.apply_ok(&bundle("web", value, limit.clone())).await;
    }
    // The live revision and the 2 newest others.
    assert_eq!(numbers(&revisions(&h, "web").await), [5, 4, 3]);
    assert_eq!(
        stored_revisions(&h.server, "web"),
        ["web/0000000003", "web/0000000004", "web/0000000005"]
    );

    // Numbers are never reused: content seen before is the next number, not its old one.
    h.apply_ok(&bundle("web", "v1", limit.clone())).await;
    assert_eq!(numbers(&revisions(&h, "web").await), [6, 5, 4]);
    // Without a limit the default (10) applies: nothing more is pruned for a while.
    for value in ["v7", "v8", "v9"] {
        h.apply_ok(&bundle("web", value, json!({}))).await;
    }
    assert_eq!(
        numbers(&revisions(&h, "web").await),
        [9, 8, 7, 6, 5, 4],
        "a raised limit prunes nothing until more revisions are made"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_bundle_takes_its_revisions_and_a_new_one_starts_at_1() {
    let h = Harness::start().await;
    h.apply_ok(&bundle("web", "v1", json!({}))).await;
    h.apply_ok(&bundle("web", "v2", json!({}))).await;
    assert_eq!(stored_revisions(&h.server, "web").len(), 2);
    let deleted = h.admin(Method::DELETE, "/api/v1/bundles/web", None).await;
    assert_eq!(deleted.status().as_u16(), 200);
    assert!(stored_revisions(&h.server, "web").is_empty());
    let response = h
        .admin(Method::GET, "/api/v1/bundles/web/revisions", None)
        .await;
    let error = expect_error(response, 404).await;
    assert!(error.message.contains("\"web\""), "{error:?}");

    h.apply_ok(&bundle("web", "v3", json!({}))).await;
    let again = revisions(&h, "web").await;
    assert_eq!(numbers(&again), [1], "a new bundle of the same name");
    assert_eq!(again[0]["digest"], live_digest(&h, "web").await.as_str());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_are_listed_for_admins_only() {
    let h = Harness::start().await;
    h.apply_ok(&bundle("web", "v1", json!({}))).await;
    let response = h
        .send(Method::GET, "/api/v1/bundles/web/revisions", None, None)
        .await;
    expect_error(response, 401).await;
    let response = h
        .send(
            Method::GET,
            "/api/v1/bundles/web/revisions",
            Some("not-the-admin-token"),
            None,
        )
        .await;
    expect_error(response, 401).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_survive_a_restart_and_numbering_goes_on() {
    let h = Harness::start().await;
    let limit = json!({"revisionHistoryLimit": 1});
    for value in ["v1", "v2", "v3"] {
        h.apply_ok(&bundle("web", value, limit.clone())).await;
    }
    h.apply_ok(&bundle(
        "web",
        "v4",
        json!({"revisionHistoryLimit": 1, "paused": true}),
    ))
    .await;
    let before = revisions(&h, "web").await;
    assert_eq!(numbers(&before), [3, 2]);

    let h = h.restart().await;
    assert_eq!(revisions(&h, "web").await, before);
    // The paused spec is still not a revision; unpausing it makes 4, the next number.
    h.apply_ok(&bundle("web", "v4", limit)).await;
    assert_eq!(numbers(&revisions(&h, "web").await), [4, 3]);
    h.shutdown().await;
}

/// Waits until GitRepo `name` has rendered `commit`; returns its status.
async fn rendered(h: &Harness, name: &str, commit: &str) -> Value {
    eventually(&format!("GitRepo {name} renders {commit}"), async || {
        let response = h
            .admin(Method::GET, &format!("/api/v1/gitrepos/{name}"), None)
            .await;
        let repo: Value = response.json().await.expect("GitRepo JSON");
        (repo["status"]["commit"] == commit).then(|| repo["status"].clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_render_records_the_repository_as_author_and_the_commit() {
    let h = Harness::start().await;
    let repo = GitRepoFixture::new();
    let config = |value: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  k: {value}\n")
    };
    repo.write("apps/web/config.yaml", config("one"));
    let first = repo.commit("one");
    repo.write("apps/web/config.yaml", config("two"));
    let second = repo.commit("two");
    repo.write("README.md", "not rendered\n");
    let unrendered = repo.commit("docs only");
    let gitrepo = |revision: &str| {
        json!({
            "apiVersion": API_VERSION, "kind": "GitRepo",
            "metadata": {"name": "fleet"},
            "spec": {"repo": repo.file_url(), "paths": ["apps"], "revision": revision,
                     "targets": [{"clusterSelector": {}}]},
        })
    };

    h.apply_ok(&gitrepo(&first)).await;
    let status = rendered(&h, "fleet", &first).await;
    let name = status["bundles"][0]["name"]
        .as_str()
        .expect("the rendered bundle")
        .to_string();
    let one = revisions(&h, &name).await;
    assert_eq!(numbers(&one), [1]);
    assert_eq!(one[0]["author"], "gitrepo/fleet");
    assert_eq!(one[0]["commit"], first.as_str());
    assert_eq!(one[0]["digest"], live_digest(&h, &name).await.as_str());

    h.apply_ok(&gitrepo(&second)).await;
    rendered(&h, "fleet", &second).await;
    let two = revisions(&h, &name).await;
    assert_eq!(numbers(&two), [2, 1]);
    assert_eq!(two[0]["commit"], second.as_str());
    assert_eq!(two[1]["commit"], first.as_str());

    // A commit that changes nothing rendered writes nothing, so it is no revision.
    h.apply_ok(&gitrepo(&unrendered)).await;
    rendered(&h, "fleet", &unrendered).await;
    assert_eq!(revisions(&h, &name).await, two);

    // Deleting the repository deletes its bundles with their revisions.
    let deleted = h
        .admin(Method::DELETE, "/api/v1/gitrepos/fleet", None)
        .await;
    assert_eq!(deleted.status().as_u16(), 200);
    assert!(stored_revisions(&h.server, &name).is_empty());
    h.shutdown().await;
}

/// Digests the store holds now.
fn stored_contents(server: &Server) -> BTreeSet<String> {
    server
        .state
        .store
        .content_index()
        .expect("content index")
        .into_iter()
        .map(|content| content.digest)
        .collect()
}

async fn contents_collected(h: &Harness) -> u64 {
    let response = h.send(Method::GET, "/metrics", None, None).await;
    let text = response.text().await.expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix("flotilla_store_contents_collected_total "))
        .and_then(|value| value.trim().parse().ok())
        .expect("the collected-contents counter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_revisions_content_is_never_collected_and_goes_once_pruned() {
    let h = Harness::with_settings(Settings {
        content_retention: Duration::from_millis(300),
        ..Settings::default()
    })
    .await;
    let limit = json!({"revisionHistoryLimit": 1});
    h.apply_ok(&bundle("web", "v1", limit.clone())).await;
    let v1 = live_digest(&h, "web").await;
    h.apply_ok(&bundle("web", "v2", limit.clone())).await;
    let v2 = live_digest(&h, "web").await;
    assert_eq!(numbers(&revisions(&h, "web").await), [2, 1]);

    // Another bundle's content, unreferenced after v1's was, is collected: passes ran while
    // revision 1 was retained, and they kept its content.
    h.apply_ok(&bundle("gone", "x", json!({}))).await;
    let gone = live_digest(&h, "gone").await;
    let deleted = h.admin(Method::DELETE, "/api/v1/bundles/gone", None).await;
    assert_eq!(deleted.status().as_u16(), 200);
    eventually("the deleted bundle's content is collected", async || {
        (!stored_contents(&h.server).contains(&gone)).then_some(())
    })
    .await;
    assert!(stored_contents(&h.server).contains(&v1));
    assert!(h.server.state.fleet.read().contents().contains_key(&v1));

    // Revision 3 prunes revision 1: its content leaves memory at once and the store after the
    // retention; revision 2's stays.
    h.apply_ok(&bundle("web", "v3", limit)).await;
    assert_eq!(numbers(&revisions(&h, "web").await), [3, 2]);
    assert!(!h.server.state.fleet.read().contents().contains_key(&v1));
    let collected = contents_collected(&h).await;
    eventually("the pruned revision's content is collected", async || {
        (!stored_contents(&h.server).contains(&v1)).then_some(())
    })
    .await;
    assert!(contents_collected(&h).await > collected);
    let stored = stored_contents(&h.server);
    assert!(stored.contains(&v2), "revision 2 is retained");
    assert!(stored.contains(&live_digest(&h, "web").await));
    h.shutdown().await;
}

async fn replica(schema: &TestSchema) -> (Server, tempfile::TempDir) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = flotilla_server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.path().to_path_buf(),
        store: StoreConfig::Postgres {
            url: schema.url(),
            options: PgOptions::default(),
        },
        settings: Settings::default(),
    })
    .await
    .expect("start replica");
    (server, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_written_on_one_replica_are_listed_on_the_other() {
    let schema = TestSchema::create("revisions");
    let (one, one_dir) = replica(&schema).await;
    let (two, _two_dir) = replica(&schema).await;
    let h = Harness {
        admin: one.new_admin_token.clone().expect("admin token"),
        server: one,
        http: reqwest::Client::new(),
        dir: one_dir,
        settings: Settings::default(),
    };
    let on_two = async |path: &str| -> (u16, Value) {
        let response = h
            .http
            .get(format!("http://{}{path}", two.addr))
            .bearer_auth(&h.admin)
            .send()
            .await
            .expect("request reaches replica two");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    };
    let limit = json!({"revisionHistoryLimit": 1});
    h.apply_ok(&bundle("web", "v1", limit.clone())).await;
    h.apply_ok(&bundle("web", "v2", limit.clone())).await;
    let listed = revisions(&h, "web").await;
    eventually("replica two lists revisions 2 and 1", async || {
        let (status, list) = on_two("/api/v1/bundles/web/revisions").await;
        (status == 200 && list["items"] == json!(listed)).then_some(())
    })
    .await;

    // A pruning write on one: two drops revision 1 and takes revision 3.
    h.apply_ok(&bundle("web", "v3", limit)).await;
    let listed = revisions(&h, "web").await;
    assert_eq!(numbers(&listed), [3, 2]);
    eventually("replica two follows the pruning", async || {
        let (_, list) = on_two("/api/v1/bundles/web/revisions").await;
        (list["items"] == json!(listed)).then_some(())
    })
    .await;
    {
        let fleet = two.state.fleet.read();
        let (_, entry) = fleet.bundle_by_name("web").expect("web on two");
        for revision in entry.revisions.values() {
            assert!(
                fleet.contents().contains_key(&revision.live.digest),
                "replica two holds revision {}'s content",
                revision.live.revision
            );
        }
    }

    let deleted = h.admin(Method::DELETE, "/api/v1/bundles/web", None).await;
    assert_eq!(deleted.status().as_u16(), 200);
    eventually("replica two forgets the deleted bundle", async || {
        let (status, _) = on_two("/api/v1/bundles/web/revisions").await;
        (status == 404).then_some(())
    })
    .await;
    two.shutdown().await.expect("shutdown two");
    h.shutdown().await;
}
