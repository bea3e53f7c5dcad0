//! Bundles and groups in the fleet model: targeting through the label index, per-cluster
//! deployments, the desired set an agent receives, and incremental summaries.

use std::collections::BTreeSet;

use flotilla_api::{
    BundleState, BundleSummary, ObjectMeta,
    agent::{DeployOptions, DesiredBundle},
};
use flotilla_core::{
    digest::{deployment_hash, deployment_id, desired_etag, is_deployment_id, options_hash},
    selector::Selector,
    targeting::{ClusterView, Target, deploy_options, first_match},
};
use roaring::RoaringBitmap;

use super::{
    BundleEntry, Deployment, Fleet, GroupEntry, LiveRevision, Tally, clusters::counted_state,
    labels::label_value, rollouts::Slot, state_index,
};

impl Fleet {
    /// Creates or replaces a bundle. `live` is the revision to roll out (unchanged while paused);
    /// its epoch is set here.
    /// The bundle's retained revisions stay with it: they come and go only through
    /// `put_revision` and `remove_revision`, so `entry` brings none.
    pub(super) fn upsert_bundle(&mut self, mut entry: BundleEntry) -> u32 {
        let name = entry.name.clone();
        debug_assert!(
            entry.revisions.is_empty(),
            "revisions enter through put_revision"
        );
        // Retained revisions hold their own content references; they move from the old entry
        // to the new one untouched.
        if let Some(old) = self
            .bundle_names
            .get(&name)
            .and_then(|&ordinal| self.bundles[ordinal as usize].as_mut())
        {
            entry.revisions = std::mem::take(&mut old.revisions);
            // A run and its pins stay with the bundle: the write service ends a run (and sends
            // its clusters back) before it puts an entry whose candidate differs.
            entry.rollout = old.rollout.take();
            entry.pinned = std::mem::take(&mut old.pinned);
        }
        // The new entry's content references first, so content it shares with the old entry is
        // never released in between.
        for digest in entry.own_digests() {
            self.contents.reference(digest);
        }
        let new_groups = GroupsNamed::of(&entry);
        self.index_owner(&entry, true);
        match self.bundle_names.get(&name).copied() {
            Some(ordinal) => {
                let old_entry = self.bundle(ordinal).expect("named bundles exist");
                // Epochs are never reused within a bundle, so a deployment counted on one
                // revision never counts for another.
                let next = old_entry
                    .live
                    .iter()
                    .chain(old_entry.candidate.iter())
                    .map(|r| r.epoch)
                    .max()
                    .unwrap_or(0)
                    + 1;
                let same = |new: &LiveRevision, olds: [Option<&LiveRevision>; 2]| {
                    olds.into_iter()
                        .flatten()
                        .find(|old| old.same_content(new))
                        .map(|old| old.epoch)
                };
                let olds = [old_entry.live.as_ref(), old_entry.candidate.as_ref()];
                let live_epoch = entry
                    .live
                    .as_ref()
                    .map(|live| same(live, olds).unwrap_or(next));
                let candidate_epoch = entry
                    .candidate
                    .as_ref()
                    .map(|candidate| same(candidate, olds).unwrap_or(next + 1));
                if let (Some(live), Some(epoch)) = (entry.live.as_mut(), live_epoch) {
                    live.epoch = epoch;
                }
                if let (Some(candidate), Some(epoch)) = (entry.candidate.as_mut(), candidate_epoch)
                {
                    candidate.epoch = epoch;
                }
                let old = self.bundles[ordinal as usize]
                    .replace(entry)
                    .expect("named bundles exist");
                for digest in old.own_digests() {
                    self.contents.unreference(digest);
                }
                self.index_groups(ordinal, &GroupsNamed::of(&old), false);
                if old.owner != self.bundle(ordinal).and_then(|b| b.owner.clone()) {
                    self.index_owner(&old, false);
                }
                self.index_groups(ordinal, &new_groups, true);
                let bundle = self.bundles[ordinal as usize].as_mut().expect("just set");
                bundle.targeted = old.targeted;
                bundle.counts = old.counts;
                bundle.problems = old.problems;
                let differs =
                    |old: &Option<LiveRevision>, new: &Option<LiveRevision>| match (old, new) {
                        (Some(old), Some(new)) => {
                            old.targets != new.targets
                                || old.keep_resources != new.keep_resources
                                || old.drift != new.drift
                                || old.vars != new.vars
                        }
                        (None, None) => false,
                        _ => true,
                    };
                let targeting_changed =
                    differs(&old.live, &bundle.live) || differs(&old.candidate, &bundle.candidate);
                let epoch_changed =
                    old.live.as_ref().map(|l| l.epoch) != bundle.live.as_ref().map(|l| l.epoch);
                if epoch_changed {
                    // Every deployment now counts as Pending until its cluster reports the new
                    // revision; counted generations tell old reports apart without a scan.
                    bundle.counts = [0; 5];
                    bundle.counts[state_index(BundleState::Pending)] = bundle.targeted.len();
                    bundle.problems.clear();
                }
                if targeting_changed {
                    self.retarget_bundle(ordinal);
                }
                ordinal
            }
            None => {
                if let Some(live) = entry.live.as_mut() {
                    live.epoch = 1;
                }
                if let Some(candidate) = entry.candidate.as_mut() {
                    candidate.epoch = 2;
                }
                let ordinal = match self.free_bundles.pop() {
                    Some(ordinal) => ordinal,
                    None => {
                        self.bundles.push(None);
                        (self.bundles.len() - 1) as u32
                    }
                };
                self.bundles[ordinal as usize] = Some(entry);
                self.bundle_names.insert(name, ordinal);
                self.index_groups(ordinal, &new_groups, true);
                self.retarget_bundle(ordinal);
                ordinal
            }
        }
    }

