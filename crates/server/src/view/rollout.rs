//! A bundle's rollout as the API shows it (`GET /api/v1/bundles/{name}/rollout`).

use flotilla_api::{ObjectMeta, RolloutStatus, WaveStatus};
use flotilla_core::rollout::planner::{Phase, Run, WavePhase};

use crate::{
    fleet::{BundleEntry, rollouts::now_millis},
    state::rfc3339,
};

/// The rollout status of a bundle: its run in progress, or the last one.
pub fn status(entry: &BundleEntry) -> RolloutStatus {
    let stable_revision = entry.live.as_ref().map_or(0, |live| live.revision);
    let mut status = RolloutStatus {
        metadata: ObjectMeta {
            name: entry.name.clone(),
            resource_version: entry.metadata.resource_version.clone(),
            ..ObjectMeta::default()
        },
        stable_revision,
        ..RolloutStatus::default()
    };
    let Some(rollout) = entry.rollout.as_ref() else {
        return status;
    };
    status.candidate_revision = Some(rollout.to);
    status.reason = rollout.reason.clone();
    status.started = Some(rfc3339(rollout.started));
    status.updated = Some(rfc3339(rollout.updated));
    match (&rollout.run, &rollout.ended) {
        (Some(run), _) => {
            status.phase = run.phase().as_str().to_string();
            status.current_wave = (!run.phase().is_final() || run.phase() == Phase::Halted)
                .then_some(run.current_wave() as u32);
            status.waves = waves(run);
        }
        (None, Some(ended)) => {
            status.phase = ended.phase.as_str().to_string();
            status.waves = ended.waves.clone();
        }
        (None, None) => {}
    }
    // A rolled-back revision is held: not tried again until a person promotes it (`rollout
    // undo --to-revision`) or a newer revision starts another run.
    if status.phase == Phase::RolledBack.as_str() {
        status.held_revision = Some(rollout.to);
    }
    status
}

/// Every wave of a run with its counters and limits.
pub fn waves(run: &Run) -> Vec<WaveStatus> {
    let now = now_millis();
    run.strategy()
        .waves
        .iter()
        .enumerate()
        .map(|(index, wave)| {
            let counts = run.counts(index).cloned().unwrap_or_default();
            let (max_concurrency, max_failures) = run.limits(index);
            let current = index == run.current_wave();
            let phase = match run.wave_phase(index) {
                Some(WavePhase::Waiting) if current && run.phase() == Phase::Paused => "Paused",
                Some(WavePhase::Waiting) => "Waiting",
                Some(WavePhase::Progressing) if current && run.phase() == Phase::Paused => "Paused",
                Some(WavePhase::Progressing)
                    if counts.in_flight == 0
                        && counts.soaking > 0
                        && counts.updated + counts.held >= counts.clusters =>
                {
                    "Soaking"
                }
                Some(WavePhase::Progressing) => "Progressing",
                Some(WavePhase::Done) => "Done",
                Some(WavePhase::Failed) => "Failed",
                Some(WavePhase::RolledBack) => "RolledBack",
                None => "",
            };
            WaveStatus {
                name: wave.name.clone(),
                phase: phase.to_string(),
                clusters: counts.clusters,
                updated: counts.updated,
                ready: counts.soaking + counts.done,
                done: counts.done,
                failed: counts.failures,
                skipped: counts.skipped,
                soak_remaining_seconds: if current && counts.soaking > 0 {
                    run.soak_remaining(index, now).map(|ms| ms.div_ceil(1_000))
                } else {
                    None
                },
                max_concurrency,
                max_failures,
            }
        })
        .collect()
}
