//! GitRepo and Secret writes, and what the git worker commits: a repository's status and the
//! bundles one render of it produced.

use flotilla_api::{GitRepo, GitRepoStatus, Kind, Secret};
use flotilla_core::documents;

use super::{
    Mode, WriteError, WriteResult, Written, bundles::PreparedBundle, check_held, commit,
    fresh_metadata, not_found,
};
use crate::{
    fleet::{Fleet, GitRepoEntry, SecretEntry},
    records::{self, GitRepoRecord, GitRepoStatusRecord, SecretRecord},
    state::{AppState, now_seconds},
    view,
};

/// Creates or replaces a GitRepo; a changed spec asks for a fetch at once.
pub async fn write_gitrepo(
    state: &AppState,
    repo: GitRepo,
    mode: Mode,
) -> WriteResult<Written<GitRepo>> {
    documents::git_repo(&repo)?;
    let name = repo.metadata.name.clone();
    let _serialized = state.admin_lock.lock().await;
    let now = now_seconds();
    let old_meta = {
        let fleet = state.fleet.read();
        let held = fleet.gitrepos().get(&name);
        check_held(
            mode,
            Kind::GitRepo,
            &name,
            &repo.metadata.resource_version,
            held.map(|old| &old.metadata),
        )?;
        held.map(|old| (old.metadata.clone(), old.spec != repo.spec))
    };
    let changed = old_meta.as_ref().is_none_or(|(_, changed)| *changed);
    let mut metadata = fresh_metadata(
        &repo.metadata,
        old_meta.as_ref().map(|(m, _)| m),
        changed,
        now,
    );
    let record = GitRepoRecord {
        metadata: metadata.clone(),
        spec: repo.spec,
    };
    let revision = commit(state, vec![records::put(records::GITREPO, &name, &record)]).await?;
    metadata.resource_version = Some(revision.to_string());
    let object = {
        let mut fleet = state.fleet.write();
        fleet.put_gitrepo(&name, metadata, record.spec);
        view::gitrepo(&fleet, &name).ok_or_else(|| WriteError::internal("git repo vanished"))?
    };
    if changed {
        state.gitops.fetch_now(&name);
    }
    Ok(Written {
        created: old_meta.is_none(),
        object,
    })
}

/// Deletes a GitRepo with the bundles it rendered.
pub async fn delete_gitrepo(state: &AppState, name: &str) -> WriteResult<()> {
    let _serialized = state.admin_lock.lock().await;
    let ops = {
        let fleet = state.fleet.read();
        if !fleet.gitrepos().contains_key(name) {
            return Err(not_found(Kind::GitRepo, name));
        }
        let mut ops = vec![
            records::delete(records::GITREPO, name),
            records::delete(records::GITREPO_STATUS, name),
        ];
        for bundle in fleet.bundles_owned_by(name) {
            if let Some((_, bundle)) = fleet.bundle_by_name(&bundle) {
                ops.extend(super::bundles::delete_ops(bundle));
            }
        }
        ops
    };
    commit(state, ops).await?;
    state.fleet.write().remove_gitrepo(name);
    state.gitops.forget(name);
    Ok(())
}

/// Creates or replaces a Secret; repositories that fetch with it retry at once (it may be what
/// they lacked).
pub async fn write_secret(
    state: &AppState,
    secret: Secret,
    mode: Mode,
) -> WriteResult<Written<Secret>> {
    documents::secret(&secret)?;
    let name = secret.metadata.name.clone();
    let _serialized = state.admin_lock.lock().await;
    let now = now_seconds();
    let old = {
        let fleet = state.fleet.read();
        let held = fleet.secrets().get(&name);
        check_held(
            mode,
            Kind::Secret,
            &name,
            &secret.metadata.resource_version,
            held.map(|old| &old.metadata),
        )?;
        held.map(|old| (old.metadata.clone(), old.spec != secret.spec))
    };
    let changed = old.as_ref().is_none_or(|(_, changed)| *changed);
    let mut metadata = fresh_metadata(&secret.metadata, old.as_ref().map(|(m, _)| m), changed, now);
    let record = SecretRecord {
        metadata: metadata.clone(),
        spec: secret.spec,
    };
    let revision = commit(state, vec![records::put(records::SECRET, &name, &record)]).await?;
    metadata.resource_version = Some(revision.to_string());
    let mut fleet = state.fleet.write();
    fleet.put_secret(
        &name,
        SecretEntry {
            metadata,
            spec: record.spec,
        },
    );
    let object =
        view::secret(&fleet, &name).ok_or_else(|| WriteError::internal("secret vanished"))?;
    let users: Vec<String> = fleet
        .gitrepos()
        .iter()
        .filter(|(_, repo)| repo.spec.client_secret_name.as_deref() == Some(name.as_str()))
        .map(|(repo, _)| repo.clone())
        .collect();
    drop(fleet);
    for repo in users {
        state.gitops.fetch_now(&repo);
    }
    Ok(Written {
        created: old.is_none(),
        object,
    })
}

