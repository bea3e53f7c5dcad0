//! The `rollout-waves` scenario (issue 25): bundle `waves` rolls a good revision out through five
//! waves behind a canary, then a revision that fails on some canary clusters, which the server
//! rolls back. Every figure is derived from the bundle's rollout status read every [`POLL`] (the
//! status's own timestamps are whole seconds): an event happened after the read before the one
//! that first showed it, and before that read answered.
//!
//! The fault is injected by placeholder: the faulty revision's ConfigMap carries
//! `flotilla.dev/simulate: "${values.simulate}"`, and the bundle's first target gives clusters
//! labelled `region=eu-west` the value `fail` (every other cluster `ok`). The targets are the same
//! in every revision, so each write changes content only.

mod figures;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::Context;
use flotilla_api::{
    Bundle, BundleSpec, BundleTarget, Customization, IntOrPercent, LabelSelector, RolloutStatus,
    RolloutStrategy, RolloutWave,
};
use flotilla_client::{Api, Resource};
use serde_json::json;

use crate::{
    BenchConfig, Run,
    result::{RolloutWavesResult, ServerCpu, Verdict, WavesAdvance},
    wait::wait_until,
};

use self::figures::{
    Observation, RollbackContext, advance_figures, is_final, rollback_figures, shows_run_after,
    stable_ready,
};

const BUNDLE: &str = "waves";

/// How often the rollout status is read. The server's driver steps runs every 100 ms, so a
/// decision shows within a step of the report that decides it; reading as often keeps every
/// figure within one read of its event, at the cost of one small GET per read.
const POLL: Duration = Duration::from_millis(100);

/// Clusters of this region fail the faulty revision: an eighth of the simulated fleet (the
/// simulator deals regions out by ordinal), so some of every wave would fail if it got there.
const FAULT_REGION: &str = "eu-west";

const SIMULATE_ANNOTATION: &str = "flotilla.dev/simulate";

/// The waves, by name and share of the clusters earlier waves left. The first is the canary:
/// mandatory, soaked, and made of the lowest `store` labels (the simulator's ordinals), so it
/// holds `bench-0000000`, an eu-west cluster: the faulty revision fails in it at any scale.
const WAVES: [(&str, &str); 5] = [
    ("canary", "1%"),
    ("w2", "10%"),
    ("w3", "25%"),
    ("w4", "50%"),
    ("rest", "100%"),
];

/// The targets: a decision within 1 s of the report that decides it, and every touched
/// cluster back on the stable revision Ready within two sync intervals.
const DECISION_LIMIT_SECONDS: f64 = 1.0;
const STABLE_READY_INTERVALS: f64 = 2.0;

fn strategy(canary_soak: Duration, interval: Duration) -> RolloutStrategy {
    // A cluster learns it was started at its next sync, up to an interval and its 10 % jitter
    // away, so a wave takes about an interval; the deadline leaves three (at least 5 minutes).
    let deadline = (interval * 3).max(Duration::from_secs(300));
    RolloutStrategy {
        waves: WAVES
            .iter()
            .enumerate()
            .map(|(index, (name, share))| {
                let canary = index == 0;
                RolloutWave {
                    name: name.to_string(),
                    clusters: Some(IntOrPercent::Percent(share.to_string())),
                    sort_by: canary.then(|| "store".to_string()),
                    mandatory: canary,
                    min_soak: canary.then(|| format!("{}ms", canary_soak.as_millis())),
                    ..RolloutWave::default()
                }
            })
            .collect(),
        progress_deadline: Some(format!("{}s", deadline.as_secs())),
        ..RolloutStrategy::default()
    }
}

/// Each wave's soak in seconds, in the strategy's order.
fn soaks(canary_soak: Duration) -> Vec<f64> {
    (0..WAVES.len())
        .map(|index| {
            if index == 0 {
                canary_soak.as_secs_f64()
            } else {
                0.0
            }
        })
        .collect()
}

