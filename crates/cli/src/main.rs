//! `flotilla`: the one binary. Parses arguments and calls the library crates.

mod demo;
mod documents;
mod install;
mod output;
mod render_cmd;
mod signals;

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use flotilla_api::Kind;
use flotilla_client::{AdminClient, ListOptions};
use serde_json::{Value, json};

use crate::output::Format;

/// The server and the simulator allocate many small, short-lived objects from several threads;
/// mimalloc serves them with less CPU and fragmentation than the system allocator (measured in
/// docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "flotilla",
    version,
    about = "GitOps management for fleets of Kubernetes clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Connection {
    /// URL of the flotilla server.
    #[arg(
        long,
        env = "FLOTILLA_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// Admin API token (default: the contents of ./flotilla-data/admin-token, if present).
    #[arg(long, env = "FLOTILLA_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the management plane.
    Server(ServerArgs),
    /// Run an agent for one cluster (`flotilla agent --simulated` for an in-memory cluster).
    Agent(AgentArgs),
    /// Start a server and a simulated fleet with example bundles, and print where to look.
    Demo(demo::DemoArgs),
    /// Simulate many clusters in this process, each making the real agent calls.
    Sim(SimArgs),
    /// Run a load scenario against a real server and write result.json and report.html.
    Bench(BenchArgs),
    /// Create or replace objects from files, folders or standard input (-).
    Apply {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// List objects, or show one.
    Get {
        /// clusters, bundles, clustergroups or tokens.
        kind: String,
        name: Option<String>,
        /// Label selector, e.g. `env=prod,tier in (a,b),!canary`.
        #[arg(short = 'l', long = "selector")]
        selector: Option<String>,
        /// Only objects in this state (clusters: Online, Offline, Pending; bundles: Ready, …).
        #[arg(long)]
        state: Option<String>,
        /// name or -name.
        #[arg(long)]
        sort: Option<String>,
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: Format,
        #[command(flatten)]
        connection: Connection,
    },
    /// Show one object in detail.
    Describe {
        kind: String,
        name: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete an object.
    Delete {
        kind: String,
        name: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Add, change (with --overwrite) or remove (`key-`) labels, like kubectl label.
    Label {
        kind: String,
        name: String,
        /// `key=value` to set, `key-` to remove.
        #[arg(required = true)]
        changes: Vec<String>,
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Render a folder offline as the server would for a GitRepo, and print what one cluster
    /// gets (raw YAML, Kustomize, Helm or fleet.yaml; before the agent's ownership labels).
    Render {
        /// The folder (inside a git work tree, `../` paths in fleet.yaml resolve from its root).
        path: PathBuf,
        /// The cluster's name (for clusterName targets and `${cluster.name}`).
        #[arg(long, default_value = "local")]
        cluster_name: String,
        /// The cluster's labels: k=v,k2=v2.
        #[arg(long, value_parser = parse_labels, default_value = "")]
        labels: BTreeMap<String, String>,
        /// Cluster groups the cluster belongs to (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// A file with the GitRepo whose targets apply (default: one matching every cluster).
        #[arg(long)]
        gitrepo: Option<PathBuf>,
        /// Hosts the render may download from, as the server's --render-allow-hosts
        /// (default: none).
        #[arg(
            long,
            env = "FLOTILLA_RENDER_ALLOW_HOSTS",
            value_delimiter = ',',
            default_value = ""
        )]
        render_allow_hosts: Vec<String>,
        #[arg(short = 'o', long = "output", value_enum, default_value = "yaml")]
        output: Format,
    },
    /// Registration tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a registration token and print it (only the token, on standard output).
    Create {
        /// Labels stamped on clusters that register with it: k=v,k2=v2.
        #[arg(long, value_parser = parse_labels, default_value = "")]
        labels: BTreeMap<String, String>,
        /// Lifetime, e.g. 1h or 7d; never expires when unset.
        #[arg(long)]
        ttl: Option<String>,
        /// How many clusters may register with it (1 or more); unlimited when unset.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        max_uses: Option<u64>,
        /// Token name (default: generated).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Args)]
struct ServerArgs {
    #[arg(long, env = "FLOTILLA_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[arg(long, env = "FLOTILLA_DATA_DIR", default_value = "./flotilla-data")]
    data_dir: PathBuf,
    /// A cluster turns Offline after this many missed sync intervals.
    #[arg(long, default_value_t = 3)]
    offline_missed_intervals: u32,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    max_body_bytes: usize,
    /// Agent calls served at once; beyond it agents are told to retry later (429 with
    /// Retry-After) instead of queueing.
    #[arg(long, default_value_t = 2048)]
    max_agent_requests: usize,
    /// Where the durable state lives: `embedded` (SQLite in the data dir, one server) or a
    /// PostgreSQL URL (postgres://user@host:5432/db) that several replicas share.
    #[arg(
        long,
        env = "FLOTILLA_STORE",
        default_value = "embedded",
        hide_env_values = true
    )]
    store: String,
    /// PostgreSQL reader connections per replica (bulk load, change feed, health checks); the
    /// writer has one more.
    #[arg(long, default_value_t = 2)]
    store_pool_size: usize,
    /// Longest a PostgreSQL statement may run (the start-up load excepted); 0 for no limit.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    store_statement_timeout: std::time::Duration,
    /// How long content no bundle references any more (old versions, deleted bundles) stays
    /// in the store before it is deleted.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    content_retention: std::time::Duration,
    /// Most connections open at once; at the cap the oldest connection without a complete
    /// request (else the one idle longest) is closed for the new one. Default: the open-files
    /// limit (raised to its hard limit at start) less 256 kept for the store and git.
    #[arg(long, env = "FLOTILLA_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// A connection must send a complete request head within this long (on HTTP/1 every
    /// request head, and the wait for the next one).
    #[arg(long, env = "FLOTILLA_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: std::time::Duration,
    /// A connection with no request in flight this long is closed.
    #[arg(long, env = "FLOTILLA_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: std::time::Duration,
    /// A request body must arrive in full within this long of its head.
    #[arg(long, env = "FLOTILLA_BODY_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    body_timeout: std::time::Duration,
    /// How long a graceful stop (SIGTERM or SIGINT) may take: requests in flight finish, soft
    /// state is written and the lease released. Keep it under the pod's grace period (30 s).
    #[arg(long, env = "FLOTILLA_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = humantime::parse_duration)]
    shutdown_timeout: std::time::Duration,
    /// Hosts git-source renders may download from (remote Kustomize bases and resources, Helm
    /// chart repositories, registries and chart dependencies), comma-separated: `host`,
    /// `host:port`, `*.domain`, or `*` for any. Default: none, renders use only the repository.
    #[arg(
        long,
        env = "FLOTILLA_RENDER_ALLOW_HOSTS",
        value_delimiter = ',',
        default_value = ""
    )]
    render_allow_hosts: Vec<String>,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct AgentArgs {
    #[command(subcommand)]
    action: Option<AgentAction>,
    /// The server's URL, or several replicas' URLs comma-separated (the agent moves to the
    /// next one when one is unreachable).
    #[arg(long, env = "FLOTILLA_SERVER")]
    server: Option<String>,
    /// Registration token (needed until the agent has registered; then its credential is kept
    /// in the state dir).
    #[arg(long, env = "FLOTILLA_AGENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Cluster name (a DNS label).
    #[arg(long, env = "FLOTILLA_CLUSTER_NAME")]
    name: Option<String>,
    /// Labels the cluster asks for: k=v,k2=v2 (labels of the token win).
    #[arg(long, value_parser = parse_labels, default_value = "")]
    labels: BTreeMap<String, String>,
    /// Manage an in-memory simulated cluster instead of a Kubernetes cluster.
    #[arg(long)]
    simulated: bool,
    /// Nodes of the simulated cluster.
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    #[arg(long, env = "FLOTILLA_STATE_DIR", default_value = "./flotilla-agent")]
    state_dir: PathBuf,
    /// Sync interval (jittered ±10%).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// How often live objects are compared with their manifests (jittered ±10%).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    drift_interval: Duration,
    /// Kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, then the in-cluster service
    /// account).
    #[arg(long, env = "FLOTILLA_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AgentAction {
    /// Print the Kubernetes YAML that installs the agent in a cluster (`kubectl apply -f -`);
    /// `kubectl delete -f` of the same output removes it.
    Manifest(install::ManifestArgs),
}

