//! A bundle's `spec.rollout`, compiled: waves with their members and limits resolved to numbers,
//! durations in milliseconds, defaults applied. Built once per write (validation, [`compile`]) and
//! snapshotted into a run, so the planner never parses text.

use std::collections::BTreeMap;

use flotilla_api::{
    IntOrPercent, LateJoiners, OfflinePolicy, OnFailure, RolloutStrategy, RolloutWave,
};

use crate::{
    field_error::FieldError,
    selector::{Selector, validate_label_key},
};

/// A compiled rollout strategy. `waves` is never empty: clusters the written waves leave over
/// form a last implicit wave.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    pub waves: Vec<Wave>,
    pub on_failure: OnFailure,
    pub late_joiners: LateJoiners,
    pub offline: OfflinePolicy,
    /// Seed of the stable shuffle (see [`rank`]).
    pub seed: u64,
}

/// One compiled wave.
#[derive(Debug, Clone, PartialEq)]
pub struct Wave {
    pub name: String,
    pub members: Members,
    /// Canary: tolerates no failure (`max_failures` is `Count(0)`).
    pub mandatory: bool,
    /// Started-but-not-done clusters at once; resolved against the wave's size, rounded up, at
    /// least 1.
    pub max_concurrency: Amount,
    pub min_soak_ms: u64,
    pub progress_deadline_ms: u64,
    /// Failed clusters tolerated; resolved against the wave's size, rounded down.
    pub max_failures: Amount,
    pub pause_after: bool,
}

/// Which of the clusters not taken by earlier waves a wave takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Members {
    /// A share of them, in the order of `sort_by`'s label value, then of [`rank`].
    Share {
        amount: Amount,
        sort_by: Option<String>,
    },
    /// Those whose labels match.
    Selector(Selector),
}

/// A count, or a share in basis points (1% = 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Count(u64),
    BasisPoints(u32),
}

impl Amount {
    /// The amount of `total`, a share rounded up (a 10% canary of 5 clusters is 1 cluster).
    pub fn of_rounded_up(self, total: u64) -> u64 {
        match self {
            Amount::Count(count) => count.min(total),
            Amount::BasisPoints(bp) => (total * bp as u64).div_ceil(10_000),
        }
    }

    /// The amount of `total`, a share rounded down (1% failures of 50 clusters tolerates none).
    pub fn of_rounded_down(self, total: u64) -> u64 {
        match self {
            Amount::Count(count) => count.min(total),
            Amount::BasisPoints(bp) => total * bp as u64 / 10_000,
        }
    }
}

/// A cluster's place in a run's stable shuffle: the first 8 bytes of SHA-256 over the seed and
/// the cluster's name. Stable across processes and versions (a restarted server must order the
/// fleet exactly as before), so never change it.
pub fn rank(seed: u64, cluster: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(cluster.as_bytes());
    let digest = hasher.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"))
}

/// The seed a strategy without `seed` uses: derived from the bundle's name, so the same clusters
/// are its canaries run after run.
pub fn default_seed(bundle: &str) -> u64 {
    rank(0, bundle)
}

/// Most waves a strategy may write: each is a step a person follows in `flotilla rollout status`
/// and a record of its progress in the run; real plans use a handful (canary, a region or two,
/// the rest), and 32 leaves room for a ring per region of a large fleet. The implicit last wave
/// comes on top.
pub const MAX_WAVES: usize = 32;

/// Longest wave name: a DNS label, so it reads the same in URLs, logs and label values.
pub const MAX_WAVE_NAME_CHARS: usize = 63;

/// Longest `minSoak` and `progressDeadline`: a week. A run holds its candidate revision's content
/// and the clusters' pins while it waits; past a week, a paused wave (`pauseAfter`) says it better.
pub const MAX_DURATION_MS: u64 = 7 * 24 * 3600 * 1000;

/// `progressDeadline` of a strategy that sets none: long enough for image pulls and a rolling
/// update on a slow edge link, short enough that a stuck cluster is noticed within a coffee break.
pub const DEFAULT_PROGRESS_DEADLINE_MS: u64 = 10 * 60 * 1000;

/// Name of the last wave a strategy gets when its written waves may leave clusters over.
pub const IMPLICIT_WAVE_NAME: &str = "remaining";

/// 100%, in basis points.
const ALL: u32 = 10_000;

