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
    /// The hash of an admin token the operator chose (e.g. from a Kubernetes Secret): it
    /// replaces the stored one at start. None: the first start creates one in the data dir.
    pub admin_token_hash: Option<[u8; 32]>,
    /// Watches (`GET /api/v1/{plural}?watch=true`) open at once; past it a watch is refused
    /// with 429 (each holds a task, a queue slot in the change broadcast and the names it sent).
    pub max_watches: usize,
    /// Change events a watch may fall behind by before it is ended with an `ERROR` event
    /// (410 Expired, as Kubernetes' "too old resource version"): a slow client never makes the
    /// server buffer without bound.
    pub watch_queue: usize,
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
            admin_token_hash: None,
            max_watches: 256,
            watch_queue: 1024,
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
    /// Open watches and the change broadcast that feeds them (`api::watch`).
    pub watches: Watches,
}

/// One change as watches see it, published once by the watch hub (`api::watch`) for every
/// watch to filter: the object rendered once, not once per watch.
#[derive(Debug)]
pub enum WatchChange {
    /// An object was written (`object` as a GET returns it) or deleted (`object` None).
    Object {
        kind: flotilla_api::Kind,
        name: String,
        /// The store revision of the change (a deletion's) or the object's resourceVersion.
        revision: u64,
        labels: BTreeMap<String, String>,
        object: Option<Box<serde_json::value::RawValue>>,
    },
    /// The hub lost changes (the feed was compacted past it): every watch must end and its
    /// client list again.
    Expired,
}

/// The shared part of watches: the broadcast the hub publishes to (its capacity is each
/// watch's queue, `Settings::watch_queue`), how many are open, and the stop signal that ends
/// them all at shutdown (an open watch would otherwise hold the graceful drain to its deadline).
pub struct Watches {
    pub changes: tokio::sync::broadcast::Sender<std::sync::Arc<WatchChange>>,
    pub open: std::sync::atomic::AtomicUsize,
    /// Whether the hub task was started (lazily, by the first watch).
    pub hub_started: std::sync::atomic::AtomicBool,
    /// The store revision the fleet was loaded at: where the hub starts reading the feed.
    pub loaded_revision: u64,
    stop: tokio::sync::watch::Sender<bool>,
    /// Set once the hub has read the feed up to what memory holds: watches render their
    /// initial list only after that (see `api::watch`).
    caught_up: tokio::sync::watch::Sender<bool>,
}

impl Watches {
    fn new(queue: usize, loaded_revision: u64) -> Watches {
        Watches {
            changes: tokio::sync::broadcast::channel(queue.max(1)).0,
            open: Default::default(),
            hub_started: Default::default(),
            loaded_revision,
            stop: tokio::sync::watch::channel(false).0,
            caught_up: tokio::sync::watch::channel(false).0,
        }
    }

    /// The hub has read the feed through everything memory held when it started.
    pub fn mark_caught_up(&self) {
        self.caught_up.send_replace(true);
    }

    /// Resolves once [`Watches::mark_caught_up`] was called.
    pub fn caught_up(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut caught_up = self.caught_up.subscribe();
        async move {
            let _ = caught_up.wait_for(|done| *done).await;
        }
    }

    /// Ends every watch and the hub (server shutdown).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Resolves once [`Watches::stop`] was called (at once if it was already).
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.subscribe();
        async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }
    }

    pub fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }
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
        let watches = Watches::new(settings.watch_queue, revision);
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
            watches,
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
