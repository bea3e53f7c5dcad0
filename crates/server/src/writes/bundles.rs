//! Bundle writes: prepared against memory (validated, checked, turned into store ops and the
//! entry memory will hold), committed, then applied. The admin API writes one bundle; the git
//! worker prepares every bundle of a render and publishes them in one commit.

use axum::body::Bytes;
use flotilla_api::{Bundle, Kind};
use flotilla_core::documents::{self, FieldError, ValidBundle};
use flotilla_store::Op;

use super::{
    Mode, WriteError, WriteResult, Written, check_held, commit, fresh_metadata, not_found,
};
use flotilla_api::{BundleSpec, BundleTarget};
use flotilla_core::rollout::{planner::Phase, strategy::Strategy};

use crate::{
    fleet::rollouts::RolloutRecord,
    fleet::{
        BundleEntry, Fleet, LiveRevision, Revision,
        dependencies::CandidateBundle,
        rollouts::{Rollout, now_millis},
    },
    records::{self, BundleRecord, LiveRecord, RevisionRecord},
    state::{AppState, now_seconds},
    view,
};

/// Revisions kept besides those in use when `spec.revisionHistoryLimit` is not set.
pub const DEFAULT_REVISION_HISTORY_LIMIT: u32 = 10;

/// A validated bundle write: the store ops to commit, then the entry memory applies (targets
/// compiled and content digested once, here).
pub struct PreparedBundle {
    pub name: String,
    pub created: bool,
    /// Whether anything changes (a GitRepo re-render that changed nothing writes nothing).
    pub changed: bool,
    /// Content and the bundle record; the revision records follow (see [`PreparedBundle::ops`]).
    ops: Vec<Op>,
    entry: BundleEntry,
    /// Content the entry references, by digest, for memory to hold.
    contents: Vec<(String, Bytes)>,
    /// The revision this write creates: its new live revision differs from the old one in what
    /// some cluster receives.
    revision: Option<Revision>,
    /// Retained revisions the new one pushes out of the history.
    pruned: Vec<u64>,
    /// What the write does to the bundle's run.
    run: RunChange,
}

impl PreparedBundle {
    /// The digest of the bundle's default content.
    pub fn spec_digest(&self) -> &str {
        &self.entry.spec_digest
    }

    /// Every store op of the write: content, the bundle record, the revision record it creates
    /// and the deletions of those it prunes.
    pub fn ops(&self) -> Vec<Op> {
        let mut ops = self.ops.clone();
        if let Some(revision) = &self.revision {
            ops.push(records::put(
                records::BUNDLE_REVISION,
                &records::revision_name(&self.name, revision.live.revision),
                &RevisionRecord::of(revision),
            ));
        }
        ops.extend(self.pruned.iter().map(|&number| {
            records::delete(
                records::BUNDLE_REVISION,
                &records::revision_name(&self.name, number),
            )
        }));
        match &self.run {
            RunChange::Keep => {}
            RunChange::End => ops.push(records::delete(records::ROLLOUT, &self.name)),
            RunChange::Start(start) => {
                let rollout = &start.1;
                ops.push(records::put(
                    records::ROLLOUT,
                    &self.name,
                    &RolloutRecord {
                        from: rollout.from,
                        to: rollout.to,
                        started: rollout.started,
                        updated: rollout.updated,
                        strategy: rollout.spec.clone(),
                        saved: None,
                        overrides: Vec::new(),
                        reason: None,
                        ended: None,
                    },
                ));
            }
        }
        ops
    }

    /// Names the git commit the write's content was rendered from, on the revision it creates.
    pub fn set_source_commit(&mut self, commit: Option<String>) {
        if let Some(revision) = &mut self.revision {
            revision.commit = commit;
        }
    }

    /// The number of the revision this write creates, if it creates one.
    pub fn new_revision(&self) -> Option<u64> {
        self.revision.as_ref().map(|r| r.live.revision)
    }