/// Bundle `waves` at `revision`: a ConfigMap and a Deployment for every cluster. A `faulty`
/// revision's ConfigMap fails where the cluster's target says `simulate: fail`.
fn waves_bundle(revision: u32, faulty: bool, strategy: &RolloutStrategy) -> Bundle {
    let mut config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": BUNDLE},
        "data": {"revision": revision.to_string()},
    });
    if faulty {
        config_map["metadata"]["annotations"] = json!({SIMULATE_ANNOTATION: "${values.simulate}"});
    }
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": BUNDLE},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": BUNDLE}},
            "template": {
                "metadata": {"labels": {"app": BUNDLE}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": format!("registry.example/{BUNDLE}:{revision}"),
                }]},
            },
        },
    });
    let target = |name: &str, selector: LabelSelector, simulate: &str| BundleTarget {
        name: Some(name.into()),
        cluster_selector: Some(selector),
        customization: Customization {
            namespace: Some("bench".into()),
            values: BTreeMap::from([("simulate".to_string(), simulate.to_string())]),
            ..Customization::default()
        },
        ..BundleTarget::default()
    };
    let mut bundle = Bundle::new(
        BUNDLE,
        BundleSpec {
            resources: vec![config_map, deployment],
            targets: vec![
                target(
                    "fault-region",
                    LabelSelector {
                        match_labels: BTreeMap::from([(
                            "region".to_string(),
                            FAULT_REGION.to_string(),
                        )]),
                        ..LabelSelector::default()
                    },
                    "fail",
                ),
                target("fleet", LabelSelector::default(), "ok"),
            ],
            rollout: Some(strategy.clone()),
            ..BundleSpec::default()
        },
    );
    bundle.metadata.labels.insert("bench".into(), "true".into());
    bundle
}

/// What the reads of one run collected.
#[derive(Debug, Default)]
struct Watched {
    observations: Vec<Observation>,
    gap_max: f64,
    read_errors: u64,
    /// The most simulated deployments not Ready at once, above the count when watching began.
    sim_not_ready_max: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// Until the run ends.
    Advance,
    /// Also reads the bundle's summary; until the run rolled back and every cluster is Ready on
    /// the stable revision (or the run ended otherwise).
    Rollback,
}

/// Simulated deployments not Ready (the simulator's own count).
fn sim_not_ready(run: &Run) -> i64 {
    let stats = run.stats.snapshot(false);
    stats.bundles_held - stats.bundles_ready
}

/// Reads the rollout status every [`POLL`] from `began` (the write) until the run is over or
/// `deadline` passes; reads of an earlier run (candidate at most `after_revision`) are dropped.
async fn watch(
    run: &Run,
    bundles: &Api<Bundle>,
    began: Instant,
    after_revision: u64,
    deadline: Duration,
    kind: Watch,
) -> Watched {
    let baseline = sim_not_ready(run);
    let mut watched = Watched::default();
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_answer: Option<f64> = None;
    while began.elapsed() < deadline {
        ticker.tick().await;
        let sent = began.elapsed().as_secs_f64();
        let Ok(status) = bundles.rollout_status(BUNDLE).await else {
            watched.read_errors += 1;
            continue;
        };
        let summary = match kind {
            Watch::Advance => None,
            Watch::Rollback => match bundles.get(BUNDLE).await {
                Ok(bundle) => bundle.status.map(|status| status.summary),
                Err(_) => {
                    watched.read_errors += 1;
                    None
                }
            },
        };
        let t = began.elapsed().as_secs_f64();
        if let Some(previous) = last_answer {
            watched.gap_max = watched.gap_max.max(t - previous);
        }
        last_answer = Some(t);
        watched.sim_not_ready_max = watched.sim_not_ready_max.max(sim_not_ready(run) - baseline);
        if !shows_run_after(&status, after_revision) {
            continue;
        }
        let observation = Observation {
            sent,
            t,
            status,
            summary,
        };
        let over = match kind {
            Watch::Advance => is_final(&observation.status.phase),
            Watch::Rollback => {
                matches!(
                    observation.status.phase.as_str(),
                    "Succeeded" | "Halted" | "Frozen"
                ) || stable_ready(&observation)
            }
        };
        watched.observations.push(observation);
        if over {
            break;
        }
    }
    watched
}

/// The server's CPU over a phase.
struct CpuMeter {
    before: Option<(i32, f64)>,
    began: Instant,
    start: f64,
}

impl CpuMeter {
    fn start(run: &Run) -> CpuMeter {
        CpuMeter {
            before: run.pid_cpu(),
            began: Instant::now(),
            start: run.now(),
        }
    }

    fn finish(self, run: &Run) -> Option<ServerCpu> {
        let wall = self.began.elapsed().as_secs_f64().max(1e-6);
        let (pid_before, before) = self.before?;
        let (pid_after, after) = run.pid_cpu()?;
        if pid_before != pid_after {
            return None;
        }
        Some(ServerCpu {
            seconds: after - before,
            cores: (after - before) / wall,
            cores_peak: run
                .samples_between(self.start, run.now())
                .iter()
                .filter_map(|sample| sample.server_cpu_cores)
                .reduce(f64::max),
        })
    }
}

