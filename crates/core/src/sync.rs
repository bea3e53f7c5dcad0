//! The agent's sync state machine: one brain shared by the Kubernetes agent and the simulator.
//!
//! The machine decides what each sync request carries (only the status that changed since the
//! server last acknowledged it), digests replies, and plans what the cluster must apply or remove.
//! It does no IO: drivers feed it observations and replies, and carry out its plans.

use std::{collections::BTreeMap, sync::Arc};

use flotilla_api::{
    ClusterFacts,
    agent::{BundleReport, DesiredBundle, SyncRequest, SyncResponse},
};
use xxhash_rust::xxh3::Xxh3;

use crate::digest::{hash_text, stable_hash};

/// A report as hashes: what was sent, or what the server acknowledged. Compact on purpose: the
/// simulator keeps a million of these.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReportHashes {
    facts: u64,
    /// `(bundle name, hash of its report)`, sorted by name.
    bundles: Box<[(Arc<str>, u64)]>,
    digest: u64,
}

impl ReportHashes {
    fn bundle(&self, name: &str) -> Option<u64> {
        self.bundles
            .binary_search_by(|(n, _)| (**n).cmp(name))
            .ok()
            .map(|index| self.bundles[index].1)
    }
}

/// The sync machine of one agent.
#[derive(Debug, Clone, Default)]
pub struct SyncMachine {
    etag: Option<Box<str>>,
    /// Shared, so that many simulated agents holding the same desired set store it once.
    desired: Arc<[DesiredBundle]>,
    /// What the server acknowledged; none before the first successful sync.
    acknowledged: Option<ReportHashes>,
    in_flight: Option<ReportHashes>,
    /// Set when the server asked for (or we owe it) a full report.
    full_report_due: bool,
}

/// What a reply changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplyOutcome {
    /// The desired set changed: plan and apply.
    pub desired_changed: bool,
    /// The server wants a full report: sync again right away.
    pub sync_again: bool,
}

/// What the cluster must do to match the desired set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Bundles to apply (new, or with a different deployment id than the one applied).
    pub apply: Vec<DesiredBundle>,
    /// Bundles applied on the cluster that are no longer desired.
    pub remove: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.apply.is_empty() && self.remove.is_empty()
    }
}

impl SyncMachine {
    pub fn new() -> SyncMachine {
        SyncMachine::default()
    }

    /// Restores a machine from the desired set an agent cached on disk: it keeps enforcing that
    /// set, and its first sync sends the cached etag and a full report.
    pub fn resume(etag: String, desired: Vec<DesiredBundle>) -> SyncMachine {
        SyncMachine {
            etag: Some(etag.into()),
            desired: desired.into(),
            ..SyncMachine::default()
        }
    }

    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    /// The desired set as last received from the server.
    pub fn desired(&self) -> &[DesiredBundle] {
        &self.desired
    }

    /// The shared desired set, for callers that deduplicate identical sets across machines.
    pub fn desired_shared(&self) -> &Arc<[DesiredBundle]> {
        &self.desired
    }

    /// Replaces the desired set with an identical shared copy (see [`Self::desired_shared`]).
    pub fn share_desired(&mut self, shared: Arc<[DesiredBundle]>) {
        if *shared == *self.desired {
            self.desired = shared;
        }
    }

    /// Builds the next sync request from the cluster's current facts and bundle reports.
    /// Only what changed since the server last acknowledged is included, unless a full report is
    /// due (first sync, or the server asked for one).
    pub fn request(&mut self, facts: &ClusterFacts, reports: &[BundleReport]) -> SyncRequest {
        let facts_hash = stable_hash(facts);
        let mut bundles: Vec<(Arc<str>, u64)> = reports
            .iter()
            .map(|report| (Arc::from(report.bundle.as_str()), stable_hash(report)))
            .collect();
        bundles.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // Reuse the acknowledged names so that unchanged reports share their strings.
        if let Some(acknowledged) = &self.acknowledged {
            for (name, _) in &mut bundles {
                if let Ok(index) = acknowledged.bundles.binary_search_by(|(n, _)| n.cmp(name)) {
                    *name = acknowledged.bundles[index].0.clone();
                }
            }
        }
        let sent = ReportHashes {
            facts: facts_hash,
            digest: report_digest(facts_hash, &bundles),
            bundles: bundles.into(),
        };
        let mut request = SyncRequest {
            etag: self.etag.as_deref().map(str::to_string),
            report_digest: hash_text(sent.digest),
            ..SyncRequest::default()
        };
        match (&self.acknowledged, self.full_report_due) {
            (Some(acknowledged), false) => {
                request.base_digest = Some(hash_text(acknowledged.digest));
                if acknowledged.facts != facts_hash {
                    request.facts = Some(facts.clone());
                }
                request.bundles = reports
                    .iter()
                    .filter(|report| {
                        acknowledged.bundle(&report.bundle) != sent.bundle(&report.bundle)
                    })
                    .cloned()
                    .collect();
                request.removed = acknowledged
                    .bundles
                    .iter()
                    .filter(|(name, _)| sent.bundle(name).is_none())
                    .map(|(name, _)| name.to_string())
                    .collect();
            }
            _ => {
                request.full = true;
                request.facts = Some(facts.clone());
                request.bundles = reports.to_vec();
            }
        }
        self.in_flight = Some(sent);
        request
    }

