//! Cluster lifecycle in the fleet model: insert, relabel, remove, state changes and the intake
//! of agent reports.

use std::sync::atomic::{AtomicBool, AtomicU64};

use flotilla_api::{
    BundleState, ClusterFacts, ClusterState,
    agent::{BundleReport, SyncRequest},
};
use flotilla_core::digest::is_deployment_id;

use super::{ClusterEntry, Fleet, Tally, cluster_state_index, state_index};

/// The durable facts of a cluster, as registered and labelled.
pub struct NewCluster {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub credential_hash: [u8; 32],
    pub client_id: String,
    pub generation: u64,
    pub revision: u64,
    pub created: u64,
}

/// What the intake of a sync request found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Intake {
    /// The server's copy of the report was stale: ask the agent for a full one.
    pub resync: bool,
    /// Something changed that must be persisted.
    pub changed: bool,
}

impl Fleet {
    /// Adds a cluster and targets it. Returns its ordinal.
    pub fn insert_cluster(&mut self, new: NewCluster) -> u32 {
        let ordinal = self.insert_cluster_without_groups(new);
        self.update_memberships(ordinal);
        ordinal
    }

    /// The start-up load's `insert_cluster`: group memberships are left to one
    /// `rebuild_group_members` after the last cluster, which selects each group's members from
    /// the label index instead of evaluating every group's selector for every cluster.
    pub fn load_cluster(&mut self, new: NewCluster) -> u32 {
        self.insert_cluster_without_groups(new)
    }

    /// Recomputes every group's members from the label index.
    pub fn rebuild_group_members(&mut self) {
        for group in self.groups.values_mut() {
            group.members = self
                .index
                .select(&group.selector, &self.interner, &self.all);
        }
    }

    fn insert_cluster_without_groups(&mut self, new: NewCluster) -> u32 {
        let labels = self.intern_labels(&new.labels);
        let ordinal = match self.free_clusters.pop() {
            Some(ordinal) => ordinal,
            None => {
                self.clusters.push(None);
                (self.clusters.len() - 1) as u32
            }
        };
        self.index.insert(ordinal, &labels);
        self.all.insert(ordinal);
        self.cluster_names.insert(new.name.as_str().into(), ordinal);
        self.clusters[ordinal as usize] = Some(ClusterEntry {
            name: new.name.into(),
            labels,
            credential_hash: new.credential_hash,
            client_id: new.client_id.into(),
            generation: new.generation,
            revision: new.revision,
            created: new.created,
            last_seen: AtomicU64::new(0),
            seen_written: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
            state: ClusterState::Pending,
            facts: ClusterFacts::default(),
            report_digest: None,
            deployments: Vec::new(),
        });
        self.index_name(ordinal);
        self.cluster_counts[cluster_state_index(ClusterState::Pending)] += 1;
        self.retarget_cluster(ordinal);
        self.runs_see_membership(ordinal);
        ordinal
    }

    /// Removes a cluster from every index, group and bundle.
    pub fn remove_cluster(&mut self, ordinal: u32) {
        let Some(cluster) = self
            .clusters
            .get_mut(ordinal as usize)
            .and_then(Option::take)
        else {
            return;
        };
        for deployment in &cluster.deployments {
            self.uncount(ordinal, deployment.tally());
            if let Some(bundle) = self.bundles[deployment.bundle as usize].as_mut() {
                bundle.targeted.remove(ordinal);
            }
        }
        self.index.remove(ordinal, &cluster.labels);
        self.release_labels(&cluster.labels);
        self.all.remove(ordinal);
        self.online.remove(ordinal);
        for group in self.groups.values_mut() {
            group.members.remove(ordinal);
        }
        self.cluster_counts[cluster_state_index(cluster.state)] -= 1;
        self.cluster_names.remove(&cluster.name);
        self.unindex_name(ordinal, &cluster.name);
        // Runs let it go (and unpin it), so a reused ordinal starts unpinned.
        self.runs_see_membership(ordinal);
        self.free_clusters.push(ordinal);
    }

    /// Replaces a cluster's labels and re-targets that cluster only.
    pub fn relabel_cluster(
        &mut self,
        ordinal: u32,
        labels: &std::collections::BTreeMap<String, String>,
        generation: u64,
        revision: u64,
    ) {
        if self.cluster(ordinal).is_none() {
            return;
        }
        let labels = self.intern_labels(labels);
        let Some(cluster) = self.cluster_mut(ordinal) else {
            return;
        };
        let old = std::mem::replace(&mut cluster.labels, labels.clone());
        cluster.generation = generation;
        cluster.revision = revision;
        self.index.remove(ordinal, &old);
        self.index.insert(ordinal, &labels);
        // After the new labels took their references, so strings kept are never freed between.
        self.release_labels(&old);
        self.update_memberships(ordinal);
        self.retarget_cluster(ordinal);
        self.runs_see_membership(ordinal);
    }

