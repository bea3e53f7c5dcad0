//! The rollout planner: one run of one bundle, from its stable revision to a candidate, driven by
//! events. Given agents' reports (as each cluster's state on the revision it is pinned to), the
//! clusters' online state and the time, it says which clusters are pinned to the candidate next,
//! which go back, and when a wave is done or failed.
//!
//! Cost: every event and every started cluster is O(log n); a step costs O(what it moves and the
//! timers that expired), never a walk over the wave. Progress is kept per started cluster; what
//! must survive a restart is small ([`Saved`]): per wave the key of the last cluster started (a
//! threshold in the wave's key order) and of the last one reverted.

use std::{
    cmp::Reverse,
    collections::{BTreeSet, BinaryHeap, HashMap},
};

use flotilla_api::{BundleState, OfflinePolicy, OnFailure};
use serde::{Deserialize, Serialize};

use super::{
    membership::{Boundary, Key},
    strategy::Strategy,
};

pub type ClusterId = u32;
/// Milliseconds on the caller's clock.
pub type Millis = u64;

/// Failed clusters a wave remembers by name for the reason of its failure.
pub const FAILED_KEPT: usize = 10;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Progressing,
    Paused,
    Succeeded,
    Halted,
    RollingBack,
    RolledBack,
    Frozen,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Progressing => "Progressing",
            Phase::Paused => "Paused",
            Phase::Succeeded => "Succeeded",
            Phase::Halted => "Halted",
            Phase::RollingBack => "RollingBack",
            Phase::RolledBack => "RolledBack",
            Phase::Frozen => "Frozen",
        }
    }

    /// Whether the run is over (nothing moves any more).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Phase::Succeeded | Phase::RolledBack | Phase::Frozen | Phase::Halted
        )
    }
}

/// Where a wave stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WavePhase {
    Waiting,
    Progressing,
    Done,
    Failed,
    RolledBack,
}

/// Why a cluster failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailReason {
    /// Its agent reported the candidate in Error.
    Error,
    /// Not done within the wave's `progressDeadline`.
    ProgressDeadlineExceeded,
    /// Offline under the `fail` policy.
    Offline,
}

impl FailReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Error => "Error",
            FailReason::ProgressDeadlineExceeded => "ProgressDeadlineExceeded",
            FailReason::Offline => "Offline",
        }
    }
}

/// Why a run stopped moving forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stop {
    /// A wave failed more clusters than it tolerates.
    WaveFailed {
        wave: usize,
        failed: Vec<(ClusterId, FailReason)>,
    },
    /// A person aborted the run.
    Aborted,
}

/// A cluster placed other than by its labels: it joined a run (registered or started matching)
/// after it started, or was relabelled after it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Override {
    /// Keeps the stable revision until the run ends (`lateJoiners: stable`, its place passed).
    Held,
    /// Placed at the end of the last wave (`lateJoiners: lastWave`), by order of joining.
    Late(u64),
    /// Keeps the place it had when it was started, whatever its labels say now.
    At { wave: u16, key: Key },
}

/// What a run must persist to resume exactly where it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    pub phase: Phase,
    pub current: usize,
    pub boundaries: Vec<Boundary>,
    pub waves: Vec<SavedWave>,
    /// The next `Override::Late` sequence number.
    #[serde(default)]
    pub late_sequence: u64,
}

/// One wave's persisted progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedWave {
    pub phase: WavePhase,
    /// Members with a key up to this one were started (pinned to the candidate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_through: Option<Key>,
    /// Members with a key up to this one were sent back to the stable revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_through: Option<Key>,
    /// Failures accepted by resuming a halted run.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub forgiven: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// What a step moves: clusters to pin to the candidate and clusters to send back to the stable
/// revision. `persist` says the saved state changed (write it before applying the moves, so a
/// restart never starts a cluster twice nor forgets one).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Step {
    pub pin: Vec<ClusterId>,
    pub unpin: Vec<ClusterId>,
    pub persist: bool,
}

impl Step {
    pub fn is_empty(&self) -> bool {
        self.pin.is_empty() && self.unpin.is_empty() && !self.persist
    }
}

/// A started cluster's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Pinned, not yet Ready on the candidate.
    InFlight {
        deadline: Millis,
    },
    /// Ready on the candidate since `until - minSoak`, without a break.
    Soaking {
        until: Millis,
        deadline: Millis,
    },
    Done,
    Failed(FailReason),
    /// Offline under `skip`: pinned, not waited for.
    Skipped,
    /// Sent back to the stable revision, not yet Ready there.
    Reverting {
        deadline: Millis,
    },
    Reverted,
}

