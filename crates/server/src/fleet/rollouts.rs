//! Rollout runs in the fleet model: which revision each cluster is sent (its deployment's
//! [`Slot`]), the run's planner fed with every change of a deployment's counted state, and a
//! run's end (the candidate promoted to stable, or every cluster sent back).
//!
//! Invariant: a cluster's slot for a bundle is `Candidate` exactly when the bundle's `pinned`
//! bitmap holds it, and `pinned` moves only through [`Fleet::reslot`], which the run's steps
//! drive. Clusters outside the current wave keep the stable revision, so their etag does not
//! move while a run goes on.

use std::sync::OnceLock;

use flotilla_api::{BundleState, ClusterState, RolloutReason, RolloutStrategy};
use flotilla_core::rollout::{
    membership::{self, Boundary, ClusterLabels, Key},
    planner::{Millis, Override, Phase, Run, Saved, Step},
    strategy::Strategy,
};
use roaring::RoaringBitmap;

use super::{Fleet, LiveRevision, labels::label_value};

/// Which of its bundle's revisions a deployment delivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Slot {
    /// The bundle's stable (`live`) revision.
    #[default]
    Stable,
    /// The revision its run rolls out.
    Candidate,
}

/// Milliseconds on the process's monotonic clock: the planner's time. A restart starts soaks and
/// deadlines over, so the clock need not survive one.
pub fn now_millis() -> Millis {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as Millis
}

/// A bundle's rollout: the run in progress (or the last one), what it moves between, and why it
/// stopped.
#[derive(Debug)]
pub struct Rollout {
    /// The strategy as written when the run started (persisted with the run).
    pub spec: RolloutStrategy,
    pub from: u64,
    pub to: u64,
    /// Unix seconds.
    pub started: u64,
    pub updated: u64,
    pub reason: Option<RolloutReason>,
    /// The planner; `None` once the run ended (its summary is in `ended`).
    pub run: Option<Box<Run>>,
    /// What the run looked like when it ended.
    pub ended: Option<Ended>,
    /// Moves a step decided whose commit has not yet succeeded; applied after it.
    pub unapplied: Step,
    /// Built or moved by another replica's records: its planner has no timers and judged no
    /// offline cluster, so a replica that takes the lease rebuilds it (`take_over_runs`).
    pub followed: bool,
}

/// A finished run, as shown after its planner is gone.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ended {
    pub phase: Phase,
    pub waves: Vec<flotilla_api::WaveStatus>,
}

impl Rollout {
    pub fn phase(&self) -> Option<Phase> {
        match (&self.run, &self.ended) {
            (Some(run), _) => Some(run.phase()),
            (None, Some(ended)) => Some(ended.phase),
            (None, None) => None,
        }
    }
}

/// The persisted form of a bundle's run (one record per bundle, kind `BundleRollout`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRecord {
    pub from: u64,
    pub to: u64,
    pub started: u64,
    pub updated: u64,
    pub strategy: RolloutStrategy,
    /// The planner's saved state; none before its first step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved: Option<Saved>,
    /// Late joiners by cluster name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<(String, Override)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RolloutReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ended>,
}

impl RolloutRecord {
    /// The record with `ended` set when its saved phase says the run is over: the driver ends
    /// a run in memory right after committing the step that decided it, without writing the
    /// record again, so a restart or a follower ends it here the same way.
    pub fn ended_by_phase(mut self) -> RolloutRecord {
        if self.ended.is_none()
            && let Some(saved) = &self.saved
            && matches!(saved.phase, Phase::Succeeded | Phase::RolledBack)
        {
            self.ended = Some(Ended {
                phase: saved.phase,
                waves: Vec::new(),
            });
        }
        self
    }
}

/// Overrides (late joiners, relabelled started clusters) a run's record keeps by name; memory
/// keeps them all, but past this many a restart places the rest by their labels like original
/// members (a held one could then start early; none stalls a wave). 100,000 names keep the
/// run's record within a few megabytes.
pub const MAX_OVERRIDES: usize = 100_000;

