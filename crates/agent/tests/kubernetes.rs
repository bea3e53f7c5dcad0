//! The Kubernetes driver over real HTTP with the real kube-rs client, against the stand-in API
//! server (tests/support/stand_in_apiserver): apply, update, prune, deletion, keepResources,
//! drift, unknown kinds, API errors, CRD ordering, health, and what survives a restart.

mod support;

use flotilla_agent::{BUNDLE_LABEL, ClusterDriver, kubernetes::KubernetesCluster};
use flotilla_api::{
    BundleState, DriftIgnore, DriftMode, DriftPolicy,
    agent::{BundleReport, DeployOptions},
};
use serde_json::{Value, json};
use support::{
    driver::{apply, crd, desired, report, widget},
    stand_in_apiserver::{NOT_READY_ANNOTATION, REJECT_ANNOTATION, StandInApiServer},
};

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn config_map(name: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "shop"},
        "data": data,
    })
}

fn deployment(name: &str, replicas: u32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    })
}

#[tokio::test]
async fn first_apply_creates_every_object_namespace_first_with_ownership_and_reports_ready() {
    let api = StandInApiServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut driver = KubernetesCluster::new(api.client(), 30, Some(state.path()));
    let bundle = desired("web", "d1", DeployOptions::default());
    // The Namespace comes last in the bundle; it must still be applied first.
    let report = apply(
        &mut driver,
        &bundle,
        &[
            config_map("settings", json!({"a": "1"})),
            deployment("web", 2, "web:1"),
            namespace("shop"),
        ],
    )
    .await;
    assert_eq!(report.state, BundleState::Ready, "{report:?}");
    assert_eq!(report.deployment, "d1");
    let live = api
        .get("apps/v1", "Deployment", Some("shop"), "web")
        .expect("deployment applied");
    assert_eq!(live["metadata"]["labels"][BUNDLE_LABEL], "web");
    assert_eq!(
        live["metadata"]["annotations"]["flotilla.dev/deployment"],
        "d1"
    );
    assert_eq!(
        live["metadata"]["annotations"]["flotilla.dev/content-digest"],
        "sha256:d1"
    );
    assert!(
        api.get("v1", "ConfigMap", Some("shop"), "settings")
            .is_some()
    );
    let patches: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|request| request.method == "PATCH")
        .collect();
    assert!(patches[0].path.ends_with("/namespaces/shop"), "{patches:?}");
    assert!(
        patches
            .iter()
            .all(|p| p.param("fieldManager").as_deref() == Some("flotilla"))
    );
    assert!(
        patches
            .iter()
            .all(|p| p.param("force").as_deref() == Some("true"))
    );
    assert_eq!(driver.applied().get("web").map(String::as_str), Some("d1"));
}

#[tokio::test]
async fn namespaced_objects_without_a_namespace_go_to_default_and_cluster_scoped_ones_have_none() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let bundle = desired("base", "d1", DeployOptions::default());
    let report = apply(
        &mut driver,
        &bundle,
        &[
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain"}, "data": {}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                   "metadata": {"name": "reader", "namespace": "ignored"}, "rules": []}),
        ],
    )
    .await;
    assert_eq!(report.state, BundleState::Ready, "{report:?}");
    assert!(
        api.get("v1", "ConfigMap", Some("default"), "plain")
            .is_some()
    );
    assert!(
        api.get(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            None,
            "reader"
        )
        .is_some()
    );
}

#[tokio::test]
async fn a_new_revision_updates_objects_and_prunes_what_it_no_longer_has() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let first = desired("web", "d1", DeployOptions::default());
    apply(
        &mut driver,
        &first,
        &[
            namespace("shop"),
            config_map("old", json!({})),
            deployment("web", 1, "web:1"),
        ],
    )
    .await;
    let second = desired("web", "d2", DeployOptions::default());
    let report = apply(
        &mut driver,
        &second,
        &[namespace("shop"), deployment("web", 1, "web:2")],
    )
    .await;
    assert_eq!(report.state, BundleState::Ready, "{report:?}");
    assert!(
        api.get("v1", "ConfigMap", Some("shop"), "old").is_none(),
        "pruned"
    );
    let live = api
        .get("apps/v1", "Deployment", Some("shop"), "web")
        .unwrap();
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:2"
    );
    assert_eq!(
        live["metadata"]["annotations"]["flotilla.dev/deployment"],
        "d2"
    );
    // Pruning never lists the whole cluster: every LIST names the bundle's label.
    for request in api
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.param("labelSelector").is_some())
    {
        assert!(
            request
                .param("labelSelector")
                .unwrap()
                .contains(BUNDLE_LABEL),
            "{request:?}"
        );
    }
}

