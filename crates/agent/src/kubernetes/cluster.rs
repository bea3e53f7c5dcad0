//! `KubernetesCluster`: the agent's driver for a real cluster, in plain kube-rs.
//!
//! - Discovery per apiVersion (`pinned_kind`), cached; unknown kinds are errors on the bundle.
//! - Server-side apply with field manager `flotilla`, forced; Namespaces and CRDs first, custom
//!   resources once their CRD reports `Established` (otherwise they wait and are retried).
//! - Ownership: every apply (first apply, retries, drift correction) reads the live object first
//!   and never takes over one labelled as another bundle's; such manifests are kept apart
//!   (`contested`), reported as Error naming the owner, and are never pruned or deleted.
//! - An inventory of what each bundle applied (kept in the state dir): a new revision prunes the
//!   objects it no longer has, deleting only objects that still carry the bundle's label (with
//!   the uid and resourceVersion read as delete preconditions).
//! - A Kubernetes API that does not answer is probed once per refresh; while it is down every
//!   bundle reports Error saying so (one warning in the log per outage, not one per request).
//! - Health per kind and drift against the applied manifests (`health`, `drift`), on refresh.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
};

use flotilla_api::{
    BundleState, ClusterFacts, DriftMode, DriftPolicy, NodeCounts,
    agent::{BundleReport, DesiredBundle},
};
use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions},
    core::GroupVersionKind,
    discovery::{ApiCapabilities, ApiResource, Scope},
};
use serde_json::Value;

pub use super::inventory::{AppliedBundle, ObjectRef};
use super::{
    drift::{diff, ignored_paths, strip},
    health::{crd_established, is_crd},
    inventory::{Inventory, contains, owner, same_object},
    report::{Outcome, outcome_of, summarize},
};
use crate::{BUNDLE_LABEL, driver::ClusterDriver, state_dir::write_atomic};

/// Field manager of every apply.
pub const FIELD_MANAGER: &str = "flotilla";
/// The file in the state dir that remembers what each bundle applied.
pub const INVENTORY_FILE: &str = "kubernetes-inventory.json";
/// How every bundle's report starts while the Kubernetes API does not answer.
pub const API_UNREACHABLE: &str = "Kubernetes API unreachable";

/// What applying a set of manifests did.
struct ApplyResult {
    outcomes: Vec<(ObjectRef, Outcome)>,
    /// Custom resources waiting for their CRD.
    waiting: Vec<Value>,
    /// Manifests the API refused (or whose kind it does not serve).
    failed: Vec<Value>,
    /// Manifests naming objects labelled as another bundle's: not applied.
    contested: Vec<Value>,
}

/// Why one manifest was not applied.
enum ApplyError {
    /// The live object is labelled as another bundle's: never taken over.
    Owned(String),
    /// The API refused it or could not be reached.
    Failed(String),
}

/// A CRD among a bundle's manifests: what it defines, and its name.
struct BundleCrd {
    api_version: String,
    group: String,
    kind: String,
    name: String,
}

