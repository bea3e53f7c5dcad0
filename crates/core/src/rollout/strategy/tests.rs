//! The rules `compile` keeps, one test each, and a table of refusals with the field they name.

use serde_json::json;

use super::*;

/// A strategy from its JSON form, as a client writes it.
fn strategy(value: serde_json::Value) -> RolloutStrategy {
    serde_json::from_value(value).expect("a well-formed RolloutStrategy")
}

fn compiled(value: serde_json::Value) -> Strategy {
    compile("web", &strategy(value)).unwrap_or_else(|e| panic!("refused: {e}"))
}

fn refused(value: serde_json::Value) -> FieldError {
    compile("web", &strategy(value)).expect_err("accepted")
}

fn names(strategy: &Strategy) -> Vec<&str> {
    strategy.waves.iter().map(|w| w.name.as_str()).collect()
}

fn share(amount: Amount) -> Members {
    Members::Share {
        amount,
        sort_by: None,
    }
}

#[test]
fn an_empty_strategy_is_one_implicit_wave_taking_every_cluster_with_builtin_defaults() {
    let strategy = compiled(json!({}));
    assert_eq!(
        strategy.waves,
        [Wave {
            name: "remaining".into(),
            members: share(Amount::BasisPoints(10_000)),
            mandatory: false,
            max_concurrency: Amount::BasisPoints(10_000),
            min_soak_ms: 0,
            progress_deadline_ms: 600_000,
            max_failures: Amount::Count(0),
            pause_after: false,
        }]
    );
    assert_eq!(strategy.on_failure, OnFailure::Rollback);
    assert_eq!(strategy.late_joiners, LateJoiners::Stable);
    assert_eq!(strategy.offline, OfflinePolicy::Skip);
}

#[test]
fn waves_take_the_strategy_defaults_unless_they_set_their_own() {
    let strategy = compiled(json!({
        "minSoak": "30s",
        "progressDeadline": "15m",
        "maxConcurrency": "25%",
        "maxFailures": 2,
        "waves": [
            {"name": "canary", "clusters": 1},
            {"name": "eu", "selector": {"matchLabels": {"region": "eu"}},
             "minSoak": "2m", "progressDeadline": "1h", "maxConcurrency": 5,
             "maxFailures": "10%", "pauseAfter": true},
        ],
    }));
    let canary = &strategy.waves[0];
    assert_eq!(canary.min_soak_ms, 30_000);
    assert_eq!(canary.progress_deadline_ms, 900_000);
    assert_eq!(canary.max_concurrency, Amount::BasisPoints(2_500));
    assert_eq!(canary.max_failures, Amount::Count(2));
    assert!(!canary.pause_after);
    let eu = &strategy.waves[1];
    assert_eq!(eu.min_soak_ms, 120_000);
    assert_eq!(eu.progress_deadline_ms, 3_600_000);
    assert_eq!(eu.max_concurrency, Amount::Count(5));
    assert_eq!(eu.max_failures, Amount::BasisPoints(1_000));
    assert!(eu.pause_after);
    // The implicit wave takes the strategy's defaults, not the last wave's settings.
    let remaining = &strategy.waves[2];
    assert_eq!(remaining.name, "remaining");
    assert_eq!(remaining.min_soak_ms, 30_000);
    assert_eq!(remaining.progress_deadline_ms, 900_000);
    assert_eq!(remaining.max_concurrency, Amount::BasisPoints(2_500));
    assert_eq!(remaining.max_failures, Amount::Count(2));
}

#[test]
fn a_last_wave_short_of_all_clusters_gets_an_implicit_remaining_wave() {
    let short = compiled(json!({"waves": [{"name": "a", "clusters": "99.99%"}]}));
    assert_eq!(names(&short), ["a", "remaining"]);
    let count = compiled(json!({"waves": [{"name": "a", "clusters": 100000}]}));
    assert_eq!(names(&count), ["a", "remaining"], "a count is not all");
    let selector = compiled(json!({"waves": [{"name": "a", "selector": {}}]}));
    assert_eq!(names(&selector), ["a", "remaining"]);
}