#[derive(Args)]
struct SimArgs {
    /// The server's URL, or several replicas' URLs comma-separated (the simulated clusters start
    /// spread evenly over them and move to the next one when theirs is unreachable, as agents).
    #[arg(long, env = "FLOTILLA_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Registration token the simulated clusters register with.
    #[arg(long, env = "FLOTILLA_AGENT_TOKEN", hide_env_values = true)]
    token: String,
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

#[derive(Args)]
struct BenchArgs {
    /// register, steady, rollout, restart, api, or all (each in turn, into one report).
    #[arg(value_parser = flotilla_bench::Scenario::parse)]
    scenario: flotilla_bench::Scenario,
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

fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("label {pair:?} has no '='; write key=value"))?;
        flotilla_core::selector::validate_label_key(key)?;
        flotilla_core::selector::validate_label_value(value)?;
        labels.insert(key.to_string(), value.to_string());
    }
    Ok(labels)
}

fn main() -> std::process::ExitCode {
    flotilla_client::install_crypto_provider();
    let cli = Cli::parse();
    let quiet = !matches!(
        cli.command,
        Command::Server(_) | Command::Agent(_) | Command::Demo(_)
    );
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOG").unwrap_or_else(|_| {
        // kube's HTTP layer logs every failed request at error level (a line per object per
        // pass while the Kubernetes API is down); the agent reports failures itself.
        tracing_subscriber::EnvFilter::new(if quiet {
            "warn,kube_client=off"
        } else {
            "info,kube_client=off"
        })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: start async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error)
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let server = match args.server {
        Some(server) => {
            let token = args.token.context(
                "--server needs the server's admin token: pass --token or set FLOTILLA_TOKEN",
            )?;
            Some((server, token))
        }
        None => None,
    };
    let config = flotilla_bench::BenchConfig {
        scenario: args.scenario,
        clusters: args.clusters,
        out: args.out.clone(),
        server,
        exe: std::env::current_exe().context("find the flotilla binary")?,
        interval: args.interval,
        duration: args.duration,
        api_users: args.api_users,
        api_duration: args.api_duration,
        bundles: args.bundles,
        nodes: args.nodes,
        concurrency: args.concurrency,
        connections: args.connections,
        server_cpus: args.server_cpus.clone(),
        sim_cpus: args.sim_cpus.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        progress: !args.no_progress,
    };
    let result = tokio::select! {
        result = flotilla_bench::run(config) => result?,
        () = shutdown_signal() => bail!("interrupted; no result written"),
    };
    let mut text = String::new();
    for verdict in &result.verdicts {
        let word = match verdict.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not judged",
        };
        text.push_str(&format!(
            "{:<3} {:<58} {:<28} {word}\n",
            verdict.id, verdict.measured, verdict.target
        ));
    }
    text.push_str(&format!(
        "wrote {} and {}\n",
        args.out.join("result.json").display(),
        args.out.join("report.html").display()
    ));
    output::out(&text)
}