    pub(super) fn remove_bundle(&mut self, name: &str) {
        let Some(ordinal) = self.bundle_names.remove(name) else {
            return;
        };
        self.running.remove(ordinal);
        let targeted = self.bundles[ordinal as usize]
            .as_ref()
            .map(|b| b.targeted.clone())
            .unwrap_or_default();
        for cluster in &targeted {
            if let Some(cluster) = self.cluster_mut(cluster) {
                cluster.deployments.retain(|d| d.bundle != ordinal);
            }
        }
        if let Some(old) = self.bundles[ordinal as usize].take() {
            for digest in old.digests() {
                self.contents.unreference(digest);
            }
            self.index_groups(ordinal, &GroupsNamed::of(&old), false);
            self.index_owner(&old, false);
        }
        self.free_bundles.push(ordinal);
    }

    /// The clusters a target selects, by bitmap algebra.
    pub(super) fn select_target(&self, target: &Target) -> RoaringBitmap {
        let mut selected = match &target.selector {
            Some(selector) => self.index.select(selector, &self.interner, &self.all),
            None => self.all.clone(),
        };
        for group in &target.groups {
            match self.groups.get(group) {
                Some(group) => selected &= &group.members,
                None => selected.clear(),
            }
        }
        if let Some(name) = &target.cluster_name {
            let only: RoaringBitmap = self
                .cluster_names
                .get(name.as_str())
                .copied()
                .into_iter()
                .collect();
            selected &= only;
        }
        selected
    }

    /// Recomputes which clusters a bundle targets (O(clusters it targets), after a change of its
    /// targets or of a group it names).
    pub fn retarget_bundle(&mut self, ordinal: u32) {
        let Some(bundle) = self.bundle(ordinal) else {
            return;
        };
        // A cluster only a doNotDeploy target matches gets nothing; one that matches it before
        // another target is dropped by `place_deployment`. During a run, clusters pinned to the
        // candidate are targeted by the candidate's targets, the others by the stable's.
        let mut targeted = match &bundle.live {
            Some(live) => self.targeted_by(live),
            None => RoaringBitmap::new(),
        };
        if let Some(candidate) = &bundle.candidate {
            targeted -= &bundle.pinned;
            targeted |= &self.targeted_by(candidate) & &bundle.pinned;
        }
        let old = bundle.targeted.clone();
        for cluster in &(&old - &targeted) {
            self.drop_deployment(cluster, ordinal);
        }
        for cluster in &targeted {
            self.place_deployment(cluster, ordinal);
        }
    }

    /// Re-evaluates every bundle for one cluster (after it registered or its labels changed).
    pub fn retarget_cluster(&mut self, cluster: u32) {
        let ordinals: Vec<u32> = self.bundle_names.values().copied().collect();
        for bundle in ordinals {
            self.place_deployment(cluster, bundle);
        }
    }

    /// The index of the first target of a revision of the bundle matching the cluster.
    pub(super) fn matching_target_in(
        &self,
        cluster: u32,
        bundle: u32,
        slot: Slot,
    ) -> Option<usize> {
        let live = self.revision_in(bundle, slot)?;
        let entry = self.cluster(cluster)?;
        let interner = &self.interner;
        let labels = &entry.labels;
        let view = ClusterView {
            name: &entry.name,
            label: |key: &str| label_value(labels, interner, key),
        };
        let groups = |name: &str| self.groups.get(name).map(|group| &group.selector);
        first_match(&live.targets, &view, &groups)
            .filter(|&index| !live.targets[index].do_not_deploy)
    }