#[test]
fn a_last_wave_of_100_percent_needs_no_implicit_wave() {
    let strategy = compiled(json!({"waves": [
        {"name": "canary", "clusters": "10%"},
        {"name": "rest", "clusters": "100%", "sortBy": "region"},
    ]}));
    assert_eq!(names(&strategy), ["canary", "rest"]);
    assert_eq!(
        strategy.waves[1].members,
        Members::Share {
            amount: Amount::BasisPoints(10_000),
            sort_by: Some("region".into())
        }
    );
}

#[test]
fn the_implicit_wave_takes_the_first_free_name() {
    let strategy = compiled(json!({"waves": [
        {"name": "remaining", "clusters": 1},
        {"name": "remaining-2", "clusters": 1},
    ]}));
    assert_eq!(
        names(&strategy),
        ["remaining", "remaining-2", "remaining-3"]
    );
}

#[test]
fn a_mandatory_wave_tolerates_no_failure_whatever_the_strategy_default() {
    let strategy = compiled(json!({
        "maxFailures": "50%",
        "waves": [
            {"name": "canary", "clusters": 2, "mandatory": true},
            {"name": "strict", "clusters": 2, "mandatory": true, "maxFailures": 0},
        ],
    }));
    assert_eq!(strategy.waves[0].max_failures, Amount::Count(0));
    assert!(strategy.waves[0].mandatory);
    assert_eq!(strategy.waves[1].max_failures, Amount::Count(0));
    assert_eq!(strategy.waves[2].max_failures, Amount::BasisPoints(5_000));
}

#[test]
fn shares_are_counts_or_percentages_in_basis_points() {
    for (written, expected) in [
        (json!(5), Amount::Count(5)),
        (json!("10%"), Amount::BasisPoints(1_000)),
        (json!("12.5%"), Amount::BasisPoints(1_250)),
        (json!("0.25%"), Amount::BasisPoints(25)),
        (json!("100%"), Amount::BasisPoints(10_000)),
        (json!("100.00%"), Amount::BasisPoints(10_000)),
    ] {
        let strategy = compiled(json!({"waves": [{"name": "a", "clusters": written}]}));
        assert_eq!(strategy.waves[0].members, share(expected), "{written}");
        assert_eq!(
            amount(&expected.to_api()),
            Ok(expected),
            "{expected:?} round-trips"
        );
    }
    assert_eq!(
        Amount::BasisPoints(1_250).to_api(),
        IntOrPercent::Percent("12.5%".into())
    );
    assert_eq!(
        Amount::BasisPoints(3_333).to_api(),
        IntOrPercent::Percent("33.33%".into())
    );
}

#[test]
fn selector_waves_compile_like_target_selectors() {
    let selector = json!({
        "matchLabels": {"region": "eu"},
        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}],
    });
    let strategy = compiled(json!({"waves": [{"name": "eu", "selector": selector.clone()}]}));
    let expected = Selector::from_api(&serde_json::from_value(selector).unwrap()).unwrap();
    assert_eq!(strategy.waves[0].members, Members::Selector(expected));
}

#[test]
fn the_seed_is_the_written_one_or_derived_from_the_bundle_name() {
    assert_eq!(compiled(json!({"seed": 7})).seed, 7);
    assert_eq!(compiled(json!({})).seed, default_seed("web"));
    let other = compile("api", &strategy(json!({}))).unwrap();
    assert_ne!(other.seed, default_seed("web"));
}

#[test]
fn the_failure_late_joiner_and_offline_policies_are_carried() {
    let strategy = compiled(json!({
        "onFailure": "Halt", "lateJoiners": "lastWave", "offline": "fail",
    }));
    assert_eq!(strategy.on_failure, OnFailure::Halt);
    assert_eq!(strategy.late_joiners, LateJoiners::LastWave);
    assert_eq!(strategy.offline, OfflinePolicy::Fail);
}

#[test]
fn durations_up_to_seven_days_are_accepted() {
    let strategy = compiled(json!({"waves": [
        {"name": "a", "clusters": "100%", "minSoak": "6d 23h", "progressDeadline": "7d"},
    ]}));
    assert_eq!(strategy.waves[0].min_soak_ms, (6 * 24 + 23) * 3_600_000);
    assert_eq!(strategy.waves[0].progress_deadline_ms, MAX_DURATION_MS);
}

