//! The git worker's scheduling state, shared with the write service and the webhook (which ask
//! for fetches) and held by the server's state.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    time::Instant,
};

use flotilla_core::sync::Backoff;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::fetch::Fetcher;

/// Scheduling state of the git source worker, shared with the API (spec writes, webhooks).
pub struct GitOps {
    /// When each repository is next due; absent means "schedule its first poll".
    pub(super) due: Mutex<HashMap<String, Instant>>,
    pub(super) backoff: Mutex<HashMap<String, Backoff>>,
    pub(super) running: Mutex<HashSet<String>>,
    /// Fetches asked for on this replica (spec writes, webhooks): they run here even when
    /// another replica holds the singleton lease, which only scheduled polls need.
    pub(super) requested: Mutex<HashSet<String>>,
    pub(super) wake: Notify,
    pub(super) fetcher: Fetcher,
    pub(super) tools: flotilla_render::Tools,
}

impl GitOps {
    pub fn new(cache_dir: PathBuf, tools: flotilla_render::Tools) -> GitOps {
        GitOps {
            due: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            running: Mutex::new(HashSet::new()),
            requested: Mutex::new(HashSet::new()),
            wake: Notify::new(),
            fetcher: Fetcher::new(cache_dir),
            tools,
        }
    }

    /// Drops a deleted repository's scheduling state.
    pub fn forget(&self, repo: &str) {
        self.due.lock().remove(repo);
        self.backoff.lock().remove(repo);
    }

    /// Asks for a fetch of `repo` as soon as possible (a spec change, a webhook, a new secret).
    pub fn fetch_now(&self, repo: &str) {
        self.due.lock().insert(repo.to_string(), Instant::now());
        self.requested.lock().insert(repo.to_string());
        self.wake.notify_one();
    }
}
