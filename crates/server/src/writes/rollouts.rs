//! Rollout writes: the driver's steps and the verbs a person uses (pause, resume, abort, undo).
//!
//! A step is committed before it moves anything: the planner decides under the fleet lock, the
//! run's record (its saved thresholds) is committed, and only then are its clusters pinned or
//! sent back. A `kill -9` between the two restarts from the committed thresholds, which pin
//! exactly the clusters the step started: none is started twice, none is skipped. Moves whose
//! commit failed stay with the run and go with the next successful commit.

use flotilla_api::{FailedCluster, Kind, RolloutReason, RolloutStatus};
use flotilla_core::rollout::planner::{Phase, Stop};
use flotilla_store::Op;

use super::{WriteError, WriteResult, commit, not_found};
use crate::{
    fleet::{
        Fleet,
        rollouts::{Ended, now_millis},
    },
    records,
    state::{AppState, now_seconds},
    view,
};

/// Clusters moved per hold of the fleet's write lock: about 10 ms of work, so syncs wait at
/// most that long while a large wave starts.
const MOVES_PER_LOCK: usize = 4_096;

/// Store kind of a bundle's run record (name: the bundle's name).
pub const ROLLOUT: &str = records::ROLLOUT;

/// Steps every run, commits what changed and applies the moves. Runs on the lease holder only.
pub async fn step_all(state: &AppState) -> WriteResult<()> {
    if state.fleet.read().running().next().is_none() {
        return Ok(());
    }
    let _serialized = state.admin_lock.lock().await;
    let now = now_millis();
    let mut work: Vec<(u32, String, Vec<Op>)> = Vec::new();
    {
        let mut fleet = state.fleet.write();
        let running: Vec<u32> = fleet.running().collect();
        for bundle in running {
            if !fleet.step_run(bundle, now) {
                continue;
            }
            note_stop(&mut fleet, bundle);
            let Some(name) = fleet.bundle(bundle).map(|b| b.name.clone()) else {
                continue;
            };
            let Some(record) = fleet.rollout_record(bundle) else {
                continue;
            };
            work.push((
                bundle,
                name.clone(),
                vec![records::put(ROLLOUT, &name, &record)],
            ));
        }
    }
    for (bundle, name, ops) in work {
        commit(state, ops).await?;
        // The admin lock is held: the ordinal still names this bundle.
        loop {
            let more = {
                let mut fleet = state.fleet.write();
                if fleet.bundle(bundle).is_none_or(|b| b.name != name) {
                    break;
                }
                fleet.apply_run_moves(bundle, now_millis(), MOVES_PER_LOCK)
            };
            if !more {
                break;
            }
            tokio::task::yield_now().await;
        }
        let ended = {
            let mut fleet = state.fleet.write();
            if fleet.bundle(bundle).is_some_and(|b| b.name == name) {
                finish_if_over(&mut fleet, bundle)
            } else {
                None
            }
        };
        if let Some(result) = ended {
            state
                .metrics
                .rollout_ends
                .get_or_create(&crate::metrics::ResultLabel { result })
                .inc();
        }
    }
    state.metrics.rollout_steps.inc();
    Ok(())
}

/// Ends a run whose phase says it is over: a success promotes the candidate to stable, a
/// rollback drops it. Halted and frozen runs keep their planner (and pins) for a person.
fn finish_if_over(fleet: &mut Fleet, bundle: u32) -> Option<&'static str> {
    let run = fleet.run(bundle)?;
    let phase = run.phase();
    let ended = Ended {
        phase,
        waves: view::rollout::waves(run),
    };
    match phase {
        Phase::Succeeded => {
            fleet.promote_candidate(bundle);
            fleet.finish_run(bundle, ended);
            tracing::info!(bundle = %bundle_name(fleet, bundle), "rollout succeeded");
            Some("succeeded")
        }
        Phase::RolledBack => {
            fleet.drop_candidate(bundle);
            fleet.finish_run(bundle, ended);
            tracing::warn!(bundle = %bundle_name(fleet, bundle), "rollout rolled back");
            Some("rolled_back")
        }
        _ => None,
    }
}

fn bundle_name(fleet: &Fleet, bundle: u32) -> String {
    fleet
        .bundle(bundle)
        .map(|b| b.name.clone())
        .unwrap_or_default()
}