/// The revision the bundle's rollout status last named (stable or candidate).
fn newest_revision(status: &RolloutStatus) -> u64 {
    status
        .stable_revision
        .max(status.candidate_revision.unwrap_or(0))
}

/// Bundle `waves` at the first revision everywhere, then a good revision through the waves, then
/// a faulty one rolled back.
pub(crate) async fn rollout_waves(run: &mut Run) -> anyhow::Result<RolloutWavesResult> {
    let interval = run.config.interval;
    let canary_soak = run.config.canary_soak;
    let strategy = strategy(canary_soak, interval);
    let bundles = run.admin.api::<Bundle>();
    let mut read_errors = 0;
    let mut gap_max: f64 = 0.0;

    // A bundle left by an earlier run against the same server would make the first write a run.
    let _ = bundles.delete(BUNDLE).await;
    let start = run.begin("waves-v1");
    let written = bundles
        .apply(&waves_bundle(1, false, &strategy))
        .await
        .context("write bundle waves")?;
    let generation = written.object.metadata.generation;
    let deadline = interval * 3 + Duration::from_secs(120 + u64::from(run.config.clusters) / 2_000);
    let bundles_ref = &bundles;
    let clusters = wait_until(
        "bundle waves Ready on every cluster",
        deadline,
        || async move {
            let status = bundles_ref.get(BUNDLE).await.ok()?.status?;
            let summary = status.summary;
            (status.observed_generation >= generation
                && summary.desired > 0
                && summary.ready >= summary.desired)
                .then_some(summary.desired)
        },
    )
    .await?;
    run.end("waves-v1", start);

    // A: a good revision through every wave.
    let after_revision = newest_revision(&bundles.rollout_status(BUNDLE).await?);
    let start = run.begin("waves");
    let cpu = CpuMeter::start(run);
    let began = Instant::now();
    bundles
        .apply(&waves_bundle(2, false, &strategy))
        .await
        .context("write the good revision of bundle waves")?;
    let write_seconds = began.elapsed().as_secs_f64();
    // A wave takes about an interval (its clusters' next syncs); twice that per wave, and one
    // more, leaves room for a loaded server without waiting forever on a stuck run.
    let deadline =
        (interval * 2 + canary_soak) * (WAVES.len() as u32 + 1) + Duration::from_secs(120);
    let watched = watch(
        run,
        &bundles,
        began,
        after_revision,
        deadline,
        Watch::Advance,
    )
    .await;
    let server_cpu = cpu.finish(run);
    run.end("waves", start);
    read_errors += watched.read_errors;
    gap_max = gap_max.max(watched.gap_max);
    let (waves, seconds_to_succeeded) = advance_figures(&watched.observations, &soaks(canary_soak));
    let final_phase = watched
        .observations
        .last()
        .map(|o| o.status.phase.clone())
        .unwrap_or_default();
    let advance = WavesAdvance {
        write_seconds,
        waves,
        seconds_to_succeeded,
        final_phase,
        server_cpu,
    };

    // B: a revision that fails on canary clusters, rolled back.
    let rollback = if advance.seconds_to_succeeded.is_some() {
        let after_revision = newest_revision(&bundles.rollout_status(BUNDLE).await?);
        let start = run.begin("rollback");
        let cpu = CpuMeter::start(run);
        let began = Instant::now();
        bundles
            .apply(&waves_bundle(3, true, &strategy))
            .await
            .context("write the faulty revision of bundle waves")?;
        let write_seconds = began.elapsed().as_secs_f64();
        // The rollback takes about an interval after the failure (the touched clusters' next
        // syncs); the target is two.
        let deadline = interval * 5 + Duration::from_secs(120);
        let watched = watch(
            run,
            &bundles,
            began,
            after_revision,
            deadline,
            Watch::Rollback,
        )
        .await;
        let server_cpu = cpu.finish(run);
        run.end("rollback", start);
        read_errors += watched.read_errors;
        gap_max = gap_max.max(watched.gap_max);
        Some(rollback_figures(
            &watched.observations,
            RollbackContext {
                write_seconds,
                sim_not_ready_max: watched.sim_not_ready_max,
                server_cpu,
            },
        ))
    } else {
        run.say(&format!(
            "bench: rollback skipped: the good revision's run was last seen {} (not Succeeded)",
            if advance.final_phase.is_empty() {
                "not started"
            } else {
                &advance.final_phase
            }
        ));
        None
    };
    Ok(RolloutWavesResult {
        bundle: BUNDLE.to_string(),
        clusters,
        canary_soak_seconds: canary_soak.as_secs_f64(),
        poll_ms: POLL.as_secs_f64() * 1e3,
        poll_gap_max_ms: gap_max * 1e3,
        read_errors,
        advance,
        rollback,
    })
}

