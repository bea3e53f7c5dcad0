//! The in-memory fleet driven directly: targeting, desired sets and etags, incremental bundle
//! summaries, and cluster state counters. After every step `assert_consistent` recomputes what
//! the incremental bookkeeping must equal.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use flotilla_api::{
    BundleSpec, BundleState, BundleSummary, BundleTarget, ClusterState, LabelSelector, ObjectMeta,
    agent::{BundleReport, SyncRequest},
};
use flotilla_core::{
    digest::{canonical_content, content_digest},
    selector::Selector,
    targeting::{ClusterView, first_match},
};
use roaring::RoaringBitmap;
use serde_json::json;

use super::{BundleEntry, Fleet, clusters::NewCluster, live_revision, state_index};

mod rollouts;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn add_cluster(fleet: &mut Fleet, name: &str, pairs: &[(&str, &str)]) -> u32 {
    fleet.insert_cluster(NewCluster {
        name: name.into(),
        labels: labels(pairs),
        credential_hash: [0; 32],
        client_id: name.into(),
        generation: 1,
        revision: 1,
        created: 0,
    })
}

fn relabel(fleet: &mut Fleet, cluster: u32, pairs: &[(&str, &str)]) {
    fleet.relabel_cluster(cluster, &labels(pairs), 2, 2);
}

fn selecting(pairs: &[(&str, &str)]) -> BundleTarget {
    BundleTarget {
        cluster_selector: Some(LabelSelector {
            match_labels: labels(pairs),
            ..LabelSelector::default()
        }),
        ..BundleTarget::default()
    }
}

fn in_group(group: &str) -> BundleTarget {
    BundleTarget {
        cluster_group: Some(group.into()),
        ..BundleTarget::default()
    }
}

/// A bundle entry as an admin write of an unpaused bundle builds it: one ConfigMap whose data
/// is `content`, rolled out (`live`) to `targets`.
fn entry(fleet: &Fleet, name: &str, content: &str, targets: Vec<BundleTarget>) -> BundleEntry {
    let resources = vec![json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"content": content},
    })];
    let digest = content_digest(&canonical_content(&resources));
    let generation = fleet
        .bundle_by_name(name)
        .map_or(1, |(_, b)| b.metadata.generation + 1);
    let live = live_revision(
        generation,
        digest.clone(),
        &resources,
        &targets,
        false,
        &Default::default(),
    )
    .expect("valid targets");
    BundleEntry {
        name: name.into(),
        metadata: ObjectMeta {
            name: name.into(),
            generation,
            ..ObjectMeta::default()
        },
        spec: BundleSpec {
            resources,
            targets: targets.clone(),
            ..BundleSpec::default()
        },
        spec_digest: digest,
        spec_target_digests: live
            .targets
            .iter()
            .filter_map(|t| t.digest.clone())
            .collect(),
        live: Some(live),
        live_targets: targets,
        last_revision: 0,
        revisions: Default::default(),
        candidate: None,
        candidate_targets: Vec::new(),
        rollout: None,
        pinned: Default::default(),
        owner: None,
        dependencies: Vec::new(),
        targeted: Default::default(),
        counts: [0; 5],
        problems: Default::default(),
    }
}

fn put_bundle(fleet: &mut Fleet, name: &str, content: &str, targets: Vec<BundleTarget>) -> u32 {
    let entry = entry(fleet, name, content, targets);
    let ordinal = fleet.upsert_bundle(entry);
    assert_consistent(fleet);
    ordinal
}

/// What `write_bundle` does for a paused bundle: the spec moves on, the live revision stays.
fn put_paused(fleet: &mut Fleet, name: &str, content: &str, targets: Vec<BundleTarget>) {
    let mut entry = entry(fleet, name, content, targets);
    entry.spec.paused = true;
    let old = fleet.bundle_by_name(name).map(|(_, b)| b);
    entry.live = old.and_then(|b| b.live.clone());
    entry.live_targets = old.map(|b| b.live_targets.clone()).unwrap_or_default();
    fleet.upsert_bundle(entry);
    assert_consistent(fleet);
}

fn summary(fleet: &Fleet, name: &str) -> BundleSummary {
    let (_, bundle) = fleet.bundle_by_name(name).expect("bundle exists");
    fleet.summary(bundle)
}

fn desired_names(fleet: &Fleet, cluster: u32) -> Vec<String> {
    fleet
        .desired_set(cluster)
        .into_iter()
        .map(|d| d.name)
        .collect()
}

fn deployment_of(fleet: &Fleet, cluster: u32, bundle: &str) -> String {
    fleet
        .desired_set(cluster)
        .into_iter()
        .find(|d| d.name == bundle)
        .unwrap_or_else(|| panic!("{bundle} is not in the desired set"))
        .deployment
}

fn etags(fleet: &Fleet, clusters: &[u32]) -> Vec<String> {
    clusters.iter().map(|&c| fleet.desired_etag(c)).collect()
}

static REPORTS: AtomicU64 = AtomicU64::new(0);

/// An agent's incremental sync carrying one bundle report for the given deployment id.
fn report_for(
    fleet: &mut Fleet,
    cluster: u32,
    bundle: &str,
    deployment: String,
    state: BundleState,
) {
    let held = fleet.cluster(cluster).and_then(|c| c.report_digest.clone());
    let request = SyncRequest {
        report_digest: format!("report-{}", REPORTS.fetch_add(1, Ordering::Relaxed)),
        base_digest: held,
        bundles: vec![BundleReport {
            bundle: bundle.into(),
            deployment,
            state,
            message: None,
            problems: Vec::new(),
            more_problems: 0,
        }],
        ..SyncRequest::default()
    };
    let intake = fleet.intake(cluster, &request);
    assert!(!intake.resync, "the report applies on top of the held one");
    assert_consistent(fleet);
}

/// The cluster reports `state` for the deployment of `bundle` it was told to run.
fn report(fleet: &mut Fleet, cluster: u32, bundle: &str, state: BundleState) {
    let deployment = deployment_of(fleet, cluster, bundle);
    report_for(fleet, cluster, bundle, deployment, state);
}