/// Records why a run stopped the first time its planner says so: the wave, the clusters that
/// failed and what their agents reported.
fn note_stop(fleet: &mut Fleet, bundle: u32) {
    let now = now_seconds();
    let Some(run) = fleet.run(bundle) else {
        return;
    };
    let reason = match run.stop() {
        Some(Stop::WaveFailed { wave, failed }) => {
            let name = run
                .strategy()
                .waves
                .get(*wave)
                .map(|w| w.name.clone())
                .unwrap_or_default();
            let (_, tolerated) = run.limits(*wave);
            let failed_count = run.counts(*wave).map_or(0, |c| c.failures);
            let action = match run.phase() {
                Phase::RollingBack | Phase::RolledBack => "rolling back",
                Phase::Frozen => "frozen",
                _ => "halted",
            };
            let failed_clusters = failed
                .iter()
                .filter_map(|&(cluster, why)| failed_cluster(fleet, bundle, cluster, why.as_str()))
                .collect();
            RolloutReason {
                reason: "WaveFailed".into(),
                message: format!(
                    "wave {name:?} failed: {failed_count} cluster(s) failed and it tolerates {tolerated}; {action}"
                ),
                wave: Some(name),
                failed_clusters,
            }
        }
        Some(Stop::Aborted) => RolloutReason {
            reason: "Aborted".into(),
            message: "aborted by a person: clusters that took the candidate go back to the stable revision".into(),
            wave: None,
            failed_clusters: Vec::new(),
        },
        None => {
            if let Some(rollout) = fleet.rollout_mut(bundle) {
                rollout.updated = now;
            }
            return;
        }
    };
    if let Some(rollout) = fleet.rollout_mut(bundle) {
        rollout.updated = now;
        if rollout.reason.is_none() {
            rollout.reason = Some(reason);
        }
    }
}

