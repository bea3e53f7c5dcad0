//! Runs in the fleet model: pins move deployments between a bundle's stable and candidate
//! revisions, clusters outside the current wave keep their etag, reports feed the planner, and
//! a run's end promotes or drops the candidate — with `assert_consistent` after every step.

use flotilla_api::{BundleState, LateJoiners, OfflinePolicy, OnFailure, RolloutStrategy};
use flotilla_core::rollout::{
    planner::{Override, Phase, Step},
    strategy::{Amount, Members, Strategy, Wave},
};

use super::*;
use crate::fleet::rollouts::{Rollout, Slot, now_millis};

const SECOND: u64 = 1_000;

fn canary_then_rest(canary_soak: u64) -> Strategy {
    let wave = |name: &str, percent: u32| Wave {
        name: name.into(),
        members: Members::Share {
            amount: Amount::BasisPoints(percent * 100),
            sort_by: None,
        },
        mandatory: false,
        max_concurrency: Amount::BasisPoints(10_000),
        min_soak_ms: 0,
        progress_deadline_ms: 600 * SECOND,
        max_failures: Amount::Count(0),
        pause_after: false,
    };
    let mut canary = wave("canary", 10);
    canary.mandatory = true;
    canary.min_soak_ms = canary_soak;
    Strategy {
        waves: vec![canary, wave("rest", 100)],
        on_failure: OnFailure::Rollback,
        late_joiners: LateJoiners::Stable,
        offline: OfflinePolicy::Skip,
        seed: 7,
    }
}

/// Puts `content` as the bundle's candidate (the stable revision stays) and starts a run.
fn start_candidate(
    fleet: &mut Fleet,
    name: &str,
    content: &str,
    strategy: Strategy,
    now: u64,
) -> u32 {
    let ordinal = put_candidate(fleet, name, content);
    let rollout = Rollout {
        spec: RolloutStrategy::default(),
        from: 1,
        to: 2,
        started: 0,
        updated: 0,
        reason: None,
        run: None,
        ended: None,
        unapplied: Step::default(),
        followed: false,
    };
    fleet.start_run(ordinal, strategy, rollout, None, now);
    assert_consistent(fleet);
    ordinal
}

/// Puts `content` as the bundle's candidate (revision 2; the stable revision stays), no run.
fn put_candidate(fleet: &mut Fleet, name: &str, content: &str) -> u32 {
    let old = fleet
        .bundle_by_name(name)
        .map(|(_, b)| b)
        .expect("bundle exists");
    let (stable, stable_targets) = (old.live.clone(), old.live_targets.clone());
    let mut new = entry(fleet, name, content, old.live_targets.clone());
    new.candidate = new.live.take();
    new.candidate_targets = std::mem::replace(&mut new.live_targets, stable_targets);
    new.live = stable;
    if let Some(candidate) = new.candidate.as_mut() {
        candidate.revision = 2;
    }
    let ordinal = fleet.upsert_bundle(new);
    assert_consistent(fleet);
    ordinal
}

/// One driver step without a store: step, then apply the moves.
fn step(fleet: &mut Fleet, bundle: u32, now: u64) {
    fleet.step_run(bundle, now);
    while fleet.apply_run_moves(bundle, now, 1) {}
    assert_consistent(fleet);
}

fn pinned(fleet: &Fleet, bundle: u32, clusters: &[u32]) -> Vec<u32> {
    clusters
        .iter()
        .copied()
        .filter(|&c| fleet.slot_of(c, bundle) == Slot::Candidate)
        .collect()
}

fn fleet_of(count: usize) -> (Fleet, Vec<u32>) {
    let mut fleet = Fleet::default();
    let clusters: Vec<u32> = (0..count)
        .map(|i| add_cluster(&mut fleet, &format!("store-{i:02}"), &[("env", "prod")]))
        .collect();
    put_bundle(&mut fleet, "web", "v1", vec![selecting(&[("env", "prod")])]);
    for &cluster in &clusters {
        fleet.set_cluster_state(cluster, ClusterState::Online);
        report(&mut fleet, cluster, "web", BundleState::Ready);
    }
    (fleet, clusters)
}

