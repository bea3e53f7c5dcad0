//! Resource documents: `Cluster`, `ClusterGroup`, `Bundle`, `RegistrationToken`, `GitRepo`, `Secret`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::selector::LabelSelector;

/// Kubernetes-style object metadata. `name` and `labels` are the user's; the rest is set by the server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// The object's name, unique within its kind.
    #[serde(default)]
    pub name: String,
    /// Key-value pairs that selectors match (cluster groups, bundle targets, `-l`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Key-value notes for people and tools; never used for selection.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Incremented by the server on every change of `spec` (or labels, for clusters).
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schema(read_only)]
    pub generation: u64,
    /// The store revision of the last write; opaque to clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// RFC 3339 time the object was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, read_only)]
    pub creation_timestamp: Option<String>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// A flotilla resource document: `apiVersion`, `kind`, `metadata`, `spec`, `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Object<Spec, Status> {
    /// The schema version of the document: `flotilla.dev/v1alpha1`.
    pub api_version: String,
    /// The kind of object: `Cluster`, `ClusterGroup`, `Bundle`, `RegistrationToken`,
    /// `GitRepo` or `Secret`.
    pub kind: String,
    /// Name and labels, and the server's bookkeeping: generation, resourceVersion and
    /// creation time.
    pub metadata: ObjectMeta,
    /// What the object should be, as its owner wrote it.
    #[serde(default)]
    pub spec: Spec,
    /// What the server observed; set by the server and ignored on writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(read_only)]
    pub status: Option<Status>,
}

pub type Cluster = Object<ClusterSpec, ClusterStatus>;
pub type ClusterGroup = Object<ClusterGroupSpec, ClusterGroupStatus>;
pub type Bundle = Object<BundleSpec, BundleStatus>;
pub type RegistrationToken = Object<RegistrationTokenSpec, RegistrationTokenStatus>;

/// The kinds the admin API serves, with their URL collection names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Cluster,
    ClusterGroup,
    Bundle,
    RegistrationToken,
    GitRepo,
    Secret,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Cluster,
        Kind::ClusterGroup,
        Kind::Bundle,
        Kind::RegistrationToken,
        Kind::GitRepo,
        Kind::Secret,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cluster => "Cluster",
            Kind::ClusterGroup => "ClusterGroup",
            Kind::Bundle => "Bundle",
            Kind::RegistrationToken => "RegistrationToken",
            Kind::GitRepo => "GitRepo",
            Kind::Secret => "Secret",
        }
    }

    /// The plural, lower-case collection name used in URLs (`/api/v1/bundles`).
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Cluster => "clusters",
            Kind::ClusterGroup => "clustergroups",
            Kind::Bundle => "bundles",
            Kind::RegistrationToken => "registrationtokens",
            Kind::GitRepo => "gitrepos",
            Kind::Secret => "secrets",
        }
    }

    /// Parses a kind the way kubectl does: singular, plural, short name, any case.
    pub fn parse(text: &str) -> Option<Kind> {
        match text.to_ascii_lowercase().as_str() {
            "cluster" | "clusters" => Some(Kind::Cluster),
            "clustergroup" | "clustergroups" | "cg" => Some(Kind::ClusterGroup),
            "bundle" | "bundles" => Some(Kind::Bundle),
            "registrationtoken" | "registrationtokens" | "token" | "tokens" => {
                Some(Kind::RegistrationToken)
            }
            "gitrepo" | "gitrepos" | "repo" | "repos" => Some(Kind::GitRepo),
            "secret" | "secrets" => Some(Kind::Secret),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Cluster

/// A Kubernetes cluster that runs a flotilla agent. Clusters are created by agent registration;
/// admins edit only their labels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSpec {}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum ClusterState {
    /// Registered, never synced yet.
    #[default]
    Pending,
    Online,
    Offline,
}

impl ClusterState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::Pending => "Pending",
            ClusterState::Online => "Online",
            ClusterState::Offline => "Offline",
        }
    }

    pub fn parse(text: &str) -> Option<ClusterState> {
        match text.to_ascii_lowercase().as_str() {
            "pending" => Some(ClusterState::Pending),
            "online" => Some(ClusterState::Online),
            "offline" => Some(ClusterState::Offline),
            _ => None,
        }
    }
}