/// Reads a count or a percentage (`5`, `10%`, `12.5%`, `0.25%`; at most two decimals and 100%).
/// Zero is returned as is: callers decide whether it is allowed.
pub fn amount(value: &IntOrPercent) -> Result<Amount, String> {
    let text = match value {
        IntOrPercent::Int(count) => return Ok(Amount::Count(*count)),
        IntOrPercent::Percent(text) => text.trim(),
    };
    let Some(number) = text.strip_suffix('%') else {
        return Err(
            if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
                format!(
                    "{text:?} is quoted; write a count without quotes ({text}) or a percentage ({text}%)"
                )
            } else {
                format!("{text:?} is not a count or a percentage; write e.g. 5 or 10%")
            },
        );
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || number.ends_with('.') {
        return Err(format!(
            "{text:?} is not a percentage; write it like 10% or 12.5%"
        ));
    }
    if fraction.len() > 2 {
        return Err(format!(
            "{text:?} has more than two decimals; round it to e.g. 0.25%"
        ));
    }
    let whole: u64 = whole
        .parse()
        .map_err(|_| format!("{text:?} is over 100%; give at most 100%"))?;
    let fraction: u64 = format!("{fraction:0<2}").parse().unwrap_or(0);
    let basis_points = whole.saturating_mul(100).saturating_add(fraction);
    if basis_points > ALL as u64 {
        return Err(format!("{text:?} is over 100%; give at most 100%"));
    }
    Ok(Amount::BasisPoints(basis_points as u32))
}

impl Amount {
    /// `0` or `0%`.
    pub fn is_zero(self) -> bool {
        matches!(self, Amount::Count(0) | Amount::BasisPoints(0))
    }

    /// The amount as written in `spec.rollout` (`5`, `12.5%`).
    pub fn to_api(self) -> IntOrPercent {
        match self {
            Amount::Count(count) => IntOrPercent::Int(count),
            Amount::BasisPoints(bp) if bp % 100 == 0 => {
                IntOrPercent::Percent(format!("{}%", bp / 100))
            }
            Amount::BasisPoints(bp) => {
                let text = format!("{}.{:02}", bp / 100, bp % 100);
                IntOrPercent::Percent(format!("{}%", text.trim_end_matches('0')))
            }
        }
    }
}

/// Compiles `spec.rollout` of bundle `bundle`: every rule a strategy must keep, answered with the
/// field to fix (`spec.rollout.waves[1].clusters`). Waves take the strategy-level `minSoak`,
/// `progressDeadline`, `maxConcurrency` and `maxFailures` when they set none (else `0s`, `10m`,
/// `100%`, `0`); when the last written wave is not `clusters: 100%`, a last wave named
/// `remaining` (`remaining-2`, … when taken) takes what the others leave, with those defaults.
pub fn compile(bundle: &str, rollout: &RolloutStrategy) -> Result<Strategy, FieldError> {
    if rollout.waves.len() > MAX_WAVES {
        return Err(FieldError::new(
            "spec.rollout.waves",
            format!(
                "spec.rollout.waves: {} waves; a strategy may have at most {MAX_WAVES}: merge some (a share wave can take many clusters)",
                rollout.waves.len()
            ),
        ));
    }
    let defaults = Defaults::of(rollout)?;
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut waves = Vec::with_capacity(rollout.waves.len() + 1);
    for (index, wave) in rollout.waves.iter().enumerate() {
        let path = format!("spec.rollout.waves[{index}]");
        wave_name(&path, &wave.name)?;
        if let Some(first) = names.insert(&wave.name, index) {
            let field = format!("{path}.name");
            return Err(FieldError::new(
                field.clone(),
                format!(
                    "{field}: {:?} is already the name of spec.rollout.waves[{first}]; give each wave its own name",
                    wave.name
                ),
            ));
        }
        waves.push(compile_wave(&path, wave, &defaults)?);
    }
    let covers_the_rest = waves.last().is_some_and(|wave: &Wave| {
        matches!(
            wave.members,
            Members::Share {
                amount: Amount::BasisPoints(ALL),
                ..
            }
        )
    });
    if !covers_the_rest {
        let mut name = IMPLICIT_WAVE_NAME.to_string();
        let mut number = 2;
        while names.contains_key(name.as_str()) {
            name = format!("{IMPLICIT_WAVE_NAME}-{number}");
            number += 1;
        }
        defaults.check_soak_fits("spec.rollout")?;
        waves.push(Wave {
            name,
            members: Members::Share {
                amount: Amount::BasisPoints(ALL),
                sort_by: None,
            },
            mandatory: false,
            max_concurrency: defaults.max_concurrency,
            min_soak_ms: defaults.min_soak.ms,
            progress_deadline_ms: defaults.progress_deadline.ms,
            max_failures: defaults.max_failures,
            pause_after: false,
        });
    }
    Ok(Strategy {
        waves,
        on_failure: rollout.on_failure,
        late_joiners: rollout.late_joiners,
        offline: rollout.offline,
        seed: rollout.seed.unwrap_or_else(|| default_seed(bundle)),
    })
}

