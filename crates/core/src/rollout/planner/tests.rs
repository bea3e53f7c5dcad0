//! The planner over many steps: simulated agents report on the revision their cluster is pinned
//! to, some late, some failing, some never; tests assert on the sequence of pins and reports,
//! not on the planner's counters alone.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_api::{BundleState, LateJoiners, OfflinePolicy, OnFailure};

use super::*;
use crate::rollout::{
    membership::{ClusterLabels, assign, place},
    strategy::{Amount, Members, Strategy, Wave},
};

const SECOND: Millis = 1_000;

/// How a simulated cluster's agent answers a pin to the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agent {
    /// Reports the candidate Ready this long after it was pinned.
    Ready(Millis),
    /// Reports the candidate in Error this long after it was pinned.
    Error(Millis),
    /// Never gets Ready on the candidate (stays Pending).
    Stuck,
}

fn wave(name: &str, members: Members) -> Wave {
    Wave {
        name: name.into(),
        members,
        mandatory: false,
        max_concurrency: Amount::BasisPoints(10_000),
        min_soak_ms: 0,
        progress_deadline_ms: 600 * SECOND,
        max_failures: Amount::Count(0),
        pause_after: false,
    }
}

fn share(percent: u32) -> Members {
    Members::Share {
        amount: Amount::BasisPoints(percent * 100),
        sort_by: None,
    }
}

fn strategy(waves: Vec<Wave>) -> Strategy {
    Strategy {
        waves,
        on_failure: OnFailure::Rollback,
        late_joiners: LateJoiners::Stable,
        offline: OfflinePolicy::Skip,
        seed: 42,
    }
}

/// The classic shape: a 10% mandatory canary soaking 30 s, then the rest two at a time.
fn canary_then_rest() -> Strategy {
    let mut canary = wave("canary", share(10));
    canary.mandatory = true;
    canary.min_soak_ms = 30 * SECOND;
    let mut rest = wave("rest", share(100));
    rest.max_concurrency = Amount::Count(2);
    strategy(vec![canary, rest])
}

fn name(cluster: ClusterId) -> String {
    format!("store-{cluster:04}")
}

/// A run over `clusters` (labels by cluster), placed as the server places them.
fn start(strategy: Strategy, clusters: &BTreeMap<ClusterId, BTreeMap<String, String>>) -> Run {
    let names: Vec<(ClusterId, String)> = clusters.keys().map(|&c| (c, name(c))).collect();
    let views: Vec<ClusterLabels<'_, _>> = names
        .iter()
        .map(|(c, n)| {
            let labels = &clusters[c];
            ClusterLabels {
                name: n.as_str(),
                label: move |k: &str| labels.get(k).map(String::as_str),
            }
        })
        .collect();
    let (boundaries, placed) = assign(&strategy, &views);
    let mut run = Run::new(strategy, boundaries);
    for ((cluster, _), placed) in names.iter().zip(placed) {
        let (wave, key) = placed.expect("the last wave takes every cluster");
        run.insert(*cluster, wave, key, None, BundleState::Ready, true);
    }
    run
}

/// A run restored from `saved` as the server restores one after a restart: every cluster placed
/// by its labels and the saved boundaries, with the override and online flag `member` gives it
/// (the caller settles it).
fn restore(
    strategy: &Strategy,
    saved: Saved,
    clusters: &BTreeMap<ClusterId, BTreeMap<String, String>>,
    state: BundleState,
    member: impl Fn(ClusterId) -> (Option<Override>, bool),
) -> Run {
    let boundaries = saved.boundaries.clone();
    let mut restored = Run::restore(strategy.clone(), saved);
    for (&cluster, labels) in clusters {
        let n = name(cluster);
        let view = ClusterLabels {
            name: &n,
            label: |k: &str| labels.get(k).map(String::as_str),
        };
        let (wave, key) = place(strategy, &boundaries, &view).expect("the last wave takes all");
        let (override_, online) = member(cluster);
        restored.insert(cluster, wave, key, override_, state, online);
    }
    restored
}

fn plain(count: u32) -> BTreeMap<ClusterId, BTreeMap<String, String>> {
    (0..count).map(|c| (c, BTreeMap::new())).collect()
}

/// A fleet of simulated agents around a run, advancing a clock.
struct Fleet {
    run: Run,
    now: Millis,
    agents: BTreeMap<ClusterId, Agent>,
    /// Current pin per cluster (true: candidate), as the server would hold it.
    pinned: BTreeMap<ClusterId, bool>,
    /// When each pinned cluster was pinned, until it reports.
    waiting: BTreeMap<ClusterId, Millis>,
    /// Every pin and unpin, in order: (time, cluster, to candidate).
    moves: Vec<(Millis, ClusterId, bool)>,
    /// Every report the agents sent: (time, cluster, on candidate, state).
    reports: Vec<(Millis, ClusterId, bool, BundleState)>,
    /// Clusters currently reporting the candidate Ready.
    ready_on_candidate: BTreeSet<ClusterId>,
}

