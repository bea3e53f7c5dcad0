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
use crate::{
    fleet::{BundleEntry, Fleet, LiveRevision, dependencies::CandidateBundle},
    records::{self, BundleRecord, LiveRecord},
    state::{AppState, now_seconds},
    view,
};

/// A validated bundle write: the store ops to commit, then the entry memory applies (targets
/// compiled and content digested once, here).
pub struct PreparedBundle {
    pub name: String,
    pub created: bool,
    /// Whether anything changes (a GitRepo re-render that changed nothing writes nothing).
    pub changed: bool,
    pub ops: Vec<Op>,
    entry: BundleEntry,
    /// Content the entry references, by digest, for memory to hold.
    contents: Vec<(String, Bytes)>,
}

impl PreparedBundle {
    /// The digest of the bundle's default content.
    pub fn spec_digest(&self) -> &str {
        &self.entry.spec_digest
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
    let ValidBundle {
        content,
        digest: spec_digest,
        compiled,
        dependencies,
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
        let live = LiveRevision {
            generation: metadata.generation,
            epoch: 0,
            digest: spec_digest.clone(),
            targets: compiled.targets,
            keep_resources: spec.keep_resources,
            drift: spec.drift.clone(),
            vars: compiled.vars,
        };
        let record = LiveRecord {
            generation: live.generation,
            digest: live.digest.clone(),
            targets: stored_spec.targets.clone(),
            keep_resources: live.keep_resources,
            drift: live.drift.clone(),
            target_digests: spec_target_digests.clone(),
        };
        (Some(live), spec.targets.clone(), Some(record))
    };
    // Content the model must hold: every digest the ops put beyond the spec's own.
    contents.extend(ops[first_target_op..].iter().filter_map(|op| match op {
        Op::PutContent { digest, body } => Some((digest.clone(), Bytes::from(body.clone()))),
        _ => None,
    }));
    let record = BundleRecord {
        metadata: metadata.clone(),
        spec: stored_spec,
        spec_digest: spec_digest.clone(),
        spec_target_digests: spec_target_digests.clone(),
        live: live_record,
        owner: owner.map(str::to_string),
    };
    ops.push(records::put(records::BUNDLE, &name, &record));
    Ok(PreparedBundle {
        name: name.clone(),
        created: old.is_none(),
        changed,
        ops,
        entry: BundleEntry {
            name,
            metadata,
            spec,
            spec_digest,
            spec_target_digests: spec_target_digests.into_iter().flatten().collect(),
            live,
            live_targets,
            owner: owner.map(str::to_string),
            dependencies,
            targeted: Default::default(),
            counts: [0; 5],
            problems: Default::default(),
        },
        contents,
    })
}

/// Applies a committed bundle write to memory; returns the bundle's ordinal.
pub fn apply(fleet: &mut Fleet, prepared: PreparedBundle, revision: u64) -> u32 {
    let mut entry = prepared.entry;
    entry.metadata.resource_version = Some(revision.to_string());
    fleet.put_bundle(entry, prepared.contents)
}

/// Creates or replaces a bundle an admin owns.
pub async fn write(state: &AppState, bundle: Bundle, mode: Mode) -> WriteResult<Written<Bundle>> {
    let _serialized = state.admin_lock.lock().await;
    let prepared = {
        let fleet = state.fleet.read();
        prepare(&fleet, bundle, mode, None)?
    };
    let created = prepared.created;
    let revision = commit(state, prepared.ops.clone()).await?;
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
    match state.fleet.read().bundle_by_name(name) {
        None => return Err(not_found(Kind::Bundle, name)),
        Some((_, bundle)) if bundle.owner.is_some() => {
            return Err(owned_error(name, bundle.owner.as_deref()));
        }
        Some(_) => {}
    }
    commit(state, vec![records::delete(records::BUNDLE, name)]).await?;
    state.fleet.write().delete_bundle(name);
    Ok(())
}