/// A duration as compiled, with the field it came from (`None`: the built-in default).
#[derive(Debug, Clone)]
struct Timed {
    ms: u64,
    field: Option<String>,
}

/// The strategy-level values waves fall back to.
struct Defaults {
    min_soak: Timed,
    progress_deadline: Timed,
    max_concurrency: Amount,
    max_failures: Amount,
}

impl Defaults {
    fn of(rollout: &RolloutStrategy) -> Result<Defaults, FieldError> {
        let min_soak = match &rollout.min_soak {
            Some(text) => Timed {
                ms: min_soak("spec.rollout.minSoak", text)?,
                field: Some("spec.rollout.minSoak".into()),
            },
            None => Timed { ms: 0, field: None },
        };
        let progress_deadline = match &rollout.progress_deadline {
            Some(text) => Timed {
                ms: progress_deadline("spec.rollout.progressDeadline", text)?,
                field: Some("spec.rollout.progressDeadline".into()),
            },
            None => Timed {
                ms: DEFAULT_PROGRESS_DEADLINE_MS,
                field: None,
            },
        };
        let max_concurrency = match &rollout.max_concurrency {
            Some(value) => max_concurrency("spec.rollout.maxConcurrency", value)?,
            None => Amount::BasisPoints(ALL),
        };
        let max_failures = match &rollout.max_failures {
            Some(value) => max_failures("spec.rollout.maxFailures", value)?,
            None => Amount::Count(0),
        };
        Ok(Defaults {
            min_soak,
            progress_deadline,
            max_concurrency,
            max_failures,
        })
    }

    /// The strategy-level soak fits in the strategy-level deadline (what the implicit wave uses).
    fn check_soak_fits(&self, path: &str) -> Result<(), FieldError> {
        soak_fits(path, &self.min_soak, &self.progress_deadline)
    }
}

fn compile_wave(path: &str, wave: &RolloutWave, defaults: &Defaults) -> Result<Wave, FieldError> {
    let members = match (&wave.clusters, &wave.selector) {
        (Some(clusters), None) => {
            let field = format!("{path}.clusters");
            let amount =
                amount(clusters).map_err(|e| FieldError::new(&field, format!("{field}: {e}")))?;
            if amount.is_zero() {
                return Err(FieldError::new(
                    &field,
                    format!(
                        "{field}: a wave must take at least one cluster; give a count of 1 or more or a percentage above 0%"
                    ),
                ));
            }
            let sort_by = match &wave.sort_by {
                Some(key) => {
                    let field = format!("{path}.sortBy");
                    validate_label_key(key).map_err(|e| {
                        FieldError::new(&field, format!("{field}: {key:?} is not a label key: {e}"))
                    })?;
                    Some(key.clone())
                }
                None => None,
            };
            Members::Share { amount, sort_by }
        }
        (None, Some(selector)) => {
            if wave.sort_by.is_some() {
                let field = format!("{path}.sortBy");
                return Err(FieldError::new(
                    &field,
                    format!(
                        "{field}: sortBy orders the clusters a share wave (clusters) takes; a selector wave takes every cluster it matches: remove sortBy"
                    ),
                ));
            }
            let field = format!("{path}.selector");
            Members::Selector(
                Selector::from_api(selector)
                    .map_err(|e| FieldError::new(&field, format!("{field}: {e}")))?,
            )
        }
        _ => {
            return Err(FieldError::new(
                path,
                format!(
                    "{path}: set exactly one of clusters (a share such as 10% or 5) or selector (labels to match)"
                ),
            ));
        }
    };
    let max_concurrency = match &wave.max_concurrency {
        Some(value) => max_concurrency(&format!("{path}.maxConcurrency"), value)?,
        None => defaults.max_concurrency,
    };
    let max_failures = match (&wave.max_failures, wave.mandatory) {
        (Some(value), mandatory) => {
            let field = format!("{path}.maxFailures");
            let amount = max_failures(&field, value)?;
            if mandatory && !amount.is_zero() {
                return Err(FieldError::new(
                    &field,
                    format!(
                        "{field}: a mandatory wave tolerates no failure, so maxFailures must be 0: remove maxFailures, or remove mandatory to tolerate failures"
                    ),
                ));
            }
            amount
        }
        (None, true) => Amount::Count(0),
        (None, false) => defaults.max_failures,
    };
    let min_soak_timed = match &wave.min_soak {
        Some(text) => {
            let field = format!("{path}.minSoak");
            Timed {
                ms: min_soak(&field, text)?,
                field: Some(field),
            }
        }
        None => defaults.min_soak.clone(),
    };
    let deadline_timed = match &wave.progress_deadline {
        Some(text) => {
            let field = format!("{path}.progressDeadline");
            Timed {
                ms: progress_deadline(&field, text)?,
                field: Some(field),
            }
        }
        None => defaults.progress_deadline.clone(),
    };
    soak_fits(path, &min_soak_timed, &deadline_timed)?;
    Ok(Wave {
        name: wave.name.clone(),
        members,
        mandatory: wave.mandatory,
        max_concurrency,
        min_soak_ms: min_soak_timed.ms,
        progress_deadline_ms: deadline_timed.ms,
        max_failures: if wave.mandatory {
            Amount::Count(0)
        } else {
            max_failures
        },
        pause_after: wave.pause_after,
    })
}