#[tokio::test]
async fn prune_leaves_objects_that_lost_the_bundle_label() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let first = desired("web", "d1", DeployOptions::default());
    apply(
        &mut driver,
        &first,
        &[namespace("shop"), config_map("adopted", json!({}))],
    )
    .await;
    api.edit("v1", "ConfigMap", Some("shop"), "adopted", |object| {
        object["metadata"]["labels"][BUNDLE_LABEL] = json!("someone-else");
    });
    let second = desired("web", "d2", DeployOptions::default());
    apply(&mut driver, &second, &[namespace("shop")]).await;
    assert!(
        api.get("v1", "ConfigMap", Some("shop"), "adopted")
            .is_some()
    );
}

fn default_config_map(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

#[tokio::test]
async fn removing_a_bundle_deletes_its_objects_unless_it_keeps_resources() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let web = desired("web", "d1", DeployOptions::default());
    apply(&mut driver, &web, &[default_config_map("web-settings")]).await;
    let kept = desired(
        "kept",
        "k1",
        DeployOptions {
            keep_resources: true,
            ..DeployOptions::default()
        },
    );
    apply(&mut driver, &kept, &[default_config_map("kept-settings")]).await;
    driver.remove("web").await.unwrap();
    driver.remove("kept").await.unwrap();
    assert!(driver.applied().is_empty());
    assert!(driver.reports().await.is_empty());
    assert!(
        api.get("v1", "ConfigMap", Some("default"), "web-settings")
            .is_none()
    );
    assert!(
        api.get("v1", "ConfigMap", Some("default"), "kept-settings")
            .is_some()
    );
}

fn drift_options(mode: DriftMode, ignore: Vec<DriftIgnore>) -> DeployOptions {
    DeployOptions {
        drift: DriftPolicy { mode, ignore },
        ..DeployOptions::default()
    }
}

#[tokio::test]
async fn drift_is_corrected_by_default_and_the_report_says_so() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let bundle = desired("web", "d1", DeployOptions::default());
    apply(
        &mut driver,
        &bundle,
        &[namespace("shop"), deployment("web", 2, "web:1")],
    )
    .await;
    api.edit("apps/v1", "Deployment", Some("shop"), "web", |object| {
        object["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil:latest");
    });
    // A health-only refresh does not look for drift.
    assert!(!driver.refresh(false).await);
    assert!(driver.refresh(true).await, "the report changed");
    let live = api
        .get("apps/v1", "Deployment", Some("shop"), "web")
        .unwrap();
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"],
        "web:1"
    );
    let report = report(&mut driver, "web").await;
    assert_eq!(report.state, BundleState::Ready, "{report:?}");
    let message = report.message.unwrap_or_default();
    assert!(
        message.contains("corrected drift") && message.contains("Deployment shop/web"),
        "{message}"
    );
    // Nothing drifted since: the report keeps saying what was last corrected.
    assert!(
        !driver.refresh(true).await,
        "an unchanged report is not news"
    );
    let again = driver.reports().await[0]
        .message
        .clone()
        .unwrap_or_default();
    assert_eq!(again, message);
}

#[tokio::test]
async fn deleted_objects_are_recreated_as_drift() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let bundle = desired("web", "d1", DeployOptions::default());
    apply(&mut driver, &bundle, &[default_config_map("settings")]).await;
    let client = api.client();
    let config_maps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client, "default");
    config_maps
        .delete("settings", &Default::default())
        .await
        .unwrap();
    driver.refresh(true).await;
    assert!(
        api.get("v1", "ConfigMap", Some("default"), "settings")
            .is_some()
    );
}

#[tokio::test]
async fn drift_in_report_mode_marks_the_bundle_modified_without_touching_the_object() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let bundle = desired("web", "d1", drift_options(DriftMode::Report, Vec::new()));
    apply(&mut driver, &bundle, &[default_config_map("settings")]).await;
    api.edit("v1", "ConfigMap", Some("default"), "settings", |object| {
        object["data"]["k"] = json!("changed by hand");
    });
    driver.refresh(true).await;
    let report = report(&mut driver, "web").await;
    assert_eq!(report.state, BundleState::Modified, "{report:?}");
    assert_eq!(report.problems.len(), 1);
    assert!(report.problems[0].message.contains("/data/k"), "{report:?}");
    let live = api
        .get("v1", "ConfigMap", Some("default"), "settings")
        .unwrap();
    assert_eq!(live["data"]["k"], "changed by hand");
}