    /// The bundle as the `dependsOn` cycle check sees it (for writes of several bundles at once).
    pub fn dependency_candidate(&self) -> CandidateBundle<'_> {
        CandidateBundle {
            name: &self.name,
            labels: &self.entry.metadata.labels,
            dependencies: &self.entry.dependencies,
        }
    }
}

/// The message for a `dependsOn` cycle, given as bundle names from a bundle back to itself.
pub fn dependency_cycle_error(cycle: &[String]) -> FieldError {
    FieldError::new(
        "spec.dependsOn",
        format!(
            "spec.dependsOn: {} is a cycle: each would wait for the next to be Ready, forever; remove one of these dependencies",
            cycle.join(" -> ")
        ),
    )
}

fn owned_error(name: &str, owner: Option<&str>) -> WriteError {
    match owner {
        Some(repo) => WriteError::Conflict(format!(
            "bundle {name:?} is rendered from GitRepo {repo:?}; change the repository (or delete the GitRepo) instead"
        )),
        None => WriteError::Conflict(format!(
            "bundle {name:?} already exists and was not created by this GitRepo; rename the folder (fleet.yaml `name`) or delete the bundle"
        )),
    }
}

/// Validates a bundle write against the fleet and builds its store ops and entry. `owner` is the
/// GitRepo writing it; admins (`None`) may not change a bundle a GitRepo owns.
pub fn prepare(
    fleet: &Fleet,
    bundle: Bundle,
    mode: Mode,
    owner: Option<&str>,
) -> WriteResult<PreparedBundle> {
    prepare_with(fleet, bundle, mode, owner, false)
}

