//! Composing GitRepo targets with fleet.yaml customizations into first-match Bundle targets.

use std::collections::BTreeMap;

use flotilla_api::{BundleTarget, Customization, DriftIgnore, LabelSelector};
use flotilla_core::selector::Selector;
use flotilla_core::targeting::{ClusterView, compile_targets, first_match};
use flotilla_render::{DependsOn, RenderedCustomization, RenderedFolder, bundle_spec};
use serde_json::{Value, json};

fn selector(text: &str) -> LabelSelector {
    Selector::parse(text).unwrap().to_api()
}

fn manifests(name: &str) -> Vec<Value> {
    vec![json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})]
}

fn customization(name: &str) -> RenderedCustomization {
    RenderedCustomization {
        name: Some(name.into()),
        ..RenderedCustomization::default()
    }
}

/// A folder with: `big` (env=prod,size=big) and `prod` (env=prod, its own default namespace)
/// renderings, `retired` (cluster `old`, not deployed), and `inert` (no matcher at all).
fn folder() -> RenderedFolder {
    RenderedFolder {
        folder: "apps/web".into(),
        default_namespace: Some("apps".into()),
        resources: manifests("default"),
        customizations: vec![
            RenderedCustomization {
                cluster_selector: Some(selector("env=prod,size=big")),
                resources: Some(manifests("big")),
                ..customization("big")
            },
            RenderedCustomization {
                cluster_selector: Some(selector("env=prod")),
                default_namespace: Some("prod-ns".into()),
                resources: Some(manifests("prod")),
                ..customization("prod")
            },
            RenderedCustomization {
                cluster_name: Some("old".into()),
                do_not_deploy: true,
                ..customization("retired")
            },
            customization("inert"),
        ],
        ..RenderedFolder::default()
    }
}

fn gitrepo_targets() -> Vec<BundleTarget> {
    vec![
        BundleTarget {
            name: Some("eu".into()),
            cluster_selector: Some(selector("region=eu")),
            ..BundleTarget::default()
        },
        BundleTarget {
            cluster_group: Some("edge".into()),
            customization: Customization {
                labels: BTreeMap::from([("via".into(), "edge".into())]),
                ..Customization::default()
            },
            ..BundleTarget::default()
        },
    ]
}

