//! The whole agent (sync loop + Kubernetes driver) with a real flotilla server and the stand-in
//! API server: it applies what the server asks, and keeps enforcing its cached state while the
//! server is down, across an agent restart, then reports again once the server is back.

mod support;

use std::{net::SocketAddr, path::Path, time::Duration};

use flotilla_agent::{AgentConfig, kubernetes::KubernetesCluster};
use flotilla_api::Kind;
use flotilla_client::AdminClient;
use flotilla_server::{Server, ServerConfig, Settings};
use serde_json::json;
use support::stand_in_apiserver::StandInApiServer;

async fn start_server(listen: SocketAddr, data_dir: &Path) -> Server {
    flotilla_server::start(ServerConfig {
        listen,
        data_dir: data_dir.to_path_buf(),
        store: Default::default(),
        // No content inside sync replies: this agent fetches every content by digest, so the
        // fetch path stays covered (the CLI end-to-end tests run with content inlined).
        settings: Settings {
            inline_content_bytes: 0,
            ..Settings::default()
        },
    })
    .await
    .expect("server starts")
}

/// Polls `check` until it holds, failing after a deadline.
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct RunningAgent {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn start_agent(api: &StandInApiServer, base: &str, token: &str, state_dir: &Path) -> RunningAgent {
    let config = AgentConfig {
        server: base.to_string(),
        token: Some(token.to_string()),
        name: "store-0001".into(),
        labels: Default::default(),
        interval: Duration::from_millis(200),
        drift_interval: Duration::from_millis(200),
    };
    let driver = KubernetesCluster::new(api.client(), 1, Some(state_dir));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state_dir = state_dir.to_path_buf();
    let task = tokio::spawn(async move {
        flotilla_agent::run(config, &state_dir, driver, async {
            let _ = stopped.await;
        })
        .await
    });
    RunningAgent { stop, task }
}

impl RunningAgent {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

fn settings_value(api: &StandInApiServer) -> Option<String> {
    api.get("v1", "ConfigMap", Some("default"), "settings")
        .and_then(|object| object["data"]["mode"].as_str().map(str::to_string))
}

async fn bundle_ready(admin: &AdminClient) -> u64 {
    match admin.get(Kind::Bundle, "settings").await {
        Ok(bundle) => bundle["status"]["summary"]["ready"].as_u64().unwrap_or(0),
        Err(_) => 0,
    }
}

fn bundle(mode: &str) -> serde_json::Value {
    json!({
        "apiVersion": flotilla_api::API_VERSION,
        "kind": "Bundle",
        "metadata": {"name": "settings"},
        "spec": {
            "resources": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                           "data": {"mode": mode, "cluster": "${cluster.name}"}}],
            "targets": [{"clusterSelector": {}}],
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_keeps_enforcing_its_cached_state_while_the_server_is_down_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("server");
    let state_dir = dir.path().join("agent");
    let api = StandInApiServer::start().await;
    let server = start_server("127.0.0.1:0".parse().unwrap(), &data_dir).await;
    let addr = server.addr;
    let base = format!("http://{addr}");
    let admin = AdminClient::new(&base, server.new_admin_token.as_deref().unwrap()).unwrap();
    admin.apply(&bundle("fast")).await.unwrap();
    let created = admin
        .create(
            Kind::RegistrationToken,
            &json!({"apiVersion": flotilla_api::API_VERSION, "kind": "RegistrationToken",
                    "metadata": {"name": "stores"}, "spec": {}}),
        )
        .await
        .unwrap();
    let token = created["status"]["token"].as_str().unwrap().to_string();

    let agent = start_agent(&api, &base, &token, &state_dir);
    wait_for("the bundle applied and reported Ready", || async {
        settings_value(&api).as_deref() == Some("fast") && bundle_ready(&admin).await == 1
    })
    .await;
    let live = api
        .get("v1", "ConfigMap", Some("default"), "settings")
        .unwrap();
    assert_eq!(
        live["data"]["cluster"], "store-0001",
        "placeholders resolved for this cluster"
    );
    agent.stop().await;

    // The server goes away; someone edits the object; the agent restarts with no server.
    server.shutdown().await.unwrap();
    api.edit("v1", "ConfigMap", Some("default"), "settings", |object| {
        object["data"]["mode"] = json!("slow");
    });
    let agent = start_agent(&api, &base, &token, &state_dir);
    wait_for(
        "the drift corrected from the cached state, server down",
        || async { settings_value(&api).as_deref() == Some("fast") },
    )
    .await;

    // The server comes back: the agent reconnects, takes the next revision and reports it.
    let server = start_server(addr, &data_dir).await;
    admin.apply(&bundle("faster")).await.unwrap();
    wait_for(
        "the new revision applied and reported Ready after reconnecting",
        || async {
            settings_value(&api).as_deref() == Some("faster") && bundle_ready(&admin).await == 1
        },
    )
    .await;
    let cluster = admin.get(Kind::Cluster, "store-0001").await.unwrap();
    assert_eq!(cluster["status"]["state"], "Online");
    agent.stop().await;
    server.shutdown().await.unwrap();
}
