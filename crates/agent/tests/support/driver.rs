//! Builders for tests that drive the Kubernetes driver's loop functions directly (apply,
//! refresh, remove, reports), as the agent loop calls them.

use flotilla_agent::{ClusterDriver, kubernetes::KubernetesCluster, runner::stamp};
use flotilla_api::agent::{BundleReport, DeployOptions, DesiredBundle};
use serde_json::{Value, json};

/// A desired bundle as the server sends it; its digest is derived from `deployment`.
pub fn desired(name: &str, deployment: &str, options: DeployOptions) -> DesiredBundle {
    DesiredBundle {
        name: name.into(),
        deployment: deployment.into(),
        digest: format!("sha256:{deployment}"),
        options,
    }
}

/// Manifests as the agent loop hands them to the driver: stamped with the bundle's ownership.
pub fn stamped(bundle: &DesiredBundle, manifests: &[Value]) -> Vec<Value> {
    manifests
        .iter()
        .map(|manifest| {
            let mut manifest = manifest.clone();
            stamp(&mut manifest, bundle);
            manifest
        })
        .collect()
}

/// The driver's current report of `bundle`; panics when it has none.
pub async fn report(driver: &mut KubernetesCluster, bundle: &str) -> BundleReport {
    driver
        .reports()
        .await
        .into_iter()
        .find(|report| report.bundle == bundle)
        .unwrap_or_else(|| panic!("no report for {bundle}"))
}

/// Applies `manifests` as `bundle` and returns the bundle's report.
pub async fn apply(
    driver: &mut KubernetesCluster,
    bundle: &DesiredBundle,
    manifests: &[Value],
) -> BundleReport {
    driver.apply(bundle, stamped(bundle, manifests)).await;
    report(driver, &bundle.name).await
}

/// A ConfigMap in namespace `default`.
pub fn config_map(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": data})
}

/// A namespaced custom resource definition, `Widget` in `example.com`.
pub fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    })
}

/// A `Widget` custom resource.
pub fn widget() -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "default"}, "spec": {"size": 3}})
}
