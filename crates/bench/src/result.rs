//! What a bench run writes to `result.json`: the machine, the commit, the command, the figures
//! of each phase, a verdict per target, and the per-second series.

use serde::{Deserialize, Serialize};

use crate::sampler::Sample;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BenchResult {
    pub scenario: String,
    pub command: String,
    pub commit: String,
    pub started_at: String,
    pub machine: Machine,
    pub clusters: u32,
    pub bundles_per_cluster: u32,
    pub nodes_per_cluster: u32,
    pub sync_interval_seconds: f64,
    /// Whether the bench started the server itself (so its CPU and memory were sampled).
    pub server_sampled: bool,
    pub phases: Vec<Phase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub register: Option<RegisterResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub converge: Option<ConvergeResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steady: Option<SteadyResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_waves: Option<RolloutWavesResult>,
    pub verdicts: Vec<Verdict>,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub cpu_model: String,
    pub kernel: String,
    /// The CPUs the bench process and its simulator could run on (`0-1`; one of them when pinned).
    #[serde(default)]
    pub bench_cpus: Option<String>,
    /// The CPUs the server child could run on; none for a server the bench did not start.
    #[serde(default)]
    pub server_cpus: Option<String>,
}

/// A named stretch of the run, in seconds since it started.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    pub name: String,
    pub start: f64,
    pub end: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResult {
    pub clusters: u64,
    pub seconds: f64,
    pub clusters_per_second: f64,
    /// Refused registrations, retried (those shed included).
    pub errors: u64,
    /// Of `errors`, the ones the server shed with 429 (or 503) and a Retry-After.
    #[serde(default)]
    pub shed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConvergeResult {
    /// Bundle deployments desired across the fleet, and how long until all were Ready.
    pub deployments: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SteadyResult {
    pub seconds: f64,
    pub syncs: u64,
    pub syncs_per_second: f64,
    /// The rate the fleet asks for: clusters divided by the sync interval. The fleet is held
    /// only if the server answered (nearly) all of it.
    #[serde(default)]
    pub syncs_per_second_asked: f64,
    pub errors: u64,
    /// Clusters the server counted Offline when the phase ended (missed syncs past the offline
    /// deadline); absent when the metric could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_at_end: Option<u64>,
    /// Server CPU seconds over the phase divided by the syncs it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_micros_per_sync: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_cores: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_mib_max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sim_cpu_cores: Option<f64>,
    pub sync_p50_ms: f64,
    pub sync_p99_ms: f64,
    pub sync_max_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutResult {
    pub bundle: String,
    pub desired: u64,
    /// Seconds from the acknowledged change until that share of clusters reported it Ready;
    /// absent when the share was not reached before the deadline.
    pub seconds_to_50: Option<f64>,
    pub seconds_to_90: Option<f64>,
    pub seconds_to_99: Option<f64>,
    pub seconds_to_100: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiResult {
    pub users: usize,
    pub seconds: f64,
    pub operations: Vec<ApiOperation>,
    /// Agents' sync latency while the admin load ran.
    pub sync_p99_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiOperation {
    pub name: String,
    pub count: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartResult {
    /// From the kill until `/healthz` answered.
    pub seconds_to_healthy: f64,
    /// From the kill until the admin API listed every registered cluster.
    pub seconds_to_serve_fleet: f64,
    /// From the kill until the server counted every cluster Online again.
    pub seconds_to_all_online: Option<f64>,
    /// Admin writes acknowledged before the kill, and those missing after the restart.
    pub acknowledged_writes: u64,
    pub lost_writes: Vec<String>,
    pub clusters_before: u64,
    pub clusters_after: u64,
}

/// `rollout-waves`: a good revision through five waves behind a canary, then one that fails on
/// canary clusters and is rolled back. Times are seconds since the write that started the run,
/// read from the rollout status every `pollMs`: an event happened between the read before the
/// one that first showed it and that read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutWavesResult {
    pub bundle: String,
    /// Clusters the bundle targets.
    pub clusters: u64,
    /// The canary's `minSoak`.
    pub canary_soak_seconds: f64,
    /// The interval the status was read at, and the longest gap between two reads that answered.
    pub poll_ms: f64,
    pub poll_gap_max_ms: f64,
    /// Status reads that failed (not counted in the figures).
    pub read_errors: u64,
    /// The good revision.
    pub advance: WavesAdvance,
    /// The failing revision; absent when the good one did not succeed in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<WavesRollback>,
}

/// A run of a good revision through every wave.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WavesAdvance {
    /// How long the admin write that started the run took to be acknowledged.
    pub write_seconds: f64,
    pub waves: Vec<WaveFigures>,
    /// Until the run was seen Succeeded; absent when it was not before the deadline.
    pub seconds_to_succeeded: Option<f64>,
    /// The phase the run was last seen in.
    pub final_phase: String,
    pub server_cpu: Option<ServerCpu>,
}

/// One wave of a run that advanced.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveFigures {
    pub name: String,
    pub clusters: u64,
    pub soak_seconds: f64,
    /// Until a cluster of the wave was first seen on the candidate (`updated > 0`).
    pub seconds_to_start: Option<f64>,
    /// Until every cluster of the wave was seen reporting the candidate Ready (or skipped).
    pub seconds_to_all_ready: Option<f64>,
    /// Until the wave was seen `Done`.
    pub seconds_to_done: Option<f64>,
    /// The next wave seen started (or the run Succeeded, for the last wave) minus the time the
    /// wave's last report made it decidable (every cluster seen Ready, plus the soak). Read
    /// first sighting to first sighting, so within a poll gap either way; 0 when the two were
    /// seen in the same read.
    pub decision_seconds: Option<f64>,
    /// The most the decision can have taken: the same, from the read before the one that first
    /// showed every cluster Ready.
    pub decision_seconds_bound: Option<f64>,
}

/// A revision that fails on canary clusters, rolled back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WavesRollback {
    pub write_seconds: f64,
    /// The wave whose failure stopped the run (the canary, by design), its size and failures.
    pub failed_wave: Option<String>,
    pub failed_wave_clusters: u64,
    pub failed_wave_failed: u64,
    /// Until a failed cluster was first seen (the report that decides a mandatory wave).
    pub seconds_to_first_failure: Option<f64>,
    /// Until the run was seen RollingBack (the decision).
    pub seconds_to_decision: Option<f64>,
    /// Decision minus first failure seen, and its bound (from the read before the failure was
    /// seen).
    pub decision_seconds: Option<f64>,
    pub decision_seconds_bound: Option<f64>,
    /// Until the run was seen RolledBack: every touched cluster reported the stable revision
    /// (Ready or Error) or passed its deadline.
    pub seconds_to_rolled_back: Option<f64>,
    /// RolledBack seen minus RollingBack seen: the rollback itself.
    pub rollback_seconds: Option<f64>,
    /// Until RolledBack with the bundle's summary counting every targeted cluster Ready.
    pub seconds_to_stable_ready: Option<f64>,
    /// The same, counted from the read before the first failure was seen (the target's clock).
    pub stable_ready_after_failure_seconds: Option<f64>,
    /// The phase the run was last seen in.
    pub final_phase: String,
    /// Over every status read: the most clusters of waves after the failed one seen on the
    /// candidate (pinned to it).
    pub later_waves_updated_max: u64,
    /// Waves after the failed one, and how many of them the final status shows never started
    /// (`Waiting`; a wave that started ends `RolledBack`).
    pub later_waves: u64,
    pub later_waves_never_started: u64,
    /// Cross-check from the simulator: the most simulated deployments not Ready at one time
    /// during the phase (its clusters fail only where the candidate was applied).
    pub sim_not_ready_max: i64,
    pub server_cpu: Option<ServerCpu>,
}

/// The server's CPU over a phase, from /proc.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerCpu {
    pub seconds: f64,
    /// Average over the phase, and the busiest one-second sample.
    pub cores: f64,
    pub cores_peak: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub id: String,
    pub measure: String,
    pub target: String,
    pub measured: String,
    /// Met or not; absent when this run cannot judge (e.g. not at the target's scale).
    pub met: Option<bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}