/// [`prepare`], and with `promote` a revision an automatic rollback held is rolled out again
/// (`rollout undo --to-revision`).
pub fn prepare_with(
    fleet: &Fleet,
    bundle: Bundle,
    mode: Mode,
    owner: Option<&str>,
    promote: bool,
) -> WriteResult<PreparedBundle> {
    let ValidBundle {
        content,
        digest: spec_digest,
        compiled,
        dependencies,
        rollout,
    } = documents::bundle(&bundle)?;
    let name = bundle.metadata.name.clone();
    if !dependencies.is_empty()
        && let Some(cycle) = fleet.dependency_cycle(&[CandidateBundle {
            name: &name,
            labels: &bundle.metadata.labels,
            dependencies: &dependencies,
        }])
    {
        return Err(dependency_cycle_error(&cycle).into());
    }
    let now = now_seconds();
    let old = fleet.bundle_by_name(&name).map(|(_, old)| old);
    // A replace of another owner's bundle is refused for that first, whatever else it sent.
    if let Some(old) = old
        && mode == Mode::Upsert
        && old.owner.as_deref() != owner
    {
        return Err(owned_error(&name, old.owner.as_deref()));
    }
    check_held(
        mode,
        Kind::Bundle,
        &name,
        &bundle.metadata.resource_version,
        old.map(|old| &old.metadata),
    )?;
    let spec_changed = old.is_none_or(|old| old.spec != bundle.spec);
    let changed = spec_changed
        || old.is_none_or(|old| {
            old.metadata.labels != bundle.metadata.labels
                || old.metadata.annotations != bundle.metadata.annotations
        });
    let metadata = fresh_metadata(
        &bundle.metadata,
        old.map(|o| &o.metadata),
        spec_changed,
        now,
    );
    let spec = bundle.spec;
    let last_revision = old.map_or(0, |old| old.last_revision);

    let content = Bytes::from(content);
    let mut ops = vec![Op::PutContent {
        digest: spec_digest.clone(),
        body: content.to_vec(),
    }];
    let mut contents = vec![(spec_digest.clone(), content)];
    let mut stored_spec = spec.clone();
    stored_spec.resources = Vec::new();
    let first_target_op = ops.len();
    let (stored_targets, spec_target_digests) =
        records::strip_targets(&stored_spec.targets, &mut ops);
    stored_spec.targets = stored_targets;
    // A live revision: this spec's (compiled above), or, while paused, the one already live.
    let (live, live_targets, live_record) = if spec.paused {
        match old.and_then(|old| {
            old.live
                .clone()
                .map(|live| (live, old.live_targets.clone()))
        }) {
            Some((live, targets)) => {
                let record = LiveRecord {
                    revision: live.revision,
                    generation: live.generation,
                    digest: live.digest.clone(),
                    targets: targets.clone(),
                    keep_resources: live.keep_resources,
                    drift: live.drift.clone(),
                    target_digests: Vec::new(),
                }
                .stored(&mut ops);
                // Every write puts again all the content its record references, so the content
                // collector never deletes content referenced since it looked
                // (see `workers::collect_content`).
                if live.digest != spec_digest {
                    let body = fleet.contents().get(&live.digest).cloned().ok_or_else(|| {
                        WriteError::internal(format!(
                            "content {} of bundle {name:?}'s live revision is not in memory",
                            live.digest
                        ))
                    })?;
                    ops.push(Op::PutContent {
                        digest: live.digest.clone(),
                        body: body.to_vec(),
                    });
                }
                (Some(live), targets, Some(record))
            }
            None => (None, Vec::new(), None),
        }
    } else {
        let mut live = LiveRevision {
            revision: 0,
            generation: metadata.generation,
            epoch: 0,
            digest: spec_digest.clone(),
            targets: compiled.targets,
            keep_resources: spec.keep_resources,
            drift: spec.drift.clone(),
            vars: compiled.vars,
        };
        // What clusters receive changes: a new revision; otherwise the live one goes on.
        live.revision = match old.and_then(|old| old.live.as_ref()) {
            Some(old_live) if old_live.same_delivery(&live) => old_live.revision,
            _ => last_revision + 1,
        };
        let record = LiveRecord {
            revision: live.revision,
            generation: live.generation,
            digest: live.digest.clone(),
            targets: stored_spec.targets.clone(),
            keep_resources: live.keep_resources,
            drift: live.drift.clone(),
            target_digests: spec_target_digests.clone(),
        };
        (Some(live), spec.targets.clone(), Some(record))
    };
    // With a rollout strategy, a change of what clusters receive becomes a run: the stable
    // revision stays live and the new one is the candidate.
    let (live, live_targets, live_record, candidate, run) = plan_run(
        fleet,
        old,
        RunInputs {
            name: &name,
            strategy: rollout,
            spec: &spec,
            promote,
            now,
        },
        (live, live_targets, live_record),
        &mut ops,
    )?;
    // Content the model must hold: every digest the ops put beyond the spec's own.
    contents.extend(ops[first_target_op..].iter().filter_map(|op| match op {
        Op::PutContent { digest, body } => Some((digest.clone(), Bytes::from(body.clone()))),
        _ => None,
    }));
    // The live revision is a new one exactly when it took the next number (a paused write
    // keeps the old live revision, so it never makes one).
    let newest = match (&candidate, &live, &live_record) {
        (Some(candidate), _, _) => Some((&candidate.0, &candidate.2)),
        (None, Some(live), Some(record)) => Some((live, record)),
        _ => None,
    };
    let revision = match newest {
        Some((live, record)) if live.revision > last_revision => Some(Revision {
            live: record.clone(),
            commit: None,
            author: match owner {
                Some(repo) => format!("gitrepo/{repo}"),
                None => "admin".to_string(),
            },
            created: now,
            written: 0,
        }),
        _ => None,
    };
    let record = BundleRecord {
        metadata: metadata.clone(),
        spec: stored_spec,
        spec_digest: spec_digest.clone(),
        spec_target_digests: spec_target_digests.clone(),
        live: live_record,
        owner: owner.map(str::to_string),
        last_revision: last_revision.max(revision.as_ref().map_or(0, |r| r.live.revision)),
        candidate: candidate.as_ref().map(|c| c.2.clone()),
    };
    ops.push(records::put(records::BUNDLE, &name, &record));
    let entry = BundleEntry {
        name: name.clone(),
        metadata,
        spec,
        spec_digest,
        spec_target_digests: spec_target_digests.into_iter().flatten().collect(),
        live,
        live_targets,
        last_revision: record.last_revision,
        revisions: Default::default(),
        candidate: candidate.as_ref().map(|c| c.0.clone()),
        candidate_targets: candidate.map(|c| c.1).unwrap_or_default(),
        rollout: None,
        pinned: Default::default(),
        owner: owner.map(str::to_string),
        dependencies,
        targeted: Default::default(),
        counts: [0; 5],
        problems: Default::default(),
    };
    let pruned = match &revision {
        Some(new) => revisions_to_prune(
            old.into_iter()
                .flat_map(|old| old.revisions.keys().copied())
                .chain([new.live.revision]),
            &entry.revisions_in_use(),
            entry
                .spec
                .revision_history_limit
                .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT),
        ),
        None => Vec::new(),
    };
    Ok(PreparedBundle {
        name,
        created: old.is_none(),
        changed,
        ops,
        entry,
        contents,
        revision,
        pruned,
        run,
    })
}

