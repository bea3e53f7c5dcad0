//! `KubernetesCluster`: the agent's driver for a real cluster, in plain kube-rs.
//!
//! - Discovery per apiVersion (`pinned_kind`), cached; unknown kinds are errors on the bundle.
//! - Server-side apply with field manager `flotilla`, forced; Namespaces and CRDs first, custom
//!   resources once their CRD is Established (otherwise they wait and are retried).
//! - An inventory of what each bundle applied (kept in the state dir): a new revision prunes the
//!   objects it no longer has, deleting only objects that still carry the bundle's label.
//! - Health per kind and drift against the applied manifests (`health`, `drift`), on refresh.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
};

use flotilla_api::{
    BundleState, ClusterFacts, DriftMode, DriftPolicy, NodeCounts,
    agent::{BundleReport, DesiredBundle, ObjectProblem},
};
use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams},
    core::GroupVersionKind,
    discovery::{ApiCapabilities, ApiResource, Scope},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    drift::{diff, ignored_paths, strip},
    health::{Health, crd_established, judge},
};
use crate::{
    BUNDLE_LABEL, driver::ClusterDriver, simulated::MAX_PROBLEMS, state_dir::write_atomic,
};

/// Field manager of every apply.
pub const FIELD_MANAGER: &str = "flotilla";
/// The file in the state dir that remembers what each bundle applied.
pub const INVENTORY_FILE: &str = "kubernetes-inventory.json";

