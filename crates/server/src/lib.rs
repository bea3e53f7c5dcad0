//! The flotilla management plane: the HTTP API, the in-memory fleet model over a durable store,
//! and its background workers.
//!
//! Entry points: [`start`] opens the store, loads the fleet, and serves until shut down;
//! [`api::app`] builds the router for in-process tests.

pub mod api;
pub mod auth;
pub mod error;
pub mod fleet;
pub mod follow;
pub mod gitops;
pub mod lease;
pub mod metrics;
pub mod records;
pub mod rollouts;
pub mod serve;
pub mod state;
pub mod view;
pub mod workers;
pub mod writes;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use flotilla_store::{PgStore, SqliteStore, Store};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::serve::Serving;

pub use crate::state::Settings;
use crate::state::{AppState, SharedState, StateParts, now_seconds};
pub use flotilla_store::PgOptions;

/// How the server is started.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub settings: Settings,
    pub store: StoreConfig,
}

/// Where the durable state lives.
#[derive(Debug, Clone, Default)]
pub enum StoreConfig {
    /// SQLite in the data dir: one server.
    #[default]
    Embedded,
    /// A PostgreSQL database shared by any number of replicas.
    Postgres { url: String, options: PgOptions },
}

impl StoreConfig {
    /// `postgres://…` or `postgresql://…` (or a libpq key/value string with `host=`) selects
    /// PostgreSQL; empty or `embedded` the SQLite store in the data dir.
    pub fn parse(text: &str, options: PgOptions) -> anyhow::Result<StoreConfig> {
        let text = text.trim();
        if text.is_empty() || text == "embedded" {
            return Ok(StoreConfig::Embedded);
        }
        if text.starts_with("postgres://")
            || text.starts_with("postgresql://")
            || text.contains("host=")
        {
            return Ok(StoreConfig::Postgres {
                url: text.to_string(),
                options,
            });
        }
        anyhow::bail!(
            "--store {text:?}: expected `embedded` or a PostgreSQL URL such as postgres://user@host:5432/flotilla"
        )
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, StoreConfig::Postgres { .. })
    }
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub state: SharedState,
    /// The admin token, when this start created it (first start).
    pub new_admin_token: Option<String>,
    serving: Serving,
    workers: Vec<JoinHandle<()>>,
}

pub const ADMIN_TOKEN_FILE: &str = "admin-token";

/// The part of the shutdown deadline kept for writing soft state and releasing the lease after
/// connections drain (at most half of it): one store commit, normally milliseconds.
const FINAL_WRITES_RESERVE: Duration = Duration::from_secs(5);

