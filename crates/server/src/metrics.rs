//! Prometheus metrics. No metric carries a per-cluster label: every label value comes from a
//! small fixed set (results, states, route templates, methods, status classes), so cardinality
//! stays fixed however large the fleet grows.
//!
//! Three kinds of sources: counters and histograms bumped where the work happens (syncs, HTTP
//! requests, store batches through a [`BatchObserver`]), and gauges of the in-memory model set at
//! scrape time by [`Metrics::observe_fleet`] in O(bundles), never O(clusters).

use std::{sync::Arc, time::Duration};

use axum::http::{Method, StatusCode};
use flotilla_api::{BundleState, ClusterState};
use flotilla_store::{BatchObserver, BatchStats};
use parking_lot::RwLock;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::fleet::{Fleet, cluster_state_index, state_index};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

/// Labels of an HTTP request count: all `'static`, so counting allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template (see [`route_label`]).
    pub route: &'static str,
    /// See [`method_label`].
    pub method: &'static str,
    /// See [`status_class`].
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
    pub method: &'static str,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// Request latency: 10 µs to ~5 s (a no-op sync is tens of microseconds, a write waits an fsync).
fn http_seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-5, 2.0, 20))
}

pub struct Metrics {
    registry: Registry,
    pub syncs: Family<ResultLabel, Counter>,
    pub sync_seconds: Histogram,
    pub registrations: Family<ResultLabel, Counter>,
    pub agent_requests_shed: Counter,
    pub content_fetches: Family<ResultLabel, Counter>,
    pub admin_writes: Family<ResultLabel, Counter>,
    pub store_commit_seconds: Histogram,
    pub soft_state_writes: Counter,
    pub contents_collected: Counter,
    pub content_collected_bytes: Counter,
    pub clusters: Family<StateLabel, Gauge>,
    pub bundles: Gauge,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_request_seconds: HistogramFamily<RouteLabels>,
    pub store_batches: Counter,
    pub store_batch_ops: Histogram,
    pub store_batch_seconds: Histogram,
    pub bundle_deployments: Family<StateLabel, Gauge>,
    pub model_clusters: Gauge,
    pub model_bundles: Gauge,
    pub model_deployments: Gauge,
    pub model_interned_strings: Gauge,
    pub model_contents: Gauge,
    pub model_content_bytes: Gauge,
    pub follow_changes: Counter,
    pub follow_revision: Gauge,
    pub follow_lag_seconds: Histogram,
    pub follow_reloads: Counter,
    pub lease_held: Gauge,
    pub rollout_steps: Counter,
    pub rollout_ends: Family<ResultLabel, Counter>,
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
        let sync_seconds = Histogram::new(exponential_buckets(1e-5, 2.0, 18));
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
        let agent_requests_shed = Counter::default();
        registry.register(
            "agent_requests_shed",
            "Agent calls refused with 429 because the server was at its in-flight limit",
            agent_requests_shed.clone(),
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
        let store_commit_seconds = Histogram::new(exponential_buckets(1e-4, 2.0, 16));
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
        let contents_collected = Counter::default();
        registry.register(
            "store_contents_collected",
            "Unreferenced contents deleted from the store",
            contents_collected.clone(),
        );
        let content_collected_bytes = Counter::default();
        registry.register(
            "store_content_collected_bytes",
            "Bytes of unreferenced content deleted from the store",
            content_collected_bytes.clone(),
        );
        let clusters = Family::<StateLabel, Gauge>::default();
        registry.register("clusters", "Registered clusters by state", clusters.clone());
        let bundles = Gauge::default();
        registry.register("bundles", "Bundles", bundles.clone());

        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status class",
            http_requests.clone(),
        );
        let http_request_seconds: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(http_seconds_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to produce an HTTP response (until its headers), by route template and method",
            http_request_seconds.clone(),
        );

        let store_batches = Counter::default();
        registry.register(
            "store_batches",
            "Store group commits: one transaction and one fsync each",
            store_batches.clone(),
        );
        // 1 to 131072 operations: a soft-state flush can put tens of thousands in one batch.
        let store_batch_ops = Histogram::new(exponential_buckets(1.0, 2.0, 18));
        registry.register(
            "store_batch_ops",
            "Operations written by one store group commit",
            store_batch_ops.clone(),
        );
        // 20 µs to ~2.6 s.
        let store_batch_seconds = Histogram::new(exponential_buckets(2e-5, 2.0, 18));
        registry.register(
            "store_batch_duration_seconds",
            "Time to write and fsync one store group commit",
            store_batch_seconds.clone(),
        );