#[test]
fn clusters_outside_the_current_wave_keep_the_stable_etag() {
    let (mut fleet, clusters) = fleet_of(20);
    let before = etags(&fleet, &clusters);
    let bundle = start_candidate(&mut fleet, "web", "v2", canary_then_rest(30 * SECOND), 0);
    assert_eq!(
        etags(&fleet, &clusters),
        before,
        "starting a run moves nobody"
    );
    step(&mut fleet, bundle, 0);
    let canary = pinned(&fleet, bundle, &clusters);
    assert_eq!(canary.len(), 2, "10% of 20");
    let after = etags(&fleet, &clusters);
    for (i, &cluster) in clusters.iter().enumerate() {
        assert_eq!(
            after[i] != before[i],
            canary.contains(&cluster),
            "only the canary's etags move ({})",
            fleet.cluster(cluster).unwrap().name
        );
    }
    // The canary reads the candidate's content; the others may not.
    let candidate = digest_sent(&fleet, canary[0], "web");
    let outside = *clusters.iter().find(|c| !canary.contains(c)).unwrap();
    assert!(fleet.cluster_may_read(canary[0], &candidate));
    assert!(!fleet.cluster_may_read(outside, &candidate));
}

#[test]
fn ready_on_the_candidate_advances_and_success_promotes_it() {
    let (mut fleet, clusters) = fleet_of(20);
    let bundle = start_candidate(&mut fleet, "web", "v2", canary_then_rest(0), 0);
    step(&mut fleet, bundle, 0);
    let canary = pinned(&fleet, bundle, &clusters);
    // Still Ready on v1 from before: not done.
    step(&mut fleet, bundle, 1_000);
    assert_eq!(pinned(&fleet, bundle, &clusters), canary);
    for &cluster in &canary {
        report(&mut fleet, cluster, "web", BundleState::Ready);
    }
    step(&mut fleet, bundle, 2_000);
    assert_eq!(
        pinned(&fleet, bundle, &clusters).len(),
        20,
        "the rest wave started"
    );
    for &cluster in &clusters {
        if !canary.contains(&cluster) {
            report(&mut fleet, cluster, "web", BundleState::Ready);
        }
    }
    step(&mut fleet, bundle, 3_000);
    assert_eq!(fleet.run(bundle).unwrap().phase(), Phase::Succeeded);
    let before = etags(&fleet, &clusters);
    fleet.promote_candidate(bundle);
    assert_consistent(&fleet);
    assert_eq!(
        etags(&fleet, &clusters),
        before,
        "promotion changes nothing agents see"
    );
    assert_eq!(
        summary(&fleet, "web").ready,
        20,
        "promotion keeps the counted states"
    );
    assert!(pinned(&fleet, bundle, &clusters).is_empty());
}

#[test]
fn a_failed_canary_goes_back_to_the_stable_etag_and_the_rest_never_moves() {
    let (mut fleet, clusters) = fleet_of(20);
    let before = etags(&fleet, &clusters);
    let bundle = start_candidate(&mut fleet, "web", "v2", canary_then_rest(0), 0);
    step(&mut fleet, bundle, 0);
    let canary = pinned(&fleet, bundle, &clusters);
    report(&mut fleet, canary[0], "web", BundleState::Error);
    step(&mut fleet, bundle, 1_000);
    assert_eq!(fleet.run(bundle).unwrap().phase(), Phase::RollingBack);
    assert!(
        pinned(&fleet, bundle, &clusters).is_empty(),
        "the canary went back"
    );
    assert_eq!(
        etags(&fleet, &clusters),
        before,
        "everyone is sent the stable revision again"
    );
    // Back on v1: their old v1 reports count again once the agents report them.
    for &cluster in &canary {
        report(&mut fleet, cluster, "web", BundleState::Ready);
    }
    step(&mut fleet, bundle, 2_000);
    assert_eq!(fleet.run(bundle).unwrap().phase(), Phase::RolledBack);
    fleet.drop_candidate(bundle);
    assert_consistent(&fleet);
    assert_eq!(summary(&fleet, "web").ready, 20);
}

#[test]
fn a_cluster_registering_mid_run_gets_the_stable_revision() {
    let (mut fleet, clusters) = fleet_of(20);
    let bundle = start_candidate(&mut fleet, "web", "v2", canary_then_rest(60 * SECOND), 0);
    step(&mut fleet, bundle, 0);
    let late = add_cluster(&mut fleet, "store-late", &[("env", "prod")]);
    assert_consistent(&fleet);
    assert!(fleet.run(bundle).unwrap().contains(late));
    assert_eq!(fleet.slot_of(late, bundle), Slot::Stable);
    let canary = pinned(&fleet, bundle, &clusters);
    let outside = *clusters.iter().find(|c| !canary.contains(c)).unwrap();
    assert_eq!(
        digest_sent(&fleet, late, "web"),
        digest_sent(&fleet, outside, "web"),
        "the late joiner is sent what clusters outside the wave are"
    );
    // Removing a pinned cluster unpins it, so a reused ordinal starts on stable.
    let name = fleet.cluster(canary[0]).unwrap().name.to_string();
    fleet.remove_cluster(canary[0]);
    assert_consistent(&fleet);
    assert!(
        !fleet.bundle(bundle).unwrap().pinned.contains(canary[0]),
        "{name} unpinned"
    );
}