#[test]
fn a_strategy_may_write_32_waves() {
    let waves: Vec<_> = (0..MAX_WAVES)
        .map(|i| json!({"name": format!("w{i}"), "clusters": 1}))
        .collect();
    assert_eq!(
        compiled(json!({ "waves": waves })).waves.len(),
        MAX_WAVES + 1
    );
}

/// Every refusal names the field to fix (the message starts with it) and says what to do.
#[test]
fn bad_strategies_are_refused_naming_the_field_and_the_fix() {
    let thirty_three: Vec<_> = (0..=MAX_WAVES)
        .map(|i| json!({"name": format!("w{i}"), "clusters": 1}))
        .collect();
    let one = |wave: serde_json::Value| {
        let mut wave = wave;
        wave["name"] = wave.get("name").cloned().unwrap_or(json!("a"));
        json!({"waves": [{"name": "first", "clusters": 1}, wave]})
    };
    let cases = [
        (
            one(json!({"clusters": 1, "selector": {}})),
            "spec.rollout.waves[1]",
            "set exactly one of clusters",
        ),
        (
            one(json!({})),
            "spec.rollout.waves[1]",
            "set exactly one of clusters",
        ),
        (
            one(json!({"clusters": 0})),
            "spec.rollout.waves[1].clusters",
            "at least one cluster",
        ),
        (
            one(json!({"clusters": "0%"})),
            "spec.rollout.waves[1].clusters",
            "at least one cluster",
        ),
        (
            one(json!({"clusters": "150%"})),
            "spec.rollout.waves[1].clusters",
            "give at most 100%",
        ),
        (
            one(json!({"clusters": "abc"})),
            "spec.rollout.waves[1].clusters",
            "write e.g. 5 or 10%",
        ),
        (
            one(json!({"clusters": "5"})),
            "spec.rollout.waves[1].clusters",
            "without quotes (5)",
        ),
        (
            one(json!({"clusters": "1.234%"})),
            "spec.rollout.waves[1].clusters",
            "round it",
        ),
        (
            one(json!({"clusters": "%"})),
            "spec.rollout.waves[1].clusters",
            "write it like 10%",
        ),
        (
            one(json!({"clusters": "1.%"})),
            "spec.rollout.waves[1].clusters",
            "write it like 10%",
        ),
        (
            one(json!({"name": "", "clusters": 1})),
            "spec.rollout.waves[1].name",
            "name the wave",
        ),
        (
            one(json!({"name": "Canary", "clusters": 1})),
            "spec.rollout.waves[1].name",
            "lower-case letters",
        ),
        (
            one(json!({"name": "-a", "clusters": 1})),
            "spec.rollout.waves[1].name",
            "starting and ending",
        ),
        (
            one(json!({"name": "a".repeat(64), "clusters": 1})),
            "spec.rollout.waves[1].name",
            "at most 63",
        ),
        (
            one(json!({"name": "first", "clusters": 1})),
            "spec.rollout.waves[1].name",
            "already the name of spec.rollout.waves[0]",
        ),
        (
            one(json!({"clusters": 1, "maxConcurrency": 0})),
            "spec.rollout.waves[1].maxConcurrency",
            "give 1 or more",
        ),
        (
            one(json!({"clusters": 1, "maxConcurrency": "0%"})),
            "spec.rollout.waves[1].maxConcurrency",
            "give 1 or more",
        ),
        (
            one(json!({"clusters": 1, "maxFailures": "many"})),
            "spec.rollout.waves[1].maxFailures",
            "write e.g. 5 or 10%",
        ),
        (
            one(json!({"clusters": 1, "mandatory": true, "maxFailures": 1})),
            "spec.rollout.waves[1].maxFailures",
            "remove maxFailures, or remove mandatory",
        ),
        (
            one(json!({"clusters": 1, "mandatory": true, "maxFailures": "1%"})),
            "spec.rollout.waves[1].maxFailures",
            "mandatory wave tolerates no failure",
        ),
        (
            one(json!({"clusters": 1, "minSoak": "8d"})),
            "spec.rollout.waves[1].minSoak",
            "give at most 7d",
        ),
        (
            one(json!({"clusters": 1, "minSoak": "soon"})),
            "spec.rollout.waves[1].minSoak",
            "write it like 30s",
        ),
        (
            one(json!({"clusters": 1, "progressDeadline": "0s"})),
            "spec.rollout.waves[1].progressDeadline",
            "give a duration such as 10m",
        ),
        (
            one(json!({"clusters": 1, "progressDeadline": "8d"})),
            "spec.rollout.waves[1].progressDeadline",
            "give at most 7d",
        ),
        (
            one(json!({"clusters": 1, "minSoak": "10m", "progressDeadline": "5m"})),
            "spec.rollout.waves[1].progressDeadline",
            "raise progressDeadline above 10m or lower minSoak",
        ),
        (
            one(json!({"clusters": 1, "minSoak": "10m", "progressDeadline": "10m"})),
            "spec.rollout.waves[1].progressDeadline",
            "could never finish its soak",
        ),
        // A written soak past the default deadline: the soak is the written field.
        (
            one(json!({"clusters": 1, "minSoak": "15m"})),
            "spec.rollout.waves[1].minSoak",
            "progressDeadline 10m (the default)",
        ),
        (
            one(json!({"selector": {}, "sortBy": "region"})),
            "spec.rollout.waves[1].sortBy",
            "remove sortBy",
        ),
        (
            one(json!({"clusters": 1, "sortBy": "bad key"})),
            "spec.rollout.waves[1].sortBy",
            "not a label key",
        ),
        (
            one(json!({"selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}})),
            "spec.rollout.waves[1].selector",
            "Near",
        ),
        (
            json!({"minSoak": "15m"}),
            "spec.rollout.minSoak",
            "in the implicit last wave",
        ),
        (
            json!({"progressDeadline": "5m", "waves": [{"name": "a", "clusters": 1, "minSoak": "10m"}]}),
            "spec.rollout.progressDeadline",
            "minSoak 10m (from spec.rollout.waves[0].minSoak) in spec.rollout.waves[0]",
        ),
        (
            json!({"minSoak": "5m", "progressDeadline": "1m"}),
            "spec.rollout.progressDeadline",
            "raise progressDeadline above 5m",
        ),
        (
            json!({"progressDeadline": "8d"}),
            "spec.rollout.progressDeadline",
            "give at most 7d",
        ),
        (
            json!({"progressDeadline": "0s"}),
            "spec.rollout.progressDeadline",
            "give a duration",
        ),
        (
            json!({"minSoak": "a while"}),
            "spec.rollout.minSoak",
            "write it like 30s",
        ),
        (
            json!({"maxConcurrency": 0}),
            "spec.rollout.maxConcurrency",
            "give 1 or more",
        ),
        (
            json!({"maxFailures": "120%"}),
            "spec.rollout.maxFailures",
            "give at most 100%",
        ),
        (
            json!({ "waves": thirty_three }),
            "spec.rollout.waves",
            "at most 32",
        ),
    ];
    for (written, field, fix) in cases {
        let error = refused(written.clone());
        assert_eq!(error.field, field, "{written}: {error}");
        assert!(
            error.message.starts_with(field),
            "{written}: the message names the field: {error}"
        );
        assert!(error.message.contains(fix), "{written}: {error}");
    }
}

#[test]
fn waves_that_set_their_own_deadline_escape_a_strategy_soak_that_would_not_fit_the_default() {
    // The strategy's soak exceeds the default deadline, but every wave sets a deadline and
    // the last takes the rest: no wave uses the misfit pair.
    let strategy = compiled(json!({
        "minSoak": "15m",
        "waves": [{"name": "all", "clusters": "100%", "progressDeadline": "30m"}],
    }));
    assert_eq!(strategy.waves.len(), 1);
    assert_eq!(strategy.waves[0].min_soak_ms, 900_000);
}