/// What a bundle write does to its run.
#[derive(Debug)]
pub enum RunChange {
    /// Nothing: no run, or the run goes on with the same candidate.
    Keep,
    /// The run ends at once (its clusters go back to the stable revision, or the stable revision
    /// changed under it): no strategy any more, or the spec went back to the stable content.
    End,
    /// A new run starts from the stable revision to the new candidate (superseding any run).
    Start(Box<(Strategy, Rollout)>),
}

/// What `plan_run` needs besides the fleet and the bundle's old entry.
struct RunInputs<'a> {
    name: &'a str,
    strategy: Option<Strategy>,
    spec: &'a BundleSpec,
    promote: bool,
    now: u64,
}

type Planned = (Option<LiveRevision>, Vec<BundleTarget>, Option<LiveRecord>);

/// A candidate revision with its targets as written and its stored record.
type Candidate = (LiveRevision, Vec<BundleTarget>, LiveRecord);

/// What a write rolls out: the live revision (targets, record), a run's candidate, and what
/// happens to the run.
type PlannedRun = (
    Option<LiveRevision>,
    Vec<BundleTarget>,
    Option<LiveRecord>,
    Option<Candidate>,
    RunChange,
);

/// Turns a write's new live revision into a run when the bundle has a strategy and a stable
/// revision to roll out from, and what clusters receive changes: the stable revision stays live
/// and the new one becomes the candidate. The same candidate written again keeps its run; a
/// revision an automatic rollback held is not tried again (unless `promote`); content back to
/// the stable revision ends a run. A paused write keeps the run as it is.
fn plan_run(
    fleet: &Fleet,
    old: Option<&BundleEntry>,
    inputs: RunInputs<'_>,
    (live, live_targets, live_record): Planned,
    ops: &mut Vec<Op>,
) -> WriteResult<PlannedRun> {
    let old_candidate = old.and_then(|o| {
        o.candidate
            .clone()
            .map(|c| (c, o.candidate_targets.clone()))
    });
    let had_run = old.is_some_and(|o| o.rollout.is_some());
    let kept_candidate = |ops: &mut Vec<Op>| -> WriteResult<Option<Candidate>> {
        match &old_candidate {
            Some((candidate, targets)) => {
                let record = stored_again(fleet, inputs.name, candidate, targets, ops)?;
                Ok(Some((candidate.clone(), targets.clone(), record)))
            }
            None => Ok(None),
        }
    };
    if inputs.spec.paused {
        let candidate = kept_candidate(ops)?;
        return Ok((live, live_targets, live_record, candidate, RunChange::Keep));
    }
    let (Some(strategy), Some(old), Some(new)) = (inputs.strategy, old, live.as_ref()) else {
        let change = if had_run {
            RunChange::End
        } else {
            RunChange::Keep
        };
        return Ok((live, live_targets, live_record, None, change));
    };
    let Some(stable) = old.live.as_ref() else {
        // Nothing rolled out yet: the first revision goes everywhere at once.
        let change = if had_run {
            RunChange::End
        } else {
            RunChange::Keep
        };
        return Ok((live, live_targets, live_record, None, change));
    };
    let stable_record = stored_again(fleet, inputs.name, stable, &old.live_targets, ops)?;
    let stay_stable = |candidate, change| {
        Ok((
            Some(stable.clone()),
            old.live_targets.clone(),
            Some(stable_record.clone()),
            candidate,
            change,
        ))
    };
    if stable.same_delivery(new) {
        // Back to what every cluster outside the run has: a run in progress ends.
        let change = if old.candidate.is_some() {
            RunChange::End
        } else {
            RunChange::Keep
        };
        return stay_stable(None, change);
    }
    if let Some((candidate, _)) = &old_candidate
        && candidate.same_delivery(new)
    {
        let candidate = kept_candidate(ops)?;
        return stay_stable(candidate, RunChange::Keep);
    }
    let held = old
        .rollout
        .as_ref()
        .filter(|r| r.phase() == Some(Phase::RolledBack))
        .and_then(|r| old.revisions.get(&r.to))
        .filter(|revision| {
            live_record
                .as_ref()
                .is_some_and(|record| revision.live.same_stored_delivery(record))
        });
    if held.is_some() && !inputs.promote {
        // An automatic rollback holds this revision: written again, it is not tried again.
        return stay_stable(None, RunChange::Keep);
    }
    let (Some(candidate), Some(candidate_record)) = (live, live_record) else {
        return stay_stable(None, RunChange::Keep);
    };
    let rollout = Rollout {
        spec: inputs.spec.rollout.clone().unwrap_or_default(),
        from: stable.revision,
        to: candidate.revision,
        started: inputs.now,
        updated: inputs.now,
        reason: None,
        run: None,
        ended: None,
        unapplied: Default::default(),
        followed: false,
    };
    stay_stable(
        Some((candidate, live_targets, candidate_record)),
        RunChange::Start(Box::new((strategy, rollout))),
    )
}