impl Fleet {
    fn new(run: Run, agents: impl IntoIterator<Item = (ClusterId, Agent)>) -> Fleet {
        let agents: BTreeMap<ClusterId, Agent> = agents.into_iter().collect();
        Fleet {
            run,
            now: 0,
            pinned: agents.keys().map(|&c| (c, false)).collect(),
            agents,
            waiting: BTreeMap::new(),
            moves: Vec::new(),
            reports: Vec::new(),
            ready_on_candidate: BTreeSet::new(),
        }
    }

    fn healthy(run: Run, count: u32) -> Fleet {
        Fleet::new(run, (0..count).map(|c| (c, Agent::Ready(5 * SECOND))))
    }

    /// One second passes: agents whose time came report, then the planner steps.
    fn tick(&mut self) -> Step {
        self.now += SECOND;
        let due: Vec<ClusterId> = self
            .waiting
            .iter()
            .filter(|&(&c, &since)| {
                let on_candidate = self.pinned[&c];
                match (on_candidate, self.agents[&c]) {
                    (false, _) => self.now >= since + 2 * SECOND,
                    (true, Agent::Ready(after) | Agent::Error(after)) => self.now >= since + after,
                    (true, Agent::Stuck) => false,
                }
            })
            .map(|(&c, _)| c)
            .collect();
        for cluster in due {
            self.waiting.remove(&cluster);
            let on_candidate = self.pinned[&cluster];
            let state = match (on_candidate, self.agents[&cluster]) {
                (false, _) => BundleState::Ready,
                (true, Agent::Error(_)) => BundleState::Error,
                (true, _) => BundleState::Ready,
            };
            if on_candidate && state == BundleState::Ready {
                self.ready_on_candidate.insert(cluster);
            }
            self.reports.push((self.now, cluster, on_candidate, state));
            self.run.observe(cluster, state, on_candidate, self.now);
        }
        let step = self.run.step(self.now);
        self.apply(&step);
        step
    }

    fn apply(&mut self, step: &Step) {
        for &cluster in &step.pin {
            assert!(!self.pinned[&cluster], "cluster {cluster} pinned twice");
            self.pinned.insert(cluster, true);
            self.moves.push((self.now, cluster, true));
            self.waiting.insert(cluster, self.now);
            // The server recounts the deployment on the candidate: nothing reported for it yet.
            self.run
                .observe(cluster, BundleState::Pending, true, self.now);
        }
        for &cluster in &step.unpin {
            assert!(
                self.pinned[&cluster],
                "cluster {cluster} unpinned while not pinned"
            );
            self.pinned.insert(cluster, false);
            self.ready_on_candidate.remove(&cluster);
            self.moves.push((self.now, cluster, false));
            self.waiting.insert(cluster, self.now);
            self.run
                .observe(cluster, BundleState::Pending, false, self.now);
        }
    }

    /// Ticks until the run's phase is final (or `limit` seconds pass).
    fn run_until_final(&mut self, limit: u64) {
        for _ in 0..limit {
            if self.run.phase().is_final() {
                return;
            }
            self.tick();
        }
        panic!("run not final after {limit}s: {:?}", self.run.phase());
    }

    fn ever_pinned(&self) -> BTreeSet<ClusterId> {
        self.moves.iter().filter(|m| m.2).map(|m| m.1).collect()
    }

    /// The clusters of a wave, by the planner's placement.
    fn wave_members(&self, wave: usize) -> BTreeSet<ClusterId> {
        self.run
            .members
            .iter()
            .filter(|(_, m)| m.wave as usize == wave)
            .map(|(&c, _)| c)
            .collect()
    }
}

#[test]
fn share_waves_take_exact_counts_rounded_up() {
    let run = start(canary_then_rest(), &plain(25));
    // 10% of 25 is 2.5: the canary takes 3, the rest 22.
    assert_eq!(run.counts(0).unwrap().clusters, 3);
    assert_eq!(run.counts(1).unwrap().clusters, 22);
}