/// A sync of an agent with nothing new to say, handled the way `api::agent::sync` does: the
/// write path runs only when `intake_needs_write` says so.
fn sync_unchanged(fleet: &mut Fleet, cluster: u32) {
    let entry = fleet.cluster(cluster).expect("cluster");
    let request = SyncRequest {
        etag: Some(fleet.desired_etag(cluster)),
        report_digest: entry.report_digest.clone().unwrap_or_default(),
        ..SyncRequest::default()
    };
    if fleet.intake_needs_write(entry, &request) {
        let never_reported = entry.report_digest.is_none();
        let intake = fleet.intake(cluster, &request);
        assert_eq!(intake.resync, never_reported);
        fleet.set_cluster_state(cluster, ClusterState::Online);
    }
    assert_consistent(fleet);
}

/// Recomputes targeting (cluster by cluster, without the bitmap index), group membership and
/// every counter from scratch, and compares them with the incremental bookkeeping.
fn assert_consistent(fleet: &Fleet) {
    let mut counts: BTreeMap<u32, [u64; 5]> = BTreeMap::new();
    let mut targeted: BTreeMap<u32, RoaringBitmap> = BTreeMap::new();
    let mut members: BTreeMap<&str, RoaringBitmap> = BTreeMap::new();
    for (ordinal, cluster) in fleet.clusters.iter().enumerate() {
        let Some(cluster) = cluster else { continue };
        let ordinal = ordinal as u32;
        let labels = fleet.labels_map(&cluster.labels);
        let label = |key: &str| labels.get(key).map(String::as_str);
        let view = ClusterView {
            name: &cluster.name,
            label,
        };
        let groups = |name: &str| fleet.groups.get(name).map(|g| &g.selector);
        for (name, group) in &fleet.groups {
            if group.selector.matches(label) {
                members.entry(name).or_default().insert(ordinal);
            }
        }
        for &bundle in fleet.bundle_names.values() {
            // A cluster pinned to a run's candidate is targeted by the candidate's targets.
            let live = fleet.revision_in(bundle, fleet.slot_of(ordinal, bundle));
            let deployed = live.is_some_and(|live| {
                first_match(&live.targets, &view, &groups)
                    .is_some_and(|index| !live.targets[index].do_not_deploy)
            });
            if deployed {
                targeted.entry(bundle).or_default().insert(ordinal);
            }
        }
        for deployment in &cluster.deployments {
            let bundle = fleet
                .bundle(deployment.bundle)
                .expect("deployed bundle exists");
            assert_eq!(
                deployment.slot,
                fleet.slot_of(ordinal, deployment.bundle),
                "{}'s deployment of {} is in the slot its pin says",
                cluster.name,
                bundle.name
            );
            let live = fleet
                .revision_in(deployment.bundle, deployment.slot)
                .expect("only live bundles deploy");
            let state = if deployment.counted_epoch == live.epoch {
                deployment.counted
            } else {
                BundleState::Pending
            };
            counts.entry(deployment.bundle).or_default()[state_index(state)] += 1;
        }
    }
    for (name, &ordinal) in &fleet.bundle_names {
        let bundle = fleet.bundle(ordinal).expect("named bundle exists");
        let expected = targeted.remove(&ordinal).unwrap_or_default();
        assert_eq!(bundle.targeted, expected, "clusters {name} targets");
        let expected = counts.remove(&ordinal).unwrap_or_default();
        assert_eq!(bundle.counts, expected, "counters of {name}");
        assert_eq!(
            bundle.counts.iter().sum::<u64>(),
            bundle.targeted.len(),
            "every targeted cluster of {name} has one deployment"
        );
    }
    assert!(
        counts.is_empty(),
        "deployments of unnamed bundles: {counts:?}"
    );
    for (name, group) in &fleet.groups {
        let expected = members.remove(name.as_str()).unwrap_or_default();
        assert_eq!(group.members, expected, "members of group {name}");
    }
    let mut by_state = [0u64; 3];
    for cluster in fleet.clusters.iter().flatten() {
        by_state[super::cluster_state_index(cluster.state)] += 1;
        assert_eq!(
            fleet.online.contains(fleet.cluster_names[&cluster.name]),
            cluster.state == ClusterState::Online
        );
    }
    assert_eq!(fleet.cluster_counts, by_state, "cluster counters");
    let deployments: usize = fleet
        .clusters
        .iter()
        .flatten()
        .map(|cluster| cluster.deployments.len())
        .sum();
    assert_eq!(
        fleet.deployment_count(),
        deployments as u64,
        "deployment count (a metric) equals the deployments held by clusters"
    );
    // Content references counted incrementally equal a walk over every bundle's digests, and
    // no content is held that no bundle references.
    let mut references: BTreeMap<&str, u32> = BTreeMap::new();
    for bundle in fleet.bundles.iter().flatten() {
        for digest in bundle.digests() {
            *references.entry(digest).or_default() += 1;
        }
    }
    let counted: BTreeMap<&str, u32> = fleet
        .contents
        .referenced()
        .map(|digest| (digest, fleet.contents.references(digest)))
        .collect();
    assert_eq!(counted, references, "content reference counts");
    // Deployments stay sorted by bundle name (reports find theirs by binary search).
    for cluster in fleet.clusters.iter().flatten() {
        let names: Vec<&str> = cluster
            .deployments
            .iter()
            .map(|d| fleet.bundle(d.bundle).map_or("", |b| b.name.as_str()))
            .collect();
        assert!(
            names.is_sorted(),
            "deployments of {} sorted: {names:?}",
            cluster.name
        );
    }
    // The group index: the bundles whose live targets name each group.
    let mut naming: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for &ordinal in fleet.bundle_names.values() {
        let live = fleet.bundle(ordinal).and_then(|b| b.live.as_ref());
        for target in live.iter().flat_map(|live| &live.targets) {
            for group in &target.groups {
                let bundles = naming.entry(group.as_str()).or_default();
                if !bundles.contains(&ordinal) {
                    bundles.push(ordinal);
                }
            }
        }
    }
    for group in fleet.groups.keys() {
        naming.entry(group.as_str()).or_default();
    }
    for (group, mut bundles) in naming {
        bundles.sort_unstable();
        assert_eq!(
            fleet.bundles_naming_group(group),
            bundles,
            "bundles naming {group}"
        );
    }
    // The owner index: the bundles each GitRepo owns.
    let mut owned: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for bundle in fleet.bundles.iter().flatten() {
        if let Some(owner) = &bundle.owner {
            owned.entry(owner).or_default().push(bundle.name.clone());
        }
    }
    for (owner, mut names) in owned {
        names.sort();
        assert_eq!(
            fleet.bundles_owned_by(owner),
            names,
            "bundles owned by {owner}"
        );
    }
    // Label strings: each held exactly by the label pairs of the clusters that carry them.
    let mut strings: BTreeMap<String, u32> = BTreeMap::new();
    for cluster in fleet.clusters.iter().flatten() {
        for (key, value) in fleet.labels_map(&cluster.labels) {
            *strings.entry(key).or_default() += 1;
            *strings.entry(value).or_default() += 1;
        }
    }
    assert_eq!(fleet.interner.len(), strings.len(), "interned strings");
    for (text, count) in &strings {
        assert_eq!(
            fleet.interner.references(text),
            *count,
            "references to {text:?}"
        );
    }
}