#[tokio::test]
async fn ignored_paths_are_neither_drift_nor_taken_back() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let ignore = vec![DriftIgnore {
        kind: Some("Deployment".into()),
        paths: vec!["/spec/replicas".into()],
        ..DriftIgnore::default()
    }];
    let bundle = desired(
        "web",
        "d1",
        drift_options(DriftMode::Correct, ignore.clone()),
    );
    apply(
        &mut driver,
        &bundle,
        &[namespace("shop"), deployment("web", 2, "web:1")],
    )
    .await;
    // An autoscaler scales it; then a real drift elsewhere triggers a re-apply.
    api.edit("apps/v1", "Deployment", Some("shop"), "web", |object| {
        object["spec"]["replicas"] = json!(7);
        object["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil:latest");
    });
    driver.refresh(true).await;
    let live = api
        .get("apps/v1", "Deployment", Some("shop"), "web")
        .unwrap();
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][0]["image"], "web:1",
        "drift corrected"
    );
    assert_eq!(
        live["spec"]["replicas"], 7,
        "the autoscaler's replicas were left alone"
    );
    // And replicas alone are not drift.
    let report_mode = desired("web", "d2", drift_options(DriftMode::Report, ignore));
    apply(
        &mut driver,
        &report_mode,
        &[namespace("shop"), deployment("web", 2, "web:1")],
    )
    .await;
    api.edit("apps/v1", "Deployment", Some("shop"), "web", |object| {
        object["spec"]["replicas"] = json!(9);
    });
    driver.refresh(true).await;
    assert_eq!(report(&mut driver, "web").await.state, BundleState::Ready);
}

#[tokio::test]
async fn unknown_kinds_are_errors_on_the_bundle_naming_the_kind() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let bundle = desired("web", "d1", DeployOptions::default());
    let report = apply(
        &mut driver,
        &bundle,
        &[
            default_config_map("settings"),
            json!({"apiVersion": "widgets.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
        ],
    )
    .await;
    assert_eq!(report.state, BundleState::Error, "{report:?}");
    let message = report.message.unwrap_or_default();
    assert!(
        message.contains("Widget") && message.contains("widgets.example.com/v1"),
        "{message}"
    );
    // The rest of the bundle was still applied.
    assert!(
        api.get("v1", "ConfigMap", Some("default"), "settings")
            .is_some()
    );
}

#[tokio::test]
async fn an_api_error_surfaces_in_the_bundle_report_with_the_servers_message() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let bundle = desired("web", "d1", DeployOptions::default());
    let mut rejected = default_config_map("bad");
    rejected["metadata"]["annotations"] =
        json!({REJECT_ANNOTATION: "data.k: Invalid value: too spicy"});
    let report = apply(
        &mut driver,
        &bundle,
        &[rejected, default_config_map("good")],
    )
    .await;
    assert_eq!(report.state, BundleState::Error, "{report:?}");
    assert!(
        report
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("too spicy"),
        "{report:?}"
    );
    assert!(
        report
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("422"),
        "{report:?}"
    );
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].name, "bad");
}

#[tokio::test]
async fn custom_resources_are_applied_after_their_crd_is_established() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let bundle = desired("widgets", "d1", DeployOptions::default());
    // Listed before its CRD, and the CRD established at once: both land in one apply.
    let report = apply(&mut driver, &bundle, &[widget(), crd()]).await;
    assert_eq!(report.state, BundleState::Ready, "{report:?}");
    assert!(
        api.get("example.com/v1", "Widget", Some("default"), "w")
            .is_some()
    );
}