/// What the server knows of a cluster: its state, its agent's reports and each bundle's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// `Pending` (registered, never synced), `Online`, or `Offline` (missed its syncs).
    pub state: ClusterState,
    /// RFC 3339 time of the last sync the server saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub last_seen: Option<String>,
    /// RFC 3339 time of registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub registered_at: Option<String>,
    #[serde(flatten)]
    pub facts: ClusterFacts,
    /// The state of each bundle deployed to this cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bundles: Vec<ClusterBundleStatus>,
}

/// What an agent reports about its cluster; sent on registration and whenever it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterFacts {
    /// The version of the flotilla agent on the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// The Kubernetes version the cluster's API server reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
    /// How many nodes the cluster has, and how many are Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeCounts>,
    /// Capacity the agent reports, by resource name (e.g. `cpu`, `memory`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, String>,
    /// The agent's sync interval in seconds; the server uses it to decide when a cluster is Offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_interval_seconds: Option<u32>,
}

/// How many nodes a cluster has, and how many are Ready.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeCounts {
    /// Nodes in the cluster.
    pub total: u32,
    /// Nodes whose Ready condition is True.
    pub ready: u32,
}

/// One bundle's state on one cluster, as shown on the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterBundleStatus {
    /// The bundle's name.
    pub bundle: String,
    /// The bundle's state on this cluster.
    pub state: BundleState,
    /// What the agent reported, when the bundle is not Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The state of one bundle on one cluster.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    ToSchema,
)]
pub enum BundleState {
    /// Targeted, but the cluster has not reported the current revision yet.
    #[default]
    Pending,
    Ready,
    NotReady,
    /// Live objects differ from what the bundle says (drift).
    Modified,
    /// Apply failed; the message says why.
    Error,
}

impl BundleState {
    pub const ALL: [BundleState; 5] = [
        BundleState::Pending,
        BundleState::Ready,
        BundleState::NotReady,
        BundleState::Modified,
        BundleState::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BundleState::Pending => "Pending",
            BundleState::Ready => "Ready",
            BundleState::NotReady => "NotReady",
            BundleState::Modified => "Modified",
            BundleState::Error => "Error",
        }
    }

    /// A problem state is one a user should look at: not Ready and not merely waiting.
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            BundleState::NotReady | BundleState::Modified | BundleState::Error
        )
    }
}

// ---------------------------------------------------------------------------------------------
// ClusterGroup

/// A named set of clusters chosen by their labels, for bundles to target by `clusterGroup`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterGroupSpec {
    /// Clusters whose labels match belong to the group. An empty selector matches every cluster.
    #[serde(default)]
    pub selector: LabelSelector,
}

/// How many clusters the group holds now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterGroupStatus {
    /// Clusters whose labels match the selector.
    pub cluster_count: u64,
    /// Of those, the clusters that are Online.
    pub online_count: u64,
}

// ---------------------------------------------------------------------------------------------
// Bundle

/// Kubernetes manifests and the clusters they go to, with per-target customization, drift
/// handling and a rollout strategy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleSpec {
    /// Inline Kubernetes manifests.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub resources: Vec<Value>,
    /// Where the bundle goes. A cluster is targeted when any target matches it; the first matching
    /// target's customization applies.
    #[serde(default)]
    pub targets: Vec<BundleTarget>,
    /// A paused bundle keeps its last rolled-out revision on clusters; spec changes wait.
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// Leave the objects on clusters when the bundle is deleted or stops targeting them.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep_resources: bool,
    /// What agents do when live objects drift from the bundle.
    #[serde(default, skip_serializing_if = "DriftPolicy::is_default")]
    pub drift: DriftPolicy,
    /// Bundles that must be Ready on a cluster before this one is first deployed there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<BundleDependency>,
    /// How changes reach the fleet: waves, soak, failure budgets and automatic rollback.
    /// Without it every targeted cluster gets a change at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::RolloutStrategy>,
    /// Revisions kept after no cluster runs them any more (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<u32>,
}

