//! The whole agent (sync loop + driver) against a real flotilla server in-process: two bundles
//! claiming one object, a Kubernetes API that stops answering, and registrations that cannot
//! succeed (the agent stops) or may yet succeed (it keeps trying).

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use flotilla_agent::{BUNDLE_LABEL, simulated::SimulatedCluster};
use flotilla_api::Kind;
use serde_json::{Value, json};
use support::{
    fleet::{
        DEADLINE, admin, agent_config, bundle, bundle_on_cluster, bundle_ready, registration_token,
        start_agent, start_server, wait_for,
    },
    stand_in_apiserver::StandInApiServer,
};

fn config_map(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

fn requests_to(api: &StandInApiServer, method: &str, path_end: &str) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.method == method && r.path.ends_with(path_end))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bundles_claiming_one_object_the_second_reports_a_lasting_error_and_the_first_keeps_it()
{
    let dir = tempfile::tempdir().unwrap();
    let api = StandInApiServer::start().await;
    let server = start_server("127.0.0.1:0".parse().unwrap(), &dir.path().join("server")).await;
    let base = format!("http://{}", server.addr);
    let admin = admin(&server);
    let token = registration_token(&admin).await;
    let agent = start_agent(&api, &base, &token, &dir.path().join("agent"));

    admin
        .apply(&bundle(
            "a",
            json!([config_map("shared", json!({"owner": "a's value"}))]),
        ))
        .await
        .unwrap();
    wait_for("A Ready", || async { bundle_ready(&admin, "a").await == 1 }).await;
    admin
        .apply(&bundle(
            "b",
            json!([
                config_map("shared", json!({"owner": "b's value"})),
                config_map("b-own", json!({"k": "v"})),
            ]),
        ))
        .await
        .unwrap();
    let b_refused = || async {
        bundle_on_cluster(&admin, "b")
            .await
            .is_some_and(|(state, message)| {
                state == "Error"
                    && message.contains("ConfigMap default/shared already belongs to bundle a")
            })
    };
    wait_for("B's Error on the server", b_refused).await;
    let a_keeps_it = || {
        let live = api
            .get("v1", "ConfigMap", Some("default"), "shared")
            .expect("shared exists");
        assert_eq!(live["metadata"]["labels"][BUNDLE_LABEL], "a", "{live}");
        assert_eq!(live["data"]["owner"], "a's value", "{live}");
        assert_eq!(
            requests_to(&api, "PATCH", "/configmaps/shared"),
            1,
            "applied once, by A, and never again"
        );
    };
    a_keeps_it();

    // Many more syncs and drift passes (each refresh probes /version): nothing changes.
    let probes = requests_to(&api, "GET", "/version");
    wait_for("ten more passes of the loop", || async {
        requests_to(&api, "GET", "/version") >= probes + 10
    })
    .await;
    assert!(b_refused().await, "B's Error lasts");
    a_keeps_it();
    assert_eq!(bundle_ready(&admin, "a").await, 1);

    // Deleting B: B's own object goes, A's stays.
    admin.delete(Kind::Bundle, "b").await.unwrap();
    wait_for("B removed from the cluster", || async {
        bundle_on_cluster(&admin, "b").await.is_none()
            && api
                .get("v1", "ConfigMap", Some("default"), "b-own")
                .is_none()
    })
    .await;
    let probes = requests_to(&api, "GET", "/version");
    wait_for("more passes after B went", || async {
        requests_to(&api, "GET", "/version") >= probes + 6
    })
    .await;
    a_keeps_it();
    assert_eq!(
        bundle_on_cluster(&admin, "a").await.map(|(state, _)| state),
        Some("Ready".to_string())
    );
    agent.stop().await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_kubernetes_api_is_reported_to_the_server_on_every_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let api = StandInApiServer::start().await;
    let server = start_server("127.0.0.1:0".parse().unwrap(), &dir.path().join("server")).await;
    let base = format!("http://{}", server.addr);
    let admin = admin(&server);
    let token = registration_token(&admin).await;
    admin
        .apply(&bundle(
            "settings",
            json!([config_map("settings", json!({}))]),
        ))
        .await
        .unwrap();
    let agent = start_agent(&api, &base, &token, &dir.path().join("agent"));
    wait_for("Ready", || async {
        bundle_ready(&admin, "settings").await == 1
    })
    .await;

    api.set_available(false);
    wait_for("the outage reported on the bundle", || async {
        bundle_on_cluster(&admin, "settings")
            .await
            .is_some_and(|(state, message)| {
                state == "Error" && message.starts_with("Kubernetes API unreachable")
            })
    })
    .await;
    api.set_available(true);
    wait_for("Ready again once the API answers", || async {
        bundle_on_cluster(&admin, "settings")
            .await
            .is_some_and(|(state, _)| state == "Ready")
    })
    .await;
    agent.stop().await;
    server.shutdown().await.unwrap();
}

/// Runs an agent with the simulated driver until it returns (or the deadline passes).
async fn run_until_it_stops(base: &str, token: Option<&str>) -> anyhow::Result<()> {
    flotilla_client::install_crypto_provider();
    let state = tempfile::tempdir().unwrap();
    let run = flotilla_agent::run(
        agent_config(base, token),
        state.path(),
        SimulatedCluster::new(1, 1, None),
        std::future::pending(),
    );
    tokio::time::timeout(DEADLINE, run)
        .await
        .expect("the agent stops by itself instead of retrying")
}

#[tokio::test]
async fn an_agent_with_no_credential_and_no_token_stops_with_a_clear_error() {
    // Nothing listens there: it must not matter, the agent has nothing to register with.
    let error = run_until_it_stops("http://127.0.0.1:9", None)
        .await
        .expect_err("no way to register");
    let message = format!("{error:#}");
    assert!(
        message.contains("no registration token") && message.contains("--token"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_token_is_refused_stops_with_the_servers_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server("127.0.0.1:0".parse().unwrap(), dir.path()).await;
    let base = format!("http://{}", server.addr);
    let error = run_until_it_stops(&base, Some("not-a-token"))
        .await
        .expect_err("a refused token stops the agent");
    let message = format!("{error:#}");
    assert!(
        message.contains("the server refused to register cluster store-0001")
            && message.contains("registration token"),
        "{message}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn registration_is_retried_while_the_server_answers_5xx_or_429() {
    // A server that is down (503) and then busy (429): neither says the token is bad.
    flotilla_client::install_crypto_provider();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            let hit = counter.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"code":"unavailable","message":"try later"}"#;
            if hit.is_multiple_of(2) {
                (
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    [("retry-after", "1")],
                    body,
                )
            } else {
                (
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "1")],
                    body,
                )
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let state = tempfile::tempdir().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let path = state.path().to_path_buf();
    let agent = tokio::spawn(async move {
        flotilla_agent::run(
            agent_config(&base, Some("a-token")),
            &path,
            SimulatedCluster::new(1, 1, None),
            async {
                let _ = stopped.await;
            },
        )
        .await
    });
    wait_for("three registration attempts", || async {
        hits.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert!(!agent.is_finished(), "still trying");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .expect("stops when asked")
        .unwrap()
        .expect("a clean stop");
}
