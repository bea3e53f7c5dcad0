//! The singleton lease: work that must run on one replica at a time (offline sweeps, content
//! collection, scheduled git polls) runs only while this replica holds it.
//!
//! The lease lives in the store and is timed by the store's clock ([`Store::lease`]). A replica
//! renews it every third of its time to live and trusts it only until four fifths of that time
//! after the renewal *started*, so it stops before the store could hand the lease to another
//! replica, even when it lost the store mid-renewal. When the holder dies, another replica takes
//! the lease within one time to live plus one renewal period.
//!
//! [`Store::lease`]: flotilla_store::Store::lease

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use flotilla_store::Store;
use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;

/// The one lease the server uses.
pub const SINGLETON: &str = "singleton";

pub struct Lease {
    holder: String,
    valid_until: Mutex<Option<Instant>>,
}

impl Lease {
    /// A lease handle for this process: on a shared store a name unique to this run (a
    /// restarted replica is a new holder); on the embedded store a fixed one (the data dir
    /// has one server, and a restart takes its lease straight back).
    pub fn new(shared: bool) -> Lease {
        let holder = if shared {
            format!(
                "{}-{}-{:08x}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "replica".into()),
                std::process::id(),
                rand::random::<u32>()
            )
        } else {
            "embedded".into()
        };
        Lease {
            holder,
            valid_until: Mutex::new(None),
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Whether this replica may do singleton work now.
    pub fn is_held(&self) -> bool {
        self.valid_until
            .lock()
            .is_some_and(|until| Instant::now() < until)
    }
}

/// Keeps trying to take or renew the lease for as long as the server runs; `held` shows whether
/// this replica holds it.
pub async fn keeper(lease: Arc<Lease>, store: Arc<dyn Store>, ttl: Duration, held: Gauge) {
    let ttl = ttl.max(Duration::from_millis(300));
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let task_store = store.clone();
        let holder = lease.holder.clone();
        let result =
            tokio::task::spawn_blocking(move || task_store.lease(SINGLETON, &holder, ttl)).await;
        let was_held = lease.is_held();
        match result {
            Ok(Ok(true)) => {
                failures = 0;
                *lease.valid_until.lock() = Some(started + ttl.mul_f64(0.8));
                if !was_held {
                    tracing::info!(holder = %lease.holder, "this replica holds the singleton lease (offline sweeps, content collection, git polling)");
                }
            }
            Ok(Ok(false)) => {
                failures = 0;
                *lease.valid_until.lock() = None;
                if was_held {
                    tracing::warn!("another replica took the singleton lease");
                }
            }
            // Unknown: the lease runs out on its own if renewals keep failing.
            Ok(Err(error)) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(%error, "renewing the singleton lease failed; will retry");
                }
            }
            Err(error) => tracing::error!(%error, "the lease renewal task failed"),
        }
        held.set(i64::from(lease.is_held()));
        tokio::time::sleep(ttl / 3).await;
    }
}

/// Gives the lease up (clean shutdown), so another replica takes over at once.
pub async fn release(lease: &Lease, store: Arc<dyn Store>) {
    *lease.valid_until.lock() = None;
    let holder = lease.holder.clone();
    match tokio::task::spawn_blocking(move || store.release_lease(SINGLETON, &holder)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "could not release the singleton lease"),
        Err(error) => tracing::warn!(%error, "could not release the singleton lease"),
    }
}
