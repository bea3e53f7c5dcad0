//! Figures of a rollout run from reads of its status: when each condition was first seen, and
//! what follows (per-wave start, all Ready, done and decision; the rollback's failure, decision,
//! end and return to the stable revision). Pure: reads in, figures out.

use flotilla_api::{BundleSummary, RolloutStatus, WaveStatus};

use crate::result::{ServerCpu, WaveFigures, WavesRollback};

/// One read of the rollout status.
#[derive(Debug, Clone)]
pub(super) struct Observation {
    /// Seconds since the write that started the run: when the read was sent and when it answered.
    pub sent: f64,
    pub t: f64,
    pub status: RolloutStatus,
    /// The bundle's status summary, read after the rollout status (during the rollback only).
    pub summary: Option<BundleSummary>,
}

/// When a condition was first seen: it became true after `before` (when the previous read was
/// sent) and by `seen` (when the read that showed it answered).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sighting {
    before: f64,
    seen: f64,
}

fn first_sighting(
    observations: &[Observation],
    holds: impl Fn(&Observation) -> bool,
) -> Option<Sighting> {
    let mut before = 0.0;
    for observation in observations {
        if holds(observation) {
            return Some(Sighting {
                before,
                seen: observation.t,
            });
        }
        before = observation.sent;
    }
    None
}

/// Whether a read shows the run the write started (not the bundle's previous one).
pub(super) fn shows_run_after(status: &RolloutStatus, after_revision: u64) -> bool {
    status
        .candidate_revision
        .is_some_and(|candidate| candidate > after_revision)
}

/// Every cluster of the wave reported the candidate Ready (or is skipped as Offline).
fn all_ready(wave: &WaveStatus) -> bool {
    wave.clusters > 0 && wave.ready + wave.skipped >= wave.clusters
}

pub(super) fn is_final(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Halted" | "Frozen" | "RolledBack")
}

/// Rolled back, and the bundle's summary counts every targeted cluster Ready (on the stable
/// revision: the candidate is gone once the run rolled back).
pub(super) fn stable_ready(observation: &Observation) -> bool {
    observation.status.phase == "RolledBack"
        && observation
            .summary
            .is_some_and(|summary| summary.desired > 0 && summary.ready >= summary.desired)
}

/// The figures of a run that advanced, per wave, and when it was seen Succeeded. `soaks` holds
/// each wave's soak in seconds.
pub(super) fn advance_figures(
    observations: &[Observation],
    soaks: &[f64],
) -> (Vec<WaveFigures>, Option<f64>) {
    let Some(last) = observations.last() else {
        return (Vec::new(), None);
    };
    let waves = last
        .status
        .waves
        .iter()
        .enumerate()
        .map(|(index, wave)| {
            let soak = soaks.get(index).copied().unwrap_or(0.0);
            let wave_at = |o: &Observation| o.status.waves.get(index).cloned().unwrap_or_default();
            let start = first_sighting(observations, |o| wave_at(o).updated > 0);
            let ready = first_sighting(observations, |o| all_ready(&wave_at(o)));
            let done = first_sighting(observations, |o| wave_at(o).phase == "Done");
            // The decision is the next wave starting, or the run succeeding after the last.
            let decided = first_sighting(observations, |o| {
                o.status.phase == "Succeeded"
                    || o.status.waves.iter().skip(index + 1).any(|w| w.updated > 0)
            });
            let decision = ready.zip(decided).map(|(ready, decided)| {
                (
                    (decided.seen - ready.seen - soak).max(0.0),
                    (decided.seen - ready.before - soak).max(0.0),
                )
            });
            WaveFigures {
                name: wave.name.clone(),
                clusters: wave.clusters,
                soak_seconds: soak,
                seconds_to_start: start.map(|s| s.seen),
                seconds_to_all_ready: ready.map(|s| s.seen),
                seconds_to_done: done.map(|s| s.seen),
                decision_seconds: decision.map(|(estimate, _)| estimate),
                decision_seconds_bound: decision.map(|(_, bound)| bound),
            }
        })
        .collect();
    let succeeded = first_sighting(observations, |o| o.status.phase == "Succeeded");
    (waves, succeeded.map(|s| s.seen))
}

