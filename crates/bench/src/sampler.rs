//! Once a second: the simulator's counters, the server process's CPU and memory from /proc, and
//! a few series from the server's `/metrics`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI32, Ordering},
    },
    time::{Duration, Instant},
};

use flotilla_sim::Stats;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// One second of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// Seconds since the bench started.
    pub t: f64,
    /// Simulated clusters registered (cumulative, this simulator run).
    pub registered: u64,
    /// Simulated clusters whose last sync succeeded.
    pub online: i64,
    pub syncs_per_second: f64,
    pub registrations_per_second: f64,
    /// Failed syncs and registrations so far.
    pub errors: u64,
    /// Sync latency seen by the simulated agents over the last second.
    pub sync_p50_ms: f64,
    pub sync_p99_ms: f64,
    /// Server CPU over the last second, in cores; absent when the server is not ours to sample.
    pub server_cpu_cores: Option<f64>,
    pub server_rss_mib: Option<f64>,
    /// The simulator's (this process's) CPU, in cores, and resident memory.
    pub sim_cpu_cores: Option<f64>,
    #[serde(default)]
    pub sim_rss_mib: Option<f64>,
    /// Bundle deployments the server counts Ready and desired.
    pub bundles_ready: Option<u64>,
    pub bundles_desired: Option<u64>,
    /// Clusters the server counts Online.
    pub server_online: Option<u64>,
}

/// The pid of the server under test, swapped when it restarts (0 while there is none).
#[derive(Debug, Default, Clone)]
pub struct ServerPid(Arc<AtomicI32>);

impl ServerPid {
    pub fn set(&self, pid: Option<i32>) {
        self.0.store(pid.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<i32> {
        Some(self.0.load(Ordering::Relaxed)).filter(|pid| *pid > 0)
    }
}

/// CPU seconds and RSS of one process.
fn process_usage(pid: Option<i32>) -> Option<(f64, f64)> {
    let process = match pid {
        Some(pid) => procfs::process::Process::new(pid).ok()?,
        None => procfs::process::Process::myself().ok()?,
    };
    let stat = process.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    let cpu = (stat.utime + stat.stime) as f64 / ticks;
    let rss = stat.rss as f64 * procfs::page_size() as f64 / (1024.0 * 1024.0);
    Some((cpu, rss))
}

/// CPU seconds this process has used.
pub fn own_cpu() -> Option<f64> {
    process_usage(None).map(|(cpu, _)| cpu)
}

/// CPU seconds process `pid` has used.
pub fn process_cpu(pid: i32) -> Option<f64> {
    process_usage(Some(pid)).map(|(cpu, _)| cpu)
}

/// Value of one exact series (`name{labels}`) in Prometheus text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
}

pub struct Sampler {
    pub samples: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub fn start(
        started: Instant,
        stats: Arc<Stats>,
        pid: ServerPid,
        metrics_url: String,
    ) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let samples = samples.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut ticker = tokio::time::interval(Duration::from_secs(1));
                // The first tick completes at once: take it before the baseline, or the first
                // sample divides a few milliseconds of CPU by a near-zero interval.
                ticker.tick().await;
                let mut last_at = Instant::now();
                let mut last_stats = stats.snapshot(true);
                let mut last_server: Option<(i32, f64)> = None;
                let mut last_self = process_usage(None).map(|(cpu, _)| cpu);
                loop {
                    ticker.tick().await;
                    let now = Instant::now();
                    let seconds = now.duration_since(last_at).as_secs_f64().max(1e-3);
                    last_at = now;
                    let current = stats.snapshot(true);
                    let pid_now = pid.get();
                    let server = pid_now.and_then(|pid| process_usage(Some(pid)).map(|u| (pid, u)));
                    let server_cpu_cores = match (server, last_server) {
                        (Some((pid, (cpu, _))), Some((last_pid, last_cpu))) if pid == last_pid => {
                            Some(((cpu - last_cpu) / seconds).max(0.0))
                        }
                        _ => None,
                    };
                    last_server = server.map(|(pid, (cpu, _))| (pid, cpu));
                    let own_usage = process_usage(None);
                    let own = own_usage.map(|(cpu, _)| cpu);
                    let sim_cpu_cores = match (own, last_self) {
                        (Some(cpu), Some(last)) => Some(((cpu - last) / seconds).max(0.0)),
                        _ => None,
                    };
                    last_self = own;
                    let text = match client
                        .get(&metrics_url)
                        .timeout(Duration::from_secs(2))
                        .send()
                        .await
                    {
                        Ok(response) if response.status().is_success() => {
                            response.text().await.unwrap_or_default()
                        }
                        _ => String::new(),
                    };
                    let gauge = |series: &str| metric(&text, series).map(|v| v.max(0.0) as u64);
                    let sample = Sample {
                        t: started.elapsed().as_secs_f64(),
                        registered: current.registered,
                        online: current.online,
                        syncs_per_second: current.syncs.saturating_sub(last_stats.syncs) as f64
                            / seconds,
                        registrations_per_second: current
                            .registered
                            .saturating_sub(last_stats.registered)
                            as f64
                            / seconds,
                        errors: current.sync_errors + current.registration_errors,
                        sync_p50_ms: current.p50_micros as f64 / 1e3,
                        sync_p99_ms: current.p99_micros as f64 / 1e3,
                        server_cpu_cores,
                        server_rss_mib: server.map(|(_, (_, rss))| rss),
                        sim_cpu_cores,
                        sim_rss_mib: own_usage.map(|(_, rss)| rss),
                        bundles_ready: gauge("flotilla_bundle_deployments{state=\"ready\"}"),
                        bundles_desired: gauge("flotilla_bundle_deployments{state=\"desired\"}"),
                        server_online: gauge("flotilla_clusters{state=\"Online\"}"),
                    };
                    last_stats = current;
                    samples.lock().push(sample);
                }
            })
        };
        Sampler { samples, task }
    }

    pub fn stop(self) -> Vec<Sample> {
        self.task.abort();
        std::mem::take(&mut *self.samples.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn metric_reads_exact_series_and_skips_comments() {
        let text = "# HELP flotilla_clusters Registered clusters\n\
                    flotilla_clusters{state=\"Online\"} 42\n\
                    flotilla_clusters{state=\"Offline\"} 3\n\
                    flotilla_bundles 7\n";
        assert_eq!(
            metric(text, "flotilla_clusters{state=\"Online\"}"),
            Some(42.0)
        );
        assert_eq!(
            metric(text, "flotilla_clusters{state=\"Offline\"}"),
            Some(3.0)
        );
        assert_eq!(metric(text, "flotilla_bundles"), Some(7.0));
        assert_eq!(metric(text, "flotilla_clusters"), None);
    }
}