    /// The options a cluster receives for a bundle under the given target.
    pub fn options_for(&self, cluster: u32, bundle: u32, target: usize) -> Option<DeployOptions> {
        self.options_in(cluster, bundle, target, self.slot_of(cluster, bundle))
    }

    /// The options a cluster receives for a revision of a bundle under the given target.
    fn options_in(
        &self,
        cluster: u32,
        bundle: u32,
        target: usize,
        slot: Slot,
    ) -> Option<DeployOptions> {
        let live = self.revision_in(bundle, slot)?;
        let entry = self.cluster(cluster)?;
        let interner = &self.interner;
        let labels = &entry.labels;
        let view = ClusterView {
            name: &entry.name,
            label: |key: &str| label_value(labels, interner, key),
        };
        let customization = &live.targets.get(target)?.customization;
        Some(deploy_options(
            customization,
            live.keep_resources,
            &live.drift,
            &live.vars,
            &view,
        ))
    }

    /// Makes sure the cluster has a deployment of the bundle with the current slot, target and
    /// options, or none if no target of the revision it is sent matches the cluster.
    pub(super) fn place_deployment(&mut self, cluster: u32, bundle: u32) {
        let slot = self.slot_of(cluster, bundle);
        let Some(target) = self.matching_target_in(cluster, bundle, slot) else {
            self.drop_deployment(cluster, bundle);
            return;
        };
        let Some(options) = self.options_in(cluster, bundle, target, slot) else {
            return;
        };
        let hash = options_hash(&options);
        let (Some(entry), Some(placed)) = (self.cluster(cluster), self.bundle(bundle)) else {
            return;
        };
        let Some(live) = self.revision_in(bundle, slot) else {
            return;
        };
        let existing = entry.deployments.iter().position(|d| d.bundle == bundle);
        match existing {
            Some(position) => {
                let deployment = &entry.deployments[position];
                if deployment.target as usize == target
                    && deployment.options_hash == hash
                    && deployment.slot == slot
                {
                    return;
                }
                // New options (or another revision) mean a new deployment id: the report counts
                // only if it is for it.
                let before = deployment.tally();
                let after = Tally {
                    bundle,
                    slot,
                    epoch: live.epoch,
                    state: counted_state(
                        deployment.report.as_deref(),
                        live.digest_for(target),
                        hash,
                    ),
                };
                self.uncount(cluster, before);
                self.count(cluster, after);
                if let Some(entry) = self.cluster_mut(cluster) {
                    let deployment = &mut entry.deployments[position];
                    deployment.target = target as u16;
                    deployment.options_hash = hash;
                    deployment.slot = slot;
                    deployment.set_tally(after);
                }
                if before != after {
                    self.observe_run(cluster, bundle);
                }
            }
            None => {
                let deployment = Deployment {
                    bundle,
                    target: target as u16,
                    options_hash: hash,
                    counted_epoch: live.epoch,
                    counted: BundleState::Pending,
                    slot,
                    report: None,
                };
                // Deployments stay sorted by bundle name.
                let position = entry.deployments.partition_point(|d| {
                    self.bundle(d.bundle).map_or("", |b| b.name.as_str()) < placed.name.as_str()
                });
                self.count(cluster, deployment.tally());
                if let Some(bundle) = self.bundles[bundle as usize].as_mut() {
                    bundle.targeted.insert(cluster);
                }
                if let Some(entry) = self.cluster_mut(cluster) {
                    entry.deployments.insert(position, deployment);
                }
                self.observe_run(cluster, bundle);
            }
        }
    }

    fn drop_deployment(&mut self, cluster: u32, bundle: u32) {
        let Some(entry) = self.cluster(cluster) else {
            return;
        };
        let Some(position) = entry.deployments.iter().position(|d| d.bundle == bundle) else {
            return;
        };
        let tally = entry.deployments[position].tally();
        self.uncount(cluster, tally);
        if let Some(entry) = self.cluster_mut(cluster) {
            entry.deployments.remove(position);
        }
        if let Some(bundle) = self.bundles[bundle as usize].as_mut() {
            bundle.targeted.remove(cluster);
        }
    }

    /// Creates or replaces a group and re-targets the bundles that name it.
    pub(super) fn upsert_group(&mut self, name: &str, metadata: ObjectMeta, selector: Selector) {
        let members = self.index.select(&selector, &self.interner, &self.all);
        self.groups.insert(
            name.to_string(),
            GroupEntry {
                metadata,
                selector,
                members,
            },
        );
        self.retarget_bundles_naming_group(name);
    }