impl Progress {
    fn pinned(self) -> bool {
        !matches!(self, Progress::Reverting { .. } | Progress::Reverted)
    }
}

#[derive(Debug, Clone)]
struct Member {
    wave: u16,
    key: Key,
    progress: Option<Progress>,
    held: bool,
    online: bool,
    /// Last reported state on the revision the cluster is pinned to.
    state: BundleState,
}

/// Per-wave counters, kept by every transition (never recounted by a walk).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WaveCounts {
    /// Members of the wave (held late joiners included).
    pub clusters: u64,
    /// Pinned to the candidate.
    pub updated: u64,
    pub in_flight: u64,
    pub soaking: u64,
    pub done: u64,
    pub failed: u64,
    pub skipped: u64,
    pub held: u64,
    pub reverting: u64,
    pub reverted: u64,
    /// Failures seen in this run, kept when failed clusters go back (what status shows).
    pub failures: u64,
}

#[derive(Debug, Clone)]
struct WaveRun {
    phase: WavePhase,
    members: BTreeSet<(Key, ClusterId)>,
    started_through: Option<Key>,
    reverted_through: Option<Key>,
    counts: WaveCounts,
    failed: Vec<(ClusterId, FailReason)>,
    /// Failures a person accepted by resuming a halted run; only failures beyond them count.
    forgiven: u64,
}

/// One run of a bundle's rollout.
#[derive(Debug, Clone)]
pub struct Run {
    strategy: Strategy,
    phase: Phase,
    current: usize,
    boundaries: Vec<Boundary>,
    waves: Vec<WaveRun>,
    members: HashMap<ClusterId, Member>,
    overrides: HashMap<ClusterId, Override>,
    late_sequence: u64,
    /// (when, cluster): soak ends, progress and revert deadlines; stale entries are skipped.
    timers: BinaryHeap<Reverse<(Millis, ClusterId)>>,
    stop: Option<Stop>,
    /// Set when the persisted part changed since the last step.
    dirty: bool,
}

impl Run {
    /// A new run over clusters not yet added (see [`Run::insert`]).
    pub fn new(strategy: Strategy, boundaries: Vec<Boundary>) -> Run {
        let waves = (0..strategy.waves.len())
            .map(|index| WaveRun {
                phase: if index == 0 {
                    WavePhase::Progressing
                } else {
                    WavePhase::Waiting
                },
                members: BTreeSet::new(),
                started_through: None,
                reverted_through: None,
                counts: WaveCounts::default(),
                failed: Vec::new(),
                forgiven: 0,
            })
            .collect();
        Run {
            strategy,
            phase: Phase::Progressing,
            current: 0,
            boundaries,
            waves,
            members: HashMap::new(),
            overrides: HashMap::new(),
            late_sequence: 0,
            timers: BinaryHeap::new(),
            stop: None,
            dirty: true,
        }
    }

    /// A run as it was saved; add its clusters with [`Run::insert`], then call [`Run::settle`].
    pub fn restore(strategy: Strategy, saved: Saved) -> Run {
        let mut run = Run::new(strategy, saved.boundaries);
        run.phase = saved.phase;
        run.current = saved.current.min(run.waves.len().saturating_sub(1));
        run.late_sequence = saved.late_sequence;
        for (wave, saved) in run.waves.iter_mut().zip(saved.waves) {
            wave.phase = saved.phase;
            wave.started_through = saved.started_through;
            wave.reverted_through = saved.reverted_through;
            wave.forgiven = saved.forgiven;
        }
        run.dirty = false;
        run
    }

