//! How long a run will take, told before it starts, from the scenario's phases: registration at
//! a rate the bench has measured, the phases that wait for the fleet's syncs in sync intervals,
//! and the fixed durations asked for. A rough guide ("about"), not a deadline.

use std::time::Duration;

use crate::{BenchConfig, Scenario};

/// Registrations per second the bench has seen from a started server (docs/benchmarks.md:
/// 8,000–26,000 clusters/s); the low end, so the estimate errs long.
const REGISTRATIONS_PER_SECOND: f64 = 8_000.0;
/// Bundle deployments per second a converge reaches at scale (4,000,000 in 185–314 s).
const DEPLOYMENTS_PER_SECOND: f64 = 15_000.0;
/// Starting the server, creating the token, writing the report.
const OVERHEAD_SECONDS: f64 = 5.0;

/// The expected length of the run `config` describes.
pub fn expected_duration(config: &BenchConfig) -> Duration {
    let interval = config.interval.as_secs_f64();
    let clusters = f64::from(config.clusters);
    let runs = |phase| config.scenario.runs(phase);
    let mut seconds = OVERHEAD_SECONDS + clusters / REGISTRATIONS_PER_SECOND;
    if config.scenario != Scenario::Register {
        // Agents learn of the bundles at their next sync: about an interval, more at scale.
        let deployments = clusters * f64::from(config.bundles);
        seconds += interval + deployments / DEPLOYMENTS_PER_SECOND;
    }
    if runs(Scenario::Steady) {
        seconds += config.duration.as_secs_f64();
    }
    if runs(Scenario::Rollout) {
        seconds += interval + clusters / DEPLOYMENTS_PER_SECOND;
    }
    if runs(Scenario::Api) {
        seconds += config.api_duration.as_secs_f64();
    }
    if runs(Scenario::Restart) && config.server.is_none() {
        // Writes until the kill, the restart, then every cluster's next sync.
        seconds += 5.0 + interval;
    }
    if runs(Scenario::RolloutWaves) {
        // The first revision everywhere (an interval), five waves of about an interval each
        // plus the canary's soak, then the failing revision: a canary and its rollback.
        seconds += 8.0 * interval + 2.0 * config.canary_soak.as_secs_f64();
    }
    Duration::from_secs_f64(seconds)
}

/// "about 17 minutes", "about 40 seconds", "about 1 hour 5 minutes".
pub fn about(duration: Duration) -> String {
    let seconds = duration.as_secs_f64().round() as u64;
    let plural = |count: u64, unit: &str| {
        if count == 1 {
            format!("1 {unit}")
        } else {
            format!("{count} {unit}s")
        }
    };
    if seconds < 90 {
        format!("about {}", plural(seconds.max(1), "second"))
    } else if seconds < 3600 {
        format!("about {}", plural((seconds + 30) / 60, "minute"))
    } else {
        let minutes = (seconds + 30) / 60;
        match minutes % 60 {
            0 => format!("about {}", plural(minutes / 60, "hour")),
            rest => format!(
                "about {} {}",
                plural(minutes / 60, "hour"),
                plural(rest, "minute")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(scenario: Scenario, clusters: u32) -> BenchConfig {
        BenchConfig {
            scenario,
            clusters,
            ..BenchConfig::default()
        }
    }

    #[test]
    fn a_steady_run_lasts_at_least_its_duration_and_a_converge() {
        let steady = expected_duration(&config(Scenario::Steady, 10_000)).as_secs_f64();
        // 10 minutes held, an interval to converge, a second or two to register.
        assert!((720.0..760.0).contains(&steady), "{steady}");
    }

    #[test]
    fn all_adds_every_phase_and_waves_adds_its_intervals() {
        let all = expected_duration(&config(Scenario::All, 10_000));
        let steady = expected_duration(&config(Scenario::Steady, 10_000));
        assert!(
            all > steady + Duration::from_secs(120 + 60 + 120),
            "{all:?}"
        );
        let register = expected_duration(&config(Scenario::Register, 10_000));
        assert!(register < Duration::from_secs(10), "{register:?}");
        let waves = expected_duration(&config(Scenario::RolloutWaves, 10_000));
        assert!(waves > Duration::from_secs(8 * 120), "{waves:?}");
    }

    #[test]
    fn registration_grows_with_the_fleet() {
        let small = expected_duration(&config(Scenario::Register, 10_000));
        let large = expected_duration(&config(Scenario::Register, 1_000_000));
        assert!(
            large > small + Duration::from_secs(100),
            "{small:?} {large:?}"
        );
    }

    #[test]
    fn durations_read_in_the_largest_sensible_unit() {
        assert_eq!(about(Duration::from_secs(40)), "about 40 seconds");
        assert_eq!(about(Duration::from_secs(1000)), "about 17 minutes");
        assert_eq!(about(Duration::from_secs(3600)), "about 1 hour");
        assert_eq!(about(Duration::from_secs(3900)), "about 1 hour 5 minutes");
    }
}
