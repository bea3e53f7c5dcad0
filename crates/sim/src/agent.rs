//! One simulated agent: the shared `SyncMachine` plus a tiny simulated cluster (what is applied,
//! and in which state). The step functions are the agent loop's logic without its IO waits.

use std::sync::{Arc, atomic::Ordering};

use flotilla_api::{
    BundleState, ClusterFacts,
    agent::{BundleReport, DesiredBundle, RegisterRequest, SyncRequest, SyncResponse},
};
use flotilla_core::sync::{Backoff, SyncMachine};
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64;

use crate::stats::Stats;

/// One bundle applied on a simulated cluster.
#[derive(Debug, Clone)]
pub struct Applied {
    pub bundle: Arc<str>,
    pub deployment: Box<str>,
    pub digest: Arc<str>,
    pub state: BundleState,
}

#[derive(Debug)]
pub struct SimAgent {
    pub credential: Option<Box<str>>,
    pub machine: SyncMachine,
    /// Sorted by bundle name.
    pub applied: Vec<Applied>,
    /// Syncs left before a flapping cluster goes silent.
    pub flap_countdown: u16,
    pub online: bool,
    /// Retries after failed calls back off exponentially, with jitter.
    pub backoff: Backoff,
    /// Just registered: after its first sync the cluster picks a random phase within one
    /// interval, so a fleet registered in a burst does not sync in lockstep ever after.
    pub fresh: bool,
}

impl Default for SimAgent {
    fn default() -> SimAgent {
        SimAgent {
            credential: None,
            machine: SyncMachine::default(),
            applied: Vec::new(),
            flap_countdown: 0,
            online: false,
            backoff: Backoff::new(RETRY_BASE_MILLIS, RETRY_CAP_MILLIS),
            fresh: false,
        }
    }
}

/// First retry after about a second, then doubling up to a minute (as the agent does).
const RETRY_BASE_MILLIS: u64 = 1_000;
const RETRY_CAP_MILLIS: u64 = 60_000;

/// Rates that decide how simulated applies turn out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcomes {
    pub fail_rate: f64,
    pub not_ready_rate: f64,
}

impl SimAgent {
    pub fn register_request(
        &self,
        token: &str,
        name: &str,
        labels: &std::collections::BTreeMap<String, String>,
        facts: &ClusterFacts,
    ) -> RegisterRequest {
        RegisterRequest {
            token: token.to_string(),
            name: name.to_string(),
            client_id: format!("sim-{name}"),
            labels: labels.clone(),
            facts: facts.clone(),
        }
    }

    pub fn reports(&self) -> Vec<BundleReport> {
        self.applied
            .iter()
            .map(|applied| BundleReport {
                bundle: applied.bundle.to_string(),
                deployment: applied.deployment.to_string(),
                state: applied.state,
                message: match applied.state {
                    BundleState::Error => Some("simulated apply failure".into()),
                    BundleState::NotReady => Some("simulated: not ready".into()),
                    _ => None,
                },
                problems: Vec::new(),
                more_problems: 0,
            })
            .collect()
    }

    pub fn sync_request(&mut self, facts: &ClusterFacts) -> SyncRequest {
        let reports = self.reports();
        self.machine.request(facts, &reports)
    }

    /// Digests a reply; returns the bundles to apply (content needed) and whether the cluster
    /// changed (so it should report soon).
    pub fn on_reply(
        &mut self,
        reply: Option<SyncResponse>,
        stats: &Stats,
    ) -> (Vec<DesiredBundle>, bool) {
        self.machine.on_reply(reply);
        let applied = self
            .applied
            .iter()
            .map(|a| (a.bundle.to_string(), a.deployment.to_string()))
            .collect();
        let plan = self.machine.plan(&applied);
        let removed = !plan.remove.is_empty();
        if removed {
            self.applied.retain(|a| {
                let keep = !plan.remove.iter().any(|name| **name == *a.bundle);
                if !keep {
                    stats.bundles_held.fetch_sub(1, Ordering::Relaxed);
                    if a.state == BundleState::Ready {
                        stats.bundles_ready.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                keep
            });
        }
        (plan.apply, removed)
    }

    /// Records a bundle as applied, judged by the manifests' simulate annotations and the
    /// configured rates (decided by a hash, so a cluster answers the same way every time).
    pub fn apply(
        &mut self,
        name: &str,
        bundle: &DesiredBundle,
        manifests: &[Value],
        outcomes: Outcomes,
        stats: &Stats,
    ) {
        let mut state = flotilla_agent::simulated::simulate(bundle, manifests).state;
        if state == BundleState::Ready {
            let draw = (xxh3_64(format!("{name}/{}", bundle.deployment).as_bytes()) % 1_000_000)
                as f64
                / 1e6;
            if draw < outcomes.fail_rate {
                state = BundleState::Error;
            } else if draw < outcomes.fail_rate + outcomes.not_ready_rate {
                state = BundleState::NotReady;
            }
        }
        let entry = Applied {
            bundle: Arc::from(bundle.name.as_str()),
            deployment: bundle.deployment.as_str().into(),
            digest: Arc::from(bundle.digest.as_str()),
            state,
        };
        match self
            .applied
            .binary_search_by(|a| (*a.bundle).cmp(&bundle.name))
        {
            Ok(index) => {
                if self.applied[index].state == BundleState::Ready {
                    stats.bundles_ready.fetch_sub(1, Ordering::Relaxed);
                }
                self.applied[index] = entry;
            }
            Err(index) => {
                stats.bundles_held.fetch_add(1, Ordering::Relaxed);
                self.applied.insert(index, entry);
            }
        }
        if state == BundleState::Ready {
            stats.bundles_ready.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether the cluster already holds this content (it fetched it for an earlier apply).
    pub fn has_content(&self, digest: &str) -> bool {
        self.applied.iter().any(|a| &*a.digest == digest)
    }
}