    pub fn strategy(&self) -> &Strategy {
        &self.strategy
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn current_wave(&self) -> usize {
        self.current
    }

    pub fn boundaries(&self) -> &[Boundary] {
        &self.boundaries
    }

    pub fn stop(&self) -> Option<&Stop> {
        self.stop.as_ref()
    }

    /// Counters of a wave.
    pub fn counts(&self, wave: usize) -> Option<&WaveCounts> {
        self.waves.get(wave).map(|w| &w.counts)
    }

    pub fn wave_phase(&self, wave: usize) -> Option<WavePhase> {
        self.waves.get(wave).map(|w| w.phase)
    }

    /// The failed clusters a wave keeps for its reason (the first [`FAILED_KEPT`]).
    pub fn failed(&self, wave: usize) -> &[(ClusterId, FailReason)] {
        self.waves.get(wave).map_or(&[], |w| &w.failed)
    }

    /// The resolved limits of a wave: (max concurrency, max failures).
    pub fn limits(&self, wave: usize) -> (u64, u64) {
        let Some((spec, run)) = self.strategy.waves.get(wave).zip(self.waves.get(wave)) else {
            return (0, 0);
        };
        let size = run.counts.clusters;
        let concurrency = spec.max_concurrency.of_rounded_up(size).max(1);
        let failures = if spec.mandatory {
            0
        } else {
            spec.max_failures.of_rounded_down(size)
        };
        (concurrency, failures)
    }

    /// Milliseconds until the latest soak in `wave` ends, if any cluster is soaking. O(timers):
    /// every soak has its timer, and timers are about started clusters only.
    pub fn soak_remaining(&self, wave: usize, now: Millis) -> Option<Millis> {
        self.timers
            .iter()
            .filter_map(|Reverse((at, cluster))| {
                let member = self.members.get(cluster)?;
                match member.progress {
                    Some(Progress::Soaking { until, .. })
                        if until == *at && member.wave as usize == wave =>
                    {
                        Some(until.saturating_sub(now))
                    }
                    _ => None,
                }
            })
            .max()
    }

    /// Whether the cluster is pinned to the candidate.
    pub fn pinned(&self, cluster: ClusterId) -> bool {
        self.members
            .get(&cluster)
            .and_then(|m| m.progress)
            .is_some_and(Progress::pinned)
    }

    /// Whether the cluster is a member of the run.
    pub fn contains(&self, cluster: ClusterId) -> bool {
        self.members.contains_key(&cluster)
    }

    /// Clusters pinned to the candidate. O(members).
    pub fn pinned_clusters(&self) -> impl Iterator<Item = ClusterId> + '_ {
        self.members
            .iter()
            .filter(|(_, m)| m.progress.is_some_and(Progress::pinned))
            .map(|(&c, _)| c)
    }