/// SIGTERM or SIGINT (a second one exits at once); the handlers are installed when this is
/// called, so call it before starting what it stops.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    signals::stop_requested()
}

fn admin(connection: &Connection) -> anyhow::Result<AdminClient> {
    let token = match &connection.token {
        Some(token) => token.clone(),
        None => std::fs::read_to_string("flotilla-data/admin-token")
            .map(|t| t.trim().to_string())
            .map_err(|_| {
                anyhow::anyhow!(
                    "no admin token: pass --token or set FLOTILLA_TOKEN (the server wrote one to <data-dir>/admin-token)"
                )
            })?,
    };
    AdminClient::new(&connection.server, &token)
}

fn kind(text: &str) -> anyhow::Result<Kind> {
    Kind::parse(text).with_context(|| {
        format!("unknown kind {text:?}; use clusters, bundles, clustergroups or tokens")
    })
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Server(ServerArgs {
            listen,
            data_dir,
            offline_missed_intervals,
            max_body_bytes,
            max_agent_requests,
            store,
            store_pool_size,
            store_statement_timeout,
            content_retention,
            render_allow_hosts,
            max_connections,
            header_timeout,
            idle_timeout,
            body_timeout,
            shutdown_timeout,
        }) => {
            let stop = shutdown_signal();
            for (name, duration) in [
                ("--header-timeout", header_timeout),
                ("--idle-timeout", idle_timeout),
                ("--body-timeout", body_timeout),
                ("--shutdown-timeout", shutdown_timeout),
            ] {
                if duration.is_zero() {
                    bail!("{name} must be longer than 0s");
                }
            }
            if max_connections == Some(0) {
                bail!("--max-connections must be 1 or more");
            }
            let store = flotilla_server::StoreConfig::parse(
                &store,
                flotilla_server::PgOptions {
                    readers: store_pool_size.max(1),
                    statement_timeout: Some(store_statement_timeout)
                        .filter(|timeout| !timeout.is_zero()),
                    ..flotilla_server::PgOptions::default()
                },
            )?;
            let settings = flotilla_server::Settings {
                offline_missed_intervals,
                max_body_bytes,
                max_agent_requests: max_agent_requests.max(2),
                content_retention,
                render_allow_hosts,
                connections: flotilla_server::serve::ConnectionSettings {
                    max_connections,
                    header_timeout,
                    idle_timeout,
                    body_timeout,
                    shutdown_timeout,
                },
                ..flotilla_server::Settings::default()
            };
            let server = flotilla_server::start(flotilla_server::ServerConfig {
                listen,
                data_dir,
                settings,
                store,
            })
            .await?;
            server.run_until(stop).await
        }
        Command::Agent(AgentArgs {
            action: Some(AgentAction::Manifest(args)),
            ..
        }) => {
            let name = args.name.clone().unwrap_or_else(install::random_name);
            flotilla_core::validate::validate_dns_label(&name)
                .map_err(|e| anyhow::anyhow!("--name: cluster {e}"))?;
            parse_labels(&args.labels).map_err(|e| anyhow::anyhow!("--labels: {e}"))?;
            humantime::parse_duration(&args.interval)
                .map_err(|e| anyhow::anyhow!("--interval {}: {e}", args.interval))?;
            let mut text = String::new();
            for document in install::documents(&args, &name) {
                text.push_str("---\n");
                text.push_str(&serde_saphyr::to_string(&document).context("render YAML")?);
            }
            output::out(&text)
        }
        Command::Agent(AgentArgs {
            action: None,
            server,
            token,
            name,
            labels,
            simulated,
            nodes,
            state_dir,
            interval,
            drift_interval,
            kubeconfig,
        }) => {
            let server = server.context("--server is required (or set FLOTILLA_SERVER)")?;
            let name = name.context("--name is required (or set FLOTILLA_CLUSTER_NAME)")?;
            let config = flotilla_agent::AgentConfig {
                server,
                token,
                name,
                labels,
                interval,
                drift_interval,
            };
            if simulated {
                let driver = flotilla_agent::simulated::SimulatedCluster::new(
                    nodes,
                    interval.as_secs() as u32,
                    Some(state_dir.join("simulated-cluster.json")),
                );
                return flotilla_agent::run(config, &state_dir, driver, shutdown_signal()).await;
            }
            let kube_config = match kubeconfig {
                Some(path) => {
                    let file = kube::config::Kubeconfig::read_from(&path)
                        .with_context(|| format!("read kubeconfig {}", path.display()))?;
                    kube::Config::from_custom_kubeconfig(file, &Default::default())
                        .await
                        .with_context(|| format!("use kubeconfig {}", path.display()))?
                }
                None => kube::Config::infer().await.context(
                    "find the cluster: no kubeconfig ($KUBECONFIG, ~/.kube/config) and not running in a pod; pass --kubeconfig or --simulated",
                )?,
            };
            let mut kube_config = kube_config;
            // A hung or overloaded API must not stall the agent's loop (and with it the sync
            // that keeps the cluster Online): bounded reads, and the agent's own retries only.
            kube_config.read_timeout = Some(Duration::from_secs(30));
            kube_config.default_retry = false;
            let client =
                kube::Client::try_from(kube_config).context("build the Kubernetes client")?;
            std::fs::create_dir_all(&state_dir)
                .with_context(|| format!("create state dir {}", state_dir.display()))?;
            let driver = flotilla_agent::kubernetes::KubernetesCluster::new(
                client,
                interval.as_secs() as u32,
                Some(&state_dir),
            );
            flotilla_agent::run(config, &state_dir, driver, shutdown_signal()).await
        }
        Command::Demo(args) => demo::run(args).await,
        Command::Bench(args) => bench(args).await,
        Command::Sim(SimArgs {
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
        }) => {
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
        Command::Apply { files, connection } => {
            let client = admin(&connection)?;
            let mut documents = Vec::new();
            for file in &files {
                documents.extend(documents::read(file)?);
            }
            let mut failures = 0;
            for document in documents {
                let label = format!(
                    "{}/{}",
                    document.value["kind"]
                        .as_str()
                        .unwrap_or("?")
                        .to_ascii_lowercase(),
                    document
                        .value
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                );
                match client.apply(&document.value).await {
                    Ok((true, _)) => output::out(&format!("{label} created\n"))?,
                    Ok((false, _)) => output::out(&format!("{label} configured\n"))?,
                    Err(error) => {
                        failures += 1;
                        eprintln!("error: {}: {label}: {error:#}", document.source);
                    }
                }
            }
            if failures > 0 {
                bail!("{failures} document(s) were not applied");
            }
            Ok(())
        }
        Command::Get {
            kind: kind_text,
            name,
            selector,
            state,
            sort,
            output,
            connection,
        } => {
            let kind = kind(&kind_text)?;
            let client = admin(&connection)?;
            match name {
                Some(name) => output::print_one(kind, &client.get(kind, &name).await?, output),
                None => {
                    let options = ListOptions {
                        label_selector: selector,
                        state,
                        sort,
                    };
                    let items = client.list_all(kind, &options).await?;
                    output::print_list(kind, &items, output)
                }
            }
        }
        Command::Describe {
            kind: kind_text,
            name,
            connection,
        } => {
            let kind = kind(&kind_text)?;
            let item = admin(&connection)?.get(kind, &name).await?;
            output::describe(kind, &item)
        }
        Command::Delete {
            kind: kind_text,
            name,
            connection,
        } => {
            let kind = kind(&kind_text)?;
            admin(&connection)?.delete(kind, &name).await?;
            output::out(&format!(
                "{}/{name} deleted\n",
                kind.as_str().to_ascii_lowercase()
            ))?;
            Ok(())
        }
        Command::Label {
            kind: kind_text,
            name,
            changes,
            overwrite,
            connection,
        } => {
            let kind = kind(&kind_text)?;
            let client = admin(&connection)?;
            let mut object = client.get(kind, &name).await?;
            let labels = object
                .pointer_mut("/metadata")
                .and_then(Value::as_object_mut)
                .context("server returned an object without metadata")?
                .entry("labels")
                .or_insert_with(|| json!({}));
            let labels = labels.as_object_mut().context("labels are not a mapping")?;
            for change in &changes {
                if let Some(key) = change.strip_suffix('-') {
                    if labels.remove(key).is_none() {
                        eprintln!("label {key:?} not found");
                    }
                    continue;
                }
                let (key, value) = change.split_once('=').with_context(|| {
                    format!("{change:?}: write key=value to set a label, key- to remove one")
                })?;
                if let Some(existing) = labels.get(key)
                    && existing.as_str() != Some(value)
                    && !overwrite
                {
                    bail!(
                        "label {key:?} already has a value ({}); pass --overwrite to change it",
                        existing.as_str().unwrap_or_default()
                    );
                }
                labels.insert(key.to_string(), Value::String(value.to_string()));
            }
            if let Some(object) = object.as_object_mut() {
                object.remove("status");
            }
            client.replace(kind, &name, &object).await?;
            output::out(&format!(
                "{}/{name} labeled\n",
                kind.as_str().to_ascii_lowercase()
            ))?;
            Ok(())
        }
        Command::Render {
            path,
            cluster_name,
            labels,
            groups,
            gitrepo,
            render_allow_hosts,
            output,
        } => render_cmd::run(render_cmd::RenderArgs {
            path,
            cluster_name,
            labels,
            groups,
            gitrepo,
            allow_hosts: render_allow_hosts,
            output,
        }),
        Command::Token {
            command:
                TokenCommand::Create {
                    labels,
                    ttl,
                    max_uses,
                    name,
                    connection,
                },
        } => {
            let document = json!({
                "apiVersion": flotilla_api::API_VERSION,
                "kind": "RegistrationToken",
                "metadata": {"name": name.unwrap_or_default()},
                "spec": {"labels": labels, "ttl": ttl, "maxUses": max_uses},
            });
            let created = admin(&connection)?
                .create(Kind::RegistrationToken, &strip_nulls(document))
                .await?;
            let token = created
                .pointer("/status/token")
                .and_then(Value::as_str)
                .context("server did not return the token")?;
            output::out(&format!("{token}\n"))
        }
    }
}

/// Drops null fields (optional flags not given).
fn strip_nulls(mut value: Value) -> Value {
    if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
        spec.retain(|_, v| !v.is_null());
    }
    value
}
