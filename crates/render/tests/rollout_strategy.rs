//! fleet.yaml's `rolloutStrategy` mapped onto the bundle's `spec.rollout`: partitions as selector
//! waves, `autoPartitionSize` as equal share waves, `maxUnavailable` as pace and tolerance, and
//! refusals (naming the key) for what flotilla cannot do the way Fleet does.

mod support;

use flotilla_api::{
    Bundle, IntOrPercent, LabelSelector, ObjectMeta, OfflinePolicy, OnFailure, RolloutStrategy,
};
use flotilla_core::rollout::strategy::{Amount, Members, compile};
use flotilla_render::{RenderError, Tools, bundle_spec, render_folder};
use support::{Checkout, configmap};

/// Renders a folder whose fleet.yaml is `text`.
fn render(text: &str) -> Result<Option<RolloutStrategy>, RenderError> {
    let checkout = Checkout::new();
    checkout
        .write("app/fleet.yaml", text)
        .write("app/cm.yaml", &configmap("a"));
    render_folder(checkout.root(), "app", &Tools::none()).map(|rendered| rendered.rollout)
}

fn mapped(text: &str) -> RolloutStrategy {
    render(text)
        .unwrap_or_else(|e| panic!("refused: {e}"))
        .expect("a rollout")
}

fn percent(text: &str) -> Option<IntOrPercent> {
    Some(IntOrPercent::Percent(text.into()))
}

fn labels(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        match_labels: [(key.to_string(), value.to_string())].into(),
        ..LabelSelector::default()
    }
}

#[test]
fn no_rollout_strategy_key_means_no_rollout() {
    assert_eq!(render("name: web\n").unwrap(), None);
    assert_eq!(render("rolloutStrategy:\n").unwrap(), None, "null is unset");
}

#[test]
fn partitions_become_selector_waves_in_order_with_their_max_unavailable() {
    let strategy = mapped(
        "rolloutStrategy:
  maxUnavailable: 15%
  partitions:
  - name: demoRollout
    maxUnavailable: 10%
    clusterSelector:
      matchLabels:
        env: staging
  - name: stable
    clusterSelector:
      matchLabels:
        env: prod
",
    );
    let names: Vec<&str> = strategy.waves.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["demorollout", "stable"]);
    let canary = &strategy.waves[0];
    assert_eq!(canary.selector, Some(labels("env", "staging")));
    assert_eq!(canary.clusters, None);
    assert_eq!(canary.max_concurrency, percent("10%"));
    assert_eq!(canary.max_failures, percent("10%"));
    // A partition without its own maxUnavailable takes the strategy's, through the defaults.
    let stable = &strategy.waves[1];
    assert_eq!(stable.selector, Some(labels("env", "prod")));
    assert_eq!(stable.max_concurrency, None);
    assert_eq!(stable.max_failures, None);
    assert_eq!(strategy.max_concurrency, percent("15%"));
    assert_eq!(strategy.max_failures, percent("15%"));
    // Fleet never rolls back, and counts an Offline cluster as NotReady.
    assert_eq!(strategy.on_failure, OnFailure::Halt);
    assert_eq!(strategy.offline, OfflinePolicy::Fail);
    // Clusters no partition takes come last.
    let compiled = compile("web", &strategy).unwrap();
    let compiled_names: Vec<&str> = compiled.waves.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(compiled_names, ["demorollout", "stable", "remaining"]);
    assert_eq!(compiled.waves[1].max_failures, Amount::BasisPoints(1_500));
}

#[test]
fn partition_display_names_become_unique_dns_label_wave_names() {
    let strategy = mapped(
        "rolloutStrategy:
  partitions:
  - name: Canary Ring
    clusterSelector: {matchLabels: {ring: canary}}
  - clusterSelector: {matchLabels: {ring: one}}
  - name: canary-ring
    clusterSelector: {matchLabels: {ring: two}}
  - name: '***'
    clusterSelector: {}
",
    );
    let names: Vec<&str> = strategy.waves.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        ["canary-ring", "partition-2", "canary-ring-2", "partition-4"]
    );
}

#[test]
fn max_unavailable_defaults_to_fleets_100_percent_which_gates_nothing() {
    let strategy = mapped(
        "rolloutStrategy:
  partitions:
  - clusterSelector: {matchLabels: {ring: canary}}
",
    );
    assert_eq!(strategy.max_concurrency, percent("100%"));
    assert_eq!(strategy.max_failures, percent("100%"));
}

#[test]
fn max_unavailable_0_is_one_cluster_at_a_time_tolerating_none() {
    let strategy = mapped(
        "rolloutStrategy:
  maxUnavailable: 0
  maxUnavailablePartitions: 0
  partitions:
  - name: canary
    maxUnavailable: '0%'
    clusterSelector: {matchLabels: {ring: canary}}
",
    );
    assert_eq!(strategy.max_concurrency, Some(IntOrPercent::Int(1)));
    assert_eq!(strategy.max_failures, Some(IntOrPercent::Int(0)));
    assert_eq!(
        strategy.waves[0].max_concurrency,
        Some(IntOrPercent::Int(1))
    );
    assert_eq!(strategy.waves[0].max_failures, percent("0%"));
}