/// The stored record of a revision memory holds, with its content put again (every write puts
/// again the content its record references, see `workers::collect_content`).
fn stored_again(
    fleet: &Fleet,
    name: &str,
    live: &LiveRevision,
    targets: &[BundleTarget],
    ops: &mut Vec<Op>,
) -> WriteResult<LiveRecord> {
    let record = LiveRecord {
        revision: live.revision,
        generation: live.generation,
        digest: live.digest.clone(),
        targets: targets.to_vec(),
        keep_resources: live.keep_resources,
        drift: live.drift.clone(),
        target_digests: Vec::new(),
    }
    .stored(ops);
    let body = fleet.contents().get(&live.digest).cloned().ok_or_else(|| {
        WriteError::internal(format!(
            "content {} of bundle {name:?}'s revision {} is not in memory",
            live.digest, live.revision
        ))
    })?;
    ops.push(Op::PutContent {
        digest: live.digest.clone(),
        body: body.to_vec(),
    });
    Ok(record)
}

/// The revisions to delete from a bundle's history `retained` (every number it holds, the new
/// one included): all but those in use (`BundleEntry::revisions_in_use`) and the `limit` newest
/// of the others. Pruned only in the commit that creates a revision, so a history never holds
/// more than `limit` revisions besides those in use after one.
pub fn revisions_to_prune(
    retained: impl IntoIterator<Item = u64>,
    in_use: &std::collections::BTreeSet<u64>,
    limit: u32,
) -> Vec<u64> {
    let mut numbers: Vec<u64> = retained
        .into_iter()
        .filter(|number| !in_use.contains(number))
        .collect();
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    numbers.dedup();
    numbers.split_off((limit as usize).min(numbers.len()))
}

