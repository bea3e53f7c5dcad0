//! Object ownership across the Kubernetes driver's whole loop (apply, refresh, drift, new
//! revisions, removal, restart) against the stand-in API server: an object labelled as one
//! bundle's is never taken over, corrected, pruned or deleted by another.

mod support;

use flotilla_agent::{BUNDLE_LABEL, ClusterDriver, kubernetes::KubernetesCluster};
use flotilla_api::{BundleState, agent::DeployOptions};
use serde_json::{Value, json};
use support::{
    driver::{apply, config_map, desired, report},
    stand_in_apiserver::StandInApiServer,
};

fn shared(api: &StandInApiServer) -> Value {
    api.get("v1", "ConfigMap", Some("default"), "shared")
        .expect("the ConfigMap shared exists")
}

/// PATCH requests (applies) sent for the ConfigMap `shared`.
fn patches_of_shared(api: &StandInApiServer) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/configmaps/shared"))
        .count()
}

/// The first bundle still has its object as it applied it, and reports Ready.
async fn first_bundle_keeps_its_object(api: &StandInApiServer, driver: &mut KubernetesCluster) {
    let live = shared(api);
    assert_eq!(live["metadata"]["labels"][BUNDLE_LABEL], "a", "{live}");
    assert_eq!(live["data"]["owner"], "a's value", "{live}");
    let a = report(driver, "a").await;
    assert_eq!(a.state, BundleState::Ready, "{a:?}");
}

/// The second bundle reports Error naming the bundle that owns the object.
async fn second_bundle_reports_the_owner(driver: &mut KubernetesCluster) {
    let b = report(driver, "b").await;
    assert_eq!(b.state, BundleState::Error, "{b:?}");
    let message = b.message.clone().unwrap_or_default();
    assert!(
        message.contains("ConfigMap default/shared already belongs to bundle a"),
        "{b:?}"
    );
    assert!(
        b.problems.iter().any(|p| p.name == "shared"),
        "the object is named among the problems: {b:?}"
    );
}

#[tokio::test]
async fn a_second_bundle_never_takes_over_an_object_through_apply_refresh_drift_and_deletion() {
    let api = StandInApiServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let mut driver = KubernetesCluster::new(api.client(), 30, Some(state.path()));
    let a = desired("a", "a1", DeployOptions::default());
    let report_a = apply(
        &mut driver,
        &a,
        &[config_map("shared", json!({"owner": "a's value"}))],
    )
    .await;
    assert_eq!(report_a.state, BundleState::Ready, "{report_a:?}");
    let patches_by_a = patches_of_shared(&api);

    // B lists the same object, next to one of its own.
    let b = desired("b", "b1", DeployOptions::default());
    let b_manifests = [
        config_map("shared", json!({"owner": "b's value"})),
        config_map("b-own", json!({"k": "v"})),
    ];
    apply(&mut driver, &b, &b_manifests).await;
    second_bundle_reports_the_owner(&mut driver).await;
    first_bundle_keeps_its_object(&api, &mut driver).await;
    let inventory = &driver.applied_bundles()["b"];
    assert!(
        inventory
            .manifests
            .iter()
            .all(|m| m["metadata"]["name"] != "shared"),
        "an object B could not take is not recorded as B's"
    );
    assert_eq!(inventory.contested.len(), 1);

    // The agent's loop: health refreshes and drift passes, several times over. B's Error lasts
    // (the same report, so nothing new to send), and the object stays A's.
    for pass in 0..3 {
        for check_drift in [false, true] {
            driver.refresh(check_drift).await;
            second_bundle_reports_the_owner(&mut driver).await;
            first_bundle_keeps_its_object(&api, &mut driver).await;
            assert_eq!(
                patches_of_shared(&api),
                patches_by_a,
                "pass {pass}, drift {check_drift}: nobody applied the shared object again"
            );
        }
    }
    // A restart reloads the inventory: still not B's.
    drop(driver);
    let mut driver = KubernetesCluster::new(api.client(), 30, Some(state.path()));
    driver.refresh(true).await;
    second_bundle_reports_the_owner(&mut driver).await;
    first_bundle_keeps_its_object(&api, &mut driver).await;

    // A new revision of B still listing it: still refused.
    let b2 = desired("b", "b2", DeployOptions::default());
    apply(&mut driver, &b2, &b_manifests).await;
    second_bundle_reports_the_owner(&mut driver).await;
    assert_eq!(patches_of_shared(&api), patches_by_a);

    // Deleting B deletes B's own object and leaves A's alone.
    driver.remove("b").await.expect("B removed");
    assert!(
        api.get("v1", "ConfigMap", Some("default"), "b-own")
            .is_none()
    );
    driver.refresh(false).await;
    driver.refresh(true).await;
    first_bundle_keeps_its_object(&api, &mut driver).await;
    assert!(driver.reports().await.iter().all(|r| r.bundle != "b"));
}

