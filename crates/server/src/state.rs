//! Shared server state: the fleet behind one lock, the store, and the bookkeeping of the
//! background workers (offline deadlines, soft-state flushing).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use flotilla_store::Store;
use parking_lot::{Mutex, RwLock};

use crate::{fleet::Fleet, metrics::Metrics};

/// Tunables of a running server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A cluster turns Offline after this many missed sync intervals.
    pub offline_missed_intervals: u32,
    /// Sync interval assumed for agents that do not report theirs.
    pub default_sync_interval: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How often batched soft state (heartbeats' consequences, agent status) is written.
    pub flush_interval: Duration,
    /// Agent calls served at once; past it agents get 429 with a Retry-After and back off
    /// (registrations give way at half of it: they write and fsync).
    pub max_agent_requests: usize,
    /// Most content bytes a sync reply carries inline (content the agent has not applied yet);
    /// 0 sends none, so agents fetch every content by digest.
    pub inline_content_bytes: usize,
    /// How long the singleton lease lasts unrenewed (renewed every third of it): on a shared
    /// store, singleton work moves to another replica within about this long after its holder
    /// dies.
    pub lease_ttl: Duration,
    /// Content no bundle references is deleted from the store once it has been unreferenced
    /// this long (checked every quarter of it, at most every minute).
    pub content_retention: Duration,
    /// Hosts git-source renders may fetch from (remote kustomize bases, Helm chart repositories
    /// and registries): `host`, `host:port`, `*.domain` or `*`. Empty: no network at all.
    pub render_allow_hosts: Vec<String>,
    /// Connection cap, header and idle timeouts, and the graceful-stop deadline.
    pub connections: crate::serve::ConnectionSettings,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            offline_missed_intervals: 3,
            default_sync_interval: Duration::from_secs(30),
            // 4 MiB holds bundles of hundreds of manifests; larger ones belong in git sources.
            max_body_bytes: 4 << 20,
            flush_interval: Duration::from_millis(500),
            max_agent_requests: 2048,
            inline_content_bytes: 64 << 10,
            lease_ttl: Duration::from_secs(15),
            content_retention: Duration::from_secs(600),
            render_allow_hosts: Vec::new(),
            connections: crate::serve::ConnectionSettings::default(),
        }
    }
}

pub struct AppState {
    pub fleet: RwLock<Fleet>,
    pub store: Arc<dyn Store>,
    /// Serializes admin mutations so the store's commit order is the memory's apply order.
    pub admin_lock: tokio::sync::Mutex<()>,
    pub admin_token_hash: [u8; 32],
    pub settings: Settings,
    pub metrics: Metrics,
    /// Offline deadlines: unix second → clusters to check then. Each online cluster is in here
    /// once; the sweeper re-checks it lazily against its last-seen time, so a sync never touches
    /// this map.
    pub deadlines: Mutex<BTreeMap<u64, Vec<u32>>>,
    /// Clusters whose soft state must be written by the next flush, each once however often it
    /// changed meanwhile (so a backlog is bounded by the fleet, not by the rate of changes).
    pub dirty: Mutex<roaring::RoaringBitmap>,
    /// Git sources: scheduling, fetch cache, rendering tools.
    pub gitops: crate::gitops::schedule::GitOps,
    /// Agent calls being served now (see `Settings::max_agent_requests`).
    pub agent_in_flight: std::sync::atomic::AtomicUsize,
    /// Whether other replicas share the store (PostgreSQL).
    pub shared_store: bool,
    /// The singleton lease (offline sweeps, git polling, content collection).
    pub lease: Arc<crate::lease::Lease>,
    /// Store revision through which this replica's model holds every other replica's writes
    /// (the follower's progress); `u64::MAX` on a store no one else writes.
    pub followed: std::sync::atomic::AtomicU64,
}

pub type SharedState = Arc<AppState>;

/// Unix seconds now.
pub fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z): four-digit years.
pub const MAX_RFC3339_SECONDS: u64 = 253_402_300_799;

/// RFC 3339 text of unix seconds. Times past year 9999 are written as its last second rather
/// than panicking (a value stored before writes were bounded must still render).
pub fn rfc3339(seconds: u64) -> String {
    let seconds = seconds.min(MAX_RFC3339_SECONDS);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(seconds))
        .to_string()
}

/// What a server's state starts from; the rest starts empty.
pub struct StateParts {
    pub fleet: Fleet,
    pub store: Arc<dyn Store>,
    pub admin_token_hash: [u8; 32],
    pub settings: Settings,
    pub metrics: Metrics,
    /// Where the git worker keeps its repository caches.
    pub git_cache: std::path::PathBuf,
    /// Whether other replicas share the store.
    pub shared_store: bool,
    /// The store revision the fleet was loaded at.
    pub revision: u64,
}

impl AppState {
    pub fn new(parts: StateParts) -> AppState {
        let StateParts {
            fleet,
            store,
            admin_token_hash,
            settings,
            metrics,
            git_cache,
            shared_store,
            revision,
        } = parts;
        let tools =
            flotilla_render::Tools::detect().with_allowed_hosts(&settings.render_allow_hosts);
        AppState {
            fleet: RwLock::new(fleet),
            store,
            admin_lock: tokio::sync::Mutex::new(()),
            admin_token_hash,
            settings,
            metrics,
            deadlines: Mutex::new(Default::default()),
            dirty: Mutex::new(roaring::RoaringBitmap::new()),
            gitops: crate::gitops::schedule::GitOps::new(git_cache, tools),
            agent_in_flight: Default::default(),
            shared_store,
            lease: Arc::new(crate::lease::Lease::new(shared_store)),
            followed: std::sync::atomic::AtomicU64::new(if shared_store {
                revision
            } else {
                u64::MAX
            }),
        }
    }

    /// The deadline after which a cluster with this sync interval counts as Offline.
    pub fn offline_after(&self, interval_seconds: Option<u32>) -> u64 {
        let interval = interval_seconds
            .map(u64::from)
            .filter(|i| *i > 0)
            .unwrap_or(self.settings.default_sync_interval.as_secs().max(1));
        interval * u64::from(self.settings.offline_missed_intervals.max(1)) + 1
    }

    pub fn schedule_deadline(&self, ordinal: u32, at: u64) {
        self.deadlines.lock().entry(at).or_default().push(ordinal);
    }

    pub fn note_dirty(&self, ordinal: u32) {
        self.dirty.lock().insert(ordinal);
    }
}