#[test]
fn placement_after_start_agrees_with_the_start() {
    let clusters = plain(200);
    let strategy = canary_then_rest();
    let run = start(strategy.clone(), &clusters);
    for (&cluster, labels) in &clusters {
        let n = name(cluster);
        let view = ClusterLabels {
            name: &n,
            label: |k: &str| labels.get(k).map(String::as_str),
        };
        let (wave, _) = place(&strategy, run.boundaries(), &view).unwrap();
        assert_eq!(wave, run.members[&cluster].wave as usize, "{n}");
    }
}

#[test]
fn max_concurrency_is_never_exceeded_judged_from_reports() {
    let mut fleet = Fleet::healthy(start(canary_then_rest(), &plain(20)), 20);
    fleet.run_until_final(1_000);
    assert_eq!(fleet.run.phase(), Phase::Succeeded);
    // Updating = pinned and not yet reported Ready on the candidate; in the rest wave never
    // more than 2 at once.
    let canary = fleet.wave_members(0);
    let mut updating: BTreeSet<ClusterId> = BTreeSet::new();
    let mut events: Vec<(Millis, u8, ClusterId)> = fleet
        .moves
        .iter()
        .filter(|m| m.2 && !canary.contains(&m.1))
        .map(|m| (m.0, 1, m.1))
        .chain(
            fleet
                .reports
                .iter()
                .filter(|r| r.2 && r.3 == BundleState::Ready && !canary.contains(&r.1))
                .map(|r| (r.0, 0, r.1)),
        )
        .collect();
    events.sort();
    let mut most = 0;
    for (_, kind, cluster) in events {
        if kind == 1 {
            updating.insert(cluster);
        } else {
            updating.remove(&cluster);
        }
        most = most.max(updating.len());
    }
    assert_eq!(most, 2, "the rest wave ran {most} clusters at once");
    assert_eq!(fleet.ever_pinned().len(), 20);
}

#[test]
fn a_wave_starts_only_after_the_previous_one_soaked() {
    let mut fleet = Fleet::healthy(start(canary_then_rest(), &plain(20)), 20);
    fleet.run_until_final(1_000);
    let canary = fleet.wave_members(0);
    let last_canary_ready = fleet
        .reports
        .iter()
        .filter(|r| canary.contains(&r.1) && r.2 && r.3 == BundleState::Ready)
        .map(|r| r.0)
        .max()
        .unwrap();
    let first_rest_pin = fleet
        .moves
        .iter()
        .filter(|m| m.2 && !canary.contains(&m.1))
        .map(|m| m.0)
        .min()
        .unwrap();
    assert!(
        first_rest_pin >= last_canary_ready + 30 * SECOND,
        "rest started at {first_rest_pin} ms, canary last Ready at {last_canary_ready} ms"
    );
    // And not much later: the decision follows the soak's end within a step.
    assert!(first_rest_pin <= last_canary_ready + 31 * SECOND);
}