/// What the caller measured around a rollback's reads.
pub(super) struct RollbackContext {
    pub write_seconds: f64,
    pub sim_not_ready_max: i64,
    pub server_cpu: Option<ServerCpu>,
}

/// The figures of a run whose candidate fails: when the failure, the decision, the rollback and
/// every cluster Ready on the stable revision were seen, and whether any wave after the failed
/// one ever had a cluster on the candidate.
pub(super) fn rollback_figures(
    observations: &[Observation],
    context: RollbackContext,
) -> WavesRollback {
    let last = observations.last().map(|o| &o.status);
    let failure = first_sighting(observations, |o| {
        o.status.waves.iter().any(|w| w.failed > 0)
    });
    let decision = first_sighting(observations, |o| {
        matches!(
            o.status.phase.as_str(),
            "RollingBack" | "RolledBack" | "Halted" | "Frozen"
        )
    });
    let rolled_back = first_sighting(observations, |o| o.status.phase == "RolledBack");
    let ready = first_sighting(observations, stable_ready);
    // The failed wave: the one the reason names, else the first with a failure.
    let failed_index = last.and_then(|status| {
        let named = status.reason.as_ref().and_then(|r| r.wave.as_ref());
        named
            .and_then(|name| status.waves.iter().position(|w| &w.name == name))
            .or_else(|| status.waves.iter().position(|w| w.failed > 0))
    });
    let failed_wave = failed_index.and_then(|i| last.and_then(|s| s.waves.get(i)));
    let (later_waves_updated_max, later_waves, later_waves_never_started) = match failed_index {
        Some(index) => {
            let updated_max = observations
                .iter()
                .map(|o| {
                    o.status
                        .waves
                        .iter()
                        .skip(index + 1)
                        .map(|w| w.updated)
                        .sum::<u64>()
                })
                .max()
                .unwrap_or(0);
            let later: Vec<&WaveStatus> = last
                .map(|s| s.waves.iter().skip(index + 1).collect())
                .unwrap_or_default();
            let never_started = later.iter().filter(|w| w.phase == "Waiting").count();
            (updated_max, later.len() as u64, never_started as u64)
        }
        None => (0, 0, 0),
    };
    let decision_times = failure.zip(decision).map(|(failure, decision)| {
        (
            (decision.seen - failure.seen).max(0.0),
            (decision.seen - failure.before).max(0.0),
        )
    });
    WavesRollback {
        write_seconds: context.write_seconds,
        failed_wave: failed_wave.map(|w| w.name.clone()),
        failed_wave_clusters: failed_wave.map_or(0, |w| w.clusters),
        failed_wave_failed: failed_wave.map_or(0, |w| w.failed),
        seconds_to_first_failure: failure.map(|s| s.seen),
        seconds_to_decision: decision.map(|s| s.seen),
        decision_seconds: decision_times.map(|(estimate, _)| estimate),
        decision_seconds_bound: decision_times.map(|(_, bound)| bound),
        seconds_to_rolled_back: rolled_back.map(|s| s.seen),
        rollback_seconds: rolled_back
            .zip(decision)
            .map(|(rolled_back, decision)| rolled_back.seen - decision.seen),
        seconds_to_stable_ready: ready.map(|s| s.seen),
        stable_ready_after_failure_seconds: ready
            .zip(failure)
            .map(|(ready, failure)| ready.seen - failure.before),
        final_phase: last.map(|s| s.phase.clone()).unwrap_or_default(),
        later_waves_updated_max,
        later_waves,
        later_waves_never_started,
        sim_not_ready_max: context.sim_not_ready_max,
        server_cpu: context.server_cpu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wave's counters as the status shows them.
    fn wave(name: &str, clusters: u64, updated: u64, ready: u64, phase: &str) -> WaveStatus {
        WaveStatus {
            name: name.into(),
            phase: phase.into(),
            clusters,
            updated,
            ready,
            done: if phase == "Done" { ready } else { 0 },
            ..WaveStatus::default()
        }
    }

    /// A read sent at `sent` that answered 10 ms later.
    fn read(sent: f64, phase: &str, waves: Vec<WaveStatus>) -> Observation {
        Observation {
            sent,
            t: sent + 0.01,
            status: RolloutStatus {
                phase: phase.into(),
                stable_revision: 2,
                candidate_revision: Some(3),
                waves,
                ..RolloutStatus::default()
            },
            summary: None,
        }
    }

    /// A canary of 2 (soak 5 s) and a last wave of 8: the canary's last report lands between the
    /// reads at 2.0 and 2.1, the next wave is seen started at 7.3.
    fn advancing() -> Vec<Observation> {
        vec![
            read(
                0.1,
                "Progressing",
                vec![
                    wave("canary", 2, 2, 0, "Progressing"),
                    wave("rest", 8, 0, 0, "Waiting"),
                ],
            ),
            read(
                2.0,
                "Progressing",
                vec![
                    wave("canary", 2, 2, 1, "Progressing"),
                    wave("rest", 8, 0, 0, "Waiting"),
                ],
            ),
            read(
                2.1,
                "Progressing",
                vec![
                    wave("canary", 2, 2, 2, "Soaking"),
                    wave("rest", 8, 0, 0, "Waiting"),
                ],
            ),
            read(
                7.0,
                "Progressing",
                vec![
                    wave("canary", 2, 2, 2, "Soaking"),
                    wave("rest", 8, 0, 0, "Waiting"),
                ],
            ),
            read(
                7.3,
                "Progressing",
                vec![
                    wave("canary", 2, 2, 2, "Done"),
                    wave("rest", 8, 8, 0, "Progressing"),
                ],
            ),
            read(
                9.0,
                "Progressing",
                vec![
                    wave("canary", 2, 2, 2, "Done"),
                    wave("rest", 8, 8, 7, "Progressing"),
                ],
            ),
            // The last report and the success are first seen in the same read.
            read(
                9.5,
                "Succeeded",
                vec![
                    wave("canary", 2, 2, 2, "Done"),
                    wave("rest", 8, 8, 8, "Done"),
                ],
            ),
        ]
    }

    fn close(actual: Option<f64>, expected: f64) -> bool {
        actual.is_some_and(|actual| (actual - expected).abs() < 1e-9)
    }

    #[test]
    fn a_waves_decision_counts_from_its_last_ready_report_plus_its_soak() {
        let (waves, succeeded) = advance_figures(&advancing(), &[5.0, 0.0]);
        let canary = &waves[0];
        assert_eq!((canary.name.as_str(), canary.clusters), ("canary", 2));
        assert!(close(canary.seconds_to_start, 0.11), "{canary:?}");
        assert!(close(canary.seconds_to_all_ready, 2.11), "{canary:?}");
        assert!(close(canary.seconds_to_done, 7.31), "{canary:?}");
        // Next wave seen at 7.31; every canary Ready seen at 2.11 (after 2.0) plus 5 s soak.
        assert!(
            close(canary.decision_seconds, 7.31 - 2.11 - 5.0),
            "{canary:?}"
        );
        assert!(
            close(canary.decision_seconds_bound, 7.31 - 2.0 - 5.0),
            "{canary:?}"
        );
        assert!(close(succeeded, 9.51));
    }

    #[test]
    fn a_decision_seen_with_its_report_is_zero_bounded_by_the_read_gap() {
        let (waves, _) = advance_figures(&advancing(), &[5.0, 0.0]);
        let rest = &waves[1];
        assert!(close(rest.seconds_to_start, 7.31), "{rest:?}");
        assert!(close(rest.decision_seconds, 0.0), "{rest:?}");
        assert!(close(rest.decision_seconds_bound, 9.51 - 9.0), "{rest:?}");
    }

    #[test]
    fn a_wave_never_seen_all_ready_has_no_decision() {
        let mut reads = advancing();
        reads.truncate(6);
        let (waves, succeeded) = advance_figures(&reads, &[5.0, 0.0]);
        assert_eq!(waves[1].seconds_to_all_ready, None);
        assert_eq!(waves[1].decision_seconds, None);
        assert_eq!(succeeded, None);
    }

    #[test]
    fn reads_of_the_previous_run_are_not_this_runs() {
        let previous = read(0.1, "Succeeded", Vec::new());
        assert!(!shows_run_after(&previous.status, 3));
        assert!(shows_run_after(&previous.status, 2));
    }

    fn rolled_back(sent: f64, later_updated: u64, ready: u64) -> Observation {
        let mut observation = read(
            sent,
            "RolledBack",
            vec![
                wave("canary", 8, 8, 0, "RolledBack"),
                wave("w2", 80, later_updated, 0, "Waiting"),
            ],
        );
        observation.status.waves[0].failed = 1;
        observation.summary = Some(BundleSummary {
            desired: 800,
            ready,
            ..BundleSummary::default()
        });
        observation
    }

    /// A canary of 8 where one cluster fails: seen at 1.5 (after 1.4), rolling back at 1.6,
    /// rolled back at 20.0, every cluster Ready on the stable revision at 21.0.
    fn rolling_back() -> Vec<Observation> {
        let mut failing = read(
            1.5,
            "Progressing",
            vec![
                wave("canary", 8, 8, 3, "Progressing"),
                wave("w2", 80, 0, 0, "Waiting"),
            ],
        );
        failing.status.waves[0].failed = 1;
        let mut deciding = failing.clone();
        deciding.sent = 1.6;
        deciding.t = 1.61;
        deciding.status.phase = "RollingBack".into();
        deciding.status.reason = Some(flotilla_api::RolloutReason {
            reason: "WaveFailed".into(),
            wave: Some("canary".into()),
            ..flotilla_api::RolloutReason::default()
        });
        let mut done = rolled_back(21.0, 0, 800);
        done.status.reason = deciding.status.reason.clone();
        vec![
            read(
                1.4,
                "Progressing",
                vec![
                    wave("canary", 8, 8, 3, "Progressing"),
                    wave("w2", 80, 0, 0, "Waiting"),
                ],
            ),
            failing,
            deciding,
            rolled_back(20.0, 0, 799),
            done,
        ]
    }

    fn context() -> RollbackContext {
        RollbackContext {
            write_seconds: 0.01,
            sim_not_ready_max: 1,
            server_cpu: None,
        }
    }

    #[test]
    fn a_rollback_times_its_decision_from_the_first_failure_seen() {
        let rollback = rollback_figures(&rolling_back(), context());
        assert_eq!(rollback.failed_wave.as_deref(), Some("canary"));
        assert_eq!(
            (rollback.failed_wave_clusters, rollback.failed_wave_failed),
            (8, 1)
        );
        assert!(close(rollback.seconds_to_first_failure, 1.51));
        assert!(close(rollback.seconds_to_decision, 1.61));
        assert!(close(rollback.decision_seconds, 0.1));
        assert!(close(rollback.decision_seconds_bound, 1.61 - 1.4));
        assert!(close(rollback.seconds_to_rolled_back, 20.01));
        assert!(close(rollback.rollback_seconds, 20.01 - 1.61));
        // Rolled back at 20.0 with one cluster still to report: Ready everywhere only at 21.0.
        assert!(close(rollback.seconds_to_stable_ready, 21.01));
        assert!(close(
            rollback.stable_ready_after_failure_seconds,
            21.01 - 1.4
        ));
        assert_eq!(rollback.final_phase, "RolledBack");
    }

    #[test]
    fn a_later_wave_seen_on_the_candidate_once_or_ended_rolled_back_counts_as_reached() {
        let clean = rollback_figures(&rolling_back(), context());
        let reached = |r: &WavesRollback| {
            (
                r.later_waves_updated_max,
                r.later_waves,
                r.later_waves_never_started,
            )
        };
        assert_eq!(reached(&clean), (0, 1, 1));
        // One read showed a cluster of w2 on the candidate.
        let mut leaked = rolling_back();
        leaked[3] = rolled_back(20.0, 1, 799);
        assert_eq!(reached(&rollback_figures(&leaked, context())), (1, 1, 1));
        // Or w2 ends RolledBack: it started, whatever the reads caught.
        let mut started = rolling_back();
        started.last_mut().expect("reads").status.waves[1].phase = "RolledBack".into();
        assert_eq!(reached(&rollback_figures(&started, context())), (0, 1, 0));
    }
}