    /// Digests a successful reply (`None` is the 204 "unchanged" reply).
    pub fn on_reply(&mut self, reply: Option<SyncResponse>) -> ReplyOutcome {
        let mut outcome = ReplyOutcome::default();
        if let Some(sent) = self.in_flight.take() {
            self.acknowledged = Some(sent);
            self.full_report_due = false;
        }
        if let Some(reply) = reply {
            if reply.resync {
                self.full_report_due = true;
                outcome.sync_again = true;
            }
            if let Some(bundles) = reply.bundles {
                let changed = *bundles != *self.desired;
                if changed {
                    self.desired = bundles.into();
                }
                outcome.desired_changed = changed;
            }
            if self.etag.as_deref() != Some(reply.etag.as_str()) {
                self.etag = Some(reply.etag.into());
            }
        }
        outcome
    }

    /// Digests a failed sync: nothing in flight was acknowledged, so the next request carries
    /// the same changes again.
    pub fn on_failure(&mut self) {
        self.in_flight = None;
    }

    /// Plans the changes that take the cluster from `applied` (bundle name → deployment id) to
    /// the desired set.
    pub fn plan(&self, applied: &BTreeMap<String, String>) -> Plan {
        let apply = self
            .desired
            .iter()
            .filter(|bundle| applied.get(&bundle.name) != Some(&bundle.deployment))
            .cloned()
            .collect();
        let remove = applied
            .keys()
            .filter(|name| !self.desired.iter().any(|bundle| &bundle.name == *name))
            .cloned()
            .collect();
        Plan { apply, remove }
    }
}

/// The digest of a whole report: facts plus every bundle status.
fn report_digest(facts: u64, bundles: &[(Arc<str>, u64)]) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(&facts.to_le_bytes());
    for (name, hash) in bundles {
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        hasher.update(&hash.to_le_bytes());
    }
    hasher.digest()
}

/// Exponential backoff with full jitter, for retries against the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
    base_millis: u64,
    cap_millis: u64,
}

impl Backoff {
    pub fn new(base_millis: u64, cap_millis: u64) -> Backoff {
        Backoff {
            failures: 0,
            base_millis,
            cap_millis,
        }
    }

