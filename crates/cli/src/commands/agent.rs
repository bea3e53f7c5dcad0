//! `flotilla agent`: run the agent for one cluster (Kubernetes or `--simulated`), or print the
//! manifest that installs it (`flotilla agent manifest`).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::{args::parse_labels, install, output, shutdown_signal};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
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
    /// Where the agent keeps its credential and content cache.
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

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let AgentArgs {
        action,
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
    } = args;
    if let Some(AgentAction::Manifest(args)) = action {
        return manifest(&args);
    }
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
    let mut kube_config = match kubeconfig {
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
    // A hung or overloaded API must not stall the agent's loop (and with it the sync that keeps
    // the cluster Online): bounded reads, and the agent's own retries only.
    kube_config.read_timeout = Some(Duration::from_secs(30));
    kube_config.default_retry = false;
    let client = kube::Client::try_from(kube_config).context("build the Kubernetes client")?;
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("create state dir {}", state_dir.display()))?;
    let driver = flotilla_agent::kubernetes::KubernetesCluster::new(
        client,
        interval.as_secs() as u32,
        Some(&state_dir),
    );
    flotilla_agent::run(config, &state_dir, driver, shutdown_signal()).await
}

/// `flotilla agent manifest`: checks the arguments as the agent would, then prints the YAML.
fn manifest(args: &install::ManifestArgs) -> anyhow::Result<()> {
    let name = args.name.clone().unwrap_or_else(install::random_name);
    flotilla_core::validate::validate_dns_label(&name)
        .map_err(|e| anyhow::anyhow!("--name: cluster {e}"))?;
    parse_labels(&args.labels).map_err(|e| anyhow::anyhow!("--labels: {e}"))?;
    humantime::parse_duration(&args.interval)
        .map_err(|e| anyhow::anyhow!("--interval {}: {e}", args.interval))?;
    let mut text = String::new();
    for document in install::documents(args, &name) {
        text.push_str("---\n");
        text.push_str(&serde_saphyr::to_string(&document).context("render YAML")?);
    }
    output::out(&text)
}
