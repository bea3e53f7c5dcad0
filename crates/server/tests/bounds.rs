//! Memory a registration-token holder (or an admin) can make the server hold is bounded: label
//! sets, facts and reports are checked or cut before they reach the model, list pages stop at a
//! byte budget, and label strings are freed with the last cluster carrying them. Each test checks
//! a bound, not a timing.

mod support;

use std::collections::BTreeMap;

use flotilla_api::agent::{BundleReport, ObjectProblem, SyncRequest};
use flotilla_core::validate::MAX_LABELS;
use flotilla_server::api::list::MAX_PAGE_BYTES;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Harness, bundle, expect_error};

/// Label strings the server holds right now.
fn interned(h: &Harness) -> usize {
    h.server.state.fleet.read().interner().len()
}

/// `count` distinct labels, each as long as Kubernetes allows (253-character prefix, 63-character
/// name and value), numbered from `from` so sets can be told apart.
fn long_labels(from: usize, count: usize) -> BTreeMap<String, String> {
    let part = "p".repeat(62);
    let prefix = format!("{part}.{part}.{part}.{part}"); // 251 characters
    (from..from + count)
        .map(|i| {
            let key = format!("{prefix}/k{i:0>61}");
            (key, format!("v{i:0>62}"))
        })
        .collect()
}