impl Fleet {
    /// The revision a slot of a bundle delivers.
    pub fn revision_in(&self, bundle: u32, slot: Slot) -> Option<&LiveRevision> {
        let entry = self.bundle(bundle)?;
        match slot {
            Slot::Stable => entry.live.as_ref(),
            Slot::Candidate => entry.candidate.as_ref(),
        }
    }

    /// The slot a cluster's deployment of a bundle should be in.
    pub fn slot_of(&self, cluster: u32, bundle: u32) -> Slot {
        match self.bundle(bundle) {
            Some(entry) if entry.pinned.contains(cluster) => Slot::Candidate,
            _ => Slot::Stable,
        }
    }

    /// Bundles with a run that still moves or holds pins.
    pub fn running(&self) -> impl Iterator<Item = u32> + '_ {
        self.running.iter()
    }

    /// The clusters a revision targets.
    pub(super) fn targeted_by(&self, revision: &LiveRevision) -> RoaringBitmap {
        let mut targeted = RoaringBitmap::new();
        for target in revision.targets.iter().filter(|t| !t.do_not_deploy) {
            targeted |= self.select_target(target);
        }
        targeted
    }

    /// The clusters a run of the bundle is about: those its stable or its candidate revision
    /// targets.
    fn run_universe(&self, bundle: u32) -> RoaringBitmap {
        let Some(entry) = self.bundle(bundle) else {
            return RoaringBitmap::new();
        };
        let mut universe = RoaringBitmap::new();
        for revision in entry.live.iter().chain(entry.candidate.iter()) {
            universe |= self.targeted_by(revision);
        }
        universe
    }

    /// Whether a revision of the bundle delivers to the cluster (first matching target is not
    /// `doNotDeploy`).
    fn delivers_to(&self, cluster: u32, bundle: u32, slot: Slot) -> bool {
        self.matching_target_in(cluster, bundle, slot).is_some()
    }

    /// Where a cluster goes in a run under fixed boundaries.
    fn place_in_run(
        &self,
        cluster: u32,
        strategy: &Strategy,
        boundaries: &[Boundary],
    ) -> Option<(usize, Key)> {
        let entry = self.cluster(cluster)?;
        let interner = &self.interner;
        let labels = &entry.labels;
        let view = ClusterLabels {
            name: &entry.name,
            label: |key: &str| label_value(labels, interner, key),
        };
        membership::place(strategy, boundaries, &view)
    }

    /// The cluster's counted state on the revision it is pinned to, as the planner judges it:
    /// a cluster the revision does not deliver to has nothing to wait for.
    fn run_state(&self, cluster: u32, bundle: u32) -> BundleState {
        let Some(entry) = self.cluster(cluster) else {
            return BundleState::Pending;
        };
        match entry.deployments.iter().find(|d| d.bundle == bundle) {
            Some(deployment) => self.effective_state(deployment),
            None => BundleState::Ready,
        }
    }

    /// Starts (or restores) a bundle's run over the clusters its stable or candidate revision
    /// targets. A fresh run fixes its share waves now (one sort of the fleet it covers, once per
    /// run); a restored one places clusters by its saved boundaries and pins exactly the clusters
    /// its saved thresholds started. Pins of an earlier run of the bundle are dropped first (a
    /// newer revision supersedes a run: its clusters go back to the stable revision at once).
    pub fn start_run(
        &mut self,
        bundle: u32,
        strategy: Strategy,
        mut rollout: Rollout,
        saved: Option<(Saved, Vec<(String, Override)>)>,
        now: Millis,
    ) {
        self.unpin_all(bundle);
        let universe = self.run_universe(bundle);
        let online = &self.online;
        let mut run = match saved {
            None => {
                let members: Vec<u32> = universe.iter().collect();
                let views: Vec<ClusterLabels<'_, _>> = members
                    .iter()
                    .filter_map(|&ordinal| {
                        let entry = self.cluster(ordinal)?;
                        let labels = &entry.labels;
                        let interner = &self.interner;
                        Some(ClusterLabels {
                            name: &entry.name,
                            label: move |key: &str| label_value(labels, interner, key),
                        })
                    })
                    .collect();
                let (boundaries, placed) = membership::assign(&strategy, &views);
                let mut run = Run::new(strategy, boundaries);
                for (&ordinal, placed) in members.iter().zip(placed) {
                    if let Some((wave, key)) = placed {
                        run.insert(
                            ordinal,
                            wave,
                            key,
                            None,
                            BundleState::Pending,
                            online.contains(ordinal),
                        );
                    }
                }
                run
            }
            Some((saved, overrides)) => {
                let boundaries = saved.boundaries.clone();
                let overrides: std::collections::HashMap<u32, Override> = overrides
                    .into_iter()
                    .filter_map(|(name, o)| Some((self.cluster_by_name(&name)?.0, o)))
                    .collect();
                let mut run = Run::restore(strategy.clone(), saved);
                for ordinal in &universe {
                    if let Some((wave, key)) = self.place_in_run(ordinal, &strategy, &boundaries) {
                        run.insert(
                            ordinal,
                            wave,
                            key,
                            overrides.get(&ordinal).cloned(),
                            BundleState::Pending,
                            online.contains(ordinal),
                        );
                    }
                }
                run.settle(now);
                run
            }
        };
        let pinned: Vec<u32> = run.pinned_clusters().collect();
        rollout.run = None;
        if let Some(entry) = self.bundle_mut(bundle) {
            entry.rollout = Some(Box::new(rollout));
        }
        self.running.insert(bundle);
        for cluster in pinned {
            self.reslot(cluster, bundle, Slot::Candidate, None);
        }
        for cluster in run.pinned_clusters().collect::<Vec<_>>() {
            let state = self.run_state(cluster, bundle);
            run.observe(cluster, state, true, now);
        }
        if let Some(rollout) = self.bundle_mut(bundle).and_then(|b| b.rollout.as_mut()) {
            rollout.run = Some(Box::new(run));
        }
    }

    /// Moves a cluster's deployment of a bundle to `slot`: its target, options and counted state
    /// follow the slot's revision (a revision that does not deliver to the cluster drops the
    /// deployment, one that does creates it). The run, if given the time, observes the result.
    pub fn reslot(&mut self, cluster: u32, bundle: u32, slot: Slot, now: Option<Millis>) {
        let Some(entry) = self.bundle_mut(bundle) else {
            return;
        };
        match slot {
            Slot::Candidate => entry.pinned.insert(cluster),
            Slot::Stable => entry.pinned.remove(cluster),
        };
        self.place_deployment(cluster, bundle);
        if let Some(now) = now {
            let state = self.run_state(cluster, bundle);
            if let Some(run) = self.run_mut(bundle) {
                run.observe(cluster, state, slot == Slot::Candidate, now);
            }
        }
    }

    /// Sends every cluster pinned to the bundle's candidate back to the stable revision at once.
    fn unpin_all(&mut self, bundle: u32) {
        let pinned: Vec<u32> = self
            .bundle(bundle)
            .map(|b| b.pinned.iter().collect())
            .unwrap_or_default();
        for cluster in pinned {
            self.reslot(cluster, bundle, Slot::Stable, None);
        }
    }

    /// The bundle's rollout, to note why it stopped and when it last changed.
    pub fn rollout_mut(&mut self, bundle: u32) -> Option<&mut Rollout> {
        self.bundle_mut(bundle)?.rollout.as_deref_mut()
    }

    pub fn rollout(&self, bundle: u32) -> Option<&Rollout> {
        self.bundle(bundle)?.rollout.as_deref()
    }

    pub fn run_mut(&mut self, bundle: u32) -> Option<&mut Run> {
        self.bundle_mut(bundle)?
            .rollout
            .as_mut()?
            .run
            .as_deref_mut()
    }

    pub fn run(&self, bundle: u32) -> Option<&Run> {
        self.bundle(bundle)?.rollout.as_ref()?.run.as_deref()
    }

    /// Tells the bundle's run (if any) the cluster's counted state changed.
    pub(super) fn observe_run(&mut self, cluster: u32, bundle: u32) {
        if !self.running.contains(bundle) {
            return;
        }
        let state = self.run_state(cluster, bundle);
        let on_candidate = self.slot_of(cluster, bundle) == Slot::Candidate;
        if let Some(run) = self.run_mut(bundle) {
            run.observe(cluster, state, on_candidate, now_millis());
        }
    }

    /// Tells every run the cluster belongs to that it went Online or Offline.
    pub(super) fn runs_see_online(&mut self, cluster: u32, state: ClusterState) {
        if self.running.is_empty() {
            return;
        }
        let now = now_millis();
        let running: Vec<u32> = self.running.iter().collect();
        for bundle in running {
            if let Some(run) = self.run_mut(bundle) {
                run.set_online(cluster, state == ClusterState::Online, now);
            }
        }
    }

    /// Re-places a cluster in every run after it registered, was relabelled or removed: a
    /// cluster that starts being targeted joins (by `lateJoiners`), one that stops leaves.
    /// O(running bundles).
    pub(super) fn runs_see_membership(&mut self, cluster: u32) {
        if self.running.is_empty() {
            return;
        }
        let now = now_millis();
        let running: Vec<u32> = self.running.iter().collect();
        for bundle in running {
            let exists = self.cluster(cluster).is_some();
            let member = exists
                && (self.delivers_to(cluster, bundle, Slot::Stable)
                    || self.delivers_to(cluster, bundle, Slot::Candidate));
            let Some(run) = self.run(bundle) else {
                continue;
            };
            let contains = run.contains(cluster);
            if member && !contains {
                let strategy = run.strategy().clone();
                let boundaries = run.boundaries().to_vec();
                let placed = self.place_in_run(cluster, &strategy, &boundaries);
                let online = self.online.contains(cluster);
                if let (Some((wave, key)), Some(run)) = (placed, self.run_mut(bundle)) {
                    run.join(cluster, wave, key, BundleState::Pending, online);
                }
            } else if member && contains {
                // Relabelled, still targeted: a started cluster keeps its place.
                let strategy = run.strategy().clone();
                let boundaries = run.boundaries().to_vec();
                if let (Some((wave, key)), Some(run)) = (
                    self.place_in_run(cluster, &strategy, &boundaries),
                    self.run_mut(bundle),
                ) {
                    run.relabel(cluster, wave, key);
                }
            } else if !member && contains {
                if let Some(run) = self.run_mut(bundle) {
                    run.leave(cluster);
                }
                if self
                    .bundle(bundle)
                    .is_some_and(|b| b.pinned.contains(cluster))
                {
                    self.reslot(cluster, bundle, Slot::Stable, None);
                }
            }
            let _ = now;
        }
    }

    /// Steps the bundle's run to `now` and keeps its moves until they are committed. Returns
    /// whether there is something to commit.
    ///
    /// A bundle whose spec is `paused` holds its run where it is: no step, so no cluster starts
    /// or goes back and no timer fires until it is unpaused (reports still reach the planner).
    pub fn step_run(&mut self, bundle: u32, now: Millis) -> bool {
        let Some(entry) = self.bundle_mut(bundle) else {
            return false;
        };
        let paused = entry.spec.paused;
        let Some(rollout) = entry.rollout.as_mut() else {
            return false;
        };
        let Some(run) = rollout.run.as_mut() else {
            return false;
        };
        if paused {
            return !rollout.unapplied.is_empty();
        }
        let step = run.step(now);
        let unapplied = &mut rollout.unapplied;
        unapplied.pin.extend(step.pin);
        unapplied.unpin.extend(step.unpin);
        unapplied.persist |= step.persist;
        !unapplied.is_empty()
    }

    /// Applies up to `budget` of the moves of the bundle's run once their record is committed;
    /// returns whether some are left (the caller releases the fleet lock between batches, so
    /// a wave of a million clusters never stalls agents' syncs).
    pub fn apply_run_moves(&mut self, bundle: u32, now: Millis, budget: usize) -> bool {
        let Some(rollout) = self.bundle_mut(bundle).and_then(|b| b.rollout.as_mut()) else {
            return false;
        };
        let moves = &mut rollout.unapplied;
        let pins = moves.pin.split_off(moves.pin.len().saturating_sub(budget));
        let left = budget - pins.len();
        let unpins = moves
            .unpin
            .split_off(moves.unpin.len().saturating_sub(left));
        moves.persist = false;
        let more = !moves.pin.is_empty() || !moves.unpin.is_empty();
        // Only what the planner still says: a queued move whose cluster left the run (or whose
        // ordinal a new cluster took) since the step is dropped.
        let pinned_now =
            |fleet: &Fleet, cluster| fleet.run(bundle).is_some_and(|r| r.pinned(cluster));
        for cluster in pins {
            if pinned_now(self, cluster) {
                self.reslot(cluster, bundle, Slot::Candidate, Some(now));
            }
        }
        for cluster in unpins {
            if !pinned_now(self, cluster) {
                self.reslot(cluster, bundle, Slot::Stable, Some(now));
            }
        }
        more
    }

    /// The record of the bundle's run as it stands (for the driver to commit).
    pub fn rollout_record(&self, bundle: u32) -> Option<RolloutRecord> {
        let rollout = self.bundle(bundle)?.rollout.as_ref()?;
        let overrides = rollout
            .run
            .as_ref()
            .map(|run| {
                run.overrides()
                    .filter_map(|(ordinal, o)| Some((self.cluster(ordinal)?.name.to_string(), o)))
                    .take(MAX_OVERRIDES)
                    .collect()
            })
            .unwrap_or_default();
        Some(RolloutRecord {
            from: rollout.from,
            to: rollout.to,
            started: rollout.started,
            updated: rollout.updated,
            strategy: rollout.spec.clone(),
            saved: rollout.run.as_ref().map(|run| run.saved()),
            overrides,
            reason: rollout.reason.clone(),
            ended: rollout.ended.clone(),
        })
    }

    /// Ends a run that succeeded: the candidate becomes the stable revision. Deployments pinned
    /// to it keep their counted state (same revision, same epoch); the others, now on a revision
    /// they have not reported, count as Pending. One walk over the bundle's deployments, once per
    /// run.
    pub fn promote_candidate(&mut self, bundle: u32) {
        let Some(entry) = self.bundle(bundle) else {
            return;
        };
        if entry.candidate.is_none() {
            return;
        }
        let targeted: Vec<u32> = entry.targeted.iter().collect();
        // Uncount the stable-slot deployments while the old stable is still live.
        let mut stable_slot = Vec::new();
        for &cluster in &targeted {
            let Some(position) = self
                .cluster(cluster)
                .and_then(|c| c.deployments.iter().position(|d| d.bundle == bundle))
            else {
                continue;
            };
            let deployment = &self.cluster(cluster).expect("just found").deployments[position];
            if deployment.slot == Slot::Stable {
                let tally = deployment.tally();
                self.uncount(cluster, tally);
                stable_slot.push((cluster, position, tally));
            }
        }
        let mut released = Vec::new();
        if let Some(entry) = self.bundle_mut(bundle) {
            let candidate = entry.candidate.take();
            let targets = std::mem::take(&mut entry.candidate_targets);
            let old = std::mem::replace(&mut entry.live, candidate);
            entry.live_targets = targets;
            entry.pinned.clear();
            released.extend(old.iter().flat_map(|l| l.digests()).map(str::to_string));
        }
        // The old stable's references go (a retained revision holds its own).
        for digest in &released {
            self.contents.unreference(digest);
        }
        self.contents.release_unreferenced();
        for &cluster in &targeted {
            if let Some(entry) = self.cluster_mut(cluster) {
                for deployment in entry.deployments.iter_mut().filter(|d| d.bundle == bundle) {
                    deployment.slot = Slot::Stable;
                }
            }
        }
        // Counted again under the new stable: an older epoch counts as Pending (and is recounted
        // against its report at the cluster's next sync, see `recount_stale`).
        for (cluster, _, tally) in stable_slot {
            let tally = super::Tally {
                slot: Slot::Stable,
                ..tally
            };
            self.count(cluster, tally);
        }
        self.retarget_bundle(bundle);
    }

    /// Ends a run whose clusters all went back: the candidate is dropped (no cluster is pinned
    /// to it any more; any left over is sent back now).
    pub fn drop_candidate(&mut self, bundle: u32) {
        self.unpin_all(bundle);
        let mut released = Vec::new();
        if let Some(entry) = self.bundle_mut(bundle) {
            let old = entry.candidate.take();
            entry.candidate_targets = Vec::new();
            released.extend(old.iter().flat_map(|l| l.digests()).map(str::to_string));
        }
        for digest in &released {
            self.contents.unreference(digest);
        }
        self.contents.release_unreferenced();
        self.retarget_bundle(bundle);
    }

    /// Forgets the run's planner (the run ended; its summary stays for status).
    pub fn finish_run(&mut self, bundle: u32, ended: Ended) {
        if let Some(rollout) = self.bundle_mut(bundle).and_then(|b| b.rollout.as_mut()) {
            rollout.run = None;
            rollout.ended = Some(ended);
        }
        self.running.remove(bundle);
    }
}

