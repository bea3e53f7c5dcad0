//! An in-memory cluster: objects "apply" instantly and are Ready, unless a manifest carries the
//! `flotilla.dev/simulate` annotation asking to fail (`fail`) or to stay not ready (`not-ready`).
//! With a file, its inventory survives agent restarts the way a real cluster's objects do, and
//! tests can read what is "on the cluster".

use std::{collections::BTreeMap, path::PathBuf};

use flotilla_api::{
    BundleState, ClusterFacts, NodeCounts,
    agent::{BundleReport, DesiredBundle, ObjectProblem},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    SIMULATE_ANNOTATION,
    driver::ClusterDriver,
    runner::{bundle_manifests, failed_report},
    state_dir::write_atomic,
};

/// How many problem objects a report lists; the rest are counted.
pub const MAX_PROBLEMS: usize = 10;

/// One object on the simulated cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimObject {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimBundle {
    pub deployment: String,
    pub keep_resources: bool,
    pub objects: Vec<SimObject>,
    pub report: BundleReport,
}

/// Everything on the simulated cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimInventory {
    pub bundles: BTreeMap<String, SimBundle>,
    /// Objects left behind by removed bundles that said `keepResources`.
    pub kept: Vec<SimObject>,
}

impl SimInventory {
    /// Every object on the cluster.
    pub fn objects(&self) -> Vec<SimObject> {
        let mut objects: Vec<SimObject> = self
            .bundles
            .values()
            .flat_map(|b| b.objects.iter().cloned())
            .chain(self.kept.iter().cloned())
            .collect();
        objects.sort();
        objects
    }
}

pub struct SimulatedCluster {
    inventory: SimInventory,
    file: Option<PathBuf>,
    nodes: u32,
    interval_seconds: u32,
}

