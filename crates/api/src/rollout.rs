//! Rollouts: a bundle's `spec.rollout` strategy, its revisions, and the status of a run.
//!
//! The field names are the interface scripts and docs use (issue 25): extend, never rename.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{LabelSelector, ObjectMeta};

/// How a bundle's changes reach the fleet: in ordered waves, each judged from the agents'
/// reports of the **new** revision. Without it every targeted cluster gets a change at once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutStrategy {
    /// Ordered waves; a targeted cluster belongs to the first wave that takes it. Clusters no
    /// wave takes form a last implicit wave.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<RolloutWave>,
    /// Default `minSoak` for waves that set none (a duration such as `30s`; default `0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_soak: Option<String>,
    /// Default `progressDeadline` for waves that set none (default `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<String>,
    /// Default `maxConcurrency` for waves that set none (default `100%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<IntOrPercent>,
    /// Default `maxFailures` for waves that set none (default `0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<IntOrPercent>,
    /// What a run does when a wave fails.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// What clusters that register or start matching mid-run get.
    #[serde(default)]
    pub late_joiners: LateJoiners,
    /// How clusters that are Offline when their turn comes (or go Offline mid-run) count.
    #[serde(default)]
    pub offline: OfflinePolicy,
    /// Seed of the stable shuffle that orders clusters for share waves (default: derived from
    /// the bundle's name, so the same clusters are canaries run after run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// One wave of a rollout: the clusters it takes and how they are paced and judged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutWave {
    /// Unique within the strategy; shown by `flotilla rollout status`.
    pub name: String,
    /// A share of the targets not taken by earlier waves: a count (`5`) or a percentage
    /// (`10%`, rounded up). Exclusive with `selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<IntOrPercent>,
    /// The targets not taken by earlier waves whose labels match. Exclusive with `clusters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// For a share wave: take clusters in the order of this label's value (then the shuffle)
    /// instead of the seeded shuffle alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_by: Option<String>,
    /// A canary: any failure in this wave fails the run (its `maxFailures` is 0).
    #[serde(default, skip_serializing_if = "is_false")]
    pub mandatory: bool,
    /// Clusters of the wave updating at once (started, not yet done): a count or a percentage
    /// of the wave (rounded up, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<IntOrPercent>,
    /// How long a cluster's agent must report the new revision applied and Ready, without a
    /// break, before the cluster counts as done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_soak: Option<String>,
    /// A cluster not done this long after it was started counts as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<String>,
    /// Failed clusters the wave tolerates: a count or a percentage of the wave (rounded down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<IntOrPercent>,
    /// Wait for `flotilla rollout resume` once this wave is done.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pause_after: bool,
}

/// A count (`5`) or a percentage (`"25%"`), as in Kubernetes' `IntOrString`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum IntOrPercent {
    Int(u64),
    /// A percentage such as `25%` (whole or decimal, up to `100%`).
    Percent(String),
}

/// What a run does when a wave fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum OnFailure {
    /// Clusters that took the new revision go back to the stable one, paced like the rollout;
    /// the failed revision is held until a person promotes it or a newer one arrives.
    #[default]
    Rollback,
    /// Stop and leave every cluster as it is.
    Halt,
    /// Stop and keep the clusters that took the new revision on it (changes that cannot be
    /// undone, such as schema migrations).
    Freeze,
}

/// What clusters that register or start matching mid-run get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum LateJoiners {
    /// The stable revision until the run reaches their wave (or ends, when it is past).
    #[default]
    Stable,
    /// They join the last wave, whatever their labels.
    LastWave,
}

/// How Offline clusters count in a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum OfflinePolicy {
    /// Started like the others but not waited for: they take the revision when they return.
    #[default]
    Skip,
    /// Waited for: the wave is not done until they return and soak (no deadline while away).
    Wait,
    /// Counted as failed.
    Fail,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// One immutable revision of a bundle's rendered content (`flotilla history bundle NAME`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleRevision {
    /// Per bundle, from 1, never reused.
    pub revision: u64,
    /// The bundle's `metadata.generation` that created it.
    pub generation: u64,
    /// Content digest of the bundle's resources.
    pub digest: String,
    /// Content digests of targets that carry their own resources, by target name (or index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_digests: Vec<TargetDigest>,
    /// The git commit it was rendered from, for bundles a GitRepo renders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Who made it: `admin` (the admin token) or `gitrepo/NAME`.
    pub author: String,
    /// RFC 3339 time it was created.
    #[schema(format = DateTime)]
    pub created: String,
    /// Where this revision stands: `Stable`, `Candidate`, `Failed` (rolled back; held until a
    /// person promotes it again) or empty for an older one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
}

/// The digest of one target's own resources in a revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetDigest {
    pub target: String,
    pub digest: String,
}

/// A bundle's rollout as `flotilla rollout status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    pub metadata: ObjectMeta,
    /// `Progressing`, `Paused`, `Succeeded`, `Halted`, `RollingBack`, `RolledBack` or `Frozen`;
    /// empty when the bundle has never had a run.
    pub phase: String,
    /// The revision every cluster outside the run gets.
    pub stable_revision: u64,
    /// The revision being rolled out (or that was, once the run ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_revision: Option<u64>,
    /// The revision an automatic rollback put on hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_revision: Option<u64>,
    /// The wave in progress (index into `waves`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_wave: Option<u32>,
    pub waves: Vec<WaveStatus>,
    /// Why the run stopped or rolled back, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RolloutReason>,
    /// RFC 3339 time the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub started: Option<String>,
    /// RFC 3339 time the run reached its current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub updated: Option<String>,
}

/// One wave of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaveStatus {
    pub name: String,
    /// `Waiting`, `Progressing`, `Soaking`, `Paused`, `Done`, `Failed` or `RolledBack`.
    pub phase: String,
    /// Clusters in the wave.
    pub clusters: u64,
    /// Clusters started on the new revision (pinned to it).
    pub updated: u64,
    /// Clusters whose agents reported the new revision Ready (soaking or done).
    pub ready: u64,
    /// Clusters done: Ready on the new revision for the whole soak.
    pub done: u64,
    pub failed: u64,
    /// Offline clusters the `skip` policy does not wait for.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u64,
    /// Seconds until the longest soak in the wave ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak_remaining_seconds: Option<u64>,
    pub max_concurrency: u64,
    pub max_failures: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Why a run stopped: the wave, the clusters that failed and what their agents said.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutReason {
    /// `WaveFailed`, `Aborted`, `Undone` or `Superseded`.
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    /// Up to a few of the failed clusters, with their agents' messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_clusters: Vec<FailedCluster>,
}

/// A cluster that failed a wave, with what its agent reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedCluster {
    pub cluster: String,
    /// `Error`, `NotReady`, `ProgressDeadlineExceeded` or `Offline`.
    pub reason: String,
    /// The agent's messages (or what the server saw).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Objects the agent named as failing (`kind/namespace/name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
}

/// The body of `POST /api/v1/bundles/{name}/rollout/undo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutUndo {
    /// The revision to roll out again (default: the stable revision before the current one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_revision: Option<u64>,
}
