//! One simulated agent: the shared `SyncMachine` plus a tiny simulated cluster (what is applied,
//! and in which state). The step functions are the agent loop's logic without its IO waits.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
};

use parking_lot::Mutex;

use flotilla_api::{
    BundleState, ClusterFacts,
    agent::{BundleReport, DesiredBundle, RegisterRequest, SyncRequest, SyncResponse},
};
use flotilla_core::sync::{Backoff, SyncMachine};
use xxhash_rust::xxh3::xxh3_64;

use crate::{stats::Stats, verdicts::Verdict};

/// One simulated agent. Kept small on purpose (a million of these share one process): what is
/// applied is a snapshot of a desired set shared by every cluster that received the same one,
/// plus one pointer per bundle to a verdict shared by every cluster that judged alike.
#[derive(Debug)]
pub struct SimAgent {
    pub credential: Option<Box<str>>,
    pub machine: SyncMachine,
    /// The desired set as last applied in full (sorted by bundle name, as the server sends it).
    pub applied: Arc<[DesiredBundle]>,
    /// The verdict on each bundle of `applied`, by position.
    pub verdicts: Box<[Arc<Verdict>]>,
    /// Syncs left before a flapping cluster goes silent.
    pub flap_countdown: u16,
    pub online: bool,
    /// Retries after failed calls back off exponentially, with jitter.
    pub backoff: Backoff,
    /// Just registered: after its first sync the cluster picks a random phase within one
    /// interval, so a fleet registered in a burst does not sync in lockstep ever after.
    pub fresh: bool,
    /// The server replica this cluster talks to (an index into `--server`'s URLs); it moves
    /// by the agent's rule, `flotilla_core::failover`.
    pub replica: u16,
}

impl Default for SimAgent {
    fn default() -> SimAgent {
        SimAgent {
            credential: None,
            machine: SyncMachine::default(),
            applied: Arc::from(Vec::new()),
            verdicts: Box::default(),
            flap_countdown: 0,
            online: false,
            backoff: Backoff::new(RETRY_BASE_MILLIS, RETRY_CAP_MILLIS),
            fresh: false,
            replica: 0,
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
            .zip(self.verdicts.iter())
            .map(|(bundle, verdict)| verdict.report(bundle))
            .collect()
    }

    pub fn sync_request(&mut self, facts: &ClusterFacts) -> SyncRequest {
        let reports = self.reports();
        self.machine.request(facts, &reports)
    }

    /// Digests a reply, sharing the desired set with identical ones other clusters hold; returns
    /// the bundles whose content must be fetched before the new set can be applied.
    pub fn on_reply(
        &mut self,
        reply: Option<SyncResponse>,
        sets: &DesiredSets,
    ) -> Vec<DesiredBundle> {
        if self.machine.on_reply(reply).desired_changed {
            let etag = self.machine.etag().unwrap_or_default();
            let shared = sets.share(etag, self.machine.desired_shared());
            self.machine.share_desired(shared);
        }
        if Arc::ptr_eq(self.machine.desired_shared(), &self.applied)
            || *self.machine.desired() == *self.applied
        {
            return Vec::new();
        }
        let applied = self
            .applied
            .iter()
            .map(|a| (a.name.clone(), a.deployment.clone()))
            .collect();
        self.machine.plan(&applied).apply
    }

    /// Applies the whole desired set (its content was fetched): each new bundle deployment takes
    /// the verdict `verdict_of` has on it (the agent's customization and the simulated cluster's
    /// judgement, see `verdicts`), then the configured rates (decided by a hash, so a cluster
    /// answers the same way every time). Returns whether anything changed; nothing is applied
    /// while a new deployment has no verdict yet (its content could not be fetched).
    pub fn apply_desired(
        &mut self,
        name: &str,
        verdict_of: &dyn Fn(&DesiredBundle) -> Option<Arc<Verdict>>,
        outcomes: Outcomes,
        stats: &Stats,
    ) -> bool {
        let desired = self.machine.desired_shared().clone();
        if Arc::ptr_eq(&desired, &self.applied) {
            return false;
        }
        if *desired == *self.applied {
            self.applied = desired;
            return false;
        }
        let mut verdicts = Vec::with_capacity(desired.len());
        for bundle in desired.iter() {
            let previous = self
                .applied
                .iter()
                .position(|a| a.name == bundle.name && a.deployment == bundle.deployment);
            let verdict = match previous {
                Some(index) => self.verdicts[index].clone(),
                None => {
                    let Some(verdict) = verdict_of(bundle) else {
                        return false;
                    };
                    judge(name, bundle, verdict, outcomes)
                }
            };
            verdicts.push(verdict);
        }
        let count = |verdicts: &[Arc<Verdict>]| {
            (
                verdicts.len() as i64,
                verdicts
                    .iter()
                    .filter(|v| v.state == BundleState::Ready)
                    .count() as i64,
            )
        };
        let (old_held, old_ready) = count(&self.verdicts);
        let (new_held, new_ready) = count(&verdicts);
        stats
            .bundles_held
            .fetch_add(new_held - old_held, Ordering::Relaxed);
        stats
            .bundles_ready
            .fetch_add(new_ready - old_ready, Ordering::Relaxed);
        self.applied = desired;
        self.verdicts = verdicts.into();
        true
    }

    /// Whether the cluster already holds this content (it fetched it for an earlier apply).
    pub fn has_content(&self, digest: &str) -> bool {
        self.applied.iter().any(|a| a.digest == digest)
    }
}

/// The verdict on one applied bundle: what the agent's customization and the simulated cluster
/// make of it, then the configured rates for one that would be Ready.
fn judge(
    name: &str,
    bundle: &DesiredBundle,
    verdict: Arc<Verdict>,
    outcomes: Outcomes,
) -> Arc<Verdict> {
    if verdict.state != BundleState::Ready {
        return verdict;
    }
    let draw =
        (xxh3_64(format!("{name}/{}", bundle.deployment).as_bytes()) % 1_000_000) as f64 / 1e6;
    if draw < outcomes.fail_rate {
        Verdict::failed_by_rate()
    } else if draw < outcomes.fail_rate + outcomes.not_ready_rate {
        Verdict::not_ready_by_rate()
    } else {
        verdict
    }
}

/// Desired sets by etag, so that the many clusters that receive the same set hold one copy. The
/// server's etag is a digest of the set, so equal etags mean equal sets; the sets are compared
/// anyway, and a collision just keeps a private copy.
#[derive(Debug, Default)]
pub struct DesiredSets {
    sets: Mutex<HashMap<u64, Arc<[DesiredBundle]>>>,
}

impl DesiredSets {
    /// The shared copy of `set` (which becomes the shared copy if it is the first).
    pub fn share(&self, etag: &str, set: &Arc<[DesiredBundle]>) -> Arc<[DesiredBundle]> {
        let key = xxh3_64(etag.as_bytes());
        let mut sets = self.sets.lock();
        let shared = sets.entry(key).or_insert_with(|| set.clone());
        if **shared == **set {
            shared.clone()
        } else {
            set.clone()
        }
    }
}
