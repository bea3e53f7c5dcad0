//! fleet.yaml's `rolloutStrategy` as the bundle's `spec.rollout`: Fleet's partitions and limits
//! mapped onto flotilla's waves, and a refusal naming the key for what does not map.

use flotilla_api::{IntOrPercent, OfflinePolicy, OnFailure, RolloutStrategy, RolloutWave};
use flotilla_core::rollout::strategy::{self, Amount, MAX_WAVE_NAME_CHARS, MAX_WAVES};
use serde_json::Value;

use super::{Fields, Node};
use crate::RenderError;

/// Keys of `rolloutStrategy` flotilla maps.
const ROLLOUT_USED: &[&str] = &[
    "maxUnavailable",
    "maxUnavailablePartitions",
    "autoPartitionSize",
    "partitions",
];

/// Keys of `rolloutStrategy` that tune only Fleet's controller: `maxNew` caps the deployments it
/// creates per pass (flotilla's agents pull); `autoPartitionThreshold` is the fleet size below
/// which Fleet does not split automatically (flotilla fixes its waves when the bundle is written,
/// before it knows how many clusters match, so an `autoPartitionSize` always splits).
const ROLLOUT_IGNORED: &[&str] = &["maxNew", "autoPartitionThreshold"];

/// Keys of a `rolloutStrategy.partitions` entry (the cluster name and group ones are refused).
const PARTITION_USED: &[&str] = &[
    "name",
    "maxUnavailable",
    "clusterSelector",
    "clusterName",
    "clusterGroup",
    "clusterGroupSelector",
];

/// Maps Fleet's `rolloutStrategy` onto flotilla's `spec.rollout`:
///
/// - each `partitions` entry becomes a selector wave, in order: `clusterSelector` → `selector`,
///   `name` → the wave's name (made a DNS label: `demoRollout` → `demorollout`; unnamed ones are
///   `partition-N`); `clusterName`, `clusterGroup` and `clusterGroupSelector` are refused (a wave
///   takes clusters by their labels). Clusters no partition takes form the last wave,
///   `remaining` (Fleet's API says they join at the end; its controller leaves them out).
/// - without `partitions`, a percentage `autoPartitionSize` becomes that many equal share waves
///   `partition-1`…; unset or `0` gives one wave `all` (what Fleet does under its 200-cluster
///   threshold); a count is refused (the number of waves would depend on the fleet's size).
/// - `maxUnavailable` (a partition's, else the strategy's; Fleet's default `100%`) is both how
///   many clusters update at once (`maxConcurrency`; `0` is 1) and how many may stay unhealthy
///   while the rollout moves on (`maxFailures`).
/// - Fleet never rolls back and waits for Offline clusters as NotReady: `onFailure: Halt`,
///   `offline: fail` (an Offline cluster counts against `maxFailures`, like a NotReady one).
/// - `maxUnavailablePartitions` other than 0 is refused: flotilla's waves run strictly in order
///   and a wave past its `maxFailures` stops the run.
pub(super) fn rollout_strategy(file: &str, node: Node<'_>) -> Result<RolloutStrategy, RenderError> {
    let fields = Fields::new(file, node, "rolloutStrategy", ROLLOUT_USED, ROLLOUT_IGNORED)?;
    if let Some(budget) = fields.amount("maxUnavailablePartitions")?
        && !budget.is_zero()
    {
        return Err(fields.error(
            &fields.path("maxUnavailablePartitions"),
            "cannot be mapped: flotilla runs the partitions' waves strictly in order and stops \
             the rollout at a partition with more unhealthy clusters than its maxUnavailable; \
             set it to 0 (Fleet's default) or remove it, and raise maxUnavailable to tolerate \
             more unhealthy clusters in a partition",
        ));
    }
    // Fleet's default maxUnavailable, 100%, lets every partition count as ready.
    let max_unavailable = fields
        .amount("maxUnavailable")?
        .unwrap_or(Amount::BasisPoints(10_000));
    let waves = match fields.list("partitions")?.as_slice() {
        [] => auto_partitions(&fields)?,
        partitions => {
            if partitions.len() > MAX_WAVES {
                return Err(fields.error(
                    &fields.path("partitions"),
                    &format!(
                        "has {} partitions; flotilla runs at most {MAX_WAVES} waves: merge some",
                        partitions.len()
                    ),
                ));
            }
            let mut taken = Vec::new();
            let mut waves = Vec::new();
            for (index, item) in partitions.iter().enumerate() {
                waves.push(partition(file, *item, index, &mut taken)?);
            }
            waves
        }
    };
    let strategy = RolloutStrategy {
        waves,
        max_concurrency: Some(concurrency(max_unavailable)),
        max_failures: Some(max_unavailable.to_api()),
        on_failure: OnFailure::Halt,
        offline: OfflinePolicy::Fail,
        ..RolloutStrategy::default()
    };
    // The mapping only writes what compiles; a refusal here is a flotilla bug, still named.
    strategy::compile("fleet-yaml", &strategy).map_err(|error| {
        fields.error(
            "rolloutStrategy",
            &format!("maps to a spec.rollout flotilla refuses: {error}"),
        )
    })?;
    Ok(strategy)
}

