//! `flotilla demo`: a server on the embedded store, a simulated fleet with a spread of labels,
//! and the example bundles from `examples/demo-fleet.yaml`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use clap::Args;
use flotilla_api::{RegistrationToken, RegistrationTokenSpec};
use flotilla_client::{AdminClient, Resource};

use crate::documents;

const EXAMPLES: &str = include_str!("../../../../examples/demo-fleet.yaml");
const REGIONS: [&str; 5] = ["eu-west", "eu-central", "us-east", "us-west", "ap-south"];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];
/// Where the demo listens unless told otherwise: the CLI's default `--server`.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Args)]
pub struct DemoArgs {
    /// Simulated clusters to run.
    #[arg(long, default_value_t = 25)]
    clusters: usize,
    /// Address the demo's server listens on (port 0: any free port).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Where the demo's server keeps its store and writes its admin token.
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
        "{}",
        banner(&Banner {
            base: &base,
            clusters,
            token_path: &token_path,
            program: &program(),
            default_server: listen == DEFAULT_LISTEN.parse::<SocketAddr>().expect("valid"),
        })
    );
    stop.await;
    for agent in agents {
        agent.abort();
    }
    server.shutdown().await
}

/// What the banner needs to print commands that work as printed.
struct Banner<'a> {
    base: &'a str,
    clusters: usize,
    token_path: &'a Path,
    /// How to run this binary from the current folder.
    program: &'a str,
    /// Whether the CLI's default `--server` reaches the demo.
    default_server: bool,
}

/// The demo's banner: where the server is and commands to try, each runnable as printed from
/// the folder the demo was started in (a shell's `export` lines first when the CLI's defaults
/// would not find the server or its admin token).
fn banner(banner: &Banner<'_>) -> String {
    let Banner {
        base,
        clusters,
        token_path,
        program,
        default_server,
    } = *banner;
    let mut setup = Vec::new();
    if !default_server {
        setup.push(format!("export FLOTILLA_SERVER={base}"));
    }
    // The CLI reads ./flotilla-data/admin-token when no token is given.
    let default_token = std::env::current_dir()
        .ok()
        .and_then(|cwd| {
            let default = cwd
                .join("flotilla-data")
                .join(flotilla_server::ADMIN_TOKEN_FILE);
            Some(std::fs::canonicalize(default).ok()? == std::fs::canonicalize(token_path).ok()?)
        })
        .unwrap_or(false);
    if !default_token {
        setup.push(format!(
            "export FLOTILLA_TOKEN=\"$(cat {})\"",
            shell_quote(&token_path.display().to_string())
        ));
    }
    let commands = [
        "get bundles",
        "get clusters -l env=prod",
        "describe bundle payments-canary",
        "label cluster store-0000 env=staging --overwrite",
    ];
    let mut text = format!(
        "\nflotilla demo: a server at {base} with {clusters} simulated clusters.\n\n\
         In another terminal, from this folder:\n"
    );
    for line in setup
        .iter()
        .cloned()
        .chain(commands.iter().map(|c| format!("{program} {c}")))
    {
        text.push_str("  ");
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str(&format!(
        "\nThe admin token is in {}. Press Ctrl-C (or send SIGTERM) to stop.\n",
        token_path.display()
    ));
    text
}

/// How a shell in the current folder runs this binary: `flotilla` when that is what PATH
/// finds, else its path (relative to the folder when inside it, as after `cargo run`).
fn program() -> String {
    let Ok(exe) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "flotilla".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|dir| std::fs::canonicalize(dir.join("flotilla")).is_ok_and(|found| found == exe))
    });
    if on_path {
        return "flotilla".into();
    }
    let relative = std::env::current_dir()
        .and_then(std::fs::canonicalize)
        .ok()
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_path_buf));
    match relative {
        Some(relative) => shell_quote(&format!("./{}", relative.display())),
        None => shell_quote(&exe.display().to_string()),
    }
}

/// A word a POSIX shell reads back as `text`.
fn shell_quote(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%=,".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
