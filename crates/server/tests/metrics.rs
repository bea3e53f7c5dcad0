//! `/metrics` tells a benchmark what the server did, and never names a cluster: a real server on
//! 127.0.0.1 with one bundle rolled out to two agents that report Ready, then scraped.

use std::time::Duration;

use flotilla_api::{
    BundleState,
    agent::{BundleReport, RegisterResponse, SyncRequest, SyncResponse},
};
use flotilla_server::{Server, ServerConfig, Settings};
use reqwest::{Method, Response, header::CONTENT_TYPE};
use serde_json::{Value, json};

const API_VERSION: &str = flotilla_api::API_VERSION;

/// Distinctive names, so finding one in the metrics text can only mean a per-cluster label.
const CLUSTERS: [&str; 2] = ["amber-cluster-7q", "cobalt-cluster-3x"];
const BUNDLE: &str = "web";

struct Harness {
    server: Server,
    http: reqwest::Client,
    admin: String,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Harness {
        // reqwest is built without a default TLS provider (the binary installs ring, as here).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("temp dir");
        let server = flotilla_server::start(ServerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.path().to_path_buf(),
            store: Default::default(),
            settings: Settings {
                // Background soft-state writes would race the store counters between scrapes.
                flush_interval: Duration::from_secs(3600),
                ..Settings::default()
            },
        })
        .await
        .expect("start server");
        let admin = server
            .new_admin_token
            .clone()
            .expect("first start creates the admin token");
        Harness {
            server,
            http: reqwest::Client::new(),
            admin,
            _dir: dir,
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let url = format!("http://{}{path}", self.server.addr);
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        request.send().await.expect("request reaches the server")
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let response = self.send(method, path, Some(&self.admin), body).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("JSON body");
        assert!((200..300).contains(&status), "{path}: {status} {body}");
        body
    }

    async fn sync(&self, credential: &str, request: &SyncRequest) -> Response {
        let body = serde_json::to_value(request).expect("JSON");
        self.send(Method::POST, "/agent/v1/sync", Some(credential), Some(body))
            .await
    }

    async fn scrape(&self) -> String {
        let response = self.send(Method::GET, "/metrics", None, None).await;
        assert_eq!(response.status().as_u16(), 200);
        response.text().await.expect("metrics text")
    }

    /// One bundle targeting `env=bench`, two agents registered with that label, each synced and
    /// reporting the bundle Ready; the agents then sync once more with nothing to say.
    async fn roll_out() -> Harness {
        let h = Harness::start().await;
        h.admin(
            Method::POST,
            "/api/v1/apply",
            Some(json!({
                "apiVersion": API_VERSION, "kind": "Bundle",
                "metadata": {"name": BUNDLE},
                "spec": {
                    "resources": [{
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": BUNDLE}, "data": {"k": "v"},
                    }],
                    "targets": [{"clusterSelector": {"matchLabels": {"env": "bench"}}}],
                },
            })),
        )
        .await;
        let token = h
            .admin(
                Method::POST,
                "/api/v1/registrationtokens",
                Some(json!({
                    "apiVersion": API_VERSION, "kind": "RegistrationToken",
                    "metadata": {"name": "bench"}, "spec": {},
                })),
            )
            .await["status"]["token"]
            .as_str()
            .expect("token secret")
            .to_string();
        for name in CLUSTERS {
            let body = json!({
                "token": token, "name": name, "clientId": format!("client-{name}"),
                "labels": {"env": "bench"},
            });
            let response = h
                .send(Method::POST, "/agent/v1/register", None, Some(body))
                .await;
            assert_eq!(response.status().as_u16(), 201, "{name} registers");
            let credential = response
                .json::<RegisterResponse>()
                .await
                .expect("registration JSON")
                .credential;

            let first = SyncRequest {
                report_digest: "report-0".into(),
                full: true,
                facts: Some(Default::default()),
                ..SyncRequest::default()
            };
            let response = h.sync(&credential, &first).await;
            assert_eq!(response.status().as_u16(), 200, "{name} first sync");
            let desired: SyncResponse = response.json().await.expect("sync JSON");
            let bundles = desired.bundles.expect("desired set");
            assert_eq!(bundles.len(), 1);

            let ready = SyncRequest {
                etag: Some(desired.etag.clone()),
                report_digest: "report-1".into(),
                full: true,
                facts: Some(Default::default()),
                bundles: vec![BundleReport {
                    bundle: BUNDLE.into(),
                    deployment: bundles[0].deployment.clone(),
                    state: BundleState::Ready,
                    message: None,
                    problems: Vec::new(),
                    more_problems: 0,
                }],
                ..SyncRequest::default()
            };
            let response = h.sync(&credential, &ready).await;
            assert_eq!(response.status().as_u16(), 204, "{name} reports Ready");

            let unchanged = SyncRequest {
                etag: Some(desired.etag),
                report_digest: "report-1".into(),
                base_digest: Some("report-1".into()),
                ..SyncRequest::default()
            };
            let response = h.sync(&credential, &unchanged).await;
            assert_eq!(response.status().as_u16(), 204, "{name} unchanged sync");
        }
        h
    }

    async fn shutdown(self) {
        self.server.shutdown().await.expect("clean shutdown");
    }
}

