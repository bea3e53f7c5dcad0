//! `flotilla server`: the management plane.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::bail;
use clap::Args;

use crate::shutdown_signal;

#[derive(Args)]
pub struct ServerArgs {
    /// Address and port the API listens on.
    #[arg(long, env = "FLOTILLA_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the store and the admin token live (created if missing).
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
    /// Use this admin token (replacing the stored one) instead of creating one on first start
    /// and writing it to <data-dir>/admin-token: for replicas and Kubernetes Secrets.
    #[arg(long, env = "FLOTILLA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Watches (`get -w`, `?watch=true`) served at once; past it a watch is refused with 429.
    #[arg(long, default_value_t = 256)]
    max_watches: usize,
}

/// The shortest admin token `--admin-token` takes: it is stored as an unsalted SHA-256, so it
/// must be too long to guess (the server's own are 256-bit).
const MIN_ADMIN_TOKEN: usize = 32;

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let ServerArgs {
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
        admin_token,
        max_watches,
    } = args;
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
    // A Secret made with `--from-file` ends in a newline the client never sends.
    let admin_token = admin_token.map(|token| token.trim().to_string());
    if let Some(token) = &admin_token
        && token.chars().count() < MIN_ADMIN_TOKEN
    {
        bail!(
            "--admin-token must be at least {MIN_ADMIN_TOKEN} characters (it is the key to the whole fleet); make one with `openssl rand -hex 32`"
        );
    }
    if max_connections == Some(0) {
        bail!("--max-connections must be 1 or more");
    }
    let store = flotilla_server::StoreConfig::parse(
        &store,
        flotilla_server::PgOptions {
            readers: store_pool_size.max(1),
            statement_timeout: Some(store_statement_timeout).filter(|timeout| !timeout.is_zero()),
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
        admin_token_hash: admin_token
            .as_deref()
            .map(flotilla_server::auth::hash_secret),
        max_watches,
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