/// Wave names are DNS labels: 1 to 63 lower-case letters, digits and `-`, alphanumeric at both
/// ends.
fn wave_name(path: &str, name: &str) -> Result<(), FieldError> {
    let field = format!("{path}.name");
    let problem = if name.is_empty() {
        Some("is missing; name the wave (e.g. canary)".to_string())
    } else if name.chars().count() > MAX_WAVE_NAME_CHARS {
        Some(format!(
            "{} is {} characters long; use at most {MAX_WAVE_NAME_CHARS}",
            crate::validate::shown(name),
            name.chars().count()
        ))
    } else {
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        let edge =
            |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        (!name.chars().all(allowed) || !edge(name.chars().next()) || !edge(name.chars().last()))
            .then(|| {
                format!(
                    "{name:?} is not a wave name: use lower-case letters, digits and '-', starting and ending with a letter or digit (e.g. eu-canary)"
                )
            })
    };
    match problem {
        Some(problem) => Err(FieldError::new(&field, format!("{field} {problem}"))),
        None => Ok(()),
    }
}

fn max_concurrency(field: &str, value: &IntOrPercent) -> Result<Amount, FieldError> {
    let parsed = amount(value).map_err(|e| FieldError::new(field, format!("{field}: {e}")))?;
    if parsed.is_zero() {
        return Err(FieldError::new(
            field,
            format!(
                "{field}: 0 would never start a cluster; give 1 or more, or a percentage above 0%"
            ),
        ));
    }
    Ok(parsed)
}

fn max_failures(field: &str, value: &IntOrPercent) -> Result<Amount, FieldError> {
    amount(value).map_err(|e| FieldError::new(field, format!("{field}: {e}")))
}

fn duration_ms(field: &str, text: &str) -> Result<u64, FieldError> {
    let parsed = humantime::parse_duration(text.trim()).map_err(|e| {
        FieldError::new(
            field,
            format!("{field}: {text:?} is not a duration ({e}); write it like 30s, 5m or 1h"),
        )
    })?;
    let ms = u64::try_from(parsed.as_millis()).unwrap_or(u64::MAX);
    if ms > MAX_DURATION_MS {
        return Err(FieldError::new(
            field,
            format!(
                "{field}: {text} is longer than 7 days; give at most 7d (use pauseAfter to hold a wave longer)"
            ),
        ));
    }
    Ok(ms)
}

fn min_soak(field: &str, text: &str) -> Result<u64, FieldError> {
    duration_ms(field, text)
}

fn progress_deadline(field: &str, text: &str) -> Result<u64, FieldError> {
    let ms = duration_ms(field, text)?;
    if ms == 0 {
        return Err(FieldError::new(
            field,
            format!("{field}: 0 would fail every cluster at once; give a duration such as 10m"),
        ));
    }
    Ok(ms)
}

/// A cluster must be able to finish its soak before its deadline.
fn soak_fits(path: &str, soak: &Timed, deadline: &Timed) -> Result<(), FieldError> {
    if deadline.ms > soak.ms {
        return Ok(());
    }
    let show =
        |ms: u64| humantime::format_duration(std::time::Duration::from_millis(ms)).to_string();
    // Name the field to change: the deadline where written, else the soak (a default deadline
    // is exceeded only by a written soak).
    let field = deadline
        .field
        .clone()
        .or_else(|| soak.field.clone())
        .unwrap_or_else(|| path.to_string());
    let described = |timed: &Timed| match &timed.field {
        Some(from) if *from == field => show(timed.ms),
        Some(from) => format!("{} (from {from})", show(timed.ms)),
        None => format!("{} (the default)", show(timed.ms)),
    };
    // Say which wave, when the field named is not the wave's own.
    let wave = if path == "spec.rollout" {
        " in the implicit last wave".to_string()
    } else if field.starts_with(path) {
        String::new()
    } else {
        format!(" in {path}")
    };
    Err(FieldError::new(
        &field,
        format!(
            "{field}: progressDeadline {} does not exceed minSoak {}{wave}: a cluster could never finish its soak in time; raise progressDeadline above {} or lower minSoak",
            described(deadline),
            described(soak),
            show(soak.ms),
        ),
    ))
}

#[cfg(test)]
mod tests;