async fn sync_with(h: &Harness, credential: &str, request: &SyncRequest) -> reqwest::Response {
    let body = serde_json::to_string(request).expect("JSON");
    h.send(
        Method::POST,
        "/agent/v1/sync",
        Some(credential),
        Some(("application/json", body)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_more_labels_than_the_limit_is_refused_with_422_and_stores_nothing() {
    let h = Harness::start().await;
    let token = h.token("t", json!({"labels": {"fleet": "main"}})).await;
    let before = (h.revision(), interned(&h));

    let labels: BTreeMap<String, String> = (0..20_000)
        .map(|i| (format!("key-{i}"), format!("value-{i}")))
        .collect();
    let response = h.register(&token, "abuser", "c1", json!(labels)).await;
    let error = expect_error(response, 422).await;
    assert_eq!(error.reason, "Invalid");
    assert!(error.message.contains("at most 64"), "{error:?}");
    assert!(
        error.message.len() < 400,
        "the labels are not echoed: {error:?}"
    );

    // Within the limit alone, over it with the token's labels: refused the same way.
    let at_limit: BTreeMap<String, String> = (0..MAX_LABELS)
        .map(|i| (format!("key-{i}"), "v".to_string()))
        .collect();
    let error = expect_error(
        h.register(&token, "abuser", "c1", json!(at_limit)).await,
        422,
    )
    .await;
    assert!(error.message.contains("registration token"), "{error:?}");
    // A label too long for Kubernetes: 422 too (it used to be 400 here and 422 on the admin API).
    let long_value = json!({"env": "x".repeat(64)});
    expect_error(h.register(&token, "abuser", "c1", long_value).await, 422).await;
    assert_eq!(
        (h.revision(), interned(&h)),
        before,
        "nothing stored or interned"
    );
    h.assert_absent("clusters", "abuser").await;

    // The same rule on the admin API, with the same status.
    let mut many = bundle("web", json!({}));
    many["metadata"]["labels"] = json!(labels);
    let error = expect_error(h.apply(&many).await, 422).await;
    assert!(error.message.contains("at most 64"), "{error:?}");
    let credential = h.register_ok(&token, "store-1", "c1", json!({})).await;
    assert!(!credential.is_empty());
    let cluster = json!({
        "apiVersion": support::API_VERSION, "kind": "Cluster",
        "metadata": {"name": "store-1", "labels": long_labels(0, MAX_LABELS + 1)},
    });
    let error = expect_error(
        h.admin(Method::PUT, "/api/v1/clusters/store-1", Some(&cluster))
            .await,
        422,
    )
    .await;
    assert!(error.message.contains("at most 64"), "{error:?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_of_megabytes_are_refused_with_422_and_not_kept() {
    let h = Harness::start().await;
    let token = h.token("t", json!({})).await;
    let credential = h.register_ok(&token, "store-1", "c1", json!({})).await;
    h.sync_ok(&credential).await;
    let huge = "9".repeat(3_500_000);
    let mut request = SyncRequest {
        report_digest: "r1".into(),
        full: true,
        facts: Some(flotilla_api::ClusterFacts {
            kubernetes_version: Some(huge.clone()),
            ..Default::default()
        }),
        ..SyncRequest::default()
    };
    let error = expect_error(sync_with(&h, &credential, &request).await, 422).await;
    assert!(
        error.message.contains("facts.kubernetesVersion"),
        "{error:?}"
    );
    assert!(
        error.message.len() < 400,
        "the fact is not echoed: {error:?}"
    );
    // A free-form map is bounded in entries too.
    request.facts = Some(flotilla_api::ClusterFacts {
        capacity: (0..10_000).map(|i| (format!("r{i}"), "1".into())).collect(),
        ..Default::default()
    });
    let error = expect_error(sync_with(&h, &credential, &request).await, 422).await;
    assert!(error.message.contains("facts.capacity"), "{error:?}");
    // An over-long report digest would be stored with the cluster: refused as well.
    request.facts = None;
    request.report_digest = huge;
    expect_error(sync_with(&h, &credential, &request).await, 422).await;

    {
        let fleet = h.server.state.fleet.read();
        let (_, cluster) = fleet.cluster_by_name("store-1").expect("cluster");
        assert_eq!(
            cluster.facts,
            Default::default(),
            "no refused fact was kept"
        );
        assert_ne!(
            cluster.report_digest.as_deref().map(str::len),
            Some(3_500_000)
        );
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_text_and_problems_are_cut_to_their_bounds_with_a_marker() {
    let h = Harness::start().await;
    h.apply_ok(&bundle("web", json!({}))).await;
    let token = h.token("t", json!({})).await;
    let credential = h.register_ok(&token, "store-1", "c1", json!({})).await;
    let desired = h.sync_ok(&credential).await;
    let deployment = desired.bundles.expect("desired set")[0].deployment.clone();
    let problem = ObjectProblem {
        kind: "ConfigMap".into(),
        namespace: None,
        name: "n".repeat(2_000),
        message: "m".repeat(5_000),
    };
    let request = SyncRequest {
        report_digest: "r2".into(),
        full: true,
        facts: Some(Default::default()),
        bundles: vec![BundleReport {
            bundle: "web".into(),
            deployment,
            state: flotilla_api::BundleState::Error,
            message: Some("e".repeat(2_000_000)),
            problems: vec![problem; 200],
            more_problems: 5,
        }],
        ..SyncRequest::default()
    };
    // Reports are level-based: a cut report is taken (the sync succeeds), not refused.
    let response = sync_with(&h, &credential, &request).await;
    assert!(response.status().is_success(), "{}", response.status());

    {
        let fleet = h.server.state.fleet.read();
        let (_, cluster) = fleet.cluster_by_name("store-1").expect("cluster");
        let report = cluster.deployments[0].report.as_ref().expect("report kept");
        let message = report.message.as_deref().expect("message");
        assert!(
            message.len() < 1_200,
            "message cut: {} bytes",
            message.len()
        );
        assert!(message.contains("truncated"), "marker: {message}");
        assert_eq!(report.problems.len(), 10);
        assert_eq!(report.more_problems, 5 + 190);
        assert!(
            report
                .problems
                .iter()
                .all(|p| p.message.len() < 1_200 && p.name.len() < 400)
        );
        assert_eq!(
            report.state,
            flotilla_api::BundleState::Error,
            "the state is kept"
        );
    }
    h.shutdown().await;
}

/// The `flotilla_model_interned_strings` gauge.
async fn interned_metric(h: &Harness) -> u64 {
    let text = h
        .admin(Method::GET, "/metrics", None)
        .await
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix("flotilla_model_interned_strings "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .expect("interned strings gauge") as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interned_label_strings_return_to_their_baseline_after_the_clusters_are_deleted() {
    let h = Harness::start().await;
    let token = h.token("t", json!({})).await;
    let keeper = h
        .register_ok(&token, "keeper", "k", json!({"env": "prod"}))
        .await;
    assert!(!keeper.is_empty());
    let baseline = (interned(&h), interned_metric(&h).await);
    for i in 0..40 {
        let labels = long_labels(i * MAX_LABELS, MAX_LABELS);
        h.register_ok(&token, &format!("big-{i}"), "c", json!(labels))
            .await;
    }
    // Shared strings count once: "prod" is still the keeper's after relabelling big-0.
    let relabel = json!({
        "apiVersion": support::API_VERSION, "kind": "Cluster",
        "metadata": {"name": "big-0", "labels": {"env": "prod"}},
    });
    let response = h
        .admin(Method::PUT, "/api/v1/clusters/big-0", Some(&relabel))
        .await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(interned(&h), baseline.0 + 39 * 2 * MAX_LABELS);
    for i in 0..40 {
        let path = format!("/api/v1/clusters/big-{i}");
        let response = h.admin(Method::DELETE, &path, None).await;
        assert_eq!(response.status().as_u16(), 200);
    }
    assert_eq!(
        interned(&h),
        baseline.0,
        "every string of the deleted clusters freed"
    );
    assert_eq!(interned_metric(&h).await, baseline.1);
    {
        let fleet = h.server.state.fleet.read();
        assert!(
            fleet.interner().get("prod").is_some(),
            "the keeper's labels stay"
        );
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_page_stops_at_the_byte_budget_and_the_rest_follows_by_continue() {
    let h = Harness::start().await;
    let token = h.token("t", json!({})).await;
    let labels = long_labels(0, MAX_LABELS);
    let one_cluster = serde_json::to_vec(&labels).expect("JSON").len();
    // Enough clusters carrying the most and longest labels allowed for two budgets' worth.
    let clusters = 2 * MAX_PAGE_BYTES / one_cluster + 1;
    for i in 0..clusters {
        h.register_ok(&token, &format!("big-{i:04}"), "c", json!(labels))
            .await;
    }
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            Some(token) => format!("/api/v1/clusters?limit=5000&continue={token}"),
            None => "/api/v1/clusters?limit=5000".to_string(),
        };
        let response = h.admin(Method::GET, &path, None).await;
        assert_eq!(response.status().as_u16(), 200);
        let body = response.bytes().await.expect("page");
        // The budget, plus the one item that crossed it and the envelope.
        assert!(
            body.len() <= MAX_PAGE_BYTES + 2 * one_cluster + 4096,
            "page of {} bytes",
            body.len()
        );
        let page: Value = serde_json::from_slice(&body).expect("list JSON");
        let items = page["items"].as_array().expect("items");
        assert!(!items.is_empty(), "every page makes progress");
        seen.extend(
            items
                .iter()
                .map(|item| item["metadata"]["name"].as_str().expect("name").to_string()),
        );
        pages += 1;
        match page["continue"].as_str() {
            Some(token) => next = Some(token.to_string()),
            None => break,
        }
    }
    assert!(
        pages >= 3,
        "the budget split {clusters} clusters over {pages} pages"
    );
    let expected: Vec<String> = (0..clusters).map(|i| format!("big-{i:04}")).collect();
    assert_eq!(seen, expected, "every cluster once, in order");
    h.shutdown().await;
}
