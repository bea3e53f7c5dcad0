//! `flotilla bench`: drives a scenario against a real server with the simulator, samples the
//! server once a second, and writes `result.json` and `report.html`.
//!
//! The server is a child process on a fresh data dir (so /proc tells its CPU and memory, and
//! `kill -9` is real), or a server given with `--server`. The simulator runs in this process.

mod chart;
mod estimate;
mod machine;
mod report;
pub mod result;
pub mod sampler;
mod scenarios;
mod summary;
mod target;
mod wait;
mod waves;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use flotilla_api::{RegistrationToken, RegistrationTokenSpec};
use flotilla_client::{AdminClient, Resource};
use flotilla_sim::{SimConfig, Simulator};
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;

use crate::{
    result::{BenchResult, Phase},
    sampler::{Sample, Sampler, ServerPid},
    target::{ChildServer, Target},
};

pub use crate::{
    estimate::{about, expected_duration},
    report::render_html,
    summary::{colour_wanted, summary_table},
};

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Register,
    Steady,
    Rollout,
    Restart,
    Api,
    /// Not part of `all`: it takes about seven sync intervals and adds a bundle.
    RolloutWaves,
    All,
}

impl Scenario {
    pub fn parse(text: &str) -> Result<Scenario, String> {
        Ok(match text {
            "register" => Scenario::Register,
            "steady" => Scenario::Steady,
            "rollout" => Scenario::Rollout,
            "restart" => Scenario::Restart,
            "api" => Scenario::Api,
            "rollout-waves" => Scenario::RolloutWaves,
            "all" => Scenario::All,
            other => {
                return Err(format!(
                    "unknown scenario `{other}`; use register, steady, rollout, restart, api, rollout-waves or all"
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Register => "register",
            Scenario::Steady => "steady",
            Scenario::Rollout => "rollout",
            Scenario::Restart => "restart",
            Scenario::Api => "api",
            Scenario::RolloutWaves => "rollout-waves",
            Scenario::All => "all",
        }
    }

    fn runs(self, phase: Scenario) -> bool {
        self == phase || (self == Scenario::All && phase != Scenario::RolloutWaves)
    }
}

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub scenario: Scenario,
    pub clusters: u32,
    pub out: PathBuf,
    /// A server someone else runs, with its admin token; otherwise the bench starts one.
    pub server: Option<(String, String)>,
    /// The `flotilla` binary, to start the server with.
    pub exe: PathBuf,
    pub interval: Duration,
    /// How long `steady` holds.
    pub duration: Duration,
    pub api_users: usize,
    pub api_duration: Duration,
    pub bundles: u32,
    pub nodes: u32,
    pub concurrency: usize,
    pub connections: usize,
    /// The canary's `minSoak` in `rollout-waves`.
    pub canary_soak: Duration,
    /// Pin the server child to these CPUs (a `taskset` list such as `0`).
    pub server_cpus: Option<String>,
    /// Pin the bench process, and so its simulator, to these CPUs.
    pub sim_cpus: Option<String>,
    /// The command line, recorded in the result.
    pub command: String,
    pub progress: bool,
}

impl Default for BenchConfig {
    fn default() -> BenchConfig {
        BenchConfig {
            scenario: Scenario::All,
            clusters: 10_000,
            out: PathBuf::from("bench-out"),
            server: None,
            exe: PathBuf::from("flotilla"),
            interval: Duration::from_secs(120),
            duration: Duration::from_secs(600),
            api_users: 8,
            api_duration: Duration::from_secs(60),
            bundles: 4,
            nodes: 3,
            concurrency: 512,
            connections: 8,
            canary_soak: Duration::from_secs(5),
            server_cpus: None,
            sim_cpus: None,
            command: String::new(),
            progress: true,
        }
    }
}

/// Everything a scenario needs while the run is under way.
pub(crate) struct Run {
    pub config: BenchConfig,
    pub target: Target,
    pub admin: AdminClient,
    pub simulator: Option<Simulator>,
    pub stats: Arc<flotilla_sim::Stats>,
    pub pid: ServerPid,
    pub samples: Arc<Mutex<Vec<Sample>>>,
    pub started: Instant,
    pub phases: Vec<Phase>,
    pub progress: ProgressBar,
    pub phase_name: Arc<Mutex<String>>,
}

impl Run {
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// A line for the user, above the progress line (or on stderr when there is none).
    pub fn say(&self, line: &str) {
        if self.progress.is_hidden() {
            eprintln!("{line}");
        } else {
            self.progress.println(line);
        }
    }

    /// The server's pid and the CPU seconds it has used.
    pub fn pid_cpu(&self) -> Option<(i32, f64)> {
        let pid = self.pid.get()?;
        Some((pid, sampler::process_cpu(pid)?))
    }

    pub fn begin(&mut self, name: &str) -> f64 {
        *self.phase_name.lock() = name.to_string();
        self.say(&format!("bench: {name}"));
        self.now()
    }

    pub fn end(&mut self, name: &str, start: f64) {
        self.phases.push(Phase {
            name: name.to_string(),
            start,
            end: self.now(),
        });
    }

    /// The server's `/metrics` value of one series.
    pub async fn server_metric(&self, series: &str) -> Option<f64> {
        let text = reqwest::Client::new()
            .get(format!("{}/metrics", self.target.base()))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        sampler::metric(&text, series)
    }

    pub fn samples_between(&self, start: f64, end: f64) -> Vec<Sample> {
        self.samples
            .lock()
            .iter()
            .filter(|sample| sample.t >= start && sample.t <= end)
            .cloned()
            .collect()
    }
}

/// Runs the scenario; writes `result.json` and `report.html` into `config.out`.
pub async fn run(config: BenchConfig) -> anyhow::Result<BenchResult> {
    flotilla_client::install_crypto_provider();
    std::fs::create_dir_all(&config.out)
        .with_context(|| format!("create {}", config.out.display()))?;
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let commit = machine::commit().to_string();
    if config.server.is_some() && config.server_cpus.is_some() {
        anyhow::bail!(
            "--server-cpus pins the server the bench starts; with --server, pin your own"
        );
    }
    eprintln!(
        "bench: {} on {} clusters, expected to take {}",
        config.scenario.as_str(),
        config.clusters,
        about(expected_duration(&config))
    );
    let started = Instant::now();
    let target = match &config.server {
        Some((base, admin_token)) => Target::External {
            base: base.trim_end_matches('/').to_string(),
            admin_token: admin_token.clone(),
        },
        None => {
            let data_dir = config.out.join("server-data");
            if data_dir.exists() {
                std::fs::remove_dir_all(&data_dir)
                    .with_context(|| format!("clear {}", data_dir.display()))?;
            }
            let log = config.out.join("server.log");
            let _ = std::fs::remove_file(&log);
            Target::Child(Box::new(
                ChildServer::start(&config.exe, &data_dir, &log, config.server_cpus.as_deref())
                    .await?,
            ))
        }
    };
    // Pinned after the server started, which would otherwise inherit the simulator's CPUs.
    if let Some(cpus) = &config.sim_cpus {
        machine::pin_self(cpus)?;
    }
    // What the server may run on, read back from the kernel (pinned or not).
    let server_cpus = target.pid().and_then(machine::cpus_allowed);
    let admin = AdminClient::new(&target.base(), target.admin_token())?;
    // A token of this name from an earlier run keeps its secret to itself: start over.
    let tokens = admin.api::<RegistrationToken>();
    let _ = tokens.delete("bench").await;
    let created = tokens
        .create(&RegistrationToken::new(
            "bench",
            RegistrationTokenSpec {
                labels: BTreeMap::from([("fleet".to_string(), "bench".to_string())]),
                ..RegistrationTokenSpec::default()
            },
        ))
        .await
        .context("create the registration token")?;
    // Several replicas: the token reaches the others through the store's change feed (~0.1 s);
    // registrations sent there before it arrives would be refused and retried.
    for replica in target.agent_servers().split(',').skip(1) {
        let other =
            AdminClient::new(replica.trim(), target.admin_token())?.api::<RegistrationToken>();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while other.get("bench").await.is_err() {
            anyhow::ensure!(
                std::time::Instant::now() < until,
                "replica {replica} did not learn the registration token within 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let token = created
        .status
        .and_then(|status| status.token)
        .context("the server returned no registration token")?;
    let pid = ServerPid::default();
    pid.set(target.pid());
    let sim_config = SimConfig {
        server: target.agent_servers(),
        token,
        clusters: config.clusters,
        nodes: config.nodes,
        interval: config.interval,
        prefix: "bench-".into(),
        concurrency: config.concurrency,
        connections: config.connections,
        progress: false,
        ..SimConfig::default()
    };
    let progress = if config.progress {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let stats_holder = Arc::new(flotilla_sim::Stats::default());
    let sampler = Sampler::start(
        started,
        stats_holder.clone(),
        pid.clone(),
        format!("{}/metrics", target.base()),
    );
    let mut run = Run {
        config: config.clone(),
        target,
        admin,
        simulator: None,
        stats: stats_holder,
        pid,
        samples: sampler.samples.clone(),
        started,
        phases: Vec::new(),
        progress,
        phase_name: Arc::new(Mutex::new(String::from("starting"))),
    };
    let ticker = spawn_progress(&run);
    let outcome = scenarios::drive(&mut run, sim_config).await;
    ticker.abort();
    run.progress.finish_and_clear();
    if let Some(simulator) = run.simulator.take() {
        simulator.stop().await?;
    }
    let samples = sampler.stop();
    if let Target::Child(child) = run.target {
        child.stop().await;
    }
    let figures = outcome?;
    let result = BenchResult {
        scenario: config.scenario.as_str().to_string(),
        command: config.command.clone(),
        commit,
        started_at,
        machine: machine::describe(server_cpus.as_deref()),
        clusters: config.clusters,
        bundles_per_cluster: config.bundles,
        nodes_per_cluster: config.nodes,
        sync_interval_seconds: config.interval.as_secs_f64(),
        server_sampled: config.server.is_none(),
        verdicts: scenarios::verdicts(&config, &figures),
        phases: run.phases,
        register: figures.register,
        converge: figures.converge,
        steady: figures.steady,
        rollout: figures.rollout,
        api: figures.api,
        restart: figures.restart,
        rollout_waves: figures.rollout_waves,
        samples,
    };
    let json_path = config.out.join("result.json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&result)?)
        .with_context(|| format!("write {}", json_path.display()))?;
    let html_path = config.out.join("report.html");
    std::fs::write(&html_path, render_html(&result)?)
        .with_context(|| format!("write {}", html_path.display()))?;
    Ok(result)
}

fn spawn_progress(run: &Run) -> tokio::task::JoinHandle<()> {
    let bar = run.progress.clone();
    let samples = run.samples.clone();
    let phase = run.phase_name.clone();
    let clusters = run.config.clusters;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        loop {
            ticker.tick().await;
            let last = samples.lock().last().cloned().unwrap_or_default();
            let server = match (last.server_cpu_cores, last.server_rss_mib) {
                (Some(cpu), Some(rss)) => format!("   server {cpu:.2} cores {rss:.0} MiB"),
                _ => String::new(),
            };
            bar.set_message(format!(
                "{:<9} registered {}/{clusters}   online {}   ready {}/{}   {:.0} syncs/s   p99 {:.1} ms   errors {}{server}",
                phase.lock(),
                last.registered,
                last.online,
                last.bundles_ready.unwrap_or(0),
                last.bundles_desired.unwrap_or(0),
                last.syncs_per_second,
                last.sync_p99_ms,
                last.errors,
            ));
            bar.tick();
        }
    })
}