impl Fleet {
    /// Puts a stored run record into memory (the start-up load, after every cluster is in): an
    /// active run is restored at its saved thresholds and its pins put back; a run that ended
    /// promoted or dropped its candidate, which the bundle record (written before the run ended)
    /// may still name, so the end is applied again here. Returns false when the bundle is not
    /// held or its record does not name the run's candidate.
    pub fn apply_rollout_record(
        &mut self,
        bundle: &str,
        record: RolloutRecord,
        compile: impl FnOnce(&RolloutStrategy) -> Option<Strategy>,
    ) -> bool {
        let record = record.ended_by_phase();
        let Some((ordinal, entry)) = self.bundle_by_name(bundle) else {
            return false;
        };
        let candidate = entry.candidate.as_ref().map(|c| c.revision);
        let rollout = Rollout {
            spec: record.strategy.clone(),
            from: record.from,
            to: record.to,
            started: record.started,
            updated: record.updated,
            reason: record.reason.clone(),
            run: None,
            ended: record.ended.clone(),
            unapplied: Step::default(),
            followed: false,
        };
        if let Some(ended) = &record.ended {
            match ended.phase {
                Phase::Succeeded if candidate == Some(record.to) => self.promote_candidate(ordinal),
                Phase::RolledBack if candidate == Some(record.to) => self.drop_candidate(ordinal),
                _ => {}
            }
            if let Some(entry) = self.bundle_mut(ordinal) {
                entry.rollout = Some(Box::new(rollout));
            }
            return true;
        }
        if candidate != Some(record.to) {
            return false;
        }
        let Some(strategy) = compile(&record.strategy) else {
            return false;
        };
        let saved = record.saved.map(|saved| (saved, record.overrides));
        self.start_run(ordinal, strategy, rollout, saved, now_millis());
        true
    }
}