/// Applies a committed bundle write to memory: the bundle, the revision it created and the
/// pruning of old ones. Returns the bundle's ordinal.
pub fn apply(fleet: &mut Fleet, prepared: PreparedBundle, revision: u64) -> u32 {
    let PreparedBundle {
        name,
        mut entry,
        contents,
        revision: new_revision,
        pruned,
        run,
        ..
    } = prepared;
    entry.metadata.resource_version = Some(revision.to_string());
    if !matches!(run, RunChange::Keep)
        && let Some((ordinal, _)) = fleet.bundle_by_name(&name)
    {
        // The old run's clusters go back to the stable revision before the entry changes under
        // them.
        fleet.end_run(ordinal);
    }
    let ordinal = fleet.put_bundle(entry, contents);
    if let Some(mut new_revision) = new_revision {
        new_revision.written = revision;
        // Its content is the live revision's, held by the bundle just put.
        fleet.put_revision(&name, new_revision, []);
    }
    for number in pruned {
        fleet.remove_revision(&name, number);
    }
    if let RunChange::Start(start) = run {
        let (strategy, rollout) = *start;
        fleet.start_run(ordinal, strategy, rollout, None, now_millis());
    }
    ordinal
}

/// The ops that delete a bundle: its record and its revisions' (a bundle created again under
/// the same name starts its history at revision 1).
pub fn delete_ops(bundle: &BundleEntry) -> Vec<Op> {
    std::iter::once(records::delete(records::BUNDLE, &bundle.name))
        .chain(
            bundle
                .rollout
                .is_some()
                .then(|| records::delete(records::ROLLOUT, &bundle.name)),
        )
        .chain(bundle.revisions.keys().map(|&number| {
            records::delete(
                records::BUNDLE_REVISION,
                &records::revision_name(&bundle.name, number),
            )
        }))
        .collect()
}

/// Creates or replaces a bundle an admin owns.
pub async fn write(state: &AppState, bundle: Bundle, mode: Mode) -> WriteResult<Written<Bundle>> {
    write_with(state, bundle, mode, false).await
}

/// Writes a bundle an admin owns back to a kept revision (`rollout undo`), rolling out again a
/// revision an automatic rollback held.
pub async fn write_promoting(state: &AppState, bundle: Bundle) -> WriteResult<Written<Bundle>> {
    write_with(state, bundle, Mode::Upsert, true).await
}

async fn write_with(
    state: &AppState,
    bundle: Bundle,
    mode: Mode,
    promote: bool,
) -> WriteResult<Written<Bundle>> {
    let _serialized = state.admin_lock.lock().await;
    let prepared = {
        let fleet = state.fleet.read();
        prepare_with(&fleet, bundle, mode, None, promote)?
    };
    let created = prepared.created;
    let revision = commit(state, prepared.ops()).await?;
    let mut fleet = state.fleet.write();
    let ordinal = apply(&mut fleet, prepared, revision);
    let object = fleet
        .bundle(ordinal)
        .map(|bundle| view::bundle(&fleet, bundle))
        .ok_or_else(|| WriteError::internal("bundle vanished after write"))?;
    Ok(Written { created, object })
}