impl SimulatedCluster {
    /// A cluster with `nodes` nodes; with `file`, its inventory is loaded from and saved there.
    pub fn new(nodes: u32, interval_seconds: u32, file: Option<PathBuf>) -> SimulatedCluster {
        let inventory = file
            .as_ref()
            .and_then(|path| std::fs::read(path).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        SimulatedCluster {
            inventory,
            file,
            nodes,
            interval_seconds,
        }
    }

    pub fn inventory(&self) -> &SimInventory {
        &self.inventory
    }

    fn save(&self) {
        if let Some(path) = &self.file
            && let Ok(bytes) = serde_json::to_vec_pretty(&self.inventory)
            && let Err(error) = write_atomic(path, &bytes, false)
        {
            tracing::warn!(%error, "could not save the simulated cluster inventory");
        }
    }
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn sim_object(manifest: &Value) -> SimObject {
    SimObject {
        api_version: text(manifest, "/apiVersion").unwrap_or_default().into(),
        kind: text(manifest, "/kind").unwrap_or_default().into(),
        namespace: text(manifest, "/metadata/namespace").map(str::to_string),
        name: text(manifest, "/metadata/name").unwrap_or_default().into(),
        labels: manifest
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Judges a bundle's manifests the way the simulated cluster does.
pub fn simulate(bundle: &DesiredBundle, manifests: &[Value]) -> BundleReport {
    let mut failed = Vec::new();
    let mut not_ready = Vec::new();
    for manifest in manifests {
        let behaviour = manifest
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(SIMULATE_ANNOTATION))
            .and_then(Value::as_str);
        let object = sim_object(manifest);
        let problem = |message: &str| ObjectProblem {
            kind: object.kind.clone(),
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            message: message.into(),
        };
        match behaviour {
            Some("fail") => failed.push(problem("simulated apply failure")),
            Some("not-ready") => not_ready.push(problem("simulated: not ready")),
            _ => {}
        }
    }
    let (state, problems, message) = if !failed.is_empty() {
        let first = &failed[0];
        let message = format!(
            "apply failed for {}/{}: simulated apply failure",
            first.kind, first.name
        );
        (BundleState::Error, failed, Some(message))
    } else if !not_ready.is_empty() {
        let message = format!("{} object(s) not ready", not_ready.len());
        (BundleState::NotReady, not_ready, Some(message))
    } else {
        (BundleState::Ready, Vec::new(), None)
    };
    let more_problems = problems.len().saturating_sub(MAX_PROBLEMS) as u32;
    BundleReport {
        bundle: bundle.name.clone(),
        deployment: bundle.deployment.clone(),
        state,
        message,
        problems: problems.into_iter().take(MAX_PROBLEMS).collect(),
        more_problems,
    }
}

/// What an agent driving a [`SimulatedCluster`] reports for a bundle with this (verified) content:
/// the manifests the agent would apply ([`bundle_manifests`]: customized for the cluster) judged
/// by [`simulate`], or the agent's Error report when customization fails. The simulator judges
/// its clusters with this, so `flotilla sim` fails where a real agent does.
pub fn simulate_content(bundle: &DesiredBundle, content: &[u8]) -> BundleReport {
    match bundle_manifests(bundle, content) {
        Ok(manifests) => simulate(bundle, &manifests),
        Err(message) => failed_report(bundle, message),
    }
}

impl ClusterDriver for SimulatedCluster {
    async fn facts(&mut self) -> ClusterFacts {
        ClusterFacts {
            agent_version: Some(env!("CARGO_PKG_VERSION").into()),
            kubernetes_version: Some("v1.31.0-sim".into()),
            nodes: Some(NodeCounts {
                total: self.nodes,
                ready: self.nodes,
            }),
            capacity: BTreeMap::from([
                ("cpu".into(), (4 * self.nodes).to_string()),
                ("memory".into(), format!("{}Gi", 16 * self.nodes)),
                ("pods".into(), (110 * self.nodes).to_string()),
            ]),
            sync_interval_seconds: Some(self.interval_seconds),
        }
    }

    async fn apply(&mut self, bundle: &DesiredBundle, manifests: Vec<Value>) {
        let report = simulate(bundle, &manifests);
        // A failed apply leaves the previous objects in place, as a failed server-side apply
        // would; otherwise the new set replaces the old one, pruning what it no longer has.
        let objects = if report.state == BundleState::Error {
            self.inventory
                .bundles
                .get(&bundle.name)
                .map(|b| b.objects.clone())
                .unwrap_or_default()
        } else {
            manifests.iter().map(sim_object).collect()
        };
        self.inventory.bundles.insert(
            bundle.name.clone(),
            SimBundle {
                deployment: bundle.deployment.clone(),
                keep_resources: bundle.options.keep_resources,
                objects,
                report,
            },
        );
        self.save();
    }

    async fn remove(&mut self, bundle: &str) -> anyhow::Result<()> {
        if let Some(removed) = self.inventory.bundles.remove(bundle)
            && removed.keep_resources
        {
            self.inventory.kept.extend(removed.objects);
        }
        self.save();
        Ok(())
    }

    async fn reports(&mut self) -> Vec<BundleReport> {
        self.inventory
            .bundles
            .values()
            .map(|b| b.report.clone())
            .collect()
    }

    fn applied(&self) -> BTreeMap<String, String> {
        self.inventory
            .bundles
            .iter()
            .map(|(name, b)| (name.clone(), b.deployment.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use flotilla_api::agent::DeployOptions;
    use flotilla_core::digest::{canonical_content, content_digest};
    use serde_json::json;

    use super::*;

    fn bundle(content: &[u8], vars: &[(&str, &str)]) -> DesiredBundle {
        DesiredBundle {
            name: "web".into(),
            deployment: "d1".into(),
            digest: content_digest(content),
            options: DeployOptions {
                namespace: Some("apps".into()),
                vars: vars
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..DeployOptions::default()
            },
        }
    }

    fn content() -> Vec<u8> {
        canonical_content(&[json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "web",
                "annotations": {SIMULATE_ANNOTATION: "${cluster.labels.behaviour}"},
            },
            "data": {"tier": "${cluster.labels.tier}"},
        })])
    }

    #[test]
    fn a_placeholder_naming_a_missing_label_is_the_agents_error_report() {
        let content = content();
        let report = simulate_content(
            &bundle(&content, &[("cluster.labels.behaviour", "none")]),
            &content,
        );
        assert_eq!(report.state, BundleState::Error);
        assert_eq!(report.bundle, "web");
        assert_eq!(report.deployment, "d1");
        let message = report.message.unwrap_or_default();
        assert!(
            message.contains("${cluster.labels.tier}") && message.contains("no label \"tier\""),
            "{message}"
        );
    }

    #[test]
    fn the_simulated_cluster_judges_the_customized_manifests() {
        let content = content();
        let ready = simulate_content(
            &bundle(
                &content,
                &[
                    ("cluster.labels.tier", "gold"),
                    ("cluster.labels.behaviour", "none"),
                ],
            ),
            &content,
        );
        assert_eq!(ready.state, BundleState::Ready, "{ready:?}");
        let failing = simulate_content(
            &bundle(
                &content,
                &[
                    ("cluster.labels.tier", "gold"),
                    ("cluster.labels.behaviour", "fail"),
                ],
            ),
            &content,
        );
        assert_eq!(
            failing.state,
            BundleState::Error,
            "the annotation a placeholder filled in is seen: {failing:?}"
        );
        assert_eq!(failing.problems.len(), 1);
    }

    #[test]
    fn content_that_is_not_a_manifest_list_is_an_error_report() {
        let report = simulate_content(&bundle(b"{}", &[]), b"{}");
        assert_eq!(report.state, BundleState::Error);
        assert!(
            report
                .message
                .is_some_and(|m| m.contains("not a manifest list")),
        );
    }
}
