//! A real flotilla server in-process, an admin client, and the whole agent (sync loop + Kubernetes
//! driver) against the stand-in API server: for tests of the agent's loop end to end.

use std::{net::SocketAddr, path::Path, time::Duration};

use flotilla_agent::{AgentConfig, kubernetes::KubernetesCluster};
use flotilla_api::Kind;
use flotilla_client::AdminClient;
use flotilla_server::{Server, ServerConfig, Settings};
use serde_json::{Value, json};

use super::stand_in_apiserver::StandInApiServer;

/// How long a test waits for a condition before failing: generous, the build machines are shared.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A server on `listen` with its data in `data_dir`, content never inlined into sync replies
/// (so the agent's content fetch path is covered).
pub async fn start_server(listen: SocketAddr, data_dir: &Path) -> Server {
    flotilla_server::start(ServerConfig {
        listen,
        data_dir: data_dir.to_path_buf(),
        store: Default::default(),
        settings: Settings {
            inline_content_bytes: 0,
            ..Settings::default()
        },
    })
    .await
    .expect("server starts")
}

/// The admin client of a server started by [`start_server`].
pub fn admin(server: &Server) -> AdminClient {
    let token = server
        .new_admin_token
        .as_deref()
        .expect("a fresh server prints its admin token");
    AdminClient::new(&format!("http://{}", server.addr), token).expect("admin client")
}

/// A new registration token's secret.
pub async fn registration_token(admin: &AdminClient) -> String {
    let created = admin
        .create(
            Kind::RegistrationToken,
            &json!({"apiVersion": flotilla_api::API_VERSION, "kind": "RegistrationToken",
                    "metadata": {"name": "stores"}, "spec": {}}),
        )
        .await
        .expect("create a registration token");
    created["status"]["token"]
        .as_str()
        .expect("the token is shown once")
        .to_string()
}

/// Polls `check` until it holds, failing after [`DEADLINE`].
pub async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An agent running in a task until [`stop`](RunningAgent::stop).
pub struct RunningAgent {
    stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The config of the test agent `store-0001`: syncs and drift checks every 200 ms.
pub fn agent_config(base: &str, token: Option<&str>) -> AgentConfig {
    AgentConfig {
        server: base.to_string(),
        token: token.map(str::to_string),
        name: "store-0001".into(),
        labels: Default::default(),
        interval: Duration::from_millis(200),
        drift_interval: Duration::from_millis(200),
    }
}

/// Starts the agent with the Kubernetes driver over `api`.
pub fn start_agent(
    api: &StandInApiServer,
    base: &str,
    token: &str,
    state_dir: &Path,
) -> RunningAgent {
    let driver = KubernetesCluster::new(api.client(), 1, Some(state_dir));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = agent_config(base, Some(token));
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
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task
            .await
            .expect("agent task")
            .expect("agent stops cleanly");
    }
}

/// A Bundle document targeting every cluster.
pub fn bundle(name: &str, resources: Value) -> Value {
    json!({
        "apiVersion": flotilla_api::API_VERSION,
        "kind": "Bundle",
        "metadata": {"name": name},
        "spec": {"resources": resources, "targets": [{"clusterSelector": {}}]},
    })
}

/// How many clusters report `bundle` Ready (0 when it does not exist).
pub async fn bundle_ready(admin: &AdminClient, bundle: &str) -> u64 {
    match admin.get(Kind::Bundle, bundle).await {
        Ok(bundle) => bundle["status"]["summary"]["ready"].as_u64().unwrap_or(0),
        Err(_) => 0,
    }
}

/// What the server shows for `bundle` on cluster `store-0001`: `(state, message)`.
pub async fn bundle_on_cluster(admin: &AdminClient, bundle: &str) -> Option<(String, String)> {
    let cluster = admin.get(Kind::Cluster, "store-0001").await.ok()?;
    cluster["status"]["bundles"]
        .as_array()?
        .iter()
        .find(|b| b["bundle"] == bundle)
        .map(|b| {
            (
                b["state"].as_str().unwrap_or_default().to_string(),
                b["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}
