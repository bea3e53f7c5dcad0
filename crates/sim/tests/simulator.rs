//! The simulator against a real server over real HTTP: every simulated cluster registers and
//! converges, and a restarted simulator resumes its clusters from the state file after the
//! server restarted too.

use std::{net::SocketAddr, path::Path, time::Duration};

use flotilla_api::Kind;
use flotilla_client::{AdminClient, ListOptions};
use flotilla_server::{Server, ServerConfig, Settings};
use flotilla_sim::{SimConfig, Simulator};
use serde_json::json;

const CLUSTERS: u32 = 200;

async fn start_server(listen: SocketAddr, data_dir: &Path) -> Server {
    flotilla_server::start(ServerConfig {
        listen,
        data_dir: data_dir.to_path_buf(),
        store: Default::default(),
        settings: Settings::default(),
    })
    .await
    .expect("server starts")
}

/// Polls `check` until it returns true, failing the test after a deadline.
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sim_config(base: &str, token: &str, state_file: &Path) -> SimConfig {
    SimConfig {
        server: base.to_string(),
        token: token.to_string(),
        clusters: CLUSTERS,
        interval: Duration::from_secs(1),
        state_file: Some(state_file.to_path_buf()),
        concurrency: 32,
        connections: 2,
        progress: false,
        ..SimConfig::default()
    }
}

async fn bundle_ready(admin: &AdminClient, name: &str) -> u64 {
    let bundle = admin.get(Kind::Bundle, name).await.expect("get bundle");
    bundle
        .pointer("/status/summary/ready")
        .and_then(|ready| ready.as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_fleet_registers_converges_and_resumes_after_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("server");
    let state_file = dir.path().join("sim-state");
    let server = start_server("127.0.0.1:0".parse().unwrap(), &data_dir).await;
    let addr = server.addr;
    let base = format!("http://{addr}");
    let admin = AdminClient::new(&base, server.new_admin_token.as_deref().unwrap()).unwrap();
    admin
        .apply(&json!({
            "apiVersion": flotilla_api::API_VERSION,
            "kind": "Bundle",
            "metadata": {"name": "everywhere"},
            "spec": {
                "resources": [{
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "hello", "namespace": "default"},
                    "data": {"store": "${cluster.labels.store}"},
                }],
                "targets": [{"clusterSelector": {}}],
            },
        }))
        .await
        .unwrap();
    let created = admin
        .create(
            Kind::RegistrationToken,
            &json!({
                "apiVersion": flotilla_api::API_VERSION,
                "kind": "RegistrationToken",
                "metadata": {"name": "sim"},
                "spec": {"labels": {"fleet": "sim"}},
            }),
        )
        .await
        .unwrap();
    let token = created["status"]["token"].as_str().unwrap().to_string();
    admin
        .apply(&json!({
            "apiVersion": flotilla_api::API_VERSION,
            "kind": "ClusterGroup",
            "metadata": {"name": "sim-fleet"},
            "spec": {"selector": {"matchLabels": {"fleet": "sim"}}},
        }))
        .await
        .unwrap();

    let simulator = Simulator::start(sim_config(&base, &token, &state_file)).unwrap();
    let stats = simulator.stats();
    wait_for(
        "every simulated cluster to register and apply the bundle",
        || async {
            let now = stats.snapshot(false);
            now.registered == u64::from(CLUSTERS) && now.bundles_ready == i64::from(CLUSTERS)
        },
    )
    .await;
    wait_for(
        "the server to count the bundle Ready everywhere",
        || async { bundle_ready(&admin, "everywhere").await == u64::from(CLUSTERS) },
    )
    .await;
    let first = simulator.stop().await.unwrap();
    assert_eq!(first.stats.registration_errors, 0);
    assert_eq!(
        first.stats.content_fetches, 0,
        "new clusters take content from their sync replies"
    );
    assert_eq!(first.stats.sync_errors, 0);
    let saved = std::fs::read_to_string(&state_file).unwrap();
    assert_eq!(
        saved.lines().count(),
        CLUSTERS as usize,
        "state file holds every identity"
    );

    // Both sides restart: the server on its data dir, the simulator from its state file.
    server.shutdown().await.unwrap();
    let server = start_server(addr, &data_dir).await;
    let group = admin.get(Kind::ClusterGroup, "sim-fleet").await.unwrap();
    assert_eq!(
        group["status"]["clusterCount"],
        u64::from(CLUSTERS),
        "group members are rebuilt by the start-up load: {group}"
    );
    assert_eq!(
        admin
            .count(Kind::Cluster, &ListOptions::default())
            .await
            .unwrap(),
        u64::from(CLUSTERS)
    );
    let simulator = Simulator::start(sim_config(&base, &token, &state_file)).unwrap();
    let stats = simulator.stats();
    wait_for(
        "every resumed cluster to sync and hold the bundle again",
        || async {
            let now = stats.snapshot(false);
            now.online == i64::from(CLUSTERS) && now.bundles_ready == i64::from(CLUSTERS)
        },
    )
    .await;
    wait_for(
        "the server to count the resumed clusters' reports",
        || async { bundle_ready(&admin, "everywhere").await == u64::from(CLUSTERS) },
    )
    .await;
    let second = simulator.stop().await.unwrap();
    assert_eq!(
        second.stats.registered, 0,
        "resumed clusters did not register again"
    );
    assert_eq!(second.stats.sync_errors, 0);
    assert_eq!(
        admin
            .count(Kind::Cluster, &ListOptions::default())
            .await
            .unwrap(),
        u64::from(CLUSTERS),
        "no duplicate clusters after the restarts"
    );
    server.shutdown().await.unwrap();
}
