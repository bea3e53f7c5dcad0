//! Counters and a latency histogram shared by the simulator's workers.

use std::{
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
    time::Duration,
};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds")
}

/// Sync latency quantiles over a phase, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PhaseLatency {
    pub count: u64,
    pub p50_micros: u64,
    pub p99_micros: u64,
    pub max_micros: u64,
}

#[derive(Debug)]
pub struct Stats {
    pub registered: AtomicU64,
    pub registration_errors: AtomicU64,
    pub syncs: AtomicU64,
    pub sync_errors: AtomicU64,
    pub content_fetches: AtomicU64,
    /// Answers refusing to serve for now (429 load shed, 503 store away), one per answer; those
    /// another replica then answered are not errors, the rest count among the errors too.
    pub shed: AtomicU64,
    /// The registrations among `shed` (they count among `registration_errors` too).
    pub registrations_shed: AtomicU64,
    /// Calls answered by another replica than the cluster's current one (which then became
    /// current): a cluster moving off a dead replica counts once.
    pub failovers: AtomicU64,
    /// Clusters whose last sync succeeded and that are not pretending to be offline.
    pub online: AtomicI64,
    /// Bundle deployments that are Ready, summed over clusters.
    pub bundles_ready: AtomicI64,
    /// Bundle deployments held, summed over clusters.
    pub bundles_held: AtomicI64,
    /// Sync latency in microseconds, up to 60 s, since the last `snapshot(true)`.
    latency: Mutex<Histogram<u64>>,
    /// The same since the last `reset_phase`, for figures over a whole phase of a bench.
    phase_latency: Mutex<Histogram<u64>>,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            registered: AtomicU64::new(0),
            registration_errors: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            sync_errors: AtomicU64::new(0),
            content_fetches: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            registrations_shed: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            online: AtomicI64::new(0),
            bundles_ready: AtomicI64::new(0),
            bundles_held: AtomicI64::new(0),
            latency: Mutex::new(latency_histogram()),
            phase_latency: Mutex::new(latency_histogram()),
        }
    }
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    pub registered: u64,
    pub registration_errors: u64,
    pub syncs: u64,
    pub sync_errors: u64,
    pub content_fetches: u64,
    pub shed: u64,
    pub registrations_shed: u64,
    pub failovers: u64,
    pub online: i64,
    pub bundles_ready: i64,
    pub bundles_held: i64,
    pub p50_micros: u64,
    pub p99_micros: u64,
}

impl Stats {
    pub fn record_latency(&self, elapsed: Duration) {
        let micros = (elapsed.as_micros() as u64).clamp(1, 60_000_000);
        let _ = self.latency.lock().record(micros);
        let _ = self.phase_latency.lock().record(micros);
    }

    /// Starts a new phase for [`Stats::phase_latency`].
    pub fn reset_phase(&self) {
        self.phase_latency.lock().reset();
    }

    pub fn phase_latency(&self) -> PhaseLatency {
        let latency = self.phase_latency.lock();
        PhaseLatency {
            count: latency.len(),
            p50_micros: latency.value_at_quantile(0.5),
            p99_micros: latency.value_at_quantile(0.99),
            max_micros: latency.max(),
        }
    }

    /// Copies the counters; with `reset_latency`, starts a new latency window.
    pub fn snapshot(&self, reset_latency: bool) -> Snapshot {
        let (p50, p99) = {
            let mut latency = self.latency.lock();
            let quantiles = (
                latency.value_at_quantile(0.5),
                latency.value_at_quantile(0.99),
            );
            if reset_latency {
                latency.reset();
            }
            quantiles
        };
        Snapshot {
            registered: self.registered.load(Ordering::Relaxed),
            registration_errors: self.registration_errors.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            sync_errors: self.sync_errors.load(Ordering::Relaxed),
            content_fetches: self.content_fetches.load(Ordering::Relaxed),
            shed: self.shed.load(Ordering::Relaxed),
            registrations_shed: self.registrations_shed.load(Ordering::Relaxed),
            failovers: self.failovers.load(Ordering::Relaxed),
            online: self.online.load(Ordering::Relaxed),
            bundles_ready: self.bundles_ready.load(Ordering::Relaxed),
            bundles_held: self.bundles_held.load(Ordering::Relaxed),
            p50_micros: p50,
            p99_micros: p99,
        }
    }
}