/// One object a bundle applied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    fn of(manifest: &Value) -> ObjectRef {
        let text = |pointer: &str| {
            manifest
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        ObjectRef {
            api_version: text("/apiVersion"),
            kind: text("/kind"),
            namespace: manifest
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .filter(|namespace| !namespace.is_empty())
                .map(str::to_string),
            name: text("/metadata/name"),
        }
    }

    fn describe(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{} {namespace}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// What one bundle applied, and how it is doing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedBundle {
    pub deployment: String,
    #[serde(default)]
    pub keep_resources: bool,
    #[serde(default)]
    pub drift: DriftPolicy,
    /// The manifests as applied (namespaces resolved), the reference for drift.
    pub manifests: Vec<Value>,
    /// Manifests not applied yet: custom resources waiting for their CRD.
    #[serde(default)]
    pub waiting: Vec<Value>,
    /// Manifests whose apply failed: applied again on every refresh until they succeed.
    #[serde(default)]
    pub failed: Vec<Value>,
    /// Objects a prune or removal could not delete yet.
    #[serde(default)]
    pub pending_deletes: Vec<ObjectRef>,
    pub report: BundleReport,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inventory {
    bundles: BTreeMap<String, AppliedBundle>,
}

/// What applying a set of manifests did.
struct ApplyResult {
    outcomes: Vec<(ObjectRef, Outcome)>,
    /// Custom resources waiting for their CRD.
    waiting: Vec<Value>,
    /// Manifests the API refused (or whose kind it does not serve).
    failed: Vec<Value>,
}

/// The API groups the CRDs among `manifests` define.
fn crd_groups(manifests: &[Value]) -> Vec<String> {
    manifests
        .iter()
        .filter(|m| is_crd(m))
        .filter_map(|m| {
            m.pointer("/spec/group")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

/// The bundle an object is labelled as belonging to.
fn owner(object: &Value) -> Option<&str> {
    object
        .pointer(&format!(
            "/metadata/labels/{}",
            BUNDLE_LABEL.replace('/', "~1")
        ))
        .and_then(Value::as_str)
}

/// Kinds the agent never deletes: deleting them deletes what is inside or of them.
fn is_kept_kind(target: &ObjectRef) -> bool {
    (target.kind == "Namespace" && target.api_version == "v1")
        || (target.kind == "CustomResourceDefinition"
            && target.api_version.starts_with("apiextensions.k8s.io/"))
}

/// Kinds whose objects may disappear by design (finished Jobs with a TTL, completed Pods):
/// gone is not drift, and they are not created again.
fn may_vanish(target: &ObjectRef) -> bool {
    (target.kind == "Job" && target.api_version.starts_with("batch/"))
        || (target.kind == "Pod" && target.api_version == "v1")
}

/// Removes what the server owns from a manifest (a copy from `kubectl get -o yaml` carries
/// them): a `resourceVersion` or `uid` would be a precondition, `managedFields` is refused.
fn clean(manifest: &mut Value) {
    if let Some(object) = manifest.as_object_mut() {
        object.remove("status");
    }
    if let Some(metadata) = manifest.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in [
            "resourceVersion",
            "uid",
            "managedFields",
            "creationTimestamp",
            "generation",
            "selfLink",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            metadata.remove(key);
        }
        if metadata.get("namespace").and_then(Value::as_str) == Some("") {
            metadata.remove("namespace");
        }
    }
}

/// The outcome of one object in an apply or refresh.
enum Outcome {
    Healthy,
    Problem { state: BundleState, message: String },
}

pub struct KubernetesCluster {
    client: Client,
    inventory: Inventory,
    file: Option<PathBuf>,
    /// Resolved kinds by (apiVersion, kind).
    kinds: HashMap<(String, String), (ApiResource, ApiCapabilities)>,
    interval_seconds: u32,
}

impl KubernetesCluster {
    /// A driver over `client`; with `state_dir`, the inventory is loaded from and saved there.
    pub fn new(
        client: Client,
        interval_seconds: u32,
        state_dir: Option<&std::path::Path>,
    ) -> KubernetesCluster {
        let file = state_dir.map(|dir| dir.join(INVENTORY_FILE));
        let inventory = file
            .as_ref()
            .and_then(|path| std::fs::read(path).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        KubernetesCluster {
            client,
            inventory,
            file,
            kinds: HashMap::new(),
            interval_seconds,
        }
    }

    /// What each bundle applied (for tests and `describe`-style output).
    pub fn applied_bundles(&self) -> &BTreeMap<String, AppliedBundle> {
        &self.inventory.bundles
    }

    fn save(&self) {
        if let Some(path) = &self.file
            && let Ok(bytes) = serde_json::to_vec(&self.inventory)
            // Mode 0600: the inventory holds the bundles' manifests, Secrets included.
            && let Err(error) = write_atomic(path, &bytes, true)
        {
            tracing::warn!(%error, "could not save the Kubernetes inventory");
        }
    }

    /// The API resource of a manifest's kind; `None` when the cluster does not serve it.
    async fn resolve(
        &mut self,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<(ApiResource, ApiCapabilities)>, String> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(found) = self.kinds.get(&key) {
            return Ok(Some(found.clone()));
        }
        let (group, version) = match api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok(found) => {
                self.kinds.insert(key, found.clone());
                Ok(Some(found))
            }
            Err(kube::Error::Discovery(_)) => Ok(None),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(error) => Err(format!("discover {kind} ({api_version}): {error}")),
        }
    }

    fn api(
        &self,
        resource: &ApiResource,
        capabilities: &ApiCapabilities,
        namespace: Option<&str>,
    ) -> Api<DynamicObject> {
        match (&capabilities.scope, namespace) {
            (Scope::Namespaced, Some(namespace)) => {
                Api::namespaced_with(self.client.clone(), namespace, resource)
            }
            _ => Api::all_with(self.client.clone(), resource),
        }
    }

    /// Applies one manifest; returns the live object, or why it could not be applied.
    async fn apply_one(
        &mut self,
        manifest: &mut Value,
        ignore: &[&str],
        existed: bool,
    ) -> Result<Option<Value>, String> {
        let target = ObjectRef::of(manifest);
        let Some((resource, capabilities)) =
            self.resolve(&target.api_version, &target.kind).await?
        else {
            return Ok(None);
        };
        clean(manifest);
        let namespace = match capabilities.scope {
            Scope::Namespaced => {
                let namespace = target.namespace.clone().unwrap_or_else(|| "default".into());
                manifest["metadata"]["namespace"] = Value::String(namespace.clone());
                Some(namespace)
            }
            Scope::Cluster => {
                if let Some(metadata) = manifest.get_mut("metadata").and_then(Value::as_object_mut)
                {
                    metadata.remove("namespace");
                }
                None
            }
        };
        let mut body = manifest.clone();
        if existed && !ignore.is_empty() {
            // Fields other controllers own are left to them once the object exists.
            strip(&mut body, ignore);
        }
        let object: DynamicObject = serde_json::from_value(body)
            .map_err(|e| format!("{}: not a Kubernetes object: {e}", target.describe()))?;
        let api = self.api(&resource, &capabilities, namespace.as_deref());
        if !existed {
            // Never take over an object another bundle owns: two bundles would fight over it.
            let ours = owner(manifest).map(str::to_string);
            if let Ok(Some(live)) = api.get_opt(&target.name).await
                && let Some(other) = owner(&serde_json::to_value(&live).unwrap_or_default())
                && Some(other) != ours.as_deref()
            {
                return Err(format!(
                    "{} already belongs to bundle {other}; an object can be in one bundle only",
                    ObjectRef::of(manifest).describe()
                ));
            }
        }
        // Strict: a misspelt field is an error now, not a silent drop and endless drift.
        let params = PatchParams::apply(FIELD_MANAGER)
            .force()
            .validation_strict();
        match api
            .patch(&target.name, &params, &Patch::Apply(&object))
            .await
        {
            Ok(live) => Ok(Some(serde_json::to_value(live).unwrap_or(Value::Null))),
            Err(kube::Error::Api(status)) => Err(format!(
                "{}: {} ({})",
                ObjectRef::of(manifest).describe(),
                status.message,
                status.code
            )),
            Err(error) => Err(format!("{}: {error}", ObjectRef::of(manifest).describe())),
        }
    }

    /// The live object, `None` when it is gone.
    async fn get(&mut self, target: &ObjectRef) -> Result<Option<Value>, String> {
        let Some((resource, capabilities)) =
            self.resolve(&target.api_version, &target.kind).await?
        else {
            return Ok(None);
        };
        let api = self.api(&resource, &capabilities, target.namespace.as_deref());
        match api.get_opt(&target.name).await {
            Ok(found) => Ok(found.map(|o| serde_json::to_value(o).unwrap_or(Value::Null))),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(error) => Err(format!("read {}: {error}", target.describe())),
        }
    }

    /// Deletes an object the bundle owns; an object that lost the bundle's label (someone took it
    /// over) or is already gone is left alone.
    async fn delete_owned(&mut self, bundle: &str, target: &ObjectRef) -> Result<(), String> {
        if is_kept_kind(target) {
            // Deleting a Namespace or a CRD deletes everything in it or of it, other bundles'
            // and other people's objects included: they stay, as Helm keeps CRDs.
            tracing::info!(object = %target.describe(), "kept: Namespaces and CustomResourceDefinitions are never deleted by the agent");
            return Ok(());
        }
        let Some(live) = self.get(target).await? else {
            return Ok(());
        };
        let owner = live
            .pointer(&format!(
                "/metadata/labels/{}",
                BUNDLE_LABEL.replace('/', "~1")
            ))
            .and_then(Value::as_str);
        if owner != Some(bundle) {
            tracing::info!(object = %target.describe(), "not deleting: no longer labelled as this bundle's");
            return Ok(());
        }
        let Some((resource, capabilities)) =
            self.resolve(&target.api_version, &target.kind).await?
        else {
            return Ok(());
        };
        let api = self.api(&resource, &capabilities, target.namespace.as_deref());
        match api.delete(&target.name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(format!("delete {}: {error}", target.describe())),
        }
    }

    /// Objects labelled as `bundle`'s on the kinds it uses, found by label selector per kind
    /// (never by listing the whole cluster): the fallback when the inventory was lost.
    async fn labelled(&mut self, bundle: &str, kinds: &[(String, String)]) -> Vec<ObjectRef> {
        let mut found = Vec::new();
        for (api_version, kind) in kinds {
            let Ok(Some((resource, capabilities))) = self.resolve(api_version, kind).await else {
                continue;
            };
            if !capabilities.supports_operation("list") {
                continue;
            }
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
            let params = ListParams::default().labels(&format!("{BUNDLE_LABEL}={bundle}"));
            if let Ok(list) = api.list(&params).await {
                found.extend(list.items.iter().map(|object| ObjectRef {
                    api_version: api_version.clone(),
                    kind: kind.clone(),
                    namespace: object.metadata.namespace.clone(),
                    name: object.metadata.name.clone().unwrap_or_default(),
                }));
            }
        }
        found
    }

    /// Applies `manifests` in order (Namespaces, CRDs, the rest, custom resources last).
    /// `crd_groups` are the API groups the bundle's own CRDs define: their custom resources wait
    /// for them instead of failing as unknown kinds.
    async fn apply_all(
        &mut self,
        manifests: &mut [Value],
        drift: &DriftPolicy,
        existing: &[ObjectRef],
        crd_groups: &[String],
    ) -> ApplyResult {
        manifests.sort_by_key(apply_rank);
        let mut outcomes = Vec::new();
        let mut waiting = Vec::new();
        let mut failed = Vec::new();
        for manifest in manifests.iter_mut() {
            let target = ObjectRef::of(manifest);
            let ignore = ignored_paths(drift, manifest);
            let existed = existing.iter().any(|e| same_object(e, &target));
            match self.apply_one(manifest, &ignore, existed).await {
                Ok(Some(live)) => {
                    let outcome = outcome_of(&target, &live);
                    outcomes.push((ObjectRef::of(manifest), outcome));
                }
                Ok(None) => {
                    let group = target
                        .api_version
                        .split_once('/')
                        .map(|(g, _)| g)
                        .unwrap_or("");
                    if crd_groups.iter().any(|g| g == group) {
                        waiting.push(manifest.clone());
                        outcomes.push((
                            target.clone(),
                            Outcome::Problem {
                                state: BundleState::NotReady,
                                message: format!(
                                    "waiting for the CustomResourceDefinition of {} ({}) to be established",
                                    target.kind, target.api_version
                                ),
                            },
                        ));
                    } else {
                        failed.push(manifest.clone());
                        outcomes.push((
                            target.clone(),
                            Outcome::Problem {
                                state: BundleState::Error,
                                message: format!(
                                    "unknown kind {} (apiVersion {}): the cluster does not serve it; install its CustomResourceDefinition or fix the apiVersion",
                                    target.kind, target.api_version
                                ),
                            },
                        ));
                    }
                }
                Err(message) => {
                    failed.push(manifest.clone());
                    outcomes.push((
                        target,
                        Outcome::Problem {
                            state: BundleState::Error,
                            message,
                        },
                    ));
                }
            }
            if is_crd(manifest) {
                // A CRD changes what the cluster serves: forget cached misses for its group.
                self.kinds.clear();
            }
        }
        ApplyResult {
            outcomes,
            waiting,
            failed,
        }
    }

    /// Re-reads a bundle's objects: health always; drift (corrected or reported, per the
    /// bundle's policy) when `check_drift`. Returns the new report.
    async fn refresh_bundle(&mut self, name: &str, check_drift: bool) -> Option<BundleReport> {
        let mut applied = self.inventory.bundles.get(name)?.clone();
        let mut outcomes = Vec::new();
        let mut corrected = Vec::new();
        let groups = crd_groups(&applied.manifests);
        // Custom resources waiting for their CRD: try again.
        if !applied.waiting.is_empty() {
            let mut waiting = std::mem::take(&mut applied.waiting);
            let result = self
                .apply_all(&mut waiting, &applied.drift, &[], &groups)
                .await;
            for manifest in waiting {
                let target = ObjectRef::of(&manifest);
                if !result
                    .waiting
                    .iter()
                    .any(|w| same_object(&ObjectRef::of(w), &target))
                {
                    applied.manifests.push(manifest);
                }
            }
            outcomes.extend(result.outcomes);
            applied.waiting = result.waiting;
            applied.failed.extend(result.failed);
        }
        // Objects the API refused: apply them again (reading them would judge the old object).
        if !applied.failed.is_empty() {
            let mut failed = std::mem::take(&mut applied.failed);
            let existing: Vec<ObjectRef> = applied.manifests.iter().map(ObjectRef::of).collect();
            let result = self
                .apply_all(&mut failed, &applied.drift, &existing, &groups)
                .await;
            outcomes.extend(result.outcomes);
            applied.failed = result.failed;
            applied.waiting.extend(result.waiting);
        }
        // Deletes that failed: try again.
        for target in std::mem::take(&mut applied.pending_deletes) {
            if let Err(message) = self.delete_owned(name, &target).await {
                outcomes.push((
                    target.clone(),
                    Outcome::Problem {
                        state: BundleState::Error,
                        message,
                    },
                ));
                applied.pending_deletes.push(target);
            }
        }
        let manifests = applied.manifests.clone();
        for manifest in &manifests {
            let target = ObjectRef::of(manifest);
            if outcomes.iter().any(|(t, _)| same_object(t, &target)) {
                continue;
            }
            let live = match self.get(&target).await {
                Ok(live) => live,
                Err(message) => {
                    outcomes.push((
                        target,
                        Outcome::Problem {
                            state: BundleState::Error,
                            message,
                        },
                    ));
                    continue;
                }
            };
            let ignore = ignored_paths(&applied.drift, manifest);
            let drifted: Vec<String> = match &live {
                None if may_vanish(&target) => Vec::new(),
                None => vec!["(deleted)".into()],
                Some(live) if check_drift => diff(manifest, live, &ignore),
                Some(_) => Vec::new(),
            };
            if drifted.is_empty() {
                let outcome = match live {
                    Some(live) => outcome_of(&target, &live),
                    // A finished Job or Pod removed by its TTL did its work.
                    None => Outcome::Healthy,
                };
                outcomes.push((target.clone(), outcome));
                continue;
            }
            match applied.drift.mode {
                DriftMode::Correct => {
                    let mut manifest = manifest.clone();
                    match self.apply_one(&mut manifest, &ignore, live.is_some()).await {
                        Ok(Some(live)) => {
                            corrected.push(format!(
                                "{} ({})",
                                target.describe(),
                                drifted.join(", ")
                            ));
                            outcomes.push((target.clone(), outcome_of(&target, &live)));
                        }
                        Ok(None) => outcomes.push((
                            target.clone(),
                            Outcome::Problem {
                                state: BundleState::Error,
                                message: format!(
                                    "unknown kind {} ({})",
                                    target.kind, target.api_version
                                ),
                            },
                        )),
                        Err(message) => outcomes.push((
                            target,
                            Outcome::Problem {
                                state: BundleState::Error,
                                message,
                            },
                        )),
                    }
                }
                DriftMode::Report => outcomes.push((
                    target,
                    Outcome::Problem {
                        state: BundleState::Modified,
                        message: format!("drifted: {}", drifted.join(", ")),
                    },
                )),
            }
        }
        let mut report = summarize(name, &applied.deployment, &outcomes);
        if !corrected.is_empty() {
            let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
            let what = format!("corrected drift at {at}: {}", corrected.join("; "));
            tracing::info!(bundle = %name, "{what}");
            // The bundle's state says how it is now; the message says what was done.
            if report.message.is_none() {
                report.message = Some(what);
            }
        } else if report.message.is_none()
            && let Some(previous) = &applied.report.message
            && previous.starts_with("corrected drift at ")
        {
            // The last correction stays reported (also to a server that was unreachable when it
            // happened) until the bundle's next revision or next correction.
            report.message = Some(previous.clone());
        }
        applied.report = report.clone();
        self.inventory.bundles.insert(name.to_string(), applied);
        Some(report)
    }
}

fn same_object(a: &ObjectRef, b: &ObjectRef) -> bool {
    a.kind == b.kind
        && a.name == b.name
        && a.api_version.split_once('/').map(|(g, _)| g).unwrap_or("")
            == b.api_version.split_once('/').map(|(g, _)| g).unwrap_or("")
        && (a.namespace == b.namespace || a.namespace.is_none() || b.namespace.is_none())
}

fn is_crd(manifest: &Value) -> bool {
    manifest.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition")
        && manifest
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("apiextensions.k8s.io/"))
}

/// Apply order: Namespaces, CRDs, then built-in kinds, custom resources last.
fn apply_rank(manifest: &Value) -> u8 {
    let kind = manifest
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let api_version = manifest
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind == "Namespace" && api_version == "v1" {
        0
    } else if is_crd(manifest) {
        1
    } else if is_builtin_group(api_version.split_once('/').map(|(g, _)| g).unwrap_or("")) {
        2
    } else {
        3
    }
}

fn is_builtin_group(group: &str) -> bool {
    group.is_empty() || !group.contains('.') || group.ends_with(".k8s.io")
}

fn outcome_of(target: &ObjectRef, live: &Value) -> Outcome {
    let crd_waiting = is_crd(live) && !crd_established(live);
    match judge(live) {
        Health::Ready if !crd_waiting => Outcome::Healthy,
        Health::Ready => Outcome::Problem {
            state: BundleState::NotReady,
            message: format!("{}: not established yet", target.describe()),
        },
        Health::NotReady(why) => Outcome::Problem {
            state: BundleState::NotReady,
            message: why,
        },
        Health::Failed(why) => Outcome::Problem {
            state: BundleState::Error,
            message: why,
        },
    }
}

/// The bundle's report from its objects' outcomes: the worst state wins (Error, Modified,
/// NotReady, Ready), with a bounded list of problem objects.
fn summarize(bundle: &str, deployment: &str, outcomes: &[(ObjectRef, Outcome)]) -> BundleReport {
    let rank = |state: BundleState| match state {
        BundleState::Error => 3,
        BundleState::Modified => 2,
        BundleState::NotReady => 1,
        _ => 0,
    };
    let mut state = BundleState::Ready;
    let mut problems = Vec::new();
    let mut more_problems = 0u32;
    let mut message = None;
    for (target, outcome) in outcomes {
        if let Outcome::Problem {
            state: problem,
            message: why,
        } = outcome
        {
            if rank(*problem) > rank(state) {
                state = *problem;
                message = Some(why.clone());
            }
            if problems.len() < MAX_PROBLEMS {
                problems.push(ObjectProblem {
                    kind: target.kind.clone(),
                    namespace: target.namespace.clone(),
                    name: target.name.clone(),
                    message: why.clone(),
                });
            } else {
                more_problems += 1;
            }
        }
    }
    BundleReport {
        bundle: bundle.to_string(),
        deployment: deployment.to_string(),
        state,
        message,
        problems,
        more_problems,
    }
}

impl ClusterDriver for KubernetesCluster {
    async fn facts(&mut self) -> ClusterFacts {
        let mut facts = ClusterFacts {
            agent_version: Some(env!("CARGO_PKG_VERSION").into()),
            sync_interval_seconds: Some(self.interval_seconds),
            ..ClusterFacts::default()
        };
        if let Ok(version) = self.client.apiserver_version().await {
            facts.kubernetes_version = Some(version.git_version);
        }
        let nodes: Api<Node> = Api::all(self.client.clone());
        if let Ok(list) = nodes.list(&ListParams::default()).await {
            let ready = list
                .items
                .iter()
                .filter(|node| {
                    node.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count();
            facts.nodes = Some(NodeCounts {
                total: list.items.len() as u32,
                ready: ready as u32,
            });
            let mut cpu_millis = 0u64;
            let mut pods = 0u64;
            for node in &list.items {
                if let Some(capacity) = node.status.as_ref().and_then(|s| s.capacity.as_ref()) {
                    if let Some(cpu) = capacity.get("cpu") {
                        cpu_millis += super::drift::parse_quantity(&cpu.0)
                            .map_or(0, |cores| (cores * 1000.0).round() as u64);
                    }
                    if let Some(count) = capacity.get("pods") {
                        pods += count.0.parse::<u64>().unwrap_or(0);
                    }
                }
            }
            if cpu_millis > 0 {
                facts
                    .capacity
                    .insert("cpu".into(), format_millis(cpu_millis));
            }
            if pods > 0 {
                facts.capacity.insert("pods".into(), pods.to_string());
            }
        }
        facts
    }

    async fn apply(&mut self, bundle: &DesiredBundle, mut manifests: Vec<Value>) {
        let previous = self.inventory.bundles.get(&bundle.name).cloned();
        let existing: Vec<ObjectRef> = previous
            .as_ref()
            .map(|p| p.manifests.iter().map(ObjectRef::of).collect())
            .unwrap_or_default();
        let groups = crd_groups(&manifests);
        let ApplyResult {
            outcomes,
            waiting,
            failed,
        } = self
            .apply_all(&mut manifests, &bundle.options.drift, &existing, &groups)
            .await;
        let applied: Vec<Value> = manifests
            .into_iter()
            .filter(|m| {
                !waiting
                    .iter()
                    .any(|w| same_object(&ObjectRef::of(w), &ObjectRef::of(m)))
            })
            .collect();
        // Prune what the previous revision had and this one does not.
        let mut prune_problems = Vec::new();
        let keep: Vec<ObjectRef> = applied
            .iter()
            .chain(waiting.iter())
            .map(ObjectRef::of)
            .collect();
        let stale: Vec<ObjectRef> = match &previous {
            Some(_) => existing
                .iter()
                .filter(|old| !keep.iter().any(|new| same_object(new, old)))
                .cloned()
                .collect(),
            None => {
                // No inventory (first apply, or it was lost): find leftovers by label, per kind.
                let kinds: Vec<(String, String)> = keep
                    .iter()
                    .map(|k| (k.api_version.clone(), k.kind.clone()))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                self.labelled(&bundle.name, &kinds)
                    .await
                    .into_iter()
                    .filter(|found| !keep.iter().any(|new| same_object(new, found)))
                    .collect()
            }
        };
        let mut pending_deletes = previous
            .as_ref()
            .map(|p| p.pending_deletes.clone())
            .unwrap_or_default();
        pending_deletes.retain(|old| !keep.iter().any(|new| same_object(new, old)));
        for target in stale {
            if pending_deletes.iter().any(|p| p == &target) {
                continue;
            }
            pending_deletes.push(target);
        }
        for target in std::mem::take(&mut pending_deletes) {
            if let Err(message) = self.delete_owned(&bundle.name, &target).await {
                pending_deletes.push(target.clone());
                prune_problems.push((
                    target,
                    Outcome::Problem {
                        state: BundleState::Error,
                        message,
                    },
                ));
            }
        }
        let mut all = outcomes;
        all.extend(prune_problems);
        let report = summarize(&bundle.name, &bundle.deployment, &all);
        self.inventory.bundles.insert(
            bundle.name.clone(),
            AppliedBundle {
                deployment: bundle.deployment.clone(),
                keep_resources: bundle.options.keep_resources,
                drift: bundle.options.drift.clone(),
                manifests: applied,
                waiting,
                failed,
                pending_deletes,
                report,
            },
        );
        self.save();
    }

    async fn remove(&mut self, bundle: &str) -> anyhow::Result<()> {
        let Some(applied) = self.inventory.bundles.get(bundle).cloned() else {
            return Ok(());
        };
        if !applied.keep_resources {
            let mut failures = Vec::new();
            // Reverse apply order: custom resources before their CRDs, Namespaces last.
            let mut targets: Vec<&Value> = applied.manifests.iter().collect();
            targets.sort_by_key(|m| std::cmp::Reverse(apply_rank(m)));
            for manifest in targets {
                if let Err(message) = self.delete_owned(bundle, &ObjectRef::of(manifest)).await {
                    failures.push(message);
                }
            }
            if !failures.is_empty() {
                anyhow::bail!("{}", failures.join("; "));
            }
        }
        self.inventory.bundles.remove(bundle);
        self.save();
        Ok(())
    }

    async fn reports(&mut self) -> Vec<BundleReport> {
        self.inventory
            .bundles
            .values()
            .map(|applied| applied.report.clone())
            .collect()
    }

    fn applied(&self) -> BTreeMap<String, String> {
        self.inventory
            .bundles
            .iter()
            .map(|(name, applied)| (name.clone(), applied.deployment.clone()))
            .collect()
    }

    async fn refresh(&mut self, check_drift: bool) -> bool {
        let names: Vec<String> = self.inventory.bundles.keys().cloned().collect();
        let mut changed = false;
        for name in names {
            let before = self.inventory.bundles.get(&name).map(|b| b.report.clone());
            let ready = before
                .as_ref()
                .is_some_and(|r| r.state == BundleState::Ready);
            let waiting = self
                .inventory
                .bundles
                .get(&name)
                .is_some_and(|b| !b.waiting.is_empty());
            if ready && !check_drift && !waiting {
                continue;
            }
            let after = self.refresh_bundle(&name, check_drift).await;
            changed |= after != before;
        }
        if changed {
            self.save();
        }
        changed
    }
}

fn format_millis(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}