/// What a cluster gets: the matched target's name, whether it deploys, the manifests (the
/// target's own or the bundle's) and the namespace. `None` when no target matches.
fn resolve(
    targets: &[BundleTarget],
    default_resources: &[Value],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<(String, bool, Vec<Value>, Option<String>)> {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let compiled = compile_targets(targets).unwrap();
    let edge = Selector::parse("tier=edge").unwrap();
    let view = ClusterView {
        name,
        label: |key: &str| labels.get(key).map(String::as_str),
    };
    let groups = |group: &str| (group == "edge").then_some(&edge);
    let index = first_match(&compiled, &view, &groups)?;
    let target = &targets[index];
    Some((
        target.name.clone().unwrap_or_default(),
        !target.do_not_deploy,
        target
            .resources
            .clone()
            .unwrap_or_else(|| default_resources.to_vec()),
        target.customization.namespace.clone(),
    ))
}

#[test]
fn each_gitrepo_target_is_preceded_by_its_combinations_with_every_customization() {
    let spec = bundle_spec(&folder(), &gitrepo_targets(), false).unwrap();
    let names: Vec<&str> = spec
        .targets
        .iter()
        .map(|target| target.name.as_deref().unwrap())
        .collect();
    // `inert` has no matcher: in Fleet it matches no cluster, so it combines with nothing.
    assert_eq!(
        names,
        [
            "eu/big",
            "eu/prod",
            "eu/retired",
            "eu",
            "1/big",
            "1/prod",
            "1/retired",
            "1"
        ]
    );
    let eu_prod = &spec.targets[1];
    assert_eq!(
        eu_prod.cluster_selector,
        Some(selector("env=prod,region=eu"))
    );
    let edge_prod = &spec.targets[5];
    assert_eq!(edge_prod.cluster_group.as_deref(), Some("edge"));
    assert_eq!(edge_prod.cluster_selector, Some(selector("env=prod")));
    // The GitRepo target's own customization carries over to its combinations.
    assert_eq!(edge_prod.customization.labels["via"], "edge");
    assert_eq!(spec.resources, manifests("default"));
}

#[test]
fn first_matching_customization_within_the_gitrepo_targets_decides() {
    let spec = bundle_spec(&folder(), &gitrepo_targets(), false).unwrap();
    let get =
        |name: &str, labels: &[(&str, &str)]| resolve(&spec.targets, &spec.resources, name, labels);

    // Matches prod but not big: prod's rendering and prod's default namespace.
    let (target, deploys, resources, namespace) =
        get("a", &[("region", "eu"), ("env", "prod")]).unwrap();
    assert_eq!((target.as_str(), deploys), ("eu/prod", true));
    assert_eq!(resources, manifests("prod"));
    assert_eq!(namespace.as_deref(), Some("prod-ns"));

    // Matches big (and prod): the first customization wins; the folder's default namespace.
    let (target, _, resources, namespace) =
        get("b", &[("region", "eu"), ("env", "prod"), ("size", "big")]).unwrap();
    assert_eq!(target, "eu/big");
    assert_eq!(resources, manifests("big"));
    assert_eq!(namespace.as_deref(), Some("apps"));

    // No customization matches: the GitRepo target with the default rendering.
    let (target, deploys, resources, namespace) =
        get("c", &[("region", "eu"), ("env", "dev")]).unwrap();
    assert_eq!((target.as_str(), deploys), ("eu", true));
    assert_eq!(resources, manifests("default"));
    assert_eq!(namespace.as_deref(), Some("apps"));

    // A doNotDeploy customization excludes the cluster.
    let (target, deploys, _, _) = get("old", &[("region", "eu")]).unwrap();
    assert_eq!((target.as_str(), deploys), ("eu/retired", false));

    // Through the second GitRepo target (a group).
    let (target, _, resources, _) = get("d", &[("tier", "edge"), ("env", "prod")]).unwrap();
    assert_eq!(target, "1/prod");
    assert_eq!(resources, manifests("prod"));
}

#[test]
fn clusters_outside_every_gitrepo_target_get_nothing_even_when_a_customization_matches() {
    let spec = bundle_spec(&folder(), &gitrepo_targets(), false).unwrap();
    for (name, labels) in [
        (
            "us",
            vec![("region", "us"), ("env", "prod"), ("size", "big")],
        ),
        ("old", vec![("region", "us")]),
        ("bare", vec![]),
    ] {
        assert_eq!(
            resolve(&spec.targets, &spec.resources, name, &labels),
            None,
            "{name}"
        );
    }
    // Without GitRepo targets the bundle goes nowhere.
    let spec = bundle_spec(&folder(), &[], false).unwrap();
    assert!(spec.targets.is_empty());
}

#[test]
fn combinations_no_cluster_can_match_are_left_out() {
    let targets = vec![
        BundleTarget {
            name: Some("dev".into()),
            cluster_selector: Some(selector("env=dev")),
            ..BundleTarget::default()
        },
        BundleTarget {
            name: Some("one".into()),
            cluster_name: Some("store-1".into()),
            ..BundleTarget::default()
        },
    ];
    let spec = bundle_spec(&folder(), &targets, false).unwrap();
    let names: Vec<&str> = spec
        .targets
        .iter()
        .map(|t| t.name.as_deref().unwrap())
        .collect();
    // env=dev AND env=prod never match; cluster store-1 is not cluster old.
    assert_eq!(names, ["dev/retired", "dev", "one/big", "one/prod", "one"]);
    let dev_retired = &spec.targets[0];
    assert_eq!(dev_retired.cluster_name.as_deref(), Some("old"));
    assert_eq!(dev_retired.cluster_selector, Some(selector("env=dev")));
}

#[test]
fn two_different_cluster_groups_combine_so_a_cluster_must_be_in_both() {
    let mut rendered = folder();
    rendered.customizations = vec![RenderedCustomization {
        cluster_group: Some("canary".into()),
        resources: Some(manifests("canary")),
        ..customization("canary")
    }];
    let spec = bundle_spec(&rendered, &gitrepo_targets(), false).unwrap();
    let combined = &spec.targets[2];
    assert_eq!(combined.name.as_deref(), Some("1/canary"));
    assert_eq!(combined.cluster_group.as_deref(), Some("edge"));
    assert_eq!(combined.cluster_groups, ["canary"]);
    let targets = compile_targets(&spec.targets).unwrap();
    let matched = |labels: &[(&str, &str)]| {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let edge = Selector::parse("tier=edge").unwrap();
        let canary = Selector::parse("canary=true").unwrap();
        let groups = |name: &str| match name {
            "edge" => Some(&edge),
            "canary" => Some(&canary),
            _ => None,
        };
        let view = ClusterView {
            name: "c",
            label: |key: &str| labels.get(key).map(String::as_str),
        };
        first_match(&targets, &view, &groups).map(|i| spec.targets[i].name.clone().unwrap())
    };
    assert_eq!(
        matched(&[("tier", "edge"), ("canary", "true")]).as_deref(),
        Some("1/canary")
    );
    assert_eq!(
        matched(&[("tier", "edge")]).as_deref(),
        Some("1"),
        "edge only: no canary variant"
    );
    assert_eq!(
        matched(&[("canary", "true")]),
        None,
        "canary outside the GitRepo's targets"
    );
    // The same group on both sides stays one group.
    rendered.customizations[0].cluster_group = Some("edge".into());
    let spec = bundle_spec(&rendered, &gitrepo_targets(), false).unwrap();
    assert_eq!(spec.targets[2].cluster_group.as_deref(), Some("edge"));
    assert!(spec.targets[2].cluster_groups.is_empty());
}

#[test]
fn override_targets_replace_the_gitrepo_targets() {
    let mut rendered = folder();
    rendered.override_targets = Some(vec![BundleTarget {
        name: Some("only-dev".into()),
        cluster_selector: Some(selector("env=dev")),
        ..BundleTarget::default()
    }]);
    let spec = bundle_spec(&rendered, &gitrepo_targets(), false).unwrap();
    let names: Vec<&str> = spec
        .targets
        .iter()
        .map(|t| t.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, ["only-dev/retired", "only-dev"]);
}

#[test]
fn bundle_options_come_from_the_folder_and_the_gitrepo() {
    let mut rendered = folder();
    rendered.paused = true;
    rendered.drift_ignore = vec![DriftIgnore {
        kind: Some("Deployment".into()),
        paths: vec!["/spec/replicas".into()],
        ..DriftIgnore::default()
    }];
    rendered.depends_on = vec![DependsOn {
        name: Some("infra".into()),
        ..DependsOn::default()
    }];
    let spec = bundle_spec(&rendered, &gitrepo_targets(), false).unwrap();
    assert!(spec.paused && !spec.keep_resources);
    assert_eq!(spec.drift.ignore, rendered.drift_ignore);
    assert_eq!(spec.depends_on, rendered.depends_on);
    assert!(
        bundle_spec(&rendered, &gitrepo_targets(), true)
            .unwrap()
            .keep_resources
    );
    rendered.keep_resources = true;
    assert!(
        bundle_spec(&rendered, &gitrepo_targets(), false)
            .unwrap()
            .keep_resources
    );
}

#[test]
fn invalid_targets_are_rejected_by_flotillas_own_rules() {
    // A GitRepo target that selects nothing is what compile_targets refuses.
    let error = bundle_spec(&folder(), &[BundleTarget::default()], false).unwrap_err();
    assert!(error.contains("matches nothing"), "{error}");
}