#[tokio::test]
async fn an_object_another_bundle_holds_is_applied_once_that_bundle_lets_go() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let a = desired("a", "a1", DeployOptions::default());
    apply(
        &mut driver,
        &a,
        &[config_map("shared", json!({"owner": "a's value"}))],
    )
    .await;
    let b = desired("b", "b1", DeployOptions::default());
    apply(
        &mut driver,
        &b,
        &[config_map("shared", json!({"owner": "b's value"}))],
    )
    .await;
    second_bundle_reports_the_owner(&mut driver).await;
    driver.remove("a").await.expect("A removed");
    assert!(
        api.get("v1", "ConfigMap", Some("default"), "shared")
            .is_none(),
        "A deleted its object"
    );
    assert!(driver.refresh(false).await, "B's report changed");
    let report_b = report(&mut driver, "b").await;
    assert_eq!(report_b.state, BundleState::Ready, "{report_b:?}");
    let live = shared(&api);
    assert_eq!(live["metadata"]["labels"][BUNDLE_LABEL], "b");
    assert_eq!(live["data"]["owner"], "b's value");
    assert!(driver.applied_bundles()["b"].contested.is_empty());
    // Now B's own: deleting B deletes it.
    driver.remove("b").await.expect("B removed");
    assert!(
        api.get("v1", "ConfigMap", Some("default"), "shared")
            .is_none()
    );
}

#[tokio::test]
async fn drift_correction_does_not_take_back_an_object_relabelled_as_another_bundles() {
    let api = StandInApiServer::start().await;
    let mut driver = KubernetesCluster::new(api.client(), 30, None);
    let a = desired("a", "a1", DeployOptions::default());
    apply(
        &mut driver,
        &a,
        &[config_map("shared", json!({"owner": "a's value"}))],
    )
    .await;
    // Someone (an older agent, a person) relabels it as bundle c's and changes it.
    api.edit("v1", "ConfigMap", Some("default"), "shared", |object| {
        object["metadata"]["labels"][BUNDLE_LABEL] = json!("c");
        object["data"]["owner"] = json!("c's value");
    });
    let patches = patches_of_shared(&api);
    for _ in 0..2 {
        driver.refresh(true).await;
        let report_a = report(&mut driver, "a").await;
        assert_eq!(report_a.state, BundleState::Error, "{report_a:?}");
        assert!(
            report_a
                .message
                .unwrap_or_default()
                .contains("already belongs to bundle c")
        );
        let live = shared(&api);
        assert_eq!(live["metadata"]["labels"][BUNDLE_LABEL], "c");
        assert_eq!(live["data"]["owner"], "c's value");
    }
    assert_eq!(patches_of_shared(&api), patches, "never applied again");
    driver.remove("a").await.expect("A removed");
    assert!(
        api.get("v1", "ConfigMap", Some("default"), "shared")
            .is_some(),
        "not A's any more: not deleted with A"
    );
}