#[test]
fn a_quoted_count_is_read_as_that_count_as_in_fleet() {
    let strategy = mapped("rolloutStrategy:\n  maxUnavailable: '5'\n");
    assert_eq!(strategy.max_concurrency, Some(IntOrPercent::Int(5)));
    assert_eq!(strategy.max_failures, Some(IntOrPercent::Int(5)));
}

#[test]
fn without_auto_partition_size_the_targets_are_one_wave_as_fleet_does_under_200_clusters() {
    for text in [
        "rolloutStrategy:\n  maxUnavailable: 10%\n",
        "rolloutStrategy: {}\n",
        "rolloutStrategy:\n  autoPartitionSize: 0\n",
        "rolloutStrategy:\n  autoPartitionSize: -1\n",
        "rolloutStrategy:\n  autoPartitionSize: 0%\n",
    ] {
        let strategy = mapped(text);
        assert_eq!(strategy.waves.len(), 1, "{text}");
        assert_eq!(strategy.waves[0].name, "all");
        assert_eq!(strategy.waves[0].clusters, percent("100%"));
        assert_eq!(compile("web", &strategy).unwrap().waves.len(), 1, "{text}");
    }
}

/// The sizes of the share waves of `strategy` over `total` clusters, as the planner takes them
/// (each a share of what earlier waves left, rounded up).
fn wave_sizes(strategy: &RolloutStrategy, total: u64) -> Vec<u64> {
    let compiled = compile("web", strategy).unwrap();
    let mut left = total;
    compiled
        .waves
        .iter()
        .map(|wave| {
            let Members::Share { amount, .. } = wave.members else {
                panic!("{} is not a share wave", wave.name);
            };
            let size = amount.of_rounded_up(left);
            left -= size;
            size
        })
        .collect()
}

#[test]
fn auto_partition_size_splits_the_targets_into_equal_share_waves() {
    let strategy = mapped("rolloutStrategy:\n  autoPartitionSize: 25%\n");
    let names: Vec<&str> = strategy.waves.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        names,
        ["partition-1", "partition-2", "partition-3", "partition-4"]
    );
    let shares: Vec<_> = strategy.waves.iter().map(|w| w.clusters.clone()).collect();
    assert_eq!(
        shares,
        [
            percent("25%"),
            percent("33.33%"),
            percent("50%"),
            percent("100%")
        ]
    );
    assert_eq!(wave_sizes(&strategy, 200), [50, 50, 50, 50]);
    assert_eq!(wave_sizes(&strategy, 1000), [250, 250, 250, 250]);
    // An uneven split leaves the remainder to the last partition, as Fleet's does.
    let thirty = mapped("rolloutStrategy:\n  autoPartitionSize: 30%\n");
    assert_eq!(wave_sizes(&thirty, 100), [30, 30, 30, 10]);
    assert_eq!(wave_sizes(&thirty, 1000), [300, 300, 300, 100]);
    // Partitions take precedence: Fleet ignores autoPartitionSize beside them.
    let manual = mapped(
        "rolloutStrategy:
  autoPartitionSize: 10%
  partitions:
  - clusterSelector: {matchLabels: {ring: canary}}
",
    );
    assert_eq!(manual.waves.len(), 1);
}

#[test]
fn fleet_controller_only_keys_are_accepted_and_ignored() {
    let strategy = mapped(
        "rolloutStrategy:
  maxNew: 10
  autoPartitionThreshold: 500
",
    );
    assert_eq!(strategy.waves.len(), 1);
}