fn optional_seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "not seen".into(), |s| format!("{s:.2} s"))
}

/// The three targets for rollouts, judged at any scale.
pub fn verdicts(config: &BenchConfig, result: &RolloutWavesResult) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    let rollback = result.rollback.as_ref();
    // R1: every decision (each wave advancing, the run succeeding, the rollback) by its bound.
    let mut bounds: Vec<(String, Option<f64>)> = result
        .advance
        .waves
        .iter()
        .map(|wave| (wave.name.clone(), wave.decision_seconds_bound))
        .collect();
    bounds.push((
        "rollback".into(),
        rollback.and_then(|r| r.decision_seconds_bound),
    ));
    let worst = bounds
        .iter()
        .filter_map(|(_, bound)| *bound)
        .fold(0.0, f64::max);
    let missing: Vec<&str> = bounds
        .iter()
        .filter(|(_, bound)| bound.is_none())
        .map(|(name, _)| name.as_str())
        .collect();
    verdicts.push(Verdict {
        id: "R1".into(),
        measure: "rollout decision (advance or roll back) after the report that decides it".into(),
        target: format!("≤ {DECISION_LIMIT_SECONDS:.0} s"),
        measured: format!(
            "worst {worst:.2} s over {} decisions{}",
            bounds.len() - missing.len(),
            if missing.is_empty() {
                String::new()
            } else {
                format!("; not seen: {}", missing.join(", "))
            }
        ),
        met: Some(missing.is_empty() && worst <= DECISION_LIMIT_SECONDS),
        note: format!(
            "upper bounds, read from the rollout status every {:.0} ms (longest gap {:.0} ms)",
            result.poll_ms, result.poll_gap_max_ms
        ),
    });
    // R2: no cluster of a later wave ever on the failed revision.
    verdicts.push(Verdict {
        id: "R2".into(),
        measure: "clusters of waves after a failed one that receive the failed revision".into(),
        target: "0".into(),
        measured: match rollback {
            Some(r) => match &r.failed_wave {
                Some(wave) => format!(
                    "wave {wave} failed ({} of {} clusters); later waves: at most {} clusters on it, {} of {} never started",
                    r.failed_wave_failed,
                    r.failed_wave_clusters,
                    r.later_waves_updated_max,
                    r.later_waves_never_started,
                    r.later_waves
                ),
                None => format!("no wave failed (run last seen {})", r.final_phase),
            },
            None => "not run".into(),
        },
        met: Some(rollback.is_some_and(|r| {
            r.failed_wave.is_some()
                && r.later_waves_updated_max == 0
                && r.later_waves_never_started == r.later_waves
        })),
        note: match rollback.and_then(|r| r.failed_wave.as_deref()) {
            Some(wave) if wave != WAVES[0].0 => {
                format!("the fault was meant for the canary but failed wave {wave}")
            }
            _ => String::new(),
        },
    });
    // R3: back on the stable revision, Ready, within two sync intervals of the failure.
    let limit = config.interval.as_secs_f64() * STABLE_READY_INTERVALS;
    let after_failure = rollback.and_then(|r| r.stable_ready_after_failure_seconds);
    verdicts.push(Verdict {
        id: "R3".into(),
        measure: "failed canary until every touched cluster reports the stable revision Ready"
            .into(),
        target: format!("≤ two sync intervals ({limit:.0} s)"),
        measured: match rollback {
            Some(r) => format!(
                "{} (rolled back {} after the write)",
                optional_seconds(after_failure),
                optional_seconds(r.seconds_to_rolled_back)
            ),
            None => "not run".into(),
        },
        met: Some(after_failure.is_some_and(|seconds| seconds <= limit)),
        note: String::new(),
    });
    verdicts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::WavesRollback;

    /// A rollback of a canary of 8 with one failure, later waves untouched, every cluster Ready
    /// on the stable revision 19.6 s after the failure.
    fn rollback() -> WavesRollback {
        WavesRollback {
            write_seconds: 0.01,
            failed_wave: Some("canary".into()),
            failed_wave_clusters: 8,
            failed_wave_failed: 1,
            seconds_to_first_failure: Some(1.5),
            seconds_to_decision: Some(1.6),
            decision_seconds: Some(0.1),
            decision_seconds_bound: Some(0.2),
            seconds_to_rolled_back: Some(20.0),
            rollback_seconds: Some(18.4),
            seconds_to_stable_ready: Some(21.0),
            stable_ready_after_failure_seconds: Some(19.6),
            final_phase: "RolledBack".into(),
            later_waves_updated_max: 0,
            later_waves: 4,
            later_waves_never_started: 4,
            sim_not_ready_max: 1,
            server_cpu: None,
        }
    }

    fn result(rollback: WavesRollback) -> RolloutWavesResult {
        RolloutWavesResult {
            bundle: BUNDLE.into(),
            clusters: 800,
            canary_soak_seconds: 5.0,
            poll_ms: 100.0,
            poll_gap_max_ms: 110.0,
            read_errors: 0,
            advance: WavesAdvance {
                write_seconds: 0.01,
                waves: Vec::new(),
                seconds_to_succeeded: Some(30.0),
                final_phase: "Succeeded".into(),
                server_cpu: None,
            },
            rollback: Some(rollback),
        }
    }

    fn met(config: &BenchConfig, result: &RolloutWavesResult, id: &str) -> Option<bool> {
        verdicts(config, result)
            .into_iter()
            .find(|verdict| verdict.id == id)
            .and_then(|verdict| verdict.met)
    }

    #[test]
    fn r2_is_met_only_when_a_wave_failed_and_no_later_wave_was_reached() {
        let config = BenchConfig::default();
        assert_eq!(met(&config, &result(rollback()), "R2"), Some(true));
        let seen = WavesRollback {
            later_waves_updated_max: 1,
            ..rollback()
        };
        assert_eq!(met(&config, &result(seen), "R2"), Some(false));
        let started = WavesRollback {
            later_waves_never_started: 3,
            ..rollback()
        };
        assert_eq!(met(&config, &result(started), "R2"), Some(false));
        let nothing_failed = WavesRollback {
            failed_wave: None,
            ..rollback()
        };
        assert_eq!(met(&config, &result(nothing_failed), "R2"), Some(false));
    }

    #[test]
    fn r3_allows_two_sync_intervals_from_the_failure_to_stable_ready() {
        let ten = BenchConfig {
            interval: Duration::from_secs(10),
            ..BenchConfig::default()
        };
        assert_eq!(met(&ten, &result(rollback()), "R3"), Some(true));
        let nine = BenchConfig {
            interval: Duration::from_secs(9),
            ..BenchConfig::default()
        };
        assert_eq!(met(&nine, &result(rollback()), "R3"), Some(false));
    }

    #[test]
    fn r1_judges_every_decision_by_its_bound_and_misses_one_not_seen() {
        let config = BenchConfig::default();
        assert_eq!(met(&config, &result(rollback()), "R1"), Some(true));
        let slow = WavesRollback {
            decision_seconds: Some(0.9),
            decision_seconds_bound: Some(1.05),
            ..rollback()
        };
        assert_eq!(met(&config, &result(slow), "R1"), Some(false));
        let unseen = WavesRollback {
            decision_seconds_bound: None,
            ..rollback()
        };
        assert_eq!(met(&config, &result(unseen), "R1"), Some(false));
    }

    #[test]
    fn revisions_change_content_only_and_the_faulty_one_fails_by_the_targets_value() {
        let strategy = strategy(Duration::from_secs(5), Duration::from_secs(120));
        let good = waves_bundle(2, false, &strategy);
        let faulty = waves_bundle(3, true, &strategy);
        assert_eq!(good.spec.targets, faulty.spec.targets);
        assert_eq!(good.spec.rollout, faulty.spec.rollout);
        assert_ne!(good.spec.resources, faulty.spec.resources);
        assert_eq!(
            faulty.spec.resources[0]["metadata"]["annotations"][SIMULATE_ANNOTATION],
            "${values.simulate}"
        );
        assert!(
            good.spec.resources[0]["metadata"]
                .get("annotations")
                .is_none()
        );
        // The first matching target wins: the fault region's says fail, the rest ok.
        let values: Vec<&str> = faulty
            .spec
            .targets
            .iter()
            .map(|t| t.customization.values["simulate"].as_str())
            .collect();
        assert_eq!(values, ["fail", "ok"]);
        let canary = &strategy.waves[0];
        assert!(canary.mandatory);
        assert_eq!(canary.sort_by.as_deref(), Some("store"));
        assert_eq!(canary.min_soak.as_deref(), Some("5000ms"));
        assert_eq!(strategy.progress_deadline.as_deref(), Some("360s"));
    }
}
