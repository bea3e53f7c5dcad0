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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub id: String,
    pub measure: String,
    pub target: String,
    pub measured: String,
    /// Met or not; absent when this run cannot judge (e.g. not at the target's scale).
    pub met: Option<bool>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}