#[test]
fn label_change_retargets_only_that_cluster() {
    let mut fleet = Fleet::default();
    let a = add_cluster(&mut fleet, "a", &[("env", "prod")]);
    let b = add_cluster(&mut fleet, "b", &[("env", "prod")]);
    let c = add_cluster(&mut fleet, "c", &[("env", "dev")]);
    put_bundle(
        &mut fleet,
        "prod-web",
        "v1",
        vec![selecting(&[("env", "prod")])],
    );
    put_bundle(
        &mut fleet,
        "dev-web",
        "v1",
        vec![selecting(&[("env", "dev")])],
    );
    report(&mut fleet, a, "prod-web", BundleState::Ready);
    let before = etags(&fleet, &[a, b, c]);
    let (a_set, c_set) = (fleet.desired_set(a), fleet.desired_set(c));

    relabel(&mut fleet, b, &[("env", "dev")]);
    assert_consistent(&fleet);

    assert_eq!(desired_names(&fleet, b), ["dev-web"]);
    let after = etags(&fleet, &[a, b, c]);
    assert_ne!(after[1], before[1], "b's desired set changed");
    assert_eq!(after[0], before[0], "a is untouched");
    assert_eq!(after[2], before[2], "c is untouched");
    assert_eq!(fleet.desired_set(a), a_set);
    assert_eq!(fleet.desired_set(c), c_set);
    // a's report still counts; b left prod-web without disturbing it.
    assert_eq!(
        summary(&fleet, "prod-web"),
        BundleSummary {
            desired: 1,
            ready: 1,
            ..BundleSummary::default()
        }
    );
    assert_eq!(
        summary(&fleet, "dev-web"),
        BundleSummary {
            desired: 2,
            pending: 2,
            ..BundleSummary::default()
        }
    );

    // A label change that no target cares about changes nothing.
    relabel(&mut fleet, a, &[("env", "prod"), ("zone", "eu")]);
    assert_eq!(etags(&fleet, &[a, b, c]), after);
    assert_eq!(summary(&fleet, "prod-web").ready, 1);
}

#[test]
fn label_change_that_picks_another_target_changes_only_that_clusters_options() {
    let mut fleet = Fleet::default();
    let a = add_cluster(&mut fleet, "a", &[("env", "prod")]);
    let b = add_cluster(&mut fleet, "b", &[("env", "prod")]);
    let mut canary = selecting(&[("canary", "true")]);
    canary.customization.namespace = Some("canary".into());
    put_bundle(
        &mut fleet,
        "web",
        "v1",
        vec![canary, selecting(&[("env", "prod")])],
    );
    report(&mut fleet, a, "web", BundleState::Ready);
    report(&mut fleet, b, "web", BundleState::Ready);
    let before = etags(&fleet, &[a, b]);

    relabel(&mut fleet, a, &[("env", "prod"), ("canary", "true")]);
    assert_consistent(&fleet);

    let desired = fleet.desired_set(a);
    assert_eq!(desired[0].options.namespace.as_deref(), Some("canary"));
    assert_ne!(fleet.desired_etag(a), before[0]);
    assert_eq!(fleet.desired_etag(b), before[1]);
    // a's report was for its old options: it is Pending until it reports the new deployment.
    assert_eq!(
        summary(&fleet, "web"),
        BundleSummary {
            desired: 2,
            ready: 1,
            pending: 1,
            ..BundleSummary::default()
        }
    );
}

#[test]
fn bundle_summary_counts_follow_reports_incrementally() {
    let mut fleet = Fleet::default();
    let clusters: Vec<u32> = (0..5)
        .map(|i| add_cluster(&mut fleet, &format!("c{i}"), &[("env", "prod")]))
        .collect();
    let [a, b, c, d, e] = clusters[..] else {
        unreachable!()
    };
    let web = put_bundle(&mut fleet, "web", "v1", vec![selecting(&[])]);
    let expect = |fleet: &Fleet, ready, not_ready, error, pending| {
        assert_eq!(
            summary(fleet, "web"),
            BundleSummary {
                desired: 5,
                ready,
                not_ready,
                modified: 0,
                error,
                pending,
            }
        );
    };
    expect(&fleet, 0, 0, 0, 5);
    report(&mut fleet, a, "web", BundleState::Ready);
    expect(&fleet, 1, 0, 0, 4);
    report(&mut fleet, b, "web", BundleState::NotReady);
    expect(&fleet, 1, 1, 0, 3);
    report(&mut fleet, c, "web", BundleState::Error);
    expect(&fleet, 1, 1, 1, 2);
    let problems: Vec<u32> = fleet.bundle(web).unwrap().problems.iter().collect();
    assert_eq!(problems, [b, c]);

    // Transitions move one count from one state to another.
    report(&mut fleet, a, "web", BundleState::Error);
    expect(&fleet, 0, 1, 2, 2);
    report(&mut fleet, b, "web", BundleState::Ready);
    expect(&fleet, 1, 0, 2, 2);
    let problems: Vec<u32> = fleet.bundle(web).unwrap().problems.iter().collect();
    assert_eq!(problems, [a, c]);
    // The same report again changes nothing.
    report(&mut fleet, b, "web", BundleState::Ready);
    expect(&fleet, 1, 0, 2, 2);

    // A report for another deployment id (an old revision) counts as Pending.
    report_for(&mut fleet, d, "web", "stale".into(), BundleState::Ready);
    expect(&fleet, 1, 0, 2, 2);
    // A report for a bundle the server does not know is ignored.
    report_for(&mut fleet, e, "nope", "x".into(), BundleState::Ready);
    expect(&fleet, 1, 0, 2, 2);

    // The agent removed the bundle: back to Pending.
    let held = fleet.cluster(c).and_then(|c| c.report_digest.clone());
    let request = SyncRequest {
        report_digest: "after-removal".into(),
        base_digest: held,
        removed: vec!["web".into()],
        ..SyncRequest::default()
    };
    assert!(fleet.intake(c, &request).changed);
    expect(&fleet, 1, 0, 1, 3);

    // A removed cluster leaves the summary.
    fleet.remove_cluster(a);
    assert_consistent(&fleet);
    assert_eq!(
        summary(&fleet, "web"),
        BundleSummary {
            desired: 4,
            ready: 1,
            pending: 3,
            ..BundleSummary::default()
        }
    );
    assert!(!fleet.bundle(web).unwrap().problems.contains(a));
}