/// A bundle this one waits for: by name, or every bundle whose labels match a selector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleDependency {
    /// The bundle waited for, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Every bundle whose labels match is waited for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// Drift handling: agents compare live objects with the fields the bundle sets, on an interval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DriftPolicy {
    /// `correct` (default): re-apply and report that it did; `report`: only mark Modified.
    #[serde(default)]
    pub mode: DriftMode,
    /// Fields other controllers own, never compared nor taken over (e.g. `/spec/replicas` of a
    /// Deployment under a HorizontalPodAutoscaler).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<DriftIgnore>,
}

impl DriftPolicy {
    pub fn is_default(&self) -> bool {
        self == &DriftPolicy::default()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum DriftMode {
    #[default]
    Correct,
    Report,
}

/// JSON pointers (RFC 6901, `*` matching any one segment) ignored on the objects it selects:
/// every object when neither `apiVersion`, `kind` nor `name` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DriftIgnore {
    /// Only objects of this apiVersion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Only objects of this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only objects of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// JSON pointers of the ignored fields, e.g. `/spec/replicas`.
    pub paths: Vec<String>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// One targeting rule of a bundle. At least one of `clusterSelector`, `clusterGroup`,
/// `clusterGroups` or `clusterName` must be set; when several are set, a cluster must match all of
/// them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleTarget {
    /// The target's name, shown in messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Clusters whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_selector: Option<LabelSelector>,
    /// Clusters in this cluster group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_group: Option<String>,
    /// More groups a cluster must also belong to (all of them), e.g. a GitRepo target's group
    /// combined with a fleet.yaml targetCustomization's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_groups: Vec<String>,
    /// The one cluster of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// Changes made to the manifests for the clusters this target matches first.
    #[serde(default, skip_serializing_if = "Customization::is_empty")]
    pub customization: Customization,
    /// Clusters this target matches first get nothing: the bundle is not deployed there (Fleet's
    /// `doNotDeploy`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub do_not_deploy: bool,
    /// Manifests that replace `spec.resources` for the clusters this target matches first (a
    /// folder rendered with this target's Helm values, Kustomize directory or overlays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub resources: Option<Vec<Value>>,
}

/// Per-target changes made to the manifests before they are applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Customization {
    /// Namespace for namespaced objects that do not name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels added to every object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// JSON merge patches (RFC 7386) applied to matching objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<Patch>,
    /// Values for `${values.KEY}` placeholders.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
}

impl Customization {
    pub fn is_empty(&self) -> bool {
        self == &Customization::default()
    }
}

/// A JSON merge patch and the objects it applies to (all objects when no selector field is set).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Patch {
    /// Only objects of this apiVersion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Only objects of this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only objects of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The merge patch: a JSON object (any other value would replace the whole manifest).
    #[schema(value_type = Object)]
    pub patch: Value,
}

/// How the bundle's current revision stands on the clusters it targets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleStatus {
    /// The spec generation that is rolled out (differs from `metadata.generation` while paused).
    pub observed_generation: u64,
    /// Content digest of the rolled-out resources.
    pub digest: String,
    /// The targeted clusters, counted by the bundle's state on them.
    pub summary: BundleSummary,
    /// Up to a few clusters in a problem state, to start looking from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problem_clusters: Vec<ProblemCluster>,
    /// The bundle's overall state: `Paused`, `Error`, `Modified`, `NotReady`, `Pending` or
    /// `Ready` (what `?state=` filters on).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    /// What needs attention that the counts do not show, e.g. a target naming a cluster group
    /// that does not exist. Only conditions that are not met are listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A condition on an object, in the Kubernetes shape (`type`, `status`, `reason`, `message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// What the condition is about, a CamelCase name.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word a program can match, e.g. `ClusterGroupNotFound`.
    pub reason: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

/// Counts of targeted clusters by the state of this bundle on them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleSummary {
    /// Clusters the bundle targets.
    pub desired: u64,
    /// Clusters where every object of the current revision is applied and ready.
    pub ready: u64,
    /// Clusters where the revision is applied but not ready yet.
    pub not_ready: u64,
    /// Clusters whose live objects drifted from the bundle.
    pub modified: u64,
    /// Clusters where applying failed.
    pub error: u64,
    /// Clusters that have not reported the current revision yet.
    pub pending: u64,
}