    /// Records a failure and returns how long to wait, given a uniformly random `entropy`.
    /// The wait is uniform in [ceiling/2, ceiling], ceiling = min(cap, base·2^failures).
    pub fn next_delay_millis(&mut self, entropy: u64) -> u64 {
        let exponent = self.failures.min(30);
        self.failures = self.failures.saturating_add(1);
        let ceiling = self
            .base_millis
            .saturating_mul(1u64 << exponent)
            .min(self.cap_millis)
            .max(1);
        let half = ceiling / 2;
        half + entropy % (ceiling - half + 1)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A jittered interval: uniform in [interval·(1−spread), interval·(1+spread)], so a fleet
/// started at one instant spreads its syncs out.
pub fn jittered_millis(interval_millis: u64, spread_percent: u64, entropy: u64) -> u64 {
    let spread = interval_millis * spread_percent.min(100) / 100;
    let low = interval_millis - spread;
    low + entropy % (2 * spread + 1)
}

#[cfg(test)]
mod tests {
    use flotilla_api::{BundleState, agent::DeployOptions};

    use super::*;

    fn report(bundle: &str, state: BundleState) -> BundleReport {
        BundleReport {
            bundle: bundle.into(),
            deployment: "d1".into(),
            state,
            message: None,
            problems: vec![],
            more_problems: 0,
        }
    }

    fn desired(name: &str, deployment: &str) -> DesiredBundle {
        DesiredBundle {
            name: name.into(),
            deployment: deployment.into(),
            digest: "sha256:x".into(),
            options: DeployOptions::default(),
        }
    }

    #[test]
    fn first_request_is_a_full_report() {
        let mut machine = SyncMachine::new();
        let request = machine.request(&ClusterFacts::default(), &[report("a", BundleState::Ready)]);
        assert!(request.full);
        assert!(request.facts.is_some());
        assert_eq!(request.bundles.len(), 1);
        assert_eq!(request.etag, None);
    }

    #[test]
    fn acknowledged_status_is_not_sent_again() {
        let mut machine = SyncMachine::new();
        let facts = ClusterFacts::default();
        let reports = [
            report("a", BundleState::Ready),
            report("b", BundleState::Ready),
        ];
        machine.request(&facts, &reports);
        machine.on_reply(None);
        let request = machine.request(&facts, &reports);
        assert!(!request.full);
        assert!(request.facts.is_none());
        assert!(request.bundles.is_empty());
        assert!(request.removed.is_empty());
        assert_eq!(
            request.base_digest.as_deref(),
            Some(request.report_digest.as_str())
        );
    }

    #[test]
    fn only_changed_bundle_status_is_sent() {
        let mut machine = SyncMachine::new();
        let facts = ClusterFacts::default();
        machine.request(
            &facts,
            &[
                report("a", BundleState::Ready),
                report("b", BundleState::Pending),
            ],
        );
        machine.on_reply(None);
        let request = machine.request(
            &facts,
            &[
                report("a", BundleState::Ready),
                report("b", BundleState::Ready),
            ],
        );
        assert_eq!(request.bundles, vec![report("b", BundleState::Ready)]);
        assert_ne!(
            request.base_digest.as_deref(),
            Some(request.report_digest.as_str())
        );
    }

    #[test]
    fn failed_sync_resends_its_changes() {
        let mut machine = SyncMachine::new();
        let facts = ClusterFacts::default();
        machine.request(&facts, &[]);
        machine.on_reply(None);
        let changed = [report("a", BundleState::Error)];
        machine.request(&facts, &changed);
        machine.on_failure();
        let retry = machine.request(&facts, &changed);
        assert_eq!(retry.bundles, changed.to_vec());
    }

    #[test]
    fn bundles_no_longer_reported_are_sent_as_removed() {
        let mut machine = SyncMachine::new();
        let facts = ClusterFacts::default();
        machine.request(&facts, &[report("a", BundleState::Ready)]);
        machine.on_reply(None);
        let request = machine.request(&facts, &[]);
        assert_eq!(request.removed, vec!["a".to_string()]);
    }

    #[test]
    fn resync_reply_makes_the_next_request_full() {
        let mut machine = SyncMachine::new();
        let facts = ClusterFacts::default();
        machine.request(&facts, &[]);
        machine.on_reply(None);
        machine.request(&facts, &[]);
        let outcome = machine.on_reply(Some(SyncResponse {
            etag: "e".into(),
            bundles: None,
            resync: true,
            ..SyncResponse::default()
        }));
        assert!(outcome.sync_again);
        assert!(machine.request(&facts, &[]).full);
    }

    #[test]
    fn new_desired_set_is_planned_against_what_is_applied() {
        let mut machine = SyncMachine::new();
        machine.request(&ClusterFacts::default(), &[]);
        let outcome = machine.on_reply(Some(SyncResponse {
            etag: "e1".into(),
            bundles: Some(vec![desired("a", "d2"), desired("b", "d1")]),
            resync: false,
            ..SyncResponse::default()
        }));
        assert!(outcome.desired_changed);
        assert_eq!(machine.etag(), Some("e1"));
        let applied = BTreeMap::from([
            ("a".to_string(), "d1".to_string()),
            ("b".to_string(), "d1".to_string()),
            ("gone".to_string(), "d1".to_string()),
        ]);
        let plan = machine.plan(&applied);
        assert_eq!(plan.apply, vec![desired("a", "d2")]);
        assert_eq!(plan.remove, vec!["gone".to_string()]);
    }

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let mut backoff = Backoff::new(100, 1_000);
        // With zero entropy the wait is the lower bound: half the ceiling.
        let floors: Vec<u64> = (0..6).map(|_| backoff.next_delay_millis(0)).collect();
        assert_eq!(floors, vec![50, 100, 200, 400, 500, 500]);
        let mut backoff = Backoff::new(100, 1_000);
        for failures in 0..8u32 {
            let ceiling = (100u64 << failures).min(1_000);
            let delay = backoff.next_delay_millis(u64::from(failures) * 7_919 + 13);
            assert!(
                (ceiling / 2..=ceiling).contains(&delay),
                "{delay} for {failures}"
            );
        }
        backoff.reset();
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.next_delay_millis(0), 50);
    }

    #[test]
    fn jitter_stays_within_its_spread() {
        for entropy in 0..1_000u64 {
            let delay = jittered_millis(10_000, 10, entropy.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            assert!((9_000..=11_000).contains(&delay), "{delay}");
        }
    }
}
