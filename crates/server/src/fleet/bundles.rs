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
    BundleEntry, Deployment, Fleet, GroupEntry, LiveRevision, clusters::counted_state,
    labels::label_value, state_index,
};

impl Fleet {
    /// Creates or replaces a bundle. `live` is the revision to roll out (unchanged while paused);
    /// its epoch is set here.
    pub(super) fn upsert_bundle(&mut self, mut entry: BundleEntry) -> u32 {
        let name = entry.name.clone();
        // The new entry's content references first, so content it shares with the old entry is
        // never released in between.
        for digest in entry.digests() {
            self.contents.reference(digest);
        }
        let new_groups = GroupsNamed::of(&entry);
        self.index_owner(&entry, true);
        match self.bundle_names.get(&name).copied() {
            Some(ordinal) => {
                let old_live = self.bundle(ordinal).and_then(|b| b.live.as_ref());
                if let Some(live) = entry.live.as_mut() {
                    live.epoch = match old_live {
                        Some(old) if old.same_content(live) => old.epoch,
                        Some(old) => old.epoch + 1,
                        None => 1,
                    };
                }
                let old = self.bundles[ordinal as usize]
                    .replace(entry)
                    .expect("named bundles exist");
                for digest in old.digests() {
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
                let targeting_changed = match (&old.live, &bundle.live) {
                    (Some(old), Some(new)) => {
                        old.targets != new.targets
                            || old.keep_resources != new.keep_resources
                            || old.drift != new.drift
                            || old.vars != new.vars
                    }
                    (None, None) => false,
                    _ => true,
                };
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
    fn select_target(&self, target: &Target) -> RoaringBitmap {
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
        let mut targeted = RoaringBitmap::new();
        if let Some(live) = &bundle.live {
            // A cluster only a doNotDeploy target matches gets nothing; one that matches it
            // before another target is dropped by `place_deployment`.
            for target in live.targets.iter().filter(|t| !t.do_not_deploy) {
                targeted |= self.select_target(target);
            }
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

    /// The index of the first target of the bundle's live revision matching the cluster.
    fn matching_target(&self, cluster: u32, bundle: u32) -> Option<usize> {
        let live = self.bundle(bundle)?.live.as_ref()?;
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
        let live = self.bundle(bundle)?.live.as_ref()?;
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

    /// Makes sure the cluster has a deployment of the bundle with current target and options, or
    /// none if no target of the bundle matches the cluster.
    fn place_deployment(&mut self, cluster: u32, bundle: u32) {
        let Some(target) = self.matching_target(cluster, bundle) else {
            self.drop_deployment(cluster, bundle);
            return;
        };
        let Some(options) = self.options_for(cluster, bundle, target) else {
            return;
        };
        let hash = options_hash(&options);
        let (Some(entry), Some(placed)) = (self.cluster(cluster), self.bundle(bundle)) else {
            return;
        };
        let Some(live) = placed.live.as_ref() else {
            return;
        };
        let existing = entry.deployments.iter().position(|d| d.bundle == bundle);
        match existing {
            Some(position) => {
                let deployment = &entry.deployments[position];
                if deployment.target as usize == target && deployment.options_hash == hash {
                    return;
                }
                // New options mean a new deployment id: the report counts only if it is for it.
                let counted =
                    counted_state(deployment.report.as_deref(), live.digest_for(target), hash);
                let epoch = live.epoch;
                self.recount(cluster, position, epoch, counted);
                if let Some(entry) = self.cluster_mut(cluster) {
                    let deployment = &mut entry.deployments[position];
                    deployment.target = target as u16;
                    deployment.options_hash = hash;
                }
            }
            None => {
                let deployment = Deployment {
                    bundle,
                    target: target as u16,
                    options_hash: hash,
                    counted_epoch: live.epoch,
                    counted: BundleState::Pending,
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
            let live = bundle.live.as_ref()?;
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
                let options = self.options_for(cluster, d.bundle, d.target as usize)?;
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
        generation,
        epoch: 0,
        digest,
        targets: compiled.targets,
        keep_resources,
        drift: drift.clone(),
        vars: compiled.vars,
    })
}
