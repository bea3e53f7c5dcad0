//! Content no bundle references is deleted from the store after the retention period, and
//! content a bundle still references (its spec's, the live revision a paused bundle keeps
//! deploying, or a retained revision's) never is: a real server on the embedded store with a
//! short retention.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use flotilla_server::{Server, ServerConfig, Settings};
use reqwest::{Method, header::CONTENT_TYPE};
use serde_json::{Value, json};

const API_VERSION: &str = flotilla_api::API_VERSION;
const DEADLINE: Duration = Duration::from_secs(20);

struct Harness {
    server: Server,
    http: reqwest::Client,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(content_retention: Duration) -> Harness {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("temp dir");
        let server = flotilla_server::start(ServerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.path().to_path_buf(),
            store: Default::default(),
            settings: Settings {
                content_retention,
                ..Settings::default()
            },
        })
        .await
        .expect("start server");
        let admin = server.new_admin_token.clone().expect("admin token");
        Harness {
            server,
            http: reqwest::Client::new(),
            admin,
            _dir: dir,
        }
    }

    async fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("http://{}{path}", self.server.addr))
            .bearer_auth(&self.admin);
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("request reaches the server");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn apply(&self, document: &Value) {
        let (status, body) = self
            .admin(Method::POST, "/api/v1/apply", Some(document))
            .await;
        assert!(status == 200 || status == 201, "apply: {status} {body}");
    }

    /// Digests the store holds now.
    fn stored(&self) -> BTreeSet<String> {
        self.server
            .state
            .store
            .content_index()
            .expect("content index")
            .into_iter()
            .map(|content| content.digest)
            .collect()
    }

    /// Digests the bundles reference now.
    fn referenced(&self) -> BTreeSet<String> {
        self.server.state.fleet.read().referenced_digests()
    }

    async fn collected(&self) -> u64 {
        let response = self
            .http
            .get(format!("http://{}/metrics", self.server.addr))
            .send()
            .await
            .expect("scrape");
        let text = response.text().await.expect("metrics text");
        text.lines()
            .find_map(|line| line.strip_prefix("flotilla_store_contents_collected_total "))
            .and_then(|value| value.trim().parse().ok())
            .expect("the collected-contents counter")
    }
}

fn bundle(name: &str, value: &str, paused: bool) -> Value {
    json!({
        "apiVersion": API_VERSION, "kind": "Bundle",
        "metadata": {"name": name},
        "spec": {
            "paused": paused,
            "revisionHistoryLimit": 1,
            "resources": [{
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "default"},
                "data": {"value": value},
            }],
            "targets": [
                {"clusterSelector": {"matchLabels": {"tier": "edge"}}, "resources": [{
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("{name}-edge"), "namespace": "default"},
                    "data": {"value": value},
                }]},
                {"clusterSelector": {}},
            ],
        },
    })
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {DEADLINE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreferenced_content_is_deleted_after_retention_and_referenced_content_never() {
    let harness = Harness::start(Duration::from_millis(300)).await;
    harness.apply(&bundle("web", "v1", false)).await;
    let first = harness.referenced();
    assert_eq!(first.len(), 2, "the spec's content and the edge target's");
    assert_eq!(harness.stored(), first);

    // A new version: v1 is kept as the previous revision (`revisionHistoryLimit: 1`), so its
    // content stays referenced.
    harness.apply(&bundle("web", "v2", false)).await;
    let second = harness.referenced();
    assert!(first.is_subset(&second), "revision 1 is retained");
    assert_eq!(second.len(), 4);
    // v3 prunes revision 1: v1's content is no longer referenced, and goes.
    harness.apply(&bundle("web", "v3", false)).await;
    let third = harness.referenced();
    assert!(first.is_disjoint(&third));
    eventually("v1's content is deleted", async || {
        harness.stored() == third
    })
    .await;
    assert_eq!(harness.collected().await, 2);

    // Paused at v4: v3 stays live (agents still deploy it) and v2 retained, so their content
    // stays as well as v4's; a deleted bundle's content is collected meanwhile, which shows
    // passes ran.
    harness.apply(&bundle("web", "v4", true)).await;
    let paused = harness.referenced();
    assert!(third.is_subset(&paused), "a paused bundle keeps v3 live");
    assert_eq!(
        paused.len(),
        6,
        "v3's two contents (live), v2's two (retained) and v4's two (spec)"
    );
    harness.apply(&bundle("gone", "x", false)).await;
    let (status, _) = harness
        .admin(Method::DELETE, "/api/v1/bundles/gone", None)
        .await;
    assert_eq!(status, 200);
    eventually("the deleted bundle's content is collected", async || {
        harness.collected().await == 4
    })
    .await;
    assert_eq!(harness.stored(), paused);
    for digest in &paused {
        assert!(
            harness
                .server
                .state
                .store
                .content(digest)
                .expect("read")
                .is_some(),
            "{digest} is still readable"
        );
    }
    harness.server.shutdown().await.expect("shutdown");
}