/// The CRDs among `manifests`.
fn bundle_crds(manifests: &[Value]) -> Vec<BundleCrd> {
    let text = |manifest: &Value, pointer: &str| {
        manifest
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    manifests
        .iter()
        .filter(|m| is_crd(m))
        .map(|m| BundleCrd {
            api_version: text(m, "/apiVersion"),
            group: text(m, "/spec/group"),
            kind: text(m, "/spec/names/kind"),
            name: text(m, "/metadata/name"),
        })
        .collect()
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

pub struct KubernetesCluster {
    client: Client,
    inventory: Inventory,
    file: Option<PathBuf>,
    /// Resolved kinds by (apiVersion, kind).
    kinds: HashMap<(String, String), (ApiResource, ApiCapabilities)>,
    interval_seconds: u32,
    /// Why the Kubernetes API did not answer the last probe; `None` while it answers.
    api_unreachable: Option<String>,
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
            api_unreachable: None,
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

    /// Applies one manifest; returns the live object (`None` when the cluster does not serve
    /// its kind), or why it was not applied. The live object is read first (unless the caller
    /// just read it: `known_live`) on every path, so an object labelled as another bundle's is
    /// never taken over, whatever the inventory says; ignored drift paths are left out of the
    /// applied config once the object exists.
    async fn apply_one(
        &mut self,
        manifest: &mut Value,
        ignore: &[&str],
        known_live: Option<&Value>,
    ) -> Result<Option<Value>, ApplyError> {
        let target = ObjectRef::of(manifest);
        let Some((resource, capabilities)) = self
            .resolve(&target.api_version, &target.kind)
            .await
            .map_err(ApplyError::Failed)?
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
        let target = ObjectRef::of(manifest);
        let api = self.api(&resource, &capabilities, namespace.as_deref());
        let (exists, live_owner) = match known_live {
            Some(live) => (true, owner(live).map(str::to_string)),
            None => match api.get_opt(&target.name).await {
                Ok(Some(live)) => (
                    true,
                    live.metadata
                        .labels
                        .as_ref()
                        .and_then(|labels| labels.get(BUNDLE_LABEL))
                        .cloned(),
                ),
                Ok(None) => (false, None),
                // Without reading it, whose it is cannot be known: not applied, retried later.
                Err(kube::Error::Api(status)) => {
                    return Err(ApplyError::Failed(format!(
                        "read {}: {} ({})",
                        target.describe(),
                        status.message,
                        status.code
                    )));
                }
                Err(error) => {
                    return Err(ApplyError::Failed(format!(
                        "read {}: {error}",
                        target.describe()
                    )));
                }
            },
        };
        // Never take over an object another bundle owns: two bundles would fight over it, and
        // deleting one would delete the other's object.
        if let Some(other) = live_owner
            && Some(other.as_str()) != owner(manifest)
        {
            return Err(ApplyError::Owned(format!(
                "{} already belongs to bundle {other}; an object can be in one bundle only",
                target.describe()
            )));
        }
        let mut body = manifest.clone();
        if exists && !ignore.is_empty() {
            // Fields other controllers own are left to them once the object exists.
            strip(&mut body, ignore);
        }
        let object: DynamicObject = serde_json::from_value(body).map_err(|e| {
            ApplyError::Failed(format!(
                "{}: not a Kubernetes object: {e}",
                target.describe()
            ))
        })?;
        // Strict: a misspelt field is an error now, not a silent drop and endless drift.
        let params = PatchParams::apply(FIELD_MANAGER)
            .force()
            .validation_strict();
        match api
            .patch(&target.name, &params, &Patch::Apply(&object))
            .await
        {
            Ok(live) => Ok(Some(serde_json::to_value(live).unwrap_or(Value::Null))),
            Err(kube::Error::Api(status)) => Err(ApplyError::Failed(format!(
                "{}: {} ({})",
                target.describe(),
                status.message,
                status.code
            ))),
            Err(error) => Err(ApplyError::Failed(format!(
                "{}: {error}",
                target.describe()
            ))),
        }
    }

    /// Whether the bundle's CRD `crd` reports `Established` (its custom resources wait until it
    /// does: discovery may serve a kind before the API server accepts its objects).
    async fn crd_is_established(&mut self, crd: &BundleCrd) -> Result<bool, String> {
        let target = ObjectRef {
            api_version: crd.api_version.clone(),
            kind: "CustomResourceDefinition".into(),
            namespace: None,
            name: crd.name.clone(),
        };
        Ok(self
            .get(&target)
            .await?
            .is_some_and(|live| crd_established(&live)))
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
        if owner(&live) != Some(bundle) {
            tracing::info!(object = %target.describe(), "not deleting: no longer labelled as this bundle's");
            return Ok(());
        }
        let Some((resource, capabilities)) =
            self.resolve(&target.api_version, &target.kind).await?
        else {
            return Ok(());
        };
        let api = self.api(&resource, &capabilities, target.namespace.as_deref());
        let metadata_text = |field: &str| {
            live.pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        // Only the object just read, still labelled as ours: if it changed in between (another
        // bundle or someone else took it), the API answers 409 and it is checked again later.
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: metadata_text("resourceVersion"),
                uid: metadata_text("uid"),
            }),
            ..DeleteParams::background()
        };
        match api.delete(&target.name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Err(format!(
                "delete {}: it changed since it was read; checking again",
                target.describe()
            )),
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
    /// `crds` are the bundle's own CRDs: their custom resources wait until the CRD reports
    /// `Established` instead of failing as unknown kinds or being sent too early.
    async fn apply_all(
        &mut self,
        manifests: &mut [Value],
        drift: &DriftPolicy,
        crds: &[BundleCrd],
    ) -> ApplyResult {
        manifests.sort_by_key(apply_rank);
        let mut outcomes = Vec::new();
        let mut waiting = Vec::new();
        let mut failed = Vec::new();
        let mut contested = Vec::new();
        let mut established: HashMap<String, bool> = HashMap::new();
        for manifest in manifests.iter_mut() {
            let target = ObjectRef::of(manifest);
            let group = target
                .api_version
                .split_once('/')
                .map(|(g, _)| g)
                .unwrap_or("");
            let waiting_outcome = || Outcome::Problem {
                state: BundleState::NotReady,
                message: format!(
                    "waiting for the CustomResourceDefinition of {} ({}) to be established",
                    target.kind, target.api_version
                ),
            };
            // By group and kind, not by apply rank: a CRD may define a `*.k8s.io` group (the
            // Gateway API does).
            if let Some(crd) = crds
                .iter()
                .find(|crd| crd.group == group && crd.kind == target.kind)
            {
                let ready = match established.get(&crd.name) {
                    Some(ready) => Ok(*ready),
                    None => self.crd_is_established(crd).await,
                };
                match ready {
                    Ok(ready) => {
                        established.insert(crd.name.clone(), ready);
                        if !ready {
                            waiting.push(manifest.clone());
                            outcomes.push((target.clone(), waiting_outcome()));
                            continue;
                        }
                    }
                    Err(message) => {
                        failed.push(manifest.clone());
                        outcomes.push((
                            target.clone(),
                            Outcome::Problem {
                                state: BundleState::Error,
                                message,
                            },
                        ));
                        continue;
                    }
                }
            }
            let ignore = ignored_paths(drift, manifest);
            match self.apply_one(manifest, &ignore, None).await {
                Ok(Some(live)) => {
                    let outcome = outcome_of(&target, &live);
                    outcomes.push((ObjectRef::of(manifest), outcome));
                }
                Ok(None) => {
                    if crds.iter().any(|crd| crd.group == group) {
                        waiting.push(manifest.clone());
                        outcomes.push((target.clone(), waiting_outcome()));
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
                Err(ApplyError::Owned(message)) => {
                    contested.push(manifest.clone());
                    outcomes.push((
                        ObjectRef::of(manifest),
                        Outcome::Problem {
                            state: BundleState::Error,
                            message,
                        },
                    ));
                }
                Err(ApplyError::Failed(message)) => {
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
            contested,
        }
    }

    /// Re-reads a bundle's objects: health always; drift (corrected or reported, per the
    /// bundle's policy) when `check_drift`. Returns the new report.
    async fn refresh_bundle(&mut self, name: &str, check_drift: bool) -> Option<BundleReport> {
        let mut applied = self.inventory.bundles.get(name)?.clone();
        let mut outcomes = Vec::new();
        let mut corrected = Vec::new();
        let crds = bundle_crds(&applied.manifests);
        // Objects of other bundles: still theirs? (Applied, and from then on ours, once the
        // other bundle lets go of them; until then they are never counted as this bundle's.)
        if !applied.contested.is_empty() {
            let mut contested = std::mem::take(&mut applied.contested);
            let result = self.apply_all(&mut contested, &applied.drift, &crds).await;
            for manifest in contested {
                let target = ObjectRef::of(&manifest);
                if contains(&result.contested, &target) || contains(&result.failed, &target) {
                    applied.contested.push(manifest);
                } else if !contains(&result.waiting, &target) {
                    applied.manifests.push(manifest);
                }
            }
            outcomes.extend(result.outcomes);
            applied.waiting.extend(result.waiting);
        }
        // Objects the API refused: apply them again (reading them would judge the old object).
        if !applied.failed.is_empty() {
            let mut failed = std::mem::take(&mut applied.failed);
            let result = self.apply_all(&mut failed, &applied.drift, &crds).await;
            outcomes.extend(result.outcomes);
            // Taken by another bundle meanwhile, or back to waiting for its CRD: not ours.
            applied.manifests.retain(|m| {
                let target = ObjectRef::of(m);
                !contains(&result.contested, &target) && !contains(&result.waiting, &target)
            });
            applied.failed = result.failed;
            applied.waiting.extend(result.waiting);
            applied.contested.extend(result.contested);
        }
        // Custom resources waiting for their CRD: try again.
        if !applied.waiting.is_empty() {
            let mut waiting = std::mem::take(&mut applied.waiting);
            let result = self.apply_all(&mut waiting, &applied.drift, &crds).await;
            for manifest in waiting {
                let target = ObjectRef::of(&manifest);
                if !contains(&result.waiting, &target) && !contains(&result.contested, &target) {
                    applied.manifests.push(manifest);
                }
            }
            outcomes.extend(result.outcomes);
            applied.waiting = result.waiting;
            applied.failed.extend(result.failed);
            applied.contested.extend(result.contested);
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
        // Objects another bundle (or someone) relabelled as theirs: no longer this bundle's.
        let mut lost = Vec::new();
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
            if let Some(other) = live.as_ref().and_then(owner)
                && other != name
            {
                outcomes.push((
                    target.clone(),
                    Outcome::Problem {
                        state: BundleState::Error,
                        message: format!(
                            "{} already belongs to bundle {other}; an object can be in one bundle only",
                            target.describe()
                        ),
                    },
                ));
                lost.push(manifest.clone());
                continue;
            }
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
                    match self.apply_one(&mut manifest, &ignore, live.as_ref()).await {
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
                        Err(ApplyError::Owned(message)) => {
                            lost.push(manifest);
                            outcomes.push((
                                target,
                                Outcome::Problem {
                                    state: BundleState::Error,
                                    message,
                                },
                            ));
                        }
                        Err(ApplyError::Failed(message)) => outcomes.push((
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
        for manifest in lost {
            let target = ObjectRef::of(&manifest);
            applied
                .manifests
                .retain(|m| !same_object(&ObjectRef::of(m), &target));
            applied.contested.push(manifest);
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
        let crds = bundle_crds(&manifests);
        let ApplyResult {
            outcomes,
            waiting,
            failed,
            contested,
        } = self
            .apply_all(&mut manifests, &bundle.options.drift, &crds)
            .await;
        // What this revision owns: not what waits for its CRD, never what another bundle owns.
        let applied: Vec<Value> = manifests
            .into_iter()
            .filter(|m| {
                let target = ObjectRef::of(m);
                !contains(&waiting, &target) && !contains(&contested, &target)
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
                contested,
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
            .map(|applied| match &self.api_unreachable {
                // Nothing can be known about any object: every bundle says why.
                Some(error) => BundleReport {
                    state: BundleState::Error,
                    message: Some(format!("{API_UNREACHABLE}: {error}")),
                    problems: Vec::new(),
                    more_problems: 0,
                    ..applied.report.clone()
                },
                None => applied.report.clone(),
            })
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
        // One cheap probe instead of one failing request per object: while the API does not
        // answer, reports say so and nothing else is tried.
        let probe = self.client.apiserver_version().await;
        let recovered = match (probe, self.api_unreachable.is_some()) {
            (Ok(_), false) => false,
            (Ok(_), true) => {
                tracing::info!("the Kubernetes API answers again; re-reading every bundle");
                self.api_unreachable = None;
                true
            }
            (Err(error), false) => {
                tracing::warn!(%error, "{API_UNREACHABLE}; every bundle reports Error until it answers");
                self.api_unreachable = Some(error.to_string());
                return true;
            }
            (Err(error), true) => {
                tracing::debug!(%error, "{API_UNREACHABLE}");
                return false;
            }
        };
        let names: Vec<String> = self.inventory.bundles.keys().cloned().collect();
        let mut changed = recovered;
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
            if ready && !check_drift && !waiting && !recovered {
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