        let bundle_deployments = Family::<StateLabel, Gauge>::default();
        registry.register(
            "bundle_deployments",
            "Sum over bundles of their status summary: desired deployments and deployments by state",
            bundle_deployments.clone(),
        );
        let model_gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let model_clusters = model_gauge(
            &mut registry,
            "model_clusters",
            "Clusters in the in-memory model",
        );
        let model_bundles = model_gauge(
            &mut registry,
            "model_bundles",
            "Bundles in the in-memory model",
        );
        let model_deployments = model_gauge(
            &mut registry,
            "model_deployments",
            "Deployments (one per cluster and bundle targeting it) in the in-memory model",
        );
        let model_interned_strings = model_gauge(
            &mut registry,
            "model_interned_strings",
            "Distinct label keys and values in the label interner",
        );
        let model_contents = model_gauge(
            &mut registry,
            "model_contents",
            "Bundle content blobs held in memory",
        );
        let model_content_bytes = model_gauge(
            &mut registry,
            "model_content_bytes",
            "Bytes of bundle content held in memory",
        );
        let follow_changes = Counter::default();
        registry.register(
            "store_follow_changes",
            "Changes written by other replicas and applied to this one's model",
            follow_changes.clone(),
        );
        let follow_revision = Gauge::default();
        registry.register(
            "store_follow_revision",
            "Store revision this replica's model has caught up with",
            follow_revision.clone(),
        );
        // Buckets from 1 ms to ~16 s.
        let follow_lag_seconds = Histogram::new(exponential_buckets(1e-3, 2.0, 15));
        registry.register(
            "store_follow_poll_duration_seconds",
            "Time to read and apply one page of the change feed",
            follow_lag_seconds.clone(),
        );
        let follow_reloads = Counter::default();
        registry.register(
            "store_follow_reloads",
            "Full reloads of the model because the change feed was compacted past this replica",
            follow_reloads.clone(),
        );
        let rollout_steps = Counter::default();
        registry.register(
            "rollout_steps",
            "Rollout steps committed (each moves clusters between revisions or records a decision)",
            rollout_steps.clone(),
        );
        let rollout_ends = Family::<ResultLabel, Counter>::default();
        registry.register(
            "rollout_ends",
            "Rollout runs that ended, by how (succeeded, rolled_back)",
            rollout_ends.clone(),
        );
        let lease_held = Gauge::default();
        registry.register(
            "singleton_lease_held",
            "1 while this replica holds the singleton lease (offline sweeps, git polling)",
            lease_held.clone(),
        );
        Metrics {
            registry,
            lease_held,
            rollout_steps,
            rollout_ends,
            follow_changes,
            follow_revision,
            follow_lag_seconds,
            follow_reloads,
            syncs,
            sync_seconds,
            registrations,
            agent_requests_shed,
            content_fetches,
            admin_writes,
            store_commit_seconds,
            soft_state_writes,
            contents_collected,
            content_collected_bytes,
            clusters,
            bundles,
            http_requests,
            http_request_seconds,
            store_batches,
            store_batch_ops,
            store_batch_seconds,
            bundle_deployments,
            model_clusters,
            model_bundles,
            model_deployments,
            model_interned_strings,
            model_contents,
            model_content_bytes,
        }
    }
}

/// `bundle_deployments` label values, as the summary fields are named on the wire.
const SUMMARY_STATES: [(BundleState, &str); 5] = [
    (BundleState::Pending, "pending"),
    (BundleState::Ready, "ready"),
    (BundleState::NotReady, "notReady"),
    (BundleState::Modified, "modified"),
    (BundleState::Error, "error"),
];