#[test]
fn content_change_moves_clusters_to_pending_until_they_report_the_new_deployment() {
    let mut fleet = Fleet::default();
    let a = add_cluster(&mut fleet, "a", &[]);
    let b = add_cluster(&mut fleet, "b", &[]);
    let other = add_cluster(&mut fleet, "other", &[("team", "x")]);
    put_bundle(&mut fleet, "web", "v1", vec![selecting(&[])]);
    put_bundle(&mut fleet, "team", "v1", vec![selecting(&[("team", "x")])]);
    report(&mut fleet, a, "web", BundleState::Ready);
    report(&mut fleet, b, "web", BundleState::Error);
    let v1_deployment = deployment_of(&fleet, a, "web");
    let before = etags(&fleet, &[a, b, other]);
    let team_etag_inputs = fleet.desired_set(other);

    put_bundle(&mut fleet, "web", "v2", vec![selecting(&[])]);
    assert_eq!(
        summary(&fleet, "web"),
        BundleSummary {
            desired: 3,
            pending: 3,
            ..BundleSummary::default()
        }
    );
    let (_, web) = fleet.bundle_by_name("web").unwrap();
    assert!(web.problems.is_empty(), "old problems are not current");
    assert_eq!(web.live.as_ref().unwrap().epoch, 2);
    let after = etags(&fleet, &[a, b, other]);
    for i in 0..3 {
        assert_ne!(
            after[i], before[i],
            "every targeted cluster gets the new digest"
        );
    }
    assert_ne!(deployment_of(&fleet, a, "web"), v1_deployment);
    assert_eq!(
        fleet.desired_set(other).iter().find(|d| d.name == "team"),
        team_etag_inputs.iter().find(|d| d.name == "team"),
        "other bundles are untouched"
    );

    // The old report arriving late does not count for the new revision.
    report_for(&mut fleet, a, "web", v1_deployment, BundleState::Ready);
    assert_eq!(summary(&fleet, "web").pending, 3);
    report(&mut fleet, a, "web", BundleState::Ready);
    report(&mut fleet, b, "web", BundleState::NotReady);
    assert_eq!(
        summary(&fleet, "web"),
        BundleSummary {
            desired: 3,
            ready: 1,
            not_ready: 1,
            pending: 1,
            ..BundleSummary::default()
        }
    );
}

#[test]
fn content_reverted_before_the_agent_synced_counts_its_report_again() {
    let mut fleet = Fleet::default();
    let a = add_cluster(&mut fleet, "a", &[]);
    let b = add_cluster(&mut fleet, "b", &[]);
    put_bundle(&mut fleet, "web", "v1", vec![selecting(&[])]);
    for cluster in [a, b] {
        sync_unchanged(&mut fleet, cluster);
        report(&mut fleet, cluster, "web", BundleState::Ready);
    }
    let etag = fleet.desired_etag(a);

    // v2 then back to v1 (a quick rollback), while neither agent synced.
    put_bundle(&mut fleet, "web", "v2", vec![selecting(&[])]);
    put_bundle(&mut fleet, "web", "v1", vec![selecting(&[])]);
    assert_eq!(fleet.desired_etag(a), etag, "the agent already runs v1");
    assert_eq!(summary(&fleet, "web").pending, 2);

    // The agents' next syncs carry nothing new: their desired set is current and their reports
    // are for the live deployment, so they count as Ready again.
    sync_unchanged(&mut fleet, a);
    assert_eq!(
        summary(&fleet, "web"),
        BundleSummary {
            desired: 2,
            ready: 1,
            pending: 1,
            ..BundleSummary::default()
        }
    );
    sync_unchanged(&mut fleet, b);
    assert_eq!(summary(&fleet, "web").ready, 2);
    // Once counted, an unchanged sync needs no write lock again.
    let entry = fleet.cluster(a).unwrap();
    let request = SyncRequest {
        etag: Some(etag),
        report_digest: entry.report_digest.clone().unwrap(),
        ..SyncRequest::default()
    };
    assert!(!fleet.intake_needs_write(entry, &request));
}