pub async fn delete_secret(state: &AppState, name: &str) -> WriteResult<()> {
    let _serialized = state.admin_lock.lock().await;
    if !state.fleet.read().secrets().contains_key(name) {
        return Err(not_found(Kind::Secret, name));
    }
    commit(state, vec![records::delete(records::SECRET, name)]).await?;
    state.fleet.write().remove_secret(name);
    Ok(())
}

/// Writes a GitRepo's status: `edit` gets the repository as memory holds it and returns the new
/// status, or none to write nothing (the repository changed meanwhile).
pub async fn write_gitrepo_status(
    state: &AppState,
    name: &str,
    edit: impl FnOnce(&GitRepoEntry) -> Option<GitRepoStatus>,
) -> WriteResult<()> {
    let _serialized = state.admin_lock.lock().await;
    let status = {
        let fleet = state.fleet.read();
        let Some(status) = fleet.gitrepos().get(name).and_then(edit) else {
            return Ok(());
        };
        status
    };
    let record = GitRepoStatusRecord { status };
    commit(
        state,
        vec![records::put(records::GITREPO_STATUS, name, &record)],
    )
    .await?;
    state.fleet.write().set_gitrepo_status(name, record.status);
    Ok(())
}

/// What one render of a GitRepo changes: bundles to write, bundles no folder produces any more,
/// and the repository's new status.
pub struct Render {
    pub writes: Vec<PreparedBundle>,
    pub removed: Vec<String>,
    pub status: GitRepoStatus,
}

/// Publishes a render of GitRepo `name` in one commit: `plan` runs under the write lock with the
/// fleet as it is (it prepares each bundle with `bundles::prepare`) and returns the render and
/// what the caller wants back, or none when there is nothing to publish (the repository changed
/// or is gone). Returns what `plan` returned beside the render.
pub async fn publish_render<T>(
    state: &AppState,
    name: &str,
    plan: impl FnOnce(&Fleet) -> Option<(Render, T)>,
) -> WriteResult<Option<T>> {
    let _serialized = state.admin_lock.lock().await;
    let (render, extra, removed_ops) = {
        let fleet = state.fleet.read();
        let Some((render, extra)) = plan(&fleet) else {
            return Ok(None);
        };
        // A removed folder's bundle goes with its revisions.
        let removed_ops: Vec<_> = render
            .removed
            .iter()
            .flat_map(|bundle| match fleet.bundle_by_name(bundle) {
                Some((_, held)) => super::bundles::delete_ops(held),
                None => vec![records::delete(records::BUNDLE, bundle)],
            })
            .collect();
        (render, extra, removed_ops)
    };
    let Render {
        mut writes,
        removed,
        status,
    } = render;
    let mut ops = Vec::new();
    for write in &mut writes {
        // The revisions a render makes name the commit they were rendered from.
        write.set_source_commit(status.commit.clone());
        ops.extend(write.ops());
    }
    ops.extend(removed_ops);
    let record = GitRepoStatusRecord { status };
    ops.push(records::put(records::GITREPO_STATUS, name, &record));
    let revision = commit(state, ops).await?;
    let mut fleet = state.fleet.write();
    for write in writes {
        super::bundles::apply(&mut fleet, write, revision);
    }
    for bundle in &removed {
        fleet.delete_bundle(bundle);
    }
    fleet.set_gitrepo_status(name, record.status);
    Ok(Some(extra))
}