    /// The late joiners to persist with the run (by cluster; the caller maps them to names).
    pub fn overrides(&self) -> impl Iterator<Item = (ClusterId, Override)> + '_ {
        self.overrides.iter().map(|(&c, o)| (c, o.clone()))
    }

    /// How many late joiners the run holds. O(1).
    pub fn overrides_len(&self) -> usize {
        self.overrides.len()
    }

    /// The cluster's late-joiner override, if it has one.
    pub fn override_of(&self, cluster: ClusterId) -> Option<Override> {
        self.overrides.get(&cluster).cloned()
    }

    /// The persisted part of the run.
    pub fn saved(&self) -> Saved {
        Saved {
            phase: self.phase,
            current: self.current,
            boundaries: self.boundaries.clone(),
            waves: self
                .waves
                .iter()
                .map(|w| SavedWave {
                    phase: w.phase,
                    started_through: w.started_through.clone(),
                    reverted_through: w.reverted_through.clone(),
                    forgiven: w.forgiven,
                })
                .collect(),
            late_sequence: self.late_sequence,
        }
    }

    /// Adds a cluster of the run at its place (a run being built or restored). An override
    /// persisted with the run places it as it was placed when it joined.
    pub fn insert(
        &mut self,
        cluster: ClusterId,
        wave: usize,
        key: Key,
        override_: Option<Override>,
        state: BundleState,
        online: bool,
    ) {
        let (wave, key, held) = match &override_ {
            Some(Override::Late(sequence)) => (self.last_wave(), late_key(*sequence), false),
            Some(Override::Held) => (wave, key, true),
            Some(Override::At { wave, key }) if (*wave as usize) < self.waves.len() => {
                (*wave as usize, key.clone(), false)
            }
            Some(Override::At { .. }) | None => (wave, key, false),
        };
        if let Some(o) = override_ {
            self.overrides.insert(cluster, o);
        }
        self.add_member(cluster, wave, key, held, state, online);
    }

    /// Puts restored members back on their progress: members the saved thresholds started are
    /// pinned again, members they reverted are back. Never starts anyone the saved state had not
    /// started. The caller then observes every pinned cluster's state on the candidate (so they
    /// are judged afresh: a soak starts over).
    pub fn settle(&mut self, now: Millis) {
        let clusters: Vec<ClusterId> = self.members.keys().copied().collect();
        for cluster in clusters {
            let Some(member) = self.members.get(&cluster) else {
                continue;
            };
            if member.held {
                continue;
            }
            let wave = &self.waves[member.wave as usize];
            let started = wave
                .started_through
                .as_ref()
                .is_some_and(|t| member.key <= *t);
            let reverted = wave
                .reverted_through
                .as_ref()
                .is_some_and(|t| member.key <= *t);
            if !started {
                continue;
            }
            let online = member.online;
            if reverted {
                self.set_progress(cluster, Some(Progress::Reverted));
            } else if wave.phase == WavePhase::Done {
                // Judged done before the restart, and its wave with it: neither its soak nor the
                // offline policy applies again (a done canary that is offline now is not a
                // failure of a wave that already passed).
                self.set_progress(cluster, Some(Progress::Done));
            } else {
                self.start_member(cluster, online, now);
            }
        }
        self.dirty = false;
    }

    /// A cluster started being targeted mid-run (registered, or relabelled into the bundle's
    /// targets), at `wave`/`key` by its labels. Churn is policy, never a failure: by
    /// `lateJoiners`, a cluster whose place the run has not reached waits for it; one whose place
    /// is passed keeps the stable revision (`stable`) or goes to the end of the last wave
    /// (`lastWave`).
    pub fn join(
        &mut self,
        cluster: ClusterId,
        wave: usize,
        key: Key,
        state: BundleState,
        online: bool,
    ) {
        if self.members.contains_key(&cluster) || wave >= self.waves.len() {
            return;
        }
        let reached = |run: &Run| {
            let w = &run.waves[wave];
            wave < run.current
                || w.phase != WavePhase::Waiting
                    && w.started_through.as_ref().is_some_and(|t| key <= *t)
                || w.phase == WavePhase::Done
        };
        if self.phase.is_final() || self.phase == Phase::RollingBack || reached(self) {
            match self.strategy.late_joiners {
                flotilla_api::LateJoiners::LastWave
                    if !self.phase.is_final() && self.phase != Phase::RollingBack =>
                {
                    let sequence = self.late_sequence;
                    self.late_sequence += 1;
                    self.overrides.insert(cluster, Override::Late(sequence));
                    let last = self.last_wave();
                    if self.waves[last].phase == WavePhase::Done {
                        // Nothing left to join: it keeps the stable revision until the run ends.
                        self.overrides.insert(cluster, Override::Held);
                        self.add_member(cluster, wave, key, true, state, online);
                    } else {
                        self.add_member(cluster, last, late_key(sequence), false, state, online);
                    }
                }
                _ => {
                    self.overrides.insert(cluster, Override::Held);
                    self.add_member(cluster, wave, key, true, state, online);
                }
            }
            self.dirty = true;
        } else {
            self.add_member(cluster, wave, key, false, state, online);
        }
    }

    /// A member's labels place it elsewhere now (a relabel that keeps it targeted). One the run
    /// has not started moves to its new place, joining there by `lateJoiners`; one it started
    /// keeps its place, kept as an override so a restart places it where it is (and neither
    /// starts it twice nor skips it).
    pub fn relabel(&mut self, cluster: ClusterId, wave: usize, key: Key) {
        let Some(member) = self.members.get(&cluster) else {
            return;
        };
        if (member.wave as usize == wave && member.key == key)
            || self.overrides.contains_key(&cluster)
            || wave >= self.waves.len()
        {
            return;
        }
        if member.progress.is_none() && !member.held {
            let (state, online) = (member.state, member.online);
            self.leave(cluster);
            self.join(cluster, wave, key, state, online);
            return;
        }
        let at = Override::At {
            wave: member.wave,
            key: member.key.clone(),
        };
        self.overrides.insert(cluster, at);
        self.dirty = true;
    }

    /// A cluster stopped being targeted (deleted, or relabelled out of the bundle's targets).
    pub fn leave(&mut self, cluster: ClusterId) {
        let Some(member) = self.members.get(&cluster) else {
            return;
        };
        let (wave, key) = (member.wave as usize, member.key.clone());
        self.set_progress(cluster, None);
        if let Some(member) = self.members.remove(&cluster) {
            let counts = &mut self.waves[wave].counts;
            counts.clusters -= 1;
            if member.held {
                counts.held -= 1;
            }
        }
        let run = &mut self.waves[wave];
        run.members.remove(&(key, cluster));
        // Failures a resume forgave that left with their clusters are no longer forgiven:
        // the budget counts the failed clusters still in the wave.
        if run.forgiven > run.counts.failed {
            run.forgiven = run.counts.failed;
            self.dirty = true;
        }
        if self.overrides.remove(&cluster).is_some() {
            self.dirty = true;
        }
    }

    /// The cluster's state on the revision it is pinned to changed (an agent's report).
    /// `on_candidate` says which revision the state is about; a state about the other one than
    /// the planner pinned the cluster to is ignored (the window between a step and its pins
    /// being applied, where the cluster still reports the revision it had).
    pub fn observe(
        &mut self,
        cluster: ClusterId,
        state: BundleState,
        on_candidate: bool,
        now: Millis,
    ) {
        let Some(member) = self.members.get_mut(&cluster) else {
            return;
        };
        if member.progress.is_some_and(Progress::pinned) != on_candidate {
            return;
        }
        member.state = state;
        let online = member.online;
        self.judge(cluster, state, online, now);
    }

    /// The cluster went Online or Offline.
    pub fn set_online(&mut self, cluster: ClusterId, online: bool, now: Millis) {
        let Some(member) = self.members.get_mut(&cluster) else {
            return;
        };
        if member.online == online {
            return;
        }
        member.online = online;
        let state = member.state;
        let wave = member.wave as usize;
        match (member.progress, online) {
            (Some(Progress::InFlight { .. } | Progress::Soaking { .. }), false) => {
                match self.strategy.offline {
                    OfflinePolicy::Skip => self.set_progress(cluster, Some(Progress::Skipped)),
                    OfflinePolicy::Fail => self.fail(cluster, FailReason::Offline),
                    // Waited for: no deadline runs while it is away (re-armed on return).
                    OfflinePolicy::Wait => self.set_progress(
                        cluster,
                        Some(Progress::InFlight {
                            deadline: Millis::MAX,
                        }),
                    ),
                }
            }
            (
                Some(Progress::InFlight {
                    deadline: Millis::MAX,
                }),
                true,
            ) => {
                let deadline = now + self.strategy.waves[wave].progress_deadline_ms;
                self.set_progress(cluster, Some(Progress::InFlight { deadline }));
                self.timers.push(Reverse((deadline, cluster)));
                self.judge(cluster, state, true, now);
            }
            _ => {}
        }
    }

    /// A person pauses the run: no cluster starts until [`Run::resume`]. Started clusters keep
    /// being judged (a failure still stops the run).
    pub fn pause(&mut self) -> bool {
        if self.phase != Phase::Progressing {
            return false;
        }
        self.phase = Phase::Paused;
        self.dirty = true;
        true
    }

    /// Resumes a paused (or halted) run.
    pub fn resume(&mut self) -> bool {
        match self.phase {
            Phase::Paused => {}
            Phase::Halted => {
                // A person accepts the failures seen so far: only further ones count.
                let wave = &mut self.waves[self.current];
                wave.phase = WavePhase::Progressing;
                wave.forgiven = wave.counts.failed;
                wave.failed.clear();
                self.stop = None;
            }
            _ => return false,
        }
        self.phase = Phase::Progressing;
        if self.waves[self.current].phase == WavePhase::Waiting {
            self.waves[self.current].phase = WavePhase::Progressing;
        }
        self.dirty = true;
        true
    }

    /// A person aborts the run: the clusters that took the candidate go back to the stable
    /// revision, paced like a rollback. Refused for a frozen or finished run.
    pub fn abort(&mut self) -> bool {
        match self.phase {
            Phase::Progressing | Phase::Paused | Phase::Halted => {
                self.stop = Some(Stop::Aborted);
                self.begin_rollback();
                true
            }
            _ => false,
        }
    }

    /// Advances the run to `now`: expires timers, judges the current wave, and starts or sends
    /// back the clusters the limits allow.
    pub fn step(&mut self, now: Millis) -> Step {
        let mut step = Step::default();
        self.expire(now);
        loop {
            match self.phase {
                Phase::Progressing | Phase::Paused => {
                    if self.wave_failed(self.current) {
                        self.fail_wave(self.current);
                        continue;
                    }
                    if self.phase == Phase::Paused {
                        break;
                    }
                    self.start_next(now, &mut step);
                    if self.wave_failed(self.current) {
                        continue;
                    }
                    if !self.wave_complete(self.current) {
                        break;
                    }
                    self.waves[self.current].phase = WavePhase::Done;
                    self.dirty = true;
                    if self.current + 1 == self.waves.len() {
                        self.phase = Phase::Succeeded;
                        break;
                    }
                    let pause = self.strategy.waves[self.current].pause_after;
                    self.current += 1;
                    if pause {
                        self.phase = Phase::Paused;
                        break;
                    }
                    self.waves[self.current].phase = WavePhase::Progressing;
                }
                Phase::RollingBack => {
                    if !self.revert_next(now, &mut step) {
                        break;
                    }
                }
                _ => break,
            }
        }
        step.persist = std::mem::take(&mut self.dirty);
        step
    }

    /// Moves a run another process steps (a replica following the lease holder's records) to
    /// the saved state it committed: members its thresholds newly started are pinned, members
    /// they newly reverted go back. O(members moved).
    pub fn follow(&mut self, saved: Saved, now: Millis) -> Step {
        let mut step = Step::default();
        self.phase = saved.phase;
        self.current = saved.current.min(self.waves.len().saturating_sub(1));
        self.late_sequence = saved.late_sequence;
        for (index, saved_wave) in saved.waves.into_iter().enumerate().take(self.waves.len()) {
            let wave = &mut self.waves[index];
            wave.phase = saved_wave.phase;
            wave.forgiven = saved_wave.forgiven;
            let started = range_after(
                &wave.members,
                &wave.started_through,
                &saved_wave.started_through,
            );
            let reverted = range_after(
                &wave.members,
                &wave.reverted_through,
                &saved_wave.reverted_through,
            );
            wave.started_through = saved_wave.started_through;
            wave.reverted_through = saved_wave.reverted_through;
            let deadline = now + self.strategy.waves[index].progress_deadline_ms;
            for cluster in started {
                let Some(member) = self.members.get(&cluster) else {
                    continue;
                };
                if member.held || member.progress.is_some() {
                    continue;
                }
                step.pin.push(cluster);
                self.set_progress(cluster, Some(Progress::InFlight { deadline }));
            }
            for cluster in reverted {
                if self
                    .members
                    .get(&cluster)
                    .and_then(|m| m.progress)
                    .is_some_and(Progress::pinned)
                {
                    step.unpin.push(cluster);
                    self.set_progress(cluster, Some(Progress::Reverted));
                }
            }
        }
        self.dirty = false;
        step
    }

    /// When the next timer is due, if any (the caller may sleep until then).
    pub fn next_timer(&self) -> Option<Millis> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    // ---- internals

    fn last_wave(&self) -> usize {
        self.waves.len() - 1
    }

    fn add_member(
        &mut self,
        cluster: ClusterId,
        wave: usize,
        key: Key,
        held: bool,
        state: BundleState,
        online: bool,
    ) {
        let run = &mut self.waves[wave];
        run.members.insert((key.clone(), cluster));
        run.counts.clusters += 1;
        if held {
            run.counts.held += 1;
        }
        self.members.insert(
            cluster,
            Member {
                wave: wave as u16,
                key,
                progress: None,
                held,
                online,
                state,
            },
        );
    }

    /// Moves a member to `progress`, keeping its wave's counters.
    fn set_progress(&mut self, cluster: ClusterId, progress: Option<Progress>) {
        let Some(member) = self.members.get_mut(&cluster) else {
            return;
        };
        let before = std::mem::replace(&mut member.progress, progress);
        let counts = &mut self.waves[member.wave as usize].counts;
        tally(counts, before, false);
        tally(counts, progress, true);
    }

    fn fail(&mut self, cluster: ClusterId, reason: FailReason) {
        let Some(member) = self.members.get(&cluster) else {
            return;
        };
        let wave = member.wave as usize;
        if matches!(member.progress, Some(Progress::Failed(_))) {
            return;
        }
        self.set_progress(cluster, Some(Progress::Failed(reason)));
        self.waves[wave].counts.failures += 1;
        let failed = &mut self.waves[wave].failed;
        if failed.len() < FAILED_KEPT {
            failed.push((cluster, reason));
        }
    }

    /// Moves a started cluster on by its state on the revision it is pinned to.
    fn judge(&mut self, cluster: ClusterId, state: BundleState, online: bool, now: Millis) {
        let Some(member) = self.members.get(&cluster) else {
            return;
        };
        let wave = member.wave as usize;
        let soak = self.strategy.waves[wave].min_soak_ms;
        match member.progress {
            Some(Progress::InFlight { .. } | Progress::Soaking { .. })
                if state == BundleState::Error =>
            {
                self.fail(cluster, FailReason::Error);
            }
            Some(Progress::InFlight { deadline }) if state == BundleState::Ready && online => {
                if soak == 0 {
                    self.set_progress(cluster, Some(Progress::Done));
                } else {
                    let until = now + soak;
                    self.set_progress(cluster, Some(Progress::Soaking { until, deadline }));
                    self.timers.push(Reverse((until, cluster)));
                }
            }
            Some(Progress::Soaking { deadline, .. }) if state != BundleState::Ready => {
                // A break resets the soak: done means Ready without a break.
                self.set_progress(cluster, Some(Progress::InFlight { deadline }));
            }
            Some(Progress::Skipped) if online => match state {
                BundleState::Error => self.fail(cluster, FailReason::Error),
                BundleState::Ready => {
                    let deadline = now + self.strategy.waves[wave].progress_deadline_ms;
                    self.set_progress(cluster, Some(Progress::InFlight { deadline }));
                    self.timers.push(Reverse((deadline, cluster)));
                    self.judge(cluster, state, online, now);
                }
                _ => {}
            },
            // Never roll back a rollback: a cluster back on the stable revision is done with,
            // whatever it reports.
            Some(Progress::Reverting { .. })
                if matches!(state, BundleState::Ready | BundleState::Error) =>
            {
                self.set_progress(cluster, Some(Progress::Reverted));
            }
            _ => {}
        }
    }

    /// Fires the timers due by `now`: soaks that ended, deadlines that passed.
    fn expire(&mut self, now: Millis) {
        while let Some(&Reverse((at, cluster))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(member) = self.members.get(&cluster) else {
                continue;
            };
            match member.progress {
                Some(Progress::Soaking { until, .. }) if until == at => {
                    self.set_progress(cluster, Some(Progress::Done));
                }
                Some(Progress::InFlight { deadline } | Progress::Soaking { deadline, .. })
                    if deadline == at =>
                {
                    self.fail(cluster, FailReason::ProgressDeadlineExceeded);
                }
                Some(Progress::Reverting { deadline }) if deadline == at => {
                    self.set_progress(cluster, Some(Progress::Reverted));
                }
                _ => {}
            }
        }
    }

    fn wave_failed(&self, wave: usize) -> bool {
        let (_, max_failures) = self.limits(wave);
        let run = &self.waves[wave];
        run.phase == WavePhase::Progressing
            && run.counts.failed.saturating_sub(run.forgiven) > max_failures
    }

    /// Every member started (or held) and none in flight.
    fn wave_complete(&self, wave: usize) -> bool {
        let run = &self.waves[wave];
        let started_or_held =
            run.counts.updated + run.counts.held + run.counts.reverted + run.counts.reverting;
        started_or_held >= run.counts.clusters && run.counts.in_flight + run.counts.soaking == 0
    }

    /// Starts the next members of the current wave, up to its concurrency.
    fn start_next(&mut self, now: Millis, step: &mut Step) {
        let wave = self.current;
        let (concurrency, _) = self.limits(wave);
        let busy = self.waves[wave].counts.in_flight + self.waves[wave].counts.soaking;
        let room = concurrency.saturating_sub(busy);
        if room == 0 {
            return;
        }
        let next: Vec<(Key, ClusterId)> = {
            let run = &self.waves[wave];
            let after = run.started_through.clone();
            let iter: Box<dyn Iterator<Item = &(Key, ClusterId)>> = match &after {
                Some(t) => Box::new(run.members.range((
                    std::ops::Bound::Excluded((t.clone(), ClusterId::MAX)),
                    std::ops::Bound::Unbounded,
                ))),
                None => Box::new(run.members.iter()),
            };
            let mut next = Vec::new();
            let mut started = 0;
            for (key, cluster) in iter {
                if started == room {
                    break;
                }
                next.push((key.clone(), *cluster));
                if !self.members[cluster].held {
                    started += 1;
                }
            }
            next
        };
        for (key, cluster) in next {
            self.waves[wave].started_through = Some(key);
            self.dirty = true;
            let member = &self.members[&cluster];
            if member.held {
                continue;
            }
            let online = member.online;
            step.pin.push(cluster);
            self.start_member(cluster, online, now);
        }
    }

    /// Puts a member just started (or restored as started) in flight: online, with its wave's
    /// progress deadline; offline, under the `offline` policy instead of a deadline.
    fn start_member(&mut self, cluster: ClusterId, online: bool, now: Millis) {
        let Some(member) = self.members.get_mut(&cluster) else {
            return;
        };
        // Its state on the candidate is unknown until the caller observes it after the pin.
        member.state = BundleState::Pending;
        let wave = member.wave as usize;
        if online {
            let deadline = now + self.strategy.waves[wave].progress_deadline_ms;
            self.set_progress(cluster, Some(Progress::InFlight { deadline }));
            self.timers.push(Reverse((deadline, cluster)));
            return;
        }
        match self.strategy.offline {
            OfflinePolicy::Skip => self.set_progress(cluster, Some(Progress::Skipped)),
            // Waited for: no deadline runs while it is away (armed when it returns).
            OfflinePolicy::Wait => self.set_progress(
                cluster,
                Some(Progress::InFlight {
                    deadline: Millis::MAX,
                }),
            ),
            OfflinePolicy::Fail => {
                self.set_progress(
                    cluster,
                    Some(Progress::InFlight {
                        deadline: Millis::MAX,
                    }),
                );
                self.fail(cluster, FailReason::Offline);
            }
        }
    }

    fn fail_wave(&mut self, wave: usize) {
        self.waves[wave].phase = WavePhase::Failed;
        self.stop = Some(Stop::WaveFailed {
            wave,
            failed: self.waves[wave].failed.clone(),
        });
        self.dirty = true;
        match self.strategy.on_failure {
            OnFailure::Rollback => self.begin_rollback(),
            OnFailure::Halt => self.phase = Phase::Halted,
            OnFailure::Freeze => self.phase = Phase::Frozen,
        }
    }

    fn begin_rollback(&mut self) {
        self.phase = Phase::RollingBack;
        self.dirty = true;
    }

    /// Sends back the next started members, the current wave first, then earlier ones, each
    /// paced by its own concurrency. Returns whether the run moved on to another wave or phase
    /// (so the caller loops).
    fn revert_next(&mut self, now: Millis, step: &mut Step) -> bool {
        let wave = self.current;
        let (concurrency, _) = self.limits(wave);
        let room = concurrency.saturating_sub(self.waves[wave].counts.reverting);
        let next: Vec<(Key, ClusterId)> = {
            let run = &self.waves[wave];
            let Some(through) = run.started_through.clone() else {
                return self.finish_revert_wave();
            };
            let lower = match &run.reverted_through {
                Some(t) => std::ops::Bound::Excluded((t.clone(), ClusterId::MAX)),
                None => std::ops::Bound::Unbounded,
            };
            let mut left = run
                .members
                .range((
                    lower,
                    std::ops::Bound::Included((through.clone(), ClusterId::MAX)),
                ))
                .peekable();
            if left.peek().is_none() {
                // Nothing started is left to send back (the last ones may have left the run):
                // the wave is all sent.
                self.waves[wave].reverted_through = Some(through);
                Vec::new()
            } else {
                left.take(room as usize).cloned().collect()
            }
        };
        let deadline_after = self.strategy.waves[wave].progress_deadline_ms;
        for (key, cluster) in next {
            self.waves[wave].reverted_through = Some(key);
            self.dirty = true;
            let member = &self.members[&cluster];
            if member.held || !member.progress.is_some_and(Progress::pinned) {
                continue;
            }
            let online = member.online;
            step.unpin.push(cluster);
            if let Some(member) = self.members.get_mut(&cluster) {
                member.state = BundleState::Pending;
            }
            if online {
                let deadline = now + deadline_after;
                self.set_progress(cluster, Some(Progress::Reverting { deadline }));
                self.timers.push(Reverse((deadline, cluster)));
            } else {
                // It gets the stable revision when it returns; nothing to wait for.
                self.set_progress(cluster, Some(Progress::Reverted));
            }
        }
        let run = &self.waves[wave];
        let all_sent = match (&run.started_through, &run.reverted_through) {
            (None, _) => true,
            (Some(through), Some(reverted)) => reverted >= through,
            (Some(_), None) => false,
        };
        if all_sent && run.counts.reverting == 0 {
            return self.finish_revert_wave();
        }
        false
    }

    fn finish_revert_wave(&mut self) -> bool {
        let wave = self.current;
        if self.waves[wave].phase != WavePhase::Waiting {
            self.waves[wave].phase = WavePhase::RolledBack;
        }
        self.dirty = true;
        if wave == 0 {
            self.phase = Phase::RolledBack;
        } else {
            self.current -= 1;
        }
        true
    }
}