#[test]
fn group_selector_change_retargets_bundles_that_target_the_group() {
    let mut fleet = Fleet::default();
    let a = add_cluster(&mut fleet, "a", &[("env", "prod")]);
    let b = add_cluster(&mut fleet, "b", &[("env", "dev")]);
    let prod = Selector::parse("env=prod").unwrap();
    fleet.upsert_group("edge", ObjectMeta::default(), prod);
    put_bundle(&mut fleet, "web", "v1", vec![in_group("edge")]);
    put_bundle(&mut fleet, "base", "v1", vec![selecting(&[])]);
    assert_eq!(desired_names(&fleet, a), ["base", "web"]);
    assert_eq!(desired_names(&fleet, b), ["base"]);
    report(&mut fleet, a, "web", BundleState::Ready);
    report(&mut fleet, a, "base", BundleState::Ready);
    let base_summary = summary(&fleet, "base");

    fleet.upsert_group(
        "edge",
        ObjectMeta::default(),
        Selector::parse("env=dev").unwrap(),
    );
    assert_consistent(&fleet);
    assert_eq!(desired_names(&fleet, a), ["base"]);
    assert_eq!(desired_names(&fleet, b), ["base", "web"]);
    let members: Vec<u32> = fleet.groups["edge"].members.iter().collect();
    assert_eq!(members, [b]);
    assert_eq!(
        summary(&fleet, "web"),
        BundleSummary {
            desired: 1,
            pending: 1,
            ..BundleSummary::default()
        }
    );
    assert_eq!(
        summary(&fleet, "base"),
        base_summary,
        "other bundles keep their counts"
    );

    // A cluster relabelled into the group joins the bundle.
    relabel(&mut fleet, a, &[("env", "dev")]);
    assert_consistent(&fleet);
    assert_eq!(desired_names(&fleet, a), ["base", "web"]);

    // Deleting the group leaves the bundle targeting nothing.
    fleet.remove_group("edge");
    assert_consistent(&fleet);
    assert_eq!(summary(&fleet, "web"), BundleSummary::default());
    assert_eq!(desired_names(&fleet, a), ["base"]);
    assert_eq!(desired_names(&fleet, b), ["base"]);
}

#[test]
fn deleting_a_bundle_removes_it_from_desired_sets() {
    let mut fleet = Fleet::default();
    let a = add_cluster(&mut fleet, "a", &[("env", "prod")]);
    let b = add_cluster(&mut fleet, "b", &[("env", "dev")]);
    let web = put_bundle(&mut fleet, "web", "v1", vec![selecting(&[("env", "prod")])]);
    put_bundle(&mut fleet, "base", "v1", vec![selecting(&[])]);
    report(&mut fleet, a, "web", BundleState::Ready);
    let web_digest = fleet.desired_set(a)[1].digest.clone();
    assert_eq!(desired_names(&fleet, a), ["base", "web"]);
    assert!(fleet.cluster_may_read(a, &web_digest));
    let (etag_a, etag_b) = (fleet.desired_etag(a), fleet.desired_etag(b));

    fleet.remove_bundle("web");
    assert_consistent(&fleet);
    assert!(fleet.bundle_by_name("web").is_none());
    assert_eq!(desired_names(&fleet, a), ["base"]);
    assert_ne!(fleet.desired_etag(a), etag_a);
    assert_eq!(fleet.desired_etag(b), etag_b, "b never had it");
    assert!(!fleet.cluster_may_read(a, &web_digest));
    assert!(!fleet.referenced_digests().contains(&web_digest));
    // Removing it again is a no-op.
    fleet.remove_bundle("web");

    // A new bundle reusing the freed ordinal starts from nothing.
    let api = put_bundle(&mut fleet, "api", "v1", vec![selecting(&[("env", "dev")])]);
    assert_eq!(api, web);
    assert_eq!(desired_names(&fleet, a), ["base"]);
    assert_eq!(desired_names(&fleet, b), ["api", "base"]);
    assert_eq!(
        summary(&fleet, "api"),
        BundleSummary {
            desired: 1,
            pending: 1,
            ..BundleSummary::default()
        }
    );
}

#[test]
fn paused_bundle_keeps_its_live_revision_while_the_spec_moves_on() {
    let mut fleet = Fleet::default();
    let a = add_cluster(&mut fleet, "a", &[("env", "prod")]);
    let b = add_cluster(&mut fleet, "b", &[("env", "dev")]);
    put_bundle(&mut fleet, "web", "v1", vec![selecting(&[("env", "prod")])]);
    report(&mut fleet, a, "web", BundleState::Ready);
    let (etag_a, etag_b) = (fleet.desired_etag(a), fleet.desired_etag(b));
    let live_digest = fleet.desired_set(a)[0].digest.clone();

    // New content and new targets while paused: nothing rolls out, nothing is recounted.
    put_paused(&mut fleet, "web", "v2", vec![selecting(&[])]);
    let (_, web) = fleet.bundle_by_name("web").unwrap();
    assert_ne!(web.spec_digest, live_digest, "the spec moved on");
    assert_eq!(web.live.as_ref().unwrap().digest, live_digest);
    assert_eq!(web.live.as_ref().unwrap().epoch, 1);
    assert_eq!(fleet.desired_etag(a), etag_a);
    assert_eq!(fleet.desired_etag(b), etag_b);
    assert_eq!(
        summary(&fleet, "web"),
        BundleSummary {
            desired: 1,
            ready: 1,
            ..BundleSummary::default()
        }
    );
    // Both digests are kept: the live one is served, the spec one is what GET shows.
    let referenced = fleet.referenced_digests();
    assert!(referenced.contains(&live_digest) && referenced.contains(&web.spec_digest));

    // Unpausing rolls out the latest spec.
    put_bundle(&mut fleet, "web", "v2", vec![selecting(&[])]);
    assert_eq!(desired_names(&fleet, b), ["web"]);
    assert_ne!(fleet.desired_etag(a), etag_a);
    assert_eq!(
        summary(&fleet, "web"),
        BundleSummary {
            desired: 2,
            pending: 2,
            ..BundleSummary::default()
        }
    );

    // A bundle created paused has no live revision and deploys nothing.
    let mut created_paused = entry(&fleet, "later", "v1", vec![selecting(&[])]);
    created_paused.spec.paused = true;
    created_paused.live = None;
    fleet.upsert_bundle(created_paused);
    assert_consistent(&fleet);
    assert_eq!(summary(&fleet, "later"), BundleSummary::default());
    assert_eq!(desired_names(&fleet, a), ["web"]);
    put_bundle(&mut fleet, "later", "v1", vec![selecting(&[])]);
    assert_eq!(desired_names(&fleet, a), ["later", "web"]);
}