/// Opens the store in `data_dir`, loads the fleet and starts serving.
pub async fn start(config: ServerConfig) -> anyhow::Result<Server> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
    // The store holds git credentials and the data dir the admin token: owner only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| {
                format!(
                    "restrict data dir {} to its owner",
                    config.data_dir.display()
                )
            })?;
    }
    let started = Instant::now();
    let fd_limit = serve::raise_fd_limit();
    let max_connections = config
        .settings
        .connections
        .max_connections
        .unwrap_or_else(|| serve::default_max_connections(fd_limit));
    let metrics = metrics::Metrics::default();
    let store: Arc<dyn Store> = match &config.store {
        StoreConfig::Embedded => {
            let store_path = config.data_dir.join("flotilla.db");
            Arc::new(
                SqliteStore::open_observed(&store_path, Some(metrics.store_observer()))
                    .with_context(|| format!("open store {}", store_path.display()))?,
            )
        }
        StoreConfig::Postgres { url, options } => {
            let (url, options) = (url.clone(), options.clone());
            let observer = metrics.store_observer();
            // Connecting blocks (up to the connect timeout): off the async workers.
            let opened = tokio::task::spawn_blocking(move || {
                PgStore::open_observed(&url, options, Some(observer))
            })
            .await
            .context("open the PostgreSQL store")?;
            Arc::new(opened.context("open the PostgreSQL store")?)
        }
    };
    let loaded = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || records::load(&*store))
            .await
            .context("load the fleet")?
            .context("load the fleet from the store")?
    };
    // A token the operator gave wins over the stored one: replicas given the same one agree,
    // and changing it (rotating the Secret) takes effect at the next start.
    let stored_admin_token_hash = match config.settings.admin_token_hash {
        Some(given) if loaded.admin_token_hash != Some(given) => {
            let record = records::AdminTokenRecord {
                hash: hex::encode(given),
            };
            store
                .commit(vec![records::put(
                    records::META,
                    records::ADMIN_TOKEN,
                    &record,
                )])
                .await
                .context("store the given admin token")?;
            Some(given)
        }
        _ => loaded.admin_token_hash,
    };
    if config.settings.admin_token_hash.is_some() {
        // A token this server once made no longer works: do not leave it where people look.
        let stale = config.data_dir.join(ADMIN_TOKEN_FILE);
        if let Err(error) = std::fs::remove_file(&stale)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, path = %stale.display(), "cannot remove the replaced admin token file");
        }
    }
    let mut new_admin_token = None;
    let admin_token_hash = match stored_admin_token_hash {
        Some(hash) => hash,
        None => {
            let token = auth::new_secret();
            let hash = auth::hash_secret(&token);
            // Created only if absent: replicas starting together on an empty database agree
            // on the first one, and the others read it back.
            store
                .commit(vec![records::put_if_absent(
                    records::META,
                    records::ADMIN_TOKEN,
                    &records::AdminTokenRecord {
                        hash: hex::encode(hash),
                    },
                )])
                .await
                .context("store admin token")?;
            let stored = {
                let store = store.clone();
                tokio::task::spawn_blocking(move || records::load_admin_token(&*store))
                    .await
                    .context("read the admin token back")??
            };
            if stored == Some(hash) {
                let path = config.data_dir.join(ADMIN_TOKEN_FILE);
                write_secret_file(&path, &token)
                    .with_context(|| format!("write admin token to {}", path.display()))?;
                tracing::info!(path = %path.display(), "created the admin token and wrote it (mode 0600); it is shown only once");
                new_admin_token = Some(token);
                hash
            } else {
                tracing::info!(
                    "another replica created the admin token at the same time; use the one in its data dir"
                );
                stored.context("the admin token vanished from the store")?
            }
        }
    };
    let clusters = loaded.fleet.cluster_names().len();
    let state: SharedState = Arc::new(AppState::new(StateParts {
        fleet: loaded.fleet,
        store,
        admin_token_hash,
        settings: config.settings.clone(),
        metrics,
        git_cache: config.data_dir.join("git"),
        shared_store: config.store.is_shared(),
        revision: loaded.revision,
    }));
    // Clusters that were Online get one full offline window from now to sync again (their
    // agents could not reach a stopped server). Their last-seen times stay what the store says:
    // the server has not seen them since.
    {
        let now = now_seconds();
        let fleet = state.fleet.read();
        for ordinal in loaded.online {
            if let Some(cluster) = fleet.cluster(ordinal) {
                let deadline = now + state.offline_after(cluster.facts.sync_interval_seconds);
                state.schedule_deadline(ordinal, deadline);
            }
        }
    }
    tracing::info!(
        clusters,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "fleet loaded"
    );
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let serving = Serving::start(
        listener,
        api::app(state.clone()),
        &config.settings.connections,
        max_connections,
    );
    let mut workers = vec![
        tokio::spawn(lease::keeper(
            state.lease.clone(),
            state.store.clone(),
            state.settings.lease_ttl,
            state.metrics.lease_held.clone(),
        )),
        tokio::spawn(workers::offline_sweeper(state.clone())),
        tokio::spawn(workers::soft_state_flusher(state.clone())),
        tokio::spawn(gitops::worker(state.clone())),
        tokio::spawn(workers::content_collector(state.clone())),
        tokio::spawn(rollouts::driver(state.clone())),
    ];
    if config.store.is_shared() {
        workers.push(tokio::spawn(follow::follower(
            state.clone(),
            flotilla_store::Cursor::after(loaded.revision),
        )));
    }
    let store_kind = if config.store.is_shared() {
        "postgres"
    } else {
        "embedded"
    };
    tracing::info!(%addr, data_dir = %config.data_dir.display(), store = store_kind, max_connections, open_files_limit = ?fd_limit, "flotilla server listening");
    Ok(Server {
        addr,
        state,
        new_admin_token,
        serving,
        workers,
    })
}

impl Server {
    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.serving.open_connections()
    }

    /// Stops accepting requests, finishes the ones in flight, flushes soft state and releases
    /// the lease, all within `Settings::connections.shutdown_timeout`: connections get what is
    /// left after [`FINAL_WRITES_RESERVE`], and are closed when it runs out.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let started = tokio::time::Instant::now();
        let timeout = self.state.settings.connections.shutdown_timeout;
        let deadline = started + timeout;
        let drain_deadline = deadline - FINAL_WRITES_RESERVE.min(timeout / 2);
        // Open watches end now: their streaming responses would hold the drain to its deadline.
        self.state.watches.stop();
        self.serving.drain(drain_deadline).await;
        for worker in &self.workers {
            worker.abort();
        }
        let final_writes = async {
            workers::flush_all_soft_state(&self.state).await;
            lease::release(&self.state.lease, self.state.store.clone()).await;
        };
        if tokio::time::timeout_at(deadline, final_writes)
            .await
            .is_err()
        {
            anyhow::bail!(
                "the shutdown deadline ({}) passed before soft state was written and the lease released; agents resend what was lost at their next sync",
                humantime::format_duration(timeout)
            );
        }
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "stopped cleanly"
        );
        Ok(())
    }

    /// Stops at once as a killed process would: no soft-state flush, no lease release, nothing
    /// more committed (for tests of what other replicas do when one dies).
    pub fn abandon(self) {
        self.state.watches.stop();
        self.serving.abort();
        for worker in &self.workers {
            worker.abort();
        }
    }

    /// Serves until the future completes (SIGTERM or SIGINT), then shuts down cleanly.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        stop.await;
        tracing::info!("shutting down");
        self.shutdown().await
    }
}

/// Writes a secret to a new file readable only by its owner.
fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    writeln!(file, "{secret}")?;
    file.sync_all()
}