/// The value of the sample line `series value`, e.g. `flotilla_model_clusters`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split(' ').next()?.parse().ok()
    })
}

fn must(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// Sample lines of a metric family whose labels include every `label="value"` pair given.
fn lines_with<'a>(text: &'a str, name: &str, labels: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('{'))
                .is_some_and(|rest| labels.iter().all(|label| rest.contains(label)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_deployment_gauges_sum_the_bundle_summaries() {
    let h = Harness::roll_out().await;
    let bundle = h
        .admin(Method::GET, &format!("/api/v1/bundles/{BUNDLE}"), None)
        .await;
    let summary = &bundle["status"]["summary"];
    let text = h.scrape().await;
    for state in [
        "desired", "ready", "notReady", "modified", "error", "pending",
    ] {
        let series = format!("flotilla_bundle_deployments{{state=\"{state}\"}}");
        assert_eq!(
            must(&text, &series),
            summary[state].as_f64().expect("summary count"),
            "{series} equals the bundle's summary ({summary})"
        );
    }
    assert_eq!(
        must(&text, "flotilla_bundle_deployments{state=\"desired\"}"),
        2.0
    );
    assert_eq!(
        must(&text, "flotilla_bundle_deployments{state=\"ready\"}"),
        2.0
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_gauges_count_the_in_memory_fleet() {
    let h = Harness::roll_out().await;
    let text = h.scrape().await;
    assert_eq!(must(&text, "flotilla_model_clusters"), 2.0);
    assert_eq!(must(&text, "flotilla_model_bundles"), 1.0);
    assert_eq!(must(&text, "flotilla_model_deployments"), 2.0);
    // "env" and "bench".
    assert_eq!(must(&text, "flotilla_model_interned_strings"), 2.0);
    // The spec and the live revision share one digest.
    assert_eq!(must(&text, "flotilla_model_contents"), 1.0);
    assert!(must(&text, "flotilla_model_content_bytes") > 0.0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_are_labelled_by_route_template_method_and_status_class() {
    let h = Harness::roll_out().await;
    h.admin(Method::GET, &format!("/api/v1/bundles/{BUNDLE}"), None)
        .await;
    let response = h.send(Method::GET, "/no/such/endpoint", None, None).await;
    assert_eq!(response.status().as_u16(), 404);
    let text = h.scrape().await;

    let name = "flotilla_http_requests_total";
    let sync_ok = lines_with(
        &text,
        name,
        &[
            r#"route="/agent/v1/sync""#,
            r#"method="POST""#,
            r#"status="2xx""#,
        ],
    );
    assert_eq!(sync_ok.len(), 1, "{sync_ok:?}");
    // Two agents, three syncs each: 200, 204 and 204 all count as 2xx.
    assert!(sync_ok[0].ends_with(" 6"), "{}", sync_ok[0]);
    let by_template = lines_with(
        &text,
        name,
        &[r#"route="/api/v1/{plural}/{name}""#, r#"method="GET""#],
    );
    assert_eq!(by_template.len(), 1, "{text}");
    let unmatched = lines_with(&text, name, &[r#"route="unmatched""#, r#"status="4xx""#]);
    assert_eq!(unmatched.len(), 1, "{text}");
    let timed = lines_with(
        &text,
        "flotilla_http_request_duration_seconds_count",
        &[r#"route="/agent/v1/sync""#, r#"method="POST""#],
    );
    assert_eq!(timed.len(), 1, "{text}");
    for raw in [
        format!("/api/v1/bundles/{BUNDLE}"),
        "/no/such/endpoint".to_string(),
    ] {
        assert!(
            !text.contains(&raw),
            "a raw path is never a label value: {raw}"
        );
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_group_commits_are_counted_with_their_ops_and_durations() {
    let h = Harness::roll_out().await;
    // The store reports a batch after its commits are answered; let the last report land.
    let mut text = h.scrape().await;
    for _ in 0..100 {
        let batches = sample(&text, "flotilla_store_batches_total");
        if batches.is_some()
            && batches == sample(&text, "flotilla_store_batch_ops_count")
            && batches == sample(&text, "flotilla_store_batch_duration_seconds_count")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        text = h.scrape().await;
    }
    let batches = must(&text, "flotilla_store_batches_total");
    // At least the admin token, the bundle, the token and two registrations, though concurrent
    // commits may share a batch.
    assert!(batches > 0.0, "{text}");
    assert_eq!(must(&text, "flotilla_store_batch_ops_count"), batches);
    assert_eq!(
        must(&text, "flotilla_store_batch_duration_seconds_count"),
        batches
    );
    assert!(must(&text, "flotilla_store_batch_ops_sum") >= 5.0, "{text}");
    assert!(must(&text, "flotilla_store_batch_duration_seconds_sum") > 0.0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_metric_names_a_cluster() {
    let h = Harness::roll_out().await;
    let text = h.scrape().await;
    assert!(
        text.contains("flotilla_model_clusters 2"),
        "the clusters are there: {text}"
    );
    for line in text.lines() {
        for cluster in CLUSTERS {
            assert!(
                !line.contains(cluster),
                "a metric names cluster {cluster}: {line}"
            );
        }
    }
    h.shutdown().await;
}