#[test]
fn cluster_counts_track_online_and_offline() {
    let mut fleet = Fleet::default();
    let a = add_cluster(&mut fleet, "a", &[]);
    let b = add_cluster(&mut fleet, "b", &[]);
    let c = add_cluster(&mut fleet, "c", &[]);
    let counts = |fleet: &Fleet| fleet.cluster_counts;
    assert_eq!(counts(&fleet), [3, 0, 0]);

    assert!(fleet.set_cluster_state(a, ClusterState::Online));
    assert!(fleet.set_cluster_state(b, ClusterState::Online));
    assert_eq!(counts(&fleet), [1, 2, 0]);
    assert_eq!(fleet.online.iter().collect::<Vec<_>>(), [a, b]);
    assert!(fleet.cluster(a).unwrap().dirty.load(Ordering::Relaxed));

    assert!(fleet.set_cluster_state(a, ClusterState::Offline));
    assert_eq!(counts(&fleet), [1, 1, 1]);
    assert_eq!(fleet.online.iter().collect::<Vec<_>>(), [b]);
    // No change, no count.
    assert!(!fleet.set_cluster_state(a, ClusterState::Offline));
    assert_eq!(counts(&fleet), [1, 1, 1]);
    assert!(!fleet.set_cluster_state(999, ClusterState::Online));

    // A sync of an Offline cluster brings it back Online.
    sync_unchanged(&mut fleet, a);
    assert_eq!(fleet.cluster(a).unwrap().state, ClusterState::Online);
    assert_eq!(counts(&fleet), [1, 2, 0]);

    fleet.remove_cluster(b);
    assert_eq!(counts(&fleet), [1, 1, 0]);
    assert!(!fleet.online.contains(b));
    fleet.remove_cluster(c);
    assert_eq!(counts(&fleet), [0, 1, 0]);
    assert_consistent(&fleet);

    // A new cluster reusing a freed ordinal starts Pending and offline.
    let d = add_cluster(&mut fleet, "d", &[]);
    assert!(d == b || d == c);
    assert_eq!(fleet.cluster(d).unwrap().state, ClusterState::Pending);
    assert!(!fleet.online.contains(d));
    assert_eq!(counts(&fleet), [1, 1, 0]);
    assert_consistent(&fleet);
}

fn config_map(name: &str, content: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"content": content},
    })
}

fn digest_sent(fleet: &Fleet, cluster: u32, bundle: &str) -> String {
    fleet
        .desired_set(cluster)
        .into_iter()
        .find(|d| d.name == bundle)
        .map(|d| d.digest)
        .expect("bundle in the desired set")
}

#[test]
fn a_target_with_its_own_resources_sends_its_clusters_that_content() {
    let mut fleet = Fleet::default();
    let prod = add_cluster(&mut fleet, "p", &[("env", "prod")]);
    let dev = add_cluster(&mut fleet, "d", &[("env", "dev")]);
    let variant = |content: &str| BundleTarget {
        resources: Some(vec![config_map("web", content)]),
        ..selecting(&[("env", "prod")])
    };
    put_bundle(
        &mut fleet,
        "web",
        "base",
        vec![variant("prod-1"), selecting(&[])],
    );
    let prod_digest = content_digest(&canonical_content(&[config_map("web", "prod-1")]));
    assert_eq!(digest_sent(&fleet, prod, "web"), prod_digest);
    let base_digest = digest_sent(&fleet, dev, "web");
    assert_ne!(base_digest, prod_digest);
    assert!(fleet.cluster_may_read(prod, &prod_digest));
    assert!(
        !fleet.cluster_may_read(dev, &prod_digest),
        "a cluster reads only its own variant"
    );
    report(&mut fleet, prod, "web", BundleState::Ready);
    report(&mut fleet, dev, "web", BundleState::Ready);
    assert_eq!(summary(&fleet, "web").ready, 2);

    // The variant changes: prod gets new content and counts Pending until it reports it;
    // dev's content is the same.
    let old_prod_etag = fleet.desired_etag(prod);
    let old_dev_etag = fleet.desired_etag(dev);
    put_bundle(
        &mut fleet,
        "web",
        "base",
        vec![variant("prod-2"), selecting(&[])],
    );
    assert_ne!(digest_sent(&fleet, prod, "web"), prod_digest);
    assert_ne!(fleet.desired_etag(prod), old_prod_etag);
    assert_eq!(fleet.desired_etag(dev), old_dev_etag, "dev is not woken");
    assert_eq!(digest_sent(&fleet, dev, "web"), base_digest);
    report(&mut fleet, prod, "web", BundleState::Ready);
    assert!(
        fleet
            .referenced_digests()
            .contains(&digest_sent(&fleet, prod, "web"))
    );
}

#[test]
fn a_do_not_deploy_target_excludes_the_clusters_it_matches_first() {
    let mut fleet = Fleet::default();
    let lab = add_cluster(&mut fleet, "lab", &[("env", "lab")]);
    let dev = add_cluster(&mut fleet, "dev", &[("env", "dev")]);
    let excluded = BundleTarget {
        do_not_deploy: true,
        ..selecting(&[("env", "lab")])
    };
    put_bundle(&mut fleet, "web", "v1", vec![excluded, selecting(&[])]);
    assert!(desired_names(&fleet, lab).is_empty());
    assert_eq!(desired_names(&fleet, dev), ["web"]);
    assert_eq!(summary(&fleet, "web").desired, 1);
    relabel(&mut fleet, lab, &[("env", "dev")]);
    assert_consistent(&fleet);
    assert_eq!(desired_names(&fleet, lab), ["web"]);
    relabel(&mut fleet, dev, &[("env", "lab")]);
    assert_consistent(&fleet);
    assert!(desired_names(&fleet, dev).is_empty());
    assert_eq!(summary(&fleet, "web").desired, 1);
}

