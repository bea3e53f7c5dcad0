//! `flotilla sim` customizes bundles as the real agent does: against a real server over HTTP, a
//! placeholder naming a label some clusters lack makes exactly those clusters report the bundle
//! as Error, with the agent's message, while the labelled ones report it Ready.

use std::time::Duration;

use flotilla_api::Kind;
use flotilla_client::AdminClient;
use flotilla_server::{ServerConfig, Settings};
use flotilla_sim::{SimConfig, Simulator};
use serde_json::{Value, json};

/// Clusters registered with the `tier` label, and as many without it.
const LABELLED: u32 = 12;
const UNLABELLED: u32 = 8;

/// Reads bundle `tiered` until `check` accepts it, failing the test after a deadline.
async fn wait_for_bundle(admin: &AdminClient, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let bundle = admin.get(Kind::Bundle, "tiered").await.expect("get bundle");
        if check(&bundle) {
            return bundle;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {bundle}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn registration_token(admin: &AdminClient, name: &str, labels: Value) -> String {
    let created = admin
        .create(
            Kind::RegistrationToken,
            &json!({
                "apiVersion": flotilla_api::API_VERSION,
                "kind": "RegistrationToken",
                "metadata": {"name": name},
                "spec": {"labels": labels},
            }),
        )
        .await
        .expect("create registration token");
    created["status"]["token"]
        .as_str()
        .expect("token in the reply")
        .to_string()
}

fn sim_config(base: &str, token: &str, prefix: &str, clusters: u32) -> SimConfig {
    SimConfig {
        server: base.to_string(),
        token: token.to_string(),
        clusters,
        interval: Duration::from_secs(1),
        prefix: prefix.to_string(),
        concurrency: 16,
        connections: 1,
        progress: false,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flotilla_sim_reports_a_placeholder_naming_a_missing_label_as_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = flotilla_server::start(ServerConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.path().to_path_buf(),
        store: Default::default(),
        settings: Settings::default(),
    })
    .await
    .expect("server starts");
    let base = format!("http://{}", server.addr);
    let admin = AdminClient::new(
        &base,
        server.new_admin_token.as_deref().expect("admin token"),
    )
    .expect("admin client");
    admin
        .apply(&json!({
            "apiVersion": flotilla_api::API_VERSION,
            "kind": "Bundle",
            "metadata": {"name": "tiered"},
            "spec": {
                "resources": [{
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "tier"},
                    "data": {"tier": "${cluster.labels.tier}"},
                }],
                "targets": [{
                    "clusterSelector": {},
                    "customization": {"namespace": "apps"},
                }],
            },
        }))
        .await
        .expect("apply bundle");
    let gold = registration_token(&admin, "gold", json!({"tier": "gold"})).await;
    let plain = registration_token(&admin, "plain", json!({})).await;

    let labelled = Simulator::start(sim_config(&base, &gold, "gold-", LABELLED)).expect("sim");
    let unlabelled =
        Simulator::start(sim_config(&base, &plain, "plain-", UNLABELLED)).expect("sim");
    let summary = |bundle: &Value, field: &str| {
        bundle
            .pointer(&format!("/status/summary/{field}"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let bundle = wait_for_bundle(
        &admin,
        "the server to count the labelled clusters Ready and the others Error",
        |bundle| {
            summary(bundle, "ready") == u64::from(LABELLED)
                && summary(bundle, "error") == u64::from(UNLABELLED)
        },
    )
    .await;
    assert_eq!(
        summary(&bundle, "desired"),
        u64::from(LABELLED + UNLABELLED)
    );
    let problems = bundle
        .pointer("/status/problemClusters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    assert!(!problems.is_empty(), "problem clusters listed: {bundle}");
    for problem in &problems {
        let name = problem["name"].as_str().unwrap_or_default();
        assert!(
            name.starts_with("plain-"),
            "only unlabelled clusters fail: {problem}"
        );
        assert_eq!(problem["state"], "Error", "{problem}");
        let message = problem["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("${cluster.labels.tier}") && message.contains("no label \"tier\""),
            "the agent's customization message is reported: {problem}"
        );
    }

    let labelled = labelled.stop().await.expect("stop sim");
    let unlabelled = unlabelled.stop().await.expect("stop sim");
    assert_eq!(labelled.stats.bundles_ready, i64::from(LABELLED));
    assert_eq!(unlabelled.stats.bundles_held, i64::from(UNLABELLED));
    assert_eq!(
        unlabelled.stats.bundles_ready, 0,
        "no unlabelled cluster counts the bundle Ready"
    );
    server.shutdown().await.expect("server stops");
}