    pub fn remove_group(&mut self, name: &str) {
        if self.groups.remove(name).is_some() {
            self.retarget_bundles_naming_group(name);
        }
    }

    /// Re-targets the bundles whose live targets name `group` (from the group index: O(those
    /// bundles), not a walk over every bundle).
    fn retarget_bundles_naming_group(&mut self, group: &str) {
        let naming: Vec<u32> = self
            .bundles_by_group
            .get(group)
            .map(|bundles| bundles.iter().collect())
            .unwrap_or_default();
        for ordinal in naming {
            self.retarget_bundle(ordinal);
        }
    }

    /// Adds a bundle to (or removes it from) the index of the groups it names.
    fn index_groups(&mut self, ordinal: u32, groups: &GroupsNamed, add: bool) {
        for group in &groups.0 {
            if add {
                self.bundles_by_group
                    .entry(group.clone())
                    .or_default()
                    .insert(ordinal);
            } else if let Some(bundles) = self.bundles_by_group.get_mut(group) {
                bundles.remove(ordinal);
                if bundles.is_empty() {
                    self.bundles_by_group.remove(group);
                }
            }
        }
    }

    /// Adds a bundle to (or removes it from) the index of bundles by owning GitRepo.
    fn index_owner(&mut self, entry: &BundleEntry, add: bool) {
        let Some(owner) = &entry.owner else {
            return;
        };
        if add {
            self.bundles_by_owner
                .entry(owner.clone())
                .or_default()
                .insert(entry.name.clone());
        } else if let Some(names) = self.bundles_by_owner.get_mut(owner) {
            names.remove(&entry.name);
            if names.is_empty() {
                self.bundles_by_owner.remove(owner);
            }
        }
    }