#[test]
fn ready_on_the_old_revision_is_not_done() {
    // Every cluster is Ready on the stable revision, but the canary's agents never report the
    // candidate: the canary never completes, and its deadline fails it.
    let mut strategy = canary_then_rest();
    strategy.waves[0].progress_deadline_ms = 60 * SECOND;
    let run = start(strategy, &plain(10));
    let mut fleet = Fleet::new(run, (0..10).map(|c| (c, Agent::Stuck)));
    for _ in 0..59 {
        fleet.tick();
    }
    assert_eq!(fleet.run.phase(), Phase::Progressing);
    assert_eq!(fleet.run.counts(0).unwrap().done, 0);
    fleet.run_until_final(200);
    assert_eq!(fleet.run.phase(), Phase::RolledBack);
    match fleet.run.stop() {
        Some(Stop::WaveFailed { wave: 0, failed }) => {
            assert_eq!(failed[0].1, FailReason::ProgressDeadlineExceeded)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failing_canary_rolls_back_and_no_later_cluster_ever_gets_the_candidate() {
    let clusters = plain(30);
    let run = start(canary_then_rest(), &clusters);
    let canary: BTreeSet<ClusterId> = run
        .members
        .iter()
        .filter(|(_, m)| m.wave == 0)
        .map(|(&c, _)| c)
        .collect();
    let bad = *canary.iter().next().unwrap();
    let agents = (0..30).map(|c| {
        (
            c,
            if c == bad {
                Agent::Error(3 * SECOND)
            } else {
                Agent::Ready(2 * SECOND)
            },
        )
    });
    let mut fleet = Fleet::new(run, agents);
    fleet.run_until_final(1_000);
    assert_eq!(fleet.run.phase(), Phase::RolledBack);
    assert_eq!(
        fleet.ever_pinned(),
        canary,
        "only the canary ever got the candidate"
    );
    assert!(
        fleet.pinned.values().all(|p| !p),
        "every cluster is back on stable"
    );
    // Every touched cluster reported the stable revision Ready after it went back.
    for &cluster in &canary {
        let back = fleet
            .moves
            .iter()
            .rposition(|m| m.1 == cluster && !m.2)
            .unwrap();
        let back_at = fleet.moves[back].0;
        assert!(
            fleet
                .reports
                .iter()
                .any(|r| r.1 == cluster && !r.2 && r.3 == BundleState::Ready && r.0 >= back_at),
            "cluster {cluster} never reported stable Ready after the rollback"
        );
    }
    match fleet.run.stop() {
        Some(Stop::WaveFailed { wave: 0, failed }) => {
            assert_eq!(failed.as_slice(), &[(bad, FailReason::Error)])
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_rollback_is_paced_by_the_wave_concurrency_and_never_rolled_back() {
    // Rest wave (concurrency 2) fails after some clusters took it; the rollback sends them back
    // at most 2 at a time, and a cluster erroring on stable does not stop it.
    let mut strategy = canary_then_rest();
    strategy.waves[0].min_soak_ms = 0;
    let run = start(strategy, &plain(20));
    let rest: Vec<ClusterId> = {
        let mut members: Vec<_> = run.waves[1].members.iter().map(|(_, c)| *c).collect();
        members.truncate(8);
        members
    };
    let bad = rest[5];
    let agents = (0..20).map(|c| {
        (
            c,
            if c == bad {
                Agent::Error(SECOND)
            } else {
                Agent::Ready(2 * SECOND)
            },
        )
    });
    let mut fleet = Fleet::new(run, agents);
    fleet.run_until_final(1_000);
    assert_eq!(fleet.run.phase(), Phase::RolledBack);
    let mut back: BTreeSet<ClusterId> = BTreeSet::new();
    let mut events: Vec<(Millis, u8, ClusterId)> = fleet
        .moves
        .iter()
        .filter(|m| !m.2)
        .map(|m| (m.0, 1, m.1))
        .chain(fleet.reports.iter().filter(|r| !r.2).map(|r| (r.0, 0, r.1)))
        .collect();
    events.sort();
    let canary_size = fleet.run.counts(0).unwrap().clusters as usize;
    let mut most = 0;
    for (_, kind, cluster) in events {
        if kind == 1 {
            back.insert(cluster);
        } else {
            back.remove(&cluster);
        }
        most = most.max(back.len());
    }
    assert!(
        most <= 2.max(canary_size),
        "{most} clusters went back at once"
    );
    assert!(fleet.pinned.values().all(|p| !p));
}

#[test]
fn halt_stops_and_leaves_clusters_as_they_are() {
    let mut strategy = canary_then_rest();
    strategy.on_failure = OnFailure::Halt;
    let run = start(strategy, &plain(20));
    let bad = run.waves[0].members.iter().next().unwrap().1;
    let agents = (0..20).map(|c| {
        (
            c,
            if c == bad {
                Agent::Error(SECOND)
            } else {
                Agent::Ready(SECOND)
            },
        )
    });
    let mut fleet = Fleet::new(run, agents);
    fleet.run_until_final(1_000);
    assert_eq!(fleet.run.phase(), Phase::Halted);
    assert!(fleet.moves.iter().all(|m| m.2), "a halt sends nobody back");
    let pinned_at_halt = fleet.ever_pinned();
    for _ in 0..100 {
        let step = fleet.tick();
        assert!(step.pin.is_empty() && step.unpin.is_empty());
    }
    assert_eq!(fleet.ever_pinned(), pinned_at_halt);
    // A person accepts the failure and resumes: the run completes.
    assert!(fleet.run.resume());
    fleet.run_until_final(1_000);
    assert_eq!(fleet.run.phase(), Phase::Succeeded);
    assert_eq!(fleet.ever_pinned().len(), 20);
}

#[test]
fn freeze_stops_and_keeps_the_candidate_where_it_is_even_against_abort() {
    let mut strategy = canary_then_rest();
    strategy.on_failure = OnFailure::Freeze;
    let run = start(strategy, &plain(20));
    let bad = run.waves[0].members.iter().next().unwrap().1;
    let agents = (0..20).map(|c| {
        (
            c,
            if c == bad {
                Agent::Error(SECOND)
            } else {
                Agent::Ready(SECOND)
            },
        )
    });
    let mut fleet = Fleet::new(run, agents);
    fleet.run_until_final(1_000);
    assert_eq!(fleet.run.phase(), Phase::Frozen);
    assert!(!fleet.run.abort(), "a frozen run cannot be sent back");
    assert!(!fleet.run.resume());
    assert_eq!(fleet.ever_pinned(), fleet.wave_members(0));
    assert!(fleet.pinned.iter().filter(|(_, p)| **p).count() == fleet.wave_members(0).len());
}

#[test]
fn pause_holds_starts_and_resume_continues() {
    let mut fleet = Fleet::healthy(start(canary_then_rest(), &plain(20)), 20);
    fleet.tick();
    let pinned = fleet.ever_pinned().len();
    assert!(fleet.run.pause());
    assert_eq!(fleet.run.phase(), Phase::Paused);
    for _ in 0..200 {
        fleet.tick();
    }
    assert_eq!(
        fleet.ever_pinned().len(),
        pinned,
        "nothing starts while paused"
    );
    assert!(fleet.run.resume());
    fleet.run_until_final(1_000);
    assert_eq!(fleet.run.phase(), Phase::Succeeded);
}

#[test]
fn pause_after_waits_for_resume_between_waves() {
    let mut strategy = canary_then_rest();
    strategy.waves[0].pause_after = true;
    let mut fleet = Fleet::healthy(start(strategy, &plain(20)), 20);
    for _ in 0..300 {
        fleet.tick();
    }
    assert_eq!(fleet.run.phase(), Phase::Paused);
    assert_eq!(fleet.run.wave_phase(0), Some(WavePhase::Done));
    assert_eq!(fleet.ever_pinned(), fleet.wave_members(0));
    assert!(fleet.run.resume());
    fleet.run_until_final(1_000);
    assert_eq!(fleet.run.phase(), Phase::Succeeded);
}

#[test]
fn abort_sends_every_touched_cluster_back() {
    let mut fleet = Fleet::healthy(start(canary_then_rest(), &plain(20)), 20);
    for _ in 0..60 {
        fleet.tick();
    }
    let touched = fleet.ever_pinned();
    assert!(
        touched.len() > fleet.wave_members(0).len(),
        "the rest wave had begun"
    );
    assert!(fleet.run.abort());
    fleet.run_until_final(1_000);
    assert_eq!(fleet.run.phase(), Phase::RolledBack);
    assert_eq!(fleet.run.stop(), Some(&Stop::Aborted));
    assert!(fleet.pinned.values().all(|p| !p));
    let sent_back: BTreeSet<ClusterId> = fleet.moves.iter().filter(|m| !m.2).map(|m| m.1).collect();
    assert_eq!(sent_back, touched);
}

#[test]
fn a_soak_is_reset_by_a_break() {
    let mut strategy = canary_then_rest();
    strategy.waves[0].min_soak_ms = 10 * SECOND;
    let mut run = start(strategy, &plain(10));
    let step = run.step(0);
    let canary = step.pin[0];
    run.observe(canary, BundleState::Ready, true, 1_000);
    run.observe(canary, BundleState::NotReady, true, 8_000);
    run.observe(canary, BundleState::Ready, true, 9_000);
    run.step(12_000);
    assert_eq!(run.counts(0).unwrap().done, 0, "the soak restarted at 9 s");
    run.step(19_000);
    assert_eq!(run.counts(0).unwrap().done, 1);
}

#[test]
fn max_failures_tolerates_its_budget_and_no_more() {
    let mut rest = wave("rest", share(100));
    rest.max_failures = Amount::Count(1);
    let run = start(strategy(vec![rest]), &plain(10));
    let members: Vec<ClusterId> = run.waves[0].members.iter().map(|(_, c)| *c).collect();
    let one_bad = Fleet::new(
        run.clone(),
        (0..10).map(|c| {
            (
                c,
                if c == members[0] {
                    Agent::Error(SECOND)
                } else {
                    Agent::Ready(SECOND)
                },
            )
        }),
    );
    let mut fleet = one_bad;
    fleet.run_until_final(100);
    assert_eq!(fleet.run.phase(), Phase::Succeeded);
    let mut fleet = Fleet::new(
        run,
        (0..10).map(|c| {
            (
                c,
                if members[..2].contains(&c) {
                    Agent::Error(SECOND)
                } else {
                    Agent::Ready(SECOND)
                },
            )
        }),
    );
    fleet.run_until_final(100);
    assert_eq!(fleet.run.phase(), Phase::RolledBack);
}

#[test]
fn selector_waves_take_matching_clusters_and_the_remaining_wave_the_rest() {
    use crate::selector::Selector;
    let clusters: BTreeMap<ClusterId, BTreeMap<String, String>> = (0..10)
        .map(|c| {
            let region = if c < 4 { "eu" } else { "us" };
            (c, [("region".to_string(), region.to_string())].into())
        })
        .collect();
    let eu = Selector::parse("region=eu").unwrap();
    let run = start(
        strategy(vec![
            wave("europe", Members::Selector(eu)),
            wave("remaining", share(100)),
        ]),
        &clusters,
    );
    assert_eq!(run.counts(0).unwrap().clusters, 4);
    assert_eq!(run.counts(1).unwrap().clusters, 6);
    let mut fleet = Fleet::healthy(run, 10);
    fleet.tick();
    assert_eq!(fleet.ever_pinned(), (0..4).collect());
}

#[test]
fn late_joiners_wait_for_their_wave_or_keep_stable_once_it_passed() {
    let mut fleet = Fleet::healthy(start(canary_then_rest(), &plain(20)), 22);
    fleet.tick();
    // 20 joins the canary's place after the canary started; 21 joins the rest wave early.
    let canary_key = fleet.run.waves[0]
        .members
        .iter()
        .next_back()
        .unwrap()
        .0
        .clone();
    fleet.run.join(20, 0, canary_key, BundleState::Ready, true);
    let rest_key = Key {
        late: false,
        sort: None,
        rank: u64::MAX,
    };
    fleet.run.join(21, 1, rest_key, BundleState::Ready, true);
    assert_eq!(
        fleet.run.overrides().collect::<Vec<_>>(),
        vec![(20, Override::Held)]
    );
    fleet.run_until_final(1_000);
    assert_eq!(fleet.run.phase(), Phase::Succeeded);
    assert!(
        !fleet.ever_pinned().contains(&20),
        "a held joiner keeps stable until the run ends"
    );
    assert!(
        fleet.ever_pinned().contains(&21),
        "a joiner whose wave is ahead is started in it"
    );
}

#[test]
fn late_joiners_under_last_wave_join_the_end_of_the_last_wave() {
    let mut strategy = canary_then_rest();
    strategy.late_joiners = LateJoiners::LastWave;
    let mut fleet = Fleet::healthy(start(strategy, &plain(20)), 21);
    fleet.tick();
    let canary_key = fleet.run.waves[0]
        .members
        .iter()
        .next_back()
        .unwrap()
        .0
        .clone();
    fleet.run.join(20, 0, canary_key, BundleState::Ready, true);
    assert_eq!(
        fleet.run.overrides().collect::<Vec<_>>(),
        vec![(20, Override::Late(0))]
    );
    fleet.run_until_final(1_000);
    assert_eq!(fleet.run.phase(), Phase::Succeeded);
    let order: Vec<ClusterId> = fleet.moves.iter().filter(|m| m.2).map(|m| m.1).collect();
    assert_eq!(order.last(), Some(&20), "it went last");
}

#[test]
fn a_cluster_leaving_mid_run_never_blocks_its_wave() {
    let run = start(canary_then_rest(), &plain(10));
    let canary: Vec<ClusterId> = run.waves[0].members.iter().map(|(_, c)| *c).collect();
    let mut fleet = Fleet::new(
        run,
        (0..10).map(|c| {
            (
                c,
                if c == canary[0] {
                    Agent::Stuck
                } else {
                    Agent::Ready(SECOND)
                },
            )
        }),
    );
    fleet.tick();
    fleet.run.leave(canary[0]);
    fleet.run_until_final(1_000);
    assert_eq!(fleet.run.phase(), Phase::Succeeded);
}

#[test]
fn offline_policies_skip_wait_or_fail() {
    for (policy, expected) in [
        (OfflinePolicy::Skip, Phase::Succeeded),
        (OfflinePolicy::Fail, Phase::RolledBack),
        (OfflinePolicy::Wait, Phase::Progressing),
    ] {
        let mut strategy = canary_then_rest();
        strategy.offline = policy;
        let mut run = start(strategy, &plain(10));
        let canary = run.waves[0].members.iter().next().unwrap().1;
        run.set_online(canary, false, 0);
        let mut fleet = Fleet::new(
            run,
            (0..10).map(|c| {
                (
                    c,
                    if c == canary {
                        Agent::Stuck
                    } else {
                        Agent::Ready(SECOND)
                    },
                )
            }),
        );
        for _ in 0..2_000 {
            if fleet.run.phase().is_final() {
                break;
            }
            fleet.tick();
        }
        assert_eq!(fleet.run.phase(), expected, "{policy:?}");
        if policy == OfflinePolicy::Wait {
            // It comes back and reports: the run goes on.
            fleet.run.set_online(canary, true, fleet.now);
            fleet
                .run
                .observe(canary, BundleState::Ready, true, fleet.now);
            fleet.run_until_final(1_000);
            assert_eq!(fleet.run.phase(), Phase::Succeeded);
        }
    }
}

#[test]
fn a_restored_run_resumes_with_no_cluster_skipped_or_started_twice() {
    let clusters = plain(40);
    let strategy = canary_then_rest();
    let mut fleet = Fleet::healthy(start(strategy.clone(), &clusters), 40);
    for _ in 0..50 {
        fleet.tick();
    }
    let pinned_before: BTreeSet<ClusterId> = fleet
        .pinned
        .iter()
        .filter(|(_, p)| **p)
        .map(|(c, _)| *c)
        .collect();
    assert!(!pinned_before.is_empty() && pinned_before.len() < 40);
    // "kill -9": only the saved state survives; the server rebuilds the run from the fleet.
    let saved: Saved =
        serde_json::from_str(&serde_json::to_string(&fleet.run.saved()).unwrap()).unwrap();
    let mut restored = restore(&strategy, saved, &clusters, BundleState::Ready, |_| {
        (None, true)
    });
    restored.settle(fleet.now);
    let pinned_after: BTreeSet<ClusterId> = (0..40).filter(|&c| restored.pinned(c)).collect();
    assert_eq!(
        pinned_after, pinned_before,
        "the restored run pins exactly what was pinned"
    );
    // The server observes the pinned clusters afresh; agents that had reported keep Ready.
    for &cluster in &pinned_after {
        let state = if fleet.ready_on_candidate.contains(&cluster) {
            BundleState::Ready
        } else {
            BundleState::Pending
        };
        restored.observe(cluster, state, true, fleet.now);
    }
    fleet.run = restored;
    fleet.run_until_final(1_000);
    assert_eq!(fleet.run.phase(), Phase::Succeeded);
    assert_eq!(
        fleet.ever_pinned().len(),
        40,
        "every cluster started once (apply asserts no twice)"
    );
}

#[test]
fn steps_cost_only_what_moves() {
    // 100,000 members, concurrency 10: a step that moves nothing touches no member.
    let mut rest = wave("rest", share(100));
    rest.max_concurrency = Amount::Count(10);
    let mut run = start(strategy(vec![rest]), &plain(100_000));
    let first = run.step(0);
    assert_eq!(first.pin.len(), 10);
    for now in 1..1_000 {
        let step = run.step(now);
        assert!(step.pin.is_empty() && step.unpin.is_empty());
        assert!(!step.persist, "an idle step has nothing to save");
    }
    for &cluster in &first.pin {
        run.observe(cluster, BundleState::Ready, true, 2_000);
    }
    assert_eq!(run.step(2_000).pin.len(), 10);
}

#[test]
fn a_report_about_the_stable_revision_never_counts_for_a_pinned_cluster() {
    let mut run = start(canary_then_rest(), &plain(10));
    let step = run.step(0);
    let canary = step.pin[0];
    // Before the pin reaches the fleet the cluster still reports the stable revision Ready.
    run.observe(canary, BundleState::Ready, false, 500);
    run.step(60_000);
    assert_eq!(
        run.counts(0).unwrap().soaking + run.counts(0).unwrap().done,
        0
    );
    run.observe(canary, BundleState::Ready, true, 61_000);
    assert_eq!(run.counts(0).unwrap().soaking, 1);
}

#[test]
fn a_follower_pins_exactly_what_the_leader_committed() {
    let clusters = plain(30);
    let strategy = canary_then_rest();
    let mut leader = Fleet::healthy(start(strategy.clone(), &clusters), 30);
    let mut follower = start(strategy, &clusters);
    let mut follower_pinned: BTreeSet<ClusterId> = BTreeSet::new();
    for _ in 0..200 {
        let step = leader.tick();
        if step.persist {
            let moved = follower.follow(leader.run.saved(), leader.now);
            follower_pinned.extend(&moved.pin);
            for cluster in &moved.unpin {
                follower_pinned.remove(cluster);
            }
        }
        let leader_pinned: BTreeSet<ClusterId> = leader
            .pinned
            .iter()
            .filter(|(_, p)| **p)
            .map(|(c, _)| *c)
            .collect();
        assert_eq!(follower_pinned, leader_pinned);
    }
    assert_eq!(follower.phase(), Phase::Succeeded);
}

#[test]
fn a_rollback_finishes_when_the_last_started_cluster_left_the_run() {
    let mut run = start(canary_then_rest(), &plain(20));
    let step = run.step(0);
    assert_eq!(step.pin.len(), 2);
    let last = run.waves[0].members.iter().next_back().unwrap().1;
    let other = *step.pin.iter().find(|&&c| c != last).unwrap();
    run.leave(last);
    run.observe(other, BundleState::Error, true, 1_000);
    let back = run.step(1_000);
    assert_eq!(back.unpin, vec![other]);
    run.observe(other, BundleState::Ready, false, 2_000);
    run.step(2_000);
    assert_eq!(run.phase(), Phase::RolledBack);
}

#[test]
fn a_restart_never_judges_a_passed_wave_again() {
    // A canary that soaked and passed goes offline; the server restarts under `offline: fail`.
    let clusters = plain(20);
    let mut strategy = canary_then_rest();
    strategy.offline = OfflinePolicy::Fail;
    let mut fleet = Fleet::healthy(start(strategy.clone(), &clusters), 20);
    for _ in 0..200 {
        if fleet.run.current_wave() == 1 {
            break;
        }
        fleet.tick();
    }
    assert_eq!(fleet.run.wave_phase(0), Some(WavePhase::Done));
    let canary: Vec<ClusterId> = fleet.wave_members(0).into_iter().collect();
    let mut restored = restore(
        &strategy,
        fleet.run.saved(),
        &clusters,
        BundleState::Ready,
        |c| (None, !canary.contains(&c)),
    );
    restored.settle(fleet.now);
    assert_eq!(restored.counts(0).unwrap().failures, 0);
    assert_eq!(restored.counts(0).unwrap().done, canary.len() as u64);
    let step = restored.step(fleet.now);
    assert!(step.unpin.is_empty(), "no rollback: {step:?}");
    assert_eq!(restored.phase(), Phase::Progressing);
}

#[test]
fn a_started_cluster_relabelled_keeps_its_place_across_a_restart() {
    let mut rest = wave(
        "rest",
        Members::Share {
            amount: Amount::BasisPoints(10_000),
            sort_by: Some("order".into()),
        },
    );
    rest.max_concurrency = Amount::Count(2);
    let strategy = strategy(vec![rest]);
    let mut clusters: BTreeMap<ClusterId, BTreeMap<String, String>> = (0..10)
        .map(|c| {
            (
                c,
                BTreeMap::from([("order".to_string(), format!("{c:02}"))]),
            )
        })
        .collect();
    let mut run = start(strategy.clone(), &clusters);
    let first = run.step(0);
    assert_eq!(first.pin, vec![0, 1]);
    let boundaries = run.boundaries().to_vec();
    let placed = |clusters: &BTreeMap<ClusterId, BTreeMap<String, String>>, c: ClusterId| {
        let n = name(c);
        let labels = &clusters[&c];
        let view = ClusterLabels {
            name: &n,
            label: |k: &str| labels.get(k).map(String::as_str),
        };
        place(&strategy, &boundaries, &view).unwrap()
    };
    // Cluster 0 (started) now sorts last; cluster 7 (not started) now sorts first.
    clusters
        .get_mut(&0)
        .unwrap()
        .insert("order".into(), "99".into());
    clusters
        .get_mut(&7)
        .unwrap()
        .insert("order".into(), "-1".into());
    for c in [0, 7] {
        let (wave, key) = placed(&clusters, c);
        run.relabel(c, wave, key);
    }
    assert!(matches!(run.override_of(0), Some(Override::At { .. })));
    assert!(!run.pinned(7), "a passed place is not started mid-wave");
    // kill -9: the restored run, placed by today's labels and the saved overrides.
    let saved = run.saved();
    let overrides: BTreeMap<ClusterId, Override> = run.overrides().collect();
    let mut restored = restore(&strategy, saved, &clusters, BundleState::Pending, |c| {
        (overrides.get(&c).cloned(), true)
    });
    restored.settle(0);
    let pinned: Vec<ClusterId> = (0..10).filter(|&c| restored.pinned(c)).collect();
    assert_eq!(
        pinned,
        vec![0, 1],
        "the same clusters, none started twice or skipped"
    );
}

#[test]
fn a_forgiven_failure_that_left_forgives_no_later_one() {
    let mut rest = wave("rest", share(100));
    rest.max_concurrency = Amount::Count(2);
    let mut strategy = strategy(vec![rest]);
    strategy.on_failure = OnFailure::Halt;
    let mut run = start(strategy, &plain(10));
    let first = run.step(0);
    run.observe(first.pin[0], BundleState::Error, true, 1_000);
    run.step(1_000);
    assert_eq!(run.phase(), Phase::Halted);
    assert!(run.resume(), "a person accepts the failure");
    run.leave(first.pin[0]);
    run.observe(first.pin[1], BundleState::Error, true, 2_000);
    run.step(2_000);
    assert_eq!(
        run.phase(),
        Phase::Halted,
        "the forgiven failure left: this one is over the budget"
    );
}