/// Counts (or uncounts) a progress in its wave's counters.
fn tally(counts: &mut WaveCounts, progress: Option<Progress>, add: bool) {
    let Some(progress) = progress else {
        return;
    };
    let bump = |field: &mut u64| {
        if add {
            *field += 1;
        } else {
            *field -= 1;
        }
    };
    if progress.pinned() {
        bump(&mut counts.updated);
    }
    match progress {
        Progress::InFlight { .. } => bump(&mut counts.in_flight),
        Progress::Soaking { .. } => bump(&mut counts.soaking),
        Progress::Done => bump(&mut counts.done),
        Progress::Failed(_) => bump(&mut counts.failed),
        Progress::Skipped => bump(&mut counts.skipped),
        Progress::Reverting { .. } => bump(&mut counts.reverting),
        Progress::Reverted => bump(&mut counts.reverted),
    }
}

/// The key of the `sequence`-th late joiner of the last wave: after every original member.
fn late_key(sequence: u64) -> Key {
    Key {
        late: true,
        sort: None,
        rank: sequence,
    }
}

#[cfg(test)]
mod tests;

/// Members of a wave whose key is above `from` and at most `to` (a threshold that moved).
fn range_after(
    members: &BTreeSet<(Key, ClusterId)>,
    from: &Option<Key>,
    to: &Option<Key>,
) -> Vec<ClusterId> {
    use std::ops::Bound;
    let Some(to) = to else {
        return Vec::new();
    };
    if from.as_ref().is_some_and(|from| from >= to) {
        return Vec::new();
    }
    let lower = match from {
        Some(from) => Bound::Excluded((from.clone(), ClusterId::MAX)),
        None => Bound::Unbounded,
    };
    members
        .range((lower, Bound::Included((to.clone(), ClusterId::MAX))))
        .map(|(_, c)| *c)
        .collect()
}