impl Fleet {
    /// Ends the bundle's run at once (a write superseded it): its clusters go back to the
    /// stable revision and the run is forgotten.
    pub fn end_run(&mut self, bundle: u32) {
        self.unpin_all(bundle);
        self.running.remove(bundle);
        if let Some(entry) = self.bundle_mut(bundle) {
            entry.rollout = None;
        }
    }
}

impl Fleet {
    /// Follows a run record another replica committed: the same run moves to its saved
    /// thresholds (pinning and unpinning what they moved), a run that ended ends here the same
    /// way, and a new run starts as the record says.
    pub fn follow_rollout_record(
        &mut self,
        bundle: &str,
        record: RolloutRecord,
        compile: impl FnOnce(&RolloutStrategy) -> Option<Strategy>,
    ) -> bool {
        let record = record.ended_by_phase();
        let Some((ordinal, entry)) = self.bundle_by_name(bundle) else {
            return false;
        };
        let same_run = entry.rollout.as_ref().is_some_and(|r| {
            r.from == record.from && r.to == record.to && r.started == record.started
        }) && self
            .run(ordinal)
            .is_some_and(|run| self.placed_as(run, &record));
        if !same_run || record.ended.is_some() {
            // A new run, the end of this one, or one this replica placed otherwise (a late
            // joiner it saw in another order): the start-up path applies it as recorded.
            self.running.remove(ordinal);
            if let Some(entry) = self.bundle_mut(ordinal) {
                entry.rollout = None;
            }
            if record.ended.is_none() {
                self.unpin_all(ordinal);
            }
            let applied = self.apply_rollout_record(bundle, record, compile);
            if let Some(rollout) = self.rollout_mut(ordinal) {
                rollout.followed = true;
            }
            return applied;
        }
        let now = now_millis();
        if let Some(rollout) = self.rollout_mut(ordinal) {
            rollout.updated = record.updated;
            rollout.reason = record.reason.clone();
        }
        let Some(saved) = record.saved else {
            return true;
        };
        let Some(run) = self.run_mut(ordinal) else {
            return false;
        };
        let moves = run.follow(saved, now);
        for cluster in moves.pin {
            self.reslot(cluster, ordinal, Slot::Candidate, Some(now));
        }
        for cluster in moves.unpin {
            self.reslot(cluster, ordinal, Slot::Stable, Some(now));
        }
        true
    }
}

