//! `flotilla demo`: a server on the embedded store, a simulated fleet with a spread of labels,
//! and the example bundles from `examples/demo-fleet.yaml`.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Args;
use flotilla_api::{RegistrationToken, RegistrationTokenSpec};
use flotilla_client::{AdminClient, Resource};

use crate::documents;

const EXAMPLES: &str = include_str!("../../../../examples/demo-fleet.yaml");
const REGIONS: [&str; 5] = ["eu-west", "eu-central", "us-east", "us-west", "ap-south"];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];

#[derive(Args)]
pub struct DemoArgs {
    /// Simulated clusters to run.
    #[arg(long, default_value_t = 25)]
    clusters: usize,
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[arg(long, default_value = "./flotilla-data")]
    data_dir: PathBuf,
    /// Agents' sync interval.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let DemoArgs {
        clusters,
        listen,
        data_dir,
        interval,
    } = args;
    let stop = crate::shutdown_signal();
    let server = flotilla_server::start(flotilla_server::ServerConfig {
        listen,
        data_dir: data_dir.clone(),
        store: Default::default(),
        settings: flotilla_server::Settings::default(),
    })
    .await?;
    let base = format!("http://{}", server.addr);
    let token_path = data_dir.join(flotilla_server::ADMIN_TOKEN_FILE);
    let admin_token = match &server.new_admin_token {
        Some(token) => token.clone(),
        None => std::fs::read_to_string(&token_path)
            .with_context(|| format!("read the admin token from {}", token_path.display()))?
            .trim()
            .to_string(),
    };
    let admin = AdminClient::new(&base, &admin_token)?;
    for document in documents::parse("examples/demo-fleet.yaml", EXAMPLES)? {
        admin.apply(&document.value).await?;
    }
    let created = admin
        .api::<RegistrationToken>()
        .create(&RegistrationToken::new(
            "",
            RegistrationTokenSpec {
                labels: BTreeMap::from([("fleet".to_string(), "demo".to_string())]),
                ttl: Some("24h".into()),
                ..RegistrationTokenSpec::default()
            },
        ))
        .await?;
    let token = created
        .status
        .and_then(|status| status.token)
        .context("server did not return a registration token")?;
    let agents_dir = data_dir.join("agents");
    let mut agents = Vec::new();
    for index in 0..clusters {
        let name = format!("store-{index:04}");
        let labels = BTreeMap::from([
            (
                "region".to_string(),
                REGIONS[index % REGIONS.len()].to_string(),
            ),
            (
                "env".to_string(),
                ENVS[(index / REGIONS.len()) % ENVS.len()].to_string(),
            ),
            ("store".to_string(), format!("{index:04}")),
        ]);
        let state_dir = agents_dir.join(&name);
        let driver = flotilla_agent::simulated::SimulatedCluster::new(
            3,
            interval.as_secs() as u32,
            Some(state_dir.join("simulated-cluster.json")),
        );
        let config = flotilla_agent::AgentConfig {
            server: base.clone(),
            token: Some(token.clone()),
            name,
            labels,
            interval,
            drift_interval: flotilla_agent::runner::DEFAULT_DRIFT_INTERVAL,
        };
        agents.push(tokio::spawn(async move {
            if let Err(error) =
                flotilla_agent::run(config, &state_dir, driver, std::future::pending()).await
            {
                tracing::error!(%error, "agent stopped");
            }
        }));
    }
    println!(
        "\nflotilla demo: a server at {base} with {clusters} simulated clusters.\n\n\
         In another terminal, from this folder:\n  \
         flotilla get bundles\n  \
         flotilla get clusters -l env=prod\n  \
         flotilla describe bundle payments-canary\n  \
         flotilla label cluster store-0000 env=staging --overwrite\n\n\
         The admin token is in {}. Press Ctrl-C (or send SIGTERM) to stop.\n",
        token_path.display()
    );
    stop.await;
    for agent in agents {
        agent.abort();
    }
    server.shutdown().await
}
