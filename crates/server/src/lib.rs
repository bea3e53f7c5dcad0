//! The flotilla management plane: the HTTP API, the in-memory fleet model over a durable store,
//! and its background workers.
//!
//! Entry points: [`start`] opens the store, loads the fleet, and serves until shut down;
//! [`api::app`] builds the router for in-process tests.

pub mod api;
pub mod auth;
pub mod error;
pub mod fleet;
pub mod gitops;
pub mod metrics;
pub mod records;
pub mod state;
pub mod workers;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use anyhow::Context;
use flotilla_store::{SqliteStore, Store};
use parking_lot::{Mutex, RwLock};
use tokio::{net::TcpListener, task::JoinHandle};

pub use crate::state::Settings;
use crate::state::{AppState, SharedState, now_seconds};

/// How the server is started.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub settings: Settings,
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub state: SharedState,
    /// The admin token, when this start created it (first start).
    pub new_admin_token: Option<String>,
    shutdown: tokio::sync::watch::Sender<bool>,
    serve: JoinHandle<std::io::Result<()>>,
    workers: Vec<JoinHandle<()>>,
}

pub const ADMIN_TOKEN_FILE: &str = "admin-token";

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
    let store_path = config.data_dir.join("flotilla.db");
    let started = Instant::now();
    let metrics = metrics::Metrics::default();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open_observed(&store_path, Some(metrics.store_observer()))
            .with_context(|| format!("open store {}", store_path.display()))?,
    );
    let loaded = records::load(&*store).context("load the fleet from the store")?;
    let mut new_admin_token = None;
    let admin_token_hash = match loaded.admin_token_hash {
        Some(hash) => hash,
        None => {
            let token = auth::new_secret();
            let hash = auth::hash_secret(&token);
            store
                .commit(vec![records::put(
                    records::META,
                    records::ADMIN_TOKEN,
                    &records::AdminTokenRecord {
                        hash: hex::encode(hash),
                    },
                )])
                .await
                .context("store admin token")?;
            let path = config.data_dir.join(ADMIN_TOKEN_FILE);
            write_secret_file(&path, &token)
                .with_context(|| format!("write admin token to {}", path.display()))?;
            tracing::info!(path = %path.display(), "created the admin token and wrote it (mode 0600); it is shown only once");
            new_admin_token = Some(token);
            hash
        }
    };
    let clusters = loaded.fleet.cluster_names.len();
    let state: SharedState = Arc::new(AppState {
        fleet: RwLock::new(loaded.fleet),
        store,
        admin_lock: tokio::sync::Mutex::new(()),
        admin_token_hash,
        settings: config.settings.clone(),
        metrics,
        deadlines: Mutex::new(Default::default()),
        dirty: Mutex::new(roaring::RoaringBitmap::new()),
        gitops: gitops::GitOps::new(
            config.data_dir.join("git"),
            flotilla_render::Tools::detect(),
        ),
        agent_in_flight: Default::default(),
    });
    // Clusters that were Online get one full offline window from now: their last-seen times
    // predate the restart.
    {
        let now = now_seconds();
        let fleet = state.fleet.read();
        for ordinal in loaded.online {
            if let Some(cluster) = fleet.cluster(ordinal) {
                cluster
                    .last_seen
                    .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
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
    // Small replies must not wait for Nagle's algorithm (a 204 would sit for the peer's
    // delayed ACK, ~40 ms on Linux).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    let (shutdown, mut shutdown_rx) = tokio::sync::watch::channel(false);
    let app = api::app(state.clone());
    let serve = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown_rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    let workers = vec![
        tokio::spawn(workers::offline_sweeper(state.clone())),
        tokio::spawn(workers::soft_state_flusher(state.clone())),
        tokio::spawn(gitops::worker(state.clone())),
    ];
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "flotilla server listening");
    Ok(Server {
        addr,
        state,
        new_admin_token,
        shutdown,
        serve,
        workers,
    })
}

impl Server {
    /// Stops accepting requests, finishes the ones in flight, and flushes soft state.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        let served = self.serve.await;
        for worker in &self.workers {
            worker.abort();
        }
        workers::flush_all_soft_state(&self.state).await;
        served.context("join server task")?.context("serve")?;
        Ok(())
    }

    /// Serves until the future completes (e.g. Ctrl-C), then shuts down cleanly.
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