    fn update_memberships(&mut self, ordinal: u32) {
        let Some(cluster) = self.clusters[ordinal as usize].as_ref() else {
            return;
        };
        let interner = &self.interner;
        let labels = &cluster.labels;
        for group in self.groups.values_mut() {
            if group
                .selector
                .matches(|key| super::labels::label_value(labels, interner, key))
            {
                group.members.insert(ordinal);
            } else {
                group.members.remove(ordinal);
            }
        }
    }

    /// Moves a cluster to `state`, keeping the counters and the online set in step.
    pub fn set_cluster_state(&mut self, ordinal: u32, state: ClusterState) -> bool {
        let Some(cluster) = self
            .clusters
            .get_mut(ordinal as usize)
            .and_then(Option::as_mut)
        else {
            return false;
        };
        if cluster.state == state {
            return false;
        }
        self.cluster_counts[cluster_state_index(cluster.state)] -= 1;
        self.cluster_counts[cluster_state_index(state)] += 1;
        cluster.state = state;
        Fleet::mark_dirty(cluster);
        if state == ClusterState::Online {
            self.online.insert(ordinal);
        } else {
            self.online.remove(ordinal);
        }
        self.runs_see_online(ordinal, state);
        true
    }

    /// Whether a sync request carries anything that needs the write lock.
    pub fn intake_needs_write(&self, cluster: &ClusterEntry, request: &SyncRequest) -> bool {
        cluster.state != ClusterState::Online
            || request.full
            || request.facts.is_some()
            || !request.bundles.is_empty()
            || !request.removed.is_empty()
            || cluster.report_digest.as_deref() != Some(request.report_digest.as_str())
            || cluster.deployments.iter().any(|d| self.counted_stale(d))
    }

    /// A deployment holding a report that was counted in an older epoch of its bundle. The
    /// report may be for the live deployment again (content went back to a revision the cluster
    /// already runs, e.g. A→B→A between two syncs), and then no new report will ever come.
    fn counted_stale(&self, deployment: &super::Deployment) -> bool {
        deployment.report.is_some()
            && self
                .revision_in(deployment.bundle, deployment.slot)
                .is_some_and(|live| live.epoch != deployment.counted_epoch)
    }

    /// What a deployment counts as now: its counted state while counted in its revision's
    /// current epoch, otherwise Pending.
    pub fn effective_state(&self, deployment: &super::Deployment) -> BundleState {
        match self.revision_in(deployment.bundle, deployment.slot) {
            Some(live) if live.epoch == deployment.counted_epoch => deployment.counted,
            _ => BundleState::Pending,
        }
    }

    /// Counts the cluster's stale deployments (see `counted_stale`) in the live epoch: as their
    /// report's state when it is for the live deployment id, otherwise as Pending. Reports are
    /// unchanged, so nothing needs persisting.
    fn recount_stale(&mut self, ordinal: u32) {
        let Some(cluster) = self.cluster(ordinal) else {
            return;
        };
        for position in 0..cluster.deployments.len() {
            let Some(deployment) = self.cluster(ordinal).map(|c| &c.deployments[position]) else {
                return;
            };
            if !self.counted_stale(deployment) {
                continue;
            }
            let Some(live) = self.revision_in(deployment.bundle, deployment.slot) else {
                continue;
            };
            let counted = counted_state(
                deployment.report.as_deref(),
                live.digest_for(deployment.target as usize),
                deployment.options_hash,
            );
            self.recount(ordinal, position, live.epoch, counted);
        }
    }

    /// Applies an agent's report to the model (write lock held).
    pub fn intake(&mut self, ordinal: u32, request: &SyncRequest) -> Intake {
        let mut intake = Intake::default();
        let Some(cluster) = self.cluster(ordinal) else {
            return intake;
        };
        let held = cluster.report_digest.clone();
        let base_matches = request.full || request.base_digest == held;
        let has_changes = request.full
            || request.facts.is_some()
            || !request.bundles.is_empty()
            || !request.removed.is_empty();
        if !has_changes && held.as_deref() != Some(request.report_digest.as_str()) {
            intake.resync = true;
        }
        if has_changes && !base_matches {
            intake.resync = true;
        }
        if let Some(facts) = &request.facts {
            let cluster = self.cluster_mut(ordinal).expect("checked above");
            if &cluster.facts != facts {
                cluster.facts = facts.clone();
                intake.changed = true;
            }
        }
        if request.full {
            // A full report replaces every report the server holds.
            let held_bundles: Vec<u32> = self
                .cluster(ordinal)
                .map(|c| c.deployments.iter().map(|d| d.bundle).collect())
                .unwrap_or_default();
            // A set, so a full report of many bundles costs O(reports + deployments), not their
            // product.
            let reported: std::collections::HashSet<&str> = request
                .bundles
                .iter()
                .map(|report| report.bundle.as_str())
                .collect();
            for bundle in held_bundles {
                let listed = self
                    .bundle(bundle)
                    .is_some_and(|b| reported.contains(b.name.as_str()));
                if !listed {
                    intake.changed |= self.record_report(ordinal, bundle, None);
                }
            }
        }
        for report in &request.bundles {
            if let Some(&bundle) = self.bundle_names.get(&report.bundle) {
                intake.changed |=
                    self.record_report(ordinal, bundle, Some(Box::new(report.clone())));
            }
        }
        for name in &request.removed {
            if let Some(&bundle) = self.bundle_names.get(name) {
                intake.changed |= self.record_report(ordinal, bundle, None);
            }
        }
        self.recount_stale(ordinal);
        let cluster = self.cluster_mut(ordinal).expect("checked above");
        if !intake.resync && cluster.report_digest.as_deref() != Some(&request.report_digest) {
            cluster.report_digest = Some(request.report_digest.clone());
            intake.changed = true;
        } else if intake.resync && cluster.report_digest.is_some() {
            cluster.report_digest = None;
            intake.changed = true;
        }
        if intake.changed {
            Fleet::mark_dirty(cluster);
        }
        intake
    }