#[tokio::test]
async fn custom_resources_wait_for_a_slow_crd_and_are_applied_on_refresh() {
    let api = StandInApiServer::start().await;
    api.set_auto_establish(false);
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let bundle = desired("widgets", "d1", DeployOptions::default());
    let report = apply(&mut driver, &bundle, &[widget(), crd()]).await;
    assert_eq!(report.state, BundleState::NotReady, "{report:?}");
    assert!(
        report.problems.iter().any(|p| p.kind == "Widget"
            && p.message
                .contains("waiting for the CustomResourceDefinition")),
        "{report:?}"
    );
    assert!(
        api.get("example.com/v1", "Widget", Some("default"), "w")
            .is_none()
    );
    api.establish("widgets.example.com");
    assert!(driver.refresh(false).await);
    let report = report_of(&mut driver, "widgets").await;
    assert_eq!(report.state, BundleState::Ready, "{report:?}");
    assert!(
        api.get("example.com/v1", "Widget", Some("default"), "w")
            .is_some()
    );
}

async fn report_of(driver: &mut KubernetesCluster, bundle: &str) -> BundleReport {
    report(driver, bundle).await
}

#[tokio::test]
async fn health_follows_the_objects_status_until_ready() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let bundle = desired("web", "d1", DeployOptions::default());
    let mut slow = deployment("web", 3, "web:1");
    slow["metadata"]["annotations"] = json!({NOT_READY_ANNOTATION: "true"});
    let report = apply(&mut driver, &bundle, &[namespace("shop"), slow]).await;
    assert_eq!(report.state, BundleState::NotReady, "{report:?}");
    assert_eq!(report.problems[0].kind, "Deployment");
    let live = api
        .get("apps/v1", "Deployment", Some("shop"), "web")
        .unwrap();
    let generation = live["metadata"]["generation"].clone();
    api.set_status(
        "apps/v1",
        "Deployment",
        Some("shop"),
        "web",
        json!({"observedGeneration": generation, "replicas": 3, "updatedReplicas": 3,
               "readyReplicas": 3, "availableReplicas": 3}),
    );
    assert!(driver.refresh(false).await);
    assert_eq!(
        report_of(&mut driver, "web").await.state,
        BundleState::Ready
    );
    // A failed Job is an error with the Job's reason.
    let job_bundle = desired("migrate", "j1", DeployOptions::default());
    let mut job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "namespace": "shop"},
                         "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "m:1"}]}}}});
    job["metadata"]["annotations"] = json!({NOT_READY_ANNOTATION: "true"});
    apply(&mut driver, &job_bundle, &[job]).await;
    api.set_status(
        "batch/v1",
        "Job",
        Some("shop"),
        "migrate",
        json!({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
    );
    driver.refresh(false).await;
    let report = report_of(&mut driver, "migrate").await;
    assert_eq!(report.state, BundleState::Error, "{report:?}");
    assert!(
        report
            .message
            .unwrap_or_default()
            .contains("BackoffLimitExceeded")
    );
}

#[tokio::test]
async fn a_restarted_driver_remembers_what_it_applied_and_keeps_correcting_drift() {
    let api = StandInApiServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let bundle = desired("web", "d1", DeployOptions::default());
    {
        let mut driver = KubernetesCluster::new(api.client(), 30, Some(state.path()));
        apply(&mut driver, &bundle, &[default_config_map("settings")]).await;
    }
    api.edit("v1", "ConfigMap", Some("default"), "settings", |object| {
        object["data"]["k"] = json!("drifted");
    });
    // A new process: nothing re-applied by the loop (the deployment is already applied), but
    // the first refresh corrects the drift from the inventory alone.
    let mut driver = KubernetesCluster::new(api.client(), 30, Some(state.path()));
    assert_eq!(driver.applied().get("web").map(String::as_str), Some("d1"));
    driver.refresh(true).await;
    let live = api
        .get("v1", "ConfigMap", Some("default"), "settings")
        .unwrap();
    assert_eq!(live["data"]["k"], "v");
}

#[tokio::test]
async fn a_driver_that_lost_its_inventory_prunes_leftovers_found_by_label() {
    let api = StandInApiServer::start().await;
    let first = desired("web", "d1", DeployOptions::default());
    {
        let mut driver = KubernetesCluster::new(api.client(), 30, None);
        apply(
            &mut driver,
            &first,
            &[default_config_map("old"), default_config_map("kept")],
        )
        .await;
    }
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let second = desired("web", "d2", DeployOptions::default());
    apply(&mut driver, &second, &[default_config_map("kept")]).await;
    assert!(api.get("v1", "ConfigMap", Some("default"), "old").is_none());
    assert!(
        api.get("v1", "ConfigMap", Some("default"), "kept")
            .is_some()
    );
}

#[tokio::test]
async fn facts_report_version_nodes_and_capacity() {
    let api = StandInApiServer::start().await;
    api.set_nodes(3, 2);
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let facts = driver.facts().await;
    assert!(
        facts
            .kubernetes_version
            .unwrap_or_default()
            .starts_with('v')
    );
    let nodes = facts.nodes.expect("node counts");
    assert_eq!((nodes.total, nodes.ready), (3, 2));
    assert!(facts.capacity.contains_key("cpu"), "{:?}", facts.capacity);
    assert_eq!(facts.sync_interval_seconds, Some(30));
}

#[tokio::test]
async fn a_report_lists_at_most_ten_problem_objects_and_counts_the_rest() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let bundle = desired("many", "d1", DeployOptions::default());
    let manifests: Vec<Value> = (0..12)
        .map(|index| {
            let mut config_map = default_config_map(&format!("bad-{index:02}"));
            config_map["metadata"]["annotations"] = json!({REJECT_ANNOTATION: "rejected"});
            config_map
        })
        .collect();
    let report = apply(&mut driver, &bundle, &manifests).await;
    assert_eq!(report.state, BundleState::Error);
    assert_eq!(report.problems.len(), 10);
    assert_eq!(report.more_problems, 2);
}

