//! The whole agent (sync loop + Kubernetes driver) with a real flotilla server and the stand-in
//! API server: it applies what the server asks, and keeps enforcing its cached state while the
//! server is down, across an agent restart, then reports again once the server is back.

mod support;

use flotilla_api::Kind;
use serde_json::json;
use support::{
    fleet::{self, admin, registration_token, start_agent, start_server, wait_for},
    stand_in_apiserver::StandInApiServer,
};

fn settings_value(api: &StandInApiServer) -> Option<String> {
    api.get("v1", "ConfigMap", Some("default"), "settings")
        .and_then(|object| object["data"]["mode"].as_str().map(str::to_string))
}

async fn bundle_ready(admin: &flotilla_client::AdminClient) -> u64 {
    fleet::bundle_ready(admin, "settings").await
}

fn bundle(mode: &str) -> serde_json::Value {
    fleet::bundle(
        "settings",
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                "data": {"mode": mode, "cluster": "${cluster.name}"}}]),
    )
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
    let admin = admin(&server);
    admin.apply(&bundle("fast")).await.unwrap();
    let token = registration_token(&admin).await;

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