    /// Records (or clears) a cluster's report for one bundle and moves the bundle's counters.
    /// Returns whether anything changed.
    pub fn record_report(
        &mut self,
        ordinal: u32,
        bundle: u32,
        report: Option<Box<BundleReport>>,
    ) -> bool {
        let Some(cluster) = self.cluster(ordinal) else {
            return false;
        };
        let Some(position) = self.deployment_position(cluster, bundle) else {
            return false;
        };
        let deployment = &cluster.deployments[position];
        let Some(live) = self.revision_in(bundle, deployment.slot) else {
            return false;
        };
        if deployment.report == report {
            return false;
        }
        let counted = counted_state(
            report.as_deref(),
            live.digest_for(deployment.target as usize),
            deployment.options_hash,
        );
        let epoch = live.epoch;
        self.recount(ordinal, position, epoch, counted);
        if let Some(cluster) = self.cluster_mut(ordinal) {
            cluster.deployments[position].report = report;
        }
        true
    }

    /// Where the cluster's deployment of `bundle` is: a binary search by bundle name (deployments
    /// are sorted by it), so a sync reporting many bundles costs O(reports × log deployments).
    fn deployment_position(&self, cluster: &ClusterEntry, bundle: u32) -> Option<usize> {
        let name = self.bundle(bundle)?.name.as_str();
        let position = cluster
            .deployments
            .partition_point(|d| self.bundle(d.bundle).map_or("", |b| b.name.as_str()) < name);
        cluster
            .deployments
            .get(position)
            .is_some_and(|d| d.bundle == bundle)
            .then_some(position)
    }

    /// Makes deployment `position` of `cluster` count as `state` in `epoch`, moving its
    /// bundle's counters with it.
    pub(super) fn recount(
        &mut self,
        cluster: u32,
        position: usize,
        epoch: u64,
        state: BundleState,
    ) {
        let Some(before) = self
            .cluster(cluster)
            .map(|c| c.deployments[position].tally())
        else {
            return;
        };
        let after = Tally {
            epoch,
            state,
            ..before
        };
        self.uncount(cluster, before);
        self.count(cluster, after);
        if let Some(entry) = self.cluster_mut(cluster) {
            entry.deployments[position].set_tally(after);
        }
        if before != after {
            self.observe_run(cluster, before.bundle);
        }
    }

    /// Removes a deployment's contribution from its bundle's counters.
    pub(super) fn uncount(&mut self, ordinal: u32, tally: Tally) {
        let Some(bundle) = self.bundles[tally.bundle as usize].as_mut() else {
            return;
        };
        let revision = match tally.slot {
            super::rollouts::Slot::Stable => bundle.live.as_ref(),
            super::rollouts::Slot::Candidate => bundle.candidate.as_ref(),
        };
        let current = revision.is_some_and(|live| live.epoch == tally.epoch);
        let state = if current {
            tally.state
        } else {
            BundleState::Pending
        };
        bundle.counts[state_index(state)] = bundle.counts[state_index(state)].saturating_sub(1);
        if current && state.is_problem() {
            bundle.problems.remove(ordinal);
        }
    }

    /// Adds a deployment's contribution to its bundle's counters.
    pub(super) fn count(&mut self, ordinal: u32, tally: Tally) {
        let Some(bundle) = self.bundles[tally.bundle as usize].as_mut() else {
            return;
        };
        let revision = match tally.slot {
            super::rollouts::Slot::Stable => bundle.live.as_ref(),
            super::rollouts::Slot::Candidate => bundle.candidate.as_ref(),
        };
        let current = revision.is_some_and(|live| live.epoch == tally.epoch);
        let state = if current {
            tally.state
        } else {
            BundleState::Pending
        };
        bundle.counts[state_index(state)] += 1;
        if current && state.is_problem() {
            bundle.problems.insert(ordinal);
        }
    }
}

/// What a report counts as for the deployment of `digest` with `options_hash`: its state when
/// it is for that deployment, otherwise Pending.
pub(super) fn counted_state(
    report: Option<&BundleReport>,
    digest: &str,
    options_hash: u64,
) -> BundleState {
    match report {
        Some(report) if is_deployment_id(&report.deployment, digest, options_hash) => report.state,
        _ => BundleState::Pending,
    }
}