/// A failed cluster with its agent's report.
fn failed_cluster(fleet: &Fleet, bundle: u32, cluster: u32, why: &str) -> Option<FailedCluster> {
    let entry = fleet.cluster(cluster)?;
    let report = entry
        .deployments
        .iter()
        .find(|d| d.bundle == bundle)
        .and_then(|d| d.report.as_deref());
    Some(FailedCluster {
        cluster: entry.name.to_string(),
        reason: why.to_string(),
        message: report.and_then(|r| r.message.clone()).unwrap_or_default(),
        objects: report
            .map(|r| {
                r.problems
                    .iter()
                    .map(|p| match &p.namespace {
                        Some(ns) => format!("{}/{}/{}: {}", p.kind, ns, p.name, p.message),
                        None => format!("{}/{}: {}", p.kind, p.name, p.message),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// A verb a person applies to a bundle's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Pause,
    Resume,
    Abort,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Pause => "pause",
            Verb::Resume => "resume",
            Verb::Abort => "abort",
        }
    }
}

/// The rollout status of a bundle.
pub fn status(state: &AppState, name: &str) -> WriteResult<RolloutStatus> {
    let fleet = state.fleet.read();
    let (_, entry) = fleet
        .bundle_by_name(name)
        .ok_or_else(|| not_found(Kind::Bundle, name))?;
    Ok(view::rollout::status(entry))
}

/// Pauses, resumes or aborts a bundle's run; the change is committed with the step that
/// follows at once (the moves it causes are committed before they are applied).
pub async fn apply_verb(state: &AppState, name: &str, verb: Verb) -> WriteResult<RolloutStatus> {
    if !state.lease.is_held() {
        // Runs are stepped by the lease holder alone; a verb here would race its steps.
        return Err(WriteError::Conflict(format!(
            "this replica does not step rollouts; send `{}` to the replica holding the singleton lease (flotilla_singleton_lease_held 1)",
            verb.as_str()
        )));
    }
    {
        let _serialized = state.admin_lock.lock().await;
        let mut fleet = state.fleet.write();
        let (bundle, entry) = fleet
            .bundle_by_name(name)
            .ok_or_else(|| not_found(Kind::Bundle, name))?;
        let phase = entry
            .rollout
            .as_ref()
            .and_then(|r| r.phase())
            .map_or("none", |p| p.as_str());
        let Some(run) = fleet.run_mut(bundle) else {
            return Err(WriteError::Conflict(format!(
                "bundle {name:?} has no rollout in progress (last run: {phase}); nothing to {}",
                verb.as_str()
            )));
        };
        let done = match verb {
            Verb::Pause => run.pause(),
            Verb::Resume => run.resume(),
            Verb::Abort => run.abort(),
        };
        if done && verb == Verb::Resume {
            // A resumed run writes its own reason if it stops again.
            if let Some(rollout) = fleet.rollout_mut(bundle) {
                rollout.reason = None;
            }
        }
        if !done {
            let hint = match verb {
                Verb::Pause => "only a Progressing rollout can be paused",
                Verb::Resume => "only a Paused or Halted rollout can be resumed",
                Verb::Abort => {
                    "only a Progressing, Paused or Halted rollout can be aborted (a Frozen one keeps its clusters on the new revision; write a newer revision to move on)"
                }
            };
            return Err(WriteError::Conflict(format!(
                "the rollout of bundle {name:?} is {phase}: {hint}"
            )));
        }
    }
    step_all(state).await?;
    status(state, name)
}

/// `rollout undo`: with a run in progress and no revision named (or the stable one), the run is
/// aborted: its clusters go back to the stable revision. Otherwise the bundle's spec is written
/// back to a kept revision (the one before the stable revision by default), which rolls out like
/// any change: through the bundle's strategy, as a new revision. Naming a revision an automatic
/// rollback held promotes it again.
pub async fn undo(state: &AppState, name: &str, to: Option<u64>) -> WriteResult<RolloutStatus> {
    match undo_document(state, name, to)? {
        None => apply_verb(state, name, Verb::Abort).await,
        Some(document) => {
            super::bundles::write_promoting(state, document).await?;
            status(state, name)
        }
    }
}

/// What `undo` writes: the bundle's spec at the revision to roll out again, or `None` to abort
/// the run in progress.
fn undo_document(
    state: &AppState,
    name: &str,
    to: Option<u64>,
) -> WriteResult<Option<flotilla_api::Bundle>> {
    {
        let fleet = state.fleet.read();
        let (ordinal, entry) = fleet
            .bundle_by_name(name)
            .ok_or_else(|| not_found(Kind::Bundle, name))?;
        let stable = entry.live.as_ref().map_or(0, |live| live.revision);
        let phase = fleet.run(ordinal).map(|run| run.phase());
        match phase {
            Some(Phase::Frozen) => {
                return Err(WriteError::Conflict(format!(
                    "the rollout of bundle {name:?} is Frozen: its clusters keep the new revision (onFailure: Freeze); write a newer revision to move on"
                )));
            }
            Some(Phase::Progressing | Phase::Paused | Phase::Halted | Phase::RollingBack) => {
                if to.is_none() || to == Some(stable) {
                    return Ok(None);
                }
                return Err(WriteError::Conflict(format!(
                    "a rollout of bundle {name:?} is in progress; undo without --to-revision (or with the stable revision {stable}) sends its clusters back first"
                )));
            }
            _ => {}
        }
        // The stable revision before the current one: the one the last successful run started
        // from; else the newest older revision no run left behind (a rolled-back or aborted
        // candidate was never stable).
        let last = entry.rollout.as_ref();
        let previous = match last {
            Some(run) if run.phase() == Some(Phase::Succeeded) && run.to == stable => {
                Some(run.from).filter(|&from| from > 0 && entry.revisions.contains_key(&from))
            }
            _ => None,
        };
        let never_stable = last
            .filter(|run| run.phase() != Some(Phase::Succeeded))
            .map(|run| run.to);
        let target = match to {
            Some(number) => number,
            None => previous
                .or_else(|| {
                    entry
                        .revisions
                        .keys()
                        .rev()
                        .copied()
                        .find(|&number| number < stable && Some(number) != never_stable)
                })
                .ok_or_else(|| {
                    WriteError::Conflict(format!(
                        "bundle {name:?} keeps no revision older than its stable revision {stable}; name one with --to-revision (see `flotilla history bundle {name}`)"
                    ))
                })?,
        };
        let held = entry
            .rollout
            .as_ref()
            .is_some_and(|r| r.phase() == Some(Phase::RolledBack) && r.to == target);
        if target == stable && !held {
            return Err(WriteError::Conflict(format!(
                "revision {target} is already the stable revision of bundle {name:?}"
            )));
        }
        if let Some(repo) = &entry.owner {
            return Err(WriteError::Conflict(format!(
                "bundle {name:?} is rendered from GitRepo {repo:?}: revert the change in the repository (a rollout abort still works: `flotilla rollout abort`)"
            )));
        }
        let revision = entry.revisions.get(&target).ok_or_else(|| {
            let kept: Vec<String> = entry.revisions.keys().map(u64::to_string).collect();
            WriteError::NotFound(format!(
                "revision {target} of bundle {name:?} is not kept (kept: {}); spec.revisionHistoryLimit sets how many are",
                kept.join(", ")
            ))
        })?;
        let mut content = |digest: &str| {
            fleet
                .contents()
                .get(digest)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("content {digest} is not in memory"))
        };
        let resources: Vec<serde_json::Value> =
            serde_json::from_slice(&content(&revision.live.digest).map_err(WriteError::internal)?)
                .map_err(WriteError::internal)?;
        let (_, targets) = revision
            .live
            .compile(&mut content)
            .map_err(WriteError::internal)?;
        let mut spec = entry.spec.clone();
        spec.resources = resources;
        spec.targets = targets;
        spec.keep_resources = revision.live.keep_resources;
        spec.drift = revision.live.drift.clone();
        Ok(Some(flotilla_api::Bundle {
            api_version: flotilla_api::API_VERSION.to_string(),
            kind: Kind::Bundle.to_string(),
            metadata: flotilla_api::ObjectMeta {
                name: entry.name.clone(),
                labels: entry.metadata.labels.clone(),
                annotations: entry.metadata.annotations.clone(),
                ..Default::default()
            },
            spec,
            status: None,
        }))
    }
}
