//! `flotilla bench`: a load scenario against a real server; prints a table of the verdicts and
//! where the result and report went.

use std::{io::IsTerminal, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::Args;

use crate::{output, shutdown_signal};

#[derive(Args)]
pub struct BenchArgs {
    /// register, steady, rollout, restart, api, or all (each in turn, into one report); or
    /// rollout-waves (not part of all).
    #[arg(value_parser = flotilla_bench::Scenario::parse)]
    scenario: flotilla_bench::Scenario,
    /// How many simulated clusters the scenario runs with.
    #[arg(long, default_value_t = 10_000)]
    clusters: u32,
    /// Where result.json, report.html, the server's data dir and log go.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Run against this server instead of starting one (its CPU and memory are then not sampled,
    /// and `restart` is skipped). Needs the admin token (--token or FLOTILLA_TOKEN). Several
    /// replicas' URLs, comma-separated: the simulated fleet spreads over them, admin calls go to
    /// the first.
    #[arg(long)]
    server: Option<String>,
    /// Admin API token of the server given with --server.
    #[arg(long, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Agents' sync interval (jittered ±10%).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// How long `steady` holds the fleet.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Concurrent admin users in `api`.
    #[arg(long, default_value_t = 8)]
    api_users: usize,
    /// How long `api` runs.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    api_duration: Duration,
    /// Bundles targeted at every cluster.
    #[arg(long, default_value_t = 4)]
    bundles: u32,
    /// Nodes per simulated cluster.
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    /// Simulator requests in flight at once.
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
    /// Simulator HTTP/2 connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// The canary wave's minSoak in rollout-waves.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    canary_soak: Duration,
    /// Pin the server the bench starts to these CPUs (a taskset list, e.g. 0), to read each
    /// side's cost apart.
    #[arg(long, value_name = "LIST")]
    server_cpus: Option<String>,
    /// Pin the bench and its simulated fleet to these CPUs (e.g. 1).
    #[arg(long, value_name = "LIST")]
    sim_cpus: Option<String>,
    /// No live progress line (for logs and CI).
    #[arg(long)]
    no_progress: bool,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let BenchArgs {
        scenario,
        clusters,
        out,
        server,
        token,
        interval,
        duration,
        api_users,
        api_duration,
        bundles,
        nodes,
        concurrency,
        connections,
        canary_soak,
        server_cpus,
        sim_cpus,
        no_progress,
    } = args;
    let server = match server {
        Some(server) => {
            let token = token.context(
                "--server needs the server's admin token: pass --token or set FLOTILLA_TOKEN",
            )?;
            Some((server, token))
        }
        None => None,
    };
    let config = flotilla_bench::BenchConfig {
        scenario,
        clusters,
        out: out.clone(),
        server,
        exe: std::env::current_exe().context("find the flotilla binary")?,
        interval,
        duration,
        api_users,
        api_duration,
        bundles,
        nodes,
        concurrency,
        connections,
        canary_soak,
        server_cpus,
        sim_cpus,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        progress: !no_progress,
    };
    let result = tokio::select! {
        result = flotilla_bench::run(config) => result?,
        () = shutdown_signal() => bail!("interrupted; no result written"),
    };
    // Colour for a person at a terminal; plain into files, pipes, CI logs, and with NO_COLOR.
    let colour = flotilla_bench::colour_wanted(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let mut text = flotilla_bench::summary_table(&result, colour);
    text.push_str(&format!(
        "wrote {} and {}\n",
        out.join("result.json").display(),
        out.join("report.html").display()
    ));
    output::out(&text)
}