#[test]
fn what_flotilla_cannot_do_as_fleet_does_is_refused_naming_the_key_and_the_fix() {
    let thirty_three: String = (0..33)
        .map(|i| format!("  - clusterSelector: {{matchLabels: {{ring: r{i}}}}}\n"))
        .collect();
    let cases = [
        (
            "rolloutStrategy:\n  partitions:\n  - clusterName: store-1\n".to_string(),
            "rolloutStrategy.partitions[0].clusterName cannot be mapped",
            "use clusterSelector",
        ),
        (
            "rolloutStrategy:\n  partitions:\n  - clusterGroup: edge\n".to_string(),
            "rolloutStrategy.partitions[0].clusterGroup cannot be mapped",
            "use clusterSelector with the group's selector",
        ),
        (
            "rolloutStrategy:\n  partitions:\n  - clusterGroupSelector: {}\n".to_string(),
            "rolloutStrategy.partitions[0].clusterGroupSelector is not supported",
            "use clusterSelector",
        ),
        (
            "rolloutStrategy:\n  partitions:\n  - name: canary\n".to_string(),
            "rolloutStrategy.partitions[0] takes no clusters",
            "set clusterSelector",
        ),
        (
            "rolloutStrategy:\n  maxUnavailablePartitions: 1\n".to_string(),
            "rolloutStrategy.maxUnavailablePartitions cannot be mapped",
            "set it to 0",
        ),
        (
            "rolloutStrategy:\n  maxUnavailablePartitions: 20%\n".to_string(),
            "rolloutStrategy.maxUnavailablePartitions cannot be mapped",
            "raise maxUnavailable",
        ),
        (
            "rolloutStrategy:\n  autoPartitionSize: 50\n".to_string(),
            "rolloutStrategy.autoPartitionSize cannot be mapped",
            "write a percentage (e.g. 25%) or list partitions",
        ),
        (
            "rolloutStrategy:\n  autoPartitionSize: 2%\n".to_string(),
            "rolloutStrategy.autoPartitionSize would split the targets into 50 partitions",
            "give at least 3.13%",
        ),
        (
            "rolloutStrategy:\n  maxUnavailable: lots\n".to_string(),
            "rolloutStrategy.maxUnavailable: \"lots\" is not a count or a percentage",
            "write e.g. 5 or 10%",
        ),
        (
            "rolloutStrategy:\n  maxUnavailable: 150%\n".to_string(),
            "rolloutStrategy.maxUnavailable: \"150%\" is over 100%",
            "give at most 100%",
        ),
        (
            "rolloutStrategy:\n  maxUnavailable: -1\n".to_string(),
            "rolloutStrategy.maxUnavailable is -1",
            "give a count of 0 or more",
        ),
        (
            "rolloutStrategy:\n  maxUnavailable: [1]\n".to_string(),
            "rolloutStrategy.maxUnavailable must be a count or a percentage but is a list",
            "",
        ),
        (
            "rolloutStrategy:\n  partitions:\n  - clusterSelector: {matchLabels: {'bad key': x}}\n"
                .to_string(),
            "rolloutStrategy.partitions[0].clusterSelector is invalid",
            "",
        ),
        (
            "rolloutStrategy:\n  maxUnavailabel: 10%\n".to_string(),
            "unknown key \"maxUnavailabel\" in rolloutStrategy",
            "known here: maxUnavailable",
        ),
        (
            "rolloutStrategy:\n  partitions:\n  - clusterSelectr: {}\n".to_string(),
            "unknown key \"clusterSelectr\" in rolloutStrategy.partitions[0]",
            "clusterSelector",
        ),
        (
            "rolloutStrategy: 10%\n".to_string(),
            "rolloutStrategy must be a mapping",
            "",
        ),
        (
            format!("rolloutStrategy:\n  partitions:\n{thirty_three}"),
            "rolloutStrategy.partitions has 33 partitions",
            "merge some",
        ),
    ];
    for (text, problem, fix) in cases {
        let error = render(&text).expect_err(&text);
        assert_eq!(error.file.as_deref(), Some("app/fleet.yaml"), "{error}");
        assert!(error.message.starts_with(problem), "{text}: {error}");
        assert!(error.message.contains(fix), "{text}: {error}");
    }
}

#[test]
fn the_mapped_rollout_reaches_the_bundle_spec_and_passes_the_bundle_validator() {
    let checkout = Checkout::new();
    checkout
        .write(
            "app/fleet.yaml",
            "rolloutStrategy:
  maxUnavailable: 10%
  partitions:
  - name: canary
    maxUnavailable: 1
    clusterSelector: {matchLabels: {ring: canary}}
  - name: eu
    clusterSelector:
      matchExpressions:
      - {key: region, operator: In, values: [eu-west, eu-north]}
",
        )
        .write("app/cm.yaml", &configmap("a"));
    let rendered = render_folder(checkout.root(), "app", &Tools::none()).unwrap();
    let targets = [flotilla_api::BundleTarget {
        cluster_selector: Some(LabelSelector::default()),
        ..Default::default()
    }];
    let spec = bundle_spec(&rendered, &targets, false).unwrap();
    assert_eq!(spec.rollout, rendered.rollout);
    let bundle = Bundle {
        api_version: flotilla_api::API_VERSION.into(),
        kind: "Bundle".into(),
        metadata: ObjectMeta {
            name: "app".into(),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    };
    let valid = flotilla_core::documents::bundle(&bundle).unwrap();
    let compiled = valid.rollout.expect("a compiled rollout");
    let names: Vec<&str> = compiled.waves.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["canary", "eu", "remaining"]);
    assert_eq!(compiled.waves[0].max_concurrency, Amount::Count(1));
    assert_eq!(
        compiled.waves[1].max_concurrency,
        Amount::BasisPoints(1_000)
    );
}

#[test]
fn the_example_fleet_yaml_maps_to_canary_europe_then_the_rest() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let rendered = render_folder(&examples, "fleet-rollout", &Tools::none()).unwrap();
    let strategy = rendered.rollout.expect("the example has a rolloutStrategy");
    let compiled = compile("web", &strategy).unwrap();
    let names: Vec<&str> = compiled.waves.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["canary", "europe", "remaining"]);
    assert_eq!(compiled.waves[0].max_concurrency, Amount::Count(1));
    assert_eq!(compiled.waves[0].max_failures, Amount::Count(0));
    assert_eq!(compiled.waves[1].max_failures, Amount::BasisPoints(1_000));
}