#[tokio::test]
async fn objects_the_api_refused_are_applied_again_on_refresh_and_stay_errors_until_then() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let first = desired("web", "d1", DeployOptions::default());
    apply(&mut driver, &first, &[default_config_map("settings")]).await;
    // The API is down while the next revision is applied: every object fails.
    api.set_available(false);
    let mut changed = default_config_map("settings");
    changed["data"]["k"] = json!("v2");
    let second = desired("web", "d2", DeployOptions::default());
    let report = apply(&mut driver, &second, &[changed]).await;
    assert_eq!(report.state, BundleState::Error, "{report:?}");
    api.set_available(true);
    // Reading the old object would look healthy; the refused one is applied again instead.
    assert!(driver.refresh(false).await);
    let report = report_of(&mut driver, "web").await;
    assert_eq!(report.state, BundleState::Ready, "{report:?}");
    let live = api
        .get("v1", "ConfigMap", Some("default"), "settings")
        .unwrap();
    assert_eq!(live["data"]["k"], "v2");
}

#[tokio::test]
async fn an_object_of_another_bundle_is_not_taken_over() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let first = desired("web", "d1", DeployOptions::default());
    apply(&mut driver, &first, &[default_config_map("shared")]).await;
    let second = desired("api", "a1", DeployOptions::default());
    let mut theirs = default_config_map("shared");
    theirs["data"]["k"] = json!("api's value");
    let report = apply(&mut driver, &second, &[theirs]).await;
    assert_eq!(report.state, BundleState::Error, "{report:?}");
    assert!(
        report
            .message
            .unwrap_or_default()
            .contains("already belongs to bundle web")
    );
    let live = api
        .get("v1", "ConfigMap", Some("default"), "shared")
        .unwrap();
    assert_eq!(live["metadata"]["labels"][BUNDLE_LABEL], "web");
    assert_eq!(live["data"]["k"], "v");
}

#[tokio::test]
async fn namespaces_and_crds_are_kept_when_their_bundle_goes() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let bundle = desired("platform", "p1", DeployOptions::default());
    apply(
        &mut driver,
        &bundle,
        &[namespace("shop"), crd(), config_map("settings", json!({}))],
    )
    .await;
    driver.remove("platform").await.unwrap();
    assert!(
        api.get("v1", "ConfigMap", Some("shop"), "settings")
            .is_none()
    );
    assert!(
        api.get("v1", "Namespace", None, "shop").is_some(),
        "namespace kept"
    );
    assert!(
        api.get(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "widgets.example.com"
        )
        .is_some(),
        "CRD kept"
    );
}

#[tokio::test]
async fn server_owned_fields_in_a_manifest_are_not_sent() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let bundle = desired("web", "d1", DeployOptions::default());
    let mut exported = default_config_map("settings");
    exported["metadata"]["resourceVersion"] = json!("12345");
    exported["metadata"]["uid"] = json!("0f0f");
    exported["metadata"]["managedFields"] = json!([{"manager": "kubectl"}]);
    exported["status"] = json!({"phase": "whatever"});
    let report = apply(&mut driver, &bundle, &[exported]).await;
    assert_eq!(report.state, BundleState::Ready, "{report:?}");
}
