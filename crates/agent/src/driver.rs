//! The interface between the agent loop and a cluster.

use std::{collections::BTreeMap, future::Future};

use flotilla_api::{
    ClusterFacts,
    agent::{BundleReport, DesiredBundle},
};
use serde_json::Value;

/// A cluster the agent manages. The loop calls these between syncs; implementations apply,
/// prune and judge health, and remember what they applied.
pub trait ClusterDriver: Send {
    /// Facts about the cluster (versions, nodes, capacity).
    fn facts(&mut self) -> impl Future<Output = ClusterFacts> + Send;

    /// Applies a bundle's customized manifests (already stamped with ownership labels), pruning
    /// objects a previous deployment of the bundle had that these no longer contain.
    fn apply(
        &mut self,
        bundle: &DesiredBundle,
        manifests: Vec<Value>,
    ) -> impl Future<Output = ()> + Send;

    /// Removes a bundle's objects (or only forgets them, with `keep_resources`).
    fn remove(&mut self, bundle: &str) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// The current state of every applied bundle.
    fn reports(&mut self) -> impl Future<Output = Vec<BundleReport>> + Send;

    /// What is applied: bundle name → deployment id.
    fn applied(&self) -> BTreeMap<String, String>;

    /// Re-reads what was applied: health of bundles not yet Ready, and with `check_drift` every
    /// object compared with its manifest (corrected or reported, per the bundle's drift policy).
    /// Returns whether any report changed.
    fn refresh(&mut self, check_drift: bool) -> impl Future<Output = bool> + Send {
        let _ = check_drift;
        async { false }
    }
}