#[test]
fn a_dependent_bundle_waits_until_its_dependency_is_ready_on_that_cluster() {
    let mut fleet = Fleet::default();
    let a = add_cluster(&mut fleet, "a", &[]);
    let b = add_cluster(&mut fleet, "b", &[]);
    put_bundle(&mut fleet, "base", "v1", vec![selecting(&[])]);
    let mut app = entry(&fleet, "app", "v1", vec![selecting(&[])]);
    app.dependencies = vec![super::Dependency::Name("base".into())];
    fleet.upsert_bundle(app);
    assert_consistent(&fleet);
    assert_eq!(desired_names(&fleet, a), ["base"]);
    let waiting = fleet.desired_etag(a);
    report(&mut fleet, a, "base", BundleState::Ready);
    assert_eq!(desired_names(&fleet, a), ["app", "base"]);
    assert_ne!(
        fleet.desired_etag(a),
        waiting,
        "the agent learns of it at its next sync"
    );
    assert_eq!(desired_names(&fleet, b), ["base"], "per cluster");
    report(&mut fleet, a, "app", BundleState::Ready);
    // Once deployed, a dependency that degrades does not withdraw it.
    report(&mut fleet, a, "base", BundleState::NotReady);
    assert_eq!(desired_names(&fleet, a), ["app", "base"]);
    // Waiting for a bundle that does not exist means waiting.
    let mut orphan = entry(&fleet, "orphan", "v1", vec![selecting(&[])]);
    orphan.dependencies = vec![super::Dependency::Name("missing".into())];
    fleet.upsert_bundle(orphan);
    assert!(!desired_names(&fleet, b).contains(&"orphan".to_string()));
}

#[test]
fn a_selector_dependency_counts_only_bundles_deployed_to_that_cluster() {
    let mut fleet = Fleet::default();
    let a = add_cluster(&mut fleet, "a", &[("site", "a")]);
    let mut base = entry(&fleet, "base-a", "v1", vec![selecting(&[("site", "a")])]);
    base.metadata.labels = labels(&[("tier", "base")]);
    fleet.upsert_bundle(base);
    // A base bundle for other clusters never becomes Ready here and must not hold `a` back.
    let mut elsewhere = entry(&fleet, "base-b", "v1", vec![selecting(&[("site", "b")])]);
    elsewhere.metadata.labels = labels(&[("tier", "base")]);
    fleet.upsert_bundle(elsewhere);
    let mut app = entry(&fleet, "app", "v1", vec![selecting(&[])]);
    app.dependencies = vec![super::Dependency::Selector(
        Selector::parse("tier=base").unwrap(),
    )];
    fleet.upsert_bundle(app);
    assert_consistent(&fleet);
    assert_eq!(desired_names(&fleet, a), ["base-a"]);
    report(&mut fleet, a, "base-a", BundleState::Ready);
    assert_eq!(desired_names(&fleet, a), ["app", "base-a"]);
}

#[test]
fn a_target_naming_several_groups_needs_a_cluster_in_all_of_them() {
    let mut fleet = Fleet::default();
    let both = add_cluster(&mut fleet, "both", &[("tier", "edge"), ("canary", "true")]);
    let edge = add_cluster(&mut fleet, "edge", &[("tier", "edge")]);
    fleet.upsert_group(
        "edge",
        ObjectMeta::default(),
        Selector::parse("tier=edge").unwrap(),
    );
    fleet.upsert_group(
        "canary",
        ObjectMeta::default(),
        Selector::parse("canary=true").unwrap(),
    );
    let target = BundleTarget {
        cluster_groups: vec!["canary".into()],
        ..in_group("edge")
    };
    put_bundle(&mut fleet, "web", "v1", vec![target]);
    assert_eq!(desired_names(&fleet, both), ["web"]);
    assert!(desired_names(&fleet, edge).is_empty());
    // The second group changing moves the bundle too.
    fleet.upsert_group(
        "canary",
        ObjectMeta::default(),
        Selector::parse("tier=edge").unwrap(),
    );
    assert_consistent(&fleet);
    assert_eq!(desired_names(&fleet, edge), ["web"]);
}

/// `put_bundle`, and the bundle's content held as an admin write holds it.
fn put_bundle_with_content(
    fleet: &mut Fleet,
    name: &str,
    content: &str,
    targets: Vec<BundleTarget>,
) {
    let body = canonical_content(&[config_map(name, content)]);
    fleet.contents.insert(content_digest(&body), body.into());
    put_bundle(fleet, name, content, targets);
}

#[test]
fn sync_replies_inline_only_content_the_cluster_has_not_applied() {
    let mut fleet = Fleet::default();
    let prod = add_cluster(&mut fleet, "prod-1", &[("env", "prod")]);
    let dev = add_cluster(&mut fleet, "dev-1", &[("env", "dev")]);
    put_bundle_with_content(&mut fleet, "app", "v1", vec![selecting(&[("env", "prod")])]);
    put_bundle_with_content(&mut fleet, "db", "v1", vec![selecting(&[])]);
    put_bundle_with_content(&mut fleet, "lab", "v1", vec![selecting(&[("env", "dev")])]);
    let inlined = |fleet: &Fleet, cluster: u32, budget: usize| -> Vec<String> {
        fleet
            .inline_contents(cluster, budget)
            .into_iter()
            .map(|(digest, bytes)| {
                assert_eq!(fleet.contents.get(digest), Some(bytes));
                digest.to_string()
            })
            .collect()
    };
    let (app, db) = (
        digest_sent(&fleet, prod, "app"),
        digest_sent(&fleet, prod, "db"),
    );
    assert_eq!(inlined(&fleet, prod, 1 << 20), [app.clone(), db.clone()]);
    // Only content of the cluster's own desired set.
    assert_eq!(
        inlined(&fleet, dev, 1 << 20),
        [db.clone(), digest_sent(&fleet, dev, "lab")]
    );
    // What the cluster reported applying is not sent again, whatever its state.
    report(&mut fleet, prod, "app", BundleState::NotReady);
    assert_eq!(inlined(&fleet, prod, 1 << 20), std::slice::from_ref(&db));
    // New content is.
    put_bundle_with_content(&mut fleet, "app", "v2", vec![selecting(&[("env", "prod")])]);
    let app_v2 = digest_sent(&fleet, prod, "app");
    assert_ne!(app_v2, app);
    assert_eq!(inlined(&fleet, prod, 1 << 20), [app_v2.clone(), db.clone()]);
    // Within the budget only.
    let one = fleet.contents.get(&app_v2).map_or(0, |b| b.len());
    assert_eq!(inlined(&fleet, prod, one), [app_v2]);
    // A content too large for what is left is skipped, the next one may still fit ("db" is one
    // byte shorter than "app").
    assert_eq!(inlined(&fleet, prod, one - 1), [db]);
    assert!(inlined(&fleet, prod, 0).is_empty());
}