/// Deletes a bundle an admin owns (a GitRepo's bundles go with their repository).
pub async fn delete(state: &AppState, name: &str) -> WriteResult<()> {
    let _serialized = state.admin_lock.lock().await;
    let ops = match state.fleet.read().bundle_by_name(name) {
        None => return Err(not_found(Kind::Bundle, name)),
        Some((_, bundle)) if bundle.owner.is_some() => {
            return Err(owned_error(name, bundle.owner.as_deref()));
        }
        Some((_, bundle)) => delete_ops(bundle),
    };
    commit(state, ops).await?;
    state.fleet.write().delete_bundle(name);
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Revisions over successive writes, driven through `prepare` and `apply` on a fleet alone
    //! (no store): which writes make one, their numbers, pruning, and that a retained revision
    //! compiles back from memory into the live revision it was.

    use std::collections::BTreeSet;

    use flotilla_api::Bundle;
    use serde_json::{Value, json};

    use super::*;

    /// A bundle whose one ConfigMap carries `value`, with `spec` merged over the default spec
    /// (a target with its own resources, and one for everything else).
    fn bundle(value: &str, labels: Value, spec: Value) -> Bundle {
        let mut document = json!({
            "apiVersion": flotilla_api::API_VERSION, "kind": "Bundle",
            "metadata": {"name": "web", "labels": labels},
            "spec": {
                "resources": [{"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": "web"}, "data": {"value": value}}],
                "targets": [
                    {"name": "edge", "clusterSelector": {"matchLabels": {"tier": "edge"}},
                     "resources": [{"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": "web-edge"}, "data": {"value": value}}]},
                    {"clusterSelector": {}},
                ],
            },
        });
        for (key, field) in spec.as_object().into_iter().flatten() {
            document["spec"][key] = field.clone();
        }
        serde_json::from_value(document).expect("a bundle document")
    }

    /// Writes `document` as an admin would (store revision `written`); returns the revision the
    /// write created, if any.
    fn write(fleet: &mut Fleet, document: Bundle, written: u64) -> Option<u64> {
        let prepared = prepare(fleet, document, Mode::Upsert, None).expect("a valid write");
        let created = prepared.new_revision();
        apply(fleet, prepared, written);
        created
    }

    fn retained(fleet: &Fleet) -> Vec<u64> {
        let (_, entry) = fleet.bundle_by_name("web").expect("the bundle");
        entry.revisions.keys().copied().collect()
    }

    fn live_revision(fleet: &Fleet) -> u64 {
        let (_, entry) = fleet.bundle_by_name("web").expect("the bundle");
        entry.live.as_ref().expect("live").revision
    }

    #[test]
    fn a_revision_is_made_exactly_when_what_clusters_receive_changes() {
        let mut fleet = Fleet::default();
        let none = json!({});
        assert_eq!(
            write(&mut fleet, bundle("v1", json!({}), json!({})), 1),
            Some(1)
        );
        // Labels, annotations and spec fields that change nothing delivered: no revision.
        assert_eq!(
            write(
                &mut fleet,
                bundle("v1", json!({"team": "a"}), none.clone()),
                2
            ),
            None
        );
        assert_eq!(
            write(
                &mut fleet,
                bundle("v1", json!({}), json!({"revisionHistoryLimit": 5})),
                3
            ),
            None
        );
        // Content, then a customization alone (same digests), then drift: each a revision.
        assert_eq!(
            write(&mut fleet, bundle("v2", json!({}), none.clone()), 4),
            Some(2)
        );
        let customized = json!({"targets": [{"clusterSelector": {},
                                             "customization": {"namespace": "shop"}}]});
        assert_eq!(
            write(&mut fleet, bundle("v2", json!({}), customized.clone()), 5),
            Some(3)
        );
        let drift = json!({"targets": customized["targets"], "drift": {"mode": "report"}});
        assert_eq!(
            write(&mut fleet, bundle("v2", json!({}), drift.clone()), 6),
            Some(4)
        );
        assert_eq!(write(&mut fleet, bundle("v2", json!({}), drift), 7), None);
        assert_eq!(retained(&fleet), [1, 2, 3, 4]);
        assert_eq!(live_revision(&fleet), 4);
        let (_, entry) = fleet.bundle_by_name("web").expect("the bundle");
        assert_eq!(entry.last_revision, 4);
        assert_eq!(entry.revisions[&4].written, 6);
        assert_eq!(entry.revisions[&4].author, "admin");
        assert_eq!(
            entry.revisions[&4].live.generation, 5,
            "the spec generation that made it"
        );
    }

    #[test]
    fn a_paused_spec_makes_no_revision_until_it_is_unpaused() {
        let mut fleet = Fleet::default();
        let paused = json!({"paused": true});
        // Created paused: nothing is live, so nothing is a revision.
        assert_eq!(
            write(&mut fleet, bundle("v1", json!({}), paused.clone()), 1),
            None
        );
        assert_eq!(
            write(&mut fleet, bundle("v1", json!({}), json!({})), 2),
            Some(1)
        );
        assert_eq!(
            write(&mut fleet, bundle("v2", json!({}), paused.clone()), 3),
            None
        );
        assert_eq!(write(&mut fleet, bundle("v3", json!({}), paused), 4), None);
        assert_eq!(
            live_revision(&fleet),
            1,
            "the paused bundle keeps serving revision 1"
        );
        assert_eq!(
            write(&mut fleet, bundle("v3", json!({}), json!({})), 5),
            Some(2)
        );
        let (_, entry) = fleet.bundle_by_name("web").expect("the bundle");
        assert_eq!(entry.revisions[&2].live.digest, entry.spec_digest);
        // Paused and unpaused again on the same content: the live revision goes on.
        assert_eq!(
            write(
                &mut fleet,
                bundle("v3", json!({}), json!({"paused": true})),
                6
            ),
            None
        );
        assert_eq!(
            write(&mut fleet, bundle("v3", json!({}), json!({})), 7),
            None
        );
        assert_eq!(retained(&fleet), [1, 2]);
    }

    #[test]
    fn the_history_keeps_the_limit_besides_revisions_in_use_and_numbers_are_never_reused() {
        let mut fleet = Fleet::default();
        let limit = json!({"revisionHistoryLimit": 2});
        let mut digests = Vec::new();
        for (step, value) in ["v1", "v2", "v3", "v4", "v5"].into_iter().enumerate() {
            write(
                &mut fleet,
                bundle(value, json!({}), limit.clone()),
                step as u64 + 1,
            );
            let (_, entry) = fleet.bundle_by_name("web").expect("the bundle");
            digests.push(entry.spec_digest.clone());
        }
        assert_eq!(
            retained(&fleet),
            [3, 4, 5],
            "the live one and the 2 newest others"
        );
        // Pruned revisions' content goes from memory; retained ones' stays.
        for (index, digest) in digests.iter().enumerate() {
            assert_eq!(
                fleet.contents().contains_key(digest),
                index >= 2,
                "content of revision {}",
                index + 1
            );
        }
        // Back to old content: a new number, not the old one.
        assert_eq!(
            write(&mut fleet, bundle("v1", json!({}), limit), 6),
            Some(6)
        );
        assert_eq!(retained(&fleet), [4, 5, 6]);
        assert!(fleet.contents().contains_key(&digests[0]));
    }

    #[test]
    fn pruning_never_removes_a_revision_in_use_however_old() {
        let in_use: BTreeSet<u64> = [2, 9].into();
        assert_eq!(revisions_to_prune(1..=9, &in_use, 3), [5, 4, 3, 1]);
        assert_eq!(revisions_to_prune([9, 2], &in_use, 1), Vec::<u64>::new());
        assert_eq!(
            revisions_to_prune(1..=3, &BTreeSet::new(), 10),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn a_retained_revision_compiles_back_from_memory_into_the_live_revision_it_was() {
        let mut fleet = Fleet::default();
        let customized = json!({"targets": [
            {"name": "edge", "clusterSelector": {"matchLabels": {"tier": "edge"}},
             "resources": [{"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "edge"}, "data": {"at": "${cluster.name}"}}]},
            {"clusterSelector": {}, "customization": {"namespace": "shop"}},
        ]});
        write(&mut fleet, bundle("v1", json!({}), customized), 1);
        let (first, first_targets) = {
            let (_, entry) = fleet.bundle_by_name("web").expect("the bundle");
            (
                entry.live.clone().expect("live"),
                entry.live_targets.clone(),
            )
        };
        write(&mut fleet, bundle("v2", json!({}), json!({})), 2);
        let (rebuilt, targets) = fleet
            .revision_live("web", 1)
            .expect("revision 1 is retained")
            .expect("it compiles from memory");
        assert!(rebuilt.same_delivery(&first), "{rebuilt:?} != {first:?}");
        assert_eq!(
            (rebuilt.revision, rebuilt.generation),
            (1, first.generation)
        );
        assert_eq!(
            targets, first_targets,
            "the targets as written, resources put back"
        );
        assert!(fleet.revision_live("web", 7).is_none());
    }
}