fn gauge_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }

    /// An observer for the store that records every group commit.
    pub fn store_observer(&self) -> BatchObserver {
        let batches = self.store_batches.clone();
        let ops = self.store_batch_ops.clone();
        let seconds = self.store_batch_seconds.clone();
        Arc::new(move |stats: &BatchStats| {
            batches.inc();
            ops.observe(stats.ops as f64);
            seconds.observe(stats.duration.as_secs_f64());
        })
    }

    /// Counts one HTTP request.
    pub fn observe_http(
        &self,
        route: &'static str,
        method: &'static str,
        status: StatusCode,
        elapsed: Duration,
    ) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route,
                method,
                status: status_class(status),
            })
            .inc();
        self.http_request_seconds
            .get_or_create(&RouteLabels { route, method })
            .observe(elapsed.as_secs_f64());
    }

    /// Sets the gauges of the in-memory model (fleet read lock held). O(bundles + contents):
    /// cluster and deployment totals come from counters and per-bundle bitmaps, never from a walk
    /// over the clusters.
    pub fn observe_fleet(&self, fleet: &Fleet) {
        for cluster_state in [
            ClusterState::Pending,
            ClusterState::Online,
            ClusterState::Offline,
        ] {
            self.clusters
                .get_or_create(&StateLabel {
                    state: cluster_state.as_str(),
                })
                .set(gauge_value(
                    fleet.cluster_counts()[cluster_state_index(cluster_state)],
                ));
        }
        self.bundles
            .set(gauge_value(fleet.bundle_names().len() as u64));

        let mut desired = 0u64;
        let mut by_state = [0u64; 5];
        for bundle in fleet.bundles().map(|(_, b)| b) {
            desired += bundle.targeted.len();
            for (total, count) in by_state.iter_mut().zip(bundle.counts) {
                *total += count;
            }
        }
        self.bundle_deployments
            .get_or_create(&StateLabel { state: "desired" })
            .set(gauge_value(desired));
        for (state, label) in SUMMARY_STATES {
            self.bundle_deployments
                .get_or_create(&StateLabel { state: label })
                .set(gauge_value(by_state[state_index(state)]));
        }

        self.model_clusters
            .set(gauge_value(fleet.cluster_names().len() as u64));
        self.model_bundles
            .set(gauge_value(fleet.bundle_names().len() as u64));
        self.model_deployments
            .set(gauge_value(fleet.deployment_count()));
        self.model_interned_strings
            .set(gauge_value(fleet.interner().len() as u64));
        self.model_contents
            .set(gauge_value(fleet.contents().len() as u64));
        self.model_content_bytes
            .set(gauge_value(fleet.contents().total_bytes()));
    }
}

/// Most distinct route labels. One router has a fixed set of templates; anything beyond this
/// bound is reported as `other` rather than growing the label set.
const MAX_ROUTES: usize = 64;

/// Route templates seen so far, each leaked once so labels are `&'static str`: a request's labels
/// then cost no allocation, and the leak is bounded by `MAX_ROUTES`.
struct RouteInterner(RwLock<Vec<&'static str>>);

impl RouteInterner {
    const fn new() -> RouteInterner {
        RouteInterner(RwLock::new(Vec::new()))
    }

    fn intern(&self, template: &str) -> &'static str {
        // A linear scan: a router has about ten templates, and comparing short strings beats
        // hashing them.
        if let Some(route) = self.0.read().iter().find(|route| **route == template) {
            return route;
        }
        let mut routes = self.0.write();
        if let Some(route) = routes.iter().find(|route| **route == template) {
            return route;
        }
        if routes.len() >= MAX_ROUTES {
            return "other";
        }
        let route: &'static str = Box::leak(template.into());
        routes.push(route);
        route
    }
}

/// One interner per process: servers started again in one process (tests) share its templates.
static ROUTES: RouteInterner = RouteInterner::new();

/// The `route` label of a request: its matched route template (axum's `MatchedPath`, e.g.
/// `/api/v1/{plural}/{name}`), or `unmatched` when no route matched. Never a raw path, so the
/// label set is bounded by the router. Allocates only the first time a template is seen.
pub fn route_label(template: Option<&str>) -> &'static str {
    match template {
        Some(template) => ROUTES.intern(template),
        None => "unmatched",
    }
}

/// The `method` label: the standard methods by name, anything else `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The `status` label: the status class (`2xx`, `4xx`, …).
pub fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_are_interned_templates_and_bounded() {
        let routes = RouteInterner::new();
        let first = routes.intern("/api/v1/{plural}");
        let again = routes.intern(&String::from("/api/v1/{plural}"));
        assert_eq!(first, "/api/v1/{plural}");
        assert!(std::ptr::eq(first, again), "a template is leaked once");
        for i in 1..MAX_ROUTES {
            routes.intern(&format!("/flood/{i}"));
        }
        assert_eq!(routes.intern("/one/too/many"), "other");
        assert_eq!(routes.0.read().len(), MAX_ROUTES);
        assert_eq!(route_label(None), "unmatched");
    }

    #[test]
    fn status_and_method_labels_come_from_fixed_sets() {
        assert_eq!(status_class(StatusCode::NO_CONTENT), "2xx");
        assert_eq!(status_class(StatusCode::PAYLOAD_TOO_LARGE), "4xx");
        assert_eq!(status_class(StatusCode::SERVICE_UNAVAILABLE), "5xx");
        assert_eq!(method_label(&Method::POST), "POST");
        let custom = Method::from_bytes(b"FROBNICATE").expect("extension method");
        assert_eq!(method_label(&custom), "other");
    }
}