/// Fleet's `maxUnavailable` as `maxConcurrency`: `0` (update nothing that is healthy) is read
/// as one cluster at a time, the strictest pace that still moves.
fn concurrency(max_unavailable: Amount) -> IntOrPercent {
    match max_unavailable {
        Amount::Count(0) | Amount::BasisPoints(0) => IntOrPercent::Int(1),
        other => other.to_api(),
    }
}

/// The waves of `autoPartitionSize` (no `partitions`): equal shares of the targets.
fn auto_partitions(fields: &Fields<'_>) -> Result<Vec<RolloutWave>, RenderError> {
    let all = |name: &str| RolloutWave {
        name: name.into(),
        clusters: Some(IntOrPercent::Percent("100%".into())),
        ..RolloutWave::default()
    };
    // Fleet turns automatic partitioning off with a count of 0 or less.
    if let Some(Value::Number(number)) = fields.get("autoPartitionSize")
        && number.as_i64().is_some_and(|n| n <= 0)
    {
        return Ok(vec![all("all")]);
    }
    let size = match fields.amount("autoPartitionSize")? {
        None | Some(Amount::BasisPoints(0)) => return Ok(vec![all("all")]),
        Some(Amount::Count(count)) => {
            return Err(fields.error(
                &fields.path("autoPartitionSize"),
                &format!(
                    "cannot be mapped: flotilla fixes a bundle's waves when it is written, before \
                     it knows how many clusters match, so partitions of {count} clusters each \
                     have no fixed number; write a percentage (e.g. 25%) or list partitions"
                ),
            ));
        }
        Some(Amount::BasisPoints(bp)) => bp,
    };
    let count = 10_000u32.div_ceil(size) as usize;
    if count > MAX_WAVES {
        return Err(fields.error(
            &fields.path("autoPartitionSize"),
            &format!(
                "would split the targets into {count} partitions; flotilla runs at most \
                 {MAX_WAVES} waves: give at least 3.13%"
            ),
        ));
    }
    // Wave k takes an equal share of the whole: size / (100% - k * size) of what is left.
    Ok((0..count)
        .map(|k| {
            let left = 10_000 - k as u32 * size;
            let share = if k + 1 == count {
                10_000
            } else {
                // Rounded down: the planner rounds a share up, so the waves stay equal.
                (size as u64 * 10_000 / left as u64).clamp(1, 10_000) as u32
            };
            RolloutWave {
                name: format!("partition-{}", k + 1),
                clusters: Some(Amount::BasisPoints(share).to_api()),
                ..RolloutWave::default()
            }
        })
        .collect())
}

/// One `partitions` entry as a selector wave.
fn partition(
    file: &str,
    value: Node<'_>,
    index: usize,
    taken: &mut Vec<String>,
) -> Result<RolloutWave, RenderError> {
    let path = format!("rolloutStrategy.partitions[{index}]");
    let fields = Fields::new(file, value, &path, PARTITION_USED, &[])?;
    for (key, instead) in [
        (
            "clusterName",
            "a rollout wave takes clusters by their labels: label the cluster (e.g. \
             rollout=canary) and use clusterSelector",
        ),
        (
            "clusterGroup",
            "a rollout wave takes clusters by their labels, not by group: use clusterSelector \
             with the group's selector",
        ),
        (
            "clusterGroupSelector",
            "is not supported by flotilla (groups have no labels): use clusterSelector",
        ),
    ] {
        if fields.get(key).is_some() {
            let problem = if key == "clusterGroupSelector" {
                instead.to_string()
            } else {
                format!("cannot be mapped: {instead}")
            };
            return Err(fields.error(&fields.path(key), &problem));
        }
    }
    let selector = fields.selector("clusterSelector")?.ok_or_else(|| {
        fields.error(
            &path,
            "takes no clusters: set clusterSelector (use {} for every cluster left)",
        )
    })?;
    let name = wave_name(fields.string("name")?.as_deref(), index, taken);
    let max_unavailable = fields.amount("maxUnavailable")?;
    Ok(RolloutWave {
        name,
        selector: Some(selector),
        max_concurrency: max_unavailable.map(concurrency),
        max_failures: max_unavailable.map(Amount::to_api),
        ..RolloutWave::default()
    })
}

/// A Fleet partition's display name as a wave name: a DNS label (lower case, runs of other
/// characters as one `-`), `partition-N` when nothing is left, `-2`, `-3`… when already taken.
fn wave_name(name: Option<&str>, index: usize, taken: &mut Vec<String>) -> String {
    let mut label = String::new();
    for c in name.unwrap_or("").chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            label.push(c);
        } else if !label.is_empty() && !label.ends_with('-') {
            label.push('-');
        }
    }
    label.truncate(MAX_WAVE_NAME_CHARS - 4);
    let label = match label.trim_end_matches('-') {
        "" => format!("partition-{}", index + 1),
        trimmed => trimmed.to_string(),
    };
    let mut unique = label.clone();
    let mut number = 2;
    while taken.contains(&unique) {
        unique = format!("{label}-{number}");
        number += 1;
    }
    taken.push(unique.clone());
    unique
}