/// The body of `config_map(name, content)` as an admin write puts it, and its digest.
fn content_of(name: &str, content: &str) -> (String, Vec<u8>) {
    let body = canonical_content(&[config_map(name, content)]);
    (content_digest(&body), body)
}

#[test]
fn content_is_held_exactly_while_a_bundle_or_target_references_it() {
    let mut fleet = Fleet::default();
    add_cluster(&mut fleet, "a", &[("env", "prod")]);
    let held = |fleet: &Fleet, digest: &str| fleet.contents.contains_key(digest);
    let (v1, body1) = content_of("web", "v1");
    let (v2, body2) = content_of("web", "v2");
    let (v3, body3) = content_of("web", "v3");

    // Create: the content a write puts is held once the bundle references it.
    fleet.contents.insert(v1.clone(), body1.clone().into());
    put_bundle(&mut fleet, "web", "v1", vec![selecting(&[])]);
    fleet.contents.release_unreferenced();
    assert!(held(&fleet, &v1));
    // Two bundles share one content: it stays until the last one lets go.
    fleet.contents.insert(v1.clone(), body1.into());
    let mut twin = entry(&fleet, "twin", "v1", vec![selecting(&[])]);
    twin.spec_digest = v1.clone();
    twin.live.as_mut().unwrap().digest = v1.clone();
    fleet.upsert_bundle(twin);
    assert_consistent(&fleet);
    assert_eq!(
        fleet.contents.references(&v1),
        4,
        "spec and live of two bundles"
    );

    // Paused: the spec moves to v2, the live revision keeps v1: both held.
    fleet.contents.insert(v2.clone(), body2.into());
    put_paused(&mut fleet, "web", "v2", vec![selecting(&[])]);
    fleet.contents.release_unreferenced();
    assert!(held(&fleet, &v1) && held(&fleet, &v2));

    // Update (unpaused) to v3: v2 loses its last reference and goes at once; v1 stays (twin).
    fleet.contents.insert(v3.clone(), body3.into());
    put_bundle(&mut fleet, "web", "v3", vec![selecting(&[])]);
    assert!(!held(&fleet, &v2), "v2 released with its last reference");
    assert!(held(&fleet, &v1) && held(&fleet, &v3));

    // Delete the twin: v1's last reference goes.
    fleet.remove_bundle("twin");
    assert_consistent(&fleet);
    assert!(
        !held(&fleet, &v1),
        "v1 released when the last bundle using it went"
    );
    assert!(held(&fleet, &v3));

    // A target with its own content: held while the target exists, released when it goes.
    let own = config_map("web", "edge");
    let target = BundleTarget {
        resources: Some(vec![own.clone()]),
        ..selecting(&[("env", "prod")])
    };
    let own_body = canonical_content(&[own]);
    let own_digest = content_digest(&own_body);
    fleet.contents.insert(own_digest.clone(), own_body.into());
    put_bundle(&mut fleet, "web", "v3", vec![target, selecting(&[])]);
    fleet.contents.release_unreferenced();
    assert!(held(&fleet, &own_digest), "a target's own content is held");
    put_bundle(&mut fleet, "web", "v3", vec![selecting(&[])]);
    assert!(!held(&fleet, &own_digest), "released when the target goes");

    // Content put but never taken up by a bundle is released by the sweep of staged content.
    let (stray, stray_body) = content_of("stray", "v1");
    fleet.contents.insert(stray.clone(), stray_body.into());
    fleet.contents.release_unreferenced();
    assert!(!held(&fleet, &stray));

    // Delete the last bundle: nothing is held.
    fleet.remove_bundle("web");
    fleet.contents.release_unreferenced();
    assert_consistent(&fleet);
    assert!(fleet.contents.is_empty(), "no content without bundles");
    assert_eq!(fleet.contents.total_bytes(), 0);
}

#[test]
fn label_strings_are_freed_when_no_cluster_carries_them() {
    let mut fleet = Fleet::default();
    let baseline = fleet.interner.len();
    let a = add_cluster(&mut fleet, "a", &[("env", "prod"), ("tier", "web")]);
    let b = add_cluster(&mut fleet, "b", &[("env", "prod"), ("unique-b", "x")]);
    assert_eq!(fleet.interner.len(), baseline + 6);
    // Relabelling drops what only the old labels used, keeps what is still used.
    relabel(&mut fleet, b, &[("env", "dev")]);
    assert_consistent(&fleet);
    assert_eq!(fleet.interner.get("unique-b"), None);
    assert_eq!(fleet.interner.get("x"), None);
    assert!(
        fleet.interner.get("prod").is_some(),
        "cluster a still carries it"
    );
    fleet.remove_cluster(a);
    assert_consistent(&fleet);
    assert_eq!(fleet.interner.get("tier"), None);
    assert_eq!(fleet.interner.get("prod"), None);
    fleet.remove_cluster(b);
    assert_consistent(&fleet);
    assert_eq!(fleet.interner.len(), baseline, "back to the baseline");
    // Selectors still work after ids were freed and reused.
    let c = add_cluster(&mut fleet, "c", &[("region", "eu")]);
    put_bundle(&mut fleet, "eu", "v1", vec![selecting(&[("region", "eu")])]);
    assert_eq!(desired_names(&fleet, c), ["eu"]);
}

#[test]
fn the_bundles_a_gitrepo_owns_are_found_from_the_owner_index() {
    let mut fleet = Fleet::default();
    for (name, owner) in [("a", "repo"), ("b", "repo"), ("c", "other")] {
        let mut owned = entry(&fleet, name, "v1", vec![selecting(&[])]);
        owned.owner = Some(owner.into());
        fleet.upsert_bundle(owned);
    }
    put_bundle(&mut fleet, "admin-made", "v1", vec![selecting(&[])]);
    assert_eq!(fleet.bundles_owned_by("repo"), ["a", "b"]);
    // A bundle handed to another owner moves in the index; a removed one leaves it.
    let mut moved = entry(&fleet, "b", "v2", vec![selecting(&[])]);
    moved.owner = Some("other".into());
    fleet.upsert_bundle(moved);
    fleet.remove_bundle("a");
    assert_consistent(&fleet);
    assert!(fleet.bundles_owned_by("repo").is_empty());
    assert_eq!(fleet.bundles_owned_by("other"), ["b", "c"]);
}
