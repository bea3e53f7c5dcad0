//! No request path can fail the server: generated admin documents (noise, and valid documents
//! with one part replaced), agent bodies and query strings, sent to a real server, always get a
//! 2xx or a 4xx with a JSON error, never a 5xx or a dropped connection, and the server keeps
//! serving. Stable-toolchain property tests; `fuzz/` has coverage-guided targets for nightly.

mod support;

use flotilla_api::ErrorBody;
use flotilla_testkit::generate::{json_value, mutate, selector_text};
use proptest::{prelude::*, test_runner::TestRunner};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use support::{API_VERSION, Harness, bundle};

/// Cases per property: enough to reach every validator many times, about a second each.
const CASES: u32 = 384;

fn runner() -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases: CASES,
        // Shrinking re-sends requests; a failure is already reported with its input.
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    })
}

/// The answer is a success, or a client error with the JSON error body.
async fn assert_answered(response: Response, input: &str) -> Result<(), TestCaseError> {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    prop_assert!(status < 500, "{status} for {input}: {body}");
    if status >= 400 {
        let error: Result<ErrorBody, _> = serde_json::from_str(&body);
        prop_assert!(
            error.as_ref().is_ok_and(|e| !e.message.is_empty()),
            "{status} without a JSON error for {input}: {body}"
        );
    }
    Ok(())
}

fn valid_documents() -> Vec<Value> {
    let mut with_everything = bundle("web", json!({"matchLabels": {"env": "prod"}}));
    with_everything["spec"]["targets"] = json!([
        {"clusterSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]},
         "customization": {"namespace": "shop", "labels": {"a": "b"},
                           "patches": [{"kind": "ConfigMap", "patch": {"data": {"x": "${values.x}"}}}],
                           "values": {"x": "1"}}},
        {"clusterGroup": "stores", "doNotDeploy": true},
    ]);
    with_everything["spec"]["dependsOn"] = json!([{"name": "base"}]);
    with_everything["spec"]["drift"] = json!({"mode": "correct", "ignore": ["/spec/replicas"]});
    vec![
        with_everything,
        json!({"apiVersion": API_VERSION, "kind": "ClusterGroup", "metadata": {"name": "stores"},
               "spec": {"selector": {"matchLabels": {"env": "prod"}}}}),
        json!({"apiVersion": API_VERSION, "kind": "RegistrationToken", "metadata": {"name": "t"},
               "spec": {"ttl": "1h", "maxUses": 3, "labels": {"env": "prod"}}}),
        json!({"apiVersion": API_VERSION, "kind": "GitRepo", "metadata": {"name": "shops"},
               "spec": {"repo": "https://git.example/fleet.git", "branch": "main", "paths": ["apps"],
                        "targets": [{"clusterSelector": {}}]}}),
        json!({"apiVersion": API_VERSION, "kind": "Secret", "metadata": {"name": "creds"},
               "spec": {"type": "basic-auth", "stringData": {"username": "u", "password": "p"}}}),
    ]
}

/// An admin body: a valid document with one part replaced, as JSON or YAML, or noise.
fn admin_body() -> impl Strategy<Value = (String, &'static str)> {
    let documents = valid_documents();
    let mutated = (
        0..documents.len(),
        any::<usize>(),
        json_value(),
        any::<bool>(),
    )
        .prop_map(move |(index, choice, value, yaml)| {
            let document = mutate(&documents[index], choice, value);
            if yaml {
                let text = serde_saphyr::to_string(&document).unwrap_or_default();
                (text, "application/yaml")
            } else {
                (document.to_string(), "application/json")
            }
        });
    prop_oneof![
        6 => mutated,
        1 => ".{0,200}".prop_map(|text| (text, "application/yaml")),
        1 => json_value().prop_map(|v| (v.to_string(), "application/json")),
    ]
}

#[test]
fn generated_admin_documents_never_fail_the_server() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let harness = runtime.block_on(Harness::start());
    runner()
        .run(&admin_body(), |(body, content_type)| {
            runtime.block_on(async {
                let response = harness
                    .send(
                        Method::POST,
                        "/api/v1/apply",
                        Some(&harness.admin),
                        Some((content_type, body.clone())),
                    )
                    .await;
                assert_answered(response, &body).await
            })
        })
        .expect("every generated document is answered");
    runtime.block_on(async {
        harness.assert_serving().await;
        harness.shutdown().await;
    });
}

/// A sync body: the request's fields with generated values, or a whole generated value.
fn sync_body() -> impl Strategy<Value = String> {
    let valid = json!({
        "etag": "e", "reportDigest": "r", "baseDigest": "b", "full": true,
        "facts": {"kubernetesVersion": "v1.31.0", "nodes": 3, "nodesReady": 3},
        "bundles": [{"bundle": "web", "deployment": "d", "state": "Ready", "message": "ok"}],
        "removed": ["old"],
    });
    prop_oneof![
        4 => (any::<usize>(), json_value()).prop_map(move |(choice, value)| mutate(&valid, choice, value).to_string()),
        1 => json_value().prop_map(|v| v.to_string()),
        1 => ".{0,100}",
    ]
}

#[test]
fn generated_agent_bodies_never_fail_the_server() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (harness, token, credential) = runtime.block_on(async {
        let harness = Harness::start().await;
        harness.apply_ok(&bundle("web", json!({}))).await;
        let token = harness.token("join", json!({})).await;
        let credential = harness
            .register_ok(&token, "store-1", "client-1", json!({"env": "prod"}))
            .await;
        (harness, token, credential)
    });
    runner()
        .run(&sync_body(), |body| {
            runtime.block_on(async {
                let sync = harness
                    .send(
                        Method::POST,
                        "/agent/v1/sync",
                        Some(&credential),
                        Some(("application/json", body.clone())),
                    )
                    .await;
                assert_answered(sync, &body).await
            })
        })
        .expect("every generated sync is answered");
    let register = (any::<usize>(), json_value()).prop_map(move |(choice, value)| {
        let valid = json!({"token": token, "name": "store-2", "clientId": "c2",
                           "labels": {"env": "prod"}, "facts": {"nodes": 1}});
        mutate(&valid, choice, value).to_string()
    });
    runner()
        .run(&register, |body| {
            runtime.block_on(async {
                let response = harness
                    .send(
                        Method::POST,
                        "/agent/v1/register",
                        None,
                        Some(("application/json", body.clone())),
                    )
                    .await;
                assert_answered(response, &body).await
            })
        })
        .expect("every generated registration is answered");
    runtime.block_on(async {
        harness.assert_serving().await;
        harness.shutdown().await;
    });
}

#[test]
fn generated_list_queries_never_fail_the_server() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let harness = runtime.block_on(Harness::start());
    let query = (
        prop::sample::select(vec![
            "clusters",
            "bundles",
            "clustergroups",
            "registrationtokens",
        ]),
        selector_text(),
        ".{0,12}",
        ".{0,12}",
        ".{0,12}",
    );
    runner()
        .run(&query, |(plural, selector, limit, cursor, sort)| {
            let encode = |text: &str| {
                percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            };
            let path = format!(
                "/api/v1/{plural}?labelSelector={}&limit={}&continue={}&sort={}",
                encode(&selector),
                encode(&limit),
                encode(&cursor),
                encode(&sort)
            );
            runtime.block_on(async {
                let response = harness
                    .send(Method::GET, &path, Some(&harness.admin), None)
                    .await;
                assert_answered(response, &path).await
            })
        })
        .expect("every generated query is answered");
    runtime.block_on(async {
        harness.assert_serving().await;
        harness.shutdown().await;
    });
}
