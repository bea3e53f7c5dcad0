//! ClusterGroup writes.

use flotilla_api::{ClusterGroup, Kind};
use flotilla_core::documents;

use super::{
    Mode, WriteError, WriteResult, Written, check_held, commit, fresh_metadata, not_found,
};
use crate::{
    records::{self, GroupRecord},
    state::{AppState, now_seconds},
    view,
};

/// Creates or replaces a cluster group; its members and the bundles that name it follow.
pub async fn write(
    state: &AppState,
    group: ClusterGroup,
    mode: Mode,
) -> WriteResult<Written<ClusterGroup>> {
    let selector = documents::cluster_group(&group)?;
    let name = group.metadata.name.clone();
    let _serialized = state.admin_lock.lock().await;
    let now = now_seconds();
    let old = {
        let fleet = state.fleet.read();
        let held = fleet.groups().get(&name);
        check_held(
            mode,
            Kind::ClusterGroup,
            &name,
            &group.metadata.resource_version,
            held.map(|old| &old.metadata),
        )?;
        held.map(|old| (old.metadata.clone(), old.selector != selector))
    };
    let changed = old.as_ref().is_none_or(|(_, changed)| *changed);
    let mut metadata = fresh_metadata(&group.metadata, old.as_ref().map(|(m, _)| m), changed, now);
    let record = GroupRecord {
        metadata: metadata.clone(),
        spec: group.spec,
    };
    let revision = commit(state, vec![records::put(records::GROUP, &name, &record)]).await?;
    metadata.resource_version = Some(revision.to_string());
    let mut fleet = state.fleet.write();
    fleet.put_group(&name, metadata, selector);
    let entry = fleet
        .groups()
        .get(&name)
        .ok_or_else(|| WriteError::internal("group vanished"))?;
    Ok(Written {
        created: old.is_none(),
        object: view::group(&fleet, &name, entry),
    })
}

pub async fn delete(state: &AppState, name: &str) -> WriteResult<()> {
    let _serialized = state.admin_lock.lock().await;
    if !state.fleet.read().groups().contains_key(name) {
        return Err(not_found(Kind::ClusterGroup, name));
    }
    commit(state, vec![records::delete(records::GROUP, name)]).await?;
    state.fleet.write().remove_group(name);
    Ok(())
}
