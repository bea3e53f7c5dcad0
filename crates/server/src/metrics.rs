//! Prometheus metrics. No metric carries a per-cluster label: cardinality stays fixed however
//! large the fleet grows.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub syncs: Family<ResultLabel, Counter>,
    pub sync_seconds: Histogram,
    pub registrations: Family<ResultLabel, Counter>,
    pub content_fetches: Family<ResultLabel, Counter>,
    pub admin_writes: Family<ResultLabel, Counter>,
    pub store_commit_seconds: Histogram,
    pub soft_state_writes: Counter,
    pub clusters: Family<StateLabel, Gauge>,
    pub bundles: Gauge,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("flotilla");
        let syncs = Family::<ResultLabel, Counter>::default();
        registry.register(
            "agent_syncs",
            "Agent sync requests by result",
            syncs.clone(),
        );
        // Buckets from 10 µs to ~1.3 s: sync latency is tens of microseconds when healthy.
        let sync_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(1e-5, 2.0, 18),
        );
        registry.register(
            "agent_sync_duration_seconds",
            "Server time spent on one agent sync",
            sync_seconds.clone(),
        );
        let registrations = Family::<ResultLabel, Counter>::default();
        registry.register(
            "registrations",
            "Agent registrations by result",
            registrations.clone(),
        );
        let content_fetches = Family::<ResultLabel, Counter>::default();
        registry.register(
            "content_fetches",
            "Content fetches by agents, by result",
            content_fetches.clone(),
        );
        let admin_writes = Family::<ResultLabel, Counter>::default();
        registry.register(
            "admin_writes",
            "Admin API writes by result",
            admin_writes.clone(),
        );
        // Buckets from 100 µs to ~3 s: one fsync is typically 1–10 ms.
        let store_commit_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(1e-4, 2.0, 16),
        );
        registry.register(
            "store_commit_duration_seconds",
            "Time from submitting a durable write to its fsync",
            store_commit_seconds.clone(),
        );
        let soft_state_writes = Counter::default();
        registry.register(
            "soft_state_writes",
            "Cluster status records written in batches",
            soft_state_writes.clone(),
        );
        let clusters = Family::<StateLabel, Gauge>::default();
        registry.register("clusters", "Registered clusters by state", clusters.clone());
        let bundles = Gauge::default();
        registry.register("bundles", "Bundles", bundles.clone());
        Metrics {
            registry,
            syncs,
            sync_seconds,
            registrations,
            content_fetches,
            admin_writes,
            store_commit_seconds,
            soft_state_writes,
            clusters,
            bundles,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