impl Fleet {
    /// Whether a run places its clusters as a record says: the same share boundaries and the
    /// same late joiners. O(late joiners).
    fn placed_as(&self, run: &Run, record: &RolloutRecord) -> bool {
        if record
            .saved
            .as_ref()
            .is_some_and(|saved| saved.boundaries.as_slice() != run.boundaries())
        {
            return false;
        }
        // Joiners this replica does not hold (yet, or any more) cannot be placed here at all.
        let mut held = 0;
        for (name, recorded) in &record.overrides {
            let Some((ordinal, _)) = self.cluster_by_name(name) else {
                continue;
            };
            if run.override_of(ordinal).as_ref() != Some(recorded) {
                return false;
            }
            held += 1;
        }
        held == run.overrides_len()
    }

    /// Rebuilds the runs this replica followed, from their records as memory holds them, once it
    /// holds the lease: restored at their thresholds and settled, their deadlines, soaks and
    /// offline policy run from now (as after a restart). Returns how many were rebuilt.
    pub fn take_over_runs(
        &mut self,
        mut compile: impl FnMut(&str, &RolloutStrategy) -> Option<Strategy>,
    ) -> usize {
        let followed: Vec<u32> = self
            .running
            .iter()
            .filter(|&bundle| {
                self.bundle(bundle)
                    .and_then(|b| b.rollout.as_ref())
                    .is_some_and(|r| r.followed)
            })
            .collect();
        let mut rebuilt = 0;
        for bundle in followed {
            let (Some(record), Some(name)) = (
                self.rollout_record(bundle),
                self.bundle(bundle).map(|b| b.name.clone()),
            ) else {
                continue;
            };
            self.running.remove(bundle);
            if let Some(entry) = self.bundle_mut(bundle) {
                entry.rollout = None;
            }
            if self.apply_rollout_record(&name, record, |written| compile(&name, written)) {
                rebuilt += 1;
            }
        }
        rebuilt
    }
}
