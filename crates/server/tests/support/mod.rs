//! Shared harness for the server's HTTP tests: a real server on 127.0.0.1 over a temp data dir,
//! driven with reqwest as an admin and as agents.
#![allow(dead_code)] // each test file uses part of it

pub mod agents;

use std::time::Duration;

use flotilla_api::{
    ErrorBody,
    agent::{RegisterResponse, SyncRequest, SyncResponse},
};
use flotilla_server::{Server, ServerConfig, Settings};
use reqwest::{Method, Response, header::CONTENT_TYPE};
use serde_json::{Value, json};

pub const API_VERSION: &str = flotilla_api::API_VERSION;

pub struct Harness {
    pub server: Server,
    pub http: reqwest::Client,
    pub admin: String,
    pub dir: tempfile::TempDir,
    pub settings: Settings,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::with_settings(Settings::default()).await
    }

    pub async fn with_settings(settings: Settings) -> Harness {
        // reqwest is built without a default TLS provider (the binary installs ring, as here).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = Settings {
            // No soft-state writes during a test: the store revision moves only for admin writes
            // and registrations, so "nothing was stored" is exact.
            flush_interval: Duration::from_secs(3600),
            ..settings
        };
        let server = start_server(&dir, &settings).await;
        let admin = server
            .new_admin_token
            .clone()
            .expect("first start creates the admin token");
        Harness {
            server,
            http: reqwest::Client::new(),
            admin,
            dir,
            settings,
        }
    }

    /// The store's highest committed revision.
    pub fn revision(&self) -> u64 {
        self.server.state.store.load().expect("load store").revision
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, String)>,
    ) -> Response {
        let url = format!("http://{}{path}", self.server.addr);
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some((content_type, body)) = body {
            request = request.header(CONTENT_TYPE, content_type).body(body);
        }
        request.send().await.expect("request reaches the server")
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> Response {
        let body = body.map(|b| ("application/json", b.to_string()));
        self.send(method, path, Some(&self.admin), body).await
    }

    pub async fn apply(&self, document: &Value) -> Response {
        self.admin(Method::POST, "/api/v1/apply", Some(document))
            .await
    }

    pub async fn apply_ok(&self, document: &Value) -> Value {
        let response = self.apply(document).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("JSON body");
        assert!(
            status == 200 || status == 201,
            "apply failed: {status} {body}"
        );
        body
    }

    pub async fn names(&self, plural: &str) -> Vec<String> {
        let response = self
            .admin(Method::GET, &format!("/api/v1/{plural}"), None)
            .await;
        assert_eq!(response.status().as_u16(), 200);
        let list: Value = response.json().await.expect("list JSON");
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| item["metadata"]["name"].as_str().expect("name").to_string())
            .collect()
    }

    /// Asserts that `plural/name` does not exist.
    pub async fn assert_absent(&self, plural: &str, name: &str) {
        let response = self
            .admin(Method::GET, &format!("/api/v1/{plural}/{name}"), None)
            .await;
        let error = expect_error(response, 404).await;
        assert!(error.message.contains(name), "{error:?}");
    }

    /// Creates a registration token; returns its secret (`name.secret`).
    pub async fn token(&self, name: &str, spec: Value) -> String {
        let document = json!({
            "apiVersion": API_VERSION, "kind": "RegistrationToken",
            "metadata": {"name": name}, "spec": spec,
        });
        let response = self
            .admin(Method::POST, "/api/v1/registrationtokens", Some(&document))
            .await;
        assert_eq!(response.status().as_u16(), 201);
        let body: Value = response.json().await.expect("token JSON");
        body["status"]["token"]
            .as_str()
            .expect("secret")
            .to_string()
    }

    pub async fn register(
        &self,
        token: &str,
        name: &str,
        client_id: &str,
        labels: Value,
    ) -> Response {
        let body = json!({"token": token, "name": name, "clientId": client_id, "labels": labels});
        let body = Some(("application/json", body.to_string()));
        self.send(Method::POST, "/agent/v1/register", None, body)
            .await
    }

    pub async fn register_ok(
        &self,
        token: &str,
        name: &str,
        client_id: &str,
        labels: Value,
    ) -> String {
        let response = self.register(token, name, client_id, labels).await;
        let status = response.status().as_u16();
        assert!(
            status == 200 || status == 201,
            "registration failed: {status}"
        );
        let body: RegisterResponse = response.json().await.expect("registration JSON");
        body.credential
    }

    pub async fn sync(&self, credential: &str, etag: Option<&str>) -> Response {
        let request = SyncRequest {
            etag: etag.map(str::to_string),
            report_digest: "report-0".into(),
            full: etag.is_none(),
            facts: etag.is_none().then(Default::default),
            ..SyncRequest::default()
        };
        let body = Some((
            "application/json",
            serde_json::to_string(&request).expect("JSON"),
        ));
        self.send(Method::POST, "/agent/v1/sync", Some(credential), body)
            .await
    }

    pub async fn content(&self, credential: &str, digest: &str) -> Response {
        let path = format!("/agent/v1/content/{digest}");
        self.send(Method::GET, &path, Some(credential), None).await
    }

    /// A first (full) sync; returns the desired set.
    pub async fn sync_ok(&self, credential: &str) -> SyncResponse {
        let response = self.sync(credential, None).await;
        assert_eq!(response.status().as_u16(), 200);
        response.json().await.expect("sync JSON")
    }

    /// The server answers health checks and accepts a valid write.
    pub async fn assert_serving(&self) {
        let health = self.send(Method::GET, "/healthz", None, None).await;
        assert_eq!(health.status().as_u16(), 200);
        let before = self.revision();
        let canary = json!({
            "apiVersion": API_VERSION, "kind": "ClusterGroup",
            "metadata": {"name": format!("canary-{before}")},
            "spec": {"selector": {"matchLabels": {"env": "prod"}}},
        });
        let response = self.apply(&canary).await;
        assert_eq!(
            response.status().as_u16(),
            201,
            "valid apply after bad input"
        );
        assert!(self.revision() > before, "the valid write was committed");
    }

    /// Stops the server cleanly and starts a new one on the same data dir (the admin token
    /// stays the same).
    pub async fn restart(self) -> Harness {
        let Harness {
            server,
            http,
            admin,
            dir,
            settings,
        } = self;
        server.shutdown().await.expect("clean shutdown");
        let server = start_server(&dir, &settings).await;
        Harness {
            server,
            http,
            admin,
            dir,
            settings,
        }
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await.expect("clean shutdown");
    }
}

/// A server on 127.0.0.1 over `dir` with `settings`.
pub async fn start_server(dir: &tempfile::TempDir, settings: &Settings) -> Server {
    flotilla_server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.path().to_path_buf(),
        store: Default::default(),
        settings: settings.clone(),
    })
    .await
    .expect("start server")
}

/// Asserts the status and returns the JSON error body.
pub async fn expect_error(response: Response, status: u16) -> ErrorBody {
    let actual = response.status().as_u16();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = response.text().await.expect("body");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "error is JSON: {content_type}"
    );
    let body: ErrorBody = serde_json::from_str(&text).expect("ErrorBody");
    assert_eq!(body.code, status, "{body:?}");
    body
}

pub fn config_map(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}})
}

pub fn bundle(name: &str, selector: Value) -> Value {
    json!({
        "apiVersion": API_VERSION, "kind": "Bundle",
        "metadata": {"name": name},
        "spec": {
            "resources": [config_map(name)],
            "targets": [{"clusterSelector": selector}],
        },
    })
}
