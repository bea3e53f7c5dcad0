//! Writes are validated before they commit, and what cannot be refused is shown: each test here
//! is a state the server used to accept silently (a token expiry that panicked after its commit,
//! `maxUses: 0`, a `dependsOn` cycle, a merge patch that breaks every manifest, a bundle whose
//! cluster group was deleted, last-seen times reset by a restart).

mod support;

use flotilla_server::records;
use reqwest::Method;
use serde_json::{Value, json};
use support::{API_VERSION, Harness, bundle, config_map, expect_error};

fn token_document(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": API_VERSION, "kind": "RegistrationToken",
        "metadata": {"name": name}, "spec": spec,
    })
}

fn depends_on(mut document: Value, dependencies: Value, labels: Value) -> Value {
    document["spec"]["dependsOn"] = dependencies;
    document["metadata"]["labels"] = labels;
    document
}

async fn get(harness: &Harness, path: &str) -> Value {
    let response = harness.admin(Method::GET, path, None).await;
    assert_eq!(response.status().as_u16(), 200, "GET {path}");
    response.json().await.expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_lifetimes_past_a_century_are_refused_before_anything_is_stored() {
    let harness = Harness::start().await;
    let before = harness.revision();
    for (name, spec, field) in [
        ("huge-ttl", json!({"ttl": "10000000000y"}), "spec.ttl"),
        ("long-ttl", json!({"ttl": "101y"}), "spec.ttl"),
        (
            "far-expiry",
            json!({"expiresAt": "9999-12-31T23:59:59Z"}),
            "spec.expiresAt",
        ),
    ] {
        let response = harness.apply(&token_document(name, spec)).await;
        let error = expect_error(response, 422).await;
        assert!(error.message.contains(field), "{error:?}");
        assert!(error.message.contains("never expires"), "{error:?}");
        harness.assert_absent("registrationtokens", name).await;
    }
    assert_eq!(harness.revision(), before, "nothing was committed");
    // A century is still fine, and renders.
    let created = harness
        .apply_ok(&token_document("century", json!({"ttl": "100y"})))
        .await;
    assert!(created["spec"]["expiresAt"].as_str().is_some(), "{created}");
    harness.assert_serving().await;
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_expiry_past_year_9999_still_lists_after_a_restart() {
    // Written before writes were bounded: the server must render it, not drop the connection.
    let harness = Harness::start().await;
    let record = records::TokenRecord {
        metadata: flotilla_api::ObjectMeta {
            name: "legacy".into(),
            ..Default::default()
        },
        spec: Default::default(),
        secret_hash: hex::encode([7u8; 32]),
        expires_at: Some(u64::MAX / 2),
    };
    harness
        .server
        .state
        .store
        .commit(vec![records::put(records::TOKEN, "legacy", &record)])
        .await
        .expect("commit the legacy record");
    let harness = harness.restart().await;
    let list = get(&harness, "/api/v1/registrationtokens").await;
    let legacy = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|item| item["metadata"]["name"] == "legacy")
        .expect("the legacy token is listed")
        .clone();
    assert_eq!(legacy["spec"]["expiresAt"], "9999-12-31T23:59:59Z");
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_max_uses_zero_is_refused() {
    let harness = Harness::start().await;
    let before = harness.revision();
    let response = harness
        .apply(&token_document("nobody", json!({"maxUses": 0})))
        .await;
    let error = expect_error(response, 422).await;
    assert!(error.message.contains("spec.maxUses"), "{error:?}");
    harness.assert_absent("registrationtokens", "nobody").await;
    assert_eq!(harness.revision(), before);
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_depends_on_cycle_is_refused_naming_the_cycle() {
    let harness = Harness::start().await;
    let every = json!({});
    // a waits for b, which does not exist yet: accepted, with a condition saying so.
    let a = depends_on(
        bundle("a", every.clone()),
        json!([{"name": "b"}]),
        json!({}),
    );
    let created = harness.apply_ok(&a).await;
    let conditions = &created["status"]["conditions"];
    assert_eq!(conditions[0]["reason"], "DependencyNotFound", "{created}");
    assert!(
        conditions[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("\"b\"")),
        "{created}"
    );
    let before = harness.revision();
    // b waiting for a closes the cycle.
    let b = depends_on(
        bundle("b", every.clone()),
        json!([{"name": "a"}]),
        json!({}),
    );
    let error = expect_error(harness.apply(&b).await, 422).await;
    assert!(error.message.contains("b -> a -> b"), "{error:?}");
    harness.assert_absent("bundles", "b").await;
    // The same through selectors: c waits for tier=y bundles, d (tier=y) for tier=x ones.
    let c = depends_on(
        bundle("c", every.clone()),
        json!([{"selector": {"matchLabels": {"tier": "y"}}}]),
        json!({"tier": "x"}),
    );
    harness.apply_ok(&c).await;
    let before_d = harness.revision();
    let d = depends_on(
        bundle("d", every.clone()),
        json!([{"selector": {"matchLabels": {"tier": "x"}}}]),
        json!({"tier": "y"}),
    );
    let error = expect_error(harness.apply(&d).await, 422).await;
    assert!(error.message.contains("d -> c -> d"), "{error:?}");
    harness.assert_absent("bundles", "d").await;
    assert_eq!(harness.revision(), before_d);
    // Without the cycle, b is fine and a's condition goes away.
    let b = bundle("b", every);
    harness.apply_ok(&b).await;
    assert!(harness.revision() > before);
    let a = get(&harness, "/api/v1/bundles/a").await;
    assert!(a["status"].get("conditions").is_none(), "{a}");
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customization_patches_that_break_the_manifests_are_refused() {
    let harness = Harness::start().await;
    let before = harness.revision();
    let with_patch = |patch: Value| {
        json!({
            "apiVersion": API_VERSION, "kind": "Bundle",
            "metadata": {"name": "patched"},
            "spec": {
                "resources": [config_map("cm")],
                "targets": [{"clusterSelector": {}, "customization": {"patches": [{"patch": patch}]}}],
            },
        })
    };
    let error = expect_error(harness.apply(&with_patch(json!([1, 2]))).await, 422).await;
    assert!(
        error
            .message
            .contains("spec.targets[0].customization.patches[0].patch is an array"),
        "{error:?}"
    );
    let error = expect_error(
        harness
            .apply(&with_patch(json!({"metadata": {"name": null}})))
            .await,
        422,
    )
    .await;
    assert!(
        error.message.contains("spec.targets[0].customization")
            && error.message.contains("metadata.name"),
        "{error:?}"
    );
    harness.assert_absent("bundles", "patched").await;
    assert_eq!(harness.revision(), before, "nothing was committed");
    // A patch that keeps the manifest valid, placeholders included, is accepted.
    harness
        .apply_ok(&with_patch(
            json!({"metadata": {"labels": {"site": "${cluster.name}"}}}),
        ))
        .await;
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_whose_cluster_group_is_deleted_is_in_error_saying_why() {
    let harness = Harness::start().await;
    harness
        .apply_ok(&json!({
            "apiVersion": API_VERSION, "kind": "ClusterGroup",
            "metadata": {"name": "stores"},
            "spec": {"selector": {"matchLabels": {"env": "prod"}}},
        }))
        .await;
    let mut document = bundle("web", json!({}));
    document["spec"]["targets"] = json!([{"clusterGroup": "stores"}]);
    let created = harness.apply_ok(&document).await;
    assert_eq!(created["status"]["state"], "Ready", "{created}");
    let response = harness
        .admin(Method::DELETE, "/api/v1/clustergroups/stores", None)
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let web = get(&harness, "/api/v1/bundles/web").await;
    assert_eq!(web["status"]["state"], "Error", "{web}");
    assert_eq!(
        web["status"]["conditions"][0]["reason"],
        "ClusterGroupNotFound"
    );
    assert!(
        web["status"]["conditions"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.targets[0]") && m.contains("\"stores\"")),
        "{web}"
    );
    let errors = get(&harness, "/api/v1/bundles?state=Error").await;
    assert_eq!(errors["items"][0]["metadata"]["name"], "web", "{errors}");
    // Creating the group again resolves it.
    harness
        .apply_ok(&json!({
            "apiVersion": API_VERSION, "kind": "ClusterGroup",
            "metadata": {"name": "stores"},
            "spec": {"selector": {"matchLabels": {"env": "prod"}}},
        }))
        .await;
    let web = get(&harness, "/api/v1/bundles/web").await;
    assert_eq!(web["status"]["state"], "Ready", "{web}");
    assert!(web["status"].get("conditions").is_none(), "{web}");
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_each_clusters_last_seen_time() {
    let harness = Harness::start().await;
    let token = harness.token("join", json!({})).await;
    let credential = harness
        .register_ok(&token, "store-1", "client-1", json!({}))
        .await;
    harness.sync_ok(&credential).await;
    let before = get(&harness, "/api/v1/clusters/store-1").await;
    assert_eq!(before["status"]["state"], "Online", "{before}");
    let last_seen = before["status"]["lastSeen"]
        .as_str()
        .expect("lastSeen")
        .to_string();
    // The restart must come at least a second after the sync, or the times could not differ.
    let seen = humantime::parse_rfc3339(&last_seen).expect("RFC 3339");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::SystemTime::now()
        .duration_since(seen)
        .is_ok_and(|d| d.as_secs() < 2)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the clock stands still"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let harness = harness.restart().await;
    let after = get(&harness, "/api/v1/clusters/store-1").await;
    assert_eq!(after["status"]["lastSeen"], last_seen.as_str(), "{after}");
    // Still Online: it gets a full offline window from the restart to sync again.
    assert_eq!(after["status"]["state"], "Online", "{after}");
    harness.shutdown().await;
}