/// A replica follows another's run records into the same pins.
fn follow(leader: &Fleet, bundle: u32, follower: &mut Fleet, strategy: &Strategy) {
    let record = leader.rollout_record(bundle).expect("a run");
    assert!(follower.follow_rollout_record("web", record, |_| Some(strategy.clone())));
    assert_consistent(follower);
}

/// Two replicas of a 20-cluster fleet: the leader started a run of `strategy` and took its
/// first step; the follower followed its record.
struct Replicas {
    leader: Fleet,
    bundle: u32,
    follower: Fleet,
    followed: u32,
    clusters: Vec<u32>,
}

fn replicas(strategy: &Strategy) -> Replicas {
    let (mut leader, clusters) = fleet_of(20);
    let bundle = start_candidate(&mut leader, "web", "v2", strategy.clone(), 0);
    let (mut follower, _) = fleet_of(20);
    let followed = put_candidate(&mut follower, "web", "v2");
    step(&mut leader, bundle, 0);
    follow(&leader, bundle, &mut follower, strategy);
    Replicas {
        leader,
        bundle,
        follower,
        followed,
        clusters,
    }
}

#[test]
fn a_replica_that_takes_over_a_followed_run_keeps_its_deadlines() {
    let strategy = canary_then_rest(0);
    let Replicas {
        mut leader,
        bundle,
        mut follower,
        followed,
        clusters,
    } = replicas(&strategy);
    let canary = pinned(&leader, bundle, &clusters);
    for &cluster in &canary {
        report(&mut leader, cluster, "web", BundleState::Ready);
        report(&mut follower, cluster, "web", BundleState::Ready);
    }
    step(&mut leader, bundle, 1_000);
    follow(&leader, bundle, &mut follower, &strategy);
    assert_eq!(pinned(&follower, followed, &clusters).len(), 20);
    assert!(follower.rollout(followed).unwrap().followed);
    // The rest never report; the leader dies and the follower takes the lease.
    assert_eq!(follower.take_over_runs(|_, _| Some(strategy.clone())), 1);
    assert_consistent(&follower);
    assert_eq!(pinned(&follower, followed, &clusters).len(), 20);
    let run = follower.run(followed).unwrap();
    assert_eq!(run.counts(0).unwrap().done, canary.len() as u64);
    // Past the rest wave's progress deadline: the stuck clusters fail it.
    step(&mut follower, followed, now_millis() + 601 * SECOND);
    assert_eq!(follower.run(followed).unwrap().phase(), Phase::RollingBack);
}

#[test]
fn a_follower_places_late_joiners_as_the_record_says() {
    let strategy = canary_then_rest(60 * SECOND);
    let Replicas {
        leader,
        bundle,
        mut follower,
        followed,
        clusters,
    } = replicas(&strategy);
    // The leader's record holds a rest-wave cluster on stable (as a late joiner it saw);
    // this replica did not see it join that way.
    let canary = pinned(&leader, bundle, &clusters);
    let held = *clusters.iter().find(|c| !canary.contains(c)).unwrap();
    let held_name = leader.cluster(held).unwrap().name.to_string();
    let mut record = leader.rollout_record(bundle).unwrap();
    record.overrides.push((held_name, Override::Held));
    assert!(follower.follow_rollout_record("web", record, |_| Some(strategy.clone())));
    assert_consistent(&follower);
    let run = follower.run(followed).unwrap();
    assert_eq!(run.override_of(held), Some(Override::Held));
    assert_eq!(pinned(&follower, followed, &clusters), canary);
}

#[test]
fn a_paused_bundle_holds_its_run_where_it_is() {
    let (mut fleet, clusters) = fleet_of(20);
    let bundle = start_candidate(&mut fleet, "web", "v2", canary_then_rest(0), 0);
    step(&mut fleet, bundle, 0);
    let canary = pinned(&fleet, bundle, &clusters);
    for &cluster in &canary {
        report(&mut fleet, cluster, "web", BundleState::Ready);
    }
    fleet.bundle_mut(bundle).unwrap().spec.paused = true;
    step(&mut fleet, bundle, 1_000);
    assert_eq!(
        pinned(&fleet, bundle, &clusters),
        canary,
        "no wave starts while paused"
    );
    fleet.bundle_mut(bundle).unwrap().spec.paused = false;
    step(&mut fleet, bundle, 2_000);
    assert_eq!(
        pinned(&fleet, bundle, &clusters).len(),
        20,
        "unpaused, it goes on"
    );
}
