//! `flotilla sim`: many simulated clusters in this process, each making the real agent calls.

use std::{path::PathBuf, time::Duration};

use anyhow::bail;
use clap::Args;

use crate::{output, shutdown_signal};

#[derive(Args)]
pub struct SimArgs {
    /// The server's URL, or several replicas' URLs comma-separated (the simulated clusters start
    /// spread evenly over them and move to the next one when theirs is unreachable, as agents).
    #[arg(long, env = "FLOTILLA_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Registration token the simulated clusters register with.
    #[arg(long, env = "FLOTILLA_AGENT_TOKEN", hide_env_values = true)]
    token: String,
    /// How many clusters to simulate.
    #[arg(long, default_value_t = 100)]
    clusters: u32,
    /// Nodes per simulated cluster (reported as cluster facts).
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    /// Sync interval (jittered ±10%).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Registrations per second while ramping up (0: as fast as the server accepts).
    #[arg(long, default_value_t = 0)]
    register_rate: u32,
    /// Fraction of clusters that go silent now and then and come back.
    #[arg(long, default_value_t = 0.0)]
    flap: f64,
    /// Fraction of bundle applies that fail.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Fraction of bundle applies that stay not ready.
    #[arg(long, default_value_t = 0.0)]
    not_ready_rate: f64,
    /// Cluster name prefix, so several simulators can share one server.
    #[arg(long, default_value = "sim-")]
    prefix: String,
    /// Keeps cluster identities, so a restarted simulator resumes instead of registering anew.
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// HTTP/2 connections to the server.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Stop after this long (default: run until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// No live progress bars (for logs and CI).
    #[arg(long)]
    no_progress: bool,
}

pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let SimArgs {
        server,
        token,
        clusters,
        nodes,
        interval,
        register_rate,
        flap,
        fail_rate,
        not_ready_rate,
        prefix,
        state_file,
        concurrency,
        connections,
        duration,
        no_progress,
    } = args;
    for (name, rate) in [
        ("--flap", flap),
        ("--fail-rate", fail_rate),
        ("--not-ready-rate", not_ready_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            bail!("{name} {rate} is not a fraction; use a value from 0 to 1");
        }
    }
    let config = flotilla_sim::SimConfig {
        server,
        token,
        clusters,
        nodes,
        interval,
        register_rate,
        flap,
        fail_rate,
        not_ready_rate,
        prefix,
        state_file,
        concurrency,
        connections,
        progress: !no_progress,
    };
    let stop = async move {
        match duration {
            Some(duration) => {
                tokio::select! {
                    () = tokio::time::sleep(duration) => {}
                    () = shutdown_signal() => {}
                }
            }
            None => shutdown_signal().await,
        }
    };
    let summary = flotilla_sim::run(config, stop).await?;
    let stats = summary.stats;
    output::out(&format!(
        "simulated {} s: {} registered ({} registration errors), {} syncs ({} errors), {} content fetches, {} online, {}/{} bundle deployments ready\n",
        summary.elapsed.as_secs(),
        stats.registered,
        stats.registration_errors,
        stats.syncs,
        stats.sync_errors,
        stats.content_fetches,
        stats.online,
        stats.bundles_ready,
        stats.bundles_held,
    ))
}