impl BundleSummary {
    /// The worst state any targeted cluster is in (Error, Modified, NotReady, Pending), or
    /// Ready: the rule a bundle's `status.state` follows once it is live.
    pub fn worst_state(&self) -> &'static str {
        if self.error > 0 {
            "Error"
        } else if self.modified > 0 {
            "Modified"
        } else if self.not_ready > 0 {
            "NotReady"
        } else if self.pending > 0 {
            "Pending"
        } else {
            "Ready"
        }
    }
}

/// A cluster where the bundle is in a problem state (NotReady, Modified or Error).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProblemCluster {
    /// The cluster's name.
    pub name: String,
    /// The bundle's state on it.
    pub state: BundleState,
    /// What the agent reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// RegistrationToken

/// A token an agent presents once to register its cluster: it may expire, be limited in uses,
/// and stamp labels on the clusters it registers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrationTokenSpec {
    /// RFC 3339 expiry; never expires when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Lifetime from creation, e.g. `1h`; converted to `expiresAt` by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// How many clusters may register with it; unlimited when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u64>,
    /// Labels stamped on every cluster that registers with this token.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// How much the token has been used, and whether it still registers clusters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationTokenStatus {
    /// Clusters registered with the token so far.
    pub uses: u64,
    /// `Active`, `Expired` or `UsedUp`.
    pub state: String,
    /// The secret token. Present only in the response that created it; the server keeps a hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// GitRepo

pub type GitRepo = Object<GitRepoSpec, GitRepoStatus>;

/// A git repository whose folders are rendered to bundles (raw YAML, Kustomize, Helm, or Rancher
/// Fleet's `fleet.yaml`), followed by polling and webhooks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitRepoSpec {
    /// Repository URL: `https://…`, `http://…`, `git://…`, `ssh://…`, `user@host:path` or `file://…`.
    pub repo: String,
    /// Branch to follow; `main` when neither `branch` nor `revision` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// A tag or commit to deploy instead of a branch head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Folders of the repository to deploy; the repository root when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// How often the repository is polled, e.g. `60s` (the default), jittered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<String>,
    /// Where the rendered bundles go, as in a Bundle; a folder's `fleet.yaml`
    /// `targetCustomizations` customize within these targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<BundleTarget>,
    /// A paused repository is neither fetched nor re-rendered; its bundles keep serving.
    #[serde(default, skip_serializing_if = "is_false")]
    pub paused: bool,
    /// Name of a `Secret` (type `basic-auth` or `ssh-auth`) with the credentials to fetch with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_name: Option<String>,
    /// Leave the bundles' objects on clusters when the repository or a folder is removed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub keep_resources: bool,
}

/// What the server last fetched and rendered from the repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepoStatus {
    /// The spec generation the status describes.
    pub observed_generation: u64,
    /// The commit the bundles were last rendered from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// RFC 3339 time of the last successful fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub last_fetched: Option<String>,
    /// Why the last fetch or render failed; the bundles of the last good commit keep serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Consecutive failed fetches; polling backs off while it grows.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u64,
    /// RFC 3339 time of the next poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub next_fetch: Option<String>,
    /// The bundles this repository produced, one per deployable folder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bundles: Vec<GitRepoBundle>,
}

/// A bundle rendered from one folder of the repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepoBundle {
    /// The bundle's name.
    pub name: String,
    /// The folder, relative to the repository root (`.` for the root).
    pub path: String,
    /// Content digest of the folder's default rendering; absent while the folder has never
    /// rendered (its first render failed: see `error`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Why this folder failed to render at the current commit (the previous rendering keeps serving).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Secret

pub type Secret = Object<SecretSpec, SecretStatus>;

/// Credentials the server uses (git fetches, webhook verification). Values are write-only: the
/// API never returns them, only their keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    /// `basic-auth` (`username`, `password`: HTTPS, a token as password), `ssh-auth`
    /// (`ssh-privatekey`, `known_hosts`: host keys are always checked) or `webhook` (`github`,
    /// `gitlab`).
    #[serde(rename = "type")]
    pub secret_type: String,
    /// Plain-text values by key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
}

/// What the secret holds, without the values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretStatus {
    /// The keys the secret holds (values are never returned).
    pub keys: Vec<String>,
}