    /// Names of the bundles a GitRepo owns, in name order: O(its bundles), from an index.
    pub fn bundles_owned_by(&self, repo: &str) -> Vec<String> {
        self.bundles_by_owner
            .get(repo)
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The bundles the group index says name `group` (tests compare it with a walk).
    pub fn bundles_naming_group(&self, group: &str) -> Vec<u32> {
        self.bundles_by_group
            .get(group)
            .map(|bundles| bundles.iter().collect())
            .unwrap_or_default()
    }

    /// Whether a deployment waits for its bundle's dependencies: the cluster has never reported
    /// it (it was never deployed there) and some dependency has not yet been reported Ready by
    /// this cluster (any revision: once released, a dependent is never withdrawn because a
    /// dependency changes or degrades, which would prune running workloads). A selector
    /// dependency looks only at the bundles deployed to this cluster. O(deployments of the
    /// cluster) per dependency, and only for bundles that have dependencies.
    fn waits_for_dependencies(
        &self,
        entry: &super::ClusterEntry,
        deployment: &Deployment,
        bundle: &BundleEntry,
    ) -> bool {
        if bundle.dependencies.is_empty() || deployment.report.is_some() {
            return false;
        }
        let reported_ready = |d: &Deployment| {
            d.report
                .as_ref()
                .is_some_and(|report| report.state == BundleState::Ready)
        };
        bundle
            .dependencies
            .iter()
            .any(|dependency| match dependency {
                super::Dependency::Name(name) => match self.bundle_names.get(name) {
                    Some(&ordinal) => !entry
                        .deployments
                        .iter()
                        .any(|d| d.bundle == ordinal && reported_ready(d)),
                    None => true,
                },
                super::Dependency::Selector(selector) => entry.deployments.iter().any(|d| {
                    d.bundle != deployment.bundle
                        && self
                            .bundle(d.bundle)
                            .is_some_and(|b| selector.matches_map(&b.metadata.labels))
                        && !reported_ready(d)
                }),
            })
    }

    /// The deployments a cluster is sent, with their bundle and live revision: those of live
    /// bundles not waiting for dependencies. The one definition the etag, the desired set and
    /// content access share.
    fn delivered<'a>(
        &'a self,
        entry: &'a super::ClusterEntry,
    ) -> impl Iterator<Item = (&'a Deployment, &'a BundleEntry, &'a LiveRevision)> + 'a {
        entry.deployments.iter().filter_map(move |d| {
            let bundle = self.bundle(d.bundle)?;
            let live = match d.slot {
                Slot::Stable => bundle.live.as_ref()?,
                Slot::Candidate => bundle.candidate.as_ref()?,
            };
            (!self.waits_for_dependencies(entry, d, bundle)).then_some((d, bundle, live))
        })
    }

    /// The etag of a cluster's current desired set (cheap: a hash over its few deployments, no
    /// allocation).
    pub fn desired_etag(&self, cluster: u32) -> String {
        let Some(entry) = self.cluster(cluster) else {
            return desired_etag([]);
        };
        desired_etag(self.delivered(entry).map(|(d, bundle, live)| {
            (
                bundle.name.as_str(),
                deployment_hash(live.digest_for(d.target as usize), d.options_hash),
            )
        }))
    }

    /// The full desired set of a cluster.
    pub fn desired_set(&self, cluster: u32) -> Vec<DesiredBundle> {
        let Some(entry) = self.cluster(cluster) else {
            return Vec::new();
        };
        self.delivered(entry)
            .filter_map(|(d, bundle, live)| {
                let options = self.options_in(cluster, d.bundle, d.target as usize, d.slot)?;
                let digest = live.digest_for(d.target as usize);
                Some(DesiredBundle {
                    name: bundle.name.clone(),
                    deployment: deployment_id(digest, d.options_hash),
                    digest: digest.to_string(),
                    options,
                })
            })
            .collect()
    }

    /// Content to send inside a sync reply: the delivered bundles whose current deployment the
    /// cluster has not reported (so it most likely lacks their content), each digest once, up to
    /// `budget` bytes in all. Saves the agent a fetch per changed bundle in a rollout.
    pub fn inline_contents(&self, cluster: u32, budget: usize) -> Vec<(&str, &axum::body::Bytes)> {
        let Some(entry) = self.cluster(cluster) else {
            return Vec::new();
        };
        let mut left = budget;
        let mut inline: Vec<(&str, &axum::body::Bytes)> = Vec::new();
        for (d, _, live) in self.delivered(entry) {
            let digest = live.digest_for(d.target as usize);
            let applied = d
                .report
                .as_ref()
                .is_some_and(|r| is_deployment_id(&r.deployment, digest, d.options_hash));
            if applied || inline.iter().any(|(held, _)| *held == digest) {
                continue;
            }
            if let Some(bytes) = self.contents.get(digest)
                && bytes.len() <= left
            {
                left -= bytes.len();
                inline.push((digest, bytes));
            }
        }
        inline
    }

    /// Whether `digest` is referenced by the cluster's current desired set.
    pub fn cluster_may_read(&self, cluster: u32, digest: &str) -> bool {
        self.cluster(cluster).is_some_and(|entry| {
            self.delivered(entry)
                .any(|(d, _, live)| live.digest_for(d.target as usize) == digest)
        })
    }

    pub fn summary(&self, bundle: &BundleEntry) -> BundleSummary {
        BundleSummary {
            desired: bundle.targeted.len(),
            pending: bundle.counts[state_index(BundleState::Pending)],
            ready: bundle.counts[state_index(BundleState::Ready)],
            not_ready: bundle.counts[state_index(BundleState::NotReady)],
            modified: bundle.counts[state_index(BundleState::Modified)],
            error: bundle.counts[state_index(BundleState::Error)],
        }
    }

    /// Digests referenced by any bundle (live or latest spec): content the server must keep.
    /// From the reference counts: O(distinct digests), not a walk over the bundles.
    pub fn referenced_digests(&self) -> BTreeSet<String> {
        self.contents.referenced().map(str::to_string).collect()
    }
}

/// The cluster groups a bundle's live targets name, each once.
struct GroupsNamed(BTreeSet<String>);

impl GroupsNamed {
    fn of(entry: &BundleEntry) -> GroupsNamed {
        GroupsNamed(
            entry
                .live
                .iter()
                .chain(entry.candidate.iter())
                .flat_map(|live| &live.targets)
                .flat_map(|target| &target.groups)
                .cloned()
                .collect(),
        )
    }
}

/// Builds the live revision of a bundle spec: validates its targets and finds the placeholders
/// its resources and patches use.
pub fn live_revision(
    generation: u64,
    digest: String,
    resources: &[serde_json::Value],
    targets: &[flotilla_api::BundleTarget],
    keep_resources: bool,
    drift: &flotilla_api::DriftPolicy,
) -> Result<LiveRevision, flotilla_core::documents::FieldError> {
    let compiled = flotilla_core::documents::revision(resources, targets, drift)?;
    Ok(LiveRevision {
        revision: 0,
        generation,
        epoch: 0,
        digest,
        targets: compiled.targets,
        keep_resources,
        drift: drift.clone(),
        vars: compiled.vars,
    })
}
